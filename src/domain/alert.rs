//! An Alertmanager notification, reduced to what scaling decisions need.

use sha2::{Digest, Sha256};

use super::DedupKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(AlertStatus::Firing),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// One alert of a notification, as recorded in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRef {
    /// The `alertname` label.
    pub name: String,
    pub fingerprint: String,
    pub status: AlertStatus,
    pub starts_at: String,
    /// As the notification carried them (a target-mode receiver reads its replica count
    /// here); not kept in the history.
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub group_key: String,
    /// Top-level status: `firing` as soon as one alert inside is firing.
    pub status: AlertStatus,
    pub alerts: Vec<AlertRef>,
}

impl Notification {
    /// Whether any alert inside is firing. The top-level status says so too, but each
    /// alert's own status is what counts: old resolved alerts ride along in firing groups.
    pub fn is_firing(&self) -> bool {
        self.alerts.iter().any(|a| a.status == AlertStatus::Firing)
    }

    /// The alerts that drive the decision: the firing ones, or all resolved ones when none fires.
    pub fn deciding_alerts(&self) -> impl Iterator<Item = &AlertRef> {
        let want = if self.is_firing() { AlertStatus::Firing } else { AlertStatus::Resolved };
        self.alerts.iter().filter(move |a| a.status == want)
    }

    /// Identifies "the same notification": same group, same deciding alerts (fingerprint and
    /// start), same status. Repeats, retries and "some alerts resolved" re-sends share it.
    pub fn dedup_key(&self) -> DedupKey {
        let status = if self.is_firing() { AlertStatus::Firing } else { AlertStatus::Resolved };
        let mut alerts: Vec<(&str, &str)> =
            self.deciding_alerts().map(|a| (a.fingerprint.as_str(), a.starts_at.as_str())).collect();
        alerts.sort_unstable();
        let mut hash = Sha256::new();
        hash.update(self.group_key.as_bytes());
        hash.update([0]);
        hash.update(status.as_str().as_bytes());
        for (fingerprint, starts_at) in alerts {
            hash.update([0]);
            hash.update(fingerprint.as_bytes());
            hash.update([1]);
            hash.update(starts_at.as_bytes());
        }
        DedupKey::from_digest(&hash.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(fp: &str, status: AlertStatus, starts: &str) -> AlertRef {
        AlertRef {
            name: "High".into(),
            fingerprint: fp.into(),
            status,
            starts_at: starts.into(),
            labels: Default::default(),
            annotations: Default::default(),
        }
    }

    fn notification(alerts: Vec<AlertRef>) -> Notification {
        let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        };
        Notification { group_key: "{}:{alertname=\"High\"}".into(), status, alerts }
    }

    #[test]
    fn resolved_riders_do_not_change_the_key() {
        let a = notification(vec![alert("a", AlertStatus::Firing, "t1"), alert("b", AlertStatus::Firing, "t1")]);
        let some_resolved =
            notification(vec![alert("a", AlertStatus::Firing, "t1"), alert("c", AlertStatus::Resolved, "t0")]);
        let just_a = notification(vec![alert("a", AlertStatus::Firing, "t1")]);
        assert_ne!(a.dedup_key(), just_a.dedup_key(), "a different firing set is a different notification");
        assert_eq!(some_resolved.dedup_key(), just_a.dedup_key(), "a resolved alert riding along changes nothing");
    }

    #[test]
    fn order_does_not_matter_but_start_and_status_do() {
        let ab = notification(vec![alert("a", AlertStatus::Firing, "t1"), alert("b", AlertStatus::Firing, "t1")]);
        let ba = notification(vec![alert("b", AlertStatus::Firing, "t1"), alert("a", AlertStatus::Firing, "t1")]);
        assert_eq!(ab.dedup_key(), ba.dedup_key());
        let refired = notification(vec![alert("a", AlertStatus::Firing, "t2"), alert("b", AlertStatus::Firing, "t1")]);
        assert_ne!(ab.dedup_key(), refired.dedup_key(), "an alert that fired again is news");
        let resolved =
            notification(vec![alert("a", AlertStatus::Resolved, "t1"), alert("b", AlertStatus::Resolved, "t1")]);
        assert_ne!(ab.dedup_key(), resolved.dedup_key());
        assert!(!resolved.is_firing());
        assert_eq!(resolved.deciding_alerts().count(), 2);
    }
}
