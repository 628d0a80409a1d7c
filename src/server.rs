//! Wiring: build every part from a [`Config`] and serve until a shutdown signal.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{body::Body, extract::ConnectInfo, Router};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::{
    auth,
    backend::Backends,
    config::{Config, Secret},
    datadir::DataDirLock,
    engine::Engine,
    http::{app, AppState, TokenGate},
    metrics::Metrics,
    store,
    token::TriggerKeys,
};

/// A built hookd, bound to its listener, not yet serving.
pub struct App {
    state: Arc<AppState>,
    listener: TcpListener,
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
        let generated_admin_token = auth::ensure_admin(store.as_ref(), config.admin_token.as_ref()).await?;
        let keys = TriggerKeys::load_or_create(store.as_ref()).await?;
        let metrics = Arc::new(Metrics::default());
        let backends = Arc::new(Backends::start(&config, store.clone(), &data_dir).await?);
        let engine = Engine::new(store.clone(), backends.clone(), metrics.clone());
        let state = Arc::new(AppState {
            store,
            backends,
            engine,
            keys,
            metrics,
            public_url: config.public_url.clone(),
            max_body_bytes: config.max_body_bytes,
            sessions: Default::default(),
        });
        Ok(Self { state, listener, generated_admin_token, data_dir })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops supervised processes and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        serve(self.listener, app(self.state.clone()), shutdown).await;
        self.state.backends.shutdown().await;
        self.state.store.close().await;
        drop(self.data_dir);
        Ok(())
    }
}

/// Longest wait for open connections to finish their requests at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// HTTP/1.1 straight on hyper: hookd needs no HTTP/2 detection and no upgrades, and both
/// cost something on every trigger. Each connection's requests carry its peer address.
async fn serve(listener: TcpListener, app: TokenGate<Router>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
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
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |req: axum::http::Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after {} s; closing them", DRAIN.as_secs());
    }
}
