//! The metadata group on a cluster node (docs/design/0013, step 2): its replica in
//! `DATA_DIR/meta`, formed from the initial members like the shard groups, and the
//! cluster map it replicates ([`ClusterMap`]: nodes, replication factor, every shard's
//! target replica set).
//!
//! * The first leader of the metadata group creates the map (`MapCommand::Init`) from the
//!   shard groups' voters as it sees them ([`map_keeper`]).
//! * [`ClusterNode::add_node`](crate::ClusterNode::add_node) and
//!   [`remove_node`](crate::ClusterNode::remove_node) record every change in the map (the
//!   node joins, drains, leaves; each shard's target replica set follows its voters), and
//!   add or remove the node's replica of the metadata group (a voter while the group has
//!   fewer than [`META_VOTERS_MAX`], a learner otherwise).
//! * Every replica publishes each applied map; [`ClusterNode::map`](crate::ClusterNode::map)
//!   is this node's latest, and the cluster status carries its version and nodes.
//!
//! The replicas move towards the targets by the reconciler (module `reconcile`).

use crate::{ClusterError, ClusterNode};
use openraft::async_runtime::watch::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tradelog_domain::ShardId;
use tradelog_placement::{ClusterMap, MapCommand, MapReject, REPLICATION_FACTOR_MAX};
use tradelog_raft::{
    GroupHandle, GroupNetwork, LogStoreConfig, ManageOp, MapResponse, MetaConfig, MetaHandle,
    MetaRaft, MetaStateMachine, Node, NodeId, PeerChannels, ProposeError, RaftRouter,
    ShardLogStore, META_GROUP,
};

/// Directory of this node's metadata replica inside its data directory.
pub const META_DIR: &str = "meta";
/// Most voters of the metadata group; nodes added beyond them are learners (they receive
/// the map but do not vote).
pub const META_VOTERS_MAX: usize = 5;
/// How often the map keeper looks whether the map still needs creating (ms).
pub const MAP_KEEPER_INTERVAL_MS: u64 = 200;
/// Longest a change to the cluster map waits for the map to exist (ms).
pub const MAP_INIT_WAIT_MS: u64 = 10_000;

/// This node's metadata replica and what it publishes.
pub(crate) struct Meta {
    pub(crate) handle: MetaHandle,
    pub(crate) map: watch::Receiver<Arc<ClusterMap>>,
}

/// Opens this node's metadata replica, routes it on `router` and forms the group from
/// `members` when it is new.
pub(crate) async fn open(
    node: NodeId,
    data_dir: &std::path::Path,
    raft_config: Arc<openraft::Config>,
    peers: &PeerChannels,
    router: &RaftRouter,
    members: &BTreeMap<NodeId, String>,
) -> Result<Meta, ClusterError> {
    let dir = data_dir.join(META_DIR);
    let open_err = |source| ClusterError::Open {
        shard: META_GROUP,
        dir: dir.clone(),
        source,
    };
    let (store, sm) = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let store =
                ShardLogStore::<_, MetaConfig>::open_group(&dir, LogStoreConfig::default())?;
            let sm = MetaStateMachine::open(&dir)?;
            Ok::<_, std::io::Error>((store, sm))
        })
        .await
        .map_err(|e| open_err(std::io::Error::other(e)))?
        .map_err(open_err)?
    };
    let map = sm.subscribe();
    let raft_err = |e: &dyn std::fmt::Display| ClusterError::Raft {
        shard: META_GROUP,
        reason: format!("metadata group: {e}"),
    };
    let network = GroupNetwork::<MetaConfig>::new(META_GROUP, node, peers.clone());
    let raft: MetaRaft = openraft::Raft::new(node, raft_config, network, store, sm)
        .await
        .map_err(|e| raft_err(&e))?;
    router.add_meta(raft.clone());
    if !members.is_empty() && !raft.is_initialized().await.map_err(|e| raft_err(&e))? {
        let members: BTreeMap<NodeId, Node> = members
            .iter()
            .map(|(id, addr)| (*id, Node::new(addr.clone())))
            .collect();
        // Every initial member does this with the same list; the vote decides.
        if let Err(e) = raft.initialize(members).await {
            tracing::debug!("metadata group initialize: {e}");
        }
    }
    Ok(Meta {
        handle: GroupHandle::new(META_GROUP, raft, peers.clone()),
        map,
    })
}

/// Creates the map once, on the metadata group's leader: every node in a shard group's
/// membership or the metadata group's, each shard's voters as its replica set, and a
/// replication factor of the largest voter set (at most [`REPLICATION_FACTOR_MAX`]).
pub(crate) async fn map_keeper(node: Weak<ClusterNode>, interval_ms: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        if node.map().is_initialised() {
            return;
        }
        if !node.meta.handle.is_leader() {
            continue;
        }
        let Some(init) = node.init_command() else {
            continue;
        };
        match node.meta.handle.propose(init).await {
            Ok(MapResponse {
                rejected: None | Some(MapReject::AlreadyInitialised(_)),
                ..
            }) => return,
            Ok(MapResponse {
                rejected: Some(r), ..
            }) => {
                tracing::warn!("the cluster map cannot be created: {r}");
                return;
            }
            Err(e) => tracing::debug!("creating the cluster map: {e}"),
        }
    }
}

impl ClusterNode {
    /// The cluster map as this node's metadata replica last applied it.
    pub fn map(&self) -> Arc<ClusterMap> {
        self.meta.map.borrow().clone()
    }

    /// The metadata group's replica on this node.
    pub fn metadata_group(&self) -> &MetaHandle {
        &self.meta.handle
    }

    /// Commits `command` to the map through the metadata group's leader; a refusal is in
    /// the response.
    pub async fn propose_map(&self, command: MapCommand) -> Result<MapResponse, ProposeError> {
        self.meta.handle.propose(command).await
    }

    /// Before a change to the map: waits, at most [`MAP_INIT_WAIT_MS`], until this node's
    /// map exists. A cluster's members initialise it shortly after they form it; a
    /// change asked meanwhile (an operator's first command on a new cluster) would
    /// otherwise be refused as made too early. After the wait the change is proposed
    /// anyway, and refused if the map still does not exist.
    pub(crate) async fn wait_for_map_init(&self) {
        let wait = Duration::from_millis(MAP_INIT_WAIT_MS);
        self.wait_for_map(1, wait).await;
    }

    /// Waits until this node's map is at least at `version` (or `timeout` passes).
    pub async fn wait_for_map(&self, version: u64, timeout: Duration) -> bool {
        let mut rx = self.meta.map.clone();
        tokio::time::timeout(timeout, rx.wait_for(|m| m.version >= version))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until this node's map has reached `version` (read your writes: the next step
    /// looks at it), at most [`tradelog_raft::READ_CATCH_UP_MS`]; `Lagging` if it has not.
    pub(crate) async fn see_map_version(&self, version: u64) -> Result<(), ProposeError> {
        let wait = Duration::from_millis(tradelog_raft::READ_CATCH_UP_MS);
        if self.wait_for_map(version, wait).await {
            return Ok(());
        }
        Err(ProposeError::Lagging {
            group: META_GROUP,
            reason: format!("the map did not reach version {version} here"),
        })
    }

    fn init_command(&self) -> Option<MapCommand> {
        let mut nodes: BTreeMap<NodeId, String> = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        let meta = self.meta.handle.raft().metrics().borrow_watched().clone();
        for (id, n) in meta.membership_config.membership().nodes() {
            nodes.insert(*id, n.addr.clone());
        }
        if let Some(formation) = &self.formation {
            // Formed with a replication factor: the placement every member computed.
            let rf = formation
                .values()
                .map(|t| t.replicas.len())
                .max()
                .unwrap_or(1);
            return Some(MapCommand::Init {
                shards: self.base_shard_count(),
                replication_factor: rf,
                nodes,
                replicas: formation
                    .iter()
                    .map(|(s, t)| (*s, t.replicas.clone()))
                    .collect(),
            });
        }
        for s in 0..self.base_shard_count() {
            let g = self.group(ShardId(s))?;
            let m = g.raft().metrics().borrow_watched().clone();
            for (id, n) in m.membership_config.membership().nodes() {
                nodes.entry(*id).or_insert_with(|| n.addr.clone());
            }
            let voters: BTreeSet<NodeId> = g.raft().voter_ids().collect();
            if voters.is_empty() {
                return None;
            }
            replicas.insert(ShardId(s), voters);
        }
        let widest = replicas.values().map(|v| v.len()).max().unwrap_or(1);
        Some(MapCommand::Init {
            shards: self.base_shard_count(),
            replication_factor: widest.clamp(1, REPLICATION_FACTOR_MAX),
            nodes,
            replicas,
        })
    }

    /// Records `command` in the map; `accept` says which refusals mean it is already done
    /// (a repeated `add-node`, say).
    /// Unless `no_wait` (this node is no longer in the metadata group), it then waits
    /// until this node's map has the change (read your writes: the next step looks at it).
    pub(crate) async fn record(
        &self,
        command: MapCommand,
        accept: impl Fn(&MapReject) -> bool,
        no_wait: bool,
    ) -> Result<(), ProposeError> {
        if !self.map().is_initialised() {
            // Nothing to record yet: the map is created from the groups as they are then.
            return Ok(());
        }
        let answer = self.propose_map(command).await?;
        if !no_wait {
            self.see_map_version(answer.version).await?;
        }
        match answer.rejected {
            None => Ok(()),
            Some(r) if accept(&r) => Ok(()),
            Some(r) => Err(ProposeError::Unknown {
                group: META_GROUP,
                reason: format!("the cluster map refused the change: {r}"),
            }),
        }
    }

    /// Adds `node` to the metadata group: a voter while it has fewer than
    /// [`META_VOTERS_MAX`], a learner otherwise.
    pub(crate) async fn add_meta_replica(
        &self,
        node: NodeId,
        addr: &str,
    ) -> Result<(), ProposeError> {
        let g = &self.meta.handle;
        g.manage(ManageOp::AddLearner {
            node,
            addr: addr.to_string(),
        })
        .await?;
        let mut voters: BTreeSet<NodeId> = g.raft().voter_ids().collect();
        if voters.len() < META_VOTERS_MAX && voters.insert(node) {
            g.manage(ManageOp::SetVoters { voters }).await?;
        }
        Ok(())
    }

    /// Removes `node` from the metadata group, putting a learner in its place when it was
    /// a voter (and handing its leadership over first).
    pub(crate) async fn remove_meta_replica(&self, node: NodeId) -> Result<(), ProposeError> {
        let g = &self.meta.handle;
        let mut voters: BTreeSet<NodeId> = g.raft().voter_ids().collect();
        if !voters.remove(&node) {
            return g.manage(ManageOp::RemoveLearner { node }).await;
        }
        if let Some(heir) = g.raft().learner_ids().find(|l| *l != node) {
            voters.insert(heir);
        }
        let Some(&heir) = voters.iter().next() else {
            return Err(ProposeError::Unknown {
                group: META_GROUP,
                reason: format!("node {node} is the metadata group's only voter"),
            });
        };
        crate::membership::hand_over_if_leading(g, node, heir).await?;
        g.manage(ManageOp::SetVoters { voters }).await
    }

    /// Sets each shard's target replica set in the map to the voters given for it.
    pub(crate) async fn record_shard_replicas(
        &self,
        targets: BTreeMap<ShardId, BTreeSet<NodeId>>,
    ) -> Result<(), ProposeError> {
        for (shard, voters) in targets {
            if self.map().replicas(shard) == Some(&voters) {
                continue;
            }
            let command = MapCommand::SetShardReplicas {
                shard,
                replicas: voters,
                if_version: None,
            };
            self.record(command, |_| false, false).await?;
        }
        Ok(())
    }
}
