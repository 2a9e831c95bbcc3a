//! Property tests of the placement policy: for random layouts, following the plan step by
//! step never drops a shard below `min(its voters, rf)` voters and never fails a step,
//! ends exactly on the targets, balanced, and a settled layout plans nothing; through random
//! joins, drains, failures and returns the cluster stays balanced, and a join moves exactly
//! the new node's share. The reconciler's [`next_step`], followed from any group towards
//! any target with learners catching up at random, is never refused, keeps the voters at
//! or above `min(voters now, target)` and ends settled.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use tradelog_domain::ShardId;
use tradelog_placement::{
    next_step, plan, settled, targets, Layout, NodeId, NodeState, PlacementError, Replicas, Step,
};

fn state() -> impl Strategy<Value = NodeState> {
    prop_oneof![
        6 => Just(NodeState::Live),
        1 => Just(NodeState::Draining),
        1 => Just(NodeState::Down),
    ]
}

/// A layout of up to 8 nodes and 12 shards, each shard with a non-empty voter set, some
/// learners and maybe a leader, anywhere (including on draining and down nodes).
fn layout() -> impl Strategy<Value = Layout> {
    (1usize..=8, 1usize..=12)
        .prop_flat_map(|(nodes, shards)| {
            let states = proptest::collection::vec(state(), nodes);
            let shard = (
                proptest::collection::vec(0u8..3, nodes),
                any::<proptest::sample::Index>(),
                any::<bool>(),
            );
            (states, proptest::collection::vec(shard, shards))
        })
        .prop_map(|(states, shards)| {
            let nodes: BTreeMap<NodeId, NodeState> = states
                .iter()
                .enumerate()
                .map(|(i, s)| (i as NodeId + 1, *s))
                .collect();
            let shards = shards
                .into_iter()
                .enumerate()
                .map(|(s, (roles, pick, led))| {
                    // role 0: none, 1: voter, 2: learner; at least one voter.
                    let mut voters: BTreeSet<NodeId> = BTreeSet::new();
                    let mut learners = BTreeSet::new();
                    for (i, role) in roles.iter().enumerate() {
                        match role {
                            1 => {
                                voters.insert(i as NodeId + 1);
                            }
                            2 => {
                                learners.insert(i as NodeId + 1);
                            }
                            _ => {}
                        }
                    }
                    if voters.is_empty() {
                        let n = pick.index(roles.len()) as NodeId + 1;
                        learners.remove(&n);
                        voters.insert(n);
                    }
                    let list: Vec<NodeId> = voters.iter().copied().collect();
                    let leader = led.then(|| *pick.get(&list));
                    (
                        ShardId(s as u32),
                        Replicas {
                            voters,
                            learners,
                            leader,
                        },
                    )
                })
                .collect();
            Layout { nodes, shards }
        })
}

/// Follows `plan(layout, rf)` step by step, checking each step is accepted and no shard
/// drops below `min(its voters at the start, rf)` voters; returns the layout reached.
fn follow(layout: &Layout, rf: usize) -> Layout {
    let mut at = layout.clone();
    for p in plan(layout, rf).unwrap() {
        let floor = layout.shards[&p.shard].voters.len().min(rf);
        for step in &p.steps {
            at.apply(p.shard, *step)
                .unwrap_or_else(|e| panic!("shard {:?}: {step:?} refused: {e}", p.shard));
            let r = &at.shards[&p.shard];
            assert!(
                r.voters.len() >= floor,
                "shard {:?} down to {} voters after {step:?}",
                p.shard,
                r.voters.len()
            );
            assert!(r.voters.is_disjoint(&r.learners));
        }
    }
    at
}

/// The layout is where the policy wants it: every shard on `rf` live nodes with no
/// learners and a live leader, replicas per live node within one of each other, no node
/// leading more than its share, and nothing left to plan.
fn assert_settled(layout: &Layout, rf: usize) {
    let live = layout.live();
    let mut load: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    let mut led: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    for (shard, r) in &layout.shards {
        assert_eq!(r.voters.len(), rf, "shard {shard:?}: {r:?}");
        assert!(
            r.voters.is_subset(&live),
            "shard {shard:?} on a node not live"
        );
        assert!(r.learners.is_empty(), "shard {shard:?} keeps learners");
        let leader = r.leader.expect("a leader");
        assert!(r.voters.contains(&leader));
        *led.get_mut(&leader).unwrap() += 1;
        for v in &r.voters {
            *load.get_mut(v).unwrap() += 1;
        }
    }
    let (lo, hi) = (load.values().min().unwrap(), load.values().max().unwrap());
    assert!(hi - lo <= 1, "replica loads {load:?}");
    let share = layout.shards.len().div_ceil(live.len());
    assert!(
        led.values().all(|n| *n <= share),
        "leaders {led:?}, share {share}"
    );
    if rf == live.len() {
        let (lo, hi) = (led.values().min().unwrap(), led.values().max().unwrap());
        assert!(
            hi - lo <= 1,
            "every node holds every shard, leaders {led:?}"
        );
    }
    assert_eq!(plan(layout, rf).unwrap(), vec![], "a settled layout plans");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn following_a_plan_reaches_the_targets_safely(l in layout(), rf in 1usize..=4) {
        let live = l.live().len();
        match targets(&l, rf) {
            Err(PlacementError::NotEnoughNodes { rf: r, live: n }) => {
                prop_assert!(live < rf);
                prop_assert_eq!((r, n), (rf, live));
                return Ok(());
            }
            Err(e) => panic!("{e}"),
            Ok(t) => {
                let end = follow(&l, rf);
                for (shard, target) in &t {
                    let r = &end.shards[shard];
                    prop_assert_eq!(&r.voters, &target.replicas);
                    prop_assert_eq!(r.leader, Some(target.leader));
                }
                assert_settled(&end, rf);
                // Deterministic: the same layout, the same plan.
                prop_assert_eq!(plan(&l, rf).unwrap(), plan(&l.clone(), rf).unwrap());
            }
        }
    }

    #[test]
    fn joins_leaves_and_failures_keep_the_cluster_balanced(
        start in layout(),
        rf in 1usize..=3,
        events in proptest::collection::vec((0u8..4, any::<proptest::sample::Index>()), 1..12),
    ) {
        // Start from a settled cluster on the live nodes (one more joins if needed).
        let mut l = start;
        while l.live().len() < rf {
            let id = l.nodes.keys().max().unwrap() + 1;
            l.nodes.insert(id, NodeState::Live);
        }
        l = follow(&l, rf);
        assert_settled(&l, rf);
        for (kind, pick) in events {
            let live: Vec<NodeId> = l.live().into_iter().collect();
            let out: Vec<NodeId> = l
                .nodes
                .iter()
                .filter(|(_, s)| **s != NodeState::Live)
                .map(|(n, _)| *n)
                .collect();
            let mut joined = None;
            match kind {
                0 => {
                    let id = l.nodes.keys().max().unwrap() + 1;
                    l.nodes.insert(id, NodeState::Live);
                    joined = Some(id);
                }
                1 | 2 if live.len() > rf => {
                    let n = *pick.get(&live);
                    let s = if kind == 1 { NodeState::Draining } else { NodeState::Down };
                    l.nodes.insert(n, s);
                }
                3 if !out.is_empty() => {
                    l.nodes.insert(*pick.get(&out), NodeState::Live);
                }
                _ => continue,
            }
            let steps = plan(&l, rf).unwrap();
            l = follow(&l, rf);
            assert_settled(&l, rf);
            if let Some(id) = joined {
                // A join into a settled cluster only moves replicas to the new node, and
                // exactly as many as it ends up carrying.
                let added: Vec<NodeId> = steps
                    .iter()
                    .flat_map(|p| &p.steps)
                    .filter_map(|s| match s { Step::AddLearner(n) => Some(*n), _ => None })
                    .collect();
                let carried = l.shards.values().filter(|r| r.voters.contains(&id)).count();
                prop_assert!(added.iter().all(|n| *n == id), "{:?}", added);
                prop_assert_eq!(added.len(), carried);
            }
        }
    }
}

/// At the size limits the policy is meant for: every shard of `SHARD_COUNT_MAX` on nodes
/// 1-3, led by node 1, then 97 more nodes: the plan settles the cluster.
#[test]
fn the_largest_cluster_settles() {
    let shards = tradelog_domain::SHARD_COUNT_MAX;
    let l = Layout {
        nodes: (1..=100).map(|n| (n, NodeState::Live)).collect(),
        shards: (0..shards)
            .map(|s| {
                (
                    ShardId(s),
                    Replicas {
                        voters: [1, 2, 3].into_iter().collect(),
                        learners: BTreeSet::new(),
                        leader: Some(1),
                    },
                )
            })
            .collect(),
    };
    let end = follow(&l, 3);
    assert_settled(&end, 3);
}

/// Every new cluster up to 9 nodes and 12 shards, every factor it allows: each shard on
/// `rf` distinct members, its leader one of them, replica loads and leaderships per node
/// within one of each other; too few nodes or a factor out of range refused.
#[test]
fn a_new_cluster_is_placed_evenly() {
    use tradelog_placement::{initial_targets, REPLICATION_FACTOR_MAX};
    for n in 1..=9u64 {
        let nodes: BTreeSet<NodeId> = (1..=n).map(|k| k * 10).collect();
        for shards in 1..=12u32 {
            for rf in 1..=REPLICATION_FACTOR_MAX {
                let placed = initial_targets(&nodes, shards, rf);
                if rf > n as usize {
                    assert_eq!(
                        placed,
                        Err(PlacementError::NotEnoughNodes {
                            rf,
                            live: n as usize
                        })
                    );
                    continue;
                }
                let placed = placed.unwrap();
                assert_eq!(placed.len(), shards as usize);
                let mut load: BTreeMap<NodeId, usize> = nodes.iter().map(|k| (*k, 0)).collect();
                let mut led = load.clone();
                for t in placed.values() {
                    assert_eq!(t.replicas.len(), rf);
                    assert!(t.replicas.is_subset(&nodes));
                    assert!(t.replicas.contains(&t.leader));
                    for r in &t.replicas {
                        *load.get_mut(r).unwrap() += 1;
                    }
                    *led.get_mut(&t.leader).unwrap() += 1;
                }
                let spread = |m: &BTreeMap<NodeId, usize>| {
                    m.values().max().unwrap() - m.values().min().unwrap()
                };
                let case = format!("{n} nodes, {shards} shards, rf {rf}: {placed:?}");
                assert!(spread(&load) <= 1, "replicas: {case}");
                assert!(spread(&led) <= 1, "leaders: {case}");
                // The same arguments, the same placement (every member computes it).
                assert_eq!(initial_targets(&nodes, shards, rf).unwrap(), placed);
            }
        }
    }
    assert_eq!(
        initial_targets(&BTreeSet::from([1]), 1, 0),
        Err(PlacementError::ReplicationFactor { rf: 0 })
    );
    assert!(matches!(
        initial_targets(
            &BTreeSet::from([1]),
            tradelog_domain::SHARD_COUNT_MAX + 1,
            1
        ),
        Err(PlacementError::TooLarge { .. })
    ));
}

/// Preferred leaders of every new cluster's placement (up to 9 nodes, 12 shards, every
/// factor): one of each shard's replicas, and leaderships per node within one of each
/// other, as the formation's.
#[test]
fn preferred_leaders_of_a_new_cluster_are_even() {
    use tradelog_placement::{initial_targets, preferred_leaders, REPLICATION_FACTOR_MAX};
    for n in 1..=9u64 {
        let nodes: BTreeSet<NodeId> = (1..=n).collect();
        for shards in 1..=12u32 {
            for rf in 1..=REPLICATION_FACTOR_MAX.min(n as usize) {
                let sets: BTreeMap<ShardId, BTreeSet<NodeId>> = initial_targets(&nodes, shards, rf)
                    .unwrap()
                    .into_iter()
                    .map(|(s, t)| (s, t.replicas))
                    .collect();
                let leaders = preferred_leaders(&sets);
                assert_eq!(leaders.len(), shards as usize);
                let mut led: BTreeMap<NodeId, usize> = nodes.iter().map(|k| (*k, 0)).collect();
                for (s, l) in &leaders {
                    assert!(sets[s].contains(l), "{s}: {l} of {:?}", sets[s]);
                    *led.get_mut(l).unwrap() += 1;
                }
                let spread = led.values().max().unwrap() - led.values().min().unwrap();
                assert!(
                    spread <= 1,
                    "{n} nodes, {shards} shards, rf {rf}: {leaders:?}"
                );
            }
        }
    }
}

proptest! {
    /// Any replica sets: each leader is one of its shard's replicas, the same sets always
    /// give the same leaders, and no node leads two more shards than another replica of
    /// a shard it leads (it could hand that one over).
    #[test]
    fn preferred_leaders_are_replicas_and_locally_even(
        sets in proptest::collection::btree_map(
            (0u32..16).prop_map(ShardId),
            proptest::collection::btree_set(1u64..=7, 1..=4),
            1..16,
        )
    ) {
        use tradelog_placement::preferred_leaders;
        let leaders = preferred_leaders(&sets);
        prop_assert_eq!(&preferred_leaders(&sets), &leaders);
        prop_assert_eq!(leaders.len(), sets.len());
        let mut led: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (s, l) in &leaders {
            prop_assert!(sets[s].contains(l));
            *led.entry(*l).or_default() += 1;
        }
        for (s, l) in &leaders {
            for other in &sets[s] {
                let theirs = led.get(other).copied().unwrap_or(0);
                prop_assert!(
                    led[l] <= theirs + 1,
                    "{} leads {} shards, {} (a replica of {}) leads {}", l, led[l], other, s, theirs
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn following_next_step_settles_any_group_on_any_target(
        l in layout(),
        target_bits in 1u16..256,
        catch_up in proptest::collection::vec(any::<bool>(), 64),
    ) {
        let nodes: Vec<NodeId> = l.nodes.keys().copied().collect();
        let target: BTreeSet<NodeId> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| target_bits & (1 << (i % 8)) != 0)
            .map(|(_, n)| *n)
            .collect();
        prop_assume!(!target.is_empty() && target.len() <= 7);
        let shard = ShardId(0);
        let mut start = l.shards[&shard].clone();
        if start.leader.is_none() {
            start.leader = start.voters.iter().next().copied();
        }
        let mut at = Layout {
            nodes: l.nodes.keys().map(|n| (*n, NodeState::Live)).collect(),
            shards: [(shard, start.clone())].into(),
        };
        let floor = start.voters.len().min(target.len());
        let mut caught_up = BTreeSet::new();
        let mut steps = 0;
        for round in 0.. {
            prop_assert!(round < 200, "no end: {:?}", at.shards[&shard]);
            // Learners catch up at random moments.
            let r = at.shards[&shard].clone();
            // (After every pattern has been used, all of them, so the walk ends.)
            if catch_up[round % catch_up.len()] || round > catch_up.len() {
                caught_up.extend(r.learners.iter().copied());
            }
            let me = r.leader.expect("a leader");
            let Some(step) = next_step(me, &target, &r, &caught_up) else {
                if settled(&target, &r) {
                    break;
                }
                prop_assert!(!r.learners.is_empty(), "stuck at {r:?}");
                prop_assert!(r.learners.iter().all(|n| !caught_up.contains(n)));
                continue;
            };
            steps += 1;
            if let Step::Remove(n) = step {
                caught_up.remove(&n);
            }
            at.apply(shard, step)
                .unwrap_or_else(|e| panic!("{step:?} on {r:?} refused: {e}"));
            let r = &at.shards[&shard];
            prop_assert!(r.voters.len() >= floor, "{} voters after {step:?}", r.voters.len());
            prop_assert!(r.voters.is_disjoint(&r.learners));
        }
        // At most: remove every stale learner, add and promote every target node, remove
        // every other voter, one handover.
        let bound = start.learners.len() + 2 * target.len() + start.voters.len() + 1;
        prop_assert!(steps <= bound, "{steps} steps, bound {bound}");
    }
}
