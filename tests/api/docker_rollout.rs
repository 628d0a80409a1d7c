//! Rolling upgrades through the docker backend, called directly against a real engine.
//!
//! The images are built locally `FROM hookd-test/sleeper:1` with a version in an `ENV` and
//! a label, so each version has its own image id; nothing is pulled. Each test names its
//! services uniquely, so the tests run in parallel on the shared engine.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use hookd::{
    backend::{docker::DockerBackend, Backend, BackendError, RolloutObserver, RolloutPlan, RolloutProgress},
    config::{BackendConfig, BackendKind},
    domain::ServiceId,
};
use serde_json::Value;

use crate::{
    components::require,
    docker::{docker, engine, IMAGE},
    helpers::eventually,
};

const BAD_IMAGE: &str = "hookd-test/does-not-exist:9";

/// Records every progress report.
#[derive(Default)]
struct Recorder(Mutex<Vec<RolloutProgress>>);

#[async_trait]
impl RolloutObserver for Recorder {
    async fn progress(&self, progress: RolloutProgress) {
        self.0.lock().unwrap().push(progress);
    }
}

impl Recorder {
    fn reports(&self) -> Vec<RolloutProgress> {
        self.0.lock().unwrap().clone()
    }
}

async fn backend(host: &str) -> DockerBackend {
    DockerBackend::start(&BackendConfig {
        name: "docker".into(),
        kind: BackendKind::Docker,
        endpoint: Some(host.to_owned()),
        stop_grace_seconds: 2,
        cgroups: true,
        keeper_binary: None,
        services: Vec::new(),
        ..BackendConfig::new("", BackendKind::Local)
    })
    .await
    .unwrap()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}x{nanos}", std::process::id())
}

/// Builds `tag` once per test run: the sleeper with `HOOKD_TEST_VERSION=version`.
pub fn image(host: &str, tag: &'static str, version: u32) -> &'static str {
    static BUILT: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if !built.contains(&tag) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {IMAGE}\nENV HOOKD_TEST_VERSION={version}\nLABEL hookd.test.version={version}\n"),
        )
        .unwrap();
        let output = std::process::Command::new("docker")
            .args(["build", "-q", "-t", tag, dir.path().to_str().unwrap()])
            .env("DOCKER_HOST", host)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(output.status.success(), "building {tag}: {}", String::from_utf8_lossy(&output.stderr));
        built.push(tag);
    }
    tag
}

/// Samples a count from the docker CLI every 100 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Vec<usize>>,
}

impl Sampler {
    fn start(host: &str, args: Vec<String>, count: fn(&str) -> usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (host, flag) = (host.to_owned(), stop.clone());
        let handle = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                samples.push(count(&docker(&host, &args).await));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        });
        Self { stop, handle }
    }

    async fn finish(self) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.unwrap()
    }
}

fn id(name: &str) -> ServiceId {
    ServiceId::parse(name).unwrap()
}

fn plan(batch_size: u32, interval_ms: u64, start_first: bool) -> RolloutPlan {
    RolloutPlan { batch_size, interval: Duration::from_millis(interval_ms), start_first }
}

async fn inspect_service(host: &str, name: &str, format: &str) -> String {
    docker(host, &["service", "inspect", name, "--format", format]).await.trim().to_owned()
}

/// `image state` of each of the service's tasks that should be running.
async fn tasks(host: &str, name: &str) -> Vec<String> {
    let out = docker(
        host,
        &["service", "ps", name, "--filter", "desired-state=running", "--format", "{{.Image}} {{.CurrentState}}"],
    )
    .await;
    out.lines().map(str::to_owned).collect()
}

async fn swarm_service(host: &str, name: &str, replicas: u32) {
    docker(host, &["service", "create", "--detach", "--name", name, "--replicas", &replicas.to_string(), IMAGE]).await;
    let running = async || tasks(host, name).await.iter().filter(|t| t.contains(" Running")).count();
    assert!(eventually(Duration::from_secs(60), async || running().await == replicas as usize).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn swarm_rolls_four_replicas_two_at_a_time_and_resumes_as_a_no_op() {
    let host = engine();
    let v2 = image(&host, "hookd-test/sleeper:2", 2);
    let backend = backend(&host).await;
    let name = unique("roll");
    swarm_service(&host, &name, 4).await;

    // Slots out of service: 4 less the tasks that should run and do.
    let args = ["service", "ps", &name, "--filter", "desired-state=running", "--format", "{{.CurrentState}}"];
    let down = Sampler::start(&host, args.map(str::to_owned).to_vec(), |out| {
        4usize.saturating_sub(out.lines().filter(|l| l.starts_with("Running")).count())
    });
    let observer = Recorder::default();
    let started = Instant::now();
    backend.upgrade(&id(&name), v2, plan(2, 1000, false), &observer).await.unwrap();
    let took = started.elapsed();
    let down = down.finish().await;
    eprintln!("swarm: 4 replicas rolled onto :2 two at a time in {took:?}; progress {:?}", observer.reports());
    eprintln!("swarm: replicas out of service per sample: max {:?} over {} samples", down.iter().max(), down.len());
    assert!(down.iter().all(|d| *d <= 2), "never more than a batch replaced at once: {down:?}");

    let config: Value =
        serde_json::from_str(&inspect_service(&host, &name, "{{json .Spec.UpdateConfig}}").await).unwrap();
    assert_eq!(config["Parallelism"], 2, "{config}");
    assert_eq!(config["Order"], "stop-first", "{config}");
    assert_eq!(config["FailureAction"], "pause", "{config}");
    assert_eq!(config["Delay"], 1_000_000_000u64, "{config}");
    assert_eq!(inspect_service(&host, &name, "{{.UpdateStatus.State}}").await, "completed");
    let now = tasks(&host, &name).await;
    assert_eq!(now.len(), 4, "{now:?}");
    assert!(now.iter().all(|t| t.starts_with("hookd-test/sleeper:2") && t.contains(" Running")), "{now:?}");
    let containers = docker(
        &host,
        &["ps", "--filter", &format!("label=com.docker.swarm.service.name={name}"), "--format", "{{.Image}}"],
    )
    .await;
    assert_eq!(containers.lines().count(), 4, "{containers}");
    assert!(containers.lines().all(|i| i.starts_with("hookd-test/sleeper:2")), "{containers}");
    let reports = observer.reports();
    assert_eq!(reports.last(), Some(&RolloutProgress { updated: 4, total: 4 }), "{reports:?}");
    assert!(reports.windows(2).all(|w| w[0].updated <= w[1].updated), "{reports:?}");

    // Called again (a resumed job): no new update, done at once.
    let version = inspect_service(&host, &name, "{{.Version.Index}}").await;
    let again = Recorder::default();
    let started = Instant::now();
    backend.upgrade(&id(&name), v2, plan(2, 1000, false), &again).await.unwrap();
    let took = started.elapsed();
    eprintln!("swarm: the same upgrade again took {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(inspect_service(&host, &name, "{{.Version.Index}}").await, version, "no second update");
    assert_eq!(again.reports(), [RolloutProgress { updated: 4, total: 4 }]);
    docker(&host, &["service", "rm", &name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn swarm_a_service_never_updated_and_already_current_is_a_no_op() {
    let host = engine();
    let backend = backend(&host).await;
    let name = unique("current");
    swarm_service(&host, &name, 2).await;
    assert_eq!(inspect_service(&host, &name, "{{json .UpdateStatus}}").await, "null");
    let observer = Recorder::default();
    let started = Instant::now();
    backend.upgrade(&id(&name), IMAGE, plan(1, 0, true), &observer).await.unwrap();
    eprintln!("swarm: upgrading onto the image it runs took {:?}", started.elapsed());
    assert_eq!(observer.reports(), [RolloutProgress { updated: 2, total: 2 }]);
    assert_eq!(inspect_service(&host, &name, "{{json .UpdateStatus}}").await, "null", "no update was made");
    let missing = backend.upgrade(&id("no-such-service-here"), IMAGE, plan(1, 0, true), &observer).await;
    assert!(matches!(missing, Err(BackendError::ServiceNotFound(_))), "{missing:?}");
    docker(&host, &["service", "rm", &name]).await;
}

/// Swarm retries a task whose image is missing forever; the rollout must still end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn swarm_a_missing_image_fails_the_rollout_in_bounded_time() {
    let host = engine();
    let backend = backend(&host).await;
    let name = unique("bad");
    swarm_service(&host, &name, 2).await;
    let service = id(&name);
    let observer = Recorder::default();
    let started = Instant::now();
    let rollout = backend.upgrade(&service, BAD_IMAGE, plan(1, 0, true), &observer);
    let result = tokio::time::timeout(Duration::from_secs(120), rollout).await.expect("the rollout ended");
    let took = started.elapsed();
    eprintln!("swarm: a rollout onto a missing image failed in {took:?}: {result:?}");
    match &result {
        Err(BackendError::Refused(m)) => assert!(m.contains("paused"), "{m}"),
        Err(BackendError::Unavailable(_)) => {}
        other => panic!("expected Refused or Unavailable, got {other:?}"),
    }
    assert_eq!(inspect_service(&host, &name, "{{.Spec.UpdateConfig.Order}}").await, "start-first");
    // Resumed, it fails again (the update stays paused) rather than waiting forever.
    let again = tokio::time::timeout(
        Duration::from_secs(30),
        backend.upgrade(&service, BAD_IMAGE, plan(1, 0, true), &observer),
    );
    assert!(matches!(again.await, Ok(Err(BackendError::Refused(_)))));

    // A good image then rolls on from the paused update.
    let v2 = image(&host, "hookd-test/sleeper:2", 2);
    let started = Instant::now();
    backend.upgrade(&service, v2, plan(1, 0, true), &observer).await.unwrap();
    eprintln!("swarm: the paused service rolled onto :2 in {:?}", started.elapsed());
    let now = tasks(&host, &name).await;
    assert!(now.len() == 2 && now.iter().all(|t| t.starts_with(v2) && t.contains(" Running")), "{now:?}");
    docker(&host, &["service", "rm", &name]).await;
}

async fn compose(host: &str, file: &std::path::Path, project: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new("docker-compose")
        .args(["-f", file.to_str().unwrap(), "-p", project])
        .args(args)
        .env("DOCKER_HOST", host)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "docker-compose {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `number image` of each running replica, by number.
async fn replicas(host: &str, project: &str) -> Vec<(u32, String)> {
    let out = docker(
        host,
        &[
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--format",
            "{{.Label \"com.docker.compose.container-number\"}} {{.Image}}",
        ],
    )
    .await;
    let mut replicas: Vec<(u32, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, image)| (n.parse().unwrap(), image.to_owned())))
        .collect();
    replicas.sort();
    replicas
}

fn running_count(out: &str) -> usize {
    out.lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn compose_rolls_three_replicas_one_at_a_time_both_orders() {
    let host = engine();
    require("docker-compose");
    let v1 = image(&host, "hookd-test/rollout:1", 1);
    let v2 = image(&host, "hookd-test/rollout:2", 2);
    let backend = backend(&host).await;
    let project = unique("r");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        format!("version: '3'\nservices:\n  app:\n    image: {v1}\n    labels:\n      tier: worker\n    restart: unless-stopped\n    environment:\n      ROLE: worker\n"),
    )
    .unwrap();
    compose(&host, &file, &project, &["up", "-d", "--scale", "app=3"]).await;
    let service = id(&format!("{project}/app"));
    let ps = ["ps", "--filter", &format!("label=com.docker.compose.project={project}"), "--format", "{{.ID}}"];

    // Start-first, one at a time: 3 or 4 replicas run at every moment.
    let running = Sampler::start(&host, ps.map(str::to_owned).to_vec(), running_count);
    let observer = Recorder::default();
    let started = Instant::now();
    backend.upgrade(&service, v2, plan(1, 200, true), &observer).await.unwrap();
    let took = started.elapsed();
    let running = running.finish().await;
    eprintln!("compose: 3 replicas rolled onto :2 one at a time (start-first) in {took:?}");
    eprintln!("compose: running replicas per sample: {:?}..={:?}", running.iter().min(), running.iter().max());
    assert!(running.iter().all(|n| (3..=4).contains(n)), "{running:?}");
    let progress = |updated| RolloutProgress { updated, total: 3 };
    assert_eq!(observer.reports(), [progress(1), progress(2), progress(3)]);
    let now = replicas(&host, &project).await;
    assert_eq!(now, [4, 5, 6].map(|n| (n, v2.to_owned())), "new numbers, all on :2");
    let env = docker(
        &host,
        &[
            "inspect",
            &format!("{project}_app_6"),
            "--format",
            "{{.Config.Env}} {{.Config.Labels.tier}} {{.Config.Labels}}",
        ],
    )
    .await;
    assert!(env.contains("ROLE=worker") && env.contains("HOOKD_TEST_VERSION=2"), "{env}");
    assert!(
        !env.contains("HOOKD_TEST_VERSION=1") && env.contains("hookd.test.version:2"),
        "the new image's defaults: {env}"
    );
    assert!(env.contains(" worker "), "{env}");
    let seen = compose(&host, &file, &project, &["ps", "-q"]).await;
    assert_eq!(seen.lines().count(), 3, "docker-compose sees the new replicas as its own: {seen}");

    // Again: nothing to do, nothing touched.
    let ids = docker(&host, &ps).await;
    let again = Recorder::default();
    let started = Instant::now();
    backend.upgrade(&service, v2, plan(1, 200, true), &again).await.unwrap();
    eprintln!("compose: the same upgrade again took {:?}", started.elapsed());
    assert_eq!(docker(&host, &ps).await, ids);
    assert_eq!(again.reports(), [progress(3)]);

    // Back to :1, stop-first, two at a time: never more than 3 replicas, never fewer than 1.
    let running = Sampler::start(&host, ps.map(str::to_owned).to_vec(), running_count);
    let observer = Recorder::default();
    let started = Instant::now();
    backend.upgrade(&service, v1, plan(2, 200, false), &observer).await.unwrap();
    let took = started.elapsed();
    let running = running.finish().await;
    eprintln!("compose: 3 replicas rolled back onto :1 two at a time (stop-first) in {took:?}");
    assert!(running.iter().all(|n| (1..=3).contains(n)), "{running:?}");
    assert_eq!(observer.reports().len(), 3);
    let now = replicas(&host, &project).await;
    assert_eq!(now, [7, 8, 9].map(|n| (n, v1.to_owned())));
    let env = docker(&host, &["inspect", &format!("{project}_app_9"), "--format", "{{.Config.Env}}"]).await;
    assert!(env.contains("HOOKD_TEST_VERSION=1") && !env.contains("HOOKD_TEST_VERSION=2"), "{env}");

    // A start-first replacement cut short (hookd killed after creating app_10 for app_7):
    // the next call starts app_10 and removes app_7 instead of adding a fourth replica.
    let old = docker(&host, &["inspect", &format!("{project}_app_7"), "--format", "{{.Id}}"]).await;
    let labels = [
        format!("com.docker.compose.project={project}"),
        "com.docker.compose.service=app".to_owned(),
        "com.docker.compose.container-number=10".to_owned(),
        format!("io.hookd.replaces={}", old.trim()),
    ];
    let mut create = vec!["create".to_owned(), "--name".to_owned(), format!("{project}_app_10")];
    create.extend(labels.iter().flat_map(|l| ["--label".to_owned(), l.clone()]));
    create.push(v2.to_owned());
    docker(&host, &create.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let observer = Recorder::default();
    let started = Instant::now();
    backend.upgrade(&service, v2, plan(1, 0, false), &observer).await.unwrap();
    eprintln!("compose: a cut-short rollout finished in {:?}", started.elapsed());
    assert_eq!(replicas(&host, &project).await, [10, 11, 12].map(|n| (n, v2.to_owned())));
    assert_eq!(observer.reports(), [progress(1), progress(2), progress(3)]);

    // A missing image (and no registry to pull it from) fails before any replica is touched.
    let ids = docker(&host, &ps).await;
    let result = backend.upgrade(&service, BAD_IMAGE, plan(1, 0, false), &Recorder::default()).await;
    eprintln!("compose: a rollout onto a missing image: {result:?}");
    assert!(matches!(result, Err(BackendError::Refused(_) | BackendError::Unavailable(_))), "{result:?}");
    assert_eq!(docker(&host, &ps).await, ids);
    crate::docker::compose_down(&host, &file, &project).await;
}

/// Issue 12 end to end on Swarm: a registry v2 notification through the trigger URL
/// starts a job that rolls the labelled service onto `:2`, two replicas at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn a_registry_push_rolls_a_swarm_service_through_a_job() {
    let host = engine();
    let v2 = image(&host, "hookd-test/sleeper:2", 2);
    let app = crate::docker::app_on(&host).await;
    let name = unique("pushed");
    docker(
        &host,
        &["service", "create", "--detach", "--name", &name, "--label", "deploy=push", "--replicas", "4", IMAGE],
    )
    .await;
    let body = serde_json::json!({"name": "deploy", "driver": "serviceUpgrade", "serviceUpgradeConfig": {
        "serviceSelector": {"deploy": "push"}, "tag": "2", "batchSize": 2, "intervalMillis": 1}});
    let (status, r) = app.request(reqwest::Method::POST, "/v1-webhooks/receivers?projectId=dock", Some(body)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{r}");
    let envelope = serde_json::json!({"events": [{"id": unique("event"), "action": "push",
        "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "repository": "hookd-test/sleeper",
                   "tag": "2", "digest": null},
        "request": {"host": "docker.io"}}]});
    let started = Instant::now();
    let (status, answer) = app.notify(r["url"].as_str().unwrap(), &envelope.to_string()).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{answer}");
    let job_path = answer["jobUrl"].as_str().unwrap().strip_prefix(&app.base).unwrap().to_owned();
    let mut job = Value::Null;
    for _ in 0..240 {
        job = app.get(&job_path).await.1;
        if job["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["services"][0]["image"], v2);
    let parallelism = inspect_service(&host, &name, "{{.Spec.UpdateConfig.Parallelism}}").await;
    assert_eq!(parallelism.trim(), "2");
    let running: Vec<String> = tasks(&host, &name).await.into_iter().filter(|t| t.contains(" Running")).collect();
    assert_eq!(running.len(), 4, "{running:?}");
    assert!(running.iter().all(|t| t.starts_with(v2)), "{running:?}");
    eprintln!("a push rolled 4 Swarm replicas to :2, 2 at a time, in {took:?}");
    docker(&host, &["service", "rm", &name]).await;
}
