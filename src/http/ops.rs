//! Operational endpoints: health, readiness, metrics, the API root and the services list.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{RawQuery, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::json;

use super::{
    extract::parse_query,
    wire::{collection, ServiceOut},
    ApiError, AppState,
};
use crate::{auth::Caller, metrics::ServiceLabels};

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            ApiError::unavailable("store_unavailable", "hookd cannot write to its database now", 5).into_response()
        }
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let disk = state.store.disk_usage();
    let gauges = &state.metrics.store;
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    gauges.database_bytes.set(as_i64(disk.database_bytes));
    gauges.wal_bytes.set(as_i64(disk.wal_bytes));
    gauges.wal_peak_bytes.set(as_i64(disk.wal_peak_bytes));
    gauges.executions.set(as_i64(disk.executions));
    gauges.writable.set(i64::from(disk.writable));
    refresh_service_gauges(&state).await;
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

/// How long the service gauges are served from the last look at the backends: a scrape,
/// however frequent, asks a backend at most this often.
const SERVICE_GAUGES_FOR: Duration = Duration::from_secs(5);

/// Reads every backend's services into the scale gauges, unless that was done lately (or
/// is being done now), and drops the gauges of services that are gone.
async fn refresh_service_gauges(state: &AppState) {
    let Ok(mut last) = state.metrics.service_refresh.try_lock() else { return };
    if last.0.is_some_and(|at| at.elapsed() < SERVICE_GAUGES_FOR) {
        return;
    }
    let mut seen = HashSet::new();
    for (project, backend) in state.backends.projects() {
        let Ok(services) = backend.list_services().await else {
            // Keep what was last known of an unreachable backend.
            seen.extend(
                last.1.iter().filter(|l| l.backend == backend.name() && l.project == project.as_str()).cloned(),
            );
            continue;
        };
        for s in services {
            let labels = ServiceLabels {
                project: project.to_string(),
                backend: backend.name().to_owned(),
                service: s.id.to_string(),
            };
            state.metrics.desired_scale.get_or_create(&labels).set(i64::from(s.desired));
            state.metrics.running_replicas.get_or_create(&labels).set(i64::from(s.running));
            seen.insert(labels);
        }
    }
    for gone in last.1.difference(&seen) {
        state.metrics.desired_scale.remove(gone);
        state.metrics.running_replicas.remove(gone);
    }
    *last = (Some(Instant::now()), seen);
}

pub async fn api_root(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    let base = format!("{}/v1-webhooks", state.base_url(&headers));
    Json(json!({
        "type": "apiVersion",
        "id": "v1-webhooks",
        "links": {
            "self": base,
            "receivers": format!("{base}/receivers"),
            "schemas": format!("{base}/schemas"),
            "openapi": format!("{base}/openapi.json"),
            "services": format!("{base}/services"),
            "pools": format!("{base}/pools"),
        },
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ServicesQuery {
    pub(super) project_id: Option<String>,
}

pub async fn services(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let query: ServicesQuery = parse_query(q.as_deref())?;
    let (project, backend) = state.project(&caller, query.project_id.as_deref())?;
    let services = backend.list_services().await?;
    let data: Vec<_> = services
        .into_iter()
        .map(|s| serde_json::to_value(ServiceOut::new(s, backend.name())).expect("serializable"))
        .collect();
    let limit = data.len() as u32;
    let self_link = format!("{}/v1-webhooks/services?projectId={project}", state.base_url(&headers));
    Ok((StatusCode::OK, Json(collection("service", self_link, data, limit, None))))
}
