//! The openraft type configuration of a tradelog shard group and the application data it
//! replicates: one Raft entry is a [`Batch`] of engine inputs, its response the engine's
//! per-input results ([`BatchResponse`]).

use serde::{Deserialize, Serialize};
use std::fmt;
use tradelog_domain::{EventRecord, ShardId};
use tradelog_engine::{Applied, Input};

/// Most inputs in one [`Batch`] (one Raft entry, one engine `apply_batch`).
pub const BATCH_INPUTS_MAX: usize = 8_192;

/// Most bytes of one encoded [`Batch`] (4 MiB): well below the log's record limit
/// ([`tradelog_storage::RECORD_BYTES_MAX`]), and small enough that an AppendEntries of
/// [`RAFT_PAYLOAD_ENTRIES_MAX`](crate::RAFT_PAYLOAD_ENTRIES_MAX) entries fits a gRPC message
/// ([`RAFT_MESSAGE_BYTES_MAX`](crate::RAFT_MESSAGE_BYTES_MAX)).
pub const BATCH_BYTES_MAX: usize = 4 << 20;

/// Identifies a replica (a node of the cluster) inside a Raft group.
pub type NodeId = u64;

/// What a replica knows about another member: where to reach it (`addr`, a URL such as
/// `http://127.0.0.1:7001`).
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The openraft type configuration of a tradelog shard group.
    ///
    /// Leader ids follow openraft's default ("advanced") scheme: a term may have several
    /// candidates, and a log id is (term, leader node, index). Everything else is the
    /// default: `u64` terms and node ids, [`BasicNode`](openraft::BasicNode) addresses,
    /// `openraft::Entry` log entries; the runtime is tokio
    /// ([`ShardRuntime`](crate::ShardRuntime)) with a random number generator that a
    /// simulation can seed ([`seed_thread_rng`](crate::seed_thread_rng)).
    pub TypeConfig:
        D = Batch,
        R = BatchResponse,
        NodeId = NodeId,
        Node = Node,
        AsyncRuntime = crate::runtime::ShardRuntime,
);

/// What every kind of group on a node has in common, so that one log store
/// ([`ShardLogStore`](crate::ShardLogStore)), one network ([`GroupNetwork`](crate::GroupNetwork)),
/// one transport ([`RaftRouter`](crate::RaftRouter)) and one [`GroupHandle`](crate::GroupHandle)
/// serve them all: node ids, addresses, terms, votes and log ids are those of
/// [`TypeConfig`]; only the entries' payload, the response and the state machine differ.
///
/// Two kinds exist: the shard groups ([`TypeConfig`]: entries are [`Batch`]es of engine
/// inputs) and the metadata group ([`MetaConfig`](crate::MetaConfig): entries are
/// cluster-map commands).
pub trait GroupConfig:
    openraft::RaftTypeConfig<
    NodeId = NodeId,
    Node = Node,
    Term = u64,
    LeaderId = openraft::type_config::alias::LeaderIdOf<TypeConfig>,
    Vote = Vote,
    AsyncRuntime = crate::runtime::ShardRuntime,
    Entry: openraft::entry::RaftEntry<CommittedLeaderId = CommittedLeaderId>
               + Clone
               + Serialize
               + serde::de::DeserializeOwned,
    D: Clone + Serialize + serde::de::DeserializeOwned,
    R: Serialize + serde::de::DeserializeOwned,
>
{
    /// The state machine of a group of this kind.
    type StateMachine: openraft::storage::RaftStateMachine<Self, SnapshotData = Vec<u8>>;

    /// What the log calls a group of this kind in errors ("shard", "metadata group").
    const KIND: &'static str;

    /// Checks a proposal a peer forwarded, with the limits a local proposal has: a peer
    /// cannot slip in what a client cannot.
    fn check_proposal(data: Self::D) -> Result<Self::D, String>;

    /// The cheap check of snapshot bytes received from a peer before openraft sees them:
    /// they are a snapshot of group `group` at `meta` (the state machine checks everything
    /// again before it installs them).
    fn check_snapshot(bytes: &[u8], group: ShardId, meta: &SnapshotMeta) -> Result<(), String>;
}

impl GroupConfig for TypeConfig {
    type StateMachine = crate::ShardStateMachine;
    const KIND: &'static str = "shard";

    fn check_proposal(data: Batch) -> Result<Batch, String> {
        Batch::new(data.inputs).map_err(|e| e.to_string())
    }

    fn check_snapshot(bytes: &[u8], group: ShardId, meta: &SnapshotMeta) -> Result<(), String> {
        crate::verify_snapshot_envelope(bytes, group, meta).map_err(|e| e.to_string())
    }
}

/// The committed part of a leader id (term and node): what a log id names.
pub type CommittedLeaderId = openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>;

/// The openraft handle of a group of kind `C`.
pub type GroupRaft<C> = openraft::Raft<C, <C as GroupConfig>::StateMachine>;

/// The id of a Raft log entry: (term, leader node) and index. Indexes start at 0.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A Raft vote (term, candidate, committed flag).
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// One Raft log entry.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// The payload of one Raft log entry.
pub type EntryPayload = openraft::type_config::alias::EntryPayloadOf<TypeConfig>;
/// A membership configuration together with the id of the entry that set it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// What a snapshot covers: its last log id and the membership at that point.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot as openraft passes it around: metadata and the sealed snapshot bytes.
pub type Snapshot = openraft::Snapshot<
    openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>,
    NodeId,
    Node,
    Vec<u8>,
>;

/// The application data of one Raft entry: engine inputs applied together, in order.
///
/// Many commands per entry is what makes a replicated commit cost one fsync per replica and
/// one round trip per batch rather than per command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The inputs, applied in this order.
    pub inputs: Vec<Input>,
}

/// Why a batch was refused before it was proposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// A batch must carry at least one input.
    #[error("a batch needs at least one input")]
    Empty,
    /// More inputs than [`BATCH_INPUTS_MAX`].
    #[error("{0} inputs in one batch (at most {BATCH_INPUTS_MAX})")]
    TooManyInputs(usize),
    /// Encoded, the batch is larger than [`BATCH_BYTES_MAX`].
    #[error("batch encodes to {0} bytes (at most {BATCH_BYTES_MAX})")]
    TooLarge(usize),
    /// The input at this position splits the shard, and the batch has other inputs: a
    /// split is an entry of its own, which each replica applies by writing the new
    /// shard's initial state (docs/design/0014).
    #[error("input {0} splits the shard; a split must be alone in its batch")]
    Split(usize),
}

impl Batch {
    /// A batch of `inputs`, checked against [`BATCH_INPUTS_MAX`] and [`BATCH_BYTES_MAX`]
    /// so that it can always be stored and replicated.
    pub fn new(inputs: Vec<Input>) -> Result<Batch, BatchError> {
        if inputs.is_empty() {
            return Err(BatchError::Empty);
        }
        if inputs.len() > BATCH_INPUTS_MAX {
            return Err(BatchError::TooManyInputs(inputs.len()));
        }
        if let Some(k) = inputs.iter().position(|i| matches!(i, Input::Split { .. })) {
            if inputs.len() > 1 {
                return Err(BatchError::Split(k));
            }
        }
        let batch = Batch { inputs };
        let len = tradelog_codec::encode(&batch).len();
        if len > BATCH_BYTES_MAX {
            return Err(BatchError::TooLarge(len));
        }
        Ok(batch)
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} inputs", self.inputs.len())
    }
}

/// The state machine's answer to one entry: one result per input of a [`Batch`], in order,
/// and the events the batch caused (both empty for blank and membership entries).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// `results[k]` is what input `k` of the batch did.
    pub results: Vec<Applied>,
    /// The engine's number of the batch's first input (its count of inputs applied, plus
    /// one, before the batch): input `k` caused the events whose `input` is this plus `k`.
    pub first_input: u64,
    /// Every event of the batch, in order; each names the input that caused it
    /// ([`EventRecord::input`], the engine's count of inputs applied).
    pub events: Vec<EventRecord>,
}
