//! Wire types: the JSON shapes of the API, Rancher's where Rancher had one.
//!
//! Only this module derives serde for the HTTP contract; handlers convert to and from domain types.

use std::collections::BTreeMap;

use serde::{de::IgnoredAny, Deserialize, Serialize};
use serde_json::Value;

mod target;

use super::error::ApiError;
use crate::{
    backend::ServiceInfo,
    domain::{
        host::{DeleteOption, ScaleHostConfig},
        target::ScaleMode,
        AlertRef, AtBound, DriverConfig, Execution, Job, JobKind, Millis, OnResolved, Receiver, ScaleAction,
        ScaleOptions, ScaleServiceConfig, ServiceId, ServiceUpgradeConfig, TagPolicy,
    },
    payload::registry::PayloadFormat,
};

/// Rancher's schema defaults for `min` and `max`.
pub const DEFAULT_MIN: u32 = 1;
pub const DEFAULT_MAX: u32 = 100;
pub const DEFAULT_AMOUNT: u32 = 1;

/// A member that was sent, even as `null` (absent stays `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Body of create (POST) and update (PUT). Unknown fields are refused; the read-only
/// members of a receiver resource are accepted and ignored, so a GET body can be PUT back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // the IgnoredAny members exist only to be accepted
pub struct ReceiverIn {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub enabled: Option<bool>,
    pub scale_service_config: Option<ScaleServiceConfigIn>,
    pub service_upgrade_config: Option<ServiceUpgradeConfigIn>,
    // Rancher clients send every driver's config; only the chosen driver's is read.
    /// What a trigger must also carry; `null` removes it (kept raw: absent and null differ).
    #[serde(default, deserialize_with = "present")]
    pub sender_verification: Option<Value>,
    // Kept raw: Rancher clients send `{}` for the drivers they did not choose.
    pub scale_host_config: Option<Value>,
    pub forward_post_config: Option<IgnoredAny>,
    #[serde(rename = "type")]
    pub kind: Option<IgnoredAny>,
    pub id: Option<IgnoredAny>,
    pub url: Option<IgnoredAny>,
    pub state: Option<IgnoredAny>,
    pub project_id: Option<IgnoredAny>,
    pub description: Option<IgnoredAny>,
    pub created: Option<IgnoredAny>,
    pub updated: Option<IgnoredAny>,
    pub links: Option<IgnoredAny>,
    pub actions: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // `kind` exists only to be accepted
pub struct ScaleServiceConfigIn {
    pub service_id: Option<String>,
    pub action: Option<String>,
    // Numbers arrive as any JSON value so that `-1` or `1.5` get Rancher's sentences.
    pub amount: Option<Value>,
    pub min: Option<Value>,
    pub max: Option<Value>,
    pub at_bound: Option<String>,
    pub on_resolved: Option<String>,
    pub cooldown_up_seconds: Option<u32>,
    pub cooldown_down_seconds: Option<u32>,
    pub dedup_seconds: Option<u32>,
    pub allow_autoscaler: Option<bool>,
    pub allow_zero: Option<bool>,
    pub mode: Option<String>,
    pub target_from: Option<target::TargetFromIn>,
    pub max_step_up: Option<Value>,
    pub max_step_down: Option<Value>,
    pub stabilization_seconds: Option<u32>,
    #[serde(rename = "type")]
    pub kind: Option<IgnoredAny>,
}

/// A whole number, `default` when absent or null; a negative, fractional or non-number
/// value is `invalid`, given the value as sent.
fn count(value: Option<&Value>, default: u32, invalid: impl Fn(&str) -> ApiError) -> Result<u32, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => {
            n.as_u64().map(|n| u32::try_from(n).unwrap_or(u32::MAX)).ok_or_else(|| invalid(&n.to_string()))
        }
        Some(other) => Err(invalid(&other.to_string())),
    }
}

impl ScaleServiceConfigIn {
    /// An update that does not name a mode keeps `stored`'s, with the target settings it
    /// leaves out.
    pub fn inherit_mode(&mut self, stored: &ScaleMode) {
        if self.mode.is_some() {
            return;
        }
        if let ScaleMode::Target(t) = stored {
            self.mode = Some("target".into());
            let mut out = serde_json::Map::new();
            target::out(stored, &mut out);
            self.target_from.get_or_insert_with(|| target::TargetFromIn::of(&t.from));
            self.max_step_up.get_or_insert_with(|| out["maxStepUp"].clone());
            self.max_step_down.get_or_insert_with(|| out["maxStepDown"].clone());
            self.stabilization_seconds.get_or_insert(t.stabilization);
        }
    }

    pub fn into_domain(self) -> Result<ScaleServiceConfig, ApiError> {
        // Rancher's sentences first, then why. Not a whole number at all: `invalid_body`, the
        // code of every value of the wrong type; 0 is `invalid_value`, from the domain.
        let amount = count(self.amount.as_ref(), DEFAULT_AMOUNT, |raw| {
            ApiError::bad_request(
                "invalid_body",
                format!("Invalid amount: {raw}; amount is a whole number, at least 1"),
            )
            .with_field("scaleServiceConfig.amount")
        })?;
        let bound = |value: Option<&Value>, default: u32, which: &str, field: &str| {
            count(value, default, |raw| {
                ApiError::bad_request(
                    "invalid_body",
                    format!("{which} scale not provided/invalid: {field} is a whole number, at least 1 (got {raw})"),
                )
                .with_field(format!("scaleServiceConfig.{field}"))
            })
        };
        let min = bound(self.min.as_ref(), DEFAULT_MIN, "Minimum", "min")?;
        let max = bound(self.max.as_ref(), DEFAULT_MAX, "Maximum", "max")?;
        let service = self.service_id.ok_or_else(|| {
            ApiError::bad_request("missing_field", "scaleServiceConfig.serviceId is required")
                .with_field("scaleServiceConfig.serviceId")
        })?;
        let service = ServiceId::parse(&service).map_err(|mut e| {
            e.field = "scaleServiceConfig.serviceId";
            e
        })?;
        let mode = target::TargetIn {
            mode: self.mode.as_deref(),
            target_from: self.target_from,
            max_step_up: self.max_step_up.as_ref(),
            max_step_down: self.max_step_down.as_ref(),
            stabilization_seconds: self.stabilization_seconds,
        }
        .into_domain()?;
        // A target receiver has no direction of its own: "up" stands in, unused.
        let action = match (self.action, &mode) {
            (Some(action), _) => action,
            (None, ScaleMode::Target(_)) => "up".to_owned(),
            (None, ScaleMode::Step) => {
                return Err(ApiError::bad_request(
                    "missing_field",
                    "scaleServiceConfig.action is required (\"up\" or \"down\")",
                )
                .with_field("scaleServiceConfig.action"))
            }
        };
        let defaults = ScaleOptions::default();
        let options = ScaleOptions {
            at_bound: self.at_bound.as_deref().map(AtBound::parse).transpose()?.unwrap_or_default(),
            on_resolved: self.on_resolved.as_deref().map(OnResolved::parse).transpose()?.unwrap_or_default(),
            cooldown_up: self.cooldown_up_seconds,
            cooldown_down: self.cooldown_down_seconds,
            dedup: self.dedup_seconds.unwrap_or(defaults.dedup),
            allow_autoscaler: self.allow_autoscaler.unwrap_or(defaults.allow_autoscaler),
            allow_zero: self.allow_zero.unwrap_or(defaults.allow_zero),
        };
        let config = ScaleServiceConfig::new(service, ScaleAction::parse(&action)?, amount, min, max)?;
        Ok(config.with_mode(mode)?.with_options(options)?)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // `kind` exists only to be accepted
pub struct ScaleHostConfigIn {
    pub host_selector: Option<std::collections::BTreeMap<String, String>>,
    pub action: Option<String>,
    pub amount: Option<Value>,
    pub min: Option<Value>,
    pub max: Option<Value>,
    pub delete_option: Option<String>,
    pub at_bound: Option<String>,
    pub on_resolved: Option<String>,
    pub cooldown_up_seconds: Option<u32>,
    pub cooldown_down_seconds: Option<u32>,
    pub dedup_seconds: Option<u32>,
    #[serde(rename = "type")]
    pub kind: Option<IgnoredAny>,
}

impl ScaleHostConfigIn {
    pub fn into_domain(self) -> Result<ScaleHostConfig, ApiError> {
        let number = |value: Option<&Value>, default: u32, field: &'static str| {
            count(value, default, |raw| {
                ApiError::bad_request("invalid_body", format!("{field} is a whole number, at least 1 (got {raw})"))
                    .with_field(format!("scaleHostConfig.{field}"))
            })
        };
        let action = self.action.ok_or_else(|| {
            ApiError::bad_request("missing_field", "scaleHostConfig.action is required (\"up\" or \"down\")")
                .with_field("scaleHostConfig.action")
        })?;
        let action = ScaleAction::parse(&action).map_err(|mut e| {
            e.field = "scaleHostConfig.action";
            e
        })?;
        // Rancher's own tests send a deleteOption with "up": read, and unused until "down".
        let delete_option = match self.delete_option.as_deref().filter(|d| !d.is_empty()) {
            Some(option) => DeleteOption::parse(option)?,
            None => DeleteOption::default(),
        };
        let defaults = ScaleOptions::default();
        let config = ScaleHostConfig {
            selector: self.host_selector.unwrap_or_default(),
            action,
            amount: number(self.amount.as_ref(), DEFAULT_AMOUNT, "amount")?,
            min: number(self.min.as_ref(), DEFAULT_MIN, "min")?,
            max: number(self.max.as_ref(), DEFAULT_MAX, "max")?,
            delete_option,
            options: ScaleOptions {
                at_bound: self.at_bound.as_deref().map(AtBound::parse).transpose()?.unwrap_or_default(),
                on_resolved: self.on_resolved.as_deref().map(OnResolved::parse).transpose()?.unwrap_or_default(),
                cooldown_up: self.cooldown_up_seconds,
                cooldown_down: self.cooldown_down_seconds,
                dedup: self.dedup_seconds.unwrap_or(defaults.dedup),
                allow_autoscaler: false,
                allow_zero: false,
            },
        };
        Ok(config.validate()?)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // `kind` and `address_type` exist only to be accepted
pub struct ServiceUpgradeConfigIn {
    pub service_selector: Option<BTreeMap<String, String>>,
    pub tag: Option<String>,
    pub tag_policy: Option<String>,
    pub semver_bound: Option<String>,
    pub repository: Option<String>,
    pub payload_format: Option<String>,
    pub batch_size: Option<Value>,
    /// Seconds between batches, despite the name: Rancher's field, Rancher's meaning.
    pub interval_millis: Option<Value>,
    pub start_first: Option<bool>,
    /// Rancher's Alibaba Cloud registry address kind; hookd reads the registry from the push.
    pub address_type: Option<IgnoredAny>,
    #[serde(rename = "type")]
    pub kind: Option<IgnoredAny>,
}

impl ServiceUpgradeConfigIn {
    pub fn into_domain(self) -> Result<ServiceUpgradeConfig, ApiError> {
        let number = |value: Option<&Value>, default: u32, field: &'static str| {
            count(value, default, |raw| {
                ApiError::bad_request("invalid_body", format!("Invalid {field} {raw}: a whole number, at least 1"))
                    .with_field(format!("serviceUpgradeConfig.{field}"))
            })
        };
        let tag = self.tag.unwrap_or_default();
        let policy = self.tag_policy.as_deref().unwrap_or("exact");
        if let Some(format) = self.payload_format.as_deref().filter(|f| PayloadFormat::parse(f).is_none()) {
            let known: Vec<&str> = PayloadFormat::ALL.iter().map(|f| f.as_str()).collect();
            return Err(ApiError::bad_request(
                "invalid_value",
                format!(
                    "Invalid payloadFormat {format:?}; known formats: {} (or leave it out to detect)",
                    known.join(", ")
                ),
            )
            .with_field("serviceUpgradeConfig.payloadFormat"));
        }
        let config = ServiceUpgradeConfig {
            selector: self.service_selector.unwrap_or_default(),
            tag_policy: TagPolicy::new(policy, &tag, self.semver_bound.as_deref())?,
            tag,
            repository: self.repository.filter(|r| !r.is_empty()),
            payload_format: self.payload_format,
            batch_size: number(self.batch_size.as_ref(), 1, "batchSize")?,
            interval_seconds: number(self.interval_millis.as_ref(), 2, "intervalMillis")?,
            start_first: self.start_first.unwrap_or(false),
        };
        Ok(config.validate()?)
    }
}

pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A receiver resource, as Rancher's webhook-service shaped it, plus hookd's additions.
pub fn receiver_out(r: &Receiver, base: &str, url: Option<String>) -> Value {
    let path = format!("{base}/v1-webhooks/receivers/{}", r.id);
    // Rancher's links name the project: its clients and UI build further URLs from them.
    let project = r.project.as_str();
    let self_link = format!("{path}?projectId={project}");
    let toggle = if r.enabled { "disable" } else { "enable" };
    let mut out = serde_json::json!({
        "id": r.id.to_string(),
        "type": "receiver",
        "name": r.name.as_str(),
        "driver": r.config.driver().as_str(),
        "state": if r.enabled { "active" } else { "inactive" },
        "enabled": r.enabled,
        "projectId": r.project.as_str(),
        "url": url.unwrap_or_default(),
        "description": r.config.describe(),
        "created": rfc3339(r.created),
        "updated": rfc3339(r.updated),
        "senderVerification": super::verify::out(r.verify.as_ref()),
        "links": {
            "self": self_link,
            "executions": format!("{path}/executions?projectId={project}"),
            "alertmanagerConfig": format!("{path}/alertmanager-config?projectId={project}"),
        },
        "actions": {
            toggle: format!("{self_link}&action={toggle}"),
            "regenerateUrl": format!("{self_link}&action=regenerateUrl"),
        },
    });
    let object = out.as_object_mut().expect("built as an object");
    match &r.config {
        DriverConfig::ScaleService(c) => {
            object.insert(
                "scaleServiceConfig".into(),
                serde_json::json!({
                    "type": "scaleService",
                    "serviceId": c.service.as_str(),
                    "action": c.action.as_str(),
                    "amount": c.amount,
                    "min": c.min,
                    "max": c.max,
                    "atBound": c.options.at_bound.as_str(),
                    "onResolved": c.options.on_resolved.as_str(),
                    "cooldownUpSeconds": c.options.cooldown_up,
                    "cooldownDownSeconds": c.options.cooldown_down,
                    "dedupSeconds": c.options.dedup,
                    "allowAutoscaler": c.options.allow_autoscaler,
                    "allowZero": c.options.allow_zero,
                }),
            );
            let config = object["scaleServiceConfig"].as_object_mut().expect("built as an object");
            target::out(&c.mode, config);
        }
        DriverConfig::ServiceUpgrade(c) => {
            object.insert(
                "serviceUpgradeConfig".into(),
                serde_json::json!({
                    "type": "serviceUpgrade",
                    "serviceSelector": c.selector,
                    "tag": c.tag,
                    "tagPolicy": c.tag_policy.as_str(),
                    "semverBound": c.tag_policy.bound().map(|b| b.as_str()),
                    "repository": c.repository,
                    "payloadFormat": c.payload_format,
                    "batchSize": c.batch_size,
                    "intervalMillis": c.interval_seconds,
                    "startFirst": c.start_first,
                }),
            );
            object["links"]["jobs"] = Value::String(format!("{path}/jobs?projectId={project}"));
        }
        DriverConfig::ScaleHost(c) => {
            object.insert(
                "scaleHostConfig".into(),
                serde_json::json!({
                    "type": "scaleHost",
                    "hostSelector": c.selector,
                    "action": c.action.as_str(),
                    "amount": c.amount,
                    "min": c.min,
                    "max": c.max,
                    "deleteOption": c.delete_option.as_str(),
                    "atBound": c.options.at_bound.as_str(),
                    "onResolved": c.options.on_resolved.as_str(),
                    "cooldownUpSeconds": c.options.cooldown_up,
                    "cooldownDownSeconds": c.options.cooldown_down,
                    "dedupSeconds": c.options.dedup,
                }),
            );
            object["links"]["jobs"] = Value::String(format!("{path}/jobs?projectId={project}"));
        }
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionOut {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub receiver_id: String,
    pub at: String,
    pub source: String,
    pub outcome: &'static str,
    pub from: Option<u32>,
    pub to: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub reason: String,
    pub detail: String,
    pub dry_run: bool,
    pub alerts: Vec<AlertOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertOut {
    pub name: String,
    pub fingerprint: String,
    pub status: &'static str,
    pub starts_at: String,
}

impl From<&AlertRef> for AlertOut {
    fn from(a: &AlertRef) -> Self {
        Self {
            name: a.name.clone(),
            fingerprint: a.fingerprint.clone(),
            status: a.status.as_str(),
            starts_at: a.starts_at.clone(),
        }
    }
}

impl From<&Execution> for ExecutionOut {
    fn from(e: &Execution) -> Self {
        Self {
            id: e.id.to_string(),
            kind: "execution",
            receiver_id: e.receiver.to_string(),
            at: rfc3339(e.at),
            source: e.source.clone(),
            outcome: e.outcome.as_str(),
            from: e.effect.scale().0,
            to: e.effect.scale().1,
            job: e.effect.job().map(|j| j.to_string()),
            reason: e.reason.clone(),
            detail: e.detail.clone(),
            dry_run: e.dry_run,
            alerts: e.alerts.iter().map(AlertOut::from).collect(),
        }
    }
}

/// The answer to a trigger.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerOut {
    pub execution: String,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Where to follow the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_url: Option<String>,
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl From<&Execution> for TriggerOut {
    fn from(e: &Execution) -> Self {
        Self {
            execution: e.id.to_string(),
            outcome: e.outcome.as_str(),
            from: e.effect.scale().0,
            to: e.effect.scale().1,
            job: e.effect.job().map(|j| j.to_string()),
            job_url: None,
            reason: e.reason.clone(),
            detail: e.detail.clone(),
            dry_run: e.dry_run,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOut {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub backend: String,
    /// `process`, `swarm`, `swarm-global` or `compose`.
    pub service_kind: &'static str,
    /// Desired scale.
    pub scale: u32,
    pub running: u32,
    pub image: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub last_error: Option<String>,
}

impl ServiceOut {
    pub fn new(s: ServiceInfo, backend: &str) -> Self {
        Self {
            id: s.id.to_string(),
            kind: "service",
            name: s.id.to_string(),
            backend: backend.to_owned(),
            service_kind: s.kind,
            scale: s.desired,
            running: s.running,
            image: s.image,
            labels: s.labels,
            last_error: s.last_error,
        }
    }
}

/// A job resource.
pub fn job_out(job: &Job, base: &str) -> Value {
    let steps: Vec<Value> = job
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "service": s.service.as_str(),
                "from": s.from,
                "image": s.image,
                "state": s.state.as_str(),
                "updated": s.updated,
                "total": s.total,
                "error": s.error,
                "started": s.started.map(rfc3339),
                "finished": s.finished.map(rfc3339),
            })
        })
        .collect();
    serde_json::json!({
        "id": job.id.to_string(),
        "type": "job",
        "receiverId": job.receiver.to_string(),
        "projectId": job.project.as_str(),
        "executionId": job.execution.to_string(),
        "backend": job.backend,
        "state": job.state.as_str(),
        "batchSize": job.rollout.batch_size,
        "intervalSeconds": job.rollout.interval_seconds,
        "startFirst": job.rollout.start_first,
        "kind": match job.kind { JobKind::Upgrade => "upgrade", JobKind::Hosts { .. } => "scaleHost" },
        "services": if matches!(job.kind, JobKind::Upgrade) { steps } else { Vec::new() },
        "hosts": host_steps(job),
        "error": job.error,
        "created": rfc3339(job.created),
        "updated": rfc3339(job.updated),
        "finished": job.finished.map(rfc3339),
        "links": { "self": format!("{base}/v1-webhooks/jobs/{}", job.id) },
    })
}

/// A host job's hosts: each created or deleted, how far, and why it failed.
fn host_steps(job: &Job) -> Option<Value> {
    let JobKind::Hosts { pool, action, .. } = &job.kind else { return None };
    let hosts: Vec<Value> = job
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.service.as_str(),
                "action": if *action == ScaleAction::Up { "create" } else { "delete" },
                "state": s.state.as_str(),
                "error": s.error,
                "started": s.started.map(rfc3339),
                "finished": s.finished.map(rfc3339),
            })
        })
        .collect();
    Some(serde_json::json!({ "pool": pool, "action": action.as_str(), "steps": hosts }))
}

/// A Rancher-style collection with marker pagination.
pub fn collection(resource_type: &str, self_link: String, data: Vec<Value>, limit: u32, next: Option<String>) -> Value {
    let mut links = serde_json::json!({ "self": self_link });
    if let Some(next) = &next {
        links["next"] = Value::String(next.clone());
    }
    serde_json::json!({
        "type": "collection",
        "resourceType": resource_type,
        "links": links,
        "pagination": { "limit": limit, "next": next },
        "data": data,
    })
}
