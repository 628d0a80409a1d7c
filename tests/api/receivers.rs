//! The management API: Rancher's shapes, pagination, update, enable/disable, regenerate.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn create_answers_200_with_the_rancher_resource_shape() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 10).await;
    assert_eq!(r["type"], "receiver");
    assert_eq!(r["name"], "web-up");
    assert_eq!(r["driver"], "scaleService");
    assert_eq!(r["state"], "active");
    assert_eq!(r["projectId"], "default");
    assert_eq!(r["description"], "Scale up web by 1, between 1 and 10");
    let config = &r["scaleServiceConfig"];
    assert_eq!(config["serviceId"], "web");
    assert_eq!(config["action"], "up");
    assert_eq!(
        (config["amount"].as_u64(), config["min"].as_u64(), config["max"].as_u64()),
        (Some(1), Some(1), Some(10))
    );
    let url = r["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/v1-webhooks/endpoint?token=", app.base)), "{url}");
    let id = r["id"].as_str().unwrap();
    assert!(r["links"]["self"].as_str().unwrap().ends_with(&format!("/v1-webhooks/receivers/{id}?projectId=default")));

    let (status, fetched) = app.get(&format!("/v1-webhooks/receivers/{id}?projectId=default")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["url"], r["url"], "the URL is stable across reads");
}

#[tokio::test]
async fn a_json_content_type_with_parameters_is_accepted() {
    // Rancher refused `application/json; charset=utf-8`.
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/v1-webhooks/receivers", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"name":"a","driver":"scaleService","scaleServiceConfig":{"serviceId":"web","action":"up"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (body["scaleServiceConfig"]["amount"].as_u64(), body["scaleServiceConfig"]["max"].as_u64()),
        (Some(1), Some(100))
    );
}

#[tokio::test]
async fn the_list_is_paginated_with_markers() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.scale_receiver(&format!("r{i}"), "web", "up", 1, 1, 10).await;
    }
    let mut names = Vec::new();
    let mut path = "/v1-webhooks/receivers?projectId=default&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["type"], "collection");
        assert_eq!(page["resourceType"], "receiver");
        pages += 1;
        names.extend(page["data"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()));
        match page["pagination"]["next"].as_str() {
            Some(next) => path = next.strip_prefix(&app.base).unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(names, ["r0", "r1", "r2", "r3", "r4"]);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn update_changes_the_config_and_keeps_the_url() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 2).await;
    let id = r["id"].as_str().unwrap();
    let (status, updated) = app
        .request(
            Method::PUT,
            &format!("/v1-webhooks/receivers/{id}"),
            Some(json!({"name": "web-up-fast", "scaleServiceConfig": {"serviceId": "web", "action": "up", "amount": 2, "min": 1, "max": 6}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "web-up-fast");
    assert_eq!(updated["url"], r["url"]);
    let (_, answer) = app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!(
        (answer["from"].as_u64(), answer["to"].as_u64()),
        (Some(1), Some(3)),
        "the new amount applies: {answer}"
    );

    // A GET body can be PUT back as it is.
    let (status, again) =
        app.request(Method::PUT, &format!("/v1-webhooks/receivers/{id}"), Some(updated.clone())).await;
    assert_eq!(status, StatusCode::OK, "{again}");

    let (status, err) = app
        .request(Method::PUT, &format!("/v1-webhooks/receivers/{id}"), Some(json!({"driver": "serviceUpgrade"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["code"], "driver_immutable");
    let (_, err) =
        app.request(Method::PUT, &format!("/v1-webhooks/receivers/{id}"), Some(json!({"driver": "forwardPost"}))).await;
    assert_eq!(err["code"], "unknown_driver");
}

#[tokio::test]
async fn a_disabled_receiver_records_a_skip_and_changes_nothing() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 10).await;
    let id = r["id"].as_str().unwrap();
    let (status, disabled) =
        app.request(Method::POST, &format!("/v1-webhooks/receivers/{id}?action=disable"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(disabled["state"], "inactive");
    let (status, answer) = app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["outcome"], "skipped");
    assert_eq!(answer["reason"], "disabled");
    assert_eq!(app.desired_scale("web").await, 1);

    app.request(Method::POST, &format!("/v1-webhooks/receivers/{id}?action=enable"), None).await;
    let (_, answer) = app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!(answer["outcome"], "scaled");
    assert_eq!(app.executions(&r).await.len(), 2);
}

#[tokio::test]
async fn regenerating_the_url_revokes_the_old_one_at_once() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 10).await;
    let id = r["id"].as_str().unwrap();
    let (status, regenerated) =
        app.request(Method::POST, &format!("/v1-webhooks/receivers/{id}?action=regenerateUrl"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(regenerated["url"], r["url"]);
    let (status, err) = app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["code"], "receiver_revoked");
    let (status, _) = app.trigger(regenerated["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn schemas_describe_receivers_and_drivers() {
    let app = spawn_app().await;
    let (status, body) = app.get("/v1-webhooks/schemas").await;
    assert_eq!(status, StatusCode::OK);
    let schemas = body["data"].as_array().unwrap();
    let scale = schemas.iter().find(|s| s["id"] == "scaleService").expect("scaleService schema");
    assert_eq!(scale["resourceFields"]["action"]["options"], json!(["up", "down"]));
    assert_eq!(scale["resourceFields"]["min"]["default"], 1);
    let receiver = schemas.iter().find(|s| s["id"] == "receiver").expect("receiver schema");
    assert_eq!(receiver["resourceFields"]["driver"]["options"], json!(["scaleService", "serviceUpgrade", "scaleHost"]));
    let (status, one) = app.get("/v1-webhooks/schemas/receiver").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], "receiver");
}

#[tokio::test]
async fn the_services_list_shows_each_service_with_its_scale() {
    let app = spawn_app().await;
    app.wait_for_processes("web", 1).await;
    let (status, body) = app.get("/v1-webhooks/services?projectId=default").await;
    assert_eq!(status, StatusCode::OK);
    let web = body["data"].as_array().unwrap().iter().find(|s| s["id"] == "web").unwrap().clone();
    assert_eq!(web["scale"], 1);
    assert_eq!(web["running"], 1);
    assert_eq!(web["image"], "example/web:1.0");
    assert_eq!(web["labels"]["app"], "web");
    let (status, err) = app.get("/v1-webhooks/services?projectId=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "project_not_found");
}
