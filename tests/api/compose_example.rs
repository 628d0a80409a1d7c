//! Issue 13: the worked example in `deploy/compose/` (hookd, Prometheus, Alertmanager and a
//! worker), run as the README says on the test engine. Images stand in for the ones a user
//! pulls: hookd's from `packaging/build-image.sh`, Prometheus and Alertmanager from Debian's
//! binaries (`scripts/scratch-image.sh`), the worker from the test image with busybox's applets.

use std::{collections::HashMap, path::Path, time::Duration};

use serde_json::Value;

use crate::{
    components::{free_port, require},
    docker::{docker, engine},
    helpers::eventually,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

async fn run(program: &str, args: &[&str], env: &HashMap<&str, String>, dir: &Path) -> String {
    let output = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{program} {args:?}: {out}{}", String::from_utf8_lossy(&output.stderr));
    out
}

/// `docker-compose down -v`, retried while the engine detaches the last endpoint.
async fn down(env: &HashMap<&str, String>, dir: &Path) {
    for _ in 0..10 {
        let ok = tokio::process::Command::new("docker-compose")
            .args(["down", "-v", "-t", "1"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir)
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine, docker-compose, Prometheus and Alertmanager: ./scripts/test.sh"]
async fn the_compose_example_scales_the_worker_when_its_alert_fires() {
    for tool in ["docker-compose", "prometheus", "prometheus-alertmanager"] {
        require(tool);
    }
    let host = engine();
    let id = std::process::id();
    let images = [
        format!("hookd-test/example-hookd:{id}"),
        format!("hookd-test/example-prometheus:{id}"),
        format!("hookd-test/example-alertmanager:{id}"),
        format!("hookd-test/example-worker:{id}"),
    ];
    let here = Path::new(ROOT);
    let build_env =
        HashMap::from([("DOCKER_HOST", host.clone()), ("HOOKD_BINARY", env!("CARGO_BIN_EXE_hookd").into())]);
    run("packaging/build-image.sh", &[&images[0]], &build_env, here).await;
    let scratch = "scripts/scratch-image.sh";
    run(scratch, &[&images[1], "/usr/bin/prometheus", "prometheus"], &build_env, here).await;
    let templates = "/usr/share/prometheus/alertmanager"; // Debian's build reads its templates from here
    run(scratch, &[&images[2], "/usr/bin/prometheus-alertmanager", "alertmanager", templates], &build_env, here).await;
    let worker = tempfile::tempdir().unwrap();
    let dockerfile = "FROM hookd-test/sleeper:1\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";
    std::fs::write(worker.path().join("Dockerfile"), dockerfile).unwrap();
    let build = HashMap::from([("DOCKER_HOST", host.clone()), ("DOCKER_BUILDKIT", "0".into())]);
    run("docker", &["build", "-q", "-t", &images[3], "."], &build, worker.path()).await;

    // The example's files, copied so that writing alertmanager.yml leaves the repository alone.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(here.join("deploy/compose")).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let port = free_port();
    let token = "compose-example-token-0123456789";
    let socket = host.strip_prefix("unix://").expect("a unix socket").to_owned();
    let env = HashMap::from([
        ("DOCKER_HOST", host.clone()),
        ("DOCKER_SOCKET", socket),
        ("HOOKD_IMAGE", images[0].clone()),
        ("PROMETHEUS_IMAGE", images[1].clone()),
        ("ALERTMANAGER_IMAGE", images[2].clone()),
        ("WORKER_IMAGE", images[3].clone()),
        ("HOOKD_ADMIN_TOKEN", token.into()),
        ("HOOKD_PORT", port.to_string()),
        ("PROMETHEUS_PORT", free_port().to_string()),
        ("ALERTMANAGER_PORT", free_port().to_string()),
        ("HOOKD_URL", format!("http://127.0.0.1:{port}")),
        ("HOOKD_TOKEN", token.into()),
    ]);
    let outcome = scenario(&env, dir.path()).await;
    let logs = run("docker-compose", &["logs", "--no-color", "hookd", "alertmanager"], &env, dir.path()).await;
    down(&env, dir.path()).await;
    for image in &images {
        docker(&host, &["rmi", image]).await;
    }
    if let Err(why) = outcome {
        panic!("{why}\nlogs:\n{logs}");
    }
}

/// The README's steps; Err says which one did not happen.
async fn scenario(env: &HashMap<&str, String>, dir: &Path) -> Result<(), String> {
    run("docker-compose", &["up", "-d"], env, dir).await;
    let base = env["HOOKD_URL"].clone();
    let http = reqwest::Client::new();
    let up = eventually(Duration::from_secs(30), || async {
        http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    up.then_some(()).ok_or("hookd never answered /healthz")?;
    let hookd = env!("CARGO_BIN_EXE_hookd");
    let args = ["receivers", "create", "--name", "worker-up", "--service", "hookd-example/worker"];
    run(hookd, &[&args[..], &["--action", "up", "--max", "3"]].concat(), env, dir).await;
    let config = run(hookd, &["receivers", "alertmanager-config", "worker-up"], env, dir).await;
    std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
    run("docker-compose", &["restart", "alertmanager"], env, dir).await;

    let token = env["HOOKD_TOKEN"].clone();
    let scaled =
        |want: u64| {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            async move {
                let services: Value =
                    match http.get(format!("{base}/v1-webhooks/services")).bearer_auth(&token).send().await {
                        Ok(r) => r.json().await.unwrap_or_default(),
                        Err(_) => return false,
                    };
                services["data"].as_array().into_iter().flatten().any(|s| {
                    s["id"] == "hookd-example/worker" && s["scale"] == want && s["running"].as_u64() == Some(want)
                })
            }
        };
    eventually(Duration::from_secs(10), || scaled(1)).await.then_some(()).ok_or("worker did not start at 1")?;
    let started = std::time::Instant::now();
    let two = eventually(Duration::from_secs(150), || scaled(2)).await;
    two.then_some(()).ok_or("the alert never scaled worker to 2")?;
    eprintln!("compose example: Alertmanager's config in place → worker at 2 in {:?}", started.elapsed());
    let history = run(hookd, &["executions", "worker-up"], env, dir).await;
    history.contains("WorkerBelowTwo").then_some(()).ok_or(format!("the history names the alert: {history}"))?;
    // Resolved, the alert scales nothing more.
    tokio::time::sleep(Duration::from_secs(15)).await;
    scaled(2).await.then_some(()).ok_or("worker went past 2".into())
}
