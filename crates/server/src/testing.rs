//! Helpers for test suites that start servers in this process (feature `testing`): free
//! loopback ports and the nodes of a new cluster on them. Never used by the server itself.

use crate::{RunningServer, Server, ServerConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A loopback port free when asked and claimed for the caller ([`crate::ports`]).
pub fn free_port() -> u16 {
    crate::ports::free_loopback_port().expect("a free loopback port")
}

/// `http://127.0.0.1:PORT`.
pub fn loopback_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Starts node `id` of a new cluster of `members` with `shards` shards, its gRPC on
/// loopback `port` and its data in `dir`; panics if it does not start.
pub async fn start_cluster_node(
    id: u64,
    port: u16,
    dir: PathBuf,
    members: &BTreeMap<u64, String>,
    shards: u32,
) -> RunningServer {
    start_cluster_node_rf(id, port, dir, members, shards, None).await
}

/// As [`start_cluster_node`], forming the cluster with `replication_factor` replicas of
/// each shard (`None`: every member holds every shard).
pub async fn start_cluster_node_rf(
    id: u64,
    port: u16,
    dir: PathBuf,
    members: &BTreeMap<u64, String>,
    shards: u32,
    replication_factor: Option<usize>,
) -> RunningServer {
    let config = cluster_config(id, port, dir, members, shards, replication_factor, None);
    Server::start(config).await.expect("server starts")
}

/// As [`start_cluster_node_rf`], with each replica snapshotting every `snapshot_every`
/// applied entries and keeping no entry behind its snapshot, so a replica added later
/// receives a snapshot instead of the whole log (and lacks the events before it).
pub async fn start_cluster_node_snapshotting(
    id: u64,
    port: u16,
    dir: PathBuf,
    members: &BTreeMap<u64, String>,
    shards: u32,
    replication_factor: Option<usize>,
    snapshot_every: u64,
) -> RunningServer {
    let mut raft = tradelog_raft::raft_config("tradelog").expect("the default config is valid");
    raft.snapshot_policy = tradelog_raft::openraft::SnapshotPolicy::LogsSinceLast(snapshot_every);
    raft.max_in_snapshot_log_to_keep = 0;
    let config = cluster_config(
        id,
        port,
        dir,
        members,
        shards,
        replication_factor,
        Some(raft),
    );
    Server::start(config).await.expect("server starts")
}

/// The configuration of node `id` of a new cluster on loopback `port`.
fn cluster_config(
    id: u64,
    port: u16,
    dir: PathBuf,
    members: &BTreeMap<u64, String>,
    shards: u32,
    replication_factor: Option<usize>,
    raft: Option<tradelog_raft::openraft::Config>,
) -> ServerConfig {
    let mut config = ServerConfig::cluster_node(
        id,
        members.clone(),
        shards,
        dir,
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    );
    if let Some(c) = &mut config.cluster {
        c.replication_factor = replication_factor;
        if raft.is_some() {
            c.raft = raft;
        }
    }
    config
}

/// Shuts `servers` down together; panics if one fails to stop cleanly. One at a time, a
/// cluster node waits out its grace period for the replication streams its running
/// peers keep open to it (11 s per node measured on four nodes, against 10 ms together).
pub async fn shutdown_all(servers: impl IntoIterator<Item = RunningServer>) {
    let stops: Vec<_> = servers
        .into_iter()
        .map(|s| tokio::spawn(s.shutdown()))
        .collect();
    for s in stops {
        s.await
            .expect("shutdown task")
            .expect("server stops cleanly");
    }
}
