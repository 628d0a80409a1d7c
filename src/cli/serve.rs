//! `hookd serve`.

use std::path::PathBuf;

use clap::Args;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use anyhow::Context;

use crate::{
    config::{Config, LogFormat},
    datadir::DataDirLock,
    server::App,
};

#[derive(Args)]
pub struct ServeArgs {
    /// TOML config file (see config.example.toml). [env: HOOKD_CONFIG]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding the config. [env: HOOKD_LISTEN]
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Data directory, overriding the config. [env: HOOKD_DATA_DIR]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("HOOKD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: a log file or the journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config, |k| std::env::var(k).ok())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    init_logging(config.log_format);
    // The data directory first: a second hookd on it must hear that, not "address in use".
    let data_dir = DataDirLock::acquire(&config.data_dir)?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
    let app = App::build_locked(config, data_dir, listener).await?;
    if let Some(token) = &app.generated_admin_token {
        eprintln!(
            "\nCreated the admin API token. It is shown this once; hookd keeps only its hash:\n\n    {}\n",
            token.expose()
        );
    }
    tracing::info!(address = %app.local_addr(), "hookd listening");
    app.run(shutdown_signal()).await
}
