//! The cluster map on real cluster nodes (in this process, over loopback): the metadata
//! group creates it from the shard groups, and adding and removing a node records each
//! step in it on every node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tradelog_cluster::ClusterNode;
use tradelog_domain::ShardId;

use crate::common::{bind, start, SHARDS, WAIT};

fn all(nodes: &[u64]) -> BTreeSet<u64> {
    nodes.iter().copied().collect()
}

/// Waits until `node` sees exactly `want` as the metadata group's voters.
async fn meta_voters(node: &ClusterNode, want: BTreeSet<u64>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let voters: BTreeSet<u64> = node.metadata_group().raft().voter_ids().collect();
        if voters == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metadata voters {voters:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_is_created_and_follows_added_and_removed_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bound = Vec::new();
    for _ in 0..4 {
        bound.push(bind().await);
    }
    let addrs: Vec<String> = bound.iter().map(|(_, a)| a.clone()).collect();
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, addrs[id as usize - 1].clone()))
        .collect();
    let mut nodes = BTreeMap::new();
    for (k, (l, _)) in bound.into_iter().enumerate() {
        let id = k as u64 + 1;
        let m = if id <= 3 {
            members.clone()
        } else {
            BTreeMap::new()
        };
        nodes.insert(id, start(id, l, tmp.path(), &m).await);
    }

    // Created once, from the groups: three nodes, every shard on all of them.
    for id in 1..=3 {
        assert!(
            nodes[&id].wait_for_map(1, WAIT).await,
            "node {id} has no map"
        );
    }
    let map = nodes[&1].map();
    assert_eq!(map.version, 1, "{map:?}");
    assert_eq!(map.replication_factor, 3);
    assert_eq!(map.nodes.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    for s in 0..SHARDS {
        assert_eq!(map.replicas(ShardId(s)), Some(&all(&[1, 2, 3])));
    }
    assert_eq!(nodes[&2].map(), map);

    // Node 4 joins: it is in the map, every shard's target names it, and it holds a
    // replica of the metadata group (a voter: the group had fewer than five).
    nodes[&1].add_node(4, &addrs[3]).await.unwrap();
    let map = nodes[&1].map();
    // The join, the two shard targets, and each shard's move settled by its leader.
    assert_eq!(map.version, 6, "{map:?}");
    assert!(map.is_settled());
    assert_eq!(map.nodes[&4].addr, addrs[3]);
    for s in 0..SHARDS {
        assert_eq!(map.replicas(ShardId(s)), Some(&all(&[1, 2, 3, 4])));
    }
    meta_voters(&nodes[&1], all(&[1, 2, 3, 4])).await;
    assert!(nodes[&4].wait_for_map(map.version, WAIT).await);
    assert_eq!(nodes[&4].map(), map);
    // Node 4 opened a replica of every shard (its reconciler), which its leader added
    // and promoted (the leader's reconciler): settled means every group has the voters.
    assert_eq!(nodes[&4].hosted(), (0..SHARDS).map(ShardId).collect());
    for id in 1..=4 {
        assert_eq!(
            tradelog_cluster::voters(&nodes[&id]),
            vec![all(&[1, 2, 3, 4]); SHARDS as usize],
            "node {id}"
        );
    }
    // Repeating the join changes nothing.
    nodes[&1].add_node(4, &addrs[3]).await.unwrap();
    assert_eq!(nodes[&1].map().version, map.version);

    // Node 1 leaves, asked through node 1 itself: drained, taken out of every shard's
    // target and the metadata group (handing over what it leads), then out of the map.
    nodes[&1].remove_node(1).await.unwrap();
    // Drain, two shard targets, two settled moves, leave: six versions after the join's six.
    assert!(nodes[&2].wait_for_map(12, WAIT).await);
    let map = nodes[&2].map();
    assert_eq!(map.version, 12, "{map:?}");
    assert_eq!(map.nodes.keys().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
    for s in 0..SHARDS {
        assert_eq!(map.replicas(ShardId(s)), Some(&all(&[2, 3, 4])));
    }
    meta_voters(&nodes[&2], all(&[2, 3, 4])).await;
    for id in [3, 4] {
        assert!(nodes[&id].wait_for_map(map.version, WAIT).await);
        assert_eq!(nodes[&id].map(), map);
    }
    // Node 1 closed its replicas once the moves settled, and archived their directories.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !nodes[&1].hosted().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 keeps its replicas"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let node_1 = tmp.path().join("node-1");
    for s in 0..SHARDS {
        assert!(!node_1.join(format!("shard-{s}")).exists());
    }
    let archived = std::fs::read_dir(node_1.join(tradelog_cluster::ARCHIVE_DIR))
        .unwrap()
        .count();
    assert_eq!(archived, SHARDS as usize);
    let status = nodes[&3].status_with(false).await;
    assert_eq!(status.metadata.version, map.version);
    assert_eq!(
        status
            .metadata
            .nodes
            .iter()
            .map(|n| n.node)
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    for n in nodes.values() {
        n.shutdown().await;
    }
}
