//! Sender verification on the wire: a receiver's `senderVerification` in and out, and the
//! check of a trigger against it (the rules themselves are `domain::verify`).

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::ApiError;
use crate::{
    domain::{
        now_millis,
        verify::{self, SenderCheck},
        DedupKey,
    },
    sealer::Sealer,
};

/// Shortest secret accepted: a guessable one would make the check decoration.
const MIN_SECRET: usize = 16;

fn invalid(message: impl Into<String>, field: &str) -> ApiError {
    ApiError::bad_request("invalid_value", message.into()).with_field(format!("senderVerification.{field}"))
}

/// `senderVerification` of a create or update body. `null` removes the check; an object
/// without `secret` keeps the receiver's current one (a GET body PUT back carries none).
pub fn parse(value: &Value, current: Option<&SenderCheck>, sealer: &Sealer) -> Result<Option<SenderCheck>, ApiError> {
    let object = match value {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(invalid("senderVerification must be an object or null", "type")),
    };
    if let Some(unknown) = object.keys().find(|k| !["type", "header", "secret"].contains(&k.as_str())) {
        return Err(invalid(format!("unknown field {unknown}: use type, header and secret"), unknown));
    }
    let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
    let header = object.get("header").and_then(Value::as_str);
    let Some(secret) = object.get("secret").and_then(Value::as_str) else {
        let same = current.filter(|c| {
            c.kind() == kind
                && header.is_none_or(|h| matches!(c, SenderCheck::Header { name, .. } if name.eq_ignore_ascii_case(h)))
        });
        return same
            .cloned()
            .map(Some)
            .ok_or_else(|| invalid("senderVerification.secret is required to set a new check", "secret"));
    };
    let secret = secret.trim();
    if secret.len() < MIN_SECRET {
        return Err(invalid(format!("the secret must be at least {MIN_SECRET} characters"), "secret"));
    }
    match kind {
        "header" => {
            let name = header.ok_or_else(|| invalid("a header check names its header", "header"))?;
            axum::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("{name:?} is not a header name"), "header"))?;
            Ok(Some(SenderCheck::Header { name: name.to_owned(), bearer: false, hash: verify::secret_hash(secret) }))
        }
        "bearer" => Ok(Some(SenderCheck::Header {
            name: "Authorization".into(),
            bearer: true,
            hash: verify::secret_hash(secret),
        })),
        "github" => Ok(Some(SenderCheck::Github { sealed: sealer.seal(secret.as_bytes()) })),
        "standardWebhooks" => {
            let key = verify::standard_webhooks_key(secret).ok_or_else(|| {
                invalid("a Standard Webhooks secret is whsec_ and the base64 of at least 16 bytes", "secret")
            })?;
            Ok(Some(SenderCheck::StandardWebhooks { sealed: sealer.seal(&key) }))
        }
        other => Err(invalid(
            format!("unknown senderVerification type {other:?}: header, bearer, github or standardWebhooks"),
            "type",
        )),
    }
}

/// How a receiver shows its check: the kind and header, never the secret.
pub fn out(check: Option<&SenderCheck>) -> Value {
    match check {
        None => Value::Null,
        Some(SenderCheck::Header { name, bearer: false, .. }) => json!({"type": "header", "header": name}),
        Some(c) => json!({"type": c.kind()}),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks a trigger against the receiver's requirement. A Standard Webhooks message's id is
/// its replay key: a resent message finds the first one's decision and acts no twice.
pub fn check(
    check: &SenderCheck,
    sealer: &Sealer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<DedupKey>, ApiError> {
    let unverified = |why: verify::Unverified| ApiError::new(StatusCode::UNAUTHORIZED, "sender_unverified", why.0);
    let unsealed = |sealed: &[u8]| {
        sealer.open(sealed).ok_or_else(|| {
            ApiError::internal("a receiver's sealed secret does not open with this data directory's sealing.key")
        })
    };
    match check {
        SenderCheck::Header { name, bearer, hash } => {
            verify::check_header(name, *bearer, hash, header(headers, name)).map_err(unverified)?;
            Ok(None)
        }
        SenderCheck::Github { sealed } => {
            let secret = unsealed(sealed)?;
            verify::check_github(&secret, body, header(headers, "x-hub-signature-256")).map_err(unverified)?;
            Ok(None)
        }
        SenderCheck::StandardWebhooks { sealed } => {
            let key = unsealed(sealed)?;
            let id = header(headers, "webhook-id");
            verify::check_standard_webhooks(
                &key,
                id,
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
                body,
                now_millis() / 1000,
            )
            .map_err(unverified)?;
            Ok(id.map(|id| DedupKey::idempotency(&format!("webhook-id:{id}"))))
        }
    }
}
