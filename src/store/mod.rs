//! Persistence behind one trait, so SQLite (embedded) and PostgreSQL (replicas) are interchangeable.
//!
//! The store is the only place that knows SQL. Row formats (including the JSON a driver
//! config is kept as) live in the implementation, not in the domain.

mod postgres;
mod rows;
mod sqlite;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::{
    config::Retention,
    domain::{
        target::Recommendation, ApiTokenId, AuditId, Decided, DedupKey, Execution, ExecutionId, Job, JobId, Millis,
        ProjectName, Receiver, ReceiverId, ServiceKey,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the message names what collided.
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    /// The store cannot write (or read) now: disk full, I/O error, locked. Nothing was written.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("the store's writer has stopped")]
    WriterGone,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                let transient = match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    Some(pg) => postgres::is_transient_code(pg.code()),
                    None => db.code().is_some_and(|c| sqlite::is_transient_code(&c)),
                };
                if transient {
                    StoreError::Unavailable(e.to_string())
                } else {
                    StoreError::Database(e)
                }
            }
            _ => StoreError::Database(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A lock held across every hookd sharing the store, until dropped.
pub type StoreLock = Box<dyn Send + Sync>;

/// A change another hookd on the same store made, which this one caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    SigningKeys,
    Projects,
}

/// A change to a receiver, applied to it as stored when the edit is written.
pub type ReceiverEdit = Box<dyn FnOnce(&mut Receiver) + Send>;

/// State a backend keeps in hookd's own store. It is written in the same transaction as the
/// execution that changed it, so the two are durable together or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWrite {
    /// A local service's desired scale.
    LocalScale { backend: String, service: String, scale: u32 },
    /// The image a local service was upgraded to.
    LocalImage { backend: String, service: String, image: String },
}

/// What the store holds on disk, for `/metrics` and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes of the database file and its write-ahead log.
    pub database_bytes: u64,
    pub wal_bytes: u64,
    /// The largest the write-ahead log has been since the store opened.
    pub wal_peak_bytes: u64,
    pub executions: u64,
    /// False after a failed write, until a write succeeds.
    pub writable: bool,
}

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
    /// After this, the token is refused.
    pub expires: Option<Millis>,
    /// The token that made it; revoked with it.
    pub created_by: Option<ApiTokenId>,
}

impl ApiToken {
    pub fn expired(&self, now: Millis) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// A project created through the API, bound to a configured backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProject {
    pub name: ProjectName,
    pub backend: String,
    pub created: Millis,
}

/// One management action: who (an API token's name and id) did what to what, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: AuditId,
    pub at: Millis,
    pub actor: String,
    pub actor_id: ApiTokenId,
    /// `None` for actions on no one project (signing keys, tokens of every project).
    pub project: Option<ProjectName>,
    /// `receiver.create`, `token.revoke`, `keys.rotate`, …
    pub action: String,
    /// The id or name acted on.
    pub target: String,
    pub detail: String,
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
    /// Applies `edit` to the receiver as it is stored at that moment and stores the result
    /// (its revision bumped), in one transaction: concurrent edits each build on the one
    /// before, and none undoes another. `NotFound`, or `Conflict` (name taken). Once this
    /// returns, every read sees the change. The edit may change the name, config, `enabled`
    /// and the token generation; the id, project and creation time stay.
    async fn edit_receiver(&self, id: ReceiverId, edit: ReceiverEdit) -> StoreResult<Receiver>;
    /// Deletes a receiver and its history; false when it did not exist. Once this returns,
    /// no read returns the receiver.
    async fn delete_receiver(&self, id: ReceiverId) -> StoreResult<bool>;

    /// Records an execution durably, with the backend state it changed, in one transaction.
    /// Recording the same execution id again replaces it (an intent becomes its outcome).
    async fn record_execution(&self, execution: &Execution, state: Option<&StateWrite>) -> StoreResult<()>;
    /// A receiver's executions, newest first, older than `before` when given.
    async fn list_executions(
        &self,
        receiver: ReceiverId,
        limit: u32,
        before: Option<ExecutionId>,
    ) -> StoreResult<Vec<Execution>>;
    /// When the service last changed scale, by any receiver (dry runs aside).
    async fn last_change(&self, service: &ServiceKey) -> StoreResult<Option<Millis>>;
    /// The receiver's last decision (scaled or found unchanged, dry runs and failures aside)
    /// on this dedup key, if one was made at `since` or later.
    async fn last_decided(&self, receiver: ReceiverId, key: &DedupKey, since: Millis) -> StoreResult<Option<Decided>>;
    async fn count_executions(&self, receiver: ReceiverId) -> StoreResult<u64>;
    /// Keeps what a target-mode trigger recommended for `service`; forgets its
    /// recommendations older than an hour (the longest stabilization window).
    async fn record_recommendation(&self, service: &ServiceKey, recommendation: Recommendation) -> StoreResult<()>;
    /// The service's recommendations made at `since` or later.
    async fn recommendations(&self, service: &ServiceKey, since: Millis) -> StoreResult<Vec<Recommendation>>;
    /// Takes back what one alert group recommended for the service (the group resolved).
    async fn forget_recommendations(&self, service: &ServiceKey, source: &str) -> StoreResult<()>;

    /// Every signing key, retired or not.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    /// Inserts a key unless one with the same kid exists.
    async fn insert_signing_key(&self, key: &SigningKey) -> StoreResult<()>;

    /// Retires every live key but `keep` (URLs they signed stop working).
    async fn retire_signing_keys(&self, keep: &str, at: Millis) -> StoreResult<u64>;

    async fn insert_api_token(&self, token: &ApiToken) -> StoreResult<()>;
    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiToken>>;
    async fn api_token(&self, id: ApiTokenId) -> StoreResult<Option<ApiToken>>;
    async fn count_api_tokens(&self) -> StoreResult<u64>;
    /// Tokens in creation order: of one project, or every token when `project` is `None`.
    async fn list_api_tokens(&self, project: Option<&ProjectName>) -> StoreResult<Vec<ApiToken>>;
    /// Deletes a token; false when it did not exist.
    async fn delete_api_token(&self, id: ApiTokenId) -> StoreResult<bool>;

    async fn projects(&self) -> StoreResult<Vec<StoredProject>>;
    /// `Conflict` when the name is taken.
    async fn insert_project(&self, project: &StoredProject) -> StoreResult<()>;
    /// Deletes a project and the tokens scoped to it, in one transaction; `Conflict` while it
    /// has receivers; false when it did not exist.
    async fn delete_project(&self, name: &ProjectName) -> StoreResult<bool>;

    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Newest first, older than `before` when given; of one project, or all when `None`.
    async fn list_audit(
        &self,
        project: Option<&ProjectName>,
        limit: u32,
        before: Option<AuditId>,
    ) -> StoreResult<Vec<AuditEntry>>;

    /// Desired scales the local backend persisted, by service name.
    async fn local_scales(&self, backend: &str) -> StoreResult<HashMap<String, u32>>;
    /// Images the local backend's services were upgraded to, by service name.
    async fn local_images(&self, backend: &str) -> StoreResult<HashMap<String, String>>;
    /// Writes backend state on its own (no execution changed it: a rollout's progress).
    async fn save_state(&self, state: &StateWrite) -> StoreResult<()>;

    /// Inserts or replaces a job; with `execution`, the execution that started it, in the
    /// same transaction (a 202 promises both).
    async fn save_job(&self, job: &Job, execution: Option<&Execution>) -> StoreResult<()>;
    async fn job(&self, id: JobId) -> StoreResult<Option<Job>>;
    /// A receiver's jobs, newest first.
    async fn list_jobs(&self, receiver: ReceiverId, limit: u32) -> StoreResult<Vec<Job>>;
    /// Jobs not finished: resumed at start.
    async fn running_jobs(&self) -> StoreResult<Vec<Job>>;

    /// Several hookd may share this store (PostgreSQL): what one caches (signing keys,
    /// projects) another may change, and coordination goes through the store.
    fn shared(&self) -> bool {
        false
    }
    /// Takes the lock `name` across every hookd on this store, waiting up to `wait`; `None`
    /// if it is still held then. A store no one else uses has nothing to lock.
    async fn lock(&self, _name: &str, _wait: Duration) -> StoreResult<Option<StoreLock>> {
        Ok(Some(Box::new(())))
    }
    /// Changes other hookd made to what this one caches; `None` when no one else writes.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }
    /// Claims a running job for `owner` for `lease` ms (or renews its lease), timed by the
    /// store's clock: false while another owner's lease on it is live, so exactly one hookd
    /// runs each job.
    async fn claim_job(&self, _id: JobId, _owner: &str, _lease: Millis) -> StoreResult<bool> {
        Ok(true)
    }
    /// Running jobs whose owner's lease ran out (its hookd died).
    async fn orphaned_jobs(&self) -> StoreResult<Vec<Job>> {
        Ok(Vec::new())
    }
    /// Claims the local backend for this hookd for as long as it runs: false when another
    /// hookd on this store holds it (local processes run on one machine).
    async fn claim_local_backend(&self) -> StoreResult<bool> {
        Ok(true)
    }
    /// Stores `check` (a value sealed with this hookd's sealing key) unless one is stored,
    /// and returns the stored one: replicas must seal with one key.
    async fn sealing_check(&self, check: &str) -> StoreResult<String> {
        Ok(check.to_owned())
    }

    /// For `/readyz`: can the store write now? After a failed write this tries a real one.
    async fn ping(&self) -> StoreResult<()>;
    fn disk_usage(&self) -> DiskUsage;
    /// Flushes pending writes and closes connections.
    async fn close(&self);
}

/// Opens the store named by `url` and runs its migrations. The URL may hold a password:
/// errors never echo it.
pub async fn open(url: &str, retention: Retention) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url, retention).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::open(url, retention).await?))
    } else {
        let scheme = url.split_once(':').map_or("none", |(s, _)| s);
        anyhow::bail!("unsupported database URL scheme {scheme:?}: hookd supports sqlite:// and postgres:// URLs")
    }
}
