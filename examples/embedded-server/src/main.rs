//! `embedded-server --listen ADDR --database URL`: the example host app (see the library
//! docs). Prints `listening on http://ADDR` once it accepts connections; Ctrl-C (or
//! SIGTERM) shuts it down gracefully, open change feeds included.

use clap::Parser;
use embedded_server::{Sessions, host_router, tidesync_app};

/// An axum app that embeds tidesync-server.
#[derive(Debug, Parser)]
struct Args {
    /// The address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The database: sqlite://FILE, sqlite:///ABS/FILE or postgres://…
    #[arg(long, default_value = "sqlite://embedded.db")]
    database: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let sessions = Sessions::default();
    let app = tidesync_app(&args.database, &sessions).await?;
    let router = host_router(&app, sessions);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(app.graceful_shutdown(shutdown_signal()))
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
