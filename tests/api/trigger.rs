//! Trigger URLs: the full cycle on real processes, clamping, tokens that must be refused.

use hookd::{
    domain::{Driver, ProjectName, ReceiverId},
    token::{new_signing_key, TriggerClaims, TriggerKeys},
};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn create_trigger_scale_history_delete_then_403() {
    let app = spawn_app().await;
    app.wait_for_processes("web", 1).await;
    let up = app.scale_receiver("web-up", "web", "up", 1, 1, 3).await;
    let down = app.scale_receiver("web-down", "web", "down", 1, 1, 3).await;
    let up_url = up["url"].as_str().unwrap();

    let (status, answer) = app.trigger(up_url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "scaled");
    assert_eq!((answer["from"].as_u64(), answer["to"].as_u64()), (Some(1), Some(2)));
    assert!(answer["execution"].as_str().is_some_and(|id| id.len() == 32));
    app.wait_for_processes("web", 2).await;

    app.trigger(up_url).await;
    app.wait_for_processes("web", 3).await;
    let (status, at_max) = app.trigger(up_url).await;
    assert_eq!(status, StatusCode::OK, "the bound is normal for an autoscaler, not an error");
    assert_eq!(at_max["outcome"], "unchanged");
    assert!(at_max["reason"].as_str().unwrap().contains("max scale 3"), "{at_max}");
    assert_eq!(app.live_processes("web"), 3);

    let history = app.executions(&up).await;
    let outcomes: Vec<&str> = history.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["unchanged", "scaled", "scaled"], "newest first");
    assert_eq!(history[0]["id"], at_max["execution"]);
    assert_eq!((history[1]["from"].as_u64(), history[1]["to"].as_u64()), (Some(2), Some(3)));
    assert!(history[0]["source"].as_str().unwrap().starts_with("127.0.0.1"), "{}", history[0]);

    let (_, answer) = app.trigger(down["url"].as_str().unwrap()).await;
    assert_eq!((answer["from"].as_u64(), answer["to"].as_u64()), (Some(3), Some(2)));
    app.wait_for_processes("web", 2).await;

    let id = up["id"].as_str().unwrap();
    let (status, _) = app.request(reqwest::Method::DELETE, &format!("/v1-webhooks/receivers/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = app.trigger(up_url).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["code"], "receiver_revoked");
    let (status, _) = app.get(&format!("/v1-webhooks/receivers/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.live_processes("web"), 2, "a revoked trigger changed nothing");
}

#[tokio::test]
async fn steps_are_clamped_to_the_bounds() {
    let app = spawn_app().await;
    let up = app.scale_receiver("up5", "web", "up", 5, 1, 4).await;
    let (_, answer) = app.trigger(up["url"].as_str().unwrap()).await;
    assert_eq!((answer["from"].as_u64(), answer["to"].as_u64()), (Some(1), Some(4)), "{answer}");
    assert!(answer["reason"].as_str().unwrap().contains("clamped to max 4"));
    let (_, down) = app
        .create_receiver(json!({"name": "down10", "driver": "scaleService", "scaleServiceConfig":
            {"serviceId": "web", "action": "down", "amount": 10, "min": 2, "max": 4, "cooldownDownSeconds": 0}}))
        .await;
    let (_, answer) = app.trigger(down["url"].as_str().unwrap()).await;
    assert_eq!((answer["from"].as_u64(), answer["to"].as_u64()), (Some(4), Some(2)), "{answer}");
    let (_, answer) = app.trigger(down["url"].as_str().unwrap()).await;
    assert_eq!(answer["outcome"], "unchanged");
    app.wait_for_processes("web", 2).await;
}

#[tokio::test]
async fn get_on_a_trigger_url_explains_to_post() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 3).await;
    let response = app.http.get(r["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("POST"));
    assert_eq!(app.desired_scale("web").await, 1);
}

#[tokio::test]
async fn the_token_may_come_as_a_bearer_header() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 3).await;
    let token = r["url"].as_str().unwrap().split("token=").nth(1).unwrap();
    let response = app.http.post(format!("{}/v1-webhooks/endpoint", app.base)).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.desired_scale("web").await, 2);
}

fn with_token(url: &str, token: &str) -> String {
    format!("{}token={token}", url.split("token=").next().unwrap())
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn forged_tokens_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 3).await;
    let url = r["url"].as_str().unwrap();
    let token = url.split("token=").nth(1).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let receiver = ReceiverId::parse(r["id"].as_str().unwrap()).unwrap();
    let claims = TriggerClaims {
        receiver,
        project: ProjectName::default_project(),
        driver: Driver::ScaleService,
        generation: 1,
    };

    let other_key = TriggerKeys::from_keys(&[new_signing_key()]).unwrap().sign(&claims);
    let header: serde_json::Value = {
        use base64::Engine;
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap()
    };
    let kid = header["kid"].as_str().unwrap();
    let alg_none =
        format!("{}.{}.", b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#).as_bytes()), parts[1]);
    let hs512 = format!(
        "{}.{}.{}",
        b64(format!(r#"{{"alg":"HS512","typ":"JWT","kid":"{kid}"}}"#).as_bytes()),
        parts[1],
        parts[2]
    );
    let altered_claims =
        format!("{}.{}.{}", parts[0], b64(br#"{"sub":"x","prj":"default","drv":"scaleService","gen":1}"#), parts[2]);
    let bad_signature = format!("{}.{}.{}", parts[0], parts[1], b64(&[0u8; 32]));

    for (what, forged) in [
        ("signed with another key", other_key.as_str()),
        ("alg none", alg_none.as_str()),
        ("algorithm swapped", hs512.as_str()),
        ("altered claims", altered_claims.as_str()),
        ("bad signature", bad_signature.as_str()),
        ("truncated", &token[..token.len() - 5]),
        ("garbage", "not-a-jwt"),
        ("empty", ""),
    ] {
        let (status, err) = app.trigger(&with_token(url, forged)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {err}");
        assert_eq!(err["code"], "invalid_token", "{what}");
        assert!(!err.to_string().contains(forged) || forged.is_empty(), "{what}: the token must not be echoed");
        if forged.is_empty() {
            continue;
        }
        // Issue 14: every way a token travels: Rancher's `key=`, and the Authorization header.
        let endpoint = format!("{}/v1-webhooks/endpoint", app.base);
        let (status, err) = app.trigger(&format!("{endpoint}?key={forged}")).await;
        assert_eq!((status, err["code"].as_str()), (StatusCode::FORBIDDEN, Some("invalid_token")), "{what} as key=");
        let response = app.http.post(&endpoint).bearer_auth(forged).send().await.unwrap();
        let (status, err) = crate::helpers::read(response).await;
        assert_eq!((status, err["code"].as_str()), (StatusCode::FORBIDDEN, Some("invalid_token")), "{what} as bearer");
    }
    let (status, err) = app.trigger(&format!("{}/v1-webhooks/endpoint", app.base)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
    assert_eq!(err["code"], "unauthorized");
    assert_eq!(app.desired_scale("web").await, 1);
    assert!(app.executions(&r).await.is_empty(), "refused triggers are not executions");
}
