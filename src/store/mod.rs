//! Persistence behind one trait, so SQLite (embedded) and PostgreSQL (replicas) are interchangeable.
//!
//! The store is the only place that knows SQL. Row formats (including the JSON a driver
//! config is kept as) live in the implementation, not in the domain.

mod rows;
mod sqlite;

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;

pub use sqlite::SqliteStore;

use crate::domain::{ApiTokenId, Execution, ExecutionId, Millis, ProjectName, Receiver, ReceiverId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the message names what collided.
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("the store's writer has stopped")]
    WriterGone,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, including tokens.
    Owner,
    /// Manage receivers.
    Member,
    /// List and read, with trigger URLs blanked.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::ReadOnly => "read-only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Role::Owner, Role::Member, Role::ReadOnly].into_iter().find(|r| r.as_str() == s)
    }
}

/// A management API token; only the SHA-256 of the secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub name: String,
    pub hash: String,
    pub role: Role,
    /// `None`: every project.
    pub project: Option<ProjectName>,
    pub created: Millis,
}

/// A key that signs trigger URLs, shared by every replica through the store.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub secret: Vec<u8>,
    pub created: Millis,
    /// Retired keys no longer verify anything.
    pub retired: Option<Millis>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("retired", &self.retired).finish_non_exhaustive()
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a receiver; `Conflict` when its name is taken in its project.
    async fn insert_receiver(&self, receiver: &Receiver) -> StoreResult<()>;
    async fn receiver(&self, id: ReceiverId) -> StoreResult<Option<Receiver>>;
    /// Receivers of a project in creation order, after `after` when given.
    async fn list_receivers(
        &self,
        project: &ProjectName,
        limit: u32,
        after: Option<ReceiverId>,
    ) -> StoreResult<Vec<Receiver>>;
    /// Replaces a receiver's mutable fields; `NotFound` or `Conflict` (name taken).
    async fn update_receiver(&self, receiver: &Receiver) -> StoreResult<()>;
    /// Deletes a receiver and its history; false when it did not exist.
    async fn delete_receiver(&self, id: ReceiverId) -> StoreResult<bool>;

    /// Records an execution durably before returning: a trigger is acknowledged only after this.
    async fn record_execution(&self, execution: &Execution) -> StoreResult<()>;
    /// A receiver's executions, newest first, older than `before` when given.
    async fn list_executions(
        &self,
        receiver: ReceiverId,
        limit: u32,
        before: Option<ExecutionId>,
    ) -> StoreResult<Vec<Execution>>;
    /// When the receiver last changed a scale (dry runs aside).
    async fn last_change(&self, receiver: ReceiverId) -> StoreResult<Option<Millis>>;
    /// When the receiver last decided (scaled or found unchanged) on the notification with
    /// this dedup key (dry runs and failures aside).
    async fn last_decided(&self, receiver: ReceiverId, dedup_key: &str) -> StoreResult<Option<Millis>>;
    async fn count_executions(&self, receiver: ReceiverId) -> StoreResult<u64>;

    /// Every signing key, retired or not.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    /// Inserts a key unless one with the same kid exists.
    async fn insert_signing_key(&self, key: &SigningKey) -> StoreResult<()>;

    async fn insert_api_token(&self, token: &ApiToken) -> StoreResult<()>;
    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiToken>>;
    async fn count_api_tokens(&self) -> StoreResult<u64>;

    /// Desired scales the local backend persisted, by service name.
    async fn local_scales(&self, backend: &str) -> StoreResult<HashMap<String, u32>>;
    /// Queues a local service's desired scale. Writes commit in order, so it is durable no
    /// later than the next write this store acknowledges (a trigger's execution record).
    async fn set_local_scale(&self, backend: &str, service: &str, scale: u32) -> StoreResult<()>;
    /// Returns once every write queued before it is durable.
    async fn flush(&self) -> StoreResult<()>;

    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Flushes pending writes and closes connections.
    async fn close(&self);
}

/// Opens the store named by `url` and runs its migrations.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        anyhow::bail!("unsupported database URL {url:?}: hookd supports sqlite:// URLs")
    }
}
