//! serviceUpgrade: from a registry push to a durable job (or a skip that says why).
//!
//! The decision is quick and answered at once; the rollout is a job that outlives the
//! request. The job and the execution that started it are stored in one transaction
//! before the 202, so a kill -9 right after the answer loses nothing: the job resumes.

use sha2::{Digest, Sha256};

use super::{Draft, Engine, EngineError, Report};
use crate::{
    backend::ServiceInfo,
    domain::{
        now_millis, upgrade::Mismatch, DedupKey, JobStep, Rollout, ServiceId, ServiceKey, ServiceUpgradeConfig,
        SkipReason,
    },
    payload::{registry::Push, TriggerPayload},
};

/// A push acted on within this window is a duplicate (a registry retrying its delivery).
const PUSH_DEDUP_SECONDS: i64 = 600;

/// What a push asks of the selected services, and why the others are left alone.
struct Plan {
    steps: Vec<JobStep>,
    skipped: Vec<(String, Mismatch)>,
}

fn plan(config: &ServiceUpgradeConfig, services: &[ServiceInfo], pushes: &[Push]) -> Plan {
    let mut steps = Vec::new();
    let mut skipped = Vec::new();
    for service in services {
        // The first push that upgrades the service wins; otherwise its first mismatch.
        let mut first_miss = None;
        for push in pushes {
            let Some(pushed) = push.image() else { continue };
            let images = std::iter::once(&service.image).chain(&service.other_images).map(String::as_str);
            match config.target_any(&service.labels, images, &pushed, &push.tag, push.digest.as_deref()) {
                Ok((image, from)) => {
                    steps.push(JobStep::pending(service.id.clone(), from.to_owned(), image, service.desired));
                    first_miss = None;
                    break;
                }
                Err(miss) => {
                    first_miss.get_or_insert(miss);
                }
            }
        }
        if let Some(miss) = first_miss {
            skipped.push((service.id.to_string(), miss));
        }
    }
    Plan { steps, skipped }
}

/// The skip reason for a push that upgrades nothing: how close it came.
fn nothing_to_do(skipped: &[(String, Mismatch)]) -> (SkipReason, String) {
    let selected: Vec<&(String, Mismatch)> = skipped.iter().filter(|(_, m)| *m != Mismatch::Selector).collect();
    if selected.is_empty() {
        return (SkipReason::NoService, "no service carries all of the receiver's serviceSelector labels".into());
    }
    let rank = |m: &Mismatch| match m {
        Mismatch::Selector => 0,
        Mismatch::Repository(_) => 1,
        Mismatch::Tag(_) => 2,
        Mismatch::Current => 3,
    };
    let best = selected.iter().map(|(_, m)| rank(m)).max().unwrap_or(0);
    let reason = match best {
        3 => SkipReason::Current,
        2 => SkipReason::Tag,
        _ => SkipReason::Repository,
    };
    let details: Vec<String> = selected
        .iter()
        .map(|(service, m)| match m {
            Mismatch::Repository(why) | Mismatch::Tag(why) => format!("{service}: {why}"),
            Mismatch::Current => format!("{service}: already runs the pushed image"),
            Mismatch::Selector => String::new(),
        })
        .collect();
    (reason, details.join("; "))
}

/// Identifies a push for dedup: its event ids, or what was pushed.
fn push_key(pushes: &[Push]) -> DedupKey {
    let mut hasher = Sha256::new();
    for p in pushes {
        hasher.update(b"push\0");
        match &p.event_id {
            Some(id) => hasher.update(id.as_bytes()),
            None => {
                for part in
                    [p.registry.as_deref().unwrap_or(""), &p.repository, &p.tag, p.digest.as_deref().unwrap_or("")]
                {
                    hasher.update(part.as_bytes());
                    hasher.update(b"\0");
                }
            }
        }
    }
    DedupKey::from_digest(&hasher.finalize())
}

impl Engine {
    pub(super) async fn service_upgrade(
        &self,
        config: &ServiceUpgradeConfig,
        mut draft: Draft<'_>,
    ) -> Result<Report, EngineError> {
        let receiver = draft.receiver;
        let pushes = match &draft.request.payload {
            TriggerPayload::Registry { pushes, .. } => pushes.clone(),
            _ => Vec::new(),
        };
        if pushes.is_empty() {
            let detail = "the notification holds no push of a tagged image".to_owned();
            return self.settle(draft.skip(SkipReason::NoPush, detail)).await;
        }
        let backend = self
            .backends
            .for_project_fresh(&receiver.project, self.store.as_ref())
            .await?
            .ok_or_else(|| EngineError::NoBackend(receiver.project.to_string()))?;
        let key = draft.request.idempotency_key.unwrap_or_else(|| push_key(&pushes));
        draft.dedup_key = Some(key);
        // One decision at a time per receiver: two deliveries of one push must not both
        // find no earlier decision and both start a job.
        let receiver_key =
            ServiceKey::new("receiver", &ServiceId::parse(&receiver.id.to_string()).expect("an id is a name"));
        let Some(_one_at_a_time) = self.locks.acquire(&receiver_key, super::SERVICE_WAIT).await? else {
            return Err(EngineError::Busy(format!("receiver {}", receiver.name.as_str())));
        };
        let since = now_millis() - PUSH_DEDUP_SECONDS * 1000;
        if let Some(same) = self.store.last_decided(receiver.id, &key, since).await? {
            let detail = format!("the same push was acted on as execution {}", same.execution);
            return self.settle(draft.skip(SkipReason::Duplicate, detail)).await;
        }
        let services = match self.timed(backend.as_ref(), "list_services", backend.list_services()).await {
            Ok(services) => services,
            Err(e) => return self.failed(&draft, e).await,
        };
        let Plan { steps, skipped } = plan(config, &services, &pushes);
        if steps.is_empty() {
            let (reason, detail) = nothing_to_do(&skipped);
            return self.settle(draft.skip(reason, detail)).await;
        }
        let targets: Vec<String> = steps.iter().map(|s| format!("{} → {}", s.service, s.image)).collect();
        let reason = format!("upgrading {} service(s)", steps.len());
        let rollout = Rollout {
            batch_size: config.batch_size,
            interval_seconds: config.interval_seconds,
            start_first: config.start_first,
        };
        let job = (backend.name().to_owned(), crate::domain::JobKind::Upgrade, rollout);
        self.start_job(&draft, job, steps, reason, targets.join("; ")).await
    }
}
