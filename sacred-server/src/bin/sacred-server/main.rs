//! The `sacred-server` binary: a Sacred hub with health and readiness checks,
//! configured by flags, environment and an optional TOML file, with graceful
//! shutdown on SIGTERM or Ctrl-C.
//!
//! Run with: cargo run --release -p sacred-server -- --help

mod settings;

use std::process::ExitCode;

use axum::serve::ListenerExt;
use clap::Parser;
use sacred_server::Hub;
use settings::{Cli, LogFormat, Settings};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&cli) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sacred-server: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(settings.log_format);
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "sacred-server failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    // One descriptor per connection: raise the soft limit to the hard one,
    // as a server for thousands of connections must (1024 is a common default).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open file limit"),
        Err(err) => tracing::warn!(%err, "could not raise the open file limit"),
    }
    let (router, hub) = Hub::builder().options(settings.hub).build()?;
    let listener = TcpListener::bind(settings.bind).await?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "sacred-server listening: ws://{address}/ws, http://{address}/health");
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown(hub))
        .await?;
    tracing::info!("sacred-server stopped");
    Ok(())
}

/// Resolves when the hub has drained after SIGTERM or Ctrl-C.
async fn shutdown(hub: Hub) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => drop(signal.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!(
        connections = hub.connections(),
        "shutting down: not ready, migrate advice sent, draining"
    );
    hub.shutdown().await;
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SACRED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
