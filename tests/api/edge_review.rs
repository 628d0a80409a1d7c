//! Findings of the attacker's pass over issues 10 and 11, each pinned.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::helpers::{read, spawn_app_with};

/// Slow sign-in bodies (the one body read before the caller is known) could hold every
/// connection "busy" and keep health checks and triggers out at the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sign_in_bodies_cannot_fill_the_connection_cap() {
    let app = spawn_app_with(|c| c.limits.max_connections = 50).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let head =
            "POST /ui/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{";
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let status = reqwest::Client::new().get(format!("{}/healthz", app.base)).send().await.map(|r| r.status());
        assert_eq!(status.ok(), Some(StatusCode::OK), "health gets in at the cap");
        assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
    }
    let (status, body) =
        read(app.http.post(format!("{}/ui/session", app.base)).json(&json!({"token": "x"})).send().await.unwrap())
            .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_sign_ins")), "{body}");
}

/// A burst of concurrent wrong tokens from one address all passed the check before the
/// first failure was counted (500 × 401, no 429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_are_counted_against_the_limit() {
    let app = spawn_app_with(|c| c.limits.failed_auth_per_minute = 20).await;
    let url = format!("{}/v1-webhooks/receivers", app.base);
    let answers = join_all((0..200).map(|i| app.http.get(&url).bearer_auth(format!("guess-{i}")).send())).await;
    let statuses: Vec<StatusCode> = answers.into_iter().map(|r| r.unwrap().status()).collect();
    let unauthorized = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((unauthorized, limited), (20, 180), "{statuses:?}");
}

/// Concurrent requests with a good token from one address are not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_good_tokens_all_pass() {
    let app = spawn_app_with(|c| c.limits.failed_auth_per_minute = 5).await;
    let url = format!("{}/v1-webhooks/receivers", app.base);
    let answers = join_all((0..100).map(|_| app.http.get(&url).bearer_auth(&app.token).send())).await;
    assert!(answers.into_iter().all(|r| r.unwrap().status() == StatusCode::OK));
}

/// A 400 `refused` (atBound: refuse) is no decision: a retry with the same
/// Idempotency-Key gets the same answer, and acts once the step fits again.
#[tokio::test]
async fn a_refused_trigger_retried_with_its_key_is_refused_again_not_a_duplicate() {
    let app = spawn_app_with(|c| c.backends[0].services[0].scale = 9).await;
    let up = app.web_receiver("up", "up", json!({"amount": 2, "atBound": "refuse"})).await;
    let down = app.web_receiver("down", "down", json!({})).await;
    let send = || app.http.post(up["url"].as_str().unwrap()).header("idempotency-key", "k1").send();
    let (status, first) = read(send().await.unwrap()).await;
    assert_eq!((status, first["code"].as_str()), (StatusCode::BAD_REQUEST, Some("at_bound")), "{first}");
    let (status, again) = read(send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the same answer: {again}");
    app.trigger(down["url"].as_str().unwrap()).await;
    let (status, acted) = read(send().await.unwrap()).await;
    assert_eq!((status, acted["to"].as_u64()), (StatusCode::OK, Some(10)), "{acted}");
}

/// Repeated trigger parameters: which one wins would be a guess (a proxy that redacts
/// `token=` would not redact `key=`), so they are refused.
#[tokio::test]
async fn repeated_trigger_parameters_are_refused() {
    let app = spawn_app_with(|_| {}).await;
    let up = app.web_receiver("up", "up", json!({})).await;
    let url = up["url"].as_str().unwrap();
    let token = url.split_once("token=").unwrap().1;
    let base = format!("{}/v1-webhooks/endpoint", app.base);
    for (query, expected) in [
        (format!("token={token}&key=bad"), StatusCode::FORBIDDEN),
        (format!("key=bad&token={token}"), StatusCode::FORBIDDEN),
        (format!("token={token}&token={token}"), StatusCode::FORBIDDEN),
        (format!("token={token}&dryRun=1&dryRun=0"), StatusCode::BAD_REQUEST),
        (format!("token={token}&projectId=other&projectId=default"), StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = app.trigger(&format!("{base}?{query}")).await;
        assert_eq!(status, expected, "{query}: {body}");
    }
    assert_eq!(app.desired_scale("web").await, 1, "nothing acted");
    let (status, body) = app.get("/v1-webhooks/receivers?limit=1.5").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body["message"].as_str().unwrap().contains("digit"), "a sentence, not the parser's: {body}");
}
