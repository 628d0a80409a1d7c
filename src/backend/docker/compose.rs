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
        ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings, NetworkConnectRequest,
        NetworkingConfig,
    },
    query_parameters::{CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions},
};
use futures_util::future::try_join_all;

use super::DockerBackend;
use crate::{
    backend::{BackendError, Journal, ScaleState, ServiceInfo},
    domain::ServiceId,
};

const PROJECT: &str = "com.docker.compose.project";
const SERVICE: &str = "com.docker.compose.service";
const NUMBER: &str = "com.docker.compose.container-number";
const ONEOFF: &str = "com.docker.compose.oneoff";

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
        labels: labels.into_iter().filter(|(k, _)| !k.starts_with("com.docker.compose.")).collect(),
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
        let template = replicas.iter().find(|r| r.running).unwrap_or(&replicas[0]);
        let next = replicas.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        for number in next..next + (scale - current) {
            create_replica(backend, template, project, service, number).await?;
        }
    } else if scale < current {
        // The newest replicas (highest numbers) go first, stopped in parallel.
        let doomed = &replicas[scale as usize..];
        try_join_all(doomed.iter().map(|r| remove_replica(backend, r))).await?;
    }
    Ok(())
}

/// Compose v1 names replicas `project_service_N`, v2 `project-service-N`: follow the template.
fn replica_name(template: &str, project: &str, service: &str, number: u32) -> String {
    let separator = if template.starts_with(&format!("{project}_{service}_")) { '_' } else { '-' };
    format!("{project}{separator}{service}{separator}{number}")
}

async fn create_replica(
    backend: &DockerBackend,
    template: &Replica,
    project: &str,
    service: &str,
    number: u32,
) -> Result<(), BackendError> {
    let docker = &backend.docker;
    let inspect = docker.inspect_container(&template.id, None).await.map_err(|e| backend.error(e))?;
    let config = inspect.config.unwrap_or_default();
    let host_config = inspect.host_config.unwrap_or_default();
    let mut labels = config.labels.clone().unwrap_or_default();
    labels.insert(NUMBER.to_owned(), number.to_string());

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
    docker.start_container(&created.id, None).await.map_err(|e| backend.error(e))?;
    tracing::info!(backend = %backend.name, container = %name, "started Compose replica");
    Ok(())
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
