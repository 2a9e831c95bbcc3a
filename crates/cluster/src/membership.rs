//! Membership and leadership of the whole node set: add a node (it gets every shard's
//! replica, or its fair share by the placement policy), remove one (its replicas move
//! away first), move a shard, move a shard's leadership, and spread leaders evenly over
//! the voters. Node and shard changes are new targets in the cluster map (module
//! `metadata`), which the reconcilers carry out (module `reconcile`); these wait until
//! they have.

use crate::ClusterNode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tradelog_domain::ShardId;
use tradelog_placement::{MapCommand, MapReject};
use tradelog_raft::{GroupConfig, GroupHandle, ManageOp, NodeId, ProposeError};

/// Longest [`ClusterNode::add_node`], `remove_node` and `move_shard` wait for the
/// replicas to move (ms); the moves go on after.
pub const SETTLE_WAIT_MS: u64 = 300_000;

/// Where the placement policy puts every shard on the map's live nodes, from where the
/// map places them now (the fewest moves that balance the replicas).
fn placed(
    map: &tradelog_placement::ClusterMap,
) -> Result<BTreeMap<ShardId, BTreeSet<NodeId>>, ChangeError> {
    let layout = map.layout(&BTreeSet::new(), &BTreeMap::new());
    let targets = tradelog_placement::targets(&layout, map.replication_factor)
        .map_err(|e| ChangeError::Refused(format!("placing the shards: {e}")))?;
    Ok(targets.into_iter().map(|(s, t)| (s, t.replicas)).collect())
}

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
    /// reachable at `addr`) to the cluster map and the metadata group, then gives it
    /// replicas: every shard's, when every node holds every shard; otherwise its fair
    /// share, moved from the most loaded nodes by the placement policy
    /// ([`tradelog_placement::targets`]). The reconcilers (module `reconcile`) do the
    /// moves (learner, caught up, promoted, the old replica removed); this returns once
    /// every shard's group matches the map. Safe to repeat.
    pub async fn add_node(&self, node: NodeId, addr: &str) -> Result<(), ChangeError> {
        // A join recorded before the map exists would be lost: the map, once created,
        // places the shards on the groups' voters, without the new node.
        self.wait_for_map_init().await;
        let join = MapCommand::AddNode {
            node,
            addr: addr.to_string(),
        };
        let same = |r: &MapReject| matches!(r, MapReject::NodeExists(n) if *n == node);
        self.record(join, same, false).await?;
        self.add_meta_replica(node, addr).await?;
        let map = self.map();
        // Every node holds every shard (before this one joined, or already with it).
        let full = map.shards.values().all(|set| {
            set.len() == map.nodes.len()
                || (!set.contains(&node) && set.len() + 1 == map.nodes.len())
        });
        let targets = if full {
            map.shards
                .iter()
                .map(|(s, set)| {
                    let mut set = set.clone();
                    set.insert(node);
                    (*s, set)
                })
                .collect()
        } else {
            placed(&map)?
        };
        self.record_shard_replicas(targets).await?;
        self.wait_until_settled().await
    }

    /// Removes node `node` from the cluster: drains it (nothing new is placed there),
    /// moves its replicas to the other nodes (every shard's replicas shrink by it, when
    /// every node holds every shard; otherwise the placement policy puts them on the
    /// least loaded nodes), waits until every group matches the map, then takes it out of
    /// the metadata group and the map. Stop its process afterwards. Refused when it would
    /// leave a shard without a replica.
    pub async fn remove_node(&self, node: NodeId) -> Result<(), ChangeError> {
        self.wait_for_map_init().await;
        let gone = |r: &MapReject| matches!(r, MapReject::UnknownNode(n) if *n == node);
        if !self.map().nodes.contains_key(&node) && self.map().is_initialised() {
            return Ok(());
        }
        let map = self.map();
        let full = map.shards.values().all(|set| set.len() == map.nodes.len());
        if full {
            if let Some((s, _)) = map.shards.iter().find(|(_, set)| set.len() == 1) {
                return Err(ChangeError::Refused(format!(
                    "node {node} holds shard {s}'s only replica"
                )));
            }
        }
        self.record(MapCommand::DrainNode { node }, gone, false)
            .await?;
        let map = self.map();
        let targets = if full {
            map.shards
                .iter()
                .map(|(s, set)| {
                    let mut set = set.clone();
                    set.remove(&node);
                    (*s, set)
                })
                .collect()
        } else {
            placed(&map)?
        };
        self.record_shard_replicas(targets).await?;
        self.wait_until_settled().await?;
        self.remove_meta_replica(node).await?;
        // A node removing itself no longer receives the map.
        let no_wait = node == self.id();
        Ok(self
            .record(MapCommand::RemoveNode { node }, gone, no_wait)
            .await?)
    }

    /// Moves shard `shard` to the nodes `replicas` (each a live member, at most
    /// [`tradelog_placement::REPLICATION_FACTOR_MAX`]): the map's target changes and the
    /// reconcilers move the replicas; returns once the shard's group matches.
    pub async fn move_shard(
        &self,
        shard: ShardId,
        replicas: BTreeSet<NodeId>,
    ) -> Result<(), ChangeError> {
        let command = MapCommand::SetShardReplicas {
            shard,
            replicas,
            if_version: None,
        };
        self.change_map(command, "the move").await?;
        self.wait_until_settled().await
    }

    /// Sets how many replicas each shard has to `replication_factor` (at most the nodes
    /// that are not leaving) and moves the replicas where the placement policy puts them
    /// with that factor ([`tradelog_placement::targets`], the fewest moves that balance
    /// replicas and leaders): a cluster whose nodes each hold every shard becomes one
    /// whose shards are spread, or the other way round. Returns once every shard's group
    /// matches the map. Safe to repeat.
    pub async fn set_replication_factor(
        &self,
        replication_factor: usize,
    ) -> Result<(), ChangeError> {
        let command = MapCommand::SetReplicationFactor { replication_factor };
        self.change_map(command, "the replication factor").await?;
        let targets = placed(&self.map())?;
        self.record_shard_replicas(targets).await?;
        self.wait_until_settled().await
    }

    /// Commits an operator's `command` to the map (a refusal is `Refused`, naming `what`
    /// was refused) and waits until this node's map has it; returns the map version
    /// that recorded it.
    pub(crate) async fn change_map(
        &self,
        command: MapCommand,
        what: &str,
    ) -> Result<u64, ChangeError> {
        self.wait_for_map_init().await;
        let answer = self.propose_map(command).await?;
        if let Some(r) = answer.rejected {
            return Err(ChangeError::Refused(format!(
                "the cluster map refused {what}: {r}"
            )));
        }
        self.see_map_version(answer.version)
            .await
            .map_err(ChangeError::Propose)?;
        Ok(answer.version)
    }

    /// Waits until no shard has a move under way in this node's map (every group was
    /// seen by its leader with exactly its target as voters), at most
    /// [`SETTLE_WAIT_MS`].
    pub async fn wait_until_settled(&self) -> Result<(), ChangeError> {
        let mut rx = self.meta.map.clone();
        let wait = Duration::from_millis(SETTLE_WAIT_MS);
        let settled = tokio::time::timeout(wait, async {
            rx.wait_for(|m| m.is_settled()).await.map(drop)
        })
        .await;
        match settled {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ChangeError::Propose(ProposeError::Stopped {
                group: tradelog_raft::META_GROUP,
                reason: "the node stopped".into(),
            })),
            Err(_) => {
                let map = self.map();
                Err(ChangeError::Propose(ProposeError::Unknown {
                    group: tradelog_raft::META_GROUP,
                    reason: format!(
                        "replicas still moving after {SETTLE_WAIT_MS} ms (shards {:?}); \
                         the moves go on, repeat the command to wait again",
                        map.leaving.keys().map(|s| s.0).collect::<Vec<_>>()
                    ),
                }))
            }
        }
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
    /// voters (in id order), so every voter leads its share of shards. On a node that
    /// does not hold every shard with the same voters (a cluster whose shards live on
    /// different nodes), each shard it holds is led instead by the map's preferred leader
    /// (`tradelog_placement::preferred_leaders`, what the automatic balancer aims for, so
    /// the two never undo each other); the shards it does not hold are left alone (ask a
    /// node holding them).
    pub async fn balance_leaders(&self) -> Result<Rebalanced, ProposeError> {
        let held: Vec<BTreeSet<NodeId>> = (0..self.shard_count_u32())
            .map(|s| self.voters_of(ShardId(s)))
            .collect();
        let everywhere = held.iter().all(|v| !v.is_empty() && *v == held[0]);
        let preferred = (!everywhere).then(|| {
            let map = self.map();
            tradelog_placement::preferred_leaders(&map.shards)
        });
        let mut moved = Vec::new();
        for s in 0..self.shard_count_u32() {
            let shard = ShardId(s);
            let voters: Vec<NodeId> = held[s as usize].iter().copied().collect();
            if voters.is_empty() {
                continue;
            }
            let want = match &preferred {
                None => voters[s as usize % voters.len()],
                Some(p) => match p.get(&shard) {
                    Some(w) if voters.contains(w) => *w,
                    // The group is not at its target yet (a move under way): leave it.
                    _ => continue,
                },
            };
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
