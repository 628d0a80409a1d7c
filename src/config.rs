//! Configuration: embedded defaults, then an optional TOML file, then `HOOKD_*` variables.
//!
//! `config.example.toml` at the repository root documents every key.

mod pools;
pub use pools::{HostPoolConfig, HostProviderKind};

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::domain::ProjectName;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Base of the trigger URLs handed out; when unset, taken from the request's `Host`.
    pub public_url: Option<String>,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...` (a secret: it may hold a password); when unset,
    /// `hookd.db` inside `data_dir`.
    pub database_url: Option<Secret>,
    /// The key that seals sender secrets; when unset, `sealing.key` inside `data_dir`.
    /// Replicas sharing a PostgreSQL database must all point at the same key.
    pub sealing_key_file: Option<PathBuf>,
    /// Ensures this admin API token exists (instead of generating one at first start).
    #[serde(default)]
    pub admin_token: Option<Secret>,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How much execution history is kept.
    #[serde(default)]
    pub retention: Retention,
    /// Connections and timeouts: what a client may hold and for how long.
    #[serde(default)]
    pub limits: Limits,
    /// When set, `/metrics` is served on this address only (not on `listen`).
    pub metrics_listen: Option<SocketAddr>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
    #[serde(default, rename = "project")]
    pub projects: Vec<ProjectConfig>,
    #[serde(default, rename = "host_pool")]
    pub host_pools: Vec<HostPoolConfig>,
}

/// A string that never prints itself.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What one client may hold, and for how long.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open connections at most (fitted under the open-file limit at start).
    pub max_connections: usize,
    /// Time for a request's head (line and headers), from its first byte.
    pub header_timeout_seconds: u64,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout_seconds: u64,
    /// Time for a request's body to arrive.
    pub body_timeout_seconds: u64,
    /// Time to answer a management request (triggers are bounded by the backend's own timeouts).
    pub request_timeout_seconds: u64,
    /// Largest body read before the caller is authenticated (`POST /ui/session`).
    pub unauthenticated_body_bytes: usize,
    /// Failed sign-ins and API token checks per client address and minute; then 429.
    pub failed_auth_per_minute: u32,
    /// Triggers one receiver takes per second (bursts of twice as many); then 429. 0: no limit.
    pub triggers_per_receiver_per_second: u32,
    /// Triggers one client address may send per second (bursts of twice as many); 0: no limit.
    pub triggers_per_address_per_second: u32,
    /// Calls in flight to one backend at most; more wait, then 503.
    pub backend_concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            body_timeout_seconds: 10,
            request_timeout_seconds: 30,
            unauthenticated_body_bytes: 4096,
            failed_auth_per_minute: 20,
            triggers_per_receiver_per_second: 100,
            triggers_per_address_per_second: 0,
            backend_concurrency: 32,
        }
    }
}

/// Limits on the execution history; the oldest executions go first. 0 turns a limit off.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default = "default_max_age_days")]
    pub max_age_days: u32,
    /// Executions kept per receiver.
    #[serde(default = "default_per_receiver")]
    pub per_receiver: u32,
    /// Executions kept in all.
    #[serde(default = "default_total")]
    pub total: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_age_days: default_max_age_days(), per_receiver: default_per_receiver(), total: default_total() }
    }
}

fn default_max_age_days() -> u32 {
    30
}
fn default_per_receiver() -> u32 {
    1000
}
fn default_total() -> u32 {
    200_000
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    pub kind: BackendKind,
    /// For `docker`: `unix:///var/run/docker.sock` or `tcp://host:port`; when unset,
    /// `DOCKER_HOST`, then the default socket.
    pub endpoint: Option<String>,
    /// Seconds a stopped process (or Compose container) gets between SIGTERM and SIGKILL.
    #[serde(default = "default_stop_grace_seconds")]
    pub stop_grace_seconds: u64,
    /// For `local`: give each replica its own cgroup where cgroup v2 is writable, so no
    /// process it starts can escape a stop. Off: process groups and a subreaper only.
    #[serde(default = "default_true")]
    pub cgroups: bool,
    /// For `local`: the hookd binary that runs each replica's keeper; by default this
    /// hookd's own (`/proc/self/exe`, which survives the binary being replaced on upgrade).
    pub keeper_binary: Option<PathBuf>,
    #[serde(default, rename = "service")]
    pub services: Vec<LocalServiceConfig>,
    /// For `kubernetes`: a kubeconfig file; when unset, `KUBECONFIG` or `~/.kube/config`,
    /// then the pod's service account (in a cluster).
    pub kubeconfig: Option<PathBuf>,
    /// For `kubernetes`: the kubeconfig context; when unset, its current context.
    pub context: Option<String>,
    /// For `kubernetes`: the namespace of projects that name none; when unset, the
    /// context's (or the pod's own, in a cluster), else `default`.
    pub namespace: Option<String>,
    /// For `kubernetes`: a project that names no namespace works in the namespace of its
    /// own name (one namespace per team), not in `namespace`.
    #[serde(default)]
    pub namespace_per_project: bool,
}

impl BackendConfig {
    /// A backend with every option at its default.
    pub fn new(name: &str, kind: BackendKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            endpoint: None,
            stop_grace_seconds: default_stop_grace_seconds(),
            cgroups: true,
            keeper_binary: None,
            services: Vec::new(),
            kubeconfig: None,
            context: None,
            namespace: None,
            namespace_per_project: false,
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Local,
    Docker,
    Kubernetes,
}

/// A process group supervised by the `local` backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalServiceConfig {
    pub name: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub image: String,
    /// Initial desired scale; once hookd has changed it, the stored scale wins.
    #[serde(default = "default_scale")]
    pub scale: u32,
    pub workdir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub name: String,
    pub backend: String,
    /// For a `kubernetes` backend: the namespace this project's services are in.
    pub namespace: Option<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8085))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("hookd-data")
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_stop_grace_seconds() -> u64 {
    10
}
fn default_scale() -> u32 {
    1
}

/// Most processes one local service may run, a guard against a runaway config.
pub const MAX_LOCAL_SCALE: u32 = 1000;

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("the empty config is valid")
    }
}

impl Config {
    /// Loads the file named by `path` (or `HOOKD_CONFIG`), applies `HOOKD_*` overrides and validates.
    pub fn load(path: Option<PathBuf>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let path = path.or_else(|| env("HOOKD_CONFIG").map(PathBuf::from));
        let mut config = match &path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
                Self::from_toml(&text).with_context(|| format!("in config file {}", path.display()))?
            }
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.finish()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = env("HOOKD_LISTEN") {
            self.listen =
                v.parse().with_context(|| format!("HOOKD_LISTEN={v:?} is not an address like 0.0.0.0:8085"))?;
        }
        if let Some(v) = env("HOOKD_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = env("HOOKD_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("HOOKD_DATABASE_URL") {
            self.database_url = Some(Secret(v));
        }
        if let Some(v) = env("HOOKD_SEALING_KEY_FILE") {
            self.sealing_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env("HOOKD_ADMIN_TOKEN") {
            self.admin_token = Some(Secret(v));
        }
        if let Some(v) = env("HOOKD_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => bail!("HOOKD_LOG_FORMAT must be \"text\" or \"json\""),
            };
        }
        if let Some(v) = env("HOOKD_MAX_BODY_BYTES") {
            self.max_body_bytes = v.parse().context("HOOKD_MAX_BODY_BYTES must be a number of bytes")?;
        }
        if let Some(v) = env("HOOKD_METRICS_LISTEN") {
            self.metrics_listen =
                Some(v.parse().with_context(|| format!("HOOKD_METRICS_LISTEN={v:?} is not an address"))?);
        }
        let limits = [
            ("HOOKD_MAX_CONNECTIONS", &mut self.limits.max_connections as &mut dyn SetFromEnv),
            ("HOOKD_HEADER_TIMEOUT_SECONDS", &mut self.limits.header_timeout_seconds),
            ("HOOKD_IDLE_TIMEOUT_SECONDS", &mut self.limits.idle_timeout_seconds),
            ("HOOKD_BODY_TIMEOUT_SECONDS", &mut self.limits.body_timeout_seconds),
            ("HOOKD_REQUEST_TIMEOUT_SECONDS", &mut self.limits.request_timeout_seconds),
            ("HOOKD_UNAUTHENTICATED_BODY_BYTES", &mut self.limits.unauthenticated_body_bytes),
            ("HOOKD_FAILED_AUTH_PER_MINUTE", &mut self.limits.failed_auth_per_minute),
            ("HOOKD_TRIGGERS_PER_RECEIVER_PER_SECOND", &mut self.limits.triggers_per_receiver_per_second),
            ("HOOKD_TRIGGERS_PER_ADDRESS_PER_SECOND", &mut self.limits.triggers_per_address_per_second),
            ("HOOKD_BACKEND_CONCURRENCY", &mut self.limits.backend_concurrency),
        ];
        for (name, field) in limits {
            if let Some(v) = env(name) {
                field.set(&v).with_context(|| format!("{name} must be a whole number"))?;
            }
        }
        let retention = [
            ("HOOKD_RETENTION_MAX_AGE_DAYS", &mut self.retention.max_age_days),
            ("HOOKD_RETENTION_PER_RECEIVER", &mut self.retention.per_receiver),
            ("HOOKD_RETENTION_TOTAL", &mut self.retention.total),
        ];
        for (name, field) in retention {
            if let Some(v) = env(name) {
                field.set(&v).with_context(|| format!("{name} must be a whole number (0 turns the limit off)"))?;
            }
        }
        Ok(())
    }

    /// Fills in the embedded defaults and checks cross-references, failing fast at start.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        if self.backends.is_empty() {
            self.backends.push(BackendConfig::new("local", BackendKind::Local));
        }
        if self.projects.is_empty() {
            self.projects.push(ProjectConfig {
                name: "default".into(),
                backend: self.backends[0].name.clone(),
                namespace: None,
            });
        }
        if let Some(url) = &mut self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("public_url must start with http:// or https://, got {url:?}");
            }
            while url.ends_with('/') {
                url.pop();
            }
        }
        if let Some(token) = &self.admin_token {
            if token.expose().len() < 16 {
                bail!("the admin token must be at least 16 characters long");
            }
        }
        let mut backend_names = std::collections::HashSet::new();
        for backend in &self.backends {
            if !backend_names.insert(backend.name.as_str()) {
                bail!("backend {:?} is declared twice", backend.name);
            }
            match backend.kind {
                BackendKind::Local if backend.endpoint.is_some() => {
                    bail!("backend {:?}: `endpoint` is for docker backends; local services are declared with [[backend.service]]", backend.name)
                }
                BackendKind::Docker | BackendKind::Kubernetes if !backend.services.is_empty() => {
                    bail!("backend {:?}: a {} backend finds its services itself; [[backend.service]] is for local backends", backend.name, backend.kind.as_str())
                }
                BackendKind::Kubernetes if backend.endpoint.is_some() => {
                    bail!("backend {:?}: a kubernetes backend finds its API server in `kubeconfig` (or in the cluster), not in `endpoint`", backend.name)
                }
                _ => {}
            }
            let kube_options = backend.kubeconfig.is_some()
                || backend.context.is_some()
                || backend.namespace.is_some()
                || backend.namespace_per_project;
            if backend.kind != BackendKind::Kubernetes && kube_options {
                bail!("backend {:?}: `kubeconfig`, `context`, `namespace` and `namespace_per_project` are for kubernetes backends", backend.name);
            }
            if let Some(namespace) = &backend.namespace {
                check_namespace(namespace).with_context(|| format!("backend {:?}", backend.name))?;
            }
            let mut service_names = std::collections::HashSet::new();
            for service in &backend.services {
                crate::domain::ServiceId::parse(&service.name)
                    .with_context(|| format!("backend {:?}", backend.name))?;
                if !service_names.insert(service.name.as_str()) {
                    bail!("service {:?} is declared twice in backend {:?}", service.name, backend.name);
                }
                if service.command.trim().is_empty() {
                    bail!("service {:?} has an empty command", service.name);
                }
                if service.scale > MAX_LOCAL_SCALE {
                    bail!("service {:?}: scale must be at most {MAX_LOCAL_SCALE}", service.name);
                }
            }
        }
        pools::validate(&self.host_pools, &self.projects)?;
        let mut project_names = std::collections::HashSet::new();
        for project in &self.projects {
            ProjectName::parse(&project.name).with_context(|| format!("project {:?}", project.name))?;
            if !project_names.insert(project.name.as_str()) {
                bail!("project {:?} is declared twice", project.name);
            }
            let Some(backend) = self.backends.iter().find(|b| b.name == project.backend) else {
                bail!("project {:?} names backend {:?}, which is not declared", project.name, project.backend);
            };
            if let Some(namespace) = &project.namespace {
                if backend.kind != BackendKind::Kubernetes {
                    bail!("project {:?}: `namespace` is for projects on a kubernetes backend", project.name);
                }
                check_namespace(namespace).with_context(|| format!("project {:?}", project.name))?;
            }
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("hookd.db").display()),
        }
    }

    pub fn sealing_key_file(&self) -> PathBuf {
        self.sealing_key_file.clone().unwrap_or_else(|| self.data_dir.join("sealing.key"))
    }
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Docker => "docker",
            BackendKind::Kubernetes => "kubernetes",
        }
    }
}

/// A Kubernetes namespace name: a DNS-1123 label.
pub fn check_namespace(namespace: &str) -> anyhow::Result<()> {
    let bytes = namespace.as_bytes();
    let ok = (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if !ok {
        bail!("{namespace:?} is not a Kubernetes namespace name (1 to 63 of a-z, 0-9 and '-', starting and ending with a letter or digit)");
    }
    Ok(())
}

/// A numeric setting an environment variable can set.
trait SetFromEnv {
    fn set(&mut self, value: &str) -> Result<(), std::num::ParseIntError>;
}

macro_rules! set_from_env {
    ($($t:ty),*) => {$(
        impl SetFromEnv for $t {
            fn set(&mut self, value: &str) -> Result<(), std::num::ParseIntError> {
                *self = value.parse()?;
                Ok(())
            }
        }
    )*};
}
set_from_env!(u32, u64, usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn embedded_defaults() {
        let config = Config::load(None, no_env).unwrap();
        assert_eq!(config.listen.port(), 8085);
        assert_eq!(config.data_dir, PathBuf::from("hookd-data"));
        assert_eq!(config.projects[0].name, "default");
        assert_eq!(config.projects[0].backend, "local");
        assert_eq!(config.database_url(), "sqlite://hookd-data/hookd.db");
    }

    #[test]
    fn the_issue_example_parses() {
        let mut config = Config::from_toml(include_str!("../config.example.toml")).unwrap();
        config.finish().unwrap();
        assert_eq!(config.backends[0].services[0].name, "worker");
    }

    #[test]
    fn env_overrides_the_file() {
        let env = |k: &str| match k {
            "HOOKD_LISTEN" => Some("127.0.0.1:9999".to_owned()),
            "HOOKD_PUBLIC_URL" => Some("https://hooks.example.com/".to_owned()),
            _ => None,
        };
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.public_url.as_deref(), Some("https://hooks.example.com"));
    }

    #[test]
    fn bad_references_fail_fast() {
        let mut config = Config::from_toml("[[project]]\nname = \"a\"\nbackend = \"nope\"\n").unwrap();
        assert!(config.finish().unwrap_err().to_string().contains("not declared"));
        assert!(Config::from_toml("listen = 5").is_err());
        assert!(Config::from_toml("unknown_key = 1").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2-hunter2-x")), "Secret(<redacted>)");
    }
}
