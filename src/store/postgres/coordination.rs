//! What makes several replicas act as one: advisory locks, job leases, the local backend's
//! claim, and notifications of changes to what replicas cache.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgListener},
    ConnectOptions, Connection, PgConnection, PgPool, Postgres,
};
use tokio::sync::broadcast;

use super::{
    super::{Change, StoreError, StoreLock, StoreResult},
    writes::jobs_from_rows,
    CHANNEL,
};
use crate::domain::{Job, JobId, Millis};

/// How long a new job may go unclaimed before another replica takes it (its maker died
/// between storing it and claiming it).
const UNCLAIMED_FOR_MS: Millis = 30_000;

/// The advisory lock key of a name: 64 bits of its SHA-256.
fn key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("hookd:{name}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// A session advisory lock, held by its connection until dropped. Dropped before the lock
/// was granted (the caller gave up mid-wait), the session is ended: the server could grant
/// the lock after the client stopped listening.
struct Held {
    conn: Option<PoolConnection<Postgres>>,
    key: i64,
    granted: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        if !self.granted {
            conn.close_on_drop();
            return;
        }
        let key = self.key;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let unlocked: Result<bool, _> =
                        sqlx::query_scalar("SELECT pg_advisory_unlock($1)").bind(key).fetch_one(&mut *conn).await;
                    if !matches!(unlocked, Ok(true)) {
                        // Ending the session is what surely releases it.
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}

/// Takes the advisory lock of `name`, waiting up to `wait` (PostgreSQL's `lock_timeout`).
pub async fn lock(pool: &PgPool, name: &str, wait: Duration) -> StoreResult<Option<StoreLock>> {
    let mut held = Held { conn: Some(pool.acquire().await?), key: key(name), granted: false };
    let timeout = format!("{}ms", wait.as_millis().max(1));
    let conn = held.conn.as_mut().expect("just set");
    let taken = sqlx::query("SELECT set_config('lock_timeout', $1, false), pg_advisory_lock($2)")
        .bind(timeout)
        .bind(held.key)
        .execute(&mut **conn)
        .await;
    match taken {
        Ok(_) => {
            held.granted = true;
            Ok(Some(Box::new(held)))
        }
        // Not granted: dropping `held` ends the session, whatever state it is in.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The database's clock in milliseconds: leases are timed by one clock, not each replica's.
const NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

pub async fn claim_job(pool: &PgPool, id: JobId, owner: &str, lease: Millis) -> StoreResult<bool> {
    let claimed = sqlx::query(&format!(
        "UPDATE jobs SET owner = $2, lease_until = {NOW} + $3 WHERE id = $1 AND state = 'running' \
         AND (owner IS NULL OR owner = $2 OR lease_until < {NOW})"
    ))
    .bind(&id.as_bytes()[..])
    .bind(owner)
    .bind(lease)
    .execute(pool)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

pub async fn orphaned_jobs(pool: &PgPool) -> StoreResult<Vec<Job>> {
    let rows = sqlx::query(&format!(
        "SELECT id, body FROM jobs WHERE state = 'running' \
         AND (lease_until < {NOW} OR (lease_until IS NULL AND created < {NOW} - $1)) ORDER BY id"
    ))
    .bind(UNCLAIMED_FOR_MS)
    .fetch_all(pool)
    .await?;
    jobs_from_rows(rows)
}

/// Holds the local backend's advisory lock on a session of its own for as long as this
/// hookd runs; a lost session (PostgreSQL restarted) takes it again.
pub async fn claim_local_backend(
    options: &PgConnectOptions,
    held: &tokio::sync::Mutex<Option<PgConnection>>,
) -> StoreResult<bool> {
    let mut held = held.lock().await;
    if let Some(conn) = held.as_mut() {
        if conn.ping().await.is_ok() {
            return Ok(true);
        }
    }
    let mut conn = options.connect().await?;
    let taken: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key("local-backend")).fetch_one(&mut conn).await?;
    if taken {
        *held = Some(conn);
    } else {
        let _ = conn.close().await;
    }
    Ok(taken)
}

/// Forwards `NOTIFY`s of changes to `changes`; after a lost connection, announces
/// everything as changed (what was sent meanwhile is lost).
pub fn listen(pool: PgPool, changes: broadcast::Sender<Change>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener: Option<PgListener> = None;
        loop {
            let Some(l) = listener.as_mut() else {
                let connected = match PgListener::connect_with(&pool).await {
                    Ok(mut l) => l.listen(CHANNEL).await.is_ok().then_some(l),
                    Err(_) => None,
                };
                match connected {
                    Some(l) => {
                        listener = Some(l);
                        let _ = changes.send(Change::SigningKeys);
                        let _ = changes.send(Change::Projects);
                    }
                    None => tokio::time::sleep(Duration::from_secs(1)).await,
                }
                continue;
            };
            match l.try_recv().await {
                Ok(Some(n)) => {
                    let change = if n.payload() == "keys" { Change::SigningKeys } else { Change::Projects };
                    let _ = changes.send(change);
                }
                Ok(None) => {
                    let _ = changes.send(Change::SigningKeys);
                    let _ = changes.send(Change::Projects);
                }
                Err(e) => {
                    tracing::warn!(error = %StoreError::from(e), "lost the PostgreSQL notification channel; reconnecting");
                    listener = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}
