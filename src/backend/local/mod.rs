//! The `local` backend: services are process groups that hookd itself supervises.
//!
//! Each service has a `supervisor` task that owns its child processes and converges them
//! on the desired scale. A new desired scale is queued for the store before it takes
//! effect and is durable by the time the trigger that changed it is acknowledged (the store
//! commits in order), so a restarted hookd brings back the same number of processes.

mod supervisor;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::supervisor::{ServiceSpec, SharedState, Supervisor};
use super::{Backend, BackendError, ScaleState, ServiceInfo};
use crate::{
    config::{BackendConfig, MAX_LOCAL_SCALE},
    domain::ServiceId,
    store::Store,
};

struct LocalService {
    spec: Arc<ServiceSpec>,
    shared: Arc<std::sync::Mutex<SharedState>>,
    desired: watch::Sender<u32>,
    /// Serializes scale writes so the version check and the persisted value agree.
    write_lock: tokio::sync::Mutex<()>,
}

pub struct LocalBackend {
    name: String,
    services: HashMap<ServiceId, LocalService>,
    order: Vec<ServiceId>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl LocalBackend {
    pub async fn start(config: &BackendConfig, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let persisted = store.local_scales(&config.name).await?;
        let shutdown = CancellationToken::new();
        let grace = Duration::from_secs(config.stop_grace_seconds);
        let mut services = HashMap::new();
        let mut order = Vec::new();
        let mut tasks = Vec::new();
        for s in &config.services {
            let id = ServiceId::parse(&s.name)?;
            let desired = persisted.get(&s.name).copied().unwrap_or(s.scale);
            let spec = Arc::new(ServiceSpec::from_config(s));
            let shared = Arc::new(std::sync::Mutex::new(SharedState { desired, ..SharedState::default() }));
            let (tx, rx) = watch::channel(desired);
            let supervisor = Supervisor::new(spec.clone(), shared.clone(), rx, grace, shutdown.clone());
            tasks.push(tokio::spawn(supervisor.run()));
            services.insert(id.clone(), LocalService { spec, shared, desired: tx, write_lock: Default::default() });
            order.push(id);
        }
        Ok(Self { name: config.name.clone(), services, order, store, shutdown, tasks: std::sync::Mutex::new(tasks) })
    }

    fn get(&self, id: &ServiceId) -> Result<&LocalService, BackendError> {
        self.services.get(id).ok_or_else(|| BackendError::ServiceNotFound(id.clone()))
    }

    fn info(&self, id: &ServiceId, service: &LocalService) -> ServiceInfo {
        let shared = service.shared.lock().expect("supervisor state lock");
        ServiceInfo {
            id: id.clone(),
            kind: "process",
            desired: shared.desired,
            running: shared.running,
            image: service.spec.image.clone(),
            labels: service.spec.labels.clone(),
            last_error: shared.last_error.clone(),
        }
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    async fn list_services(&self) -> Result<Vec<ServiceInfo>, BackendError> {
        Ok(self.order.iter().map(|id| self.info(id, &self.services[id])).collect())
    }

    async fn service(&self, id: &ServiceId) -> Result<ServiceInfo, BackendError> {
        Ok(self.info(id, self.get(id)?))
    }

    async fn read_scale(&self, id: &ServiceId) -> Result<ScaleState, BackendError> {
        let shared = self.get(id)?.shared.lock().expect("supervisor state lock");
        Ok(ScaleState { scale: shared.desired, version: shared.version })
    }

    async fn write_scale(&self, id: &ServiceId, expected: ScaleState, scale: u32) -> Result<(), BackendError> {
        let service = self.get(id)?;
        if scale > MAX_LOCAL_SCALE {
            return Err(BackendError::Refused(format!(
                "the local backend runs at most {MAX_LOCAL_SCALE} processes per service"
            )));
        }
        let _guard = service.write_lock.lock().await;
        if service.shared.lock().expect("supervisor state lock").version != expected.version {
            return Err(BackendError::Conflict);
        }
        self.store
            .set_local_scale(&self.name, id.as_str(), scale)
            .await
            .map_err(|e| BackendError::Unavailable(format!("could not persist the desired scale: {e}")))?;
        {
            let mut shared = service.shared.lock().expect("supervisor state lock");
            shared.desired = scale;
            shared.version += 1;
        }
        service.desired.send_replace(scale);
        Ok(())
    }

    async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("task list lock"));
        for task in tasks {
            let _ = task.await;
        }
    }
}
