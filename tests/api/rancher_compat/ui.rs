//! The requests Rancher 1.6's UI makes on its Webhooks page (`rancher/ui` branch 1.6-dev:
//! `app/authenticated/project/api/hooks/`, `app/components/webhook/`, `app/models/receiver.js`,
//! its `webhook-store` and `ember-api-store` 2.x), replayed against hookd.
//!
//! The store asks with `limit=-1` and adds `projectId` to every URL, finds a type's URL
//! through its schema's `links.collection`, saves a new record to `receivers`, and deletes
//! or reloads through the record's `links.self`. The page reads the `scaleservice`,
//! `scalehost` and `serviceupgrade` schemas unconditionally (ids lower-cased by the store).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{env_and_service, PROJECT};
use crate::helpers::{read, TestApp};

/// A request with the UI's headers (`store-tweaks.js`), to a full URL.
async fn ui_request(app: &TestApp, method: Method, url: impl AsRef<str>, body: Option<&Value>) -> (StatusCode, Value) {
    let url = url.as_ref();
    let url = if url.contains("projectId=") {
        url.to_owned()
    } else {
        format!("{url}{}projectId={PROJECT}", if url.contains('?') { '&' } else { '?' })
    };
    let mut request = app
        .http
        .request(method, url)
        .bearer_auth(&app.token)
        .header("x-api-action-links", "actionLinks")
        .header("x-api-no-challenge", "true")
        .header("accept", "application/json");
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    read(request.send().await.expect("request sent")).await
}

fn schema<'a>(schemas: &'a Value, id: &str) -> &'a Value {
    let data = schemas["data"].as_array().expect("schemas");
    data.iter()
        .find(|s| s["id"].as_str().is_some_and(|sid| sid.eq_ignore_ascii_case(id)))
        .unwrap_or_else(|| panic!("the UI reads schema {id}; hookd serves none"))
}

#[tokio::test]
async fn the_rancher_ui_webhooks_page_lists_creates_clones_and_deletes() {
    let app = env_and_service(1).await;
    let base = format!("{}/v1-webhooks", app.base);

    // hooks/route.js: findAll('schema', {url: 'schemas'}), then fields it marks required.
    let (status, schemas) = ui_request(&app, Method::GET, &format!("{base}/schemas?limit=-1"), None).await;
    assert_eq!(status, StatusCode::OK, "{schemas}");
    assert!(schema(&schemas, "receiver")["resourceFields"]["name"].is_object());
    assert!(schema(&schemas, "scaleservice")["resourceFields"]["serviceId"].is_object());
    assert!(schema(&schemas, "scalehost")["resourceFields"]["hostSelector"].is_object());
    let upgrade = &schema(&schemas, "serviceupgrade")["resourceFields"];
    assert!(upgrade["serviceSelector"].is_object());
    // new-receiver/component.js reads these defaults when the serviceUpgrade driver is picked
    // (payloadFormat's is null: detect, which the UI sends back as null).
    for field in ["addressType", "batchSize", "intervalMillis", "payloadFormat", "startFirst"] {
        assert!(upgrade[field].get("default").is_some(), "serviceUpgrade.{field} has no default");
    }

    // find('receiver'): the schema's collection link, with limit=-1 ("all").
    let (_, receiver_schema) = ui_request(&app, Method::GET, &format!("{base}/schemas/receiver"), None).await;
    let collection = receiver_schema["links"]["collection"].as_str().expect("links.collection").to_owned();
    assert_eq!(collection, format!("{base}/receivers"));
    let app = &app;
    let list = || ui_request(app, Method::GET, format!("{collection}?limit=-1"), None);
    let (status, empty) = list().await;
    assert_eq!((status, empty["resourceType"].as_str()), (StatusCode::OK, Some("receiver")), "{empty}");
    assert_eq!(empty["data"], json!([]));

    // new-receiver: createRecord + the scaleService defaults, other drivers' configs nulled.
    let new = json!({
        "type": "receiver", "driver": "scaleService", "name": "ui-made",
        "scaleServiceConfig": { "type": "scaleService", "action": "up", "amount": 1, "serviceId": "web", "min": 1, "max": 4 },
        "scaleHostConfig": null, "serviceUpgradeConfig": null,
    });
    let (status, made) = ui_request(app, Method::POST, &format!("{base}/receivers"), Some(&new)).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let self_link = made["links"]["self"].as_str().expect("links.self").to_owned();
    assert!(self_link.ends_with(&format!("?projectId={PROJECT}")), "{self_link}");
    assert!(!made["url"].as_str().unwrap().is_empty());

    // receiver.js "clone": find(id), cloneForNew, save: the resource minus id, links, actions.
    let (status, found) = ui_request(app, Method::GET, &self_link, None).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let mut clone = found.clone();
    for key in ["id", "links", "actions"] {
        clone.as_object_mut().unwrap().remove(key);
    }
    clone["name"] = json!("ui-made-copy");
    let (status, copy) = ui_request(app, Method::POST, &format!("{base}/receivers"), Some(&clone)).await;
    assert_eq!(status, StatusCode::OK, "a GET body saved back as a new record: {copy}");
    assert_eq!(copy["scaleServiceConfig"], found["scaleServiceConfig"]);
    assert_ne!(copy["url"], found["url"]);

    let (_, listed) = list().await;
    let names: Vec<&str> = listed["data"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["ui-made", "ui-made-copy"]);
    assert!(listed["pagination"]["next"].is_null(), "limit=-1 is all of them: {listed}");

    // promptDelete → delete(): DELETE links.self.
    let (status, _) = ui_request(app, Method::DELETE, &self_link, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed) = list().await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn limit_minus_one_follows_next_links_and_other_negatives_are_refused() {
    let app = env_and_service(1).await;
    let (status, answer) = app.get("/v1-webhooks/receivers?limit=-2").await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("-1 for all"), "{answer}");
    let (status, answer) = app.get("/v1-webhooks/receivers?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    for i in 0..3 {
        app.scale_receiver(&format!("r{i}"), "web", "up", 1, 1, 10).await;
    }
    let (status, all) = app.get("/v1-webhooks/receivers?limit=-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["data"].as_array().map(Vec::len), Some(3));
    let id = all["data"][0]["id"].as_str().unwrap();
    let (status, executions) = app.get(&format!("/v1-webhooks/receivers/{id}/executions?limit=-1")).await;
    assert_eq!((status, executions["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{executions}");
}
