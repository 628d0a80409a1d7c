//! Conversions between stored rows and domain types, shared by every SQL store.
//!
//! A driver config is stored as JSON in the store's own format (not the wire format), so
//! a new driver or option needs no schema change, and old rows stay readable.

use serde::{Deserialize, Serialize};

use super::{ApiToken, Role, StoreError, StoreResult};
use crate::domain::DedupKey;
use crate::domain::{
    AlertRef, AlertStatus, ApiTokenId, AtBound, Driver, DriverConfig, Execution, ExecutionId, Millis, OnResolved,
    Outcome, ProjectName, Receiver, ReceiverId, ReceiverName, ScaleAction, ScaleOptions, ScaleServiceConfig, ServiceId,
    ServiceKey,
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
            };
            let config = ScaleServiceConfig::new(service, action, s.amount, s.min, s.max)
                .and_then(|c| c.with_options(options))
                .map_err(corrupt)?;
            Ok(DriverConfig::ScaleService(config))
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
            from: scale(self.scale_from)?,
            to: scale(self.scale_to)?,
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
}

impl ApiTokenRow {
    pub fn into_domain(self) -> StoreResult<ApiToken> {
        Ok(ApiToken {
            id: ApiTokenId::parse(&self.id).ok_or_else(|| corrupt("api token id"))?,
            name: self.name,
            hash: self.hash,
            role: Role::parse(&self.role).ok_or_else(|| corrupt(format!("api token role {:?}", self.role)))?,
            project: self.project.map(|p| ProjectName::parse(&p)).transpose().map_err(corrupt)?,
            created: self.created,
        })
    }
}
