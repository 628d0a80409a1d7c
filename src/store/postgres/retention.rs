//! Retention on PostgreSQL, by the same limits as SQLite's: per receiver, in all, by age.
//!
//! Each replica counts the rows it adds and prunes a receiver once it has added a tenth
//! of the limit (the DELETE keeps the newest whoever wrote them); the total and age limits
//! are enforced on the write after each sweep falls due. Counts for `/metrics` are this
//! replica's view, corrected from the table at every age sweep.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Mutex,
    },
};

use super::{
    super::{DiskUsage, StoreResult},
    PgStore,
};
use crate::domain::{now_millis, scale::MAX_WINDOW_SECONDS, Millis, ReceiverId};

/// Most rows one prune statement deletes.
const CHUNK: i64 = 500;
const AGE_SWEEP_MS: Millis = 60_000;
/// Decisions are kept this long: the longest dedup window, and a day.
const DECISIONS_KEPT_MS: Millis = (MAX_WINDOW_SECONDS as Millis + 86_400) * 1000;

#[derive(Default)]
pub struct Usage {
    executions: AtomicI64,
    database_bytes: AtomicU64,
    writable: AtomicBool,
    /// When the next age sweep is due; 0: at the first write.
    next_sweep: AtomicI64,
    /// Rows this replica added per receiver since it last pruned that receiver.
    added: Mutex<HashMap<ReceiverId, u32>>,
}

impl Usage {
    pub fn snapshot(&self) -> DiskUsage {
        DiskUsage {
            database_bytes: self.database_bytes.load(Ordering::Relaxed),
            wal_bytes: 0,
            wal_peak_bytes: 0,
            executions: self.executions.load(Ordering::Relaxed).max(0) as u64,
            writable: self.writable.load(Ordering::Relaxed),
        }
    }

    pub fn removed(&self, rows: u64) {
        self.executions.fetch_sub(rows as i64, Ordering::Relaxed);
    }
}

impl PgStore {
    pub(super) async fn refresh_usage(&self) -> StoreResult<()> {
        let (rows, bytes): (i64, i64) =
            sqlx::query_as("SELECT (SELECT COUNT(*) FROM executions), pg_database_size(current_database())")
                .fetch_one(&self.pool)
                .await?;
        self.usage.executions.store(rows, Ordering::Relaxed);
        self.usage.database_bytes.store(bytes.max(0) as u64, Ordering::Relaxed);
        self.usage.writable.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// After an execution row was added: prune what passed the limits. A failure to prune
    /// is logged, never the writer's error: the row it follows is durable.
    pub(super) async fn after_insert(&self, receiver: ReceiverId) {
        self.usage.executions.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.prune(receiver).await {
            tracing::warn!(error = %e, "could not prune the execution history; will try again");
        }
    }

    async fn prune(&self, receiver: ReceiverId) -> StoreResult<()> {
        let limits = self.retention;
        let per_receiver = i64::from(limits.per_receiver);
        if per_receiver > 0 {
            let slack = (limits.per_receiver / 10).max(1);
            let due = {
                let mut added = self.usage.added.lock().expect("retention counts");
                let n = added.entry(receiver).or_default();
                *n += 1;
                let due = *n >= slack;
                if due {
                    *n = 0;
                }
                due
            };
            if due {
                let deleted = sqlx::query(
                    "DELETE FROM executions WHERE receiver = $1 AND id < (SELECT id FROM executions \
                     WHERE receiver = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
                )
                .bind(&receiver.as_bytes()[..])
                .bind(per_receiver - 1)
                .execute(&self.pool)
                .await?;
                self.usage.removed(deleted.rows_affected());
            }
        }
        let total = i64::from(limits.total);
        if total > 0 && self.usage.executions.load(Ordering::Relaxed) > total + (total / 100).max(1) {
            let excess = (self.usage.executions.load(Ordering::Relaxed) - total).min(CHUNK);
            let deleted =
                sqlx::query("DELETE FROM executions WHERE seq IN (SELECT seq FROM executions ORDER BY seq LIMIT $1)")
                    .bind(excess)
                    .execute(&self.pool)
                    .await?;
            self.usage.removed(deleted.rows_affected());
        }
        self.sweep_if_due().await
    }

    /// Runs the age sweep when it is due: at the first write after the store opens, then
    /// once a minute (as SQLite's writer does).
    pub(super) async fn sweep_if_due(&self) -> StoreResult<()> {
        let now = now_millis();
        let due = self.usage.next_sweep.load(Ordering::Relaxed);
        if now >= due
            && self
                .usage
                .next_sweep
                .compare_exchange(due, now + AGE_SWEEP_MS, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now).await?;
        }
        Ok(())
    }

    /// Deletes rows past their age (a chunk per table; a full chunk makes the next write
    /// sweep again), old decisions, and decisions past the total limit.
    async fn sweep(&self, now: Millis) -> StoreResult<()> {
        let limits = self.retention;
        let mut full = false;
        if limits.max_age_days > 0 {
            let cutoff = now - i64::from(limits.max_age_days) * 86_400_000;
            for sql in [
                "DELETE FROM executions WHERE seq IN (SELECT seq FROM executions WHERE at < $1 ORDER BY seq LIMIT $2)",
                // Finished jobs go with the history of their age; a running one never does.
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state != 'running' AND created < $1 LIMIT $2)",
                // The audit log is kept as long as the history it explains.
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 LIMIT $2)",
            ] {
                let n = sqlx::query(sql).bind(cutoff).bind(CHUNK).execute(&self.pool).await?.rows_affected();
                full |= n == CHUNK as u64;
            }
        }
        let changes = sqlx::query(
            "DELETE FROM service_changes WHERE ctid IN (SELECT ctid FROM service_changes WHERE at < $1 LIMIT $2)",
        )
        .bind(now - DECISIONS_KEPT_MS)
        .bind(CHUNK)
        .execute(&self.pool)
        .await?
        .rows_affected();
        full |= changes == CHUNK as u64;
        let n = sqlx::query(
            "DELETE FROM decisions WHERE (receiver, key) IN \
             (SELECT receiver, key FROM decisions WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(now - DECISIONS_KEPT_MS)
        .bind(CHUNK)
        .execute(&self.pool)
        .await?
        .rows_affected();
        full |= n == CHUNK as u64;
        if limits.total > 0 {
            let decisions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM decisions").fetch_one(&self.pool).await?;
            let excess = (decisions - i64::from(limits.total)).clamp(0, CHUNK);
            sqlx::query(
                "DELETE FROM decisions WHERE (receiver, key) IN \
                 (SELECT receiver, key FROM decisions ORDER BY at LIMIT $1)",
            )
            .bind(excess)
            .execute(&self.pool)
            .await?;
        }
        if full {
            self.usage.next_sweep.store(0, Ordering::Relaxed);
        }
        self.refresh_usage().await
    }
}
