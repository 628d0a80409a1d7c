//! `/v1-webhooks/receivers`: create, list, read, update, delete, enable/disable, regenerate.

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, Path, RawQuery, State},
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;

use super::{
    extract::{parse_query, JsonBody},
    wire::{collection, receiver_out, ExecutionOut, ReceiverIn},
    ApiError, AppState,
};
use crate::{
    auth::Caller,
    backend::Backend,
    domain::{now_millis, Driver, DriverConfig, ExecutionId, Receiver, ReceiverId, ReceiverName},
    store::StoreError,
    token::TriggerClaims,
};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// The page size of `limit=-1` ("all", which the Rancher UI always asks for): pages of the
/// largest size, each with a `next` link to the rest, which the UI follows.
const ALL_LIMIT: u32 = MAX_LIMIT;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    project_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjectQuery {
    project_id: Option<String>,
}

#[derive(Deserialize)]
struct ActionQuery {
    action: Option<String>,
}

fn limit(requested: Option<i64>) -> Result<u32, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(-1) => Ok(ALL_LIMIT),
        Some(n) if n >= 1 => Ok(u32::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT)),
        Some(n) => {
            Err(ApiError::bad_request("invalid_query", format!("limit must be at least 1, or -1 for all (got {n})")))
        }
    }
}

pub(super) fn trigger_url(state: &AppState, base: &str, r: &Receiver) -> String {
    let token = state.keys().sign(&TriggerClaims {
        receiver: r.id,
        project: r.project.clone(),
        driver: r.config.driver(),
        generation: r.token_generation,
    });
    format!("{base}/v1-webhooks/endpoint?token={token}")
}

fn render(state: &AppState, caller: &Caller, base: &str, r: &Receiver) -> serde_json::Value {
    let url = caller.sees_urls().then(|| trigger_url(state, base, r));
    receiver_out(r, base, url)
}

/// Loads a receiver the caller may read; anything else looks like "not found".
pub(super) async fn load(
    state: &AppState,
    caller: &Caller,
    id: &str,
    project: Option<&str>,
) -> Result<Receiver, ApiError> {
    let not_found = || ApiError::not_found("receiver_not_found", format!("there is no receiver {id}"));
    let id = ReceiverId::parse(id).ok_or_else(not_found)?;
    let receiver = state.store.receiver(id).await?.ok_or_else(not_found)?;
    let project_matches = project.is_none_or(|p| p == receiver.project.as_str());
    if !project_matches || !caller.can_read(&receiver.project) {
        return Err(not_found());
    }
    Ok(receiver)
}

fn require_manage(caller: &Caller, r: &Receiver) -> Result<(), ApiError> {
    if caller.can_manage(&r.project) {
        Ok(())
    } else {
        Err(ApiError::forbidden("forbidden", "this API token may only read receivers"))
    }
}

/// Builds the driver config a body asks for, checked against the backend (or the pools).
async fn driver_config(
    state: &AppState,
    project: &crate::domain::ProjectName,
    backend: &dyn Backend,
    driver: Driver,
    body: &mut ReceiverIn,
) -> Result<DriverConfig, ApiError> {
    match driver {
        Driver::ScaleHost => {
            let raw = body.scale_host_config.take().ok_or_else(|| {
                ApiError::bad_request("missing_field", "a scaleHost receiver needs scaleHostConfig")
                    .with_field("scaleHostConfig")
            })?;
            let config: crate::http::wire::ScaleHostConfigIn =
                crate::http::extract::from_value(raw, "scaleHostConfig")?;
            let config = config.into_domain()?;
            state
                .engine
                .pool_for(project, &config.selector)
                .map_err(|why| ApiError::bad_request("unknown_pool", why).with_field("scaleHostConfig.hostSelector"))?;
            Ok(DriverConfig::ScaleHost(config))
        }
        Driver::ScaleService => {
            let config = body
                .scale_service_config
                .take()
                .ok_or_else(|| {
                    ApiError::bad_request("missing_field", "a scaleService receiver needs scaleServiceConfig")
                        .with_field("scaleServiceConfig")
                })?
                .into_domain()?;
            let mut config = config;
            config.service = backend.canonical(&config.service);
            if let Err(e) = backend.check_scalable(&config.service).await {
                return Err(with_known_services(backend, e).await);
            }
            if !config.options.allow_autoscaler {
                if let Some(autoscaler) = backend.autoscaled_by(&config.service).await? {
                    return Err(ApiError::bad_request(
                        "service_autoscaled",
                        format!(
                            "{autoscaler} already sets the scale of {}; two controllers would undo each other's \
                             changes. Scale it through the autoscaler, or set scaleServiceConfig.allowAutoscaler \
                             to true to scale it anyway",
                            config.service
                        ),
                    )
                    .with_field("scaleServiceConfig.serviceId"));
                }
            }
            if config.min == 0 {
                match backend.check_zero(&config.service).await {
                    Ok(()) => {}
                    Err(crate::backend::BackendError::Refused(why)) => {
                        return Err(ApiError::bad_request("zero_unsupported", why).with_field("scaleServiceConfig.min"))
                    }
                    // Not knowing whether 0 is safe (an HPA list refused, the API down) is no yes.
                    Err(other) => return Err(other.into()),
                }
            }
            Ok(DriverConfig::ScaleService(config))
        }
        Driver::ServiceUpgrade => {
            let config = body
                .service_upgrade_config
                .take()
                .ok_or_else(|| {
                    ApiError::bad_request("missing_field", "a serviceUpgrade receiver needs serviceUpgradeConfig")
                        .with_field("serviceUpgradeConfig")
                })?
                .into_domain()?;
            if !backend.can_upgrade() {
                return Err(ApiError::bad_request(
                    "upgrade_unsupported",
                    format!("the project's {} backend cannot upgrade services", backend.kind()),
                ));
            }
            Ok(DriverConfig::ServiceUpgrade(config))
        }
    }
}

/// An unknown service's error names the services that exist (the first few).
async fn with_known_services(backend: &dyn Backend, error: crate::backend::BackendError) -> ApiError {
    const SHOWN: usize = 20;
    let unknown = matches!(error, crate::backend::BackendError::ServiceNotFound(_));
    let mut api_error = ApiError::from(error);
    if let (true, Ok(services)) = (unknown, backend.list_services().await) {
        let names: Vec<&str> = services.iter().take(SHOWN).map(|s| s.id.as_str()).collect();
        let more = if services.len() > SHOWN { ", …" } else { "" };
        let known = if names.is_empty() {
            "none yet (declare services in the config file: [[backend.service]] for a local backend)".to_owned()
        } else {
            format!("{}{more}", names.join(", "))
        };
        api_error.message = format!("{}; it has: {known}", api_error.message).into();
    }
    api_error
}

fn parse_driver(name: &str) -> Result<Driver, ApiError> {
    Driver::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Driver::ALL.iter().map(|d| d.as_str()).collect();
        let why =
            if Driver::NOT_YET.contains(&name) { "is not available in this hookd yet" } else { "is not a driver" };
        let message = format!("Invalid driver {name}: {name:?} {why}; available drivers: {}", known.join(", "));
        ApiError::bad_request("unknown_driver", message).with_field("driver")
    })
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query: ListQuery = parse_query(q.as_deref())?;
    let (project, _) = state.project(&caller, query.project_id.as_deref())?;
    let limit = limit(query.limit)?;
    let after = match query.marker.as_deref() {
        Some(m) => Some(
            ReceiverId::parse(m)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "marker is not a receiver id"))?,
        ),
        None => None,
    };
    let receivers = state.store.list_receivers(&project, limit, after).await?;
    let base = state.base_url(&headers);
    let self_link = format!("{base}/v1-webhooks/receivers?projectId={project}");
    let limit_text = if query.limit == Some(-1) { "-1".to_owned() } else { limit.to_string() };
    let next = (receivers.len() == limit as usize)
        .then(|| receivers.last().map(|r| format!("{self_link}&limit={limit_text}&marker={}", r.id)))
        .flatten();
    let data = receivers.iter().map(|r| render(&state, &caller, &base, r)).collect();
    Ok(Json(collection("receiver", self_link, data, limit, next)))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    JsonBody(mut body): JsonBody<ReceiverIn>,
) -> Result<Response, ApiError> {
    let query: ProjectQuery = parse_query(q.as_deref())?;
    let (project, backend) = state.project(&caller, query.project_id.as_deref())?;
    if !caller.can_manage(&project) {
        return Err(ApiError::forbidden("forbidden", "this API token may not create receivers"));
    }
    let name = body
        .name
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("missing_field", "name is required").with_field("name"))?;
    let name = ReceiverName::parse(name)?;
    let driver = body.driver.as_deref().ok_or_else(|| {
        ApiError::bad_request("missing_field", "driver is required (for example \"scaleService\")").with_field("driver")
    })?;
    let driver = parse_driver(driver)?;
    let config = driver_config(&state, &project, backend.as_ref(), driver, &mut body).await?;
    let now = now_millis();
    let receiver = Receiver {
        id: ReceiverId::generate(),
        project,
        name,
        config,
        enabled: body.enabled.unwrap_or(true),
        token_generation: 1,
        revision: 1,
        created: now,
        updated: now,
        verify: match &body.sender_verification {
            Some(v) => super::verify::parse(v, None, &state.sealer)?,
            None => None,
        },
    };
    // The project is checked again under the lock project deletion takes: a receiver never
    // lands in a project deleted while its service was being checked.
    let one = state.access_lock().await?;
    if state.backends.for_project(&receiver.project).is_none() {
        return Err(ApiError::not_found("project_not_found", format!("there is no project {}", receiver.project)));
    }
    state.store.insert_receiver(&receiver).await?;
    drop(one);
    tracing::info!(receiver = %receiver.id, project = %receiver.project, "created receiver");
    let what = format!("{} ({}{})", receiver.name.as_str(), receiver.config.describe(), sender_note(&receiver));
    state.audit(&caller, Some(&receiver.project), "receiver.create", receiver.id.to_string(), what).await;
    let base = state.base_url(&headers);
    let location = format!("{base}/v1-webhooks/receivers/{}", receiver.id);
    // 200, not 201: Rancher answered 200, and its tests and users' scripts check for it.
    Ok((StatusCode::OK, [(header::LOCATION, location)], Json(render(&state, &caller, &base, &receiver)))
        .into_response())
}

/// The receiver a `/receivers/{id}` path names, loaded for a caller who may read it.
pub(super) struct Target {
    pub caller: Caller,
    pub receiver: Receiver,
}

impl FromRequestParts<Arc<AppState>> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("receiver_not_found", "there is no such receiver"))?;
        let query: ProjectQuery = parse_query(parts.uri.query())?;
        let receiver = load(state, &caller, &id, query.project_id.as_deref()).await?;
        Ok(Self { caller, receiver })
    }
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Target { caller, receiver }: Target,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(render(&state, &caller, &state.base_url(&headers), &receiver)))
}

/// Stores `change` applied to the receiver as it is stored at that moment: two concurrent
/// edits (an enable and a regenerate) both land, and neither undoes the other.
async fn edit(
    state: &AppState,
    receiver: &Receiver,
    change: impl FnOnce(&mut Receiver) + Send + 'static,
) -> Result<Receiver, ApiError> {
    state.store.edit_receiver(receiver.id, Box::new(change)).await.map_err(|e| match e {
        StoreError::NotFound => {
            ApiError::not_found("receiver_not_found", format!("there is no receiver {}", receiver.id))
        }
        other => other.into(),
    })
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Target { caller, receiver }: Target,
    JsonBody(mut body): JsonBody<ReceiverIn>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_manage(&caller, &receiver)?;
    let name = body.name.as_deref().map(ReceiverName::parse).transpose()?;
    let driver = receiver.config.driver();
    if let Some(requested) = body.driver.as_deref() {
        if parse_driver(requested)? != driver {
            return Err(ApiError::bad_request(
                "driver_immutable",
                "a receiver's driver cannot be changed; create a new receiver",
            )
            .with_field("driver"));
        }
    }
    let new_config = body.scale_service_config.is_some()
        || body.service_upgrade_config.is_some()
        || (driver == Driver::ScaleHost && body.scale_host_config.is_some());
    // A body that leaves the mode out (an older client's) keeps the stored one.
    if let (Some(given), DriverConfig::ScaleService(stored)) = (body.scale_service_config.as_mut(), &receiver.config) {
        given.inherit_mode(&stored.mode);
    }
    let config = match new_config {
        true => {
            let (project, backend) = state.project(&caller, Some(receiver.project.as_str()))?;
            Some(driver_config(&state, &project, backend.as_ref(), driver, &mut body).await?)
        }
        false => None,
    };
    let enabled = body.enabled;
    let verify = match &body.sender_verification {
        Some(v) => Some(super::verify::parse(v, receiver.verify.as_ref(), &state.sealer)?),
        None => None,
    };
    let receiver = edit(&state, &receiver, move |r| {
        if let Some(verify) = verify {
            r.verify = verify;
        }
        if let Some(name) = name {
            r.name = name;
        }
        if let Some(config) = config {
            r.config = config;
        }
        if let Some(enabled) = enabled {
            r.enabled = enabled;
        }
    })
    .await?;
    let what = format!(
        "{} ({}, {}{})",
        receiver.name.as_str(),
        receiver.config.describe(),
        if receiver.enabled { "enabled" } else { "disabled" },
        sender_note(&receiver)
    );
    state.audit(&caller, Some(&receiver.project), "receiver.update", receiver.id.to_string(), what).await;
    Ok(Json(render(&state, &caller, &state.base_url(&headers), &receiver)))
}

/// The audit log's word on the sender check, so dropping one is seen (never the secret).
fn sender_note(receiver: &Receiver) -> String {
    match &receiver.verify {
        Some(check) => format!("; the sender proves itself by {}", check.kind()),
        None => "; no sender check".to_owned(),
    }
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Target { caller, receiver }: Target,
) -> Result<StatusCode, ApiError> {
    require_manage(&caller, &receiver)?;
    state.store.delete_receiver(receiver.id).await?;
    tracing::info!(receiver = %receiver.id, "deleted receiver");
    let name = receiver.name.as_str().to_owned();
    state.audit(&caller, Some(&receiver.project), "receiver.delete", receiver.id.to_string(), name).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Rancher-style actions: `POST /receivers/{id}?action=enable|disable|regenerateUrl`.
pub async fn action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Target { caller, receiver }: Target,
    RawQuery(q): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query: ActionQuery = parse_query(q.as_deref())?;
    require_manage(&caller, &receiver)?;
    let action = query.action.clone().unwrap_or_default();
    let change: fn(&mut Receiver) = match query.action.as_deref() {
        Some("enable") => |r| r.enabled = true,
        Some("disable") => |r| r.enabled = false,
        Some("regenerateUrl") => |r| r.token_generation += 1,
        other => {
            return Err(ApiError::bad_request(
                "unknown_action",
                format!("unknown action {:?}; use ?action=enable, disable or regenerateUrl", other.unwrap_or("")),
            ))
        }
    };
    let receiver = edit(&state, &receiver, change).await?;
    let audited = format!("receiver.{action}");
    state.audit(&caller, Some(&receiver.project), &audited, receiver.id.to_string(), receiver.name.as_str()).await;
    Ok(Json(render(&state, &caller, &state.base_url(&headers), &receiver)))
}

pub async fn executions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Target { receiver, .. }: Target,
    RawQuery(q): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query: ListQuery = parse_query(q.as_deref())?;
    let limit = limit(query.limit)?;
    let before = match query.marker.as_deref() {
        Some(m) => Some(
            ExecutionId::parse(m)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "marker is not an execution id"))?,
        ),
        None => None,
    };
    let list = state.store.list_executions(receiver.id, limit, before).await?;
    let self_link = format!("{}/v1-webhooks/receivers/{}/executions", state.base_url(&headers), receiver.id);
    let next = (list.len() == limit as usize)
        .then(|| list.last().map(|e| format!("{self_link}?limit={limit}&marker={}", e.id)))
        .flatten();
    let data = list.iter().map(|e| serde_json::to_value(ExecutionOut::from(e)).expect("serializable")).collect();
    Ok(Json(collection("execution", self_link, data, limit, next)))
}
