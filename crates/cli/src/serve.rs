//! `tradelog serve`: one node with every shard embedded (or, with `--node-id`, one node of
//! a replicated cluster), behind the gRPC and HTTP interfaces, until SIGINT or SIGTERM.
//!
//! DEVELOPMENT ONLY: there is no authentication yet (callers declare their principal and
//! authority in `x-tradelog-principal` / `x-tradelog-authority` headers). Keep the
//! listeners on 127.0.0.1.

use anyhow::{Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use tradelog_server::{ClusterSettings, Server, ServerConfig};

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
    /// Run as node ID of a replicated cluster (every shard a Raft group over the nodes;
    /// peers reach this node on its gRPC address). Without it: a single node.
    #[arg(long, env = "TRADELOG_NODE_ID", value_parser = clap::value_parser!(u64).range(1..))]
    node_id: Option<u64>,
    /// The members of a new cluster, the same list on every one of them:
    /// ID=URL of its gRPC port, comma separated (1=http://127.0.0.1:7700,2=...). Leave it
    /// out on a node an operator adds to a running cluster.
    #[arg(long, env = "TRADELOG_MEMBERS", value_delimiter = ',', requires = "node_id", value_parser = parse_member)]
    members: Vec<(u64, String)>,
    /// How often (ms) a node that leads at least two shards more than another live voter
    /// hands one leadership over, so leaders spread evenly over the nodes (on a cluster
    /// whose shards live on different nodes: to each shard's preferred leader, computed
    /// from the cluster map); 0 turns it off (leaders then move only with `tradelog admin`).
    #[arg(long, env = "TRADELOG_LEADER_BALANCE_INTERVAL_MS", default_value_t = tradelog_server::LEADER_BALANCE_INTERVAL_MS, requires = "node_id")]
    leader_balance_interval_ms: u64,
    /// Replicas of each shard in a new cluster: each shard is placed on this many of the
    /// --members (spread evenly, leaders too) and a node opens only its own shards. Left
    /// out: every member holds every shard. Give every initial member the same value;
    /// only read when the cluster is formed. Adding and removing nodes is not supported
    /// yet in a cluster formed with a factor below its member count.
    #[arg(long, env = "TRADELOG_REPLICATION_FACTOR", requires = "members", value_parser = clap::value_parser!(u64).range(1..=tradelog_placement::REPLICATION_FACTOR_MAX as u64))]
    replication_factor: Option<u64>,
}

/// Parses `ID=URL`.
fn parse_member(s: &str) -> Result<(u64, String), String> {
    let (id, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=URL (such as 1=http://127.0.0.1:7700)"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("{id:?} is not a node id (a positive integer)"))?;
    if id == 0 {
        return Err("node ids start at 1".into());
    }
    let url = url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "{url:?} is not a URL (such as http://127.0.0.1:7700)"
        ));
    }
    Ok((id, url.to_string()))
}

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`).
///
/// A node's tail latency is worse with them. `bench --only durable --shards 1
/// --duration-secs 10`, the same binary with mimalloc's huge pages on and off: the
/// slowest group commit of the batched pass took 809 ms (807 ms of it in the engine's
/// apply: a page fault on a fresh 2 MB page zeroes all of it) against 156 ms; the
/// pass's maximum latency was 816 against 166 ms, and its throughput 808 against
/// 843 k/s (docs/design/0005). The engine benchmark, a single thread over pre-sized
/// tables, is faster with them, so only node processes turn them off.
pub fn disable_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!("could not turn transparent huge pages off: {e}");
    }
}

/// Runs the server until SIGINT or SIGTERM, then shuts it down gracefully.
pub fn run(args: Args) -> Result<()> {
    init_logs();
    disable_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tradelog-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // The signal handlers first: a SIGTERM during start-up stops the node cleanly too.
        let signal = signals()?;
        let mut members = std::collections::BTreeMap::new();
        for (id, url) in &args.members {
            if members.insert(*id, url.clone()).is_some() {
                anyhow::bail!("node {id} appears twice in --members");
            }
        }
        let cluster = args.node_id.map(|node_id| ClusterSettings {
            node_id,
            initial_members: members,
            raft: None,
            leader_balance_interval_ms: args.leader_balance_interval_ms,
            replication_factor: args.replication_factor.map(|rf| rf as usize),
        });
        let config = ServerConfig {
            data_dir: args.data_dir.clone(),
            shards: args.shards,
            grpc_addr: args.grpc_addr,
            http_addr: args.http_addr,
            cluster,
            ..ServerConfig::default()
        };
        let server = tokio::select! {
            s = Server::start(config) => s.context("starting the server")?,
            name = signal.recv() => {
                tracing::info!(signal = name, "stopped during start-up");
                return Ok(());
            }
        };
        let role = match args.node_id {
            Some(id) => format!("node {id} of a replicated cluster, "),
            None => String::new(),
        };
        println!(
            "tradelog serving {} shards ({role}data in {}): gRPC on {}, HTTP on http://{} \
             (development only: no authentication)",
            args.shards,
            args.data_dir.display(),
            server.grpc_addr(),
            server.http_addr()
        );
        let _ = std::io::stdout().flush();
        let signal = signal.recv().await;
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

/// SIGINT and SIGTERM, installed once.
struct Signals {
    #[cfg(unix)]
    term: tokio::sync::Mutex<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

fn signals() -> Result<Signals> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(Signals {
            term: tokio::sync::Mutex::new((term, int)),
        })
    }
    #[cfg(not(unix))]
    Ok(Signals {})
}

impl Signals {
    /// Waits for the next signal; its name.
    async fn recv(&self) -> &'static str {
        #[cfg(unix)]
        {
            let mut g = self.term.lock().await;
            let (term, int) = &mut *g;
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
