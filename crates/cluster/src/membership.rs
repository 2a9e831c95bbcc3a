//! Membership and leadership of the whole node set: add a node to every group (as a
//! learner, caught up, then promoted), remove one, move a shard's leadership, and spread
//! leaders evenly over the voters. Every change is recorded in the cluster map (module
//! `metadata`).

use crate::ClusterNode;
use std::collections::{BTreeMap, BTreeSet};
use tradelog_domain::ShardId;
use tradelog_placement::{MapCommand, MapReject};
use tradelog_raft::{GroupConfig, GroupHandle, ManageOp, NodeId, ProposeError};

/// Why a node could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// A proposal to a group failed (see [`ProposeError`]); safe to repeat the change.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// The change cannot be made on this cluster; nothing was changed.
    #[error("{0}")]
    Refused(String),
}

/// What a leadership rebalance did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebalanced {
    /// `(shard, from, to)` for every leadership handed over.
    pub moved: Vec<(ShardId, Option<NodeId>, NodeId)>,
}

impl ClusterNode {
    pub(crate) fn voters_of(&self, s: ShardId) -> BTreeSet<NodeId> {
        self.group(s)
            .map(|g| g.raft().voter_ids().collect())
            .unwrap_or_default()
    }

    /// Adds node `node` (a `tradelog serve --node-id NODE` started without `--members`,
    /// reachable at `addr`) to the cluster map, the metadata group and every shard's
    /// group: first as a learner that catches up (from the log, or a snapshot when far
    /// behind), then as a voter; each shard's target replica set in the map follows.
    /// Safe to repeat.
    pub async fn add_node(&self, node: NodeId, addr: &str) -> Result<(), ChangeError> {
        self.check_every_node_holds_every_shard()?;
        let join = MapCommand::AddNode {
            node,
            addr: addr.to_string(),
        };
        let same = |r: &MapReject| matches!(r, MapReject::NodeExists(n) if *n == node);
        self.record(join, same, false).await?;
        self.add_meta_replica(node, addr).await?;
        let mut targets = BTreeMap::new();
        for s in 0..self.shard_count_u32() {
            let g = self.group(ShardId(s)).expect("every shard has a group");
            g.manage(ManageOp::AddLearner {
                node,
                addr: addr.to_string(),
            })
            .await?;
            let mut voters = self.voters_of(ShardId(s));
            if voters.insert(node) {
                g.manage(ManageOp::SetVoters {
                    voters: voters.clone(),
                })
                .await?;
            }
            targets.insert(ShardId(s), voters);
        }
        Ok(self.record_shard_replicas(targets).await?)
    }

    /// Removes node `node` from every shard's group (it stops receiving the log; stop its
    /// process afterwards), handing over the leadership of the groups it leads first,
    /// then from the metadata group and the cluster map (drained first, so that nothing
    /// new is placed on it meanwhile). Refused when it would leave a group without a
    /// voter.
    pub async fn remove_node(&self, node: NodeId) -> Result<(), ChangeError> {
        self.check_every_node_holds_every_shard()?;
        let gone = |r: &MapReject| matches!(r, MapReject::UnknownNode(n) if *n == node);
        self.record(MapCommand::DrainNode { node }, gone, false)
            .await?;
        let mut targets = BTreeMap::new();
        for s in 0..self.shard_count_u32() {
            let g = self.group(ShardId(s)).expect("every shard has a group");
            let mut voters = self.voters_of(ShardId(s));
            if voters.remove(&node) {
                let Some(&heir) = voters.iter().next() else {
                    return Err(ChangeError::Refused(format!(
                        "node {node} is shard {s}'s only voter"
                    )));
                };
                hand_over_if_leading(g, node, heir).await?;
                g.manage(ManageOp::SetVoters {
                    voters: voters.clone(),
                })
                .await?;
            }
            // (This node's view of a group it just left may stay as it was: the targets
            // are what was asked for, not what is seen.)
            targets.insert(ShardId(s), voters);
        }
        self.record_shard_replicas(targets).await?;
        self.remove_meta_replica(node).await?;
        // A node removing itself no longer receives the map.
        let no_wait = node == self.id();
        Ok(self
            .record(MapCommand::RemoveNode { node }, gone, no_wait)
            .await?)
    }

    /// Adding and removing nodes moves every shard's replicas with them, which is only
    /// right when every node holds every shard. In a cluster formed with a replication
    /// factor below its node count, replicas move by the reconciler (docs/design/0013,
    /// step 3), which is not built yet.
    fn check_every_node_holds_every_shard(&self) -> Result<(), ChangeError> {
        let map = self.map();
        let partial = self.groups.iter().any(|g| g.replica.is_none())
            || map.shards.values().any(|set| set.len() < map.nodes.len());
        if partial {
            return Err(ChangeError::Refused(format!(
                "this cluster places each shard on {} of its {} nodes; adding and removing \
                 nodes there needs replicas moved between nodes, which is not supported yet \
                 (docs/design/0013, step 3)",
                map.replication_factor,
                map.nodes.len()
            )));
        }
        Ok(())
    }

    /// Hands shard `s`'s leadership to node `to` (a voter of its group).
    pub async fn transfer_leader(&self, s: ShardId, to: NodeId) -> Result<(), ProposeError> {
        let g = self.group(s).ok_or(ProposeError::Stopped {
            group: s,
            reason: "no such shard".into(),
        })?;
        g.manage(ManageOp::TransferLeader { to }).await
    }

    /// Spreads leaders evenly: shard `s` is led by the `s mod n`-th of its group's `n`
    /// voters (in id order), so every voter leads its share of shards.
    pub async fn balance_leaders(&self) -> Result<Rebalanced, ProposeError> {
        let mut moved = Vec::new();
        for s in 0..self.shard_count_u32() {
            let shard = ShardId(s);
            let voters: Vec<NodeId> = self.voters_of(shard).into_iter().collect();
            if voters.is_empty() {
                continue;
            }
            let want = voters[s as usize % voters.len()];
            let leader = self
                .group(shard)
                .and_then(|g| g.raft().metrics().borrow_watched().current_leader);
            if leader != Some(want) {
                self.transfer_leader(shard, want).await?;
                moved.push((shard, leader, want));
            }
        }
        Ok(Rebalanced { moved })
    }
}

use openraft::async_runtime::watch::WatchReceiver;

/// Hands `g`'s leadership from `node` to `heir` if `node` leads it, and waits (a while)
/// for another leader: a leader that leaves would leave the group leaderless until an
/// election.
pub(crate) async fn hand_over_if_leading<C: GroupConfig>(
    g: &GroupHandle<C, C::StateMachine>,
    node: NodeId,
    heir: NodeId,
) -> Result<(), ProposeError> {
    let leader = g.raft().metrics().borrow_watched().current_leader;
    if leader == Some(node) {
        g.manage(ManageOp::TransferLeader { to: heir }).await?;
        let _ = g
            .raft()
            .wait(Some(std::time::Duration::from_millis(
                tradelog_raft::LEADER_WAIT_MS,
            )))
            .metrics(
                move |m| m.current_leader.is_some() && m.current_leader != Some(node),
                "a new leader",
            )
            .await;
    }
    Ok(())
}
