//! What the SQLite store keeps in memory so the trigger path rarely reads SQL: receivers,
//! each service's last change, and recent decisions by dedup key.
//!
//! Only the writer thread changes these after a commit, in commit order, before it answers
//! the write; readers fill misses from SQL. Fills must never put back something older than
//! what a committed write left, so a receiver fill is dropped when any receiver write
//! happened since the fill's read began (the epoch), and history fills merge by time.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, RwLock},
};

use crate::domain::{Decided, DedupKey, Execution, Millis, Receiver, ReceiverId, ServiceKey};

/// Most receivers kept in memory; past it, an arbitrary entry makes room.
const RECEIVERS: usize = 100_000;
/// Most dedup keys kept in memory (about 100 bytes each).
const DECISIONS: usize = 65_536;

#[derive(Default)]
struct ReceiverMap {
    map: HashMap<ReceiverId, Receiver>,
    /// Bumped by every committed receiver write.
    epoch: u64,
}

#[derive(Default)]
pub struct ReceiverCache(RwLock<ReceiverMap>);

impl ReceiverCache {
    pub fn get(&self, id: ReceiverId) -> Option<Receiver> {
        self.0.read().expect("receiver cache lock").map.get(&id).cloned()
    }

    /// Take before reading SQL for a fill.
    pub fn epoch(&self) -> u64 {
        self.0.read().expect("receiver cache lock").epoch
    }

    /// Caches what SQL returned, unless a receiver write committed since `epoch`.
    pub fn fill(&self, receiver: &Receiver, epoch: u64) {
        let mut cache = self.0.write().expect("receiver cache lock");
        if cache.epoch == epoch {
            insert(&mut cache.map, receiver);
        }
    }

    /// A committed insert or update (writer thread only).
    pub fn stored(&self, receiver: &Receiver) {
        let mut cache = self.0.write().expect("receiver cache lock");
        cache.epoch += 1;
        let newer = cache.map.get(&receiver.id).is_none_or(|held| held.revision < receiver.revision);
        if newer {
            insert(&mut cache.map, receiver);
        }
    }

    /// A committed delete (writer thread only).
    pub fn removed(&self, id: ReceiverId) {
        let mut cache = self.0.write().expect("receiver cache lock");
        cache.epoch += 1;
        cache.map.remove(&id);
    }
}

fn insert(map: &mut HashMap<ReceiverId, Receiver>, receiver: &Receiver) {
    if map.len() >= RECEIVERS && !map.contains_key(&receiver.id) {
        if let Some(victim) = map.keys().next().copied() {
            map.remove(&victim);
        }
    }
    map.insert(receiver.id, receiver.clone());
}

/// A dedup key's state as far as memory knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    Decided(Decided),
    /// SQL held no decision on it when asked; every later one is recorded here.
    Undecided,
}

struct Decisions {
    map: HashMap<(ReceiverId, DedupKey), Remembered>,
    /// Insertion order, for evicting the oldest.
    order: VecDeque<(ReceiverId, DedupKey)>,
    /// Memory may lack decisions made before this: a lookup reaching further back asks SQL.
    horizon: Millis,
}

pub struct HistoryCache {
    /// `None`: SQL holds no change of the service.
    changes: Mutex<HashMap<ServiceKey, Option<Millis>>>,
    decisions: Mutex<Decisions>,
}

/// What memory says about a dedup lookup.
pub enum Lookup {
    Known(Option<Decided>),
    /// Ask SQL, then [`HistoryCache::fill_decision`].
    Unknown,
}

impl HistoryCache {
    /// `horizon`: decisions before it are only in SQL (`Millis::MIN` for an empty history).
    pub fn new(horizon: Millis) -> Self {
        Self {
            changes: Mutex::default(),
            decisions: Mutex::new(Decisions { map: HashMap::new(), order: VecDeque::new(), horizon }),
        }
    }

    /// `Some(answer)` when memory knows the service's last change.
    pub fn last_change(&self, service: &ServiceKey) -> Option<Option<Millis>> {
        self.changes.lock().expect("history lock").get(service).copied()
    }

    pub fn fill_change(&self, service: &ServiceKey, at: Option<Millis>) {
        let mut changes = self.changes.lock().expect("history lock");
        let entry = changes.entry(service.clone()).or_insert(at);
        *entry = (*entry).max(at);
    }

    pub fn decided(&self, receiver: ReceiverId, key: &DedupKey, since: Millis) -> Lookup {
        let decisions = self.decisions.lock().expect("history lock");
        match decisions.map.get(&(receiver, *key)) {
            Some(Remembered::Decided(d)) => Lookup::Known((d.at >= since).then_some(*d)),
            Some(Remembered::Undecided) => Lookup::Known(None),
            None if decisions.horizon <= since => Lookup::Known(None),
            None => Lookup::Unknown,
        }
    }

    /// Remembers what SQL said, unless the writer has recorded something since.
    pub fn fill_decision(&self, receiver: ReceiverId, key: &DedupKey, found: Option<Decided>) {
        let remembered = found.map_or(Remembered::Undecided, Remembered::Decided);
        let mut decisions = self.decisions.lock().expect("history lock");
        if !decisions.map.contains_key(&(receiver, *key)) {
            decisions.remember(receiver, *key, remembered);
        }
    }

    /// A committed execution (writer thread only).
    pub fn recorded(&self, e: &Execution) {
        let decided = e.is_decision();
        if let (Some(service), true) = (&e.service, e.is_change()) {
            self.fill_change(service, Some(e.at));
        }
        let Some(key) = e.dedup_key else { return };
        let mut decisions = self.decisions.lock().expect("history lock");
        if decided {
            decisions.remember(e.receiver, key, Remembered::Decided(Decided { at: e.at, execution: e.id }));
        } else if let Some(Remembered::Decided(d)) = decisions.map.get(&(e.receiver, key)) {
            // An intent re-recorded as failed no longer counts as a decision.
            if d.execution == e.id {
                decisions.map.insert((e.receiver, key), Remembered::Undecided);
            }
        }
    }
}

impl Decisions {
    fn remember(&mut self, receiver: ReceiverId, key: DedupKey, value: Remembered) {
        if self.map.insert((receiver, key), value).is_none() {
            self.order.push_back((receiver, key));
        }
        while self.map.len() > DECISIONS {
            let Some(oldest) = self.order.pop_front() else { break };
            // Forgetting "undecided" loses nothing: a later decision would have replaced it.
            if let Some(Remembered::Decided(d)) = self.map.remove(&oldest) {
                self.horizon = self.horizon.max(d.at + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExecutionId, Outcome};

    fn key(n: u8) -> DedupKey {
        DedupKey::from_digest(&[n; 32])
    }

    #[test]
    fn memory_answers_within_its_horizon_and_asks_sql_beyond() {
        let history = HistoryCache::new(1_000);
        let r = ReceiverId::generate();
        assert!(matches!(history.decided(r, &key(1), 2_000), Lookup::Known(None)), "after opening, memory is whole");
        assert!(matches!(history.decided(r, &key(1), 500), Lookup::Unknown), "before opening, only SQL knows");
        let found = Decided { at: 400, execution: ExecutionId::generate() };
        history.fill_decision(r, &key(1), Some(found));
        assert!(matches!(history.decided(r, &key(1), 300), Lookup::Known(Some(d)) if d == found));
        assert!(matches!(history.decided(r, &key(1), 450), Lookup::Known(None)), "outside the window");
    }

    #[test]
    fn a_fill_never_hides_a_recorded_decision() {
        let history = HistoryCache::new(0);
        let r = ReceiverId::generate();
        let id = ExecutionId::generate();
        let e = Execution {
            id,
            receiver: r,
            service: Some(ServiceKey::from_stored("local/web".into())),
            at: 5_000,
            source: String::new(),
            outcome: Outcome::Scaled,
            effect: crate::domain::Effect::Scale { from: 1, to: 2 },
            reason: String::new(),
            detail: String::new(),
            dry_run: false,
            alerts: Vec::new(),
            dedup_key: Some(key(2)),
        };
        history.recorded(&e);
        history.fill_decision(r, &key(2), None);
        assert!(matches!(history.decided(r, &key(2), 0), Lookup::Known(Some(d)) if d.execution == id));
        history.fill_change(&ServiceKey::from_stored("local/web".into()), Some(10));
        assert_eq!(history.last_change(&ServiceKey::from_stored("local/web".into())), Some(Some(5_000)));
        // The intent failed: re-recorded as failed, it no longer dedups.
        history.recorded(&Execution { outcome: Outcome::Failed, ..e });
        assert!(matches!(history.decided(r, &key(2), 0), Lookup::Known(None)));
    }
}
