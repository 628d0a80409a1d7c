//! `scaleHost`: a trigger decides which hosts of a pool to add or remove and starts a job
//! (202); the job creates or deletes them one after another through the pool's provider,
//! rolls back a failed creation, and is resumed after a restart.

use std::sync::Arc;

use super::{Draft, Engine, EngineError, Report, SERVICE_WAIT};
use crate::{
    domain::{
        host::{HostDecision, ScaleHostConfig},
        now_millis, Effect, Intent, Job, JobKind, JobStep, Notification, Outcome, ProjectName, Rollout, ScaleAction,
        ServiceId, ServiceKey, SkipReason, StepState,
    },
    engine::TriggerPayload,
    hosts::{HostError, Pool, Pools},
    store::Store,
};

impl Engine {
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// The one pool of `project` whose selector `selector` includes, or why there is none.
    pub fn pool_for(
        &self,
        project: &ProjectName,
        selector: &std::collections::BTreeMap<String, String>,
    ) -> Result<Arc<Pool>, String> {
        let pools = self.pools.for_selector(project, selector);
        match pools.as_slice() {
            [one] => Ok(one.clone()),
            [] => {
                let known: Vec<String> = self
                    .pools
                    .of_project(project)
                    .iter()
                    .map(|p| {
                        let labels: Vec<String> = p.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        format!("{} ({})", p.name, labels.join(", "))
                    })
                    .collect();
                Err(match known.is_empty() {
                    true => format!("project {project} has no host pools (declare one with [[host_pool]])"),
                    false => format!(
                        "hostSelector must include the selector of one of project {project}'s pools: {}",
                        known.join("; ")
                    ),
                })
            }
            many => Err(format!(
                "hostSelector matches {} pools ({}); add a label that tells them apart",
                many.len(),
                many.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    pub(super) async fn scale_host(
        &self,
        config: &ScaleHostConfig,
        mut draft: Draft<'_>,
    ) -> Result<Report, EngineError> {
        let receiver = draft.receiver;
        let pool = match self.pool_for(&receiver.project, &config.selector) {
            Ok(pool) => pool,
            Err(why) => {
                let failed = draft.build(Outcome::Failed, Effect::None, why, String::new());
                return self.settle(failed).await;
            }
        };
        let key = ServiceKey::new("pool", &ServiceId::parse(&pool.name).expect("a pool name is a name"));
        draft.service = Some(key.clone());
        let notification: Option<&Notification> = match &draft.request.payload {
            TriggerPayload::Alertmanager(n) => Some(n),
            _ => None,
        };
        let rules = config.rules(&pool.name);
        let (direction, dedup) = match rules.intent(notification, draft.request.idempotency_key) {
            Intent::Skip { reason, detail } => return self.settle(draft.skip(reason, detail)).await,
            Intent::Step { direction, dedup } => (direction, dedup),
        };
        draft.dedup_key = dedup.map(|d| d.key);
        let Some(_serialized) = self.locks.acquire(&key, SERVICE_WAIT).await? else {
            return Err(EngineError::Busy(format!("host pool {}", pool.name)));
        };
        draft.id = crate::domain::ExecutionId::generate();
        if !self.still_enabled(receiver).await? {
            return self.settle(draft.skip(SkipReason::Disabled, "the receiver is disabled".into())).await;
        }
        let now = now_millis();
        let history = crate::domain::History {
            last_change: match rules.cooldown(direction, notification.is_some()) {
                0 => None,
                _ => self.store.last_change(&key).await?,
            },
            last_same: match &dedup {
                Some(d) => {
                    self.store.last_decided(receiver.id, &d.key, now - i64::from(d.window_seconds) * 1000).await?
                }
                None => None,
            },
        };
        if let Some((reason, detail)) = rules.timing(direction, now, dedup.as_ref(), notification.is_some(), history) {
            return self.settle(draft.skip(reason, detail)).await;
        }
        // One change of a pool at a time: hosts being made or removed are not counted yet.
        let busy = self
            .store
            .running_jobs()
            .await?
            .into_iter()
            .find(|j| matches!(&j.kind, JobKind::Hosts { pool: p, .. } if p == &pool.name));
        if let Some(job) = busy {
            let detail = format!("job {} is still changing the pool's hosts", job.id);
            return self.settle(draft.skip(SkipReason::Cooldown, detail)).await;
        }
        let (hosts, taken) = match pool.listing().await {
            Ok(listing) => listing,
            Err(e) => {
                let retry = matches!(e, HostError::Unavailable(_));
                let failed = draft.build(Outcome::Failed, Effect::None, e.to_string(), String::new());
                self.store.record_execution(&failed, None).await?;
                return Ok(Report { execution: failed, retry });
            }
        };
        let (names, from, to) = match config.decide(direction, &hosts, (pool.min, pool.max), &pool.name, &taken) {
            HostDecision::Unchanged { at, reason } => {
                let unchanged =
                    draft.build(Outcome::Unchanged, Effect::Scale { from: at, to: at }, reason, String::new());
                return self.settle(unchanged).await;
            }
            HostDecision::Refused { at, reason } => {
                let refused = draft.build(Outcome::Refused, Effect::Scale { from: at, to: at }, reason, String::new());
                return self.settle(refused).await;
            }
            HostDecision::Create { from, to, names } | HostDecision::Delete { from, to, names } => (names, from, to),
        };
        let verb = if direction == ScaleAction::Up { "adding" } else { "removing" };
        let reason = format!("{verb} {} host(s) of pool {}: {from} → {to}", names.len(), pool.name);
        let steps = names
            .iter()
            .map(|name| {
                let host = ServiceId::parse(name).expect("host names are names");
                JobStep::pending(host, String::new(), String::new(), 1)
            })
            .collect();
        let kind = JobKind::Hosts { pool: pool.name.clone(), action: direction, labels: config.selector.clone() };
        let rollout = Rollout { batch_size: 1, interval_seconds: 0, start_first: false };
        self.start_job(&draft, (pool.name.clone(), kind, rollout), steps, reason, names.join(", ")).await
    }
}

/// Runs a host job's steps: each host created (a failure rolled back) or deleted.
pub(super) async fn run(store: &dyn Store, pools: &Pools, job: Job) {
    crate::hosts::JOB.scope(job.id.to_string(), run_steps(store, pools, job)).await
}

async fn run_steps(store: &dyn Store, pools: &Pools, mut job: Job) {
    let JobKind::Hosts { pool, action, labels } = job.kind.clone() else { return };
    let Some(pool) = pools.by_name(&pool).cloned() else {
        job.fail(format!("the host pool {pool} is no longer configured"), now_millis());
        super::jobs::save(store, &job).await;
        return;
    };
    for index in 0..job.steps.len() {
        let step = &mut job.steps[index];
        if matches!(step.state, StepState::Done | StepState::Skipped | StepState::Failed) {
            continue;
        }
        let resumed = step.state == StepState::Running;
        if resumed {
            let killed = pool.kill_leftovers(&job.id.to_string(), &step.service.to_string());
            if killed > 0 {
                tracing::warn!(job = %job.id, pool = %pool.name, host = %step.service, killed, "killed what was left of an interrupted script");
            }
        }
        step.state = StepState::Running;
        step.started.get_or_insert(now_millis());
        let name = step.service.to_string();
        super::jobs::save(store, &job).await;
        let result = match action {
            ScaleAction::Up => {
                // A create cut short by a restart: clear whatever half of it was made first;
                // creating over a half-made host could make it twice.
                let cleared = match resumed {
                    true => delete(&pool, &name).await.map_err(|e| {
                        format!("creating {name} was cut short by a restart, and clearing what it made failed: {e}")
                    }),
                    false => Ok(()),
                };
                match cleared {
                    Err(why) => Err(why),
                    Ok(()) => match pool.provider.create(&name, &labels).await {
                        Ok(()) => Ok(()),
                        Err(e) => Err(match delete(&pool, &name).await {
                            Ok(()) => format!("creating {name} failed: {e}; rolled back ({name} deleted)"),
                            Err(r) => {
                                format!("creating {name} failed: {e}; the rollback failed too, {name} may remain: {r}")
                            }
                        }),
                    },
                }
            }
            ScaleAction::Down => delete(&pool, &name).await.map_err(|e| format!("deleting {name} failed: {e}")),
        };
        // People see the pool as it is now, not as it was listed a moment ago.
        *pool.shown.lock().await = None;
        let now = now_millis();
        let step = &mut job.steps[index];
        step.finished = Some(now);
        job.updated = now;
        match result {
            Ok(()) => {
                step.state = StepState::Done;
                step.updated = 1;
                tracing::info!(job = %job.id, pool = %pool.name, host = %name, action = action.as_str(), "host done");
            }
            Err(why) => {
                step.state = StepState::Failed;
                step.error = Some(why.clone());
                for later in job.steps.iter_mut().skip(index + 1) {
                    later.state = StepState::Skipped;
                    later.error = Some("not attempted: an earlier host failed".into());
                }
                tracing::warn!(job = %job.id, pool = %pool.name, error = %why, "host job failed");
                job.fail(why, now);
                super::jobs::save(store, &job).await;
                return;
            }
        }
        super::jobs::save(store, &job).await;
    }
    job.succeed(now_millis());
    super::jobs::save(store, &job).await;
}

/// Deletes a host, waiting out a provider that cannot be reached (a swarm manager
/// restarting): deleting is safe to repeat, and giving up would strand a drained node.
async fn delete(pool: &Pool, name: &str) -> Result<(), HostError> {
    let started = tokio::time::Instant::now();
    loop {
        match pool.provider.delete(name).await {
            Err(HostError::Unavailable(why)) if started.elapsed() < super::jobs::UNAVAILABLE_FOR => {
                tracing::warn!(pool = %pool.name, host = %name, error = %why, "the host provider is unavailable; retrying");
                tokio::time::sleep(RETRY_EVERY).await;
            }
            other => return other,
        }
    }
}

const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        sync::{
            atomic::{AtomicU32, Ordering},
            Arc,
        },
    };

    use super::*;
    use crate::{domain::host::HostInfo, hosts::HostProvider};

    /// A provider unreachable for its first `outages` deletes.
    struct Flaky {
        outages: u32,
        calls: AtomicU32,
    }

    #[async_trait::async_trait]
    impl HostProvider for Flaky {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        async fn list(&self) -> Result<Vec<HostInfo>, HostError> {
            Ok(Vec::new())
        }
        async fn create(&self, _: &str, _: &BTreeMap<String, String>) -> Result<(), HostError> {
            Ok(())
        }
        async fn delete(&self, _: &str) -> Result<(), HostError> {
            match self.calls.fetch_add(1, Ordering::SeqCst) < self.outages {
                true => Err(HostError::Unavailable("connection refused".into())),
                false => Ok(()),
            }
        }
    }

    fn pool(outages: u32) -> (Pool, Arc<Flaky>) {
        let provider = Arc::new(Flaky { outages, calls: AtomicU32::new(0) });
        let pool = Pool {
            name: "w".into(),
            project: crate::domain::ProjectName::parse("default").unwrap(),
            selector: BTreeMap::new(),
            min: 1,
            max: 3,
            provider: provider.clone(),
            shown: Default::default(),
        };
        (pool, provider)
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_waits_out_an_unreachable_provider_then_gives_up() {
        let (brief, provider) = pool(3);
        delete(&brief, "w-1").await.expect("reachable again within the window");
        assert_eq!(provider.calls.load(Ordering::SeqCst), 4);
        let (endless, _) = pool(u32::MAX);
        let started = tokio::time::Instant::now();
        let err = delete(&endless, "w-1").await.unwrap_err();
        assert!(matches!(err, HostError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() >= super::super::jobs::UNAVAILABLE_FOR);
    }
}
