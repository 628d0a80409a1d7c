//! Trigger URL tokens: short JWTs naming a receiver, signed with a key every replica shares.
//!
//! The token carries the receiver id, project, driver and token generation; the driver
//! config stays in the store, so a receiver can be edited without changing its URL.
//!
//! Tokens are standard compact JWS (HS256, with a `kid` header). Verification is written
//! for the path an attacker can hammer: it checks the signature with a pre-keyed HMAC
//! before parsing any claims, allocates nothing for a forged token, and touches no store.
//! Only HS256 is accepted, which rules out `alg: none` and RSA/HMAC confusion.

use std::collections::HashMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{
    domain::{now_millis, Driver, ProjectName, ReceiverId},
    sealer::Sealer,
    store::{SigningKey, Store},
};

type HmacSha256 = Hmac<Sha256>;

/// What a valid trigger token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerClaims {
    pub receiver: ReceiverId,
    pub project: ProjectName,
    pub driver: Driver,
    pub generation: u32,
}

/// No issued-at or expiry: a receiver's URL must stay the same every time it is shown.
/// Revocation is by generation; unknown claims are ignored.
#[derive(Serialize, Deserialize)]
struct WireClaims<'a> {
    sub: &'a str,
    prj: &'a str,
    drv: &'a str,
    gen: u32,
}

#[derive(Serialize, Deserialize)]
struct WireHeader<'a> {
    alg: &'a str,
    #[serde(default)]
    kid: &'a str,
}

/// Why a token was refused. Deliberately vague towards callers: all of these are "invalid token".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token was signed with an unknown or retired key")]
    UnknownKey,
    #[error("the token's signature or algorithm is wrong")]
    BadSignature,
    #[error("the token's claims are not a hookd trigger")]
    BadClaims,
}

/// Longest token part decoded on the stack; real headers and claims are far shorter.
const MAX_PART: usize = 512;

pub struct TriggerKeys {
    signing_kid: String,
    /// Pre-keyed MAC states: cloning one skips the key schedule.
    signing: HmacSha256,
    verifying: HashMap<String, HmacSha256>,
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// Decodes base64url into `buf`, refusing anything too long for it.
fn decode<'b>(part: &str, buf: &'b mut [u8; MAX_PART]) -> Result<&'b [u8], TokenError> {
    let n = B64.decode_slice(part, buf).map_err(|_| TokenError::Malformed)?;
    Ok(&buf[..n])
}

impl TriggerKeys {
    /// Builds the key set from stored keys: the newest live key signs, every live key verifies.
    pub fn from_keys(keys: &[SigningKey]) -> Option<Self> {
        let live: Vec<&SigningKey> = keys.iter().filter(|k| k.retired.is_none()).collect();
        let newest = live.iter().max_by_key(|k| (k.created, &k.kid))?;
        Some(Self {
            signing_kid: newest.kid.clone(),
            signing: keyed(&newest.secret),
            verifying: live.iter().map(|k| (k.kid.clone(), keyed(&k.secret))).collect(),
        })
    }

    /// Builds the key set from keys as the store keeps them: sealed with the sealing key, so
    /// a copy of the database alone cannot sign trigger URLs (issue 14). A key an earlier hookd
    /// stored bare is read as it is; one that does not open is left out.
    pub fn from_stored(stored: &[SigningKey], sealer: &Sealer) -> Option<Self> {
        let opened: Vec<SigningKey> = stored
            .iter()
            .filter_map(|k| {
                if k.secret.len() == BARE_KEY_BYTES {
                    return Some(k.clone());
                }
                let secret = sealer.open(&k.secret);
                if secret.is_none() && k.retired.is_none() {
                    tracing::error!(kid = %k.kid, "a signing key does not open with the sealing key; it is left out");
                }
                Some(SigningKey { secret: secret?, ..k.clone() })
            })
            .collect();
        Self::from_keys(&opened)
    }

    /// Loads the shared keys, creating the first one when the store has none.
    pub async fn load_or_create(store: &dyn Store, sealer: &Sealer) -> anyhow::Result<Self> {
        let stored = store.signing_keys().await?;
        for bare in stored.iter().filter(|k| k.retired.is_none() && k.secret.len() == BARE_KEY_BYTES) {
            tracing::warn!(
                kid = %bare.kid,
                "a signing key is stored unsealed (by an earlier hookd): rotate the keys, and retire the old \
                 ones once senders have the new URLs"
            );
        }
        if let Some(keys) = Self::from_stored(&stored, sealer) {
            return Ok(keys);
        }
        // Live keys that do not open: the sealing key is not theirs (a database restored
        // without its sealing.key). A new key would silently turn every URL into a 403.
        anyhow::ensure!(
            stored.iter().all(|k| k.retired.is_some()),
            "the stored signing keys do not open with this sealing key: restore the sealing.key that was \
             beside this database (or set sealing_key_file to it)"
        );
        store.insert_signing_key(&sealed(new_signing_key(), sealer)).await?;
        // Another replica may have raced us; whichever keys landed are the shared ones.
        Self::from_stored(&store.signing_keys().await?, sealer)
            .ok_or_else(|| anyhow::anyhow!("no signing key after creating one"))
    }

    /// The key new URLs are signed with.
    pub fn current_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn sign(&self, claims: &TriggerClaims) -> String {
        let header = serde_json::to_vec(&WireHeader { alg: "HS256", kid: &self.signing_kid }).expect("serializable");
        let (sub, prj) = (claims.receiver.to_string(), claims.project.to_string());
        let wire = WireClaims { sub: &sub, prj: &prj, drv: claims.driver.as_str(), gen: claims.generation };
        let claims = serde_json::to_vec(&wire).expect("serializable");
        let signing_input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let mut mac = self.signing.clone();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    pub fn verify(&self, token: &str) -> Result<TriggerClaims, TokenError> {
        let mut parts = token.splitn(3, '.');
        let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let mut buf = [0u8; MAX_PART];
        let header: WireHeader =
            serde_json::from_slice(decode(header, &mut buf)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::BadSignature);
        }
        let key = self.verifying.get(header.kid).ok_or(TokenError::UnknownKey)?;
        let mut mac = key.clone();
        mac.update(&token.as_bytes()[..token.len() - signature.len() - 1]);
        let mut sig = [0u8; MAX_PART];
        mac.verify_slice(decode(signature, &mut sig)?).map_err(|_| TokenError::BadSignature)?;

        let mut buf = [0u8; MAX_PART];
        let c: WireClaims = serde_json::from_slice(decode(payload, &mut buf)?).map_err(|_| TokenError::BadClaims)?;
        Ok(TriggerClaims {
            receiver: ReceiverId::parse(c.sub).ok_or(TokenError::BadClaims)?,
            project: ProjectName::parse(c.prj).map_err(|_| TokenError::BadClaims)?,
            driver: Driver::parse(c.drv).ok_or(TokenError::BadClaims)?,
            generation: c.gen,
        })
    }
}

/// Bytes of a bare key; a sealed one is longer (nonce and tag).
const BARE_KEY_BYTES: usize = 32;

/// The key as the store keeps it.
pub fn sealed(key: SigningKey, sealer: &Sealer) -> SigningKey {
    SigningKey { secret: sealer.seal(&key.secret), ..key }
}

pub fn new_signing_key() -> SigningKey {
    let mut secret = vec![0u8; BARE_KEY_BYTES];
    rand::thread_rng().fill_bytes(&mut secret);
    let mut kid = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut kid);
    SigningKey { kid: hex::encode(kid), secret, created: now_millis(), retired: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TriggerClaims {
        TriggerClaims {
            receiver: ReceiverId::generate(),
            project: ProjectName::default_project(),
            driver: Driver::ScaleService,
            generation: 3,
        }
    }

    fn b64(bytes: &[u8]) -> String {
        B64.encode(bytes)
    }

    #[test]
    fn round_trip_and_stable() {
        let keys = TriggerKeys::from_keys(&[new_signing_key()]).unwrap();
        let c = claims();
        assert_eq!(keys.verify(&keys.sign(&c)), Ok(c.clone()));
        assert_eq!(keys.sign(&c), keys.sign(&c), "the same receiver always gets the same URL");
    }

    #[test]
    fn another_key_is_refused() {
        let a = TriggerKeys::from_keys(&[new_signing_key()]).unwrap();
        let b = TriggerKeys::from_keys(&[new_signing_key()]).unwrap();
        assert_eq!(b.verify(&a.sign(&claims())), Err(TokenError::UnknownKey));
    }

    #[test]
    fn same_kid_other_secret_is_a_bad_signature() {
        let key = new_signing_key();
        let mut forged = key.clone();
        forged.secret = vec![7; 32];
        let good = TriggerKeys::from_keys(&[key]).unwrap();
        let bad = TriggerKeys::from_keys(&[forged]).unwrap();
        assert_eq!(good.verify(&bad.sign(&claims())), Err(TokenError::BadSignature));
    }

    #[test]
    fn alg_none_and_altered_claims_are_refused() {
        let key = new_signing_key();
        let keys = TriggerKeys::from_keys(std::slice::from_ref(&key)).unwrap();
        let token = keys.sign(&claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let none_header = b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, key.kid).as_bytes());
        parts[0] = &none_header;
        assert!(keys.verify(&format!("{}.{}.", parts[0], parts[1])).is_err());
        let other_claims =
            b64(br#"{"sub":"00000000000000000000000000000000","prj":"default","drv":"scaleService","gen":3,"iat":0}"#);
        let altered =
            format!("{}.{}.{}", token.split('.').next().unwrap(), other_claims, token.split('.').nth(2).unwrap());
        assert_eq!(keys.verify(&altered), Err(TokenError::BadSignature));
        assert_eq!(keys.verify("garbage"), Err(TokenError::Malformed));
    }

    #[test]
    fn retired_keys_stop_verifying_and_newest_signs() {
        let old = new_signing_key();
        let mut new = new_signing_key();
        new.created = old.created + 1;
        let both = TriggerKeys::from_keys(&[old.clone(), new.clone()]).unwrap();
        let old_only = TriggerKeys::from_keys(std::slice::from_ref(&old)).unwrap();
        let old_token = old_only.sign(&claims());
        assert!(both.verify(&old_token).is_ok(), "old URLs keep working until the key is retired");
        assert_eq!(both.signing_kid, new.kid);
        let mut retired = old;
        retired.retired = Some(1);
        let after = TriggerKeys::from_keys(&[retired, new]).unwrap();
        assert_eq!(after.verify(&old_token), Err(TokenError::UnknownKey));
    }

    /// Standard JWT libraries agree with ours, both ways.
    #[test]
    fn interoperates_with_jsonwebtoken() {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
        let key = new_signing_key();
        let keys = TriggerKeys::from_keys(std::slice::from_ref(&key)).unwrap();
        let c = claims();
        let ours = keys.sign(&c);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&ours, &DecodingKey::from_secret(&key.secret), &validation)
                .unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(decoded.claims["sub"], c.receiver.to_string());

        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let wire = serde_json::json!({"sub": c.receiver.to_string(), "prj": "default", "drv": "scaleService", "gen": 3, "iat": 0});
        let theirs = jsonwebtoken::encode(&header, &wire, &EncodingKey::from_secret(&key.secret)).unwrap();
        assert_eq!(keys.verify(&theirs), Ok(c));
    }

    #[test]
    fn stored_keys_are_sealed_and_open_with_their_sealing_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::load_or_create(&dir.path().join("a")).unwrap();
        let other = Sealer::load_or_create(&dir.path().join("b")).unwrap();
        let key = new_signing_key();
        let stored = sealed(key.clone(), &sealer);
        assert_ne!(stored.secret, key.secret);
        assert!(!stored.secret.windows(key.secret.len()).any(|w| w == key.secret), "not in the clear");
        let opened = TriggerKeys::from_stored(std::slice::from_ref(&stored), &sealer).unwrap();
        let plain = TriggerKeys::from_keys(std::slice::from_ref(&key)).unwrap();
        let c = claims();
        assert_eq!(opened.sign(&c), plain.sign(&c));
        assert!(TriggerKeys::from_stored(&[stored], &other).is_none(), "another sealing key opens nothing");
        let bare = TriggerKeys::from_stored(std::slice::from_ref(&key), &other).unwrap();
        assert_eq!(bare.sign(&c), plain.sign(&c), "an earlier hookd's bare key still works");
    }

    #[test]
    fn oversized_parts_are_malformed_not_a_panic() {
        let keys = TriggerKeys::from_keys(&[new_signing_key()]).unwrap();
        let huge = format!("{}.{}.{}", "A".repeat(5000), "B".repeat(5000), "C".repeat(5000));
        assert_eq!(keys.verify(&huge), Err(TokenError::Malformed));
        assert_eq!(keys.verify("a.b"), Err(TokenError::Malformed));
        assert_eq!(keys.verify("..."), Err(TokenError::Malformed));
    }
}

/// Fuzzing by property: forged tokens of any shape are refused, and never panic.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn keys() -> TriggerKeys {
        TriggerKeys::from_keys(&[new_signing_key()]).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn arbitrary_strings_never_verify(token in "\\PC{0,600}") {
            prop_assert!(keys().verify(&token).is_err());
        }

        #[test]
        fn jwt_shaped_garbage_never_verifies(a in "[A-Za-z0-9_-]{0,400}", b in "[A-Za-z0-9_-]{0,400}", c in "[A-Za-z0-9_-]{0,100}") {
            let token = format!("{a}.{b}.{c}");
            prop_assert!(keys().verify(&token).is_err());
        }

        /// Any single-character change to a valid token makes it invalid (or, when the change
        /// decodes to the same bytes, leaves the same claims).
        #[test]
        fn altered_tokens_never_verify_as_something_else(at in 0usize..200, ch in "[A-Za-z0-9_.-]") {
            let keys = keys();
            let claims = TriggerClaims {
                receiver: ReceiverId::generate(),
                project: ProjectName::default_project(),
                driver: Driver::ScaleService,
                generation: 1,
            };
            let token = keys.sign(&claims);
            let at = at % token.len();
            let mut altered = token.clone();
            altered.replace_range(at..at + 1, &ch);
            if let Ok(verified) = keys.verify(&altered) {
                prop_assert_eq!(verified, claims);
            }
        }
    }
}
