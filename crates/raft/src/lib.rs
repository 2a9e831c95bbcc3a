//! Replication of a tradelog shard: each shard is a Raft group (openraft) whose log is the
//! shard's [`FileLog`](tradelog_storage::FileLog) and whose state machine is the shard's
//! [`Engine`](tradelog_engine::Engine); and of the cluster map: the metadata group, a Raft
//! group of the same kind whose state machine is a
//! [`ClusterMap`](tradelog_placement::ClusterMap) ([`MetaConfig`], [`MetaStateMachine`]).
//!
//! Owns:
//!
//! * **What every group kind shares** ([`GroupConfig`]): node ids, addresses, terms, votes
//!   and log ids are the same for both kinds, so the log store, the network, the transport
//!   and [`GroupHandle`] are written once, generic over the kind; only the payload, the
//!   response and the state machine differ.
//! * **The type configuration** ([`TypeConfig`]): one Raft entry is a [`Batch`] of engine
//!   inputs (many commands per entry, so a commit costs one fsync per replica and one round
//!   trip per batch), its response a [`BatchResponse`] (the engine's result for each input).
//! * **The log store** ([`ShardLogStore`], openraft's `RaftLogStorage`): Raft entries as
//!   records of a `FileLog` (CRC32C-framed, hash-chained; any storage `LogStore` works),
//!   group commit of appends on a flusher thread (or a runtime task, [`FlushMode`]),
//!   truncation of a conflicting suffix, purge into the archive, and the vote, committed
//!   and purged log ids in an atomically replaced file ([`RaftMeta`]).
//! * **The state machine** ([`ShardStateMachine`], openraft's `RaftStateMachine`):
//!   committed batches applied to the engine in order, snapshots built from a copy of the
//!   engine and written beside the log, snapshots installed only after every check passed.
//! * **The node-to-node transport** over gRPC (tonic; the internal service in
//!   `proto/tradelog/raft/v1/raft.proto` of this crate, module [`pb`]): [`PeerChannels`]
//!   (one channel per peer node, shared by every group), [`GroupNetwork`] / [`PeerClient`]
//!   (openraft's network for one group: unary calls, pipelined AppendEntries over a
//!   bidirectional stream, snapshots in chunks) and [`RaftRouter`] (the receiving side:
//!   every message names its group and goes to that group's Raft instance).
//! * **Proposals and reads from any replica** ([`GroupHandle`]): a batch proposed on a
//!   follower is forwarded to the leader (`Propose`), retried only when nothing was
//!   appended; a linearizable read on a follower waits for the leader's read index
//!   (`ReadIndex`); membership and leadership changes run by the leader wherever they
//!   are asked (`Manage`: add a learner, set the voters, transfer the leadership).
//! * **The runtime** ([`ShardRuntime`]): tokio, with the random number generator openraft
//!   draws its election timeouts from seedable per thread ([`seed_thread_rng`]), so that a
//!   deterministic simulation (`tests/simulation.rs`, `docs/design/0010-simulation.md`)
//!   replays a seed exactly. Unseeded, it is seeded from the operating system.
//!
//! # Example: one replica of one group
//!
//! ```no_run
//! use std::sync::Arc;
//! use tradelog_domain::ShardId;
//! use tradelog_engine::Placement;
//! use tradelog_raft::*;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::path::Path::new("/var/lib/tradelog/shard-0");
//! let peers = PeerChannels::new(); // one per node, shared by its groups
//! let router = RaftRouter::new(); // serve `router.service()` with tonic
//! let raft = ShardRaft::new(
//!     1, // this node's id
//!     Arc::new(raft_config("tradelog")?),
//!     GroupNetwork::new(ShardId(0), 1, peers.clone()),
//!     ShardLogStore::open(dir, LogStoreConfig::default())?,
//!     ShardStateMachine::open(dir, ShardId(0), Placement::new(1))?,
//! )
//! .await?;
//! router.add(ShardId(0), raft.clone());
//! let batch = Batch::new(vec![/* engine inputs */])?;
//! let answer = raft.client_write(batch).await?; // once committed and applied
//! println!("{:?}", answer.data.results);
//! # Ok(())
//! # }
//! ```
//!
//! Must never depend on: tradelog-node, tradelog-server, tradelog-cli, or business logic of
//! its own (the engine and the cluster map decide everything; this crate orders and stores
//! inputs).
//!
//! The openraft version is pinned exactly (`=0.10.0-alpha.37`); see
//! `docs/design/0007-raft.md` for why this line and what it costs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod forward;
mod log_store;
mod manage;
mod meta;
mod metadata;
mod network;
mod pump;
mod runtime;
mod state_machine;
mod transport;
mod types;

/// The generated messages, client and server of the internal transport
/// (`proto/tradelog/raft/v1/raft.proto` in this crate).
#[allow(missing_docs)]
pub mod pb {
    tonic::include_proto!("tradelog.raft.v1");
}

pub use forward::{
    GroupHandle, Holders, ProposeAnswer, ProposeError, Proposer, ReadIndexAnswer, RemoteGroup,
    COMMIT_WAIT_MS, FORWARD_TIMEOUT_MS, LEADER_RETRY_MS_MIN, LEADER_WAIT_MS, READ_CATCH_UP_MS,
    REMOTE_RETRY_MS,
};
pub use log_store::{
    decode_entry, decode_entry_as, encode_entry, FlushMode, LogOpenReport, LogStoreConfig,
    ShardLogReader, ShardLogStore, COMMITTED_PERSIST_INTERVAL_MS, ENTRY_FORMAT, LOG_DIR,
};
pub use manage::{ManageAnswer, ManageOp, MANAGE_TIMEOUT_MS};
pub use meta::{RaftMeta, META_FILE};
pub use metadata::{
    decode_meta_snapshot, encode_meta_snapshot, MapResponse, MetaConfig, MetaHandle, MetaRaft,
    MetaSnapshotBuilder, MetaStateMachine, MAP_COMMAND_BYTES_MAX, META_GROUP, META_SNAPSHOT_FILE,
    META_SNAPSHOT_MAGIC, META_SNAPSHOT_VERSION,
};
pub use network::{
    GroupNetwork, PeerChannels, PeerClient, CONNECT_TIMEOUT_MS, GROUP_METADATA,
    KEEPALIVE_INTERVAL_MS, KEEPALIVE_TIMEOUT_MS, RAFT_MESSAGE_BYTES_MAX, RAFT_PAYLOAD_ENTRIES_MAX,
    SNAPSHOT_CHUNK_BYTES, SPLIT_START_TIMEOUT_MS, STREAM_RETRY_MS_MAX, STREAM_RETRY_MS_MIN,
    WIRE_ENCODING,
};
pub use pump::{local_destinations, pump, Destinations, PUMP_MESSAGES_MAX};
pub use runtime::{seed_thread_rng, ShardRuntime};
pub use state_machine::{
    decode_snapshot, decode_split_start, encode_snapshot, encode_split_start, read_split_start,
    verify_snapshot_envelope, ChildDirs, EventSink, ShardSnapshotBuilder, ShardStateMachine,
    SinkItem, SmOpenReport, SnapshotCheckError, SplitStart, SNAPSHOTS_DIR, SNAPSHOTS_KEPT,
    SNAPSHOT_FILE_MAGIC, SNAPSHOT_FILE_VERSION, SPLIT_START_FILE, SPLIT_START_MAGIC,
    SPLIT_START_VERSION,
};
pub use transport::{RaftRouter, SplitStarts, TransportStats, SNAPSHOT_BYTES_MAX};
pub use types::{
    Batch, BatchError, BatchResponse, CommittedLeaderId, Entry, EntryPayload, GroupConfig,
    GroupRaft, LogId, Node, NodeId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, Vote,
    BATCH_BYTES_MAX, BATCH_INPUTS_MAX,
};

pub use openraft;

/// The openraft handle of one shard group.
pub type ShardRaft = openraft::Raft<TypeConfig, ShardStateMachine>;

/// Default heartbeat interval of a group (ms).
pub const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// Default lower bound of the election timeout (ms); the upper bound is twice this.
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 1_000;
/// Default number of applied entries after which a replica builds a snapshot.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 10_000;
/// Default number of entries kept in the live log behind the latest snapshot (so that a
/// briefly lagging replica catches up from the log rather than from a snapshot).
pub const LOG_KEPT_BEHIND_SNAPSHOT_ENTRIES: u64 = 1_000;

/// The openraft configuration of a tradelog group: heartbeats every
/// [`HEARTBEAT_INTERVAL_MS`], elections after [`ELECTION_TIMEOUT_MIN_MS`] to twice that,
/// at most [`RAFT_PAYLOAD_ENTRIES_MAX`] entries per AppendEntries (so a request stays under
/// [`RAFT_MESSAGE_BYTES_MAX`]), a snapshot every [`SNAPSHOT_EVERY_ENTRIES`] entries, snapshot
/// chunks of [`SNAPSHOT_CHUNK_BYTES`].
///
/// A leader that restarts never takes its leadership back without an election
/// (`enable_leader_restore` off; openraft's default is on). A leader sends entries to its
/// followers before its own write of them is durable, so a majority may commit an entry
/// that the leader loses to a crash (SIGKILL). Restored as leader of the same term, it
/// would append different entries at those indexes under the same log ids, which the
/// followers take for the entries they hold: the replicas' logs and states part for
/// good. Found by `tradelog-cli`'s `cluster_kill` split test (the parent's leader killed
/// and restarted within the election timeout; docs/design/0007).
pub fn raft_config(cluster_name: &str) -> Result<openraft::Config, openraft::ConfigError> {
    openraft::Config {
        cluster_name: cluster_name.to_string(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: 2 * ELECTION_TIMEOUT_MIN_MS,
        max_payload_entries: RAFT_PAYLOAD_ENTRIES_MAX,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_ENTRIES),
        max_in_snapshot_log_to_keep: LOG_KEPT_BEHIND_SNAPSHOT_ENTRIES,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES as u64,
        enable_leader_restore: Some(false),
        ..openraft::Config::default()
    }
    .validate()
}
