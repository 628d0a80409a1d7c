//! `POST /v1-webhooks/endpoint`: the trigger URL.
//!
//! Order matters: [`TokenGate`] verifies the token (one HMAC, no store access) before the
//! request is routed, logged or given an id, so forged tokens are as cheap to refuse as a
//! bare HTTP request; only then is the body read and the store touched.

use std::{net::SocketAddr, sync::Arc};

use std::convert::Infallible;

use axum::{
    extract::{ConnectInfo, RawQuery, Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use futures_util::future::{ready, Either, Ready};
use std::borrow::Cow;
use tower::Service;

use super::{
    extract::{bearer_token, body_timeout, check_json_content_type, read_body},
    rate::Limited,
    wire::TriggerOut,
    ApiError, AppState,
};
use crate::{
    domain::{DedupKey, DriverConfig, Outcome},
    engine::TriggerRequest,
    payload::{self, registry::PayloadFormat, TriggerPayload},
    token::TriggerClaims,
};

/// The trigger's query parameters, borrowed from the URL when nothing in them is escaped.
#[derive(Default)]
struct TriggerQuery<'a> {
    token: Option<Cow<'a, str>>,
    dry_run: Option<Cow<'a, str>>,
    /// Rancher's URLs carried it; when given, it must name the token's project.
    project_id: Option<Cow<'a, str>>,
    /// A parameter given twice (`token` and `key` count as one): which one wins would be a guess.
    repeated: Option<&'static str>,
}

impl<'a> TriggerQuery<'a> {
    fn parse(query: Option<&'a str>) -> Self {
        let mut parsed = Self::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let (slot, name) = match key.as_ref() {
                // Rancher 1.6 called it `key`.
                "token" | "key" => (&mut parsed.token, "token"),
                "dryRun" => (&mut parsed.dry_run, "dryRun"),
                "projectId" => (&mut parsed.project_id, "projectId"),
                _ => continue,
            };
            if slot.replace(value).is_some() {
                parsed.repeated.get_or_insert(name);
            }
        }
        parsed
    }
}

fn dry_run(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("" | "1" | "true" | "yes") => Ok(true),
        Some(other) => Err(ApiError::bad_request("invalid_query", format!("dryRun must be 1 or 0, not {other:?}"))),
    }
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest `Idempotency-Key` accepted (the IETF draft's keys are UUIDs; leave room).
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request's `Idempotency-Key`: visible ASCII, 1 to 255 characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<DedupKey>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else { return Ok(None) };
    let invalid = |why: &str| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!("the Idempotency-Key header {why}; send one key of 1 to {MAX_IDEMPOTENCY_KEY} visible characters"),
        )
    };
    if values.next().is_some() {
        return Err(invalid("appears more than once"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(invalid("is empty, too long, or not visible ASCII"));
    }
    let key = std::str::from_utf8(bytes).map_err(|_| invalid("is not ASCII"))?;
    Ok(Some(DedupKey::idempotency(key)))
}

/// Whether the body is sent as JSON (`application/json` or `…+json`).
fn claims_json(headers: &HeaderMap) -> bool {
    headers.contains_key(header::CONTENT_TYPE) && check_json_content_type(headers).is_ok()
}

/// Longest user agent kept in the history.
const MAX_AGENT_CHARS: usize = 120;

fn source(peer: SocketAddr, headers: &HeaderMap) -> String {
    let agent: String = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_AGENT_CHARS)
        .collect();
    if agent.is_empty() {
        peer.ip().to_string()
    } else {
        format!("{} ({agent})", peer.ip())
    }
}

fn rate_limited(limited: Limited) -> ApiError {
    let (message, retry_after) = match limited {
        Limited::Receiver { per_second, retry_after } => (
            format!("this receiver takes at most {per_second} triggers a second; nothing was done, retry in {retry_after} s"),
            retry_after,
        ),
        Limited::Address { per_second, retry_after } => (
            format!("this address may send at most {per_second} triggers a second; nothing was done, retry in {retry_after} s"),
            retry_after,
        ),
    };
    let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
    error.retry_after = Some(retry_after);
    error
}

fn reject(state: &AppState, error: ApiError) -> ApiError {
    state.metrics.reject(error.code);
    error
}

/// Why the gate refused a trigger request.
enum Refusal {
    NoToken,
    InvalidToken,
}

/// Verifies the trigger token of a request, before any routing or logging.
fn verify(state: &AppState, req: &Request) -> Result<TriggerClaims, Refusal> {
    let query = TriggerQuery::parse(req.uri().query());
    if query.repeated == Some("token") {
        return Err(Refusal::InvalidToken);
    }
    let token = query.token.as_deref().or_else(|| bearer_token(req.headers())).ok_or(Refusal::NoToken)?;
    state.keys().verify(token).map_err(|_| Refusal::InvalidToken)
}

/// The answer to a forged token, serialized once: this is the path an attacker hammers.
fn invalid_token() -> Response {
    static ANSWER: std::sync::OnceLock<(StatusCode, axum::body::Bytes)> = std::sync::OnceLock::new();
    let (status, body) = ANSWER.get_or_init(|| {
        let error = ApiError::forbidden(
            "invalid_token",
            "the trigger token is not valid: it was altered, revoked with its signing key, or never issued here",
        );
        (error.status, error.body().into())
    });
    (*status, [(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

/// Refuses trigger requests whose token is missing or invalid, in front of the router,
/// and hands the verified claims to the handler.
#[derive(Clone)]
pub struct TokenGate<S> {
    inner: S,
    state: Arc<AppState>,
}

impl<S> TokenGate<S> {
    pub fn new(inner: S, state: Arc<AppState>) -> Self {
        Self { inner, state }
    }
}

impl<S> Service<Request> for TokenGate<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if req.uri().path() == super::TRIGGER_PATH && req.method() == Method::POST {
            match verify(&self.state, &req) {
                Ok(claims) => {
                    req.extensions_mut().insert(claims);
                }
                Err(Refusal::InvalidToken) => {
                    self.state.metrics.invalid_tokens.inc();
                    return Either::Left(ready(Ok(invalid_token())));
                }
                Err(Refusal::NoToken) => {
                    let error = ApiError::unauthorized(
                        "a trigger needs its token: POST to the receiver's trigger URL (…/endpoint?token=…)",
                    );
                    return Either::Left(ready(Ok(reject(&self.state, error).into_response())));
                }
            }
        }
        Either::Right(self.inner.call(req))
    }
}

/// What the body says, read as the receiver's driver expects: a scaleService receiver
/// takes an Alertmanager notification or anything; a serviceUpgrade receiver a push.
fn read_payload(config: &DriverConfig, body: &[u8], claims_json: bool) -> Result<TriggerPayload, String> {
    match config {
        DriverConfig::ScaleService(_) | DriverConfig::ScaleHost(_) => {
            payload::parse(body, claims_json).map_err(|e| e.to_string())
        }
        DriverConfig::ServiceUpgrade(c) => {
            if body.trim_ascii().is_empty() {
                return Err("a serviceUpgrade receiver is triggered by a registry's push notification, and this \
                            request has no body"
                    .into());
            }
            let pinned = c.payload_format.as_deref().and_then(PayloadFormat::parse);
            let (format, pushes) = payload::registry::parse(body, pinned).map_err(|e| e.to_string())?;
            Ok(TriggerPayload::Registry { format, pushes })
        }
    }
}

pub async fn trigger(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(claims): Extension<TriggerClaims>,
    RawQuery(q): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let query = TriggerQuery::parse(q.as_deref());
    let (parts, body) = request.into_parts();
    if let Some(name) = query.repeated {
        let message = format!("the query parameter {name} is given more than once");
        return Err(reject(&state, ApiError::bad_request("invalid_query", message)));
    }
    if let Err(limited) = state.trigger_limits.check_before_reading(peer.ip(), claims.receiver, claims.generation) {
        return Err(reject(&state, rate_limited(limited)));
    }
    let dry_run = dry_run(query.dry_run.as_deref()).map_err(|e| reject(&state, e))?;
    if let Some(project) = query.project_id.as_deref().filter(|p| *p != claims.project.as_str()) {
        let message = format!("Invalid projectId {project:?}: this trigger URL belongs to another project");
        return Err(reject(&state, ApiError::bad_request("invalid_project", message)));
    }
    let body = read_body(body, state.max_body_bytes, body_timeout(&state)).await.map_err(|e| reject(&state, e))?;
    let revoked = || {
        reject(
            &state,
            ApiError::forbidden(
                "receiver_revoked",
                "Requested webhook has been revoked: its receiver was deleted or its URL regenerated",
            ),
        )
    };
    let receiver = state.store.receiver(claims.receiver).await?.ok_or_else(revoked)?;
    if receiver.token_generation != claims.generation || receiver.project != claims.project {
        return Err(revoked());
    }
    // The sender first: one that cannot prove itself learns nothing of what its body lacks.
    let replay_key = match &receiver.verify {
        Some(check) => {
            super::verify::check(check, &state.sealer, &parts.headers, &body).map_err(|e| reject(&state, e))?
        }
        None => None,
    };
    if let Err(limited) = state.trigger_limits.check_receiver(claims.receiver) {
        return Err(reject(&state, rate_limited(limited)));
    }
    let payload = read_payload(&receiver.config, &body, claims_json(&parts.headers))
        .map_err(|e| reject(&state, ApiError::bad_request("invalid_payload", e)))?;
    let idempotency_key = idempotency_key(&parts.headers).map_err(|e| reject(&state, e))?;
    // A signed message's id wins over an unsigned Idempotency-Key, or a replay could pass for
    // a new message by adding a fresh one (issue 14).
    let idempotency_key = replay_key.or(idempotency_key);
    let request = TriggerRequest { source: source(peer, &parts.headers), payload, dry_run, idempotency_key };
    // Its own task: a caller that hangs up mid-trigger must not cancel it between acting on
    // the backend and recording the execution.
    let engine_state = state.clone();
    let report = tokio::spawn(async move { engine_state.engine.trigger(&receiver, &request).await })
        .await
        .map_err(ApiError::internal)??;
    let answer = TriggerOut::from(&report.execution);
    let execution = &report.execution;
    let mut error = match execution.outcome {
        Outcome::Failed if report.retry => ApiError::unavailable(
            "backend_unavailable",
            format!("the action could not be done: {}", execution.reason),
            10,
        ),
        Outcome::Failed => ApiError::new(
            StatusCode::CONFLICT,
            "action_failed",
            format!("the action could not be done: {}", execution.reason),
        ),
        // A target-mode receiver given no replica count (a bound refusal has an effect).
        Outcome::Refused if matches!(execution.effect, crate::domain::Effect::None) => {
            ApiError::bad_request("no_target", format!("{}: {}", execution.reason, execution.detail))
        }
        // Rancher's answer, word for word: its clients match on it.
        Outcome::Refused => ApiError::bad_request(
            "at_bound",
            format!("Error {} in executing driver for {}", execution.reason, claims.driver.as_str()),
        ),
        Outcome::Started if execution.effect.job().is_some() => {
            let mut answer = answer;
            answer.job_url =
                answer.job.as_ref().map(|j| format!("{}/v1-webhooks/jobs/{j}", state.base_url(&parts.headers)));
            let location = answer.job_url.clone().unwrap_or_default();
            return Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(answer)).into_response());
        }
        Outcome::Scaled | Outcome::Unchanged | Outcome::Skipped | Outcome::Started => {
            return Ok(Json(answer).into_response())
        }
    };
    if let serde_json::Value::Object(fields) = serde_json::to_value(&answer).expect("serializable") {
        error.extra = fields;
    }
    Err(error)
}

/// Rancher answered a bare 404 here, and people did not realise they had to POST.
pub async fn get_not_allowed() -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "trigger URLs must be called with POST, for example: curl -X POST '<trigger URL>'",
    )
    .into_response();
    response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}
