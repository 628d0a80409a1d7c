//! Conversions between stored rows and domain types, shared by every SQL store.
//!
//! A driver config is stored as JSON in the store's own format (not the wire format), so
//! a new driver or option needs no schema change, and old rows stay readable.

use crate::domain::{
    host::{DeleteOption, ScaleHostConfig},
    target::{ScaleMode, StepLimit, TargetConfig, TargetSource},
    JobKind,
};
use serde::{Deserialize, Serialize};

use super::{ApiToken, Role, StoreError, StoreResult};
use crate::domain::{verify::SenderCheck, DedupKey};
use crate::domain::{
    AlertRef, AlertStatus, ApiTokenId, AtBound, Driver, DriverConfig, Effect, Execution, ExecutionId, Job, JobId,
    JobState, JobStep, Millis, OnResolved, Outcome, ProjectName, Receiver, ReceiverId, ReceiverName, Rollout,
    ScaleAction, ScaleOptions, ScaleServiceConfig, ServiceId, ServiceKey, ServiceUpgradeConfig, StepState, TagPolicy,
};

#[derive(Serialize, Deserialize)]
struct StoredScaleService {
    service: String,
    action: String,
    amount: u32,
    min: u32,
    max: u32,
    // Options came later: rows without them read as the defaults.
    #[serde(default)]
    on_resolved: Option<String>,
    /// Absent in receivers stored before `atBound` existed: clamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at_bound: Option<String>,
    #[serde(default)]
    cooldown_up: Option<u32>,
    #[serde(default)]
    cooldown_down: Option<u32>,
    #[serde(default)]
    dedup: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    allow_autoscaler: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    allow_zero: bool,
    /// Target mode's settings; absent: step mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<StoredTarget>,
}

#[derive(Serialize, Deserialize)]
struct StoredTarget {
    /// "annotation" or "label".
    from: String,
    name: String,
    #[serde(default)]
    max_step_up: Option<String>,
    #[serde(default)]
    max_step_down: Option<String>,
    stabilization: u32,
}

impl StoredTarget {
    fn new(mode: &ScaleMode) -> Option<Self> {
        let ScaleMode::Target(t) = mode else { return None };
        Some(Self {
            from: t.from.kind().to_owned(),
            name: t.from.name().to_owned(),
            max_step_up: t.max_step_up.map(StepLimit::text),
            max_step_down: t.max_step_down.map(StepLimit::text),
            stabilization: t.stabilization,
        })
    }

    fn into_domain(self) -> StoreResult<ScaleMode> {
        let from = match self.from.as_str() {
            "annotation" => TargetSource::Annotation(self.name),
            "label" => TargetSource::Label(self.name),
            other => return Err(corrupt(format!("target source {other:?}"))),
        };
        let limit =
            |field, text: Option<String>| text.map(|t| StepLimit::parse(field, &t)).transpose().map_err(corrupt);
        Ok(ScaleMode::Target(TargetConfig {
            from,
            max_step_up: limit("maxStepUp", self.max_step_up)?,
            max_step_down: limit("maxStepDown", self.max_step_down)?,
            stabilization: self.stabilization,
        }))
    }
}

#[derive(Serialize, Deserialize)]
struct StoredScaleHost {
    selector: std::collections::BTreeMap<String, String>,
    action: String,
    amount: u32,
    min: u32,
    max: u32,
    delete_option: String,
    at_bound: String,
    on_resolved: String,
    cooldown_up: Option<u32>,
    cooldown_down: Option<u32>,
    dedup: u32,
}

#[derive(Serialize, Deserialize)]
struct StoredServiceUpgrade {
    selector: std::collections::BTreeMap<String, String>,
    tag: String,
    tag_policy: String,
    semver_bound: Option<String>,
    repository: Option<String>,
    payload_format: Option<String>,
    batch_size: u32,
    interval_seconds: u32,
    start_first: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredAlert {
    name: String,
    fingerprint: String,
    status: String,
    starts_at: String,
}

pub fn alerts_to_json(alerts: &[AlertRef]) -> String {
    let stored: Vec<StoredAlert> = alerts
        .iter()
        .map(|a| StoredAlert {
            name: a.name.clone(),
            fingerprint: a.fingerprint.clone(),
            status: a.status.as_str().to_owned(),
            starts_at: a.starts_at.clone(),
        })
        .collect();
    serde_json::to_string(&stored).expect("alerts always serialize")
}

fn alerts_from_json(json: &str) -> StoreResult<Vec<AlertRef>> {
    let stored: Vec<StoredAlert> = serde_json::from_str(json).map_err(corrupt)?;
    stored
        .into_iter()
        .map(|a| {
            Ok(AlertRef {
                status: AlertStatus::parse(&a.status).ok_or_else(|| corrupt(format!("alert status {:?}", a.status)))?,
                name: a.name,
                fingerprint: a.fingerprint,
                starts_at: a.starts_at,
                labels: Default::default(),
                annotations: Default::default(),
            })
        })
        .collect()
}

pub fn config_to_json(config: &DriverConfig) -> String {
    let value = match config {
        DriverConfig::ScaleService(c) => serde_json::to_string(&StoredScaleService {
            service: c.service.to_string(),
            action: c.action.as_str().to_owned(),
            amount: c.amount,
            min: c.min,
            max: c.max,
            at_bound: Some(c.options.at_bound.as_str().to_owned()),
            on_resolved: Some(c.options.on_resolved.as_str().to_owned()),
            cooldown_up: c.options.cooldown_up,
            cooldown_down: c.options.cooldown_down,
            dedup: Some(c.options.dedup),
            allow_autoscaler: c.options.allow_autoscaler,
            allow_zero: c.options.allow_zero,
            target: StoredTarget::new(&c.mode),
        }),
        DriverConfig::ServiceUpgrade(c) => serde_json::to_string(&StoredServiceUpgrade {
            selector: c.selector.clone(),
            tag: c.tag.clone(),
            tag_policy: c.tag_policy.as_str().to_owned(),
            semver_bound: c.tag_policy.bound().map(|b| b.as_str().to_owned()),
            repository: c.repository.clone(),
            payload_format: c.payload_format.clone(),
            batch_size: c.batch_size,
            interval_seconds: c.interval_seconds,
            start_first: c.start_first,
        }),
        DriverConfig::ScaleHost(c) => serde_json::to_string(&StoredScaleHost {
            selector: c.selector.clone(),
            action: c.action.as_str().to_owned(),
            amount: c.amount,
            min: c.min,
            max: c.max,
            delete_option: c.delete_option.as_str().to_owned(),
            at_bound: c.options.at_bound.as_str().to_owned(),
            on_resolved: c.options.on_resolved.as_str().to_owned(),
            cooldown_up: c.options.cooldown_up,
            cooldown_down: c.options.cooldown_down,
            dedup: c.options.dedup,
        }),
    };
    value.expect("driver configs always serialize")
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub fn config_from_json(driver: &str, json: &str) -> StoreResult<DriverConfig> {
    match Driver::parse(driver) {
        Some(Driver::ScaleService) => {
            let s: StoredScaleService = serde_json::from_str(json).map_err(corrupt)?;
            let service = ServiceId::parse(&s.service).map_err(corrupt)?;
            let action = ScaleAction::parse(&s.action).map_err(corrupt)?;
            let defaults = ScaleOptions::default();
            let options = ScaleOptions {
                at_bound: s.at_bound.as_deref().map(AtBound::parse).transpose().map_err(corrupt)?.unwrap_or_default(),
                on_resolved: s
                    .on_resolved
                    .as_deref()
                    .map(OnResolved::parse)
                    .transpose()
                    .map_err(corrupt)?
                    .unwrap_or_default(),
                cooldown_up: s.cooldown_up,
                cooldown_down: s.cooldown_down,
                dedup: s.dedup.unwrap_or(defaults.dedup),
                allow_autoscaler: s.allow_autoscaler,
                allow_zero: s.allow_zero,
            };
            let mode = s.target.map(StoredTarget::into_domain).transpose()?.unwrap_or_default();
            let config = ScaleServiceConfig::new(service, action, s.amount, s.min, s.max)
                .and_then(|c| c.with_mode(mode))
                .and_then(|c| c.with_options(options))
                .map_err(corrupt)?;
            Ok(DriverConfig::ScaleService(config))
        }
        Some(Driver::ServiceUpgrade) => {
            let s: StoredServiceUpgrade = serde_json::from_str(json).map_err(corrupt)?;
            let config = ServiceUpgradeConfig {
                tag_policy: TagPolicy::new(&s.tag_policy, &s.tag, s.semver_bound.as_deref()).map_err(corrupt)?,
                selector: s.selector,
                tag: s.tag,
                repository: s.repository,
                payload_format: s.payload_format,
                batch_size: s.batch_size,
                interval_seconds: s.interval_seconds,
                start_first: s.start_first,
            };
            Ok(DriverConfig::ServiceUpgrade(config.validate().map_err(corrupt)?))
        }
        Some(Driver::ScaleHost) => {
            let s: StoredScaleHost = serde_json::from_str(json).map_err(corrupt)?;
            let config = ScaleHostConfig {
                selector: s.selector,
                action: ScaleAction::parse(&s.action).map_err(corrupt)?,
                amount: s.amount,
                min: s.min,
                max: s.max,
                delete_option: DeleteOption::parse(&s.delete_option).map_err(corrupt)?,
                options: ScaleOptions {
                    at_bound: AtBound::parse(&s.at_bound).map_err(corrupt)?,
                    on_resolved: OnResolved::parse(&s.on_resolved).map_err(corrupt)?,
                    cooldown_up: s.cooldown_up,
                    cooldown_down: s.cooldown_down,
                    dedup: s.dedup,
                    allow_autoscaler: false,
                    allow_zero: false,
                },
            };
            Ok(DriverConfig::ScaleHost(config.validate().map_err(corrupt)?))
        }
        None => Err(corrupt(format!("unknown driver {driver:?}"))),
    }
}

/// A `receivers` row as read from any SQL store.
#[derive(sqlx::FromRow)]
pub struct ReceiverRow {
    pub id: String,
    pub project: String,
    pub name: String,
    pub driver: String,
    pub config: String,
    pub enabled: bool,
    pub token_generation: i64,
    pub created: i64,
    pub updated: i64,
    pub revision: i64,
    pub verify: Option<String>,
}

/// A sender check as the store keeps it: hashes and sealed keys only, never a secret.
pub fn verify_to_json(check: Option<&SenderCheck>) -> Option<String> {
    use base64::{engine::general_purpose::STANDARD, Engine};
    let value = match check? {
        SenderCheck::Header { name, bearer, hash } => {
            serde_json::json!({"type": "header", "name": name, "bearer": bearer, "hash": hex::encode(hash)})
        }
        SenderCheck::Github { sealed } => serde_json::json!({"type": "github", "sealed": STANDARD.encode(sealed)}),
        SenderCheck::StandardWebhooks { sealed } => {
            serde_json::json!({"type": "standardWebhooks", "sealed": STANDARD.encode(sealed)})
        }
    };
    Some(value.to_string())
}

fn verify_from_json(json: Option<&str>) -> StoreResult<Option<SenderCheck>> {
    use base64::{engine::general_purpose::STANDARD, Engine};
    let Some(json) = json else { return Ok(None) };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| corrupt("receiver verify"))?;
    let sealed = || STANDARD.decode(v["sealed"].as_str().unwrap_or_default()).map_err(|_| corrupt("sealed key"));
    Ok(Some(match v["type"].as_str() {
        Some("header") => SenderCheck::Header {
            name: v["name"].as_str().ok_or_else(|| corrupt("verify header name"))?.to_owned(),
            bearer: v["bearer"].as_bool().unwrap_or(false),
            hash: hex::decode(v["hash"].as_str().unwrap_or_default())
                .ok()
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| corrupt("verify hash"))?,
        },
        Some("github") => SenderCheck::Github { sealed: sealed()? },
        Some("standardWebhooks") => SenderCheck::StandardWebhooks { sealed: sealed()? },
        _ => return Err(corrupt("verify type")),
    }))
}

impl ReceiverRow {
    pub fn into_domain(self) -> StoreResult<Receiver> {
        Ok(Receiver {
            id: ReceiverId::parse(&self.id).ok_or_else(|| corrupt(format!("receiver id {:?}", self.id)))?,
            project: ProjectName::parse(&self.project).map_err(corrupt)?,
            name: ReceiverName::parse(&self.name).map_err(corrupt)?,
            config: config_from_json(&self.driver, &self.config)?,
            enabled: self.enabled,
            token_generation: u32::try_from(self.token_generation).map_err(corrupt)?,
            created: self.created,
            updated: self.updated,
            revision: u32::try_from(self.revision).map_err(corrupt)?,
            verify: verify_from_json(self.verify.as_deref())?,
        })
    }
}

/// An `executions` row as read from any SQL store: ids and keys as raw bytes.
#[derive(sqlx::FromRow)]
pub struct ExecutionRow {
    pub id: Vec<u8>,
    pub receiver: Vec<u8>,
    pub service: Option<String>,
    pub at: Millis,
    pub source: String,
    pub outcome: String,
    pub scale_from: Option<i64>,
    pub scale_to: Option<i64>,
    pub reason: String,
    pub detail: String,
    pub dry_run: bool,
    pub alerts: String,
    pub dedup_key: Option<Vec<u8>>,
    pub job: Option<Vec<u8>>,
}

impl ExecutionRow {
    pub fn into_domain(self) -> StoreResult<Execution> {
        let scale = |v: Option<i64>| v.map(u32::try_from).transpose().map_err(corrupt);
        Ok(Execution {
            id: ExecutionId::from_slice(&self.id).ok_or_else(|| corrupt("execution id"))?,
            receiver: ReceiverId::from_slice(&self.receiver).ok_or_else(|| corrupt("execution receiver id"))?,
            service: self.service.map(ServiceKey::from_stored),
            at: self.at,
            source: self.source,
            outcome: Outcome::parse(&self.outcome).ok_or_else(|| corrupt(format!("outcome {:?}", self.outcome)))?,
            effect: match (scale(self.scale_from)?, scale(self.scale_to)?, self.job) {
                (_, _, Some(job)) => Effect::Job(JobId::from_slice(&job).ok_or_else(|| corrupt("execution job id"))?),
                (Some(from), Some(to), None) => Effect::Scale { from, to },
                _ => Effect::None,
            },
            reason: self.reason,
            detail: self.detail,
            dry_run: self.dry_run,
            alerts: alerts_from_json(&self.alerts)?,
            dedup_key: self
                .dedup_key
                .map(|k| DedupKey::from_slice(&k).ok_or_else(|| corrupt("execution dedup key")))
                .transpose()?,
        })
    }
}

/// An `api_tokens` row as read from any SQL store.
#[derive(sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: String,
    pub name: String,
    pub hash: String,
    pub role: String,
    pub project: Option<String>,
    pub created: Millis,
    pub expires: Option<Millis>,
    pub created_by: Option<String>,
}

/// The columns an [`ApiTokenRow`] is read from.
pub const API_TOKEN_COLUMNS: &str = "id, name, hash, role, project, created, expires, created_by";

impl ApiTokenRow {
    pub fn into_domain(self) -> StoreResult<ApiToken> {
        Ok(ApiToken {
            id: ApiTokenId::parse(&self.id).ok_or_else(|| corrupt("api token id"))?,
            name: self.name,
            hash: self.hash,
            role: Role::parse(&self.role).ok_or_else(|| corrupt(format!("api token role {:?}", self.role)))?,
            project: self.project.map(|p| ProjectName::parse(&p)).transpose().map_err(corrupt)?,
            created: self.created,
            expires: self.expires,
            created_by: self
                .created_by
                .map(|id| ApiTokenId::parse(&id).ok_or_else(|| corrupt("api token maker")))
                .transpose()?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredStep {
    service: String,
    from: String,
    image: String,
    state: String,
    updated: u32,
    total: u32,
    error: Option<String>,
    started: Option<Millis>,
    finished: Option<Millis>,
}

/// A job in the store's own JSON format: one column, so progress needs no schema change.
#[derive(Serialize, Deserialize)]
struct StoredJob {
    receiver: String,
    project: String,
    execution: String,
    backend: String,
    state: String,
    batch_size: u32,
    interval_seconds: u32,
    start_first: bool,
    steps: Vec<StoredStep>,
    error: Option<String>,
    created: Millis,
    updated: Millis,
    finished: Option<Millis>,
    /// A host job's; absent in upgrade jobs (and in every job stored before host jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hosts: Option<StoredHostJob>,
}

#[derive(Serialize, Deserialize)]
struct StoredHostJob {
    pool: String,
    action: String,
    labels: std::collections::BTreeMap<String, String>,
}

pub fn job_to_json(job: &Job) -> String {
    let stored = StoredJob {
        receiver: job.receiver.to_string(),
        project: job.project.to_string(),
        execution: job.execution.to_string(),
        backend: job.backend.clone(),
        state: job.state.as_str().to_owned(),
        batch_size: job.rollout.batch_size,
        interval_seconds: job.rollout.interval_seconds,
        start_first: job.rollout.start_first,
        steps: job
            .steps
            .iter()
            .map(|s| StoredStep {
                service: s.service.to_string(),
                from: s.from.clone(),
                image: s.image.clone(),
                state: s.state.as_str().to_owned(),
                updated: s.updated,
                total: s.total,
                error: s.error.clone(),
                started: s.started,
                finished: s.finished,
            })
            .collect(),
        error: job.error.clone(),
        created: job.created,
        updated: job.updated,
        finished: job.finished,
        hosts: match &job.kind {
            JobKind::Upgrade => None,
            JobKind::Hosts { pool, action, labels } => {
                Some(StoredHostJob { pool: pool.clone(), action: action.as_str().to_owned(), labels: labels.clone() })
            }
        },
    };
    serde_json::to_string(&stored).expect("jobs always serialize")
}

pub fn job_from_json(id: &[u8], json: &str) -> StoreResult<Job> {
    let s: StoredJob = serde_json::from_str(json).map_err(corrupt)?;
    let steps = s
        .steps
        .into_iter()
        .map(|step| {
            Ok(JobStep {
                service: ServiceId::parse(&step.service).map_err(corrupt)?,
                from: step.from,
                image: step.image,
                state: StepState::parse(&step.state)
                    .ok_or_else(|| corrupt(format!("job step state {:?}", step.state)))?,
                updated: step.updated,
                total: step.total,
                error: step.error,
                started: step.started,
                finished: step.finished,
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(Job {
        id: JobId::from_slice(id).ok_or_else(|| corrupt("job id"))?,
        receiver: ReceiverId::parse(&s.receiver).ok_or_else(|| corrupt("job receiver"))?,
        project: ProjectName::parse(&s.project).map_err(corrupt)?,
        execution: ExecutionId::parse(&s.execution).ok_or_else(|| corrupt("job execution"))?,
        backend: s.backend,
        kind: match s.hosts {
            None => JobKind::Upgrade,
            Some(h) => JobKind::Hosts {
                pool: h.pool,
                action: ScaleAction::parse(&h.action).map_err(corrupt)?,
                labels: h.labels,
            },
        },
        state: JobState::parse(&s.state).ok_or_else(|| corrupt(format!("job state {:?}", s.state)))?,
        rollout: Rollout { batch_size: s.batch_size, interval_seconds: s.interval_seconds, start_first: s.start_first },
        steps,
        error: s.error,
        created: s.created,
        updated: s.updated,
        finished: s.finished,
    })
}

/// `(at, replicas, source)` rows of the `recommendations` table.
pub fn recommendations(rows: Vec<(i64, i64, String)>) -> Vec<crate::domain::target::Recommendation> {
    rows.into_iter()
        .map(|(at, replicas, source)| crate::domain::target::Recommendation {
            at,
            replicas: u32::try_from(replicas.max(0)).unwrap_or(u32::MAX),
            source,
        })
        .collect()
}
