//! Shared helpers of the cluster crate's tests: cluster nodes in this process, each
//! serving its node-to-node port on a loopback listener.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tradelog_cluster::{ClusterConfig, ClusterNode};

/// Shards of the test clusters.
pub const SHARDS: u32 = 2;
/// Longest wait for anything in the tests.
pub const WAIT: Duration = Duration::from_secs(60);

/// A loopback listener and its URL.
pub async fn bind() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    (l, addr)
}

/// Starts node `id` with [`SHARDS`] shards in `root/node-{id}`, serving on `listener`;
/// `members` forms a new cluster (empty: a node to be added). Leaders move only by
/// command.
pub async fn start(
    id: u64,
    listener: TcpListener,
    root: &std::path::Path,
    members: &BTreeMap<u64, String>,
) -> Arc<ClusterNode> {
    let mut config =
        ClusterConfig::new(id, root.join(format!("node-{id}")), SHARDS, members.clone());
    config.leader_balance_interval_ms = 0;
    let node = ClusterNode::start(config).await.unwrap();
    let service = node.raft_service();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    node
}
