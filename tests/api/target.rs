//! Issue 18: scaleService's target mode on real (local) services. The alerts carry the
//! replica count; hookd goes there in one decision, holds scale-downs for the stabilization
//! window, limits steps, and scales to zero only when asked to.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// An Alertmanager notification whose firing alerts carry these `desired_replicas`
/// annotations (`None`: no annotation).
fn alerts(values: &[Option<&str>], status: &str) -> String {
    alerts_in("web", values, status)
}

/// The same, from the Alertmanager group `group`.
fn alerts_in(group: &str, values: &[Option<&str>], status: &str) -> String {
    let alerts: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let annotations = match v {
                Some(v) => json!({"desired_replicas": v}),
                None => json!({}),
            };
            json!({"status": status, "labels": {"alertname": "WebLoad", "service": "web", "shard": i.to_string()},
                "annotations": annotations, "startsAt": "2026-11-24T05:00:00Z", "fingerprint": format!("f{i}")})
        })
        .collect();
    json!({"version": "4", "groupKey": format!("{{}}:{{rule=\"{group}\"}}"), "status": status, "receiver": "hookd",
        "groupLabels": {"service": "web"}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": alerts})
    .to_string()
}

async fn target_receiver(app: &TestApp, name: &str, extra: Value) -> (StatusCode, Value) {
    let mut config = json!({"serviceId": "web", "mode": "target", "targetFrom": {"annotation": "desired_replicas"},
        "min": 1, "max": 6, "stabilizationSeconds": 3});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    app.create_receiver(json!({"name": name, "driver": "scaleService", "scaleServiceConfig": config})).await
}

async fn created(app: &TestApp, name: &str, extra: Value) -> Value {
    let (status, r) = target_receiver(app, name, extra).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r
}

fn moved(answer: &Value) -> (Option<&str>, Option<u64>, Option<u64>) {
    (answer["outcome"].as_str(), answer["from"].as_u64(), answer["to"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_18_target_mode_goes_to_the_alerts_count_and_holds_scale_down_for_the_window() {
    let app = spawn_app().await;
    let r = created(&app, "web-target", json!({})).await;
    let url = r["url"].as_str().unwrap();
    assert_eq!(r["scaleServiceConfig"]["mode"], "target", "{r}");
    assert_eq!(r["scaleServiceConfig"]["targetFrom"], json!({"annotation": "desired_replicas"}));

    let (status, a) = app.notify(url, &alerts(&[Some("4")], "firing")).await;
    assert_eq!((status, moved(&a)), (StatusCode::OK, (Some("scaled"), Some(1), Some(4))), "one decision: {a}");
    app.wait_for_processes("web", 4).await;
    // Several alerts: the largest; Prometheus' `{{ $value }}` is rounded up; max holds.
    let (_, a) = app.notify(url, &alerts(&[Some("2"), Some("5.2"), None], "firing")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(4), Some(6)), "{a}");
    let (_, a) = app.notify(url, &alerts(&[Some("40")], "firing")).await;
    assert_eq!(
        (a["outcome"].as_str(), a["reason"].as_str()),
        (Some("unchanged"), Some("already at the recommendation 6"))
    );
    // Lower: held while the window remembers more.
    let (_, a) = app.notify(url, &alerts(&[Some("1")], "firing")).await;
    assert_eq!(a["outcome"], "unchanged", "{a}");
    assert!(a["reason"].as_str().unwrap().contains("stabilization window"), "{a}");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (_, a) = app.notify(url, &alerts(&[Some("1")], "firing")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(6), Some(1)), "after the window: {a}");
    app.wait_for_processes("web", 1).await;
    // A retried notification sets the same target: nothing moves twice.
    let (_, a) = app.notify(url, &alerts(&[Some("1")], "firing")).await;
    assert_eq!(a["outcome"], "unchanged", "{a}");

    // Resolved: ignored by default. No count, or a plain POST: refused, saying why.
    let (_, a) = app.notify(url, &alerts(&[Some("3")], "resolved")).await;
    assert_eq!((a["outcome"].as_str(), a["reason"].as_str()), (Some("skipped"), Some("resolved")), "{a}");
    let (status, a) = app.notify(url, &alerts(&[None], "firing")).await;
    assert_eq!((status, a["code"].as_str()), (StatusCode::BAD_REQUEST, Some("no_target")), "{a}");
    assert!(a["message"].as_str().unwrap().contains("annotation desired_replicas"), "{a}");
    let (status, a) = app.notify(url, &alerts(&[Some("many")], "firing")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{a}");
    assert!(a["message"].as_str().unwrap().contains("\"many\""), "{a}");
    let (status, a) = app.trigger(url).await;
    assert_eq!((status, a["code"].as_str()), (StatusCode::BAD_REQUEST, Some("no_target")), "{a}");

    // The history says what was recommended and why the scale went where it went.
    let (_, history) = app.get(&format!("/v1-webhooks/receivers/{}/executions", r["id"].as_str().unwrap())).await;
    let details: Vec<&str> = history["data"].as_array().unwrap().iter().filter_map(|e| e["detail"].as_str()).collect();
    assert!(details.iter().any(|d| d.contains("recommended 40; clamped to max 6")), "{details:?}");
    assert!(details.iter().any(|d| d.contains("the last 3 s recommended up to 6")), "{details:?}");
    assert!(details.iter().any(|d| d.contains("annotation desired_replicas of alert WebLoad")), "{details:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_18_step_limits_scale_to_zero_and_waking() {
    let app = spawn_app().await;
    let r = created(&app, "limited", json!({"maxStepUp": "50%", "maxStepDown": 1, "stabilizationSeconds": 0})).await;
    assert_eq!(
        (r["scaleServiceConfig"]["maxStepUp"].as_str(), r["scaleServiceConfig"]["maxStepDown"].as_u64()),
        (Some("50%"), Some(1))
    );
    let url = r["url"].as_str().unwrap();
    let (_, a) = app.notify(url, &alerts(&[Some("6")], "firing")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(1), Some(2)), "50% of 1, at least one: {a}");
    let (_, a) = app.notify(url, &alerts(&[Some("6")], "firing")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(2), Some(3)), "{a}");
    let (_, a) = app.notify(url, &alerts(&[Some("1")], "firing")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(3), Some(2)), "one at a time down: {a}");
    assert!(a["detail"].as_str().unwrap_or_default().contains("maxStepDown 1 allows 2"), "{a}");

    // Scale to zero: only with allowZero; resolved → min (0), and the next alert wakes it.
    let (status, e) = target_receiver(&app, "zero", json!({"min": 0})).await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some("scaleServiceConfig.min")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("allowZero"), "{e}");
    let zero = created(&app, "zero", json!({"min": 0, "allowZero": true, "onResolved": "min"})).await;
    let url = zero["url"].as_str().unwrap();
    let (_, a) = app.notify(url, &alerts(&[Some("0")], "resolved")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(2), Some(0)), "resolved → min, not held: {a}");
    app.wait_for_processes("web", 0).await;
    let (_, a) = app.notify(url, &alerts(&[Some("2")], "firing")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(0), Some(2)), "woken: {a}");
    app.wait_for_processes("web", 2).await;

    // A receiver read back can be PUT back as it is.
    let path = format!("/v1-webhooks/receivers/{}", zero["id"].as_str().unwrap());
    let (_, got) = app.get(&path).await;
    let (status, put) = app.request(reqwest::Method::PUT, &path, Some(got.clone())).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["scaleServiceConfig"], got["scaleServiceConfig"]);
}

#[tokio::test]
async fn issue_18_target_settings_are_checked() {
    let app = spawn_app().await;
    for (extra, field) in [
        (json!({"targetFrom": null}), "scaleServiceConfig.targetFrom"),
        (json!({"targetFrom": {"annotation": "a", "label": "b"}}), "scaleServiceConfig.targetFrom"),
        (json!({"targetFrom": {"label": "9lives"}}), "scaleServiceConfig.targetFrom"),
        (json!({"maxStepUp": "0%"}), "scaleServiceConfig.maxStepUp"),
        (json!({"maxStepDown": "fast"}), "scaleServiceConfig.maxStepDown"),
        (json!({"stabilizationSeconds": 7200}), "scaleServiceConfig.stabilizationSeconds"),
        (json!({"onResolved": "reverse"}), "scaleServiceConfig.onResolved"),
        (json!({"mode": "proportional"}), "scaleServiceConfig.mode"),
    ] {
        let (status, e) = target_receiver(&app, "bad", extra.clone()).await;
        assert_eq!((status, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{extra}: {e}");
    }
    // Target settings on a step receiver, and min on step receivers: said plainly.
    let (status, e) = app
        .create_receiver(json!({"name": "s", "driver": "scaleService", "scaleServiceConfig": {"serviceId": "web",
            "action": "up", "targetFrom": {"annotation": "x"}}}))
        .await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some("scaleServiceConfig.targetFrom")), "{e}");
    let (status, e) = app
        .create_receiver(json!({"name": "s", "driver": "scaleService", "scaleServiceConfig": {"serviceId": "web",
            "action": "down", "onResolved": "min"}}))
        .await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some("scaleServiceConfig.onResolved")), "{e}");
    // A step receiver may scale to zero too, when it says so.
    let (status, r) = app
        .create_receiver(json!({"name": "s0", "driver": "scaleService", "scaleServiceConfig": {"serviceId": "web",
            "action": "down", "min": 0, "max": 3, "allowZero": true}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (_, a) = app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(1), Some(0)), "{a}");
}

/// The CLI makes a target receiver and shows its settings.
#[tokio::test]
async fn issue_18_the_cli_makes_and_shows_a_target_receiver() {
    let app = spawn_app().await;
    let args = [
        "receivers",
        "create",
        "--name",
        "web-target",
        "--service",
        "web",
        "--mode",
        "target",
        "--target-from",
        "label:desired_replicas",
        "--min",
        "1",
        "--max",
        "9",
        "--max-step-up",
        "50%",
        "--stabilization-seconds",
        "60",
    ];
    let (ok, out, err) = crate::cli::hookd(&app, &args).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = crate::cli::hookd(&app, &["receivers", "get", "web-target"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("to the replica count in the alerts' label desired_replicas, between 1 and 9"), "{out}");
    assert!(
        out.contains("mode=target") && out.contains("maxStepUp=50%") && out.contains("stabilizationSeconds=60"),
        "{out}"
    );
    let (ok, _, err) =
        crate::cli::hookd(&app, &["receivers", "create", "--name", "x", "--target-from", "desired"]).await;
    assert!(!ok && err.contains("label:NAME"), "{err}");
}

/// After an attacker's pass: a resolved group takes back only its own recommendations;
/// +Inf is as many as allowed; an unreadable alert beside readable ones is named; an update
/// that leaves the mode out keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_18_groups_resolve_their_own_and_updates_keep_the_mode() {
    let app = spawn_app().await;
    let r = created(&app, "groups", json!({"onResolved": "min", "stabilizationSeconds": 60})).await;
    let url = r["url"].as_str().unwrap();
    let (_, a) = app.notify(url, &alerts_in("queue", &[Some("5")], "firing")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(1), Some(5)), "{a}");
    let (_, a) = app.notify(url, &alerts_in("cpu", &[Some("2")], "firing")).await;
    assert_eq!(a["outcome"], "unchanged", "held by the queue's 5: {a}");
    // The queue group resolves: its 5 goes; the cpu group's 2 still holds the service up.
    let (_, a) = app.notify(url, &alerts_in("queue", &[Some("5")], "resolved")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(5), Some(2)), "{a}");
    let (_, a) = app.notify(url, &alerts_in("cpu", &[Some("+Inf")], "firing")).await;
    assert_eq!(moved(&a), (Some("scaled"), Some(2), Some(6)), "+Inf is max: {a}");
    let (_, a) = app.notify(url, &alerts_in("cpu", &[Some("NaN"), Some("6")], "firing")).await;
    assert!(a["detail"].as_str().unwrap_or_default().contains("left out, no count: WebLoad: \"NaN\""), "{a}");

    // An older client's update, without the mode: still a target receiver.
    let path = format!("/v1-webhooks/receivers/{}", r["id"].as_str().unwrap());
    let body = json!({"scaleServiceConfig": {"serviceId": "web", "action": "up", "min": 1, "max": 7}});
    let (status, put) = app.request(reqwest::Method::PUT, &path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    let c = &put["scaleServiceConfig"];
    assert_eq!(
        (c["mode"].as_str(), c["max"].as_u64(), c["stabilizationSeconds"].as_u64()),
        (Some("target"), Some(7), Some(60))
    );
    let body = json!({"scaleServiceConfig": {"serviceId": "web", "action": "up", "mode": "step"}});
    let (status, put) = app.request(reqwest::Method::PUT, &path, Some(body)).await;
    assert_eq!((status, put["scaleServiceConfig"]["mode"].as_str()), (StatusCode::OK, Some("step")), "{put}");
}

/// A target receiver's snippet groups by service, and Alertmanager's checker accepts it.
#[tokio::test]
#[ignore = "needs amtool (Alertmanager): ./scripts/test.sh installs it"]
async fn issue_18_the_target_snippet_groups_by_service() {
    crate::components::require("amtool");
    let app = spawn_app().await;
    let r = created(&app, "snippet", json!({})).await;
    let path = format!("/v1-webhooks/receivers/{}/alertmanager-config", r["id"].as_str().unwrap());
    let snippet = app.http.get(format!("{}{path}", app.base)).bearer_auth(&app.token).send().await.unwrap();
    let snippet = snippet.text().await.unwrap();
    assert!(
        snippet.contains("group_by:\n    - service") || snippet.contains("group_by:\n      - service"),
        "{snippet}"
    );
    assert!(snippet.contains(r#"- service="web""#) && !snippet.contains("action="), "{snippet}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alertmanager.yml");
    std::fs::write(&file, &snippet).unwrap();
    let output = tokio::process::Command::new("amtool").arg("check-config").arg(&file).output().await.unwrap();
    assert!(output.status.success(), "amtool refused:\n{}\n{snippet}", String::from_utf8_lossy(&output.stdout));
}
