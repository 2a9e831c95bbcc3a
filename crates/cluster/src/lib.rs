//! A replicated tradelog node: every shard is a Raft group with a replica on every node of
//! the cluster, or on `rf` of them when the cluster is formed with a replication factor
//! ([`ClusterConfig::replication_factor`], docs/design/0013 step 3a), and this crate runs
//! this node's replicas behind the same [`ShardHost`] interface the embedded
//! single-process node offers, so the server does not care which one it runs on. Commands
//! for a shard this node holds no replica of are proposed through a node that holds one
//! ([`RemoteGroup`]); reads of it answer [`SubmitError::WrongNode`].
//!
//! Owns:
//!
//! * **Opening the replicas** ([`ClusterNode::start`]): per shard a
//!   [`ShardLogStore`](tradelog_raft::ShardLogStore) and a
//!   [`ShardStateMachine`] in `DATA_DIR/shard-{n}`, one
//!   openraft instance per shard sharing one [`RaftRouter`] (the receiving side, served on
//!   the node's gRPC port) and one [`PeerChannels`] (one connection per peer node). A new
//!   cluster is formed by starting every initial member with the same member list.
//! * **Commands** ([`ShardHost::submit`]): a bounded queue per shard; a batcher takes up to
//!   `batch_inputs_max` commands at a time and proposes them as one Raft entry (one fsync
//!   per replica and one round trip per batch), with `inflight_batches_max` batches
//!   in flight per shard (1 by default, which keeps the order of the commands). A node that does not lead a shard forwards the batch
//!   to the leader ([`GroupHandle::propose`]); a command is acknowledged only once
//!   committed on a majority and applied.
//! * **Reads** ([`ShardHost::read_with`]): linearizable (the leader's read index, then this
//!   replica's state once it applied that far) on any node. Stale reads
//!   ([`ShardHost::read_stale`]) skip the read index and answer from this replica's state
//!   as applied, so a follower answers them while its shard has no leader.
//! * **Events**: every replica applies every committed batch; the state machine hands the
//!   events to this node's subscribers, so every node serves the whole event stream.
//! * **Cross-shard messages and timers**: the leader of a shard delivers its outbox to the
//!   destination shard as replicated proposals and acknowledges them back (the engine
//!   deduplicates by channel sequence number, so a repeat after a leader change is
//!   harmless), and proposes the ticks that expire pending transfers.
//! * **Leader balance**: every node that leads at least two shards more than some live,
//!   caught-up voter hands one leadership to it every
//!   [`ClusterConfig::leader_balance_interval_ms`] (module `balance`, [`next_handover`]);
//!   [`ClusterNode::balance_leaders`] does a full spread on command.
//! * **History** ([`ClusterNode::history`], [`RaftLogSource`]): states as of a past point
//!   and events older than the server's index, regenerated from this node's replicas' Raft
//!   logs and snapshots by the node crate's `ShardHistory`, exactly as a single node does
//!   from its logs (input indexes mapped to Raft records; never past what the replica
//!   applied).
//! * **Status** ([`ClusterNode::status`]): per shard, this replica's view of leader, term,
//!   log, commit and apply indexes and each follower's replication progress; and the
//!   metadata group's view with the cluster map's version and nodes.
//! * **The metadata group** (module `metadata`, docs/design/0013): this node's replica in
//!   `DATA_DIR/meta`, the cluster map it replicates ([`ClusterNode::map`]), created by its
//!   first leader from the shard groups, and every [`ClusterNode::add_node`],
//!   [`ClusterNode::remove_node`] and [`ClusterNode::move_shard`] recorded in it as new
//!   target replica sets.
//! * **The reconciler** (module `reconcile`, docs/design/0013 step 3b): this node opens a
//!   replica of every shard the map places on it and closes (archives) those it no longer
//!   does, and drives every shard it leads towards the map's target one membership step
//!   at a time.
//!
//! Must never depend on: tradelog-server, tradelog-cli (it is the layer below them), and
//! holds no business logic (the engine decides everything).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod balance;
mod history;
mod membership;
mod metadata;
mod reconcile;
mod split;
mod status;

pub use balance::{
    next_handover, GroupView, LEADER_BALANCE_ACK_AGE_MAX_MS, LEADER_BALANCE_INTERVAL_MS,
    LEADER_BALANCE_LAG_ENTRIES_MAX,
};
pub use history::{open_history, RaftLogSource, INPUT_MARK_EVERY_RECORDS};
pub use membership::{ChangeError, Rebalanced, SETTLE_WAIT_MS};
pub use metadata::{MAP_INIT_WAIT_MS, MAP_KEEPER_INTERVAL_MS, META_DIR, META_VOTERS_MAX};
pub use reconcile::{
    ARCHIVE_DIR, CATCH_UP_LAG_ENTRIES_MAX, RECONCILE_INTERVAL_MS, RECONCILE_STEP_TIMEOUT_MS,
};
pub use split::{SplitDone, SPLIT_WAIT_MS};
pub use status::{
    ClusterStatus, MapNodeStatus, MetadataStatus, NodeAddress, ReplicaProgress, ShardStatus,
    ROLE_NOT_HELD,
};

use crossbeam_channel::{bounded, Receiver, Sender};
use openraft::async_runtime::watch::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;
use tradelog_domain::*;
use tradelog_engine::routing::{route, Route};
use tradelog_engine::{Applied, Input, Placement};
use tradelog_node::{
    catalog_replies, check_shard_count, shard_dir, CommandReply, EngineRead, Markets, NodeError,
    Reply, ShardHost, SubmitError,
};
use tradelog_raft::{
    Batch, GroupHandle, Node, NodeId, PeerChannels, ProposeError, Proposer, RaftRouter,
    RemoteGroup, ShardStateMachine, SinkItem,
};

/// Default bound of each shard's command queue on this node.
pub const QUEUE_LEN_MAX: usize = 16_384;
/// Default most commands in one proposed batch (one Raft entry).
pub const BATCH_INPUTS_MAX: usize = 4_096;
/// Default most batches of one shard in flight at once from this node. 1: a batch is
/// proposed once the one before it is committed, so commands sent to this node are
/// applied in the order they were queued, also when one request's commands span two
/// batches or the batches are forwarded to a leader elsewhere (concurrent proposals may
/// reach the Raft log in another order). Replication itself is still pipelined by
/// openraft, and a batch holds everything queued meanwhile (up to `BATCH_INPUTS_MAX`).
pub const INFLIGHT_BATCHES_MAX: usize = 1;
/// Bound of each event subscriber's queue (batches of events).
pub const SUBSCRIBER_QUEUE_LEN_MAX: usize = 1_024;
/// How often a shard's leader looks for cross-shard messages to deliver and pending
/// transfers to expire when nothing else woke it (ms).
pub const PUMP_INTERVAL_MS: u64 = 20;
/// File in the data directory naming the node id it belongs to.
pub const NODE_ID_FILE: &str = "node-id";

/// Settings of a replicated node.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id (unique in the cluster, never reused).
    pub node_id: NodeId,
    /// Where this node keeps its replicas (`DIR/shard-{n}`).
    pub data_dir: PathBuf,
    /// Number of shards (Raft groups); the same on every node, every time.
    pub shards: u32,
    /// Members (id and the URL of their gRPC port, such as `http://127.0.0.1:7700`) of a
    /// new cluster: every initial member is started with the same list, and the groups are
    /// formed from it the first time. Empty for a node that an operator will add to a
    /// running cluster.
    pub initial_members: BTreeMap<NodeId, String>,
    /// Bound of each shard's command queue on this node.
    pub queue_len_max: usize,
    /// Most commands per proposed batch.
    pub batch_inputs_max: usize,
    /// Most batches of one shard in flight from this node; above 1, commands queued at
    /// about the same time may be applied in another order than queued (see
    /// [`INFLIGHT_BATCHES_MAX`]).
    pub inflight_batches_max: usize,
    /// The openraft settings of every group.
    pub raft: openraft::Config,
    /// How often this node looks for an uneven spread of leaders and hands one of its
    /// leaderships to the voter leading the fewest (see [`next_handover`]); 0: never
    /// (leaders move only on command).
    pub leader_balance_interval_ms: u64,
    /// Replicas of each shard when a new cluster is formed from
    /// [`ClusterConfig::initial_members`]: `None`, every member holds every shard; `Some(rf)`,
    /// each shard is placed on `rf` of them by the placement policy
    /// (`tradelog_placement::targets`, the same on every member), and each node opens only
    /// its own shards. Only read when the cluster is formed; every initial member must be
    /// started with the same value.
    pub replication_factor: Option<usize>,
}

impl ClusterConfig {
    /// Defaults for node `node_id` with `shards` shards in `data_dir`, forming a cluster of
    /// `initial_members`.
    pub fn new(
        node_id: NodeId,
        data_dir: impl Into<PathBuf>,
        shards: u32,
        initial_members: BTreeMap<NodeId, String>,
    ) -> ClusterConfig {
        ClusterConfig {
            node_id,
            data_dir: data_dir.into(),
            shards,
            initial_members,
            queue_len_max: QUEUE_LEN_MAX,
            batch_inputs_max: BATCH_INPUTS_MAX,
            inflight_batches_max: INFLIGHT_BATCHES_MAX,
            raft: tradelog_raft::raft_config("tradelog").expect("the default Raft config is valid"),
            leader_balance_interval_ms: LEADER_BALANCE_INTERVAL_MS,
            replication_factor: None,
        }
    }
}

/// Why a replicated node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A setting is out of range.
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// The data directory belongs to another node or another shard count.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The data directory was created for another node id.
    #[error("{dir} belongs to node {on_disk}, not node {configured}")]
    NodeIdMismatch {
        /// The data directory.
        dir: PathBuf,
        /// The id recorded there.
        on_disk: NodeId,
        /// The id this node was started with.
        configured: NodeId,
    },
    /// A replica's files could not be opened.
    #[error("opening shard {shard} in {dir}: {source}")]
    Open {
        /// The shard.
        shard: ShardId,
        /// Its directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// openraft refused to start or form a group.
    #[error("Raft group {shard}: {reason}")]
    Raft {
        /// The shard.
        shard: ShardId,
        /// Why.
        reason: String,
    },
}

struct Job {
    meta: Meta,
    command: Command,
    reply: Reply,
}

/// A shard as this node reaches it: every shard has a command queue here; a shard this
/// node holds a replica of also has the replica. Replicas open and close while the node
/// runs (module `reconcile`), so both are behind locks held only to read or swap them.
pub(crate) struct Group {
    replica: RwLock<Option<Arc<Replica>>>,
    /// Where this node's batches of the shard go: its replica, or a node holding one
    /// (read again for every batch).
    proposer: Arc<RwLock<Proposer>>,
    /// How this node reaches the shard when it holds no replica.
    remote: RemoteGroup,
    queue: mpsc::Sender<Job>,
}

impl Group {
    pub(crate) fn replica(&self) -> Option<Arc<Replica>> {
        self.replica
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// This node's replica of a shard.
pub(crate) struct Replica {
    pub(crate) handle: GroupHandle,
    /// The replica's applied record counter (the bound of its history's reads).
    applied_records: Arc<std::sync::atomic::AtomicU64>,
    /// Woken after a batch of this shard is applied here (the pump looks for work).
    wake: Arc<Notify>,
    /// Set when the replica closes or the node stops: its pump ends.
    stopped: Arc<AtomicBool>,
    /// The replica's leader duties (cross-shard messages, timers).
    pump: JoinHandle<()>,
}

type Subscribers = Arc<Mutex<Vec<Sender<Arc<[EventRecord]>>>>>;

/// This node's replicas of every shard (see the crate documentation).
pub struct ClusterNode {
    /// This node itself, for replies that send their command again
    /// ([`ClusterNode::resend_if_moved`]).
    me: std::sync::Weak<ClusterNode>,
    id: NodeId,
    /// The shards the cluster was formed with ([`ClusterConfig::shards`]).
    base_shards: u32,
    /// Where accounts live before any split: what a base shard's new engine starts with.
    base_placement: Arc<Placement>,
    /// The map's placement (with its splits) and the map version it was made from.
    placement: Mutex<(u64, Arc<Placement>)>,
    markets: Markets,
    /// A slot per shard the cluster may ever have, in shard order: the base shards, then
    /// one per split the placement allows (`SPLITS_MAX`); a slot past
    /// [`ShardHost::shard_count`] is a shard that does not exist yet.
    pub(crate) groups: Vec<Group>,
    pub(crate) meta: metadata::Meta,
    /// Where the shards were placed when this node formed the cluster with a replication
    /// factor ([`ClusterConfig::replication_factor`]): the map is created from it.
    pub(crate) formation: Option<Formation>,
    router: RaftRouter,
    subscribers: Subscribers,
    runtime: tokio::runtime::Handle,
    stopped: Arc<AtomicBool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Leaderships this node's balancer handed over.
    handovers: std::sync::atomic::AtomicU64,
    data_dir: PathBuf,
    raft_config: Arc<openraft::Config>,
    peers: PeerChannels,
    /// Where each shard's leader sends its cross-shard messages.
    destinations: tradelog_raft::Destinations,
    /// The shard whose catalog events keep [`Markets`] current: the lowest this node holds
    /// ([`NO_SHARD`] when it holds none).
    catalog: Arc<AtomicU32>,
    /// The history handed to the server, and its limits: a replica opened or closed later
    /// sets or clears its shard there.
    history: Mutex<
        Option<(
            std::sync::Weak<tradelog_node::NodeHistory>,
            tradelog_node::HistoryLimits,
        )>,
    >,
    /// Held while a replica opens or closes (one at a time).
    changing: tokio::sync::Mutex<()>,
}

/// [`ClusterNode::catalog`] when this node holds no shard.
const NO_SHARD: u32 = u32::MAX;

/// Each shard's replica set when a cluster is formed with a replication factor.
type Formation = BTreeMap<ShardId, tradelog_placement::Target>;

/// Where a new cluster's shards go when it is formed with a replication factor: the
/// placement policy over the initial members, all live, no shard placed yet (a pure
/// function of the member ids, the shard count and the factor, so every member computes
/// the same).
fn formation(config: &ClusterConfig) -> Result<Option<Formation>, ClusterError> {
    let Some(rf) = config.replication_factor else {
        return Ok(None);
    };
    if config.initial_members.is_empty() {
        return Ok(None);
    }
    let nodes: BTreeSet<NodeId> = config.initial_members.keys().copied().collect();
    let targets = tradelog_placement::initial_targets(&nodes, config.shards, rf)
        .map_err(|e| ClusterError::Config(format!("placing the shards: {e}")))?;
    Ok(Some(targets))
}

/// The shards this node opens a replica of: those whose directory exists (it held them
/// before), and those the cluster map places here, or, before there is a map, those the
/// formation places here. Every shard in a cluster formed without a replication factor
/// (every node holds every shard). A new node started to be added to a cluster opens
/// none: the reconciler opens those the map places on it once it is added.
fn hosted_shards(
    config: &ClusterConfig,
    map: &tradelog_placement::ClusterMap,
    formation: Option<&Formation>,
) -> BTreeSet<ShardId> {
    let mut hosted: BTreeSet<ShardId> = (0..config.shards)
        .map(ShardId)
        .filter(|s| shard_dir(&config.data_dir, *s).is_dir())
        .collect();
    if map.is_initialised() {
        hosted.extend(map.shards_of(config.node_id));
    } else if let Some(f) = formation {
        hosted.extend(
            f.iter()
                .filter(|(_, t)| t.replicas.contains(&config.node_id))
                .map(|(s, _)| *s),
        );
    } else if !config.initial_members.is_empty() {
        hosted.extend((0..config.shards).map(ShardId));
    }
    hosted
}

/// The nodes holding `shard`'s replicas for a proposal from a node that holds none: from
/// the cluster map as this node last applied it, or from the formation before there is a
/// map.
fn holders(
    shard: ShardId,
    map: tokio::sync::watch::Receiver<Arc<tradelog_placement::ClusterMap>>,
    formation: Option<&Formation>,
    members: &BTreeMap<NodeId, String>,
) -> tradelog_raft::Holders {
    let formed: Vec<(NodeId, Node)> = formation
        .and_then(|f| f.get(&shard))
        .into_iter()
        .flat_map(|t| &t.replicas)
        .filter_map(|n| members.get(n).map(|a| (*n, Node::new(a.clone()))))
        .collect();
    Arc::new(move || {
        let m = map.borrow();
        match m.replicas(shard) {
            Some(set) => set
                .iter()
                .filter_map(|n| m.nodes.get(n).map(|mn| (*n, Node::new(mn.addr.clone()))))
                .collect(),
            None => formed.clone(),
        }
    })
}

/// How long a new cluster's member waits for a shard it should lead to elect its first
/// leader before it gives up asking for the leadership (ms).
pub const FORMATION_LEADER_WAIT_MS: u64 = 30_000;

/// Once each of `groups` (shards this node formed and the formation placed its leader
/// on) has elected a first leader, asks for the leadership when another node won the
/// election, so that a new cluster's leaders are spread as the placement policy spread
/// them (the leader balancer only compares groups with the same voters). Once only.
async fn take_formation_leadership(me: NodeId, groups: Vec<GroupHandle>) {
    for g in groups {
        let elected = g
            .raft()
            .wait(Some(Duration::from_millis(FORMATION_LEADER_WAIT_MS)))
            .metrics(|m| m.current_leader.is_some(), "a first leader")
            .await;
        let Ok(m) = elected else { continue };
        if m.current_leader == Some(me) {
            continue;
        }
        if let Err(e) = g
            .manage(tradelog_raft::ManageOp::TransferLeader { to: me })
            .await
        {
            tracing::info!(shard = %g.group(), "taking the leadership the placement gave this node: {e}");
        }
    }
}

/// Leader time: the wall clock in nanoseconds (the engine keeps it monotonic).
fn now() -> Timestamp {
    tradelog_node::runtime::now()
}

fn check_node_id(dir: &std::path::Path, id: NodeId) -> Result<(), ClusterError> {
    let path = dir.join(NODE_ID_FILE);
    let open = |source| ClusterError::Open {
        shard: ShardId(0),
        dir: dir.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let on_disk: NodeId = text.trim().parse().map_err(|_| {
                open(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is damaged: {text:?}", path.display()),
                ))
            })?;
            if on_disk != id {
                return Err(ClusterError::NodeIdMismatch {
                    dir: dir.to_path_buf(),
                    on_disk,
                    configured: id,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(open)?;
            let tmp = dir.join(format!("{NODE_ID_FILE}.tmp"));
            std::fs::write(&tmp, format!("{id}\n")).map_err(open)?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(open)?;
            std::fs::rename(&tmp, &path).map_err(open)?;
            std::fs::File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(open)?;
            Ok(())
        }
        Err(e) => Err(open(e)),
    }
}

impl ClusterNode {
    /// Opens this node's replica of every shard (recovering each from its snapshot and
    /// log), joins them to their groups (forming the groups from
    /// [`ClusterConfig::initial_members`] the first time) and starts the batchers and the
    /// leader duties. Serve [`ClusterNode::raft_service`] on the node's gRPC port so the
    /// other nodes reach it. Must be called inside a multi-threaded tokio runtime.
    pub async fn start(config: ClusterConfig) -> Result<Arc<ClusterNode>, ClusterError> {
        if config.shards == 0 || config.shards > SHARD_COUNT_MAX {
            return Err(ClusterError::Config(format!(
                "shards must be 1 to {SHARD_COUNT_MAX}, got {}",
                config.shards
            )));
        }
        if !config.initial_members.is_empty()
            && !config.initial_members.contains_key(&config.node_id)
        {
            return Err(ClusterError::Config(format!(
                "node {} is not one of the initial members {:?}",
                config.node_id,
                config.initial_members.keys().collect::<Vec<_>>()
            )));
        }
        if config.batch_inputs_max == 0
            || config.batch_inputs_max > tradelog_raft::BATCH_INPUTS_MAX
            || config.queue_len_max == 0
            || config.inflight_batches_max == 0
        {
            return Err(ClusterError::Config(format!(
                "queue_len_max, inflight_batches_max must be at least 1 and batch_inputs_max 1 to {}",
                tradelog_raft::BATCH_INPUTS_MAX
            )));
        }
        {
            let (dir, shards, id) = (config.data_dir.clone(), config.shards, config.node_id);
            tokio::task::spawn_blocking(move || {
                check_shard_count(&dir, shards)?;
                check_node_id(&dir, id)
            })
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))??;
        }
        let formation = formation(&config)?;
        let placement = Arc::new(Placement::new(config.shards));
        let slots = config
            .shards
            .saturating_add(SPLITS_MAX as u32)
            .min(SHARD_COUNT_MAX);
        let markets: Markets = Markets::default();
        let subscribers: Subscribers = Arc::default();
        let router = RaftRouter::new();
        // A peer whose replica of a split's parent skipped the split (it received the
        // parent's state as a snapshot past it) asks for the child's start file.
        let dir = config.data_dir.clone();
        router.serve_split_starts(Arc::new(move |child: ShardId| {
            std::fs::read(shard_dir(&dir, child).join(tradelog_raft::SPLIT_START_FILE)).ok()
        }));
        let peers = PeerChannels::new();
        let raft_config = Arc::new(
            config
                .raft
                .clone()
                .validate()
                .map_err(|e| ClusterError::Config(e.to_string()))?,
        );
        let meta = metadata::open(
            config.node_id,
            &config.data_dir,
            raft_config.clone(),
            &peers,
            &router,
            &config.initial_members,
        )
        .await?;
        let hosted = hosted_shards(&config, &meta.map.borrow(), formation.as_ref());
        let mut groups = Vec::new();
        let mut receivers = Vec::new();
        for s in 0..slots {
            let shard = ShardId(s);
            let (tx, rx) = mpsc::channel(config.queue_len_max);
            receivers.push(rx);
            let holders = holders(
                shard,
                meta.map.clone(),
                formation.as_ref(),
                &config.initial_members,
            );
            let remote = RemoteGroup::new(shard, peers.clone(), holders);
            groups.push(Group {
                replica: RwLock::new(None),
                proposer: Arc::new(RwLock::new(Proposer::Remote(remote.clone()))),
                remote,
                queue: tx,
            });
        }
        let slots: Vec<Arc<RwLock<Proposer>>> = groups.iter().map(|g| g.proposer.clone()).collect();
        let destinations: tradelog_raft::Destinations = Arc::new(move |to: ShardId| {
            slots
                .get(to.0 as usize)
                .map(|p| p.read().unwrap_or_else(PoisonError::into_inner).clone())
        });
        let node = Arc::new_cyclic(|me| ClusterNode {
            me: me.clone(),
            id: config.node_id,
            base_shards: config.shards,
            base_placement: placement.clone(),
            placement: Mutex::new((0, placement)),
            markets,
            groups,
            meta,
            formation,
            router,
            subscribers,
            runtime: tokio::runtime::Handle::current(),
            stopped: Arc::new(AtomicBool::new(false)),
            tasks: Mutex::new(Vec::new()),
            handovers: std::sync::atomic::AtomicU64::new(0),
            data_dir: config.data_dir.clone(),
            raft_config,
            peers,
            destinations,
            catalog: Arc::new(AtomicU32::new(NO_SHARD)),
            history: Mutex::new(None),
            changing: tokio::sync::Mutex::new(()),
        });
        for shard in &hosted {
            if let Err(e) = node.open_replica(*shard).await {
                node.shutdown().await;
                return Err(e);
            }
        }
        // Shards formed by this start whose formation leader is this node.
        let mut to_lead = Vec::new();
        if !config.initial_members.is_empty() {
            for r in node.replicas() {
                let raft = r.handle.raft();
                let shard = r.handle.group();
                let pristine = !raft
                    .is_initialized()
                    .await
                    .map_err(|e| ClusterError::Raft {
                        shard,
                        reason: e.to_string(),
                    })?;
                if pristine {
                    let members: BTreeMap<NodeId, Node> = config
                        .initial_members
                        .iter()
                        .filter(|(id, _)| {
                            node.formation.as_ref().is_none_or(|f| {
                                f.get(&shard).is_some_and(|t| t.replicas.contains(id))
                            })
                        })
                        .map(|(id, addr)| (*id, Node::new(addr.clone())))
                        .collect();
                    // Every initial member holding the shard does this with the same list;
                    // the vote decides.
                    if let Err(e) = raft.initialize(members).await {
                        tracing::debug!(%shard, "initialize: {e}");
                    }
                    let leader = node.formation.as_ref().and_then(|f| f.get(&shard));
                    if leader.is_some_and(|t| t.leader == config.node_id) {
                        to_lead.push(r.handle.clone());
                    }
                }
            }
        }
        let mut tasks = Vec::new();
        for (g, rx) in node.groups.iter().zip(receivers) {
            tasks.push(tokio::spawn(batcher(
                g.proposer.clone(),
                rx,
                config.batch_inputs_max,
                config.inflight_batches_max,
            )));
        }
        if !to_lead.is_empty() {
            tasks.push(tokio::spawn(take_formation_leadership(
                config.node_id,
                to_lead,
            )));
        }
        tasks.push(tokio::spawn(metadata::map_keeper(
            Arc::downgrade(&node),
            MAP_KEEPER_INTERVAL_MS,
        )));
        tasks.push(tokio::spawn(reconcile::reconciler(
            Arc::downgrade(&node),
            node.meta.map.clone(),
            RECONCILE_INTERVAL_MS,
        )));
        if config.leader_balance_interval_ms > 0 {
            tasks.push(tokio::spawn(balance::balancer(
                Arc::downgrade(&node),
                config.leader_balance_interval_ms,
            )));
        }
        *node.tasks.lock().expect("tasks lock") = tasks;
        tracing::info!(
            node = config.node_id,
            shards = config.shards,
            replicas = ?hosted,
            "replicas started"
        );
        Ok(node)
    }

    /// The shards that exist now: those the cluster was formed with and the children of
    /// the splits the map records.
    fn shard_count_u32(&self) -> u32 {
        let map = self.meta.map.borrow();
        (map.shards.len() as u32).max(self.base_shards)
    }

    /// The shards the cluster was formed with.
    pub fn base_shard_count(&self) -> u32 {
        self.base_shards
    }

    /// Where accounts and markets live now: the map's placement, with its splits.
    pub fn current_placement(&self) -> Arc<Placement> {
        let map = self.meta.map.borrow();
        if map.splits.is_empty() {
            return self.base_placement.clone();
        }
        let mut cached = self
            .placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cached.0 != map.version {
            *cached = (map.version, Arc::new(map.placement()));
        }
        cached.1.clone()
    }

    /// The placement a new engine of `shard` starts with: a base shard's knows no split
    /// (as on every replica that started it); a split's child's knows the map's splits
    /// (its state comes from its start file or a snapshot anyway).
    pub(crate) fn placement_for(&self, shard: ShardId) -> Placement {
        if shard.0 < self.base_shards {
            (*self.base_placement).clone()
        } else {
            (*self.current_placement()).clone()
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The receiving side of the node-to-node transport, to serve on this node's gRPC port.
    pub fn raft_service(
        &self,
    ) -> tradelog_raft::pb::raft_transport_server::RaftTransportServer<RaftRouter> {
        self.router.service()
    }

    /// The history of this node's replicas (states as of a past point and old events,
    /// regenerated from each replica's Raft log and snapshots; see [`RaftLogSource`]).
    /// Ask a shard's replica what it has applied (e.g. `group(s).read_local`) before
    /// asking its history about a point: reads never go past what the replica applied.
    ///
    /// The node keeps a handle to it: a replica it opens or closes later sets or clears
    /// its shard's history there.
    pub fn history(
        &self,
        limits: tradelog_node::HistoryLimits,
    ) -> Result<Arc<tradelog_node::NodeHistory>, tradelog_node::HistoryError> {
        let mut kept = self.history.lock().expect("history lock");
        // A split's child replays from the state its parent gave it (`split-start.bin`,
        // docs/design/0014).
        let applied: Vec<_> = self
            .groups
            .iter()
            .map(|g| g.replica().map(|r| r.applied_records.clone()))
            .collect();
        let history = Arc::new(open_history(
            &self.data_dir,
            &applied,
            self.base_shards,
            limits.clone(),
        )?);
        *kept = Some((Arc::downgrade(&history), limits));
        Ok(history)
    }

    /// The replica of shard `s` on this node (`None` when this node holds none).
    pub fn group(&self, s: ShardId) -> Option<GroupHandle> {
        self.replica(s).map(|r| r.handle.clone())
    }

    pub(crate) fn replica(&self, s: ShardId) -> Option<Arc<Replica>> {
        self.groups.get(s.0 as usize).and_then(Group::replica)
    }

    pub(crate) fn replicas(&self) -> Vec<Arc<Replica>> {
        self.groups.iter().filter_map(Group::replica).collect()
    }

    /// The shards this node holds a replica of.
    pub fn hosted(&self) -> BTreeSet<ShardId> {
        self.replicas().iter().map(|r| r.handle.group()).collect()
    }

    /// This replica's view of every shard (the applied index and state hash read together
    /// from the state machine).
    pub async fn status(&self) -> ClusterStatus {
        self.status_with(true).await
    }

    /// This node's view of every shard; without `state_hash`, the status a client routes
    /// by (no state hash, which costs a pass over each shard's whole state on its state
    /// machine task, and the applied index from the metrics).
    pub async fn status_with(&self, state_hash: bool) -> ClusterStatus {
        let count = self.shard_count_u32() as usize;
        let mut shards = Vec::with_capacity(count);
        let mut nodes = std::collections::BTreeMap::new();
        let map = self.map();
        for (k, g) in self.groups.iter().enumerate().take(count) {
            let s = ShardId(k as u32);
            let Some(g) = g.replica() else {
                let leader = g.remote.leader();
                let replicas = map
                    .is_initialised()
                    .then(|| map.holders(s).into_iter().collect())
                    .or_else(|| {
                        self.formation
                            .as_ref()
                            .and_then(|f| f.get(&s))
                            .map(|t| t.replicas.iter().copied().collect())
                    })
                    .unwrap_or_default();
                shards.push(status::remote_shard_status(s, replicas, leader));
                continue;
            };
            let m = g.handle.raft().metrics().borrow_watched().clone();
            let (applied, hash) = if state_hash {
                let (a, h) = self.state_hash(s).await.unwrap_or((None, [0; 32]));
                (a, Some(h))
            } else {
                (m.last_applied.as_ref().map(|l| l.index), None)
            };
            for (id, n) in m.membership_config.membership().nodes() {
                nodes.entry(*id).or_insert_with(|| n.addr.clone());
            }
            shards.push(status::shard_status(s, &m, applied, hash));
        }
        // Nodes that share no shard with this one are in the map.
        for (id, n) in &map.nodes {
            nodes.entry(*id).or_insert_with(|| n.addr.clone());
        }
        ClusterStatus {
            node: self.id,
            nodes: nodes
                .into_iter()
                .map(|(node, url)| status::NodeAddress { node, url })
                .collect(),
            shards,
            metadata: status::metadata_status(
                &self.meta.handle.raft().metrics().borrow_watched().clone(),
                &self.map(),
            ),
        }
    }

    /// Waits until every shard has a leader (or `timeout` passes); true if they all do.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> bool {
        for g in self.replicas() {
            let ok = g
                .handle
                .raft()
                .wait(Some(timeout))
                .metrics(|m| m.current_leader.is_some(), "a leader")
                .await;
            if ok.is_err() {
                return false;
            }
        }
        true
    }

    /// Shard `s`'s state hash on this replica right now, with the log index it was applied
    /// through (for checks that replicas agree).
    pub async fn state_hash(&self, s: ShardId) -> Result<(Option<u64>, [u8; 32]), ProposeError> {
        let g = self.replica(s).ok_or(ProposeError::Stopped {
            group: s,
            reason: "this node holds no replica of it".into(),
        })?;
        g.handle
            .raft()
            .with_state_machine(|sm: &mut ShardStateMachine| {
                let r = (sm.applied().map(|l| l.index), sm.state_hash());
                Box::pin(async move { r })
            })
            .await
            .map_err(|e| ProposeError::Stopped {
                group: s,
                reason: e.to_string(),
            })
    }

    /// Stops the batchers and every Raft instance of this node (what is in flight is
    /// answered `Stopped` or finishes first).
    pub async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for t in &tasks {
            t.abort();
        }
        let _changing = self.changing.lock().await;
        for g in self.replicas() {
            g.stopped.store(true, Ordering::Release);
            g.pump.abort();
            g.wake.notify_one();
            self.router.remove(g.handle.group());
            if let Err(e) = g.handle.raft().shutdown().await {
                tracing::warn!(shard = %g.handle.group(), "Raft shutdown: {e}");
            }
        }
        self.router.remove_meta();
        if let Err(e) = self.meta.handle.raft().shutdown().await {
            tracing::warn!("metadata group Raft shutdown: {e}");
        }
        self.subscribers.lock().expect("subscribers lock").clear();
        tracing::info!(node = self.id, "replicas stopped");
    }

    fn enqueue(&self, s: ShardId, meta: Meta, command: Command, reply: Reply) {
        let Some(g) = self.groups.get(s.0 as usize) else {
            return reply(Err(SubmitError::Stopped));
        };
        match g.queue.try_send(Job {
            meta,
            command,
            reply,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(j)) => (j.reply)(Err(SubmitError::Overloaded(s))),
            Err(mpsc::error::TrySendError::Closed(j)) => (j.reply)(Err(SubmitError::Stopped)),
        }
    }
}

/// Publishes a shard's applied events to the node's subscribers, keeps the market catalog
/// current (when `catalog` names this shard: the lowest shard this node holds; every
/// shard applies every catalog command) and wakes the shard's pump.
fn event_sink(
    shard: ShardId,
    catalog: Arc<AtomicU32>,
    subscribers: Subscribers,
    markets: Markets,
    wake: Arc<Notify>,
) -> tradelog_raft::EventSink {
    Arc::new(move |item: SinkItem<'_>| {
        match item {
            SinkItem::Applied(events) => {
                if catalog.load(Ordering::Acquire) == shard.0 {
                    for e in events {
                        if let Event::MarketCreated(m) = &e.event {
                            markets
                                .write()
                                .expect("markets lock")
                                .insert(m.id, m.clone());
                        }
                    }
                }
                let batch: Arc<[EventRecord]> = events.to_vec().into();
                subscribers
                    .lock()
                    .expect("subscribers lock")
                    .retain(|s| s.try_send(batch.clone()).is_ok());
            }
            SinkItem::Installed { next_event_seq } => {
                tracing::info!(
                    %shard,
                    next_event_seq,
                    "installed a snapshot: earlier events are served from history"
                );
            }
        }
        wake.notify_one();
    })
}

fn submit_error(e: ProposeError) -> SubmitError {
    match e {
        ProposeError::NoLeader { .. } | ProposeError::Lagging { .. } => {
            SubmitError::Unavailable(e.to_string())
        }
        ProposeError::Unknown { .. } => SubmitError::OutcomeUnknown(e.to_string()),
        ProposeError::Stopped { .. } => SubmitError::Stopped,
    }
}

/// Takes commands off a shard's queue in batches and proposes them, at most
/// `inflight_max` batches at a time.
async fn batcher(
    group: Arc<RwLock<Proposer>>,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    inflight_max: usize,
) {
    let slots = Arc::new(Semaphore::new(inflight_max));
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    loop {
        // Wait for a free slot first, so commands queue (and batch up) meanwhile.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut jobs, batch_max).await == 0 {
            return;
        }
        let taken = std::mem::replace(&mut jobs, Vec::with_capacity(batch_max));
        // The replica may have opened or closed since the last batch.
        let group = group.read().unwrap_or_else(PoisonError::into_inner).clone();
        tokio::spawn(async move {
            propose_jobs(&group, taken).await;
            drop(slot);
        });
    }
}

async fn propose_jobs(group: &Proposer, jobs: Vec<Job>) {
    let mut inputs = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for j in jobs {
        inputs.push(Input::Command {
            meta: j.meta,
            command: j.command,
        });
        replies.push(j.reply);
    }
    let batch = match Batch::new(inputs) {
        Ok(b) => b,
        Err(e) => {
            for r in replies {
                r(Err(SubmitError::Unavailable(format!("batch refused: {e}"))));
            }
            return;
        }
    };
    match group.propose(batch).await {
        Ok(response) => {
            let first = response.first_input;
            let mut by_input: Vec<Vec<EventRecord>> = vec![Vec::new(); replies.len()];
            for e in response.events {
                if let Some(k) = e.input.checked_sub(first) {
                    if let Some(v) = by_input.get_mut(k as usize) {
                        v.push(e);
                    }
                }
            }
            for (k, (reply, events)) in replies.into_iter().zip(by_input).enumerate() {
                match response.results.get(k) {
                    Some(Applied::Command(outcome)) => reply(Ok(CommandReply {
                        outcome: *outcome,
                        events,
                    })),
                    other => panic!("command answered {other:?}"),
                }
            }
        }
        Err(e) => {
            let e = submit_error(e);
            for r in replies {
                r(Err(e.clone()));
            }
        }
    }
}

impl ShardHost for ClusterNode {
    fn shard_count(&self) -> u32 {
        self.shard_count_u32()
    }

    fn shard_slots(&self) -> u32 {
        self.groups.len() as u32
    }

    fn queued_commands(&self) -> u64 {
        self.groups
            .iter()
            .map(|g| (g.queue.max_capacity() - g.queue.capacity()) as u64)
            .sum()
    }

    fn placement(&self) -> Arc<Placement> {
        self.current_placement()
    }

    fn submit(&self, meta: Meta, command: Command, reply: Reply) {
        if self.stopped.load(Ordering::Acquire) {
            return reply(Err(SubmitError::Stopped));
        }
        self.submit_routed(meta, command, reply, 0);
    }

    fn read_with(&self, shard: ShardId, f: EngineRead) {
        let handle = match self.local(shard) {
            Ok(h) => h,
            Err(e) => return f(Err(e)),
        };
        self.runtime.spawn(async move {
            if let Err(e) = handle.read_barrier().await {
                return f(Err(submit_error(e)));
            }
            // If the replica stopped meanwhile, `f` is dropped unanswered: its caller sees
            // its channel close.
            let _ = handle.read_local(move |e| f(Ok(e))).await;
        });
    }

    fn read_stale(&self, shard: ShardId, f: EngineRead) {
        let handle = match self.local(shard) {
            Ok(h) => h,
            Err(e) => return f(Err(e)),
        };
        self.runtime.spawn(async move {
            // No read barrier: this replica's state as it applied it, leader or not.
            let _ = handle.read_local(move |e| f(Ok(e))).await;
        });
    }

    fn check_hosted(&self, shard: ShardId) -> Result<(), SubmitError> {
        self.local(shard).map(|_| ())
    }

    fn subscribe(&self) -> Receiver<Arc<[EventRecord]>> {
        let (tx, rx) = bounded(SUBSCRIBER_QUEUE_LEN_MAX);
        self.subscribers.lock().expect("subscribers lock").push(tx);
        rx
    }

    fn stop(&self) {
        let rt = self.runtime.clone();
        rt.block_on(self.shutdown());
    }
}

/// How many times one command answered `WrongShard` is sent again
/// (a command sent to a shard that split it off meanwhile); each time the map must route
/// it elsewhere.
pub const WRONG_SHARD_RESENDS_MAX: u32 = 4;

/// Longest a command answered `WrongShard` waits for this node's map to route it elsewhere
/// before the rejection goes to the caller (ms).
pub const WRONG_SHARD_WAIT_MS: u64 = 5_000;

impl ClusterNode {
    /// Where `command` goes by this node's map now.
    fn route_of(&self, command: &Command) -> Route {
        let placement = self.current_placement();
        let markets = self.markets.read().expect("markets lock");
        route(command, &placement, &markets)
    }

    /// Sends `command` to the shard this node's map routes it to (every shard, for a
    /// catalog command); `resends` counts the times it was answered `WrongShard` before.
    fn submit_routed(&self, meta: Meta, command: Command, reply: Reply, resends: u32) {
        match self.route_of(&command) {
            Route::Shard(s) => {
                let reply = if resends < WRONG_SHARD_RESENDS_MAX {
                    self.resend_if_moved(s, meta, command.clone(), reply, resends)
                } else {
                    reply
                };
                self.enqueue(s, meta, command, reply)
            }
            Route::All => {
                let parts = catalog_replies(self.shard_count(), &command, &self.markets, reply);
                for (s, part) in parts.into_iter().enumerate() {
                    self.enqueue(ShardId(s as u32), meta, command.clone(), part);
                }
            }
        }
    }

    /// `reply`, except that a `WrongShard` answer from shard `s` (its account or market
    /// was split off after this node routed the command, and the shard applied nothing)
    /// sends the command again once this node's map routes it elsewhere: the map records
    /// a split before the parent applies it, so it arrives within the map's replication
    /// lag. If the map does not move it within [`WRONG_SHARD_WAIT_MS`], the caller gets
    /// the rejection.
    fn resend_if_moved(
        &self,
        s: ShardId,
        meta: Meta,
        command: Command,
        reply: Reply,
        resends: u32,
    ) -> Reply {
        let me = self.me.clone();
        Box::new(move |r: Result<CommandReply, SubmitError>| {
            let moved = matches!(
                &r,
                Ok(CommandReply {
                    outcome: Outcome { result: Err(rej), .. },
                    ..
                }) if rej.code == RejectCode::WrongShard
            );
            let node = match me.upgrade() {
                Some(node) if moved => node,
                _ => return reply(r),
            };
            let runtime = node.runtime.clone();
            runtime.spawn(async move {
                let mut map = node.meta.map.clone();
                let wait = Duration::from_millis(WRONG_SHARD_WAIT_MS);
                let elsewhere = tokio::time::timeout(wait, async {
                    loop {
                        if node.route_of(&command) != Route::Shard(s) {
                            return true;
                        }
                        if map.changed().await.is_err() {
                            return false;
                        }
                    }
                })
                .await;
                if elsewhere == Ok(true) && !node.stopped.load(Ordering::Acquire) {
                    tracing::debug!(shard = %s, "sending a command again: its shard was split");
                    node.submit_routed(meta, command, reply, resends + 1);
                } else {
                    reply(r);
                }
            });
        })
    }

    /// This node's replica of `shard` for a read, or why there is none.
    fn local(&self, shard: ShardId) -> Result<GroupHandle, SubmitError> {
        let Some(g) = self.groups.get(shard.0 as usize) else {
            return Err(SubmitError::Stopped);
        };
        match g.replica() {
            None => Err(SubmitError::WrongNode {
                shard,
                map_version: self.map().version,
            }),
            Some(r) => Ok(r.handle.clone()),
        }
    }
}

/// The voters of every shard as this node sees them (for checks; empty for a shard it
/// holds no replica of).
pub fn voters(node: &ClusterNode) -> Vec<BTreeSet<NodeId>> {
    node.groups
        .iter()
        .take(node.shard_count_u32() as usize)
        .map(|g| {
            g.replica()
                .map(|r| r.handle.raft().voter_ids().collect())
                .unwrap_or_default()
        })
        .collect()
}
