//! The tradelog server: the network interfaces of one node.
//!
//! Owns: the network interfaces (a gRPC listener serving the published `tradelog.v1`
//! service of [`tradelog_api`], an HTTP listener serving the same operations as JSON plus
//! server-sent event streams, health, readiness, Prometheus metrics and the OpenAPI
//! document), request validation at the edge (every request goes through the api crate's
//! validated conversions before anything reaches a shard), translating requests to calls
//! of an embedded [`tradelog_node::Node`] (`submit`, `read`, `subscribe`) and of its
//! history ([`tradelog_node::NodeHistory`]: states and events regenerated from the logs;
//! on a cluster node from its replicas' Raft logs, `tradelog_cluster::ClusterNode::history`),
//! an in-memory index of the events published since the server started, and the queries
//! built on events (trades, candles, statements, open orders).
//!
//! Must never contain: business logic (every rule is the engine's, answered with a stable
//! `RejectCode`) or depend on storage internals (the node owns the log, snapshots and
//! recovery). Queries read the engine's state through the host's linearizable read
//! (`ShardHost::read_with`, now), its stale read when the request says `stale`
//! (`ShardHost::read_stale`: a cluster node's own replica without asking the leader; the
//! same as the normal read on a single node), or the node's history (as of a past point;
//! not with `stale`), never a copy kept here.
//!
//! # DEVELOPMENT ONLY: no authentication yet
//!
//! **Anyone who can reach the listeners can do anything.** Until API keys with signed
//! requests land, the caller *declares* who it is:
//!
//! * `x-tradelog-principal`: the principal (a `u64`; default `1`);
//! * `x-tradelog-authority`: `operator`, `trader` or `read-only` (default `operator`).
//!
//! Both are gRPC metadata or HTTP headers with the same names. The engine enforces what an
//! authority may do, but nothing checks that the caller is who it says. Both listeners
//! bind `127.0.0.1` by default; do not expose them to a network.
//!
//! # Events and history
//!
//! The server keeps, per shard, the events published since it started (at most
//! [`ServerConfig::events_retained_max`] per shard, default [`EVENTS_RETAINED_MAX`]).
//! `ReadEvents` and subscriptions serve a stream (all, account, market, order) after a
//! position; while a shard's position is older than the index, its events are regenerated
//! from the shard's log (snapshot + replay, byte-identical to what was published) up to
//! the index's first event, then read from the index: the whole history is readable, also
//! after a restart, with no gap and no duplicate across the seam. A subscription
//! subscribes to the live feed first, then reads the stored part, then skips live events
//! already sent (by shard and sequence number).
//!
//! `GetBalances`, `GetOrder` and `GetBook` take an optional `as_of` (a log index of the
//! owning shard, or a leader time: the state holding exactly the events stamped at or
//! before it). `GetTrades`, `GetCandles` (empty intervals omitted) and `GetStatement` read
//! one shard's events through the same seam. Work on history is bounded by
//! [`ServerConfig::history`] ([`HistoryLimits`]); a request over a limit gets
//! `INVALID_ARGUMENT` (HTTP 400 `limit_exceeded`) naming it, a point beyond what a shard
//! applied or in the future `OUT_OF_RANGE`. At most [`HISTORY_RUNNING_MAX`] history
//! questions run at a time (on blocking threads), [`HISTORY_WAITING_MAX`] more wait, the
//! rest are refused as overloaded. See docs/design/0006-history-and-queries.md.
//!
//! # HTTP routes and the OpenAPI document
//!
//! Every HTTP route is in one table ([`http_routes`]); `GET /openapi.json` serves
//! [`OPENAPI_JSON`] (`docs/api/openapi.json`), which tests hold to that table and to the
//! server's real answers.
//!
//! # Shutdown
//!
//! [`RunningServer::shutdown`] stops accepting connections, ends open event streams, lets
//! in-flight requests finish (every command already submitted gets its answer), then
//! calls `Node::shutdown`. Every acknowledged command was durable before it was
//! acknowledged, so nothing acknowledged is lost whatever happens after.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
mod core;
mod events;
mod grpc;
mod history;
mod http;
pub mod ports;
mod queries;
mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::audit::{SHARD_TASKS_MAX, SHARD_TASK_LOAD_WEIGHT};
pub use crate::core::{Identity, PRINCIPAL_DEFAULT};
pub use crate::history::{HISTORY_PAGE_SCAN_MAX, HISTORY_RUNNING_MAX, HISTORY_WAITING_MAX};
pub use crate::http::{routes as http_routes, OPENAPI_JSON};
pub use tradelog_cluster::LEADER_BALANCE_INTERVAL_MS;
pub use tradelog_node::HistoryLimits;

use crate::core::Core;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tradelog_cluster::{ClusterConfig, ClusterError, ClusterNode};
use tradelog_domain::ShardId;
use tradelog_node::{Node, NodeConfig, NodeError, NodeHistory, ShardHost};

/// Default data directory.
pub const DATA_DIR_DEFAULT: &str = "./tradelog-data";
/// Default number of shards.
pub const SHARDS_DEFAULT: u32 = 4;
/// Default gRPC listen address.
pub const GRPC_ADDR_DEFAULT: &str = "127.0.0.1:7700";
/// Default HTTP listen address.
pub const HTTP_ADDR_DEFAULT: &str = "127.0.0.1:7701";
/// Default number of events the server keeps in memory per shard for `ReadEvents` and
/// subscriptions (older events are regenerated from the logs).
pub const EVENTS_RETAINED_MAX: usize = 250_000;
/// Largest HTTP request body, in bytes (a full batch of commands fits easily).
pub const HTTP_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest gRPC request message, in bytes.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// On a cluster node, how long shutdown lets client requests finish before it stops the
/// Raft groups (ms).
pub const CLUSTER_DRAIN_MS: u64 = 2_000;
/// How long shutdown waits for in-flight requests before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings of a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the node keeps its shards.
    pub data_dir: PathBuf,
    /// Number of shards (all embedded in this process). Must be the same every time a
    /// data directory is opened.
    pub shards: u32,
    /// gRPC listen address (port 0: any free port; see [`RunningServer::grpc_addr`]).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (port 0: any free port; see [`RunningServer::http_addr`]).
    pub http_addr: SocketAddr,
    /// Events kept in memory per shard for reads and subscriptions (older ones are
    /// regenerated from the logs).
    pub events_retained_max: usize,
    /// How much replay one history question may do (as-of queries, old events, candles,
    /// statements).
    pub history: HistoryLimits,
    /// Run as one node of a replicated cluster (every shard a Raft group over the nodes);
    /// None: a single node with every shard embedded.
    pub cluster: Option<ClusterSettings>,
}

/// The replication settings of a server that is one node of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// This node's id (unique in the cluster, never reused).
    pub node_id: u64,
    /// The members of a new cluster: node id and the URL of its gRPC port (such as
    /// `http://127.0.0.1:7700`), the same list on every initial member. Empty for a node
    /// that an operator adds to a running cluster.
    pub initial_members: BTreeMap<u64, String>,
    /// openraft settings (heartbeat, election timeout); None: tradelog's defaults.
    pub raft: Option<tradelog_raft::openraft::Config>,
    /// How often the node hands a leadership to a voter leading fewer shards (ms;
    /// [`LEADER_BALANCE_INTERVAL_MS`] by default); 0: only on command.
    pub leader_balance_interval_ms: u64,
    /// Replicas of each shard when the cluster is formed: `None`, every member holds
    /// every shard; `Some(rf)`, `rf` of them by the placement policy (see
    /// `tradelog_cluster::ClusterConfig::replication_factor`).
    pub replication_factor: Option<usize>,
}

impl ClusterSettings {
    /// Node `node_id` of a new cluster of `initial_members`, with the default Raft and
    /// leader-balance settings.
    pub fn new(node_id: u64, initial_members: BTreeMap<u64, String>) -> ClusterSettings {
        ClusterSettings {
            node_id,
            initial_members,
            raft: None,
            leader_balance_interval_ms: LEADER_BALANCE_INTERVAL_MS,
            replication_factor: None,
        }
    }
}

impl ServerConfig {
    /// Node `node_id` of a new cluster of `initial_members` with `shards` shards, its data
    /// in `data_dir`, gRPC (the API and the Raft transport) on `grpc_addr` and HTTP on
    /// a free loopback port; everything else by default.
    pub fn cluster_node(
        node_id: u64,
        initial_members: BTreeMap<u64, String>,
        shards: u32,
        data_dir: PathBuf,
        grpc_addr: SocketAddr,
    ) -> ServerConfig {
        ServerConfig {
            data_dir,
            shards,
            grpc_addr,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster: Some(ClusterSettings::new(node_id, initial_members)),
            ..ServerConfig::default()
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            shards: SHARDS_DEFAULT,
            grpc_addr: GRPC_ADDR_DEFAULT.parse().expect("valid default address"),
            http_addr: HTTP_ADDR_DEFAULT.parse().expect("valid default address"),
            events_retained_max: EVENTS_RETAINED_MAX,
            history: HistoryLimits::default(),
            cluster: None,
        }
    }
}

/// Why a server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The node could not be opened (see the inner error: storage, snapshot, recovery).
    #[error("opening the node in {dir}: {source}")]
    Node {
        /// Its data directory.
        dir: PathBuf,
        /// Why.
        source: NodeError,
    },
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The replicated node could not start (see the inner error).
    #[error("starting the replicated node in {dir}: {source}")]
    Cluster {
        /// Its data directory.
        dir: PathBuf,
        /// Why.
        source: ClusterError,
    },
    /// The node did not answer during start-up.
    #[error("node did not answer: {0}")]
    NodeUnavailable(String),
    /// Some requests were still running after [`SHUTDOWN_GRACE`]; the node stops when
    /// the last of them ends.
    #[error("requests still running after the shutdown grace period")]
    ShutdownTimedOut,
}

/// Starts servers.
pub struct Server;

impl Server {
    /// Opens the node (recovering its shards), binds both listeners and starts serving.
    /// Must be called inside a tokio runtime (multi-threaded for real use).
    pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
        if config.shards == 0 || config.shards > tradelog_domain::SHARD_COUNT_MAX {
            return Err(ServerError::Config(format!(
                "shards must be 1 to {}, got {}",
                tradelog_domain::SHARD_COUNT_MAX,
                config.shards
            )));
        }
        if config.events_retained_max == 0 {
            return Err(ServerError::Config(
                "events_retained_max must be at least 1".into(),
            ));
        }
        // The metrics recorder first: the node takes its metric handles when it opens.
        let _ = telemetry::handle();
        // Bind first: a busy port should fail before the node is opened.
        let grpc_listener = bind(config.grpc_addr).await?;
        let http_listener = bind(config.http_addr).await?;
        let grpc_addr = local_addr(&grpc_listener, config.grpc_addr)?;
        let http_addr = local_addr(&http_listener, config.http_addr)?;

        let retained = config.events_retained_max;
        let (node, cluster, history): (Arc<dyn ShardHost>, _, _) = match &config.cluster {
            None => {
                let node_config = NodeConfig::new(&config.data_dir, config.shards);
                let dir = config.data_dir.clone();
                let limits = config.history.clone();
                let (node, history) = tokio::task::spawn_blocking(move || {
                    let node = Node::open(node_config.clone())
                        .map_err(|source| ServerError::Node { dir, source })?;
                    let history = NodeHistory::open(&node_config, limits).map_err(|e| {
                        ServerError::NodeUnavailable(format!("opening the history: {e}"))
                    })?;
                    Ok::<_, ServerError>((node, history))
                })
                .await
                .map_err(|e| ServerError::NodeUnavailable(e.to_string()))??;
                (Arc::new(node), None, Arc::new(history))
            }
            Some(c) => {
                let mut cc = ClusterConfig::new(
                    c.node_id,
                    &config.data_dir,
                    config.shards,
                    c.initial_members.clone(),
                );
                if let Some(r) = &c.raft {
                    cc.raft = r.clone();
                }
                cc.leader_balance_interval_ms = c.leader_balance_interval_ms;
                cc.replication_factor = c.replication_factor;
                let cluster =
                    ClusterNode::start(cc)
                        .await
                        .map_err(|source| ServerError::Cluster {
                            dir: config.data_dir.clone(),
                            source,
                        })?;
                let history = cluster.history(config.history.clone()).map_err(|e| {
                    ServerError::NodeUnavailable(format!("opening the history: {e}"))
                })?;
                (
                    cluster.clone() as Arc<dyn ShardHost>,
                    Some(cluster),
                    history,
                )
            }
        };
        // Subscribe before reading where each shard's events stand: every event after that
        // point reaches the index.
        let feed = node.subscribe();
        let next = if cluster.is_some() {
            // A replica's events are those of the entries it applies from now on; the first
            // read below waits for a leader, so it would hold up the start of a node whose
            // peers are not up yet. Every event from the current state on is indexed. The
            // index has a slot for every shard a split may make (its events start at 1).
            let mut next = Vec::new();
            for s in 0..node.shard_slots() {
                let g = cluster.as_ref().and_then(|c| c.group(ShardId(s)));
                let seq = match g {
                    Some(g) => g
                        .read_local(|e| e.next_event_seq())
                        .await
                        .map_err(|e| ServerError::NodeUnavailable(e.to_string()))?,
                    None => 1,
                };
                next.push(seq);
            }
            next
        } else {
            let mut next = Vec::new();
            for s in 0..node.shard_count() {
                next.push(
                    core::read(&*node, ShardId(s), |e| e.next_event_seq())
                        .await
                        .map_err(|e| ServerError::NodeUnavailable(e.to_string()))?,
                );
            }
            next
        };
        // Weak: shutting down waits until the server holds no reference to the node.
        let counted = Arc::downgrade(&node);
        let (log, feeder) = events::EventLog::start(
            feed,
            &next,
            Arc::new(move || counted.upgrade().map_or(0, |n| n.shard_count())),
            retained,
        );

        let (stop_tx, stop_rx) = watch::channel(false);
        let history = history::History::new(node.clone(), history, log.clone());
        let core = Arc::new(Core::new(
            node.clone(),
            cluster.clone(),
            log,
            history,
            stop_rx.clone(),
        ));
        let upkeep = telemetry::start_upkeep(stop_rx.clone());

        let raft_service = cluster.as_ref().map(|c| c.raft_service());
        let grpc = tokio::spawn(grpc::serve(
            core.clone(),
            grpc_listener,
            stop_rx.clone(),
            raft_service,
        ));
        let http = tokio::spawn(http::serve(core.clone(), http_listener, stop_rx));
        tracing::info!(
            %grpc_addr,
            %http_addr,
            data_dir = %config.data_dir.display(),
            shards = config.shards,
            "tradelog server listening (development only: no authentication)"
        );
        Ok(RunningServer {
            grpc_addr,
            http_addr,
            core: Some(core),
            node: Some(node),
            cluster,
            stop: stop_tx,
            tasks: vec![grpc, http, upkeep],
            feeder: Some(feeder),
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

fn local_addr(l: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    l.local_addr()
        .map_err(|source| ServerError::Bind { addr, source })
}

/// A server that is running: its bound addresses and its shutdown.
pub struct RunningServer {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    core: Option<Arc<Core>>,
    node: Option<Arc<dyn ShardHost>>,
    cluster: Option<Arc<ClusterNode>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    feeder: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// The address the gRPC listener is bound to.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The address the HTTP listener is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The shards this server runs (for checks and audits).
    pub fn node(&self) -> &dyn ShardHost {
        &**self.node.as_ref().expect("node is open until shutdown")
    }

    /// The replicated node, when this server is one node of a cluster.
    pub fn cluster(&self) -> Option<&Arc<ClusterNode>> {
        self.cluster.as_ref()
    }

    /// Stops accepting connections, ends event streams, waits for in-flight requests (at
    /// most [`SHUTDOWN_GRACE`]) and shuts the node down (joining its shard threads).
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut tasks: Vec<JoinHandle<()>> = self.tasks.drain(..).collect();
        if let Some(cluster) = &self.cluster {
            // Peers keep replication streams open on the gRPC port, so its graceful stop
            // would wait for them: give client requests a moment, then stop the Raft
            // groups (which ends those streams), then wait for the rest.
            let drain = Instant::now() + Duration::from_millis(CLUSTER_DRAIN_MS);
            let mut left = Vec::new();
            for mut t in tasks {
                let wait = drain.saturating_duration_since(Instant::now());
                if tokio::time::timeout(wait, &mut t).await.is_err() {
                    left.push(t);
                }
            }
            cluster.shutdown().await;
            tasks = left;
        }
        for t in tasks {
            let abort = t.abort_handle();
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, t).await.is_err() {
                tracing::warn!("a listener did not finish in time; aborting it");
                abort.abort();
            }
        }
        self.core = None;
        let node = self.node.take().expect("node is open until shutdown");
        // Requests that already had the node (reads on blocking threads, stream tasks)
        // end by themselves; wait for them so the node stops here, not later (aborted
        // tasks drop theirs in a moment).
        let owners = 1 + usize::from(self.cluster.is_some());
        let count_deadline = deadline.max(Instant::now() + Duration::from_secs(1));
        while Arc::strong_count(&node) > owners && Instant::now() < count_deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if Arc::strong_count(&node) > owners {
            if self.cluster.is_none() {
                return Err(ServerError::ShutdownTimedOut);
            }
            // A cluster node's replicas are stopped already; connections peers still hold
            // open keep a reference and answer "stopped" until they close.
            tracing::info!("peer connections still open; the replicas are stopped");
        }
        self.cluster = None;
        let feeder = self.feeder.take();
        tokio::task::spawn_blocking(move || {
            node.stop();
            // The node closed the event feed; the index thread ends.
            if let Some(f) = feeder {
                let _ = f.join();
            }
        })
        .await
        .map_err(|e| ServerError::NodeUnavailable(e.to_string()))?;
        tracing::info!("finished in-flight work; node stopped");
        Ok(())
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // Without `shutdown`: stop serving; the node stops when its last user is gone.
        let _ = self.stop.send(true);
    }
}
