//! The `scaleService` driver's configuration and its decision rules.
//!
//! A trigger is planned in three pure steps: [`ScaleServiceConfig::intent`] reads the
//! payload (which direction, or skip a resolved notification), [`ScaleServiceConfig::timing`]
//! applies dedup and cooldown to what the history says, and [`ScaleServiceConfig::decide`]
//! turns the current scale into a clamped target.

use super::{Millis, Notification, ServiceId, ValidationError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleAction {
    Up,
    Down,
}

impl ScaleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleAction::Up => "up",
            ScaleAction::Down => "down",
        }
    }

    pub fn reverse(self) -> Self {
        match self {
            ScaleAction::Up => ScaleAction::Down,
            ScaleAction::Down => ScaleAction::Up,
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "up" => Ok(ScaleAction::Up),
            "down" => Ok(ScaleAction::Down),
            other => Err(ValidationError::new(
                "scaleServiceConfig.action",
                format!("action must be \"up\" or \"down\", not {other:?}"),
            )),
        }
    }
}

/// Upper bound on `max`, so a typo can't ask a backend for a million replicas.
pub const MAX_SCALE: u32 = 10_000;
/// Upper bound on cooldowns and the dedup window: a week.
pub const MAX_WINDOW_SECONDS: u32 = 7 * 24 * 3600;

/// What a resolved Alertmanager notification does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnResolved {
    /// Nothing: the resolution of an alert is not a reason to scale (the seeds' recipe
    /// scaled up *again* on it).
    #[default]
    Ignore,
    /// Undo one step: an "up" receiver scales down by `amount`, and the reverse.
    Reverse,
}

impl OnResolved {
    pub fn as_str(self) -> &'static str {
        match self {
            OnResolved::Ignore => "ignore",
            OnResolved::Reverse => "reverse",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "ignore" => Ok(OnResolved::Ignore),
            "reverse" => Ok(OnResolved::Reverse),
            other => Err(ValidationError::new(
                "scaleServiceConfig.onResolved",
                format!("onResolved must be \"ignore\" or \"reverse\", not {other:?}"),
            )),
        }
    }
}

/// The safety options of a scaleService receiver; the defaults are the safe ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleOptions {
    pub on_resolved: OnResolved,
    /// Seconds after this receiver's last change before it scales up again.
    pub cooldown_up: u32,
    /// Seconds after this receiver's last change before it scales down again (like
    /// Kubernetes' scale-down stabilization window).
    pub cooldown_down: u32,
    /// A notification already acted on within this many seconds is a duplicate. Longer than
    /// Alertmanager's retries and `group_interval` re-sends; a still-firing alert repeated
    /// after it steps again.
    pub dedup: u32,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self { on_resolved: OnResolved::Ignore, cooldown_up: 0, cooldown_down: 300, dedup: 600 }
    }
}

/// A validated `scaleServiceConfig`: 1 <= min < max, amount >= 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleServiceConfig {
    pub service: ServiceId,
    pub action: ScaleAction,
    pub amount: u32,
    pub min: u32,
    pub max: u32,
    pub options: ScaleOptions,
}

/// Why a trigger was deliberately not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    Disabled,
    Resolved,
    Cooldown,
    Duplicate,
}

impl SkipReason {
    pub const ALL: [SkipReason; 4] =
        [SkipReason::Disabled, SkipReason::Resolved, SkipReason::Cooldown, SkipReason::Duplicate];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Disabled => "disabled",
            SkipReason::Resolved => "resolved",
            SkipReason::Cooldown => "cooldown",
            SkipReason::Duplicate => "duplicate",
        }
    }
}

/// What a trigger asks for, before looking at history or the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Step { direction: ScaleAction, dedup_key: Option<String> },
    Skip { reason: SkipReason, detail: String },
}

/// What the history says, as far as timing rules care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// When this receiver last changed the scale.
    pub last_change: Option<Millis>,
    /// When this receiver last acted on the same notification.
    pub last_same: Option<Millis>,
}

impl ScaleServiceConfig {
    pub fn new(
        service: ServiceId,
        action: ScaleAction,
        amount: u32,
        min: u32,
        max: u32,
    ) -> Result<Self, ValidationError> {
        if amount < 1 {
            return Err(ValidationError::new("scaleServiceConfig.amount", "amount must be at least 1"));
        }
        // Scale 0 is refused so that a hook fired too often can't take a service away.
        if min < 1 {
            return Err(ValidationError::new("scaleServiceConfig.min", "min must be at least 1"));
        }
        if max <= min {
            return Err(ValidationError::new(
                "scaleServiceConfig.max",
                format!("max ({max}) must be greater than min ({min})"),
            ));
        }
        if max > MAX_SCALE {
            return Err(ValidationError::new("scaleServiceConfig.max", format!("max must be at most {MAX_SCALE}")));
        }
        Ok(Self { service, action, amount, min, max, options: ScaleOptions::default() })
    }

    pub fn with_options(mut self, options: ScaleOptions) -> Result<Self, ValidationError> {
        for (field, value) in [
            ("scaleServiceConfig.cooldownUpSeconds", options.cooldown_up),
            ("scaleServiceConfig.cooldownDownSeconds", options.cooldown_down),
            ("scaleServiceConfig.dedupSeconds", options.dedup),
        ] {
            if value > MAX_WINDOW_SECONDS {
                return Err(ValidationError::new(
                    field,
                    format!("{field} must be at most {MAX_WINDOW_SECONDS} (a week)"),
                ));
            }
        }
        self.options = options;
        Ok(self)
    }

    pub fn cooldown(&self, direction: ScaleAction) -> u32 {
        match direction {
            ScaleAction::Up => self.options.cooldown_up,
            ScaleAction::Down => self.options.cooldown_down,
        }
    }

    /// Reads the trigger's payload: which way to step, or why not to.
    pub fn intent(&self, notification: Option<&Notification>) -> Intent {
        let Some(n) = notification else {
            return Intent::Step { direction: self.action, dedup_key: None };
        };
        let dedup_key = Some(n.dedup_key());
        if n.is_firing() {
            return Intent::Step { direction: self.action, dedup_key };
        }
        match self.options.on_resolved {
            OnResolved::Reverse => Intent::Step { direction: self.action.reverse(), dedup_key },
            OnResolved::Ignore => Intent::Skip {
                reason: SkipReason::Resolved,
                detail: "the alerts resolved; this receiver ignores resolved notifications (onResolved: ignore)".into(),
            },
        }
    }

    /// Dedup, then cooldown: a duplicate inside a cooldown is reported as a duplicate.
    pub fn timing(&self, direction: ScaleAction, now: Millis, history: History) -> Option<(SkipReason, String)> {
        let elapsed = |at: Millis| (now - at).max(0) / 1000;
        if let Some(at) = history.last_same {
            let window = i64::from(self.options.dedup);
            if elapsed(at) < window {
                return Some((
                    SkipReason::Duplicate,
                    format!("the same notification was acted on {} s ago (dedup window {window} s)", elapsed(at)),
                ));
            }
        }
        let cooldown = i64::from(self.cooldown(direction));
        match history.last_change {
            Some(at) if elapsed(at) < cooldown => Some((
                SkipReason::Cooldown,
                format!(
                    "scaling {} waits {cooldown} s after this receiver's last change, {} s ago",
                    direction.as_str(),
                    elapsed(at)
                ),
            )),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "Scale {} {} by {}, between {} and {}",
            self.action.as_str(),
            self.service,
            self.amount,
            self.min,
            self.max
        )
    }

    /// The step in `direction` from the desired scale `current`, clamped to [min, max].
    /// Reaching a bound is normal for an autoscaler, so it is `Unchanged`, not an error.
    pub fn decide(&self, direction: ScaleAction, current: u32) -> ScaleDecision {
        let (target, bound_reason) = match direction {
            ScaleAction::Up => {
                if current >= self.max {
                    return ScaleDecision::Unchanged {
                        at: current,
                        reason: format!("already at or above max scale {}", self.max),
                    };
                }
                let wanted = current.saturating_add(self.amount);
                (wanted.min(self.max), (wanted > self.max).then(|| format!(" (clamped to max {})", self.max)))
            }
            ScaleAction::Down => {
                if current <= self.min {
                    return ScaleDecision::Unchanged {
                        at: current,
                        reason: format!("already at or below min scale {}", self.min),
                    };
                }
                let wanted = current.saturating_sub(self.amount);
                (wanted.max(self.min), (wanted < self.min).then(|| format!(" (clamped to min {})", self.min)))
            }
        };
        ScaleDecision::Scale {
            from: current,
            to: target,
            reason: format!(
                "scaled {} by {}{}",
                self.action.as_str(),
                current.abs_diff(target),
                bound_reason.unwrap_or_default()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleDecision {
    Scale { from: u32, to: u32, reason: String },
    Unchanged { at: u32, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(action: ScaleAction, amount: u32, min: u32, max: u32) -> ScaleServiceConfig {
        ScaleServiceConfig::new(ServiceId::parse("web").unwrap(), action, amount, min, max).unwrap()
    }

    fn step(c: &ScaleServiceConfig, current: u32) -> ScaleDecision {
        c.decide(c.action, current)
    }

    fn target(decision: ScaleDecision) -> Option<u32> {
        match decision {
            ScaleDecision::Scale { to, .. } => Some(to),
            ScaleDecision::Unchanged { .. } => None,
        }
    }

    #[test]
    fn steps_and_clamps_to_bounds() {
        assert_eq!(target(step(&config(ScaleAction::Up, 1, 1, 10), 2)), Some(3));
        // The brief's example: scale 9, amount 2, max 10 -> 10.
        assert_eq!(target(step(&config(ScaleAction::Up, 2, 1, 10), 9)), Some(10));
        assert_eq!(target(step(&config(ScaleAction::Down, 3, 2, 10), 4)), Some(2));
        assert_eq!(target(step(&config(ScaleAction::Down, 1, 1, 10), 0)), None);
    }

    #[test]
    fn at_a_bound_nothing_changes() {
        assert_eq!(target(step(&config(ScaleAction::Up, 1, 1, 10), 10)), None);
        assert_eq!(target(step(&config(ScaleAction::Up, 1, 1, 10), 12)), None);
        assert_eq!(target(step(&config(ScaleAction::Down, 1, 1, 10), 1)), None);
        let ScaleDecision::Unchanged { reason, .. } = step(&config(ScaleAction::Up, 1, 1, 10), 10) else {
            panic!("expected unchanged")
        };
        assert!(reason.contains("max scale 10"), "{reason}");
    }

    #[test]
    fn below_min_an_up_step_is_taken() {
        assert_eq!(target(step(&config(ScaleAction::Up, 1, 2, 10), 0)), Some(1));
    }

    #[test]
    fn validation_rules() {
        let svc = || ServiceId::parse("web").unwrap();
        assert!(ScaleServiceConfig::new(svc(), ScaleAction::Up, 0, 1, 10).is_err());
        assert!(ScaleServiceConfig::new(svc(), ScaleAction::Up, 1, 0, 10).is_err());
        assert!(ScaleServiceConfig::new(svc(), ScaleAction::Up, 1, 5, 5).is_err());
        assert!(ScaleServiceConfig::new(svc(), ScaleAction::Up, 1, 6, 5).is_err());
        assert!(ScaleServiceConfig::new(svc(), ScaleAction::Up, 1, 1, MAX_SCALE + 1).is_err());
        assert!(ScaleServiceConfig::new(svc(), ScaleAction::Up, 10, 1, 5).is_ok());
    }
}

#[cfg(test)]
mod planning_tests {
    use super::*;
    use crate::domain::{AlertRef, AlertStatus};

    fn config(action: ScaleAction, options: ScaleOptions) -> ScaleServiceConfig {
        ScaleServiceConfig::new(ServiceId::parse("web").unwrap(), action, 1, 1, 10)
            .unwrap()
            .with_options(options)
            .unwrap()
    }

    fn notification(status: AlertStatus) -> Notification {
        Notification {
            group_key: "g".into(),
            status,
            alerts: vec![AlertRef { name: "High".into(), fingerprint: "f".into(), status, starts_at: "t".into() }],
        }
    }

    #[test]
    fn a_plain_trigger_steps_in_the_configured_direction() {
        let c = config(ScaleAction::Down, ScaleOptions::default());
        assert_eq!(c.intent(None), Intent::Step { direction: ScaleAction::Down, dedup_key: None });
    }

    #[test]
    fn resolved_is_ignored_by_default_and_reversed_on_request() {
        let resolved = notification(AlertStatus::Resolved);
        let ignore = config(ScaleAction::Up, ScaleOptions::default());
        assert!(matches!(ignore.intent(Some(&resolved)), Intent::Skip { reason: SkipReason::Resolved, .. }));
        let reverse = config(ScaleAction::Up, ScaleOptions { on_resolved: OnResolved::Reverse, ..Default::default() });
        assert!(matches!(
            reverse.intent(Some(&resolved)),
            Intent::Step { direction: ScaleAction::Down, dedup_key: Some(_) }
        ));
        let firing = notification(AlertStatus::Firing);
        assert!(matches!(
            ignore.intent(Some(&firing)),
            Intent::Step { direction: ScaleAction::Up, dedup_key: Some(_) }
        ));
    }

    #[test]
    fn dedup_comes_before_cooldown_and_both_expire() {
        let c = config(ScaleAction::Down, ScaleOptions { dedup: 60, cooldown_down: 300, ..Default::default() });
        let now = 1_000_000_000;
        let recent = History { last_change: Some(now - 10_000), last_same: Some(now - 10_000) };
        assert_eq!(c.timing(ScaleAction::Down, now, recent).unwrap().0, SkipReason::Duplicate);
        let old_same = History { last_change: Some(now - 100_000), last_same: Some(now - 100_000) };
        assert_eq!(c.timing(ScaleAction::Down, now, old_same).unwrap().0, SkipReason::Cooldown);
        assert_eq!(c.timing(ScaleAction::Up, now, old_same), None, "the up cooldown is 0");
        let long_ago = History { last_change: Some(now - 301_000), last_same: None };
        assert_eq!(c.timing(ScaleAction::Down, now, long_ago), None);
        assert_eq!(c.timing(ScaleAction::Down, now, History::default()), None);
    }

    #[test]
    fn windows_are_bounded() {
        let c = ScaleServiceConfig::new(ServiceId::parse("web").unwrap(), ScaleAction::Up, 1, 1, 10).unwrap();
        let too_long = ScaleOptions { cooldown_down: MAX_WINDOW_SECONDS + 1, ..Default::default() };
        assert_eq!(c.with_options(too_long).unwrap_err().field, "scaleServiceConfig.cooldownDownSeconds");
    }
}
