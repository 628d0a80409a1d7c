//! The trigger path: run a receiver's action and record the decision.
//!
//! Triggers on one service are serialized by a per-service lock held from reading the
//! history and the scale to recording the execution, so concurrent "up" triggers never lose
//! an update or step past max, and dedup and cooldown see every earlier decision. Writes
//! use the backend's optimistic concurrency as a second guard against changes made behind
//! hookd's back.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::{
    backend::{Backend, BackendError, Backends},
    domain::{
        now_millis, DriverConfig, Execution, ExecutionId, History, Intent, Notification, Outcome, Receiver,
        ScaleAction, ScaleDecision, ScaleServiceConfig, ServiceId, SkipReason,
    },
    metrics::{BackendOpLabels, DriverLabels, Metrics, TriggerLabels},
    payload::TriggerPayload,
    store::{Store, StoreError},
};

/// Retries of a scale write that lost an optimistic-concurrency race.
const CONFLICT_RETRIES: u32 = 8;

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
}

type ServiceKey = (String, ServiceId);

/// One async mutex per (backend, service); entries live as long as hookd (services are few).
#[derive(Default)]
struct ServiceLocks {
    locks: Mutex<HashMap<ServiceKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl ServiceLocks {
    fn get(&self, backend: &str, service: &ServiceId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("service lock table");
        locks.entry((backend.to_owned(), service.clone())).or_default().clone()
    }
}

pub struct Engine {
    store: Arc<dyn Store>,
    backends: Arc<Backends>,
    metrics: Arc<Metrics>,
    locks: ServiceLocks,
}

/// One trigger, as the HTTP layer hands it over.
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    /// Who sent it: the peer address and user agent, for the history.
    pub source: String,
    pub payload: TriggerPayload,
    /// Decide and record, but act on nothing.
    pub dry_run: bool,
}

/// The execution being built for one trigger.
struct Draft<'a> {
    receiver: &'a Receiver,
    request: &'a TriggerRequest,
    dedup_key: Option<String>,
}

impl Draft<'_> {
    fn finish(self, outcome: Outcome, from: Option<u32>, to: Option<u32>, reason: String, detail: String) -> Execution {
        let alerts = match &self.request.payload {
            TriggerPayload::Alertmanager(n) => n.alerts.clone(),
            TriggerPayload::Opaque => Vec::new(),
        };
        Execution {
            id: ExecutionId::generate(),
            receiver: self.receiver.id,
            at: now_millis(),
            source: self.request.source.clone(),
            outcome,
            from,
            to,
            reason,
            detail,
            dry_run: self.request.dry_run,
            alerts,
            dedup_key: self.dedup_key,
        }
    }

    fn skip(self, reason: SkipReason, detail: String) -> Execution {
        self.finish(Outcome::Skipped, None, None, reason.as_str().to_owned(), detail)
    }
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, backends: Arc<Backends>, metrics: Arc<Metrics>) -> Self {
        Self { store, backends, metrics, locks: ServiceLocks::default() }
    }

    /// Runs `receiver` once for `request` and records what happened.
    pub async fn trigger(&self, receiver: &Receiver, request: &TriggerRequest) -> Result<Report, EngineError> {
        let started = Instant::now();
        let driver = receiver.config.driver().as_str();
        let draft = Draft { receiver, request, dedup_key: None };
        let report = if !receiver.enabled {
            let execution = draft.skip(SkipReason::Disabled, "the receiver is disabled".into());
            self.store.record_execution(&execution).await?;
            Report { execution, retry: false }
        } else {
            match &receiver.config {
                DriverConfig::ScaleService(config) => self.scale_service(config, draft).await?,
            }
        };
        let e = &report.execution;
        let reason = if e.outcome == Outcome::Skipped { e.reason.clone() } else { String::new() };
        self.metrics
            .triggers
            .get_or_create(&TriggerLabels {
                driver: driver.to_owned(),
                outcome: e.outcome.as_str().to_owned(),
                reason,
                dry_run: e.dry_run.to_string(),
            })
            .inc();
        self.metrics
            .trigger_latency
            .get_or_create(&DriverLabels { driver: driver.to_owned() })
            .observe(started.elapsed().as_secs_f64());
        Ok(report)
    }

    async fn scale_service(&self, config: &ScaleServiceConfig, mut draft: Draft<'_>) -> Result<Report, EngineError> {
        let receiver = draft.receiver;
        let notification: Option<&Notification> = match &draft.request.payload {
            TriggerPayload::Alertmanager(n) => Some(n),
            TriggerPayload::Opaque => None,
        };
        let (direction, dedup_key) = match config.intent(notification) {
            Intent::Skip { reason, detail } => {
                let execution = draft.skip(reason, detail);
                self.store.record_execution(&execution).await?;
                return Ok(Report { execution, retry: false });
            }
            Intent::Step { direction, dedup_key } => (direction, dedup_key),
        };
        draft.dedup_key = dedup_key;
        let backend = self
            .backends
            .for_project(&receiver.project)
            .ok_or_else(|| EngineError::NoBackend(receiver.project.to_string()))?;
        let lock = self.locks.get(backend.name(), &config.service);
        let _serialized = lock.lock().await;

        let history = History {
            last_change: match config.cooldown(direction) {
                0 => None,
                _ => self.store.last_change(receiver.id).await?,
            },
            last_same: match &draft.dedup_key {
                Some(key) => self.store.last_decided(receiver.id, key).await?,
                None => None,
            },
        };
        let execution = if let Some((reason, detail)) = config.timing(direction, now_millis(), history) {
            draft.skip(reason, detail)
        } else {
            match self.step(backend.as_ref(), config, direction, draft.request.dry_run).await {
                Ok(ScaleDecision::Scale { from, to, reason }) => {
                    draft.finish(Outcome::Scaled, Some(from), Some(to), reason, String::new())
                }
                Ok(ScaleDecision::Unchanged { at, reason }) => {
                    draft.finish(Outcome::Unchanged, Some(at), Some(at), reason, String::new())
                }
                Err(e) => {
                    let retry = matches!(e, BackendError::Unavailable(_) | BackendError::Conflict);
                    let execution = draft.finish(Outcome::Failed, None, None, e.to_string(), String::new());
                    self.store.record_execution(&execution).await?;
                    return Ok(Report { execution, retry });
                }
            }
        };
        self.store.record_execution(&execution).await?;
        Ok(Report { execution, retry: false })
    }

    /// Read, decide, write (unless a dry run); on a lost race, read again.
    async fn step(
        &self,
        backend: &dyn Backend,
        config: &ScaleServiceConfig,
        direction: ScaleAction,
        dry_run: bool,
    ) -> Result<ScaleDecision, BackendError> {
        let mut conflicts = 0;
        loop {
            let state = self.timed(backend, "read_scale", backend.read_scale(&config.service)).await?;
            let decision = config.decide(direction, state.scale);
            let ScaleDecision::Scale { to, .. } = &decision else {
                return Ok(decision);
            };
            if dry_run {
                return Ok(decision);
            }
            match self.timed(backend, "write_scale", backend.write_scale(&config.service, state, *to)).await {
                Ok(()) => return Ok(decision),
                Err(BackendError::Conflict) if conflicts < CONFLICT_RETRIES => conflicts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn timed<T>(
        &self,
        backend: &dyn Backend,
        operation: &str,
        call: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let labels = BackendOpLabels { backend: backend.name().to_owned(), operation: operation.to_owned() };
        let started = Instant::now();
        let result = call.await;
        self.metrics.backend_latency.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.backend_errors.get_or_create(&labels).inc();
        }
        result
    }
}
