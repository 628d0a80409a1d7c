//! One task per local service: starts, stops and restarts its processes.
//!
//! The task owns every child of its service, so no lock guards the process table: scale
//! changes arrive on a `watch` channel, exits and grace timeouts on an event channel.
//! Replica numbers run 1..=desired; scaling down stops the highest numbers first.
//! Scaling up starts processes at once; a lower desired scale must hold for
//! [`SCALE_DOWN_SETTLE`] before processes stop, so a flapping scale (up, down, up within
//! moments) coalesces instead of forking and killing processes on every change.
//! Each child leads its own process group (so a stop reaches its children too) and is
//! asked to die with hookd (`PR_SET_PDEATHSIG`), so even a kill -9 of hookd leaves no orphans.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use tokio::{
    process::Command,
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::config::LocalServiceConfig;

/// A process that ran at least this long is considered healthy: its restart backoff resets.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a lower desired scale must hold before processes are stopped.
pub const SCALE_DOWN_SETTLE: Duration = Duration::from_secs(1);

pub struct ServiceSpec {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub image: String,
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
            image: c.image.clone(),
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
}

enum Event {
    Exited { pid: i32, status: String },
    GraceExpired { pid: i32 },
}

struct Replica {
    pid: i32,
    started: Instant,
}

struct Backoff {
    failures: u32,
    next_start: Instant,
}

pub struct Supervisor {
    spec: Arc<ServiceSpec>,
    shared: Arc<std::sync::Mutex<SharedState>>,
    desired: watch::Receiver<u32>,
    grace: Duration,
    shutdown: CancellationToken,
    replicas: BTreeMap<u32, Replica>,
    /// Processes asked to stop, by pid, with their replica number.
    stopping: HashMap<i32, u32>,
    backoff: HashMap<u32, Backoff>,
    /// Since when the desired scale has been below the replicas running.
    lower_since: Option<Instant>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
}

impl Supervisor {
    pub fn new(
        spec: Arc<ServiceSpec>,
        shared: Arc<std::sync::Mutex<SharedState>>,
        desired: watch::Receiver<u32>,
        grace: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Self {
            spec,
            shared,
            desired,
            grace,
            shutdown,
            replicas: BTreeMap::new(),
            stopping: HashMap::new(),
            backoff: HashMap::new(),
            lower_since: None,
            events_tx,
            events_rx,
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
                    self.terminate(n, replica.pid);
                }
                self.lower_since = None;
            } else {
                next_restart = Some(since + SCALE_DOWN_SETTLE);
            }
        }
        self.backoff.retain(|&n, _| n <= desired);
        for n in 1..=desired {
            if self.replicas.contains_key(&n) {
                continue;
            }
            match self.backoff.get(&n) {
                Some(b) if b.next_start > now => {
                    next_restart = Some(next_restart.map_or(b.next_start, |t| t.min(b.next_start)));
                }
                _ => self.start(n),
            }
        }
        self.shared.lock().expect("supervisor state lock").running = self.replicas.len() as u32;
        next_restart
    }

    fn start(&mut self, replica: u32) {
        let spec = &self.spec;
        let mut cmd = Command::new(&spec.command);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("HOOKD_SERVICE", &spec.name)
            .env("HOOKD_REPLICA", replica.to_string())
            .env("HOOKD_IMAGE", &spec.image)
            .stdin(std::process::Stdio::null())
            .process_group(0);
        if let Some(dir) = &spec.workdir {
            cmd.current_dir(dir);
        }
        let parent = nix::unistd::getpid();
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                if nix::unistd::getppid() != parent {
                    nix::libc::_exit(1);
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id().expect("a just-spawned child has a pid") as i32;
                tracing::info!(service = %spec.name, replica, pid, "started process");
                self.replicas.insert(replica, Replica { pid, started: Instant::now() });
                let events = self.events_tx.clone();
                tokio::spawn(async move {
                    let status = match child.wait().await {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("wait failed: {e}"),
                    };
                    let _ = events.send(Event::Exited { pid, status });
                });
            }
            Err(e) => {
                let message = format!("could not start {:?}: {e}", spec.command);
                tracing::warn!(service = %spec.name, replica, error = %e, "could not start process");
                self.shared.lock().expect("supervisor state lock").last_error = Some(message);
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
                if self.stopping.remove(&pid).is_some() {
                    return;
                }
                let Some((&n, _)) = self.replicas.iter().find(|(_, r)| r.pid == pid) else {
                    return;
                };
                let replica = self.replicas.remove(&n).expect("found above");
                let message = format!("replica {n} (pid {pid}) exited: {status}");
                tracing::warn!(service = %self.spec.name, replica = n, pid, %status, "process exited; restarting");
                self.shared.lock().expect("supervisor state lock").last_error = Some(message);
                self.schedule_restart(n, replica.started.elapsed());
            }
            Event::GraceExpired { pid } => {
                if self.stopping.contains_key(&pid) {
                    tracing::warn!(service = %self.spec.name, pid, "process ignored SIGTERM; sending SIGKILL");
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }

    /// SIGTERM now, SIGKILL when the grace period ends without an exit.
    fn terminate(&mut self, replica: u32, pid: i32) {
        tracing::info!(service = %self.spec.name, replica, pid, "stopping process");
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        self.stopping.insert(pid, replica);
        let events = self.events_tx.clone();
        let grace = self.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = events.send(Event::GraceExpired { pid });
        });
    }

    async fn stop_all(&mut self) {
        let all: Vec<(u32, i32)> = self.replicas.iter().map(|(&n, r)| (n, r.pid)).collect();
        self.replicas.clear();
        for (n, pid) in all {
            self.terminate(n, pid);
        }
        // Grace timers fire SIGKILL; a little slack lets the kills be reaped.
        let deadline = Instant::now() + self.grace + Duration::from_secs(2);
        while !self.stopping.is_empty() {
            match tokio::time::timeout_at(deadline, self.events_rx.recv()).await {
                Ok(Some(event)) => self.handle(event),
                _ => break,
            }
        }
        self.shared.lock().expect("supervisor state lock").running = 0;
    }
}
