//! Whole-output tests of the policy on small layouts worked out by hand.

use super::*;
use NodeState::{Down, Draining, Live};
use Step::{AddLearner, Promote, Remove, TransferLeader};

fn set(nodes: &[NodeId]) -> BTreeSet<NodeId> {
    nodes.iter().copied().collect()
}

fn layout(nodes: &[(NodeId, NodeState)], shards: &[(&[NodeId], Option<NodeId>)]) -> Layout {
    Layout {
        nodes: nodes.iter().copied().collect(),
        shards: shards
            .iter()
            .enumerate()
            .map(|(s, (voters, leader))| {
                (
                    ShardId(s as u32),
                    Replicas {
                        voters: set(voters),
                        learners: BTreeSet::new(),
                        leader: *leader,
                    },
                )
            })
            .collect(),
    }
}

fn shard_plan(shard: u32, steps: &[Step]) -> ShardPlan {
    ShardPlan {
        shard: ShardId(shard),
        steps: steps.to_vec(),
    }
}

#[test]
fn a_balanced_cluster_needs_no_steps() {
    let l = layout(
        &[(1, Live), (2, Live), (3, Live)],
        &[
            (&[1, 2, 3], Some(1)),
            (&[1, 2, 3], Some(2)),
            (&[1, 2, 3], Some(3)),
        ],
    );
    assert_eq!(plan(&l, 3).unwrap(), vec![]);
    let t = targets(&l, 3).unwrap();
    assert_eq!(
        t.values().map(|t| t.leader).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(t.values().all(|t| t.replicas == set(&[1, 2, 3])));
}

#[test]
fn a_joining_node_takes_its_share_of_replicas_and_leaders() {
    // 4 shards x 3 replicas on 3 nodes; node 4 joins: every node should carry 3 replicas
    // and lead one shard. The cheapest replicas move (followers, highest shard first).
    let l = layout(
        &[(1, Live), (2, Live), (3, Live), (4, Live)],
        &[
            (&[1, 2, 3], Some(1)),
            (&[1, 2, 3], Some(2)),
            (&[1, 2, 3], Some(3)),
            (&[1, 2, 3], Some(1)),
        ],
    );
    let t = targets(&l, 3).unwrap();
    let expected: BTreeMap<ShardId, Target> = [
        (0, &[1, 2, 3], 1),
        (1, &[1, 2, 4], 2),
        (2, &[2, 3, 4], 3),
        (3, &[1, 3, 4], 4),
    ]
    .into_iter()
    .map(|(s, r, leader)| {
        (
            ShardId(s),
            Target {
                replicas: set(r),
                leader,
            },
        )
    })
    .collect();
    assert_eq!(t, expected);
    assert_eq!(
        plan(&l, 3).unwrap(),
        vec![
            shard_plan(1, &[AddLearner(4), Promote(4), Remove(3)]),
            shard_plan(2, &[AddLearner(4), Promote(4), Remove(1)]),
            shard_plan(
                3,
                &[AddLearner(4), Promote(4), Remove(2), TransferLeader(4)]
            ),
        ]
    );
}

#[test]
fn a_draining_node_hands_over_its_leadership_and_its_replicas() {
    let l = layout(
        &[(1, Live), (2, Live), (3, Live), (4, Draining)],
        &[(&[1, 2, 4], Some(4)), (&[2, 3, 4], Some(2))],
    );
    assert_eq!(
        plan(&l, 3).unwrap(),
        vec![
            shard_plan(
                0,
                &[AddLearner(3), Promote(3), TransferLeader(1), Remove(4)]
            ),
            shard_plan(1, &[AddLearner(1), Promote(1), Remove(4)]),
        ]
    );
}

#[test]
fn down_replicas_are_replaced_first_and_stale_learners_removed() {
    // Shard 0: voters 1, 2 (down), 3 (down) and a learner on draining node 4; rf 3 on the
    // live nodes 1, 5, 6. The down voters go first, the learner is removed up front.
    let mut l = layout(
        &[
            (1, Live),
            (2, Down),
            (3, Down),
            (4, Draining),
            (5, Live),
            (6, Live),
        ],
        &[(&[1, 2, 3], Some(1))],
    );
    l.shards.get_mut(&ShardId(0)).unwrap().learners = set(&[4]);
    assert_eq!(
        plan(&l, 3).unwrap(),
        vec![shard_plan(
            0,
            &[
                Remove(4),
                AddLearner(5),
                Promote(5),
                Remove(2),
                AddLearner(6),
                Promote(6),
                Remove(3),
            ]
        )]
    );
}

#[test]
fn an_under_replicated_shard_is_filled_and_a_surplus_trimmed() {
    let l = layout(
        &[(1, Live), (2, Live), (3, Live)],
        &[(&[1], Some(1)), (&[1, 2, 3], Some(3))],
    );
    // rf 2: shard 0 gains the least loaded node; shard 1 keeps its leader and one more.
    assert_eq!(
        plan(&l, 2).unwrap(),
        vec![
            shard_plan(0, &[AddLearner(2), Promote(2)]),
            shard_plan(1, &[Remove(2)]),
        ]
    );
}

#[test]
fn a_learner_already_on_a_target_node_is_promoted_not_added_again() {
    let mut l = layout(&[(1, Live), (2, Live)], &[(&[1], Some(1))]);
    l.shards.get_mut(&ShardId(0)).unwrap().learners = set(&[2]);
    assert_eq!(plan(&l, 2).unwrap(), vec![shard_plan(0, &[Promote(2)])]);
}

#[test]
fn layouts_that_cannot_be_placed_are_refused_by_name() {
    let ok = layout(&[(1, Live), (2, Live), (3, Down)], &[(&[1, 2], Some(1))]);
    assert_eq!(
        plan(&ok, 0),
        Err(PlacementError::ReplicationFactor { rf: 0 })
    );
    assert_eq!(
        plan(&ok, REPLICATION_FACTOR_MAX + 1),
        Err(PlacementError::ReplicationFactor {
            rf: REPLICATION_FACTOR_MAX + 1
        })
    );
    assert_eq!(
        plan(&ok, 3),
        Err(PlacementError::NotEnoughNodes { rf: 3, live: 2 })
    );
    let unknown = layout(&[(1, Live)], &[(&[1, 9], Some(1))]);
    assert_eq!(
        plan(&unknown, 1),
        Err(PlacementError::UnknownNode { shard: 0, node: 9 })
    );
    let empty = layout(&[(1, Live)], &[(&[], None)]);
    assert_eq!(plan(&empty, 1), Err(PlacementError::NoVoters { shard: 0 }));
    let mut both = layout(&[(1, Live), (2, Live)], &[(&[1, 2], None)]);
    both.shards.get_mut(&ShardId(0)).unwrap().learners = set(&[2]);
    assert_eq!(
        plan(&both, 1),
        Err(PlacementError::VoterAndLearner { shard: 0, node: 2 })
    );
    let leader = layout(&[(1, Live), (2, Live)], &[(&[1], Some(2))]);
    assert_eq!(
        plan(&leader, 1),
        Err(PlacementError::LeaderNotVoter {
            shard: 0,
            leader: 2
        })
    );
    let big = Layout {
        nodes: (0..=NODES_MAX as u64).map(|n| (n, Live)).collect(),
        shards: BTreeMap::new(),
    };
    assert_eq!(
        plan(&big, 1),
        Err(PlacementError::TooLarge {
            nodes: NODES_MAX + 1,
            shards: 0
        })
    );
}

#[test]
fn steps_that_do_not_fit_are_refused_and_change_nothing() {
    let l = layout(
        &[(1, Live), (2, Live), (3, Draining)],
        &[(&[1, 2], Some(1)), (&[1], Some(1))],
    );
    let s0 = ShardId(0);
    let cases = [
        (ShardId(7), AddLearner(3), StepError::UnknownShard(7)),
        (s0, AddLearner(9), StepError::UnknownNode(9)),
        (s0, AddLearner(2), StepError::AlreadyMember(2)),
        (s0, AddLearner(3), StepError::NotLive(3)),
        (s0, Promote(2), StepError::NotLearner(2)),
        (s0, TransferLeader(3), StepError::NotVoter(3)),
        (s0, Remove(3), StepError::NotMember(3)),
        (s0, Remove(1), StepError::RemovesLeader(1)),
        (ShardId(1), Remove(1), StepError::RemovesLeader(1)),
    ];
    for (shard, step, err) in cases {
        let mut after = l.clone();
        assert_eq!(after.apply(shard, step), Err(err), "{step:?}");
        assert_eq!(after, l, "{step:?} changed the layout");
    }
    let mut last = layout(&[(1, Live)], &[(&[1], None)]);
    assert_eq!(last.apply(s0, Remove(1)), Err(StepError::LastVoter(1)));
}

#[test]
fn steps_do_what_they_say() {
    let mut l = layout(&[(1, Live), (2, Live)], &[(&[1], Some(1))]);
    let s = ShardId(0);
    l.apply(s, AddLearner(2)).unwrap();
    assert_eq!(l.shards[&s].learners, set(&[2]));
    l.apply(s, Promote(2)).unwrap();
    assert_eq!(
        l.shards[&s],
        Replicas {
            voters: set(&[1, 2]),
            learners: set(&[]),
            leader: Some(1)
        }
    );
    l.apply(s, TransferLeader(2)).unwrap();
    l.apply(s, Remove(1)).unwrap();
    assert_eq!(
        l.shards[&s],
        Replicas {
            voters: set(&[2]),
            learners: set(&[]),
            leader: Some(2)
        }
    );
}

fn replicas(voters: &[NodeId], learners: &[NodeId], leader: NodeId) -> Replicas {
    Replicas {
        voters: set(voters),
        learners: set(learners),
        leader: Some(leader),
    }
}

#[test]
fn next_step_moves_a_replica_one_change_at_a_time() {
    // Shard on {1,2,3} led by 1, target {2,3,4}: add 4, wait, promote, then 1 hands over.
    let t = set(&[2, 3, 4]);
    let none = set(&[]);
    let steps = [
        (replicas(&[1, 2, 3], &[], 1), &none, Some(AddLearner(4))),
        (replicas(&[1, 2, 3], &[4], 1), &none, None),
        (replicas(&[1, 2, 3], &[4], 1), &set(&[4]), Some(Promote(4))),
        (
            replicas(&[1, 2, 3, 4], &[], 1),
            &none,
            Some(TransferLeader(2)),
        ),
        // The new leader (2) removes 1.
        (replicas(&[1, 2, 3, 4], &[], 2), &none, Some(Remove(1))),
        (replicas(&[2, 3, 4], &[], 2), &none, None),
    ];
    for (now, caught_up, want) in steps {
        let leader = now.leader.unwrap();
        assert_eq!(next_step(leader, &t, &now, caught_up), want, "{now:?}");
    }
    assert!(settled(&t, &replicas(&[2, 3, 4], &[], 2)));
    assert!(!settled(&t, &replicas(&[2, 3, 4], &[5], 2)));
    // A stale learner goes first; a non-leader voter goes before the leader hands over.
    assert_eq!(
        next_step(1, &t, &replicas(&[1, 2, 3], &[5], 1), &set(&[5])),
        Some(Remove(5))
    );
    assert_eq!(
        next_step(1, &set(&[1, 2]), &replicas(&[1, 2, 3], &[], 1), &none),
        Some(Remove(3))
    );
}
