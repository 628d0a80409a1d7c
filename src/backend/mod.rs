//! Backends: the orchestrators hookd drives, behind one trait.
//!
//! Drivers decide *what* to do; a backend only knows how to read and change services.
//! Backends never see HTTP types or receivers.

pub mod docker;
pub mod kubernetes;
pub mod local;

use std::{collections::BTreeMap, collections::HashMap, sync::Arc};

use async_trait::async_trait;

use crate::{
    config::{BackendKind, Config},
    datadir::DataDirLock,
    domain::{ProjectName, ServiceId, ServiceKey},
    store::{StateWrite, Store},
};

/// A service as a backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub id: ServiceId,
    /// What kind of workload: `process` (local), `swarm`, `swarm-global`, `compose`,
    /// `deployment`, `statefulset`.
    pub kind: &'static str,
    /// Desired scale: what the orchestrator is asked to run.
    pub desired: u32,
    /// Replicas actually running now.
    pub running: u32,
    pub image: String,
    /// The images of a workload's other containers (Kubernetes sidecars), which an
    /// upgrade may target too.
    pub other_images: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The last problem seen running it (a failed start, a crash), for people.
    pub last_error: Option<String>,
}

/// A desired scale with the version it was read at, for optimistic concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleState {
    pub scale: u32,
    pub version: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("service {0} does not exist on this backend")]
    ServiceNotFound(ServiceId),
    /// The scale changed between read and write; read again and retry.
    #[error("the service's scale changed concurrently")]
    Conflict,
    /// The service exists but cannot take this action (a global service, say).
    #[error("{0}")]
    Refused(String),
    /// The backend could not be reached or failed; a retry may succeed.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The decision could not be recorded, so nothing was done; a retry is safe.
    #[error("the decision could not be recorded: {0}")]
    Unrecorded(String),
}

/// Makes the decision behind a scale write durable, so that a trigger retried after any
/// failure finds it and never steps twice.
///
/// A backend calls [`Journal::commit`] once it knows the write can go ahead and before the
/// change takes effect. A backend whose state lives in hookd's own store (`local`) passes
/// that state, and the decision and the change become durable in one transaction; the
/// others commit the decision first, then act. If `commit` fails, the backend must not act.
#[async_trait]
pub trait Journal: Send + Sync {
    async fn commit(&self, state: Option<StateWrite>) -> Result<(), BackendError>;
}

/// How to roll a service onto a new image: `batch_size` replicas at a time, `interval`
/// between batches, and whether a new replica starts before an old one stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPlan {
    pub batch_size: u32,
    pub interval: std::time::Duration,
    pub start_first: bool,
}

/// Where a rollout stands: replicas on the new image out of all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RolloutProgress {
    pub updated: u32,
    pub total: u32,
}

/// Told of a rollout's progress as it goes (a job stores it).
#[async_trait]
pub trait RolloutObserver: Send + Sync {
    async fn progress(&self, progress: RolloutProgress);
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn kind(&self) -> &'static str;
    async fn list_services(&self) -> Result<Vec<ServiceInfo>, BackendError>;
    async fn service(&self, id: &ServiceId) -> Result<ServiceInfo, BackendError>;
    /// Checks that a scaleService receiver may target this service.
    async fn check_scalable(&self, id: &ServiceId) -> Result<(), BackendError> {
        self.service(id).await.map(|_| ())
    }
    /// Checks that the service can be scaled to 0 and back (a receiver's `min: 0`).
    async fn check_zero(&self, id: &ServiceId) -> Result<(), BackendError> {
        let _ = id;
        Ok(())
    }
    /// The one spelling of a service id that names it (`web` → `deployment/web`), so that
    /// receivers naming one service differently share its lock, cooldown and history.
    fn canonical(&self, id: &ServiceId) -> ServiceId {
        id.clone()
    }
    /// What per-service rules (lock, cooldown, history) key on: one key per workload.
    fn service_key(&self, id: &ServiceId) -> ServiceKey {
        ServiceKey::new(self.name(), id)
    }
    /// Another controller that sets this service's scale (a Kubernetes HPA), by name.
    async fn autoscaled_by(&self, id: &ServiceId) -> Result<Option<String>, BackendError> {
        let _ = id;
        Ok(None)
    }
    /// This backend as one project sees it: a Kubernetes backend in the project's
    /// namespace (`namespace`, or its default). `None`: the same for every project. Why a
    /// project cannot use it, for people.
    fn scoped(
        &self,
        project: &ProjectName,
        namespace: Option<&str>,
        made_through_api: bool,
    ) -> Result<Option<Arc<dyn Backend>>, String> {
        let _ = (project, namespace, made_through_api);
        Ok(None)
    }
    async fn read_scale(&self, id: &ServiceId) -> Result<ScaleState, BackendError>;
    /// Sets the desired scale if it is still at `expected`; `Conflict` otherwise. Calls
    /// `journal.commit` exactly once before the change takes effect (see [`Journal`]).
    async fn write_scale(
        &self,
        id: &ServiceId,
        expected: ScaleState,
        scale: u32,
        journal: &dyn Journal,
    ) -> Result<(), BackendError>;
    /// Whether [`Backend::upgrade`] works here; a serviceUpgrade receiver is refused at
    /// creation on a backend without it.
    fn can_upgrade(&self) -> bool {
        false
    }
    /// Rolls every replica of `id` onto `image` (a reference the backend can run, such as
    /// `registry:5000/team/app:v2`), in batches per `plan`, and returns once all run it.
    /// Idempotent: replicas already on `image` are left alone, so a job resumed after a
    /// restart calls it again. A failed rollout is `Refused` with the engine's reason.
    async fn upgrade(
        &self,
        id: &ServiceId,
        image: &str,
        plan: RolloutPlan,
        observer: &dyn RolloutObserver,
    ) -> Result<(), BackendError> {
        let _ = (image, plan, observer);
        Err(BackendError::Refused(format!("the {} backend cannot upgrade {id}", self.kind())))
    }
    /// Stops whatever the backend runs in-process (the local supervisor's children).
    async fn shutdown(&self);
}

/// `backend` as `project` sees it (see [`Backend::scoped`]).
fn scope(
    backend: &Arc<dyn Backend>,
    project: &ProjectName,
    namespace: Option<&str>,
    made_through_api: bool,
) -> Result<Arc<dyn Backend>, String> {
    Ok(backend.scoped(project, namespace, made_through_api)?.unwrap_or_else(|| backend.clone()))
}

/// Every configured backend, and which one each project is bound to.
pub struct Backends {
    all: Vec<Arc<dyn Backend>>,
    /// Projects of the config file, then those created through the API (which can come and go).
    by_project: std::sync::RwLock<HashMap<ProjectName, Arc<dyn Backend>>>,
    /// Projects defined in the config file: they cannot be deleted through the API.
    configured: std::collections::HashSet<ProjectName>,
    /// This data directory's cgroup subtree, removed at shutdown.
    cgroups: Option<Arc<local::Cgroups>>,
}

impl Backends {
    pub async fn start(config: &Config, store: Arc<dyn Store>, data_dir: &DataDirLock) -> anyhow::Result<Self> {
        let instance = data_dir.instance_id();
        let locals: Vec<_> = config.backends.iter().filter(|b| b.kind == BackendKind::Local).collect();
        let cgroups = match locals.iter().any(|b| b.cgroups) {
            true => local::Cgroups::detect(&instance).map(Arc::new),
            false => None,
        };
        if !locals.is_empty() {
            // Local processes run on this machine: two replicas on one database would each
            // run them, and fight over one desired scale.
            if !store.claim_local_backend().await? {
                anyhow::bail!(
                    "another hookd on this database runs the local backend {:?}; the local backend runs processes \
                     on one machine, so only one hookd sharing a database may have it (give the others docker \
                     backends only, or their own SQLite database)",
                    locals[0].name
                );
            }
            local::reap_leftovers(&instance, cgroups.clone()).await?;
        }
        let mut by_name: HashMap<&str, Arc<dyn Backend>> = HashMap::new();
        let mut all = Vec::new();
        for b in &config.backends {
            let backend: Arc<dyn Backend> = match b.kind {
                BackendKind::Local => {
                    Arc::new(local::LocalBackend::start(b, store.clone(), &instance, cgroups.as_deref()).await?)
                }
                BackendKind::Docker => Arc::new(docker::DockerBackend::start(b).await?),
                BackendKind::Kubernetes => Arc::new(kubernetes::KubernetesBackend::start(b).await?),
            };
            by_name.insert(&b.name, backend.clone());
            all.push(backend);
        }
        let by_project: HashMap<ProjectName, Arc<dyn Backend>> = config
            .projects
            .iter()
            .map(|p| {
                let name = ProjectName::parse(&p.name)?;
                let backend = scope(&by_name[p.backend.as_str()], &name, p.namespace.as_deref(), false)
                    .map_err(|e| anyhow::anyhow!("project {:?}: {e}", p.name))?;
                Ok((name, backend))
            })
            .collect::<anyhow::Result<_>>()?;
        let configured = by_project.keys().cloned().collect();
        let backends = Self { all, by_project: std::sync::RwLock::new(by_project), configured, cgroups };
        backends.bind_stored(store.projects().await?, true);
        Ok(backends)
    }

    /// Binds the projects made through the API to their backends, and unbinds those
    /// deleted since (by another hookd on the same database); `warn` on the first pass.
    pub fn bind_stored(&self, stored: Vec<crate::store::StoredProject>, warn: bool) {
        let mut by_project = self.by_project.write().expect("not poisoned");
        by_project.retain(|name, _| self.configured.contains(name) || stored.iter().any(|s| &s.name == name));
        for stored in stored {
            match self.by_name(&stored.backend) {
                _ if self.configured.contains(&stored.name) && warn => {
                    tracing::warn!(project = %stored.name, "a project made through the API is also in the config file; the config's wins");
                }
                _ if self.configured.contains(&stored.name) => {}
                Some(backend) => match scope(backend, &stored.name, None, true) {
                    Ok(backend) => {
                        by_project.insert(stored.name, backend);
                    }
                    Err(e) if warn => {
                        tracing::warn!(project = %stored.name, error = %e, "a project cannot use its backend")
                    }
                    Err(_) => {}
                },
                None if warn => tracing::warn!(
                    project = %stored.name, backend = %stored.backend,
                    "a project's backend is not in the config file; its receivers are refused until it is back"
                ),
                None => {}
            }
        }
    }

    pub fn for_project(&self, project: &ProjectName) -> Option<Arc<dyn Backend>> {
        self.by_project.read().expect("not poisoned").get(project).cloned()
    }

    /// Like [`Backends::for_project`]; with a shared store, a project not known here is
    /// looked for in the store first (another hookd may have made it a moment ago).
    pub async fn for_project_fresh(
        &self,
        project: &ProjectName,
        store: &dyn Store,
    ) -> crate::store::StoreResult<Option<Arc<dyn Backend>>> {
        if let Some(backend) = self.for_project(project) {
            return Ok(Some(backend));
        }
        if store.shared() {
            self.bind_stored(store.projects().await?, false);
        }
        Ok(self.for_project(project))
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.all.iter().find(|b| b.name() == name)
    }

    /// Every project and its backend, by name.
    pub fn projects(&self) -> Vec<(ProjectName, Arc<dyn Backend>)> {
        let mut all: Vec<_> =
            self.by_project.read().expect("not poisoned").iter().map(|(p, b)| (p.clone(), b.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn is_configured(&self, project: &ProjectName) -> bool {
        self.configured.contains(project)
    }

    /// Binds a project made through the API (already stored) to its backend.
    pub fn add_project(&self, project: ProjectName, backend: Arc<dyn Backend>) {
        self.by_project.write().expect("not poisoned").insert(project, backend);
    }

    /// The backend named `backend` as `project` would use it; why not, for people.
    pub fn scoped(&self, backend: &str, project: &ProjectName) -> Option<Result<Arc<dyn Backend>, String>> {
        self.by_name(backend).map(|b| scope(b, project, None, true))
    }

    /// Unbinds a project deleted through the API.
    pub fn remove_project(&self, project: &ProjectName) {
        self.by_project.write().expect("not poisoned").remove(project);
    }

    pub fn all(&self) -> &[Arc<dyn Backend>] {
        &self.all
    }

    pub async fn shutdown(&self) {
        for backend in &self.all {
            backend.shutdown().await;
        }
        if let Some(cgroups) = self.cgroups.clone() {
            let _ = tokio::task::spawn_blocking(move || cgroups.remove_root()).await;
        }
    }
}
