//! Host pools on the `swarm` provider (issue 17): each host is a Docker engine of its own
//! (own data root, no bridge, no iptables) that the pool's create script starts and joins to
//! the test swarm as a worker; scale-down drains it, waits for its tasks to stop, runs the
//! delete script and removes the node. A swarm service pinned to the pool follows the hosts.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hookd::config::{HostPoolConfig, HostProviderKind};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    docker::{docker, engine, IMAGE},
    helpers::{eventually, spawn_app_with, TestApp},
    upgrade::finished,
};

fn script(dir: &Path, name: &str, env: &[(&str, &str)]) -> Vec<String> {
    let mut argv = vec!["env".to_owned(), format!("HOSTS_DIR={}", dir.display())];
    argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.push(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hosts/").to_owned() + name);
    argv
}

/// Stops every worker engine the test started and removes the pool's nodes, pass or fail.
struct Workers {
    dir: PathBuf,
    marker: String,
    engine: String,
}

impl Drop for Workers {
    fn drop(&mut self) {
        let engine_script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/docker-engine.sh");
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let _ = std::process::Command::new(engine_script).arg("stop").arg(entry.path()).output();
        }
        let docker =
            |args: &[&str]| std::process::Command::new("docker").args(args).env("DOCKER_HOST", &self.engine).output();
        let _ = docker(&["service", "rm", &self.marker]);
        if let Ok(out) = docker(&["node", "ls", "-q", "--filter", &format!("node.label=pool={}", self.marker)]) {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = docker(&["node", "rm", "--force", id]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pool's nodes as the manager sees them: (name, state, availability).
async fn pool_nodes(marker: &str) -> Vec<(String, String, String)> {
    let filter = format!("node.label=pool={marker}");
    let out = docker(&engine(), &["node", "ls", "-q", "--filter", &filter]).await;
    let mut nodes = Vec::new();
    for id in out.split_whitespace() {
        let format = "{{.Spec.Name}} {{.Status.State}} {{.Spec.Availability}}";
        let line = docker(&engine(), &["node", "inspect", "--format", format, id]).await;
        let parts: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        nodes.push((parts[0].clone(), parts[1].clone(), parts[2].clone()));
    }
    nodes.sort();
    nodes
}

/// The nodes (by name) the service's running tasks are on.
async fn task_nodes(service: &str) -> Vec<String> {
    let out = docker(
        &engine(),
        &["service", "ps", service, "--filter", "desired-state=running", "--format", "{{.ID}} {{.CurrentState}}"],
    )
    .await;
    let mut nodes = Vec::new();
    for line in out.lines().filter(|l| l.contains("Running")) {
        let task = line.split_whitespace().next().unwrap();
        let node = docker(&engine(), &["inspect", "--type", "task", "--format", "{{.NodeID}}", task]).await;
        nodes.push(docker(&engine(), &["node", "inspect", "--format", "{{.Spec.Name}}", node.trim()]).await);
    }
    let mut names: Vec<String> = nodes.iter().map(|n| n.trim().to_owned()).collect();
    names.sort();
    names
}

async fn receiver(app: &TestApp, name: &str, marker: &str, action: &str, amount: u32) -> String {
    let config = json!({"hostSelector": {"pool": marker}, "action": action, "amount": amount, "min": 1, "max": 3,
        "deleteOption": "mostRecent", "cooldownUpSeconds": 0, "cooldownDownSeconds": 0});
    let (status, r) =
        app.create_receiver(json!({"name": name, "driver": "scaleHost", "scaleHostConfig": config})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r["url"].as_str().unwrap().to_owned()
}

async fn host_job(app: &TestApp, url: &str) -> Value {
    let (status, answer) = app.trigger(url).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::ACCEPTED, Some("started")), "{answer}");
    finished(app, answer["jobUrl"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn issue_17_a_swarm_pool_joins_drains_and_removes_real_workers() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let marker = format!("hp{}x{nanos}", std::process::id());
    let workers = Workers { dir: tempfile::tempdir().unwrap().keep(), marker: marker.clone(), engine: engine() };
    let env = [("HOSTS_FAIL", "sw-3")];
    let pool = HostPoolConfig {
        name: "sw".into(),
        project: "default".into(),
        selector: [("pool".to_owned(), marker.clone())].into(),
        min: 1,
        max: 3,
        provider: HostProviderKind::Swarm,
        list: Vec::new(),
        create: script(&workers.dir, "swarm-create.sh", &env),
        delete: script(&workers.dir, "swarm-delete.sh", &env),
        endpoint: Some(engine()),
        timeout_seconds: 60,
    };
    let app = spawn_app_with(move |c| c.host_pools = vec![pool]).await;
    // Two tasks that can run only on the pool's nodes: pending until a host joins.
    let constraint = format!("node.labels.pool=={marker}");
    docker(
        &engine(),
        &["service", "create", "-d", "--name", &marker, "--replicas", "2", "--constraint", &constraint, IMAGE],
    )
    .await;
    let up = receiver(&app, "up", &marker, "up", 1).await;
    let down = receiver(&app, "down", &marker, "down", 1).await;

    let started = Instant::now();
    let job = host_job(&app, &up).await;
    let joined = started.elapsed();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(pool_nodes(&marker).await, [("sw-1".into(), "ready".into(), "active".into())]);
    let placed = eventually(Duration::from_secs(60), async || task_nodes(&marker).await == ["sw-1", "sw-1"]).await;
    assert!(placed, "the service's tasks run on the new worker: {:?}", task_nodes(&marker).await);
    assert_eq!(host_job(&app, &up).await["state"], "succeeded");
    assert_eq!(pool_nodes(&marker).await.len(), 2);
    let (status, pools) = app.get("/v1-webhooks/pools").await;
    assert_eq!(status, StatusCode::OK, "{pools}");
    let hosts: Vec<&str> =
        pools["data"][0]["hosts"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!((pools["data"][0]["provider"].as_str(), hosts), (Some("swarm"), vec!["sw-1", "sw-2"]), "{pools}");
    // Spread the tasks over both workers, so removing one has tasks to move.
    docker(&engine(), &["service", "update", "-d", "--force", &marker]).await;
    let spread = eventually(Duration::from_secs(60), async || task_nodes(&marker).await == ["sw-1", "sw-2"]).await;
    assert!(spread, "{:?}", task_nodes(&marker).await);

    // mostRecent: sw-2 is drained, its task moves to sw-1, and its engine is stopped.
    let started = Instant::now();
    let job = host_job(&app, &down).await;
    let removed = started.elapsed();
    assert_eq!(
        (job["state"].as_str(), job["hosts"]["steps"][0]["name"].as_str()),
        (Some("succeeded"), Some("sw-2")),
        "{job}"
    );
    assert_eq!(pool_nodes(&marker).await, [("sw-1".into(), "ready".into(), "active".into())]);
    assert!(!workers.dir.join("sw-2").exists(), "the delete script stopped the worker's engine");
    let moved = eventually(Duration::from_secs(60), async || task_nodes(&marker).await == ["sw-1", "sw-1"]).await;
    assert!(moved, "{:?}", task_nodes(&marker).await);
    let (status, answer) = app.trigger(&down).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("unchanged")), "at min: {answer}");

    // A create that fails after starting the engine is rolled back: no engine, no node.
    let up_two = receiver(&app, "up-two", &marker, "up", 2).await;
    let job = host_job(&app, &up_two).await;
    let steps: Vec<(&str, &str)> = job["hosts"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!((job["state"].as_str(), steps), (Some("failed"), vec![("sw-2", "done"), ("sw-3", "failed")]), "{job}");
    assert!(job["hosts"]["steps"][1]["error"].as_str().unwrap().contains("quota exceeded"), "{job}");
    assert!(!workers.dir.join("sw-3").exists(), "the half-made host was rolled back");
    let names: Vec<String> = pool_nodes(&marker).await.into_iter().map(|n| n.0).collect();
    assert_eq!(names, ["sw-1", "sw-2"]);

    // A worker whose machine dies: its node goes down with its tasks still "running" (the
    // swarm keeps their last state for a day). It is removed first, without waiting on them.
    let spread =
        eventually(Duration::from_secs(60), async || task_nodes(&marker).await.contains(&"sw-2".to_owned())).await;
    if !spread {
        docker(&engine(), &["service", "update", "-d", "--force", &marker]).await;
    }
    let pid: i32 = std::fs::read_to_string(workers.dir.join("sw-2/dockerd.pid")).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let down_seen = eventually(Duration::from_secs(60), async || {
        pool_nodes(&marker).await.iter().any(|(name, state, _)| name == "sw-2" && state == "down")
    })
    .await;
    assert!(down_seen, "{:?}", pool_nodes(&marker).await);
    let job = host_job(&app, &down).await;
    assert_eq!(
        (job["state"].as_str(), job["hosts"]["steps"][0]["name"].as_str()),
        (Some("succeeded"), Some("sw-2")),
        "{job}"
    );
    assert_eq!(pool_nodes(&marker).await, [("sw-1".into(), "ready".into(), "active".into())]);
    println!("swarm pool: trigger to a worker joined and ready {joined:.1?}; trigger to a worker drained and removed {removed:.1?}");
}
