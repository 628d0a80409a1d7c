//! Jobs: actions that outlive the HTTP request that started them (an upgrade), with
//! durable progress, so a restarted hookd resumes them and none is abandoned.

use std::collections::BTreeMap;

use super::{ExecutionId, JobId, Millis, ProjectName, ReceiverId, ScaleAction, ServiceId};

/// What a job does: roll services onto an image (its steps are services), or add or remove
/// a pool's hosts (its steps are hosts, each created with `labels` or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    Upgrade,
    Hosts { pool: String, action: ScaleAction, labels: BTreeMap<String, String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [JobState::Running, JobState::Succeeded, JobState::Failed].into_iter().find(|j| j.as_str() == s)
    }
}

/// How a service's replicas are replaced: `batch_size` at a time, `interval_seconds` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    pub batch_size: u32,
    pub interval_seconds: u32,
    pub start_first: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Running,
    Done,
    /// Not rolled: the service changed between the push and its turn (the decision was stale).
    Skipped,
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Skipped => "skipped",
            StepState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [StepState::Pending, StepState::Running, StepState::Done, StepState::Skipped, StepState::Failed]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One service of a job: rolled from `from` to `image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStep {
    pub service: ServiceId,
    pub from: String,
    pub image: String,
    pub state: StepState,
    pub updated: u32,
    pub total: u32,
    pub error: Option<String>,
    pub started: Option<Millis>,
    pub finished: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub receiver: ReceiverId,
    pub project: ProjectName,
    /// The execution that started it.
    pub execution: ExecutionId,
    /// The backend it acts on (a host job: the pool).
    pub backend: String,
    pub kind: JobKind,
    pub state: JobState,
    pub rollout: Rollout,
    pub steps: Vec<JobStep>,
    pub error: Option<String>,
    pub created: Millis,
    pub updated: Millis,
    pub finished: Option<Millis>,
}

impl JobStep {
    /// A step not started yet: `service` (or host) to take from `from` to `image`, `total` units.
    pub fn pending(service: ServiceId, from: String, image: String, total: u32) -> Self {
        Self {
            service,
            from,
            image,
            state: StepState::Pending,
            updated: 0,
            total,
            error: None,
            started: None,
            finished: None,
        }
    }
}

impl Job {
    /// Marks the job failed with `why`; steps not done yet stay as they are.
    pub fn fail(&mut self, why: String, now: Millis) {
        self.state = JobState::Failed;
        self.error = Some(why);
        self.updated = now;
        self.finished = Some(now);
    }

    pub fn succeed(&mut self, now: Millis) {
        self.state = JobState::Succeeded;
        self.updated = now;
        self.finished = Some(now);
    }
}
