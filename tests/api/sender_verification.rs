//! Issue 14: sender verification per receiver: a static header or bearer secret, GitHub's
//! `X-Hub-Signature-256`, Standard Webhooks (with replays answered, not acted on twice).

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{spawn_app, TestApp};

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

async fn receiver_with(app: &TestApp, name: &str, check: Value) -> Value {
    let body = json!({"name": name, "driver": "scaleService", "senderVerification": check,
        "scaleServiceConfig": {"serviceId": "web", "action": "up", "min": 1, "max": 9}});
    let (status, r) = app.create_receiver(body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r
}

async fn post(app: &TestApp, url: &str, headers: &[(&str, String)], body: &str) -> (StatusCode, Value) {
    let mut request = app.http.post(url).header("content-type", "application/json").body(body.to_owned());
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    crate::helpers::read(request.send().await.unwrap()).await
}

fn stored_bytes(app: &TestApp) -> Vec<u8> {
    let mut all = vec![];
    for entry in std::fs::read_dir(&app.config.data_dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("hookd.db") {
            all.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    all
}

#[tokio::test]
async fn issue_14_github_signatures_wrong_missing_truncated_and_right() {
    let app = spawn_app().await;
    let secret = "gh-webhook-secret-0123456789";
    let r = receiver_with(&app, "gh", json!({"type": "github", "secret": secret})).await;
    assert_eq!(r["senderVerification"], json!({"type": "github"}), "the secret is never shown");
    let url = r["url"].as_str().unwrap();
    let body = r#"{"action":"published"}"#;
    let good = format!("sha256={}", hex::encode(hmac(secret.as_bytes(), &[body.as_bytes()])));
    let wrong = format!("sha256={}", hex::encode(hmac(b"another-secret-0123456789", &[body.as_bytes()])));
    for (what, headers) in [
        ("missing", vec![]),
        ("wrong secret", vec![("x-hub-signature-256", wrong)]),
        ("truncated", vec![("x-hub-signature-256", good[..good.len() - 4].to_owned())]),
        ("sha1", vec![("x-hub-signature-256", good.replace("sha256=", "sha1="))]),
    ] {
        let (status, err) = post(&app, url, &headers, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("sender_unverified")),
            "{what}: {err}"
        );
    }
    let (status, err) = post(&app, url, &[("x-hub-signature-256", good.clone())], r#"{"action":"edited"}"#).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a body altered after signing: {err}");
    assert_eq!(app.desired_scale("web").await, 1, "nothing unverified acted");
    assert!(app.executions(&r).await.is_empty(), "nor was recorded");
    let (status, answer) = post(&app, url, &[("x-hub-signature-256", good.clone())], body).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("scaled")), "{answer}");

    // A GET body PUT back keeps the check; null removes it.
    let path = format!("/v1-webhooks/receivers/{}", r["id"].as_str().unwrap());
    let (_, got) = app.get(&path).await;
    let (status, put) = app.request(Method::PUT, &path, Some(got)).await;
    assert_eq!((status, &put["senderVerification"]), (StatusCode::OK, &json!({"type": "github"})), "{put}");
    assert_eq!(post(&app, url, &[], body).await.0, StatusCode::UNAUTHORIZED, "still required");
    let (_, removed) = app.request(Method::PUT, &path, Some(json!({"senderVerification": null}))).await;
    assert_eq!(removed["senderVerification"], Value::Null);
    assert_eq!(post(&app, url, &[], body).await.0, StatusCode::OK);
    let stored = stored_bytes(&app);
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is not stored in the clear");
}

#[tokio::test]
async fn issue_14_standard_webhooks_replays_old_messages_and_other_keys() {
    let app = spawn_app().await;
    let key = b"standard-webhooks-key-32-bytes!!";
    let r = receiver_with(
        &app,
        "sw",
        json!({"type": "standardWebhooks", "secret": format!("whsec_{}", STANDARD.encode(key))}),
    )
    .await;
    let url = r["url"].as_str().unwrap();
    let body = "{}";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let signed = |id: &str, at: i64, key: &[u8]| {
        let sig = STANDARD.encode(hmac(key, &[id.as_bytes(), b".", at.to_string().as_bytes(), b".", body.as_bytes()]));
        vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", at.to_string()),
            ("webhook-signature", format!("v1,{sig}")),
        ]
    };
    let (status, first) = post(&app, url, &signed("msg_1", now, key), body).await;
    assert_eq!((status, first["outcome"].as_str()), (StatusCode::OK, Some("scaled")), "{first}");
    let (status, replay) = post(&app, url, &signed("msg_1", now, key), body).await;
    assert_eq!(
        (status, replay["outcome"].as_str(), replay["reason"].as_str()),
        (StatusCode::OK, Some("skipped"), Some("duplicate")),
        "{replay}"
    );
    // A fresh Idempotency-Key is not signed: it cannot make the replay look new.
    let mut with_key = signed("msg_1", now, key);
    with_key.push(("idempotency-key", "a-fresh-key-1".to_owned()));
    let (status, replay) = post(&app, url, &with_key, body).await;
    assert_eq!((status, replay["reason"].as_str()), (StatusCode::OK, Some("duplicate")), "{replay}");
    assert_eq!(app.desired_scale("web").await, 2, "a replayed message acts once");
    for (what, headers) in [
        ("six minutes old", signed("msg_2", now - 360, key)),
        ("from the future", signed("msg_3", now + 360, key)),
        ("another key", signed("msg_4", now, b"some-other-key-of-32-bytes-long!")),
        ("no headers", vec![]),
    ] {
        let (status, err) = post(&app, url, &headers, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("sender_unverified")),
            "{what}: {err}"
        );
    }
    let (status, _) = post(&app, url, &signed("msg_5", now - 200, key), body).await;
    assert_eq!(status, StatusCode::OK, "inside the ±5 minutes");
}

#[tokio::test]
async fn issue_14_static_header_and_bearer_secrets() {
    let app = spawn_app().await;
    let secret = "harbor-auth-header-0123456789";
    let r = receiver_with(&app, "harbor", json!({"type": "header", "header": "X-Harbor-Auth", "secret": secret})).await;
    assert_eq!(r["senderVerification"], json!({"type": "header", "header": "X-Harbor-Auth"}));
    let url = r["url"].as_str().unwrap();
    assert_eq!(
        post(&app, url, &[("x-harbor-auth", "nope-nope-nope-nope".into())], "{}").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post(&app, url, &[], "{}").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&app, url, &[("x-harbor-auth", secret.into())], "{}").await.0, StatusCode::OK);

    let b = receiver_with(&app, "am", json!({"type": "bearer", "secret": secret})).await;
    let url = b["url"].as_str().unwrap();
    assert_eq!(post(&app, url, &[("authorization", format!("Bearer {secret}"))], "{}").await.0, StatusCode::OK);
    assert_eq!(
        post(&app, url, &[("authorization", "Bearer guess-guess-guess".into())], "{}").await.0,
        StatusCode::UNAUTHORIZED
    );
    // The Alertmanager snippets say what each check asks of Alertmanager.
    let snippet = |r: &Value| {
        let path = format!("/v1-webhooks/receivers/{}/alertmanager-config", r["id"].as_str().unwrap());
        let request = app.http.get(format!("{}{path}", app.base)).bearer_auth(&app.token);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let bearer = snippet(&b).await;
    assert!(bearer.contains("requires its bearer secret") && !bearer.contains(secret), "{bearer}");
    assert!(snippet(&r).await.contains("Alertmanager does not send"));

    let (status, err) = app
        .create_receiver(json!({"name": "weak", "driver": "scaleService", "senderVerification": {"type": "bearer", "secret": "short"},
            "scaleServiceConfig": {"serviceId": "web", "action": "up", "min": 1, "max": 9}}))
        .await;
    assert_eq!((status, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("senderVerification.secret")), "{err}");
}
