//! `scaleService` in target mode: the alert says how many replicas the service needs, and
//! hookd goes there, HPA-like.
//!
//! [`decide_target`] is pure: the recommendation is clamped to [min, max]; a scale-up goes
//! at once, a scale-down only to the highest recommendation of the stabilization window (so
//! a noisy metric never makes the service flap); then each step is limited by `maxStepUp`
//! or `maxStepDown`. Each of these says what it did, for the execution history.

use super::{AlertStatus, Millis, Notification, ValidationError};

/// Where a firing alert carries the wanted replica count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSource {
    Annotation(String),
    Label(String),
}

impl TargetSource {
    pub fn kind(&self) -> &'static str {
        match self {
            TargetSource::Annotation(_) => "annotation",
            TargetSource::Label(_) => "label",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            TargetSource::Annotation(name) | TargetSource::Label(name) => name,
        }
    }
}

/// How far one decision may move the scale: replicas, or a percentage of the current scale
/// (at least one replica, so a service at 0 or 1 can move).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepLimit {
    Replicas(u32),
    Percent(u32),
}

impl StepLimit {
    /// `4` or `"50%"`, as the API takes it.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, ValidationError> {
        let invalid = || {
            ValidationError::new(
                field,
                format!("{field} is a whole number of replicas (4) or a percentage (\"50%\"), not {text:?}"),
            )
        };
        let limit = match text.strip_suffix('%') {
            Some(percent) => StepLimit::Percent(percent.trim().parse().map_err(|_| invalid())?),
            None => StepLimit::Replicas(text.trim().parse().map_err(|_| invalid())?),
        };
        match limit {
            StepLimit::Replicas(0) | StepLimit::Percent(0) => Err(ValidationError::new(
                field,
                format!("{field} must be at least 1 (got {text:?}); leave it out for no limit"),
            )),
            StepLimit::Percent(p) if p > 10_000 => {
                Err(ValidationError::new(field, format!("{field} is at most 10000%")))
            }
            limit => Ok(limit),
        }
    }

    /// The most replicas one step may add (`up`) or remove from `current`.
    pub fn replicas(self, current: u32, up: bool) -> u32 {
        match self {
            StepLimit::Replicas(n) => n,
            StepLimit::Percent(p) => {
                let share = u64::from(current) * u64::from(p);
                let share = if up { share.div_ceil(100) } else { share / 100 };
                u32::try_from(share).unwrap_or(u32::MAX).max(1)
            }
        }
    }

    pub fn text(self) -> String {
        match self {
            StepLimit::Replicas(n) => n.to_string(),
            StepLimit::Percent(p) => format!("{p}%"),
        }
    }
}

/// Upper bound on the stabilization window: an hour.
pub const MAX_STABILIZATION_SECONDS: u32 = 3600;
pub const DEFAULT_STABILIZATION_SECONDS: u32 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub from: TargetSource,
    pub max_step_up: Option<StepLimit>,
    pub max_step_down: Option<StepLimit>,
    /// Seconds of recommendations a scale-down respects: it goes no lower than their highest.
    pub stabilization: u32,
}

/// How a scaleService receiver moves its service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ScaleMode {
    /// ±`amount` per trigger, Rancher's way.
    #[default]
    Step,
    /// To the replica count the firing alerts carry.
    Target(TargetConfig),
}

impl ScaleMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            ScaleMode::Step => "step",
            ScaleMode::Target(_) => "target",
        }
    }
}

impl TargetConfig {
    pub fn check(&self) -> Result<(), ValidationError> {
        let name = self.from.name();
        let valid = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(ValidationError::new(
                "scaleServiceConfig.targetFrom",
                format!("{name:?} is not a label or annotation name: letters, digits and _, not starting with a digit"),
            ));
        }
        if self.stabilization > MAX_STABILIZATION_SECONDS {
            return Err(ValidationError::new(
                "scaleServiceConfig.stabilizationSeconds",
                format!("stabilizationSeconds must be at most {MAX_STABILIZATION_SECONDS} (an hour)"),
            ));
        }
        Ok(())
    }

    /// The replica count the notification asks for: the largest its firing alerts carry.
    /// `Err`: why none could be read (to be refused: a misrouted or misconfigured alert).
    pub fn wanted(&self, notification: &Notification) -> Result<(u32, String), String> {
        let (kind, name) = (self.from.kind(), self.from.name());
        let mut best: Option<(u32, &str)> = None;
        let mut unreadable = Vec::new();
        for alert in notification.alerts.iter().filter(|a| a.status == AlertStatus::Firing) {
            let value = match &self.from {
                TargetSource::Annotation(n) => alert.annotations.get(n),
                TargetSource::Label(n) => alert.labels.get(n),
            };
            match value.map(|v| replicas(v).ok_or(v)) {
                Some(Ok(n)) if best.is_none_or(|(b, _)| n > b) => best = Some((n, alert.name.as_str())),
                Some(Ok(_)) => {}
                Some(Err(text)) => unreadable.push(format!("{}: {text:?}", alert.name)),
                None => unreadable.push(format!("{}: no {kind} {name}", alert.name)),
            }
        }
        match best {
            Some((n, alert)) if unreadable.is_empty() => Ok((n, format!("{kind} {name} of alert {alert}"))),
            Some((n, alert)) => {
                Ok((n, format!("{kind} {name} of alert {alert} (left out, no count: {})", unreadable.join(", "))))
            }
            None => {
                Err(format!("no firing alert carries a replica count in its {kind} {name} ({})", unreadable.join(", ")))
            }
        }
    }
}

/// `{{ $value }}` as Prometheus renders it ("3", "3.2", "1e+03", "+Inf"): rounded up, at
/// least 0; +Inf (a queue no worker drains) is as many as there may be. NaN is no count.
fn replicas(text: &str) -> Option<u32> {
    let value: f64 = text.trim().parse().ok()?;
    (!value.is_nan()).then(|| value.max(0.0).ceil().min(f64::from(u32::MAX)) as u32)
}

/// A replica count a trigger recommended for a service, when, and from which alert group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    pub at: Millis,
    pub replicas: u32,
    /// The Alertmanager group that sent it (a digest of its group key): a group that
    /// resolves takes its recommendations back.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetDecision {
    Scale { from: u32, to: u32, reason: String, detail: String },
    Unchanged { at: u32, reason: String, detail: String },
}

/// Where `wanted` (the alert's recommendation) takes a service at `current`, within
/// [min, max]. `window`: earlier recommendations for the service; those older than the
/// stabilization window are ignored.
pub fn decide_target(
    target: &TargetConfig,
    (min, max): (u32, u32),
    current: u32,
    wanted: u32,
    now: Millis,
    window: &[Recommendation],
) -> TargetDecision {
    let mut notes = vec![format!("recommended {wanted}")];
    let bounded = wanted.clamp(min, max);
    if bounded != wanted {
        notes.push(format!("clamped to {} {bounded}", if wanted > max { "max" } else { "min" }));
    }
    let unchanged = |reason: String, notes: Vec<String>| TargetDecision::Unchanged {
        at: current,
        reason,
        detail: notes.join("; "),
    };
    if bounded == current {
        return unchanged(format!("already at the recommendation {current}"), notes);
    }
    let to = if bounded > current {
        let mut to = bounded;
        if let Some(limit) = target.max_step_up {
            let most = current.saturating_add(limit.replicas(current, true));
            if to > most {
                notes.push(format!("maxStepUp {} allows {most}", limit.text()));
                to = most;
            }
        }
        to
    } else {
        let since = now - i64::from(target.stabilization) * 1000;
        let held = window.iter().filter(|r| r.at >= since).map(|r| r.replicas.clamp(min, max)).max();
        let mut to = bounded;
        if let Some(held) = held.filter(|h| *h > bounded) {
            notes.push(format!("the last {} s recommended up to {held}", target.stabilization));
            to = held;
        }
        if to >= current {
            let reason =
                format!("held at {current}: scale-down waits out the {} s stabilization window", target.stabilization);
            return unchanged(reason, notes);
        }
        if let Some(limit) = target.max_step_down {
            let least = current.saturating_sub(limit.replicas(current, false));
            if to < least {
                notes.push(format!("maxStepDown {} allows {least}", limit.text()));
                to = least;
            }
        }
        to
    };
    let direction = if to > current { "up" } else { "down" };
    let reason = match to == bounded {
        true => format!("scaled {direction} to the recommendation {to}"),
        false => format!("scaled {direction} to {to}, toward the recommendation {bounded}"),
    };
    TargetDecision::Scale { from: current, to, reason, detail: notes.join("; ") }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn target(up: Option<StepLimit>, down: Option<StepLimit>) -> TargetConfig {
        TargetConfig {
            from: TargetSource::Annotation("desired_replicas".into()),
            max_step_up: up,
            max_step_down: down,
            stabilization: 300,
        }
    }

    fn to(decision: &TargetDecision) -> Option<u32> {
        match decision {
            TargetDecision::Scale { to, .. } => Some(*to),
            TargetDecision::Unchanged { .. } => None,
        }
    }

    const NOW: Millis = 1_000_000;

    #[test]
    fn up_goes_to_the_recommendation_in_one_decision_within_bounds() {
        let t = target(None, None);
        let d = decide_target(&t, (1, 10), 1, 4, NOW, &[]);
        assert_eq!(to(&d), Some(4), "{d:?}");
        let d = decide_target(&t, (1, 10), 1, 40, NOW, &[]);
        assert!(
            matches!(&d, TargetDecision::Scale { to: 10, detail, .. } if detail.contains("clamped to max 10")),
            "{d:?}"
        );
        let d = decide_target(&t, (1, 10), 4, 4, NOW, &[]);
        assert!(matches!(d, TargetDecision::Unchanged { at: 4, .. }));
    }

    #[test]
    fn down_waits_for_the_window_then_goes_to_its_highest() {
        let t = target(None, None);
        let rec = |ago: i64, replicas| Recommendation { at: NOW - ago, replicas, source: "g".into() };
        let window = [rec(200_000, 4), rec(100_000, 3)];
        let d = decide_target(&t, (1, 10), 4, 1, NOW, &window);
        assert!(
            matches!(&d, TargetDecision::Unchanged { reason, .. } if reason.contains("300 s stabilization")),
            "{d:?}"
        );
        // The 4 has left the window; the 3 has not.
        let d = decide_target(&t, (1, 10), 4, 1, NOW + 150_000, &window);
        assert_eq!(to(&d), Some(3), "{d:?}");
        let d = decide_target(&t, (1, 10), 3, 1, NOW + 250_000, &window);
        assert_eq!(to(&d), Some(1), "{d:?}");
    }

    #[test]
    fn step_limits_in_replicas_and_percent() {
        let t = target(Some(StepLimit::Replicas(2)), Some(StepLimit::Percent(50)));
        let d = decide_target(&t, (1, 100), 1, 9, NOW, &[]);
        assert!(
            matches!(&d, TargetDecision::Scale { to: 3, detail, .. } if detail.contains("maxStepUp 2 allows 3")),
            "{d:?}"
        );
        assert_eq!(to(&decide_target(&t, (1, 100), 10, 1, NOW, &[])), Some(5));
        assert_eq!(to(&decide_target(&t, (1, 100), 1, 1, NOW, &[])), None);
        let pct = target(Some(StepLimit::Percent(100)), Some(StepLimit::Percent(10)));
        assert_eq!(to(&decide_target(&pct, (0, 100), 0, 5, NOW, &[])), Some(1), "0 wakes by at least one");
        assert_eq!(to(&decide_target(&pct, (0, 100), 3, 9, NOW, &[])), Some(6));
        assert_eq!(to(&decide_target(&pct, (0, 100), 5, 0, NOW, &[])), Some(4), "at least one down");
    }

    #[test]
    fn step_limits_parse_as_the_api_takes_them() {
        assert_eq!(StepLimit::parse("maxStepUp", "4").unwrap(), StepLimit::Replicas(4));
        assert_eq!(StepLimit::parse("maxStepUp", "50%").unwrap(), StepLimit::Percent(50));
        for bad in ["0", "0%", "-1", "x", "1.5", "%"] {
            assert!(StepLimit::parse("maxStepUp", bad).is_err(), "{bad}");
        }
    }

    fn limit() -> impl Strategy<Value = Option<StepLimit>> {
        prop_oneof![
            Just(None),
            (1u32..20).prop_map(|n| Some(StepLimit::Replicas(n))),
            (1u32..300).prop_map(|p| Some(StepLimit::Percent(p))),
        ]
    }

    proptest! {
        #[test]
        fn never_outside_bounds_never_down_in_the_window_and_steps_bounded(
            min in 0u32..5, span in 1u32..30, current in 0u32..60, wanted in 0u32..100,
            up in limit(), down in limit(),
            window in proptest::collection::vec((0i64..600_000, 0u32..100), 0..8),
        ) {
            let max = min + span;
            let t = TargetConfig { from: TargetSource::Label("r".into()), max_step_up: up, max_step_down: down, stabilization: 300 };
            let window: Vec<Recommendation> = window.into_iter().map(|(ago, replicas)| Recommendation { at: NOW - ago, replicas, source: "g".into() }).collect();
            let d = decide_target(&t, (min, max), current, wanted, NOW, &window);
            if let TargetDecision::Scale { from, to, .. } = d {
                prop_assert_eq!(from, current);
                prop_assert_ne!(to, current);
                // Toward the bounded recommendation, never past it; never out of bounds
                // from inside them.
                let bounded = wanted.clamp(min, max);
                let toward = if to > current { to <= bounded } else { to >= bounded };
                prop_assert!(toward, "{} → {} passed the recommendation {}", current, to, bounded);
                if (min..=max).contains(&current) { prop_assert!((min..=max).contains(&to)); }
                if to > current {
                    if let Some(l) = up { prop_assert!(to - current <= l.replicas(current, true)); }
                } else {
                    if let Some(l) = down { prop_assert!(current - to <= l.replicas(current, false)); }
                    let held = window.iter().filter(|r| r.at >= NOW - 300_000).map(|r| r.replicas.clamp(min, max)).max();
                    if let Some(held) = held { prop_assert!(to >= held, "went down to {} under the window's {}", to, held); }
                }
            }
        }
    }
}
