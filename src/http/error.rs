//! The HTTP layer's one error type, and the only place errors become status codes.
//!
//! Every error answers `{"type":"error","status":..,"code":..,"message":..}`. `code` is a
//! stable machine code; `message` a sentence for people. Internal errors are logged with
//! their cause and answered with a generic 500 that leaks nothing.

use std::borrow::Cow;

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value};

use crate::{backend::BackendError, domain::ValidationError, engine::EngineError, store::StoreError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// The request field at fault, so forms can show the message next to it.
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    /// Extra members merged into the body (a failed trigger's execution, say).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after: None, extra: Map::new() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Logs the cause and answers a 500 that says nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "hookd hit an internal error; it has been logged",
        )
    }

    pub fn unavailable(code: &'static str, message: impl Into<Cow<'static, str>>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after = Some(retry_after);
        e
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::bad_request("invalid_value", e.message).with_field(e.field)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "duplicate_name", message).with_field("name")
            }
            StoreError::NotFound => ApiError::not_found("not_found", "the resource does not exist"),
            cause @ (StoreError::Unavailable(_) | StoreError::WriterGone) => {
                tracing::error!(error = %cause, "the store is unavailable");
                ApiError::unavailable("store_unavailable", "hookd cannot write to its database now; retry later", 5)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::ServiceNotFound(id) => ApiError::bad_request(
                "unknown_service",
                format!("Invalid service {id}: the project's backend has no such service (GET /v1-webhooks/services lists them)"),
            )
            .with_field("scaleServiceConfig.serviceId"),
            BackendError::Refused(message) => ApiError::bad_request("service_not_scalable", message),
            BackendError::Conflict => ApiError::unavailable("backend_conflict", e.to_string(), 1),
            BackendError::Unavailable(message) => ApiError::unavailable("backend_unavailable", message, 10),
            BackendError::Unrecorded(_) => ApiError::from(StoreError::Unavailable(e.to_string())),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            // Nothing was acknowledged; a retry is safe and wanted.
            EngineError::Store(cause) => {
                tracing::error!(error = %cause, "could not record an execution");
                ApiError::unavailable(
                    "store_unavailable",
                    "hookd could not record the decision, so it did nothing; retry later",
                    5,
                )
            }
            EngineError::Revoked => ApiError::forbidden(
                "receiver_revoked",
                "Requested webhook has been revoked: its receiver was deleted or its URL regenerated",
            ),
            EngineError::Busy(service) => ApiError::unavailable(
                "service_busy",
                format!("{service} is being changed by another action (a scale or an upgrade) for longer than a trigger waits; nothing was done, retry later"),
                10,
            ),
            // A receiver of a project removed from the config: a retry won't help.
            EngineError::NoBackend(project) => ApiError::new(
                StatusCode::CONFLICT,
                "project_not_configured",
                format!(
                    "project {project} has no backend in this hookd's configuration; add it back to use its receivers"
                ),
            ),
        }
    }
}

/// The error body, serialized straight from borrowed fields (no intermediate JSON tree).
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    // First, as in Rancher's errors: the member every client reads.
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: u16,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl ApiError {
    /// The JSON body this error answers with.
    pub fn body(&self) -> Vec<u8> {
        let body = ErrorBody {
            message: &self.message,
            kind: "error",
            status: self.status.as_u16(),
            code: self.code,
            field: self.field.as_deref(),
            extra: &self.extra,
        };
        serde_json::to_vec(&body).expect("error bodies serialize")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let bytes = self.body();
        let mut response = (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes)
            .into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
