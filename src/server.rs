//! Wiring: build every part from a [`Config`] and serve until a shutdown signal.

use std::{future::Future, net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;

use crate::{
    auth,
    backend::Backends,
    config::{Config, Secret},
    engine::Engine,
    http::{router, AppState},
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
}

impl App {
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let store = store::open(&config.database_url()).await?;
        let generated_admin_token = auth::ensure_admin(store.as_ref(), config.admin_token.as_ref()).await?;
        let keys = TriggerKeys::load_or_create(store.as_ref()).await?;
        let metrics = Arc::new(Metrics::default());
        let backends = Arc::new(Backends::start(&config, store.clone()).await?);
        let engine = Engine::new(store.clone(), backends.clone(), metrics.clone());
        let state = Arc::new(AppState {
            store,
            backends,
            engine,
            keys,
            metrics,
            public_url: config.public_url.clone(),
            max_body_bytes: config.max_body_bytes,
        });
        Ok(Self { state, listener, generated_admin_token })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops supervised processes and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let app = router(self.state.clone());
        let served = axum::serve(self.listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await;
        self.state.backends.shutdown().await;
        self.state.store.close().await;
        Ok(served?)
    }
}
