//! PostgreSQL store: for several hookd replicas on one database.
//!
//! Unlike SQLite, nothing the trigger path reads is cached: another replica may have changed
//! it. What must hold across replicas goes through the database: named locks are session
//! advisory locks on connections of their own ([`coordination`]), jobs carry a lease, and
//! changes to signing keys and projects are announced with `NOTIFY`. Writes are plain
//! transactions ([`writes`]); retention runs on the write path and a periodic sweep
//! ([`retention`]). The URL may hold a password: it is never logged.

mod coordination;
mod retention;
mod writes;

use std::{collections::HashMap, str::FromStr, sync::Mutex, time::Duration};

use async_trait::async_trait;
use sqlx::{
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    ConnectOptions, Row,
};
use tokio::sync::broadcast;

use self::retention::Usage;
use super::{
    rows::{job_from_json, ApiTokenRow, ExecutionRow, ReceiverRow, API_TOKEN_COLUMNS},
    ApiToken, AuditEntry, Change, DiskUsage, ReceiverEdit, SigningKey, StateWrite, Store, StoreError, StoreLock,
    StoreResult, StoredProject,
};
use crate::{
    config::Retention,
    domain::{
        target::Recommendation, ApiTokenId, AuditId, Decided, DedupKey, Execution, ExecutionId, Job, JobId, Millis,
        ProjectName, Receiver, ReceiverId, ServiceKey,
    },
};

/// SQLSTATEs that mean "not now" rather than "never": connection exceptions (08), too
/// many connections or out of resources (53), shutdown and restart (57P0x), a standby
/// that takes no writes (25006), serialization and deadlock (40001, 40P01), I/O (58030), a
/// lock or statement timeout (55P03, 57014).
pub fn is_transient_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "25006" | "40001" | "40P01" | "58030" | "55P03" | "57014")
}

/// Connections per pool: one for queries, one for held locks; a replica uses at most
/// twice this, plus two (notifications, the local backend's claim).
const POOL_SIZE: u32 = 16;
/// How long a query waits for a connection before the store counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The channel changes are announced on.
const CHANNEL: &str = "hookd_changes";

pub struct PgStore {
    pool: PgPool,
    /// Connections that hold advisory locks: apart, so held locks never starve queries.
    locks: PgPool,
    options: PgConnectOptions,
    retention: Retention,
    usage: Usage,
    changes: broadcast::Sender<Change>,
    /// The session holding the local backend's claim, while this hookd has it.
    local_claim: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

const RECEIVER_COLUMNS: &str =
    "id, project, name, driver, config, enabled, token_generation, created, updated, revision, verify";
const EXECUTION_COLUMNS: &str =
    "id, receiver, service, at, source, outcome, scale_from, scale_to, reason, detail, dry_run, alerts, dedup_key, job";

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(Duration::from_secs(60))
}

impl PgStore {
    pub async fn open(url: &str, retention: Retention) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("the PostgreSQL URL does not parse: {}", redact(&e.to_string(), url)))?
            .application_name("hookd")
            // A replica whose host vanished must not hold its locks for the kernel's two hours.
            .options([("tcp_keepalives_idle", "10"), ("tcp_keepalives_interval", "5"), ("tcp_keepalives_count", "3")])
            .disable_statement_logging();
        let pool = pool_options().connect_with(options.clone()).await.map_err(|e| {
            anyhow::anyhow!("connecting to PostgreSQL at {}: {}", describe(&options), redact(&e.to_string(), url))
        })?;
        // sqlx's migrator holds an advisory lock while it runs: replicas starting at once
        // apply each migration once.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let locks = pool_options().connect_lazy_with(options.clone());
        let (changes, _) = broadcast::channel(64);
        let store = Self {
            pool,
            locks,
            options,
            retention,
            usage: Usage::default(),
            changes,
            local_claim: tokio::sync::Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        };
        store.refresh_usage().await?;
        let listener = coordination::listen(store.pool.clone(), store.changes.clone());
        store.tasks.lock().expect("task list").push(listener);
        Ok(store)
    }
}

/// Where the store connects, without credentials.
fn describe(options: &PgConnectOptions) -> String {
    format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or("(default)"))
}

/// Removes the URL (and so any password in it) from a message that might quote it.
fn redact(message: &str, url: &str) -> String {
    message.replace(url, "<database_url>")
}

#[async_trait]
impl Store for PgStore {
    async fn insert_receiver(&self, r: &Receiver) -> StoreResult<()> {
        writes::insert_receiver(&self.pool, r).await?;
        if let Err(e) = self.sweep_if_due().await {
            tracing::warn!(error = %e, "could not prune the execution history; will try again");
        }
        Ok(())
    }

    async fn receiver(&self, id: ReceiverId) -> StoreResult<Option<Receiver>> {
        sqlx::query_as::<_, ReceiverRow>(&format!("SELECT {RECEIVER_COLUMNS} FROM receivers WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(ReceiverRow::into_domain)
            .transpose()
    }

    async fn list_receivers(
        &self,
        project: &ProjectName,
        limit: u32,
        after: Option<ReceiverId>,
    ) -> StoreResult<Vec<Receiver>> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        sqlx::query_as::<_, ReceiverRow>(&format!(
            "SELECT {RECEIVER_COLUMNS} FROM receivers WHERE project = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(project.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(ReceiverRow::into_domain)
        .collect()
    }

    async fn edit_receiver(&self, id: ReceiverId, edit: ReceiverEdit) -> StoreResult<Receiver> {
        writes::edit_receiver(&self.pool, id, edit).await
    }

    async fn delete_receiver(&self, id: ReceiverId) -> StoreResult<bool> {
        let (deleted, executions) = writes::delete_receiver(&self.pool, id).await?;
        self.usage.removed(executions);
        Ok(deleted)
    }

    async fn record_execution(&self, execution: &Execution, state: Option<&StateWrite>) -> StoreResult<()> {
        let inserted = writes::record_execution(&self.pool, execution, state).await?;
        if inserted {
            self.after_insert(execution.receiver).await;
        }
        Ok(())
    }

    async fn list_executions(
        &self,
        receiver: ReceiverId,
        limit: u32,
        before: Option<ExecutionId>,
    ) -> StoreResult<Vec<Execution>> {
        // UUIDv7 bytes sort in creation order, and none is all 0xff (the version nibble is 7).
        let before = before.map(|b| b.as_bytes().to_vec()).unwrap_or_else(|| vec![0xff; 16]);
        sqlx::query_as::<_, ExecutionRow>(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE receiver = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(&receiver.as_bytes()[..])
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(ExecutionRow::into_domain)
        .collect()
    }

    async fn last_change(&self, service: &ServiceKey) -> StoreResult<Option<Millis>> {
        Ok(sqlx::query_scalar("SELECT MAX(at) FROM service_changes WHERE service = $1")
            .bind(service.as_str())
            .fetch_one(&self.pool)
            .await?)
    }

    async fn record_recommendation(&self, service: &ServiceKey, recommendation: Recommendation) -> StoreResult<()> {
        let forget = recommendation.at - i64::from(crate::domain::target::MAX_STABILIZATION_SECONDS) * 1000;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM recommendations WHERE service = $1 AND at < $2")
            .bind(service.as_str())
            .bind(forget)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO recommendations (service, source, at, replicas) VALUES ($1, $2, $3, $4)")
            .bind(service.as_str())
            .bind(&recommendation.source)
            .bind(recommendation.at)
            .bind(i64::from(recommendation.replicas))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn forget_recommendations(&self, service: &ServiceKey, source: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM recommendations WHERE service = $1 AND source = $2")
            .bind(service.as_str())
            .bind(source)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn recommendations(&self, service: &ServiceKey, since: Millis) -> StoreResult<Vec<Recommendation>> {
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT at, replicas, source FROM recommendations WHERE service = $1 AND at >= $2")
                .bind(service.as_str())
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
        Ok(super::rows::recommendations(rows))
    }

    async fn last_decided(&self, receiver: ReceiverId, key: &DedupKey, since: Millis) -> StoreResult<Option<Decided>> {
        let row = sqlx::query("SELECT at, execution FROM decisions WHERE receiver = $1 AND key = $2 AND at >= $3")
            .bind(&receiver.as_bytes()[..])
            .bind(&key.as_bytes()[..])
            .bind(since)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Decided {
                at: row.try_get("at")?,
                execution: ExecutionId::from_slice(&row.try_get::<Vec<u8>, _>("execution")?)
                    .ok_or_else(|| StoreError::Corrupt("execution id".into()))?,
            })
        })
        .transpose()
    }

    async fn count_executions(&self, receiver: ReceiverId) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM executions WHERE receiver = $1")
            .bind(&receiver.as_bytes()[..])
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        let rows = sqlx::query("SELECT kid, secret, created, retired FROM signing_keys ORDER BY created, kid")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                let secret: String = row.try_get("secret")?;
                Ok(SigningKey {
                    kid: row.try_get("kid")?,
                    secret: hex::decode(secret).map_err(|_| StoreError::Corrupt("signing key secret".into()))?,
                    created: row.try_get("created")?,
                    retired: row.try_get("retired")?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        writes::insert_signing_key(&self.pool, key).await
    }

    async fn retire_signing_keys(&self, keep: &str, at: Millis) -> StoreResult<u64> {
        writes::retire_signing_keys(&self.pool, keep, at).await
    }

    async fn insert_api_token(&self, t: &ApiToken) -> StoreResult<()> {
        writes::insert_api_token(&self.pool, t).await
    }

    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        let sql = format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1");
        sqlx::query_as::<_, ApiTokenRow>(&sql)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .map(ApiTokenRow::into_domain)
            .transpose()
    }

    async fn api_token(&self, id: ApiTokenId) -> StoreResult<Option<ApiToken>> {
        let sql = format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        sqlx::query_as::<_, ApiTokenRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(ApiTokenRow::into_domain)
            .transpose()
    }

    async fn count_api_tokens(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens").fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    async fn list_api_tokens(&self, project: Option<&ProjectName>) -> StoreResult<Vec<ApiToken>> {
        let sql = format!(
            "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE ($1::TEXT IS NULL OR project = $1) ORDER BY created, id"
        );
        sqlx::query_as::<_, ApiTokenRow>(&sql)
            .bind(project.map(|p| p.as_str().to_owned()))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(ApiTokenRow::into_domain)
            .collect()
    }

    async fn delete_api_token(&self, id: ApiTokenId) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM api_tokens WHERE id = $1").bind(id.to_string()).execute(&self.pool).await?;
        Ok(n.rows_affected() > 0)
    }

    async fn projects(&self) -> StoreResult<Vec<StoredProject>> {
        let rows =
            sqlx::query("SELECT name, backend, created FROM projects ORDER BY name").fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                Ok(StoredProject {
                    name: ProjectName::parse(&name).map_err(|_| StoreError::Corrupt("project name".into()))?,
                    backend: row.try_get("backend")?,
                    created: row.try_get("created")?,
                })
            })
            .collect()
    }

    async fn insert_project(&self, project: &StoredProject) -> StoreResult<()> {
        writes::insert_project(&self.pool, project).await
    }

    async fn delete_project(&self, name: &ProjectName) -> StoreResult<bool> {
        writes::delete_project(&self.pool, name).await
    }

    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        writes::record_audit(&self.pool, entry).await
    }

    async fn list_audit(
        &self,
        project: Option<&ProjectName>,
        limit: u32,
        before: Option<AuditId>,
    ) -> StoreResult<Vec<AuditEntry>> {
        writes::list_audit(&self.pool, project, limit, before).await
    }

    async fn local_scales(&self, backend: &str) -> StoreResult<HashMap<String, u32>> {
        let rows = sqlx::query("SELECT service, scale FROM local_scales WHERE backend = $1")
            .bind(backend)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                let scale: i64 = row.try_get("scale")?;
                Ok((
                    row.try_get("service")?,
                    u32::try_from(scale).map_err(|_| StoreError::Corrupt("local scale".into()))?,
                ))
            })
            .collect()
    }

    async fn local_images(&self, backend: &str) -> StoreResult<HashMap<String, String>> {
        let rows = sqlx::query("SELECT service, image FROM local_images WHERE backend = $1")
            .bind(backend)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|row| Ok((row.try_get("service")?, row.try_get("image")?))).collect()
    }

    async fn save_state(&self, state: &StateWrite) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        writes::write_state(&mut tx, state).await?;
        Ok(tx.commit().await?)
    }

    async fn save_job(&self, job: &Job, execution: Option<&Execution>) -> StoreResult<()> {
        let inserted = writes::save_job(&self.pool, job, execution).await?;
        if let (true, Some(e)) = (inserted, execution) {
            self.after_insert(e.receiver).await;
        }
        Ok(())
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<Job>> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM jobs WHERE id = $1")
            .bind(&id.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await?;
        body.map(|b| job_from_json(id.as_bytes(), &b)).transpose()
    }

    async fn list_jobs(&self, receiver: ReceiverId, limit: u32) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query("SELECT id, body FROM jobs WHERE receiver = $1 ORDER BY id DESC LIMIT $2")
            .bind(&receiver.as_bytes()[..])
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        writes::jobs_from_rows(rows)
    }

    async fn running_jobs(&self) -> StoreResult<Vec<Job>> {
        let rows =
            sqlx::query("SELECT id, body FROM jobs WHERE state = 'running' ORDER BY id").fetch_all(&self.pool).await?;
        writes::jobs_from_rows(rows)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn lock(&self, name: &str, wait: Duration) -> StoreResult<Option<StoreLock>> {
        coordination::lock(&self.locks, name, wait).await
    }

    fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }

    async fn claim_job(&self, id: JobId, owner: &str, lease: Millis) -> StoreResult<bool> {
        coordination::claim_job(&self.pool, id, owner, lease).await
    }

    async fn orphaned_jobs(&self) -> StoreResult<Vec<Job>> {
        coordination::orphaned_jobs(&self.pool).await
    }

    async fn claim_local_backend(&self) -> StoreResult<bool> {
        coordination::claim_local_backend(&self.options, &self.local_claim).await
    }

    async fn sealing_check(&self, check: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ('sealing_check', $1) ON CONFLICT (name) DO NOTHING")
            .bind(check)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = 'sealing_check'").fetch_one(&self.pool).await?)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn disk_usage(&self) -> DiskUsage {
        self.usage.snapshot()
    }

    async fn close(&self) {
        for task in self.tasks.lock().expect("task list").drain(..) {
            task.abort();
        }
        if let Some(conn) = self.local_claim.lock().await.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
        self.locks.close().await;
        self.pool.close().await;
    }
}
