//! Conversions between stored rows and domain types, shared by every SQL store.
//!
//! A driver config is stored as JSON in the store's own format (not the wire format), so
//! a new driver or option needs no schema change, and old rows stay readable.

use serde::{Deserialize, Serialize};

use super::{ApiToken, Role, StoreError, StoreResult};
use crate::domain::{
    ApiTokenId, Driver, DriverConfig, Execution, ExecutionId, Millis, Outcome, ProjectName, Receiver, ReceiverId,
    ReceiverName, ScaleAction, ScaleServiceConfig, ServiceId,
};

#[derive(Serialize, Deserialize)]
struct StoredScaleService {
    service: String,
    action: String,
    amount: u32,
    min: u32,
    max: u32,
}

pub fn config_to_json(config: &DriverConfig) -> String {
    let value = match config {
        DriverConfig::ScaleService(c) => serde_json::to_string(&StoredScaleService {
            service: c.service.to_string(),
            action: c.action.as_str().to_owned(),
            amount: c.amount,
            min: c.min,
            max: c.max,
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
            let config = ScaleServiceConfig::new(service, action, s.amount, s.min, s.max).map_err(corrupt)?;
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
        })
    }
}

/// An `executions` row as read from any SQL store.
#[derive(sqlx::FromRow)]
pub struct ExecutionRow {
    pub id: String,
    pub receiver_id: String,
    pub at: Millis,
    pub source: String,
    pub outcome: String,
    pub scale_from: Option<i64>,
    pub scale_to: Option<i64>,
    pub reason: String,
}

impl ExecutionRow {
    pub fn into_domain(self) -> StoreResult<Execution> {
        let scale = |v: Option<i64>| v.map(u32::try_from).transpose().map_err(corrupt);
        Ok(Execution {
            id: ExecutionId::parse(&self.id).ok_or_else(|| corrupt(format!("execution id {:?}", self.id)))?,
            receiver: ReceiverId::parse(&self.receiver_id).ok_or_else(|| corrupt("execution receiver id"))?,
            at: self.at,
            source: self.source,
            outcome: Outcome::parse(&self.outcome).ok_or_else(|| corrupt(format!("outcome {:?}", self.outcome)))?,
            from: scale(self.scale_from)?,
            to: scale(self.scale_to)?,
            reason: self.reason,
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
