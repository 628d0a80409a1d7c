//! The trigger path: run a receiver's action and record the decision.
//!
//! Triggers on one service are serialized by a per-service lock held from reading the
//! scale to recording the execution, so concurrent "up" triggers never lose an update or
//! step past max. Writes use the backend's optimistic concurrency as a second guard against
//! changes made behind hookd's back.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::{
    backend::{Backend, BackendError, Backends},
    domain::{
        now_millis, DriverConfig, Execution, ExecutionId, Outcome, Receiver, ScaleDecision, ScaleServiceConfig,
        ServiceId,
    },
    metrics::{BackendOpLabels, DriverLabels, Metrics, TriggerLabels},
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

impl Engine {
    pub fn new(store: Arc<dyn Store>, backends: Arc<Backends>, metrics: Arc<Metrics>) -> Self {
        Self { store, backends, metrics, locks: ServiceLocks::default() }
    }

    /// Runs `receiver` once for a trigger from `source` and records what happened.
    pub async fn trigger(&self, receiver: &Receiver, source: String) -> Result<Report, EngineError> {
        let started = Instant::now();
        let driver = receiver.config.driver().as_str();
        let report = if !receiver.enabled {
            let execution =
                new_execution(receiver, source, Outcome::Skipped, None, None, "receiver is disabled".into());
            self.store.record_execution(&execution).await?;
            Report { execution, retry: false }
        } else {
            match &receiver.config {
                DriverConfig::ScaleService(config) => self.scale_service(receiver, config, source).await?,
            }
        };
        self.metrics
            .triggers
            .get_or_create(&TriggerLabels {
                driver: driver.to_owned(),
                outcome: report.execution.outcome.as_str().to_owned(),
            })
            .inc();
        self.metrics
            .trigger_latency
            .get_or_create(&DriverLabels { driver: driver.to_owned() })
            .observe(started.elapsed().as_secs_f64());
        Ok(report)
    }

    async fn scale_service(
        &self,
        receiver: &Receiver,
        config: &ScaleServiceConfig,
        source: String,
    ) -> Result<Report, EngineError> {
        let backend = self
            .backends
            .for_project(&receiver.project)
            .ok_or_else(|| EngineError::NoBackend(receiver.project.to_string()))?;
        let lock = self.locks.get(backend.name(), &config.service);
        let _serialized = lock.lock().await;
        let (outcome, from, to, reason, retry) = match self.step(backend.as_ref(), config).await {
            Ok(ScaleDecision::Scale { from, to, reason }) => (Outcome::Scaled, Some(from), Some(to), reason, false),
            Ok(ScaleDecision::Unchanged { at, reason }) => (Outcome::Unchanged, Some(at), Some(at), reason, false),
            Err(e) => {
                let retry = matches!(e, BackendError::Unavailable(_) | BackendError::Conflict);
                (Outcome::Failed, None, None, e.to_string(), retry)
            }
        };
        let execution = new_execution(receiver, source, outcome, from, to, reason);
        self.store.record_execution(&execution).await?;
        Ok(Report { execution, retry })
    }

    /// Read, decide, write; on a lost race, read again.
    async fn step(&self, backend: &dyn Backend, config: &ScaleServiceConfig) -> Result<ScaleDecision, BackendError> {
        let mut conflicts = 0;
        loop {
            let state = self.timed(backend, "read_scale", backend.read_scale(&config.service)).await?;
            let decision = config.decide(state.scale);
            let ScaleDecision::Scale { to, .. } = &decision else {
                return Ok(decision);
            };
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

fn new_execution(
    receiver: &Receiver,
    source: String,
    outcome: Outcome,
    from: Option<u32>,
    to: Option<u32>,
    reason: String,
) -> Execution {
    Execution {
        id: ExecutionId::generate(),
        receiver: receiver.id,
        at: now_millis(),
        source,
        outcome,
        from,
        to,
        reason,
    }
}
