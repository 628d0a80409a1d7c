//! `spawn_app`: the real hookd on 127.0.0.1:0 with its own data directory, driven over HTTP.

use std::{path::Path, time::Duration};

use hookd::{
    auth::generate_token,
    config::{BackendConfig, BackendKind, Config, HostProviderKind, LocalServiceConfig, Secret},
    server::App,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub struct TestApp {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    /// Every process this app's local services start carries this in its environment.
    pub marker: String,
    pub config: Config,
    _data_dir: Option<tempfile::TempDir>,
    server: Option<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
    /// Set for an app that runs as its own `hookd serve` process (so a test can kill -9 it).
    process: Option<std::process::Child>,
    external: bool,
}

/// A local service running `sleep`, tagged with `marker` so tests can count its processes.
pub fn sleep_service(name: &str, scale: u32, marker: &str) -> LocalServiceConfig {
    LocalServiceConfig {
        name: name.into(),
        command: "sleep".into(),
        args: vec!["100000".into()],
        env: [("HOOKD_TEST_MARKER".to_owned(), format!("{marker}/{name}"))].into(),
        labels: [("app".to_owned(), name.to_owned())].into(),
        image: format!("example/{name}:1.0"),
        scale,
        workdir: None,
    }
}

/// The hookd binary: in tests, the server runs inside the test binary, so keepers need a path.
pub fn keeper_binary() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_hookd").into()
}

pub fn test_config(data_dir: &Path, marker: &str) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        backends: vec![BackendConfig {
            name: "local".into(),
            kind: BackendKind::Local,
            endpoint: None,
            stop_grace_seconds: 2,
            cgroups: true,
            keeper_binary: Some(keeper_binary()),
            services: vec![sleep_service("web", 1, marker), sleep_service("api", 1, marker)],
            ..BackendConfig::new("", BackendKind::Local)
        }],
        ..Config::default()
    };
    config.admin_token = Some(generate_token());
    config.finish().expect("the test config is valid");
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    spawn(false, tempfile::tempdir().expect("a temporary directory"), customize).await
}

/// hookd as its own process, `hookd serve` on a config file written from the test config.
pub async fn spawn_process_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    spawn(true, tempfile::tempdir().expect("a temporary directory"), customize).await
}

/// Like [`spawn_process_with`], with the data directory in `dir` (a small tmpfs, say).
pub async fn spawn_process_in(dir: tempfile::TempDir, customize: impl FnOnce(&mut Config)) -> TestApp {
    spawn(true, dir, customize).await
}

async fn spawn(external: bool, data_dir: tempfile::TempDir, customize: impl FnOnce(&mut Config)) -> TestApp {
    let marker = uuid::Uuid::now_v7().simple().to_string();
    let mut config = test_config(&data_dir.path().join("data"), &marker);
    if crate::pg::suite_on_postgres() {
        config.database_url = Some(Secret::new(crate::pg::fresh_database().await));
    }
    customize(&mut config);
    config.finish().expect("the customized config is valid");
    let mut app = TestApp {
        base: String::new(),
        token: config.admin_token.as_ref().expect("set").expose().to_owned(),
        http: reqwest::Client::new(),
        marker,
        config,
        _data_dir: Some(data_dir),
        server: None,
        process: None,
        external,
    };
    app.start().await;
    app
}

/// The test config as TOML, for a hookd process (the fields tests set).
fn config_toml(config: &Config) -> String {
    let quote = |s: &str| serde_json::to_string(s).expect("a string");
    let mut toml = format!(
        "listen = \"{}\"\ndata_dir = {}\n[retention]\nmax_age_days = {}\nper_receiver = {}\ntotal = {}\n",
        config.listen,
        quote(&config.data_dir.display().to_string()),
        config.retention.max_age_days,
        config.retention.per_receiver,
        config.retention.total,
    );
    if let Some(url) = &config.database_url {
        toml = format!("database_url = {}\n{toml}", quote(url.expose()));
    }
    if let Some(key) = &config.sealing_key_file {
        toml = format!("sealing_key_file = {}\n{toml}", quote(&key.display().to_string()));
    }
    for p in &config.host_pools {
        let argv = |v: &[String]| v.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", ");
        let selector: Vec<String> = p.selector.iter().map(|(k, v)| format!("{} = {}", quote(k), quote(v))).collect();
        toml += &format!(
            "[[host_pool]]\nname = {}\nproject = {}\nselector = {{ {} }}\nmin = {}\nmax = {}\nprovider = \"{}\"\n\
             list = [{}]\ncreate = [{}]\ndelete = [{}]\ntimeout_seconds = {}\n",
            quote(&p.name),
            quote(&p.project),
            selector.join(", "),
            p.min,
            p.max,
            match p.provider {
                HostProviderKind::Command => "command",
                HostProviderKind::Swarm => "swarm",
            },
            argv(&p.list),
            argv(&p.create),
            argv(&p.delete),
            p.timeout_seconds,
        );
        if let Some(endpoint) = &p.endpoint {
            toml += &format!("endpoint = {}\n", quote(endpoint));
        }
    }
    for b in &config.backends {
        let kind = b.kind.as_str();
        toml += &format!(
            "[[backend]]\nname = {}\nkind = \"{kind}\"\nstop_grace_seconds = {}\ncgroups = {}\n",
            quote(&b.name),
            b.stop_grace_seconds,
            b.cgroups
        );
        if let Some(endpoint) = &b.endpoint {
            toml += &format!("endpoint = {}\n", quote(endpoint));
        }
        if let Some(kubeconfig) = &b.kubeconfig {
            toml += &format!("kubeconfig = {}\n", quote(&kubeconfig.display().to_string()));
        }
        if let Some(namespace) = &b.namespace {
            toml += &format!("namespace = {}\n", quote(namespace));
        }
        for s in &b.services {
            let args: Vec<String> = s.args.iter().map(|a| quote(a)).collect();
            let env: Vec<String> = s.env.iter().map(|(k, v)| format!("{} = {}", quote(k), quote(v))).collect();
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{} = {}", quote(k), quote(v))).collect();
            toml += &format!(
                "[[backend.service]]\nname = {}\ncommand = {}\nargs = [{}]\nenv = {{ {} }}\nlabels = {{ {} }}\nscale = {}\nimage = {}\n",
                quote(&s.name),
                quote(&s.command),
                args.join(", "),
                env.join(", "),
                labels.join(", "),
                s.scale,
                quote(&s.image),
            );
        }
    }
    toml
}

impl TestApp {
    async fn start(&mut self) {
        if self.external {
            return self.start_process().await;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let app = App::build(self.config.clone(), listener).await.expect("hookd builds");
        self.base = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        self.server = Some((stop, handle));
    }

    async fn start_process(&mut self) {
        self.config.listen = format!("127.0.0.1:{}", crate::components::free_port()).parse().expect("an address");
        let file = self.work_dir().join("hookd.toml");
        std::fs::write(&file, config_toml(&self.config)).expect("the config file");
        let log = std::fs::File::create(self.work_dir().join("hookd.log")).expect("a log file");
        let child = std::process::Command::new(keeper_binary())
            .args(["serve", "--config"])
            .arg(&file)
            .env("HOOKD_ADMIN_TOKEN", &self.token)
            .env("HOOKD_LOG", "info,hookd=debug,tower_http=debug") // debug: the secrets test reads it all
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("hookd starts");
        self.base = format!("http://{}", self.config.listen);
        self.process = Some(child);
        let url = format!("{}/healthz", self.base);
        let up = eventually(Duration::from_secs(20), || async { self.http.get(&url).send().await.is_ok() }).await;
        assert!(up, "hookd did not start; its log: {}", self.log());
    }

    /// The test's own directory: the data directory (`data/`), a process's config and log.
    pub fn work_dir(&self) -> &Path {
        self.config.data_dir.parent().expect("the data directory is in the test's directory")
    }

    /// What a hookd process wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work_dir().join("hookd.log")).unwrap_or_default()
    }

    /// SIGKILL to a hookd process: no shutdown of any kind.
    pub fn kill9(&mut self) {
        let mut child = self.process.take().expect("a hookd process");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("a hookd process").id()
    }

    /// Starts hookd again on the same data (after a `stop` or a `kill9`).
    pub async fn start_again(&mut self) {
        self.start().await;
    }

    /// Stops hookd gracefully (its processes too) and starts it again on the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub async fn stop(&mut self) {
        if let Some((stop, handle)) = self.server.take() {
            let _ = stop.send(());
            handle.await.expect("server task").expect("server ran cleanly");
        }
        if let Some(mut child) = self.process.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let status = child.wait().expect("hookd exits");
            assert!(status.success(), "hookd stopped with {status}; its log: {}", self.log());
        }
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, None).await
    }

    pub async fn create_receiver(&self, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, "/v1-webhooks/receivers", Some(body)).await
    }

    /// Creates a scaleService receiver and returns its resource, asserting success.
    pub async fn scale_receiver(
        &self,
        name: &str,
        service: &str,
        action: &str,
        amount: u32,
        min: u32,
        max: u32,
    ) -> Value {
        let (status, body) = self
            .create_receiver(json!({"name": name, "driver": "scaleService",
                "scaleServiceConfig": {"serviceId": service, "action": action, "amount": amount, "min": min, "max": max}}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn trigger(&self, url: &str) -> (StatusCode, Value) {
        read(self.http.post(url).send().await.expect("trigger sent")).await
    }

    /// POSTs `body` to a trigger URL as Alertmanager does.
    pub async fn notify(&self, url: &str, body: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "Alertmanager/0.25.0")
            .body(body.to_owned())
            .send()
            .await
            .expect("notification sent");
        read(response).await
    }

    /// Creates a scaleService receiver on `web` (1..10 by 1) with extra `options`.
    pub async fn web_receiver(&self, name: &str, action: &str, options: Value) -> Value {
        let mut config = json!({"serviceId": "web", "action": action, "amount": 1, "min": 1, "max": 10});
        config.as_object_mut().expect("an object").extend(options.as_object().expect("an object").clone());
        let (status, body) =
            self.create_receiver(json!({"name": name, "driver": "scaleService", "scaleServiceConfig": config})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn executions(&self, receiver: &Value) -> Vec<Value> {
        let id = receiver["id"].as_str().expect("receiver id");
        let (status, body) = self.get(&format!("/v1-webhooks/receivers/{id}/executions?limit=1000")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].as_array().expect("data").clone()
    }

    pub async fn desired_scale(&self, service: &str) -> u64 {
        let (_, body) = self.get("/v1-webhooks/services").await;
        body["data"].as_array().expect("data").iter().find(|s| s["id"] == service).expect("service listed")["scale"]
            .as_u64()
            .expect("scale")
    }

    /// Live processes of a local service, counted from /proc, not from hookd's own view.
    pub fn live_processes(&self, service: &str) -> usize {
        live_pids_with_env(&format!("HOOKD_TEST_MARKER={}/{service}", self.marker)).len()
    }

    pub fn live_pids(&self, service: &str) -> Vec<i32> {
        live_pids_with_env(&format!("HOOKD_TEST_MARKER={}/{service}", self.marker))
    }

    /// Waits until `service` has exactly `n` live processes.
    pub async fn wait_for_processes(&self, service: &str, n: usize) {
        let ok = eventually(Duration::from_secs(15), || async { self.live_processes(service) == n }).await;
        assert!(ok, "expected {n} live processes of {service}, found {}", self.live_processes(service));
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Processes die with the test's thread (PR_SET_PDEATHSIG); stopping here just speeds that up.
        if let Some((stop, _)) = self.server.take() {
            let _ = stop.send(());
        }
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body read");
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, value)
}

/// Processes (not zombies) whose environment holds `needle` as one entry, keepers aside:
/// a service's own processes.
pub fn live_pids_with_env(needle: &str) -> Vec<i32> {
    all_pids_with_env(needle).into_iter().filter(|pid| !is_keeper(*pid)).collect()
}

/// Every process whose environment holds `needle`, keepers included.
pub fn all_pids_with_env(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|e| e == needle.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

pub fn is_keeper(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == b"keep-replica"))
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, check: impl AsyncFn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
