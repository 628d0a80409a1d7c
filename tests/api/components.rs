//! Real Prometheus and Alertmanager, started on loopback ports with temporary directories.
//!
//! Tests that use them are `#[ignore]`d with the reason: a bare `cargo test` lists them as
//! ignored; `scripts/test.sh` installs the components and runs them with `--include-ignored`.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::process::{Child, Command};

use crate::helpers::eventually;

/// Panics, saying how to get it, when `binary` is not installed. Tests that need a real
/// component are `#[ignore]`d with the reason; `./scripts/test.sh` installs the components
/// and runs them (`--include-ignored`), so in CI a missing one fails instead of skipping.
pub fn require(binary: &str) {
    let found =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()));
    assert!(found, "{binary} is not installed; ./scripts/test.sh installs it");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A daemon that dies with the test.
pub struct Daemon {
    pub base: String,
    _child: Child,
}

async fn start(command: &str, args: &[String], base: String, log: &Path) -> Daemon {
    let child = Command::new(command)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command}: {e}"));
    let http = reqwest::Client::new();
    let ready_url = format!("{base}/-/ready");
    let ready = eventually(Duration::from_secs(30), || async {
        http.get(&ready_url).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "{command} did not become ready; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
    Daemon { base, _child: child }
}

pub async fn alertmanager(dir: &Path, config: &str) -> Daemon {
    let port = free_port();
    std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
    let args = [
        format!("--config.file={}", dir.join("alertmanager.yml").display()),
        format!("--storage.path={}", dir.join("am-data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".to_owned(),
    ];
    start("prometheus-alertmanager", &args, format!("http://127.0.0.1:{port}"), &dir.join("alertmanager.log")).await
}

pub async fn prometheus(dir: &Path, config: &str, rules: &str) -> Daemon {
    let port = free_port();
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        config.replace("RULES_FILE", &dir.join("rules.yml").display().to_string()),
    )
    .unwrap();
    let args = [
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    start("prometheus", &args, format!("http://127.0.0.1:{port}"), &dir.join("prometheus.log")).await
}
