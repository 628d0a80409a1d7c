//! Open connections: a cap, and timeouts for the ones that send nothing useful.
//!
//! hookd faces the internet, so a client that connects and stays silent, sends a header a
//! byte a second, or opens thousands of connections must not use up what others need.
//! Every connection is tracked in a phase (idle between requests, reading a request's
//! head, or busy with a request) and since when; a watchdog closes the ones idle too long
//! or too slow with their head. At the cap, a new connection makes room by closing the
//! oldest one that is not busy with a request, so health checks and valid triggers still
//! get in; only when every connection is busy is a new one refused.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicU8, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::config::Limits;

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// Why a connection was closed by hookd, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Idle,
    SlowHead,
    /// Closed to make room for a new one at the cap.
    Evicted,
    /// A new connection refused: at the cap, and every open one busy.
    Refused,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Idle => "idle_timeout",
            Closed::SlowHead => "header_timeout",
            Closed::Evicted => "evicted",
            Closed::Refused => "refused",
        }
    }
}

/// One open connection, as the tracker sees it.
pub struct Conn {
    phase: AtomicU8,
    /// When the phase began, in milliseconds since the tracker started.
    since: AtomicU64,
    close: CancellationToken,
    epoch: Instant,
}

impl Conn {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn enter(&self, phase: u8) {
        self.since.store(self.now(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// A request was handed to the application.
    pub fn request_started(&self) {
        self.enter(BUSY);
    }

    /// Its response is ready: the connection waits for the next request.
    pub fn request_done(&self) {
        self.enter(IDLE);
    }

    /// Bytes arrived: an idle connection starts a new request head.
    fn bytes_read(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.enter(HEAD);
        }
    }

    /// Completes when hookd closes this connection.
    pub async fn closed(&self) {
        self.close.cancelled().await
    }
}

pub struct Tracker {
    limits: Limits,
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

/// A tracked connection's registration: dropping it forgets the connection.
pub struct Registration {
    tracker: Arc<Tracker>,
    id: u64,
    pub conn: Arc<Conn>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.tracker.open.lock().expect("connection table").remove(&self.id);
    }
}

impl Tracker {
    /// `max`: the cap on open connections (already fitted to the file descriptor limit).
    pub fn new(limits: Limits, max: usize) -> Arc<Self> {
        Arc::new(Self { limits, max, epoch: Instant::now(), next_id: AtomicU64::new(0), open: Mutex::default() })
    }

    pub fn open_count(&self) -> usize {
        self.open.lock().expect("connection table").len()
    }

    /// Registers a new connection, closing the oldest one not busy with a request when at
    /// the cap. `Err(Refused)`: at the cap with every connection busy.
    pub fn admit(self: &Arc<Self>) -> Result<(Registration, Option<Closed>), Closed> {
        let mut open = self.open.lock().expect("connection table");
        let mut evicted = None;
        if open.len() >= self.max {
            // Slow heads first (they may be attacks), then the longest idle.
            let victim = open
                .iter()
                .filter(|(_, c)| c.phase.load(Ordering::Relaxed) != BUSY)
                .min_by_key(|(_, c)| (c.phase.load(Ordering::Relaxed) != HEAD, c.since.load(Ordering::Relaxed)))
                .map(|(id, c)| (*id, c.clone()));
            let Some((id, conn)) = victim else { return Err(Closed::Refused) };
            conn.close.cancel();
            open.remove(&id);
            evicted = Some(Closed::Evicted);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            phase: AtomicU8::new(IDLE),
            since: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            close: CancellationToken::new(),
            epoch: self.epoch,
        });
        open.insert(id, conn.clone());
        Ok((Registration { tracker: self.clone(), id, conn }, evicted))
    }

    /// Closes connections idle or slow past their timeouts; returns why, one entry each.
    pub fn sweep(&self) -> Vec<Closed> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let idle = self.limits.idle_timeout_seconds * 1000;
        let head = self.limits.header_timeout_seconds * 1000;
        let open = self.open.lock().expect("connection table");
        let mut closed = Vec::new();
        for conn in open.values() {
            let age = now.saturating_sub(conn.since.load(Ordering::Relaxed));
            let why = match conn.phase.load(Ordering::Relaxed) {
                IDLE if age > idle => Closed::Idle,
                HEAD if age > head => Closed::SlowHead,
                _ => continue,
            };
            if !conn.close.is_cancelled() {
                conn.close.cancel();
                closed.push(why);
            }
        }
        closed
    }

    /// How often the watchdog should sweep.
    pub fn sweep_every(&self) -> Duration {
        Duration::from_millis(250)
    }
}

/// A socket that tells its connection's tracker when bytes arrive.
pub struct TrackedIo<T> {
    inner: T,
    conn: Arc<Conn>,
}

impl<T> TrackedIo<T> {
    pub fn new(inner: T, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.bytes_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises this process's open-file limit to its hard limit and returns the cap on
/// connections that fits under it, leaving room for the database, logs and children.
pub fn fit_to_file_limit(wanted: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return wanted };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    const RESERVED: u64 = 256;
    let fits = soft.saturating_sub(RESERVED).max(16);
    wanted.min(usize::try_from(fits).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { idle_timeout_seconds: 0, header_timeout_seconds: 0, ..Limits::default() }
    }

    #[test]
    fn at_the_cap_a_slow_head_goes_first_and_busy_ones_never() {
        let tracker = Tracker::new(Limits::default(), 3);
        let (busy, _) = tracker.admit().unwrap();
        busy.conn.request_started();
        let (idle, _) = tracker.admit().unwrap();
        let (slow, _) = tracker.admit().unwrap();
        slow.conn.bytes_read();
        std::thread::sleep(Duration::from_millis(3)); // "oldest" is by the millisecond
        let (_new, evicted) = tracker.admit().unwrap();
        assert_eq!(evicted, Some(Closed::Evicted));
        assert!(slow.conn.close.is_cancelled() && !idle.conn.close.is_cancelled());
        let (_newer, _) = tracker.admit().unwrap();
        assert!(idle.conn.close.is_cancelled(), "then the idle one");
        assert_eq!(tracker.open_count(), 3);
    }

    #[test]
    fn the_watchdog_closes_idle_and_slow_connections_not_busy_ones() {
        let tracker = Tracker::new(limits(), 10);
        let (idle, _) = tracker.admit().unwrap();
        let (slow, _) = tracker.admit().unwrap();
        slow.conn.bytes_read();
        let (busy, _) = tracker.admit().unwrap();
        busy.conn.request_started();
        std::thread::sleep(Duration::from_millis(5));
        let mut closed = tracker.sweep();
        closed.sort_by_key(|c| c.as_str());
        assert_eq!(closed, vec![Closed::SlowHead, Closed::Idle]);
        assert!(idle.conn.close.is_cancelled() && slow.conn.close.is_cancelled());
        assert!(!busy.conn.close.is_cancelled());
    }

    #[test]
    fn every_busy_connection_means_refusal() {
        let tracker = Tracker::new(Limits::default(), 1);
        let (busy, _) = tracker.admit().unwrap();
        busy.conn.request_started();
        assert_eq!(tracker.admit().err(), Some(Closed::Refused));
        drop(busy);
        assert!(tracker.admit().is_ok(), "a closed connection frees its place");
    }
}
