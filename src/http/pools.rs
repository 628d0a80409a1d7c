//! `GET /v1-webhooks/pools`: a project's host pools and their hosts, as the providers list them.

use std::sync::Arc;

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use serde_json::{json, Value};

use super::{
    error::ApiError,
    extract::parse_query,
    ops::ServicesQuery,
    wire::{collection, rfc3339},
    AppState,
};
use crate::auth::Caller;

pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let query: ServicesQuery = parse_query(q.as_deref())?;
    let (project, _) = state.project(&caller, query.project_id.as_deref())?;
    let mut data = Vec::new();
    for pool in state.engine.pools().of_project(&project) {
        // One pool's provider failing is that pool's error, not the whole answer's.
        let (hosts, error) = match pool.shown_hosts().await {
            Ok(hosts) => (hosts, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let hosts: Vec<Value> = hosts
            .into_iter()
            .map(|h| json!({ "name": h.name, "labels": h.labels, "created": rfc3339(h.created), "healthy": h.healthy }))
            .collect();
        data.push(json!({
            "id": pool.name,
            "type": "pool",
            "name": pool.name,
            "projectId": project.as_str(),
            "provider": pool.provider.kind(),
            "selector": pool.selector,
            "min": pool.min,
            "max": pool.max,
            "hosts": hosts,
            "error": error,
        }));
    }
    let limit = data.len() as u32;
    let self_link = format!("{}/v1-webhooks/pools?projectId={project}", state.base_url(&headers));
    Ok((StatusCode::OK, Json(collection("pool", self_link, data, limit, None))))
}
