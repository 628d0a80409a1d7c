//! The store contract: every `Store` implementation must pass these. Run here on SQLite;
//! a PostgreSQL store runs the same functions. Each contract ends by reading everything
//! again through a fresh store on the same database, past any cache.

use std::sync::Arc;

use futures_util::future::join_all;
use hookd::{
    config::Retention,
    domain::{
        now_millis, verify::SenderCheck, AlertRef, AlertStatus, ApiTokenId, AuditId, Decided, DedupKey, DriverConfig,
        Effect, Execution, ExecutionId, Outcome, ProjectName, Receiver, ReceiverId, ReceiverName, ScaleAction,
        ScaleServiceConfig, ServiceId, ServiceKey,
    },
    store::{self, ApiToken, AuditEntry, Role, StateWrite, Store, StoreError, StoredProject},
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
        verify: None,
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
        effect: Effect::Scale { from: n, to: n + 1 },
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
            labels: Default::default(),
            annotations: Default::default(),
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

    let stored = store
        .edit_receiver(
            a.id,
            Box::new(|r: &mut Receiver| {
                r.name = ReceiverName::parse("renamed").unwrap();
                r.enabled = false;
                r.token_generation = 2;
            }),
        )
        .await
        .unwrap();
    assert_eq!((stored.name.as_str(), stored.enabled, stored.token_generation), ("renamed", false, 2));
    assert_eq!((stored.revision, stored.created), (2, a.created), "an edit bumps the revision, keeps the rest");
    assert_eq!(store.receiver(a.id).await.unwrap(), Some(stored.clone()));
    // Concurrent edits each apply to the one before: none is lost.
    let bumps = join_all((0..20).map(|_| store.edit_receiver(a.id, Box::new(|r| r.token_generation += 1)))).await;
    assert!(bumps.iter().all(Result::is_ok));
    let after = store.receiver(a.id).await.unwrap().unwrap();
    assert_eq!((after.token_generation, after.revision), (22, 22));
    let clash = |r: &mut Receiver| r.name = ReceiverName::parse("renamed").unwrap();
    assert!(matches!(store.edit_receiver(more[0].id, Box::new(clash)).await, Err(StoreError::Conflict(_))));
    assert_eq!(
        store.receiver(more[0].id).await.unwrap().unwrap().name.as_str(),
        "r0",
        "a refused edit changes nothing"
    );
    let ghost = ReceiverId::generate();
    assert!(matches!(store.edit_receiver(ghost, Box::new(|_| {})).await, Err(StoreError::NotFound)));

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
    assert!(writes.iter().all(Result::is_ok), "{:?}", writes.iter().find(|w| w.is_err()));
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

    // Issue 18: a service's recommendations, read from a time on; those over an hour old go.
    use hookd::domain::target::Recommendation;
    let hour = 3_600_000;
    let rec = |at, replicas, source: &str| Recommendation { at, replicas, source: source.into() };
    for (at, replicas) in [(10_000, 4), (20_000, 2), (hour + 15_000, 3), (hour + 30_000, 1)] {
        store.record_recommendation(&web(), rec(at, replicas, "a")).await.unwrap();
    }
    store.record_recommendation(&elsewhere, rec(hour + 31_000, 9, "a")).await.unwrap();
    store.record_recommendation(&web(), rec(hour + 32_000, 7, "b")).await.unwrap();
    store.forget_recommendations(&web(), "b").await.unwrap();
    let mut since = store.recommendations(&web(), 0).await.unwrap();
    since.sort_by_key(|r| r.at);
    let kept: Vec<(i64, u32)> = since.iter().map(|r| (r.at, r.replicas)).collect();
    assert_eq!(kept, [(hour + 15_000, 3), (hour + 30_000, 1)], "those over an hour before the last are gone");
    assert_eq!(store.recommendations(&web(), hour + 20_000).await.unwrap(), [rec(hour + 30_000, 1, "a")]);
    store.forget_recommendations(&web(), "a").await.unwrap();
    assert_eq!(store.recommendations(&web(), 0).await.unwrap(), [], "a resolved group takes its own back");
    assert_eq!(store.recommendations(&elsewhere, 0).await.unwrap().len(), 1, "per service");
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
        expires: Some(now_millis() + 86_400_000),
        created_by: Some(ApiTokenId::generate()),
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

/// Issue 14: tokens listed and revoked, projects made and deleted (with their tokens, never
/// while they hold receivers), signing keys retired, the audit log paged newest first.
async fn access_contract(store: Arc<dyn Store>) {
    let team = ProjectName::parse("team").unwrap();
    let token = |name: &str, project: Option<&ProjectName>| ApiToken {
        id: ApiTokenId::generate(),
        name: name.into(),
        hash: hookd::auth::hash_token(name),
        role: Role::Owner,
        project: project.cloned(),
        created: now_millis(),
        expires: None,
        created_by: None,
    };
    let (global, scoped) = (token("global", None), token("scoped", Some(&team)));
    for t in [&global, &scoped] {
        store.insert_api_token(t).await.unwrap();
    }
    assert_eq!(store.list_api_tokens(None).await.unwrap(), vec![global.clone(), scoped.clone()]);
    assert_eq!(store.list_api_tokens(Some(&team)).await.unwrap(), vec![scoped.clone()]);
    assert_eq!(store.api_token(scoped.id).await.unwrap(), Some(scoped.clone()));

    let project = StoredProject { name: team.clone(), backend: "local".into(), created: now_millis() };
    store.insert_project(&project).await.unwrap();
    assert!(matches!(store.insert_project(&project).await, Err(StoreError::Conflict(_))), "names are unique");
    assert_eq!(store.projects().await.unwrap(), vec![project.clone()]);
    // A receiver's sender check reads back as written (issue 14).
    let checked = Receiver {
        verify: Some(SenderCheck::Header { name: "X-Token".into(), bearer: false, hash: [7; 32] }),
        ..receiver("default", "checked")
    };
    store.insert_receiver(&checked).await.unwrap();
    assert_eq!(store.receiver(checked.id).await.unwrap(), Some(checked.clone()));
    let sealed = Some(SenderCheck::StandardWebhooks { sealed: vec![1, 2, 3] });
    let sealed_again = sealed.clone();
    let edited = store.edit_receiver(checked.id, Box::new(move |r| r.verify = sealed_again)).await.unwrap();
    assert_eq!(edited.verify, sealed);
    assert_eq!(store.receiver(checked.id).await.unwrap().unwrap().verify, sealed);
    store.delete_receiver(checked.id).await.unwrap();
    let r = receiver("team", "busy");
    store.insert_receiver(&r).await.unwrap();
    assert!(matches!(store.delete_project(&team).await, Err(StoreError::Conflict(_))), "not while it has receivers");
    store.delete_receiver(r.id).await.unwrap();
    assert!(store.delete_project(&team).await.unwrap());
    assert!(!store.delete_project(&team).await.unwrap());
    assert_eq!(store.list_api_tokens(None).await.unwrap(), vec![global.clone()], "its tokens went with it");
    assert!(store.delete_api_token(global.id).await.unwrap());
    assert!(!store.delete_api_token(global.id).await.unwrap());

    let (old, new) = (new_signing_key(), new_signing_key());
    store.insert_signing_key(&old).await.unwrap();
    store.insert_signing_key(&new).await.unwrap();
    assert_eq!(store.retire_signing_keys(&new.kid, 42).await.unwrap(), 1);
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.iter().find(|k| k.kid == old.kid).unwrap().retired, Some(42));
    assert_eq!(keys.iter().find(|k| k.kid == new.kid).unwrap().retired, None);

    let entry = |n: u32, project: Option<&ProjectName>| AuditEntry {
        id: AuditId::generate(),
        at: now_millis(),
        actor: "global".into(),
        actor_id: global.id,
        project: project.cloned(),
        action: "receiver.create".into(),
        target: format!("r{n}"),
        detail: String::new(),
    };
    let entries: Vec<AuditEntry> = (0..5).map(|n| entry(n, if n % 2 == 0 { Some(&team) } else { None })).collect();
    for e in &entries {
        store.record_audit(e).await.unwrap();
    }
    let all = store.list_audit(None, 10, None).await.unwrap();
    assert_eq!(all.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["r4", "r3", "r2", "r1", "r0"]);
    assert_eq!(all[0], entries[4], "every field reads back");
    let of_team = store.list_audit(Some(&team), 2, None).await.unwrap();
    assert_eq!(of_team.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["r4", "r2"]);
    let next = store.list_audit(Some(&team), 2, Some(of_team[1].id)).await.unwrap();
    assert_eq!(next.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["r0"]);
}

/// Retention by age (30 days) and per receiver (10, within a tenth of slack).
async fn retention_contract(store: Arc<dyn Store>) {
    let r = receiver("default", "kept");
    let old = Execution { at: now_millis() - 40 * 86_400_000, ..execution(r.id, 0) };
    store.record_execution(&old, None).await.unwrap();
    let fresh = execution(r.id, 1);
    store.record_execution(&fresh, None).await.unwrap();
    let ids: Vec<ExecutionId> = store.list_executions(r.id, 10, None).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![fresh.id], "older than 30 days is gone");

    let kept = forty_each_for_four(&store).await;
    assert!(kept.iter().all(|n| (10..=11).contains(n)), "per receiver: {kept:?} kept");
    assert_eq!(store.disk_usage().executions as usize, kept.iter().sum::<usize>() + 1);
}

/// Retention in all (24, within a hundredth of slack): the oldest go first, whoever they belong to.
async fn retention_total_contract(store: Arc<dyn Store>) {
    let kept = forty_each_for_four(&store).await;
    assert!(kept.iter().all(|n| (5..=7).contains(n)), "per receiver: {kept:?} kept");
    assert!((24..=25).contains(&kept.iter().sum::<usize>()), "{kept:?} kept in all");
}

/// Records 40 executions for each of four receivers, in turns; returns how many each kept,
/// checking that the newest are.
async fn forty_each_for_four(store: &Arc<dyn Store>) -> Vec<usize> {
    let receivers: Vec<Receiver> = (0..4).map(|i| receiver("default", &format!("busy{i}"))).collect();
    for n in 0..40 {
        for r in &receivers {
            store.record_execution(&execution(r.id, n), None).await.unwrap();
        }
    }
    let mut kept = Vec::new();
    for r in &receivers {
        let held = store.list_executions(r.id, 100, None).await.unwrap();
        assert_eq!(held[0].reason, "step 39", "the newest are kept");
        kept.push(held.len());
    }
    kept
}

async fn sqlite_with(retention: Retention) -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hookd.db").display());
    (dir, store::open(&url, retention).await.unwrap())
}

#[tokio::test]
async fn sqlite_retention() {
    let (_dir, store) = sqlite_with(Retention { max_age_days: 30, per_receiver: 10, total: 1000 }).await;
    retention_contract(store).await;
    let (_dir, store) = sqlite_with(Retention { max_age_days: 0, per_receiver: 0, total: 24 }).await;
    retention_total_contract(store).await;
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

/// Everything written reads back the same through a fresh store: past every cache.
#[tokio::test]
async fn sqlite_access() {
    let (_dir, store) = sqlite().await;
    access_contract(store).await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hookd.db").display());
    let r = receiver("default", "durable");
    let e = Execution { dedup_key: Some(key("n")), ..execution(r.id, 1) };
    let updated = {
        let store = store::open(&url, Retention::default()).await.unwrap();
        store.insert_receiver(&r).await.unwrap();
        let edit = |r: &mut Receiver| {
            r.token_generation = 7;
            r.enabled = false;
        };
        let updated = store.edit_receiver(r.id, Box::new(edit)).await.unwrap();
        let state = StateWrite::LocalScale { backend: "local".into(), service: "web".into(), scale: 4 };
        store.record_execution(&e, Some(&state)).await.unwrap();
        store.close().await;
        updated
    };
    let store = store::open(&url, Retention::default()).await.unwrap();
    assert_eq!(store.receiver(r.id).await.unwrap(), Some(updated));
    assert_eq!(store.list_executions(r.id, 10, None).await.unwrap(), vec![e.clone()]);
    assert_eq!(store.local_scales("local").await.unwrap().get("web"), Some(&4));
    assert_eq!(store.last_change(&web()).await.unwrap(), Some(e.at));
    let decided = Decided { at: e.at, execution: e.id };
    assert_eq!(store.last_decided(r.id, &key("n"), 0).await.unwrap(), Some(decided), "dedup survives a restart");
}

#[tokio::test]
async fn sqlite_a_second_store_on_one_file_is_refused() {
    let (dir, _store) = sqlite_with(Retention::default()).await;
    let url = format!("sqlite://{}", dir.path().join("hookd.db").display());
    let Err(error) = store::open(&url, Retention::default()).await else { panic!("two stores on one file") };
    assert!(error.to_string().contains("in use by another hookd"), "{error}");
}

/// Review of issue 12: finished jobs older than the history's age limit are pruned at the
/// next age sweep (one runs when a store opens); a running job is never pruned.
#[tokio::test]
async fn sqlite_old_finished_jobs_are_pruned_and_running_ones_kept() {
    use hookd::domain::{Job, JobId, JobState, Rollout};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hookd.db").display());
    let job = |state: JobState, days_ago: i64| {
        let at = now_millis() - days_ago * 86_400_000;
        Job {
            id: JobId::generate(),
            receiver: ReceiverId::generate(),
            project: ProjectName::parse("default").unwrap(),
            execution: ExecutionId::generate(),
            backend: "local".into(),
            kind: hookd::domain::JobKind::Upgrade,
            state,
            rollout: Rollout { batch_size: 1, interval_seconds: 1, start_first: false },
            steps: Vec::new(),
            error: None,
            created: at,
            updated: at,
            finished: (state != JobState::Running).then_some(at),
        }
    };
    let (old_done, old_running, recent) =
        (job(JobState::Succeeded, 40), job(JobState::Running, 40), job(JobState::Failed, 1));
    {
        let store = store::open(&url, Retention::default()).await.unwrap();
        for j in [&old_done, &old_running, &recent] {
            store.save_job(j, None).await.unwrap();
        }
        store.close().await;
    }
    let store = store::open(&url, Retention::default()).await.unwrap();
    store.save_job(&recent, None).await.unwrap();
    assert_eq!(store.job(old_done.id).await.unwrap(), None, "40 days old and finished: pruned");
    assert_eq!(store.job(old_running.id).await.unwrap(), Some(old_running.clone()), "running: kept");
    assert_eq!(store.job(recent.id).await.unwrap(), Some(recent.clone()));
    assert_eq!(store.running_jobs().await.unwrap(), vec![old_running]);
}

// The same contract on PostgreSQL, a fresh database each.

async fn postgres_with(retention: Retention) -> Arc<dyn Store> {
    store::open(&crate::pg::fresh_database().await, retention).await.unwrap()
}

async fn postgres() -> Arc<dyn Store> {
    postgres_with(Retention::default()).await
}

#[tokio::test]
#[ignore = "needs PostgreSQL: ./scripts/test.sh starts one"]
async fn postgres_receivers() {
    receivers_contract(postgres().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: ./scripts/test.sh starts one"]
async fn postgres_executions() {
    executions_contract(postgres().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: ./scripts/test.sh starts one"]
async fn postgres_history() {
    history_contract(postgres().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: ./scripts/test.sh starts one"]
async fn postgres_keys_tokens_scales() {
    keys_tokens_scales_contract(postgres().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: ./scripts/test.sh starts one"]
async fn postgres_access() {
    access_contract(postgres().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: ./scripts/test.sh starts one"]
async fn postgres_retention() {
    retention_contract(postgres_with(Retention { max_age_days: 30, per_receiver: 10, total: 1000 }).await).await;
    retention_total_contract(postgres_with(Retention { max_age_days: 0, per_receiver: 0, total: 24 }).await).await;
}

/// Everything written through one store reads back through another on the same database,
/// as a second replica sees it.
#[tokio::test]
#[ignore = "needs PostgreSQL: ./scripts/test.sh starts one"]
async fn postgres_data_survives_reopening_and_a_second_store_sees_it() {
    let url = crate::pg::fresh_database().await;
    let r = receiver("default", "durable");
    let e = Execution { dedup_key: Some(key("n")), ..execution(r.id, 1) };
    let (first, second) = (
        store::open(&url, Retention::default()).await.unwrap(),
        store::open(&url, Retention::default()).await.unwrap(),
    );
    first.insert_receiver(&r).await.unwrap();
    let updated = second.edit_receiver(r.id, Box::new(|r: &mut Receiver| r.token_generation = 7)).await.unwrap();
    let state = StateWrite::LocalScale { backend: "local".into(), service: "web".into(), scale: 4 };
    first.record_execution(&e, Some(&state)).await.unwrap();
    assert_eq!(second.receiver(r.id).await.unwrap(), Some(updated.clone()));
    assert_eq!(second.last_decided(r.id, &key("n"), 0).await.unwrap(), Some(Decided { at: e.at, execution: e.id }));
    assert!(second.delete_receiver(r.id).await.unwrap());
    assert_eq!(first.receiver(r.id).await.unwrap(), None, "a delete on one is seen at once on the other");
    first.close().await;
    let again = store::open(&url, Retention::default()).await.unwrap();
    assert_eq!(again.local_scales("local").await.unwrap().get("web"), Some(&4));
    assert_eq!(again.last_change(&web()).await.unwrap(), Some(e.at));
}

/// Issue 15: a named lock is held across stores on one database, a job is claimed by one
/// owner until its lease lapses, and the local backend by one store.
#[tokio::test]
#[ignore = "needs PostgreSQL: ./scripts/test.sh starts one"]
async fn issue_15_locks_leases_and_the_local_claim_hold_across_stores() {
    use std::time::Duration;
    let url = crate::pg::fresh_database().await;
    // Opened at once: the migrations run once, under their lock.
    let mut opened = join_all((0..4).map(|_| store::open(&url, Retention::default()))).await.into_iter();
    let (a, b) = (opened.next().unwrap().unwrap(), opened.next().unwrap().unwrap());
    assert!(opened.all(|s| s.is_ok()), "every store opened");
    assert!(a.shared() && b.shared());
    let held = a.lock("service:x", Duration::from_secs(1)).await.unwrap().expect("free");
    let started = std::time::Instant::now();
    assert!(b.lock("service:x", Duration::from_millis(300)).await.unwrap().is_none(), "held by the other");
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited");
    assert!(b.lock("service:y", Duration::from_millis(300)).await.unwrap().is_some(), "another name is free");
    drop(held);
    let taken = crate::helpers::eventually(Duration::from_secs(5), || async {
        b.lock("service:x", Duration::from_millis(100)).await.unwrap().is_some()
    })
    .await;
    assert!(taken, "released when dropped");

    use hookd::domain::{Job, JobId, JobState, Rollout};
    let job = Job {
        id: JobId::generate(),
        receiver: ReceiverId::generate(),
        project: ProjectName::parse("default").unwrap(),
        execution: ExecutionId::generate(),
        backend: "docker".into(),
        kind: hookd::domain::JobKind::Upgrade,
        state: JobState::Running,
        rollout: Rollout { batch_size: 1, interval_seconds: 1, start_first: false },
        steps: Vec::new(),
        error: None,
        created: now_millis(),
        updated: now_millis(),
        finished: None,
    };
    a.save_job(&job, None).await.unwrap();
    assert!(a.orphaned_jobs().await.unwrap().is_empty(), "a new job is its maker's to claim");
    assert!(a.claim_job(job.id, "one", 60_000).await.unwrap());
    assert!(!b.claim_job(job.id, "two", 60_000).await.unwrap(), "a live lease is exclusive");
    assert!(a.claim_job(job.id, "one", -1).await.unwrap(), "its owner renews it (here: lets it lapse)");
    let orphans = b.orphaned_jobs().await.unwrap();
    assert_eq!(orphans.iter().map(|j| j.id).collect::<Vec<_>>(), vec![job.id], "a lapsed lease is an orphan");
    assert!(b.claim_job(job.id, "two", 60_000).await.unwrap(), "and is taken over");
    assert!(!a.claim_job(job.id, "one", 60_000).await.unwrap(), "its old owner has lost it");

    assert!(a.claim_local_backend().await.unwrap());
    assert!(a.claim_local_backend().await.unwrap(), "claiming again keeps it");
    assert!(!b.claim_local_backend().await.unwrap(), "one store has the local backend");
    a.close().await;
    let freed =
        crate::helpers::eventually(Duration::from_secs(5), || async { b.claim_local_backend().await.unwrap() }).await;
    assert!(freed, "a closed store lets it go");
}
