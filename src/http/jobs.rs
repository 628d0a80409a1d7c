//! `/v1-webhooks/jobs/{id}` and `/v1-webhooks/receivers/{id}/jobs`: long actions and their progress.

use std::sync::Arc;

use axum::{
    extract::{Path, RawQuery, State},
    http::HeaderMap,
    Json,
};
use serde::Deserialize;

use super::{
    extract::parse_query,
    receivers::Target,
    wire::{collection, job_out},
    ApiError, AppState,
};
use crate::{auth::Caller, domain::JobId};

const MAX_JOBS: u32 = 100;

#[derive(Deserialize)]
struct JobsQuery {
    limit: Option<i64>,
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let not_found = || ApiError::not_found("job_not_found", format!("there is no job {id}"));
    let job_id = JobId::parse(&id).ok_or_else(not_found)?;
    let job = state.store.job(job_id).await?.filter(|j| caller.can_read(&j.project)).ok_or_else(not_found)?;
    Ok(Json(job_out(&job, &state.base_url(&headers))))
}

pub async fn of_receiver(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Target { receiver, .. }: Target,
    RawQuery(q): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query: JobsQuery = parse_query(q.as_deref())?;
    let limit = match query.limit {
        None | Some(-1) => MAX_JOBS,
        Some(n) if n >= 1 => u32::try_from(n).unwrap_or(MAX_JOBS).min(MAX_JOBS),
        Some(n) => return Err(ApiError::bad_request("invalid_query", format!("limit must be at least 1 (got {n})"))),
    };
    let base = state.base_url(&headers);
    let jobs = state.store.list_jobs(receiver.id, limit).await?;
    let data = jobs.iter().map(|j| job_out(j, &base)).collect();
    let self_link = format!("{base}/v1-webhooks/receivers/{}/jobs", receiver.id);
    Ok(Json(collection("job", self_link, data, limit, None)))
}
