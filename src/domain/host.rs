//! The `scaleHost` driver's configuration and its decision: which hosts of a pool to add or
//! remove. Rancher's faults are the spec of what not to do: every selector pair counts (AND),
//! names never collide, unhealthy hosts go first but never below `min`, and no more than
//! `amount` hosts go at once.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    scale::MAX_SCALE, AtBound, Millis, ScaleAction, ScaleOptions, ScaleServiceConfig, ServiceId, ValidationError,
};

/// Which hosts a scale-down removes, once unhealthy ones are gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeleteOption {
    /// The newest first (Rancher's default).
    #[default]
    MostRecent,
    LeastRecent,
}

impl DeleteOption {
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteOption::MostRecent => "mostRecent",
            DeleteOption::LeastRecent => "leastRecent",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "mostRecent" => Ok(DeleteOption::MostRecent),
            "leastRecent" => Ok(DeleteOption::LeastRecent),
            other => Err(ValidationError::new(
                "scaleHostConfig.deleteOption",
                format!("Invalid delete option {other}; deleteOption is \"mostRecent\" or \"leastRecent\""),
            )),
        }
    }
}

/// A validated `scaleHostConfig`: 1 <= min < max, amount >= 1, a selector of at least one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleHostConfig {
    /// Labels a host must carry, all of them; new hosts get them.
    pub selector: BTreeMap<String, String>,
    pub action: ScaleAction,
    pub amount: u32,
    pub min: u32,
    pub max: u32,
    pub delete_option: DeleteOption,
    /// The same safety options as scaleService: bounds, resolved alerts, cooldowns, dedup.
    pub options: ScaleOptions,
}

/// A host as a provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created: Millis,
    pub healthy: bool,
}

/// What a trigger does to a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDecision {
    Unchanged { at: u32, reason: String },
    Refused { at: u32, reason: String },
    Create { from: u32, to: u32, names: Vec<String> },
    Delete { from: u32, to: u32, names: Vec<String> },
}

/// Whether `labels` carry every pair of `selector`.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl ScaleHostConfig {
    /// The scaleService rules this receiver follows for timing (intent from a payload,
    /// dedup, cooldown): the same machinery, keyed on the pool.
    pub fn rules(&self, pool: &str) -> ScaleServiceConfig {
        ScaleServiceConfig {
            service: ServiceId::parse(&format!("pool/{pool}"))
                .unwrap_or_else(|_| ServiceId::parse("pool").expect("valid")),
            action: self.action,
            amount: self.amount,
            min: self.min,
            max: self.max,
            options: self.options,
            mode: super::target::ScaleMode::Step,
        }
    }

    /// "Scale up hosts with pool=w by 1, between 1 and 5".
    pub fn describe(&self) -> String {
        let selector: Vec<String> = self.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "Scale {} hosts with {} by {}, between {} and {}",
            self.action.as_str(),
            selector.join(", "),
            self.amount,
            self.min,
            self.max
        )
    }

    pub fn validate(self) -> Result<Self, ValidationError> {
        let field = |name: &'static str, why: String| Err(ValidationError::new(name, why));
        if self.selector.iter().any(|(k, v)| k.trim().is_empty() || k.len() > 253 || v.len() > 253) {
            return field(
                "scaleHostConfig.hostSelector",
                "hostSelector labels need a key, and keys and values of at most 253 characters".into(),
            );
        }
        if self.selector.is_empty() {
            return field(
                "scaleHostConfig.hostSelector",
                "hostSelector is required: the labels (all of them) a host of the pool carries".into(),
            );
        }
        if self.amount == 0 {
            return field("scaleHostConfig.amount", "Invalid amount: 0; amount is a whole number, at least 1".into());
        }
        if self.options.on_resolved == super::OnResolved::Min {
            return field(
                "scaleHostConfig.onResolved",
                "onResolved \"min\" is for scaleService's target mode; a host receiver takes \"ignore\" or \"reverse\""
                    .into(),
            );
        }
        if self.min == 0 || self.max > MAX_SCALE || self.min >= self.max {
            return field(
                "scaleHostConfig.min",
                format!(
                    "min and max must satisfy 1 <= min < max <= {MAX_SCALE} (got min {}, max {})",
                    self.min, self.max
                ),
            );
        }
        Ok(self)
    }

    /// Decides what a step in `direction` does to the pool's `hosts`: the receiver's group
    /// (those its selector picks) stays within its bounds, and the whole pool within the
    /// pool's, whatever other receivers' groups hold. `taken` holds every name the provider
    /// knows: new names avoid them.
    pub fn decide(
        &self,
        direction: ScaleAction,
        hosts: &[HostInfo],
        pool_bounds: (u32, u32),
        prefix: &str,
        taken: &BTreeSet<String>,
    ) -> HostDecision {
        let group: Vec<&HostInfo> = hosts.iter().filter(|h| selects(&self.selector, &h.labels)).collect();
        let at = group.len() as u32;
        let pool = hosts.len() as u32;
        // The pool's bounds, as room this group has: the other groups' hosts count too.
        let others = pool - at;
        let hi = self.max.min(pool_bounds.1.saturating_sub(others));
        let lo = self.min.max(pool_bounds.0.saturating_sub(others));
        match direction {
            ScaleAction::Up => {
                let to = (at + self.amount).min(hi);
                if to <= at {
                    return HostDecision::Unchanged {
                        at,
                        reason: format!(
                            "at the maximum: {hi} hosts here ({pool} in the pool, at most {})",
                            pool_bounds.1
                        ),
                    };
                }
                if self.options.at_bound == AtBound::Refuse && at + self.amount > hi {
                    return HostDecision::Refused { at, reason: "Cannot scale above provided max scale value".into() };
                }
                HostDecision::Create { from: at, to, names: new_names(prefix, taken, (to - at) as usize) }
            }
            ScaleAction::Down => {
                let to = at.saturating_sub(self.amount).max(lo);
                if to >= at {
                    return HostDecision::Unchanged {
                        at,
                        reason: format!(
                            "at the minimum: {lo} hosts here ({pool} in the pool, at least {})",
                            pool_bounds.0
                        ),
                    };
                }
                if self.options.at_bound == AtBound::Refuse && at < lo + self.amount {
                    return HostDecision::Refused { at, reason: "Cannot scale below provided min scale value".into() };
                }
                let mut order = group.clone();
                // Unhealthy first, then by deleteOption (among both); ties by name.
                order.sort_by(|a, b| {
                    let by_age = match self.delete_option {
                        DeleteOption::MostRecent => b.created.cmp(&a.created),
                        DeleteOption::LeastRecent => a.created.cmp(&b.created),
                    };
                    a.healthy.cmp(&b.healthy).then(by_age).then(a.name.cmp(&b.name))
                });
                let names = order.iter().take((at - to) as usize).map(|h| h.name.clone()).collect();
                HostDecision::Delete { from: at, to, names }
            }
        }
    }
}

/// `count` names `prefix-N`, N past the highest number any taken `prefix-N` has.
fn new_names(prefix: &str, taken: &BTreeSet<String>, count: usize) -> Vec<String> {
    let highest = taken
        .iter()
        .filter_map(|name| name.strip_prefix(prefix)?.strip_prefix('-')?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    (1..=count as u64).map(|i| format!("{prefix}-{}", highest.saturating_add(i))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(action: ScaleAction, amount: u32, min: u32, max: u32) -> ScaleHostConfig {
        ScaleHostConfig {
            selector: [("pool".to_owned(), "w".to_owned()), ("zone".to_owned(), "a".to_owned())].into(),
            action,
            amount,
            min,
            max,
            delete_option: DeleteOption::MostRecent,
            options: ScaleOptions::default(),
        }
        .validate()
        .unwrap()
    }

    fn host(name: &str, created: Millis, healthy: bool) -> HostInfo {
        HostInfo {
            name: name.into(),
            labels: [("pool".to_owned(), "w".to_owned()), ("zone".to_owned(), "a".to_owned())].into(),
            created,
            healthy,
        }
    }

    fn taken(hosts: &[HostInfo]) -> BTreeSet<String> {
        hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// rancher/rancher#9024: only one selector pair counted. Here every pair does.
    #[test]
    fn every_selector_pair_counts() {
        let mut other_zone = host("w-9", 9, true);
        other_zone.labels.insert("zone".into(), "b".into());
        let hosts = vec![host("w-1", 1, true), other_zone];
        let decision = config(ScaleAction::Up, 1, 1, 5).decide(ScaleAction::Up, &hosts, (0, 100), "w", &taken(&hosts));
        assert_eq!(decision, HostDecision::Create { from: 1, to: 2, names: vec!["w-10".into()] });
    }

    #[test]
    fn names_never_collide_with_hosts_or_pending_creations() {
        let hosts = vec![host("w-1", 1, true), host("w-3", 3, true)];
        let mut taken = taken(&hosts);
        taken.insert("w-4".into());
        let decision = config(ScaleAction::Up, 2, 1, 5).decide(ScaleAction::Up, &hosts, (0, 100), "w", &taken);
        assert_eq!(decision, HostDecision::Create { from: 2, to: 4, names: vec!["w-5".into(), "w-6".into()] });
    }

    #[test]
    fn unhealthy_hosts_go_first_but_never_below_min_nor_more_than_amount() {
        let hosts = vec![host("w-1", 1, false), host("w-2", 2, true), host("w-3", 3, false), host("w-4", 4, false)];
        let c = config(ScaleAction::Down, 2, 1, 10);
        let decision = c.decide(ScaleAction::Down, &hosts, (0, 100), "w", &taken(&hosts));
        assert_eq!(decision, HostDecision::Delete { from: 4, to: 2, names: vec!["w-4".into(), "w-3".into()] });
        let c = config(ScaleAction::Down, 5, 3, 10);
        let decision = c.decide(ScaleAction::Down, &hosts, (0, 100), "w", &taken(&hosts));
        assert_eq!(decision, HostDecision::Delete { from: 4, to: 3, names: vec!["w-4".into()] });
    }

    #[test]
    fn delete_option_picks_the_newest_or_the_oldest() {
        let hosts = vec![host("w-1", 1, true), host("w-2", 2, true), host("w-3", 3, true)];
        let mut c = config(ScaleAction::Down, 1, 1, 10);
        let newest = c.decide(ScaleAction::Down, &hosts, (0, 100), "w", &taken(&hosts));
        assert_eq!(newest, HostDecision::Delete { from: 3, to: 2, names: vec!["w-3".into()] });
        c.delete_option = DeleteOption::LeastRecent;
        let oldest = c.decide(ScaleAction::Down, &hosts, (0, 100), "w", &taken(&hosts));
        assert_eq!(oldest, HostDecision::Delete { from: 3, to: 2, names: vec!["w-1".into()] });
    }

    #[test]
    fn the_pools_bounds_hold_too_and_refuse_is_rancher_s() {
        let hosts = vec![host("w-1", 1, true), host("w-2", 2, true)];
        let c = config(ScaleAction::Up, 3, 1, 10);
        let clamped = c.decide(ScaleAction::Up, &hosts, (1, 3), "w", &taken(&hosts));
        assert_eq!(clamped, HostDecision::Create { from: 2, to: 3, names: vec!["w-3".into()] });
        let at_max = c.decide(ScaleAction::Up, &hosts, (1, 2), "w", &taken(&hosts));
        assert!(matches!(at_max, HostDecision::Unchanged { at: 2, .. }));
        let refuse = ScaleHostConfig { options: ScaleOptions { at_bound: AtBound::Refuse, ..c.options }, ..c };
        let refused = refuse.decide(ScaleAction::Up, &hosts, (1, 3), "w", &taken(&hosts));
        assert!(matches!(refused, HostDecision::Refused { reason, .. } if reason.contains("max")));
    }

    /// Receivers with extra labels (zone a, zone b) share the pool's bounds: no group grows
    /// the pool past its max or shrinks it below its min.
    #[test]
    fn the_pools_bounds_hold_for_the_whole_pool() {
        let mut hosts = vec![host("w-1", 1, true), host("w-2", 2, true)];
        for (name, at) in [("w-3", 3), ("w-4", 4)] {
            let mut other = host(name, at, true);
            other.labels.insert("zone".into(), "b".into());
            hosts.push(other);
        }
        let c = config(ScaleAction::Up, 3, 1, 10);
        let up = c.decide(ScaleAction::Up, &hosts, (1, 5), "w", &taken(&hosts));
        assert_eq!(up, HostDecision::Create { from: 2, to: 3, names: vec!["w-5".into()] });
        let full = c.decide(ScaleAction::Up, &hosts, (1, 4), "w", &taken(&hosts));
        assert!(matches!(full, HostDecision::Unchanged { at: 2, .. }), "{full:?}");
        let c = config(ScaleAction::Down, 2, 1, 10);
        let down = c.decide(ScaleAction::Down, &hosts, (3, 10), "w", &taken(&hosts));
        assert_eq!(down, HostDecision::Delete { from: 2, to: 1, names: vec!["w-2".into()] });
    }

    #[test]
    fn invalid_configs_name_their_field() {
        let bad = |c: ScaleHostConfig| c.validate().unwrap_err().field;
        let c = config(ScaleAction::Up, 1, 1, 5);
        assert_eq!(bad(ScaleHostConfig { selector: BTreeMap::new(), ..c.clone() }), "scaleHostConfig.hostSelector");
        assert_eq!(bad(ScaleHostConfig { amount: 0, ..c.clone() }), "scaleHostConfig.amount");
        assert_eq!(bad(ScaleHostConfig { min: 5, ..c.clone() }), "scaleHostConfig.min");
        assert!(DeleteOption::parse("newest").is_err());
    }

    proptest! {
        /// Never outside the bounds, never more than `amount`, names always new and unique.
        #[test]
        fn decisions_respect_bounds_amount_and_names(
            n in 0u32..12, amount in 1u32..6, min in 1u32..5, span in 1u32..8,
            up in any::<bool>(), unhealthy in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let max = min + span;
            let hosts: Vec<HostInfo> = (0..n).map(|i| host(&format!("w-{}", i * 2 + 1), i as Millis, !unhealthy[i as usize])).collect();
            let action = if up { ScaleAction::Up } else { ScaleAction::Down };
            let c = config(action, amount, min, max);
            let taken = taken(&hosts);
            match c.decide(action, &hosts, (0, 1000), "w", &taken) {
                HostDecision::Create { from, to, names } => {
                    prop_assert!(to <= max && to > from && to - from <= amount);
                    prop_assert_eq!(names.len() as u32, to - from);
                    let unique: BTreeSet<_> = names.iter().collect();
                    prop_assert_eq!(unique.len(), names.len());
                    prop_assert!(names.iter().all(|n| !taken.contains(n)));
                }
                HostDecision::Delete { from, to, names } => {
                    prop_assert!(to >= min && to < from && from - to <= amount);
                    prop_assert_eq!(names.len() as u32, from - to);
                }
                HostDecision::Unchanged { at, .. } => {
                    let at_bound = if up { at >= max } else { at <= min };
                    prop_assert!(at_bound);
                }
                HostDecision::Refused { .. } => prop_assert!(false, "clamp never refuses"),
            }
        }
    }
}
