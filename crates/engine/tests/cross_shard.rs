//! The same random workload on 1 shard and on 4 shards (messages delivered in random
//! interleavings across channels, duplicated, attempted out of order, acknowledged late,
//! shards restarted from snapshots mid-flight) ends every step with identical balances,
//! fills, cancellations and books; every invariant holds after every input.

mod common;

use common::sim::lockstep;
use common::*;
use proptest::prelude::*;

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
}

/// A fixed, long workload so that the adversarial deliverer is exercised whatever
/// proptest draws: checks that it really delivered duplicates, gaps and restarts.
#[test]
fn adversarial_delivery_is_exercised() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let ops = prop::collection::vec(op(), 1_500)
        .new_tree(&mut runner)
        .unwrap()
        .current();
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
