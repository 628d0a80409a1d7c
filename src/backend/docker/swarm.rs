//! Swarm services: scale = update `Replicas` at the service's version.
//!
//! The engine refuses an update made at a stale version ("update out of sequence"); that
//! becomes `BackendError::Conflict`, and the engine's caller reads again and retries, so a
//! concurrent `docker service scale` or another hookd replica never loses an update.
//!
//! An upgrade hands the rollout to Swarm (image and `update_config` in one update at the
//! service's version) and follows it: Swarm replaces the tasks, hookd reports and waits.

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use bollard::{
    models::{
        BollardDate, Service, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum as FailureAction,
        ServiceSpecUpdateConfigOrderEnum as Order, ServiceUpdateStatusStateEnum as UpdateState, Task, TaskState,
    },
    query_parameters::{ListTasksOptions, UpdateServiceOptions},
};

use super::{
    rollout::{same_image, POLL, STALL},
    DockerBackend,
};
use crate::{
    backend::{BackendError, Journal, RolloutObserver, RolloutPlan, RolloutProgress, ScaleState, ServiceInfo},
    domain::ServiceId,
};

/// Updates lost to a concurrent writer ("update out of sequence") before giving up.
const UPDATE_ATTEMPTS: u32 = 5;

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
        other_images: Vec::new(),
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

fn spec_image(service: &Service) -> Option<&str> {
    service.spec.as_ref()?.task_template.as_ref()?.container_spec.as_ref()?.image.as_deref()
}

fn task_image(task: &Task) -> Option<&str> {
    task.spec.as_ref()?.container_spec.as_ref()?.image.as_deref()
}

fn task_state(task: &Task) -> Option<TaskState> {
    task.status.as_ref().and_then(|s| s.state)
}

/// Rolls `id` onto `image` through Swarm's own rolling update, then follows it until every
/// task runs `image`. A service whose spec already names `image` (a resumed job) is only
/// followed, never updated again.
pub async fn upgrade(
    backend: &DockerBackend,
    id: &ServiceId,
    image: &str,
    plan: RolloutPlan,
    observer: &dyn RolloutObserver,
) -> Result<(), BackendError> {
    let before = start_update(backend, id, image, plan).await?;
    follow(backend, id, image, plan, observer, before).await
}

/// When the update status dates from before hookd's update: its `started_at`.
type Before = Option<Option<BollardDate>>;

async fn start_update(
    backend: &DockerBackend,
    id: &ServiceId,
    image: &str,
    plan: RolloutPlan,
) -> Result<Before, BackendError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let service = inspect(backend, id).await?;
        if spec_image(&service).is_some_and(|current| same_image(current, image)) {
            return Ok(None);
        }
        let before = service.update_status.as_ref().map(|s| s.started_at.clone());
        let mut spec = service.spec.ok_or_else(|| BackendError::ServiceNotFound(id.clone()))?;
        let container = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()).ok_or_else(|| {
            BackendError::Refused(format!("{id} does not run containers: it has no image to upgrade"))
        })?;
        container.image = Some(image.to_owned());
        // Monitor and max failure ratio stay as the service had them.
        spec.update_config = Some(ServiceSpecUpdateConfig {
            parallelism: Some(i64::from(plan.batch_size.max(1))),
            delay: Some(i64::try_from(plan.interval.as_nanos()).unwrap_or(i64::MAX)),
            failure_action: Some(FailureAction::PAUSE),
            order: Some(if plan.start_first { Order::START_FIRST } else { Order::STOP_FIRST }),
            ..spec.update_config.unwrap_or_default()
        });
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        let version = i32::try_from(version).map_err(|_| BackendError::Conflict)?;
        let options = UpdateServiceOptions { version, ..Default::default() };
        match backend.docker.update_service(id.as_str(), spec, options, None).await {
            Ok(_) => {
                tracing::info!(backend = %backend.name, service = %id, %image, "started a Swarm rolling update");
                return Ok(before);
            }
            Err(e) => match backend.not_found_or(id, e) {
                BackendError::Conflict => continue,
                other => return Err(other),
            },
        }
    }
    Err(BackendError::Unavailable(format!("{id} kept changing while hookd tried to upgrade it; retry later")))
}

/// Polls the service and its tasks until the update completed and every running task runs
/// `image`; fails when Swarm pauses or rolls back the update, or it stalls (see [`STALL`]).
async fn follow(
    backend: &DockerBackend,
    id: &ServiceId,
    image: &str,
    plan: RolloutPlan,
    observer: &dyn RolloutObserver,
    before: Before,
) -> Result<(), BackendError> {
    let mut last: Option<(RolloutProgress, Option<UpdateState>)> = None;
    let mut moved = Instant::now();
    loop {
        let service = inspect(backend, id).await?;
        let status = service.update_status.clone().unwrap_or_default();
        // A previous update's pause, until Swarm starts this one.
        let previous = before.as_ref().is_some_and(|started| *started == status.started_at);
        let state = status.state.filter(|s| *s != UpdateState::EMPTY && !previous);
        let tasks = service_tasks(backend, &service).await?;
        if matches!(
            state,
            Some(
                UpdateState::PAUSED
                    | UpdateState::ROLLBACK_STARTED
                    | UpdateState::ROLLBACK_PAUSED
                    | UpdateState::ROLLBACK_COMPLETED
            )
        ) {
            let message =
                status.message.unwrap_or_else(|| format!("the update is {}", state.unwrap_or(UpdateState::EMPTY)));
            return Err(BackendError::Refused(with_task_error(message, &tasks, image)));
        }
        if let Some(current) = spec_image(&service).filter(|current| !same_image(current, image)) {
            return Err(BackendError::Refused(format!(
                "{id} was changed to run {current} while hookd rolled it onto {image}"
            )));
        }

        let desired_running = |t: &&Task| t.desired_state == Some(TaskState::RUNNING);
        let running = |t: &&Task| task_state(t) == Some(TaskState::RUNNING);
        let on_image = |t: &&Task| task_image(t).is_some_and(|i| same_image(i, image));
        let total = replicas(&service).unwrap_or_else(|| tasks.iter().filter(desired_running).count() as u32);
        let updated = tasks.iter().filter(desired_running).filter(running).filter(on_image).count() as u32;
        let stale = tasks.iter().filter(running).filter(|t| !on_image(t)).count();
        let progress = RolloutProgress { updated: updated.min(total), total };

        if last.is_none_or(|(p, s)| p != progress || s != state) {
            if last.is_none_or(|(p, _)| p != progress) {
                observer.progress(progress).await;
            }
            last = Some((progress, state));
            moved = Instant::now();
        }
        // None: never updated (the image was already current) or not yet picked up; the
        // tasks tell which.
        if matches!(state, None | Some(UpdateState::COMPLETED)) && stale == 0 && updated >= total {
            return Ok(());
        }
        if moved.elapsed() > STALL + plan.interval {
            let message = format!(
                "the rollout of {id} onto {image} made no progress for {} s ({updated} of {total} replicas updated)",
                moved.elapsed().as_secs()
            );
            return Err(BackendError::Refused(with_task_error(message, &tasks, image)));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// All of the service's tasks, its short history included (old tasks still stopping count).
async fn service_tasks(backend: &DockerBackend, service: &Service) -> Result<Vec<Task>, BackendError> {
    let id = service.id.clone().unwrap_or_default();
    let filters = HashMap::from([("service".to_owned(), vec![id])]);
    backend.docker.list_tasks(Some(ListTasksOptions { filters: Some(filters) })).await.map_err(|e| backend.error(e))
}

/// Adds why the newest failed task on `image` failed ("No such image: …"): Swarm's own
/// message names only the task.
fn with_task_error(message: String, tasks: &[Task], image: &str) -> String {
    let failed = tasks
        .iter()
        .filter(|t| task_image(t).is_some_and(|i| same_image(i, image)))
        .filter_map(|t| Some((t.updated_at.clone()?, t.status.as_ref()?.err.clone()?)))
        .max_by_key(|(at, _)| at.clone());
    match failed {
        Some((_, err)) => format!("{message}: {err}"),
        None => message,
    }
}
