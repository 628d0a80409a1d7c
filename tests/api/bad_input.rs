//! Every kind of bad input gets a 4xx with a stable code and a sentence, and changes nothing.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{read, spawn_app, TestApp};

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str, case: &str) {
    assert_eq!(status, expected, "{case}: {body}");
    assert_eq!(body["type"], "error", "{case}");
    assert_eq!(body["status"].as_u64(), Some(u64::from(expected.as_u16())), "{case}: status member is the real status");
    assert_eq!(body["code"], code, "{case}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| m.len() > 10), "{case}: a sentence, not a word: {body}");
}

async fn post_raw(app: &TestApp, content_type: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}/v1-webhooks/receivers", app.base))
        .bearer_auth(&app.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    read(response).await
}

fn scale(config: Value) -> Value {
    json!({"name": "web-up", "driver": "scaleService", "scaleServiceConfig": config})
}

#[tokio::test]
async fn bad_receiver_bodies_get_clear_400s() {
    let app = spawn_app().await;
    let good = json!({"serviceId": "web", "action": "up", "amount": 1, "min": 1, "max": 10});
    let with = |key: &str, value: Value| {
        let mut config = good.clone();
        config[key] = value;
        scale(config)
    };
    let cases: Vec<(&str, Value, &str, Option<&str>)> = vec![
        ("amount 1.5", with("amount", json!(1.5)), "invalid_body", Some("scaleServiceConfig.amount")),
        ("amount as a string", with("amount", json!("2")), "invalid_body", Some("scaleServiceConfig.amount")),
        ("negative amount", with("amount", json!(-1)), "invalid_body", Some("scaleServiceConfig.amount")),
        ("amount 0", with("amount", json!(0)), "invalid_value", Some("scaleServiceConfig.amount")),
        ("min >= max", with("min", json!(10)), "invalid_value", Some("scaleServiceConfig.max")),
        ("min 0", with("min", json!(0)), "invalid_value", Some("scaleServiceConfig.min")),
        ("bad action", with("action", json!("sideways")), "invalid_value", Some("scaleServiceConfig.action")),
        ("unknown service", with("serviceId", json!("nope")), "unknown_service", Some("scaleServiceConfig.serviceId")),
        ("unknown config field", with("colour", json!("red")), "invalid_body", None),
        ("unknown driver", json!({"name": "x", "driver": "launchRocket"}), "unknown_driver", Some("driver")),
        ("missing name", json!({"driver": "scaleService", "scaleServiceConfig": good}), "missing_field", Some("name")),
        (
            "blank name",
            json!({"name": "  ", "driver": "scaleService", "scaleServiceConfig": good}),
            "invalid_value",
            Some("name"),
        ),
        ("missing driver", json!({"name": "x"}), "missing_field", Some("driver")),
        ("missing config", json!({"name": "x", "driver": "scaleService"}), "missing_field", Some("scaleServiceConfig")),
        (
            "unknown top-level field",
            json!({"name": "x", "driver": "scaleService", "scaleServiceConfig": good, "colour": 1}),
            "invalid_body",
            None,
        ),
        ("not an object", json!([1, 2]), "invalid_body", None),
    ];
    for (case, body, code, field) in cases {
        let (status, err) = app.create_receiver(body).await;
        assert_error(status, &err, StatusCode::BAD_REQUEST, code, case);
        if let Some(field) = field {
            assert_eq!(err["field"], field, "{case}: {err}");
        }
    }

    let (status, err) = post_raw(&app, "application/json", r#"{"name": "x", "driver":"#).await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "invalid_json", "malformed JSON");
    let (status, err) = post_raw(&app, "application/json", "").await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "missing_body", "empty body");
    let (status, err) = post_raw(&app, "application/x-www-form-urlencoded", "name=x").await;
    assert_error(status, &err, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "form body");
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let (status, err) = post_raw(&app, "application/json", huge).await;
    assert_error(status, &err, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "2 MiB body");

    let (status, err) = app.get("/v1-webhooks/receivers?limit=abc").await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "invalid_query", "bad limit");
    let (status, err) = app.get("/v1-webhooks/receivers?projectId=Not%20A%20Project").await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "invalid_value", "bad project name");

    let (status, list) = app.get("/v1-webhooks/receivers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "no bad request created anything");
}

#[tokio::test]
async fn a_duplicate_name_is_409() {
    let app = spawn_app().await;
    app.scale_receiver("web-up", "web", "up", 1, 1, 10).await;
    let (status, err) = app
        .create_receiver(scale(json!({"serviceId": "api", "action": "down", "amount": 1, "min": 1, "max": 3})))
        .await;
    assert_error(status, &err, StatusCode::CONFLICT, "duplicate_name", "duplicate name");
    assert_eq!(err["field"], "name");
    let (_, list) = app.get("/v1-webhooks/receivers").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_management_api_needs_a_valid_bearer_token() {
    let app = spawn_app().await;
    for (case, token) in [("no token", None), ("wrong token", Some("hookd_wrong")), ("empty token", Some(""))] {
        let mut request = app.http.get(format!("{}/v1-webhooks/receivers", app.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"), "{case}");
        let (status, err) = read(response).await;
        assert_error(status, &err, StatusCode::UNAUTHORIZED, "unauthorized", case);
    }
    let response =
        app.http.post(format!("{}/v1-webhooks/receivers", app.base)).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_ids_unknown_paths_and_methods_are_4xx() {
    let app = spawn_app().await;
    let (status, err) = app.get("/v1-webhooks/receivers/not-an-id").await;
    assert_error(status, &err, StatusCode::NOT_FOUND, "receiver_not_found", "bad id");
    let (status, err) = app.get("/v1-webhooks/receivers/0190a1b2c3d47e8f9a0b1c2d3e4f5a6b").await;
    assert_error(status, &err, StatusCode::NOT_FOUND, "receiver_not_found", "unknown id");
    let (status, err) = app.get("/nowhere").await;
    assert_error(status, &err, StatusCode::NOT_FOUND, "not_found", "unknown path");
    let (status, err) = app.request(reqwest::Method::PATCH, "/v1-webhooks/receivers", None).await;
    assert_error(status, &err, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "PATCH");
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 10).await;
    let id = r["id"].as_str().unwrap();
    let (status, err) =
        app.request(reqwest::Method::POST, &format!("/v1-webhooks/receivers/{id}?action=explode"), None).await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "unknown_action", "unknown action");
}

#[tokio::test]
async fn an_oversized_trigger_body_is_413_and_not_acted_on() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 10).await;
    let response = app.http.post(r["url"].as_str().unwrap()).body(vec![b'x'; 2 * 1024 * 1024]).send().await.unwrap();
    let (status, err) = read(response).await;
    assert_error(status, &err, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "huge trigger body");
    assert_eq!(app.desired_scale("web").await, 1);
    assert!(app.executions(&r).await.is_empty());
}
