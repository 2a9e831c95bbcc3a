//! Replay determinism: replaying a shard's input log gives byte-identical events and the
//! same state hash; a snapshot taken anywhere plus the rest of the log gives the same
//! state; snapshots are canonical and damaged ones are refused.

use crate::common::sim::{start, step, Sim};
use crate::common::*;
use proptest::prelude::*;
use tradelog_domain::*;
use tradelog_engine::{Engine, Placement, SnapshotError};

fn replay(shard: u32, n: u32, log: &[tradelog_engine::Input]) -> (Engine, Vec<EventRecord>) {
    let mut e = Engine::new(ShardId(shard), Placement::new(n));
    let mut out = vec![];
    for input in log {
        e.apply(input, &mut out);
    }
    (e, out)
}

fn workload(ops: &[Op], seed: u64) -> Sim {
    let mut sim = Sim::new(3, Some(seed));
    start(&mut sim, [ShardId(1), ShardId(2)]);
    for i in 0..ops.len() {
        step(&mut sim, ops, i);
    }
    sim
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn replay_and_snapshot_restore_reproduce_state(
        ops in prop::collection::vec(op(), 1..100),
        seed in any::<u64>(),
        cut in 0.0..1.0f64,
    ) {
        let sim = workload(&ops, seed);
        for s in 0..3u32 {
            let log = &sim.logs[s as usize];
            let live = &sim.shards[s as usize];
            // Full replay: identical events (as bytes) and identical state.
            let (replayed, events) = replay(s, 3, log);
            prop_assert_eq!(
                tradelog_codec::encode(&events),
                tradelog_codec::encode(&sim.shard_events[s as usize])
            );
            prop_assert_eq!(replayed.state_hash(), live.state_hash());
            prop_assert_eq!(replayed.snapshot(), live.snapshot());
            // Snapshot at an arbitrary point, restore, replay the rest.
            let at = ((log.len() as f64) * cut) as usize;
            let (prefix, _) = replay(s, 3, &log[..at]);
            let mut restored = Engine::restore(&prefix.snapshot()).expect("restore");
            prop_assert_eq!(restored.state_hash(), prefix.state_hash());
            let mut out = vec![];
            for input in &log[at..] {
                restored.apply(input, &mut out);
            }
            prop_assert_eq!(restored.state_hash(), live.state_hash());
        }
    }
}

#[test]
fn different_histories_have_different_hashes() {
    let ops = vec![Op::Deposit {
        account: 1,
        asset: USD,
        amount: 5,
    }];
    let a = workload(&ops, 1);
    let ops = vec![Op::Deposit {
        account: 1,
        asset: USD,
        amount: 6,
    }];
    let b = workload(&ops, 1);
    assert_ne!(a.shards[1].state_hash(), b.shards[1].state_hash());
    // The untouched shards are equal.
    assert_eq!(a.shards[2].state_hash(), b.shards[2].state_hash());
}

#[test]
fn damaged_snapshots_are_refused() {
    let ops = vec![
        Op::Place {
            account: 1,
            market: 1,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: 10_000,
            qty: 20,
            post_only: false,
            stp: SelfTradePrevention::CancelResting,
        },
        Op::Transfer {
            from: 1,
            to: 2,
            asset: USD,
            amount: 77,
            balancing: false,
        },
    ];
    let sim = workload(&ops, 3);
    let snap = sim.shards[1].snapshot();
    assert!(Engine::restore(&snap).is_ok());
    // Every single-byte change is detected (checksum or header).
    for i in (0..snap.len()).step_by(7) {
        let mut bad = snap.clone();
        bad[i] ^= 0x5a;
        assert!(
            Engine::restore(&bad).is_err(),
            "damage at byte {i} accepted"
        );
    }
    // Truncation.
    assert!(matches!(
        Engine::restore(&snap[..snap.len() - 1]),
        Err(SnapshotError::Codec(_))
    ));
}
