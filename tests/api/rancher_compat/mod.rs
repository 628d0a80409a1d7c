//! Rancher's own tests of its 1.x webhook-service, ported (issue 11).
//!
//! `validation` ports `rancher/validation-tests`' `test_webhook_scale_service.py` (the 1.4
//! `test_webhook.py` holds the same tests); `service` ports the Go tests of
//! `rancher/webhook-service` (branch v1.6, `service/*_test.go`); `ui` replays the requests
//! the Rancher 1.6 UI makes; `awaiting_driver` holds the tests of the driver hookd lacks.
//! Each keeps Rancher's test name and intent. What depended on Cattle is adapted: a
//! Rancher "environment" is the project `default`, a Cattle service is a local service
//! (`web`, started at the scale the test needs), and `client.update(service, scale=n)` is
//! an operator's change of scale made through another receiver. Where hookd deliberately
//! answers otherwise, the test asserts hookd's answer and names the row of the README's
//! table of differences.
//!
//! Not ported: `test_webhook_service_no_image`. Cattle's selector services (image
//! `rancher/none`) have no counterpart in Docker or the local backend.

mod awaiting_driver;
mod scale_host;
mod service;
mod ui;
mod upgrade;
mod validation;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{read, spawn_app_with, TestApp};

/// The Cattle service each test scales: a local service of `sleep` processes.
pub const SERVICE: &str = "web";
/// Rancher's environment (`env.accountId`); hookd's project.
pub const PROJECT: &str = "default";

/// Rancher's `create_env_and_svc(client, launch_config, scale)`, activated: hookd with
/// the service `web` at `scale`.
pub async fn env_and_service(scale: u32) -> TestApp {
    let app = spawn_app_with(move |config| config.backends[0].services[0].scale = scale).await;
    app.wait_for_processes(SERVICE, scale as usize).await;
    app
}

/// Rancher's `scaleServiceConfig` body.
pub fn scale_body(name: &str, action: Value, amount: Value, service: &str, min: Value, max: Value) -> Value {
    json!({
        "name": name,
        "driver": "scaleService",
        "scaleServiceConfig": { "action": action, "amount": amount, "serviceId": service, "min": min, "max": max },
    })
}

/// A request as Rancher's test helpers send it: JSON headers and HTTP basic credentials
/// (`auth=(ACCESS_KEY, SECRET_KEY)`), the secret being an API token.
pub async fn rancher_request(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.base))
        .basic_auth("access-key", Some(&app.token))
        .header("accept", "application/json")
        .header("content-type", "application/json");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    read(request.send().await.expect("request sent")).await
}

/// `create_webhook(projectid, data)`.
pub async fn create_webhook(app: &TestApp, project: &str, data: &Value) -> (StatusCode, Value) {
    rancher_request(app, Method::POST, &format!("/v1-webhooks/receivers?projectId={project}"), Some(data)).await
}

/// `create_webhook` that must succeed with Rancher's 200; returns (url, id).
pub async fn created(app: &TestApp, data: &Value) -> (String, String) {
    let (status, body) = create_webhook(app, PROJECT, data).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (body["url"].as_str().expect("url").to_owned(), body["id"].as_str().expect("id").to_owned())
}

/// `list_webhook(projectid, webhook_id)`: one receiver, or the collection's `data`.
pub async fn list_webhook(app: &TestApp, project: &str, id: Option<&str>) -> Value {
    let path = match id {
        Some(id) => format!("/v1-webhooks/receivers/{id}?projectId={project}"),
        None => format!("/v1-webhooks/receivers?projectId={project}"),
    };
    let (status, body) = rancher_request(app, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    if id.is_some() {
        body
    } else {
        body["data"].clone()
    }
}

/// `delete_webhook_verify(projectid, webhook_id)`: 204, then gone from the list.
pub async fn delete_webhook_verify(app: &TestApp, project: &str, id: &str) {
    let path = format!("/v1-webhooks/receivers/{id}?projectId={project}");
    let (status, body) = rancher_request(app, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let list = list_webhook(app, project, None).await;
    assert!(list.as_array().expect("data").iter().all(|r| r["id"] != id), "Webhook Deletion Unsuccessful: {list}");
}

/// `requests.post(webhook_url)`: no body, no headers.
pub async fn execute(app: &TestApp, url: &str) -> (StatusCode, Value) {
    read(app.http.post(url).send().await.expect("trigger sent")).await
}

/// `client.wait_success(service).scale`: the desired scale, once that many processes run.
pub async fn scale(app: &TestApp) -> u64 {
    let desired = app.desired_scale(SERVICE).await;
    app.wait_for_processes(SERVICE, desired as usize).await;
    desired
}

/// `client.update(service, scale=n)`: an operator's change, made here by a receiver of its own.
pub async fn set_scale(app: &TestApp, n: u64) {
    let current = app.desired_scale(SERVICE).await;
    if current == n {
        return;
    }
    let action = if n > current { "up" } else { "down" };
    let name = format!("operator-{n}-{}", uuid::Uuid::now_v7().simple());
    let body = scale_body(&name, json!(action), json!(current.abs_diff(n)), SERVICE, json!(1), json!(10_000));
    let (url, id) = created(app, &body).await;
    let (status, answer) = execute(app, &url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    delete_webhook_verify(app, PROJECT, &id).await;
    assert_eq!(scale(app).await, n);
}

/// Rancher's tests compare `message` with Rancher's sentence; hookd's message begins with
/// it and may go on to say why (README: "Differences from Rancher").
#[track_caller]
pub fn assert_rancher_message(body: &Value, expected: &str) {
    let message = body["message"].as_str().unwrap_or_else(|| panic!("no message in {body}"));
    assert!(message.starts_with(expected), "message {message:?} does not begin with Rancher's {expected:?}");
}

/// Create (200), get, execute (2xx), list, delete (204): Rancher's `TestWebhookCreateAndExecute*`.
pub async fn create_get_execute_list_delete(
    app: &TestApp,
    body: Value,
    payload: Option<Value>,
    check: impl Fn(&Value),
) {
    let (status, wh) = create_webhook(app, PROJECT, &body).await;
    assert_eq!(status, StatusCode::OK, "StatusCode {status} means ConstructPayloadTest failed: {wh}");
    let id = wh["id"].as_str().expect("id").to_owned();
    let url = wh["url"].as_str().expect("url").to_owned();
    assert!(!url.contains("&amp;") && !url.contains("\\u0026"), "Bad execute URL, contains escaped `&` character");
    let self_link = format!("/v1-webhooks/receivers/{id}?projectId={PROJECT}");
    for wh in [wh.clone(), rancher_request(app, Method::GET, &self_link, None).await.1] {
        assert_eq!(
            (wh["name"].as_str(), &wh["driver"], wh["id"].as_str()),
            (Some("wh-name"), &body["driver"], Some(id.as_str()))
        );
        assert!(
            wh["links"]["self"].as_str().unwrap_or("").ends_with(&self_link),
            "Bad self URL: {}",
            wh["links"]["self"]
        );
        check(&wh);
    }
    let mut trigger = app.http.post(&url);
    if let Some(payload) = payload {
        trigger = trigger.json(&payload);
    }
    let response = trigger.send().await.unwrap();
    assert!(response.status().is_success(), "StatusCode {} means execute failed", response.status());
    let (status, list) =
        rancher_request(app, Method::GET, &format!("/v1-webhooks/receivers?projectId={PROJECT}"), None).await;
    assert_eq!((status, list["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "Added webhook not listed");
    check(&list["data"][0]);
    let (status, _) = rancher_request(app, Method::DELETE, &self_link, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "StatusCode {status} means delete failed");
    let (status, _) = execute(app, &url).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

pub async fn refused(app: &TestApp, body: Value, why: &str) {
    let (status, answer) = create_webhook(app, PROJECT, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {answer}");
}
