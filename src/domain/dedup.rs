//! Keys that say "the same request again": a notification Alertmanager repeats or retries,
//! or a request retried with the same `Idempotency-Key`.

use std::fmt;

use sha2::{Digest, Sha256};

use super::{ExecutionId, Millis};

/// A request retried with the same `Idempotency-Key` within this window is the same request.
pub const IDEMPOTENCY_WINDOW_SECONDS: u32 = 24 * 3600;

/// 16 bytes of a SHA-256 over what identifies a request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupKey([u8; 16]);

impl DedupKey {
    /// The first 16 bytes of `digest`.
    pub fn from_digest(digest: &[u8]) -> Self {
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }

    /// The key of a client-chosen `Idempotency-Key` (kept hashed: the client's string may be
    /// anything, and a hash has a fixed size).
    pub fn idempotency(client_key: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"idempotency-key\0");
        hash.update(client_key.as_bytes());
        Self::from_digest(&hash.finalize())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DedupKey({self})")
    }
}

/// What makes two triggers "the same".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupKind {
    /// The same Alertmanager notification (repeated or retried).
    Notification,
    /// The same `Idempotency-Key` header.
    IdempotencyKey,
}

/// A trigger's dedup key and how long a decision on it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dedup {
    pub key: DedupKey,
    pub kind: DedupKind,
    pub window_seconds: u32,
}

/// A decision the history holds on a dedup key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided {
    pub at: Millis,
    pub execution: ExecutionId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_idempotency_keys_differ() {
        let a = DedupKey::idempotency("retry-1");
        assert_eq!(DedupKey::from_slice(a.as_bytes()), Some(a));
        assert_eq!(a.to_string().len(), 32);
        assert_ne!(a, DedupKey::idempotency("retry-2"));
        assert_eq!(DedupKey::from_slice(&[0; 15]), None);
    }
}
