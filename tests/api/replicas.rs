//! Issue 15: several hookd processes on one PostgreSQL database behave as one.

use std::time::Duration;

use futures_util::future::join_all;
use hookd::config::{BackendConfig, BackendKind, Config, ProjectConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    docker::{docker, engine, IMAGE},
    helpers::{eventually, spawn_process_with, TestApp},
};

/// Each replica's config: a docker backend only (the local backend is refused with several),
/// one database, one sealing key.
fn replica(config: &mut Config, host: &str, database: &str, sealing_key: &std::path::Path) {
    config.backends = vec![BackendConfig {
        name: "docker".into(),
        kind: BackendKind::Docker,
        endpoint: Some(host.to_owned()),
        stop_grace_seconds: 2,
        cgroups: false,
        keeper_binary: None,
        services: Vec::new(),
        ..BackendConfig::new("", BackendKind::Local)
    }];
    config.projects = vec![ProjectConfig { name: "default".into(), backend: "docker".into(), namespace: None }];
    config.database_url = Some(hookd::config::Secret::new(database));
    config.sealing_key_file = Some(sealing_key.to_owned());
    config.limits.triggers_per_receiver_per_second = 0;
}

/// Three hookd processes on a fresh database and the test engine.
async fn three(host: &str) -> (Vec<TestApp>, tempfile::TempDir) {
    let database = crate::pg::fresh_database().await;
    let shared = tempfile::tempdir().unwrap();
    let key = shared.path().join("sealing.key");
    // Started at once: migrations, the first signing key and the admin tokens race.
    let apps = join_all((0..3).map(|_| spawn_process_with(|c| replica(c, host, &database, &key)))).await;
    (apps, shared)
}

/// The same trigger URL on another replica (as a load balancer would send it).
fn on(app: &TestApp, url: &str) -> String {
    let path = &url[url.find("/v1-webhooks").expect("a trigger URL")..];
    format!("{}{path}", app.base)
}

/// A trigger, repeated while hookd answers 503 or 429 (each did nothing), as a sender retries.
async fn trigger_until_answered(app: &TestApp, url: &str) -> (StatusCode, Value) {
    loop {
        let (status, answer) = app.trigger(url).await;
        if !matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
            return (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scale_receiver(app: &TestApp, service: &str, max: u32) -> String {
    let (status, r) = app
        .create_receiver(json!({"name": "up", "driver": "scaleService", "scaleServiceConfig": {
            "serviceId": service, "action": "up", "amount": 1, "min": 1, "max": max,
            "cooldownUpSeconds": 0, "cooldownDownSeconds": 0}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r["url"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and a Docker engine: ./scripts/test.sh starts them"]
async fn issue_15_three_replicas_300_ups_end_at_exactly_100_with_300_rows() {
    let host = engine();
    let (apps, _shared) = three(&host).await;
    let name = format!("replicas-{}", &apps[0].marker[20..]);
    docker(&host, &["service", "create", "--detach", "--name", &name, "--replicas", "1", IMAGE]).await;
    let up = scale_receiver(&apps[0], &name, 100).await;
    let urls: Vec<(usize, String)> = (0..300).map(|i| (i % 3, on(&apps[i % 3], &up))).collect();
    let started = std::time::Instant::now();
    let answers = join_all(urls.iter().map(|(i, url)| trigger_until_answered(&apps[*i], url))).await;
    eprintln!("300 triggers over three replicas answered in {:?}", started.elapsed());
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{:?}",
        answers.iter().find(|(s, _)| *s != StatusCode::OK)
    );
    let scaled = answers.iter().filter(|(_, a)| a["outcome"] == "scaled").count();
    assert_eq!(scaled, 99, "1 → 100, one step each");
    let spec = docker(&host, &["service", "inspect", &name, "--format", "{{.Spec.Mode.Replicated.Replicas}}"]).await;
    assert_eq!(spec.trim(), "100");
    let (_, receivers) = apps[1].get("/v1-webhooks/receivers").await;
    let rid = receivers["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, history) = apps[2].get(&format!("/v1-webhooks/receivers/{rid}/executions?limit=1000")).await;
    let rows = history["data"].as_array().unwrap();
    assert_eq!(rows.len(), 300, "one history row per answered trigger, whichever replica took it");
    assert!(rows.iter().all(|r| r["outcome"] == "scaled" || r["outcome"] == "unchanged"), "no failed step");
    docker(&host, &["service", "rm", &name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and a Docker engine: ./scripts/test.sh starts them"]
async fn issue_15_a_receiver_deleted_on_one_replica_is_refused_at_once_on_the_others() {
    let host = engine();
    let (apps, _shared) = three(&host).await;
    let name = format!("deleted-{}", &apps[0].marker[20..]);
    docker(&host, &["service", "create", "--detach", "--name", &name, "--replicas", "1", IMAGE]).await;
    let up = scale_receiver(&apps[0], &name, 5).await;
    let (_, receivers) = apps[0].get("/v1-webhooks/receivers").await;
    let rid = receivers["data"][0]["id"].as_str().unwrap().to_owned();
    // A dry run passes the token and receiver checks on every replica.
    for app in &apps {
        let (status, answer) = app.trigger(&format!("{}&dryRun=1", on(app, &up))).await;
        assert_ne!(answer["code"], "receiver_revoked", "{status} {answer}");
    }
    let (status, _) = apps[1].request(reqwest::Method::DELETE, &format!("/v1-webhooks/receivers/{rid}"), None).await;
    assert!(status.is_success(), "{status}");
    for app in &apps {
        let (status, answer) = app.trigger(&on(app, &up)).await;
        assert_eq!((status, answer["code"].as_str()), (StatusCode::FORBIDDEN, Some("receiver_revoked")), "{answer}");
    }
    docker(&host, &["service", "rm", &name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and a Docker engine: ./scripts/test.sh starts them"]
async fn issue_15_a_replica_killed_mid_upgrade_has_its_job_finished_by_another() {
    let host = engine();
    let (mut apps, _shared) = three(&host).await;
    let label = format!("takeover-{}", &apps[0].marker[20..]);
    let tag: &'static str = Box::leak(format!("hookd-test/sleeper:{label}").into_boxed_str());
    crate::docker_rollout::image(&host, tag, 2);
    docker(
        &host,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            &label,
            "--label",
            &format!("app={label}"),
            "--replicas",
            "3",
            IMAGE,
        ],
    )
    .await;
    let (status, r) = apps[0]
        .create_receiver(json!({"name": "deploy", "driver": "serviceUpgrade", "serviceUpgradeConfig": {
            "serviceSelector": {"app": label}, "tag": label, "batchSize": 1, "intervalMillis": 4}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (status, answer) = apps[0].notify(r["url"].as_str().unwrap(), &json!({"image": tag}).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job_path = answer["jobUrl"].as_str().unwrap().strip_prefix(&apps[0].base).unwrap().to_owned();
    let running = eventually(Duration::from_secs(20), || async {
        apps[0].get(&job_path).await.1["services"][0]["state"] == "running"
    })
    .await;
    assert!(running, "the job started");
    apps[0].kill9();
    let killed = std::time::Instant::now();
    let done =
        eventually(Duration::from_secs(120), || async { apps[1].get(&job_path).await.1["state"] != "running" }).await;
    let job = apps[2].get(&job_path).await.1;
    assert!(done, "no replica finished the job: {job}");
    eprintln!("job taken over and finished {:?} after the kill", killed.elapsed());
    assert_eq!(job["state"], "succeeded", "{job}");
    let image =
        docker(&host, &["service", "inspect", &label, "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]).await;
    assert!(image.trim().starts_with(tag), "{image}");
    docker(&host, &["service", "rm", &label]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and a Docker engine: ./scripts/test.sh starts them"]
async fn issue_15_the_local_backend_is_refused_on_a_second_replica_and_keys_must_match() {
    let database = crate::pg::fresh_database().await;
    let shared = tempfile::tempdir().unwrap();
    let key = shared.path().join("sealing.key");
    let first = crate::helpers::spawn_app_with(|c| {
        c.database_url = Some(hookd::config::Secret::new(&database));
        c.sealing_key_file = Some(key.clone());
    })
    .await;
    let mut second = crate::helpers::test_config(&shared.path().join("second"), "unused");
    second.database_url = Some(hookd::config::Secret::new(&database));
    second.sealing_key_file = Some(key.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let Err(refused) = hookd::server::App::build(second.clone(), listener).await else { panic!("two local backends") };
    assert!(refused.to_string().contains("another hookd on this database runs the local backend"), "{refused}");

    second.sealing_key_file = Some(shared.path().join("other.key"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let Err(refused) = hookd::server::App::build(second, listener).await else { panic!("two sealing keys") };
    assert!(
        refused.to_string().contains("is not the one this database's sender secrets were sealed with"),
        "{refused}"
    );
    drop(first);
}

/// A private cluster (restarting the shared one would break other tests); stopped on drop.
struct PrivateCluster {
    dir: tempfile::TempDir,
    url: String,
}

impl PrivateCluster {
    fn script(args: &[&str]) -> String {
        Self::script_with(args, false)
    }

    fn script_with(args: &[&str], tls: bool) -> String {
        let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))
            .args(args)
            .env("HOOKD_PG_TLS", if tls { "1" } else { "" })
            .output()
            .expect("scripts/postgres.sh runs");
        assert!(out.status.success(), "postgres.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = Self::script(&["start", dir.path().to_str().unwrap()]);
        Self { dir, url }
    }

    /// A cluster that also speaks TLS, its certificate signed by a CA in `DIR/ca.crt`.
    fn start_with_tls() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = Self::script_with(&["start", dir.path().to_str().unwrap()], true);
        Self { dir, url }
    }

    /// Stops the cluster, leaves it down for `down` (longer than hookd waits for a
    /// connection), and starts it again on its port.
    fn restart_after(&self, down: Duration) {
        let dir = self.dir.path().to_str().unwrap();
        Self::script(&["stop", dir]);
        std::thread::sleep(down);
        let port = std::fs::read_to_string(self.dir.path().join("port")).unwrap();
        Self::script(&["start", dir, port.trim()]);
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        Self::script(&["stop", self.dir.path().to_str().unwrap()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: ./scripts/test.sh installs it"]
async fn issue_15_postgres_restarted_mid_load_loses_no_acknowledged_trigger() {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    };
    let cluster = PrivateCluster::start();
    let database = crate::pg::fresh_database_on(&cluster.url).await;
    let app = crate::helpers::spawn_app_with(|c| {
        c.database_url = Some(hookd::config::Secret::new(&database));
        c.limits.triggers_per_receiver_per_second = 0;
    })
    .await;
    let receiver = app.web_receiver("up", "up", json!({"cooldownUpSeconds": 0})).await;
    let url = receiver["url"].as_str().unwrap().to_owned();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<(u16, Option<String>, Value)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, acked, refused, stop) =
                (reqwest::Client::new(), url.clone(), acked.clone(), refused.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(response) = http.post(&url).send().await else { continue };
                    let status = response.status();
                    let retry_after =
                        response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    if status.is_success() {
                        acked.lock().unwrap().push(answer["execution"].as_str().unwrap().to_owned());
                    } else {
                        refused.lock().unwrap().push((status.as_u16(), retry_after, answer));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acked.lock().unwrap().len();
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.restart_after(Duration::from_secs(5));
        cluster
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    eprintln!("{} acknowledged ({before} before the restart), {} refused", acked.len(), refused.len());
    assert!(acked.len() > before, "triggers were acknowledged again after the restart");
    assert!(!refused.is_empty(), "the restart was noticed");
    for (status, retry_after, answer) in &refused {
        assert_eq!(*status, 503, "only 503 while the database is away: {answer}");
        assert!(retry_after.is_some(), "503 carries Retry-After: {answer}");
    }
    let recorded: std::collections::HashSet<String> =
        app.executions(&receiver).await.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !recorded.contains(id.as_str())).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged triggers are missing", lost.len(), acked.len());
}

/// Issue 15: hookd speaks TLS to PostgreSQL as the URL's `sslmode` says, and refuses a
/// server whose certificate it cannot verify.
#[tokio::test]
#[ignore = "needs PostgreSQL: ./scripts/test.sh installs it"]
async fn issue_15_tls_to_postgres_is_verified_when_the_url_asks() {
    let cluster = PrivateCluster::start_with_tls();
    let database = crate::pg::fresh_database_on(&cluster.url).await;
    let cert = cluster.dir.path().join("ca.crt");
    let verified = format!("{database}?sslmode=verify-full&sslrootcert={}", cert.display());
    let store = hookd::store::open(&verified, Default::default()).await.expect("TLS, verified");
    store.ping().await.unwrap();
    store.close().await;
    let wrong_root = cluster.dir.path().join("other.crt");
    std::fs::write(
        &wrong_root,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/other-ca.pem")).unwrap(),
    )
    .unwrap();
    let unverifiable = format!("{database}?sslmode=verify-full&sslrootcert={}", wrong_root.display());
    let Err(refused) = hookd::store::open(&unverifiable, Default::default()).await else {
        panic!("a certificate signed by no root it trusts was accepted")
    };
    let message = format!("{refused:#}");
    assert!(message.contains("127.0.0.1"), "names where: {message}");
    assert!(!message.contains("sslrootcert"), "never the URL: {message}");
}
