//! Issue 18's closed loop: one demand profile (1 → 4 → 1 replicas' worth) through a real
//! Prometheus and Alertmanager, once with step receivers (±1 per alert) and once with a
//! target receiver (the alert carries the replica count). Prints both modes' convergence
//! times and scale changes.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{
    closed_loop::demand_exporter,
    components::{alertmanager, prometheus, require, Daemon},
    helpers::{eventually, spawn_app, TestApp},
};

/// One replica serves this much demand.
const CAPACITY: u64 = 10;
/// The scale-down safety of both modes: step's down cooldown, target's window.
const HOLD_SECONDS: u64 = 15;

struct Loop {
    app: TestApp,
    demand: Arc<AtomicU64>,
    receivers: Vec<Value>,
    _daemons: (Daemon, Daemon, tempfile::TempDir),
}

async fn start(mode: &str) -> Loop {
    let app = spawn_app().await;
    let config = |name: &str, extra: Value| {
        let mut c = json!({"serviceId": "web", "min": 1, "max": 8});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"name": name, "driver": "scaleService", "scaleServiceConfig": c})
    };
    let bodies = match mode {
        // The cooldown up outlasts scrape + evaluation + group_interval, so no step is taken
        // before Prometheus has seen the last one.
        "step" => vec![
            config(
                "web-up",
                json!({"action": "up", "cooldownUpSeconds": 6, "cooldownDownSeconds": 0, "dedupSeconds": 2}),
            ),
            config(
                "web-down",
                json!({"action": "down", "cooldownUpSeconds": 0, "cooldownDownSeconds": HOLD_SECONDS, "dedupSeconds": 2}),
            ),
        ],
        _ => vec![config(
            "web-target",
            json!({"mode": "target", "targetFrom": {"label": "desired_replicas"}, "stabilizationSeconds": HOLD_SECONDS}),
        )],
    };
    let mut receivers = Vec::new();
    for body in bodies {
        let (status, r) = app.create_receiver(body).await;
        assert_eq!(status, 200, "{r}");
        receivers.push(r);
    }
    let url = |i: usize| receivers[i]["url"].as_str().unwrap().to_owned();
    let receiver = |name: &str, url: String| {
        format!("  - name: {name}\n    webhook_configs: [{{url: '{url}', send_resolved: true}}]\n")
    };
    let (routes, receivers_yaml) = match mode {
        "step" => (
            [
                "    - matchers: ['action=\"up\"']",
                "      receiver: up",
                "    - matchers: ['action=\"down\"']",
                "      receiver: down",
            ]
            .join("\n"),
            receiver("up", url(0)) + &receiver("down", url(1)),
        ),
        _ => (["    - matchers: ['service=\"web\"']", "      receiver: target"].join("\n"), receiver("target", url(0))),
    };
    let am_config = [
        "route:",
        "  receiver: nowhere",
        "  group_by: [service]",
        "  group_wait: 1s",
        "  group_interval: 1s",
        "  repeat_interval: 2s",
        "  routes:",
        &routes,
        "receivers:",
        "  - name: nowhere",
        &receivers_yaml,
    ]
    .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let am = alertmanager(dir.path(), &am_config).await;
    let demand = Arc::new(AtomicU64::new(CAPACITY));
    let demand_port = demand_exporter(demand.clone()).await;
    let prom_config = [
        "global: {scrape_interval: 1s, evaluation_interval: 1s}".to_owned(),
        "rule_files: [RULES_FILE]".to_owned(),
        format!(
            "alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{}']}}]}}]}}",
            am.base.trim_start_matches("http://")
        ),
        "scrape_configs:".to_owned(),
        format!("  - {{job_name: demand, static_configs: [{{targets: ['127.0.0.1:{demand_port}']}}]}}"),
        format!(
            "  - {{job_name: hookd, static_configs: [{{targets: ['{}']}}]}}",
            app.base.trim_start_matches("http://")
        ),
    ]
    .join("\n");
    let running = "max(hookd_service_running_replicas{service=\"web\"})";
    let rules = match mode {
        // The seeds' recipe: too much load per replica adds one, room for one less removes one.
        "step" => [
            "groups:".to_owned(),
            "  - name: step".to_owned(),
            "    rules:".to_owned(),
            "      - alert: WebOverloaded".to_owned(),
            format!("        expr: max(demand) / {running} > {CAPACITY}"),
            "        labels: {action: up, service: web}".to_owned(),
            "      - alert: WebIdle".to_owned(),
            format!("        expr: max(demand) / ({running} - 1) <= {CAPACITY}"),
            "        labels: {action: down, service: web}".to_owned(),
        ]
        .join("\n"),
        // Target mode: the rule computes the replica count and carries it as a label.
        _ => [
            "groups:".to_owned(),
            "  - name: target".to_owned(),
            "    rules:".to_owned(),
            "      - alert: WebReplicas".to_owned(),
            format!("        expr: ceil(max(demand) / {CAPACITY})"),
            "        labels: {service: web, desired_replicas: '{{ $value }}'}".to_owned(),
        ]
        .join("\n"),
    };
    let prom = prometheus(dir.path(), &prom_config, &rules).await;
    app.wait_for_processes("web", 1).await;
    Loop { app, demand, receivers, _daemons: (am, prom, dir) }
}

async fn settles_at(app: &TestApp, scale: u64, within: Duration) -> bool {
    eventually(within, || async {
        app.desired_scale("web").await == scale && app.live_processes("web") == scale as usize
    })
    .await
}

/// The loop's run: (time to 4, time back to 1, scale changes, the highest scale seen).
async fn run(mode: &str) -> (Duration, Duration, usize, u64, Vec<Value>) {
    let l = start(mode).await;
    // The highest desired scale, watched all along: no overshoot.
    let highest = Arc::new(AtomicU64::new(1));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (highest, watching, base, token) =
            (highest.clone(), watching.clone(), l.app.base.clone(), l.app.token.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while watching.load(Ordering::SeqCst) {
                let services: Value =
                    match http.get(format!("{base}/v1-webhooks/services")).bearer_auth(&token).send().await {
                        Ok(r) => r.json().await.unwrap_or_default(),
                        Err(_) => Value::Null,
                    };
                for s in services["data"].as_array().into_iter().flatten().filter(|s| s["name"] == "web") {
                    highest.fetch_max(s["scale"].as_u64().unwrap_or(0), Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    l.demand.store(4 * CAPACITY, Ordering::SeqCst);
    assert!(
        settles_at(&l.app, 4, Duration::from_secs(90)).await,
        "{mode}: not at 4: {}",
        l.app.desired_scale("web").await
    );
    let up = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(l.app.desired_scale("web").await, 4, "{mode}: no step past what is needed");
    let started = Instant::now();
    l.demand.store(CAPACITY, Ordering::SeqCst);
    assert!(
        settles_at(&l.app, 1, Duration::from_secs(120)).await,
        "{mode}: not back at 1: {}",
        l.app.desired_scale("web").await
    );
    let down = started.elapsed();
    watching.store(false, Ordering::SeqCst);
    watcher.await.unwrap();
    let mut history = Vec::new();
    for r in &l.receivers {
        history.extend(l.app.executions(r).await);
    }
    let changes = history.iter().filter(|e| e["outcome"] == "scaled").count();
    (up, down, changes, highest.load(Ordering::SeqCst), history)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Prometheus and Alertmanager: ./scripts/test.sh"]
async fn issue_18_target_mode_converges_in_one_decision_where_steps_take_several() {
    require("prometheus");
    require("prometheus-alertmanager");
    let (step_up, step_down, step_changes, step_highest, _) = run("step").await;
    let (target_up, target_down, target_changes, target_highest, history) = run("target").await;
    eprintln!(
        "demand 1 -> 4 -> 1 replicas' worth: step mode reached 4 in {step_up:.1?} and 1 again in {step_down:.1?} with \
         {step_changes} scale changes; target mode in {target_up:.1?} and {target_down:.1?} with {target_changes} \
         (scale-down held {HOLD_SECONDS} s in both)"
    );
    assert_eq!((step_highest, target_highest), (4, 4), "neither mode overshoots");
    let scaled: Vec<(u64, u64)> = history
        .iter()
        .rev()
        .filter(|e| e["outcome"] == "scaled")
        .map(|e| (e["from"].as_u64().unwrap(), e["to"].as_u64().unwrap()))
        .collect();
    assert_eq!(scaled, [(1, 4), (4, 1)], "target mode: to 4 in one decision, back to 1 in one");
    // Back to 1 only once the window no longer holds a recommendation of 4.
    let at = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap();
    let down_at = history.iter().filter(|e| e["outcome"] == "scaled" && e["to"] == 1).map(at).max().unwrap();
    let last_four = history
        .iter()
        .filter(|e| {
            e["detail"].as_str().unwrap_or("").starts_with("label desired_replicas of alert WebReplicas: recommended 4")
        })
        .map(at)
        .filter(|t| *t < down_at)
        .max()
        .expect("recommendations of 4 recorded");
    let held = (down_at - last_four).to_std().unwrap();
    assert!(held >= Duration::from_secs(HOLD_SECONDS), "back to 1 {held:?} after the last recommendation of 4");
    assert!(
        history
            .iter()
            .any(|e| e["outcome"] == "unchanged" && e["reason"].as_str().unwrap_or("").contains("stabilization")),
        "the window held a scale-down: {history:#?}"
    );
    assert_eq!(step_changes, 6, "step mode: three steps up, three down");
    assert!(target_up < step_up, "one decision beats three steps: {target_up:?} vs {step_up:?}");
}
