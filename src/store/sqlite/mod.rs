//! SQLite store: WAL mode, a read pool (sqlx), and one writer thread (rusqlite) for every write.
//!
//! The writer ([`writer`]) group-commits, recovers from failed batches, keeps the log short
//! and applies retention. One hookd process owns a SQLite file (an `flock` on `<db>.lock`
//! enforces it), so the store keeps receivers and recent history in memory ([`cache`]) and
//! the trigger path rarely reads SQL; the writer updates those views after each commit,
//! before it answers.

mod access;
mod cache;
mod checkpointer;
mod ops;
mod retention;
mod writer;

use std::{
    collections::HashMap,
    fs::File,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{atomic::Ordering, mpsc, Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use async_trait::async_trait;
use nix::fcntl::Flock;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous},
    ConnectOptions, Row,
};
use tokio::sync::oneshot;

use self::{
    cache::{HistoryCache, Lookup, ReceiverCache},
    ops::{Done, Op},
    writer::{Msg, Status, Writer},
};
use super::{
    rows::{job_from_json, ApiTokenRow, ExecutionRow, ReceiverRow, API_TOKEN_COLUMNS},
    ApiToken, AuditEntry, DiskUsage, ReceiverEdit, SigningKey, StateWrite, Store, StoreError, StoreResult,
    StoredProject,
};
use crate::{
    config::Retention,
    datadir,
    domain::{
        now_millis, target::Recommendation, ApiTokenId, AuditId, Decided, DedupKey, Execution, ExecutionId, Job, JobId,
        Millis, ProjectName, Receiver, ReceiverId, ServiceKey,
    },
};

/// SQLite result codes that mean "not now" rather than "never": busy, locked, out of
/// memory, I/O error, disk full, cannot open, lock protocol.
pub fn is_transient_code(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 10 | 13 | 14 | 15))
}

/// Pages of a new database. Small pages make small writes: each trigger changes one page
/// of its receiver's history index, and the whole page goes to the log (only new
/// databases get it; SQLite cannot change the page size of one in WAL mode).
const PAGE_SIZE: u32 = 1024;

pub struct SqliteStore {
    path: PathBuf,
    pool: SqlitePool,
    writer: mpsc::Sender<Msg>,
    receivers: Arc<ReceiverCache>,
    history: Arc<HistoryCache>,
    status: Arc<Status>,
    /// Released at `close`, so a restarted hookd in the same process can open the file.
    lock: Mutex<Option<Flock<File>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Creates the database file private to its owner, and tightens older files.
fn prepare_files(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        if file.exists() {
            datadir::restrict(&file, 0o600)?;
        }
    }
    Ok(())
}

impl SqliteStore {
    pub async fn open(url: &str, retention: Retention) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .page_size(PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .pragma("wal_autocheckpoint", "0")
            .disable_statement_logging();
        let path = options.get_filename().to_owned();
        if path.as_os_str().is_empty() || path == Path::new(":memory:") {
            anyhow::bail!("hookd keeps its SQLite database in a file; {url:?} names none");
        }
        prepare_files(&path)?;
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let lock = datadir::lock_file(Path::new(&lock_name), &format!("the database {}", path.display()))?;
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;

        // Memory starts empty: it lacks the decisions made before now, and no others.
        let newest: Option<Millis> = sqlx::query_scalar("SELECT MAX(at) FROM decisions").fetch_one(&pool).await?;
        let receivers = Arc::new(ReceiverCache::default());
        let history = Arc::new(HistoryCache::new(newest.map_or(Millis::MIN, |at| at.max(now_millis()) + 1)));
        let status = Arc::new(Status::default());
        let (tx, rx) = mpsc::channel();
        let writer = {
            let (path, receivers, history, status) = (path.clone(), receivers.clone(), history.clone(), status.clone());
            tokio::task::spawn_blocking(move || Writer::open(path, rx, receivers, history, status, retention)).await??
        };
        let thread = std::thread::Builder::new().name("hookd-sqlite-writer".into()).spawn(move || writer.run())?;
        Ok(Self {
            path,
            pool,
            writer: tx,
            receivers,
            history,
            status,
            lock: Mutex::new(Some(lock)),
            thread: Mutex::new(Some(thread)),
        })
    }

    async fn write(&self, op: Op) -> StoreResult<Done> {
        let (reply, done) = oneshot::channel();
        self.writer.send(Msg::Write(op, reply)).map_err(|_| StoreError::WriterGone)?;
        done.await.map_err(|_| StoreError::WriterGone)?
    }
}

const RECEIVER_COLUMNS: &str =
    "id, project, name, driver, config, enabled, token_generation, created, updated, revision, verify";
const EXECUTION_COLUMNS: &str =
    "id, receiver, service, at, source, outcome, scale_from, scale_to, reason, detail, dry_run, alerts, dedup_key, job";

#[async_trait]
impl Store for SqliteStore {
    async fn insert_receiver(&self, r: &Receiver) -> StoreResult<()> {
        self.write(Op::InsertReceiver(r.clone())).await.map(drop)
    }

    async fn receiver(&self, id: ReceiverId) -> StoreResult<Option<Receiver>> {
        if let Some(hit) = self.receivers.get(id) {
            return Ok(Some(hit));
        }
        let epoch = self.receivers.epoch();
        let found = sqlx::query_as::<_, ReceiverRow>(&format!("SELECT {RECEIVER_COLUMNS} FROM receivers WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(ReceiverRow::into_domain)
            .transpose()?;
        if let Some(r) = &found {
            self.receivers.fill(r, epoch);
        }
        Ok(found)
    }

    async fn list_receivers(
        &self,
        project: &ProjectName,
        limit: u32,
        after: Option<ReceiverId>,
    ) -> StoreResult<Vec<Receiver>> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        sqlx::query_as::<_, ReceiverRow>(&format!(
            "SELECT {RECEIVER_COLUMNS} FROM receivers WHERE project = ? AND id > ? ORDER BY id LIMIT ?"
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
        match self.write(Op::EditReceiver(id, Some(edit))).await? {
            Done::Updated(updated) => Ok(*updated),
            other => Err(StoreError::Corrupt(format!("the writer answered an update with {other:?}"))),
        }
    }

    async fn delete_receiver(&self, id: ReceiverId) -> StoreResult<bool> {
        match self.write(Op::DeleteReceiver(id)).await? {
            Done::Deleted(deleted) => Ok(deleted),
            other => Err(StoreError::Corrupt(format!("the writer answered a delete with {other:?}"))),
        }
    }

    async fn record_execution(&self, execution: &Execution, state: Option<&StateWrite>) -> StoreResult<()> {
        self.write(Op::Execution { execution: execution.clone(), state: state.cloned() }).await.map(drop)
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
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE receiver = ? AND id < ? ORDER BY id DESC LIMIT ?"
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
        if let Some(known) = self.history.last_change(service) {
            return Ok(known);
        }
        let at: Option<Millis> = sqlx::query_scalar("SELECT at FROM service_changes WHERE service = ?")
            .bind(service.as_str())
            .fetch_optional(&self.pool)
            .await?;
        self.history.fill_change(service, at);
        Ok(self.history.last_change(service).flatten())
    }

    async fn record_recommendation(&self, service: &ServiceKey, recommendation: Recommendation) -> StoreResult<()> {
        self.write(Op::Recommendation(service.as_str().to_owned(), recommendation)).await.map(drop)
    }

    async fn forget_recommendations(&self, service: &ServiceKey, source: &str) -> StoreResult<()> {
        self.write(Op::ForgetRecommendations(service.as_str().to_owned(), source.to_owned())).await.map(drop)
    }

    async fn recommendations(&self, service: &ServiceKey, since: Millis) -> StoreResult<Vec<Recommendation>> {
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT at, replicas, source FROM recommendations WHERE service = ? AND at >= ?")
                .bind(service.as_str())
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
        Ok(super::rows::recommendations(rows))
    }

    async fn last_decided(&self, receiver: ReceiverId, key: &DedupKey, since: Millis) -> StoreResult<Option<Decided>> {
        if let Lookup::Known(answer) = self.history.decided(receiver, key, since) {
            return Ok(answer);
        }
        let row = sqlx::query("SELECT at, execution FROM decisions WHERE receiver = ? AND key = ?")
            .bind(&receiver.as_bytes()[..])
            .bind(&key.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await?;
        let found = match row {
            Some(row) => Some(Decided {
                at: row.try_get("at")?,
                execution: ExecutionId::from_slice(&row.try_get::<Vec<u8>, _>("execution")?)
                    .ok_or_else(|| StoreError::Corrupt("execution id".into()))?,
            }),
            None => None,
        };
        self.history.fill_decision(receiver, key, found);
        Ok(found.filter(|d| d.at >= since))
    }

    async fn count_executions(&self, receiver: ReceiverId) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM executions WHERE receiver = ?")
            .bind(&receiver.as_bytes()[..])
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        let rows = sqlx::query("SELECT kid, secret, created, retired FROM signing_keys ORDER BY created")
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
        self.write(Op::InsertSigningKey(key.clone())).await.map(drop)
    }

    async fn insert_api_token(&self, t: &ApiToken) -> StoreResult<()> {
        self.write(Op::InsertApiToken(t.clone())).await.map(drop)
    }

    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        let sql = format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?");
        sqlx::query_as::<_, ApiTokenRow>(&sql)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .map(ApiTokenRow::into_domain)
            .transpose()
    }

    async fn api_token(&self, id: ApiTokenId) -> StoreResult<Option<ApiToken>> {
        self.api_token_by_id(id).await
    }

    async fn list_api_tokens(&self, project: Option<&ProjectName>) -> StoreResult<Vec<ApiToken>> {
        self.api_tokens_of(project).await
    }

    async fn delete_api_token(&self, id: ApiTokenId) -> StoreResult<bool> {
        self.write(Op::DeleteApiToken(id)).await.map(|d| matches!(d, Done::Deleted(true)))
    }

    async fn retire_signing_keys(&self, keep: &str, at: Millis) -> StoreResult<u64> {
        let done = self.write(Op::RetireSigningKeys { keep: keep.to_owned(), at }).await?;
        Ok(if let Done::Count(n) = done { n } else { 0 })
    }

    async fn projects(&self) -> StoreResult<Vec<StoredProject>> {
        self.stored_projects().await
    }

    async fn insert_project(&self, project: &StoredProject) -> StoreResult<()> {
        self.write(Op::InsertProject(project.clone())).await.map(drop)
    }

    async fn delete_project(&self, name: &ProjectName) -> StoreResult<bool> {
        self.write(Op::DeleteProject(name.clone())).await.map(|d| matches!(d, Done::Deleted(true)))
    }

    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.write(Op::Audit(entry.clone())).await.map(drop)
    }

    async fn list_audit(
        &self,
        project: Option<&ProjectName>,
        limit: u32,
        before: Option<AuditId>,
    ) -> StoreResult<Vec<AuditEntry>> {
        self.audit_entries(project, limit, before).await
    }

    async fn count_api_tokens(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens").fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    async fn local_scales(&self, backend: &str) -> StoreResult<HashMap<String, u32>> {
        let rows = sqlx::query("SELECT service, scale FROM local_scales WHERE backend = ?")
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
        let rows = sqlx::query("SELECT service, image FROM local_images WHERE backend = ?")
            .bind(backend)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|row| Ok((row.try_get("service")?, row.try_get("image")?))).collect()
    }

    async fn save_state(&self, state: &StateWrite) -> StoreResult<()> {
        self.write(Op::State(state.clone())).await.map(drop)
    }

    async fn save_job(&self, job: &Job, execution: Option<&Execution>) -> StoreResult<()> {
        self.write(Op::Job { job: job.clone(), execution: execution.cloned() }).await.map(drop)
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<Job>> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM jobs WHERE id = ?")
            .bind(&id.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await?;
        body.map(|b| job_from_json(id.as_bytes(), &b)).transpose()
    }

    async fn list_jobs(&self, receiver: ReceiverId, limit: u32) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query("SELECT id, body FROM jobs WHERE receiver = ? ORDER BY id DESC LIMIT ?")
            .bind(&receiver.as_bytes()[..])
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| job_from_json(&row.try_get::<Vec<u8>, _>("id")?, &row.try_get::<String, _>("body")?))
            .collect()
    }

    async fn running_jobs(&self) -> StoreResult<Vec<Job>> {
        let rows =
            sqlx::query("SELECT id, body FROM jobs WHERE state = 'running' ORDER BY id").fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| job_from_json(&row.try_get::<Vec<u8>, _>("id")?, &row.try_get::<String, _>("body")?))
            .collect()
    }

    async fn ping(&self) -> StoreResult<()> {
        // Only a real write tells whether the disk takes writes; one that just committed will do.
        let recent = now_millis() - self.status.last_commit.load(Ordering::Relaxed) < 1_000;
        if !(recent && self.status.healthy.load(Ordering::Relaxed)) {
            self.write(Op::Probe).await?;
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn disk_usage(&self) -> DiskUsage {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        DiskUsage {
            database_bytes: size(&self.path),
            wal_bytes: size(&writer::wal_path(&self.path)),
            wal_peak_bytes: self.status.wal_peak_bytes.load(Ordering::Relaxed),
            executions: self.status.executions.load(Ordering::Relaxed),
            writable: self.status.healthy.load(Ordering::Relaxed),
        }
    }

    async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.writer.send(Msg::Close(done)).is_ok() {
            let _ = closed.await;
        }
        let thread = self.thread.lock().expect("writer thread handle").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.pool.close().await;
        self.lock.lock().expect("database lock").take();
    }
}
