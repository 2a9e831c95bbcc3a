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

/// A node's node-to-node server, until [`Served::stop`] (dropped, it goes on serving).
pub struct Served {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Stops serving: a graceful stop waits for open connections, and the other nodes'
    /// replication streams keep theirs open, so after a moment they are dropped, as a
    /// crash would.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(mut h) = self.handle.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut h)
                .await
                .is_err()
            {
                h.abort();
            }
        }
    }
}

/// As [`start`], with a server that can be stopped, so the node can start again on the
/// same address from its directory.
pub async fn start_served(
    id: u64,
    listener: TcpListener,
    root: &std::path::Path,
    members: &BTreeMap<u64, String>,
) -> (Arc<ClusterNode>, Served) {
    let mut config =
        ClusterConfig::new(id, root.join(format!("node-{id}")), SHARDS, members.clone());
    config.leader_balance_interval_ms = 0;
    let node = ClusterNode::start(config).await.unwrap();
    let service = node.raft_service();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                // A `Served` dropped without `stop` leaves the server running.
                if stopped.await.is_err() {
                    std::future::pending::<()>().await
                }
            })
            .await;
    });
    let served = Served {
        stop: Some(stop),
        handle: Some(handle),
    };
    (node, served)
}
