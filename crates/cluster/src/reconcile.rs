//! The reconciler (docs/design/0013, step 3): every node drives its part of the cluster
//! towards the cluster map, level-triggered, on every map change and every
//! [`RECONCILE_INTERVAL_MS`]:
//!
//! * **Open** a replica of every shard the map places on this node (its target or its
//!   leaving set, [`ClusterMap::shards_of`]) that it does not hold: an empty replica in
//!   `DATA_DIR/shard-N`, never initialised here; the shard's leader adds it as a learner
//!   and it catches up from the leader's log or a snapshot.
//! * **Close** a replica of a shard the map no longer places here: the shard's move
//!   settled without this node, so its group no longer counts this replica. Its Raft
//!   instance stops and its directory moves to `DATA_DIR/archive/` (history is the
//!   product: nothing is deleted).
//! * **Drive** every shard this node leads one membership step at a time towards the
//!   map's target ([`tradelog_placement::next_step`]: remove a stray learner, add a
//!   learner, promote one caught up, hand the leadership to a target voter, remove a voter
//!   the target leaves out), and once the group is exactly the target, record
//!   [`MapCommand::ShardSettled`] so the nodes it left close their replicas.
//!
//! Nothing here decides where shards go: the targets come from the map (written by
//! [`ClusterNode::add_node`](crate::ClusterNode::add_node), `remove_node` and
//! `move_shard`). Every step is safe to repeat and to interrupt: a leader that loses its
//! leadership or crashes mid-step leaves a group that the next leader drives on from.

use crate::{event_sink, now, ClusterError, ClusterNode, Replica, NO_SHARD, PUMP_INTERVAL_MS};
use openraft::async_runtime::watch::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tradelog_domain::ShardId;
use tradelog_node::shard_dir;
use tradelog_placement::{next_step, settled, ClusterMap, MapCommand, Replicas, Step};
use tradelog_raft::{
    GroupHandle, GroupNetwork, LogStoreConfig, ManageOp, Node, NodeId, Proposer, ShardLogStore,
    ShardRaft, ShardStateMachine,
};

/// How often the reconciler looks when the map did not change (ms).
pub const RECONCILE_INTERVAL_MS: u64 = 100;
/// Longest one membership step may take before the reconciler looks again (ms); the step
/// itself goes on inside openraft.
pub const RECONCILE_STEP_TIMEOUT_MS: u64 = 10_000;
/// A learner within this many log entries of its leader's log counts as caught up and is
/// promoted.
pub const CATCH_UP_LAG_ENTRIES_MAX: u64 = 64;
/// Directory (inside the data directory) where closed replicas are kept.
pub const ARCHIVE_DIR: &str = "archive";

/// The reconciler task of one node (see the module documentation).
pub(crate) async fn reconciler(
    node: Weak<ClusterNode>,
    mut map: watch::Receiver<Arc<ClusterMap>>,
    interval_ms: u64,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = map.changed() => if changed.is_err() { return },
        }
        let Some(node) = node.upgrade() else { return };
        if node.stopped.load(Ordering::Acquire) {
            return;
        }
        let current = map.borrow_and_update().clone();
        node.reconcile(&current).await;
    }
}

impl ClusterNode {
    /// One pass of the reconciler over the map `map`.
    async fn reconcile(&self, map: &ClusterMap) {
        if !map.is_initialised() {
            return;
        }
        let wanted = map.shards_of(self.id);
        let held = self.hosted();
        for s in wanted.difference(&held) {
            if !self.ready_to_open(map, *s).await {
                continue;
            }
            match self.open_replica(*s).await {
                Ok(()) => tracing::info!(shard = %s, map = map.version, "opened a replica"),
                Err(e) => tracing::warn!(shard = %s, "opening a replica: {e}"),
            }
        }
        for s in held.difference(&wanted) {
            match self.close_replica(*s, map.version).await {
                Ok(()) => tracing::info!(shard = %s, map = map.version, "closed a replica"),
                Err(e) => tracing::warn!(shard = %s, "closing a replica: {e}"),
            }
        }
        for r in self.replicas() {
            if r.handle.is_leader() {
                let shard = r.handle.group();
                if let Err(e) = self.drive(&r.handle, map).await {
                    tracing::info!(%shard, "moving the shard's replicas: {e}");
                }
            }
        }
    }

    /// Whether this node may open its replica of `shard` now. Any shard the cluster was
    /// formed with. A split's child: once this node's replica of the parent has applied
    /// the split (it wrote the child's start file), or at once on a node that holds no
    /// replica of the parent (a learner to be, sent a snapshot of the child).
    ///
    /// A replica of the parent that received the parent's state as a snapshot past the
    /// split wrote no start file, yet it may be one of the child's first voters, which
    /// are sent the child's log from its first entry: it copies the start file from
    /// another node of the child first ([`Self::fetch_split_start`]). A replica that was
    /// not a voter of the parent at the split (a node added since) opens without one: it
    /// is added to the child as a learner and sent a snapshot.
    async fn ready_to_open(&self, map: &ClusterMap, shard: ShardId) -> bool {
        let Some(split) = map.split_of(shard) else {
            return true;
        };

        let start = shard_dir(&self.data_dir, shard).join(tradelog_raft::SPLIT_START_FILE);
        if start.exists() {
            return true;
        }
        let Some(parent) = self.group(split.parent) else {
            return true;
        };
        let applied = parent
            .read_local(move |e| e.placement().knows(shard))
            .await
            .unwrap_or(false);
        if !applied {
            return false;
        }
        match self.fetch_split_start(map, shard, split.parent).await {
            Ok(fetched) => {
                tracing::info!(%shard, fetched, "the parent's replica skipped the split");
                true
            }
            Err(e) => {
                tracing::warn!(%shard, "copying the split's start file: {e}");
                false
            }
        }
    }

    /// Copies the start file of split child `shard` from another node placed on it, for a
    /// replica of the parent that never applied the split: `Ok(true)` once written;
    /// `Ok(false)` when this node was not one of the parent's voters at the split (the
    /// file says who was) or every node asked answered that it has none; an error when
    /// one could not be asked (try again) or sent a file that does not check out.
    async fn fetch_split_start(
        &self,
        map: &ClusterMap,
        shard: ShardId,
        parent: ShardId,
    ) -> Result<bool, String> {
        // The child's nodes first (its voters at the split wrote the file), then the
        // parent's.
        let mut asked: Vec<NodeId> = Vec::new();
        for n in [map.replicas(shard), map.replicas(parent)]
            .into_iter()
            .flatten()
            .flatten()
        {
            if *n != self.id && !asked.contains(n) {
                asked.push(*n);
            }
        }
        let mut unreachable = None;
        for n in asked {
            let Some(addr) = map.nodes.get(&n).map(|m| m.addr.clone()) else {
                continue;
            };
            let bytes = match self.peers.split_start(&addr, shard).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    unreachable = Some(format!("node {n}: {e}"));
                    continue;
                }
            };
            let (start, _) = tradelog_raft::decode_split_start(&bytes, shard)
                .map_err(|e| format!("node {n} sent a start file that does not check out: {e}"))?;
            if start.parent != parent {
                return Err(format!(
                    "node {n} sent the start file of a split of shard {}, not {parent}",
                    start.parent
                ));
            }
            // Only the parent's voters at the split start the child from this state; a
            // replica added since is sent a snapshot of the child.
            if !start
                .membership
                .membership()
                .voter_ids()
                .any(|v| v == self.id)
            {
                return Ok(false);
            }
            let dir = shard_dir(&self.data_dir, shard);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            tradelog_storage::write_atomically(&dir, tradelog_raft::SPLIT_START_FILE, &bytes)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            return Ok(true);
        }
        match unreachable {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    /// A split's child's leader about to add a learner: snapshots and purges the log
    /// first (once), so that the learner is sent the snapshot. The log does not start
    /// from an empty state: replayed from its start, it would not give the child's state.
    async fn purge_before_learner(&self, g: &GroupHandle) -> Result<(), String> {
        let raft = g.raft();
        raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
        let m = raft
            .wait(Some(step_timeout()))
            .metrics(|m| m.snapshot.is_some(), "a snapshot")
            .await
            .map_err(|e| e.to_string())?;
        let upto = m.snapshot.map(|s| s.index).unwrap_or(0);
        raft.trigger()
            .purge_log(upto)
            .await
            .map_err(|e| e.to_string())?;
        raft.wait(Some(step_timeout()))
            .metrics(|m| m.purged.is_some(), "the log purged")
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(shard = %g.group(), upto, "purged a split child's log before adding a learner");
        Ok(())
    }

    /// One step of shard `g` (led here) towards its target in `map`.
    async fn drive(&self, g: &GroupHandle, map: &ClusterMap) -> Result<(), String> {
        let shard = g.group();
        let Some(target) = map.replicas(shard) else {
            return Ok(());
        };
        let m = g.raft().metrics().borrow_watched().clone();
        if m.current_leader != Some(self.id) {
            return Ok(());
        }
        // A membership change still committing (or a joint configuration a previous
        // leader left): let openraft finish it first.
        if m.membership_config != m.committed_membership_config {
            return Ok(());
        }
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() > 1 {
            let last: BTreeSet<NodeId> = membership
                .get_joint_config()
                .last()
                .cloned()
                .unwrap_or_default();
            return self.step(g, ManageOp::SetVoters { voters: last }).await;
        }
        let now = Replicas {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            leader: Some(self.id),
        };
        if settled(target, &now) {
            if map.leaving.contains_key(&shard) {
                let done = MapCommand::ShardSettled {
                    shard,
                    replicas: target.clone(),
                };
                let answer = self.propose_map(done).await.map_err(|e| e.to_string())?;
                if let Some(r) = answer.rejected {
                    tracing::debug!(%shard, "recording the settled shard: {r}");
                }
            }
            return Ok(());
        }
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.clone().unwrap_or_default();
        let caught_up: BTreeSet<NodeId> = now
            .learners
            .iter()
            .filter(|l| {
                matched
                    .get(*l)
                    .and_then(|x| x.as_ref())
                    .is_some_and(|x| x.index + CATCH_UP_LAG_ENTRIES_MAX >= last)
            })
            .copied()
            .collect();
        let Some(step) = next_step(self.id, target, &now, &caught_up) else {
            return Ok(());
        };
        tracing::info!(%shard, ?step, ?target, "moving the shard's replicas");
        let op = match step {
            Step::AddLearner(_) if map.split_of(shard).is_some() && m.purged.is_none() => {
                return self.purge_before_learner(g).await;
            }
            Step::AddLearner(n) => {
                let Some(entry) = map.nodes.get(&n) else {
                    return Err(format!("node {n} is not in the map"));
                };
                // Not blocking: the learner catches up while this loop goes on with other
                // shards, and is promoted once within `CATCH_UP_LAG_ENTRIES_MAX`.
                let added = g
                    .raft()
                    .add_learner(n, Node::new(entry.addr.clone()), false);
                return match tokio::time::timeout(step_timeout(), added).await {
                    Ok(r) => r.map(drop).map_err(|e| e.to_string()),
                    Err(_) => Err("adding a learner timed out".into()),
                };
            }
            Step::Promote(n) => {
                let mut voters = now.voters.clone();
                voters.insert(n);
                ManageOp::SetVoters { voters }
            }
            Step::Remove(n) if now.learners.contains(&n) => ManageOp::RemoveLearner { node: n },
            Step::Remove(n) => {
                let mut voters = now.voters.clone();
                voters.remove(&n);
                ManageOp::SetVoters { voters }
            }
            Step::TransferLeader(to) => ManageOp::TransferLeader { to },
        };
        self.step(g, op).await
    }

    async fn step(&self, g: &GroupHandle, op: ManageOp) -> Result<(), String> {
        match tokio::time::timeout(step_timeout(), g.manage(op)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the step timed out".into()),
        }
    }

    /// Opens this node's replica of `shard` (recovering it from its directory, or empty
    /// when there is none), routes the group's messages to it, starts its leader duties
    /// and sends this node's commands of the shard through it. The group is not
    /// initialised here: a new replica waits to be added by the shard's leader.
    pub(crate) async fn open_replica(&self, shard: ShardId) -> Result<(), ClusterError> {
        let _changing = self.changing.lock().await;
        let Some(g) = self.groups.get(shard.0 as usize) else {
            return Err(ClusterError::Config(format!("no shard {shard}")));
        };
        if g.replica().is_some() || self.stopped.load(Ordering::Acquire) {
            return Ok(());
        }
        let dir = shard_dir(&self.data_dir, shard);
        let open_err = |source| ClusterError::Open {
            shard,
            dir: dir.clone(),
            source,
        };
        let (store, mut sm) = {
            let (dir, placement) = (dir.clone(), self.placement_for(shard));
            let data_dir = self.data_dir.clone();
            let children: tradelog_raft::ChildDirs =
                Arc::new(move |child: ShardId| shard_dir(&data_dir, child));
            tokio::task::spawn_blocking(move || {
                let store = ShardLogStore::open(&dir, LogStoreConfig::default())?;
                let sm = ShardStateMachine::open(&dir, shard, placement)?.with_child_dirs(children);
                Ok::<_, std::io::Error>((store, sm))
            })
            .await
            .map_err(|e| open_err(std::io::Error::other(e)))?
            .map_err(open_err)?
        };
        // The lowest shard this node holds keeps the market catalog.
        let catalog = self.catalog.load(Ordering::Acquire);
        if catalog == NO_SHARD || shard.0 < catalog {
            *self.markets.write().expect("markets lock") = sm.engine().markets().clone();
            self.catalog.store(shard.0, Ordering::Release);
        }
        let wake = Arc::new(Notify::new());
        let applied_records = sm.applied_records();
        let split_membership = sm.open_report().split_membership.clone();
        sm.set_event_sink(event_sink(
            shard,
            self.catalog.clone(),
            self.subscribers.clone(),
            self.markets.clone(),
            wake.clone(),
        ));
        let network = GroupNetwork::new(shard, self.id, self.peers.clone());
        let raft: ShardRaft =
            openraft::Raft::new(self.id, self.raft_config.clone(), network, store, sm)
                .await
                .map_err(|e| ClusterError::Raft {
                    shard,
                    reason: e.to_string(),
                })?;
        self.router.add(shard, raft.clone());
        // A split's child on one of the parent's voters at the split: every one of them
        // proposes the same first membership; the vote decides. (A replica that applied
        // the split later, as a learner of the parent, waits to be added.)
        let voter_at_split =
            split_membership.filter(|m| m.membership().voter_ids().any(|v| v == self.id));
        if let Some(m) = voter_at_split {
            let initialised = raft
                .is_initialized()
                .await
                .map_err(|e| ClusterError::Raft {
                    shard,
                    reason: e.to_string(),
                })?;
            if !initialised {
                let voters: BTreeMap<NodeId, Node> = m
                    .membership()
                    .nodes()
                    .filter(|(id, _)| m.membership().voter_ids().any(|v| v == **id))
                    .map(|(id, n)| (*id, n.clone()))
                    .collect();
                if let Err(e) = raft.initialize(voters).await {
                    tracing::debug!(%shard, "initialize: {e}");
                }
            }
        }
        let handle = GroupHandle::new(shard, raft, self.peers.clone());
        // A split's child replays from the state its parent gave it (docs/design/0014).
        if let Some(history) = self.kept_history() {
            let (h, limits) = history;
            let source =
                crate::RaftLogSource::open(&dir, shard, applied_records.clone()).map_err(|e| {
                    ClusterError::Raft {
                        shard,
                        reason: format!("opening the replica's history: {e}"),
                    }
                })?;
            h.set(
                shard,
                Some(tradelog_node::ShardHistory::with_source(
                    Box::new(source),
                    shard,
                    (*self.base_placement).clone(),
                    limits,
                )),
            );
        }
        let stopped = Arc::new(AtomicBool::new(false));
        let pump = tokio::spawn(tradelog_raft::pump(
            handle.clone(),
            self.destinations.clone(),
            wake.clone(),
            stopped.clone(),
            now,
            PUMP_INTERVAL_MS,
        ));
        *g.replica.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Replica {
            handle: handle.clone(),
            applied_records,
            wake,
            stopped,
            pump,
        }));
        *g.proposer.write().unwrap_or_else(PoisonError::into_inner) = Proposer::Local(handle);
        Ok(())
    }

    /// Closes this node's replica of `shard` (the map at `version` no longer places it
    /// here): commands of the shard go to its holders again, its Raft instance stops, and
    /// its directory moves to `DATA_DIR/archive/shard-N.vVERSION`.
    pub(crate) async fn close_replica(
        &self,
        shard: ShardId,
        version: u64,
    ) -> Result<(), ClusterError> {
        let _changing = self.changing.lock().await;
        let Some(g) = self.groups.get(shard.0 as usize) else {
            return Ok(());
        };
        *g.proposer.write().unwrap_or_else(PoisonError::into_inner) =
            Proposer::Remote(g.remote.clone());
        let Some(r) = g
            .replica
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        if let Some((h, _)) = self.kept_history() {
            h.set(shard, None);
        }
        r.stopped.store(true, Ordering::Release);
        r.pump.abort();
        r.wake.notify_one();
        self.router.remove(shard);
        if let Err(e) = r.handle.raft().shutdown().await {
            tracing::warn!(%shard, "Raft shutdown: {e}");
        }
        if self.catalog.load(Ordering::Acquire) == shard.0 {
            self.take_catalog_from_lowest().await;
        }
        let dir = shard_dir(&self.data_dir, shard);
        let archive = self.data_dir.join(ARCHIVE_DIR);
        let to = archive.join(format!("shard-{}.v{version}", shard.0));
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&archive)?;
            std::fs::rename(&dir, &to)?;
            std::fs::File::open(&data_dir)?.sync_all()?;
            std::fs::File::open(&archive)?.sync_all()
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| ClusterError::Open {
            shard,
            dir: shard_dir(&self.data_dir, shard),
            source,
        })
    }

    /// The catalog's shard closed: the lowest shard still held keeps it from now on,
    /// starting from its replica's catalog.
    async fn take_catalog_from_lowest(&self) {
        let Some(r) = self.replicas().into_iter().next() else {
            self.catalog.store(NO_SHARD, Ordering::Release);
            return;
        };
        let shard = r.handle.group();
        let markets = self.markets.clone();
        let catalog = self.catalog.clone();
        // On the replica's state machine task, so no catalog event slips in between.
        let _ = r
            .handle
            .read_local(move |e| {
                *markets.write().expect("markets lock") = e.markets().clone();
                catalog.store(shard.0, Ordering::Release);
            })
            .await;
    }

    fn kept_history(
        &self,
    ) -> Option<(
        Arc<tradelog_node::NodeHistory>,
        tradelog_node::HistoryLimits,
    )> {
        let kept = self.history.lock().expect("history lock");
        let (h, limits) = kept.as_ref()?;
        Some((h.upgrade()?, limits.clone()))
    }
}

fn step_timeout() -> Duration {
    Duration::from_millis(RECONCILE_STEP_TIMEOUT_MS)
}
