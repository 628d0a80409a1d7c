//! The `docker` backend: Swarm services and Compose services on one Docker Engine.
//!
//! A Swarm service is named by its service name (`web`); a Compose service by
//! `project/service`, found through the labels `com.docker.compose.project` and
//! `com.docker.compose.service`. Swarm services are listed when the engine is a swarm
//! manager; Compose services always.

mod compose;
mod rollout;
mod swarm;

use async_trait::async_trait;
use bollard::{errors::Error as DockerError, Docker};

use super::{Backend, BackendError, Journal, RolloutObserver, RolloutPlan, ScaleState, ServiceInfo};
use crate::{config::BackendConfig, domain::ServiceId};

/// The API version hookd speaks unless the engine negotiates lower: Docker Engine 20.10's.
const API_VERSION: bollard::ClientVersion = bollard::ClientVersion { major_version: 1, minor_version: 41 };
/// Seconds before a call to the engine is abandoned.
const TIMEOUT_SECONDS: u64 = 30;

pub struct DockerBackend {
    name: String,
    docker: Docker,
    /// Where the engine is, for error messages.
    endpoint: String,
    /// Seconds a Compose replica gets between SIGTERM and SIGKILL when scaled down.
    stop_grace: i32,
}

impl DockerBackend {
    /// Connects lazily: an engine that is down at start makes calls fail (503), not hookd.
    pub async fn start(config: &BackendConfig) -> anyhow::Result<Self> {
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let docker = connect(&endpoint)?;
        // Negotiate down to an older engine's version when it answers now; otherwise keep 1.41.
        let docker = match docker.clone().negotiate_version().await {
            Ok(negotiated) => negotiated,
            Err(e) => {
                tracing::warn!(backend = %config.name, %endpoint, error = %e, "the Docker engine does not answer yet");
                docker
            }
        };
        Ok(Self {
            name: config.name.clone(),
            docker,
            endpoint,
            stop_grace: i32::try_from(config.stop_grace_seconds).unwrap_or(i32::MAX),
        })
    }

    /// The backend contract: an engine's 4xx is `Refused` (4xx to the sender), transport
    /// errors and 5xx are `Unavailable` (503, retry later), a stale version is `Conflict`.
    fn error(&self, e: DockerError) -> BackendError {
        match e {
            DockerError::DockerResponseServerError { message, .. } if message.contains("out of sequence") => {
                BackendError::Conflict
            }
            // A 4xx is the engine refusing what was asked: a retry won't help. A 5xx may pass.
            DockerError::DockerResponseServerError { status_code, message } if (400..500).contains(&status_code) => {
                BackendError::Refused(format!("the Docker engine refused ({status_code}): {}", message.trim()))
            }
            DockerError::DockerResponseServerError { status_code, message } => {
                BackendError::Unavailable(format!("the Docker engine answered {status_code}: {}", message.trim()))
            }
            other => BackendError::Unavailable(format!("cannot reach the Docker engine at {}: {other}", self.endpoint)),
        }
    }

    /// A 404 from the engine means the service is gone; anything else maps as usual.
    fn not_found_or(&self, id: &ServiceId, e: DockerError) -> BackendError {
        match e {
            DockerError::DockerResponseServerError { status_code: 404, .. } => {
                BackendError::ServiceNotFound(id.clone())
            }
            other => self.error(other),
        }
    }

    async fn is_swarm_manager(&self) -> Result<bool, BackendError> {
        let info = self.docker.info().await.map_err(|e| self.error(e))?;
        Ok(info.swarm.and_then(|s| s.control_available).unwrap_or(false))
    }
}

pub fn connect(endpoint: &str) -> anyhow::Result<Docker> {
    let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
        Docker::connect_with_unix(path, TIMEOUT_SECONDS, &API_VERSION)?
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, TIMEOUT_SECONDS, &API_VERSION)?
    } else {
        anyhow::bail!("unsupported Docker endpoint {endpoint:?}: use unix:///path/to/docker.sock or tcp://host:port");
    };
    Ok(docker)
}

/// Compose services are `project/service`; Swarm service names cannot contain `/`.
fn compose_key(id: &ServiceId) -> Option<(&str, &str)> {
    id.as_str().split_once('/')
}

#[async_trait]
impl Backend for DockerBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn list_services(&self) -> Result<Vec<ServiceInfo>, BackendError> {
        let mut services = if self.is_swarm_manager().await? { swarm::list(self).await? } else { Vec::new() };
        services.extend(compose::list(self).await?);
        Ok(services)
    }

    async fn service(&self, id: &ServiceId) -> Result<ServiceInfo, BackendError> {
        match compose_key(id) {
            Some((project, service)) => compose::service(self, id, project, service).await,
            None => swarm::service(self, id).await,
        }
    }

    async fn check_scalable(&self, id: &ServiceId) -> Result<(), BackendError> {
        let info = self.service(id).await?;
        if info.kind == "swarm-global" {
            return Err(BackendError::Refused(format!(
                "Cannot create webhook for global service {id}: a global Swarm service runs one task per node; \
                 only replicated services can be scaled"
            )));
        }
        Ok(())
    }

    async fn check_zero(&self, id: &ServiceId) -> Result<(), BackendError> {
        match compose_key(id) {
            Some(_) => Err(BackendError::Refused(format!(
                "Compose service {id} cannot scale to 0: hookd starts a Compose replica by copying a running one, \
                 and at 0 none is left to copy (Swarm services can)"
            ))),
            None => Ok(()),
        }
    }

    async fn read_scale(&self, id: &ServiceId) -> Result<ScaleState, BackendError> {
        match compose_key(id) {
            Some((project, service)) => compose::read_scale(self, id, project, service).await,
            None => swarm::read_scale(self, id).await,
        }
    }

    async fn write_scale(
        &self,
        id: &ServiceId,
        expected: ScaleState,
        scale: u32,
        journal: &dyn Journal,
    ) -> Result<(), BackendError> {
        match compose_key(id) {
            Some((project, service)) => {
                compose::write_scale(self, id, project, service, expected, scale, journal).await
            }
            None => swarm::write_scale(self, id, expected, scale, journal).await,
        }
    }

    fn can_upgrade(&self) -> bool {
        true
    }

    /// Swarm rolls the tasks itself (hookd sets the image and `update_config`, then follows);
    /// for Compose hookd recreates the containers in batches.
    async fn upgrade(
        &self,
        id: &ServiceId,
        image: &str,
        plan: RolloutPlan,
        observer: &dyn RolloutObserver,
    ) -> Result<(), BackendError> {
        let started = std::time::Instant::now();
        let result = match compose_key(id) {
            Some((project, service)) => compose::upgrade(self, id, project, service, image, plan, observer).await,
            None => swarm::upgrade(self, id, image, plan, observer).await,
        };
        match &result {
            Ok(()) => {
                tracing::info!(backend = %self.name, service = %id, %image, took = ?started.elapsed(), "rollout done")
            }
            Err(e) => tracing::warn!(backend = %self.name, service = %id, %image, error = %e, "rollout failed"),
        }
        result
    }

    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10: an engine's 4xx was answered 503 + Retry-After, so Alertmanager retried forever.
    #[test]
    fn issue_10_an_engines_4xx_is_refused_and_its_5xx_unavailable() {
        let backend = DockerBackend {
            name: "docker".into(),
            docker: connect("tcp://127.0.0.1:9").unwrap(),
            endpoint: "tcp://127.0.0.1:9".into(),
            stop_grace: 1,
        };
        let answer = |status_code: u16, message: &str| DockerError::DockerResponseServerError {
            status_code,
            message: message.into(),
        };
        assert!(matches!(backend.error(answer(400, "invalid mount")), BackendError::Refused(m) if m.contains("400")));
        assert!(matches!(backend.error(answer(403, "forbidden")), BackendError::Refused(_)));
        assert!(matches!(backend.error(answer(500, "boom")), BackendError::Unavailable(_)));
        assert!(matches!(backend.error(answer(503, "busy")), BackendError::Unavailable(_)));
        assert!(matches!(backend.error(answer(500, "update out of sequence")), BackendError::Conflict));
        let id = ServiceId::parse("web").unwrap();
        assert!(matches!(backend.not_found_or(&id, answer(404, "no such service")), BackendError::ServiceNotFound(_)));
    }
}
