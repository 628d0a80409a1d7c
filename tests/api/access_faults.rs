//! Issue 14, after an attacker's pass: signing keys sealed in the store, revocation that takes
//! a token's successors with it, a revoked admin token that a restart does not bring back, and
//! forged, altered, expired and revoked API tokens on every way in (bearer, basic, sign-in,
//! session cookie).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use hookd::{
    auth::hash_token,
    domain::{now_millis, ApiTokenId},
    store::{ApiToken, Role},
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{spawn_app_with, spawn_process_with, TestApp};

async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.http.request(method, format!("{}{path}", app.base)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    crate::helpers::read(request.send().await.expect("request sent")).await
}

async fn new_token(app: &TestApp, maker: &str, name: &str, role: &str, project: Option<&str>) -> (String, String) {
    let body = json!({"name": name, "role": role, "projectId": project});
    let (status, made) = call(app, maker, Method::POST, "/v1-webhooks/tokens", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    (made["id"].as_str().unwrap().to_owned(), made["token"].as_str().unwrap().to_owned())
}

/// Runs `with` on the app's store while the app is stopped (one hookd per SQLite database).
async fn while_stopped<T>(app: &mut TestApp, with: impl AsyncFnOnce(&dyn hookd::store::Store) -> T) -> T {
    app.stop().await;
    let store = hookd::store::open(&app.config.database_url(), app.config.retention).await.expect("the app's store");
    let out = with(store.as_ref()).await;
    drop(store);
    app.start_again().await;
    out
}

fn token_row(name: &str, secret: &str, expires: Option<i64>) -> ApiToken {
    ApiToken {
        id: ApiTokenId::generate(),
        name: name.into(),
        hash: hash_token(secret),
        role: Role::Owner,
        project: None,
        created: now_millis() - 120_000,
        expires,
        created_by: None,
    }
}

#[tokio::test]
async fn issue_14_signing_keys_are_sealed_in_the_store() {
    let mut app = spawn_app_with(|_| {}).await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 9).await;
    let (status, _) = call(&app, &app.token, Method::POST, "/v1-webhooks/keys?action=rotate", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, again) = app.get(&format!("/v1-webhooks/receivers/{}", r["id"].as_str().unwrap())).await;
    let stored = while_stopped(&mut app, async |store| store.signing_keys().await.unwrap()).await;
    assert_eq!(stored.len(), 2);
    for url in [r["url"].as_str().unwrap(), again["url"].as_str().unwrap()] {
        let token = url.split("token=").nth(1).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = B64.decode(signature).unwrap();
        for key in &stored {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key.secret).unwrap();
            mac.update(input.as_bytes());
            assert_ne!(mac.finalize().into_bytes().to_vec(), signature, "key {} is stored in the clear", key.kid);
        }
        // The restarted app listens elsewhere.
        let url = format!("{}/v1-webhooks/endpoint?token={token}", app.base);
        assert_eq!(app.trigger(&url).await.0, StatusCode::OK, "and the sealed keys still verify");
    }
}

#[tokio::test]
async fn issue_14_revoking_a_token_revokes_the_tokens_it_made() {
    let app = spawn_app_with(|_| {}).await;
    let (lead_id, lead) = new_token(&app, &app.token, "lead", "owner", Some("default")).await;
    let (_, deputy) = new_token(&app, &lead, "deputy", "owner", Some("default")).await;
    let (_, ci) = new_token(&app, &deputy, "ci", "member", Some("default")).await;
    let (_, other) = new_token(&app, &app.token, "other", "member", Some("default")).await;
    for t in [&lead, &deputy, &ci, &other] {
        assert_eq!(call(&app, t, Method::GET, "/v1-webhooks/receivers", None).await.0, StatusCode::OK);
    }
    let (_, listed) = call(&app, &app.token, Method::GET, "/v1-webhooks/tokens", None).await;
    let deputy_row = listed["data"].as_array().unwrap().iter().find(|t| t["name"] == "deputy").unwrap().clone();
    assert_eq!(deputy_row["createdBy"].as_str(), Some(lead_id.as_str()), "{deputy_row}");

    let (status, _) = call(&app, &app.token, Method::DELETE, &format!("/v1-webhooks/tokens/{lead_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (name, t) in [("lead", &lead), ("deputy", &deputy), ("ci", &ci)] {
        let (status, _) = call(&app, t, Method::GET, "/v1-webhooks/receivers", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} went with the token that made it");
    }
    assert_eq!(call(&app, &other, Method::GET, "/v1-webhooks/receivers", None).await.0, StatusCode::OK);
    let (_, audit) = call(&app, &app.token, Method::GET, "/v1-webhooks/audit", None).await;
    let revoke = &audit["data"][0];
    assert_eq!(revoke["action"], "token.revoke", "{audit}");
    assert_eq!(revoke["detail"], "lead and the 2 token(s) it made", "{revoke}");
}

/// Owners of every project are peers of their maker, so the first admin token can be replaced
/// and revoked; the last owner of every project cannot.
#[tokio::test]
async fn issue_14_the_admin_token_can_be_replaced_but_not_the_last_owner() {
    let app = spawn_app_with(|_| {}).await;
    let (made_id, made) = new_token(&app, &app.token, "second-admin", "owner", None).await;
    let (_, tokens) = call(&app, &made, Method::GET, "/v1-webhooks/tokens", None).await;
    let admin_id = tokens["data"].as_array().unwrap().iter().find(|t| t["name"] == "admin").unwrap()["id"].clone();
    let path = format!("/v1-webhooks/tokens/{}", admin_id.as_str().unwrap());
    assert_eq!(call(&app, &made, Method::DELETE, &path, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, &app.token, Method::GET, "/v1-webhooks/tokens", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, &made, Method::GET, "/v1-webhooks/tokens", None).await.0, StatusCode::OK, "its peer stays");
    let (status, err) = call(&app, &made, Method::DELETE, &format!("/v1-webhooks/tokens/{made_id}"), None).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("last_owner")), "{err}");
}

/// The configured admin token is the way back in: stored again at start when missing, with
/// a warning, and never printed.
#[tokio::test]
async fn issue_14_a_configured_admin_token_is_stored_again_and_says_so() {
    // The process gets the admin token as HOOKD_ADMIN_TOKEN at every start.
    let mut app = spawn_process_with(|_| {}).await;
    let admin = app.token.clone();
    let (_, successor) = new_token(&app, &admin, "successor", "owner", None).await;
    let (_, tokens) = call(&app, &successor, Method::GET, "/v1-webhooks/tokens", None).await;
    let admin_id = tokens["data"].as_array().unwrap().iter().find(|t| t["name"] == "admin").unwrap()["id"].clone();
    let path = format!("/v1-webhooks/tokens/{}", admin_id.as_str().unwrap());
    assert_eq!(call(&app, &successor, Method::DELETE, &path, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, &admin, Method::GET, "/v1-webhooks/receivers", None).await.0, StatusCode::UNAUTHORIZED);
    app.restart().await;
    assert_eq!(call(&app, &admin, Method::GET, "/v1-webhooks/receivers", None).await.0, StatusCode::OK);
    let log = app.log();
    assert!(log.contains("HOOKD_ADMIN_TOKEN (admin_token) was not a stored API token"), "and said so: {log}");
    assert!(!log.contains(&admin), "without printing it");
}

/// Every way an API token comes in refuses forged, altered, expired and revoked ones.
#[tokio::test]
async fn issue_14_bad_api_tokens_on_every_way_in() {
    let mut app = spawn_app_with(|c| c.limits.failed_auth_per_minute = 1000).await;
    let expired_secret = hookd::auth::generate_token();
    let row = token_row("expired", expired_secret.expose(), Some(now_millis() - 60_000));
    while_stopped(&mut app, async |store| store.insert_api_token(&row).await.unwrap()).await;
    let (revoked_id, revoked) = new_token(&app, &app.token, "revoked", "owner", None).await;
    let (status, _) = call(&app, &app.token, Method::DELETE, &format!("/v1-webhooks/tokens/{revoked_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let good = app.token.clone();
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'a' { b'b' } else { b'a' };
    let bad = [
        ("forged", hookd::auth::generate_token().expose().to_owned()),
        ("truncated", good[..good.len() - 1].to_owned()),
        ("extended", format!("{good}x")),
        ("one character changed", String::from_utf8(flipped).unwrap()),
        ("a hash of the good one", hash_token(&good)),
        ("expired", expired_secret.expose().to_owned()),
        ("revoked", revoked),
    ];
    let url = format!("{}/v1-webhooks/receivers", app.base);
    for (what, token) in &bad {
        let bearer = app.http.get(&url).bearer_auth(token).send().await.unwrap().status();
        let basic = app.http.get(&url).basic_auth("access", Some(token)).send().await.unwrap().status();
        let sign_in = app.http.post(format!("{}/ui/session", app.base)).json(&json!({"token": token})).send().await;
        let sign_in = sign_in.unwrap().status();
        assert_eq!(
            (bearer, basic, sign_in),
            (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED),
            "{what} token (bearer, basic, sign-in)"
        );
    }
    for cookie in ["", "x", "0123456789abcdef0123456789abcdef", &good, &"a".repeat(4096)] {
        let status = app
            .http
            .get(&url)
            .header("cookie", format!("{}={cookie}", hookd::session::COOKIE))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a forged session cookie {:?}", &cookie[..cookie.len().min(20)]);
    }
    // The good token still works, each way.
    assert_eq!(app.http.get(&url).bearer_auth(&good).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.http.get(&url).basic_auth(&good, None::<&str>).send().await.unwrap().status(), StatusCode::OK);
}

/// A project made again under an old name does not show its owners the old one's audit log.
#[tokio::test]
async fn issue_14_a_project_made_again_starts_a_new_audit_log() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.token.clone();
    let project = json!({"name": "team", "backend": "local"});
    assert!(call(&app, &admin, Method::POST, "/v1-webhooks/projects", Some(project.clone())).await.0.is_success());
    let body = json!({"name": "old", "driver": "scaleService",
        "scaleServiceConfig": {"serviceId": "web", "action": "up", "min": 1, "max": 3}});
    let (status, r) = call(&app, &admin, Method::POST, "/v1-webhooks/receivers?projectId=team", Some(body)).await;
    assert!(status.is_success(), "{r}");
    let path = format!("/v1-webhooks/receivers/{}", r["id"].as_str().unwrap());
    assert!(call(&app, &admin, Method::DELETE, &path, None).await.0.is_success());
    assert!(call(&app, &admin, Method::DELETE, "/v1-webhooks/projects/team", None).await.0.is_success());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(call(&app, &admin, Method::POST, "/v1-webhooks/projects", Some(project)).await.0.is_success());
    let (_, owner) = new_token(&app, &admin, "team-owner", "owner", Some("team")).await;

    let actions = |log: &Value| -> Vec<String> {
        log["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
    };
    let (status, mine) = call(&app, &owner, Method::GET, "/v1-webhooks/audit", None).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert!(!actions(&mine).iter().any(|a| a.starts_with("receiver.")), "the old project's log: {mine}");
    let (_, all) = call(&app, &admin, Method::GET, "/v1-webhooks/audit?projectId=team", None).await;
    assert!(actions(&all).contains(&"receiver.create".to_owned()), "owners of every project see it all: {all}");
}

/// A database restored without its sealing.key: hookd refuses to start and says why, rather
/// than making a new signing key that would turn every trigger URL into a 403.
#[tokio::test]
async fn issue_14_a_lost_sealing_key_refuses_the_start() {
    let mut app = spawn_app_with(|_| {}).await;
    app.scale_receiver("web-up", "web", "up", 1, 1, 9).await;
    app.stop().await;
    std::fs::write(app.config.sealing_key_file(), [7u8; 32]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = hookd::server::App::build(app.config.clone(), listener).await.err().expect("refused");
    let said = format!("{refused:#}");
    assert!(
        said.contains("do not open with this sealing key") || said.contains("is not the one this database"),
        "{said}"
    );
}
