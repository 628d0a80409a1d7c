//! `[[host_pool]]`: the pools of hosts that `scaleHost` receivers grow and shrink.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

use super::ProjectConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPoolConfig {
    pub name: String,
    /// The project whose receivers may scale this pool.
    #[serde(default = "default_project")]
    pub project: String,
    /// Labels every host of the pool carries, all of them; a receiver's `hostSelector`
    /// includes them, and new hosts get the receiver's.
    pub selector: BTreeMap<String, String>,
    /// Bounds no receiver passes, whatever its own.
    #[serde(default = "default_min")]
    pub min: u32,
    #[serde(default = "default_max")]
    pub max: u32,
    pub provider: HostProviderKind,
    /// `command`: the argv of the script that prints the hosts as JSON.
    #[serde(default)]
    pub list: Vec<String>,
    /// The argv of the script that creates a host (`command`), or a machine that joins the
    /// swarm (`swarm`).
    #[serde(default)]
    pub create: Vec<String>,
    /// The argv of the script that deletes a host (for `swarm`, optional: run once the node
    /// is drained, to stop its machine).
    #[serde(default)]
    pub delete: Vec<String>,
    /// `swarm`: the manager's Docker endpoint (default `$DOCKER_HOST`, then the socket).
    pub endpoint: Option<String>,
    /// Seconds a host may take to be created or deleted.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HostProviderKind {
    Command,
    Swarm,
}

fn default_project() -> String {
    "default".to_owned()
}
fn default_min() -> u32 {
    1
}
fn default_max() -> u32 {
    10
}
fn default_timeout() -> u64 {
    600
}

pub fn validate(pools: &[HostPoolConfig], projects: &[ProjectConfig]) -> anyhow::Result<()> {
    let mut names = std::collections::HashSet::new();
    for pool in pools {
        crate::domain::ProjectName::parse(&pool.name)
            .map_err(|_| anyhow::anyhow!("host pool {:?}: names are 1 to 63 of a-z, 0-9, '-' and '_'", pool.name))?;
        if !names.insert(pool.name.as_str()) {
            bail!("host pool {:?} is declared twice", pool.name);
        }
        if !projects.iter().any(|p| p.name == pool.project) {
            bail!("host pool {:?} names project {:?}, which is not declared", pool.name, pool.project);
        }
        if pool.selector.is_empty() {
            bail!("host pool {:?}: `selector` needs at least one label its hosts carry", pool.name);
        }
        if pool.min > pool.max || pool.max > crate::domain::scale::MAX_SCALE {
            bail!(
                "host pool {:?}: min {} and max {} must satisfy min <= max <= {}",
                pool.name,
                pool.min,
                pool.max,
                crate::domain::scale::MAX_SCALE
            );
        }
        if pool.timeout_seconds == 0 {
            bail!("host pool {:?}: timeout_seconds must be at least 1", pool.name);
        }
        let missing = |what: &str, argv: &[String]| match argv.first().is_some_and(|p| !p.trim().is_empty()) {
            true => Ok(()),
            false => Err(anyhow::anyhow!(
                "host pool {:?}: the {} provider needs `{what}` (a command and its arguments)",
                pool.name,
                provider_name(pool.provider)
            )),
        };
        match pool.provider {
            HostProviderKind::Command => {
                missing("list", &pool.list)?;
                missing("create", &pool.create)?;
                missing("delete", &pool.delete)?;
                if pool.endpoint.is_some() {
                    bail!("host pool {:?}: `endpoint` is for swarm pools", pool.name);
                }
            }
            HostProviderKind::Swarm => {
                missing("create", &pool.create)?;
                // Removing a node that is still up leaves its machine running, unseen.
                missing("delete", &pool.delete)?;
                if !pool.list.is_empty() {
                    bail!(
                        "host pool {:?}: a swarm pool lists the swarm's nodes; `list` is for command pools",
                        pool.name
                    );
                }
            }
        }
    }
    // No host may belong to two pools: a receiver of one would count, or delete, the
    // other's hosts (another project's, even). Two selectors must disagree on some label.
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            let disjoint = a.selector.iter().any(|(k, v)| b.selector.get(k).is_some_and(|w| w != v));
            if !disjoint {
                bail!(
                    "host pools {:?} and {:?} could hold the same hosts: their selectors must give one label \
                     different values (pool = \"{}\" and pool = \"{}\", say)",
                    a.name,
                    b.name,
                    a.name,
                    b.name
                );
            }
        }
    }
    Ok(())
}

pub fn provider_name(kind: HostProviderKind) -> &'static str {
    match kind {
        HostProviderKind::Command => "command",
        HostProviderKind::Swarm => "swarm",
    }
}
