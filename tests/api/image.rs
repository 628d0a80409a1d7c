//! Issue 13: hookd's container image, built without a pull (`packaging/build-image.sh`)
//! and run on the test engine, answers `/healthz` and serves the API.

use std::time::Duration;

use crate::{
    components::free_port,
    docker::{docker, engine},
    helpers::eventually,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn the_container_image_builds_without_a_pull_and_serves() {
    let host = engine();
    let tag = format!("hookd-test/hookd:{}", std::process::id());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/build-image.sh");
    let output = tokio::process::Command::new(script)
        .arg(&tag)
        .env("DOCKER_HOST", &host)
        .env("HOOKD_BINARY", env!("CARGO_BIN_EXE_hookd"))
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "build-image.sh: {}", String::from_utf8_lossy(&output.stderr));
    let port = free_port();
    let token = "image-test-token-0123456789abcdef";
    let name = format!("hookd-image-{port}");
    let listen = format!("HOOKD_LISTEN=127.0.0.1:{port}");
    let admin = format!("HOOKD_ADMIN_TOKEN={token}");
    docker(&host, &["run", "-d", "--name", &name, "--network", "host", "-e", &listen, "-e", &admin, &tag]).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let up = eventually(Duration::from_secs(20), || async {
        http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let logs = docker(&host, &["logs", &name]).await;
    let receivers = http.get(format!("{base}/v1-webhooks/receivers")).bearer_auth(token).send().await;
    docker(&host, &["rm", "-f", &name]).await;
    docker(&host, &["rmi", &tag]).await;
    assert!(up, "the container never answered /healthz; its log: {logs}");
    assert_eq!(receivers.unwrap().status(), reqwest::StatusCode::OK, "the API answers with the admin token");
    let user = docker(&host, &["image", "ls", "-q", &tag]).await;
    assert!(user.trim().is_empty(), "the image was removed");
}
