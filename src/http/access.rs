//! Who may do what: API tokens (`/v1-webhooks/tokens`), projects (`/v1-webhooks/projects`),
//! signing keys (`/v1-webhooks/keys`) and the audit log (`/v1-webhooks/audit`).
//!
//! A token sees its own project only; anything of another project is "not found". Owners
//! manage their project's tokens and read its audit log; owners of every project also
//! manage projects and signing keys.

use std::sync::Arc;

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    extract::{parse_query, JsonBody},
    wire::{collection, rfc3339},
    ApiError, AppState,
};
use crate::{
    auth::{generate_token, hash_token, Caller},
    domain::{now_millis, ApiTokenId, AuditId, ProjectName, TokenName},
    store::{ApiToken, AuditEntry, Role, StoreError, StoredProject},
    token::{new_signing_key, sealed, TriggerKeys},
};

/// Longest a token may be made to live, in days (about ten years).
const MAX_EXPIRY_DAYS: u32 = 3650;
const DAY_MILLIS: i64 = 86_400_000;

fn owners_only(what: &str) -> ApiError {
    ApiError::forbidden("forbidden", format!("only a project's owner may {what}"))
}

fn owners_of_all_only(what: &str) -> ApiError {
    ApiError::forbidden("forbidden", format!("only an owner of every project may {what}"))
}

impl AppState {
    /// Records a management action in the audit log. The action is already done: a failure
    /// to record it is logged, not answered.
    pub async fn audit(
        &self,
        caller: &Caller,
        project: Option<&ProjectName>,
        action: &str,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) {
        let entry = AuditEntry {
            id: AuditId::generate(),
            at: now_millis(),
            actor: caller.token.name.clone(),
            actor_id: caller.token.id,
            project: project.cloned(),
            action: action.to_owned(),
            target: target.into(),
            detail: detail.into(),
        };
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::error!(error = %e, action, actor = %entry.actor, "could not record an audit entry");
        }
    }
}

fn token_out(t: &ApiToken, caller: &Caller) -> Value {
    json!({
        "id": t.id.to_string(),
        "type": "apiToken",
        "name": t.name,
        "role": t.role.as_str(),
        "projectId": t.project.as_ref().map(|p| p.as_str()),
        "created": rfc3339(t.created),
        "expires": t.expires.map(rfc3339),
        "expired": t.expired(now_millis()),
        "current": t.id == caller.token.id,
        "createdBy": t.created_by.map(|id| id.to_string()),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokensQuery {
    project_id: Option<String>,
}

/// The project whose tokens the caller manages: theirs, or (owners of every project) the one
/// named, or every project (`None`).
fn token_scope(caller: &Caller, requested: Option<&str>) -> Result<Option<ProjectName>, ApiError> {
    let requested = requested.map(ProjectName::parse).transpose()?;
    // Another project is "not found" before anything else: no role learns it exists.
    match (&caller.token.project, requested) {
        (Some(own), Some(other)) if own != &other => {
            Err(ApiError::not_found("project_not_found", format!("there is no project {other}")))
        }
        _ if caller.token.role != Role::Owner => Err(owners_only("manage API tokens")),
        (None, requested) => Ok(requested),
        (Some(own), _) => Ok(Some(own.clone())),
    }
}

pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query: TokensQuery = parse_query(q.as_deref())?;
    let scope = token_scope(&caller, query.project_id.as_deref())?;
    let tokens = state.store.list_api_tokens(scope.as_ref()).await?;
    let data: Vec<Value> = tokens.iter().map(|t| token_out(t, &caller)).collect();
    let limit = data.len() as u32;
    Ok(Json(collection("apiToken", format!("{}/v1-webhooks/tokens", state.base_url(&headers)), data, limit, None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenIn {
    name: String,
    role: String,
    /// `None`: every project (owners of every project only).
    project_id: Option<String>,
    expires_in_days: Option<u32>,
}

pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<TokenIn>,
) -> Result<Json<Value>, ApiError> {
    // A project's owner makes tokens of its project (the default); an owner of every project,
    // of any project, or of every project when none is named.
    let project = token_scope(&caller, body.project_id.as_deref())?;
    if let Some(p) = &project {
        if state.backends.for_project(p).is_none() {
            return Err(ApiError::not_found("project_not_found", format!("there is no project {p}")));
        }
    }
    let name = TokenName::parse(&body.name)?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request("invalid_value", format!("role must be owner, member or read-only, not {:?}", body.role))
            .with_field("role")
    })?;
    let requested = match body.expires_in_days {
        None => None,
        Some(days @ 1..=MAX_EXPIRY_DAYS) => Some(now_millis() + i64::from(days) * DAY_MILLIS),
        Some(days) => {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!("expiresInDays must be 1 to {MAX_EXPIRY_DAYS} (got {days}); leave it out for no expiry"),
            )
            .with_field("expiresInDays"))
        }
    };
    // A token never outlives the one that made it: an expiry would mean nothing otherwise.
    let expires = match (requested, caller.token.expires) {
        (Some(r), Some(c)) => Some(r.min(c)),
        (r, c) => r.or(c),
    };
    // Names are who acted in the audit log: one name, one token.
    let one = state.access_lock().await?;
    // Read again under the lock: a revoke that took it first ends the caller's right to mint.
    if state.store.api_token(caller.token.id).await?.is_none() {
        return Err(ApiError::unauthorized("this API token was revoked"));
    }
    if state.store.list_api_tokens(None).await?.iter().any(|t| t.name == name.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "token_name_taken",
            format!(
                "there is already an API token named {:?}; the audit log tells tokens apart by name",
                name.as_str()
            ),
        )
        .with_field("name"));
    }
    // Checked again under the lock: a project deleted meanwhile takes no new token.
    if let Some(p) = &project {
        if state.backends.for_project(p).is_none() {
            return Err(ApiError::not_found("project_not_found", format!("there is no project {p}")));
        }
    }
    let secret = generate_token();
    // Owners of every project are peers of their maker: otherwise every token would descend
    // from the first admin token, which could then never be revoked.
    let created_by = (project.is_some() || role != Role::Owner).then_some(caller.token.id);
    let token = ApiToken {
        id: ApiTokenId::generate(),
        name: name.as_str().to_owned(),
        hash: hash_token(secret.expose()),
        role,
        project,
        created: now_millis(),
        expires,
        created_by,
    };
    state.store.insert_api_token(&token).await?;
    drop(one);
    let scope = token.project.as_ref().map_or("every project".to_owned(), |p| format!("project {p}"));
    state
        .audit(
            &caller,
            token.project.as_ref(),
            "token.create",
            token.id.to_string(),
            format!("{} {}, {} of {scope}", token.name, token.id, role.as_str()),
        )
        .await;
    let mut out = token_out(&token, &caller);
    // The only time the secret is shown; hookd keeps its hash.
    out["token"] = Value::String(secret.expose().to_owned());
    Ok(Json(out))
}

pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // The id is not echoed: someone may have pasted a token's secret instead.
    let not_found = || ApiError::not_found("token_not_found", "there is no API token with that id");
    let token_id = ApiTokenId::parse(&id).ok_or_else(not_found)?;
    let token = state.store.api_token(token_id).await?.ok_or_else(not_found)?;
    if caller.token.project.is_some() && token.project != caller.token.project {
        return Err(not_found());
    }
    token_scope(&caller, None)?;
    let one = state.access_lock().await?;
    // The token goes with every token it made, and theirs: a stolen token's successors too.
    let all = state.store.list_api_tokens(None).await?;
    let mut revoked = vec![token.id];
    let mut next = 0;
    while let Some(maker) = revoked.get(next).copied() {
        let made: Vec<_> =
            all.iter().filter(|t| t.created_by == Some(maker) && !revoked.contains(&t.id)).map(|t| t.id).collect();
        revoked.extend(made);
        next += 1;
    }
    // One owner of every project that never expires must remain, or nobody could ever manage
    // projects and keys again (a restart makes no new admin while tokens exist).
    let global_owner = |t: &ApiToken| t.project.is_none() && t.role == Role::Owner && t.expires.is_none();
    if revoked.iter().any(|id| all.iter().any(|t| t.id == *id && global_owner(t)))
        && !all.iter().any(|t| !revoked.contains(&t.id) && global_owner(t))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_owner",
            "this would revoke the last owner token of every project that never expires (revoking a token revokes \
             the tokens it made); create another before revoking it",
        ));
    }
    // Leaves first: a store error part-way leaves the token itself, so the revoke can be
    // asked again and reaches what is left.
    for id in revoked.iter().rev() {
        state.store.delete_api_token(*id).await?;
    }
    drop(one);
    let detail = match revoked.len() - 1 {
        0 => token.name.clone(),
        made => format!("{} and the {made} token(s) it made", token.name),
    };
    state.audit(&caller, token.project.as_ref(), "token.revoke", token.id.to_string(), detail).await;
    Ok(StatusCode::NO_CONTENT)
}

fn project_out(state: &AppState, name: &ProjectName, backend: &str) -> Value {
    json!({
        "id": name.as_str(),
        "type": "project",
        "name": name.as_str(),
        "backend": backend,
        "origin": if state.backends.is_configured(name) { "config" } else { "api" },
    })
}

pub async fn list_projects(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let data: Vec<Value> = state
        .backends
        .projects()
        .iter()
        .filter(|(p, _)| caller.can_read(p))
        .map(|(p, b)| project_out(&state, p, b.name()))
        .collect();
    let limit = data.len() as u32;
    Ok(Json(collection("project", format!("{}/v1-webhooks/projects", state.base_url(&headers)), data, limit, None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectIn {
    name: String,
    backend: String,
}

pub async fn create_project(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<ProjectIn>,
) -> Result<Json<Value>, ApiError> {
    if !caller.owns_all() {
        return Err(owners_of_all_only("create projects"));
    }
    let name = ProjectName::parse(&body.name)?;
    let backend = state
        .backends
        .scoped(&body.backend, &name)
        .ok_or_else(|| {
            let known: Vec<&str> = state.backends.all().iter().map(|b| b.name()).collect();
            ApiError::bad_request(
                "unknown_backend",
                format!("there is no backend {:?}; the config file has: {}", body.backend, known.join(", ")),
            )
            .with_field("backend")
        })?
        .map_err(|why| ApiError::bad_request("backend_refuses_project", why).with_field("name"))?;
    let taken = || ApiError::new(StatusCode::CONFLICT, "project_exists", format!("there is already a project {name}"));
    let one = state.access_lock().await?;
    if state.backends.for_project(&name).is_some() {
        return Err(taken());
    }
    // What a project of this name left (one removed from the config file) must not come back
    // to life for whoever gets the name now.
    let receivers = state.store.list_receivers(&name, 1, None).await?.len();
    let tokens = state.store.list_api_tokens(Some(&name)).await?.len();
    if receivers + tokens > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "project_leftovers",
            format!("receivers or API tokens of an earlier project {name} are still stored; choose another name"),
        ));
    }
    let stored = StoredProject { name: name.clone(), backend: backend.name().to_owned(), created: now_millis() };
    state.store.insert_project(&stored).await.map_err(|e| match e {
        StoreError::Conflict(_) => taken(),
        other => other.into(),
    })?;
    state.backends.add_project(name.clone(), backend.clone());
    drop(one);
    state.audit(&caller, Some(&name), "project.create", name.as_str(), format!("on backend {}", backend.name())).await;
    Ok(Json(project_out(&state, &name, backend.name())))
}

pub async fn delete_project(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !caller.owns_all() {
        return Err(owners_of_all_only("delete projects"));
    }
    let not_found = || ApiError::not_found("project_not_found", format!("there is no project {name}"));
    let project = ProjectName::parse(&name).map_err(|_| not_found())?;
    if state.backends.is_configured(&project) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "project_configured",
            format!("project {project} is defined in the config file; remove it there"),
        ));
    }
    let one = state.access_lock().await?;
    let deleted = state.store.delete_project(&project).await.map_err(|e| match e {
        StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "project_not_empty", message),
        other => other.into(),
    })?;
    if !deleted {
        return Err(not_found());
    }
    state.backends.remove_project(&project);
    drop(one);
    state.audit(&caller, Some(&project), "project.delete", project.as_str(), "with its API tokens").await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if !caller.owns_all() {
        return Err(owners_of_all_only("manage signing keys"));
    }
    let current = state.keys().current_kid().to_owned();
    let data: Vec<Value> = state
        .store
        .signing_keys()
        .await?
        .iter()
        .rev()
        .map(|k| {
            json!({
                "id": k.kid,
                "type": "signingKey",
                "created": rfc3339(k.created),
                "retired": k.retired.map(rfc3339),
                "current": k.kid == current,
            })
        })
        .collect();
    let limit = data.len() as u32;
    Ok(Json(collection("signingKey", format!("{}/v1-webhooks/keys", state.base_url(&headers)), data, limit, None)))
}

#[derive(Deserialize)]
struct KeysAction {
    action: Option<String>,
}

/// `?action=rotate`: a new key signs new URLs; URLs of older keys keep working.
/// `?action=retire`: every key but the current one stops verifying.
pub async fn keys_action(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    if !caller.owns_all() {
        return Err(owners_of_all_only("manage signing keys"));
    }
    let query: KeysAction = parse_query(q.as_deref())?;
    // One key change at a time: a retire racing a rotate could retire the new key.
    let one = state.access_lock().await?;
    let detail = match query.action.as_deref() {
        Some("rotate") => {
            let key = sealed(new_signing_key(), &state.sealer);
            state.store.insert_signing_key(&key).await?;
            format!("new key {}", key.kid)
        }
        Some("retire") => {
            let keep = state.keys().current_kid().to_owned();
            let retired = state.store.retire_signing_keys(&keep, now_millis()).await?;
            format!("{retired} key(s) retired; {keep} stays")
        }
        other => {
            return Err(ApiError::bad_request(
                "unknown_action",
                format!("unknown action {:?}; use ?action=rotate or retire", other.unwrap_or("")),
            ))
        }
    };
    let keys = TriggerKeys::from_stored(&state.store.signing_keys().await?, &state.sealer)
        .ok_or_else(|| ApiError::internal("no live signing key after a key change"))?;
    *state.keys.write().expect("not poisoned") = Arc::new(keys);
    let action = format!("keys.{}", query.action.as_deref().unwrap_or_default());
    state.audit(&caller, None, &action, state.keys().current_kid(), detail).await;
    drop(one);
    list_keys(State(state), caller, headers).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditQuery {
    project_id: Option<String>,
    limit: Option<u32>,
    marker: Option<String>,
}

pub async fn list_audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query: AuditQuery = parse_query(q.as_deref())?;
    let scope = token_scope(&caller, query.project_id.as_deref()).map_err(|e| match e.status {
        StatusCode::FORBIDDEN => owners_only("read the audit log"),
        _ => e,
    })?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let before = match query.marker.as_deref() {
        Some(m) => Some(
            AuditId::parse(m)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "marker is not an audit entry id"))?,
        ),
        None => None,
    };
    let mut entries = state.store.list_audit(scope.as_ref(), limit, before).await?;
    // A project's own owners see its log from its creation on: a project deleted before, of
    // the same name, is not theirs (owners of every project see it all).
    if let (Some(mine), Some(p)) = (&caller.token.project, &scope) {
        debug_assert_eq!(mine, p);
        if let Some(made) = state.store.projects().await?.iter().find(|s| &s.name == p) {
            entries.retain(|e| e.at >= made.created);
        }
    }
    let mut self_link = format!("{}/v1-webhooks/audit?limit={limit}", state.base_url(&headers));
    if let Some(p) = &scope {
        self_link.push_str(&format!("&projectId={p}"));
    }
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| format!("{self_link}&marker={}", e.id)))
        .flatten();
    let data = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id.to_string(),
                "type": "auditEntry",
                "at": rfc3339(e.at),
                "actor": e.actor,
                "actorId": e.actor_id.to_string(),
                "projectId": e.project.as_ref().map(|p| p.as_str()),
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
            })
        })
        .collect();
    Ok(Json(collection("auditEntry", self_link, data, limit, next)))
}
