//! Execution retention: by count per receiver, by count in all, and by age. Decisions on
//! dedup keys are kept apart, for the longest dedup window, so that pruning the history
//! never lets a retry act twice; only more of them than the total limit cuts that short.
//!
//! The writer thread prunes inside its own transactions, a bounded chunk at a time, so the
//! history never grows past its limits under load and no single batch stalls for long.
//! Deleted pages go to SQLite's free list and are reused by later rows, so the file stops
//! growing once the limits are reached.

use std::{collections::HashMap, time::Duration};

use rusqlite::Connection;
use tokio::time::Instant;

use crate::{
    config::Retention,
    domain::{scale::MAX_WINDOW_SECONDS, Millis, ReceiverId},
};

/// Most rows one prune statement deletes, so a batch never waits long behind it.
const CHUNK: u32 = 500;
/// How often rows past their age are looked for.
const AGE_SWEEP: Duration = Duration::from_secs(60);
/// Decisions are kept this long: the longest dedup window, and a day.
const DECISIONS_KEPT_MS: Millis = (MAX_WINDOW_SECONDS as Millis + 86_400) * 1000;

/// Rows held, per receiver and in all, as the last commit left them.
pub struct Pruner {
    limits: Retention,
    per_receiver: HashMap<ReceiverId, i64>,
    total: i64,
    next_age_sweep: Instant,
    /// Decisions beyond the total limit, as last counted; deleted a chunk at a time.
    decisions_excess: i64,
}

/// What a batch changes in the counts; applied only once it commits.
#[derive(Default)]
pub struct Delta {
    added: HashMap<ReceiverId, i64>,
    total: i64,
    dropped: Vec<ReceiverId>,
}

impl Delta {
    pub fn inserted(&mut self, receiver: ReceiverId) {
        *self.added.entry(receiver).or_default() += 1;
        self.total += 1;
    }

    pub fn receiver_deleted(&mut self, receiver: ReceiverId) {
        self.dropped.push(receiver);
    }

    fn deleted(&mut self, receiver: ReceiverId, rows: i64) {
        *self.added.entry(receiver).or_default() -= rows;
        self.total -= rows;
    }
}

impl Pruner {
    pub fn load(conn: &Connection, limits: Retention) -> rusqlite::Result<Self> {
        let mut per_receiver = HashMap::new();
        let mut total = 0;
        let mut stmt = conn.prepare("SELECT receiver, COUNT(*) FROM executions GROUP BY receiver")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let n: i64 = row.get(1)?;
            total += n;
            if let Some(id) = ReceiverId::from_slice(&row.get::<_, Vec<u8>>(0)?) {
                per_receiver.insert(id, n);
            }
        }
        Ok(Self { limits, per_receiver, total, next_age_sweep: Instant::now(), decisions_excess: 0 })
    }

    pub fn age_sweep_due(&self) -> bool {
        Instant::now() >= self.next_age_sweep
    }

    pub fn total(&self) -> u64 {
        self.total.max(0) as u64
    }

    fn count(&self, receiver: ReceiverId, delta: &Delta) -> i64 {
        self.per_receiver.get(&receiver).copied().unwrap_or(0) + delta.added.get(&receiver).copied().unwrap_or(0)
    }

    /// Deletes what this batch pushed past the limits, in the batch's transaction.
    pub fn prune(&mut self, conn: &Connection, delta: &mut Delta, now: Millis) -> rusqlite::Result<()> {
        let per_receiver = i64::from(self.limits.per_receiver);
        if per_receiver > 0 {
            // A tenth of slack, so a busy receiver is pruned every so often, not on every row.
            let slack = (per_receiver / 10).max(1);
            let over: Vec<ReceiverId> =
                delta.added.keys().copied().filter(|r| self.count(*r, delta) > per_receiver + slack).collect();
            for receiver in over {
                let deleted = conn
                    .prepare_cached(
                        "DELETE FROM executions WHERE receiver = ?1 AND id < (SELECT id FROM executions \
                         WHERE receiver = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                    )?
                    .execute(rusqlite::params![&receiver.as_bytes()[..], per_receiver - 1])?;
                delta.deleted(receiver, deleted as i64);
            }
        }
        let total_limit = i64::from(self.limits.total);
        let total = self.total + delta.total;
        if total_limit > 0 && total > total_limit + (total_limit / 100).max(1) {
            let excess = (total - total_limit).min(i64::from(CHUNK));
            delete_oldest(conn, delta, excess, Millis::MAX)?;
        }
        if self.decisions_excess > 0 {
            self.decisions_excess -= prune_decisions(conn, self.decisions_excess.min(i64::from(CHUNK)), Millis::MAX)?;
        }
        if self.age_sweep_due() {
            let mut full = false;
            if self.limits.max_age_days > 0 {
                let cutoff = now - i64::from(self.limits.max_age_days) * 86_400_000;
                full |= delete_oldest(conn, delta, i64::from(CHUNK), cutoff)? == i64::from(CHUNK);
                // Finished jobs go with the history of their age; a running one never does.
                let jobs = conn
                    .prepare_cached(
                        "DELETE FROM jobs WHERE id IN \
                         (SELECT id FROM jobs WHERE state != 'running' AND created < ?1 LIMIT ?2)",
                    )?
                    .execute(rusqlite::params![cutoff, CHUNK])?;
                full |= jobs == CHUNK as usize;
                // The audit log is kept as long as the history it explains.
                let audit = conn
                    .prepare_cached("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ?1 LIMIT ?2)")?
                    .execute(rusqlite::params![cutoff, CHUNK])?;
                full |= audit == CHUNK as usize;
            }
            full |= prune_decisions(conn, i64::from(CHUNK), now - DECISIONS_KEPT_MS)? == i64::from(CHUNK);
            if self.limits.total > 0 {
                let decisions: i64 = conn.query_row("SELECT COUNT(*) FROM decisions", [], |r| r.get(0))?;
                self.decisions_excess = (decisions - i64::from(self.limits.total)).max(0);
            }
            // A full chunk means there is more: look again at the next batch.
            self.next_age_sweep = if full { Instant::now() } else { Instant::now() + AGE_SWEEP };
        }
        Ok(())
    }

    /// The batch committed: its changes to the counts stand.
    pub fn commit(&mut self, delta: Delta) {
        for (receiver, n) in delta.added {
            *self.per_receiver.entry(receiver).or_default() += n;
        }
        self.total += delta.total;
        for receiver in delta.dropped {
            if let Some(n) = self.per_receiver.remove(&receiver) {
                self.total -= n;
            }
        }
    }
}

/// Deletes up to `limit` of the oldest decisions made before `before`; returns how many.
fn prune_decisions(conn: &Connection, limit: i64, before: Millis) -> rusqlite::Result<i64> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM decisions WHERE (receiver, key) IN \
             (SELECT receiver, key FROM decisions WHERE at < ?2 ORDER BY at LIMIT ?1)",
        )?
        .execute(rusqlite::params![limit, before])?;
    Ok(deleted as i64)
}

/// Deletes up to `limit` of the oldest rows older than `before`; returns how many.
fn delete_oldest(conn: &Connection, delta: &mut Delta, limit: i64, before: Millis) -> rusqlite::Result<i64> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM executions WHERE seq IN (SELECT seq FROM executions ORDER BY seq LIMIT ?1) AND at < ?2 \
         RETURNING receiver",
    )?;
    let mut rows = stmt.query(rusqlite::params![limit, before])?;
    let mut deleted = 0;
    while let Some(row) = rows.next()? {
        deleted += 1;
        if let Some(receiver) = ReceiverId::from_slice(&row.get::<_, Vec<u8>>(0)?) {
            delta.deleted(receiver, 1);
        }
    }
    Ok(deleted)
}
