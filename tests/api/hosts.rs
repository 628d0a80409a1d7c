//! Host pools (issue 17): the `command` provider, with scripts whose hosts are real
//! processes (tests/fixtures/hosts/), and the decision on what they list. The `swarm`
//! provider's test is `swarm_hosts.rs`.

use std::{collections::BTreeMap, collections::BTreeSet, path::Path, time::Duration};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    helpers::{eventually, spawn_app_with, spawn_process_with, TestApp},
    upgrade::finished,
};
use hookd::{
    config::{HostPoolConfig, HostProviderKind},
    domain::{
        host::{DeleteOption, HostDecision, ScaleHostConfig},
        ScaleAction, ScaleOptions,
    },
    hosts::{HostError, Pools},
};

/// A directory of test hosts: every host still running when the test ends is killed.
pub struct HostsDir(tempfile::TempDir);

impl HostsDir {
    pub fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for HostsDir {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(self.path()).into_iter().flatten().flatten() {
            let pid = std::fs::read_to_string(entry.path()).ok().and_then(|p| p.trim().parse::<i32>().ok());
            if let (Some(pid), true) = (pid, entry.path().extension().is_some_and(|x| x == "pid")) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

fn script(dir: &Path, name: &str, env: &[(&str, &str)]) -> Vec<String> {
    let mut argv = vec!["env".to_owned(), format!("HOSTS_DIR={}", dir.display())];
    argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.push(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hosts/").to_owned() + name);
    argv
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pool(dir: &Path, env: &[(&str, &str)], timeout_seconds: u64) -> HostPoolConfig {
    HostPoolConfig {
        name: "w".into(),
        project: "default".into(),
        selector: labels(&[("pool", "w")]),
        min: 1,
        max: 10,
        provider: HostProviderKind::Command,
        list: script(dir, "list.sh", env),
        create: script(dir, "create.sh", env),
        delete: script(dir, "delete.sh", env),
        endpoint: None,
        timeout_seconds,
    }
}

fn alive(pid_file: &Path) -> bool {
    let pid: i32 = std::fs::read_to_string(pid_file).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

fn config(action: ScaleAction, amount: u32) -> ScaleHostConfig {
    ScaleHostConfig {
        selector: labels(&[("pool", "w"), ("zone", "a")]),
        action,
        amount,
        min: 1,
        max: 5,
        delete_option: DeleteOption::MostRecent,
        options: ScaleOptions::default(),
    }
    .validate()
    .unwrap()
}

#[tokio::test]
async fn issue_17_a_command_pool_creates_lists_and_deletes_real_hosts() {
    let dir = HostsDir::new();
    let pools = Pools::start(&[pool(dir.path(), &[], 30)]).unwrap();
    let w = pools.by_name("w").unwrap();
    let zone_a = labels(&[("pool", "w"), ("zone", "a")]);
    w.provider.create("w-1", &zone_a).await.unwrap();
    // Another zone's host is in the pool, but no receiver of zone a counts it.
    w.provider.create("w-7", &labels(&[("pool", "w"), ("zone", "b")])).await.unwrap();
    assert!(alive(&dir.path().join("w-1.pid")), "the host is a live process");

    let hosts = w.hosts().await.unwrap();
    assert_eq!(hosts.len(), 2);
    let taken: BTreeSet<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let HostDecision::Create { from, to, names } =
        config(ScaleAction::Up, 2).decide(ScaleAction::Up, &hosts, (w.min, w.max), "w", &taken)
    else {
        panic!("up creates");
    };
    assert_eq!((from, to, names.clone()), (1, 3, vec!["w-8".to_owned(), "w-9".to_owned()]));
    for name in &names {
        w.provider.create(name, &zone_a).await.unwrap();
    }
    assert_eq!(w.hosts().await.unwrap().len(), 4);

    // w-1 dies: it is the first to go, newest or not.
    let pid: i32 = std::fs::read_to_string(dir.path().join("w-1.pid")).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let hosts = w.hosts().await.unwrap();
    assert!(hosts.iter().any(|h| h.name == "w-1" && !h.healthy), "{hosts:?}");
    let decision = config(ScaleAction::Down, 1).decide(ScaleAction::Down, &hosts, (w.min, w.max), "w", &taken);
    assert_eq!(decision, HostDecision::Delete { from: 3, to: 2, names: vec!["w-1".into()] });
    w.provider.delete("w-9").await.unwrap();
    assert!(!dir.path().join("w-9.pid").exists());
    w.provider.delete("w-9").await.expect("a host already gone is no error");
    let names: Vec<String> = w.hosts().await.unwrap().into_iter().map(|h| h.name).collect();
    assert_eq!(names, ["w-1", "w-7", "w-8"]);
    for name in names {
        w.provider.delete(&name).await.unwrap();
    }
}

#[tokio::test]
async fn issue_17_a_failing_create_says_why_and_a_hung_one_is_killed_whole() {
    let dir = HostsDir::new();
    let pools = Pools::start(&[pool(dir.path(), &[("HOSTS_FAIL", "w-2"), ("HOSTS_HANG", "w-3")], 2)]).unwrap();
    let w = pools.by_name("w").unwrap();
    let failed = w.provider.create("w-2", &labels(&[("pool", "w")])).await.unwrap_err();
    assert!(
        matches!(&failed, HostError::Failed(m) if m.contains("quota exceeded") && m.contains("exit status: 3")),
        "{failed:?}"
    );
    assert!(alive(&dir.path().join("w-2.pid")), "the half-made host is there to roll back");
    w.provider.delete("w-2").await.unwrap();
    assert!(w.hosts().await.unwrap().is_empty());

    let started = std::time::Instant::now();
    let hung = w.provider.create("w-3", &labels(&[("pool", "w")])).await.unwrap_err();
    assert!(matches!(&hung, HostError::Failed(m) if m.contains("within 2 s")), "{hung:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    for pid_file in ["hung.pid", "hung-child.pid"] {
        let gone =
            crate::helpers::eventually(Duration::from_secs(5), async || !alive(&dir.path().join(pid_file))).await;
        assert!(gone, "{pid_file}: the script's whole process group is killed");
    }
}

#[test]
fn issue_17_pool_configs_are_checked_at_start() {
    let parse = |toml: &str| {
        let mut config: hookd::config::Config = toml::from_str(toml).map_err(|e| e.to_string())?;
        config.finish().map_err(|e| format!("{e:#}"))
    };
    let base = "[[host_pool]]\nname = \"w\"\nselector = { pool = \"w\" }\n";
    let err = parse(&format!("{base}provider = \"command\"\nlist = [\"ls\"]\ncreate = [\"true\"]\n")).unwrap_err();
    assert!(err.contains("needs `delete`"), "{err}");
    let err = parse(&format!("{base}provider = \"swarm\"\n")).unwrap_err();
    assert!(err.contains("needs `create`"), "{err}");
    let err = parse(&format!("{base}provider = \"swarm\"\ncreate = [\"x\"]\n")).unwrap_err();
    assert!(err.contains("needs `delete`"), "{err}");
    let two = "provider = \"swarm\"\ncreate = [\"x\"]\ndelete = [\"y\"]\n";
    let overlapping =
        format!("{base}{two}[[host_pool]]\nname = \"gpu\"\nselector = {{ pool = \"w\", gpu = \"yes\" }}\n{two}");
    let err = parse(&overlapping).unwrap_err();
    assert!(err.contains("could hold the same hosts"), "{err}");
    parse(&overlapping.replace("pool = \"w\", gpu", "pool = \"g\", gpu")).unwrap();
    let err =
        parse("[[host_pool]]\nname = \"w\"\nselector = {}\nprovider = \"swarm\"\ncreate = [\"x\"]\n").unwrap_err();
    assert!(err.contains("selector"), "{err}");
    let err = parse(&format!("{base}provider = \"swarm\"\ncreate = [\"x\"]\ndelete = [\"y\"]\nproject = \"nope\"\n"))
        .unwrap_err();
    assert!(err.contains("project \"nope\""), "{err}");
    let err = parse(&format!("{base}provider = \"cloud\"\n")).unwrap_err();
    assert!(err.contains("cloud"), "{err}");
    parse(&format!(
        "{base}provider = \"swarm\"\ncreate = [\"/usr/local/bin/join\"]\ndelete = [\"x\"]\nmin = 0\nmax = 3\n"
    ))
    .unwrap();
}

/// hookd whose project `default` has the command pool `w` (hosts in `dir`), bounds 1..4.
pub async fn app_with_pool(dir: &Path, env: &[(&str, &str)], process: bool) -> TestApp {
    let mut pool = pool(dir, env, 30);
    pool.max = 4;
    let customize = move |c: &mut hookd::config::Config| c.host_pools = vec![pool];
    match process {
        true => spawn_process_with(customize).await,
        false => spawn_app_with(customize).await,
    }
}

async fn host_receiver(app: &TestApp, name: &str, config: Value) -> String {
    let (status, r) =
        app.create_receiver(json!({"name": name, "driver": "scaleHost", "scaleHostConfig": config})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["scaleHostConfig"]["type"], "scaleHost", "{r}");
    r["url"].as_str().unwrap().to_owned()
}

/// Triggers `url` and follows the job it starts to its end.
async fn host_job(app: &TestApp, url: &str) -> Value {
    let (status, answer) = app.trigger(url).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::ACCEPTED, Some("started")), "{answer}");
    finished(app, answer["jobUrl"].as_str().unwrap()).await
}

async fn pool_hosts(app: &TestApp) -> Vec<(String, bool)> {
    let (status, pools) = app.get("/v1-webhooks/pools").await;
    assert_eq!(status, StatusCode::OK, "{pools}");
    let w = &pools["data"][0];
    assert_eq!((w["name"].as_str(), w["provider"].as_str()), (Some("w"), Some("command")), "{pools}");
    let hosts = w["hosts"].as_array().unwrap();
    hosts.iter().map(|h| (h["name"].as_str().unwrap().to_owned(), h["healthy"].as_bool().unwrap())).collect()
}

fn zone_a(action: &str, amount: u32, extra: Value) -> Value {
    let mut config =
        json!({"hostSelector": {"pool": "w", "zone": "a"}, "action": action, "amount": amount, "min": 1, "max": 4});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_scale_host_adds_and_removes_real_hosts_through_jobs() {
    let dir = HostsDir::new();
    let app = app_with_pool(dir.path(), &[], false).await;
    let up = host_receiver(&app, "up", zone_a("up", 2, json!({}))).await;
    let down = host_receiver(&app, "down", zone_a("down", 1, json!({"deleteOption": "leastRecent"}))).await;

    let job = host_job(&app, &up).await;
    assert_eq!((job["state"].as_str(), job["kind"].as_str()), (Some("succeeded"), Some("scaleHost")), "{job}");
    let steps: Vec<&str> =
        job["hosts"]["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(steps, ["w-1", "w-2"]);
    assert!(alive(&dir.path().join("w-1.pid")) && alive(&dir.path().join("w-2.pid")), "real hosts run");
    assert_eq!(host_job(&app, &up).await["state"], "succeeded");
    assert_eq!(pool_hosts(&app).await.len(), 4);
    let (status, answer) = app.trigger(&up).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("unchanged")), "at max: {answer}");

    assert_eq!(host_job(&app, &down).await["hosts"]["steps"][0]["name"], "w-1", "leastRecent: the oldest");
    // w-3 dies: unhealthy goes first, whatever deleteOption says.
    let pid: i32 = std::fs::read_to_string(dir.path().join("w-3.pid")).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(host_job(&app, &down).await["hosts"]["steps"][0]["name"], "w-3");
    assert_eq!(host_job(&app, &down).await["hosts"]["steps"][0]["name"], "w-2");
    let (status, answer) = app.trigger(&down).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("unchanged")), "at min: {answer}");
    assert_eq!(pool_hosts(&app).await, [("w-4".to_owned(), true)]);

    // The CLI shows the pool, its hosts, and a host job.
    let (ok, out, err) = crate::cli::hookd(&app, &["pools"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("pool w  (command, pool=w, 1..4 hosts)") && out.contains("w-4") && out.contains("zone=a"),
        "{out}"
    );
    let (ok, out, err) = crate::cli::hookd(&app, &["jobs", "get", job["id"].as_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("(hosts of pool w)") && out.contains("w-1") && out.contains("create"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_a_failed_create_is_rolled_back_and_reported_precisely() {
    let dir = HostsDir::new();
    let app = app_with_pool(dir.path(), &[("HOSTS_FAIL", "w-2")], false).await;
    let up = host_receiver(&app, "up", zone_a("up", 3, json!({}))).await;
    let job = host_job(&app, &up).await;
    assert_eq!(job["state"], "failed", "{job}");
    let steps = job["hosts"]["steps"].as_array().unwrap();
    let states: Vec<&str> = steps.iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["done", "failed", "skipped"], "{job}");
    let error = steps[1]["error"].as_str().unwrap();
    assert!(error.contains("quota exceeded") && error.contains("rolled back"), "{error}");
    assert!(!dir.path().join("w-2.pid").exists(), "the half-made host was deleted");
    assert_eq!(pool_hosts(&app).await, [("w-1".to_owned(), true)]);
}

#[tokio::test]
async fn issue_17_a_receiver_names_one_pool_and_rancher_s_rules_hold() {
    let dir = HostsDir::new();
    let app = app_with_pool(dir.path(), &[], false).await;
    let create =
        |config: Value| app.create_receiver(json!({"name": "h", "driver": "scaleHost", "scaleHostConfig": config}));
    let (status, body) = create(json!({"hostSelector": {"zone": "a"}, "action": "up"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_pool")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("w (pool=w)"), "{body}");
    // Rancher's own tests send a deleteOption with "up": accepted, used on "down" only.
    let (status, body) =
        create(json!({"hostSelector": {"pool": "w"}, "action": "up", "deleteOption": "mostRecent"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        create(json!({"hostSelector": {"pool": "w"}, "action": "down", "deleteOption": "newest"})).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("scaleHostConfig.deleteOption")),
        "{body}"
    );
    let (status, body) = create(json!({"hostSelector": {"pool": "w"}, "action": "up", "min": 3, "max": 2})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = create(json!({"hostSelector": {"pool": "w"}, "action": "down", "onResolved": "min"})).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("scaleHostConfig.onResolved")),
        "issue 18's min is scaleService's: {body}"
    );
    let (status, body) = create(json!({"hostSelector": {"pool": "w"}, "action": "sideways"})).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("scaleHostConfig.action")), "{body}");
}

/// hookd killed mid-creation: the restarted hookd clears the half-made host and makes it
/// again; the pool ends with the hosts asked for, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_hookd_killed_mid_job_finishes_it_after_a_restart() {
    let dir = HostsDir::new();
    // The late child finishes a host 8 s after its script starts, unless killed: time enough
    // for a restart on a loaded machine, and checked for once those 8 s are past.
    let mut app = app_with_pool(dir.path(), &[("HOSTS_SLOW", "2"), ("HOSTS_LATE", "8")], true).await;
    let up = host_receiver(&app, "up", zone_a("up", 2, json!({}))).await;
    let (status, answer) = app.trigger(&up).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job_url = answer["jobUrl"].as_str().unwrap().to_owned();
    let path = job_url.strip_prefix(&app.base).unwrap().to_owned();
    let second_started =
        eventually(Duration::from_secs(30), async || app.get(&path).await.1["hosts"]["steps"][1]["state"] == "running")
            .await;
    assert!(second_started);
    let late_deadline = std::time::Instant::now() + Duration::from_secs(9);
    app.kill9();
    app.start_again().await;
    let job = finished(&app, &format!("{}{path}", app.base)).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(pool_hosts(&app).await, [("w-1".to_owned(), true), ("w-2".to_owned(), true)]);
    let records = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"));
    assert_eq!(records.count(), 2, "no host made twice");
    // The interrupted script's child was killed on resume: it never finishes a host late.
    tokio::time::sleep_until(late_deadline.into()).await;
    let late = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "late"));
    assert_eq!(late.count(), 0, "a leftover of the killed script finished a host");
}

/// A host receiver takes Alertmanager notifications too: its snippet routes alerts labelled
/// with its pool, and Alertmanager's own checker accepts it.
#[tokio::test]
#[ignore = "needs amtool (Alertmanager): ./scripts/test.sh installs it"]
async fn issue_17_a_host_receiver_s_alertmanager_snippet_routes_its_pool() {
    crate::components::require("amtool");
    let dir = HostsDir::new();
    let app = app_with_pool(dir.path(), &[], false).await;
    let (status, r) = app
        .create_receiver(json!({"name": "w-up", "driver": "scaleHost", "scaleHostConfig": zone_a("up", 1, json!({}))}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let path = format!("/v1-webhooks/receivers/{}/alertmanager-config", r["id"].as_str().unwrap());
    let response = app.http.get(format!("{}{path}", app.base)).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let snippet = response.text().await.unwrap();
    assert!(snippet.contains(r#"- action="up""#) && snippet.contains(r#"- pool="w""#), "{snippet}");
    let file = dir.path().join("alertmanager.yml");
    std::fs::write(&file, &snippet).unwrap();
    let output = tokio::process::Command::new("amtool").arg("check-config").arg(&file).output().await.unwrap();
    assert!(output.status.success(), "amtool refused:\n{}\n{snippet}", String::from_utf8_lossy(&output.stdout));
}
