//! Domain types: receivers, driver configurations and executions.
//!
//! Nothing here knows about HTTP, SQL or processes. Values are validated when they are
//! built (`parse`/`new`), so code that holds one never re-checks it.

mod alert;
mod dedup;
pub mod host;
mod ids;
pub mod image;
pub mod job;
pub mod scale;
pub mod target;
pub mod upgrade;
pub mod verify;

use std::fmt;

pub use alert::{AlertRef, AlertStatus, Notification};
pub use dedup::{Decided, Dedup, DedupKey, DedupKind, IDEMPOTENCY_WINDOW_SECONDS};
pub use ids::{
    ApiTokenId, AuditId, ExecutionId, JobId, ProjectName, ReceiverId, ReceiverName, ServiceId, ServiceKey, TokenName,
};
pub use job::{Job, JobKind, JobState, JobStep, Rollout, StepState};
pub use scale::{
    AtBound, History, Intent, OnResolved, ScaleAction, ScaleDecision, ScaleOptions, ScaleServiceConfig, SkipReason,
};
pub use upgrade::{ServiceUpgradeConfig, TagPolicy};

/// A rule broken by a caller's input, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

/// Milliseconds since the Unix epoch: the one clock representation stored and compared.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// The kind of action a receiver performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    ScaleService,
    ServiceUpgrade,
    ScaleHost,
}

impl Driver {
    pub const ALL: [Driver; 3] = [Driver::ScaleService, Driver::ServiceUpgrade, Driver::ScaleHost];
    /// Rancher's other drivers: their schemas are served (Rancher's UI reads them), but a
    /// receiver cannot use them yet.
    pub const NOT_YET: [&'static str; 1] = ["forwardPost"];

    pub fn as_str(self) -> &'static str {
        match self {
            Driver::ScaleService => "scaleService",
            Driver::ServiceUpgrade => "serviceUpgrade",
            Driver::ScaleHost => "scaleHost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A driver with its validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverConfig {
    ScaleService(ScaleServiceConfig),
    ServiceUpgrade(ServiceUpgradeConfig),
    ScaleHost(host::ScaleHostConfig),
}

impl DriverConfig {
    pub fn driver(&self) -> Driver {
        match self {
            DriverConfig::ScaleService(_) => Driver::ScaleService,
            DriverConfig::ServiceUpgrade(_) => Driver::ServiceUpgrade,
            DriverConfig::ScaleHost(_) => Driver::ScaleHost,
        }
    }

    /// The service this receiver acts on, when it acts on exactly one.
    pub fn service(&self) -> Option<&ServiceId> {
        match self {
            DriverConfig::ScaleService(c) => Some(&c.service),
            DriverConfig::ServiceUpgrade(_) | DriverConfig::ScaleHost(_) => None,
        }
    }

    /// A sentence for people: "Scale up web by 1, between 1 and 10".
    pub fn describe(&self) -> String {
        match self {
            DriverConfig::ScaleService(c) => c.describe(),
            DriverConfig::ServiceUpgrade(c) => c.describe(),
            DriverConfig::ScaleHost(c) => c.describe(),
        }
    }
}

/// A receiver hook: a named, stored action that its trigger URL runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    pub id: ReceiverId,
    pub project: ProjectName,
    pub name: ReceiverName,
    pub config: DriverConfig,
    pub enabled: bool,
    /// Bumped to revoke every trigger URL issued before; tokens carry the generation they were made for.
    pub token_generation: u32,
    /// Bumped by every stored change, so two concurrent edits can't silently undo each other.
    pub revision: u32,
    pub created: Millis,
    pub updated: Millis,
    /// What a trigger must also carry (a secret header, a signature); `None`: the URL is enough.
    pub verify: Option<verify::SenderCheck>,
}

/// What a handled trigger came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Scaled,
    Unchanged,
    Skipped,
    /// A step the receiver's rules refuse (`atBound: refuse` at a bound): answered 400.
    Refused,
    /// A job was started (an upgrade): answered 202 with the job.
    Started,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] =
        [Outcome::Scaled, Outcome::Unchanged, Outcome::Skipped, Outcome::Refused, Outcome::Started, Outcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Scaled => "scaled",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Refused => "refused",
            Outcome::Started => "started",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// What a handled trigger did, or would have done, in its driver's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Effect {
    #[default]
    None,
    /// A scale read (`from`) and the scale set or found (`to`).
    Scale { from: u32, to: u32 },
    /// A long action, followed as a job.
    Job(JobId),
}

impl Effect {
    pub fn scale(&self) -> (Option<u32>, Option<u32>) {
        match *self {
            Effect::Scale { from, to } => (Some(from), Some(to)),
            _ => (None, None),
        }
    }

    pub fn job(&self) -> Option<JobId> {
        match *self {
            Effect::Job(id) => Some(id),
            _ => None,
        }
    }
}

/// One handled trigger, as stored in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub id: ExecutionId,
    pub receiver: ReceiverId,
    /// The service whose scale it changed or would have changed (cooldown is per service).
    pub service: Option<ServiceKey>,
    pub at: Millis,
    /// Who sent it: the peer address and user agent, for the history.
    pub source: String,
    pub outcome: Outcome,
    pub effect: Effect,
    /// Short: the step taken ("scaled up by 1"), the bound reached, or a skip reason code.
    pub reason: String,
    /// A longer explanation, when there is more to say.
    pub detail: String,
    /// Decided but not acted on (`?dryRun=1`); ignored by cooldown and dedup.
    pub dry_run: bool,
    /// The alerts that caused it, when an Alertmanager notification did.
    pub alerts: Vec<AlertRef>,
    /// Identifies the notification or the idempotent request, for dedup.
    pub dedup_key: Option<DedupKey>,
}

impl Execution {
    /// A decision counts for dedup and cooldown: it scaled, found the bound, or started a
    /// job, for real. Dry runs, skips, failures and refusals (a 400: a retry must get the
    /// same answer, not "duplicate") do not.
    pub fn is_decision(&self) -> bool {
        matches!(self.outcome, Outcome::Scaled | Outcome::Unchanged | Outcome::Started) && !self.dry_run
    }

    /// A change of its service, for cooldowns: a scale, or a job started on it (a host
    /// pool's; upgrade jobs name no service).
    pub fn is_change(&self) -> bool {
        matches!(self.outcome, Outcome::Scaled | Outcome::Started) && !self.dry_run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_and_outcome_names_round_trip() {
        for d in Driver::ALL {
            assert_eq!(Driver::parse(d.as_str()), Some(d));
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Driver::parse("ScaleService"), None);
    }
}
