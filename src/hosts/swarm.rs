//! The `swarm` host provider: the pool is the swarm's worker nodes that carry its labels.
//!
//! - **Up**: hookd runs the pool's `create` script with the swarm's worker join token and a
//!   manager's address (`HOOKD_SWARM_JOIN_TOKEN`, `HOOKD_SWARM_MANAGER`, `HOOKD_HOST_NAME`).
//!   The script starts a machine that joins and prints the new node's ID (the last line that
//!   is one; when it prints none, the node whose hostname is the host's name). hookd names the
//!   node and sets its labels, so it joins the pool, then waits until it is ready.
//! - **Down**: hookd drains the node, waits until every task there has stopped, runs the
//!   `delete` script (it stops the machine), waits for the node to be down, and removes it.
//!
//! Managers are never part of a pool.

use std::{collections::BTreeMap, collections::HashMap, time::Duration};

use async_trait::async_trait;
use bollard::{
    models::{Node, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState},
    query_parameters::{DeleteNodeOptions, ListTasksOptions, UpdateNodeOptions},
    Docker,
};

use super::{command::Script, HostError, HostProvider};
use crate::domain::host::HostInfo;

const POLL: Duration = Duration::from_millis(500);

pub struct SwarmProvider {
    docker: Docker,
    /// The pool's labels: hookd removes no node without them.
    selector: BTreeMap<String, String>,
    endpoint: String,
    script: Script,
    create: Vec<String>,
    delete: Vec<String>,
}

impl SwarmProvider {
    pub fn new(
        pool: &str,
        selector: &BTreeMap<String, String>,
        endpoint: Option<&str>,
        create: Vec<String>,
        delete: Vec<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = endpoint
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let docker = crate::backend::docker::connect(&endpoint)?;
        let script = Script { pool: pool.to_owned(), timeout };
        Ok(Self { docker, selector: selector.clone(), endpoint, script, create, delete })
    }

    fn error(&self, e: bollard::errors::Error) -> HostError {
        match e {
            bollard::errors::Error::DockerResponseServerError { status_code, message } if status_code < 500 => {
                HostError::Failed(format!("the swarm manager refused ({status_code}): {}", message.trim()))
            }
            other => HostError::Unavailable(format!("the swarm manager at {}: {other}", self.endpoint)),
        }
    }

    async fn all_nodes(&self) -> Result<Vec<Node>, HostError> {
        self.docker.list_nodes(None).await.map_err(|e| self.error(e))
    }

    async fn workers(&self) -> Result<Vec<Node>, HostError> {
        let nodes = self.all_nodes().await?;
        Ok(nodes.into_iter().filter(|n| role(n) != Some(NodeSpecRoleEnum::MANAGER)).collect())
    }

    /// The pool's node named `name`: a node without the pool's labels is never touched.
    async fn find(&self, name: &str) -> Result<Option<Node>, HostError> {
        let in_pool = |n: &Node| {
            let labels: BTreeMap<String, String> =
                n.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default().into_iter().collect();
            crate::domain::host::selects(&self.selector, &labels)
        };
        Ok(self.workers().await?.into_iter().find(|n| node_name(n) == name && in_pool(n)))
    }

    /// Waits until `check` holds for the node `id`, up to the pool's timeout.
    async fn wait_for(&self, id: &str, what: &str, check: impl Fn(&Node) -> bool) -> Result<Node, HostError> {
        let deadline = tokio::time::Instant::now() + self.script.timeout;
        loop {
            match self.docker.inspect_node(id).await {
                Ok(node) if check(&node) => return Ok(node),
                Ok(_) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => return Err(self.error(e)),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(HostError::Failed(format!(
                    "node {id} was not {what} within {} s",
                    self.script.timeout.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Changes a node's spec at the version just read; a node changing under us (one that
    /// just joined settles for a moment) is read again, a few times.
    async fn update(&self, node: &Node, change: impl Fn(&mut bollard::models::NodeSpec)) -> Result<(), HostError> {
        let id = node.id.clone().unwrap_or_default();
        let mut node = node.clone();
        for attempt in 1.. {
            let mut spec = node.spec.clone().unwrap_or_default();
            change(&mut spec);
            let version = node.version.as_ref().and_then(|v| v.index).unwrap_or(0) as i64;
            match self.docker.update_node(&id, spec, UpdateNodeOptions { version }).await {
                Ok(()) => return Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError { status_code, .. })
                    if status_code >= 500 && attempt < 5 =>
                {
                    tokio::time::sleep(POLL).await;
                    node = self.docker.inspect_node(&id).await.map_err(|e| self.error(e))?;
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        unreachable!("the loop returns")
    }

    /// Tasks on the node that have not stopped yet: a drained node's tasks are told to
    /// shut down at once, and stop within their grace period.
    async fn live_tasks(&self, id: &str) -> Result<usize, HostError> {
        use bollard::models::TaskState;
        let filters = HashMap::from([("node".to_owned(), vec![id.to_owned()])]);
        let tasks = self.docker.list_tasks(Some(ListTasksOptions { filters: Some(filters) })).await;
        let stopped = [
            TaskState::COMPLETE,
            TaskState::SHUTDOWN,
            TaskState::FAILED,
            TaskState::REJECTED,
            TaskState::REMOVE,
            TaskState::ORPHANED,
        ];
        Ok(tasks
            .map_err(|e| self.error(e))?
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.state).is_some_and(|s| !stopped.contains(&s)))
            .count())
    }

    /// Creates the machine, waits for its node and names it; the caller rolls back on error.
    async fn join(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<(), HostError> {
        let swarm = self.docker.inspect_swarm().await.map_err(|e| self.error(e))?;
        let token = swarm
            .join_tokens
            .and_then(|t| t.worker)
            .ok_or_else(|| HostError::Failed("the swarm manager has no worker join token (is it a manager?)".into()))?;
        let info = self.docker.info().await.map_err(|e| self.error(e))?;
        let manager = info
            .swarm
            .and_then(|s| s.remote_managers)
            .and_then(|m| m.into_iter().find_map(|m| m.addr))
            .ok_or_else(|| HostError::Failed("the swarm manager reports no manager address".into()))?;
        let env = [
            ("HOOKD_HOST_NAME", name.to_owned()),
            ("HOOKD_HOST_LABELS", serde_json::to_string(labels).expect("labels serialize")),
            ("HOOKD_SWARM_JOIN_TOKEN", token),
            ("HOOKD_SWARM_MANAGER", manager),
        ];
        // Before: the node the script makes is the one not there yet.
        let before: std::collections::HashSet<String> =
            self.all_nodes().await?.into_iter().filter_map(|n| n.id).collect();
        // `set -x` in a script would print the join token.
        let out = self.script.run_hiding("create", &self.create, &env, &[&env[2].1]).await?;
        let node_id = |l: &&str| l.len() == 25 && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let id = match out.lines().map(str::trim).rfind(node_id) {
            Some(id) => id.to_owned(),
            None => {
                let nodes = self.workers().await?;
                let new_one = |n: &&Node| n.id.as_ref().is_some_and(|id| !before.contains(id));
                let by_hostname = nodes.iter().filter(new_one).find(|n| hostname(n) == name && node_name(n) == name);
                by_hostname.and_then(|n| n.id.clone()).ok_or_else(|| {
                    HostError::Failed(format!("the create script printed no node ID and no new node is named {name}"))
                })?
            }
        };
        // Only a node that joined just now, as a worker, is taken into the pool: never a
        // manager, another pool's worker, or an old node the script happened to print.
        if before.contains(&id) {
            return Err(HostError::Failed(format!(
                "the create script printed node {id}, which was in the swarm before it ran; hookd takes only a node \
                 that joins"
            )));
        }
        // Named and labelled as soon as the manager knows it: a rollback (`delete` by name)
        // then finds a node that never became ready.
        let node = self.wait_for(&id, "known to the manager", |_| true).await?;
        if role(&node) == Some(NodeSpecRoleEnum::MANAGER) {
            return Err(HostError::Failed(format!("node {id} joined as a manager; a pool holds workers only")));
        }
        self.update(&node, |spec| {
            spec.name = Some(name.to_owned());
            spec.labels.get_or_insert_with(HashMap::new).extend(labels.clone());
        })
        .await?;
        let ready = |n: &Node| n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
        self.wait_for(&id, "ready", ready).await.map(drop)
    }
}

fn role(node: &Node) -> Option<NodeSpecRoleEnum> {
    node.spec.as_ref().and_then(|s| s.role)
}

fn hostname(node: &Node) -> &str {
    node.description.as_ref().and_then(|d| d.hostname.as_deref()).unwrap_or("")
}

/// A node's name: the one hookd gave it, else its hostname.
fn node_name(node: &Node) -> &str {
    node.spec.as_ref().and_then(|s| s.name.as_deref()).filter(|n| !n.is_empty()).unwrap_or_else(|| hostname(node))
}

#[async_trait]
impl HostProvider for SwarmProvider {
    fn kind(&self) -> &'static str {
        "swarm"
    }

    async fn list(&self) -> Result<Vec<HostInfo>, HostError> {
        Ok(self
            .all_nodes()
            .await?
            .iter()
            .map(|n| {
                // A manager's name is taken, but no selector picks it: it has no labels here.
                if role(n) == Some(NodeSpecRoleEnum::MANAGER) {
                    return HostInfo {
                        name: node_name(n).to_owned(),
                        labels: BTreeMap::new(),
                        created: 0,
                        healthy: false,
                    };
                }
                let spec = n.spec.as_ref();
                let ready = n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
                let active = spec.and_then(|s| s.availability) == Some(NodeSpecAvailabilityEnum::ACTIVE);
                let created = n.created_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                HostInfo {
                    name: node_name(n).to_owned(),
                    labels: spec.and_then(|s| s.labels.clone()).unwrap_or_default().into_iter().collect(),
                    created: created.map(|t| t.timestamp_millis()).unwrap_or(0),
                    healthy: ready && active,
                }
            })
            .collect())
    }

    async fn create(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<(), HostError> {
        self.join(name, labels).await
    }

    async fn delete(&self, name: &str) -> Result<(), HostError> {
        let Some(node) = self.find(name).await? else {
            // A node of that name outside the pool (relabelled, promoted) is not ours to stop.
            if self.all_nodes().await?.iter().any(|n| node_name(n) == name) {
                return Err(HostError::Failed(format!(
                    "a node named {name} is in the swarm without the pool's labels; hookd leaves it and its machine alone"
                )));
            }
            // Gone already, or never joined: the machine may still run.
            if !self.delete.is_empty() {
                self.script.run("delete", &self.delete, &[("HOOKD_HOST_NAME", name.to_owned())]).await?;
            }
            return Ok(());
        };
        let id = node.id.clone().unwrap_or_default();
        self.update(&node, |spec| spec.availability = Some(NodeSpecAvailabilityEnum::DRAIN)).await?;
        let deadline = tokio::time::Instant::now() + self.script.timeout;
        // A dead node's tasks keep their last state (RUNNING) for a day: nothing will stop
        // them there, and the swarm has rescheduled them already.
        let up = node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
        while up && self.live_tasks(&id).await? > 0 {
            if tokio::time::Instant::now() > deadline {
                return Err(HostError::Failed(format!(
                    "the tasks of {name} did not move within {} s; the node stays drained",
                    self.script.timeout.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        if !self.delete.is_empty() {
            self.script
                .run(
                    "delete",
                    &self.delete,
                    &[("HOOKD_HOST_NAME", name.to_owned()), ("HOOKD_SWARM_NODE_ID", id.clone())],
                )
                .await?;
            let down = |n: &Node| n.status.as_ref().and_then(|s| s.state) == Some(NodeState::DOWN);
            self.wait_for(&id, "down", down).await?;
        }
        match self.docker.delete_node(&id, Some(DeleteNodeOptions { force: true })).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }
}
