//! Autoscaling in a closed loop: Prometheus evaluates load per running replica, Alertmanager
//! routes `action=up`/`action=down` alerts to two hookd receivers (the seeds' recipe, with
//! `send_resolved: true`), and hookd scales a real local service.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{
    components::{alertmanager, prometheus, require},
    helpers::{eventually, spawn_app, TestApp},
};

/// Serves `demand <n>` on /metrics: the load the test controls.
pub async fn demand_exporter(demand: Arc<AtomicU64>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let demand = demand.clone();
            async move { format!("# TYPE demand gauge\ndemand {}\n", demand.load(Ordering::SeqCst)) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

async fn receiver(app: &TestApp, name: &str, action: &str) -> Value {
    let (status, r) = app
        .create_receiver(json!({"name": name, "driver": "scaleService", "scaleServiceConfig": {
            "serviceId": "web", "action": action, "amount": 1, "min": 1, "max": 8,
            // Short windows for a test. The cooldown must outlast scrape + evaluation +
            // group_interval (about 3 s here), so hookd never steps again before Prometheus
            // has seen the last step.
            "cooldownUpSeconds": 6, "cooldownDownSeconds": 6, "dedupSeconds": 2}}))
        .await;
    assert_eq!(status, 200, "{r}");
    r
}

fn count(history: &[Value], outcome: &str, reason: Option<&str>) -> usize {
    history.iter().filter(|e| e["outcome"] == outcome && reason.is_none_or(|r| e["reason"] == r)).count()
}

fn scaled_times(history: &[Value]) -> Vec<chrono::DateTime<chrono::FixedOffset>> {
    let mut times: Vec<_> = history
        .iter()
        .filter(|e| e["outcome"] == "scaled")
        .map(|e| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap())
        .collect();
    times.sort();
    times
}

async fn settles_at(app: &TestApp, scale: u64, within: Duration) -> bool {
    eventually(within, || async {
        app.desired_scale("web").await == scale && app.live_processes("web") == scale as usize
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Prometheus and Alertmanager: ./scripts/test.sh"]
async fn prometheus_and_alertmanager_drive_scaling_up_and_back_down() {
    require("prometheus");
    require("prometheus-alertmanager");
    let app = spawn_app().await;
    let up = receiver(&app, "web-up", "up").await;
    let down = receiver(&app, "web-down", "down").await;
    let dir = tempfile::tempdir().unwrap();

    let am_config = format!(
        r#"
route:
  receiver: nowhere
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  # Shorter than the cooldown: at least one repeat lands inside it and must be skipped.
  repeat_interval: 2s
  routes:
    - matchers: ['action="up"']
      receiver: web-up
    - matchers: ['action="down"']
      receiver: web-down
receivers:
  - name: nowhere
  - name: web-up
    webhook_configs:
      - url: '{up}'
        send_resolved: true
  - name: web-down
    webhook_configs:
      - url: '{down}'
        send_resolved: true
"#,
        up = up["url"].as_str().unwrap(),
        down = down["url"].as_str().unwrap()
    );
    let am = alertmanager(dir.path(), &am_config).await;

    let demand = Arc::new(AtomicU64::new(2));
    let demand_port = demand_exporter(demand.clone()).await;
    let hookd_target = app.base.trim_start_matches("http://").to_owned();
    let prom_config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [RULES_FILE]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ['{am}']}}]
scrape_configs:
  - job_name: demand
    static_configs: [{{targets: ['127.0.0.1:{demand_port}']}}]
  - job_name: hookd
    static_configs: [{{targets: ['{hookd_target}']}}]
"#,
        am = am.base.trim_start_matches("http://"),
    );
    // Load per running replica: above 3 add one, below 1.5 remove one.
    let rules = r#"
groups:
  - name: autoscale
    rules:
      - alert: WebOverloaded
        expr: max(demand) / max(hookd_service_running_replicas{service="web"}) > 3
        labels: {action: up, service: web}
      - alert: WebIdle
        expr: max(demand) / max(hookd_service_running_replicas{service="web"}) < 1.5
        labels: {action: down, service: web}
"#;
    let _prometheus = prometheus(dir.path(), &prom_config, rules).await;
    app.wait_for_processes("web", 1).await;

    // Demand 10 needs 4 replicas (10/4 = 2.5 <= 3): hookd must get there and stop there.
    let started = Instant::now();
    demand.store(10, Ordering::SeqCst);
    assert!(
        settles_at(&app, 4, Duration::from_secs(90)).await,
        "did not scale up to 4: {}",
        app.desired_scale("web").await
    );
    let up_took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(app.desired_scale("web").await, 4, "no step past what is needed");
    let history = app.executions(&up).await;
    assert_eq!(count(&history, "scaled", None), 3, "1 -> 2 -> 3 -> 4 and nothing more: {history:#?}");
    assert!(count(&history, "skipped", Some("resolved")) >= 1, "the resolved notification came and was ignored");
    let repeats = count(&history, "skipped", Some("duplicate")) + count(&history, "skipped", Some("cooldown"));
    assert!(repeats >= 1, "repeats of the firing alert came and were skipped: {history:#?}");
    assert!(history.iter().filter(|e| e["outcome"] == "scaled").all(|e| e["alerts"][0]["name"] == "WebOverloaded"));

    // Demand 1 is served by the minimum: back down to 1, one step per cooldown.
    let started = Instant::now();
    demand.store(1, Ordering::SeqCst);
    assert!(
        settles_at(&app, 1, Duration::from_secs(90)).await,
        "did not scale down to 1: {}",
        app.desired_scale("web").await
    );
    let down_took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(app.desired_scale("web").await, 1);
    let history = app.executions(&down).await;
    assert_eq!(count(&history, "scaled", None), 3, "4 -> 3 -> 2 -> 1: {history:#?}");
    let times = scaled_times(&history);
    for pair in times.windows(2) {
        assert!((pair[1] - pair[0]).num_milliseconds() >= 6000, "down steps respect the 6 s cooldown: {times:?}");
    }
    assert_eq!(count(&app.executions(&up).await, "scaled", None), 3, "scaling down caused no up step");
    eprintln!("closed loop: 1 -> 4 replicas in {up_took:?}, 4 -> 1 in {down_took:?}");
}

/// Times one alert from its arrival in Alertmanager to the new replica running, and hookd's share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Prometheus and Alertmanager: ./scripts/test.sh"]
async fn time_from_alert_to_running_replica() {
    require("prometheus-alertmanager");
    let app = spawn_app().await;
    let up = receiver(&app, "web-up", "up").await;
    app.wait_for_processes("web", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "route:\n  receiver: web-up\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: web-up\n    webhook_configs:\n      - url: '{}'\n",
        up["url"].as_str().unwrap()
    );
    let am = alertmanager(dir.path(), &config).await;

    let injected = chrono::Utc::now();
    let alert = json!([{"labels": {"alertname": "WebOverloaded", "action": "up", "service": "web"},
                        "startsAt": injected.to_rfc3339()}]);
    let response = app.http.post(format!("{}/api/v2/alerts", am.base)).json(&alert).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    // Poll /proc tightly: the moment the second process appears is when the replica runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.live_processes("web") < 2 {
        assert!(Instant::now() < deadline, "no new replica within 20 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let running = chrono::Utc::now();
    // The process may start a moment before the execution's commit lands: wait for it.
    assert!(eventually(Duration::from_secs(5), || async { !app.executions(&up).await.is_empty() }).await);
    let history = app.executions(&up).await;
    let decided =
        chrono::DateTime::parse_from_rfc3339(history[0]["at"].as_str().unwrap()).unwrap().with_timezone(&chrono::Utc);
    let to_decision = (decided - injected).num_milliseconds();
    let total = (running - injected).num_milliseconds();
    eprintln!(
        "alert injected into Alertmanager -> replica process running: {total} ms; \
         -> hookd's decision recorded: {to_decision} ms (hookd acts, then records; either may come first)"
    );
    assert!(total < 10_000, "an alert should scale within seconds, took {total} ms");
}

/// The snippet hookd generates is accepted by Alertmanager's own config checker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Prometheus and Alertmanager: ./scripts/test.sh"]
async fn amtool_accepts_the_generated_snippet() {
    require("amtool");
    let app = spawn_app().await;
    let r = receiver(&app, "web-up", "up").await;
    let id = r["id"].as_str().unwrap();
    let snippet = app
        .http
        .get(format!("{}/v1-webhooks/receivers/{id}/alertmanager-config", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Issue 13: valid on its own, as it is.
    let config = snippet.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alertmanager.yml");
    std::fs::write(&path, &config).unwrap();
    let output = tokio::process::Command::new("amtool").arg("check-config").arg(&path).output().await.unwrap();
    assert!(
        output.status.success(),
        "amtool refused:\n{}\n{}\n{config}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
