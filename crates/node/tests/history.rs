//! History from the log, read while the shard runs: past states equal the live shard's
//! states at the same index, regenerated events equal the ones published live, and time
//! questions follow the shard clock (the running maximum of input timestamps).

use std::time::Duration;
use tradelog_domain::*;
use tradelog_engine::{Input, Placement};
use tradelog_node::history::CLOCK_MARK_EVERY_RECORDS;
use tradelog_node::{
    DurableShard, HistoryError, HistoryLimits, Node, NodeConfig, NodeHistory, ScanEnd, ShardConfig,
    ShardHistory,
};
use tradelog_storage::FileLogConfig;

fn shard_config(dir: &std::path::Path, snapshot_every: u64) -> ShardConfig {
    ShardConfig {
        dir: dir.to_path_buf(),
        shard: ShardId(0),
        placement: Placement::new(1),
        snapshot_every_records: snapshot_every,
        snapshot_interval_min_ms: 0,
        log: FileLogConfig {
            segment_bytes_max: 32 << 10,
            record_bytes_max: 4 << 10,
            ..FileLogConfig::default()
        },
        watermark_every_ms: 1_000,
    }
}

fn op(t: u64) -> Meta {
    Meta {
        timestamp: Timestamp(t),
        principal: Principal(1),
        authority: Authority::Operator,
    }
}

/// Input `i` of a mixed single-shard workload. Its timestamps are NOT monotonic: every
/// fifth input is stamped earlier than the one before it (as a message or a command
/// accepted earlier but queued later can be), and every seventh is a tick.
fn input(i: u64) -> Input {
    let t = 1_000 + i * 10 - if i % 5 == 4 { 25 } else { 0 };
    let cmd = |command| Input::Command {
        meta: op(t),
        command,
    };
    match i {
        0 => cmd(Command::CreateAsset(Asset {
            id: AssetId(1),
            code: "USD".into(),
            scale: 2,
        })),
        1 => cmd(Command::CreateAsset(Asset {
            id: AssetId(2),
            code: "BTC".into(),
            scale: 8,
        })),
        2 => cmd(Command::CreateMarket(MarketSpec {
            id: MarketId(1),
            base: AssetId(2),
            quote: AssetId(1),
            lot_size: 1,
            tick_size: 1,
            min_qty: Qty(1),
            max_qty: Qty(1_000),
            maker_fee_bps: 5,
            taker_fee_bps: 10,
            fee_account: AccountId(10),
            collar_bps: 0,
            shard: ShardId(0),
        })),
        3..=12 => cmd(Command::OpenAccount {
            account: AccountId(i - 2),
            owner: Principal(i - 2),
        }),
        13..=32 => cmd(Command::Deposit {
            id: TransferId(i),
            account: AccountId(1 + (i - 13) / 2),
            asset: AssetId(1 + (i % 2) as u32),
            amount: Amount(1_000_000),
        }),
        _ if i.is_multiple_of(7) => Input::Tick {
            timestamp: Timestamp(t),
        },
        _ if i.is_multiple_of(3) => cmd(Command::Transfer(TransferSpec {
            id: TransferId(1_000 + i),
            debit: AccountId(1 + i % 9),
            credit: AccountId(1 + (i * 7) % 9),
            asset: AssetId(1),
            amount: Amount(1 + i % 50),
            balancing: false,
        })),
        _ => cmd(Command::PlaceOrder(NewOrder {
            account: AccountId(1 + i % 9),
            market: MarketId(1),
            side: if i.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(90 + i % 20),
            qty: Qty(1 + i % 5),
            post_only: false,
            client_order_id: 0,
            stp: SelfTradePrevention::CancelResting,
        })),
    }
}

fn time_of(input: &Input) -> Timestamp {
    input.timestamp()
}

/// What the live shard did: its state hash after every index (0 = before any input) and
/// every event it published.
struct Live {
    hashes: Vec<[u8; 32]>,
    events: Vec<EventRecord>,
    inputs: Vec<Input>,
}

/// Submits inputs `from..to` one per group commit, recording the live state hash after
/// each.
fn submit(shard: &mut DurableShard, live: &mut Live, from: u64, to: u64) {
    for i in from..to {
        let inp = input(i);
        shard
            .submit(std::slice::from_ref(&inp), &mut live.events)
            .unwrap();
        live.hashes.push(shard.engine().state_hash());
        live.inputs.push(inp);
    }
}

fn collect_from_index(h: &ShardHistory, after: u64, applied: u64) -> Vec<EventRecord> {
    let mut r = h.events_after_index(after, applied).unwrap();
    let mut out = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        out.push(e);
    }
    assert_eq!(r.end(), Some(ScanEnd::Applied));
    out
}

fn collect_from_seq(h: &ShardHistory, after: u64, applied: u64, n: usize) -> Vec<EventRecord> {
    let mut r = h.events_after_seq(after, applied).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        match r.next_event().unwrap() {
            Some(e) => out.push(e),
            None => break,
        }
    }
    out
}

#[test]
fn past_states_and_events_equal_what_the_live_shard_had_and_published() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut shard, _) = DurableShard::open(shard_config(tmp.path(), 40)).unwrap();
    let mut live = Live {
        hashes: vec![shard.engine().state_hash()],
        events: Vec::new(),
        inputs: Vec::new(),
    };
    submit(&mut shard, &mut live, 0, 150);
    shard.wait_for_snapshot().unwrap();
    // Opened while the shard runs; it goes on appending afterwards.
    let history = ShardHistory::open(
        tmp.path(),
        ShardId(0),
        Placement::new(1),
        HistoryLimits::default(),
    )
    .unwrap();
    submit(&mut shard, &mut live, 150, 320);
    shard.wait_for_snapshot().unwrap();
    let applied = shard.applied_index();
    assert_eq!(applied, 320);
    assert!(live
        .events
        .iter()
        .any(|e| matches!(e.event, Event::Trade { .. })));

    // Every past state, in an order that uses snapshots, kept states and the genesis.
    let mut order: Vec<u64> = (0..=applied).rev().step_by(3).collect();
    order.extend((0..=applied).step_by(2));
    order.extend([1, 0, applied, 41, 39, 40, 80]);
    for i in order {
        let hash = history.state_at(i, applied, |e| e.state_hash()).unwrap();
        assert_eq!(live.hashes[i as usize], hash, "state at index {i}");
    }
    assert!(matches!(
        history.state_at(applied + 1, applied, |_| ()),
        Err(HistoryError::Beyond {
            index: 321,
            applied: 320,
            ..
        })
    ));

    // Regenerated events are the published ones, byte for byte.
    assert_eq!(live.events, collect_from_index(&history, 0, applied));
    for after in [0, 1, 57, 200, applied - 1, applied] {
        let want: Vec<_> = live
            .events
            .iter()
            .filter(|e| e.input > after)
            .cloned()
            .collect();
        assert_eq!(
            want,
            collect_from_index(&history, after, applied),
            "after input {after}"
        );
    }
    let last_seq = live.events.last().unwrap().seq;
    // Pages by sequence number, stopping in the middle of inputs, resume exactly.
    for page in [1usize, 7, 100] {
        let mut after = 0;
        let mut got = Vec::new();
        loop {
            let p = collect_from_seq(&history, after, applied, page);
            if p.is_empty() {
                break;
            }
            after = p.last().unwrap().seq;
            got.extend(p);
        }
        assert_eq!(live.events, got, "pages of {page}");
    }
    for after in [0, 5, last_seq / 2, last_seq - 1, last_seq] {
        let want: Vec<_> = live
            .events
            .iter()
            .filter(|e| e.seq > after)
            .take(50)
            .cloned()
            .collect();
        assert_eq!(
            want,
            collect_from_seq(&history, after, applied, 50),
            "after seq {after}"
        );
    }
    // A reader starts at the state after the index, and peeking does not consume.
    let mut r = history.events_after_index(100, applied).unwrap();
    assert_eq!(r.state().state_hash(), live.hashes[100]);
    let first = r.peek_event().unwrap().cloned();
    assert_eq!(first, r.next_event().unwrap());
    assert_eq!(first.unwrap().input, 101);
    drop(r);

    // Time: the last index whose shard clock (running maximum) is at or before t.
    let mut clock = Vec::new();
    let mut c = Timestamp(0);
    for inp in &live.inputs {
        c = c.max(time_of(inp));
        clock.push(c);
    }
    assert!(
        live.inputs
            .windows(2)
            .any(|w| time_of(&w[1]) < time_of(&w[0])),
        "the workload has timestamps that go back"
    );
    let reference = |t: Timestamp| clock.iter().take_while(|c| **c <= t).count() as u64;
    let mut times = vec![Timestamp(0), Timestamp(999), Timestamp(u64::MAX)];
    for inp in &live.inputs {
        let t = time_of(inp).0;
        times.extend([Timestamp(t - 1), Timestamp(t), Timestamp(t + 1)]);
    }
    for t in times {
        let index = history.index_at_time(t, applied).unwrap();
        assert_eq!(reference(t), index, "time {t:?}");
        // The state there holds exactly the events stamped at or before t.
        let seq = history
            .state_at(index, applied, |e| e.next_event_seq())
            .unwrap()
            - 1;
        let stamped = live.events.iter().filter(|e| e.timestamp <= t).count() as u64;
        assert_eq!(stamped, seq, "events up to {t:?}");
    }
    // Asked with an older applied index, the answer stays within it.
    assert_eq!(
        history.index_at_time(Timestamp(u64::MAX), 100).unwrap(),
        100
    );
}

#[test]
fn work_beyond_the_limits_is_refused_with_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut shard, _) = DurableShard::open(shard_config(tmp.path(), 100)).unwrap();
    let mut live = Live {
        hashes: vec![shard.engine().state_hash()],
        events: Vec::new(),
        inputs: Vec::new(),
    };
    submit(&mut shard, &mut live, 0, 250);
    shard.wait_for_snapshot().unwrap();
    let limits = HistoryLimits {
        replay_records_max: 20,
        clock_scan_records_max: 100,
        cursors_max: 0,
    };
    let history = ShardHistory::open(tmp.path(), ShardId(0), Placement::new(1), limits).unwrap();
    // Near a snapshot (100, 200): fine. Far from one: refused, naming where it would start.
    assert_eq!(
        history.state_at(115, 250, |e| e.state_hash()).unwrap(),
        live.hashes[115]
    );
    assert!(matches!(
        history.state_at(150, 250, |_| ()),
        Err(HistoryError::ReplayLimit {
            from: 100,
            max: 20,
            ..
        })
    ));
    assert!(matches!(
        history.state_at(50, 250, |_| ()),
        Err(HistoryError::ReplayLimit {
            from: 0,
            max: 20,
            ..
        })
    ));
    // A long read stops at the limit once it delivered events.
    let mut r = history.events_after_index(200, 250).unwrap();
    let mut n = 0;
    while r.next_event().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(r.end(), Some(ScanEnd::Limit));
    drop(r);
    // Before any event, running out is an error.
    let far = live.events.iter().find(|e| e.input > 150).unwrap().seq;
    assert!(matches!(
        history.events_after_seq(far, 250).unwrap().next_event(),
        Err(HistoryError::ReplayLimit { from: 100, .. })
    ));
    let want = live
        .events
        .iter()
        .filter(|e| (201..=220).contains(&e.input))
        .count();
    assert_eq!(want, n);
    // The clock index is built over several requests, each reading at most 100 records.
    for indexed in [100, 200] {
        match history.index_at_time(Timestamp(2_000), 250) {
            Err(HistoryError::ClockIndexing {
                indexed: got,
                applied: 250,
                max: 100,
                ..
            }) => assert_eq!(indexed, got),
            other => panic!("expected ClockIndexing, got {other:?}"),
        }
    }
    // Input 100 (index 101) is stamped 2_000, input 101 2_010.
    assert_eq!(history.index_at_time(Timestamp(2_000), 250).unwrap(), 101);
}

#[test]
fn the_clock_index_spans_many_marks() {
    // More records than several clock marks: the binary search over marks is used.
    let tmp = tempfile::tempdir().unwrap();
    let (mut shard, _) = DurableShard::open(shard_config(tmp.path(), 0)).unwrap();
    let n = 3 * CLOCK_MARK_EVERY_RECORDS + 100;
    let inputs: Vec<Input> = (0..n).map(input).collect();
    let mut events = Vec::new();
    for chunk in inputs.chunks(64) {
        shard.submit(chunk, &mut events).unwrap();
    }
    let history = ShardHistory::open(
        tmp.path(),
        ShardId(0),
        Placement::new(1),
        HistoryLimits::default(),
    )
    .unwrap();
    let mut clock = Vec::new();
    let mut c = Timestamp(0);
    for inp in &inputs {
        c = c.max(time_of(inp));
        clock.push(c);
    }
    for k in (0..n)
        .step_by(97)
        .chain([n - 1, 1_023, 1_024, 2_047, 2_048])
    {
        for t in [clock[k as usize].0 - 1, clock[k as usize].0] {
            let want = clock.iter().take_while(|c| c.0 <= t).count() as u64;
            assert_eq!(
                want,
                history.index_at_time(Timestamp(t), n).unwrap(),
                "time {t}"
            );
        }
    }
    // Without snapshots, the state comes from a replay from the genesis.
    assert_eq!(
        history.state_at(n, n, |e| e.state_hash()).unwrap(),
        shard.engine().state_hash()
    );
}

/// A real node (three shards, cross-shard transfers and orders, messages and acks in the
/// logs): each shard's regenerated events equal what its feed published.
#[test]
fn a_running_nodes_regenerated_events_equal_its_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(tmp.path(), 3);
    config.snapshot_every_records = 30;
    config.snapshot_interval_min_ms = 0;
    config.log.segment_bytes_max = 64 << 10;
    config.log.record_bytes_max = 16 << 10;
    let node = Node::open(config.clone()).unwrap();
    let feed = node.subscribe();
    let meta = || Meta {
        timestamp: tradelog_node::runtime::now(),
        principal: Principal(1),
        authority: Authority::Operator,
    };
    let ok = |c: Command| {
        let r = node.submit_wait(meta(), c).unwrap();
        assert!(r.outcome.result.is_ok(), "{r:?}");
    };
    for (id, code) in [(1, "USD"), (2, "BTC")] {
        ok(Command::CreateAsset(Asset {
            id: AssetId(id),
            code: code.into(),
            scale: 2,
        }));
    }
    ok(Command::CreateMarket(MarketSpec {
        id: MarketId(1),
        base: AssetId(2),
        quote: AssetId(1),
        lot_size: 1,
        tick_size: 1,
        min_qty: Qty(1),
        max_qty: Qty(1_000_000),
        maker_fee_bps: 10,
        taker_fee_bps: 20,
        fee_account: AccountId(9),
        collar_bps: 0,
        shard: ShardId(2),
    }));
    for a in 1..=9u64 {
        ok(Command::OpenAccount {
            account: AccountId(a),
            owner: Principal(a),
        });
        for asset in [1, 2] {
            ok(Command::Deposit {
                id: TransferId(a * 10 + asset),
                account: AccountId(a),
                asset: AssetId(asset as u32),
                amount: Amount(1_000_000),
            });
        }
    }
    for i in 0..60u64 {
        let a = 1 + i % 8;
        let c = if i % 2 == 0 {
            Command::Transfer(TransferSpec {
                id: TransferId(1_000 + i),
                debit: AccountId(a),
                credit: AccountId(1 + (a + 1) % 8),
                asset: AssetId(1),
                amount: Amount(10 + i),
                balancing: false,
            })
        } else {
            Command::PlaceOrder(NewOrder {
                account: AccountId(a),
                market: MarketId(1),
                side: if i % 4 == 1 { Side::Buy } else { Side::Sell },
                order_type: OrderType::Limit,
                tif: TimeInForce::Gtc,
                price: Price(100 + i % 3),
                qty: Qty(5),
                post_only: false,
                client_order_id: 0,
                stp: SelfTradePrevention::CancelResting,
            })
        };
        node.submit_wait(meta(), c).unwrap();
    }
    assert!(node.wait_quiescent(Duration::from_secs(10)));
    let history = NodeHistory::open(&config, HistoryLimits::default()).unwrap();
    assert_eq!(history.shard_count(), 3);
    let published: Vec<EventRecord> = feed.try_iter().flat_map(|b| b.to_vec()).collect();
    assert!(published
        .iter()
        .any(|e| matches!(e.event, Event::Trade { .. })));
    assert!(published
        .iter()
        .any(|e| matches!(e.event, Event::TransferCredited { .. })));
    for s in 0..3 {
        let shard = ShardId(s);
        let (applied, hash) = node
            .read(shard, |e| (e.inputs_applied(), e.state_hash()))
            .unwrap();
        let h = history.shard(shard).unwrap();
        let want: Vec<_> = published
            .iter()
            .filter(|e| e.shard == shard)
            .cloned()
            .collect();
        assert_eq!(
            want,
            collect_from_seq(&h, 0, applied, usize::MAX),
            "shard {s}"
        );
        assert_eq!(
            hash,
            h.state_at(applied, applied, |e| e.state_hash()).unwrap()
        );
    }
    assert!(history.shard(ShardId(3)).is_none());
    node.shutdown();
}
