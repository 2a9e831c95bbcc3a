//! What a replica knows about its groups, for `tradelog admin` and the status API.

use openraft::RaftMetrics;
use serde::{Deserialize, Serialize};
use tradelog_domain::ShardId;
use tradelog_raft::{NodeId, TypeConfig};

/// One node's view of every shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node answering.
    pub node: NodeId,
    /// Every node in any shard's membership, with the URL of its gRPC port (clients
    /// route a shard's commands to its leader's URL).
    pub nodes: Vec<NodeAddress>,
    /// One entry per shard.
    pub shards: Vec<ShardStatus>,
    /// The metadata group and the cluster map, as this node knows them.
    pub metadata: MetadataStatus,
}

/// One node's view of the metadata group and of the cluster map it replicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataStatus {
    /// The map's version as this replica applied it (0: not created yet).
    pub version: u64,
    /// The map's replication factor.
    pub replication_factor: u64,
    /// This replica's role in the metadata group.
    pub role: String,
    /// The metadata group's leader it knows of.
    pub leader: Option<NodeId>,
    /// Voters of the metadata group.
    pub voters: Vec<NodeId>,
    /// Learners of the metadata group.
    pub learners: Vec<NodeId>,
    /// The map's nodes.
    pub nodes: Vec<MapNodeStatus>,
    /// Every split the map records, oldest first.
    pub splits: Vec<tradelog_domain::routing::Split>,
}

/// A node as the cluster map records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapNodeStatus {
    /// The node.
    pub node: NodeId,
    /// Its address.
    pub url: String,
    /// Leaving the cluster.
    pub draining: bool,
}

pub(crate) fn metadata_status(
    m: &RaftMetrics<tradelog_raft::MetaConfig>,
    map: &tradelog_placement::ClusterMap,
) -> MetadataStatus {
    let membership = m.membership_config.membership();
    MetadataStatus {
        version: map.version,
        replication_factor: map.replication_factor as u64,
        role: format!("{:?}", m.state),
        leader: m.current_leader,
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        nodes: map
            .nodes
            .iter()
            .map(|(node, n)| MapNodeStatus {
                node: *node,
                url: n.addr.clone(),
                draining: n.draining,
            })
            .collect(),
        splits: map.splits.clone(),
    }
}

/// Where a node of the cluster is reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// The node.
    pub node: NodeId,
    /// The URL of its gRPC port, such as `http://127.0.0.1:7700`.
    pub url: String,
}

/// One replica's view of its group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// The shard.
    pub shard: ShardId,
    /// This replica's role: `Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`.
    pub role: String,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// Index of its last log entry.
    pub last_log_index: Option<u64>,
    /// Highest index it knows is committed.
    pub committed: Option<u64>,
    /// Highest index its state machine applied.
    pub applied: Option<u64>,
    /// The engine's state hash at `applied` (hex): replicas at the same index must agree.
    /// Empty in a routing-only status (computing it is a pass over the whole state).
    pub state_hash: String,
    /// Index its latest snapshot covers.
    pub snapshot: Option<u64>,
    /// Voters of the group.
    pub voters: Vec<NodeId>,
    /// Learners (non-voting replicas) of the group.
    pub learners: Vec<NodeId>,
    /// On the leader: how far each replica's log matches (lag = last_log_index - matched).
    pub replication: Vec<ReplicaProgress>,
}

/// How far one replica's log matches the leader's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaProgress {
    /// The replica's node.
    pub node: NodeId,
    /// Highest index known to match the leader's log.
    pub matched: Option<u64>,
    /// Entries it is behind the leader's last log entry.
    pub lag: u64,
}

pub(crate) fn shard_status(
    shard: ShardId,
    m: &RaftMetrics<TypeConfig>,
    applied: Option<u64>,
    state_hash: Option<[u8; 32]>,
) -> ShardStatus {
    let membership = m.membership_config.membership();
    let last = m.last_log_index;
    let replication = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(node, matched)| {
                    let matched = matched.as_ref().map(|l| l.index);
                    ReplicaProgress {
                        node: *node,
                        matched,
                        lag: last.unwrap_or(0).saturating_sub(matched.unwrap_or(0)),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    ShardStatus {
        shard,
        role: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: last,
        committed: m.local_committed.as_ref().map(|l| l.index),
        applied,
        state_hash: state_hash
            .map(|h| h.iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default(),
        snapshot: m.snapshot.as_ref().map(|l| l.index),
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        replication,
    }
}

/// Role of a shard in the status of a node that holds no replica of it.
pub const ROLE_NOT_HELD: &str = "NotHeld";

/// A shard this node holds no replica of: where the cluster map places it (as its voters)
/// and the leader this node last reached it through, if any.
pub(crate) fn remote_shard_status(
    shard: ShardId,
    replicas: Vec<NodeId>,
    leader: Option<NodeId>,
) -> ShardStatus {
    ShardStatus {
        shard,
        role: ROLE_NOT_HELD.to_string(),
        leader,
        term: 0,
        last_log_index: None,
        committed: None,
        applied: None,
        state_hash: String::new(),
        snapshot: None,
        voters: replicas,
        learners: Vec::new(),
        replication: Vec::new(),
    }
}
