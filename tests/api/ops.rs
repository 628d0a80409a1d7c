//! Health, readiness, metrics and request ids.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers().contains_key("x-request-id"), "{path} carries a request id");
    }
}

#[tokio::test]
async fn metrics_show_triggers_rejections_and_desired_scale() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 10).await;
    app.trigger(r["url"].as_str().unwrap()).await;
    app.trigger(&format!("{}/v1-webhooks/endpoint?token=forged", app.base)).await;
    let response = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for expected in [
        r#"hookd_triggers_total{driver="scaleService",outcome="scaled",reason="",dry_run="false"} 1"#,
        r#"hookd_triggers_rejected_total{code="invalid_token"} 1"#,
        r#"hookd_service_desired_scale{project="default",backend="local",service="web"} 2"#,
        r#"hookd_service_desired_scale{project="default",backend="local",service="api"} 1"#,
        r#"hookd_trigger_duration_seconds_count{driver="scaleService"} 1"#,
        r#"hookd_backend_call_duration_seconds_count{backend="local",operation="write_scale"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

#[tokio::test]
async fn a_given_request_id_is_propagated() {
    let app = spawn_app().await;
    let response =
        app.http.get(format!("{}/healthz", app.base)).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}
