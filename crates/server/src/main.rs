//! `tidesync-server`: serve tables over the Azure Mobile Apps / Datasync protocol.
//!
//! `tidesync-server --listen 127.0.0.1:8080 --database sqlite://data.db --table TodoItem`
//! prints `listening on http://ADDR` on stdout once the database is ready; logs go to stderr.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tidesync_server::{Server, ServerConfig, TableConfig};

/// The tidesync sync server.
#[derive(Debug, Parser)]
#[command(name = "tidesync-server", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: Option<String>,
    /// sqlite://FILE (relative), sqlite:///ABS/FILE or postgres://user@host:port/db.
    #[arg(long)]
    database: Option<String>,
    /// A table to serve (anonymous, soft delete); repeat for more.
    #[arg(long = "table")]
    tables: Vec<String>,
    /// A TOML configuration file (see the crate docs of `tidesync_server::config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Require this API key (`x-api-key` header).
    #[arg(long)]
    api_key: Option<String>,
    /// Verify HS256 tokens with this secret.
    #[arg(long)]
    jwt_secret: Option<String>,
    /// Rows per page for both protocol versions.
    #[arg(long)]
    page_size: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = Some(listen);
    }
    if let Some(database) = args.database {
        config.database = Some(database);
    }
    for table in args.tables {
        config.add_table(TableConfig::new(table));
    }
    if let Some(key) = args.api_key {
        config.auth.api_key = Some(key);
    }
    if let Some(secret) = args.jwt_secret {
        config.auth.jwt_secret = Some(secret);
    }
    if let Some(rows) = args.page_size {
        config.paging.page_size = Some(rows);
    }
    if config.database.is_none() {
        config.database = Some("sqlite://tidesync.db".to_owned());
    }
    // Listen for the stop signals before announcing the address: a SIGTERM sent as soon as
    // "listening on" appears must stop the server cleanly, not kill it.
    let stop = shutdown_signal()?;
    let server = Server::builder()
        .config(config)
        .start()
        .await
        .context("cannot start the server")?;
    println!("listening on {}", server.url());
    tracing::info!(addr = %server.addr(), "listening");
    stop.await;
    tracing::info!("shutting down");
    server.shutdown().await?;
    Ok(())
}

/// Registers SIGINT and SIGTERM (Ctrl-C elsewhere) now; the future resolves on the first.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
