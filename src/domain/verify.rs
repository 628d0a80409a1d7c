//! Sender verification: what a receiver may require of a trigger beyond its URL. Pure: the
//! HTTP layer hands in headers, body, the time and the (unsealed) secret.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How far a Standard Webhooks timestamp may be from now, either way (the spec's 5 minutes).
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;

/// A receiver's requirement. Secrets are never held in the clear: a static one as its
/// SHA-256, an HMAC key sealed (encrypted with the data directory's key, `crate::sealer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderCheck {
    /// A header whose value is a shared secret (`Authorization: Bearer <secret>` when `bearer`).
    Header { name: String, bearer: bool, hash: [u8; 32] },
    /// GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github { sealed: Vec<u8> },
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks { sealed: Vec<u8> },
}

impl SenderCheck {
    pub fn kind(&self) -> &'static str {
        match self {
            SenderCheck::Header { bearer: true, .. } => "bearer",
            SenderCheck::Header { .. } => "header",
            SenderCheck::Github { .. } => "github",
            SenderCheck::StandardWebhooks { .. } => "standardWebhooks",
        }
    }
}

pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Why a trigger was not verified: a sentence for the sender.
#[derive(Debug, PartialEq, Eq)]
pub struct Unverified(pub String);

/// A static secret in a header (compared by hash, so the comparison leaks nothing usable).
pub fn check_header(name: &str, bearer: bool, hash: &[u8; 32], value: Option<&str>) -> Result<(), Unverified> {
    let value = value.ok_or_else(|| Unverified(format!("this receiver requires the {name} header")))?;
    let secret = if bearer {
        value.strip_prefix("Bearer ").ok_or_else(|| Unverified("Authorization must be Bearer <secret>".into()))?
    } else {
        value
    };
    let given = secret_hash(secret.trim());
    // Constant time over the digests.
    if given.iter().zip(hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
        Ok(())
    } else {
        Err(Unverified(format!("the {name} header does not hold this receiver's secret")))
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// GitHub's signature of the raw body, checked in constant time.
pub fn check_github(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), Unverified> {
    let header = header.ok_or_else(|| {
        Unverified("this receiver requires X-Hub-Signature-256 (HMAC-SHA256 of the body, as GitHub signs)".into())
    })?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or_else(|| Unverified("X-Hub-Signature-256 must be sha256=<hex>".into()))?;
    let sig = hex::decode(hex_sig).map_err(|_| Unverified("X-Hub-Signature-256 is not hex".into()))?;
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&sig).map_err(|_| Unverified("X-Hub-Signature-256 does not match the body".into()))
}

/// The key of a Standard Webhooks secret (`whsec_<base64>`, or bare base64).
pub fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    let key = STANDARD.decode(secret.trim().strip_prefix("whsec_").unwrap_or(secret.trim())).ok()?;
    (key.len() >= 16).then_some(key)
}

/// A Standard Webhooks message: the id (the replay key), timestamp within the tolerance,
/// and one of the space-separated `v1,<base64>` signatures of `id.timestamp.body`.
pub fn check_standard_webhooks(
    key: &[u8],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now_seconds: i64,
) -> Result<(), Unverified> {
    let missing = |h: &str| Unverified(format!("this receiver requires Standard Webhooks headers: {h} is missing"));
    let id = id.filter(|i| !i.is_empty()).ok_or_else(|| missing("webhook-id"))?;
    let timestamp = timestamp.ok_or_else(|| missing("webhook-timestamp"))?;
    let signatures = signatures.ok_or_else(|| missing("webhook-signature"))?;
    let at: i64 =
        timestamp.trim().parse().map_err(|_| Unverified("webhook-timestamp is not a number of seconds".into()))?;
    let off = (now_seconds - at).abs();
    if off > TIMESTAMP_TOLERANCE_SECONDS {
        return Err(Unverified(format!(
            "webhook-timestamp is {off} s from now; at most {TIMESTAMP_TOLERANCE_SECONDS} s is accepted"
        )));
    }
    for candidate in signatures.split_whitespace() {
        let Some(sig) = candidate.strip_prefix("v1,").and_then(|s| STANDARD.decode(s).ok()) else { continue };
        let mut m = mac(key);
        m.update(id.as_bytes());
        m.update(b".");
        m.update(timestamp.trim().as_bytes());
        m.update(b".");
        m.update(body);
        if m.verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(Unverified("no webhook-signature matches the message".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = mac(key);
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }

    #[test]
    fn github_signatures() {
        let body = br#"{"action":"published"}"#;
        let good = format!("sha256={}", hex::encode(sign(b"s3cret", &[body])));
        assert_eq!(check_github(b"s3cret", body, Some(&good)), Ok(()));
        assert!(check_github(b"other", body, Some(&good)).is_err(), "wrong secret");
        assert!(check_github(b"s3cret", b"{}", Some(&good)).is_err(), "altered body");
        assert!(check_github(b"s3cret", body, Some(&good[..good.len() - 2])).is_err(), "truncated");
        assert!(check_github(b"s3cret", body, None).is_err(), "missing");
        assert!(check_github(b"s3cret", body, Some(&good.replace("sha256=", "sha1="))).is_err());
    }

    #[test]
    fn standard_webhooks_signatures_and_time() {
        let key = b"0123456789abcdef0123456789abcdef";
        let secret = format!("whsec_{}", STANDARD.encode(key));
        assert_eq!(standard_webhooks_key(&secret).as_deref(), Some(&key[..]));
        assert_eq!(standard_webhooks_key("whsec_c2hvcnQ="), None, "keys are at least 16 bytes");
        let (id, ts, body) = ("msg_1", "1700000000", b"{}");
        let sig = STANDARD.encode(sign(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]));
        let header = format!("v1,bm90IGl0 v1,{sig}");
        let check =
            |now, header: &str, body: &[u8]| check_standard_webhooks(key, Some(id), Some(ts), Some(header), body, now);
        assert_eq!(check(1_700_000_000, &header, body), Ok(()), "one of several signatures matches");
        assert_eq!(check(1_700_000_300, &header, body), Ok(()), "at the tolerance");
        assert!(check(1_700_000_301, &header, body).is_err(), "too late");
        assert!(check(1_699_999_699, &header, body).is_err(), "too early");
        assert!(check(1_700_000_000, &header, b"{ }").is_err(), "altered body");
        assert!(check(1_700_000_000, "v1,bm90IGl0", body).is_err(), "no matching signature");
        assert!(check_standard_webhooks(key, None, Some(ts), Some(&header), body, 1_700_000_000).is_err());
    }

    #[test]
    fn header_secrets() {
        let hash = secret_hash("letmein");
        assert_eq!(check_header("X-Token", false, &hash, Some("letmein")), Ok(()));
        assert!(check_header("X-Token", false, &hash, Some("letmeout")).is_err());
        assert!(check_header("X-Token", false, &hash, None).is_err());
        assert_eq!(check_header("Authorization", true, &hash, Some("Bearer letmein")), Ok(()));
        assert!(check_header("Authorization", true, &hash, Some("letmein")).is_err());
    }

    proptest::proptest! {
        /// Whatever a sender puts in the headers, nothing panics and nothing verifies
        /// without the key (the signature is then a guess of 256 bits).
        #[test]
        fn arbitrary_headers_never_verify(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            sig in ".{0,120}",
            id in ".{0,40}",
            ts in ".{0,20}",
        ) {
            let key = b"0123456789abcdef0123456789abcdef";
            let (prefixed, v1) = (format!("sha256={sig}"), format!("v1,{sig}"));
            proptest::prop_assert!(check_github(key, &body, Some(&sig)).is_err());
            proptest::prop_assert!(check_github(key, &body, Some(&prefixed)).is_err());
            let now = 1_700_000_000;
            proptest::prop_assert!(check_standard_webhooks(key, Some(&id), Some(&ts), Some(&sig), &body, now).is_err());
            proptest::prop_assert!(check_standard_webhooks(key, Some(&id), Some("1700000000"), Some(&v1), &body, now).is_err());
            proptest::prop_assert!(check_header("X-Token", true, &secret_hash("a real secret"), Some(&sig)).is_err());
        }
    }
}
