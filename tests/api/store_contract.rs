//! The store contract: every `Store` implementation must pass these. Run here on SQLite;
//! a PostgreSQL store runs the same functions. Each contract ends by reading everything
//! again through a fresh store on the same database, past any cache.

use std::sync::Arc;

use futures_util::future::join_all;
use hookd::{
    config::Retention,
    domain::{
        now_millis, AlertRef, AlertStatus, ApiTokenId, Decided, DedupKey, DriverConfig, Execution, ExecutionId,
        Outcome, ProjectName, Receiver, ReceiverId, ReceiverName, ScaleAction, ScaleServiceConfig, ServiceId,
        ServiceKey,
    },
    store::{self, ApiToken, Role, StateWrite, Store, StoreError},
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
        revision: 1,
        created: now_millis(),
        updated: now_millis(),
    }
}

fn web() -> ServiceKey {
    ServiceKey::new("local", &ServiceId::parse("web").unwrap())
}

fn key(name: &str) -> DedupKey {
    DedupKey::idempotency(name)
}

fn execution(receiver: ReceiverId, n: u32) -> Execution {
    Execution {
        id: ExecutionId::generate(),
        receiver,
        service: Some(web()),
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
        dedup_key: key.map(self::key),
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
    let stored = store.update_receiver(&changed).await.unwrap();
    assert_eq!(stored, Receiver { revision: 2, ..changed.clone() }, "an update bumps the revision");
    assert_eq!(store.receiver(a.id).await.unwrap(), Some(stored.clone()));
    assert!(
        matches!(store.update_receiver(&changed).await, Err(StoreError::Stale)),
        "an edit of an old revision must not undo a newer one"
    );
    assert_eq!(store.receiver(a.id).await.unwrap(), Some(stored.clone()));
    let mut clash = more[0].clone();
    clash.name = ReceiverName::parse("renamed").unwrap();
    assert!(matches!(store.update_receiver(&clash).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.update_receiver(&receiver("alpha", "ghost")).await, Err(StoreError::NotFound)));

    store.record_execution(&execution(a.id, 1), None).await.unwrap();
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
        store.record_execution(&e, None).await.unwrap();
        written.push(e);
    }
    // Recording an execution again replaces it: an intent becomes its outcome.
    written[4] = Execution { outcome: Outcome::Failed, reason: "backend down".into(), ..written[4].clone() };
    store.record_execution(&written[4], None).await.unwrap();
    let page = store.list_executions(r.id, 3, None).await.unwrap();
    assert_eq!(page, written.iter().rev().take(3).cloned().collect::<Vec<_>>(), "newest first, read back as written");
    let older = store.list_executions(r.id, 3, Some(page[2].id)).await.unwrap();
    assert_eq!(older, vec![written[1].clone(), written[0].clone()]);

    // Concurrent writers are group-committed; every one is acknowledged and stored.
    let writes = join_all((0..500).map(|n| {
        let store = store.clone();
        let e = execution(r.id, n);
        async move { store.record_execution(&e, None).await }
    }))
    .await;
    assert!(writes.iter().all(Result::is_ok));
    assert_eq!(store.count_executions(r.id).await.unwrap(), 505);
}

async fn history_contract(store: Arc<dyn Store>) {
    let r = receiver("default", "timing");
    let other_receiver = receiver("default", "timing-2");
    store.insert_receiver(&r).await.unwrap();
    assert_eq!(store.last_change(&web()).await.unwrap(), None);
    assert_eq!(store.last_decided(r.id, &key("k"), 0).await.unwrap(), None);
    let rows = [
        decided(r.id, Outcome::Scaled, 1_000, Some("k"), false),
        decided(r.id, Outcome::Unchanged, 2_000, Some("k"), false),
        decided(r.id, Outcome::Scaled, 3_000, Some("other"), true),
        decided(r.id, Outcome::Failed, 4_000, Some("k"), false),
        decided(r.id, Outcome::Skipped, 5_000, Some("k"), false),
    ];
    for e in &rows {
        store.record_execution(e, None).await.unwrap();
    }
    assert_eq!(store.last_change(&web()).await.unwrap(), Some(1_000), "dry runs are not changes");
    let unchanged = Decided { at: 2_000, execution: rows[1].id };
    assert_eq!(store.last_decided(r.id, &key("k"), 0).await.unwrap(), Some(unchanged), "failures, skips don't count");
    assert_eq!(store.last_decided(r.id, &key("k"), 2_001).await.unwrap(), None, "outside the window");
    assert_eq!(store.last_decided(r.id, &key("other"), 0).await.unwrap(), None, "dry runs are not decisions");
    assert_eq!(store.last_decided(other_receiver.id, &key("k"), 0).await.unwrap(), None, "keys are per receiver");

    // Cooldown is per service: another receiver's change counts.
    let later = decided(other_receiver.id, Outcome::Scaled, 6_000, None, false);
    store.record_execution(&later, None).await.unwrap();
    assert_eq!(store.last_change(&web()).await.unwrap(), Some(6_000));
    let elsewhere = ServiceKey::new("local", &ServiceId::parse("api").unwrap());
    assert_eq!(store.last_change(&elsewhere).await.unwrap(), None);

    // An intent recorded as a change, then re-recorded as failed, is neither.
    let intent = decided(r.id, Outcome::Scaled, 7_000, Some("retry"), false);
    store.record_execution(&intent, None).await.unwrap();
    assert_eq!(store.last_decided(r.id, &key("retry"), 0).await.unwrap().map(|d| d.execution), Some(intent.id));
    store.record_execution(&Execution { outcome: Outcome::Failed, ..intent.clone() }, None).await.unwrap();
    assert_eq!(store.last_decided(r.id, &key("retry"), 0).await.unwrap(), None);

    let back = store.list_executions(r.id, 10, None).await.unwrap();
    let mut expected = rows.to_vec();
    expected.push(Execution { outcome: Outcome::Failed, ..intent });
    assert_eq!(back.iter().rev().cloned().collect::<Vec<_>>(), expected, "alerts, detail and flags read back");
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

    // A backend's state is written with the execution that changed it.
    let r = receiver("default", "scaler");
    let scale = |backend: &str, scale| StateWrite::LocalScale { backend: backend.into(), service: "web".into(), scale };
    for (backend, n) in [("local", 3), ("local", 5), ("other", 7)] {
        store.record_execution(&execution(r.id, n), Some(&scale(backend, n))).await.unwrap();
    }
    let scales = store.local_scales("local").await.unwrap();
    assert_eq!(scales.get("web"), Some(&5));
    assert_eq!(scales.len(), 1);
    assert_eq!(store.count_executions(r.id).await.unwrap(), 3);
    store.ping().await.unwrap();
}

async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/dir/hookd.db").display());
    let store = store::open(&url, Retention::default()).await.unwrap();
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
        let store = store::open(&url, Retention::default()).await.unwrap();
        store.insert_receiver(&r).await.unwrap();
        store.record_execution(&e, None).await.unwrap();
        store.close().await;
    }
    let store = store::open(&url, Retention::default()).await.unwrap();
    assert_eq!(store.receiver(r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(store.list_executions(r.id, 10, None).await.unwrap(), vec![e]);
}
