//! Issue 9: a 2xx is a promise. A full disk gets 503s, never a 2xx, and the store recovers
//! when space returns; a retried notification or request never steps twice; one data
//! directory, one hookd; the data is private.

use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, spawn_app_with, spawn_process_in, TestApp};

const FIRING: &str = include_str!("../fixtures/alertmanager-firing.json");

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts `size` of tmpfs at `path` (as root: the test is ignored otherwise).
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .status();
        assert!(status.is_ok_and(|s| s.success()), "mounting a tmpfs needs root; ./scripts/test.sh runs as root");
        Self(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        // The app's directory went first and could not remove the mount point: now it can
        // (issue 13: nothing left in /tmp).
        if let Some(root) = self.0.parent() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// Writes zeros into `file` until the file system is full.
fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// What the test saw acknowledged: execution ids, and `to` of each acknowledged change.
#[derive(Default)]
struct Acked {
    executions: Vec<String>,
    changes: Vec<(String, u64)>,
}

async fn hammer(app: &TestApp, urls: &[String], acked: &Mutex<Acked>, rounds: usize) -> HashMap<u16, usize> {
    let mut statuses = HashMap::new();
    for i in 0..rounds {
        let (status, body) = app.trigger(&urls[i % urls.len()]).await;
        *statuses.entry(status.as_u16()).or_default() += 1;
        if status.is_success() {
            let mut acked = acked.lock().unwrap();
            let id = body["execution"].as_str().unwrap().to_owned();
            if body["outcome"] == "scaled" {
                acked.changes.push((id.clone(), body["to"].as_u64().unwrap()));
            }
            acked.executions.push(id);
        } else {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert_eq!(body["code"], "store_unavailable", "{body}");
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a tmpfs: ./scripts/test.sh"]
async fn issue_9_a_full_disk_never_gets_a_2xx_and_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let _tmpfs = Tmpfs::mount(&dir.path().join("data"), "3m");
    let mut app = spawn_process_in(dir, |c| {
        c.database_url = None; // SQLite on the full disk, on every run
        c.backends[0].services[0].scale = 3;
    })
    .await;
    let mut urls = Vec::new();
    for (name, action) in [("up", "up"), ("down", "down")] {
        let r = app.web_receiver(name, action, json!({"cooldownDownSeconds": 0})).await;
        urls.push(r["url"].as_str().unwrap().to_owned());
    }
    let alerts = app.web_receiver("alerts", "up", json!({})).await;
    let alerts_url = alerts["url"].as_str().unwrap().to_owned();
    let acked = Arc::new(Mutex::new(Acked::default()));
    hammer(&app, &urls, &acked, 20).await;

    // The idle writer empties the log; then the disk fills up.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let filler = app.config.data_dir.join("filler");
    fill(&filler);
    let statuses = hammer(&app, &urls, &acked, 200).await;
    assert!(statuses.get(&503).copied().unwrap_or(0) > 150, "a full disk answers 503: {statuses:?}");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not ready while it cannot write: {body}");
    let scale_before = app.desired_scale("web").await;
    let (status, body) = app.notify(&alerts_url, FIRING).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(app.desired_scale("web").await, scale_before, "a 503 did nothing");
    let (status, body) = app.get("/v1-webhooks/receivers?limit=5").await;
    assert_eq!(status, StatusCode::OK, "reads still work: {body}");

    // Space returns: the very next writes succeed, and the retried notification steps once.
    std::fs::remove_file(&filler).unwrap();
    let ready = eventually(Duration::from_secs(10), || async { app.get("/readyz").await.0 == StatusCode::OK }).await;
    assert!(ready, "ready again once the disk has room");
    let (status, first) = app.notify(&alerts_url, FIRING).await;
    assert_eq!((status, first["outcome"].as_str()), (StatusCode::OK, Some("scaled")), "{first}");
    let (_, retry) = app.notify(&alerts_url, FIRING).await;
    assert_eq!((retry["outcome"].as_str(), retry["reason"].as_str()), (Some("skipped"), Some("duplicate")));
    {
        let mut acked = acked.lock().unwrap();
        acked.changes.push((first["execution"].as_str().unwrap().to_owned(), first["to"].as_u64().unwrap()));
        acked.executions.push(first["execution"].as_str().unwrap().to_owned());
        acked.executions.push(retry["execution"].as_str().unwrap().to_owned());
    }
    let statuses = hammer(&app, &urls, &acked, 20).await;
    assert_eq!(statuses.get(&200), Some(&20), "{statuses:?}");

    // Every acknowledged trigger survives a kill -9, and the last acknowledged scale stands.
    app.kill9();
    app.start_again().await;
    let mut recorded = std::collections::HashSet::new();
    for r in app.get("/v1-webhooks/receivers").await.1["data"].as_array().unwrap() {
        recorded.extend(app.executions(r).await.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    }
    let (executions, last) = {
        let acked = acked.lock().unwrap();
        let last = acked.changes.iter().max_by(|a, b| a.0.cmp(&b.0)).unwrap().1;
        (acked.executions.clone(), last)
    };
    let lost: Vec<&String> = executions.iter().filter(|id| !recorded.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged triggers lost: {lost:?}", lost.len());
    assert_eq!(recorded.len(), executions.len(), "nothing recorded that was not acknowledged");
    assert_eq!(app.desired_scale("web").await, last, "the last acknowledged change stands");
}

#[tokio::test]
async fn issue_9_a_request_retried_with_its_idempotency_key_steps_once() {
    let app = spawn_app().await;
    let up = app.scale_receiver("up", "web", "up", 1, 1, 10).await;
    let url = up["url"].as_str().unwrap();
    let post = |key: &'static str| {
        let request = app.http.post(url).header("Idempotency-Key", key);
        async move { crate::helpers::read(request.send().await.unwrap()).await }
    };
    let (status, first) = post("deploy-42").await;
    assert_eq!((status, first["outcome"].as_str(), first["to"].as_u64()), (StatusCode::OK, Some("scaled"), Some(2)));
    let (status, again) = post("deploy-42").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((again["outcome"].as_str(), again["reason"].as_str()), (Some("skipped"), Some("duplicate")));
    assert!(again["detail"].as_str().unwrap().contains(first["execution"].as_str().unwrap()), "{again}");
    let (_, other) = post("deploy-43").await;
    assert_eq!(other["to"], 3, "another key is another request: {other}");
    assert_eq!(app.desired_scale("web").await, 3);
    let (_, plain) = app.trigger(url).await;
    assert_eq!(plain["to"], 4, "without a key, every POST acts");
    for bad in ["", "a b", &"k".repeat(256)] {
        let (status, body) =
            crate::helpers::read(app.http.post(url).header("Idempotency-Key", bad).send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_idempotency_key")));
    }
    assert_eq!(app.desired_scale("web").await, 4, "a refused request does nothing");
}

#[tokio::test]
async fn issue_9_a_second_hookd_on_a_data_directory_is_refused() {
    let app = spawn_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let Err(error) = hookd::server::App::build(app.config.clone(), listener).await else {
        panic!("a second hookd started on a data directory in use")
    };
    let message = format!("{error:#}");
    assert!(message.contains(&app.config.data_dir.display().to_string()), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
    // The first one is unharmed.
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn issue_9_the_data_directory_is_private() {
    let app = spawn_app_with(|c| {
        std::fs::create_dir_all(&c.data_dir).unwrap();
        std::fs::set_permissions(&c.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        c.database_url = None; // the SQLite files are checked too, on every run
    })
    .await;
    let r = app.scale_receiver("up", "web", "up", 1, 1, 10).await;
    app.trigger(r["url"].as_str().unwrap()).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&app.config.data_dir), 0o700);
    for entry in std::fs::read_dir(&app.config.data_dir).unwrap().flatten() {
        assert_eq!(mode(&entry.path()), 0o600, "{} is readable by others", entry.path().display());
    }
    let names: Vec<String> = std::fs::read_dir(&app.config.data_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().any(|n| n == "hookd.db"), "{names:?}");
}

#[tokio::test]
async fn issue_9_a_trigger_answers_only_what_is_durable_even_with_an_alertmanager_retry_storm() {
    // Alertmanager retries a notification until it gets a 2xx; a storm of concurrent retries
    // of one notification must step exactly once.
    let app = spawn_app().await;
    let up = app.web_receiver("alerts", "up", json!({})).await;
    let url = up["url"].as_str().unwrap().to_owned();
    let answers = futures_util::future::join_all((0..50).map(|_| app.notify(&url, FIRING))).await;
    let scaled: Vec<&Value> = answers.iter().map(|(_, a)| a).filter(|a| a["outcome"] == "scaled").collect();
    assert_eq!(scaled.len(), 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|(s, a)| *s == StatusCode::OK && (a["outcome"] == "scaled" || a["reason"] == "duplicate")));
    assert_eq!(app.desired_scale("web").await, 2);
}

/// Issue 9: pruning the history must not make a retry act twice. The execution that acted
/// on a key is pruned, hookd restarts (memory empty), and the retry is still a duplicate.
#[tokio::test]
async fn issue_9_a_retry_stays_a_duplicate_after_its_execution_is_pruned() {
    let mut app = spawn_app_with(|c| {
        c.retention.per_receiver = 5;
        c.retention.total = 20;
    })
    .await;
    let up = app.web_receiver("up", "up", json!({"cooldownUpSeconds": 0})).await;
    let path = up["url"].as_str().unwrap().split_once("/v1-webhooks/").unwrap().1.to_owned();
    let keyed = |app: &TestApp| {
        let request = app.http.post(format!("{}/v1-webhooks/{path}", app.base)).header("Idempotency-Key", "order-42");
        async move { crate::helpers::read(request.send().await.unwrap()).await }
    };
    let (_, first) = keyed(&app).await;
    assert_eq!(first["outcome"], "scaled", "{first}");
    let (_, alert) = app.notify(&format!("{}/v1-webhooks/{path}", app.base), FIRING).await;
    assert_eq!(alert["outcome"], "scaled", "{alert}");
    for _ in 0..30 {
        app.trigger(&format!("{}/v1-webhooks/{path}", app.base)).await;
    }
    let kept: Vec<String> = app.executions(&up).await.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert!(!kept.contains(&first["execution"].as_str().unwrap().to_owned()), "the test needs the row pruned");
    let scale = app.desired_scale("web").await;

    app.restart().await;
    let (_, retry) = keyed(&app).await;
    assert_eq!((retry["outcome"].as_str(), retry["reason"].as_str()), (Some("skipped"), Some("duplicate")), "{retry}");
    let (_, resent) = app.notify(&format!("{}/v1-webhooks/{path}", app.base), FIRING).await;
    assert_eq!(resent["reason"], "duplicate", "{resent}");
    assert_eq!(app.desired_scale("web").await, scale);
}

/// Issue 9 (review): a second `hookd serve` with the same config names the data directory
/// and the holder's pid; it used to fail on the port first ("address in use").
#[tokio::test]
async fn issue_9_a_second_hookd_with_the_same_config_says_whose_directory_it_is() {
    let app = crate::helpers::spawn_process_with(|_| {}).await;
    let output = std::process::Command::new(crate::helpers::keeper_binary())
        .args(["serve", "--config"])
        .arg(app.work_dir().join("hookd.toml"))
        .env("HOOKD_ADMIN_TOKEN", &app.token)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is in use by another hookd"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", app.pid())), "{stderr}");
}
