//! The `local` backend: services are process groups that hookd itself supervises.
//!
//! Each service has a `supervisor` task that owns its child processes and converges them
//! on the desired scale. A new desired scale is written to the store in the same
//! transaction as the decision that changed it, before it takes effect, so a restarted
//! hookd brings back the same number of processes and a retried trigger sees the decision.

mod containment;
pub mod keeper;
mod supervisor;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use self::containment::Cgroups;
mod rollout;

use self::supervisor::{Containment, Replace, ServiceSpec, SharedState, Supervisor};
use super::{Backend, BackendError, Journal, RolloutObserver, RolloutPlan, ScaleState, ServiceInfo};
use crate::{
    config::{BackendConfig, MAX_LOCAL_SCALE},
    domain::ServiceId,
    store::{StateWrite, Store},
};

struct LocalService {
    spec: Arc<ServiceSpec>,
    shared: Arc<std::sync::Mutex<SharedState>>,
    desired: watch::Sender<u32>,
    replaces: tokio::sync::mpsc::UnboundedSender<Replace>,
    /// Serializes scale writes so the version check and the persisted value agree.
    write_lock: tokio::sync::Mutex<()>,
}

pub struct LocalBackend {
    name: String,
    store: Arc<dyn Store>,
    services: HashMap<ServiceId, LocalService>,
    order: Vec<ServiceId>,
    shutdown: CancellationToken,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    cgroups: Option<Arc<Cgroups>>,
}

/// Kills whatever a previous run of this data directory left running (its keepers died
/// with it, or were killed too). Call once, before any local backend starts.
pub async fn reap_leftovers(instance: &str, cgroups: Option<Arc<Cgroups>>) -> anyhow::Result<()> {
    let instance = instance.to_owned();
    let reaped =
        tokio::task::spawn_blocking(move || containment::reap_leftovers(&instance, cgroups.as_deref())).await?;
    if reaped > 0 {
        tracing::warn!(processes = reaped, "killed processes left running by a previous hookd on this data directory");
    }
    Ok(())
}

impl LocalBackend {
    /// `instance`: the data directory's id; `cgroups`: this hookd's cgroup subtree, if any.
    pub async fn start(
        config: &BackendConfig,
        store: Arc<dyn Store>,
        instance: &str,
        cgroups: Option<&Cgroups>,
    ) -> anyhow::Result<Self> {
        let persisted = store.local_scales(&config.name).await?;
        let images = store.local_images(&config.name).await?;
        let cgroups = match cgroups.filter(|_| config.cgroups) {
            Some(root) => match root.for_backend(&config.name) {
                Ok(subtree) => Some(Arc::new(subtree)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not create the backend's cgroup; using process groups only");
                    None
                }
            },
            None => None,
        };
        let containment = Arc::new(Containment {
            instance: instance.to_owned(),
            keeper: config.keeper_binary.clone().unwrap_or_else(|| "/proc/self/exe".into()),
            cgroups: cgroups.clone(),
        });
        let shutdown = CancellationToken::new();
        let grace = Duration::from_secs(config.stop_grace_seconds);
        let mut services = HashMap::new();
        let mut order = Vec::new();
        let mut tasks = Vec::new();
        for s in &config.services {
            let id = ServiceId::parse(&s.name)?;
            let desired = persisted.get(&s.name).copied().unwrap_or(s.scale);
            let spec = Arc::new(ServiceSpec::from_config(s));
            let image = images.get(&s.name).cloned().unwrap_or_else(|| s.image.clone());
            let shared = Arc::new(std::sync::Mutex::new(SharedState { desired, image, ..SharedState::default() }));
            let (tx, rx) = watch::channel(desired);
            let (replaces, replace_rx) = tokio::sync::mpsc::unbounded_channel();
            let supervisor = Supervisor::new(
                spec.clone(),
                containment.clone(),
                shared.clone(),
                rx,
                replace_rx,
                grace,
                shutdown.clone(),
            );
            tasks.push(tokio::spawn(supervisor.run()));
            let service = LocalService { spec, shared, desired: tx, replaces, write_lock: Default::default() };
            services.insert(id.clone(), service);
            order.push(id);
        }
        let tasks = std::sync::Mutex::new(tasks);
        Ok(Self { name: config.name.clone(), store, services, order, shutdown, tasks, cgroups })
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
            image: shared.image.clone(),
            labels: service.spec.labels.clone(),
            other_images: Vec::new(),
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

    async fn write_scale(
        &self,
        id: &ServiceId,
        expected: ScaleState,
        scale: u32,
        journal: &dyn Journal,
    ) -> Result<(), BackendError> {
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
        let state = StateWrite::LocalScale { backend: self.name.clone(), service: id.to_string(), scale };
        journal.commit(Some(state)).await?;
        {
            let mut shared = service.shared.lock().expect("supervisor state lock");
            shared.desired = scale;
            shared.version += 1;
        }
        service.desired.send_replace(scale);
        Ok(())
    }

    fn can_upgrade(&self) -> bool {
        true
    }

    async fn upgrade(
        &self,
        id: &ServiceId,
        image: &str,
        plan: RolloutPlan,
        observer: &dyn RolloutObserver,
    ) -> Result<(), BackendError> {
        let service = self.get(id)?;
        // Durable first: a hookd restarted mid-rollout starts every replica on the new image.
        let state = StateWrite::LocalImage { backend: self.name.clone(), service: id.to_string(), image: image.into() };
        self.store.save_state(&state).await.map_err(|e| BackendError::Unrecorded(e.to_string()))?;
        service.shared.lock().expect("supervisor state lock").image = image.to_owned();
        rollout::roll(&service.shared, &service.replaces, image, plan, observer).await
    }

    async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("task list lock"));
        for task in tasks {
            let _ = task.await;
        }
        if let Some(cgroups) = self.cgroups.clone() {
            let _ = tokio::task::spawn_blocking(move || cgroups.remove_root()).await;
        }
    }
}
