//! Limits on what one client may do: failed authentication per address, and a deadline for
//! management requests.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{ApiError, AppState};

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it, windows that have ended are forgotten first.
const ADDRESSES: usize = 100_000;

/// Failed sign-ins and API token checks per client address, in one-minute windows: past
/// the limit, the address gets 429 until its window ends, so tokens can't be guessed fast.
///
/// One address's checks run one at a time ([`FailedAuth::serialize`]): otherwise a burst
/// of concurrent guesses would all pass the check before the first failure was counted.
pub struct FailedAuth {
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// Striped by address: a check is a few microseconds, so sharing a stripe costs little.
    stripes: Vec<tokio::sync::Mutex<()>>,
}

const STRIPES: usize = 64;

impl Default for FailedAuth {
    fn default() -> Self {
        Self { table: Mutex::default(), stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect() }
    }
}

impl FailedAuth {
    /// Held from the check to the counting of its outcome.
    pub async fn serialize(&self, address: IpAddr) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        address.hash(&mut hasher);
        self.stripes[hasher.finish() as usize % STRIPES].lock().await
    }

    /// `Err(seconds to wait)` when `address` used up its failures in this window.
    pub fn check(&self, address: IpAddr, limit: u32) -> Result<(), u64> {
        let map = self.table.lock().expect("failed auth table");
        match map.get(&address) {
            Some((start, count)) if *count >= limit && start.elapsed() < WINDOW => {
                Err((WINDOW - start.elapsed()).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, address: IpAddr) {
        let mut map = self.table.lock().expect("failed auth table");
        if map.len() >= ADDRESSES {
            map.retain(|_, (start, _)| start.elapsed() < WINDOW);
            if map.len() >= ADDRESSES {
                map.clear();
            }
        }
        let entry = map.entry(address).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// The 429 for an address that failed too often.
pub fn too_many_failures(retry_after: u64) -> ApiError {
    let mut error = ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "too_many_failed_attempts",
        "too many failed sign-ins or API tokens from this address; wait before trying again",
    );
    error.retry_after = Some(retry_after);
    error
}

/// Management requests get `request_timeout_seconds` to answer. The trigger route has no
/// such layer: the engine acts in a task of its own, and a timeout answered before it
/// records would be a 5xx after acting.
pub async fn deadline(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.limits.request_timeout_seconds);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(
            "request_timeout",
            format!("hookd could not answer within {} s; retry later", limit.as_secs()),
            5,
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_held_back_after_its_failures_and_others_are_not() {
        let failed = FailedAuth::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(failed.check(a, 3).is_ok());
            failed.failed(a);
        }
        let wait = failed.check(a, 3).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(failed.check(b, 3).is_ok());
    }
}
