//! Seeded deterministic simulation of tradelog Raft groups (turmoil): 3- and 5-node
//! clusters, one or two shard groups, a transfer and order workload, and faults drawn from
//! the seed (partitions, flapping links that lose messages, latency spikes, crashes that
//! lose everything not yet durable, on a disk whose flushes take [`FLUSH_MS`], restarts,
//! and a group's leader crashed and back within the election timeout); and 4-node
//! clusters whose groups of three
//! move their replicas from node to node by the reconciler's `next_step` meanwhile.
//!
//! Every node is the real stack: [`ShardLogStore`] (over the storage crate's `MemLog`,
//! flushing on a task), [`ShardStateMachine`] (the engine, snapshot I/O inline) and the
//! tonic transport ([`PeerChannels`] / [`RaftRouter`]) over turmoil's TCP. openraft's
//! randomness comes from the seed ([`seed_thread_rng`]). See
//! `docs/design/0010-simulation.md`.
//!
//! Checked: replicas never diverge (one log id per applied index, one state hash per
//! applied log id, over samples taken during the run and at the end), every acknowledged
//! write is in the final committed log with the results it was acknowledged with, the
//! final state of every replica equals a reference engine's replay of that log, and the
//! engine's `validate()` holds. A failing seed prints how to replay it.
//!
//! `TRADELOG_SIM_SEEDS=n` runs `n` seeds per cluster size (default 3);
//! `TRADELOG_SIM_SEED=s` runs only seed `s`.

use hyper_util::rt::TokioIo;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::entry::RaftEntry;
use openraft::{BasicNode, Raft};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::Uri;
use tradelog_domain::{ShardId, Timestamp};
use tradelog_engine::{Applied, Engine, Placement};
use tradelog_raft::{
    decode_entry, local_destinations, pump, seed_thread_rng, Batch, EntryPayload, FlushMode,
    GroupHandle, GroupNetwork, LogId, LogStoreConfig, NodeId, PeerChannels, RaftRouter,
    ShardLogStore, ShardRaft, ShardStateMachine,
};
use tradelog_storage::{ChainHash, LogStore, MemLog, Record, StorageError};

/// The port every simulated node serves its Raft transport on.
const PORT: u16 = 7000;
/// Batches of the workload per group, and inputs per batch.
const BATCHES: u64 = 24;
const PER_BATCH: u64 = 6;
/// How long a client waits for one write (simulated ms).
const WRITE_TIMEOUT_MS: u64 = 3_000;
/// How long the healed cluster has to converge (simulated ms).
const CONVERGE_MS: u64 = 60_000;

// ---------------------------------------------------------------------------------------
// Storage that survives a simulated crash: a MemLog behind a shared handle.

/// A node's log of one group: the storage crate's `MemLog`, shared between the store that
/// a (re)started node opens and the harness, which crashes it (losing what was not synced)
/// while the node is down and reads every record at the end.
#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<MemLog>>);

impl SharedLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemLog> {
        self.0.lock().expect("log poisoned")
    }

    /// A power loss: only `keep` of the records that were not synced survive.
    fn crash(&self, keep: u64) {
        let mut log = self.lock();
        let old = std::mem::take(&mut *log);
        *log = old.crash_keeping(keep);
    }

    fn unsynced(&self) -> u64 {
        let log = self.lock();
        log.last_index() - log.durable_index()
    }

    /// Archived records (moved out by a purge or a log restart) that are not the
    /// committed entry at their index: history the archive keeps but Raft discarded.
    fn archived_not_in(
        &self,
        group: u32,
        committed: &BTreeMap<(u32, u64), (LogId, EntryPayload)>,
    ) -> u64 {
        let log = self.lock();
        log.archived()
            .iter()
            .filter(|r| {
                let id = decode_entry(&r.payload)
                    .expect("a stored entry decodes")
                    .log_id();
                committed
                    .get(&(group, r.index - 1))
                    .is_some_and(|(c, _)| *c != id)
            })
            .count() as u64
    }

    /// Every archived entry, as (index, log id, payload).
    fn archived_entries(&self) -> Vec<(u64, LogId, EntryPayload)> {
        let log = self.lock();
        log.archived()
            .iter()
            .map(|r| {
                let e = decode_entry(&r.payload).expect("a stored entry decodes");
                (r.index - 1, e.log_id(), e.payload)
            })
            .collect()
    }

    /// The live records holding Raft indexes `from..=to` (those still in the log).
    fn live(&self, from: u64, to: u64) -> Vec<Record> {
        let log = self.lock();
        let first = (from + 1).max(log.first_index());
        let last = (to + 1).min(log.last_index());
        if first > last {
            return Vec::new();
        }
        log.read(first, (last - first + 1) as usize)
            .expect("a MemLog reads its live records")
    }
}

impl LogStore for SharedLog {
    fn append(&mut self, entries: &[&[u8]]) -> Result<Range<u64>, StorageError> {
        self.lock().append(entries)
    }
    fn sync(&mut self) -> Result<u64, StorageError> {
        self.lock().sync()
    }
    fn read(&self, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        self.lock().read(from, max)
    }
    fn first_index(&self) -> u64 {
        self.lock().first_index()
    }
    fn last_index(&self) -> u64 {
        self.lock().last_index()
    }
    fn durable_index(&self) -> u64 {
        self.lock().durable_index()
    }
    fn chain_hash(&self, index: u64) -> Result<ChainHash, StorageError> {
        self.lock().chain_hash(index)
    }
    fn truncate_after(&mut self, index: u64) -> Result<(), StorageError> {
        self.lock().truncate_after(index)
    }
    fn archive_before(&mut self, index: u64) -> Result<u64, StorageError> {
        self.lock().archive_before(index)
    }
    fn reset_to(&mut self, index: u64, chain_hash: ChainHash) -> Result<(), StorageError> {
        self.lock().reset_to(index, chain_hash)
    }
}

// ---------------------------------------------------------------------------------------
// The transport over turmoil's TCP: the real tonic client and server, other sockets.

/// Connects tonic channels with turmoil's TCP.
///
/// turmoil 0.7.2 never releases the port of a connection attempt that fails or is
/// abandoned (the peer is down or partitioned away), and tonic tries again on every
/// call, so a node would run out of ports within simulated seconds. The connector lets
/// at most one attempt per peer start every [`CONNECT_SPACING_MS`]; the others fail
/// when that time is up, as a connection attempt that timed out would (failing at once,
/// in no simulated time, would let the callers retry forever without time advancing).
#[derive(Clone, Default)]
struct SimConnector {
    last_attempt: Arc<Mutex<BTreeMap<String, tokio::time::Instant>>>,
}

/// Least simulated time between two connection attempts to one peer (ms).
const CONNECT_SPACING_MS: u64 = 250;

impl tower_service::Service<Uri> for SimConnector {
    type Response = TokioIo<turmoil::net::TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(PORT);
        let now = tokio::time::Instant::now();
        let too_soon = {
            let mut last = self.last_attempt.lock().expect("poisoned");
            let spacing = Duration::from_millis(CONNECT_SPACING_MS);
            match last.get(&host) {
                Some(t) if now.duration_since(*t) < spacing => Some(*t + spacing),
                _ => {
                    last.insert(host.clone(), now);
                    None
                }
            }
        };
        Box::pin(async move {
            if let Some(until) = too_soon {
                tokio::time::sleep_until(until).await;
                return Err(io::Error::new(io::ErrorKind::TimedOut, host));
            }
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// An accepted turmoil connection, as tonic's server wants it.
struct SimStream(turmoil::net::TcpStream);

impl Connected for SimStream {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn host(node: NodeId) -> String {
    format!("n{node}")
}

fn addr(node: NodeId) -> String {
    format!("http://{}:{PORT}", host(node))
}

// ---------------------------------------------------------------------------------------
// The simulated world.

/// One simulation's parameters, all derived from the seed and the cluster size.
#[derive(Clone, Debug)]
struct Params {
    seed: u64,
    nodes: u64,
    /// The groups' first voters: nodes `1..=voters` (the others start with no replica).
    voters: u64,
    groups: u32,
    /// Mean simulated ms between two faults.
    fault_every_ms: u64,
    /// Move each group's replicas between the nodes while the faults go on.
    moves: bool,
}

impl Params {
    fn new(seed: u64, nodes: u64) -> Params {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_9a2a);
        Params {
            seed,
            nodes,
            voters: nodes,
            // Two groups (cross-shard messages between them) two times in three.
            groups: rng.random_range(1..=3u32).min(2),
            fault_every_ms: rng.random_range(300..1_500),
            moves: false,
        }
    }

    /// Groups of three voters on four nodes, their replicas moved from node to node.
    fn moving(seed: u64) -> Params {
        Params {
            voters: 3,
            moves: true,
            ..Params::new(seed, 4)
        }
    }
}

/// An acknowledged write.
#[derive(Clone, Debug)]
struct Ack {
    group: u32,
    log_id: LogId,
    results: Vec<Applied>,
}

/// What the harness shares with the simulated hosts and clients.
#[derive(Default)]
struct Shared {
    /// Live Raft handles, by (node, group); removed when a node crashes.
    rafts: BTreeMap<(NodeId, u32), ShardRaft>,
    /// Every node's logs; they outlive crashes.
    logs: BTreeMap<(NodeId, u32), SharedLog>,
    /// Groups initialised (on node 1's first start).
    initialized: bool,
    acks: Vec<Ack>,
    /// Sampled applied log ids, by (group, index), and state hashes, by (group, log id).
    applied_at: BTreeMap<(u32, u64), LogId>,
    hash_at: BTreeMap<(u32, LogId), [u8; 32]>,
    /// Applied (hence committed) entries read from the replicas' logs, by (group, index).
    committed: BTreeMap<(u32, u64), (LogId, EntryPayload)>,
    /// Archived records that are not the committed entry at their index (information).
    stale_archived: u64,
    /// The run's trace (for the determinism check).
    trace: Vec<u8>,
    violations: Vec<String>,
    /// The workload is done: the harness heals the cluster and stops injecting faults.
    heal: bool,
    /// Cross-shard messages the groups applied from each other by the end.
    cross_shard_messages: u64,
    /// Membership steps the mover completed, and moves (target reached) it finished.
    move_steps: u64,
    moves_done: u64,
    /// The mover finished its last moves after healing (or there is none).
    mover_done: bool,
}

type World = Arc<Mutex<Shared>>;

fn lock(world: &World) -> std::sync::MutexGuard<'_, Shared> {
    world.lock().expect("world poisoned")
}

fn raft_config() -> Arc<openraft::Config> {
    let mut c = tradelog_raft::raft_config("sim").expect("config");
    // Snapshots, log purges and snapshot installs on lagging replicas happen within a run.
    c.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(8);
    c.max_in_snapshot_log_to_keep = 4;
    c.snapshot_max_chunk_size = 4096;
    Arc::new(c.validate().expect("valid config"))
}

/// How long a flush of a node's log takes (simulated ms).
const FLUSH_MS: u64 = 4;

/// How often a leader's pump looks for messages to deliver (simulated ms).
const PUMP_INTERVAL_MS: u64 = 20;

/// Simulated time as a leader timestamp (deterministic, unlike the wall clock).
fn sim_now() -> Timestamp {
    let t = turmoil::sim_elapsed().unwrap_or_default();
    Timestamp(1_000_000_000 + t.as_nanos() as u64)
}

/// The software of node `id`: opens its groups over its surviving logs and directories,
/// initialises the groups on the very first start of node 1, and serves the transport.
async fn node_main(
    id: NodeId,
    params: Params,
    root: PathBuf,
    world: World,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    let connector = SimConnector::default();
    let peers = PeerChannels::with_connector(move |endpoint| {
        endpoint.connect_with_connector_lazy(connector.clone())
    });
    let router = RaftRouter::new();
    let config = raft_config();
    let members: BTreeMap<NodeId, BasicNode> = (1..=params.voters)
        .map(|n| (n, BasicNode::new(addr(n))))
        .collect();
    for g in 0..params.groups {
        let dir = root.join(format!("node-{id}")).join(format!("group-{g}"));
        let log = lock(&world).logs.entry((id, g)).or_default().clone();
        let store = ShardLogStore::with_log(
            &dir,
            log,
            LogStoreConfig {
                flush: FlushMode::Task,
                // A disk that takes a while: a leader's own write of an entry may finish
                // after its followers acknowledged it, so a crash can lose an entry a
                // majority holds.
                flush_delay: Duration::from_millis(FLUSH_MS),
                ..LogStoreConfig::default()
            },
        )?;
        let sm = ShardStateMachine::open(&dir, ShardId(g), Placement::new(params.groups))?
            .with_inline_io();
        let net = GroupNetwork::new(ShardId(g), id, peers.clone());
        let raft = Raft::new(id, config.clone(), net, store, sm).await?;
        router.add(ShardId(g), raft.clone());
        lock(&world).rafts.insert((id, g), raft);
    }
    // Every node runs the real leader's pump of every group (it acts only where this node
    // leads): cross-shard messages go from a group's log to another's as proposals,
    // stamped with simulated time.
    let handles: Vec<GroupHandle> = (0..params.groups)
        .map(|g| {
            GroupHandle::new(
                ShardId(g),
                lock(&world).rafts[&(id, g)].clone(),
                peers.clone(),
            )
        })
        .collect();
    let destinations = local_destinations(handles.clone());
    for h in &handles {
        tokio::spawn(pump(
            h.clone(),
            destinations.clone(),
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
            sim_now,
            PUMP_INTERVAL_MS,
        ));
    }
    let first_start = id == 1 && !lock(&world).initialized;
    if first_start {
        for g in 0..params.groups {
            let raft = lock(&world).rafts[&(id, g)].clone();
            raft.initialize(members.clone()).await?;
        }
        lock(&world).initialized = true;
    }
    let incoming = futures_util::stream::unfold(listener, |listener| async move {
        let next = listener.accept().await.map(|(s, _)| SimStream(s));
        Some((next, listener))
    });
    tonic::transport::Server::builder()
        .add_service(router.service())
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

fn leader_of(world: &World, group: u32) -> Option<(NodeId, ShardRaft)> {
    let w = lock(world);
    w.rafts
        .iter()
        .filter(|((_, g), _)| *g == group)
        .find(|(_, r)| r.metrics().borrow_watched().state.is_leader())
        .map(|((n, _), r)| (*n, r.clone()))
}

/// What one replica's state machine says.
async fn inspect(raft: &ShardRaft) -> Option<(Option<LogId>, [u8; 32], Result<(), String>)> {
    let ask = raft.with_state_machine(|sm: &mut ShardStateMachine| {
        Box::pin(async move {
            (
                sm.applied(),
                sm.state_hash(),
                sm.engine().validate().map_err(|v| format!("{v:?}")),
            )
        })
    });
    match tokio::time::timeout(Duration::from_millis(1_000), ask).await {
        Ok(Ok(state)) => Some(state),
        _ => None,
    }
}

/// Records a sample of one replica and checks it against every earlier sample: the
/// applied entries still in its log (the same on every replica), the applied log id at its
/// index and the state hash at that log id.
fn observe(w: &mut Shared, node: NodeId, group: u32, applied: LogId, hash: [u8; 32]) {
    // Live logs are short (snapshots every few entries, then purged): read all of it.
    let records = w.logs[&(node, group)].live(0, applied.index);
    for r in records {
        let entry = decode_entry(&r.payload).expect("a stored entry decodes");
        let index = r.index - 1;
        match w.committed.get(&(group, index)) {
            Some((id, _)) if *id != entry.log_id() => {
                let id = *id;
                w.violations.push(format!(
                    "group {group}: node {node} applied {} at index {index}, another replica {id}",
                    entry.log_id()
                ));
            }
            Some(_) => {}
            None => {
                w.committed
                    .insert((group, index), (entry.log_id(), entry.payload));
            }
        }
    }
    if let Some(prev) = w.applied_at.insert((group, applied.index), applied) {
        if prev != applied {
            w.violations.push(format!(
                "group {group}: node {node} applied {applied} at index {} where another replica applied {prev}",
                applied.index
            ));
        }
    }
    if let Some(prev) = w.hash_at.insert((group, applied), hash) {
        if prev != hash {
            w.violations.push(format!(
                "group {group}: node {node} has state hash {} after {applied}, another replica {}",
                tradelog_codec::hex(&hash),
                tradelog_codec::hex(&prev)
            ));
        }
    }
}

/// Samples every live replica every 50 simulated ms until the run ends.
async fn sampler(world: World) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rafts: Vec<((NodeId, u32), ShardRaft)> = lock(&world)
            .rafts
            .iter()
            .map(|(k, r)| (*k, r.clone()))
            .collect();
        for ((node, group), raft) in rafts {
            if let Some((Some(applied), hash, valid)) = inspect(&raft).await {
                let mut w = lock(&world);
                observe(&mut w, node, group, applied, hash);
                if let Err(v) = valid {
                    w.violations.push(format!("group {group} node {node}: {v}"));
                }
            }
        }
    }
}

/// The client: writes the workload of every group through its current leader, then asks
/// for healing and checks the converged cluster.
async fn client_main(params: Params, world: World) -> Result<(), Box<dyn std::error::Error>> {
    tokio::spawn(sampler(world.clone()));
    if params.moves {
        tokio::spawn(mover(params.clone(), world.clone()));
    }
    let workloads = tradelog_engine::testing::sharded_workload(params.groups, BATCHES, PER_BATCH);
    let mut rng = StdRng::seed_from_u64(params.seed ^ 0xc11e_4700);
    let mut next: Vec<usize> = vec![0; params.groups as usize];
    while next.iter().zip(&workloads).any(|(&k, w)| k < w.len()) {
        // Paced, so that the workload meets the faults (about 10 simulated seconds).
        let pause = rng.random_range(20..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let group = rng.random_range(0..params.groups);
        let k = next[group as usize];
        let workload = &workloads[group as usize];
        if k >= workload.len() {
            continue;
        }
        let Some((_, leader)) = leader_of(&world, group) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let batch = Batch::new(workload[k].clone())?;
        let write = leader.client_write(batch);
        match tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), write).await {
            Ok(Ok(resp)) => {
                let ack = Ack {
                    group,
                    log_id: resp.log_id,
                    results: resp.data.results,
                };
                let at_ms = turmoil::elapsed().as_millis() as u64;
                let mut w = lock(&world);
                w.trace.extend(tradelog_codec::encode(&(
                    at_ms,
                    group,
                    ack.log_id,
                    &ack.results,
                )));
                w.acks.push(ack);
                next[group as usize] += 1;
            }
            // Not the leader (any more), or the outcome is unknown: the batch may or may
            // not commit. Either way the workload moves on; the checks use the log.
            Ok(Err(_)) | Err(_) => {
                next[group as usize] += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    lock(&world).heal = true;
    converge(&params, &world).await;
    Ok(())
}

/// A learner this close to its leader's last log entry is promoted (as the reconciler's
/// `CATCH_UP_LAG_ENTRIES_MAX`).
const CATCH_UP_LAG_ENTRIES_MAX: u64 = 64;

/// Moves every group's replicas while the workload and the faults go on, as the
/// reconciler on a shard's leader does (docs/design/0013): a target of `voters` nodes
/// drawn from the seed, then `tradelog_placement::next_step` on the group's leader, one
/// committed membership change (or leadership transfer) at a time, until the group is
/// settled on the target; then the next target. A joint configuration a crashed leader
/// left behind is finished first. Stops when the harness heals the cluster.
async fn mover(params: Params, world: World) {
    use tradelog_placement::{next_step, settled, Replicas, Step};
    let mut rng = StdRng::seed_from_u64(params.seed ^ 0x0000_6d0f_e000);
    let draw = |rng: &mut StdRng| -> BTreeSet<NodeId> {
        let mut all: Vec<NodeId> = (1..=params.nodes).collect();
        while all.len() as u64 > params.voters {
            all.remove(rng.random_range(0..all.len()));
        }
        all.into_iter().collect()
    };
    let mut targets: Vec<BTreeSet<NodeId>> = (0..params.groups).map(|_| draw(&mut rng)).collect();
    // Whether a step towards the group's current target was taken (a target drawn equal
    // to where the group is counts as no move).
    let mut stepped: Vec<bool> = vec![false; params.groups as usize];
    let step_timeout = Duration::from_millis(WRITE_TIMEOUT_MS);
    // Once the harness heals the cluster, each group finishes the move under way (no new
    // target is drawn); then the mover stops, and the final checks begin.
    let mut finished: Vec<bool> = vec![false; params.groups as usize];
    loop {
        let heal = lock(&world).heal;
        if heal && finished.iter().all(|f| *f) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
        let g = rng.random_range(0..params.groups);
        if finished[g as usize] {
            continue;
        }
        let Some((me, raft)) = leader_of(&world, g) else {
            continue;
        };
        let m = raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership().clone();
        let joint = membership.get_joint_config().len() > 1;
        let now = Replicas {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            leader: Some(me),
        };
        let target = &targets[g as usize];
        if !joint && settled(target, &now) {
            if std::mem::take(&mut stepped[g as usize]) {
                lock(&world).moves_done += 1;
            }
            if heal {
                finished[g as usize] = true;
            } else {
                targets[g as usize] = draw(&mut rng);
            }
            continue;
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
        let step = if joint {
            None
        } else {
            match next_step(me, target, &now, &caught_up) {
                Some(step) => Some(step),
                None => continue,
            }
        };
        let (kind, node) = match step {
            None => (0u32, 0),
            Some(Step::AddLearner(n)) => (1, n),
            Some(Step::Promote(n)) => (2, n),
            Some(Step::Remove(n)) => (3, n),
            Some(Step::TransferLeader(n)) => (4, n),
        };
        let done = match step {
            None => {
                let last = membership
                    .get_joint_config()
                    .last()
                    .cloned()
                    .unwrap_or_default();
                tokio::time::timeout(step_timeout, raft.change_membership(last, false))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            Some(Step::AddLearner(n)) => tokio::time::timeout(
                step_timeout,
                raft.add_learner(n, BasicNode::new(addr(n)), false),
            )
            .await
            .is_ok_and(|r| r.is_ok()),
            Some(Step::Promote(n)) => {
                let mut voters = now.voters.clone();
                voters.insert(n);
                tokio::time::timeout(step_timeout, raft.change_membership(voters, false))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            Some(Step::Remove(n)) if now.learners.contains(&n) => {
                let remove = openraft::ChangeMembers::RemoveNodes([n].into());
                tokio::time::timeout(step_timeout, raft.change_membership(remove, false))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            Some(Step::Remove(n)) => {
                let mut voters = now.voters.clone();
                voters.remove(&n);
                tokio::time::timeout(step_timeout, raft.change_membership(voters, false))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            Some(Step::TransferLeader(to)) => {
                tokio::time::timeout(step_timeout, raft.trigger().transfer_leader(to))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
        };
        let at_ms = turmoil::elapsed().as_millis() as u64;
        let mut w = lock(&world);
        w.trace
            .extend(tradelog_codec::encode(&(at_ms, g, me, kind, node, done)));
        if done {
            w.move_steps += 1;
            stepped[g as usize] = true;
        }
    }
    lock(&world).mover_done = true;
}

/// Waits until every replica of every group is up and has applied the same entry as its
/// leader's last committed one, then runs the final checks.
async fn converge(params: &Params, world: &World) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CONVERGE_MS);
    // The moves under way finish first (with nothing failing any more, they must).
    while params.moves && !lock(world).mover_done {
        if tokio::time::Instant::now() > deadline {
            lock(world)
                .violations
                .push("moves under way did not finish after healing".into());
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then every cross-shard message is delivered and acknowledged: every group's leader
    // has an empty outbox (nothing new arises once the client stopped).
    loop {
        if tokio::time::Instant::now() > deadline {
            lock(world)
                .violations
                .push("cross-shard messages still in flight after healing".into());
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut quiet = true;
        for g in 0..params.groups {
            let Some((_, leader)) = leader_of(world, g) else {
                quiet = false;
                break;
            };
            let ask = leader.with_state_machine(|sm: &mut ShardStateMachine| {
                let empty = sm.engine().outbox_destinations().is_empty();
                Box::pin(async move { empty })
            });
            let empty = tokio::time::timeout(Duration::from_millis(1_000), ask).await;
            quiet &= matches!(empty, Ok(Ok(true)));
        }
        if quiet {
            break;
        }
    }
    let mut engines = Vec::new();
    for g in 0..params.groups {
        loop {
            if tokio::time::Instant::now() > deadline {
                lock(world)
                    .violations
                    .push(format!("group {g} did not converge after healing"));
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Some((_, leader)) = leader_of(world, g) else {
                continue;
            };
            let (committed, members): (_, Vec<NodeId>) = {
                let m = leader.metrics().borrow_watched().clone();
                let members = m
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(n, _)| *n)
                    .collect();
                (m.local_committed, members)
            };
            // The group's members (voters and learners): a node a move took out keeps
            // what it applied until then, which the samples checked.
            let rafts: Vec<ShardRaft> = {
                let w = lock(world);
                members
                    .iter()
                    .filter_map(|n| w.rafts.get(&(*n, g)).cloned())
                    .collect()
            };
            if rafts.len() != members.len() || committed.is_none() {
                continue;
            }
            let mut states = Vec::new();
            for r in &rafts {
                states.push(inspect(r).await);
            }
            if states
                .iter()
                .all(|s| s.as_ref().is_some_and(|(a, _, _)| *a == committed))
            {
                let mut w = lock(world);
                for (n, s) in members.iter().copied().zip(states) {
                    let (applied, hash, valid) = s.expect("checked");
                    let applied = applied.expect("checked");
                    observe(&mut w, n, g, applied, hash);
                    if let Err(v) = valid {
                        w.violations.push(format!("group {g} node {n}: {v}"));
                    }
                    w.trace
                        .extend(tradelog_codec::encode(&(n, g, applied, hash)));
                }
                drop(w);
                engines.push(check_group(params, world, g, committed.expect("checked")));
                break;
            }
        }
    }
    // Across the groups, with nothing in flight: money conserved per asset, what one
    // shard sent is what the others received, every order's hold mirrored by its book.
    let mut w = lock(world);
    if let Err(v) = tradelog_engine::cluster::validate_quiescent(&engines) {
        w.violations.push(format!("across the groups: {v:?}"));
    }
    let delivered: u64 = engines
        .iter()
        .flat_map(|e| (0..params.groups).map(move |f| e.inbox_applied(ShardId(f))))
        .sum();
    w.cross_shard_messages = delivered;
    w.trace.extend(tradelog_codec::encode(&delivered));
}

/// The final checks of one group: every ack is in the committed log (as the replicas
/// applied it) with the results it was acknowledged with, and replaying that log gives the
/// state every replica has.
fn check_group(params: &Params, world: &World, g: u32, committed: LogId) -> Engine {
    let mut w = lock(world);
    // An entry committed and purged between two samples was never seen live; the archives
    // keep it. Of the entries any replica ever held at an index, the committed one has the
    // highest log id (a later leader holds it, so no higher term ever wrote that index; the
    // others were truncated).
    let mut archived: BTreeMap<u64, (LogId, EntryPayload)> = BTreeMap::new();
    for n in 1..=params.nodes {
        for (index, id, payload) in w.logs[&(n, g)].archived_entries() {
            if archived.get(&index).is_none_or(|(have, _)| *have < id) {
                archived.insert(index, (id, payload));
            }
        }
    }
    for (index, e) in archived {
        if index <= committed.index {
            w.committed.entry((g, index)).or_insert(e);
        }
    }
    let log: BTreeMap<u64, (LogId, EntryPayload)> = w
        .committed
        .range((g, 0)..=(g, committed.index))
        .map(|((_, i), e)| (*i, e.clone()))
        .collect();
    let mut violations = Vec::new();
    let mut engine = Engine::new(ShardId(g), Placement::new(params.groups));
    let mut results: BTreeMap<u64, Vec<Applied>> = BTreeMap::new();
    let mut events = Vec::new();
    for index in 0..=committed.index {
        let Some((_, payload)) = log.get(&index) else {
            violations.push(format!(
                "group {g}: applied index {index} was never seen in a replica's log"
            ));
            break;
        };
        if let EntryPayload::Normal(batch) = payload {
            let mut r = Vec::new();
            engine.apply_batch(&batch.inputs, &mut events, &mut r);
            events.clear();
            results.insert(index, r);
        }
    }
    if log.get(&committed.index).map(|(id, _)| *id) != Some(committed) {
        violations.push(format!("group {g}: the log does not end at {committed}"));
    }
    for ack in w.acks.iter().filter(|a| a.group == g) {
        let at = ack.log_id.index;
        match log.get(&at) {
            Some((id, _)) if *id == ack.log_id && at <= committed.index => {
                if results.get(&at) != Some(&ack.results) {
                    violations.push(format!(
                        "group {g}: acknowledged write {} has other results in the log",
                        ack.log_id
                    ));
                }
            }
            other => violations.push(format!(
                "group {g}: acknowledged write {} lost (the committed log has {:?})",
                ack.log_id,
                other.map(|(id, _)| id)
            )),
        }
    }
    let reference = engine.state_hash();
    if let Some(hash) = w.hash_at.get(&(g, committed)) {
        if *hash != reference {
            violations.push(format!(
                "group {g}: replicas hold state {} at {committed}, the replayed log gives {}",
                tradelog_codec::hex(hash),
                tradelog_codec::hex(&reference)
            ));
        }
    }
    if let Err(v) = engine.validate() {
        violations.push(format!("group {g}: replayed engine: {v:?}"));
    }
    w.trace.extend(reference);
    w.violations.extend(violations);
    let stale: u64 = (1..=params.nodes)
        .map(|n| w.logs[&(n, g)].archived_not_in(g, &w.committed))
        .sum();
    w.stale_archived += stale;
    engine
}

/// What one run produced.
struct Outcome {
    trace: [u8; 32],
    cross_shard_messages: u64,
    move_steps: u64,
    moves_done: u64,
    acks: usize,
    crashes: u32,
    stale_archived: u64,
    violations: Vec<String>,
}

/// A fault the harness undoes later.
enum Pending {
    Restart(NodeId),
    Repair(NodeId),
    Link(NodeId, NodeId),
}

/// Crashes `node`: its software stops and its logs lose what was not synced, except for a
/// random part of it (the kernel may have written some).
fn crash(sim: &mut turmoil::Sim, world: &World, rng: &mut StdRng, node: NodeId) {
    let mut w = lock(world);
    w.rafts.retain(|(n, _), _| *n != node);
    for (_, log) in w.logs.iter().filter(|((n, _), _)| *n == node) {
        let lost = log.unsynced();
        log.crash(rng.random_range(0..=lost));
    }
    drop(w);
    sim.crash(host(node));
}

/// Runs one seeded simulation.
fn simulate(params: &Params) -> Outcome {
    if !cfg!(tokio_unstable) {
        panic!(
            "the simulation is deterministic only when tokio is built with `--cfg tokio_unstable` \
             (set in .cargo/config.toml; a RUSTFLAGS environment variable overrides it)"
        );
    }
    seed_thread_rng(Some(params.seed));
    let root = tempfile::tempdir().expect("tempdir");
    let world: World = Arc::default();
    let mut sim = turmoil::Builder::new()
        .rng_seed(params.seed)
        .simulation_duration(Duration::from_secs(600))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(15))
        .tcp_capacity(1 << 16)
        .build();
    for id in 1..=params.nodes {
        let (p, r, w) = (params.clone(), root.path().to_path_buf(), world.clone());
        sim.host(host(id), move || {
            node_main(id, p.clone(), r.clone(), w.clone())
        });
    }
    {
        let (p, w) = (params.clone(), world.clone());
        sim.client("client", client_main(p, w));
    }
    let mut rng = StdRng::seed_from_u64(params.seed ^ 0xfa17_5eed);
    let mut pending: Vec<(Duration, Pending)> = Vec::new();
    let mut down: BTreeSet<NodeId> = BTreeSet::new();
    let mut crashes = 0;
    let mut next_fault = Duration::from_millis(500);
    let mut healed = false;
    let debug = std::env::var_os("TRADELOG_SIM_DEBUG").is_some();
    if debug {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let mut next_report = Duration::ZERO;
    let max_down = (params.nodes - 1) / 2;
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                lock(&world)
                    .violations
                    .push(format!("simulation error: {e}"));
                break;
            }
        }
        let now = sim.elapsed();
        if debug && now >= next_report {
            next_report = now + Duration::from_secs(1);
            let w = lock(&world);
            let leaders: Vec<_> = (0..params.groups)
                .map(|g| {
                    w.rafts
                        .iter()
                        .filter(|((_, gg), r)| {
                            *gg == g && r.metrics().borrow_watched().state.is_leader()
                        })
                        .map(|((n, _), _)| *n)
                        .collect::<Vec<_>>()
                })
                .collect();
            eprintln!(
                "t={:?} acks={} heal={} down={down:?} leaders={leaders:?} violations={}",
                now,
                w.acks.len(),
                w.heal,
                w.violations.len()
            );
        }
        if !healed && lock(&world).heal {
            healed = true;
            for (_, p) in pending.drain(..) {
                match p {
                    Pending::Restart(n) => sim.bounce(host(n)),
                    Pending::Repair(n) => {
                        for o in (1..=params.nodes).filter(|&o| o != n) {
                            sim.repair(host(n), host(o));
                        }
                    }
                    Pending::Link(a, b) => {
                        sim.set_link_fail_rate(host(a), host(b), 0.0);
                        sim.set_link_max_message_latency(
                            host(a),
                            host(b),
                            Duration::from_millis(15),
                        );
                    }
                }
            }
            down.clear();
        }
        if healed {
            continue;
        }
        // Undo faults whose time has come.
        let mut k = 0;
        while k < pending.len() {
            if pending[k].0 <= now {
                match pending.remove(k).1 {
                    Pending::Restart(n) => {
                        down.remove(&n);
                        sim.bounce(host(n));
                    }
                    Pending::Repair(n) => {
                        for o in (1..=params.nodes).filter(|&o| o != n) {
                            sim.repair(host(n), host(o));
                        }
                    }
                    Pending::Link(a, b) => {
                        sim.set_link_fail_rate(host(a), host(b), 0.0);
                        sim.set_link_max_message_latency(
                            host(a),
                            host(b),
                            Duration::from_millis(15),
                        );
                    }
                }
            } else {
                k += 1;
            }
        }
        if now < next_fault {
            continue;
        }
        next_fault = now + Duration::from_millis(rng.random_range(1..=2 * params.fault_every_ms));
        let node = rng.random_range(1..=params.nodes);
        let lasts = Duration::from_millis(rng.random_range(200..4_000));
        let kind = rng.random_range(0..5u32);
        lock(&world).trace.extend(tradelog_codec::encode(&(
            now.as_millis() as u64,
            kind,
            node,
            lasts.as_millis() as u64,
        )));
        match kind {
            0 if !down.contains(&node) && (down.len() as u64) < max_down => {
                crash(&mut sim, &world, &mut rng, node);
                crashes += 1;
                down.insert(node);
                pending.push((now + lasts, Pending::Restart(node)));
            }
            // A group's leader crashes and is back well within the election timeout,
            // before another replica could take over: it must not take its leadership
            // back without an election, since its log may have lost entries a majority
            // of the group holds (`tradelog_raft::raft_config`).
            4 if (down.len() as u64) < max_down => {
                let group = rng.random_range(0..params.groups);
                let leader = lock(&world)
                    .rafts
                    .iter()
                    .filter(|((n, g), r)| {
                        *g == group
                            && !down.contains(n)
                            && r.metrics().borrow_watched().state.is_leader()
                    })
                    .map(|((n, _), _)| *n)
                    .next();
                if let Some(leader) = leader {
                    crash(&mut sim, &world, &mut rng, leader);
                    crashes += 1;
                    down.insert(leader);
                    let back = Duration::from_millis(rng.random_range(20..400));
                    pending.push((now + back, Pending::Restart(leader)));
                }
            }
            1 => {
                for o in (1..=params.nodes).filter(|&o| o != node) {
                    sim.partition(host(node), host(o));
                }
                pending.push((now + lasts, Pending::Repair(node)));
            }
            2 => {
                let other = 1 + (node % params.nodes);
                sim.set_link_fail_rate(host(node), host(other), rng.random_range(0.05..0.5));
                pending.push((now + lasts, Pending::Link(node, other)));
            }
            _ => {
                let other = 1 + (node % params.nodes);
                sim.set_link_max_message_latency(
                    host(node),
                    host(other),
                    Duration::from_millis(rng.random_range(50..800)),
                );
                pending.push((now + lasts, Pending::Link(node, other)));
            }
        }
    }
    seed_thread_rng(None);
    let mut w = lock(&world);
    let samples: Vec<_> = w.hash_at.iter().map(|(k, v)| (*k, *v)).collect();
    w.trace.extend(tradelog_codec::encode(&samples));
    Outcome {
        trace: tradelog_codec::sha256(&w.trace),
        cross_shard_messages: w.cross_shard_messages,
        move_steps: w.move_steps,
        moves_done: w.moves_done,
        acks: w.acks.len(),
        crashes,
        stale_archived: w.stale_archived,
        violations: w.violations.clone(),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// The seeds to run: `TRADELOG_SIM_SEED`, or `TRADELOG_SIM_SEEDS` (default `default`)
/// consecutive seeds from a base that differs per cluster size.
fn seeds(base: u64, default: u64) -> Vec<u64> {
    if let Some(s) = env_u64("TRADELOG_SIM_SEED") {
        return vec![s];
    }
    let n = env_u64("TRADELOG_SIM_SEEDS").unwrap_or(default);
    (base..base + n).collect()
}

fn run_seeds(test: &str, nodes: u64, base: u64) {
    run_seeds_of(test, base, |seed| Params::new(seed, nodes));
}

fn run_seeds_of(test: &str, base: u64, params_of: impl Fn(u64) -> Params) {
    let mut moves_done = 0;
    for seed in seeds(base, 3) {
        let params = params_of(seed);
        let nodes = params.nodes;
        let out = simulate(&params);
        eprintln!(
            "seed {seed}: {nodes} nodes, {} groups, {} acknowledged writes, {} cross-shard \
             messages, {} crashes, {} uncommitted archived records, {} membership steps, \
             {} moves finished, trace {}",
            params.groups,
            out.acks,
            out.cross_shard_messages,
            out.crashes,
            out.stale_archived,
            out.move_steps,
            out.moves_done,
            tradelog_codec::hex(&out.trace)
        );
        assert!(
            out.violations.is_empty(),
            "simulation seed {seed} ({nodes} nodes, {params:?}) failed:\n  {}\n\
             replay it with: TRADELOG_SIM_SEED={seed} cargo nextest run -p tradelog-raft \
             --test integration simulation::{test}",
            out.violations.join("\n  ")
        );
        assert!(out.acks > 0, "seed {seed}: no write was acknowledged");
        if params.groups > 1 {
            assert!(
                out.cross_shard_messages > 0,
                "seed {seed}: no cross-shard message was delivered"
            );
        }
        moves_done += out.moves_done;
    }
    // A seed may draw targets equal to where the groups are and spend its run without a
    // leader; across the seeds run, moves must have happened.
    assert!(
        moves_done > 0 || !params_of(base).moves,
        "no move finished in any seed"
    );
}

#[test]
fn three_node_cluster_survives_seeded_faults() {
    run_seeds("three_node_cluster_survives_seeded_faults", 3, 1_000);
}

#[test]
fn five_node_cluster_survives_seeded_faults() {
    run_seeds("five_node_cluster_survives_seeded_faults", 5, 5_000);
}

/// Groups of three voters on four nodes whose replicas move from node to node (learner
/// added, caught up, promoted, a voter removed, the leader last after a handover) while
/// partitions, lossy links and crashes go on: the same checks as above, over every node
/// that ever held a replica.
#[test]
fn groups_moving_between_nodes_survive_seeded_faults() {
    run_seeds_of(
        "groups_moving_between_nodes_survive_seeded_faults",
        9_000,
        Params::moving,
    );
}

/// Seed 9009 of the moving clusters: a group's leader crashes, losing entries its
/// followers had acknowledged (its own flush had not finished), and is back before an
/// election could replace it. With openraft's leader restore on (its default) it took its
/// leadership back in the same term, appended other entries under the same log ids, and
/// the replicas' states parted ("node 3 has state hash ... after T1-N1.44, another replica
/// ..."). Found with `TRADELOG_SIM_SEEDS=12` once the simulated disk took time to flush;
/// kept as a regression seed (a change to the simulation may move that fault elsewhere;
/// the default seeds run the same fault kind).
#[test]
fn a_leader_back_before_an_election_does_not_resume_its_term() {
    let out = simulate(&Params::moving(9_009));
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    assert!(out.crashes > 0, "no crash");
}

#[test]
fn a_seed_replays_exactly_and_another_seed_differs() {
    let seed = env_u64("TRADELOG_SIM_SEED").unwrap_or(42);
    let a = simulate(&Params::new(seed, 3));
    let b = simulate(&Params::new(seed, 3));
    let c = simulate(&Params::new(seed + 1, 3));
    assert!(a.violations.is_empty(), "seed {seed}: {:?}", a.violations);
    assert_eq!(
        tradelog_codec::hex(&a.trace),
        tradelog_codec::hex(&b.trace),
        "seed {seed} did not replay exactly"
    );
    assert_ne!(a.trace, c.trace, "seeds {seed} and {} ran alike", seed + 1);
    // The same with replicas moving (the mover's steps are in the trace).
    let m1 = simulate(&Params::moving(seed));
    let m2 = simulate(&Params::moving(seed));
    assert!(m1.violations.is_empty(), "seed {seed}: {:?}", m1.violations);
    assert!(m1.move_steps > 0, "seed {seed}: no membership step");
    assert_eq!(
        tradelog_codec::hex(&m1.trace),
        tradelog_codec::hex(&m2.trace),
        "seed {seed} with moves did not replay exactly"
    );
}
