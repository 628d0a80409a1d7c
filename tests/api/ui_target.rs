//! Issue 18 in the web UI (real Chromium): a target-mode receiver made through the form, shown,
//! and edited without losing its mode.

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    components::require,
    helpers::spawn_app,
    ui::{css, screenshot, set, signed_in, text_appears},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn issue_18_a_target_receiver_through_the_form() {
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    let b = signed_in(&app).await;
    let c = &b.client;
    c.goto(&format!("{}/ui/#/receivers/new", app.base)).await.unwrap();
    css(c, "#f-mode").await.select_by_value("target").await.unwrap();
    assert!(!css(c, "#f-amount").await.is_displayed().await.unwrap(), "step fields hide in target mode");
    set(c, "#f-name", "web-target").await;
    css(c, "#f-serviceId").await.select_by_value("web").await.unwrap();
    set(c, "#f-targetFrom", "desired_replicas").await;
    set(c, "#f-maxStepUp", "50%").await;
    set(c, "#f-stabilizationSeconds", "120").await;
    set(c, "#f-max", "8").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "To the count in the alerts' label desired_replicas, between 1 and 8").await;
    text_appears(c, "at most 50% up").await;
    screenshot(c, "target-receiver").await;
    let (status, list) = app.get("/v1-webhooks/receivers").await;
    assert_eq!(status, StatusCode::OK);
    let config = &list["data"][0]["scaleServiceConfig"];
    assert_eq!(
        (
            config["mode"].clone(),
            config["targetFrom"].clone(),
            config["maxStepUp"].clone(),
            config["stabilizationSeconds"].clone()
        ),
        (json!("target"), json!({"label": "desired_replicas"}), json!("50%"), json!(120)),
        "{config}"
    );
    // Edited (the name only): still a target receiver with the same settings.
    let url = c.current_url().await.unwrap();
    c.goto(&format!("{}/edit", url.as_str())).await.unwrap();
    assert_eq!(css(c, "#f-mode").await.prop("value").await.unwrap().as_deref(), Some("target"));
    set(c, "#f-name", "web-target-2").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "web-target-2").await;
    let (_, list) = app.get("/v1-webhooks/receivers").await;
    assert_eq!(&list["data"][0]["scaleServiceConfig"], config, "nothing but the name changed");
}
