//! Management API tokens: generated once, stored as SHA-256 hashes, checked per request.

use rand::{distributions::Alphanumeric, Rng};
use sha2::{Digest, Sha256};

use crate::{
    config::Secret,
    domain::{now_millis, ApiTokenId, ProjectName},
    store::{ApiToken, Role, Store, StoreResult},
};

/// Prefix that makes hookd tokens recognisable to secret scanners.
const TOKEN_PREFIX: &str = "hookd_";

pub fn generate_token() -> Secret {
    let body: String = rand::thread_rng().sample_iter(&Alphanumeric).take(40).map(char::from).collect();
    Secret::new(format!("{TOKEN_PREFIX}{body}"))
}

/// Tokens are long random strings, so a plain SHA-256 is enough (no password hashing needed).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Makes sure an admin token exists. Returns the new secret when one was generated,
/// so the caller can print it once; a configured token is stored if missing.
pub async fn ensure_admin(store: &dyn Store, configured: Option<&Secret>) -> StoreResult<Option<Secret>> {
    let (secret, generated) = match configured {
        Some(token) if store.api_token_by_hash(&hash_token(token.expose())).await?.is_some() => return Ok(None),
        // The way back in when every owner token is lost: a configured token is stored again.
        // So a revoked one comes back at the next start while it is still set: say so.
        Some(token) => {
            if store.count_api_tokens().await? > 0 {
                tracing::warn!(
                    "HOOKD_ADMIN_TOKEN (admin_token) was not a stored API token: stored it as an owner of every \
                     project. If it was revoked, unset it; it comes back at every start while it is set"
                );
            }
            (token.clone(), false)
        }
        None if store.count_api_tokens().await? > 0 => return Ok(None),
        None => (generate_token(), true),
    };
    store
        .insert_api_token(&ApiToken {
            id: ApiTokenId::generate(),
            name: "admin".into(),
            hash: hash_token(secret.expose()),
            role: Role::Owner,
            project: None,
            created: now_millis(),
            expires: None,
            created_by: None,
        })
        .await?;
    Ok(generated.then_some(secret))
}

/// An authenticated caller of the management API.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: ApiToken,
}

impl Caller {
    /// Whether the caller may see the project at all (anything else is "not found").
    pub fn can_read(&self, project: &ProjectName) -> bool {
        self.token.project.as_ref().is_none_or(|p| p == project)
    }

    /// Receivers: create, change, delete (owners and members).
    pub fn can_manage(&self, project: &ProjectName) -> bool {
        self.can_read(project) && self.token.role != Role::ReadOnly
    }

    /// Projects, signing keys, tokens of every project (owners of every project).
    pub fn owns_all(&self) -> bool {
        self.token.project.is_none() && self.token.role == Role::Owner
    }

    /// Read-only callers see receivers without their trigger URLs.
    pub fn sees_urls(&self) -> bool {
        self.token.role != Role::ReadOnly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(hash_token(a.expose()).len(), 64);
        assert_ne!(hash_token(a.expose()), hash_token(b.expose()));
    }
}
