//! The trigger path: run a receiver's action and record the decision.
//!
//! Triggers on one service are serialized by a per-service lock held from reading the
//! history and the scale to recording the execution, so concurrent "up" triggers never lose
//! an update or step past max, and dedup and cooldown see every earlier decision. Writes
//! use the backend's optimistic concurrency as a second guard against changes made behind
//! hookd's back.
//!
//! A change is recorded before it takes effect (the backend calls the trigger's
//! [`Journal`]; for the local backend the new scale is in the same transaction), so a
//! trigger retried after any failure, even a kill -9, finds the decision and is a
//! duplicate. If recording fails, nothing was done and the caller may retry.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;

mod hosts;
mod jobs;
mod target;
mod upgrade;

pub use self::jobs::JobRunner;

use crate::{
    backend::{Backend, BackendError, Backends, Journal},
    domain::{
        now_millis, target::ScaleMode, DedupKey, DriverConfig, Effect, Execution, ExecutionId, History, Intent, Job,
        JobId, JobKind, JobState, JobStep, Notification, Outcome, Receiver, Rollout, ScaleDecision, ScaleServiceConfig,
        ServiceId, ServiceKey, SkipReason,
    },
    metrics::{BackendOpLabels, DriverLabels, Metrics, TriggerLabels},
    payload::TriggerPayload,
    store::{StateWrite, Store, StoreError, StoreLock},
};

/// How long a trigger waits for its service's lock before answering 503.
const SERVICE_WAIT: Duration = Duration::from_secs(10);

/// Retries of a scale write that lost an optimistic-concurrency race.
const CONFLICT_RETRIES: u32 = 8;

/// What a decision on the current scale comes to.
enum Plan {
    Write { from: u32, to: u32, reason: String, detail: String },
    Settle { outcome: Outcome, at: u32, reason: String, detail: String },
}

/// The decision a trigger came to, as answered to the caller.
#[derive(Debug, Clone)]
pub struct Report {
    pub execution: Execution,
    /// The action could not be done but may succeed later: the caller should retry.
    pub retry: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("could not record the execution: {0}")]
    Store(#[from] StoreError),
    #[error("project {0} has no backend")]
    NoBackend(String),
    /// The receiver was deleted or its URL regenerated while the trigger waited for its
    /// service; nothing was done.
    #[error("the receiver was revoked")]
    Revoked,
    /// The service stayed locked (by an upgrade, or a queue of slow scales) past the wait; nothing was done.
    #[error("the service {0} is busy")]
    Busy(String),
}

/// One lock per (backend, service): an async mutex in this process, then the store's lock
/// of that name, so triggers and jobs on a service are serialized across every hookd
/// sharing the store. Entries live as long as hookd (services are few).
pub struct ServiceLocks {
    store: Arc<dyn Store>,
    locks: Mutex<HashMap<ServiceKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a trigger or a job acts on a service.
pub struct ServiceGuard {
    _local: tokio::sync::OwnedMutexGuard<()>,
    _shared: StoreLock,
}

impl ServiceLocks {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, locks: Mutex::default() }
    }

    fn get(&self, service: &ServiceKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("service lock table");
        if let Some(lock) = locks.get(service) {
            return lock.clone();
        }
        locks.entry(service.clone()).or_default().clone()
    }

    /// Takes the service's lock, waiting up to `wait`; `Ok(None)` when it is still held then.
    pub async fn acquire(&self, service: &ServiceKey, wait: Duration) -> Result<Option<ServiceGuard>, StoreError> {
        let started = Instant::now();
        let Ok(local) = tokio::time::timeout(wait, self.get(service).lock_owned()).await else {
            return Ok(None);
        };
        let left = wait.saturating_sub(started.elapsed());
        let shared = self.store.lock(&format!("service:{}", service.as_str()), left).await?;
        Ok(shared.map(|shared| ServiceGuard { _local: local, _shared: shared }))
    }
}

pub struct Engine {
    store: Arc<dyn Store>,
    backends: Arc<Backends>,
    metrics: Arc<Metrics>,
    locks: Arc<ServiceLocks>,
    jobs: Arc<JobRunner>,
    pools: Arc<crate::hosts::Pools>,
    /// By backend, then operation.
    backend_metrics: HashMap<String, HashMap<&'static str, BackendOpMetrics>>,
    /// Calls in flight to each backend, bounded: a flood of triggers queues here instead of
    /// piling onto the orchestrator's API.
    backend_calls: HashMap<String, Arc<tokio::sync::Semaphore>>,
    backend_concurrency: usize,
}

/// How long a trigger waits for a backend call slot before answering 503.
const BACKEND_SLOT_WAIT: Duration = Duration::from_secs(10);

type BackendOpMetrics =
    (prometheus_client::metrics::histogram::Histogram, prometheus_client::metrics::counter::Counter);

/// One trigger, as the HTTP layer hands it over.
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    /// Who sent it: the peer address and user agent, for the history.
    pub source: String,
    pub payload: TriggerPayload,
    /// Decide and record, but act on nothing.
    pub dry_run: bool,
    /// From an `Idempotency-Key` header: a retry with the same key does not act twice.
    pub idempotency_key: Option<DedupKey>,
}

/// The execution being built for one trigger: one id, however often it is recorded.
struct Draft<'a> {
    id: ExecutionId,
    receiver: &'a Receiver,
    request: &'a TriggerRequest,
    service: Option<ServiceKey>,
    dedup_key: Option<DedupKey>,
}

impl Draft<'_> {
    fn build(&self, outcome: Outcome, effect: Effect, reason: String, detail: String) -> Execution {
        let alerts = match &self.request.payload {
            TriggerPayload::Alertmanager(n) => n.alerts.clone(),
            TriggerPayload::Opaque | TriggerPayload::Registry { .. } => Vec::new(),
        };
        Execution {
            id: self.id,
            receiver: self.receiver.id,
            service: self.service.clone(),
            at: now_millis(),
            source: self.request.source.clone(),
            outcome,
            effect,
            reason,
            detail,
            dry_run: self.request.dry_run,
            alerts,
            dedup_key: self.dedup_key,
        }
    }

    fn skip(&self, reason: SkipReason, detail: String) -> Execution {
        self.build(Outcome::Skipped, Effect::None, reason.as_str().to_owned(), detail)
    }
}

/// Records a trigger's decision when its backend is about to act on it.
struct TriggerJournal<'a> {
    store: &'a dyn Store,
    execution: Execution,
    committed: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Journal for TriggerJournal<'_> {
    async fn commit(&self, state: Option<StateWrite>) -> Result<(), BackendError> {
        self.store
            .record_execution(&self.execution, state.as_ref())
            .await
            .map_err(|e| BackendError::Unrecorded(e.to_string()))?;
        self.committed.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

impl Engine {
    /// `backend_concurrency`: calls in flight to one backend at most. `owner` names this
    /// hookd process in job leases.
    pub fn new(
        store: Arc<dyn Store>,
        backends: Arc<Backends>,
        pools: Arc<crate::hosts::Pools>,
        metrics: Arc<Metrics>,
        backend_concurrency: usize,
        owner: String,
    ) -> Self {
        // Resolved once: label lookups per trigger would allocate.
        let mut backend_metrics = HashMap::new();
        for backend in backends.all() {
            for operation in ["read_scale", "write_scale"] {
                let labels = BackendOpLabels { backend: backend.name().to_owned(), operation };
                let latency = metrics.backend_latency.get_or_create(&labels).clone();
                let errors = metrics.backend_errors.get_or_create(&labels).clone();
                backend_metrics
                    .entry(backend.name().to_owned())
                    .or_insert_with(HashMap::new)
                    .insert(operation, (latency, errors));
            }
        }
        let backend_concurrency = backend_concurrency.max(1);
        let backend_calls = backends
            .all()
            .iter()
            .map(|b| (b.name().to_owned(), Arc::new(tokio::sync::Semaphore::new(backend_concurrency))))
            .collect();
        let locks = Arc::new(ServiceLocks::new(store.clone()));
        let jobs = Arc::new(JobRunner::new(store.clone(), backends.clone(), pools.clone(), locks.clone(), owner));
        Self { store, backends, metrics, locks, jobs, pools, backend_metrics, backend_calls, backend_concurrency }
    }

    /// Resumes the jobs a previous run left unfinished (a restart, a kill -9).
    pub async fn resume_jobs(&self) -> Result<usize, StoreError> {
        self.jobs.resume().await
    }

    /// Runs `receiver` once for `request` and records what happened.
    pub async fn trigger(&self, receiver: &Receiver, request: &TriggerRequest) -> Result<Report, EngineError> {
        let started = Instant::now();
        let driver = receiver.config.driver().as_str();
        let draft = Draft { id: ExecutionId::generate(), receiver, request, service: None, dedup_key: None };
        let report = if !receiver.enabled {
            self.settle(draft.skip(SkipReason::Disabled, "the receiver is disabled".into())).await?
        } else {
            match &receiver.config {
                DriverConfig::ScaleService(config) => self.scale_service(config, draft).await?,
                DriverConfig::ServiceUpgrade(config) => self.service_upgrade(config, draft).await?,
                DriverConfig::ScaleHost(config) => self.scale_host(config, draft).await?,
            }
        };
        let e = &report.execution;
        let reason = match e.outcome {
            Outcome::Skipped => SkipReason::ALL.iter().find(|r| r.as_str() == e.reason).map_or("", |r| r.as_str()),
            _ => "",
        };
        let dry_run = if e.dry_run { "true" } else { "false" };
        self.metrics
            .triggers
            .get_or_create(&TriggerLabels { driver, outcome: e.outcome.as_str(), reason, dry_run })
            .inc();
        self.metrics.trigger_latency.get_or_create(&DriverLabels { driver }).observe(started.elapsed().as_secs_f64());
        Ok(report)
    }

    async fn scale_service(&self, config: &ScaleServiceConfig, mut draft: Draft<'_>) -> Result<Report, EngineError> {
        let receiver = draft.receiver;
        let notification: Option<&Notification> = match &draft.request.payload {
            TriggerPayload::Alertmanager(n) => Some(n),
            TriggerPayload::Opaque | TriggerPayload::Registry { .. } => None,
        };
        let backend = self
            .backends
            .for_project_fresh(&receiver.project, self.store.as_ref())
            .await?
            .ok_or_else(|| EngineError::NoBackend(receiver.project.to_string()))?;
        let service = backend.service_key(&config.service);
        draft.service = Some(service.clone());
        if let ScaleMode::Target(target) = &config.mode {
            return self.scale_to_target(config, target, backend.as_ref(), notification, draft).await;
        }
        let (direction, dedup) = match config.intent(notification, draft.request.idempotency_key) {
            Intent::Skip { reason, detail } => return self.settle(draft.skip(reason, detail)).await,
            Intent::Step { direction, dedup } => (direction, dedup),
        };
        draft.dedup_key = dedup.map(|d| d.key);
        // An upgrade may hold the service for minutes: answer "busy, retry" rather than
        // hang, and never act later for a caller that has been answered.
        let Some(_serialized) = self.locks.acquire(&service, SERVICE_WAIT).await? else {
            return Err(EngineError::Busy(config.service.to_string()));
        };
        // Ids sort in the order the service's decisions were made, not the order triggers came.
        draft.id = ExecutionId::generate();
        if !self.still_enabled(receiver).await? {
            return self.settle(draft.skip(SkipReason::Disabled, "the receiver is disabled".into())).await;
        }

        let now = now_millis();
        let history = History {
            last_change: match config.cooldown(direction, notification.is_some()) {
                0 => None,
                _ => self.store.last_change(&service).await?,
            },
            last_same: match &dedup {
                Some(d) => {
                    let since = now - i64::from(d.window_seconds) * 1000;
                    self.store.last_decided(receiver.id, &d.key, since).await?
                }
                None => None,
            },
        };
        if let Some((reason, detail)) = config.timing(direction, now, dedup.as_ref(), notification.is_some(), history) {
            return self.settle(draft.skip(reason, detail)).await;
        }
        let plan = |current| match config.decide(direction, current) {
            ScaleDecision::Unchanged { at, reason } => {
                Plan::Settle { outcome: Outcome::Unchanged, at, reason, detail: String::new() }
            }
            ScaleDecision::Refused { at, reason, detail } => {
                Plan::Settle { outcome: Outcome::Refused, at, reason, detail }
            }
            ScaleDecision::Scale { from, to, reason } => Plan::Write { from, to, reason, detail: String::new() },
        };
        self.step(backend.as_ref(), &config.service, &draft, plan).await
    }

    /// Reads the receiver again under its service's lock: a delete or regenerate that
    /// returned while this trigger waited (here or on another replica) stops it (`Revoked`);
    /// `false` when it was disabled meanwhile.
    async fn still_enabled(&self, receiver: &Receiver) -> Result<bool, EngineError> {
        match self.store.receiver(receiver.id).await? {
            Some(now) if now.token_generation == receiver.token_generation => Ok(now.enabled),
            _ => Err(EngineError::Revoked),
        }
    }

    /// Starts a job (202): recorded with the execution that started it, then run. A dry run
    /// records the decision only.
    async fn start_job(
        &self,
        draft: &Draft<'_>,
        (backend, kind, rollout): (String, JobKind, Rollout),
        steps: Vec<JobStep>,
        reason: String,
        detail: String,
    ) -> Result<Report, EngineError> {
        if draft.request.dry_run {
            return self.settle(draft.build(Outcome::Started, Effect::None, reason, detail)).await;
        }
        let now = now_millis();
        let receiver = draft.receiver;
        let job = Job {
            id: JobId::generate(),
            receiver: receiver.id,
            project: receiver.project.clone(),
            execution: draft.id,
            backend,
            kind,
            state: JobState::Running,
            rollout,
            steps,
            error: None,
            created: now,
            updated: now,
            finished: None,
        };
        let execution = draft.build(Outcome::Started, Effect::Job(job.id), reason, detail);
        self.store.save_job(&job, Some(&execution)).await?;
        tracing::info!(job = %job.id, receiver = %receiver.id, steps = job.steps.len(), "started a job");
        self.jobs.spawn(job);
        Ok(Report { execution, retry: false })
    }

    /// Records a decision that acted on nothing.
    async fn settle(&self, execution: Execution) -> Result<Report, EngineError> {
        self.store.record_execution(&execution, None).await?;
        Ok(Report { execution, retry: false })
    }

    /// Read, decide (`plan` on the current scale), record and write (unless a dry run); on
    /// a lost race, read again.
    async fn step(
        &self,
        backend: &dyn Backend,
        service: &ServiceId,
        draft: &Draft<'_>,
        plan: impl Fn(u32) -> Plan,
    ) -> Result<Report, EngineError> {
        let mut conflicts = 0;
        loop {
            let state = match self.timed(backend, "read_scale", backend.read_scale(service)).await {
                Ok(state) => state,
                Err(e) => return self.failed(draft, e).await,
            };
            let (from, to, reason, detail) = match plan(state.scale) {
                Plan::Settle { outcome, at, reason, detail } => {
                    return self.settle(draft.build(outcome, Effect::Scale { from: at, to: at }, reason, detail)).await;
                }
                Plan::Write { from, to, reason, detail } => (from, to, reason, detail),
            };
            let scaled = draft.build(Outcome::Scaled, Effect::Scale { from, to }, reason, detail);
            if draft.request.dry_run {
                return self.settle(scaled).await;
            }
            let journal = TriggerJournal { store: self.store.as_ref(), execution: scaled, committed: false.into() };
            let write = backend.write_scale(service, state, to, &journal);
            match self.timed(backend, "write_scale", write).await {
                Ok(()) => {
                    if !journal.committed.into_inner() {
                        // A backend that forgot its journal: record after the fact.
                        self.store.record_execution(&journal.execution, None).await?;
                    }
                    return Ok(Report { execution: journal.execution, retry: false });
                }
                Err(BackendError::Conflict) if conflicts < CONFLICT_RETRIES => conflicts += 1,
                Err(BackendError::Unrecorded(cause)) => return Err(EngineError::Store(StoreError::Unavailable(cause))),
                Err(e) => return self.failed(draft, e).await,
            }
        }
    }

    /// Records a backend failure; it replaces a recorded intent, which then no longer counts.
    async fn failed(&self, draft: &Draft<'_>, error: BackendError) -> Result<Report, EngineError> {
        let retry = matches!(error, BackendError::Unavailable(_) | BackendError::Conflict);
        let execution = draft.build(Outcome::Failed, Effect::None, error.to_string(), String::new());
        if let Err(e) = self.store.record_execution(&execution, None).await {
            tracing::error!(execution = %execution.id, error = %e, "could not record a failed action; \
                if its intent was recorded, the history shows a change that did not happen");
            return Err(e.into());
        }
        Ok(Report { execution, retry })
    }

    async fn timed<T>(
        &self,
        backend: &dyn Backend,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let _slot = match self.backend_calls.get(backend.name()) {
            Some(slots) => match tokio::time::timeout(BACKEND_SLOT_WAIT, slots.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    return Err(BackendError::Unavailable(format!(
                        "{} calls to backend {} are in flight (its limit) and none ended within {} s",
                        self.backend_concurrency,
                        backend.name(),
                        BACKEND_SLOT_WAIT.as_secs()
                    )))
                }
            },
            None => None,
        };
        let started = Instant::now();
        let result = call.await;
        let elapsed = started.elapsed().as_secs_f64();
        match self.backend_metrics.get(backend.name()).and_then(|ops| ops.get(operation)) {
            Some((latency, errors)) => {
                latency.observe(elapsed);
                if result.is_err() {
                    errors.inc();
                }
            }
            None => {
                let labels = BackendOpLabels { backend: backend.name().to_owned(), operation };
                self.metrics.backend_latency.get_or_create(&labels).observe(elapsed);
                if result.is_err() {
                    self.metrics.backend_errors.get_or_create(&labels).inc();
                }
            }
        }
        result
    }
}
