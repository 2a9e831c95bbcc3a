//! Shared helpers of the tradelog-raft tests: a deterministic trading workload and entry
//! constructors.

#![allow(dead_code, unused_imports)]

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::Membership;
use std::collections::{BTreeMap, BTreeSet};
use tradelog_engine::Input;
use tradelog_raft::{Batch, Entry, EntryPayload, LogId, Node, ShardLogStore, TypeConfig};

pub fn log_id(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(
        openraft::impls::leader_id_adv::LeaderId {
            term,
            node_id: node,
        },
        index,
    )
}

pub fn blank(term: u64, index: u64) -> Entry {
    Entry::new(log_id(term, 1, index), EntryPayload::Blank)
}

pub fn normal(term: u64, index: u64, inputs: Vec<Input>) -> Entry {
    Entry::new(
        log_id(term, 1, index),
        EntryPayload::Normal(Batch::new(inputs).expect("valid batch")),
    )
}

pub fn membership(term: u64, index: u64, voters: &[u64]) -> Entry {
    Entry::new(
        log_id(term, 1, index),
        EntryPayload::Membership(members(voters)),
    )
}

pub fn members(voters: &[u64]) -> Membership<u64, Node> {
    let set: BTreeSet<u64> = voters.iter().copied().collect();
    let nodes: BTreeMap<u64, Node> = voters
        .iter()
        .map(|&v| (v, Node::new(format!("http://node-{v}"))))
        .collect();
    Membership::new(vec![set], nodes).expect("membership")
}

/// Appends and waits until the store reports the entries durable.
pub async fn append(store: &mut ShardLogStore, entries: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    store
        .append(entries, IOFlushed::signal(tx))
        .await
        .expect("append");
    rx.await.expect("flush callback").expect("flushed");
}

/// The entries `first..` of a log: a membership entry at 0, then one batch per index.
pub use tradelog_engine::testing::workload;

pub fn entries(term: u64, batches: &[Vec<Input>], first: u64) -> Vec<Entry> {
    batches
        .iter()
        .enumerate()
        .map(|(k, b)| normal(term, first + k as u64, b.clone()))
        .collect()
}

/// A node's transport served on a loopback listener, until [`TestServer::stop`].
pub struct TestServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

/// Serves `router`'s transport on `listener`.
pub fn serve(router: &tradelog_raft::RaftRouter, listener: tokio::net::TcpListener) -> TestServer {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = router.service();
    let handle = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
    });
    TestServer {
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestServer {
    /// Stops serving. A graceful stop waits for open connections, and the other nodes'
    /// replication streams keep theirs open: give them a moment, then drop them, as a
    /// crash would.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(mut h) = self.handle.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(2), &mut h)
                .await
                .is_err()
            {
                h.abort();
            }
        }
    }
}

/// The default group settings with snapshot chunks of `chunk_bytes` (small, so that a
/// snapshot transfer takes many chunks).
pub fn raft_config_with_chunks(chunk_bytes: u64) -> std::sync::Arc<openraft::Config> {
    let mut c = tradelog_raft::raft_config("test").unwrap();
    c.snapshot_max_chunk_size = chunk_bytes;
    std::sync::Arc::new(c.validate().unwrap())
}

/// A listener on a free loopback port, and its URL.
pub async fn bind() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    (l, addr)
}
