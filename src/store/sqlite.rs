//! SQLite store: WAL mode, a read pool, and one writer task that group-commits the hot-path writes.
//!
//! Executions and local scales are written by [`Writer`]: whatever is queued when it wakes
//! goes into one transaction, and every caller is acknowledged only after that commit.
//! With `synchronous = NORMAL` a commit survives the process being killed (kill -9); only
//! an operating-system crash can lose the last commits before a checkpoint.
//!
//! One hookd process owns a SQLite database, so the store caches receivers (the trigger
//! path reads one per request) and keeps the cache in step with its own writes.

use std::{collections::HashMap, str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous},
    ConnectOptions, Connection, Row, SqliteConnection,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    rows::{alerts_to_json, config_to_json, ApiTokenRow, ExecutionRow, ReceiverRow},
    ApiToken, SigningKey, Store, StoreError, StoreResult,
};
use crate::domain::{Execution, ExecutionId, Millis, ProjectName, Receiver, ReceiverId};

/// Most writes committed in one transaction; bounds the latency of the batch's first caller.
const MAX_BATCH: usize = 1024;

enum WriteOp {
    Execution(Execution),
    LocalScale {
        backend: String,
        service: String,
        scale: u32,
    },
    /// Nothing to write: its acknowledgement says everything queued before it is durable.
    Barrier,
}

/// A write, and who wants to hear it committed (nobody, for a queued write).
type Ack = Option<oneshot::Sender<StoreResult<()>>>;

enum WriterMsg {
    Write(WriteOp, Ack),
    Close(oneshot::Sender<()>),
}

/// How often the WAL is checkpointed, off the commit path.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<WriterMsg>,
    receivers: ReceiverCache,
}

/// Most receivers kept in memory; past it, an arbitrary entry makes room.
const CACHE_CAPACITY: usize = 100_000;

#[derive(Default)]
struct ReceiverCache(std::sync::RwLock<HashMap<ReceiverId, Receiver>>);

impl ReceiverCache {
    fn get(&self, id: ReceiverId) -> Option<Receiver> {
        self.0.read().expect("receiver cache lock").get(&id).cloned()
    }

    fn put(&self, receiver: &Receiver) {
        let mut map = self.0.write().expect("receiver cache lock");
        if map.len() >= CACHE_CAPACITY && !map.contains_key(&receiver.id) {
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
        map.insert(receiver.id, receiver.clone());
    }

    fn forget(&self, id: ReceiverId) {
        self.0.write().expect("receiver cache lock").remove(&id);
    }
}

impl SqliteStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-16000")
            // Checkpoints run in a background task: inside a commit they stall every trigger queued behind it.
            .pragma("wal_autocheckpoint", "0")
            .disable_statement_logging();
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let conn = options.connect().await?;
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(Writer { conn, rx }.run());
        tokio::spawn(checkpoints(pool.clone()));
        Ok(Self { pool, writer: tx, receivers: ReceiverCache::default() })
    }

    async fn write(&self, op: WriteOp) -> StoreResult<()> {
        let (ack, done) = oneshot::channel();
        self.writer.send(WriterMsg::Write(op, Some(ack))).await.map_err(|_| StoreError::WriterGone)?;
        done.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn queue(&self, op: WriteOp) -> StoreResult<()> {
        self.writer.send(WriterMsg::Write(op, None)).await.map_err(|_| StoreError::WriterGone)
    }
}

/// Keeps the WAL short without blocking writers (PASSIVE never waits for them).
async fn checkpoints(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            if !pool.is_closed() {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    }
}

struct Writer {
    conn: SqliteConnection,
    rx: mpsc::Receiver<WriterMsg>,
}

impl Writer {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.rx.recv().await {
            let mut next = Some(first);
            let mut closing = None;
            while let Some(msg) = next.take() {
                match msg {
                    WriterMsg::Write(op, ack) => batch.push((op, ack)),
                    WriterMsg::Close(done) => closing = Some(done),
                }
                if batch.len() < MAX_BATCH && closing.is_none() {
                    next = self.rx.try_recv().ok();
                }
            }
            self.commit(&mut batch).await;
            if let Some(done) = closing {
                let _ = self.conn.close().await;
                let _ = done.send(());
                return;
            }
        }
    }

    async fn commit(&mut self, batch: &mut Vec<(WriteOp, Ack)>) {
        if batch.is_empty() {
            return;
        }
        let ops: Vec<&WriteOp> = batch.iter().map(|(op, _)| op).collect();
        match write_all(&mut self.conn, &ops).await {
            Ok(()) => {
                for (_, ack) in batch.drain(..) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(()));
                    }
                }
            }
            // One bad write must not fail its neighbours: retry each alone for its own answer.
            Err(_) => {
                for (op, ack) in batch.drain(..) {
                    let result = write_all(&mut self.conn, &[&op]).await;
                    match ack {
                        Some(ack) => {
                            let _ = ack.send(result);
                        }
                        None => {
                            if let Err(e) = result {
                                tracing::error!(error = %e, "a queued write failed");
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn write_all(conn: &mut SqliteConnection, ops: &[&WriteOp]) -> StoreResult<()> {
    let mut tx = conn.begin().await?;
    for op in ops {
        match op {
            WriteOp::Execution(e) => {
                sqlx::query(
                    "INSERT INTO executions (id, receiver_id, at, source, outcome, scale_from, scale_to, reason, \
                     detail, dry_run, alerts, dedup_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(e.id.to_string())
                .bind(e.receiver.to_string())
                .bind(e.at)
                .bind(&e.source)
                .bind(e.outcome.as_str())
                .bind(e.from.map(i64::from))
                .bind(e.to.map(i64::from))
                .bind(&e.reason)
                .bind(&e.detail)
                .bind(e.dry_run)
                .bind(alerts_to_json(&e.alerts))
                .bind(&e.dedup_key)
                .execute(&mut *tx)
                .await?;
            }
            WriteOp::LocalScale { backend, service, scale } => {
                sqlx::query(
                    "INSERT INTO local_scales (backend, service, scale) VALUES (?, ?, ?) \
                     ON CONFLICT (backend, service) DO UPDATE SET scale = excluded.scale",
                )
                .bind(backend)
                .bind(service)
                .bind(i64::from(*scale))
                .execute(&mut *tx)
                .await?;
            }
            WriteOp::Barrier => {}
        }
    }
    tx.commit().await?;
    Ok(())
}

fn unique_violation(err: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => StoreError::Database(err),
    }
}

const RECEIVER_COLUMNS: &str = "id, project, name, driver, config, enabled, token_generation, created, updated";
const EXECUTION_COLUMNS: &str =
    "id, receiver_id, at, source, outcome, scale_from, scale_to, reason, detail, dry_run, alerts, dedup_key";

#[async_trait]
impl Store for SqliteStore {
    async fn insert_receiver(&self, r: &Receiver) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO receivers ({RECEIVER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(r.id.to_string())
            .bind(r.project.as_str())
            .bind(r.name.as_str())
            .bind(r.config.driver().as_str())
            .bind(config_to_json(&r.config))
            .bind(r.enabled)
            .bind(i64::from(r.token_generation))
            .bind(r.created)
            .bind(r.updated)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                unique_violation(e, || {
                    format!("a receiver named {:?} already exists in project {}", r.name.as_str(), r.project)
                })
            })?;
        self.receivers.put(r);
        Ok(())
    }

    async fn receiver(&self, id: ReceiverId) -> StoreResult<Option<Receiver>> {
        if let Some(hit) = self.receivers.get(id) {
            return Ok(Some(hit));
        }
        let found = sqlx::query_as::<_, ReceiverRow>(&format!("SELECT {RECEIVER_COLUMNS} FROM receivers WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(ReceiverRow::into_domain)
            .transpose()?;
        if let Some(r) = &found {
            self.receivers.put(r);
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

    async fn update_receiver(&self, r: &Receiver) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE receivers SET name = ?, config = ?, enabled = ?, token_generation = ?, updated = ? WHERE id = ?",
        )
        .bind(r.name.as_str())
        .bind(config_to_json(&r.config))
        .bind(r.enabled)
        .bind(i64::from(r.token_generation))
        .bind(r.updated)
        .bind(r.id.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            unique_violation(e, || {
                format!("a receiver named {:?} already exists in project {}", r.name.as_str(), r.project)
            })
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.receivers.put(r);
        Ok(())
    }

    async fn delete_receiver(&self, id: ReceiverId) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM receivers WHERE id = ?").bind(id.to_string()).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM executions WHERE receiver_id = ?").bind(id.to_string()).execute(&mut *tx).await?;
        tx.commit().await?;
        self.receivers.forget(id);
        Ok(done.rows_affected() > 0)
    }

    async fn record_execution(&self, execution: &Execution) -> StoreResult<()> {
        self.write(WriteOp::Execution(execution.clone())).await
    }

    async fn list_executions(
        &self,
        receiver: ReceiverId,
        limit: u32,
        before: Option<ExecutionId>,
    ) -> StoreResult<Vec<Execution>> {
        // Hex UUIDv7 strings sort in creation order; "g" sorts after every hex string.
        let before = before.map(|b| b.to_string()).unwrap_or_else(|| "g".to_owned());
        sqlx::query_as::<_, ExecutionRow>(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE receiver_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(receiver.to_string())
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(ExecutionRow::into_domain)
        .collect()
    }

    async fn last_change(&self, receiver: ReceiverId) -> StoreResult<Option<Millis>> {
        let at = sqlx::query_scalar(
            "SELECT at FROM executions WHERE receiver_id = ? AND outcome = 'scaled' AND dry_run = 0 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(receiver.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(at)
    }

    async fn last_decided(&self, receiver: ReceiverId, dedup_key: &str) -> StoreResult<Option<Millis>> {
        let at = sqlx::query_scalar(
            "SELECT at FROM executions WHERE receiver_id = ? AND dedup_key = ? \
             AND outcome IN ('scaled', 'unchanged') AND dry_run = 0 ORDER BY id DESC LIMIT 1",
        )
        .bind(receiver.to_string())
        .bind(dedup_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(at)
    }

    async fn count_executions(&self, receiver: ReceiverId) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM executions WHERE receiver_id = ?")
            .bind(receiver.to_string())
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
        sqlx::query(
            "INSERT INTO signing_keys (kid, secret, created, retired) VALUES (?, ?, ?, ?) ON CONFLICT (kid) DO NOTHING",
        )
        .bind(&key.kid)
        .bind(hex::encode(&key.secret))
        .bind(key.created)
        .bind(key.retired)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_api_token(&self, t: &ApiToken) -> StoreResult<()> {
        sqlx::query("INSERT INTO api_tokens (id, name, hash, role, project, created) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(t.id.to_string())
            .bind(&t.name)
            .bind(&t.hash)
            .bind(t.role.as_str())
            .bind(t.project.as_ref().map(|p| p.as_str().to_owned()))
            .bind(t.created)
            .execute(&self.pool)
            .await
            .map_err(|e| unique_violation(e, || "this API token already exists".to_owned()))?;
        Ok(())
    }

    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        sqlx::query_as::<_, ApiTokenRow>("SELECT id, name, hash, role, project, created FROM api_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .map(ApiTokenRow::into_domain)
            .transpose()
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

    async fn set_local_scale(&self, backend: &str, service: &str, scale: u32) -> StoreResult<()> {
        self.queue(WriteOp::LocalScale { backend: backend.to_owned(), service: service.to_owned(), scale }).await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.write(WriteOp::Barrier).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.writer.send(WriterMsg::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await;
        self.pool.close().await;
    }
}
