//! The local backend on real processes: restart, crash recovery, environment, graceful stop.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::helpers::{eventually, live_pids_with_env, spawn_app, spawn_app_with, TestApp};

async fn scale_to(app: &TestApp, service: &str, n: u32) {
    let r = app.scale_receiver(&format!("{service}-to-{n}"), service, "up", n - 1, 1, n).await;
    let (_, answer) = app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!(answer["to"].as_u64(), Some(u64::from(n)), "{answer}");
}

fn environ(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0).map(|e| String::from_utf8_lossy(e).into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_hookd_restores_the_scale() {
    let mut app = spawn_app().await;
    scale_to(&app, "web", 3).await;
    app.wait_for_processes("web", 3).await;
    app.stop().await;
    assert_eq!(app.live_processes("web"), 0, "a graceful stop stops the processes");
    app.restart().await;
    app.wait_for_processes("web", 3).await;
    assert_eq!(app.desired_scale("web").await, 3);
    app.wait_for_processes("api", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_is_restarted() {
    let app = spawn_app().await;
    app.wait_for_processes("web", 1).await;
    let before = app.live_pids("web")[0];
    kill(Pid::from_raw(before), Signal::SIGKILL).unwrap();
    let restarted = eventually(Duration::from_secs(10), || async {
        let pids = app.live_pids("web");
        pids.len() == 1 && pids[0] != before
    })
    .await;
    assert!(restarted, "web was not restarted: {:?}", app.live_pids("web"));
    let (_, services) = app.get("/v1-webhooks/services").await;
    let web = services["data"].as_array().unwrap().iter().find(|s| s["id"] == "web").unwrap().clone();
    assert!(web["lastError"].as_str().unwrap().contains("exited"), "{web}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_get_their_identity_and_scale_down_stops_the_newest() {
    let app = spawn_app().await;
    scale_to(&app, "web", 3).await;
    app.wait_for_processes("web", 3).await;
    let replica_of = |pid: i32| {
        let env = environ(pid);
        assert!(env.contains(&"HOOKD_SERVICE=web".to_owned()), "{env:?}");
        assert!(env.contains(&"HOOKD_IMAGE=example/web:1.0".to_owned()), "{env:?}");
        env.iter().find_map(|e| e.strip_prefix("HOOKD_REPLICA=").map(str::to_owned)).unwrap()
    };
    let mut replicas: Vec<String> = app.live_pids("web").into_iter().map(replica_of).collect();
    replicas.sort();
    assert_eq!(replicas, ["1", "2", "3"]);

    let down = app.scale_receiver("web-down", "web", "down", 2, 1, 3).await;
    app.trigger(down["url"].as_str().unwrap()).await;
    app.wait_for_processes("web", 1).await;
    let left: Vec<String> = app.live_pids("web").into_iter().map(replica_of).collect();
    assert_eq!(left, ["1"], "the newest replicas were stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let marker = uuid::Uuid::now_v7().simple().to_string();
    let stubborn = {
        let mut s = crate::helpers::sleep_service("stubborn", 2, &marker);
        // An ignored signal stays ignored across exec, so `sleep` itself ignores SIGTERM.
        s.command = "sh".into();
        s.args = vec!["-c".into(), "trap '' TERM; exec sleep 100000".into()];
        s
    };
    let app = spawn_app_with(move |config| config.backends[0].services.push(stubborn)).await;
    // Count only processes that have reached `sleep`, i.e. whose SIGTERM is already ignored.
    let count = || {
        live_pids_with_env(&format!("HOOKD_TEST_MARKER={marker}/stubborn"))
            .into_iter()
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep"))
            .count()
    };
    assert!(eventually(Duration::from_secs(10), || async { count() == 2 }).await);
    let down = app.scale_receiver("down", "stubborn", "down", 1, 1, 2).await;
    let asked = std::time::Instant::now();
    app.trigger(down["url"].as_str().unwrap()).await;
    // The lower scale settles for 1 s, then SIGTERM (ignored); SIGKILL only after the 2 s
    // grace period, so at 2.5 s both still run (issue 10: this used to be checked at 1 s,
    // before SIGTERM was even sent, and could not catch an early SIGKILL).
    tokio::time::sleep_until((asked + Duration::from_millis(2500)).into()).await;
    assert_eq!(count(), 2, "SIGTERM is ignored and the grace period is not over");
    assert!(eventually(Duration::from_secs(5), || async { count() == 1 }).await, "SIGKILL after the grace period");
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(2900), "killed after {took:?}: before settle (1 s) + grace (2 s)");
    drop(app);
}

/// Runs the real binary, kill -9s it, and checks that its processes die with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_hookd_leaves_no_orphans_and_logs_no_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let marker = uuid::Uuid::now_v7().simple().to_string();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = format!(
        r#"
listen = "127.0.0.1:{port}"
data_dir = "{dir}"
[[backend]]
name = "local"
kind = "local"
[[backend.service]]
name = "web"
command = "sleep"
args = ["100000"]
env = {{ HOOKD_TEST_MARKER = "{marker}" }}
scale = 3
"#,
        dir = dir.path().display()
    );
    let config_path = dir.path().join("hookd.toml");
    std::fs::write(&config_path, config).unwrap();
    let log_path = dir.path().join("hookd.log");
    let token = hookd::auth::generate_token();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("HOOKD_ADMIN_TOKEN", token.expose())
        .env("HOOKD_LOG", "debug")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let needle = format!("HOOKD_TEST_MARKER={marker}");
    assert!(eventually(Duration::from_secs(15), || async { live_pids_with_env(&needle).len() == 3 }).await);

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let created: serde_json::Value = http
        .post(format!("{base}/v1-webhooks/receivers"))
        .bearer_auth(token.expose())
        .json(&serde_json::json!({"name": "up", "driver": "scaleService",
            "scaleServiceConfig": {"serviceId": "web", "action": "up", "min": 1, "max": 5}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = created["url"].as_str().unwrap();
    let trigger_token = url.split("token=").nth(1).unwrap().to_owned();
    let response = http.post(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(eventually(Duration::from_secs(15), || async { live_pids_with_env(&needle).len() == 4 }).await);

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let gone = eventually(Duration::from_secs(10), || async { live_pids_with_env(&needle).is_empty() }).await;
    assert!(gone, "orphans left: {:?}", live_pids_with_env(&needle));

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("hookd listening"), "the log was captured: {log}");
    assert!(!log.contains(&trigger_token), "a trigger token leaked into the log");
    assert!(!log.contains(token.expose()), "the admin token leaked into the log");
}
