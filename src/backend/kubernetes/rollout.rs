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
/// A StatefulSet has no progress deadline: one whose pods show no change for this long has
/// failed. A Deployment's controller judges its own (`progressDeadlineSeconds`); this long
/// past it, hookd stops waiting for a controller that says nothing.
const STALL: Duration = Duration::from_secs(600);
/// How long the API server may be unreachable while hookd follows a rollout.
const OUTAGE: Duration = Duration::from_secs(60);
/// Image patches lost to a concurrent change before hookd gives up.
const PATCH_ATTEMPTS: u32 = 5;

/// Where a rollout stands after one look.
#[derive(Debug, PartialEq, Eq)]
enum Status {
    Waiting(RolloutProgress),
    Done(RolloutProgress),
    Failed(String),
}

/// Whether a container running `running` runs `wanted`: the same repository and tag, and
/// the same digest when `wanted` names one (an admission webhook may pin a digest).
fn runs(running: &str, wanted: &ImageRef) -> bool {
    ImageRef::parse(running).is_some_and(|r| {
        r.repository_key() == wanted.repository_key()
            && r.tag == wanted.tag
            && (wanted.digest.is_none() || r.digest == wanted.digest)
    })
}

/// The containers running the repository of `wanted`: (name, image) of each.
fn containers(
    template: &PodTemplateSpec,
    id: &ServiceId,
    wanted: &ImageRef,
) -> Result<Vec<(String, String)>, BackendError> {
    let all = template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let matching: Vec<(String, String)> = all
        .iter()
        .filter_map(|c| {
            let image = c.image.as_deref()?;
            let same = ImageRef::parse(image)?.repository_key() == wanted.repository_key();
            same.then(|| (c.name.clone(), image.to_owned()))
        })
        .collect();
    if matching.is_empty() {
        let running: Vec<&str> = all.iter().filter_map(|c| c.image.as_deref()).collect();
        return Err(BackendError::Refused(format!(
            "no container of {id} runs the repository {} (it runs {})",
            wanted.repository_key(),
            running.join(", ")
        )));
    }
    Ok(matching)
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
    resource_version: Option<String>,
    /// What moves while pods roll (counts, revisions): a change is progress.
    signature: String,
    /// How long without a change means the rollout has failed.
    stall: Duration,
    /// Why this workload cannot roll at all (paused, OnDelete).
    blocked: Option<String>,
}

async fn look(backend: &KubernetesBackend, id: &ServiceId) -> Result<Look, BackendError> {
    let (kind, name) = workload(id)?;
    match kind {
        Workload::Deployment => {
            let d = backend.deployments().get(name).await.map_err(|e| backend.not_found_or(id, e))?;
            let spec = d.spec.as_ref().ok_or_else(|| BackendError::ServiceNotFound(id.clone()))?;
            let deadline = spec.progress_deadline_seconds.map(|s| Duration::from_secs(s.max(0) as u64));
            let blocked = spec
                .paused
                .unwrap_or(false)
                .then(|| format!("{id} is paused: its pods take no new template until `kubectl rollout resume {id}`"));
            Ok(Look {
                status: deployment_status(&d),
                template: spec.template.clone(),
                resource_version: d.metadata.resource_version.clone(),
                signature: serde_json::to_string(&d.status.as_ref().map(|s| {
                    (s.observed_generation, s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas)
                }))
                .unwrap_or_default(),
                stall: deadline.unwrap_or(STALL) + STALL,
                blocked,
            })
        }
        Workload::StatefulSet => {
            let s = backend.statefulsets().get(name).await.map_err(|e| backend.not_found_or(id, e))?;
            let spec = s.spec.as_ref().ok_or_else(|| BackendError::ServiceNotFound(id.clone()))?;
            let on_delete = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()) == Some("OnDelete");
            let blocked = on_delete.then(|| {
                format!(
                    "{id} updates with OnDelete: its pods take a new image only when deleted, which hookd does not do"
                )
            });
            Ok(Look {
                status: statefulset_status(&s),
                template: spec.template.clone(),
                resource_version: s.metadata.resource_version.clone(),
                signature: serde_json::to_string(&s.status.as_ref().map(|s| {
                    (s.observed_generation, s.replicas, s.updated_replicas, s.ready_replicas, &s.current_revision)
                }))
                .unwrap_or_default(),
                stall: STALL,
                blocked,
            })
        }
    }
}

/// Sets `image` on every container running its repository, guarded by the version just
/// read, unless they all run it already (a resumed job calls again).
async fn set_image(
    backend: &KubernetesBackend,
    id: &ServiceId,
    wanted: &ImageRef,
    image: &str,
) -> Result<(), BackendError> {
    let (kind, name) = workload(id)?;
    for _ in 0..PATCH_ATTEMPTS {
        let look = look(backend, id).await?;
        if let Some(why) = look.blocked {
            return Err(BackendError::Refused(why));
        }
        let stale: Vec<String> = containers(&look.template, id, wanted)?
            .into_iter()
            .filter(|(_, running)| !runs(running, wanted))
            .map(|(name, _)| name)
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        // A strategic merge patch: containers merge by name, so the others are left alone;
        // the resourceVersion makes it fail (409) if anyone changed the workload since.
        let containers: Vec<_> = stale.iter().map(|name| serde_json::json!({ "name": name, "image": image })).collect();
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": look.resource_version },
            "spec": { "template": { "spec": { "containers": containers } } }
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
        match patched.map_err(|e| backend.not_found_or(id, e)) {
            Ok(()) => return Ok(()),
            Err(BackendError::Conflict) => tokio::time::sleep(POLL).await,
            Err(e) => return Err(e),
        }
    }
    Err(BackendError::Unavailable(format!("{id} kept changing while hookd set its image; {PATCH_ATTEMPTS} tries lost")))
}

/// Sets the image and follows the rollout to its end.
pub(super) async fn upgrade(
    backend: &KubernetesBackend,
    id: &ServiceId,
    image: &str,
    observer: &dyn RolloutObserver,
) -> Result<(), BackendError> {
    let wanted =
        ImageRef::parse(image).ok_or_else(|| BackendError::Refused(format!("{image:?} is not an image reference")))?;
    set_image(backend, id, &wanted, image).await?;
    let mut last_change = (Instant::now(), String::new());
    let mut reported = None;
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
        for (container, running) in containers(&look.template, id, &wanted)? {
            if !runs(&running, &wanted) {
                return Err(BackendError::Refused(format!(
                    "the container {container} of {id} was set to {running} by someone else while it rolled out to {image}"
                )));
            }
        }
        match look.status {
            Status::Done(progress) => {
                observer.progress(progress).await;
                return Ok(());
            }
            Status::Failed(why) => return Err(BackendError::Refused(format!("the rollout of {id} failed: {why}"))),
            Status::Waiting(progress) => {
                if reported != Some(progress) {
                    reported = Some(progress);
                    observer.progress(progress).await;
                }
                if look.signature != last_change.1 {
                    last_change = (Instant::now(), look.signature);
                } else if last_change.0.elapsed() > look.stall {
                    return Err(BackendError::Refused(format!(
                        "the rollout of {id} made no progress for {} s ({} of {} replicas updated)",
                        look.stall.as_secs(),
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
