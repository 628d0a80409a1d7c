//! The `scaleService` driver's configuration and its decision rule.

use super::{ServiceId, ValidationError};

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

/// A validated `scaleServiceConfig`: 1 <= min < max, amount >= 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleServiceConfig {
    pub service: ServiceId,
    pub action: ScaleAction,
    pub amount: u32,
    pub min: u32,
    pub max: u32,
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
        Ok(Self { service, action, amount, min, max })
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

    /// The step this config takes from the desired scale `current`, clamped to [min, max].
    /// Reaching a bound is normal for an autoscaler, so it is `Unchanged`, not an error.
    pub fn decide(&self, current: u32) -> ScaleDecision {
        let (target, bound_reason) = match self.action {
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

    fn target(decision: ScaleDecision) -> Option<u32> {
        match decision {
            ScaleDecision::Scale { to, .. } => Some(to),
            ScaleDecision::Unchanged { .. } => None,
        }
    }

    #[test]
    fn steps_and_clamps_to_bounds() {
        assert_eq!(target(config(ScaleAction::Up, 1, 1, 10).decide(2)), Some(3));
        // The brief's example: scale 9, amount 2, max 10 -> 10.
        assert_eq!(target(config(ScaleAction::Up, 2, 1, 10).decide(9)), Some(10));
        assert_eq!(target(config(ScaleAction::Down, 3, 2, 10).decide(4)), Some(2));
        assert_eq!(target(config(ScaleAction::Down, 1, 1, 10).decide(0)), None);
    }

    #[test]
    fn at_a_bound_nothing_changes() {
        assert_eq!(target(config(ScaleAction::Up, 1, 1, 10).decide(10)), None);
        assert_eq!(target(config(ScaleAction::Up, 1, 1, 10).decide(12)), None);
        assert_eq!(target(config(ScaleAction::Down, 1, 1, 10).decide(1)), None);
        let ScaleDecision::Unchanged { reason, .. } = config(ScaleAction::Up, 1, 1, 10).decide(10) else {
            panic!("expected unchanged")
        };
        assert!(reason.contains("max scale 10"), "{reason}");
    }

    #[test]
    fn below_min_an_up_step_is_taken() {
        assert_eq!(target(config(ScaleAction::Up, 1, 2, 10).decide(0)), Some(1));
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
