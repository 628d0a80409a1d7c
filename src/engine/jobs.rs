//! Runs jobs to the end: one task per job, its progress stored as it goes, resumed at start.
//!
//! A job rolls its services one after another, each under the service's lock (so a scale
//! trigger waits instead of colliding). Backends' rollouts are idempotent, so resuming a
//! step after a restart calls the backend again and it carries on where it stood. A backend
//! that is unreachable is retried with backoff; anything else fails the job with the reason.
//!
//! With several hookd on one store, a job runs where its lease is held: claimed before it
//! starts, renewed while it runs, and taken over by another hookd once it lapses (the
//! holder died). A hookd that loses a lease stops running that job.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;

use super::ServiceLocks;
use crate::{
    backend::ServiceInfo,
    backend::{BackendError, Backends, RolloutObserver, RolloutPlan, RolloutProgress},
    domain::{
        image::ImageRef, now_millis, upgrade::Mismatch, DriverConfig, Job, JobId, JobKind, JobState, Millis,
        ReceiverId, StepState,
    },
    store::{Store, StoreError},
};

/// How long an unreachable backend is retried before the job fails.
pub(super) const UNAVAILABLE_FOR: Duration = Duration::from_secs(600);
/// A job's lease: renewed every third of it; another hookd takes the job once it lapses.
const LEASE_MS: Millis = 15_000;
/// How often lapsed leases are looked for.
const ORPHAN_SCAN: Duration = Duration::from_secs(5);
/// How long a job waits for its service's lock before it looks again.
const LOCK_WAIT: Duration = Duration::from_secs(60);

pub struct JobRunner {
    store: Arc<dyn Store>,
    backends: Arc<Backends>,
    pools: Arc<crate::hosts::Pools>,
    locks: Arc<ServiceLocks>,
    /// This hookd in job leases.
    owner: String,
    /// Jobs this process runs now.
    running: Mutex<HashSet<JobId>>,
}

/// The job being run, shared with the backend's progress reports.
struct Running {
    store: Arc<dyn Store>,
    job: tokio::sync::Mutex<Job>,
    step: std::sync::atomic::AtomicUsize,
}

impl Running {
    /// Stores the job as it is now; a store that cannot write is retried (the state must
    /// not be lost), and the job goes on meanwhile.
    async fn save(&self) {
        let job = self.job.lock().await.clone();
        save(self.store.as_ref(), &job).await;
    }
}

pub(super) async fn save(store: &dyn Store, job: &Job) {
    let mut wait = Duration::from_millis(100);
    loop {
        match store.save_job(job, None).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "could not store the job's progress; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[async_trait]
impl RolloutObserver for Running {
    async fn progress(&self, progress: RolloutProgress) {
        {
            let mut job = self.job.lock().await;
            let index = self.step.load(std::sync::atomic::Ordering::Relaxed);
            let step = &mut job.steps[index];
            (step.updated, step.total) = (progress.updated, progress.total);
            job.updated = now_millis();
        }
        self.save().await;
    }
}

impl JobRunner {
    pub fn new(
        store: Arc<dyn Store>,
        backends: Arc<Backends>,
        pools: Arc<crate::hosts::Pools>,
        locks: Arc<ServiceLocks>,
        owner: String,
    ) -> Self {
        Self { store, backends, pools, locks, owner, running: Mutex::default() }
    }

    /// Whether this hookd has what `job` acts on (its backend, or its host pool).
    fn has_target(&self, job: &Job) -> bool {
        match &job.kind {
            JobKind::Upgrade => self.backends.by_name(&job.backend).is_some(),
            JobKind::Hosts { pool, .. } => self.pools.by_name(pool).is_some(),
        }
    }

    /// Starts the jobs left running by a previous run of hookd (those another live hookd
    /// holds are left to it); with a shared store, then looks for lapsed leases for good.
    pub async fn resume(self: &Arc<Self>) -> Result<usize, StoreError> {
        let jobs = self.store.running_jobs().await?;
        let n = jobs.len();
        for job in jobs {
            tracing::info!(job = %job.id, "resuming a job left unfinished");
            self.spawn(job);
        }
        if self.store.shared() {
            let runner = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ORPHAN_SCAN).await;
                    let Some(runner) = runner.upgrade() else { return };
                    match runner.store.orphaned_jobs().await {
                        Ok(jobs) => {
                            // Jobs on a backend this hookd lacks are left to one that has it.
                            for job in jobs.into_iter().filter(|j| runner.has_target(j)) {
                                tracing::info!(job = %job.id, "taking over a job whose hookd stopped renewing it");
                                runner.spawn(job);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "could not look for jobs to take over"),
                    }
                }
            });
        }
        Ok(n)
    }

    /// Renews the job's lease; returns once it is lost to another hookd, or could not be
    /// renewed for two thirds of a lease: the job stops here (its scripts killed) before
    /// another hookd may take it over, so a step never runs on both.
    async fn keep_lease(&self, id: JobId) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(LEASE_MS as u64 / 3)).await;
            match self.store.claim_job(id, &self.owner, LEASE_MS).await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) if renewed.elapsed() >= Duration::from_millis(LEASE_MS as u64 * 2 / 3) => {
                    tracing::warn!(job = %id, error = %e, "could not renew the job's lease; stopping here before it runs out");
                    return;
                }
                Err(e) => tracing::warn!(job = %id, error = %e, "could not renew the job's lease; retrying"),
            }
        }
    }

    /// The image a step should roll to now that the service runs `now` (not what it ran
    /// when the push was decided), by the receiver's rules; or why it should not roll.
    async fn decide_again(&self, receiver: ReceiverId, now: &ServiceInfo, planned: &str) -> Result<String, String> {
        let stale = || format!("the service changed since the push (it runs {} now)", now.image);
        let Ok(Some(r)) = self.store.receiver(receiver).await else {
            return Err(format!("{}, and its receiver is gone", stale()));
        };
        let (DriverConfig::ServiceUpgrade(config), Some(pushed)) = (&r.config, ImageRef::parse(planned)) else {
            return Err(stale());
        };
        let tag = pushed.tag.clone().unwrap_or_default();
        let images = std::iter::once(&now.image).chain(&now.other_images).map(String::as_str);
        match config.target_any(&now.labels, images, &pushed, &tag, pushed.digest.as_deref()) {
            Ok((image, _)) => Ok(image),
            Err(Mismatch::Current) => Err(format!("{}: already the pushed image", stale())),
            Err(Mismatch::Tag(why) | Mismatch::Repository(why)) => Err(format!("{}: {why}", stale())),
            Err(Mismatch::Selector) => Err(format!("{}: it no longer carries the selector's labels", stale())),
        }
    }

    /// The job's project's view of its backend (a Kubernetes project's namespace). A project
    /// gone or moved since may use the backend itself, unless the backend is per project:
    /// acting in another namespace would touch another project's workload.
    async fn backend_for(&self, job: &Job) -> Result<Arc<dyn crate::backend::Backend>, String> {
        let bound = match self.backends.for_project_fresh(&job.project, self.store.as_ref()).await {
            Ok(bound) => bound,
            Err(_) => self.backends.for_project(&job.project),
        };
        if let Some(backend) = bound.filter(|b| b.name() == job.backend) {
            return Ok(backend);
        }
        let root = self
            .backends
            .by_name(&job.backend)
            .ok_or_else(|| format!("the backend {} is no longer configured", job.backend))?;
        match root.scoped(&job.project, None, true) {
            Ok(None) => Ok(root.clone()),
            _ => Err(format!("the project {} is no longer bound to the backend {}", job.project, job.backend)),
        }
    }

    /// Runs `job` here if this hookd can claim it and does not run it already.
    pub fn spawn(self: &Arc<Self>, job: Job) {
        let id = job.id;
        // With replicas, a job on a backend this hookd lacks is left to one that has it.
        if self.store.shared() && !self.has_target(&job) {
            return;
        }
        if !self.running.lock().expect("running jobs").insert(id) {
            return;
        }
        let runner = self.clone();
        tokio::spawn(async move {
            match runner.store.claim_job(id, &runner.owner, LEASE_MS).await {
                Ok(true) => {
                    tokio::select! {
                        () = runner.run(job) => {}
                        () = runner.keep_lease(id) => {
                            tracing::warn!(job = %id, "another hookd took the job over; stopped running it here");
                        }
                    }
                }
                Ok(false) => tracing::debug!(job = %id, "another hookd runs the job"),
                Err(e) => tracing::warn!(job = %id, error = %e, "could not claim the job; it is taken over later"),
            }
            runner.running.lock().expect("running jobs").remove(&id);
        });
    }

    async fn run(&self, job: Job) {
        if matches!(job.kind, JobKind::Hosts { .. }) {
            return super::hosts::run(self.store.as_ref(), &self.pools, job).await;
        }
        let id = job.id;
        let backend = match self.backend_for(&job).await {
            Ok(backend) => backend,
            Err(why) => {
                let mut job = job;
                job.fail(why, now_millis());
                save(self.store.as_ref(), &job).await;
                return;
            }
        };
        let plan = RolloutPlan {
            batch_size: job.rollout.batch_size,
            interval: Duration::from_secs(u64::from(job.rollout.interval_seconds)),
            start_first: job.rollout.start_first,
        };
        let steps = job.steps.len();
        let receiver = job.receiver;
        let running = Running { store: self.store.clone(), job: tokio::sync::Mutex::new(job), step: 0.into() };
        for index in 0..steps {
            let (service, image, from, fresh) = {
                let job = running.job.lock().await;
                let step = &job.steps[index];
                if matches!(step.state, StepState::Done | StepState::Skipped) {
                    continue;
                }
                (step.service.clone(), step.image.clone(), step.from.clone(), step.state == StepState::Pending)
            };
            let key = backend.service_key(&service);
            let _serialized = loop {
                match self.locks.acquire(&key, LOCK_WAIT).await {
                    Ok(Some(guard)) => break guard,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(job = %id, %service, error = %e, "could not lock the service; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            // Decided against the image the service ran at the push; if another action has
            // changed it since (a later push rolled first), decide again, or a semver
            // receiver could roll backwards.
            let image = match (fresh, backend.service(&service).await) {
                (true, Ok(now)) if now.image != from && !now.other_images.contains(&from) => {
                    match self.decide_again(receiver, &now, &image).await {
                        Ok(image) => image,
                        Err(why) => {
                            let mut job = running.job.lock().await;
                            let step = &mut job.steps[index];
                            step.state = StepState::Skipped;
                            step.error = Some(why);
                            step.finished = Some(now_millis());
                            drop(job);
                            running.save().await;
                            continue;
                        }
                    }
                }
                _ => image,
            };
            running.job.lock().await.steps[index].image = image.clone();
            running.step.store(index, std::sync::atomic::Ordering::Relaxed);
            {
                let mut job = running.job.lock().await;
                let step = &mut job.steps[index];
                step.state = StepState::Running;
                step.started.get_or_insert_with(now_millis);
            }
            running.save().await;
            let started = tokio::time::Instant::now();
            let result = loop {
                match backend.upgrade(&service, &image, plan, &running).await {
                    Err(BackendError::Unavailable(why)) if started.elapsed() < UNAVAILABLE_FOR => {
                        tracing::warn!(job = %id, %service, error = %why, "the backend is unavailable; retrying the rollout");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    other => break other,
                }
            };
            let mut job = running.job.lock().await;
            let now = now_millis();
            let step = &mut job.steps[index];
            step.finished = Some(now);
            match result {
                Ok(()) => {
                    step.state = StepState::Done;
                    step.updated = step.total.max(step.updated);
                    tracing::info!(job = %id, %service, %image, "service upgraded");
                }
                Err(e) => {
                    step.state = StepState::Failed;
                    step.error = Some(e.to_string());
                    let why = format!("upgrading {service} to {image} failed: {e}");
                    tracing::warn!(job = %id, error = %why, "upgrade job failed");
                    job.fail(why, now);
                    save(self.store.as_ref(), &job).await;
                    return;
                }
            }
            job.updated = now;
            save(self.store.as_ref(), &job).await;
        }
        let mut job = running.job.into_inner();
        if job.state == JobState::Running {
            job.succeed(now_millis());
            save(self.store.as_ref(), &job).await;
            tracing::info!(job = %id, "upgrade job finished");
        }
    }
}
