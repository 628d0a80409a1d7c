//! `rancher/webhook-service` v1.6: `service/scale_service_test.go` and `service/framework_test.go`.
//!
//! Rancher's mock driver did nothing; here the receiver scales a real local service. Ids
//! were "1" in Rancher's mocks; hookd's are generated, so the checks use the created id.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{create_webhook, env_and_service, execute, rancher_request, scale, PROJECT};
use crate::helpers::read;

const CONSTRUCT: &str = r#"{"driver":"scaleService","name":"wh-name",
    "scaleServiceConfig": {"serviceId": "web", "amount": 1, "action": "up", "min": 1, "max": 4}}"#;

#[track_caller]
fn assert_webhook(wh: &Value, id: &str) {
    let config = &wh["scaleServiceConfig"];
    assert_eq!(
        (wh["name"].as_str(), wh["driver"].as_str(), wh["id"].as_str()),
        (Some("wh-name"), Some("scaleService"), Some(id))
    );
    assert!(!wh["url"].as_str().unwrap_or("").is_empty(), "Unexpected webhook: {wh}");
    assert_eq!((config["serviceId"].as_str(), config["action"].as_str()), (Some("web"), Some("up")), "{wh}");
    assert_eq!(
        (config["amount"].as_u64(), config["min"].as_u64(), config["max"].as_u64()),
        (Some(1), Some(1), Some(4))
    );
    assert_eq!(config["type"], "scaleService");
    let self_link = wh["links"]["self"].as_str().unwrap_or("");
    assert!(
        self_link.ends_with(&format!("/v1-webhooks/receivers/{id}?projectId={PROJECT}")),
        "Bad self URL: {self_link}"
    );
}

#[tokio::test]
async fn test_webhook_create_and_execute_scale_service() {
    let app = env_and_service(1).await;
    let construct: Value = serde_json::from_str(CONSTRUCT).unwrap();
    let (status, wh) = create_webhook(&app, PROJECT, &construct).await;
    assert_eq!(status, StatusCode::OK, "StatusCode {status} means ConstructPayloadTest failed: {wh}");
    let id = wh["id"].as_str().unwrap().to_owned();
    assert_webhook(&wh, &id);

    // Same name again: refused, as JSON (hookd: 409, README "Duplicate names").
    let (status, dup) = create_webhook(&app, PROJECT, &construct).await;
    assert!(
        status.is_client_error() && dup["type"] == "error",
        "Duplicate name webhook creation should not be allowed: {dup}"
    );

    let by_id = format!("/v1-webhooks/receivers/{id}?projectId={PROJECT}");
    let (status, got) = rancher_request(&app, Method::GET, &by_id, None).await;
    assert_eq!(status, StatusCode::OK, "StatusCode {status} means get failed");
    assert_webhook(&got, &id);

    let (status, answer) = execute(&app, got["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "StatusCode {status} means execute failed: {answer}");
    assert_eq!(scale(&app).await, 2);

    let list = format!("/v1-webhooks/receivers?projectId={PROJECT}");
    let (status, collection) = rancher_request(&app, Method::GET, &list, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(collection["data"].as_array().map(Vec::len), Some(1), "Added webhook not listed");
    assert_webhook(&collection["data"][0], &id);

    let (status, _) = rancher_request(&app, Method::DELETE, &by_id, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "StatusCode {status} means delete failed");
    let (_, collection) = rancher_request(&app, Method::GET, &list, None).await;
    assert_eq!(collection["data"], json!([]), "List - Webhook not revoked on delete");

    let (status, answer) = execute(&app, got["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Execute - Webhook not revoked after delete: {answer}");
    assert_eq!(scale(&app).await, 2);
}

#[tokio::test]
async fn test_webhook_invalid_min_max_action_scale_service() {
    let app = env_and_service(1).await;
    for (config, why) in [
        (r#"{"serviceId": "web", "amount": 1, "action": "up", "min": -1, "max": 4}"#, "Invalid min"),
        (r#"{"serviceId": "web", "amount": 1, "action": "up", "min": 1, "max": -4}"#, "Invalid max"),
        (
            r#"{"serviceId": "web", "amount": 1.5, "action": "up", "min": 1, "max": 4}"#,
            "Amount of type float is invalid",
        ),
        (r#"{"serviceId": "web", "amount": 1, "action": "up", "min": 1.5, "max": 4}"#, "Min of type float is invalid"),
        (r#"{"serviceId": "web", "amount": 1, "action": "up", "min": 1, "max": 4.5}"#, "Max of type float is invalid"),
    ] {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"driver":"scaleService","name":"wh-name","scaleServiceConfig": {config}}}"#
        ))
        .unwrap();
        let (status, answer) = create_webhook(&app, PROJECT, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(!message.contains("expected") && !message.contains("line 1"), "a sentence, not serde's: {message}");
    }
}

#[tokio::test]
async fn test_create_with_invalid_driver() {
    let app = env_and_service(1).await;
    let body = json!({"driver":"driverInvalid","name":"wh-name",
        "scaleServiceConfig": {"serviceId": "web", "amount": 1, "action": "up", "min": -1, "max": 4}});
    let (status, answer) = create_webhook(&app, PROJECT, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "Invalid driver: {answer}");
}

/// Rancher required `projectId`; hookd defaults it to `default` (README, differences:
/// "projectId"). An empty body is still a 400 that says what is missing.
#[tokio::test]
async fn test_missing_project_id_header() {
    let app = env_and_service(1).await;
    let (status, answer) = rancher_request(&app, Method::POST, "/v1-webhooks/receivers", Some(&json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["type"], "error");
    let construct: Value = serde_json::from_str(CONSTRUCT).unwrap();
    let (status, wh) = rancher_request(&app, Method::POST, "/v1-webhooks/receivers", Some(&construct)).await;
    assert_eq!((status, wh["projectId"].as_str()), (StatusCode::OK, Some(PROJECT)), "{wh}");
}

/// Rancher required `Content-Type: application/json`; hookd reads a body without one as
/// JSON (README, differences: "Content-Type"), and refuses other types with 415.
#[tokio::test]
async fn test_missing_content_type_header() {
    let app = env_and_service(1).await;
    let url = format!("{}/v1-webhooks/receivers?projectId={PROJECT}", app.base);
    let send = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app.http.post(&url).basic_auth("access-key", Some(&app.token)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { read(request.send().await.unwrap()).await }
    };
    let (status, answer) = send("{}", None).await;
    assert_eq!((status, answer["type"].as_str()), (StatusCode::BAD_REQUEST, Some("error")), "{answer}");
    let (status, answer) = send(CONSTRUCT, Some("text/plain")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("application/json"), "{answer}");
    let (status, answer) = send(CONSTRUCT, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}
