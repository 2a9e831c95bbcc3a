//! The same random workload on 1 shard and on 4 shards (messages delivered in random
//! interleavings across channels, duplicated, attempted out of order, acknowledged late,
//! shards restarted from snapshots mid-flight) ends every step with identical balances,
//! fills, cancellations and books; every invariant holds after every input.

use crate::common::sim::{lockstep, lockstep_splitting, PlannedSplit};
use crate::common::*;
use proptest::prelude::*;
use tradelog_domain::{AccountId, MarketId, ShardId};
use tradelog_engine::{Engine, Placement};

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(128),
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn one_shard_and_four_shards_agree(ops in prop::collection::vec(op(), 1..120), seed in any::<u64>()) {
        lockstep(&ops, seed);
    }

    /// Splitting shards while their messages are in flight (a split's child split again,
    /// too) changes no balance, fill, cancellation or book.
    #[test]
    fn splits_mid_flight_change_nothing(
        ops in prop::collection::vec(op(), 1..120),
        seed in any::<u64>(),
        splits in prop::collection::vec(planned_split(), 1..4),
    ) {
        let splits: Vec<PlannedSplit> = splits
            .into_iter()
            .map(|mut p| {
                p.at %= ops.len();
                p
            })
            .collect();
        lockstep_splitting(&ops, seed, &splits);
    }
}

/// The first `len` operations the deterministic proptest generator draws.
fn fixed_workload(len: usize) -> Vec<Op> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    prop::collection::vec(op(), len)
        .new_tree(&mut runner)
        .unwrap()
        .current()
}

fn planned_split() -> impl Strategy<Value = PlannedSplit> {
    (
        any::<usize>(),
        0..40usize,
        0..8usize,
        0..5u32,
        any::<u64>(),
        0..4u8,
    )
        .prop_map(|(at, delay, parent, bits, residue, markets)| PlannedSplit {
            at,
            delay,
            parent,
            // 0: markets only.
            modulus: if bits == 0 { 0 } else { 1 << bits },
            residue,
            markets,
        })
}

/// A fixed, long workload with splits at fixed steps: messages really are forwarded, the
/// children take orders and transfers of their own, and the result equals one shard's.
#[test]
fn splits_forward_what_was_in_flight() {
    let ops = fixed_workload(800);
    // Each split comes right after a transfer from an account it moves to an account on
    // another shard, so the credit is in flight and its answer must be relayed.
    let transfer_from = |account: u64, after: usize| {
        (after..ops.len())
            .find(|&i| matches!(ops[i], Op::Transfer { from, to, .. } if from == account && to % 4 != account % 4))
            .expect("the workload has such a transfer")
    };
    // Shard 1 (accounts 1, 5, market 1) gives 5 and market 1 to shard 4; shard 3 (3, 7,
    // the fee account 999) gives 7 and 999 to shard 5; shard 5 gives 999 to shard 6;
    // shard 4 gives market 1 and no account (modulus 0) on to shard 7.
    let at = [transfer_from(5, 100), transfer_from(7, 250), 400, 550];
    let splits = [
        (at[0], 1, 8, 5, 1),
        (at[1], 3, 8, 7, 0),
        (at[2], 5, 64, 999 % 64, 0),
        (at[3], 4, 0, 0, 1),
    ]
    .map(|(at, parent, modulus, residue, markets)| PlannedSplit {
        at,
        delay: 0,
        parent,
        modulus,
        residue,
        markets,
    });
    let (one, split) = lockstep_splitting(&ops, 11, &splits);
    let owner = |a: u64| split.placement.account_shard(AccountId(a));
    assert_eq!(
        [1, 5, 3, 7, 999].map(owner),
        [1, 4, 3, 5, 6].map(ShardId),
        "where the accounts ended"
    );
    assert_eq!(
        split.placement.market_shard(MarketId(1), ShardId(1)),
        ShardId(7)
    );
    assert_eq!(
        split.shards[7].books().keys().collect::<Vec<_>>(),
        [&MarketId(1)]
    );
    assert_eq!(split.shards.len(), 8);
    for s in 4..8 {
        let e = &split.shards[s];
        assert!(
            e.inputs_applied() > 20,
            "shard {s} applied only {} inputs",
            e.inputs_applied()
        );
    }
    let s = &split.stats;
    eprintln!("{s:?}");
    assert!(s.forwarded > 10 && s.relayed >= 1, "{s:?}");
    assert_eq!(one.summary(), split.summary());
    // Every shard's log replays to its state: the base shards' from empty (their splits
    // are inputs of their logs), the children's from the state their split made.
    for (s, e) in split.shards.iter().enumerate() {
        let mut r = match split.initial.get(&s) {
            Some(snapshot) => Engine::restore(snapshot).expect("restore"),
            None => Engine::new(ShardId(s as u32), Placement::new(4)),
        };
        for input in &split.logs[s] {
            r.apply(input, &mut vec![]);
        }
        assert_eq!(r.state_hash(), e.state_hash(), "shard {s} replays");
    }
}

/// A fixed, long workload so that the adversarial deliverer is exercised whatever
/// proptest draws: checks that it really delivered duplicates, gaps and restarts.
#[test]
fn adversarial_delivery_is_exercised() {
    let ops = fixed_workload(1_500);
    let (one, four) = lockstep(&ops, 7);
    let s = &four.stats;
    eprintln!("{s:?}");
    assert!(
        s.delivered > 300 && s.duplicates > 10 && s.gaps > 5 && s.restarts > 5,
        "{s:?}"
    );
    let trades = one
        .summary()
        .trades
        .values()
        .map(|t| t.len())
        .sum::<usize>();
    assert!(trades > 20, "workload made too few trades: {trades}");
}
