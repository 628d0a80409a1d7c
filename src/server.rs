//! Wiring: build every part from a [`Config`] and serve until a shutdown signal.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{body::Body, extract::ConnectInfo, http::Request, response::Response};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{
    auth,
    backend::Backends,
    config::{Config, Secret},
    connections::{fit_to_file_limit, TrackedIo, Tracker},
    datadir::DataDirLock,
    engine::Engine,
    http::{app, metrics_app, AppState},
    metrics::Metrics,
    store,
    token::TriggerKeys,
};

/// A built hookd, bound to its listener, not yet serving.
pub struct App {
    state: Arc<AppState>,
    listener: TcpListener,
    /// `/metrics` on its own address, when configured.
    metrics_listener: Option<TcpListener>,
    tracker: Arc<Tracker>,
    /// Set when this start generated the first admin token: print it once.
    pub generated_admin_token: Option<Secret>,
    /// Held until the store is closed and the processes are stopped.
    data_dir: DataDirLock,
}

impl App {
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let data_dir = DataDirLock::acquire(&config.data_dir)?;
        Self::build_locked(config, data_dir, listener).await
    }

    /// Builds on a data directory this process has locked already.
    pub async fn build_locked(config: Config, data_dir: DataDirLock, listener: TcpListener) -> anyhow::Result<Self> {
        let store = store::open(&config.database_url(), config.retention).await?;
        let (generated_admin_token, keys, sealer) = {
            // Replicas starting at once on one database: one makes the sealing key (a shared
            // file), the admin token and the first signing key, which is sealed with it.
            let _first = store
                .lock("start-up", Duration::from_secs(30))
                .await?
                .ok_or_else(|| anyhow::anyhow!("another hookd held the database's start-up lock for 30 s"))?;
            let sealing_key = config.sealing_key_file();
            let sealer = crate::sealer::Sealer::load_or_create(&sealing_key)?;
            sealer.agree(store.as_ref(), &sealing_key).await?;
            let admin = auth::ensure_admin(store.as_ref(), config.admin_token.as_ref()).await?;
            let keys = TriggerKeys::load_or_create(store.as_ref(), &sealer).await?;
            (admin, keys, sealer)
        };
        let metrics = Arc::new(Metrics::default());
        let backends = Arc::new(Backends::start(&config, store.clone(), &data_dir).await?);
        let pools = Arc::new(crate::hosts::Pools::start(&config.host_pools)?);
        let engine = Engine::new(
            store.clone(),
            backends.clone(),
            pools,
            metrics.clone(),
            config.limits.backend_concurrency,
            // Unique per process: replicas on other hosts may have the same data directory path.
            format!("{}-{}", data_dir.instance_id(), uuid::Uuid::now_v7().simple()),
        );
        let resumed = engine.resume_jobs().await?;
        if resumed > 0 {
            tracing::info!(jobs = resumed, "resumed unfinished jobs");
        }
        let state = Arc::new(AppState {
            store,
            backends,
            engine,
            keys: std::sync::RwLock::new(Arc::new(keys)),
            metrics,
            public_url: config.public_url.clone(),
            max_body_bytes: config.max_body_bytes,
            limits: config.limits,
            metrics_on_main: config.metrics_listen.is_none(),
            sessions: Default::default(),
            failed_auth: Default::default(),
            sign_ins: tokio::sync::Semaphore::new(crate::http::SIGN_INS_AT_ONCE),
            access_changes: tokio::sync::Mutex::new(()),
            trigger_limits: crate::http::TriggerLimits::new(&config.limits),
            sealer,
        });
        let has_local = config.backends.iter().any(|b| b.kind == crate::config::BackendKind::Local);
        follow_changes(&state, has_local);
        let metrics_listener = match config.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("listening for /metrics on {address}: {e}"))?,
            ),
            None => None,
        };
        let tracker = Tracker::new(config.limits, fit_to_file_limit(config.limits.max_connections));
        Ok(Self { state, listener, metrics_listener, tracker, generated_admin_token, data_dir })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where `/metrics` is served, when it has its own address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops supervised processes and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopper.cancel();
        });
        let metrics = self.state.metrics.clone();
        let metrics_server = self.metrics_listener.map(|listener| {
            let tracker = Tracker::new(self.state.limits, 64);
            tokio::spawn(serve(listener, metrics_app(self.state.clone()), stop.clone(), tracker, metrics.clone()))
        });
        self.state.metrics.set_connection_tracker(self.tracker.clone());
        serve(self.listener, app(self.state.clone()), stop, self.tracker, metrics).await;
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        self.state.backends.shutdown().await;
        self.state.store.close().await;
        drop(self.data_dir);
        Ok(())
    }
}

/// Keeps what this hookd caches (signing keys, projects) in step with what other hookd on
/// the same store change: reloaded on each announced change, and every 30 s besides. Every
/// 30 s, the local backend's claim is renewed too (a restarted PostgreSQL drops it).
fn follow_changes(state: &Arc<AppState>, has_local: bool) {
    let Some(mut changes) = state.store.changes() else { return };
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        loop {
            let (keys, projects) = tokio::select! {
                change = changes.recv() => match change {
                    Ok(crate::store::Change::SigningKeys) => (true, false),
                    Ok(crate::store::Change::Projects) => (false, true),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => (true, true),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = every.tick() => (true, true),
            };
            let Some(state) = state.upgrade() else { return };
            if has_local && keys && projects && !matches!(state.store.claim_local_backend().await, Ok(true)) {
                tracing::error!(
                    "could not hold the local backend's claim on the database: another hookd may run it too"
                );
            }
            if keys {
                match state.store.signing_keys().await.map(|k| TriggerKeys::from_stored(&k, &state.sealer)) {
                    Ok(Some(loaded)) => *state.keys.write().expect("not poisoned") = Arc::new(loaded),
                    Ok(None) => tracing::warn!("the store holds no live signing key; keeping the ones loaded"),
                    Err(e) => tracing::warn!(error = %e, "could not reload the signing keys"),
                }
            }
            if projects {
                match state.store.projects().await {
                    Ok(stored) => state.backends.bind_stored(stored, false),
                    Err(e) => tracing::warn!(error = %e, "could not reload the projects"),
                }
            }
        }
    });
}

/// Longest wait for open connections to finish their requests at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// HTTP/1.1 straight on hyper: hookd needs no HTTP/2 detection and no upgrades, and both
/// cost something on every trigger. Each connection's requests carry its peer address,
/// and every connection is tracked (`connections.rs`): capped, and closed when idle or slow.
async fn serve<S>(
    listener: TcpListener,
    app: S,
    shutdown: CancellationToken,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
) where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let watchdog = {
        let (tracker, metrics, shutdown) = (tracker.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(tracker.sweep_every());
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                for why in tracker.sweep() {
                    metrics.connection_closed(why);
                }
            }
        })
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let registration = match tracker.admit() {
            Ok((registration, evicted)) => {
                if let Some(why) = evicted {
                    metrics.connection_closed(why);
                }
                registration
            }
            Err(refused) => {
                metrics.connection_closed(refused);
                continue; // dropping the stream closes it
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = registration.conn.clone();
        let (started, done) = (conn.clone(), conn.clone());
        let service = app
            .clone()
            .map_request(move |req: Request<Incoming>| {
                started.request_started();
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            })
            .map_response(move |response| {
                done.request_done();
                response
            });
        let io = TokioIo::new(TrackedIo::new(stream, conn.clone()));
        let connection = graceful.watch(http1::Builder::new().serve_connection(io, TowerToHyperService::new(service)));
        tokio::spawn(async move {
            let _registration = registration;
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = conn.closed() => {}
            }
        });
    }
    watchdog.abort();
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after {} s; closing them", DRAIN.as_secs());
    }
}
