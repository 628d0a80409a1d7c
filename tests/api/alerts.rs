//! scaleService fed by Alertmanager notifications (captured from a real Alertmanager, and variants).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

const FIRING: &str = include_str!("../fixtures/alertmanager-firing.json");
const RESOLVED: &str = include_str!("../fixtures/alertmanager-resolved.json");

async fn receiver(app: &TestApp, name: &str, action: &str, options: Value) -> Value {
    app.web_receiver(name, action, options).await
}

async fn notify(app: &TestApp, url: &str, body: &str) -> (StatusCode, Value) {
    app.notify(url, body).await
}

fn url(r: &Value) -> String {
    r["url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_seeds_recipe_no_longer_scales_up_on_resolved() {
    let app = spawn_app().await;
    let up = receiver(&app, "up", "up", json!({})).await;
    let (status, a) = notify(&app, &url(&up), FIRING).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((a["outcome"].as_str(), a["to"].as_u64()), (Some("scaled"), Some(2)), "{a}");
    let (status, a) = notify(&app, &url(&up), RESOLVED).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((a["outcome"].as_str(), a["reason"].as_str()), (Some("skipped"), Some("resolved")), "{a}");
    assert_eq!(app.desired_scale("web").await, 2);

    let history = app.executions(&up).await;
    let alerts = &history[1]["alerts"][0];
    assert_eq!(
        (alerts["name"].as_str(), alerts["fingerprint"].as_str()),
        (Some("ProbeGaugeHigh"), Some("27f97ab5be7c9d5f"))
    );
    assert_eq!(history[0]["alerts"][0]["status"], "resolved");
}

#[tokio::test]
async fn on_resolved_reverse_undoes_one_step() {
    let app = spawn_app().await;
    let up = receiver(&app, "up", "up", json!({"onResolved": "reverse", "cooldownDownSeconds": 0})).await;
    notify(&app, &url(&up), FIRING).await;
    let (_, a) = notify(&app, &url(&up), RESOLVED).await;
    assert_eq!(
        (a["outcome"].as_str(), a["from"].as_u64(), a["to"].as_u64()),
        (Some("scaled"), Some(2), Some(1)),
        "{a}"
    );
    assert_eq!(up["scaleServiceConfig"]["onResolved"], "reverse");
}

#[tokio::test]
async fn a_repeated_notification_is_a_duplicate_until_the_window_passes() {
    let app = spawn_app().await;
    let up = receiver(&app, "up", "up", json!({"dedupSeconds": 2})).await;
    notify(&app, &url(&up), FIRING).await;
    let (status, a) = notify(&app, &url(&up), FIRING).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((a["outcome"].as_str(), a["reason"].as_str()), (Some("skipped"), Some("duplicate")), "{a}");
    assert!(a["detail"].as_str().unwrap().contains("dedup window 2 s"), "{a}");

    // "Some alerts resolved": an old resolved alert rides along; the firing set is the same.
    let mut riders: Value = serde_json::from_str(FIRING).unwrap();
    let mut old = riders["alerts"][0].clone();
    old["status"] = "resolved".into();
    old["fingerprint"] = "00000000000000aa".into();
    riders["alerts"].as_array_mut().unwrap().push(old);
    let (_, a) = notify(&app, &url(&up), &riders.to_string()).await;
    assert_eq!(a["reason"], "duplicate", "{a}");

    // A new alert in the group is news.
    let mut more: Value = serde_json::from_str(FIRING).unwrap();
    let mut second = more["alerts"][0].clone();
    second["fingerprint"] = "1111111111111111".into();
    more["alerts"].as_array_mut().unwrap().push(second);
    let (_, a) = notify(&app, &url(&up), &more.to_string()).await;
    assert_eq!((a["outcome"].as_str(), a["to"].as_u64()), (Some("scaled"), Some(3)), "{a}");

    // A repeat after the window: the alert is still firing, so it steps again.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (_, a) = notify(&app, &url(&up), FIRING).await;
    assert_eq!((a["outcome"].as_str(), a["to"].as_u64()), (Some("scaled"), Some(4)), "{a}");
    assert_eq!(app.desired_scale("web").await, 4);
}

#[tokio::test]
async fn scaling_down_waits_for_its_cooldown_after_any_change_of_the_service() {
    let app = spawn_app().await;
    let up = receiver(&app, "up", "up", json!({})).await;
    for _ in 0..3 {
        app.trigger(&url(&up)).await;
    }
    assert_eq!(app.desired_scale("web").await, 4, "plain POSTs wait for no default cooldown");
    let down = receiver(&app, "down", "down", json!({"cooldownDownSeconds": 300})).await;
    let (status, a) = app.trigger(&url(&down)).await;
    assert_eq!(status, StatusCode::OK, "a skip is a decision, answered 2xx");
    assert_eq!((a["outcome"].as_str(), a["reason"].as_str()), (Some("skipped"), Some("cooldown")), "{a}");
    assert!(a["detail"].as_str().unwrap().contains("waits 300 s after the service's last change"), "{a}");
    assert_eq!(app.desired_scale("web").await, 4);
    let (_, a) = app.trigger(&url(&up)).await;
    assert_eq!(a["outcome"], "scaled", "scaling up has its own cooldown (none set)");
    let eager = receiver(&app, "eager-down", "down", json!({"cooldownDownSeconds": 0})).await;
    let (_, a) = app.trigger(&url(&eager)).await;
    assert_eq!((a["outcome"].as_str(), a["to"].as_u64()), (Some("scaled"), Some(4)), "{a}");
}

#[tokio::test]
async fn the_default_cooldown_holds_back_alerts_but_not_plain_posts() {
    let app = spawn_app().await;
    let up = receiver(&app, "up", "up", json!({})).await;
    let down = receiver(&app, "down", "down", json!({})).await;
    assert_eq!(down["scaleServiceConfig"]["cooldownDownSeconds"], Value::Null, "unset unless asked for");
    app.trigger(&url(&up)).await;
    app.trigger(&url(&up)).await;
    let (_, a) = notify(&app, &url(&down), FIRING).await;
    assert_eq!((a["outcome"].as_str(), a["reason"].as_str()), (Some("skipped"), Some("cooldown")), "{a}");
    assert!(a["detail"].as_str().unwrap().contains("waits 300 s"), "{a}");
    let (_, a) = app.trigger(&url(&down)).await;
    assert_eq!((a["outcome"].as_str(), a["to"].as_u64()), (Some("scaled"), Some(2)), "a person means it now: {a}");
}

#[tokio::test]
async fn a_dry_run_decides_records_and_changes_nothing() {
    let app = spawn_app().await;
    let up = receiver(&app, "up", "up", json!({})).await;
    let (status, a) = notify(&app, &format!("{}&dryRun=1", url(&up)), FIRING).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((a["outcome"].as_str(), a["to"].as_u64(), a["dryRun"].as_bool()), (Some("scaled"), Some(2), Some(true)));
    assert_eq!(app.desired_scale("web").await, 1);
    app.wait_for_processes("web", 1).await;
    // Dry runs don't count for dedup: the real notification acts.
    let (_, a) = notify(&app, &url(&up), FIRING).await;
    assert_eq!((a["outcome"].as_str(), a["to"].as_u64()), (Some("scaled"), Some(2)), "{a}");
    assert!(a.get("dryRun").is_none());
    let history = app.executions(&up).await;
    assert_eq!(history.iter().map(|e| e["dryRun"].as_bool().unwrap()).collect::<Vec<_>>(), [false, true]);
    let (status, err) = app.trigger(&format!("{}&dryRun=maybe", url(&up))).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
}

#[tokio::test]
async fn a_broken_notification_is_400_and_not_acted_on() {
    let app = spawn_app().await;
    let up = receiver(&app, "up", "up", json!({})).await;
    let mut bad: Value = serde_json::from_str(FIRING).unwrap();
    bad["alerts"][0]["status"] = "on-fire".into();
    let (status, err) = notify(&app, &url(&up), &bad.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "Alertmanager does not retry 4xx");
    assert_eq!(err["code"], "invalid_payload");
    assert!(err["message"].as_str().unwrap().contains("on-fire"));
    // Any other body is ignored for scaling.
    let (_, a) = notify(&app, &url(&up), r#"{"hello": "world"}"#).await;
    assert_eq!(a["outcome"], "scaled");
    assert_eq!(app.executions(&up).await.len(), 1);
}

#[tokio::test]
async fn metrics_count_skips_by_reason() {
    let app = spawn_app().await;
    let up = receiver(&app, "up", "up", json!({})).await;
    notify(&app, &url(&up), FIRING).await;
    notify(&app, &url(&up), FIRING).await;
    notify(&app, &url(&up), RESOLVED).await;
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"hookd_triggers_total{driver="scaleService",outcome="skipped",reason="duplicate",dry_run="false"} 1"#,
        r#"hookd_triggers_total{driver="scaleService",outcome="skipped",reason="resolved",dry_run="false"} 1"#,
        r#"hookd_triggers_total{driver="scaleService",outcome="scaled",reason="",dry_run="false"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line}");
    }
}

#[tokio::test]
async fn options_are_validated_and_shown() {
    let app = spawn_app().await;
    let r = receiver(&app, "up", "up", json!({})).await;
    let c = &r["scaleServiceConfig"];
    assert_eq!(
        (
            c["onResolved"].as_str(),
            c["cooldownUpSeconds"].as_u64(),
            c["cooldownDownSeconds"].as_u64(),
            c["dedupSeconds"].as_u64()
        ),
        (Some("ignore"), None, None, Some(600)),
        "safe defaults"
    );
    for (options, field) in [
        (json!({"onResolved": "panic"}), "scaleServiceConfig.onResolved"),
        (json!({"cooldownDownSeconds": 999_999_999}), "scaleServiceConfig.cooldownDownSeconds"),
        (json!({"dedupSeconds": -1}), "scaleServiceConfig.dedupSeconds"),
    ] {
        let mut config = json!({"serviceId": "web", "action": "up"});
        config.as_object_mut().unwrap().extend(options.as_object().unwrap().clone());
        let (status, err) =
            app.create_receiver(json!({"name": "bad", "driver": "scaleService", "scaleServiceConfig": config})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["field"], field, "{err}");
    }
}

#[tokio::test]
async fn the_alertmanager_snippet_is_ready_to_paste() {
    let app = spawn_app().await;
    let r = receiver(&app, "web up", "up", json!({"dedupSeconds": 120})).await;
    let id = r["id"].as_str().unwrap();
    let response = app
        .http
        .get(format!("{}/v1-webhooks/receivers/{id}/alertmanager-config", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/yaml"));
    let yaml = response.text().await.unwrap();
    let parsed: Value = yaml_serde::from_str(&yaml).unwrap();
    let receiver = &parsed["receivers"][0];
    assert_eq!(receiver["name"], "hookd-web-up", "{yaml}");
    assert_eq!(receiver["webhook_configs"][0]["url"], url(&r), "{yaml}");
    assert_eq!(receiver["webhook_configs"][0]["send_resolved"], true, "{yaml}");
    assert_eq!(
        (parsed["route"]["receiver"].as_str(), parsed["receivers"][1]["name"].as_str()),
        (Some("discard"), Some("discard")),
        "issue 13: valid alone, unmatched alerts go nowhere: {yaml}"
    );
    let route = &parsed["route"]["routes"][0];
    assert_eq!(route["repeat_interval"], "3m", "dedup 120 s + 60 s: {yaml}");
    assert_eq!(route["matchers"], json!([r#"action="up""#, r#"service="web""#]), "{yaml}");
}

/// Issue 10: a name could break out of a YAML comment and add keys to the snippet.
#[tokio::test]
async fn issue_10_names_cannot_inject_yaml_into_the_snippet() {
    let app = spawn_app().await;
    let (status, body) = app
        .create_receiver(json!({"name": "up\u{2028}evil: true", "driver": "scaleService",
            "scaleServiceConfig": {"serviceId": "web", "action": "up", "min": 1, "max": 3}}))
        .await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("name")), "{body}");
    let r = receiver(&app, "up': x # \"evil\": [1]", "up", json!({})).await;
    let id = r["id"].as_str().unwrap();
    let (status, yaml) = app.get(&format!("/v1-webhooks/receivers/{id}/alertmanager-config")).await;
    assert_eq!(status, StatusCode::OK);
    let yaml = yaml.as_str().unwrap();
    let parsed: Value = yaml_serde::from_str(yaml).unwrap();
    let keys: Vec<&String> = parsed.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["receivers", "route"], "{yaml}");
}
