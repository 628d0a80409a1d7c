//! Sets a workload's image and follows its rollout, as `kubectl rollout status` does.

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::PodTemplateSpec,
};
use kube::api::{Patch, PatchParams};

use super::{replicas, workload, KubernetesBackend, Workload, FIELD_MANAGER};
use crate::{
    backend::{BackendError, RolloutObserver, RolloutProgress},
    domain::{image::ImageRef, ServiceId},
};

const POLL: Duration = Duration::from_millis(250);
/// A StatefulSet has no progress deadline: one with no progress for this long has failed.
const STATEFULSET_STALL: Duration = Duration::from_secs(600);
/// How long the API server may be unreachable while hookd follows a rollout.
const OUTAGE: Duration = Duration::from_secs(60);

/// Where a rollout stands after one look.
#[derive(Debug, PartialEq, Eq)]
enum Status {
    Waiting(RolloutProgress),
    Done(RolloutProgress),
    Failed(String),
}

/// The container running the repository of `image`, by name, and its image now.
fn container(template: &PodTemplateSpec, id: &ServiceId, image: &str) -> Result<(String, String), BackendError> {
    let wanted = ImageRef::parse(image).map(|i| i.repository_key());
    let containers = template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .find(|c| c.image.as_deref().and_then(ImageRef::parse).map(|i| i.repository_key()) == wanted)
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .ok_or_else(|| {
            let running: Vec<&str> = containers.iter().filter_map(|c| c.image.as_deref()).collect();
            BackendError::Refused(format!(
                "no container of {id} runs the repository of {image} (it runs {})",
                running.join(", ")
            ))
        })
}

/// `kubectl rollout status` for a Deployment.
fn deployment_status(d: &Deployment) -> Status {
    let want = replicas(d.spec.as_ref().and_then(|s| s.replicas).or(Some(1)));
    let Some(status) = &d.status else { return Status::Waiting(RolloutProgress { updated: 0, total: want }) };
    let progress = RolloutProgress { updated: replicas(status.updated_replicas), total: want };
    if status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return Status::Waiting(RolloutProgress { updated: 0, total: want });
    }
    let stalled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
    if let Some(condition) = stalled {
        return Status::Failed(format!(
            "ProgressDeadlineExceeded: {}",
            condition.message.as_deref().unwrap_or("the rollout made no progress")
        ));
    }
    let old_left = replicas(status.replicas) > progress.updated;
    let unavailable = replicas(status.available_replicas) < progress.updated;
    if progress.updated < want || old_left || unavailable {
        return Status::Waiting(progress);
    }
    Status::Done(progress)
}

/// `kubectl rollout status` for a StatefulSet (RollingUpdate, honouring a partition).
fn statefulset_status(s: &StatefulSet) -> Status {
    let spec = s.spec.as_ref();
    let want = replicas(spec.and_then(|s| s.replicas).or(Some(1)));
    let Some(status) = &s.status else { return Status::Waiting(RolloutProgress { updated: 0, total: want }) };
    let progress = RolloutProgress { updated: replicas(status.updated_replicas), total: want };
    if status.observed_generation.unwrap_or(0) < s.metadata.generation.unwrap_or(0) {
        return Status::Waiting(RolloutProgress { updated: 0, total: want });
    }
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        // Pods take the new template only when deleted: nothing more to follow.
        return Status::Done(progress);
    }
    let partition = strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0);
    let ready = replicas(status.ready_replicas);
    if partition > 0 {
        let wanted = want.saturating_sub(replicas(Some(partition)));
        return match progress.updated >= wanted && ready >= want {
            true => Status::Done(progress),
            false => Status::Waiting(progress),
        };
    }
    let same_revision = status.update_revision.is_some() && status.update_revision == status.current_revision;
    if progress.updated < want || ready < want || !same_revision {
        return Status::Waiting(progress);
    }
    Status::Done(progress)
}

struct Look {
    status: Status,
    template: PodTemplateSpec,
    /// A Deployment's `progressDeadlineSeconds`.
    deadline: Option<Duration>,
}

async fn look(backend: &KubernetesBackend, id: &ServiceId) -> Result<Look, BackendError> {
    let (kind, name) = workload(id)?;
    match kind {
        Workload::Deployment => {
            let d = backend.deployments().get(name).await.map_err(|e| backend.not_found_or(id, e))?;
            let spec = d.spec.as_ref().ok_or_else(|| BackendError::ServiceNotFound(id.clone()))?;
            let deadline = spec.progress_deadline_seconds.map(|s| Duration::from_secs(s.max(0) as u64));
            Ok(Look { status: deployment_status(&d), template: spec.template.clone(), deadline })
        }
        Workload::StatefulSet => {
            let s = backend.statefulsets().get(name).await.map_err(|e| backend.not_found_or(id, e))?;
            let spec = s.spec.as_ref().ok_or_else(|| BackendError::ServiceNotFound(id.clone()))?;
            Ok(Look { status: statefulset_status(&s), template: spec.template.clone(), deadline: None })
        }
    }
}

/// Sets the image (unless already set: a resumed job calls again) and follows the rollout.
pub(super) async fn upgrade(
    backend: &KubernetesBackend,
    id: &ServiceId,
    image: &str,
    observer: &dyn RolloutObserver,
) -> Result<(), BackendError> {
    let (kind, name) = workload(id)?;
    let first = look(backend, id).await?;
    let (container_name, current) = container(&first.template, id, image)?;
    if current != image {
        // A strategic merge patch: containers merge by name, so the others are left alone.
        let patch = serde_json::json!({
            "spec": { "template": { "spec": { "containers": [{ "name": container_name, "image": image }] } } }
        });
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
        let patched = match kind {
            Workload::Deployment => {
                backend.deployments().patch(name, &params, &Patch::Strategic(&patch)).await.map(|_| ())
            }
            Workload::StatefulSet => {
                backend.statefulsets().patch(name, &params, &Patch::Strategic(&patch)).await.map(|_| ())
            }
        };
        patched.map_err(|e| backend.not_found_or(id, e))?;
    }
    // Without a deadline of its own, a rollout that shows no progress this long has failed.
    let stall = first.deadline.map(|d| d + Duration::from_secs(30)).unwrap_or(STATEFULSET_STALL);
    let mut last_progress = (Instant::now(), None);
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let look = match look(backend, id).await {
            Ok(look) => {
                unreachable_since = None;
                look
            }
            Err(BackendError::Unavailable(why)) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > OUTAGE {
                    return Err(BackendError::Unavailable(why));
                }
                tokio::time::sleep(POLL * 4).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let (_, now_running) = container(&look.template, id, image)?;
        if now_running != image {
            return Err(BackendError::Refused(format!(
                "{id} was set to {now_running} by someone else while it rolled out to {image}"
            )));
        }
        match look.status {
            Status::Done(progress) => {
                observer.progress(progress).await;
                return Ok(());
            }
            Status::Failed(why) => return Err(BackendError::Refused(format!("the rollout of {id} failed: {why}"))),
            Status::Waiting(progress) => {
                if last_progress.1 != Some(progress) {
                    last_progress = (Instant::now(), Some(progress));
                    observer.progress(progress).await;
                } else if last_progress.0.elapsed() > stall {
                    return Err(BackendError::Refused(format!(
                        "the rollout of {id} made no progress for {} s ({} of {} replicas updated)",
                        stall.as_secs(),
                        progress.updated,
                        progress.total
                    )));
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(value: serde_json::Value) -> Deployment {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_deployment_is_done_when_every_replica_is_updated_and_available() {
        let d = |generation: i64, observed: i64, updated: i32, replicas: i32, available: i32| {
            deployment(serde_json::json!({
                "metadata": { "name": "web", "generation": generation },
                "spec": { "replicas": 3, "selector": {}, "template": {} },
                "status": { "observedGeneration": observed, "updatedReplicas": updated,
                            "replicas": replicas, "availableReplicas": available },
            }))
        };
        let progress = |updated| RolloutProgress { updated, total: 3 };
        assert_eq!(deployment_status(&d(2, 1, 3, 3, 3)), Status::Waiting(progress(0)), "not observed yet");
        assert_eq!(deployment_status(&d(2, 2, 2, 3, 3)), Status::Waiting(progress(2)));
        assert_eq!(deployment_status(&d(2, 2, 3, 4, 3)), Status::Waiting(progress(3)), "an old pod is left");
        assert_eq!(deployment_status(&d(2, 2, 3, 3, 2)), Status::Waiting(progress(3)), "one not available");
        assert_eq!(deployment_status(&d(2, 2, 3, 3, 3)), Status::Done(progress(3)));
    }

    #[test]
    fn progress_deadline_exceeded_fails_with_its_message() {
        let d = deployment(serde_json::json!({
            "metadata": { "name": "web", "generation": 2 },
            "spec": { "replicas": 2, "selector": {}, "template": {} },
            "status": { "observedGeneration": 2, "updatedReplicas": 1, "replicas": 3, "availableReplicas": 2,
                        "conditions": [{ "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                         "message": "ReplicaSet \"web-7d\" has timed out progressing." }] },
        }));
        assert!(matches!(deployment_status(&d), Status::Failed(m) if m.contains("web-7d")));
    }

    #[test]
    fn a_statefulset_is_done_on_one_revision_or_at_its_partition() {
        let s = |partition: i32, updated: i32, ready: i32, current: &str| -> StatefulSet {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": "db", "generation": 3 },
                "spec": { "replicas": 3, "selector": {}, "serviceName": "db", "template": {},
                          "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": partition } } },
                "status": { "observedGeneration": 3, "replicas": 3, "updatedReplicas": updated, "readyReplicas": ready,
                            "currentRevision": current, "updateRevision": "db-2" },
            }))
            .unwrap()
        };
        assert!(matches!(statefulset_status(&s(0, 3, 3, "db-1")), Status::Waiting(_)));
        assert!(matches!(statefulset_status(&s(0, 3, 3, "db-2")), Status::Done(_)));
        assert!(matches!(statefulset_status(&s(2, 1, 3, "db-1")), Status::Done(_)));
        assert!(matches!(statefulset_status(&s(2, 0, 3, "db-1")), Status::Waiting(_)));
    }
}
