//! Issue 9: every process a local service starts ends with its replica and with hookd,
//! however it forks, and a start that fails is retried.

use std::time::{Duration, Instant};

use hookd::config::{Config, LocalServiceConfig};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::{json, Value};

use crate::helpers::{
    all_pids_with_env, eventually, is_keeper, sleep_service, spawn_app_with, spawn_process_with, TestApp,
};

/// Per replica: the leader (`exec sleep`), a background child, and one that left the
/// process group and session with `setsid`.
const FORKING: &str = "sleep 1000 & setsid sleep 1000 & exec sleep 1000";

/// A local service running `script` under `sh`, tagged with the test's marker.
fn script_service(config: &Config, name: &str, scale: u32, script: &str) -> LocalServiceConfig {
    let marker = config.backends[0].services[0].env["HOOKD_TEST_MARKER"].rsplit_once('/').expect("marker/name").0;
    LocalServiceConfig {
        command: "sh".into(),
        args: vec!["-c".into(), script.into()],
        ..sleep_service(name, scale, marker)
    }
}

/// Makes `service` the backend's only one.
fn only(config: &mut Config, service: LocalServiceConfig) {
    config.backends[0].services = vec![service];
}

/// The service's processes of one replica (keepers aside).
fn replica_pids(app: &TestApp, service: &str, replica: u32) -> Vec<i32> {
    let wanted = format!("HOOKD_REPLICA={replica}");
    app.live_pids(service)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == wanted.as_bytes()))
        })
        .collect()
}

async fn wait_for(app: &TestApp, service: &str, n: usize) {
    let ok = eventually(Duration::from_secs(20), || async { app.live_processes(service) == n }).await;
    assert!(ok, "expected {n} processes of {service}, found {}; log: {}", app.live_processes(service), app.log());
}

/// hookd as a process running `forky` (2 replicas of [`FORKING`]), all 6 processes up.
async fn forky(cgroups: bool) -> TestApp {
    let app = spawn_process_with(|c| {
        c.backends[0].cgroups = cgroups;
        only(c, script_service(c, "forky", 2, FORKING));
    })
    .await;
    wait_for(&app, "forky", 6).await;
    app
}

#[tokio::test]
async fn issue_9_a_forking_service_leaves_nothing_behind_a_kill_9_of_hookd() {
    for cgroups in [true, false] {
        let mut app = forky(cgroups).await;
        let before = app.live_pids("forky");
        app.kill9();
        let gone = eventually(Duration::from_secs(10), || async { app.live_processes("forky") == 0 }).await;
        assert!(gone, "cgroups {cgroups}: {:?} outlived hookd (of {before:?})", app.live_pids("forky"));

        app.start_again().await;
        wait_for(&app, "forky", 6).await;
        assert_eq!(app.desired_scale("forky").await, 2);
        app.stop().await;
        assert_eq!(app.live_processes("forky"), 0, "cgroups {cgroups}: a graceful stop leaves nothing either");
    }
}

#[tokio::test]
async fn issue_9_what_a_killed_hookd_and_its_keepers_left_is_reaped_at_the_next_start() {
    for cgroups in [true, false] {
        let mut app = forky(cgroups).await;
        // Freeze hookd so it cannot clean up, kill every keeper, then hookd: nothing is left
        // alive to stop the trees.
        let hookd = Pid::from_raw(app.pid() as i32);
        kill(hookd, Signal::SIGSTOP).unwrap();
        let marker = format!("HOOKD_TEST_MARKER={}/forky", app.marker);
        for keeper in all_pids_with_env(&marker).into_iter().filter(|p| is_keeper(*p)) {
            kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
        }
        app.kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let orphans = app.live_pids("forky");
        assert!(!orphans.is_empty(), "the background children outlive their keepers (the test can see them)");

        app.start_again().await;
        wait_for(&app, "forky", 6).await;
        let alive: Vec<i32> = orphans.iter().copied().filter(|p| app.live_pids("forky").contains(p)).collect();
        assert!(alive.is_empty(), "cgroups {cgroups}: the next start did not reap {alive:?}");
        assert!(app.log().contains("killed processes left running by a previous hookd"), "{}", app.log());
    }
}

#[tokio::test]
async fn issue_9_a_stop_kills_what_ignores_sigterm_even_after_the_leader_exits() {
    // The leader exits on SIGTERM at once; its child ignores SIGTERM and must get SIGKILL
    // after the grace period (2 s here), not earlier and not never.
    let script = "(trap '' TERM; exec sleep 1000) & exec sleep 1000";
    let app = spawn_app_with(|c| {
        only(c, script_service(c, "stubborn", 2, script));
    })
    .await;
    wait_for(&app, "stubborn", 4).await;
    let down = app.scale_receiver("down", "stubborn", "down", 1, 1, 5).await;
    let (_, answer) = app.trigger(down["url"].as_str().unwrap()).await;
    assert_eq!(answer["to"], 1, "{answer}");
    let asked = Instant::now();
    // The scale-down settles for 1 s, then the keeper SIGTERMs the tree.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let survivors = replica_pids(&app, "stubborn", 2);
    assert!(!survivors.is_empty(), "SIGKILL came before the grace period ended");
    let gone = eventually(Duration::from_secs(8), || async { replica_pids(&app, "stubborn", 2).is_empty() }).await;
    assert!(gone, "{:?} still run {:?} after the stop", replica_pids(&app, "stubborn", 2), asked.elapsed());
    assert_eq!(replica_pids(&app, "stubborn", 1).len(), 2, "replica 1 is untouched");
}

#[tokio::test]
async fn issue_9_a_start_that_fails_is_retried_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("worker");
    let command = worker.display().to_string();
    let app = spawn_app_with(|c| {
        let mut service = script_service(c, "late", 1, "");
        service.command = command.clone();
        service.args = Vec::new();
        only(c, service);
    })
    .await;
    let last_error = || async {
        let (_, body) = app.get("/v1-webhooks/services").await;
        body["data"][0]["lastError"].as_str().unwrap_or("").to_owned()
    };
    let shown = eventually(Duration::from_secs(5), || async { last_error().await.contains("No such file") }).await;
    assert!(shown, "lastError: {:?}", last_error().await);
    assert!(last_error().await.contains(&command), "the error names the command: {:?}", last_error().await);
    assert_eq!(app.live_processes("late"), 0);

    // Installed a second later: the backoff (at most 30 s, here a few) brings it up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let staged = dir.path().join("worker.tmp");
    std::fs::write(&staged, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, &worker).unwrap();
    wait_for(&app, "late", 1).await;
    let services: Value = app.get("/v1-webhooks/services").await.1;
    assert_eq!(services["data"][0]["running"], json!(1));
}

/// Issue 9 (review): when a stuck keeper is finally killed, sweeping what it left must not
/// touch the replica started in its place (no cgroups: the sweep goes by environment).
#[tokio::test]
async fn issue_9_sweeping_a_stuck_keeper_spares_its_successor() {
    let app = spawn_app_with(|c| c.backends[0].cgroups = false).await;
    let up = app.scale_receiver("up", "web", "up", 1, 1, 5).await;
    let down = app.scale_receiver("down", "web", "down", 1, 1, 5).await;
    app.trigger(up["url"].as_str().unwrap()).await;
    app.wait_for_processes("web", 2).await;
    let marker = format!("HOOKD_TEST_MARKER={}/web", app.marker);
    let keeper_of_2 = all_pids_with_env(&marker)
        .into_iter()
        .filter(|p| is_keeper(*p))
        .find(|p| replica_of(*p) == Some(2))
        .expect("replica 2's keeper");
    kill(Pid::from_raw(keeper_of_2), Signal::SIGSTOP).unwrap();
    app.trigger(down["url"].as_str().unwrap()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // settled: the stuck keeper is asked to stop
    app.trigger(up["url"].as_str().unwrap()).await;
    let successor = eventually(Duration::from_secs(5), || async { replica_pids(&app, "web", 2).len() == 2 }).await;
    assert!(successor, "a new replica 2 starts beside the stuck one");
    let new_pids: Vec<i32> = replica_pids(&app, "web", 2)
        .into_iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") T ")))
        .collect();
    // grace (2 s) + the keeper's slack (5 s): hookd kills the stuck keeper and sweeps.
    let swept = eventually(Duration::from_secs(12), || async {
        !is_keeper(keeper_of_2) && replica_pids(&app, "web", 2).len() == 1
    })
    .await;
    assert!(swept, "the stuck keeper's replica is gone: {:?}", replica_pids(&app, "web", 2));
    let alive: Vec<i32> = replica_pids(&app, "web", 2);
    assert!(new_pids.iter().any(|p| alive.contains(p)), "the successor {new_pids:?} survives: {alive:?}");
}

/// The replica number in a process's environment.
fn replica_of(pid: i32) -> Option<u32> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|e| std::str::from_utf8(e.strip_prefix(b"HOOKD_REPLICA=")?).ok()?.parse().ok())
}
