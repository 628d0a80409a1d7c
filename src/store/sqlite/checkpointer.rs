//! Checkpoints off the write path: a thread with its own connection copies the write-ahead
//! log back into the database while the writer goes on committing.
//!
//! Copying (and the two fsyncs a checkpoint makes) takes tens of milliseconds per 8 MB of
//! log; done by the writer, it stalls every trigger queued behind it. Here the writer only
//! asks for a round when the log has grown, and waits for one only when the log must
//! restart: SQLite restarts the log at the start of a write when every frame has been copied
//! back, so the writer lets one more (short) round finish before its next transaction.

use std::{
    path::Path,
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use rusqlite::Connection;

#[derive(Default)]
struct Rounds {
    /// Rounds asked for and rounds done; a round asked for after another is done runs anew.
    requested: u64,
    completed: u64,
    /// Whether the last round copied the whole log back.
    whole: bool,
    stop: bool,
}

/// The writer's handle on the checkpointing thread.
pub struct Checkpointer {
    shared: Arc<(Mutex<Rounds>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(2))?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let shared = Arc::new((Mutex::new(Rounds::default()), Condvar::new()));
        let worker = shared.clone();
        let thread = std::thread::Builder::new().name("hookd-checkpoint".into()).spawn(move || run(conn, &worker))?;
        Ok(Self { shared, thread: Some(thread) })
    }

    /// Asks for a round unless one is pending or running; never waits.
    pub fn nudge(&self) {
        let (lock, wake) = &*self.shared;
        let mut rounds = lock.lock().expect("checkpoint lock");
        if rounds.requested == rounds.completed {
            rounds.requested += 1;
            wake.notify_all();
        }
    }

    /// Runs a round that starts after this call and waits for it; true when it copied the
    /// whole log back (so the next write restarts the log).
    pub fn round(&self) -> bool {
        let (lock, wake) = &*self.shared;
        let mut rounds = lock.lock().expect("checkpoint lock");
        // A round already running may have started before the last commit: wait for the next.
        let target = rounds.completed.max(rounds.requested) + 1;
        rounds.requested = target;
        wake.notify_all();
        while rounds.completed < target && !rounds.stop {
            rounds = wake.wait(rounds).expect("checkpoint lock");
        }
        rounds.whole
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().expect("checkpoint lock").stop = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, shared: &(Mutex<Rounds>, Condvar)) {
    let (lock, wake) = shared;
    loop {
        let round = {
            let mut rounds = lock.lock().expect("checkpoint lock");
            while rounds.requested == rounds.completed && !rounds.stop {
                rounds = wake.wait(rounds).expect("checkpoint lock");
            }
            if rounds.stop {
                return;
            }
            rounds.requested
        };
        let whole = match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        }) {
            Ok((busy, log, done)) => busy == 0 && log == done,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                false
            }
        };
        let mut rounds = lock.lock().expect("checkpoint lock");
        rounds.completed = round;
        rounds.whole = whole;
        wake.notify_all();
    }
}
