//! `hookd demo`: a ready-to-try hookd with a sample service and two receivers.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::serve::{init_logging, shutdown_signal};
use crate::{
    auth::generate_token,
    config::{BackendConfig, BackendKind, Config, LocalServiceConfig, LogFormat},
    server::App,
};

#[derive(Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, env = "HOOKD_LISTEN", default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// Data directory (a fresh temporary one by default, removed at exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn demo_config(args: &DemoArgs, data_dir: PathBuf) -> anyhow::Result<Config> {
    let worker = std::env::current_exe().context("locating the hookd binary for the sample service")?;
    let mut config = Config {
        listen: args.listen,
        data_dir,
        log_format: LogFormat::Text,
        backends: vec![BackendConfig {
            name: "local".into(),
            kind: BackendKind::Local,
            endpoint: None,
            stop_grace_seconds: 5,
            cgroups: true,
            keeper_binary: None,
            services: vec![LocalServiceConfig {
                name: "web".into(),
                command: worker.display().to_string(),
                args: vec!["sample-worker".into()],
                env: Default::default(),
                labels: [("app".to_owned(), "web".to_owned())].into(),
                image: "example/web:1.0".into(),
                scale: 1,
                workdir: None,
            }],
            ..BackendConfig::new("local", BackendKind::Local)
        }],
        ..Config::default()
    };
    config.admin_token = Some(generate_token());
    config.finish()?;
    Ok(config)
}

async fn create(http: &reqwest::Client, base: &str, token: &str, body: Value) -> anyhow::Result<Value> {
    let response = http.post(format!("{base}/v1-webhooks/receivers")).bearer_auth(token).json(&body).send().await?;
    let status = response.status();
    let value: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "creating a demo receiver failed: {value}");
    Ok(value)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // A temporary data directory goes when the demo ends, however it ends short of a kill;
    // what a killed demo left behind, the next demo removes.
    let temporary = match &args.data_dir {
        Some(_) => None,
        None => {
            remove_abandoned_demo_dirs();
            Some(TemporaryDir(std::env::temp_dir().join(format!("{DEMO_DIR_PREFIX}{}", std::process::id()))))
        }
    };
    let data_dir =
        args.data_dir.clone().unwrap_or_else(|| temporary.as_ref().expect("set when no --data-dir").0.clone());
    let config = demo_config(&args, data_dir.clone())?;
    let token = config.admin_token.clone().expect("set above");
    init_logging(LogFormat::Text);
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let app = App::build(config, listener).await?;
    let addr = app.local_addr();
    let server = tokio::spawn(app.run(shutdown_signal()));

    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let up = json!({"name": "web-up", "driver": "scaleService",
        "scaleServiceConfig": {"serviceId": "web", "action": "up", "amount": 1, "min": 1, "max": 5}});
    let down = json!({"name": "web-down", "driver": "scaleService",
        "scaleServiceConfig": {"serviceId": "web", "action": "down", "amount": 1, "min": 1, "max": 5}});
    let up = create(&http, &base, token.expose(), up).await?;
    let down = create(&http, &base, token.expose(), down).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = |r: &Value| r["url"].as_str().unwrap_or_default().to_owned();
    println!(
        r#"
hookd demo is running at {base}
  data directory: {dir}
  sample service: "web" on the local backend (1 process of `hookd sample-worker`)

Admin API token (this demo's only copy):
  export HOOKD_URL={base} HOOKD_TOKEN={token}

Web UI: open {base}/ui/ and sign in with that token.

Receivers "web-up" and "web-down" scale "web" by 1 between 1 and 5. Their trigger URLs:
  up:   {up}
  down: {down}

Try it:
  curl -X POST '{up}'
  {hookd} services                        # the scale, and the processes running
  {hookd} receivers list
  {hookd} executions {up_id}
  curl -s {base}/metrics | grep hookd_service_desired_scale

Stop with Ctrl-C; the sample processes stop with hookd.
"#,
        dir = data_dir.display(),
        token = token.expose(),
        up = url(&up),
        down = url(&down),
        up_id = up["id"].as_str().unwrap_or_default(),
        hookd = hookd_command(),
    );
    let result = server.await?;
    drop(temporary);
    result
}

const DEMO_DIR_PREFIX: &str = "hookd-demo-";

/// Removed on drop.
struct TemporaryDir(PathBuf);

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the temporary data directories of demos whose process is gone.
fn remove_abandoned_demo_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(DEMO_DIR_PREFIX)).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// How to run this binary from the user's shell: `hookd` when it is on PATH, its path otherwise.
fn hookd_command() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let on_path =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("hookd") == exe));
    if on_path {
        "hookd".to_owned()
    } else {
        exe.display().to_string()
    }
}

/// The demo's sample service: reports for duty, then idles until stopped.
pub async fn sample_worker() -> anyhow::Result<()> {
    let service = std::env::var("HOOKD_SERVICE").unwrap_or_default();
    let replica = std::env::var("HOOKD_REPLICA").unwrap_or_default();
    let image = std::env::var("HOOKD_IMAGE").unwrap_or_default();
    eprintln!("sample worker: {service} replica {replica} running image {image}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    eprintln!("sample worker: {service} replica {replica} stopping");
    Ok(())
}
