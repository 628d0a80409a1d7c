//! Trigger URL tokens: short JWTs naming a receiver, signed with a key every replica shares.
//!
//! The token carries the receiver id, project, driver and token generation; the driver
//! config stays in the store, so a receiver can be edited without changing its URL.
//! Verification needs no store access: a forged token costs one HMAC and is rejected.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{
    domain::{now_millis, Driver, ProjectName, ReceiverId},
    store::{SigningKey, Store},
};

/// What a valid trigger token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerClaims {
    pub receiver: ReceiverId,
    pub project: ProjectName,
    pub driver: Driver,
    pub generation: u32,
}

#[derive(Serialize, Deserialize)]
struct WireClaims {
    sub: String,
    prj: String,
    drv: String,
    gen: u32,
    iat: i64,
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

pub struct TriggerKeys {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl TriggerKeys {
    /// Builds the key set from stored keys: the newest live key signs, every live key verifies.
    pub fn from_keys(keys: &[SigningKey]) -> Option<Self> {
        let live: Vec<&SigningKey> = keys.iter().filter(|k| k.retired.is_none()).collect();
        let newest = live.iter().max_by_key(|k| (k.created, &k.kid))?;
        // Only HS256 is accepted: this rules out `alg: none` and RSA/HMAC confusion.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        Some(Self {
            signing_kid: newest.kid.clone(),
            signing: EncodingKey::from_secret(&newest.secret),
            verifying: live.iter().map(|k| (k.kid.clone(), DecodingKey::from_secret(&k.secret))).collect(),
            validation,
        })
    }

    /// Loads the shared keys, creating the first one when the store has none.
    pub async fn load_or_create(store: &dyn Store) -> anyhow::Result<Self> {
        if let Some(keys) = Self::from_keys(&store.signing_keys().await?) {
            return Ok(keys);
        }
        store.insert_signing_key(&new_signing_key()).await?;
        // Another replica may have raced us; whichever keys landed are the shared ones.
        Self::from_keys(&store.signing_keys().await?)
            .ok_or_else(|| anyhow::anyhow!("no signing key after creating one"))
    }

    pub fn sign(&self, claims: &TriggerClaims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_kid.clone());
        let wire = WireClaims {
            sub: claims.receiver.to_string(),
            prj: claims.project.to_string(),
            drv: claims.driver.as_str().to_owned(),
            gen: claims.generation,
            iat: now_millis() / 1000,
        };
        jsonwebtoken::encode(&header, &wire, &self.signing).expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<TriggerClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let key = header.kid.as_deref().and_then(|kid| self.verifying.get(kid)).ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<WireClaims>(token, key, &self.validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                TokenError::BadSignature
            }
            _ => TokenError::Malformed,
        })?;
        let c = data.claims;
        Ok(TriggerClaims {
            receiver: ReceiverId::parse(&c.sub).ok_or(TokenError::BadClaims)?,
            project: ProjectName::parse(&c.prj).map_err(|_| TokenError::BadClaims)?,
            driver: Driver::parse(&c.drv).ok_or(TokenError::BadClaims)?,
            generation: c.gen,
        })
    }
}

pub fn new_signing_key() -> SigningKey {
    let mut secret = vec![0u8; 32];
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
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn round_trip() {
        let keys = TriggerKeys::from_keys(&[new_signing_key()]).unwrap();
        let c = claims();
        assert_eq!(keys.verify(&keys.sign(&c)), Ok(c));
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
}
