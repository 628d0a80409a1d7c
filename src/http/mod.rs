//! The HTTP API: routes, shared state, middleware.
//!
//! Handlers are thin: they parse wire types into domain types, call the store, a backend
//! or the engine, and convert back. Status codes are chosen only in `error.rs`.

mod access;
mod alertmanager_config;
mod error;
mod extract;
mod guard;
mod jobs;
mod openapi;
mod ops;
mod pools;
mod rate;
mod receivers;
mod schemas;
mod trigger;
mod ui;
mod verify;
mod wire;

use std::sync::Arc;

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderName, StatusCode},
    routing::{get, post},
    Router,
};
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

pub use error::ApiError;
pub use trigger::TokenGate;

use crate::{
    auth::Caller,
    backend::{Backend, Backends},
    domain::ProjectName,
    engine::Engine,
    metrics::Metrics,
    store::Store,
    token::TriggerKeys,
};

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub backends: Arc<Backends>,
    pub engine: Engine,
    /// Swapped whole when keys rotate; the trigger path clones the `Arc`.
    pub keys: std::sync::RwLock<Arc<TriggerKeys>>,
    pub metrics: Arc<Metrics>,
    /// Configured base of trigger URLs; `None` means "from the request's Host".
    pub public_url: Option<String>,
    /// Largest request body read, in bytes.
    pub max_body_bytes: usize,
    pub limits: crate::config::Limits,
    /// False when `/metrics` has an address of its own.
    pub metrics_on_main: bool,
    pub sessions: crate::session::Sessions,
    pub failed_auth: guard::FailedAuth,
    /// Sign-in bodies being read at once (the only body read before authentication).
    pub sign_ins: tokio::sync::Semaphore,
    /// Seals and opens the HMAC keys of sender checks (`sealing.key` in the data directory).
    pub sealer: crate::sealer::Sealer,
    /// Trigger rate limits, per receiver and per client address.
    pub trigger_limits: rate::TriggerLimits,
    /// Access changes, one at a time: key changes, token creation and revocation (two
    /// revocations at once must not each leave the other as the last owner), project creation
    /// and deletion, and the insert of a new receiver (never into a project being deleted).
    /// Taken through [`AppState::access_lock`], which also takes the store's lock.
    pub access_changes: tokio::sync::Mutex<()>,
}

/// Held while an access change is made, here and on every hookd sharing the store.
pub struct AccessGuard<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    _shared: crate::store::StoreLock,
}

impl AppState {
    /// Takes the access-change lock. With a shared store, the projects are read again under
    /// it: another hookd may have deleted one a moment ago.
    pub async fn access_lock(&self) -> Result<AccessGuard<'_>, ApiError> {
        let local = self.access_changes.lock().await;
        let wait = std::time::Duration::from_secs(10);
        let Some(shared) = self.store.lock("access", wait).await? else {
            return Err(ApiError::unavailable("busy", "another access change is taking long; retry", 1));
        };
        if self.store.shared() {
            // Another hookd may have changed them a moment ago, before its notice arrived here.
            self.backends.bind_stored(self.store.projects().await?, false);
            if let Some(keys) = TriggerKeys::from_stored(&self.store.signing_keys().await?, &self.sealer) {
                *self.keys.write().expect("not poisoned") = Arc::new(keys);
            }
        }
        Ok(AccessGuard { _local: local, _shared: shared })
    }

    pub fn keys(&self) -> Arc<TriggerKeys> {
        self.keys.read().expect("not poisoned").clone()
    }

    /// Base URL for links and trigger URLs.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
            .unwrap_or("localhost:8085");
        format!("http://{host}")
    }

    /// The project a request names (the caller's own, or `default`, when it names none), if
    /// the caller may see it. A project the caller may not see is "not found", like one that
    /// does not exist: a token learns nothing of other projects.
    pub fn project(
        &self,
        caller: &Caller,
        requested: Option<&str>,
    ) -> Result<(ProjectName, Arc<dyn Backend>), ApiError> {
        let project = match (requested, &caller.token.project) {
            (Some(p), _) => ProjectName::parse(p)?,
            (None, Some(own)) => own.clone(),
            (None, None) => ProjectName::default_project(),
        };
        let not_found = || ApiError::not_found("project_not_found", format!("there is no project {project}"));
        if !caller.can_read(&project) {
            return Err(not_found());
        }
        let backend = self.backends.for_project(&project).ok_or_else(not_found)?;
        Ok((project, backend))
    }
}

/// Sign-ins whose bodies are read at once; more wait for a 429 and retry.
pub const SIGN_INS_AT_ONCE: usize = 32;

pub use rate::TriggerLimits;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRIGGER_PATH: &str = "/v1-webhooks/endpoint";

/// The routes and their middleware. Serve [`app`], which puts the trigger gate in front.
fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1-webhooks", get(ops::api_root))
        .route("/v1-webhooks/openapi.json", get(openapi::document))
        .route("/v1-webhooks/schemas", get(schemas::list))
        .route("/v1-webhooks/schemas/{id}", get(schemas::get))
        .route("/v1-webhooks/receivers", get(receivers::list).post(receivers::create))
        .route(
            "/v1-webhooks/receivers/{id}",
            get(receivers::get).put(receivers::update).delete(receivers::delete).post(receivers::action),
        )
        .route("/v1-webhooks/receivers/{id}/executions", get(receivers::executions))
        .route("/v1-webhooks/receivers/{id}/alertmanager-config", get(alertmanager_config::get))
        .route("/v1-webhooks/receivers/{id}/jobs", get(jobs::of_receiver))
        .route("/v1-webhooks/jobs/{id}", get(jobs::get))
        .route("/v1-webhooks/services", get(ops::services))
        .route("/v1-webhooks/pools", get(pools::list))
        .route("/v1-webhooks/tokens", get(access::list_tokens).post(access::create_token))
        .route("/v1-webhooks/tokens/{id}", axum::routing::delete(access::revoke_token))
        .route("/v1-webhooks/projects", get(access::list_projects).post(access::create_project))
        .route("/v1-webhooks/projects/{name}", axum::routing::delete(access::delete_project))
        .route("/v1-webhooks/keys", get(access::list_keys).post(access::keys_action))
        .route("/v1-webhooks/audit", get(access::list_audit))
        .route("/", get(ui::root))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/hosts.js", get(ui::hosts_js))
        .route("/ui/sender.js", get(ui::sender_js))
        .route("/ui/app.css", get(ui::app_css))
        .route("/ui/session", get(ui::whoami).post(ui::sign_in).delete(ui::sign_out))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    let api = if state.metrics_on_main { api.route("/metrics", get(ops::metrics)) } else { api };
    // Management requests have a deadline; the trigger route, added after it, has none.
    let api = api
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::deadline))
        .route(TRIGGER_PATH, post(trigger::trigger).get(trigger::get_not_allowed))
        .fallback(|| async { ApiError::not_found("not_found", "there is nothing at this path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not take that HTTP method",
            )
        })
        .with_state(state);

    // The span records the path only: trigger URLs carry their token in the query string.
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            let request_id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            // Trigger requests log nothing at info when they succeed, and an enabled span costs
            // a formatted allocation per request on the path attackers can hammer: debug there.
            if req.uri().path() == TRIGGER_PATH {
                tracing::debug_span!("request", method = %req.method(), path = TRIGGER_PATH, request_id)
            } else {
                // A token's id is in its path; someone may paste the secret there instead.
                let path = req.uri().path();
                let path = if path.starts_with("/v1-webhooks/tokens/") { "/v1-webhooks/tokens/{id}" } else { path };
                tracing::info_span!("request", method = %req.method(), path = %path, request_id)
            }
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::DEBUG).latency_unit(tower_http::LatencyUnit::Micros));

    api.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, SequentialRequestId::default()))
            .layer(trace)
            .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
    )
}

/// The whole HTTP application: the router behind the trigger gate, which refuses a forged
/// trigger token before routing, ids, spans or handlers.
pub fn app(state: Arc<AppState>) -> TokenGate<Router> {
    TokenGate::new(router(state.clone()), state)
}

/// `/metrics` alone, for its own address (`metrics_listen`).
pub fn metrics_app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::not_found("not_found", "only /metrics is served here") })
        .with_state(state)
}

/// Request ids `<process prefix>-<sequence>`: unique per process, and far cheaper than a
/// random UUID on the trigger path, which an attacker may hammer.
#[derive(Clone)]
struct SequentialRequestId {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for SequentialRequestId {
    fn default() -> Self {
        let prefix = format!("{:08x}", rand::random::<u32>());
        Self { prefix: prefix.into(), next: Arc::default() }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{}-{n:x}", self.prefix)).ok().map(RequestId::new)
    }
}
