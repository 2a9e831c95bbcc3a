//! Replication of a tradelog shard: each shard is a Raft group (openraft) whose log is the
//! shard's [`FileLog`](tradelog_storage::FileLog) and whose state machine is the shard's
//! [`Engine`](tradelog_engine::Engine).
//!
//! Owns:
//!
//! * **The type configuration** ([`TypeConfig`]): one Raft entry is a [`Batch`] of engine
//!   inputs (many commands per entry, so a commit costs one fsync per replica and one round
//!   trip per batch), its response a [`BatchResponse`] (the engine's result for each input).
//! * **The log store** ([`ShardLogStore`], openraft's `RaftLogStorage`): Raft entries as
//!   records of a `FileLog` (CRC32C-framed, hash-chained), group commit of appends on a
//!   flusher thread, truncation of a conflicting suffix, purge into the archive, and the
//!   vote, committed and purged log ids in an atomically replaced file ([`RaftMeta`]).
//! * **The state machine** ([`ShardStateMachine`], openraft's `RaftStateMachine`):
//!   committed batches applied to the engine in order, snapshots built from a copy of the
//!   engine and written beside the log, snapshots installed only after every check passed.
//!
//! Must never depend on: tradelog-node, tradelog-server, tradelog-cli, or business logic of
//! its own (the engine decides everything; this crate orders and stores inputs).
//!
//! The openraft version is pinned exactly (`=0.10.0-alpha.37`); see
//! `docs/design/0006-raft.md` for why this line and what it costs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod log_store;
mod meta;
mod state_machine;
mod types;

pub use log_store::{
    decode_entry, encode_entry, LogOpenReport, LogStoreConfig, ShardLogReader, ShardLogStore,
    COMMITTED_PERSIST_INTERVAL_MS, ENTRY_FORMAT, LOG_DIR,
};
pub use meta::{RaftMeta, META_FILE};
pub use state_machine::{
    decode_snapshot, encode_snapshot, ShardSnapshotBuilder, ShardStateMachine, SmOpenReport,
    SnapshotCheckError, SNAPSHOTS_DIR, SNAPSHOTS_KEPT, SNAPSHOT_FILE_MAGIC, SNAPSHOT_FILE_VERSION,
};
pub use types::{
    Batch, BatchError, BatchResponse, Entry, EntryPayload, LogId, Node, NodeId, Snapshot,
    SnapshotMeta, StoredMembership, TypeConfig, Vote, BATCH_BYTES_MAX, BATCH_INPUTS_MAX,
};

pub use openraft;

/// The openraft handle of one shard group.
pub type ShardRaft = openraft::Raft<TypeConfig, ShardStateMachine>;
