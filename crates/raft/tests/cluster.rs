//! Three replicas in one process, talking gRPC over loopback: two groups (shards) share one
//! channel per peer; a leader is elected, batches are committed and applied on every
//! replica with equal state hashes and the engine's own results; a new replica catches up
//! from a snapshot streamed in chunks; the leader's node is shut down, a new leader is
//! elected and every committed write is still there; a split starts the new shard's group
//! on the parent's voters from the state each of them wrote, and a later replica of it
//! starts from a snapshot.

use crate::common;
use crate::common::workload;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, ForwardReason, RaftError};
use openraft::Raft;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tradelog_domain::ShardId;
use tradelog_engine::{Applied, Engine, Input, Placement};
use tradelog_raft::{
    Batch, GroupNetwork, LogStoreConfig, Node, NodeId, PeerChannels, RaftMeta, RaftRouter,
    ShardLogStore, ShardRaft, ShardStateMachine,
};

const WAIT: Duration = Duration::from_secs(60);
const SHARDS: u32 = 2;

struct TestNode {
    id: NodeId,
    addr: String,
    router: RaftRouter,
    peers: PeerChannels,
    rafts: BTreeMap<u32, ShardRaft>,
    server: common::TestServer,
}

fn config() -> Arc<openraft::Config> {
    // Small chunks, so that a snapshot transfer takes many of them.
    common::raft_config_with_chunks(256)
}

use crate::common::bind;

fn group_dir(root: &Path, node: NodeId, group: u32) -> PathBuf {
    root.join(format!("node-{node}"))
        .join(format!("group-{group}"))
}

/// Starts node `id` serving `groups`, with its directories under `root`.
async fn start(
    id: NodeId,
    listener: TcpListener,
    addr: String,
    root: &Path,
    groups: &[u32],
) -> TestNode {
    let router = RaftRouter::new();
    let peers = PeerChannels::new();
    let server = common::serve(&router, listener);
    let mut node = TestNode {
        id,
        addr,
        router,
        peers,
        rafts: BTreeMap::new(),
        server,
    };
    for &g in groups {
        node.open(root, g, Placement::new(SHARDS)).await;
    }
    node
}

impl TestNode {
    /// Opens this node's replica of group `g` (a split's child finds the state its
    /// parent's replica wrote in its directory).
    async fn open(&mut self, root: &Path, g: u32, placement: Placement) -> ShardRaft {
        let dir = group_dir(root, self.id, g);
        let store = ShardLogStore::open(&dir, LogStoreConfig::default()).unwrap();
        let (root, id) = (root.to_path_buf(), self.id);
        let sm = ShardStateMachine::open(&dir, ShardId(g), placement)
            .unwrap()
            .with_child_dirs(Arc::new(move |s: ShardId| group_dir(&root, id, s.0)));
        let net = GroupNetwork::new(ShardId(g), self.id, self.peers.clone());
        let raft = Raft::new(self.id, config(), net, store, sm).await.unwrap();
        self.router.add(ShardId(g), raft.clone());
        self.rafts.insert(g, raft.clone());
        raft
    }

    /// Stops every group and the server of this node.
    async fn shutdown(&mut self) {
        for (&g, raft) in &self.rafts {
            self.router.remove(ShardId(g));
            raft.shutdown().await.unwrap();
        }
        self.server.stop().await;
    }
}

async fn state_hash(raft: &ShardRaft) -> [u8; 32] {
    raft.with_state_machine(|sm: &mut ShardStateMachine| Box::pin(async move { sm.state_hash() }))
        .await
        .unwrap()
}

async fn leader_of(raft: &ShardRaft) -> NodeId {
    // A leader elected in a term (the node that initialises a group holds a vote of term
    // 0 for itself until its first election).
    raft.wait(Some(WAIT))
        .metrics(
            |m| m.current_leader.is_some() && m.current_term >= 1,
            "a leader",
        )
        .await
        .unwrap()
        .current_leader
        .unwrap()
}

/// The engine's own answers to `batches`, and its state hash after them.
fn reference(shard: u32, batches: &[Vec<Input>]) -> (Vec<Vec<Applied>>, [u8; 32]) {
    let mut e = Engine::new(ShardId(shard), Placement::new(SHARDS));
    let mut events = Vec::new();
    let results = batches
        .iter()
        .map(|b| {
            let mut r = Vec::new();
            e.apply_batch(b, &mut events, &mut r);
            r
        })
        .collect();
    (results, e.state_hash())
}

/// Proposes every batch through `leader` and returns the state machine's answers.
async fn write_all(leader: &ShardRaft, batches: &[Vec<Input>]) -> (Vec<Vec<Applied>>, u64) {
    let mut results = Vec::new();
    let mut last = 0;
    for b in batches {
        let deadline = tokio::time::Instant::now() + WAIT;
        let resp = loop {
            let write = leader.client_write(Batch::new(b.clone()).unwrap());
            let r = tokio::time::timeout(WAIT, write)
                .await
                .expect("write timed out");
            match r {
                Ok(r) => break r,
                // A new leader accepts writes once a quorum has acknowledged it (its lease);
                // a client retries meanwhile. Nothing was appended.
                // An election under way (no leader known, e.g. heartbeats late on a loaded
                // machine): nothing was appended either; this node may win it again.
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))
                    if (f.reason == ForwardReason::LeaseExpired || f.leader_id.is_none())
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("write failed: {e}"),
            }
        };
        results.push(resp.data.results);
        last = resp.log_id.index;
    }
    (results, last)
}

async fn wait_applied(rafts: &[&ShardRaft], index: u64) {
    for r in rafts {
        r.wait(Some(WAIT))
            .applied_index_at_least(Some(index), "applied")
            .await
            .unwrap();
    }
}

async fn three_nodes(root: &Path, groups: &[u32]) -> Vec<TestNode> {
    three_nodes_serving(root, [groups; 3], groups).await
}

/// Nodes 1 to 3, node `k + 1` serving the groups `serving[k]`; node 1 initialises each
/// group of `init` with all three as voters.
async fn three_nodes_serving(root: &Path, serving: [&[u32]; 3], init: &[u32]) -> Vec<TestNode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut bound = Vec::new();
    for _ in 0..3 {
        bound.push(bind().await);
    }
    let members: BTreeMap<NodeId, Node> = bound
        .iter()
        .enumerate()
        .map(|(k, (_, a))| (k as u64 + 1, Node::new(a)))
        .collect();
    let mut nodes = Vec::new();
    for (k, (l, a)) in bound.into_iter().enumerate() {
        nodes.push(start(k as u64 + 1, l, a, root, serving[k]).await);
    }
    for &g in init {
        nodes[0].rafts[&g]
            .initialize(members.clone())
            .await
            .unwrap();
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_commit_and_survive_the_loss_of_the_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(tmp.path(), &[0, 1]).await;

    let batches = workload(40, 8);
    let (first, second) = batches.split_at(25);
    // Group 1 gets the catalog only (every shard applies it).
    let catalog = &batches[..1];

    // Both groups elect a leader and commit through it.
    let mut leaders = BTreeMap::new();
    for g in [0u32, 1] {
        leaders.insert(g, leader_of(&nodes[0].rafts[&g]).await);
    }
    let l0 = leaders[&0];
    let leader = nodes[(l0 - 1) as usize].rafts[&0].clone();
    let (results, last) = write_all(&leader, first).await;
    let (expected, expected_hash) = reference(0, first);
    assert_eq!(expected, results);
    let l1 = nodes[(leaders[&1] - 1) as usize].rafts[&1].clone();
    let (results1, last1) = write_all(&l1, catalog).await;
    assert_eq!(reference(1, catalog).0, results1);

    // Applied on all three, with equal state hashes (and the engine's).
    let group0: Vec<&ShardRaft> = nodes.iter().map(|n| &n.rafts[&0]).collect();
    wait_applied(&group0, last).await;
    for r in &group0 {
        assert_eq!(expected_hash, state_hash(r).await);
    }
    let group1: Vec<&ShardRaft> = nodes.iter().map(|n| &n.rafts[&1]).collect();
    wait_applied(&group1, last1).await;
    for r in &group1 {
        assert_eq!(reference(1, catalog).1, state_hash(r).await);
    }

    // One channel per peer, whatever the number of groups: a leader of both groups talks
    // to both peers over two channels; no node has a channel to anything else.
    for n in &nodes {
        let mut others: Vec<String> = nodes
            .iter()
            .filter(|m| m.id != n.id)
            .map(|m| m.addr.clone())
            .collect();
        others.sort();
        let used = n.peers.addresses();
        assert!(
            used.iter().all(|a| others.contains(a)),
            "node {}: {used:?}",
            n.id
        );
        if leaders.values().any(|&l| l == n.id) {
            assert_eq!(others, used, "leader node {}", n.id);
        }
    }

    // Entries reached the followers through pipelined streams.
    for n in nodes.iter().filter(|n| n.id != l0) {
        let stats = n.router.stats();
        assert!(
            stats.streams > 0 && stats.streamed_requests > 0,
            "node {}: {stats:?}",
            n.id
        );
    }

    // The leader of group 0 goes away with its whole node.
    nodes[(l0 - 1) as usize].shutdown().await;
    let survivors: Vec<usize> = (0..3).filter(|&k| k as u64 + 1 != l0).collect();
    let new_leader = nodes[survivors[0]].rafts[&0]
        .wait(Some(WAIT))
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != l0),
            "a new leader",
        )
        .await
        .unwrap()
        .current_leader
        .unwrap();
    assert_ne!(l0, new_leader);
    let leader = nodes[(new_leader - 1) as usize].rafts[&0].clone();
    let (results, last) = write_all(&leader, second).await;
    let (expected_all, expected_hash) = reference(0, &batches[..]);
    assert_eq!(expected_all[first.len()..].to_vec(), results);

    // Every committed write, before and after the failover, is on both survivors.
    let group0: Vec<&ShardRaft> = survivors.iter().map(|&k| &nodes[k].rafts[&0]).collect();
    wait_applied(&group0, last).await;
    for r in &group0 {
        assert_eq!(expected_hash, state_hash(r).await);
    }
    for k in survivors {
        nodes[k].shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_catches_up_from_a_snapshot_sent_in_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(tmp.path(), &[0]).await;
    let batches = workload(30, 8);
    let l = leader_of(&nodes[0].rafts[&0]).await;
    let leader = nodes[(l - 1) as usize].rafts[&0].clone();
    let (_, last) = write_all(&leader, &batches).await;
    let all: Vec<&ShardRaft> = nodes.iter().map(|n| &n.rafts[&0]).collect();
    wait_applied(&all, last).await;

    // The leader snapshots and drops its log: a newcomer can only start from the snapshot.
    leader.trigger().snapshot().await.unwrap();
    leader
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= last),
            "snapshot built",
        )
        .await
        .unwrap();
    leader.trigger().purge_log(last).await.unwrap();
    leader
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= last), "log purged")
        .await
        .unwrap();
    let snapshot = leader.get_snapshot().await.unwrap().unwrap();
    assert!(
        snapshot.snapshot.len() > 4 * 256,
        "a snapshot of {} bytes would not need several chunks",
        snapshot.snapshot.len()
    );

    let (listener, addr) = bind().await;
    let mut newcomer = start(4, listener, addr.clone(), tmp.path(), &[0]).await;
    leader.add_learner(4, Node::new(&addr), true).await.unwrap();
    let learner = &newcomer.rafts[&0];
    learner
        .wait(Some(WAIT))
        .applied_index_at_least(Some(last), "learner caught up")
        .await
        .unwrap();
    let expected = reference(0, &batches).1;
    assert_eq!(expected, state_hash(learner).await);
    // (A retried transfer would count twice; at least one arrived whole.)
    assert!(newcomer.router.stats().snapshots >= 1);
    let m = learner.metrics().borrow_watched().clone();
    assert_eq!(
        Some(snapshot.meta.last_log_id.unwrap().index),
        m.snapshot.map(|s| s.index),
        "the learner started from the leader's snapshot"
    );

    // It keeps up with new writes through the log.
    let more = workload(35, 8);
    let (_, last) = write_all(&leader, &more[32..]).await;
    learner
        .wait(Some(WAIT))
        .applied_index_at_least(Some(last), "learner applies new entries")
        .await
        .unwrap();
    let mut expected_batches = batches.clone();
    expected_batches.extend(more[32..].iter().cloned());
    assert_eq!(reference(0, &expected_batches).1, state_hash(learner).await);
    let voters: BTreeSet<NodeId> = learner
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(BTreeSet::from([1, 2, 3]), voters);

    newcomer.shutdown().await;
    for n in &mut nodes {
        n.shutdown().await;
    }
}

/// A voter whose node holds no replica of the group yet (a split's child before its
/// replica opens) refuses the leader's replication stream at once. The leader asks again
/// after a pause that grows, not in a tight loop; once the replica opens it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_group_is_asked_again_after_a_pause_not_in_a_loop() {
    let tmp = tempfile::tempdir().unwrap();
    // Node 3 serves the transport but no group.
    let mut nodes = three_nodes_serving(tmp.path(), [&[0], &[0], &[]], &[0]).await;
    let l = leader_of(&nodes[0].rafts[&0]).await;
    let leader = nodes[(l - 1) as usize].rafts[&0].clone();
    let batches = workload(10, 4);
    let (_, last) = write_all(&leader, &batches).await;

    // The leader's node counts the streams node 3 refused while it holds no replica.
    let peers = nodes[(l - 1) as usize].peers.clone();
    let before = peers.stream_failures();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = peers.stream_failures() - before;
    // With pauses of 10, 20, 40, ... 250 ms: about 12 in 2 s. In a tight loop: thousands.
    assert!(
        (1..=40).contains(&refused),
        "{refused} refused streams in 2 s"
    );

    // Once node 3 opens its replica, replication resumes and it catches up.
    let raft = nodes[2].open(tmp.path(), 0, Placement::new(SHARDS)).await;
    raft.wait(Some(WAIT))
        .applied_index_at_least(Some(last), "caught up")
        .await
        .unwrap();
    assert_eq!(reference(0, &batches).1, state_hash(&raft).await);
    for n in &mut nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_recovers_its_state_and_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(tmp.path(), &[0]).await;
    let batches = workload(40, 8);
    let (before, after) = batches.split_at(20);
    let l = leader_of(&nodes[0].rafts[&0]).await;
    let leader = nodes[(l - 1) as usize].rafts[&0].clone();
    let (_, last_before) = write_all(&leader, before).await;
    let all: Vec<&ShardRaft> = nodes.iter().map(|n| &n.rafts[&0]).collect();
    wait_applied(&all, last_before).await;

    // A follower stops; the other two go on committing.
    let f = (0..3).find(|&k| k as u64 + 1 != l).unwrap();
    let f_id = nodes[f].id;
    let vote_before = nodes[f].rafts[&0].metrics().borrow_watched().vote;
    nodes[f].shutdown().await;
    let dir = tmp.path().join(format!("node-{f_id}")).join("group-0");
    let saved = RaftMeta::load(&dir).unwrap();
    assert_eq!(Some(vote_before), saved.vote);
    assert!(saved.committed.is_some_and(|c| c.index <= last_before));
    let (_, last) = write_all(&leader, after).await;

    // It restarts from its own directory, at the same address.
    let addr = nodes[f].addr.clone();
    let listener = TcpListener::bind(addr.trim_start_matches("http://"))
        .await
        .unwrap();
    let restarted = start(f_id, listener, addr, tmp.path(), &[0]).await;
    let raft = &restarted.rafts[&0];
    // Its vote survived, and it re-applied what it knew was committed from its own log.
    raft.wait(Some(WAIT))
        .metrics(|m| m.vote >= vote_before, "the vote survived")
        .await
        .unwrap();
    raft.wait(Some(WAIT))
        .applied_index_at_least(Some(last_before), "recovered from its own log")
        .await
        .unwrap();
    // Then it catches up with what it missed.
    raft.wait(Some(WAIT))
        .applied_index_at_least(Some(last), "caught up")
        .await
        .unwrap();
    assert_eq!(reference(0, &batches).1, state_hash(raft).await);
    assert_eq!(state_hash(&leader).await, state_hash(raft).await);

    nodes[f] = restarted;
    for n in &mut nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_starts_the_child_group_on_the_parents_voters_without_copying_state() {
    use tradelog_domain::{AccountId, Amount, AssetId, Command, TransferId, TransferSpec};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut nodes = three_nodes(root, &[0]).await;
    let batches = workload(20, 6);
    let l = leader_of(&nodes[0].rafts[&0]).await;
    let parent = nodes[(l - 1) as usize].rafts[&0].clone();
    write_all(&parent, &batches).await;

    // Shard 0's accounts with id % 4 == 0 (4 and 8) and market 1 become shard 2.
    let split = tradelog_engine::Split {
        parent: ShardId(0),
        child: ShardId(2),
        modulus: 4,
        residue: 0,
        markets: vec![tradelog_domain::MarketId(1)],
    };
    let split_input = Input::Split {
        timestamp: tradelog_domain::Timestamp(1_000_000),
        split: split.clone(),
    };
    let mut reference_parent = Engine::new(ShardId(0), Placement::new(SHARDS));
    let (mut events, mut results) = (Vec::new(), Vec::new());
    for b in &batches {
        reference_parent.apply_batch(b, &mut events, &mut results);
    }
    let mut reference_child = reference_parent
        .split(
            tradelog_domain::Timestamp(1_000_000),
            split.clone(),
            &mut events,
        )
        .unwrap();
    let moved = reference_child.ledger().len() as u64;
    assert_eq!(moved, 2, "accounts 4 and 8");
    let (answers, split_index) = write_all(&parent, &[vec![split_input.clone()]]).await;
    assert_eq!(answers, vec![vec![Applied::Split(Ok(moved))]]);
    let all: Vec<&ShardRaft> = nodes.iter().map(|n| &n.rafts[&0]).collect();
    wait_applied(&all, split_index).await;
    for r in &all {
        assert_eq!(reference_parent.state_hash(), state_hash(r).await);
    }
    // Every replica wrote the same start, naming the parent's voters.
    let start_of = |n: NodeId| {
        std::fs::read(group_dir(root, n, 2).join(tradelog_raft::SPLIT_START_FILE)).unwrap()
    };
    let first = start_of(1);
    assert_eq!((start_of(2), start_of(3)), (first.clone(), first.clone()));
    let (begun, _) = tradelog_raft::decode_split_start(&first, ShardId(2)).unwrap();
    assert_eq!(begun.split_at.index, split_index);
    let voters: BTreeMap<NodeId, Node> = begun
        .membership
        .membership()
        .nodes()
        .map(|(id, n)| (*id, n.clone()))
        .collect();
    assert_eq!(voters.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);

    // Each voter opens the child from its own start and proposes the same first
    // membership; the vote decides.
    let mut placement = Placement::new(SHARDS);
    placement.split(split.clone()).unwrap();
    let mut children = Vec::new();
    for n in &mut nodes {
        let raft = n.open(root, 2, placement.clone()).await;
        assert_eq!(reference_child.state_hash(), state_hash(&raft).await);
        children.push(raft);
    }
    for c in &children {
        if let Err(e) = c.initialize(voters.clone()).await {
            // Another voter's vote may reach this one first.
            assert!(e.to_string().contains("not allowed"), "{e}");
        }
    }
    let l = leader_of(&children[0]).await;
    let child = children[(l - 1) as usize].clone();
    // The moved accounts trade on the child: 4 pays 8, twice.
    let op = |t: u64, id: u64| Input::Command {
        meta: tradelog_domain::Meta {
            timestamp: tradelog_domain::Timestamp(t),
            principal: tradelog_domain::Principal(4),
            authority: tradelog_domain::Authority::Operator,
        },
        command: Command::Transfer(TransferSpec {
            id: TransferId(id),
            debit: AccountId(4),
            credit: AccountId(8),
            asset: AssetId(1),
            amount: Amount(7),
            balancing: false,
        }),
    };
    let on_child = vec![vec![op(2_000_000, 900_001)], vec![op(2_000_001, 900_002)]];
    let (answers, last) = write_all(&child, &on_child).await;
    let mut expected = Vec::new();
    for b in &on_child {
        let mut r = Vec::new();
        reference_child.apply_batch(b, &mut events, &mut r);
        expected.push(r);
    }
    assert_eq!(answers, expected);
    assert!(
        matches!(&answers[0][0], Applied::Command(o) if o.result.is_ok()),
        "{:?}",
        answers[0][0]
    );
    let kids: Vec<&ShardRaft> = children.iter().collect();
    wait_applied(&kids, last).await;
    for c in &kids {
        assert_eq!(reference_child.state_hash(), state_hash(c).await);
    }
    // The parent no longer takes them.
    let (answers, _) = write_all(&parent, &[vec![op(2_000_002, 900_003)]]).await;
    assert!(
        matches!(
            &answers[0][0],
            Applied::Command(o) if o.result.as_ref().is_err_and(|r| r.code == tradelog_domain::RejectCode::WrongShard)
        ),
        "{:?}",
        answers[0][0]
    );

    // A replica that did not apply the parent's split has no start: it refuses the log
    // and waits for a snapshot, which the child's leader makes and then purges its log.
    child.trigger().snapshot().await.unwrap();
    child
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= last), "snapshot")
        .await
        .unwrap();
    child.trigger().purge_log(last).await.unwrap();
    child
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= last), "log purged")
        .await
        .unwrap();
    let (listener, addr) = bind().await;
    let mut newcomer = start(4, listener, addr.clone(), root, &[]).await;
    let learner = newcomer.open(root, 2, placement.clone()).await;
    child.add_learner(4, Node::new(&addr), true).await.unwrap();
    learner
        .wait(Some(WAIT))
        .applied_index_at_least(Some(last), "learner caught up")
        .await
        .unwrap();
    assert_eq!(reference_child.state_hash(), state_hash(&learner).await);
    assert!(!group_dir(root, 4, 2)
        .join(tradelog_raft::SPLIT_START_FILE)
        .exists());

    newcomer.shutdown().await;
    for n in &mut nodes {
        n.shutdown().await;
    }
}

/// `SplitStart` answers a node's start file of a split's child, or that it has none; a
/// node that cannot be asked is an error (ask again later), not "none".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_answers_a_split_start_file_or_that_it_has_none() {
    let (listener, addr) = bind().await;
    let router = RaftRouter::new();
    let mut server = common::serve(&router, listener);
    let peers = PeerChannels::new();
    assert_eq!(Ok(None), peers.split_start(&addr, ShardId(5)).await);
    router.serve_split_starts(Arc::new(|s: ShardId| {
        (s == ShardId(5)).then(|| b"the start of shard 5".to_vec())
    }));
    assert_eq!(
        Ok(Some(b"the start of shard 5".to_vec())),
        peers.split_start(&addr, ShardId(5)).await
    );
    assert_eq!(Ok(None), peers.split_start(&addr, ShardId(6)).await);
    server.stop().await;
    let down = peers.split_start(&addr, ShardId(5)).await;
    assert!(down.is_err(), "{down:?}");
}
