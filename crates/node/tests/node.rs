//! The embedded multi-shard node: cross-shard orders and transfers through durable logs,
//! restart with messages in flight, backpressure, event feed.

use std::time::Duration;
use tradelog_domain::*;
use tradelog_engine::cluster::validate_quiescent;
use tradelog_node::{Node, NodeConfig, SubmitError};

const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);

fn op() -> Meta {
    Meta {
        timestamp: tradelog_node::runtime::now(),
        principal: Principal(1_000),
        authority: Authority::Operator,
    }
}

fn trader(a: u64) -> Meta {
    Meta {
        timestamp: tradelog_node::runtime::now(),
        principal: Principal(a),
        authority: Authority::Trader,
    }
}

fn config(dir: &std::path::Path) -> NodeConfig {
    let mut c = NodeConfig::new(dir, 3);
    c.snapshot_every_records = 50;
    c.snapshot_interval_min_ms = 0;
    c.log.segment_bytes_max = 1 << 20;
    c.log.record_bytes_max = 64 << 10;
    c
}

fn setup(node: &Node) {
    for (id, code, scale) in [(USD, "USD", 2), (BTC, "BTC", 8)] {
        let r = node
            .submit_wait(
                op(),
                Command::CreateAsset(Asset {
                    id,
                    code: code.into(),
                    scale,
                }),
            )
            .unwrap();
        assert!(r.outcome.result.is_ok(), "{r:?}");
    }
    let spec = MarketSpec {
        id: MarketId(1),
        base: BTC,
        quote: USD,
        lot_size: 1,
        tick_size: 1,
        min_qty: Qty(1),
        max_qty: Qty(1_000_000),
        maker_fee_bps: 10,
        taker_fee_bps: 20,
        fee_account: AccountId(99),
        collar_bps: 0,
        shard: ShardId(2),
    };
    assert!(node
        .submit_wait(op(), Command::CreateMarket(spec))
        .unwrap()
        .outcome
        .result
        .is_ok());
    for a in 1..=6u64 {
        let r = node
            .submit_wait(
                op(),
                Command::OpenAccount {
                    account: AccountId(a),
                    owner: Principal(a),
                },
            )
            .unwrap();
        assert!(r.outcome.result.is_ok());
        for asset in [USD, BTC] {
            let id = TransferId(a * 10 + asset.0 as u64);
            let r = node
                .submit_wait(
                    op(),
                    Command::Deposit {
                        id,
                        account: AccountId(a),
                        asset,
                        amount: Amount(1_000_000),
                    },
                )
                .unwrap();
            assert!(r.outcome.result.is_ok(), "{r:?}");
        }
    }
}

fn order(account: u64, side: Side, price: u64, qty: u64) -> Command {
    Command::PlaceOrder(NewOrder {
        account: AccountId(account),
        market: MarketId(1),
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(price),
        qty: Qty(qty),
        post_only: false,
        client_order_id: 0,
        stp: SelfTradePrevention::CancelResting,
    })
}

fn transfer(id: u64, from: u64, to: u64, amount: u64) -> Command {
    Command::Transfer(TransferSpec {
        id: TransferId(id),
        debit: AccountId(from),
        credit: AccountId(to),
        asset: USD,
        amount: Amount(amount),
        balancing: false,
    })
}

fn total(engines: &[tradelog_engine::Engine], asset: AssetId) -> u64 {
    engines
        .iter()
        .flat_map(|e| e.ledger().accounts().iter())
        .map(|a| a.balance(asset))
        .map(|b| b.available.0 + b.held.0)
        .sum()
}

#[test]
fn cross_shard_trading_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::open(config(tmp.path())).unwrap();
    let feed = node.subscribe();
    setup(&node);
    // Catalog commands reach every shard and are idempotent by content.
    let again = Command::CreateAsset(Asset {
        id: USD,
        code: "USD".into(),
        scale: 2,
    });
    let r = node.submit_wait(op(), again).unwrap();
    assert_eq!(
        r.outcome,
        Outcome {
            result: Ok(Accepted::Done),
            duplicate: true
        }
    );
    for s in 0..3 {
        assert_eq!(node.read(ShardId(s), |e| e.assets().len()).unwrap(), 2);
    }
    // Account 1 (shard 1) sells to account 3 (shard 0) on the market of shard 2.
    let r = node
        .submit_wait(trader(1), order(1, Side::Sell, 100, 50))
        .unwrap();
    assert!(matches!(r.outcome.result, Ok(Accepted::Order(_))));
    let r = node
        .submit_wait(trader(3), order(3, Side::Buy, 100, 20))
        .unwrap();
    assert!(r.outcome.result.is_ok());
    let r = node
        .submit_wait(trader(2), transfer(500, 2, 4, 777))
        .unwrap();
    assert_eq!(r.outcome.result, Ok(Accepted::InFlight));
    assert!(node.wait_quiescent(Duration::from_secs(10)));

    let engines = node.engines().unwrap();
    validate_quiescent(&engines).unwrap();
    let bal = |a: u64, asset| {
        let e = &engines[(a % 3) as usize];
        let b = e.ledger().account(AccountId(a)).unwrap().balance(asset);
        (b.available.0, b.held.0)
    };
    // 20 at 100: notional 2_000; buyer pays 2_000 + 4 (20 bps), seller gets 2_000 - 2.
    assert_eq!(bal(3, BTC), (1_000_020, 0));
    assert_eq!(bal(3, USD), (1_000_000 - 2_004, 0));
    assert_eq!(bal(1, USD), (1_000_000 + 1_998, 0));
    assert_eq!(bal(1, BTC), (1_000_000 - 50, 30));
    assert_eq!(bal(2, USD), (1_000_000 - 777, 0));
    assert_eq!(bal(4, USD), (1_000_000 + 777, 0));
    assert_eq!(total(&engines, USD), 6_000_000);
    let trades = feed
        .try_iter()
        .flat_map(|b| b.to_vec())
        .filter(|r| matches!(r.event, Event::Trade { .. }))
        .count();
    assert_eq!(trades, 1);
    let hashes: Vec<_> = engines.iter().map(|e| e.state_hash()).collect();
    node.shutdown();

    let node = Node::open(config(tmp.path())).unwrap();
    let again: Vec<_> = node
        .engines()
        .unwrap()
        .iter()
        .map(|e| e.state_hash())
        .collect();
    assert_eq!(hashes, again, "state after restart differs");
    // And it keeps working.
    let r = node
        .submit_wait(trader(5), order(5, Side::Buy, 100, 30))
        .unwrap();
    assert!(r.outcome.result.is_ok());
    assert!(node.wait_quiescent(Duration::from_secs(10)));
    let engines = node.engines().unwrap();
    validate_quiescent(&engines).unwrap();
    assert_eq!(
        engines[2].books()[&MarketId(1)].len(),
        0,
        "book should be empty"
    );
}

#[test]
fn messages_in_flight_at_shutdown_are_delivered_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::open(config(tmp.path())).unwrap();
    setup(&node);
    node.shutdown();

    // With no node running, the debit shards accept cross-shard transfers: each leaves a
    // message in its durable outbox that nobody delivers (as if the node stopped right
    // after answering).
    let mut sent = 0;
    for s in 0..3u32 {
        let (mut shard, _) = tradelog_node::DurableShard::open(tradelog_node::ShardConfig {
            dir: tmp.path().join(format!("shard-{s}")),
            shard: ShardId(s),
            placement: tradelog_engine::Placement::new(3),
            snapshot_every_records: 0,
            snapshot_interval_min_ms: 0,
            log: config(tmp.path()).log,
            watermark_every_ms: 0,
        })
        .unwrap();
        let from = if s == 0 { 3 } else { s as u64 };
        let inputs: Vec<_> = (0..20u64)
            .map(|i| tradelog_engine::Input::Command {
                meta: trader(from),
                command: transfer(1_000 + s as u64 * 100 + i, from, 1 + (from % 6), 10 + i),
            })
            .collect();
        let mut events = vec![];
        let results = shard.submit(&inputs, &mut events).unwrap();
        assert!(results.iter().all(|r| matches!(
            r,
            tradelog_engine::Applied::Command(o) if o.result == Ok(Accepted::InFlight)
        )));
        let e = shard.engine();
        sent += e
            .outbox_destinations()
            .iter()
            .map(|d| e.outbox(*d).count())
            .sum::<usize>();
    }
    assert_eq!(sent, 60);

    // The node delivers them after it starts; nothing is lost or doubled.
    let node = Node::open(config(tmp.path())).unwrap();
    assert!(node.wait_quiescent(Duration::from_secs(10)));
    let engines = node.engines().unwrap();
    validate_quiescent(&engines).unwrap();
    assert_eq!(
        total(&engines, USD),
        6_000_000,
        "money created or destroyed"
    );
    let posted = engines
        .iter()
        .flat_map(|e| e.ledger().inflight().values())
        .count();
    assert_eq!(posted, 0, "transfers still in flight");
    let bal = |a: u64| {
        let e = &engines[(a % 3) as usize];
        e.ledger()
            .account(AccountId(a))
            .unwrap()
            .balance(USD)
            .available
            .0
    };
    // Account 3 (shard 0) sent 20 transfers of 10..29 to account 4 (shard 1), which sent
    // nothing; account 1 sent the same to account 2, and account 2 to account 3.
    let amount: u64 = (0..20u64).map(|i| 10 + i).sum();
    assert_eq!(bal(4), 1_000_000 + amount);
    assert_eq!(bal(1), 1_000_000 - amount);
    assert_eq!((bal(2), bal(3)), (1_000_000, 1_000_000));
}

#[test]
fn a_full_queue_answers_overloaded_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.queue_len_max = 4;
    let node = Node::open(c).unwrap();
    setup(&node);
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..2_000u64 {
        let tx = tx.clone();
        node.submit(
            op(),
            Command::Deposit {
                id: TransferId(10_000 + i),
                account: AccountId(3),
                asset: USD,
                amount: Amount(1),
            },
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
    }
    drop(tx);
    let answers: Vec<_> = rx.iter().collect();
    assert_eq!(answers.len(), 2_000, "every submit is answered");
    let overloaded = answers
        .iter()
        .filter(|r| matches!(r, Err(SubmitError::Overloaded(_))))
        .count();
    let ok = answers
        .iter()
        .filter(|r| matches!(r, Ok(x) if x.outcome.result.is_ok()))
        .count();
    assert!(overloaded > 0, "queue of 4 never filled");
    assert_eq!(ok + overloaded, 2_000);
    // Exactly the accepted deposits were applied.
    let bal = node
        .read(ShardId(0), |e| {
            e.ledger()
                .account(AccountId(3))
                .unwrap()
                .balance(USD)
                .available
                .0
        })
        .unwrap();
    assert_eq!(bal, 1_000_000 + ok as u64);
}

/// Accounts and markets are placed by shard count: a data directory reopened with another
/// count would replay its logs into another state, so it is refused, and nothing is
/// written. A directory from before the count was recorded is recognised by its shard
/// directories.
#[test]
fn a_data_dir_refuses_another_shard_count() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::open(config(tmp.path())).unwrap();
    setup(&node);
    let hashes: Vec<_> = node
        .engines()
        .unwrap()
        .iter()
        .map(|e| e.state_hash())
        .collect();
    node.shutdown();

    for shards in [1, 2, 4] {
        let mut c = config(tmp.path());
        c.shards = shards;
        let err = Node::open(c).err().expect("another shard count opened");
        assert_eq!(
            err.to_string(),
            format!(
                "{} holds a node of 3 shard(s) but {shards} were asked for: start it with 3 \
                 shard(s), or use a new data directory",
                tmp.path().display()
            )
        );
    }
    assert!(!tmp.path().join("shard-3").exists());

    // Without the file (a directory written before it existed), the shard directories say.
    std::fs::remove_file(tmp.path().join(tradelog_node::SHARDS_FILE)).unwrap();
    let mut c = config(tmp.path());
    c.shards = 2;
    assert!(Node::open(c).is_err());
    assert!(!tmp.path().join(tradelog_node::SHARDS_FILE).exists());
    let node = Node::open(config(tmp.path())).unwrap();
    let again: Vec<_> = node
        .engines()
        .unwrap()
        .iter()
        .map(|e| e.state_hash())
        .collect();
    assert_eq!(hashes, again);
    node.shutdown();
    assert!(tmp.path().join(tradelog_node::SHARDS_FILE).exists());
}
