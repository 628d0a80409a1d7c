//! The docker backend against a real Docker Engine: Swarm services and Compose services.
//!
//! `scripts/test.sh` starts the engine (a swarm manager) and exports its socket as
//! `HOOKD_TEST_DOCKER_HOST`; each test names its services after its own marker, so tests run
//! in parallel on one engine. The outage test starts a private engine it can stop.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hookd::config::{BackendConfig, BackendKind, ProjectConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    components::require,
    helpers::{eventually, spawn_app_with, TestApp},
};

pub const IMAGE: &str = "hookd-test/sleeper:1";

/// The shared test engine, or `None` (skip) when there is none and none is required.
/// The test engine's address; panics when there is none (the tests are ignored without one).
pub fn engine() -> String {
    std::env::var("HOOKD_TEST_DOCKER_HOST").expect("HOOKD_TEST_DOCKER_HOST: ./scripts/test.sh starts a Docker engine")
}

/// Runs the docker CLI against `host`; panics with its output when it fails.
pub async fn docker(host: &str, args: &[&str]) -> String {
    cli(host, "docker", args).await
}

async fn cli(host: &str, program: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(program)
        .args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// hookd with a project `dock` bound to the docker backend at `host`.
pub async fn app_on(host: &str) -> TestApp {
    let host = host.to_owned();
    spawn_app_with(move |config| {
        config.backends.push(BackendConfig {
            name: "docker".into(),
            kind: BackendKind::Docker,
            endpoint: Some(host),
            stop_grace_seconds: 2,
            cgroups: true,
            keeper_binary: None,
            services: Vec::new(),
            ..BackendConfig::new("", BackendKind::Local)
        });
        config.projects.push(ProjectConfig { name: "dock".into(), backend: "docker".into(), namespace: None });
    })
    .await
}

pub async fn receiver(app: &TestApp, name: &str, service: &str, action: &str, max: u32) -> (StatusCode, Value) {
    app.request(
        reqwest::Method::POST,
        "/v1-webhooks/receivers?projectId=dock",
        Some(json!({"name": name, "driver": "scaleService", "scaleServiceConfig": {
            "serviceId": service, "action": action, "amount": 1, "min": 1, "max": max, "cooldownDownSeconds": 0}})),
    )
    .await
}

async fn ok_receiver(app: &TestApp, name: &str, service: &str, action: &str, max: u32) -> String {
    let (status, r) = receiver(app, name, service, action, max).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r["url"].as_str().unwrap().to_owned()
}

async fn running_tasks(host: &str, service: &str) -> usize {
    let out =
        docker(host, &["service", "ps", service, "--filter", "desired-state=running", "--format", "{{.CurrentState}}"])
            .await;
    out.lines().filter(|l| l.starts_with("Running")).count()
}

async fn swarm_service(host: &str, name: &str, replicas: u32) {
    docker(host, &["service", "create", "--detach", "--name", name, "--replicas", &replicas.to_string(), IMAGE]).await;
}

async fn desired(app: &TestApp, service: &str) -> Option<Value> {
    let (_, body) = app.get("/v1-webhooks/services?projectId=dock").await;
    body["data"].as_array()?.iter().find(|s| s["id"] == service).cloned()
}

/// A trigger, repeated while hookd answers 503 `service_busy` or 429, as Alertmanager repeats it.
/// Docker acts slowly: on a loaded machine fifty queued steps outlast a trigger's 10 s wait
/// for the service; every 503 did nothing, so counts still come out exact.
async fn trigger_retrying_busy(app: &TestApp, url: &str) -> (StatusCode, Value) {
    loop {
        let (status, answer) = app.trigger(url).await;
        // Every 503 did nothing (busy, or a version conflict past its retries): retry it.
        let busy = status == StatusCode::SERVICE_UNAVAILABLE;
        // Fifty retrying clients can also reach the receiver's rate limit: 429 did nothing too.
        if !(busy || status == StatusCode::TOO_MANY_REQUESTS) {
            return (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_until(what: &str, check: impl AsyncFn() -> bool) -> Duration {
    let started = Instant::now();
    assert!(eventually(Duration::from_secs(60), check).await, "timed out waiting until {what}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn swarm_scale_up_down_and_bounds_on_running_tasks() {
    let host = engine();
    let app = app_on(&host).await;
    let name = format!("web-{}", &app.marker[20..]);
    swarm_service(&host, &name, 1).await;
    wait_until("1 task runs", async || running_tasks(&host, &name).await == 1).await;
    let up = ok_receiver(&app, "up", &name, "up", 3).await;
    let down = ok_receiver(&app, "down", &name, "down", 3).await;

    let (status, a) = app.trigger(&up).await;
    assert_eq!((status, a["from"].as_u64(), a["to"].as_u64()), (StatusCode::OK, Some(1), Some(2)), "{a}");
    let took = wait_until("2 tasks run", async || running_tasks(&host, &name).await == 2).await;
    eprintln!("swarm: trigger to 2 replicas running in {took:?}");
    app.trigger(&up).await;
    let (_, a) = app.trigger(&up).await;
    assert_eq!(a["outcome"], "unchanged", "{a}");
    wait_until("3 tasks run", async || running_tasks(&host, &name).await == 3).await;
    let (_, a) = app.trigger(&down).await;
    assert_eq!((a["from"].as_u64(), a["to"].as_u64()), (Some(3), Some(2)), "{a}");
    wait_until("2 tasks run", async || running_tasks(&host, &name).await == 2).await;

    let listed = desired(&app, &name).await.expect("the swarm service is listed");
    assert_eq!((listed["scale"].as_u64(), listed["serviceKind"].as_str()), (Some(2), Some("swarm")), "{listed}");
    assert_eq!(listed["image"], IMAGE);
    docker(&host, &["service", "rm", &name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn swarm_global_services_and_missing_services_are_refused() {
    let host = engine();
    let app = app_on(&host).await;
    let name = format!("global-{}", &app.marker[20..]);
    docker(&host, &["service", "create", "--detach", "--mode", "global", "--name", &name, IMAGE]).await;
    let (status, err) = receiver(&app, "g", &name, "up", 3).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::BAD_REQUEST, Some("service_not_scalable")), "{err}");
    assert!(err["message"].as_str().unwrap().contains("global"), "{err}");
    let (status, err) = receiver(&app, "nope", "no-such-service", "up", 3).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_service")), "{err}");
    let (status, err) = receiver(&app, "nope2", "noproject/noservice", "up", 3).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_service")), "{err}");
    docker(&host, &["service", "rm", &name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn swarm_fifty_concurrent_ups_end_at_exactly_twenty() {
    let host = engine();
    let app = app_on(&host).await;
    let name = format!("burst-{}", &app.marker[20..]);
    swarm_service(&host, &name, 1).await;
    let up = ok_receiver(&app, "up", &name, "up", 20).await;
    let answers = join_all((0..50).map(|_| trigger_retrying_busy(&app, &up))).await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK), "{answers:?}");
    assert_eq!(answers.iter().filter(|(_, a)| a["outcome"] == "scaled").count(), 19);
    let spec = docker(&host, &["service", "inspect", &name, "--format", "{{.Spec.Mode.Replicated.Replicas}}"]).await;
    assert_eq!(spec.trim(), "20");
    wait_until("20 tasks run", async || running_tasks(&host, &name).await == 20).await;
    docker(&host, &["service", "rm", &name]).await;
}

/// Two hookd replicas (as behind a load balancer) and a person with the docker CLI all
/// scale one service at once: the service's version makes sure no update is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn swarm_concurrent_writers_never_lose_an_update() {
    let host = engine();
    let a = app_on(&host).await;
    let b = app_on(&host).await;
    let name = format!("shared-{}", &a.marker[20..]);
    swarm_service(&host, &name, 2).await;
    // Behind hookd's back: hookd reads the scale at each trigger, so it steps from 5.
    docker(&host, &["service", "scale", "--detach", &format!("{name}=5")]).await;
    let up_a = ok_receiver(&a, "up", &name, "up", 50).await;
    let up_b = ok_receiver(&b, "up", &name, "up", 50).await;
    let (_, first) = a.trigger(&up_a).await;
    assert_eq!((first["from"].as_u64(), first["to"].as_u64()), (Some(5), Some(6)), "{first}");

    let triggers = (0..10).flat_map(|_| [trigger_retrying_busy(&a, &up_a), trigger_retrying_busy(&b, &up_b)]);
    let answers = join_all(triggers).await;
    assert!(answers.iter().all(|(s, a)| *s == StatusCode::OK && a["outcome"] == "scaled"), "{answers:?}");
    let spec = docker(&host, &["service", "inspect", &name, "--format", "{{.Spec.Mode.Replicated.Replicas}}"]).await;
    assert_eq!(spec.trim(), "26", "6 + 20 steps from two hookd replicas, none lost");
    docker(&host, &["service", "rm", &name]).await;
}

async fn compose_up(host: &str, dir: &std::path::Path, project: &str) {
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!("version: '3'\nservices:\n  app:\n    image: {IMAGE}\n    labels:\n      tier: worker\n    restart: unless-stopped\n    environment:\n      ROLE: worker\n"),
    )
    .unwrap();
    let file = dir.join("docker-compose.yml");
    cli(host, "docker-compose", &["-f", file.to_str().unwrap(), "-p", project, "up", "-d"]).await;
}

/// `docker-compose down`, retried: the engine can still be detaching the last container
/// from the project's network ("has active endpoints") for a moment after stopping it.
pub async fn compose_down(host: &str, file: &std::path::Path, project: &str) {
    let mut last = String::new();
    for _ in 0..10 {
        let output = tokio::process::Command::new("docker-compose")
            .args(["-f", file.to_str().unwrap(), "-p", project, "down", "-t", "1"])
            .env("DOCKER_HOST", host)
            .output()
            .await
            .expect("docker-compose runs");
        if output.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&output.stderr).into_owned();
        // The engine can keep a stale endpoint of a removed container (a known Docker
        // fault): disconnect whatever the network still names, by force, and retry.
        if last.contains("has active endpoints") {
            let network = format!("{project}_default");
            let listed = tokio::process::Command::new("docker")
                .args(["network", "inspect", &network, "--format", "{{range .Containers}}{{.Name}} {{end}}"])
                .env("DOCKER_HOST", host)
                .output()
                .await
                .expect("docker runs");
            for endpoint in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                let _ = tokio::process::Command::new("docker")
                    .args(["network", "disconnect", "-f", &network, endpoint])
                    .env("DOCKER_HOST", host)
                    .output()
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("docker-compose down failed: {last}");
}

async fn compose_running(host: &str, project: &str) -> Vec<(u32, String)> {
    let out = docker(
        host,
        &[
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            "label=com.docker.compose.service=app",
            "--filter",
            "status=running",
            "--format",
            "{{.Label \"com.docker.compose.container-number\"}} {{.Names}}",
        ],
    )
    .await;
    let mut replicas: Vec<(u32, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, name)| (n.parse().unwrap_or(0), name.to_owned())))
        .collect();
    replicas.sort();
    replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn compose_scale_up_and_down_like_docker_compose_does() {
    let host = engine();
    require("docker-compose");
    let app = app_on(&host).await;
    let project = format!("p{}", &app.marker[20..]);
    let dir = tempfile::tempdir().unwrap();
    compose_up(&host, dir.path(), &project).await;
    let service = format!("{project}/app");
    let up = ok_receiver(&app, "up", &service, "up", 3).await;
    let down = ok_receiver(&app, "down", &service, "down", 3).await;

    let (status, a) = app.trigger(&up).await;
    assert_eq!((status, a["from"].as_u64(), a["to"].as_u64()), (StatusCode::OK, Some(1), Some(2)), "{a}");
    let took = wait_until("2 replicas run", async || compose_running(&host, &project).await.len() == 2).await;
    eprintln!("compose: trigger to 2 replicas running in {took:?} (the trigger answers once they are started)");
    app.trigger(&up).await;
    let replicas = compose_running(&host, &project).await;
    assert_eq!(
        replicas,
        vec![(1, format!("{project}_app_1")), (2, format!("{project}_app_2")), (3, format!("{project}_app_3"))]
    );
    let (_, a) = app.trigger(&up).await;
    assert_eq!(a["outcome"], "unchanged");

    // The new replicas are the template's twins, and docker-compose sees them as its own.
    let inspect = docker(
        &host,
        &[
            "inspect",
            &format!("{project}_app_3"),
            "--format",
            "{{.Config.Env}} {{.Config.Labels.tier}} {{.HostConfig.RestartPolicy.Name}}",
        ],
    )
    .await;
    assert!(
        inspect.contains("ROLE=worker") && inspect.contains(" worker ") && inspect.contains("unless-stopped"),
        "{inspect}"
    );
    let file = dir.path().join("docker-compose.yml");
    let ps = cli(&host, "docker-compose", &["-f", file.to_str().unwrap(), "-p", &project, "ps", "-q"]).await;
    assert_eq!(ps.lines().count(), 3, "docker-compose ps sees all replicas: {ps}");

    let (_, a) = app.trigger(&down).await;
    assert_eq!((a["from"].as_u64(), a["to"].as_u64()), (Some(3), Some(2)), "{a}");
    assert_eq!(
        compose_running(&host, &project).await.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2],
        "the newest went first"
    );
    let listed = desired(&app, &service).await.expect("listed");
    assert_eq!((listed["scale"].as_u64(), listed["serviceKind"].as_str()), (Some(2), Some("compose")), "{listed}");
    assert_eq!(listed["labels"]["tier"], "worker");
    compose_down(&host, &file, &project).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn compose_fifty_concurrent_ups_end_at_exactly_twenty() {
    let host = engine();
    require("docker-compose");
    let app = app_on(&host).await;
    let project = format!("q{}", &app.marker[20..]);
    let dir = tempfile::tempdir().unwrap();
    compose_up(&host, dir.path(), &project).await;
    let up = ok_receiver(&app, "up", &format!("{project}/app"), "up", 20).await;
    let answers = join_all((0..50).map(|_| trigger_retrying_busy(&app, &up))).await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK), "{answers:?}");
    assert_eq!(answers.iter().filter(|(_, a)| a["outcome"] == "scaled").count(), 19);
    let replicas = compose_running(&host, &project).await;
    assert_eq!(replicas.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=20).collect::<Vec<u32>>());
    let file = dir.path().join("docker-compose.yml");
    compose_down(&host, &file, &project).await;
}
