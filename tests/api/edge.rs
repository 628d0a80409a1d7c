//! Issue 10: the public edge. Slow, idle and hostile clients, and the defects found on the
//! trigger path.

use std::time::{Duration, Instant};

use hookd::config::ProjectConfig;
use reqwest::StatusCode;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{eventually, read, spawn_app, spawn_app_with, TestApp};

const RESOLVED: &str = include_str!("../fixtures/alertmanager-resolved.json");

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// `/healthz` answers, and how long it took.
async fn health(app: &TestApp) -> (StatusCode, Duration) {
    let started = Instant::now();
    let status = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap().status();
    (status, started.elapsed())
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_slow_headers_are_cut_off_and_health_stays_fast() {
    let app = spawn_app_with(|c| c.limits.header_timeout_seconds = 1).await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(address(&app)).await.unwrap();
        stream.write_all(b"G").await.unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    // One byte a second, as slowloris does.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        for s in &mut slow {
            let _ = s.write_all(b"E").await;
        }
        let (status, took) = health(&app).await;
        assert_eq!(status, StatusCode::OK);
        assert!(took < Duration::from_millis(50), "/healthz took {took:?} beside slow clients");
    }
    let mut closed = 0;
    for s in &mut slow {
        let mut buf = [0u8; 16];
        if matches!(tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 50, "every slow head was closed ({:?} after they connected)", started.elapsed());
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metric(&text, r#"hookd_connections_closed_by_hookd_total{reason="header_timeout"}"#) >= 50, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_at_the_connection_cap_idle_ones_make_room_for_health_and_triggers() {
    let app = spawn_app_with(|c| c.limits.max_connections = 40).await;
    let up = app.scale_receiver("up", "web", "up", 1, 1, 5).await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(address(&app)).await.unwrap());
    }
    // A fresh client for each check, as a load balancer's health check would be.
    for _ in 0..3 {
        let http = reqwest::Client::new();
        let started = Instant::now();
        let status = http.get(format!("{}/healthz", app.base)).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_millis(50), "{:?}", started.elapsed());
    }
    let (status, body) = read(reqwest::Client::new().post(up["url"].as_str().unwrap()).send().await.unwrap()).await;
    assert_eq!((status, body["outcome"].as_str()), (StatusCode::OK, Some("scaled")), "{body}");
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metric(&text, "hookd_connections_open ") <= 40, "{text}");
    assert!(metric(&text, r#"hookd_connections_closed_by_hookd_total{reason="evicted"}"#) >= 60, "{text}");
}

#[tokio::test]
async fn issue_10_idle_connections_are_closed() {
    let app = spawn_app_with(|c| c.limits.idle_timeout_seconds = 1).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(4), stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0))), "an idle connection is closed: {read:?}");
}

#[tokio::test]
async fn issue_10_a_body_that_never_comes_times_out() {
    let app = spawn_app_with(|c| c.limits.body_timeout_seconds = 1).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let head = format!(
        "POST /v1-webhooks/receivers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        app.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let started = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn issue_10_sign_in_reads_no_big_body_before_knowing_the_caller() {
    let app = spawn_app().await;
    let huge = json!({"token": "x".repeat(900_000)});
    let (status, body) =
        read(app.http.post(format!("{}/ui/session", app.base)).json(&huge).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")), "{body}");
    // Management routes check the token before the body: a big body without one is a 401.
    let response = app
        .http
        .post(format!("{}/v1-webhooks/receivers", app.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 900_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn issue_10_guessing_tokens_is_held_back_per_address() {
    let app = spawn_app_with(|c| c.limits.failed_auth_per_minute = 5).await;
    for _ in 0..5 {
        let (status, _) = read(
            app.http.get(format!("{}/v1-webhooks/receivers", app.base)).bearer_auth("guess").send().await.unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let response = app.http.get(format!("{}/v1-webhooks/receivers", app.base)).bearer_auth(&app.token).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "even a good token waits: no oracle");
    assert!(response.headers().contains_key("retry-after"));
    let (status, body) =
        read(app.http.post(format!("{}/ui/session", app.base)).json(&json!({"token": "guess"})).send().await.unwrap())
            .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_failed_attempts")));
}

#[tokio::test]
async fn issue_10_a_body_is_one_json_value() {
    let app = spawn_app().await;
    let valid = r#"{"name":"x","driver":"scaleService","scaleServiceConfig":{"serviceId":"web","action":"up","min":1,"max":3}}"#;
    for body in [format!("{valid} xyz"), format!("{valid}{valid}")] {
        let response = app
            .http
            .post(format!("{}/v1-webhooks/receivers", app.base))
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, answer) = read(response).await;
        assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")), "{answer}");
    }
    let (_, list) = app.get("/v1-webhooks/receivers").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "nothing was created");
}

#[tokio::test]
async fn issue_10_a_broken_alertmanager_body_changes_nothing() {
    let app = spawn_app().await;
    let down = app.web_receiver("down", "down", json!({"cooldownDownSeconds": 0})).await;
    app.scale_receiver("up", "web", "up", 1, 1, 5).await;
    let (_, r) = app.get("/v1-webhooks/receivers").await;
    let up = r["data"].as_array().unwrap().iter().find(|r| r["name"] == "up").unwrap().clone();
    app.trigger(up["url"].as_str().unwrap()).await;
    let broken = RESOLVED.replacen('}', "},", 1);
    let (status, body) = app.notify(down["url"].as_str().unwrap(), &broken).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_payload")), "{body}");
    assert_eq!(app.desired_scale("web").await, 2, "the broken notification did not step");
}

#[tokio::test]
async fn issue_10_a_reversed_step_is_recorded_as_the_step_it_was() {
    let app = spawn_app().await;
    let up = app.web_receiver("up", "up", json!({"onResolved": "reverse", "cooldownDownSeconds": 0})).await;
    app.trigger(up["url"].as_str().unwrap()).await;
    let (_, answer) = app.notify(up["url"].as_str().unwrap(), RESOLVED).await;
    assert_eq!((answer["to"].as_u64(), answer["reason"].as_str()), (Some(1), Some("scaled down by 1")), "{answer}");
}

#[tokio::test]
async fn issue_10_a_receiver_of_a_removed_project_is_a_clear_4xx() {
    let mut app = spawn_app_with(|c| {
        c.projects.push(ProjectConfig { name: "team".into(), backend: "local".into(), namespace: None })
    })
    .await;
    let (status, r) = app
        .request(
            reqwest::Method::POST,
            "/v1-webhooks/receivers?projectId=team",
            Some(json!({"name": "up", "driver": "scaleService",
                "scaleServiceConfig": {"serviceId": "web", "action": "up", "min": 1, "max": 3}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let path = r["url"].as_str().unwrap().split_once("/v1-webhooks/").unwrap().1.to_owned();
    app.config.projects.retain(|p| p.name != "team");
    app.restart().await;
    let (status, body) = app.trigger(&format!("{}/v1-webhooks/{path}", app.base)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("project_not_configured")), "{body}");
}

#[tokio::test]
async fn issue_10_schemas_need_a_token_and_https_cookies_are_secure() {
    let app = spawn_app_with(|c| c.public_url = Some("https://hooks.example.com".into())).await;
    let response = reqwest::get(format!("{}/v1-webhooks/schemas", app.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response =
        app.http.post(format!("{}/ui/session", app.base)).json(&json!({"token": app.token})).send().await.unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn issue_10_metrics_can_have_an_address_of_their_own() {
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", crate::components::free_port()).parse().unwrap();
    let app = spawn_app_with(|c| c.metrics_listen = Some(listen)).await;
    let response = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "not on the main port");
    let ok = eventually(Duration::from_secs(5), || async {
        reqwest::get(format!("http://{listen}/metrics")).await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    assert!(ok, "served on metrics_listen");
    let text = reqwest::get(format!("http://{listen}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"hookd_service_desired_scale{project="default",backend="local",service="web"} 1"#));
}
