//! The SQLite writer: one thread, one connection, every write, group-committed.
//!
//! Whatever is queued when the thread wakes goes into one transaction, and every caller is
//! answered only after its `COMMIT` (WAL, `synchronous = NORMAL`: a commit survives hookd
//! being killed; only an operating-system crash can lose the last ones). When a batch fails
//! (a full disk, an I/O error), its transaction is rolled back, every caller in it gets an
//! error, never an acknowledgement, and the next batch starts clean: the writer recovers as
//! soon as the disk does.
//!
//! The writer also keeps the write-ahead log short. SQLite can only restart the log from its
//! beginning when it has been copied back whole, which never happens while someone keeps
//! appending. So a checkpointing thread ([`super::checkpointer`]) copies the log back as it
//! grows, off the write path, and once it passes [`RESTART_BYTES`] the writer waits for one
//! short round between two batches, so the next commit restarts the log.

use std::{
    ffi::{c_char, c_int, c_void},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::Duration,
};

use rusqlite::Connection;
use tokio::{sync::oneshot, time::Instant};

use super::{
    cache::{HistoryCache, ReceiverCache},
    checkpointer::Checkpointer,
    ops::{apply, Done, Failure, Op},
    retention::{Delta, Pruner},
};
use crate::{
    config::Retention,
    domain::now_millis,
    store::{StoreError, StoreResult},
};

/// Most writes committed in one transaction; bounds the latency of the batch's first caller.
const MAX_BATCH: usize = 1024;
/// Log growth after which the checkpointing thread is asked for a round.
const NUDGE_BYTES: u64 = 2 << 20;
/// The log size past which the writer waits for a round, so that the log restarts.
const RESTART_BYTES: u64 = 24 << 20;
/// Past this, the writer checkpoints itself and waits for readers (should never be needed).
const FORCE_CHECKPOINT_BYTES: u64 = 48 << 20;
/// After a restart, the log file is cut back to this.
const JOURNAL_SIZE_LIMIT: u64 = 8 << 20;
/// How long a write waits for a lock another process holds before failing the batch.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// With nothing to write for this long, the writer checkpoints and empties the log.
const IDLE: Duration = Duration::from_millis(250);

pub fn wal_path(db: &std::path::Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

pub type Reply = oneshot::Sender<StoreResult<Done>>;

// Writes are the messages that matter; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    Write(Op, Reply),
    Close(oneshot::Sender<()>),
}

/// What the writer tells the rest of the store.
#[derive(Default)]
pub struct Status {
    /// False from a failed batch until a batch commits.
    pub healthy: AtomicBool,
    pub wal_bytes: AtomicU64,
    pub wal_peak_bytes: AtomicU64,
    pub executions: AtomicU64,
    /// When a batch last committed (Unix millis).
    pub last_commit: std::sync::atomic::AtomicI64,
}

pub struct Writer {
    path: PathBuf,
    conn: Connection,
    /// Frames in the log after the last commit, set by SQLite's WAL hook; boxed so its
    /// address outlives every connection it is registered with.
    wal_frames: Box<AtomicI32>,
    rx: mpsc::Receiver<Msg>,
    receivers: Arc<ReceiverCache>,
    history: Arc<HistoryCache>,
    status: Arc<Status>,
    pruner: Pruner,
    checkpointer: Checkpointer,
    /// When the writer last waited for a round that could not copy the whole log back.
    last_partial: Option<Instant>,
    /// Log frames at the last nudge.
    nudged_at: i32,
    /// When the writer last forced a checkpoint past a reader.
    last_forced: Option<Instant>,
    page_size: u64,
}

/// Opens the writer's connection: WAL, no automatic checkpoints, the log size hook.
fn open_connection(path: &PathBuf, wal_frames: &AtomicI32) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "normal")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT as i64)?;
    conn.pragma_update(None, "cache_size", -8000)?;
    conn.set_prepared_statement_cache_capacity(32);
    // SAFETY: the hook only stores into the atomic, which outlives the connection (see `Writer`).
    unsafe {
        rusqlite::ffi::sqlite3_wal_hook(conn.handle(), Some(on_commit), wal_frames as *const AtomicI32 as *mut c_void);
    }
    Ok(conn)
}

extern "C" fn on_commit(frames: *mut c_void, _: *mut rusqlite::ffi::sqlite3, _: *const c_char, n: c_int) -> c_int {
    // SAFETY: registered with a pointer to a live AtomicI32 (see `open_connection`).
    unsafe { &*(frames as *const AtomicI32) }.store(n, Ordering::Relaxed);
    rusqlite::ffi::SQLITE_OK
}

impl Writer {
    pub fn open(
        path: PathBuf,
        rx: mpsc::Receiver<Msg>,
        receivers: Arc<ReceiverCache>,
        history: Arc<HistoryCache>,
        status: Arc<Status>,
        retention: Retention,
    ) -> anyhow::Result<Self> {
        let wal_frames = Box::new(AtomicI32::new(0));
        let conn = open_connection(&path, &wal_frames)?;
        let pruner = Pruner::load(&conn, retention)?;
        let checkpointer = Checkpointer::start(&path)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
        status.executions.store(pruner.total(), Ordering::Relaxed);
        status.healthy.store(true, Ordering::Relaxed);
        Ok(Self {
            path,
            conn,
            wal_frames,
            rx,
            receivers,
            history,
            status,
            pruner,
            checkpointer,
            last_partial: None,
            nudged_at: 0,
            last_forced: None,
            page_size: page_size.max(512) as u64,
        })
    }

    pub fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let first = match self.rx.recv_timeout(IDLE) {
                Ok(msg) => msg,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.idle();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut next = Some(first);
            let mut closing = None;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Write(op, reply) => batch.push((op, reply)),
                    Msg::Close(done) => closing = Some(done),
                }
                if batch.len() < MAX_BATCH && closing.is_none() {
                    next = self.rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
                self.keep_log_short();
            }
            if let Some(done) = closing {
                let _ = self.checkpoint("TRUNCATE");
                let _ = done.send(());
                return;
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<(Op, Reply)>) {
        let mut delta = Delta::default();
        match self.try_commit(batch, &mut delta) {
            Ok(results) => {
                self.status.healthy.store(true, Ordering::Relaxed);
                self.status.last_commit.store(now_millis(), Ordering::Relaxed);
                self.pruner.commit(delta);
                self.status.executions.store(self.pruner.total(), Ordering::Relaxed);
                for ((op, reply), result) in batch.drain(..).zip(results) {
                    if let Ok(done) = &result {
                        self.remember(&op, done);
                    }
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                self.status.healthy.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, writes = batch.len(), "a write batch failed and was rolled back");
                self.recover();
                let message = e.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
        }
    }

    /// One transaction for the whole batch; an error here fails every write in it.
    fn try_commit(&mut self, batch: &mut [(Op, Reply)], delta: &mut Delta) -> rusqlite::Result<Vec<StoreResult<Done>>> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut results = Vec::with_capacity(batch.len());
        for (op, _) in batch.iter_mut() {
            match apply(&self.conn, op) {
                Ok(done) => {
                    match (op, &done) {
                        (Op::Execution { execution, .. }, Done::Inserted) => delta.inserted(execution.receiver),
                        (Op::Job { execution: Some(execution), .. }, Done::Inserted) => {
                            delta.inserted(execution.receiver)
                        }
                        (Op::DeleteReceiver(id), _) => delta.receiver_deleted(*id),
                        _ => {}
                    }
                    results.push(Ok(done));
                }
                Err(Failure::Own(e)) => results.push(Err(e)),
                Err(Failure::Batch(e)) => return Err(e),
            }
        }
        self.pruner.prune(&self.conn, delta, now_millis())?;
        self.conn.execute_batch("COMMIT")?;
        Ok(results)
    }

    /// Brings the in-memory views in step with a committed write, before its caller hears of it.
    fn remember(&self, op: &Op, done: &Done) {
        match (op, done) {
            (Op::Execution { execution, .. }, _) => self.history.recorded(execution),
            (Op::Job { execution: Some(execution), .. }, _) => self.history.recorded(execution),
            (Op::InsertReceiver(r), _) => self.receivers.stored(r),
            (Op::EditReceiver(..), Done::Updated(r)) => self.receivers.stored(r),
            (Op::DeleteReceiver(id), _) => self.receivers.removed(*id),
            _ => {}
        }
    }

    /// After a failed batch: no transaction may stay open, or every later "commit" would be
    /// a savepoint inside it and nothing would ever reach the disk.
    fn recover(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        if self.conn.is_autocommit() {
            return;
        }
        tracing::warn!("the writer's transaction would not roll back; reopening its connection");
        let fresh = Box::new(AtomicI32::new(0));
        match open_connection(&self.path, &fresh) {
            Ok(conn) => {
                // The old connection's hook points at the old counter: drop it first.
                self.conn = conn;
                self.wal_frames = fresh;
            }
            Err(e) => tracing::error!(error = %e, "could not reopen the database; retrying at the next write"),
        }
    }

    fn wal_bytes(&self) -> u64 {
        self.wal_frames.load(Ordering::Relaxed).max(0) as u64 * self.page_size
    }

    fn keep_log_short(&mut self) {
        let bytes = self.wal_bytes();
        let on_disk = std::fs::metadata(wal_path(&self.path)).map(|m| m.len()).unwrap_or(0);
        self.status.wal_bytes.store(on_disk, Ordering::Relaxed);
        self.status.wal_peak_bytes.fetch_max(on_disk, Ordering::Relaxed);
        let frames = self.wal_frames.load(Ordering::Relaxed);
        if frames < self.nudged_at {
            self.nudged_at = 0; // the log restarted
        }
        if bytes >= FORCE_CHECKPOINT_BYTES {
            // Only a reader holding an old snapshot (a sqlite3 shell left open, say) gets the
            // log here. Wait for it briefly, once a second at most: not on every batch.
            if self.last_forced.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                self.last_forced = Some(Instant::now());
                if !self.checkpoint("RESTART") {
                    tracing::warn!(
                        wal_mb = bytes >> 20,
                        "the write-ahead log cannot restart: another process holds a read transaction open"
                    );
                }
            }
        } else if bytes >= RESTART_BYTES && self.last_partial.is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            // Most of the log is copied back already: this round is short.
            self.last_partial = (!self.checkpointer.round()).then(Instant::now);
        } else if u64::from((frames - self.nudged_at).max(0) as u32) * self.page_size >= NUDGE_BYTES {
            self.nudged_at = frames;
            self.checkpointer.nudge();
        }
    }

    fn idle(&mut self) {
        if self.wal_frames.load(Ordering::Relaxed) > 0 && self.checkpoint("TRUNCATE") {
            self.wal_frames.store(0, Ordering::Relaxed);
            self.status.wal_bytes.store(0, Ordering::Relaxed);
        }
        // Age limits apply to an idle store too.
        if !self.pruner.age_sweep_due() {
            return;
        }
        let mut delta = Delta::default();
        let pruned = self.conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            self.pruner.prune(&self.conn, &mut delta, now_millis())?;
            self.conn.execute_batch("COMMIT")
        });
        match pruned {
            Ok(()) => {
                self.pruner.commit(delta);
                self.status.executions.store(self.pruner.total(), Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning old executions failed");
                self.recover();
            }
        }
    }

    /// Runs a checkpoint on the writer's own connection; true when it copied the whole log
    /// back. It waits for readers briefly: triggers queue behind it.
    fn checkpoint(&mut self, mode: &str) -> bool {
        let started = Instant::now();
        let _ = self.conn.busy_timeout(Duration::from_millis(100));
        let result = self.conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        let _ = self.conn.busy_timeout(BUSY_TIMEOUT);
        match result {
            Ok((busy, log, done)) => {
                let micros = started.elapsed().as_micros() as u64;
                tracing::debug!(mode, busy, log, done, micros, "checkpoint");
                busy == 0 && log == done
            }
            Err(e) => {
                tracing::warn!(mode, error = %e, "WAL checkpoint failed");
                false
            }
        }
    }
}
