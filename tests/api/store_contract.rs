//! The store contract: every `Store` implementation must pass these. Run here on SQLite;
//! a PostgreSQL store runs the same functions.

use std::sync::Arc;

use futures_util::future::join_all;
use hookd::{
    domain::{
        now_millis, AlertRef, AlertStatus, ApiTokenId, DriverConfig, Execution, ExecutionId, Outcome, ProjectName,
        Receiver, ReceiverId, ReceiverName, ScaleAction, ScaleServiceConfig, ServiceId,
    },
    store::{self, ApiToken, Role, Store, StoreError},
    token::new_signing_key,
};

fn receiver(project: &str, name: &str) -> Receiver {
    Receiver {
        id: ReceiverId::generate(),
        project: ProjectName::parse(project).unwrap(),
        name: ReceiverName::parse(name).unwrap(),
        config: DriverConfig::ScaleService(
            ScaleServiceConfig::new(ServiceId::parse("web").unwrap(), ScaleAction::Up, 2, 1, 9).unwrap(),
        ),
        enabled: true,
        token_generation: 1,
        created: now_millis(),
        updated: now_millis(),
    }
}

fn execution(receiver: ReceiverId, n: u32) -> Execution {
    Execution {
        id: ExecutionId::generate(),
        receiver,
        at: now_millis(),
        source: "127.0.0.1".into(),
        outcome: Outcome::Scaled,
        from: Some(n),
        to: Some(n + 1),
        reason: format!("step {n}"),
        detail: String::new(),
        dry_run: false,
        alerts: Vec::new(),
        dedup_key: None,
    }
}

fn decided(receiver: ReceiverId, outcome: Outcome, at: i64, key: Option<&str>, dry_run: bool) -> Execution {
    Execution {
        at,
        outcome,
        dry_run,
        dedup_key: key.map(str::to_owned),
        alerts: vec![AlertRef {
            name: "High".into(),
            fingerprint: "27f97ab5be7c9d5f".into(),
            status: AlertStatus::Firing,
            starts_at: "2026-11-23T05:22:10.451Z".into(),
        }],
        detail: "why".into(),
        ..execution(receiver, 1)
    }
}

async fn receivers_contract(store: Arc<dyn Store>) {
    let a = receiver("alpha", "web-up");
    store.insert_receiver(&a).await.unwrap();
    assert_eq!(store.receiver(a.id).await.unwrap(), Some(a.clone()), "a receiver reads back as written");

    let dup = receiver("alpha", "web-up");
    assert!(matches!(store.insert_receiver(&dup).await, Err(StoreError::Conflict(_))));
    store.insert_receiver(&receiver("beta", "web-up")).await.expect("names are unique per project only");

    let mut more = Vec::new();
    for i in 0..4 {
        let r = receiver("alpha", &format!("r{i}"));
        store.insert_receiver(&r).await.unwrap();
        more.push(r);
    }
    let alpha = ProjectName::parse("alpha").unwrap();
    let first = store.list_receivers(&alpha, 3, None).await.unwrap();
    assert_eq!(first.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["web-up", "r0", "r1"]);
    let rest = store.list_receivers(&alpha, 3, Some(first[2].id)).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["r2", "r3"]);

    let mut changed = a.clone();
    changed.name = ReceiverName::parse("renamed").unwrap();
    changed.enabled = false;
    changed.token_generation = 2;
    store.update_receiver(&changed).await.unwrap();
    assert_eq!(store.receiver(a.id).await.unwrap(), Some(changed.clone()));
    let mut clash = more[0].clone();
    clash.name = ReceiverName::parse("renamed").unwrap();
    assert!(matches!(store.update_receiver(&clash).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.update_receiver(&receiver("alpha", "ghost")).await, Err(StoreError::NotFound)));

    store.record_execution(&execution(a.id, 1)).await.unwrap();
    assert!(store.delete_receiver(a.id).await.unwrap());
    assert!(!store.delete_receiver(a.id).await.unwrap());
    assert_eq!(store.receiver(a.id).await.unwrap(), None);
    assert_eq!(store.count_executions(a.id).await.unwrap(), 0, "history goes with its receiver");
}

async fn executions_contract(store: Arc<dyn Store>) {
    let r = receiver("default", "hist");
    store.insert_receiver(&r).await.unwrap();
    let mut written = Vec::new();
    for n in 0..5 {
        let e = execution(r.id, n);
        store.record_execution(&e).await.unwrap();
        written.push(e);
    }
    let page = store.list_executions(r.id, 3, None).await.unwrap();
    assert_eq!(page, written.iter().rev().take(3).cloned().collect::<Vec<_>>(), "newest first, read back as written");
    let older = store.list_executions(r.id, 3, Some(page[2].id)).await.unwrap();
    assert_eq!(older, vec![written[1].clone(), written[0].clone()]);

    // Concurrent writers are group-committed; every one is acknowledged and stored.
    let writes = join_all((0..500).map(|n| {
        let store = store.clone();
        let e = execution(r.id, n);
        async move { store.record_execution(&e).await }
    }))
    .await;
    assert!(writes.iter().all(Result::is_ok));
    assert_eq!(store.count_executions(r.id).await.unwrap(), 505);
}

async fn history_contract(store: Arc<dyn Store>) {
    let r = receiver("default", "timing");
    store.insert_receiver(&r).await.unwrap();
    assert_eq!(store.last_change(r.id).await.unwrap(), None);
    assert_eq!(store.last_decided(r.id, "k").await.unwrap(), None);
    let rows = [
        decided(r.id, Outcome::Scaled, 1_000, Some("k"), false),
        decided(r.id, Outcome::Unchanged, 2_000, Some("k"), false),
        decided(r.id, Outcome::Scaled, 3_000, Some("other"), true),
        decided(r.id, Outcome::Failed, 4_000, Some("k"), false),
        decided(r.id, Outcome::Skipped, 5_000, Some("k"), false),
    ];
    for e in &rows {
        store.record_execution(e).await.unwrap();
    }
    assert_eq!(store.last_change(r.id).await.unwrap(), Some(1_000), "dry runs are not changes");
    assert_eq!(store.last_decided(r.id, "k").await.unwrap(), Some(2_000), "failures and skips are not decisions");
    assert_eq!(store.last_decided(r.id, "other").await.unwrap(), None, "dry runs are not decisions");
    let back = store.list_executions(r.id, 10, None).await.unwrap();
    assert_eq!(back.iter().rev().cloned().collect::<Vec<_>>(), rows.to_vec(), "alerts, detail and flags read back");
}

async fn keys_tokens_scales_contract(store: Arc<dyn Store>) {
    let key = new_signing_key();
    store.insert_signing_key(&key).await.unwrap();
    store.insert_signing_key(&key).await.expect("inserting the same kid again is a no-op");
    assert_eq!(store.signing_keys().await.unwrap(), vec![key]);

    let token = ApiToken {
        id: ApiTokenId::generate(),
        name: "ci".into(),
        hash: "ab".repeat(32),
        role: Role::Member,
        project: Some(ProjectName::parse("team").unwrap()),
        created: now_millis(),
    };
    store.insert_api_token(&token).await.unwrap();
    assert_eq!(store.api_token_by_hash(&token.hash).await.unwrap(), Some(token.clone()));
    assert_eq!(store.api_token_by_hash("nope").await.unwrap(), None);
    assert_eq!(store.count_api_tokens().await.unwrap(), 1);

    store.set_local_scale("local", "web", 3).await.unwrap();
    store.set_local_scale("local", "web", 5).await.unwrap();
    store.set_local_scale("other", "web", 7).await.unwrap();
    store.flush().await.unwrap();
    let scales = store.local_scales("local").await.unwrap();
    assert_eq!(scales.get("web"), Some(&5));
    assert_eq!(scales.len(), 1);
    store.ping().await.unwrap();
}

async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/dir/hookd.db").display());
    let store = store::open(&url).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn sqlite_receivers() {
    let (_dir, store) = sqlite().await;
    receivers_contract(store).await;
}

#[tokio::test]
async fn sqlite_executions() {
    let (_dir, store) = sqlite().await;
    executions_contract(store).await;
}

#[tokio::test]
async fn sqlite_history() {
    let (_dir, store) = sqlite().await;
    history_contract(store).await;
}

#[tokio::test]
async fn sqlite_keys_tokens_scales() {
    let (_dir, store) = sqlite().await;
    keys_tokens_scales_contract(store).await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hookd.db").display());
    let r = receiver("default", "durable");
    let e = execution(r.id, 1);
    {
        let store = store::open(&url).await.unwrap();
        store.insert_receiver(&r).await.unwrap();
        store.record_execution(&e).await.unwrap();
        store.close().await;
    }
    let store = store::open(&url).await.unwrap();
    assert_eq!(store.receiver(r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(store.list_executions(r.id, 10, None).await.unwrap(), vec![e]);
}
