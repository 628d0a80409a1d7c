//! Trigger bodies: recognize what a sender POSTed.
//!
//! The body is optional. An Alertmanager notification is parsed (it changes what a
//! scaleService trigger does); any other body is ignored for scaling.

mod alertmanager;

use crate::domain::Notification;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerPayload {
    /// No body, or a body hookd does not interpret.
    Opaque,
    Alertmanager(Notification),
}

/// A body that claims a known format but breaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

pub fn parse(body: &[u8]) -> Result<TriggerPayload, PayloadError> {
    let trimmed = body.trim_ascii_start();
    if !trimmed.starts_with(b"{") {
        return Ok(TriggerPayload::Opaque);
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(trimmed) else {
        return Ok(TriggerPayload::Opaque);
    };
    if alertmanager::looks_like(&value) {
        return alertmanager::parse(value).map(TriggerPayload::Alertmanager);
    }
    Ok(TriggerPayload::Opaque)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_else_is_opaque() {
        for body in [&b""[..], b"   ", b"hello", b"[1,2]", b"{\"push_data\":{}}", b"{not json", b"\xff\xfe"] {
            assert_eq!(parse(body), Ok(TriggerPayload::Opaque), "{body:?}");
        }
    }
}
