//! Host pools: groups of machines (or Swarm nodes) that a `scaleHost` receiver grows and
//! shrinks, each through a provider.
//!
//! A provider only lists, creates and deletes hosts; deciding which and how many is the
//! driver's (`domain/host.rs`). A cloud API (an AWS Auto Scaling group's desired capacity,
//! say) fits the same seam: list the group's instances, create by raising the desired
//! capacity and waiting for the instance, delete by terminating it in the group.

pub mod command;
pub mod swarm;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;

use crate::{
    config::{HostPoolConfig, HostProviderKind},
    domain::{host::HostInfo, ProjectName},
};

tokio::task_local! {
    /// The host job a provider call runs for: scripts get it as `HOOKD_JOB`, so what is left
    /// of them after a crash is found by it (and by no other hookd's).
    pub static JOB: String;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    /// The provider ran and said no (a script's exit status, the engine's refusal).
    #[error("{0}")]
    Failed(String),
    /// The provider could not be reached; a retry may succeed.
    #[error("host provider unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait HostProvider: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    /// Every host the provider knows; the pool keeps those its selector picks.
    async fn list(&self) -> Result<Vec<HostInfo>, HostError>;
    /// Creates a host named `name` carrying `labels`, and returns once it is up.
    async fn create(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<(), HostError>;
    /// Removes the host named `name` (its work moved away first, where the provider can),
    /// and returns once it is gone. A host already gone is no error.
    async fn delete(&self, name: &str) -> Result<(), HostError>;
}

/// A configured pool and its provider.
pub struct Pool {
    pub name: String,
    pub project: ProjectName,
    pub selector: BTreeMap<String, String>,
    pub min: u32,
    pub max: u32,
    pub provider: Arc<dyn HostProvider>,
    /// The last listing shown to people, and when: pages polling the pool share it.
    pub shown: tokio::sync::Mutex<Option<Shown>>,
}

/// A listing shown to people, and when it was made.
pub type Shown = (tokio::time::Instant, Result<Vec<HostInfo>, HostError>);

/// How long a listing shown to people is reused: listing may call a cloud API.
const SHOWN_FOR: Duration = Duration::from_secs(5);

impl Pool {
    /// The pool's hosts: those the provider lists that carry its selector.
    pub async fn hosts(&self) -> Result<Vec<HostInfo>, HostError> {
        Ok(self.listing().await?.0)
    }

    /// The pool's hosts for people to see (`GET /pools`): one listing at a time, reused for
    /// a few seconds, so pages polling many times a second run the provider once.
    pub async fn shown_hosts(&self) -> Result<Vec<HostInfo>, HostError> {
        let mut shown = self.shown.lock().await;
        if let Some((_, hosts)) = shown.as_ref().filter(|(at, _)| at.elapsed() < SHOWN_FOR) {
            return hosts.clone();
        }
        let hosts = self.hosts().await;
        *shown = Some((tokio::time::Instant::now(), hosts.clone()));
        hosts
    }

    /// Kills what is left of scripts that ran for host `name` in `job` (a hookd killed
    /// mid-script leaves the script's children running: a `terraform apply` that would
    /// finish the host after its resumed job made it again). Their environment names the
    /// job and the host. Returns how many were killed.
    pub fn kill_leftovers(&self, job: &str, name: &str) -> usize {
        let wanted = [format!("HOOKD_JOB={job}"), format!("HOOKD_HOST_NAME={name}")];
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
            let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
            if wanted.iter().all(|w| vars.contains(&w.as_bytes())) && pid != std::process::id() as i32 {
                let pid = nix::unistd::Pid::from_raw(pid);
                if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
        }
        killed
    }

    /// The pool's hosts, and the name of every host the provider knows (in the pool or not:
    /// new names avoid them all). A host whose name hookd cannot use is left out, with a warning.
    pub async fn listing(&self) -> Result<(Vec<HostInfo>, BTreeSet<String>), HostError> {
        let all = self.provider.list().await?;
        let taken = all.iter().map(|h| h.name.clone()).collect();
        let mut hosts: Vec<HostInfo> = all
            .into_iter()
            .filter(|h| crate::domain::host::selects(&self.selector, &h.labels))
            .filter(|h| {
                let usable = crate::domain::ServiceId::parse(&h.name).is_ok();
                if !usable {
                    tracing::warn!(pool = %self.name, host = ?h.name, "a listed host has a name hookd cannot use; left out");
                }
                usable
            })
            .collect();
        hosts.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        Ok((hosts, taken))
    }
}

/// Every configured pool.
#[derive(Default)]
pub struct Pools {
    all: Vec<Arc<Pool>>,
}

impl Pools {
    pub fn start(configs: &[HostPoolConfig]) -> anyhow::Result<Self> {
        let mut all = Vec::new();
        for c in configs {
            let timeout = Duration::from_secs(c.timeout_seconds);
            let provider: Arc<dyn HostProvider> = match c.provider {
                HostProviderKind::Command => Arc::new(command::CommandProvider::new(
                    &c.name,
                    c.list.clone(),
                    c.create.clone(),
                    c.delete.clone(),
                    timeout,
                )),
                HostProviderKind::Swarm => Arc::new(swarm::SwarmProvider::new(
                    &c.name,
                    &c.selector,
                    c.endpoint.as_deref(),
                    c.create.clone(),
                    c.delete.clone(),
                    timeout,
                )?),
            };
            all.push(Arc::new(Pool {
                name: c.name.clone(),
                project: ProjectName::parse(&c.project)?,
                selector: c.selector.clone(),
                min: c.min,
                max: c.max,
                provider,
                shown: Default::default(),
            }));
        }
        Ok(Self { all })
    }

    /// The pool of `project` whose selector a receiver's `hostSelector` includes: a
    /// receiver acts within one pool.
    pub fn for_selector(&self, project: &ProjectName, selector: &BTreeMap<String, String>) -> Vec<Arc<Pool>> {
        self.all
            .iter()
            .filter(|p| &p.project == project && crate::domain::host::selects(&p.selector, selector))
            .cloned()
            .collect()
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Pool>> {
        self.all.iter().find(|p| p.name == name)
    }

    pub fn of_project(&self, project: &ProjectName) -> Vec<Arc<Pool>> {
        self.all.iter().filter(|p| &p.project == project).cloned().collect()
    }
}
