//! Compose services on a standalone engine: containers sharing the labels
//! `com.docker.compose.project` and `com.docker.compose.service`.
//!
//! Scaling works like `docker compose up --scale`: a new replica copies an existing
//! replica's configuration (image, command, env, labels, mounts, restart policy, networks)
//! with the next `com.docker.compose.container-number`; scaling down stops (gracefully) and
//! removes the highest numbers. Compose has no version counter, so the version of a scale is
//! a hash of the replicas' container ids: a change behind hookd's back is a `Conflict`.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash, Hasher},
};

use bollard::{
    models::{
        ContainerConfig, ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings,
        NetworkConnectRequest, NetworkingConfig,
    },
    query_parameters::{
        CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
    },
};
use futures_util::{future::try_join_all, stream::FuturesUnordered, StreamExt};

use super::{
    rollout::{pull_reference, same_image, PULL_TIMEOUT},
    DockerBackend,
};
use crate::{
    backend::{BackendError, Journal, RolloutObserver, RolloutPlan, RolloutProgress, ScaleState, ServiceInfo},
    domain::ServiceId,
};

const PROJECT: &str = "com.docker.compose.project";
const SERVICE: &str = "com.docker.compose.service";
const NUMBER: &str = "com.docker.compose.container-number";
const ONEOFF: &str = "com.docker.compose.oneoff";
const IMAGE: &str = "com.docker.compose.image";
/// On a replica a rollout created: the id of the container it replaces (see `upgrade`).
const REPLACES: &str = "io.hookd.replaces";

/// One replica of a Compose service.
struct Replica {
    id: String,
    name: String,
    number: u32,
    running: bool,
    summary: ContainerSummary,
}

/// The replicas of every Compose service (or of one), by `(project, service)`.
async fn replicas(
    backend: &DockerBackend,
    only: Option<(&str, &str)>,
) -> Result<BTreeMap<(String, String), Vec<Replica>>, BackendError> {
    let mut label_filters = vec![PROJECT.to_owned(), SERVICE.to_owned()];
    if let Some((project, service)) = only {
        label_filters = vec![format!("{PROJECT}={project}"), format!("{SERVICE}={service}")];
    }
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_owned(), label_filters)])),
        ..Default::default()
    };
    let containers = backend.docker.list_containers(Some(options)).await.map_err(|e| backend.error(e))?;
    let mut groups: BTreeMap<(String, String), Vec<Replica>> = BTreeMap::new();
    for c in containers {
        let labels = c.labels.clone().unwrap_or_default();
        let (Some(project), Some(service)) = (labels.get(PROJECT), labels.get(SERVICE)) else { continue };
        let gone = matches!(c.state, Some(ContainerSummaryStateEnum::REMOVING | ContainerSummaryStateEnum::DEAD));
        if gone || labels.get(ONEOFF).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            continue;
        }
        let replica = Replica {
            id: c.id.clone().unwrap_or_default(),
            name: c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            number: labels.get(NUMBER).and_then(|n| n.parse().ok()).unwrap_or(0),
            running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
            summary: c,
        };
        groups.entry((project.clone(), service.clone())).or_default().push(replica);
    }
    for replicas in groups.values_mut() {
        replicas.sort_by_key(|r| (r.number, r.id.clone()));
    }
    Ok(groups)
}

fn version(replicas: &[Replica]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for r in replicas {
        r.id.hash(&mut hasher);
    }
    hasher.finish()
}

fn info(project: &str, service: &str, replicas: &[Replica]) -> Option<ServiceInfo> {
    let id = ServiceId::parse(&format!("{project}/{service}")).ok()?;
    let first = replicas.first()?;
    let labels = first.summary.labels.clone().unwrap_or_default();
    Some(ServiceInfo {
        id,
        kind: "compose",
        desired: replicas.len() as u32,
        running: replicas.iter().filter(|r| r.running).count() as u32,
        image: first.summary.image.clone().unwrap_or_default(),
        labels: labels.into_iter().filter(|(k, _)| !k.starts_with("com.docker.compose.") && k != REPLACES).collect(),
        other_images: Vec::new(),
        last_error: None,
    })
}

pub async fn list(backend: &DockerBackend) -> Result<Vec<ServiceInfo>, BackendError> {
    let groups = replicas(backend, None).await?;
    Ok(groups.iter().filter_map(|((project, service), replicas)| info(project, service, replicas)).collect())
}

async fn group(
    backend: &DockerBackend,
    id: &ServiceId,
    project: &str,
    service: &str,
) -> Result<Vec<Replica>, BackendError> {
    let mut groups = replicas(backend, Some((project, service))).await?;
    groups
        .remove(&(project.to_owned(), service.to_owned()))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| BackendError::ServiceNotFound(id.clone()))
}

pub async fn service(
    backend: &DockerBackend,
    id: &ServiceId,
    project: &str,
    service: &str,
) -> Result<ServiceInfo, BackendError> {
    let replicas = group(backend, id, project, service).await?;
    info(project, service, &replicas).ok_or_else(|| BackendError::ServiceNotFound(id.clone()))
}

pub async fn read_scale(
    backend: &DockerBackend,
    id: &ServiceId,
    project: &str,
    service: &str,
) -> Result<ScaleState, BackendError> {
    let replicas = group(backend, id, project, service).await?;
    Ok(ScaleState { scale: replicas.len() as u32, version: version(&replicas) })
}

pub async fn write_scale(
    backend: &DockerBackend,
    id: &ServiceId,
    project: &str,
    service: &str,
    expected: ScaleState,
    scale: u32,
    journal: &dyn Journal,
) -> Result<(), BackendError> {
    let replicas = group(backend, id, project, service).await?;
    if version(&replicas) != expected.version {
        return Err(BackendError::Conflict);
    }
    journal.commit(None).await?;
    let current = replicas.len() as u32;
    if scale > current {
        // The newest running replica: mid-rollout, it has the new image.
        let template = replicas.iter().rev().find(|r| r.running).unwrap_or(&replicas[0]);
        let next = replicas.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        for number in next..next + (scale - current) {
            let created = create_replica(backend, template, project, service, number, None).await?;
            start_replica(backend, &created).await?;
        }
    } else if scale < current {
        // The newest replicas (highest numbers) go first, stopped in parallel.
        let doomed = &replicas[scale as usize..];
        try_join_all(doomed.iter().map(|r| remove_replica(backend, r))).await?;
    }
    Ok(())
}

/// Recreates the replicas not on `image`, `plan.batch_size` at a time, `plan.interval` apart;
/// each new replica (the next container number, as a scale-up) starts before its old one
/// stops with `plan.start_first`, after it otherwise. Replicas already on `image` (same
/// reference and image id) are left alone, and a replacement cut short is finished, not
/// repeated: the count stays what it was.
pub async fn upgrade(
    backend: &DockerBackend,
    id: &ServiceId,
    project: &str,
    service: &str,
    image: &str,
    plan: RolloutPlan,
    observer: &dyn RolloutObserver,
) -> Result<(), BackendError> {
    let image_id = image_id(backend, image).await?;
    let replicas = group(backend, id, project, service).await?;
    let on_image = |r: &Replica| {
        r.summary.image_id.as_deref() == Some(image_id.as_str())
            && r.summary.image.as_deref().is_some_and(|i| same_image(i, image))
    };
    let (fresh, stale): (Vec<&Replica>, Vec<&Replica>) = replicas.iter().partition(|r| on_image(r));
    let replacement_of = |old: &Replica| fresh.iter().copied().find(|r| label(r, REPLACES) == Some(old.id.as_str()));
    // Replacements a previous call began come first.
    let mut jobs: Vec<(&Replica, Option<&Replica>)> = stale.iter().map(|old| (*old, replacement_of(old))).collect();
    jobs.sort_by_key(|(_, new)| new.is_none());
    let resumed = jobs.iter().filter(|(_, new)| new.is_some()).count() as u32;
    let total = replicas.len() as u32 - resumed;
    let mut updated = fresh.len() as u32 - resumed;

    // A replacement whose old replica is already gone but which never started.
    for r in fresh.iter().filter(|r| label(r, REPLACES).is_some() && is_created(r)) {
        if !jobs.iter().any(|(_, new)| new.is_some_and(|n| n.id == r.id)) {
            start_replica(backend, &Created { id: r.id.clone(), name: r.name.clone() }).await?;
        }
    }
    if jobs.is_empty() {
        observer.progress(RolloutProgress { updated, total }).await;
        return Ok(());
    }

    let mut next = replicas.iter().map(|r| r.number).max().unwrap_or(0) + 1;
    for (i, batch) in jobs.chunks(plan.batch_size.max(1) as usize).enumerate() {
        if i > 0 {
            tokio::time::sleep(plan.interval).await;
        }
        let mut replacing = FuturesUnordered::new();
        for (old, new) in batch {
            let number = if new.is_none() { next } else { 0 };
            next += u32::from(new.is_none());
            let rolled = Rolled { image, image_id: &image_id, replaces: &old.id };
            replacing.push(replace(backend, project, service, old, *new, number, rolled, plan.start_first));
        }
        // Let the whole batch finish, so no replica is left half replaced by a cancelled step.
        let mut failed = None;
        while let Some(result) = replacing.next().await {
            match result {
                Ok(()) => {
                    updated += 1;
                    observer.progress(RolloutProgress { updated, total }).await;
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}

/// Replaces `old` by a new replica (or by `new`, which a previous call created).
#[allow(clippy::too_many_arguments)]
async fn replace(
    backend: &DockerBackend,
    project: &str,
    service: &str,
    old: &Replica,
    new: Option<&Replica>,
    number: u32,
    rolled: Rolled<'_>,
    start_first: bool,
) -> Result<(), BackendError> {
    // Created before the old one stops even in stop-first order, so a refused config
    // (a bad mount, say) costs no replica.
    let created = match new {
        Some(r) => Created { id: r.id.clone(), name: r.name.clone() },
        None => create_replica(backend, old, project, service, number, Some(&rolled)).await?,
    };
    if start_first {
        if let Err(e) = start_replica(backend, &created).await {
            // Leave no extra container behind: the old replica still serves.
            let remove = RemoveContainerOptions { force: true, ..Default::default() };
            let _ = backend.docker.remove_container(&created.id, Some(remove)).await;
            return Err(e);
        }
        remove_replica(backend, old).await
    } else {
        remove_replica(backend, old).await?;
        start_replica(backend, &created).await
    }
}

fn label<'a>(replica: &'a Replica, key: &str) -> Option<&'a str> {
    replica.summary.labels.as_ref()?.get(key).map(String::as_str)
}

fn is_created(replica: &Replica) -> bool {
    replica.summary.state == Some(ContainerSummaryStateEnum::CREATED)
}

/// The id of `image`, pulled first when the engine lacks it (Compose's `pull_policy: missing`).
async fn image_id(backend: &DockerBackend, image: &str) -> Result<String, BackendError> {
    match backend.docker.inspect_image(image).await {
        Ok(found) => {
            return found.id.ok_or_else(|| BackendError::Unavailable(format!("the engine gave {image} no id")))
        }
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(e) => return Err(backend.error(e)),
    }
    let (from_image, tag) = pull_reference(image);
    let options = CreateImageOptions { from_image: Some(from_image), tag, ..Default::default() };
    let docker = backend.docker.clone().with_timeout(PULL_TIMEOUT);
    let mut pull = docker.create_image(Some(options), None, None);
    while let Some(step) = pull.next().await {
        let step = step.map_err(|e| backend.error(e))?;
        if let Some(message) = step.error_detail.and_then(|d| d.message) {
            return Err(BackendError::Unavailable(format!("pulling {image} failed: {message}")));
        }
    }
    tracing::info!(backend = %backend.name, %image, "pulled image");
    let found = backend.docker.inspect_image(image).await.map_err(|e| backend.error(e))?;
    found.id.ok_or_else(|| BackendError::Unavailable(format!("the engine gave {image} no id")))
}

/// Compose v1 names replicas `project_service_N`, v2 `project-service-N`: follow the template.
fn replica_name(template: &str, project: &str, service: &str, number: u32) -> String {
    let separator = if template.starts_with(&format!("{project}_{service}_")) { '_' } else { '-' };
    format!("{project}{separator}{service}{separator}{number}")
}

/// What a replica created by a rollout gets instead of its template's image.
struct Rolled<'a> {
    image: &'a str,
    image_id: &'a str,
    /// The container it replaces, so a rollout cut short can finish the replacement.
    replaces: &'a str,
}

/// A created (not yet started) replica.
struct Created {
    id: String,
    name: String,
}

/// Creates a twin of `template` numbered `number`; with `rolled`, on the new image.
async fn create_replica(
    backend: &DockerBackend,
    template: &Replica,
    project: &str,
    service: &str,
    number: u32,
    rolled: Option<&Rolled<'_>>,
) -> Result<Created, BackendError> {
    let docker = &backend.docker;
    let inspect = docker.inspect_container(&template.id, None).await.map_err(|e| backend.error(e))?;
    let mut config = inspect.config.unwrap_or_default();
    let host_config = inspect.host_config.unwrap_or_default();
    if let Some(rolled) = rolled {
        without_image_defaults(backend, &mut config, inspect.image.as_deref()).await;
        config.image = Some(rolled.image.to_owned());
    }
    let mut labels = config.labels.clone().unwrap_or_default();
    labels.remove(REPLACES);
    labels.insert(NUMBER.to_owned(), number.to_string());
    if let Some(rolled) = rolled {
        labels.insert(REPLACES.to_owned(), rolled.replaces.to_owned());
        // Compose v2 records the image it created the container from.
        if let Some(image) = labels.get_mut(IMAGE) {
            *image = rolled.image_id.to_owned();
        }
    }

    // The template's own addresses and ids must not be copied: only the networks and the
    // aliases other services use to reach this one.
    let networks: Vec<(String, Option<Vec<String>>)> = inspect
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| {
            let aliases = endpoint
                .aliases
                .map(|a| a.into_iter().filter(|alias| !template.id.starts_with(alias.as_str())).collect());
            (name, aliases)
        })
        .collect();
    let primary = host_config.network_mode.clone().unwrap_or_default();
    let endpoint = |aliases: &Option<Vec<String>>| EndpointSettings { aliases: aliases.clone(), ..Default::default() };
    let networking_config = networks.iter().find(|(name, _)| *name == primary).map(|(name, aliases)| {
        NetworkingConfig { endpoints_config: Some(HashMap::from([(name.clone(), endpoint(aliases))])) }
    });

    let body = ContainerCreateBody {
        image: config.image,
        cmd: config.cmd,
        entrypoint: config.entrypoint,
        env: config.env,
        labels: Some(labels),
        working_dir: config.working_dir,
        user: config.user,
        exposed_ports: config.exposed_ports,
        stop_signal: config.stop_signal,
        stop_timeout: config.stop_timeout,
        healthcheck: config.healthcheck,
        tty: config.tty,
        open_stdin: config.open_stdin,
        volumes: config.volumes,
        domainname: config.domainname,
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    };
    let name = replica_name(&template.name, project, service, number);
    let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
    let created = docker.create_container(Some(options), body).await.map_err(|e| backend.error(e))?;
    for (network, aliases) in networks.iter().filter(|(name, _)| *name != primary) {
        let request = NetworkConnectRequest { container: created.id.clone(), endpoint_config: Some(endpoint(aliases)) };
        docker.connect_network(network, request).await.map_err(|e| backend.error(e))?;
    }
    Ok(Created { id: created.id, name })
}

async fn start_replica(backend: &DockerBackend, created: &Created) -> Result<(), BackendError> {
    match backend.docker.start_container(&created.id, None).await {
        // 304: already running (a resumed rollout).
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
        Err(e) => return Err(backend.error(e)),
    }
    tracing::info!(backend = %backend.name, container = %created.name, "started Compose replica");
    Ok(())
}

/// Drops what a container's config merely inherited from its image (env, command, labels…),
/// so a twin on another image gets that image's defaults rather than the old image's.
async fn without_image_defaults(backend: &DockerBackend, config: &mut ContainerConfig, old_image: Option<&str>) {
    let Some(old_image) = old_image else { return };
    let image = match backend.docker.inspect_image(old_image).await {
        Ok(image) => image.config.unwrap_or_default(),
        Err(e) => {
            // The old image is gone: copy the config as it is.
            tracing::warn!(backend = %backend.name, image = %old_image, error = %e, "cannot inspect the old image");
            return;
        }
    };
    fn subtract(values: &mut Option<Vec<String>>, defaults: &Option<Vec<String>>) {
        if let (Some(values), Some(defaults)) = (values.as_mut(), defaults) {
            values.retain(|v| !defaults.contains(v));
        }
    }
    fn clear_if_same<T: PartialEq>(value: &mut Option<T>, default: &Option<T>) -> bool {
        let same = value.is_some() && value == default;
        if same {
            *value = None;
        }
        same || value.is_none()
    }
    subtract(&mut config.env, &image.env);
    subtract(&mut config.exposed_ports, &image.exposed_ports);
    subtract(&mut config.volumes, &image.volumes);
    if let (Some(labels), Some(defaults)) = (config.labels.as_mut(), &image.labels) {
        labels.retain(|k, v| defaults.get(k) != Some(v));
    }
    // A command set with the image's entrypoint is explicit; only drop it along with that.
    if clear_if_same(&mut config.entrypoint, &image.entrypoint) {
        clear_if_same(&mut config.cmd, &image.cmd);
    }
    clear_if_same(&mut config.working_dir, &image.working_dir);
    clear_if_same(&mut config.user, &image.user);
    clear_if_same(&mut config.stop_signal, &image.stop_signal);
    clear_if_same(&mut config.healthcheck, &image.healthcheck);
}

async fn remove_replica(backend: &DockerBackend, replica: &Replica) -> Result<(), BackendError> {
    let docker = &backend.docker;
    let stop = StopContainerOptions { t: Some(backend.stop_grace), signal: None };
    match docker.stop_container(&replica.id, Some(stop)).await {
        // 304: already stopped; 404: already gone. Either way it is not running.
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304 | 404, .. }) => {}
        Err(e) => return Err(backend.error(e)),
    }
    let remove = RemoveContainerOptions { force: true, ..Default::default() };
    match docker.remove_container(&replica.id, Some(remove)).await {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(e) => return Err(backend.error(e)),
    }
    tracing::info!(backend = %backend.name, container = %replica.name, "removed Compose replica");
    Ok(())
}
