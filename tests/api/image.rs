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
    // As the README runs it: the data in a volume (host networking: the test engine's port).
    let volume = format!("{name}-data");
    let mount = format!("{volume}:/data");
    docker(
        &host,
        &["run", "-d", "--name", &name, "--network", "host", "-v", &mount, "-e", &listen, "-e", &admin, &tag],
    )
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let up = eventually(Duration::from_secs(20), || async {
        http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let logs = docker(&host, &["logs", &name]).await;
    let receivers = http.get(format!("{base}/v1-webhooks/receivers")).bearer_auth(token).send().await;
    // The host's certificate authorities came along, for https out of the image.
    let copied = tempfile::tempdir().unwrap();
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    if std::path::Path::new(bundle).exists() {
        docker(&host, &["cp", &format!("{name}:{bundle}"), copied.path().to_str().unwrap()]).await;
        let size = std::fs::metadata(copied.path().join("ca-certificates.crt")).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "the image holds the CA bundle ({size} bytes)");
    }
    docker(&host, &["rm", "-f", &name]).await;
    // The engine runs on this machine: its volume's files are readable here.
    let mountpoint = docker(&host, &["volume", "inspect", "-f", "{{.Mountpoint}}", &volume]).await;
    let database = std::path::Path::new(mountpoint.trim()).join("hookd.db");
    let kept = database.exists();
    docker(&host, &["volume", "rm", &volume]).await;
    docker(&host, &["rmi", &tag]).await;
    assert!(kept, "the database is in the volume: {}", database.display());
    assert!(up, "the container never answered /healthz; its log: {logs}");
    assert_eq!(receivers.unwrap().status(), reqwest::StatusCode::OK, "the API answers with the admin token");
    let user = docker(&host, &["image", "ls", "-q", &tag]).await;
    assert!(user.trim().is_empty(), "the image was removed");
}
