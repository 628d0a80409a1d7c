//! A local service rolled onto a new image: replicas replaced in batches by the supervisor.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::supervisor::{Replace, SharedState};
use crate::backend::{BackendError, RolloutObserver, RolloutPlan, RolloutProgress};

/// How long one batch may take to come up on the new image before the rollout fails.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
/// A replica counts as upgraded once it has run this long on the new image: one that
/// crashes at start must fail the rollout, not pass it.
const STABLE: Duration = Duration::from_secs(1);

fn upgraded(entry: Option<&(String, tokio::time::Instant)>, image: &str) -> bool {
    entry.is_some_and(|(i, started)| i == image && started.elapsed() >= STABLE)
}

/// (replicas on `image`, replicas not on it, desired scale, last error).
fn census(shared: &std::sync::Mutex<SharedState>, image: &str) -> (u32, Vec<u32>, u32, Option<String>) {
    let shared = shared.lock().expect("supervisor state lock");
    let on = shared.replica_images.values().filter(|e| upgraded(Some(e), image)).count() as u32;
    let stale = shared.replica_images.iter().filter(|(_, (i, _))| i != image).map(|(&n, _)| n).collect();
    (on, stale, shared.desired, shared.last_error.clone())
}

/// Replaces every replica not on `image`, `plan.batch_size` at a time, and returns once
/// all the desired replicas run it. Idempotent: replicas on `image` are left alone.
pub async fn roll(
    shared: &std::sync::Mutex<SharedState>,
    replaces: &UnboundedSender<Replace>,
    image: &str,
    plan: RolloutPlan,
    observer: &dyn RolloutObserver,
) -> Result<(), BackendError> {
    let mut first = true;
    loop {
        let (on, stale, desired, _) = census(shared, image);
        observer.progress(RolloutProgress { updated: on.min(desired), total: desired }).await;
        if stale.is_empty() {
            if on >= desired {
                return Ok(());
            }
            // Replicas still starting (a scale-up, a restart): they come up on the image.
            wait_until(shared, image, desired, &[]).await?;
            continue;
        }
        if !first {
            tokio::time::sleep(plan.interval).await;
        }
        first = false;
        let batch: Vec<u32> = stale.into_iter().take(plan.batch_size as usize).collect();
        for &replica in &batch {
            replaces
                .send(Replace { replica, start_first: plan.start_first })
                .map_err(|_| BackendError::Unavailable("the service's supervisor has stopped".into()))?;
        }
        wait_until(shared, image, desired, &batch).await?;
    }
}

/// Waits until each of `batch` runs `image` (or is gone with a lower scale), and, with an
/// empty batch, until `desired` replicas run it.
async fn wait_until(
    shared: &std::sync::Mutex<SharedState>,
    image: &str,
    desired: u32,
    batch: &[u32],
) -> Result<(), BackendError> {
    let deadline = tokio::time::Instant::now() + BATCH_TIMEOUT;
    let exits_before = shared.lock().expect("supervisor state lock").exits.clone();
    loop {
        let done = {
            let shared = shared.lock().expect("supervisor state lock");
            // A replica that exited on the new image since the wait began died on it: fail now.
            for (n, (count, exited_on)) in &shared.exits {
                let watched = batch.is_empty() || batch.contains(n);
                let before = exits_before.get(n).map_or(0, |(c, _)| *c);
                if watched && *count > before && exited_on == image {
                    let why = shared.last_error.clone().unwrap_or_default();
                    return Err(BackendError::Refused(format!("replica {n} exited on {image}: {why}")));
                }
            }
            if batch.is_empty() {
                shared.replica_images.values().filter(|e| upgraded(Some(e), image)).count() as u32
                    >= desired.min(shared.desired)
            } else {
                batch.iter().all(|n| *n > shared.desired || upgraded(shared.replica_images.get(n), image))
            }
        };
        if done {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let (_, _, _, last_error) = census(shared, image);
            let which = if batch.is_empty() { "the new replicas".to_owned() } else { format!("replicas {batch:?}") };
            return Err(BackendError::Refused(format!(
                "{which} did not come up and stay up on {image} within {} s{}",
                BATCH_TIMEOUT.as_secs(),
                last_error.map(|e| format!(": {e}")).unwrap_or_default()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
