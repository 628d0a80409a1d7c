//! The web UI: static assets embedded in the binary (no CDN, works offline) and the
//! sign-in endpoints that turn an API token into a session cookie.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Json,
};
use serde::Deserialize;
use serde_json::json;

use super::{
    extract::{client_address, json_body},
    guard::too_many_failures,
    ApiError, AppState,
};
use crate::{
    auth::hash_token,
    session::{cookie_value, Session, COOKIE, LIFETIME},
};

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const HOSTS_JS: &str = include_str!("../../ui/hosts.js");
const SENDER_JS: &str = include_str!("../../ui/sender.js");
const APP_CSS: &str = include_str!("../../ui/app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (headers, body).into_response()
}

pub async fn root() -> Redirect {
    Redirect::to("/ui/")
}

pub async fn index() -> Response {
    let mut response = asset("text/html; charset=utf-8", INDEX);
    // Everything the page loads comes from hookd itself.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    );
    response
}

pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn hosts_js() -> Response {
    asset("text/javascript; charset=utf-8", HOSTS_JS)
}

pub async fn sender_js() -> Response {
    asset("text/javascript; charset=utf-8", SENDER_JS)
}

pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    token: String,
}

fn session_json(session: &Session) -> serde_json::Value {
    json!({
        "csrf": session.csrf,
        "name": session.token.name,
        "role": session.token.role.as_str(),
        "project": session.token.project.as_ref().map(|p| p.as_str()),
    })
}

/// Signs in with an API token. The caller is not known yet, so only a small body is read,
/// and an address that fails too often waits.
pub async fn sign_in(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let peer = client_address(&parts);
    state.failed_auth.check(peer, state.limits.failed_auth_per_minute).map_err(too_many_failures)?;
    // Nobody is known yet: a few bodies at a time, so slow senders can't hold the connection cap.
    let _reading = state.sign_ins.try_acquire().map_err(|_| {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sign_ins",
            "too many sign-ins are in progress; try again in a moment",
        );
        error.retry_after = Some(1);
        error
    })?;
    let request = Request::from_parts(parts, body);
    let body: SignIn = json_body(request, &state, state.limits.unauthenticated_body_bytes).await?;
    let _serialized = state.failed_auth.serialize(peer).await;
    state.failed_auth.check(peer, state.limits.failed_auth_per_minute).map_err(too_many_failures)?;
    let token = state.store.api_token_by_hash(&hash_token(body.token.trim())).await?.ok_or_else(|| {
        state.failed_auth.failed(peer);
        ApiError::unauthorized("this API token is not valid").with_field("token")
    })?;
    let token = super::extract::live(token)?;
    let (id, session) = state.sessions.open(token);
    let secure = if state.public_url.as_deref().is_some_and(|u| u.starts_with("https://")) { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", LIFETIME.as_secs());
    Ok(([(header::SET_COOKIE, cookie)], Json(session_json(&session))).into_response())
}

fn current(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = cookie_value(headers.get(header::COOKIE)?.to_str().ok()?)?;
    state.sessions.get(id).map(|s| (id.to_owned(), s))
}

pub async fn whoami(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (id, mut session) = current(&state, &headers).ok_or_else(|| ApiError::unauthorized("not signed in"))?;
    // As every request of the session: a token revoked or expired since the sign-in ends it.
    let token = state.store.api_token(session.token.id).await?.ok_or_else(|| {
        state.sessions.close(&id);
        ApiError::unauthorized("this session's API token was revoked; sign in again")
    })?;
    session.token = super::extract::live(token)?;
    Ok(Json(session_json(&session)))
}

pub async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some((id, _)) = current(&state, &headers) {
        state.sessions.close(&id);
    }
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response()
}
