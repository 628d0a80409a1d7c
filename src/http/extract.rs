//! Request extractors that fail with [`ApiError`]s instead of axum's plain-text rejections.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use serde::de::DeserializeOwned;

use super::{error::ApiError, guard::too_many_failures, AppState};
use crate::{
    auth::{hash_token, Caller},
    domain::now_millis,
    session,
    store::ApiToken,
};

/// A JSON body: `Content-Type` must be JSON (parameters such as `charset` allowed) or absent;
/// over-limit bodies get 413; syntax and type errors get 400 naming the offending path.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        json_body(req, state, state.max_body_bytes).await.map(JsonBody)
    }
}

/// Reads and parses a JSON body of at most `limit` bytes, within the body timeout.
pub async fn json_body<T: DeserializeOwned>(req: Request, state: &AppState, limit: usize) -> Result<T, ApiError> {
    check_json_content_type(req.headers())?;
    let bytes = read_body(req.into_body(), limit, body_timeout(state)).await?;
    parse_json(&bytes)
}

pub fn body_timeout(state: &AppState) -> Duration {
    Duration::from_secs(state.limits.body_timeout_seconds)
}

pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be JSON: send Content-Type: application/json (got {mime:?})"),
        ))
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the request body is larger than this server accepts",
    )
}

/// Reads a whole body, refusing more than `limit` bytes or one slower than `timeout`. A
/// body announced larger than `limit` is refused before a byte of it is read.
pub async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {} s", timeout.as_secs()),
        )
    })?;
    read.map_err(|e| {
        let too_large = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            self::too_large()
        } else {
            ApiError::bad_request("body_unreadable", "the request body could not be read")
        }
    })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("missing_body", "a JSON body is required"));
    }
    // serde reads a struct from an array too (by position); every body here is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::bad_request("invalid_body", "the body must be an object, not an array"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {inner}"))
            }
            _ if path == "." => ApiError::bad_request("invalid_body", humanize("the body", &inner)),
            _ => ApiError::bad_request("invalid_body", humanize(&path, &inner)).with_field(path),
        }
    })?;
    // One JSON value, and nothing after it but whitespace.
    de.end().map_err(|_| {
        ApiError::bad_request("invalid_json", "the body holds more than one JSON value (data after the first)")
    })?;
    Ok(value)
}

/// Reads a member kept raw (`field`) as `T`, with the same sentences as a body.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value, field: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = match e.path().to_string().as_str() {
            "." => field.to_owned(),
            inner => format!("{field}.{inner}"),
        };
        let inner = e.into_inner();
        ApiError::bad_request("invalid_body", humanize(&path, &inner)).with_field(path)
    })
}

/// A sentence for a body of the wrong shape, in place of serde's wording ("expected u32 at
/// line 1 column 108"), which names Rust types and positions people don't care about.
fn humanize(path: &str, error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = text.rsplit_once(" at line ").map_or(text.as_str(), |(message, _)| message);
    let quoted = |s: &str| s.split('`').nth(1).map(str::to_owned);
    if text.starts_with("unknown field") {
        return format!("unknown field {path}: hookd does not know this field");
    }
    if let Some(field) = text.strip_prefix("missing field").and_then(quoted) {
        return format!("{field} is required (in {path})");
    }
    let Some((got, expected)) = text
        .strip_prefix("invalid type: ")
        .or_else(|| text.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "))
    else {
        return format!("{path} has a value hookd cannot read");
    };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "a sequence" => "an array".to_owned(),
        e if e == "a map" || e.starts_with("struct ") => "an object".to_owned(),
        e if e.starts_with("a ") || e.starts_with("an ") => e.to_owned(),
        e => format!("a {e}"),
    };
    let got = match got {
        "map" => "an object".to_owned(),
        "sequence" => "an array".to_owned(),
        g => quoted(g).unwrap_or_else(|| g.to_owned()),
    };
    format!("{path} must be {expected}, not {got}")
}

/// Query parameters, with a clear 400 when they don't parse.
pub fn parse_query<T: DeserializeOwned>(query: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| {
        let text = e.to_string();
        let message = match text.strip_prefix("duplicate field `").and_then(|rest| rest.split('`').next()) {
            Some(field) => format!("the query parameter {field} is given more than once"),
            None if ["integer", "digit", "number"].iter().any(|w| text.contains(w)) => {
                "a query parameter that takes a number (such as limit) is not a whole number in range".to_owned()
            }
            None => "the query parameters could not be read".to_owned(),
        };
        ApiError::bad_request("invalid_query", message)
    })
}

/// The client's address (the TCP peer: hookd does not trust forwarding headers).
pub fn client_address(parts: &Parts) -> IpAddr {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip())
}

pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// An API token sent as HTTP basic credentials, as Rancher's clients did (`curl -u
/// access:secret`): the password is the token; with no password, the user name is.
pub fn basic_token(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let credentials = String::from_utf8(decoded).ok()?;
    let (user, password) = credentials.split_once(':').unwrap_or((&credentials, ""));
    let (user, password) = (user.trim(), password.trim());
    let token = if password.is_empty() { user } else { password };
    (!token.is_empty()).then(|| token.to_owned())
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    /// A bearer (or basic) API token, or the web UI's session cookie (with its CSRF header on any
    /// request that changes something).
    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let peer = client_address(parts);
        let _serialized = state.failed_auth.serialize(peer).await;
        state.failed_auth.check(peer, state.limits.failed_auth_per_minute).map_err(too_many_failures)?;
        let basic = basic_token(&parts.headers);
        if let Some(token) = bearer_token(&parts.headers).or(basic.as_deref()) {
            let found = state.store.api_token_by_hash(&hash_token(token)).await?;
            let token = found.ok_or_else(|| {
                state.failed_auth.failed(peer);
                ApiError::unauthorized("the API token is not valid")
            })?;
            return live(token).map(|token| Caller { token });
        }
        let cookie = parts.headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(session::cookie_value);
        let session = match cookie {
            None => {
                return Err(ApiError::unauthorized("this API needs an API token: send Authorization: Bearer <token>"))
            }
            Some(id) => state.sessions.get(id).ok_or_else(|| {
                state.failed_auth.failed(peer);
                ApiError::unauthorized("this session has ended; sign in again")
            })?,
        };
        if !parts.method.is_safe() {
            let csrf = parts.headers.get(session::CSRF_HEADER).and_then(|v| v.to_str().ok());
            // Compared as digests: timing tells nothing about the token itself.
            let hashed = |t: &str| hash_token(t);
            if csrf.map(hashed) != Some(hashed(&session.csrf)) {
                return Err(ApiError::forbidden(
                    "csrf",
                    "this request lacks the session's CSRF token; reload the page",
                ));
            }
        }
        // Read again: a token revoked or expired since the sign-in ends its sessions.
        let token = state.store.api_token(session.token.id).await?.ok_or_else(|| {
            state.sessions.close(cookie.unwrap_or_default());
            ApiError::unauthorized("this session's API token was revoked; sign in again")
        })?;
        live(token).map(|token| Caller { token })
    }
}

/// A token past its expiry is refused, with when it expired.
pub(super) fn live(token: ApiToken) -> Result<ApiToken, ApiError> {
    match token.expires {
        Some(at) if at <= now_millis() => Err(ApiError::unauthorized(format!(
            "the API token {:?} expired at {}",
            token.name,
            super::wire::rfc3339(at)
        ))),
        _ => Ok(token),
    }
}

#[cfg(test)]
mod expiry {
    use super::*;
    use crate::{domain::ApiTokenId, store::Role};

    /// Issue 14: a token past its expiry is refused, and the answer says since when.
    #[test]
    fn an_expired_token_is_refused() {
        let token = |expires| ApiToken {
            id: ApiTokenId::generate(),
            name: "ci".into(),
            hash: String::new(),
            role: Role::Member,
            project: None,
            created: 0,
            expires,
            created_by: None,
        };
        let refused = live(token(Some(now_millis() - 1))).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(refused.message.contains("expired at"), "{}", refused.message);
        assert!(live(token(Some(now_millis() + 60_000))).is_ok());
        assert!(live(token(None)).is_ok());
    }
}

#[cfg(test)]
mod sentences {
    use super::*;
    use crate::http::wire::ReceiverIn;

    fn message(body: &str) -> String {
        parse_json::<ReceiverIn>(body.as_bytes()).unwrap_err().message.into_owned()
    }

    /// Issue 11: no serde wording ("expected u32 at line 1 column 108") reaches people.
    #[test]
    fn shape_errors_are_sentences() {
        assert_eq!(message(r#"{"name": 5}"#), "name must be a string, not 5");
        assert_eq!(message(r#"{"enabled": "yes"}"#), "enabled must be a boolean, not string \"yes\"");
        assert_eq!(message(r#"{"bogus": 1}"#), "unknown field bogus: hookd does not know this field");
        assert_eq!(
            message(r#"{"scaleServiceConfig": {"serviceId": ["web"]}}"#),
            "scaleServiceConfig.serviceId must be a string, not an array"
        );
        assert_eq!(message(r#"{"scaleServiceConfig": 3}"#), "scaleServiceConfig must be an object, not 3");
        assert_eq!(message("[1]"), "the body must be an object, not an array");
    }
}

/// Fuzzing by property: any body sent to the management API is a value or a clear 4xx.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::http::wire::ReceiverIn;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bodies_are_a_value_or_a_4xx(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Err(e) = parse_json::<ReceiverIn>(&body) {
                prop_assert!(e.status.is_client_error());
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn arbitrary_queries_never_panic(q in "\\PC{0,200}") {
            let _ = parse_query::<std::collections::HashMap<String, String>>(Some(&q));
        }
    }
}
