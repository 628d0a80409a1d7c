//! Prometheus metrics, rendered in the text exposition format at `/metrics`.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

// Static strings: labels are built on every trigger, and must not allocate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub driver: &'static str,
    pub outcome: &'static str,
    /// The skip reason for `skipped` outcomes (`resolved`, `cooldown`, ...), else empty.
    pub reason: &'static str,
    pub dry_run: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverLabels {
    pub driver: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub project: String,
    pub backend: String,
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendOpLabels {
    pub backend: String,
    pub operation: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.00025, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub triggers: Family<TriggerLabels, Counter>,
    pub rejected: Family<RejectLabels, Counter>,
    pub trigger_latency: HistogramFamily<DriverLabels>,
    pub desired_scale: Family<ServiceLabels, Gauge>,
    pub running_replicas: Family<ServiceLabels, Gauge>,
    pub backend_latency: HistogramFamily<BackendOpLabels>,
    pub backend_errors: Family<BackendOpLabels, Counter>,
    /// `triggers_rejected{code="invalid_token"}`, resolved once: forged tokens are the hot rejection.
    pub invalid_tokens: Counter,
    pub store: StoreGauges,
    pub connections_open: Gauge,
    connections_closed: Family<ClosedLabels, Counter>,
    tracker: std::sync::OnceLock<std::sync::Arc<crate::connections::Tracker>>,
    /// When the service gauges were last read from the backends, and which were set.
    pub service_refresh: tokio::sync::Mutex<(Option<std::time::Instant>, std::collections::HashSet<ServiceLabels>)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub reason: &'static str,
}

/// What the store holds on disk, set at scrape time.
#[derive(Default)]
pub struct StoreGauges {
    pub database_bytes: Gauge,
    pub wal_bytes: Gauge,
    pub wal_peak_bytes: Gauge,
    pub executions: Gauge,
    /// 1 while the store can write, 0 after a failed write until one succeeds.
    pub writable: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hookd");
        let triggers = Family::<TriggerLabels, Counter>::default();
        registry.register("triggers", "Triggers handled, by driver, outcome and skip reason", triggers.clone());
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "triggers_rejected",
            "Trigger requests refused before any action, by error code",
            rejected.clone(),
        );
        let trigger_latency =
            HistogramFamily::<DriverLabels>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "trigger_duration_seconds",
            "Time to handle a trigger, from request to recorded decision",
            trigger_latency.clone(),
        );
        let desired_scale = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "service_desired_scale",
            "Desired scale of each service of each project's backend",
            desired_scale.clone(),
        );
        let running_replicas = Family::<ServiceLabels, Gauge>::default();
        registry.register("service_running_replicas", "Replicas of each service running now", running_replicas.clone());
        let backend_latency =
            HistogramFamily::<BackendOpLabels>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("backend_call_duration_seconds", "Latency of calls to backends", backend_latency.clone());
        let backend_errors = Family::<BackendOpLabels, Counter>::default();
        registry.register("backend_call_errors", "Failed calls to backends", backend_errors.clone());
        let invalid_tokens = rejected.get_or_create(&RejectLabels { code: "invalid_token" }).clone();
        let store = StoreGauges::default();
        registry.register("store_database_bytes", "Size of the database file", store.database_bytes.clone());
        registry.register("store_wal_bytes", "Size of the database's write-ahead log", store.wal_bytes.clone());
        registry.register(
            "store_wal_peak_bytes",
            "Largest size of the write-ahead log since hookd started",
            store.wal_peak_bytes.clone(),
        );
        registry.register("store_executions", "Executions kept in the history", store.executions.clone());
        registry.register(
            "store_writable",
            "1 while the store can write, 0 after a failed write",
            store.writable.clone(),
        );
        let connections_open = Gauge::default();
        registry.register("connections_open", "HTTP connections open now", connections_open.clone());
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "connections_closed_by_hookd",
            "Connections hookd closed or refused: idle_timeout, header_timeout, evicted (at the cap), refused",
            connections_closed.clone(),
        );
        Self {
            registry,
            triggers,
            rejected,
            trigger_latency,
            desired_scale,
            running_replicas,
            backend_latency,
            backend_errors,
            invalid_tokens,
            store,
            connections_open,
            connections_closed,
            tracker: std::sync::OnceLock::new(),
            service_refresh: Default::default(),
        }
    }
}

impl Metrics {
    pub fn connection_closed(&self, why: crate::connections::Closed) {
        self.connections_closed.get_or_create(&ClosedLabels { reason: why.as_str() }).inc();
    }

    /// The main port's connections, counted at scrape time.
    pub fn set_connection_tracker(&self, tracker: std::sync::Arc<crate::connections::Tracker>) {
        let _ = self.tracker.set(tracker);
    }

    pub fn render(&self) -> String {
        if let Some(tracker) = self.tracker.get() {
            self.connections_open.set(tracker.open_count() as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn reject(&self, code: &'static str) {
        self.rejected.get_or_create(&RejectLabels { code }).inc();
    }
}
