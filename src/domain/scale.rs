//! The `scaleService` driver's configuration and its decision rules.
//!
//! A trigger is planned in three pure steps: [`ScaleServiceConfig::intent`] reads the
//! payload (which direction, or skip a resolved notification), [`ScaleServiceConfig::timing`]
//! applies dedup and cooldown to what the history says, and [`ScaleServiceConfig::decide`]
//! turns the current scale into a clamped target.

use super::{
    target::ScaleMode, Decided, Dedup, DedupKey, DedupKind, Millis, Notification, ServiceId, ValidationError,
    IDEMPOTENCY_WINDOW_SECONDS,
};

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
                format!("Invalid action {other}; action is \"up\" or \"down\""),
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
    /// Target mode: go to `min` (the condition is over; no later notification will come).
    Min,
}

impl OnResolved {
    pub fn as_str(self) -> &'static str {
        match self {
            OnResolved::Ignore => "ignore",
            OnResolved::Reverse => "reverse",
            OnResolved::Min => "min",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "ignore" => Ok(OnResolved::Ignore),
            "reverse" => Ok(OnResolved::Reverse),
            "min" => Ok(OnResolved::Min),
            other => Err(ValidationError::new(
                "scaleServiceConfig.onResolved",
                format!(
                    "onResolved must be \"ignore\", \"reverse\" (step mode) or \"min\" (target mode), not {other:?}"
                ),
            )),
        }
    }
}

/// What a step that would pass `min` or `max` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AtBound {
    /// Stop at the bound; already there: unchanged (an autoscaler reaches bounds as a matter of course).
    #[default]
    Clamp,
    /// Rancher's behaviour: refuse the whole step with 400 and leave the scale as it is.
    Refuse,
}

impl AtBound {
    pub fn as_str(self) -> &'static str {
        match self {
            AtBound::Clamp => "clamp",
            AtBound::Refuse => "refuse",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "clamp" => Ok(AtBound::Clamp),
            "refuse" => Ok(AtBound::Refuse),
            other => Err(ValidationError::new(
                "scaleServiceConfig.atBound",
                format!("atBound must be \"clamp\" or \"refuse\", not {other:?}"),
            )),
        }
    }
}

/// Cooldowns an Alertmanager notification gets when the receiver sets none: 0 s up, 300 s
/// down (like Kubernetes' scale-down stabilization window).
pub const ALERT_COOLDOWN_UP: u32 = 0;
pub const ALERT_COOLDOWN_DOWN: u32 = 300;

/// The safety options of a scaleService receiver; the defaults are the safe ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleOptions {
    pub at_bound: AtBound,
    pub on_resolved: OnResolved,
    /// Seconds after the service's last change (by any receiver) before this receiver
    /// scales it up. `None`: [`ALERT_COOLDOWN_UP`] for notifications, none for plain POSTs.
    pub cooldown_up: Option<u32>,
    /// The same for scaling down; `None`: [`ALERT_COOLDOWN_DOWN`] for notifications, none
    /// for plain POSTs (a person or a script that POSTs means it now).
    pub cooldown_down: Option<u32>,
    /// A notification already acted on within this many seconds is a duplicate. Longer than
    /// Alertmanager's retries and `group_interval` re-sends; a still-firing alert repeated
    /// after it steps again.
    pub dedup: u32,
    /// Scale even though another controller (a Kubernetes HPA) sets the same scale.
    pub allow_autoscaler: bool,
    /// `min: 0` is allowed: the service may be scaled to zero (and woken by the next alert).
    pub allow_zero: bool,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            at_bound: AtBound::Clamp,
            on_resolved: OnResolved::Ignore,
            cooldown_up: None,
            cooldown_down: None,
            dedup: 600,
            allow_autoscaler: false,
            allow_zero: false,
        }
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
    /// `step` (±amount per trigger, Rancher's) or `target` (the alert says how many).
    pub mode: ScaleMode,
}

/// Why a trigger was deliberately not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    Disabled,
    Resolved,
    Cooldown,
    Duplicate,
    /// An upgrade's push held no push of a tagged image.
    NoPush,
    /// No service carries the receiver's selector labels.
    NoService,
    /// Services were selected, but none runs the pushed repository.
    Repository,
    /// The pushed tag does not pass the receiver's tag policy.
    Tag,
    /// Every selected service already runs the pushed image.
    Current,
}

impl SkipReason {
    pub const ALL: [SkipReason; 9] = [
        SkipReason::Disabled,
        SkipReason::Resolved,
        SkipReason::Cooldown,
        SkipReason::Duplicate,
        SkipReason::NoPush,
        SkipReason::NoService,
        SkipReason::Repository,
        SkipReason::Tag,
        SkipReason::Current,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Disabled => "disabled",
            SkipReason::Resolved => "resolved",
            SkipReason::Cooldown => "cooldown",
            SkipReason::Duplicate => "duplicate",
            SkipReason::NoPush => "no_push",
            SkipReason::NoService => "no_service",
            SkipReason::Repository => "repository",
            SkipReason::Tag => "tag",
            SkipReason::Current => "current",
        }
    }
}

/// What a trigger asks for, before looking at history or the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Step { direction: ScaleAction, dedup: Option<Dedup> },
    Skip { reason: SkipReason, detail: String },
}

/// What the history says, as far as timing rules care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// When the service last changed scale, by any receiver.
    pub last_change: Option<Millis>,
    /// The last decision on the same notification or idempotency key.
    pub last_same: Option<Decided>,
}

impl ScaleServiceConfig {
    pub fn new(
        service: ServiceId,
        action: ScaleAction,
        amount: u32,
        min: u32,
        max: u32,
    ) -> Result<Self, ValidationError> {
        // Rancher's sentences first, then why.
        if amount < 1 {
            return Err(ValidationError::new(
                "scaleServiceConfig.amount",
                format!("Invalid amount: {amount}; amount is a whole number, at least 1"),
            ));
        }
        if max < 1 {
            return Err(ValidationError::new(
                "scaleServiceConfig.max",
                format!("Maximum scale not provided/invalid: max is a whole number, at least 1 (got {max})"),
            ));
        }
        if max <= min {
            return Err(ValidationError::new(
                "scaleServiceConfig.max",
                format!("Max must be greater than min: max ({max}) must be greater than min ({min})"),
            ));
        }
        if max > MAX_SCALE {
            return Err(ValidationError::new("scaleServiceConfig.max", format!("max must be at most {MAX_SCALE}")));
        }
        // min is checked with the options: 0 needs `allowZero`.
        Ok(Self { service, action, amount, min, max, options: ScaleOptions::default(), mode: ScaleMode::Step })
    }

    // Scale 0 only when asked for: a hook fired too often must not take a service away.
    fn check_min(self) -> Result<Self, ValidationError> {
        if self.min < 1 && !self.options.allow_zero {
            return Err(ValidationError::new(
                "scaleServiceConfig.min",
                format!(
                    "Minimum scale not provided/invalid: min is a whole number, at least 1 (got {}); 0 only with \
                     allowZero: true",
                    self.min
                ),
            ));
        }
        Ok(self)
    }

    /// Target mode, or step mode; a target's settings checked.
    pub fn with_mode(mut self, mode: ScaleMode) -> Result<Self, ValidationError> {
        if let ScaleMode::Target(t) = &mode {
            t.check()?;
        }
        self.mode = mode;
        Ok(self)
    }

    pub fn with_options(mut self, options: ScaleOptions) -> Result<Self, ValidationError> {
        for (field, value) in [
            ("scaleServiceConfig.cooldownUpSeconds", options.cooldown_up.unwrap_or(0)),
            ("scaleServiceConfig.cooldownDownSeconds", options.cooldown_down.unwrap_or(0)),
            ("scaleServiceConfig.dedupSeconds", options.dedup),
        ] {
            if value > MAX_WINDOW_SECONDS {
                return Err(ValidationError::new(
                    field,
                    format!("{field} must be at most {MAX_WINDOW_SECONDS} (a week)"),
                ));
            }
        }
        let target = matches!(self.mode, ScaleMode::Target(_));
        match options.on_resolved {
            OnResolved::Reverse if target => {
                return Err(ValidationError::new(
                    "scaleServiceConfig.onResolved",
                    "onResolved \"reverse\" undoes a step; a target-mode receiver takes \"ignore\" or \"min\"",
                ))
            }
            OnResolved::Min if !target => {
                return Err(ValidationError::new(
                    "scaleServiceConfig.onResolved",
                    "onResolved \"min\" is for target mode; a step receiver takes \"ignore\" or \"reverse\"",
                ))
            }
            _ => {}
        }
        self.options = options;
        self.check_min()
    }

    /// The cooldown a trigger in `direction` waits for; `alert`: it carries a notification.
    pub fn cooldown(&self, direction: ScaleAction, alert: bool) -> u32 {
        let (set, alert_default) = match direction {
            ScaleAction::Up => (self.options.cooldown_up, ALERT_COOLDOWN_UP),
            ScaleAction::Down => (self.options.cooldown_down, ALERT_COOLDOWN_DOWN),
        };
        // A target receiver's scale-down has its stabilization window instead.
        let target = matches!(self.mode, ScaleMode::Target(_));
        set.unwrap_or(if alert && !target { alert_default } else { 0 })
    }

    /// Reads the trigger's payload and idempotency key: which way to step, or why not to.
    /// A client's `Idempotency-Key` names the request better than its body does, so it wins.
    pub fn intent(&self, notification: Option<&Notification>, idempotency_key: Option<DedupKey>) -> Intent {
        let idempotent = idempotency_key.map(|key| Dedup {
            key,
            kind: DedupKind::IdempotencyKey,
            window_seconds: IDEMPOTENCY_WINDOW_SECONDS,
        });
        let Some(n) = notification else {
            return Intent::Step { direction: self.action, dedup: idempotent };
        };
        let dedup = idempotent.or(Some(Dedup {
            key: n.dedup_key(),
            kind: DedupKind::Notification,
            window_seconds: self.options.dedup,
        }));
        if n.is_firing() {
            return Intent::Step { direction: self.action, dedup };
        }
        match self.options.on_resolved {
            OnResolved::Reverse => Intent::Step { direction: self.action.reverse(), dedup },
            OnResolved::Ignore | OnResolved::Min => Intent::Skip {
                reason: SkipReason::Resolved,
                detail: "the alerts resolved; this receiver ignores resolved notifications (onResolved: ignore)".into(),
            },
        }
    }

    /// Dedup, then cooldown: a duplicate inside a cooldown is reported as a duplicate.
    pub fn timing(
        &self,
        direction: ScaleAction,
        now: Millis,
        dedup: Option<&Dedup>,
        alert: bool,
        history: History,
    ) -> Option<(SkipReason, String)> {
        let elapsed = |at: Millis| (now - at).max(0) / 1000;
        if let (Some(dedup), Some(same)) = (dedup, history.last_same) {
            let window = i64::from(dedup.window_seconds);
            if elapsed(same.at) < window {
                let what = match dedup.kind {
                    DedupKind::Notification => "the same notification",
                    DedupKind::IdempotencyKey => "a request with the same Idempotency-Key",
                };
                return Some((
                    SkipReason::Duplicate,
                    format!(
                        "{what} was acted on {} s ago, as execution {} (dedup window {window} s)",
                        elapsed(same.at),
                        same.execution
                    ),
                ));
            }
        }
        let cooldown = i64::from(self.cooldown(direction, alert));
        match history.last_change {
            Some(at) if elapsed(at) < cooldown => Some((
                SkipReason::Cooldown,
                format!(
                    "scaling {} waits {cooldown} s after the service's last change, {} s ago",
                    direction.as_str(),
                    elapsed(at)
                ),
            )),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        if let ScaleMode::Target(t) = &self.mode {
            return format!(
                "Scale {} to the replica count in the alerts' {} {}, between {} and {}",
                self.service,
                t.from.kind(),
                t.from.name(),
                self.min,
                self.max
            );
        }
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
    /// Reaching a bound is normal for an autoscaler, so it is `Unchanged`, not an error,
    /// unless the receiver asks for Rancher's refusal (`atBound: refuse`).
    pub fn decide(&self, direction: ScaleAction, current: u32) -> ScaleDecision {
        if self.options.at_bound == AtBound::Refuse {
            let refused = match direction {
                ScaleAction::Up if current.saturating_add(self.amount) > self.max => {
                    Some(("Cannot scale above provided max scale value", "max", self.max))
                }
                ScaleAction::Down if current.saturating_sub(self.amount) < self.min => {
                    Some(("Cannot scale below provided min scale value", "min", self.min))
                }
                _ => None,
            };
            if let Some((reason, bound, value)) = refused {
                let detail = format!(
                    "{} by {} from {current} would pass {bound} {value}; this receiver refuses such steps (atBound: refuse)",
                    direction.as_str(),
                    self.amount
                );
                return ScaleDecision::Refused { at: current, reason: reason.into(), detail };
            }
        }
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
                direction.as_str(),
                current.abs_diff(target),
                bound_reason.unwrap_or_default()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleDecision {
    Scale {
        from: u32,
        to: u32,
        reason: String,
    },
    Unchanged {
        at: u32,
        reason: String,
    },
    /// The step would pass a bound and the receiver refuses such steps.
    Refused {
        at: u32,
        reason: String,
        detail: String,
    },
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
            ScaleDecision::Unchanged { .. } | ScaleDecision::Refused { .. } => None,
        }
    }

    #[test]
    fn refuse_at_bound_refuses_whole_steps_that_would_pass_a_bound() {
        let refusing = |action, amount, min, max| {
            let options = ScaleOptions { at_bound: AtBound::Refuse, ..ScaleOptions::default() };
            config(action, amount, min, max).with_options(options).unwrap()
        };
        let up = refusing(ScaleAction::Up, 3, 1, 4);
        assert!(matches!(step(&up, 2), ScaleDecision::Refused { at: 2, ref reason, .. }
            if reason == "Cannot scale above provided max scale value"));
        assert_eq!(target(step(&up, 1)), Some(4), "a step that lands on the bound is taken");
        let down = refusing(ScaleAction::Down, 3, 2, 4);
        assert!(matches!(step(&down, 4), ScaleDecision::Refused { at: 4, .. }));
        assert!(matches!(step(&down, 1), ScaleDecision::Refused { at: 1, .. }), "no underflow below zero");
        assert_eq!(target(step(&down, 5)), Some(2));
        assert_eq!(AtBound::parse("refuse").unwrap(), AtBound::Refuse);
        assert!(AtBound::parse("Refuse").unwrap_err().message.contains("atBound"));
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
        let zero = ScaleServiceConfig::new(svc(), ScaleAction::Up, 1, 0, 10).unwrap();
        assert!(zero.clone().with_options(ScaleOptions::default()).is_err(), "0 only when asked for");
        assert!(zero.with_options(ScaleOptions { allow_zero: true, ..ScaleOptions::default() }).is_ok());
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
            alerts: vec![AlertRef {
                name: "High".into(),
                fingerprint: "f".into(),
                status,
                starts_at: "t".into(),
                labels: Default::default(),
                annotations: Default::default(),
            }],
        }
    }

    #[test]
    fn a_plain_trigger_steps_in_the_configured_direction() {
        let c = config(ScaleAction::Down, ScaleOptions::default());
        assert_eq!(c.intent(None, None), Intent::Step { direction: ScaleAction::Down, dedup: None });
    }

    #[test]
    fn resolved_is_ignored_by_default_and_reversed_on_request() {
        let resolved = notification(AlertStatus::Resolved);
        let ignore = config(ScaleAction::Up, ScaleOptions::default());
        assert!(matches!(ignore.intent(Some(&resolved), None), Intent::Skip { reason: SkipReason::Resolved, .. }));
        let reverse = config(ScaleAction::Up, ScaleOptions { on_resolved: OnResolved::Reverse, ..Default::default() });
        assert!(matches!(
            reverse.intent(Some(&resolved), None),
            Intent::Step { direction: ScaleAction::Down, dedup: Some(_) }
        ));
        let firing = notification(AlertStatus::Firing);
        assert!(matches!(
            ignore.intent(Some(&firing), None),
            Intent::Step { direction: ScaleAction::Up, dedup: Some(_) }
        ));
    }

    fn decided(at: Millis) -> Option<Decided> {
        Some(Decided { at, execution: crate::domain::ExecutionId::generate() })
    }

    #[test]
    fn dedup_comes_before_cooldown_and_both_expire() {
        let c = config(ScaleAction::Down, ScaleOptions { dedup: 60, ..Default::default() });
        let Intent::Step { dedup, .. } = c.intent(Some(&notification(AlertStatus::Firing)), None) else {
            panic!("a firing notification steps")
        };
        let dedup = dedup.as_ref();
        let now = 1_000_000_000;
        let recent = History { last_change: Some(now - 10_000), last_same: decided(now - 10_000) };
        assert_eq!(c.timing(ScaleAction::Down, now, dedup, true, recent).unwrap().0, SkipReason::Duplicate);
        assert_eq!(c.timing(ScaleAction::Down, now, None, true, recent).unwrap().0, SkipReason::Cooldown);
        let old_same = History { last_change: Some(now - 100_000), last_same: decided(now - 100_000) };
        assert_eq!(c.timing(ScaleAction::Down, now, dedup, true, old_same).unwrap().0, SkipReason::Cooldown);
        assert_eq!(c.timing(ScaleAction::Up, now, dedup, true, old_same), None, "the up cooldown is 0");
        let long_ago = History { last_change: Some(now - 301_000), last_same: None };
        assert_eq!(c.timing(ScaleAction::Down, now, dedup, true, long_ago), None);
        assert_eq!(c.timing(ScaleAction::Down, now, dedup, true, History::default()), None);
    }

    #[test]
    fn default_cooldowns_hold_alerts_back_but_not_plain_posts() {
        let now = 1_000_000_000;
        let just_changed = History { last_change: Some(now - 10_000), last_same: None };
        let defaults = config(ScaleAction::Down, ScaleOptions::default());
        assert_eq!(defaults.timing(ScaleAction::Down, now, None, true, just_changed).unwrap().0, SkipReason::Cooldown);
        assert_eq!(defaults.timing(ScaleAction::Down, now, None, false, just_changed), None, "a person means it now");
        let explicit = config(ScaleAction::Down, ScaleOptions { cooldown_down: Some(60), ..Default::default() });
        assert_eq!(explicit.timing(ScaleAction::Down, now, None, false, just_changed).unwrap().0, SkipReason::Cooldown);
        let off = config(ScaleAction::Down, ScaleOptions { cooldown_down: Some(0), ..Default::default() });
        assert_eq!(off.timing(ScaleAction::Down, now, None, true, just_changed), None);
    }

    #[test]
    fn an_idempotency_key_names_the_request_for_a_day() {
        let c = config(ScaleAction::Up, ScaleOptions { dedup: 60, ..Default::default() });
        let key = DedupKey::idempotency("deploy-42");
        let Intent::Step { dedup: Some(dedup), .. } = c.intent(Some(&notification(AlertStatus::Firing)), Some(key))
        else {
            panic!("steps with a dedup key")
        };
        assert_eq!((dedup.key, dedup.kind), (key, DedupKind::IdempotencyKey));
        let now = 1_000_000_000;
        let an_hour_ago = History { last_change: None, last_same: decided(now - 3_600_000) };
        let (reason, detail) = c.timing(ScaleAction::Up, now, Some(&dedup), false, an_hour_ago).unwrap();
        assert_eq!(reason, SkipReason::Duplicate);
        assert!(detail.contains("Idempotency-Key"), "{detail}");
        let two_days_ago = History { last_change: None, last_same: decided(now - 2 * 86_400_000) };
        assert_eq!(c.timing(ScaleAction::Up, now, Some(&dedup), false, two_days_ago), None);
    }

    #[test]
    fn a_reversed_step_says_which_way_it_went() {
        let c = config(ScaleAction::Up, ScaleOptions { on_resolved: OnResolved::Reverse, ..Default::default() });
        let ScaleDecision::Scale { reason, .. } = c.decide(ScaleAction::Down, 3) else { panic!("steps down") };
        assert_eq!(reason, "scaled down by 1");
    }

    #[test]
    fn windows_are_bounded() {
        let c = ScaleServiceConfig::new(ServiceId::parse("web").unwrap(), ScaleAction::Up, 1, 1, 10).unwrap();
        let too_long = ScaleOptions { cooldown_down: Some(MAX_WINDOW_SECONDS + 1), ..Default::default() };
        assert_eq!(c.with_options(too_long).unwrap_err().field, "scaleServiceConfig.cooldownDownSeconds");
    }
}
