//! The cluster map: every command's effect and every refusal, whole maps compared; and a
//! property test that random command streams never break an invariant and that a refused
//! command changes nothing.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use tradelog_domain::routing::{Split, SplitError};
use tradelog_domain::{AccountId, MarketId, ShardId};
use tradelog_placement::{ClusterMap, Layout, MapCommand, MapNode, MapReject, NodeState, Replicas};

fn addr(n: u64) -> String {
    format!("http://127.0.0.1:{}", 7000 + n)
}

fn set(nodes: &[u64]) -> BTreeSet<u64> {
    nodes.iter().copied().collect()
}

fn init(shards: u32, nodes: &[u64], rf: usize) -> MapCommand {
    MapCommand::Init {
        shards,
        replication_factor: rf,
        nodes: nodes.iter().map(|n| (*n, addr(*n))).collect(),
        replicas: (0..shards)
            .map(|s| (ShardId(s), nodes.iter().copied().collect()))
            .collect(),
    }
}

fn node(n: u64, draining: bool) -> (u64, MapNode) {
    (
        n,
        MapNode {
            addr: addr(n),
            draining,
        },
    )
}

#[test]
fn init_add_drain_move_remove() {
    let mut map = ClusterMap::default();
    assert_eq!(map.apply(&init(2, &[1, 2, 3], 3)), Ok(1));
    assert_eq!(
        map,
        ClusterMap {
            version: 1,
            replication_factor: 3,
            nodes: [node(1, false), node(2, false), node(3, false)].into(),
            shards: [(ShardId(0), set(&[1, 2, 3])), (ShardId(1), set(&[1, 2, 3]))].into(),
            leaving: BTreeMap::new(),
            splits: Vec::new(),
        }
    );
    let add = MapCommand::AddNode {
        node: 4,
        addr: addr(4),
    };
    assert_eq!(map.apply(&add), Ok(2));
    assert_eq!(map.apply(&MapCommand::DrainNode { node: 1 }), Ok(3));
    let move_0 = MapCommand::SetShardReplicas {
        shard: ShardId(0),
        replicas: set(&[2, 3, 4]),
        if_version: Some(3),
    };
    assert_eq!(map.apply(&move_0), Ok(4));
    assert_eq!(map.leaving, [(ShardId(0), set(&[1]))].into());
    // Node 1 still holds shard 1.
    assert_eq!(
        map.apply(&MapCommand::RemoveNode { node: 1 }),
        Err(MapReject::HoldsReplicas { node: 1, shard: 1 })
    );
    let move_1 = MapCommand::SetShardReplicas {
        shard: ShardId(1),
        replicas: set(&[2, 3, 4]),
        if_version: None,
    };
    assert_eq!(map.apply(&move_1), Ok(5));
    // Node 1 keeps both replicas until each shard's move settles.
    assert_eq!(
        map.leaving,
        [(ShardId(0), set(&[1])), (ShardId(1), set(&[1]))].into()
    );
    assert_eq!(map.shards_of(1), [ShardId(0), ShardId(1)].into());
    assert_eq!(map.holders(ShardId(0)), set(&[1, 2, 3, 4]));
    assert!(!map.is_settled());
    assert_eq!(
        map.apply(&MapCommand::RemoveNode { node: 1 }),
        Err(MapReject::HoldsReplicas { node: 1, shard: 0 })
    );
    let settled = |s: u32, nodes: &[u64]| MapCommand::ShardSettled {
        shard: ShardId(s),
        replicas: set(nodes),
    };
    assert_eq!(
        map.apply(&settled(0, &[1, 2, 3])),
        Err(MapReject::StaleTarget {
            shard: 0,
            replicas: set(&[1, 2, 3])
        })
    );
    assert_eq!(map.apply(&settled(0, &[2, 3, 4])), Ok(6));
    assert_eq!(map.shards_of(1), [ShardId(1)].into());
    assert_eq!(map.apply(&settled(1, &[2, 3, 4])), Ok(7));
    assert!(map.is_settled());
    assert_eq!(map.apply(&MapCommand::RemoveNode { node: 1 }), Ok(8));
    assert_eq!(
        map,
        ClusterMap {
            version: 8,
            replication_factor: 3,
            nodes: [node(2, false), node(3, false), node(4, false)].into(),
            shards: [(ShardId(0), set(&[2, 3, 4])), (ShardId(1), set(&[2, 3, 4]))].into(),
            leaving: BTreeMap::new(),
            splits: Vec::new(),
        }
    );
    assert_eq!(map.shards_of(4), [ShardId(0), ShardId(1)].into());
    assert_eq!(map.shards_of(1), BTreeSet::new());
    // The factor changes alone; the shards' targets are set by separate commands.
    let two = MapCommand::SetReplicationFactor {
        replication_factor: 2,
    };
    assert_eq!(map.apply(&two), Ok(9));
    assert_eq!(
        (map.replication_factor, map.shards_of(4)),
        (2, [ShardId(0), ShardId(1)].into())
    );
    assert_eq!(two.to_string(), "replication factor 2");
}

#[test]
fn every_refusal_changes_nothing() {
    let mut empty = ClusterMap::default();
    assert_eq!(
        empty.apply(&MapCommand::DrainNode { node: 1 }),
        Err(MapReject::NotInitialised)
    );
    assert_eq!(empty, ClusterMap::default());

    let mut map = ClusterMap::default();
    map.apply(&init(2, &[1, 2, 3], 3)).unwrap();
    map.apply(&MapCommand::DrainNode { node: 3 }).unwrap();
    let before = map.clone();
    let cases = [
        (init(1, &[1], 1), MapReject::AlreadyInitialised(2)),
        (
            MapCommand::AddNode {
                node: 2,
                addr: addr(9),
            },
            MapReject::NodeExists(2),
        ),
        (
            MapCommand::AddNode {
                node: 9,
                addr: addr(2),
            },
            MapReject::AddressTaken {
                addr: addr(2),
                node: 2,
            },
        ),
        (
            MapCommand::AddNode {
                node: 9,
                addr: "127.0.0.1:7009".into(),
            },
            MapReject::BadAddress("127.0.0.1:7009".into()),
        ),
        (
            MapCommand::AddNode {
                node: 9,
                addr: "http://".into(),
            },
            MapReject::BadAddress("http://".into()),
        ),
        (
            MapCommand::AddNode {
                node: 9,
                addr: format!("http://{}", "a".repeat(300)),
            },
            MapReject::BadAddress(format!("http://{}", "a".repeat(300))),
        ),
        (MapCommand::DrainNode { node: 9 }, MapReject::UnknownNode(9)),
        (
            MapCommand::SetReplicationFactor {
                replication_factor: 0,
            },
            MapReject::ReplicationFactor(0),
        ),
        (
            MapCommand::SetReplicationFactor {
                replication_factor: 3,
            },
            MapReject::NotEnoughNodes {
                replication_factor: 3,
                nodes: 2,
            },
        ),
        (
            MapCommand::RemoveNode { node: 9 },
            MapReject::UnknownNode(9),
        ),
        (MapCommand::RemoveNode { node: 1 }, MapReject::NotDrained(1)),
        (
            MapCommand::RemoveNode { node: 3 },
            MapReject::HoldsReplicas { node: 3, shard: 0 },
        ),
        (
            MapCommand::SetShardReplicas {
                shard: ShardId(2),
                replicas: set(&[1]),
                if_version: None,
            },
            MapReject::UnknownShard(2),
        ),
        (
            MapCommand::SetShardReplicas {
                shard: ShardId(0),
                replicas: set(&[]),
                if_version: None,
            },
            MapReject::ReplicaCount {
                shard: 0,
                replicas: 0,
            },
        ),
        (
            MapCommand::SetShardReplicas {
                shard: ShardId(0),
                replicas: set(&[1, 2, 3, 4, 5, 6, 7, 8]),
                if_version: None,
            },
            MapReject::ReplicaCount {
                shard: 0,
                replicas: 8,
            },
        ),
        (
            MapCommand::SetShardReplicas {
                shard: ShardId(0),
                replicas: set(&[1, 9]),
                if_version: None,
            },
            MapReject::UnknownNode(9),
        ),
        (
            MapCommand::SetShardReplicas {
                shard: ShardId(0),
                replicas: set(&[1, 2]),
                if_version: Some(1),
            },
            MapReject::StaleVersion {
                expected: 1,
                actual: 2,
            },
        ),
    ];
    for (command, reject) in cases {
        let code = reject.code();
        assert_eq!(map.apply(&command), Err(reject), "{command:?}");
        assert_eq!(map, before, "{command:?} changed the map");
        assert!((1..=18).contains(&code));
    }
    // A draining node may keep a replica it has, but takes no new one.
    map.apply(&MapCommand::SetShardReplicas {
        shard: ShardId(0),
        replicas: set(&[1, 3]),
        if_version: None,
    })
    .unwrap();
    map.apply(&MapCommand::SetShardReplicas {
        shard: ShardId(1),
        replicas: set(&[1, 2]),
        if_version: None,
    })
    .unwrap();
    assert_eq!(
        map.apply(&MapCommand::SetShardReplicas {
            shard: ShardId(1),
            replicas: set(&[1, 3]),
            if_version: None,
        }),
        Err(MapReject::Draining(3))
    );
}

#[test]
fn init_refusals() {
    let bad = [
        (init(2, &[1, 2], 0), MapReject::ReplicationFactor(0)),
        (init(2, &[1, 2], 8), MapReject::ReplicationFactor(8)),
        (init(0, &[1, 2], 1), MapReject::ShardCount(0)),
        (
            MapCommand::Init {
                shards: 2,
                replication_factor: 1,
                nodes: [(1, addr(1))].into(),
                replicas: [(ShardId(0), set(&[1])), (ShardId(2), set(&[1]))].into(),
            },
            MapReject::ShardsMismatch(2),
        ),
        (
            MapCommand::Init {
                shards: 1,
                replication_factor: 1,
                nodes: [(1, addr(1))].into(),
                replicas: [(ShardId(0), set(&[1, 2]))].into(),
            },
            MapReject::UnknownNode(2),
        ),
        (
            MapCommand::Init {
                shards: 1,
                replication_factor: 1,
                nodes: [(1, addr(1)), (2, addr(1))].into(),
                replicas: [(ShardId(0), set(&[1]))].into(),
            },
            MapReject::AddressTaken {
                addr: addr(1),
                node: 1,
            },
        ),
    ];
    for (command, reject) in bad {
        let mut map = ClusterMap::default();
        assert_eq!(map.apply(&command), Err(reject), "{command:?}");
        assert_eq!(map, ClusterMap::default());
    }
}

#[test]
fn layout_marks_draining_and_down_nodes_and_takes_actual_replicas() {
    let mut map = ClusterMap::default();
    map.apply(&init(2, &[1, 2, 3], 3)).unwrap();
    map.apply(&MapCommand::DrainNode { node: 2 }).unwrap();
    let actual: BTreeMap<ShardId, Replicas> = [(
        ShardId(1),
        Replicas {
            voters: set(&[1, 2]),
            learners: set(&[3]),
            leader: Some(2),
        },
    )]
    .into();
    assert_eq!(
        map.layout(&set(&[3]), &actual),
        Layout {
            nodes: [
                (1, NodeState::Live),
                (2, NodeState::Draining),
                (3, NodeState::Down)
            ]
            .into(),
            shards: [
                (
                    ShardId(0),
                    Replicas {
                        voters: set(&[1, 2, 3]),
                        learners: set(&[]),
                        leader: None,
                    }
                ),
                (ShardId(1), actual[&ShardId(1)].clone()),
            ]
            .into(),
        }
    );
}

fn command() -> impl Strategy<Value = MapCommand> {
    let n = 1u64..8;
    prop_oneof![
        (
            1u32..4,
            proptest::collection::btree_set(1u64..5, 1..4),
            0usize..5
        )
            .prop_map(|(shards, nodes, rf)| {
                let nodes: Vec<u64> = nodes.into_iter().collect();
                init(shards, &nodes, rf)
            }),
        (n.clone(), 1u64..9).prop_map(|(node, a)| MapCommand::AddNode {
            node,
            addr: addr(a),
        }),
        n.clone().prop_map(|node| MapCommand::DrainNode { node }),
        n.clone().prop_map(|node| MapCommand::RemoveNode { node }),
        (
            0u32..4,
            proptest::collection::btree_set(1u64..8, 0..5),
            proptest::option::of(0u64..12)
        )
            .prop_map(|(s, replicas, if_version)| MapCommand::SetShardReplicas {
                shard: ShardId(s),
                replicas,
                if_version,
            }),
        (0u32..4, proptest::collection::btree_set(1u64..8, 0..5)).prop_map(|(s, replicas)| {
            MapCommand::ShardSettled {
                shard: ShardId(s),
                replicas,
            }
        }),
        (
            0u32..6,
            0u64..5,
            0u64..4,
            proptest::collection::vec(0u32..4, 0..3)
        )
            .prop_map(|(s, modulus, residue, markets)| MapCommand::SplitShard {
                parent: ShardId(s),
                modulus,
                residue,
                markets: markets.into_iter().map(MarketId).collect(),
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any stream of commands: every accepted one bumps the version by one, every refused
    /// one changes nothing, the invariants hold after each (`apply` asserts them), a
    /// draining node never gains a replica, and replaying the accepted commands on a new
    /// map gives the same map.
    #[test]
    fn random_commands_keep_the_map_valid(commands in proptest::collection::vec(command(), 1..60)) {
        let mut map = ClusterMap::default();
        let mut accepted = Vec::new();
        for c in &commands {
            let before = map.clone();
            match map.apply(c) {
                Ok(v) => {
                    prop_assert_eq!(v, before.version + 1);
                    prop_assert_eq!(map.version, v);
                    for (s, set) in &map.shards {
                        let gained = set.difference(before.shards.get(s).unwrap_or(&BTreeSet::new())).copied().collect::<Vec<_>>();
                        if before.is_initialised() {
                            for n in gained {
                                prop_assert!(!before.nodes[&n].draining, "draining node {} gained shard {}", n, s);
                            }
                        }
                        // Only a settled move lets a node that may hold a replica go.
                        let dropped: Vec<_> = before.holders(*s).difference(&map.holders(*s)).copied().collect();
                        if !matches!(c, MapCommand::ShardSettled { .. }) {
                            prop_assert!(dropped.is_empty(), "{} dropped holders {:?} of shard {}", c, dropped, s);
                        }
                    }
                    // Every account lives on a shard the map places.
                    let placement = map.placement();
                    for a in 0..64 {
                        let s = placement.account_shard(AccountId(a));
                        prop_assert!(map.shards.contains_key(&s), "account {} on shard {}", a, s);
                    }
                    // The same split again is refused, naming the child it made.
                    if let MapCommand::SplitShard { parent, .. } = c {
                        let mut again = map.clone();
                        let child = map.shards.len() as u32 - 1;
                        prop_assert_eq!(
                            again.apply(c),
                            Err(MapReject::SplitExists { parent: parent.0, child })
                        );
                        prop_assert_eq!(&again, &map);
                    }
                    accepted.push(c.clone());
                }
                Err(_) => prop_assert_eq!(&map, &before),
            }
            map.validate();
        }
        let mut replayed = ClusterMap::default();
        for c in &accepted {
            replayed.apply(c).unwrap();
        }
        prop_assert_eq!(replayed, map);
    }
}

#[test]
fn a_grown_target_is_a_move_until_it_settles() {
    let mut map = ClusterMap::default();
    map.apply(&init(1, &[1, 2, 3], 3)).unwrap();
    let add = MapCommand::AddNode {
        node: 4,
        addr: addr(4),
    };
    map.apply(&add).unwrap();
    let same = MapCommand::SetShardReplicas {
        shard: ShardId(0),
        replicas: set(&[1, 2, 3]),
        if_version: None,
    };
    assert_eq!(map.apply(&same), Ok(3));
    assert!(map.is_settled(), "an unchanged target is no move");
    let grow = MapCommand::SetShardReplicas {
        shard: ShardId(0),
        replicas: set(&[1, 2, 3, 4]),
        if_version: None,
    };
    assert_eq!(map.apply(&grow), Ok(4));
    assert_eq!(map.leaving, [(ShardId(0), set(&[]))].into());
    assert!(!map.is_settled());
    let done = MapCommand::ShardSettled {
        shard: ShardId(0),
        replicas: set(&[1, 2, 3, 4]),
    };
    assert_eq!(map.apply(&done), Ok(5));
    assert!(map.is_settled());
    assert_eq!(map.shards_of(4), [ShardId(0)].into());
}

fn split(parent: u32, modulus: u64, residue: u64, markets: &[u32]) -> MapCommand {
    MapCommand::SplitShard {
        parent: ShardId(parent),
        modulus,
        residue,
        markets: markets.iter().copied().map(MarketId).collect(),
    }
}

#[test]
fn a_split_names_the_next_shard_on_the_parents_replicas() {
    let mut map = ClusterMap::default();
    map.apply(&init(2, &[1, 2, 3, 4], 2)).unwrap();
    let one_on = |map: &mut ClusterMap, s: u32, nodes: &[u64]| {
        let v = map.version;
        map.apply(&MapCommand::SetShardReplicas {
            shard: ShardId(s),
            replicas: set(nodes),
            if_version: Some(v),
        })
        .unwrap();
        map.apply(&MapCommand::ShardSettled {
            shard: ShardId(s),
            replicas: set(nodes),
        })
        .unwrap();
    };
    one_on(&mut map, 1, &[3, 4]);
    let v = map.version;
    assert_eq!(map.apply(&split(1, 4, 3, &[7])), Ok(v + 1));
    // A child of the child, markets only.
    assert_eq!(map.apply(&split(2, 0, 0, &[7])), Ok(v + 2));
    let made = vec![
        Split {
            parent: ShardId(1),
            child: ShardId(2),
            modulus: 4,
            residue: 3,
            markets: vec![MarketId(7)],
        },
        Split {
            parent: ShardId(2),
            child: ShardId(3),
            modulus: 0,
            residue: 0,
            markets: vec![MarketId(7)],
        },
    ];
    assert_eq!(map.splits, made);
    assert_eq!(
        map.shards,
        [
            (ShardId(0), set(&[1, 2, 3, 4])),
            (ShardId(1), set(&[3, 4])),
            (ShardId(2), set(&[3, 4])),
            (ShardId(3), set(&[3, 4])),
        ]
        .into()
    );
    assert_eq!(map.split_of(ShardId(3)), Some(&made[1]));
    assert_eq!(map.split_of(ShardId(1)), None);
    let placement = map.placement();
    assert_eq!(placement.base_shard_count(), 2);
    assert_eq!(placement.splits(), &made[..]);
    // Of shard 1's (odd) ids, those 3 mod 4 moved.
    let shard_of = |a: u64| placement.account_shard(AccountId(a)).0;
    assert_eq!(
        (shard_of(1), shard_of(3), shard_of(5), shard_of(4)),
        (1, 2, 1, 0)
    );
    assert_eq!(placement.market_shard(MarketId(7), ShardId(1)), ShardId(3));
    assert_eq!(map.shards_of(3), [0, 1, 2, 3].map(ShardId).into());
    assert_eq!(map.shards_of(1), [ShardId(0)].into());
    map.check().unwrap();
    assert_eq!(
        split(1, 4, 3, &[]).to_string(),
        "split shard 1: accounts with id % 4 == 3 move to a new shard"
    );
    assert_eq!(
        split(1, 2, 0, &[1, 2]).to_string(),
        "split shard 1: accounts with id % 2 == 0 and markets [1, 2] move to a new shard"
    );
}

#[test]
fn split_refusals_change_nothing() {
    let mut map = ClusterMap::default();
    assert_eq!(
        map.apply(&split(0, 2, 0, &[])),
        Err(MapReject::NotInitialised)
    );
    map.apply(&init(2, &[1, 2, 3], 3)).unwrap();
    map.apply(&MapCommand::SetShardReplicas {
        shard: ShardId(1),
        replicas: set(&[1, 2]),
        if_version: None,
    })
    .unwrap();
    map.apply(&MapCommand::AddNode {
        node: 4,
        addr: addr(4),
    })
    .unwrap();
    let before = map.clone();
    let cases = [
        (split(2, 2, 0, &[]), MapReject::UnknownShard(2)),
        (split(1, 2, 0, &[]), MapReject::Moving(1)),
        (
            split(0, 1, 0, &[]),
            MapReject::Split(SplitError::Rule {
                modulus: 1,
                residue: 0,
            }),
        ),
        (
            split(0, 2, 2, &[]),
            MapReject::Split(SplitError::Rule {
                modulus: 2,
                residue: 2,
            }),
        ),
        (
            split(0, 0, 0, &[]),
            MapReject::Split(SplitError::Rule {
                modulus: 0,
                residue: 0,
            }),
        ),
        (
            split(0, 2, 0, &[3, 1]),
            MapReject::Split(SplitError::Markets),
        ),
    ];
    for (command, why) in cases {
        assert_eq!(map.apply(&command), Err(why.clone()), "{command}");
        assert_eq!(map, before);
    }
    assert_eq!(MapReject::Moving(1).code(), 19);
    assert_eq!(MapReject::Split(SplitError::Markets).code(), 20);
    map.apply(&MapCommand::DrainNode { node: 3 }).unwrap();
    let before = map.clone();
    assert_eq!(map.apply(&split(0, 2, 0, &[])), Err(MapReject::Draining(3)));
    assert_eq!(map, before);
    // The placement's limit on splits.
    map.apply(&MapCommand::ShardSettled {
        shard: ShardId(1),
        replicas: set(&[1, 2]),
    })
    .unwrap();
    // A repeat of a recorded split (a retried command) is refused and names its child.
    map.apply(&split(1, 100, 0, &[])).unwrap();
    let before = map.clone();
    let repeat = map.apply(&split(1, 100, 0, &[]));
    assert_eq!(
        repeat,
        Err(MapReject::SplitExists {
            parent: 1,
            child: 2
        })
    );
    assert_eq!(repeat.unwrap_err().code(), 21);
    assert_eq!(map, before);
    // Another rule on the same shard is a new split.
    let mut made = 1;
    while map.apply(&split(1, 100 + made as u64, 0, &[])).is_ok() {
        made += 1;
    }
    assert_eq!(made, tradelog_domain::SPLITS_MAX);
    let before = map.clone();
    assert_eq!(
        map.apply(&split(1, 999, 0, &[])),
        Err(MapReject::Split(SplitError::TooMany))
    );
    assert_eq!(map, before);
    assert_eq!(map.shards.len(), 2 + made);
}
