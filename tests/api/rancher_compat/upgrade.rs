//! `rancher/webhook-service` v1.6: `service/upgrade_service_test.go`.
//!
//! Rancher's mock driver acted on nothing; here the push upgrades a real local service
//! labelled `foo=bar` that runs `example/web`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{create_get_execute_list_delete, create_webhook, rancher_request, refused, PROJECT};
use crate::helpers::{spawn_app_with, TestApp};

async fn env_with_labelled_service() -> TestApp {
    let app = spawn_app_with(|c| {
        c.backends[0].services[0].labels.insert("foo".into(), "bar".into());
    })
    .await;
    app.wait_for_processes("web", 1).await;
    app
}

fn upgrade(name: &str, tag: &str, batch_size: i64, interval: i64) -> Value {
    json!({"driver": "serviceUpgrade", "name": name, "serviceUpgradeConfig": {
        "serviceSelector": {"foo": "bar"}, "tag": tag, "batchSize": batch_size, "intervalMillis": interval, "startFirst": true}})
}

#[tokio::test]
async fn test_webhook_create_and_execute_service_upgrade() {
    let app = env_with_labelled_service().await;
    let push = json!({"push_data": {"tag": "wh-tag"}, "repository": {"repo_name": "example/web"}});
    create_get_execute_list_delete(&app, upgrade("wh-name", "wh-tag", 1, 2), Some(push), |wh| {
        let c = &wh["serviceUpgradeConfig"];
        assert_eq!(
            (c["serviceSelector"]["foo"].as_str(), c["tag"].as_str(), c["type"].as_str()),
            (Some("bar"), Some("wh-tag"), Some("serviceUpgrade"))
        );
        assert_eq!(
            (c["batchSize"].as_u64(), c["intervalMillis"].as_u64(), c["startFirst"].as_bool()),
            (Some(1), Some(2), Some(true))
        );
    })
    .await;
}

#[tokio::test]
async fn test_webhook_tag() {
    let app = env_with_labelled_service().await;
    let pass = [
        "wh-tag",
        "1.2.3",
        "latest",
        "1.2.3-alpha1",
        "1.2.3-alpha1-pre1_rc1",
        "1234",
        "version",
        "VERSION",
        "versionLATEST123",
        "version.latest.123-version_latest",
        "_startsWithUnderscore",
    ];
    let fail = [
        &"1".repeat(135)[..],
        ".startsWithPeriod",
        "-startsWithDash",
        "$%^startsWithSpecialCharacters",
        "Contains@#$characters",
        "endsWith^&*(",
        "1.2.3-alpha&",
    ];
    for (i, tag) in pass.iter().enumerate() {
        let (status, wh) = create_webhook(&app, PROJECT, &upgrade(&format!("pass{i}"), tag, 1, 2)).await;
        assert_eq!(status, StatusCode::OK, "Tag is valid: {tag}: {wh}");
        let path = format!("/v1-webhooks/receivers/{}?projectId={PROJECT}", wh["id"].as_str().unwrap());
        assert_eq!(rancher_request(&app, Method::DELETE, &path, None).await.0, StatusCode::NO_CONTENT);
    }
    for (i, tag) in fail.iter().enumerate() {
        refused(&app, upgrade(&format!("fail{i}"), tag, 1, 2), &format!("Tag is invalid: {tag}")).await;
    }
}

#[tokio::test]
async fn test_webhook_invalid_batch_size_interval() {
    let app = env_with_labelled_service().await;
    refused(&app, upgrade("wh-name", "wh-tag", 0, 2), "Invalid batchSize").await;
    refused(&app, upgrade("wh-name", "wh-tag", 1, 0), "Invalid intervalMillis").await;
}
