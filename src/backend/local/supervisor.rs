//! One task per local service: starts, stops and restarts its processes.
//!
//! The task owns every child of its service, so no lock guards the process table: scale
//! changes arrive on a `watch` channel, exits and grace timeouts on an event channel.
//! Replica numbers run 1..=desired; scaling down stops the highest numbers first.
//! Scaling up starts processes at once; a lower desired scale must hold for
//! [`SCALE_DOWN_SETTLE`] before processes stop, so a flapping scale (up, down, up within
//! moments) coalesces instead of forking and killing processes on every change.
//! Each replica runs under a keeper process ([`super::keeper`]) that owns the replica's whole
//! process tree: stopping a replica is one SIGTERM to its keeper, which SIGTERMs the tree and
//! SIGKILLs what is left after the grace period. If a keeper itself dies uncleanly, the
//! supervisor sweeps the replica's processes (by cgroup, or by environment).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use nix::{
    sys::signal::{kill, killpg, Signal},
    unistd::Pid,
};
use tokio::{
    process::Command,
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::containment::{self, Cgroups, INSTANCE_ENV, RUN_ENV};
use crate::config::LocalServiceConfig;

/// How long after the grace period hookd waits for a keeper before killing it outright.
const KEEPER_SLACK: Duration = Duration::from_secs(5);

/// A process that ran at least this long is considered healthy: its restart backoff resets.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a lower desired scale must hold before processes are stopped.
pub const SCALE_DOWN_SETTLE: Duration = Duration::from_secs(1);

/// What every replica of a backend is started with.
pub struct Containment {
    /// This data directory's id, carried by every process (see [`INSTANCE_ENV`]).
    pub instance: String,
    /// The hookd binary that runs the keepers.
    pub keeper: std::path::PathBuf,
    pub cgroups: Option<Arc<Cgroups>>,
}

pub struct ServiceSpec {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub workdir: Option<std::path::PathBuf>,
}

impl ServiceSpec {
    pub fn from_config(c: &LocalServiceConfig) -> Self {
        Self {
            name: c.name.clone(),
            command: c.command.clone(),
            args: c.args.clone(),
            env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            labels: c.labels.clone(),
            workdir: c.workdir.clone(),
        }
    }
}

/// What the rest of hookd may read about a service; written by the backend and the supervisor.
#[derive(Debug, Default)]
pub struct SharedState {
    pub desired: u32,
    /// Bumped on every desired-scale write, for optimistic concurrency.
    pub version: u64,
    pub running: u32,
    pub last_error: Option<String>,
    /// The image new replicas start with (`HOOKD_IMAGE`): the config's, or an upgrade's.
    pub image: String,
    /// The image each running replica was started with, and when, by replica number.
    pub replica_images: BTreeMap<u32, (String, Instant)>,
    /// Per replica number: how often it exited on its own, and the image of the last exit.
    /// A rollout reads it, as a crash can come and go between two looks at `replica_images`.
    pub exits: BTreeMap<u32, (u64, String)>,
}

/// Asks the supervisor to replace a replica with one on the current image.
#[derive(Debug, Clone, Copy)]
pub struct Replace {
    pub replica: u32,
    /// Start the new process before stopping the old one.
    pub start_first: bool,
}

enum Event {
    Exited { pid: i32, status: std::io::Result<std::process::ExitStatus> },
    GraceExpired { pid: i32 },
}

struct Replica {
    /// The keeper's pid, which leads its own process group.
    pid: i32,
    image: String,
    /// This start's id, in its processes' environment ([`RUN_ENV`]).
    run: String,
    started: Instant,
    cgroup: Option<std::path::PathBuf>,
}

struct Backoff {
    failures: u32,
    next_start: Instant,
}

pub struct Supervisor {
    spec: Arc<ServiceSpec>,
    containment: Arc<Containment>,
    shared: Arc<std::sync::Mutex<SharedState>>,
    desired: watch::Receiver<u32>,
    grace: Duration,
    shutdown: CancellationToken,
    replicas: BTreeMap<u32, Replica>,
    /// Keepers asked to stop, by pid.
    stopping: HashMap<i32, (u32, Replica)>,
    /// Makes each replica's cgroup name unique, so a late cleanup never hits its successor.
    spawned: u64,
    backoff: HashMap<u32, Backoff>,
    /// Replica numbers whose old process is still stopping during a stop-first replace:
    /// not started again until it has exited.
    held: std::collections::HashSet<u32>,
    /// Since when the desired scale has been below the replicas running.
    lower_since: Option<Instant>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    replaces: mpsc::UnboundedReceiver<Replace>,
}

impl Supervisor {
    pub fn new(
        spec: Arc<ServiceSpec>,
        containment: Arc<Containment>,
        shared: Arc<std::sync::Mutex<SharedState>>,
        desired: watch::Receiver<u32>,
        replaces: mpsc::UnboundedReceiver<Replace>,
        grace: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Self {
            spec,
            containment,
            shared,
            desired,
            grace,
            shutdown,
            replicas: BTreeMap::new(),
            stopping: HashMap::new(),
            spawned: 0,
            backoff: HashMap::new(),
            held: Default::default(),
            lower_since: None,
            events_tx,
            events_rx,
            replaces,
        }
    }

    pub async fn run(mut self) {
        loop {
            let next_restart = self.reconcile();
            let wake = next_restart.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(event) = self.events_rx.recv() => self.handle(event),
                Some(replace) = self.replaces.recv() => self.replace(replace),
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        self.stop_all().await;
    }

    /// Converges on the desired scale; returns when it next needs to look again (a
    /// backed-off restart, or the end of a scale-down settle).
    fn reconcile(&mut self) -> Option<Instant> {
        let desired = *self.desired.borrow();
        let now = Instant::now();
        let mut next_restart: Option<Instant> = None;
        let extra: Vec<u32> = self.replicas.range(desired + 1..).map(|(&n, _)| n).collect();
        if extra.is_empty() {
            self.lower_since = None;
        } else {
            let since = *self.lower_since.get_or_insert(now);
            if now >= since + SCALE_DOWN_SETTLE {
                for n in extra.into_iter().rev() {
                    let replica = self.replicas.remove(&n).expect("listed above");
                    self.terminate(n, replica);
                }
                self.lower_since = None;
            } else {
                next_restart = Some(since + SCALE_DOWN_SETTLE);
            }
        }
        self.backoff.retain(|&n, _| n <= desired);
        for n in 1..=desired {
            let waiting = self.held.contains(&n) || self.backoff.get(&n).is_some_and(|b| b.next_start > now);
            if self.replicas.contains_key(&n) || waiting {
                continue;
            }
            self.start(n);
        }
        // After the starts: a start that failed has just scheduled its retry.
        for (n, b) in &self.backoff {
            if !self.replicas.contains_key(n) {
                next_restart = Some(next_restart.map_or(b.next_start, |t| t.min(b.next_start)));
            }
        }
        self.publish();
        next_restart
    }

    /// Tells the rest of hookd what runs now.
    fn publish(&self) {
        let mut shared = self.shared.lock().expect("supervisor state lock");
        shared.running = self.replicas.len() as u32;
        shared.replica_images = self.replicas.iter().map(|(&n, r)| (n, (r.image.clone(), r.started))).collect();
    }

    /// Replaces a replica not on the current image (an upgrade's batch); a replica already
    /// on it, or gone, is left alone.
    fn replace(&mut self, replace: Replace) {
        let image = self.shared.lock().expect("supervisor state lock").image.clone();
        let n = replace.replica;
        let Some(old) = self.replicas.remove(&n) else { return };
        if old.image == image {
            self.replicas.insert(n, old);
            return;
        }
        if replace.start_first {
            self.start(n);
            let started = self.replicas.contains_key(&n);
            if started {
                self.terminate(n, old);
            } else {
                // The new process did not start: keep the old one serving.
                self.replicas.insert(n, old);
            }
        } else {
            // Started again, on the new image, once the old process has exited.
            self.held.insert(n);
            self.terminate(n, old);
        }
        self.publish();
    }

    fn start(&mut self, replica: u32) {
        let image = self.shared.lock().expect("supervisor state lock").image.clone();
        let spec = &self.spec;
        let path_var = spec.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| std::ffi::OsStr::new(v));
        let workdir_missing = spec
            .workdir
            .as_ref()
            .filter(|d| !d.is_dir())
            .map(|d| format!("{}: no such directory (workdir)", d.display()));
        let program = match workdir_missing
            .map_or_else(|| containment::resolve(&spec.command, path_var, spec.workdir.as_deref()), Err)
        {
            Ok(program) => program,
            Err(why) => {
                let message = format!("could not start replica {replica}: {why}");
                tracing::warn!(service = %spec.name, replica, error = %why, "could not start process");
                self.shared.lock().expect("supervisor state lock").last_error = Some(message);
                self.schedule_restart(replica, Duration::ZERO);
                return;
            }
        };
        self.spawned += 1;
        let run = format!("{:016x}", rand::random::<u64>());
        let cgroup = self.containment.cgroups.as_ref().and_then(|cgroups| {
            let dir = cgroups.replica_dir(&spec.name, replica, self.spawned);
            match cgroups.prepare(&dir) {
                Ok(()) => Some(dir),
                Err(e) => {
                    tracing::warn!(service = %spec.name, replica, error = %e, "could not create the replica's cgroup");
                    None
                }
            }
        });
        let mut cmd = Command::new(&self.containment.keeper);
        cmd.arg0("hookd")
            .arg("keep-replica")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--grace-ms")
            .arg(self.grace.as_millis().to_string());
        if let Some(dir) = &cgroup {
            cmd.arg("--cgroup").arg(dir);
        }
        cmd.arg("--")
            .arg(&program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("HOOKD_SERVICE", &spec.name)
            .env("HOOKD_REPLICA", replica.to_string())
            .env("HOOKD_IMAGE", &image)
            .env(INSTANCE_ENV, &self.containment.instance)
            .env(RUN_ENV, &run)
            .stdin(std::process::Stdio::null())
            .process_group(0);
        if let Some(dir) = &spec.workdir {
            cmd.current_dir(dir);
        }
        // No pre_exec: the keeper sets its own parent-death signal and checks its parent
        // (`--parent`), and without one the child is spawned with vfork, not a full fork of
        // hookd on a thread that serves triggers.
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id().expect("a just-spawned child has a pid") as i32;
                tracing::info!(service = %spec.name, replica, pid, "started process");
                self.replicas.insert(replica, Replica { pid, image, run, started: Instant::now(), cgroup });
                let events = self.events_tx.clone();
                tokio::spawn(async move {
                    let status = child.wait().await;
                    let _ = events.send(Event::Exited { pid, status });
                });
            }
            Err(e) => {
                let message = format!("could not start replica {replica}: {:?}: {e}", self.containment.keeper);
                tracing::warn!(service = %spec.name, replica, error = %e, "could not start the replica's keeper");
                self.shared.lock().expect("supervisor state lock").last_error = Some(message);
                if let Some(dir) = cgroup {
                    let _ = std::fs::remove_dir(dir);
                }
                self.schedule_restart(replica, Duration::ZERO);
            }
        }
    }

    fn schedule_restart(&mut self, replica: u32, ran: Duration) {
        let failures = match self.backoff.get(&replica) {
            Some(b) if ran < HEALTHY_RUN => b.failures + 1,
            _ => 0,
        };
        let delay = FIRST_BACKOFF.saturating_mul(1 << failures.min(16)).min(MAX_BACKOFF);
        self.backoff.insert(replica, Backoff { failures, next_start: Instant::now() + delay });
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Exited { pid, status } => {
                let (status, clean) = match status {
                    Ok(status) => {
                        (status.to_string(), std::os::unix::process::ExitStatusExt::signal(&status).is_none())
                    }
                    Err(e) => (format!("wait failed: {e}"), false),
                };
                if let Some((n, replica)) = self.stopping.remove(&pid) {
                    self.held.remove(&n);
                    self.clean_up(n, replica, clean);
                    return;
                }
                let Some((&n, _)) = self.replicas.iter().find(|(_, r)| r.pid == pid) else {
                    return;
                };
                let replica = self.replicas.remove(&n).expect("found above");
                let ran = replica.started.elapsed();
                let message = format!("replica {n} (pid {pid}) exited: {status}");
                tracing::warn!(service = %self.spec.name, replica = n, pid, %status, "process exited; restarting");
                {
                    let mut shared = self.shared.lock().expect("supervisor state lock");
                    shared.last_error = Some(message);
                    let exits = shared.exits.entry(n).or_default();
                    *exits = (exits.0 + 1, replica.image.clone());
                }
                self.clean_up(n, replica, clean);
                self.schedule_restart(n, ran);
            }
            Event::GraceExpired { pid } => {
                if let Some((n, _)) = self.stopping.get(&pid) {
                    tracing::warn!(service = %self.spec.name, replica = n, pid, "the replica's keeper did not stop; killing it");
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }

    /// After a keeper exited: a keeper that was killed could not stop its tree, so sweep it;
    /// then remove the replica's cgroup.
    fn clean_up(&self, n: u32, replica: Replica, keeper_exited_cleanly: bool) {
        let (instance, service) = (self.containment.instance.clone(), self.spec.name.clone());
        tokio::task::spawn_blocking(move || {
            let swept = match &replica.cgroup {
                Some(dir) => Cgroups::remove(dir),
                None if !keeper_exited_cleanly => containment::sweep_replica(&instance, &replica.run),
                None => 0,
            };
            if swept > 0 {
                tracing::warn!(service, replica = n, processes = swept, "killed processes the replica left behind");
            }
        });
    }

    /// SIGTERM to the keeper now; SIGKILL to it if it is still there well after the grace period.
    fn terminate(&mut self, replica: u32, handle: Replica) {
        let pid = handle.pid;
        tracing::info!(service = %self.spec.name, replica, pid, "stopping process");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        self.stopping.insert(pid, (replica, handle));
        let events = self.events_tx.clone();
        let wait = self.grace + KEEPER_SLACK;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = events.send(Event::GraceExpired { pid });
        });
    }

    async fn stop_all(&mut self) {
        let all = std::mem::take(&mut self.replicas);
        for (n, replica) in all {
            self.terminate(n, replica);
        }
        let deadline = Instant::now() + self.grace + KEEPER_SLACK + Duration::from_secs(1);
        while !self.stopping.is_empty() {
            match tokio::time::timeout_at(deadline, self.events_rx.recv()).await {
                Ok(Some(event)) => self.handle(event),
                _ => break,
            }
        }
        self.publish();
    }
}
