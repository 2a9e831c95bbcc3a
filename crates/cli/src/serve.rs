//! `tradelog serve`: one node with every shard embedded, behind the gRPC and HTTP
//! interfaces, until SIGINT or SIGTERM.
//!
//! DEVELOPMENT ONLY: there is no authentication yet (callers declare their principal and
//! authority in `x-tradelog-principal` / `x-tradelog-authority` headers). Keep the
//! listeners on 127.0.0.1.

use anyhow::{Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use tradelog_server::{Server, ServerConfig};

/// Options of `tradelog serve` (each also read from its environment variable).
#[derive(clap::Args)]
#[command(
    long_about = "Runs one node with every shard embedded (durable logs and snapshots under \
        --data-dir) behind the gRPC API (--grpc-addr) and the same operations as HTTP/JSON \
        (--http-addr), until SIGINT or SIGTERM, when it finishes in-flight requests and \
        stops. DEVELOPMENT ONLY: no authentication yet; keep it on 127.0.0.1.",
    after_help = "Examples:\n  tradelog serve\n  \
        tradelog serve --data-dir /var/lib/tradelog --shards 8\n  \
        TRADELOG_GRPC_ADDR=127.0.0.1:9700 tradelog serve"
)]
pub struct Args {
    /// Where the shards keep their logs and snapshots.
    #[arg(long, env = "TRADELOG_DATA_DIR", default_value = tradelog_server::DATA_DIR_DEFAULT)]
    data_dir: PathBuf,
    /// Number of shards (must stay the same for a data directory).
    #[arg(
        long,
        env = "TRADELOG_SHARDS",
        default_value_t = tradelog_server::SHARDS_DEFAULT,
        value_parser = clap::value_parser!(u32).range(1..=4096)
    )]
    shards: u32,
    /// gRPC listen address.
    #[arg(long, env = "TRADELOG_GRPC_ADDR", default_value = tradelog_server::GRPC_ADDR_DEFAULT)]
    grpc_addr: SocketAddr,
    /// HTTP listen address (JSON API, server-sent events, /health, /ready, /metrics).
    #[arg(long, env = "TRADELOG_HTTP_ADDR", default_value = tradelog_server::HTTP_ADDR_DEFAULT)]
    http_addr: SocketAddr,
}

/// Runs the server until SIGINT or SIGTERM, then shuts it down gracefully.
pub fn run(args: Args) -> Result<()> {
    init_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tradelog-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let config = ServerConfig {
            data_dir: args.data_dir.clone(),
            shards: args.shards,
            grpc_addr: args.grpc_addr,
            http_addr: args.http_addr,
            ..ServerConfig::default()
        };
        let server = Server::start(config).await.context("starting the server")?;
        println!(
            "tradelog serving {} shards from {}: gRPC on {}, HTTP on http://{} \
             (development only: no authentication)",
            args.shards,
            args.data_dir.display(),
            server.grpc_addr(),
            server.http_addr()
        );
        let _ = std::io::stdout().flush();
        let signal = wait_for_signal().await?;
        tracing::info!(
            signal,
            "shutting down: no new connections, finishing in-flight work"
        );
        server.shutdown().await.context("shutting down")?;
        tracing::info!("finished in-flight work; bye");
        Ok(())
    })
}

/// Structured logs on stderr; `RUST_LOG` filters them (default `info`).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<&'static str> {
    tokio::signal::ctrl_c()
        .await
        .context("installing the Ctrl-C handler")?;
    Ok("Ctrl-C")
}
