//! Membership and leadership changes of a group, run by its leader wherever the request
//! arrives ([`GroupHandle::manage`]; forwarded with the transport's `Manage`).

use crate::forward::{GroupHandle, ProposeError, LEADER_WAIT_MS};
use crate::network::{decode_reply, RAFT_MESSAGE_BYTES_MAX, WIRE_ENCODING};
use crate::pb::raft_transport_client::RaftTransportClient;
use crate::pb::RaftRequest;
use crate::types::{GroupConfig, GroupRaft, Node, NodeId};
use openraft::errors::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

/// Time allowed for one membership change, including a new replica catching up (ms).
pub const MANAGE_TIMEOUT_MS: u64 = 120_000;

/// A change to one group's membership or leadership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManageOp {
    /// Adds `node`, reachable at `addr`, as a learner (a non-voting replica) and waits until
    /// it has caught up with the leader's log (from a snapshot when it is far behind).
    AddLearner {
        /// The new replica's node.
        node: NodeId,
        /// The URL of its gRPC port.
        addr: String,
    },
    /// Makes `voters` the group's voting members (through joint consensus); a voter left
    /// out leaves the group. Every new voter must be a learner already.
    SetVoters {
        /// The voters after the change.
        voters: BTreeSet<NodeId>,
    },
    /// Hands the leadership to `to` (a voter).
    TransferLeader {
        /// The new leader.
        to: NodeId,
    },
    /// Removes a learner (a non-voting replica) from the group; refused for a voter (take
    /// it out of the voters with `SetVoters` first).
    RemoveLearner {
        /// The learner.
        node: NodeId,
    },
}

/// A forwarded change's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ManageAnswer {
    /// Done (committed, for membership changes; started, for a leadership transfer).
    Done,
    /// The receiving node is not the leader; nothing changed.
    NotLeader {
        /// The leader it knows of, if any.
        leader: Option<(NodeId, Node)>,
    },
}

/// The leader-side execution of a change (used locally and by the transport's `Manage`).
pub(crate) async fn answer_manage<C: GroupConfig>(
    raft: &GroupRaft<C>,
    op: ManageOp,
) -> Result<ManageAnswer, String> {
    if let Err(f) = raft.as_leader() {
        return Ok(ManageAnswer::NotLeader {
            leader: f.leader_id.zip(f.leader_node),
        });
    }
    let written = match op {
        ManageOp::AddLearner { node, addr } => raft.add_learner(node, Node::new(addr), true).await,
        ManageOp::SetVoters { voters } => {
            if voters.is_empty() {
                return Err("a group needs at least one voter".into());
            }
            raft.change_membership(voters, false).await
        }
        ManageOp::RemoveLearner { node } => {
            if raft.voter_ids().any(|v| v == node) {
                return Err(format!(
                    "node {node} is a voter of this group, not a learner"
                ));
            }
            if !raft.learner_ids().any(|l| l == node) {
                return Ok(ManageAnswer::Done);
            }
            let remove = openraft::ChangeMembers::RemoveNodes([node].into());
            raft.change_membership(remove, false).await
        }
        ManageOp::TransferLeader { to } => {
            if !raft.voter_ids().any(|v| v == to) {
                return Err(format!("node {to} is not a voter of this group"));
            }
            return raft
                .trigger()
                .transfer_leader(to)
                .await
                .map(|()| ManageAnswer::Done)
                .map_err(|e| e.to_string());
        }
    };
    match written {
        Ok(_) => Ok(ManageAnswer::Done),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Ok(ManageAnswer::NotLeader {
                leader: f.leader_id.zip(f.leader_node),
            })
        }
        Err(e) => Err(e.to_string()),
    }
}

impl<C: GroupConfig> GroupHandle<C, C::StateMachine> {
    /// Runs `op` on the group's leader (this replica or another).
    pub async fn manage(&self, op: ManageOp) -> Result<(), ProposeError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(LEADER_WAIT_MS);
        loop {
            let known = match self.raft().as_leader() {
                Ok(_) => match answer_manage(self.raft(), op.clone()).await {
                    Ok(ManageAnswer::Done) => return Ok(()),
                    Ok(ManageAnswer::NotLeader { leader }) => leader,
                    Err(reason) => {
                        return Err(ProposeError::Unknown {
                            group: self.group(),
                            reason,
                        })
                    }
                },
                Err(f) => f.leader_id.zip(f.leader_node),
            };
            let mut last = None;
            if let Some((id, node)) = known.filter(|(id, _)| *id != *self.raft().node_id()) {
                last = Some(id);
                match self.manage_remote(&node, &op).await {
                    Ok(ManageAnswer::Done) => return Ok(()),
                    Ok(ManageAnswer::NotLeader { .. }) => {}
                    Err(reason) => {
                        return Err(ProposeError::Unknown {
                            group: self.group(),
                            reason: format!("at node {id}: {reason}"),
                        })
                    }
                }
            }
            if !self.await_leader_change(last, deadline).await {
                return Err(ProposeError::NoLeader {
                    group: self.group(),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
    }

    async fn manage_remote(&self, node: &Node, op: &ManageOp) -> Result<ManageAnswer, String> {
        let channel = self
            .peers()
            .channel(&node.addr)
            .map_err(|e| format!("bad address {:?}: {e}", node.addr))?;
        let mut client = RaftTransportClient::new(channel)
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
        let mut req = tonic::Request::new(RaftRequest {
            group: self.group().0,
            encoding: WIRE_ENCODING,
            payload: tradelog_codec::encode(op),
        });
        req.set_timeout(Duration::from_millis(MANAGE_TIMEOUT_MS));
        let r = client.manage(req).await.map_err(|s| s.to_string())?;
        decode_reply(r.into_inner())
    }
}
