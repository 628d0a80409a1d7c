//! scaleService in target mode: the firing alerts say how many replicas the service needs;
//! hookd records that recommendation, then moves the service toward it as
//! `domain::target::decide_target` says (bounds, step limits, the stabilization window).

use super::{Draft, Engine, EngineError, Plan, Report, SERVICE_WAIT};
use crate::{
    backend::Backend,
    domain::{
        now_millis,
        target::{decide_target, Recommendation, TargetConfig, TargetDecision},
        Dedup, DedupKind, History, Notification, OnResolved, Outcome, ScaleAction, ScaleServiceConfig, SkipReason,
        IDEMPOTENCY_WINDOW_SECONDS,
    },
};

impl Engine {
    pub(super) async fn scale_to_target(
        &self,
        config: &ScaleServiceConfig,
        target: &TargetConfig,
        backend: &dyn Backend,
        notification: Option<&Notification>,
        mut draft: Draft<'_>,
    ) -> Result<Report, EngineError> {
        let refuse = |draft: &Draft, reason: &str, detail: String| {
            draft.build(Outcome::Refused, crate::domain::Effect::None, reason.to_owned(), detail)
        };
        // What the alerts ask for. A resolved group takes back what it recommended; what
        // other groups recommended within the window still holds.
        let (wanted, source, resolved) = match notification {
            None => {
                let detail = "a target-mode receiver reads the replica count from Alertmanager's alerts; this POST \
                              carries no notification"
                    .to_owned();
                return self.settle(refuse(&draft, "not an Alertmanager notification", detail)).await;
            }
            Some(n) if n.is_firing() => match target.wanted(n) {
                Ok((wanted, source)) => (wanted, source, false),
                Err(why) => return self.settle(refuse(&draft, "no replica count in the alerts", why)).await,
            },
            Some(_) => match config.options.on_resolved {
                OnResolved::Min => (config.min, "the alerts resolved (onResolved: min)".to_owned(), true),
                OnResolved::Ignore | OnResolved::Reverse => {
                    let detail = "the alerts resolved; this receiver ignores resolved notifications (onResolved: \
                                  ignore)"
                        .into();
                    return self.settle(draft.skip(SkipReason::Resolved, detail)).await;
                }
            },
        };
        // Going to a target twice is going there once: only an Idempotency-Key dedups.
        let dedup = draft.request.idempotency_key.map(|key| Dedup {
            key,
            kind: DedupKind::IdempotencyKey,
            window_seconds: IDEMPOTENCY_WINDOW_SECONDS,
        });
        draft.dedup_key = dedup.map(|d| d.key);
        let service = draft.service.clone().expect("set by scale_service");
        let Some(_serialized) = self.locks.acquire(&service, SERVICE_WAIT).await? else {
            return Err(EngineError::Busy(config.service.to_string()));
        };
        draft.id = crate::domain::ExecutionId::generate();
        if !self.still_enabled(draft.receiver).await? {
            return self.settle(draft.skip(SkipReason::Disabled, "the receiver is disabled".into())).await;
        }
        let now = now_millis();
        let last_same = match &dedup {
            Some(d) => {
                self.store.last_decided(draft.receiver.id, &d.key, now - i64::from(d.window_seconds) * 1000).await?
            }
            None => None,
        };
        let cooldowns = config.options.cooldown_up.is_some() || config.options.cooldown_down.is_some();
        let last_change = if cooldowns { self.store.last_change(&service).await? } else { None };
        let history = History { last_change: None, last_same };
        if let Some((reason, detail)) = config.timing(ScaleAction::Up, now, dedup.as_ref(), true, history) {
            return self.settle(draft.skip(reason, detail)).await;
        }
        let group = group_digest(notification.map(|n| n.group_key.as_str()).unwrap_or_default());
        let dry_run = draft.request.dry_run;
        if resolved && !dry_run {
            self.store.forget_recommendations(&service, &group).await?;
        }
        let mut window = self.store.recommendations(&service, now - i64::from(target.stabilization) * 1000).await?;
        window.retain(|r| !(resolved && r.source == group));
        if !resolved && !dry_run {
            let recommendation = Recommendation { at: now, replicas: wanted, source: group.clone() };
            self.store.record_recommendation(&service, recommendation).await?;
        }
        // A workload an autoscaler took over since the receiver was made must not go to 0.
        if wanted.clamp(config.min, config.max) == 0 {
            match self.timed(backend, "check_zero", backend.check_zero(&config.service)).await {
                Ok(()) => {}
                Err(crate::backend::BackendError::Refused(why)) => {
                    return self.settle(refuse(&draft, "cannot scale to 0", why)).await;
                }
                // Not knowing is no: a failed check answers like a failed action.
                Err(e) => return self.failed(&draft, e).await,
            }
        }
        let plan = |current: u32| {
            let (reason, detail, at) =
                match decide_target(target, (config.min, config.max), current, wanted, now, &window) {
                    TargetDecision::Unchanged { at, reason, detail } => (reason, detail, at),
                    TargetDecision::Scale { from, to, reason, detail } => {
                        let direction = if to > from { ScaleAction::Up } else { ScaleAction::Down };
                        // A cooldown set on the receiver still holds its direction.
                        let held = History { last_change, last_same: None };
                        match config.timing(direction, now, None, true, held) {
                            Some((skip, why)) => {
                                let detail = format!("{source}: {detail}; {why}");
                                return Plan::Settle {
                                    outcome: Outcome::Skipped,
                                    at: from,
                                    reason: skip.as_str().into(),
                                    detail,
                                };
                            }
                            None => return Plan::Write { from, to, reason, detail: format!("{source}: {detail}") },
                        }
                    }
                };
            Plan::Settle { outcome: Outcome::Unchanged, at, reason, detail: format!("{source}: {detail}") }
        };
        self.step(backend, &config.service, &draft, plan).await
    }
}

/// A short, stable name for an Alertmanager group (its group key can be long).
fn group_digest(group_key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(group_key.as_bytes())[..8])
}
