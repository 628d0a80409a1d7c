//! Swarm services: scale = update `Replicas` at the service's version.
//!
//! The engine refuses an update made at a stale version ("update out of sequence"); that
//! becomes `BackendError::Conflict`, and the engine's caller reads again and retries, so a
//! concurrent `docker service scale` or another hookd replica never loses an update.

use std::collections::{BTreeMap, HashMap};

use bollard::{
    models::{Service, TaskState},
    query_parameters::{ListTasksOptions, UpdateServiceOptions},
};

use super::DockerBackend;
use crate::{
    backend::{BackendError, Journal, ScaleState, ServiceInfo},
    domain::ServiceId,
};

fn replicas(service: &Service) -> Option<u32> {
    let mode = service.spec.as_ref()?.mode.as_ref()?;
    mode.replicated.as_ref().map(|r| r.replicas.unwrap_or(1).max(0) as u32)
}

fn is_global(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.mode.as_ref()).is_some_and(|m| m.global.is_some())
}

/// Running tasks per service id.
async fn running_tasks(backend: &DockerBackend, service: Option<&str>) -> Result<HashMap<String, u32>, BackendError> {
    let mut filters = HashMap::from([("desired-state".to_owned(), vec!["running".to_owned()])]);
    if let Some(service) = service {
        filters.insert("service".to_owned(), vec![service.to_owned()]);
    }
    let tasks = backend
        .docker
        .list_tasks(Some(ListTasksOptions { filters: Some(filters) }))
        .await
        .map_err(|e| backend.error(e))?;
    let mut running = HashMap::new();
    for task in tasks {
        if task.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING) {
            *running.entry(task.service_id.unwrap_or_default()).or_insert(0) += 1;
        }
    }
    Ok(running)
}

fn info(service: &Service, running: &HashMap<String, u32>) -> Option<ServiceInfo> {
    let spec = service.spec.as_ref()?;
    let id = ServiceId::parse(spec.name.as_deref()?).ok()?;
    let running = running.get(service.id.as_deref().unwrap_or_default()).copied().unwrap_or(0);
    let image = spec.task_template.as_ref().and_then(|t| t.container_spec.as_ref()).and_then(|c| c.image.clone());
    Some(ServiceInfo {
        id,
        kind: if is_global(service) { "swarm-global" } else { "swarm" },
        // A global service runs one task per node: its "desired" is what runs.
        desired: replicas(service).unwrap_or(running),
        running,
        // Swarm pins images by digest; people recognise the tag.
        image: image.map(|i| i.split('@').next().unwrap_or_default().to_owned()).unwrap_or_default(),
        labels: spec.labels.clone().unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
        last_error: None,
    })
}

pub async fn list(backend: &DockerBackend) -> Result<Vec<ServiceInfo>, BackendError> {
    let services = backend.docker.list_services(None).await.map_err(|e| backend.error(e))?;
    let running = running_tasks(backend, None).await?;
    let mut out: Vec<ServiceInfo> = services.iter().filter_map(|s| info(s, &running)).collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

async fn inspect(backend: &DockerBackend, id: &ServiceId) -> Result<Service, BackendError> {
    backend.docker.inspect_service(id.as_str(), None).await.map_err(|e| backend.not_found_or(id, e))
}

pub async fn service(backend: &DockerBackend, id: &ServiceId) -> Result<ServiceInfo, BackendError> {
    let service = inspect(backend, id).await?;
    let running = running_tasks(backend, Some(id.as_str())).await?;
    info(&service, &running).ok_or_else(|| BackendError::ServiceNotFound(id.clone()))
}

pub async fn read_scale(backend: &DockerBackend, id: &ServiceId) -> Result<ScaleState, BackendError> {
    let service = inspect(backend, id).await?;
    let scale =
        replicas(&service).ok_or_else(|| BackendError::Refused(format!("{id} is not a replicated Swarm service")))?;
    let version = service.version.and_then(|v| v.index).unwrap_or(0);
    Ok(ScaleState { scale, version })
}

pub async fn write_scale(
    backend: &DockerBackend,
    id: &ServiceId,
    expected: ScaleState,
    scale: u32,
    journal: &dyn Journal,
) -> Result<(), BackendError> {
    let service = inspect(backend, id).await?;
    if service.version.as_ref().and_then(|v| v.index) != Some(expected.version) {
        return Err(BackendError::Conflict);
    }
    let mut spec = service.spec.ok_or_else(|| BackendError::ServiceNotFound(id.clone()))?;
    let replicated = spec
        .mode
        .as_mut()
        .and_then(|m| m.replicated.as_mut())
        .ok_or_else(|| BackendError::Refused(format!("{id} is not a replicated Swarm service")))?;
    replicated.replicas = Some(i64::from(scale));
    let version = i32::try_from(expected.version).map_err(|_| BackendError::Conflict)?;
    let options = UpdateServiceOptions { version, ..Default::default() };
    journal.commit(None).await?;
    backend.docker.update_service(id.as_str(), spec, options, None).await.map_err(|e| backend.not_found_or(id, e))?;
    Ok(())
}
