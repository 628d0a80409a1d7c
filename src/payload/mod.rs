//! Trigger bodies: recognize what a sender POSTed.
//!
//! The body is optional. An Alertmanager notification is parsed (it changes what a
//! scaleService trigger does); any other body is ignored for scaling.

mod alertmanager;
pub mod registry;

use crate::domain::Notification;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerPayload {
    /// No body, or a body hookd does not interpret.
    Opaque,
    Alertmanager(Notification),
    /// A registry's push notification, for a serviceUpgrade receiver.
    Registry {
        format: registry::PayloadFormat,
        pushes: Vec<registry::Push>,
    },
}

/// A body that claims a known format but breaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// Reads a trigger body. `claims_json`: its `Content-Type` says JSON, so a body that does
/// not parse is refused, never taken for an opaque one (a broken Alertmanager notification
/// must not act as a plain POST).
pub fn parse(body: &[u8], claims_json: bool) -> Result<TriggerPayload, PayloadError> {
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"{") && alertmanager::looks_like(trimmed) == Some(true) {
        return alertmanager::parse(trimmed).map(TriggerPayload::Alertmanager);
    }
    if claims_json && !trimmed.is_empty() {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(trimmed) {
            return Err(PayloadError(format!("the body is sent as JSON but is not valid JSON: {e}")));
        }
    }
    Ok(TriggerPayload::Opaque)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_else_is_opaque() {
        for body in [&b""[..], b"   ", b"hello", b"[1,2]", b"{\"push_data\":{}}", b"{not json", b"\xff\xfe"] {
            assert_eq!(parse(body, false), Ok(TriggerPayload::Opaque), "{body:?}");
        }
    }

    /// Issue 10: a body sent as JSON that does not parse is refused, not taken for opaque.
    #[test]
    fn issue_10_a_body_that_claims_json_must_be_json() {
        let broken = include_str!("../../tests/fixtures/alertmanager-resolved.json").replacen('}', "},", 1);
        assert!(parse(broken.as_bytes(), true).unwrap_err().0.contains("not valid JSON"));
        assert!(parse(b"hello", true).is_err());
        assert_eq!(parse(b"", true), Ok(TriggerPayload::Opaque), "no body is fine");
        assert_eq!(parse(b"[1, 2]", true), Ok(TriggerPayload::Opaque), "JSON of another shape is opaque");
        assert_eq!(parse(b"hello", false), Ok(TriggerPayload::Opaque), "not sent as JSON: opaque");
    }
}

/// Fuzzing by property: whatever a sender POSTs, parsing answers and never panics.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const FIRING: &str = include_str!("../../tests/fixtures/alertmanager-firing.json");

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&body, false);
            let _ = parse(&body, true);
        }

        /// Mutations of a real notification: a byte flipped, inserted or removed anywhere.
        #[test]
        fn mutated_notifications_never_panic(at in 0..FIRING.len(), byte in any::<u8>(), kind in 0..3u8) {
            let mut body = FIRING.as_bytes().to_vec();
            match kind {
                0 => body[at] = byte,
                1 => body.insert(at, byte),
                _ => { body.remove(at); }
            }
            if let Ok(TriggerPayload::Alertmanager(n)) = parse(&body, true) {
                prop_assert!(!n.alerts.is_empty());
                prop_assert_eq!(n.dedup_key().to_string().len(), 32);
            }
        }

        /// Any JSON shape with an `alerts` member is either a notification or a clear error.
        #[test]
        fn arbitrary_json_values_never_panic(value in arb_json()) {
            let body = serde_json::json!({"version": "4", "status": "firing", "alerts": value}).to_string();
            let _ = parse(body.as_bytes(), true);
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z]{0,8}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("firing")),
            Just(serde_json::Value::from("resolved")),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("status".to_owned()),
                        Just("labels".to_owned()),
                        Just("fingerprint".to_owned()),
                        Just("startsAt".to_owned()),
                        Just("alertname".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
