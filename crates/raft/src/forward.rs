//! Proposals and linearizable reads from any replica of a group: [`GroupHandle`].
//!
//! A node that is not a group's leader hands a proposal to the leader over the node-to-node
//! transport (`Propose`), and a linearizable read on a follower asks the leader for its read
//! index (`ReadIndex`) and then waits until its own state machine has applied that far.
//!
//! A proposal is retried (on this node or forwarded to another) only when it was refused
//! before anything was appended ("not the leader"); once a batch reached a leader's log its
//! fate is known only from the answer, so a lost answer is reported as
//! [`ProposeError::Unknown`] and the client retries with the same idempotency keys (the
//! engine's dedupe table, part of the replicated state, answers a repeat with the original
//! result).

use crate::network::{decode_reply, RAFT_MESSAGE_BYTES_MAX, WIRE_ENCODING};
use crate::pb::raft_transport_client::RaftTransportClient;
use crate::pb::RaftRequest;
use crate::types::{BatchResponse, GroupConfig, GroupRaft, Node, NodeId, TypeConfig};
use crate::{Batch, PeerChannels, ShardStateMachine};
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::ReadPolicy;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tradelog_domain::ShardId;
use tradelog_engine::Engine;

/// How long a proposal or read waits for a group to have a leader before it gives up with
/// [`ProposeError::NoLeader`] (ms): a few election timeouts.
pub const LEADER_WAIT_MS: u64 = 5_000;
/// Least pause between two attempts to reach a group's leader (ms).
pub const LEADER_RETRY_MS_MIN: u64 = 5;
/// How long a follower waits for its state machine to catch up to the leader's read index
/// before a linearizable read gives up (ms).
pub const READ_CATCH_UP_MS: u64 = 5_000;
/// How long a leader waits for a proposal to be committed and applied, or for a quorum to
/// confirm a read index, before it reports the outcome unknown (ms): a leader cut off from
/// its majority does not notice at once, and its client must not wait forever.
pub const COMMIT_WAIT_MS: u64 = 5_000;
/// Time allowed for one forwarded proposal or read-index call (ms): the leader's own wait
/// plus a margin for the network.
pub const FORWARD_TIMEOUT_MS: u64 = COMMIT_WAIT_MS + 1_000;

/// A forwarded proposal's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ProposeAnswer<R = BatchResponse> {
    /// Committed and applied; the state machine's response.
    Applied(R),
    /// The receiving node is not the leader; nothing was appended.
    NotLeader {
        /// The leader it knows of, if any.
        leader: Option<(NodeId, Node)>,
    },
}

/// A read-index request's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReadIndexAnswer {
    /// The leader confirmed its leadership: a read is linearizable once the reader's state
    /// machine has applied this log index.
    Index(u64),
    /// The receiving node is not the leader.
    NotLeader {
        /// The leader it knows of, if any.
        leader: Option<(NodeId, Node)>,
    },
}

/// Why a proposal or a linearizable read got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// The group had no leader within the wait: no majority of its replicas is reachable
    /// (or an election is taking unusually long). Nothing was appended.
    #[error(
        "shard {group} has no leader: no majority of its replicas answered within {waited_ms} ms"
    )]
    NoLeader {
        /// The group.
        group: ShardId,
        /// How long it waited.
        waited_ms: u64,
    },
    /// The batch may or may not have been committed (leadership changed or a connection
    /// broke after it was sent): retry with the same idempotency keys.
    #[error("outcome unknown on shard {group} ({reason}); retry with the same idempotency key")]
    Unknown {
        /// The group.
        group: ShardId,
        /// What happened.
        reason: String,
    },
    /// This replica did not catch up to the leader's read index in time
    /// ([`READ_CATCH_UP_MS`]); the read can go to the leader or be retried.
    #[error("shard {group}'s replica on this node is lagging: {reason}")]
    Lagging {
        /// The group.
        group: ShardId,
        /// What the wait said.
        reason: String,
    },
    /// The group's Raft instance on this node stopped (shutdown or a storage failure).
    #[error("shard {group} is stopped on this node: {reason}")]
    Stopped {
        /// The group.
        group: ShardId,
        /// Why.
        reason: String,
    },
}

/// One group on this node, with what it needs to reach the group's leader wherever it is.
/// Cheap to clone.
///
/// `SM` is always `C`'s state machine ([`GroupConfig::StateMachine`]); it is a parameter of
/// its own only so that the struct's bounds stay those of openraft's `Raft` (rustdoc
/// 1.95 panics deriving the auto traits of a struct bounded by `GroupConfig`).
pub struct GroupHandle<C = TypeConfig, SM = ShardStateMachine>
where
    C: openraft::RaftTypeConfig,
    SM: openraft::storage::RaftStateMachine<C>,
{
    group: ShardId,
    raft: openraft::Raft<C, SM>,
    peers: PeerChannels,
}

impl<C: GroupConfig> Clone for GroupHandle<C, C::StateMachine> {
    fn clone(&self) -> Self {
        GroupHandle {
            group: self.group,
            raft: self.raft.clone(),
            peers: self.peers.clone(),
        }
    }
}

impl<C: GroupConfig> GroupHandle<C, C::StateMachine> {
    /// The handle of `raft` (the replica of `group` on this node), reaching other nodes
    /// through `peers`.
    pub fn new(group: ShardId, raft: GroupRaft<C>, peers: PeerChannels) -> Self {
        GroupHandle { group, raft, peers }
    }

    /// The group.
    pub fn group(&self) -> ShardId {
        self.group
    }

    /// The Raft instance.
    pub fn raft(&self) -> &GroupRaft<C> {
        &self.raft
    }

    /// True if this replica is the group's leader right now.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    pub(crate) fn peers(&self) -> &PeerChannels {
        &self.peers
    }

    fn client(
        &self,
        node: &Node,
    ) -> Result<RaftTransportClient<tonic::transport::Channel>, String> {
        self.peers
            .channel(&node.addr)
            .map(|c| {
                RaftTransportClient::new(c)
                    .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            })
            .map_err(|e| format!("bad address {:?}: {e}", node.addr))
    }

    fn stopped(&self, e: impl std::fmt::Display) -> ProposeError {
        ProposeError::Stopped {
            group: self.group,
            reason: e.to_string(),
        }
    }

    /// Waits (until `deadline`) for the metrics to name a leader other than `not`; false
    /// when the deadline passed.
    pub(crate) async fn await_leader_change(&self, not: Option<NodeId>, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // Never straight back: when the metrics already name a leader other than `not`
        // (or `not` is unknown) the wait below returns at once, and a caller whose forward
        // failed at once (no leader address yet, connection refused) would spin.
        tokio::time::sleep(left.min(Duration::from_millis(LEADER_RETRY_MS_MIN))).await;
        // A short wait even when a leader is named: it may be one that cannot be reached.
        let step = left.min(Duration::from_millis(50));
        let _ = self
            .raft
            .wait(Some(step))
            .metrics(
                move |m| m.current_leader.is_some() && m.current_leader != not,
                "a leader",
            )
            .await;
        true
    }

    /// Commits `batch` through the group's leader (this replica or another) and returns the
    /// state machine's response. See the module documentation for when it retries.
    pub async fn propose(&self, batch: C::D) -> Result<C::R, ProposeError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(LEADER_WAIT_MS);
        loop {
            let known = match self.raft.as_leader() {
                Ok(_) => match write(&self.raft, batch.clone()).await {
                    Err(Timeout) => {
                        return Err(ProposeError::Unknown {
                            group: self.group,
                            reason: format!(
                                "not committed within {COMMIT_WAIT_MS} ms: no majority of the \
                                 replicas answered"
                            ),
                        })
                    }
                    Ok(Ok(r)) => return Ok(r.data),
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                        f.leader_id.zip(f.leader_node)
                    }
                    Ok(Err(RaftError::APIError(e))) => {
                        return Err(ProposeError::Unknown {
                            group: self.group,
                            reason: e.to_string(),
                        })
                    }
                    Ok(Err(RaftError::Fatal(f))) => return Err(self.stopped(f)),
                },
                Err(f) => f.leader_id.zip(f.leader_node),
            };
            let mut last = None;
            if let Some((id, node)) = known.filter(|(id, _)| *id != *self.raft.node_id()) {
                last = Some(id);
                match self.propose_remote(&node, &batch).await {
                    Ok(ProposeAnswer::Applied(r)) => return Ok(r),
                    Ok(ProposeAnswer::NotLeader { .. }) => {}
                    Err(Sent::No(why)) => {
                        tracing::debug!(group = %self.group, leader = id, "forward not sent: {why}")
                    }
                    Err(Sent::Maybe(reason)) => {
                        return Err(ProposeError::Unknown {
                            group: self.group,
                            reason: format!("forwarded to node {id}: {reason}"),
                        })
                    }
                }
            }
            if !self.await_leader_change(last, deadline).await {
                return Err(ProposeError::NoLeader {
                    group: self.group,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
    }

    async fn propose_remote(&self, node: &Node, batch: &C::D) -> Result<ProposeAnswer<C::R>, Sent> {
        propose_to::<C>(&self.peers, self.group, node, batch).await
    }

    /// Waits until a read of this replica's state machine is linearizable: the leader (this
    /// replica or another) confirms its leadership with a quorum and names its commit
    /// index, and this replica applies at least that far.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(LEADER_WAIT_MS);
        loop {
            let known = match self.raft.as_leader() {
                Ok(_) => match read_index(&self.raft).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                        f.leader_id.zip(f.leader_node)
                    }
                    Ok(Err(RaftError::APIError(_))) | Err(Timeout) => None,
                    Ok(Err(RaftError::Fatal(f))) => return Err(self.stopped(f)),
                },
                Err(f) => f.leader_id.zip(f.leader_node),
            };
            let mut last = None;
            if let Some((id, node)) = known.filter(|(id, _)| *id != *self.raft.node_id()) {
                last = Some(id);
                if let Ok(ReadIndexAnswer::Index(index)) = self.read_index_remote(&node).await {
                    let wait = self
                        .raft
                        .wait(Some(Duration::from_millis(READ_CATCH_UP_MS)));
                    let caught_up = wait.applied_index_at_least(Some(index), "read index");
                    return caught_up
                        .await
                        .map(|_| ())
                        .map_err(|e| ProposeError::Lagging {
                            group: self.group,
                            reason: e.to_string(),
                        });
                }
            }
            if !self.await_leader_change(last, deadline).await {
                return Err(ProposeError::NoLeader {
                    group: self.group,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
    }

    async fn read_index_remote(&self, node: &Node) -> Result<ReadIndexAnswer, String> {
        let mut client = self.client(node)?;
        let mut req = tonic::Request::new(RaftRequest {
            group: self.group.0,
            encoding: WIRE_ENCODING,
            payload: Vec::new(),
        });
        req.set_timeout(Duration::from_millis(FORWARD_TIMEOUT_MS));
        let r = client.read_index(req).await.map_err(|s| s.to_string())?;
        decode_reply(r.into_inner())
    }

    /// Runs `f` on this replica's state machine as it is now, without any check against
    /// the leader (a stale read: it may miss writes the leader already acknowledged).
    pub async fn read_state_local<R: Send + 'static>(
        &self,
        f: impl FnOnce(&C::StateMachine) -> R + Send + 'static,
    ) -> Result<R, ProposeError> {
        self.raft
            .with_state_machine(move |sm: &mut C::StateMachine| {
                let r = f(sm);
                Box::pin(async move { r })
            })
            .await
            .map_err(|e| self.stopped(e))
    }
}

impl GroupHandle<TypeConfig, ShardStateMachine> {
    /// Runs `f` on this replica's state as it is now, without any check against the leader
    /// (a stale read: it may miss writes the leader already acknowledged).
    pub async fn read_local<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> R + Send + 'static,
    ) -> Result<R, ProposeError> {
        self.raft
            .with_state_machine(move |sm: &mut ShardStateMachine| {
                let r = f(sm.engine());
                Box::pin(async move { r })
            })
            .await
            .map_err(|e| self.stopped(e))
    }

    /// Runs `f` on this replica's state after every write the group acknowledged before the
    /// call (a linearizable read, see [`read_barrier`](Self::read_barrier)).
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> R + Send + 'static,
    ) -> Result<R, ProposeError> {
        self.read_barrier().await?;
        self.read_local(f).await
    }
}

/// Sends `batch` to `node` as a proposal of `group` (the node hands it to its replica,
/// which answers whether it leads).
async fn propose_to<C: GroupConfig>(
    peers: &PeerChannels,
    group: ShardId,
    node: &Node,
    batch: &C::D,
) -> Result<ProposeAnswer<C::R>, Sent> {
    let channel = peers
        .channel(&node.addr)
        .map_err(|e| Sent::No(format!("bad address {:?}: {e}", node.addr)))?;
    let mut client = RaftTransportClient::new(channel)
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
    let mut req = tonic::Request::new(RaftRequest {
        group: group.0,
        encoding: WIRE_ENCODING,
        payload: tradelog_codec::encode(batch),
    });
    req.set_timeout(Duration::from_millis(FORWARD_TIMEOUT_MS));
    match client.propose(req).await {
        Ok(r) => decode_reply(r.into_inner()).map_err(Sent::Maybe),
        // The connection could not be made: the request never left.
        Err(s) if s.code() == tonic::Code::Unavailable && is_connect_error(&s) => {
            Err(Sent::No(s.to_string()))
        }
        // The node holds no replica of the group: nothing was appended.
        Err(s) if s.code() == tonic::Code::NotFound => Err(Sent::No(s.to_string())),
        Err(s) => Err(Sent::Maybe(s.to_string())),
    }
}

/// The nodes holding a group's replicas, as the caller knows them now (from the cluster
/// map); asked again at every attempt, so a move is followed.
pub type Holders = Arc<dyn Fn() -> Vec<(NodeId, Node)> + Send + Sync>;

/// A shard group this node holds no replica of: proposals go over the transport to a node
/// that holds one (its leader once known; a follower answers "not the leader" with the
/// leader it knows, which is tried next, and a node that does not hold the group answers
/// "not found", so the next holder is tried).
/// Cheap to clone; clones share what they learned of the leader.
#[derive(Clone)]
pub struct RemoteGroup {
    group: ShardId,
    peers: PeerChannels,
    holders: Holders,
    leader: Arc<Mutex<Option<(NodeId, Node)>>>,
}

impl RemoteGroup {
    /// Group `group`, held by the nodes `holders` names, reached through `peers`.
    pub fn new(group: ShardId, peers: PeerChannels, holders: Holders) -> RemoteGroup {
        RemoteGroup {
            group,
            peers,
            holders,
            leader: Arc::default(),
        }
    }

    /// The group.
    pub fn group(&self) -> ShardId {
        self.group
    }

    /// The node that last took a proposal of the group from this node (its leader then).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
            .lock()
            .expect("leader hint lock")
            .as_ref()
            .map(|(id, _)| *id)
    }

    /// Commits `batch` through the group's leader. As [`GroupHandle::propose`], a
    /// proposal is sent again only when it was refused before anything was appended; the
    /// group without a leader for [`LEADER_WAIT_MS`] (or no holder reachable) answers
    /// [`ProposeError::NoLeader`].
    pub async fn propose(&self, batch: Batch) -> Result<BatchResponse, ProposeError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(LEADER_WAIT_MS);
        loop {
            let hint = self.leader.lock().expect("leader hint lock").clone();
            let mut candidates: Vec<(NodeId, Node)> = hint.into_iter().collect();
            for h in (self.holders)() {
                if !candidates.iter().any(|(id, _)| *id == h.0) {
                    candidates.push(h);
                }
            }
            let mut next = 0;
            // A hint from a "not the leader" answer is tried next, once per round.
            let mut followed = 0;
            while next < candidates.len() {
                let (id, node) = candidates[next].clone();
                next += 1;
                match propose_to::<TypeConfig>(&self.peers, self.group, &node, &batch).await {
                    Ok(ProposeAnswer::Applied(r)) => {
                        *self.leader.lock().expect("leader hint lock") = Some((id, node));
                        return Ok(r);
                    }
                    Ok(ProposeAnswer::NotLeader { leader }) => {
                        if let Some(l) = leader.filter(|(l, _)| *l != id) {
                            if followed < candidates.len() {
                                followed += 1;
                                candidates.insert(next, l);
                            }
                        }
                    }
                    Err(Sent::No(why)) => {
                        tracing::debug!(group = %self.group, node = id, "proposal not sent: {why}")
                    }
                    Err(Sent::Maybe(reason)) => {
                        *self.leader.lock().expect("leader hint lock") = None;
                        return Err(ProposeError::Unknown {
                            group: self.group,
                            reason: format!("sent to node {id}: {reason}"),
                        });
                    }
                }
            }
            *self.leader.lock().expect("leader hint lock") = None;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProposeError::NoLeader {
                    group: self.group,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            tokio::time::sleep(left.min(Duration::from_millis(REMOTE_RETRY_MS))).await;
        }
    }
}

/// Pause between two rounds over a remote group's holders when none took a proposal (ms).
pub const REMOTE_RETRY_MS: u64 = 50;

/// Where a shard's proposals go from this node: its own replica, or a node holding one.
#[derive(Clone)]
pub enum Proposer {
    /// This node holds a replica.
    Local(GroupHandle),
    /// It does not.
    Remote(RemoteGroup),
}

impl Proposer {
    /// The group.
    pub fn group(&self) -> ShardId {
        match self {
            Proposer::Local(g) => g.group(),
            Proposer::Remote(r) => r.group(),
        }
    }

    /// Commits `batch` through the group's leader (see [`GroupHandle::propose`]).
    pub async fn propose(&self, batch: Batch) -> Result<BatchResponse, ProposeError> {
        match self {
            Proposer::Local(g) => g.propose(batch).await,
            Proposer::Remote(r) => r.propose(batch).await,
        }
    }
}

/// A leader's wait ran out ([`COMMIT_WAIT_MS`]).
struct Timeout;

type WriteResult<C> =
    Result<openraft::raft::ClientWriteResponse<C>, RaftError<C, ClientWriteError<C>>>;

/// `client_write`, waiting at most [`COMMIT_WAIT_MS`].
async fn write<C: GroupConfig>(
    raft: &GroupRaft<C>,
    batch: C::D,
) -> Result<WriteResult<C>, Timeout> {
    tokio::time::timeout(
        Duration::from_millis(COMMIT_WAIT_MS),
        raft.client_write(batch),
    )
    .await
    .map_err(|_| Timeout)
}

type ReadIndexResult<C> =
    Result<openraft::raft::linearizable_read::ReadLogId<C>, RaftError<C, LinearizableReadError<C>>>;

/// `ensure_linearizable` (read index), waiting at most [`COMMIT_WAIT_MS`].
async fn read_index<C: GroupConfig>(raft: &GroupRaft<C>) -> Result<ReadIndexResult<C>, Timeout> {
    tokio::time::timeout(
        Duration::from_millis(COMMIT_WAIT_MS),
        raft.ensure_linearizable(ReadPolicy::ReadIndex),
    )
    .await
    .map_err(|_| Timeout)
}

/// Whether a failed forward reached the other node.
enum Sent {
    /// It did not: safe to try again.
    No(String),
    /// It may have.
    Maybe(String),
}

/// True when a gRPC failure happened while connecting (the request never left).
fn is_connect_error(s: &tonic::Status) -> bool {
    let m = s.message().to_ascii_lowercase();
    m.contains("connect") || m.contains("connection refused") || m.contains("dns")
}

/// The leader-side answer to a forwarded proposal (used by the transport's `Propose`).
pub(crate) async fn answer_propose<C: GroupConfig>(
    raft: &GroupRaft<C>,
    batch: C::D,
) -> Result<ProposeAnswer<C::R>, String> {
    if let Err(f) = raft.as_leader() {
        return Ok(ProposeAnswer::NotLeader {
            leader: f.leader_id.zip(f.leader_node),
        });
    }
    match write(raft, batch).await {
        Ok(Ok(r)) => Ok(ProposeAnswer::Applied(r.data)),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Ok(ProposeAnswer::NotLeader {
                leader: f.leader_id.zip(f.leader_node),
            })
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(Timeout) => Err(format!(
            "not committed within {COMMIT_WAIT_MS} ms: no majority of the replicas answered"
        )),
    }
}

/// The leader-side answer to a read-index request (used by the transport's `ReadIndex`).
pub(crate) async fn answer_read_index<C: GroupConfig>(
    raft: &GroupRaft<C>,
) -> Result<ReadIndexAnswer, String> {
    if let Err(f) = raft.as_leader() {
        return Ok(ReadIndexAnswer::NotLeader {
            leader: f.leader_id.zip(f.leader_node),
        });
    }
    match read_index(raft).await {
        Ok(Ok(read)) => Ok(ReadIndexAnswer::Index(read.index())),
        Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
            Ok(ReadIndexAnswer::NotLeader {
                leader: f.leader_id.zip(f.leader_node),
            })
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(Timeout) => Err(format!(
            "no quorum confirmed the leadership within {COMMIT_WAIT_MS} ms"
        )),
    }
}
