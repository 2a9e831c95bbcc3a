//! The metadata group over the real transport: three nodes in one process, each serving
//! the metadata group and a shard group through one router and one channel per peer.
//! Map commands proposed on any replica (forwarded to the leader) are applied on every
//! replica in the same order, refusals are answered and change nothing, every replica
//! publishes each new map, the map survives the loss of the leader and a restart (from
//! the log, then from a snapshot), and a new replica catches up from a snapshot sent over
//! the transport.

use openraft::Raft;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tradelog_domain::ShardId;
use tradelog_engine::{Input, Placement};
use tradelog_placement::{ClusterMap, MapCommand, MapReject};
use tradelog_raft::{
    Batch, GroupHandle, GroupNetwork, LogStoreConfig, ManageOp, MapResponse, MetaConfig,
    MetaHandle, MetaRaft, MetaStateMachine, Node, NodeId, PeerChannels, RaftRouter, ShardLogStore,
    ShardStateMachine, META_GROUP, META_SNAPSHOT_FILE,
};

const WAIT: Duration = Duration::from_secs(60);

struct TestNode {
    id: NodeId,
    addr: String,
    router: RaftRouter,
    peers: PeerChannels,
    meta: MetaRaft,
    shard: tradelog_raft::ShardRaft,
    server: common::TestServer,
}

fn config() -> Arc<openraft::Config> {
    // Small chunks, so that a snapshot transfer takes many of them.
    common::raft_config_with_chunks(64)
}

use crate::common::{self, bind};

fn meta_dir(root: &Path, id: NodeId) -> PathBuf {
    root.join(format!("node-{id}")).join("meta")
}

async fn start(id: NodeId, listener: TcpListener, addr: String, root: &Path) -> TestNode {
    let router = RaftRouter::new();
    let peers = PeerChannels::new();
    let dir = meta_dir(root, id);
    let store =
        ShardLogStore::<_, MetaConfig>::open_group(&dir, LogStoreConfig::default()).unwrap();
    let sm = MetaStateMachine::open(&dir).unwrap();
    let net = GroupNetwork::<MetaConfig>::new(META_GROUP, id, peers.clone());
    let meta: MetaRaft = Raft::new(id, config(), net, store, sm).await.unwrap();
    router.add_meta(meta.clone());

    let sdir = root.join(format!("node-{id}")).join("shard-0");
    let store = ShardLogStore::open(&sdir, LogStoreConfig::default()).unwrap();
    let sm = ShardStateMachine::open(&sdir, ShardId(0), Placement::new(1)).unwrap();
    let net = GroupNetwork::new(ShardId(0), id, peers.clone());
    let shard = Raft::new(id, config(), net, store, sm).await.unwrap();
    router.add(ShardId(0), shard.clone());

    let server = common::serve(&router, listener);
    TestNode {
        id,
        addr,
        router,
        peers,
        meta,
        shard,
        server,
    }
}

impl TestNode {
    fn handle(&self) -> MetaHandle {
        GroupHandle::new(META_GROUP, self.meta.clone(), self.peers.clone())
    }

    async fn map(&self) -> ClusterMap {
        self.handle()
            .read_state_local(|sm| sm.map().clone())
            .await
            .unwrap()
    }

    async fn shutdown(&mut self) {
        self.router.remove_meta();
        self.router.remove(ShardId(0));
        self.meta.shutdown().await.unwrap();
        self.shard.shutdown().await.unwrap();
        self.server.stop().await;
    }
}

async fn leader_of(raft: &MetaRaft) -> NodeId {
    raft.wait(Some(WAIT))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap()
        .current_leader
        .unwrap()
}

async fn three_nodes(root: &Path) -> Vec<TestNode> {
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
        nodes.push(start(k as u64 + 1, l, a, root).await);
    }
    nodes[0].meta.initialize(members.clone()).await.unwrap();
    nodes[0].shard.initialize(members).await.unwrap();
    nodes
}

fn init_command(nodes: &[TestNode]) -> MapCommand {
    MapCommand::Init {
        shards: 1,
        replication_factor: 3,
        nodes: nodes.iter().map(|n| (n.id, n.addr.clone())).collect(),
        replicas: [(ShardId(0), nodes.iter().map(|n| n.id).collect())].into(),
    }
}

/// Waits until every node's map is at `version` and returns them.
async fn converged(nodes: &[&TestNode], version: u64) -> Vec<ClusterMap> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut maps = Vec::new();
        for n in nodes {
            maps.push(n.map().await);
        }
        if maps.iter().all(|m| m.version == version) {
            return maps;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "maps did not converge: {maps:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_commands_replicate_from_any_replica_and_survive_leader_loss_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(tmp.path()).await;
    let leader = leader_of(&nodes[0].meta).await;
    let follower = nodes.iter().position(|n| n.id != leader).unwrap();
    let mut published = nodes[follower]
        .handle()
        .read_state_local(|sm| sm.subscribe())
        .await
        .unwrap();

    // Proposed on a follower: forwarded to the leader, answered with the new version.
    let h = nodes[follower].handle();
    let r = h.propose(init_command(&nodes)).await.unwrap();
    assert_eq!(
        r,
        MapResponse {
            version: 1,
            rejected: None
        }
    );
    let add = MapCommand::AddNode {
        node: 4,
        addr: "http://127.0.0.1:1".into(),
    };
    assert_eq!(h.propose(add.clone()).await.unwrap().version, 2);
    // A refusal is an answer, and the map does not move.
    assert_eq!(
        h.propose(add).await.unwrap(),
        MapResponse {
            version: 2,
            rejected: Some(MapReject::NodeExists(4))
        }
    );
    let maps = converged(&nodes.iter().collect::<Vec<_>>(), 2).await;
    assert!(maps.windows(2).all(|w| w[0] == w[1]), "{maps:?}");
    assert_eq!(maps[0].nodes.len(), 4);
    tokio::time::timeout(WAIT, published.wait_for(|m| m.version == 2))
        .await
        .unwrap()
        .unwrap();

    // The shard group on the same transport still works beside it.
    let batch = Batch::new(vec![Input::Tick {
        timestamp: tradelog_domain::Timestamp(1),
    }])
    .unwrap();
    GroupHandle::new(ShardId(0), nodes[0].shard.clone(), nodes[0].peers.clone())
        .propose(batch)
        .await
        .unwrap();

    // The leader goes away; the other two elect a new one and keep the map.
    let k = nodes.iter().position(|n| n.id == leader).unwrap();
    let mut gone = nodes.remove(k);
    gone.shutdown().await;
    let survivor = nodes[0].handle();
    let drain = MapCommand::DrainNode { node: 4 };
    assert_eq!(survivor.propose(drain).await.unwrap().version, 3);
    let maps = converged(&nodes.iter().collect::<Vec<_>>(), 3).await;
    assert!(maps[0].nodes[&4].draining);

    // Restarted on its address, it replays its log and catches up with what it missed.
    let l = TcpListener::bind(gone.addr.trim_start_matches("http://"))
        .await
        .unwrap();
    let restarted = start(gone.id, l, gone.addr.clone(), tmp.path()).await;
    let all: Vec<&TestNode> = nodes.iter().chain([&restarted]).collect();
    let maps = converged(&all, 3).await;
    assert!(maps.windows(2).all(|w| w[0] == w[1]), "{maps:?}");
    let mut restarted = restarted;
    restarted.shutdown().await;
    for n in &mut nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_catches_up_from_a_snapshot_and_a_restart_starts_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(tmp.path()).await;
    let h = nodes[0].handle();
    h.propose(init_command(&nodes)).await.unwrap();
    for n in 10..40u64 {
        let add = MapCommand::AddNode {
            node: n,
            addr: format!("http://127.0.0.1:{}", 20_000 + n),
        };
        assert!(h.propose(add).await.unwrap().rejected.is_none());
    }
    let leader = leader_of(&nodes[0].meta).await;
    let lead = nodes.iter().find(|n| n.id == leader).unwrap();
    // A snapshot, then the log before it purged, on the leader.
    lead.meta.trigger().snapshot().await.unwrap();
    let snap = lead
        .meta
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some(), "a snapshot")
        .await
        .unwrap()
        .snapshot
        .unwrap();
    lead.meta.trigger().purge_log(snap.index).await.unwrap();
    lead.meta
        .wait(Some(WAIT))
        .metrics(|m| m.purged == Some(snap), "purged")
        .await
        .unwrap();
    assert!(meta_dir(tmp.path(), leader)
        .join(META_SNAPSHOT_FILE)
        .exists());

    // Node 4 joins as a learner: the entries it needs are gone, so it gets the snapshot.
    let (l, a) = bind().await;
    let fourth = start(4, l, a.clone(), tmp.path()).await;
    h.manage(ManageOp::AddLearner { node: 4, addr: a })
        .await
        .unwrap();
    let all: Vec<&TestNode> = nodes.iter().chain([&fourth]).collect();
    let maps = converged(&all, 31).await;
    assert!(maps.windows(2).all(|w| w[0] == w[1]));
    let voters: BTreeSet<NodeId> = [1, 2, 3, 4].into();
    h.manage(ManageOp::SetVoters { voters }).await.unwrap();
    assert!(meta_dir(tmp.path(), 4).join(META_SNAPSHOT_FILE).exists());

    // Restarted, node 4 starts from its snapshot (its log begins after it).
    let mut fourth = fourth;
    let addr = fourth.addr.clone();
    fourth.shutdown().await;
    let sm = MetaStateMachine::open(meta_dir(tmp.path(), 4)).unwrap();
    assert!(sm.applied().is_some_and(|a| a.index >= snap.index));
    assert!(sm.map().version >= 2, "{:?}", sm.map().version);
    drop(sm);
    let _ = addr;
    for n in &mut nodes {
        n.shutdown().await;
    }
}

#[test]
fn a_damaged_metadata_snapshot_is_refused_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut map = ClusterMap::default();
    map.apply(&MapCommand::Init {
        shards: 1,
        replication_factor: 1,
        nodes: [(1, "http://127.0.0.1:1".to_string())].into(),
        replicas: [(ShardId(0), [1].into())].into(),
    })
    .unwrap();
    let meta = tradelog_raft::SnapshotMeta::default();
    let mut bytes = tradelog_raft::encode_meta_snapshot(&meta, &map);
    std::fs::write(tmp.path().join(META_SNAPSHOT_FILE), &bytes).unwrap();
    assert_eq!(MetaStateMachine::open(tmp.path()).unwrap().map(), &map);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(tmp.path().join(META_SNAPSHOT_FILE), &bytes).unwrap();
    let err = MetaStateMachine::open(tmp.path()).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    // A well-sealed map that breaks the map's invariants is refused too.
    let mut broken = map.clone();
    broken.shards.insert(ShardId(0), [9].into());
    let bytes = tradelog_raft::encode_meta_snapshot(&meta, &broken);
    assert!(tradelog_raft::decode_meta_snapshot(&bytes, None)
        .unwrap_err()
        .contains("node 9"));
}

#[test]
fn a_map_with_splits_round_trips_and_version_1_snapshots_are_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut map = ClusterMap::default();
    map.apply(&MapCommand::Init {
        shards: 2,
        replication_factor: 1,
        nodes: [(1, "http://127.0.0.1:1".to_string())].into(),
        replicas: [(ShardId(0), [1].into()), (ShardId(1), [1].into())].into(),
    })
    .unwrap();
    let meta = tradelog_raft::SnapshotMeta::default();
    // A version 1 file: the map's fields before splits, in order, sealed as version 1.
    let v1_map = (
        map.version,
        map.replication_factor,
        map.nodes.clone(),
        map.shards.clone(),
        map.leaving.clone(),
    );
    let v1 = tradelog_codec::seal(
        tradelog_raft::META_SNAPSHOT_MAGIC,
        1,
        &tradelog_codec::encode(&(meta.clone(), v1_map)),
    );
    std::fs::write(tmp.path().join(META_SNAPSHOT_FILE), &v1).unwrap();
    assert_eq!(MetaStateMachine::open(tmp.path()).unwrap().map(), &map);
    // Written now: version 2, with the splits.
    map.apply(&MapCommand::SplitShard {
        parent: ShardId(1),
        modulus: 4,
        residue: 1,
        markets: vec![],
    })
    .unwrap();
    assert_eq!(map.splits.len(), 1);
    let bytes = tradelog_raft::encode_meta_snapshot(&meta, &map);
    assert_eq!(bytes[8..12], 2u32.to_le_bytes());
    std::fs::write(tmp.path().join(META_SNAPSHOT_FILE), &bytes).unwrap();
    assert_eq!(MetaStateMachine::open(tmp.path()).unwrap().map(), &map);
    // A version this build does not know is refused by name.
    let mut v3 = bytes.clone();
    v3[8..12].copy_from_slice(&3u32.to_le_bytes());
    let err = tradelog_raft::decode_meta_snapshot(&v3, None).unwrap_err();
    assert!(err.contains("version"), "{err}");
    // A split whose child is not the next shard breaks the map's invariants.
    let mut broken = map.clone();
    broken.splits[0].child = ShardId(5);
    let bytes = tradelog_raft::encode_meta_snapshot(&meta, &broken);
    let err = tradelog_raft::decode_meta_snapshot(&bytes, None).unwrap_err();
    assert!(err.contains("split 0 made shard 5"), "{err}");
}
