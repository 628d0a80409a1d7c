//! Issue 14 in the web UI (real Chromium): a receiver's sender verification set, kept and
//! removed through the form, with the secret never shown back.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::{
    components::require,
    helpers::{spawn_app, TestApp},
    ui::{css, screenshot, set, signed_in, text_appears, text_of},
};

fn github_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn only_receiver(app: &TestApp) -> Value {
    let (status, list) = app.get("/v1-webhooks/receivers").await;
    assert_eq!(status, StatusCode::OK);
    list["data"][0].clone()
}

async fn post(app: &TestApp, url: &str, signature: Option<String>) -> StatusCode {
    let body = r#"{"ref":"main"}"#;
    let mut request = app.http.post(url).header("content-type", "application/json").body(body);
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    request.send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn issue_14_sender_verification_through_the_form() {
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    let b = signed_in(&app).await;
    let c = &b.client;
    let secret = "a-github-secret-of-some-length";
    c.goto(&format!("{}/ui/#/receivers/new", app.base)).await.unwrap();
    assert!(!css(c, "#f-verifySecret").await.is_displayed().await.unwrap(), "no secret without a check");
    set(c, "#f-name", "web-signed").await;
    css(c, "#f-serviceId").await.select_by_value("web").await.unwrap();
    css(c, "#f-verifyType").await.select_by_value("github").await.unwrap();
    assert!(!css(c, "#f-verifyHeader").await.is_displayed().await.unwrap(), "the header is only for header checks");
    set(c, "#f-verifySecret", "too-short").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    // The server's field error lands at the secret's input.
    assert!(
        crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
            text_of(c, "[data-error-for=verifySecret]").await.contains("at least 16 characters")
        })
        .await,
        "the short secret's error is shown at its field"
    );
    assert_eq!(css(c, "#f-verifySecret").await.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    set(c, "#f-verifySecret", secret).await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "GitHub signature (X-Hub-Signature-256)").await;
    css(c, "[data-test=needs-proof]").await;
    screenshot(c, "sender-verification").await;
    let r = only_receiver(&app).await;
    assert_eq!(r["senderVerification"], json!({"type": "github"}), "set, and the secret not shown: {r}");
    let url = r["url"].as_str().unwrap().to_owned();
    assert_eq!(post(&app, &url, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&app, &url, Some(github_signature(secret, r#"{"ref":"main"}"#))).await, StatusCode::OK);

    // Edited (the name only, secret left empty): the stored secret still verifies.
    let page = c.current_url().await.unwrap();
    c.goto(&format!("{}/edit", page.as_str())).await.unwrap();
    assert_eq!(css(c, "#f-verifySecret").await.attr("placeholder").await.unwrap().as_deref(), Some("unchanged"));
    assert_eq!(css(c, "#f-verifySecret").await.prop("value").await.unwrap().as_deref(), Some(""));
    set(c, "#f-name", "web-signed-2").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "web-signed-2").await;
    assert_eq!(only_receiver(&app).await["senderVerification"], json!({"type": "github"}));
    assert_eq!(post(&app, &url, Some(github_signature(secret, r#"{"ref":"main"}"#))).await, StatusCode::OK);

    // Switched to a bearer secret, then removed.
    c.goto(&format!("{}/edit", page.as_str())).await.unwrap();
    css(c, "#f-verifyType").await.select_by_value("bearer").await.unwrap();
    css(c, "[data-test=save]").await.click().await.unwrap();
    assert!(
        crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
            text_of(c, "[data-error-for=verifySecret]").await.contains("secret is required")
        })
        .await,
        "a new kind of check needs its secret"
    );
    css(c, "#f-verifyType").await.select_by_value("").await.unwrap();
    css(c, "[data-test=save]").await.click().await.unwrap();
    css(c, "[data-test=send-test]").await;
    assert_eq!(only_receiver(&app).await["senderVerification"], Value::Null);
    assert_eq!(post(&app, &url, None).await, StatusCode::OK, "no proof needed any more");
}
