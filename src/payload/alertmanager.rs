//! Alertmanager's webhook body (`version: "4"`).
//!
//! Each alert's own `status` is read: the top-level status says `firing` while resolved
//! alerts ride along inside.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::PayloadError;
use crate::domain::{AlertRef, AlertStatus, Notification};

/// Most alerts read from one notification (Alertmanager's `max_alerts` is unbounded by default).
const MAX_ALERTS: usize = 1000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: String,
    #[serde(default)]
    group_key: String,
    status: String,
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    fingerprint: String,
}

/// The members that tell an Alertmanager body from others, read without building the rest
/// (`RawValue` only checks the syntax of what it skips).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    version: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "groupKey")]
    group_key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    alerts: Option<&'a RawValue>,
}

/// Alertmanager bodies carry `alerts` next to `version` (and usually `groupKey`). `None`
/// when `body` is not a JSON object.
pub fn looks_like(body: &[u8]) -> Option<bool> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    Some(envelope.alerts.is_some() && (envelope.version.is_some() || envelope.group_key.is_some()))
}

pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
    let webhook: Webhook = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
        .map_err(|e| PayloadError(format!("not a valid Alertmanager notification: {e}")))?;
    if webhook.version != "4" {
        return Err(PayloadError(format!(
            "Alertmanager webhook version {:?} is not supported; hookd reads version \"4\"",
            webhook.version
        )));
    }
    let status = AlertStatus::parse(&webhook.status)
        .ok_or_else(|| PayloadError(format!("unknown notification status {:?}", webhook.status)))?;
    if webhook.alerts.len() > MAX_ALERTS {
        return Err(PayloadError(format!("a notification may carry at most {MAX_ALERTS} alerts")));
    }
    let alerts = webhook
        .alerts
        .into_iter()
        .map(|a| {
            let status = AlertStatus::parse(&a.status)
                .ok_or_else(|| PayloadError(format!("unknown alert status {:?}", a.status)))?;
            // Older senders may omit the fingerprint; the labels identify the alert just as well.
            let fingerprint = if a.fingerprint.is_empty() { labels_fingerprint(&a.labels) } else { a.fingerprint };
            Ok(AlertRef {
                name: a.labels.get("alertname").cloned().unwrap_or_default(),
                fingerprint,
                status,
                starts_at: a.starts_at,
                labels: a.labels,
                annotations: a.annotations,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if alerts.is_empty() {
        return Err(PayloadError("the notification carries no alerts".into()));
    }
    Ok(Notification { group_key: webhook.group_key, status, alerts })
}

fn labels_fingerprint(labels: &std::collections::BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (k, v) in labels {
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
        hash.update([1]);
    }
    hex::encode(&hash.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_body, TriggerPayload};
    use crate::domain::AlertStatus;

    const FIRING: &str = include_str!("../../tests/fixtures/alertmanager-firing.json");
    const RESOLVED: &str = include_str!("../../tests/fixtures/alertmanager-resolved.json");

    fn notification(body: &str) -> crate::domain::Notification {
        match parse_body(body.as_bytes(), true) {
            Ok(TriggerPayload::Alertmanager(n)) => n,
            other => panic!("expected an Alertmanager notification, got {other:?}"),
        }
    }

    #[test]
    fn captured_firing_and_resolved_notifications() {
        let firing = notification(FIRING);
        assert_eq!(firing.status, AlertStatus::Firing);
        assert_eq!(firing.alerts.len(), 1);
        assert_eq!(firing.alerts[0].name, "ProbeGaugeHigh");
        assert_eq!(firing.alerts[0].fingerprint, "27f97ab5be7c9d5f");
        assert!(firing.is_firing());
        let resolved = notification(RESOLVED);
        assert!(!resolved.is_firing());
        assert_ne!(firing.dedup_key(), resolved.dedup_key());
    }

    #[test]
    fn mixed_statuses_are_read_per_alert() {
        let mut value: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        let mut old = value["alerts"][0].clone();
        old["status"] = "resolved".into();
        old["fingerprint"] = "00000000000000aa".into();
        value["alerts"].as_array_mut().unwrap().push(old);
        let n = notification(&value.to_string());
        assert!(n.is_firing());
        assert_eq!(n.deciding_alerts().count(), 1);
        assert_eq!(n.dedup_key(), notification(FIRING).dedup_key());

        // Top-level "firing" with only resolved alerts inside: the alerts decide.
        let mut all_resolved: serde_json::Value = serde_json::from_str(RESOLVED).unwrap();
        all_resolved["status"] = "firing".into();
        assert!(!notification(&all_resolved.to_string()).is_firing());
    }

    #[test]
    fn broken_notifications_are_errors() {
        let mut value: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        value["version"] = "3".into();
        assert!(parse_body(value.to_string().as_bytes(), true).unwrap_err().0.contains("version"));
        let mut value: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        value["alerts"] = serde_json::json!("nope");
        assert!(parse_body(value.to_string().as_bytes(), true).is_err());
        let mut value: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        value["alerts"][0]["status"] = "exploding".into();
        assert!(parse_body(value.to_string().as_bytes(), true).unwrap_err().0.contains("exploding"));
        let mut value: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        value["alerts"] = serde_json::json!([]);
        assert!(parse_body(value.to_string().as_bytes(), true).is_err());
    }

    #[test]
    fn a_missing_fingerprint_is_derived_from_the_labels() {
        let mut value: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        value["alerts"][0].as_object_mut().unwrap().remove("fingerprint");
        let a = notification(&value.to_string());
        assert_eq!(a.alerts[0].fingerprint.len(), 16);
        assert_eq!(a.dedup_key(), notification(&value.to_string()).dedup_key());
    }
}
