//! The Docker engine going away mid-test: hookd answers 503 with Retry-After, records the
//! failure, keeps serving, and recovers when the engine returns. Runs on a private engine
//! (no bridge, no iptables) so stopping it disturbs no other test.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;

use crate::{
    docker::{app_on, docker, engine, receiver, IMAGE},
    helpers::read,
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/docker-engine.sh");
const FLAGS: [&str; 3] = ["--bridge=none", "--iptables=false", "--ip-masq=false"];

/// A private dockerd, removed when the test ends.
struct PrivateEngine {
    dir: PathBuf,
}

impl PrivateEngine {
    async fn start(dir: &Path) -> Self {
        engine_script(&["start", dir.to_str().unwrap()]).await;
        Self { dir: dir.to_owned() }
    }

    fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    async fn halt(&self) {
        engine_script(&["halt", self.dir.to_str().unwrap()]).await;
    }

    async fn resume(&self) {
        engine_script(&["start", self.dir.to_str().unwrap()]).await;
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        let _ = std::process::Command::new(SCRIPT).args(["stop", self.dir.to_str().unwrap()]).status();
    }
}

async fn engine_script(args: &[&str]) {
    let output = tokio::process::Command::new(SCRIPT).args(args).args(FLAGS).output().await.unwrap();
    assert!(output.status.success(), "docker-engine.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn an_engine_outage_is_a_recorded_503_and_hookd_recovers() {
    engine();
    // A short path: unix socket paths are limited to 108 bytes.
    let dir = tempfile::Builder::new().prefix("hookd-outage").tempdir_in("/tmp").unwrap();
    let engine = PrivateEngine::start(&dir.path().join("e")).await;
    let host = engine.host();
    docker(
        &host,
        &[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "o_app_1",
            "--label",
            "com.docker.compose.project=o",
            "--label",
            "com.docker.compose.service=app",
            "--label",
            "com.docker.compose.container-number=1",
            "--label",
            "com.docker.compose.oneoff=False",
            IMAGE,
        ],
    )
    .await;
    let app = app_on(&host).await;
    let (status, r) = receiver(&app, "up", "o/app", "up", 5).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let url = r["url"].as_str().unwrap();
    let (status, a) = app.trigger(url).await;
    assert_eq!((status, a["to"].as_u64()), (StatusCode::OK, Some(2)), "{a}");

    engine.halt().await;
    let response = app.http.post(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"), "Alertmanager should retry later");
    let (_, err) = read(response).await;
    assert_eq!((err["code"].as_str(), err["outcome"].as_str()), (Some("backend_unavailable"), Some("failed")), "{err}");
    assert!(err["message"].as_str().unwrap().contains("Docker engine"), "{err}");
    let history = app.executions(&r).await;
    assert_eq!(history[0]["outcome"], "failed", "the failure is in the history");
    assert_eq!(history[0]["id"], err["execution"]);
    let (status, err) = app.get("/v1-webhooks/services?projectId=dock").await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("backend_unavailable")));
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "hookd itself keeps serving");
    let (status, _) = app.get("/v1-webhooks/services?projectId=default").await;
    assert_eq!(status, StatusCode::OK, "other backends are unaffected");

    engine.resume().await;
    let (status, a) = app.trigger(url).await;
    assert_eq!(
        (status, a["outcome"].as_str(), a["from"].as_u64(), a["to"].as_u64()),
        (StatusCode::OK, Some("scaled"), Some(2), Some(3)),
        "{a}"
    );
}
