//! The client against a real in-process server (real listeners on 127.0.0.1, a real node
//! on a temporary directory): typed commands and queries, errors, retries with the same
//! idempotency key, and subscriptions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tradelog_client::*;
use tradelog_domain as d;
use tradelog_server::{RunningServer, Server, ServerConfig};

const USD: d::AssetId = d::AssetId(1);
const BTC: d::AssetId = d::AssetId(2);
const MARKET: d::MarketId = d::MarketId(1);
/// 0.01 BTC.
const LOT: u64 = 1_000_000;
const WAIT: Duration = Duration::from_secs(20);

async fn start(dir: &std::path::Path, grpc: &str, retained: usize) -> RunningServer {
    Server::start(ServerConfig {
        data_dir: dir.to_path_buf(),
        shards: 2,
        grpc_addr: grpc.parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        events_retained_max: retained,
        ..ServerConfig::default()
    })
    .await
    .expect("server starts")
}

fn client_of(addr: SocketAddr) -> Client {
    Client::new(ClientConfig::new(format!("http://{addr}"))).unwrap()
}

fn market() -> d::MarketSpec {
    d::MarketSpec {
        id: MARKET,
        base: BTC,
        quote: USD,
        lot_size: LOT,
        tick_size: 100,
        min_qty: d::Qty(LOT),
        max_qty: d::Qty(1_000 * LOT),
        maker_fee_bps: 10,
        taker_fee_bps: 20,
        fee_account: d::AccountId(100),
        collar_bps: 0,
        shard: d::ShardId(0),
    }
}

async fn catalog(c: &Client) {
    for (id, code, scale) in [(USD, "USD", 2), (BTC, "BTC", 8)] {
        let r = c
            .create_asset(d::Asset {
                id,
                code: code.into(),
                scale,
            })
            .await
            .unwrap();
        assert_eq!(r.accepted, d::Accepted::Done);
    }
    c.create_market(market()).await.unwrap();
    c.open_account(d::AccountId(100), d::Principal(0))
        .await
        .unwrap();
}

fn limit(account: u64, side: d::Side, price: u64, lots: u64, client_order_id: u64) -> d::NewOrder {
    d::NewOrder {
        account: d::AccountId(account),
        market: MARKET,
        side,
        order_type: d::OrderType::Limit,
        tif: d::TimeInForce::Gtc,
        price: d::Price(price),
        qty: d::Qty(lots * LOT),
        post_only: false,
        client_order_id,
        stp: d::SelfTradePrevention::CancelResting,
    }
}

/// Every event of the `all` stream, read page by page to the end.
async fn read_all(c: &Client) -> Vec<d::EventRecord> {
    let mut after = Position::default();
    let mut out = vec![];
    loop {
        let page = c.read_events(EventStream::All, &after, 7).await.unwrap();
        if page.events.is_empty() && page.position == after {
            return out;
        }
        out.extend(page.events);
        after = page.position;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_queries_round_trip_in_domain_types() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0", 10_000).await;
    let c = client_of(server.grpc_addr());
    catalog(&c).await;
    // Buyer 1 on shard 1, seller 2 on shard 0 (with the market).
    for (a, asset, amount) in [(1, USD, 10_000_000), (2, BTC, 5 * LOT)] {
        c.open_account(d::AccountId(a), d::Principal(a))
            .await
            .unwrap();
        let r = c
            .deposit(d::TransferId(a), d::AccountId(a), asset, d::Amount(amount))
            .await
            .unwrap();
        assert_eq!((r.accepted, r.duplicate), (d::Accepted::Done, false));
    }
    let cat = c.catalog().await.unwrap();
    assert_eq!(cat.asset_by_code("BTC").map(|a| a.id), Some(BTC));
    assert_eq!(cat.markets, vec![market()]);

    // A resting ask, then a bid that takes half of it.
    let ask = c
        .place_order(limit(2, d::Side::Sell, 3_000_000, 2, 1))
        .await
        .unwrap();
    let ask_id = ask.order_id().expect("an order id");
    let book = c.book(MARKET, 0).await.unwrap();
    assert_eq!(
        (book.bids.clone(), book.asks.clone(), book.last_price),
        (
            vec![],
            vec![Level {
                price: d::Price(3_000_000),
                qty: d::Qty(2 * LOT),
                orders: 1
            }],
            None
        )
    );
    let bid = c
        .place_order(limit(1, d::Side::Buy, 3_000_000, 1, 1))
        .await
        .unwrap();
    assert!(bid.order_id().is_some());
    // The cross-shard order path completes asynchronously: wait for the trade.
    let deadline = Instant::now() + WAIT;
    let book = loop {
        let b = c.book(MARKET, 0).await.unwrap();
        if b.last_price.is_some() {
            break b;
        }
        assert!(Instant::now() < deadline, "no trade");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(book.asks[0].qty, d::Qty(LOT));
    let o = c.order(MARKET, ask_id).await.unwrap();
    assert_eq!(
        (o.account, o.side, o.price, o.remaining, o.held),
        (
            d::AccountId(2),
            d::Side::Sell,
            d::Price(3_000_000),
            d::Qty(LOT),
            d::Amount(LOT)
        )
    );

    // Settlement on the buyer's shard: 3,000,000 paid + 0.2% taker fee = 3,006,000.
    let deadline = Instant::now() + WAIT;
    loop {
        let b = c.balances(d::AccountId(1)).await.unwrap();
        if b.of(BTC).available == d::Amount(LOT) {
            assert_eq!(b.of(USD).available, d::Amount(10_000_000 - 3_006_000));
            assert_eq!(b.of(USD).held, d::Amount(0));
            assert_eq!(
                (b.owner, b.status),
                (d::Principal(1), AccountStatus::Active)
            );
            break;
        }
        assert!(Instant::now() < deadline, "no settlement: {b:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let h = c
        .balance_history(d::AccountId(1), USD, d::Timestamp(0), None, 0)
        .await
        .unwrap();
    let available: Vec<u64> = h.points.iter().map(|p| p.available.0).collect();
    assert_eq!(available.first(), Some(&10_000_000));
    assert_eq!(available.last(), Some(&(10_000_000 - 3_006_000)));

    // Cancel the rest of the ask; then it is no longer open.
    c.cancel_order(MARKET, ask_id).await.unwrap();
    assert!(matches!(
        c.order(MARKET, ask_id).await,
        Err(ClientError::NotFound(_))
    ));

    // A batch: independent answers in order, a rejection among them as a value.
    let answers = c
        .submit_batch(vec![
            d::Command::Deposit {
                id: d::TransferId(50),
                account: d::AccountId(1),
                asset: USD,
                amount: d::Amount(1),
            },
            d::Command::Withdraw {
                id: d::TransferId(51),
                account: d::AccountId(1),
                asset: USD,
                amount: d::Amount(u64::MAX >> 2),
            },
        ])
        .await
        .unwrap();
    assert_eq!(answers[0].result, Ok(d::Accepted::Done));
    let r = answers[1].result.clone().unwrap_err();
    assert_eq!(
        (r.code, r.number, r.name.as_str(), r.message.as_str()),
        (
            Some(d::RejectCode::InsufficientFunds),
            10,
            "REJECT_CODE_INSUFFICIENT_FUNDS",
            "insufficient funds"
        )
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_rejections_are_told_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0", 20).await;
    let c = client_of(server.grpc_addr());
    catalog(&c).await;
    c.open_account(d::AccountId(1), d::Principal(1))
        .await
        .unwrap();

    // A business rejection: the stable code, its name and the server's message.
    match c
        .withdraw(d::TransferId(9), d::AccountId(1), USD, d::Amount(5))
        .await
    {
        Err(ClientError::Rejected(r)) => {
            assert_eq!(r.code, Some(d::RejectCode::InsufficientFunds));
            assert_eq!(r.to_string(), "INSUFFICIENT_FUNDS (10): insufficient funds");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Malformed (zero id): refused before anything is recorded.
    match c
        .deposit(d::TransferId(1), d::AccountId(0), USD, d::Amount(5))
        .await
    {
        Err(ClientError::InvalidArgument(m)) => {
            assert_eq!(m, "invalid field `account_id`: must not be zero")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(matches!(
        c.balances(d::AccountId(77)).await,
        Err(ClientError::NotFound(m)) if m == "account 77 does not exist"
    ));
    // More events than the server keeps in memory (20 per shard): the beginning of
    // account 1's shard is regenerated from its log, from its first event on.
    for i in 0..30 {
        c.deposit(d::TransferId(100 + i), d::AccountId(1), USD, d::Amount(1))
            .await
            .unwrap();
    }
    let page = c
        .read_events(EventStream::All, &Position::default(), 0)
        .await
        .unwrap();
    let first = page.events.iter().find(|e| e.shard == d::ShardId(1));
    assert_eq!(first.map(|e| e.seq), Some(1));

    // The declared identity reaches the engine: a trader acts only for itself.
    let trader = Client::new(ClientConfig {
        principal: Some(d::Principal(9)),
        authority: Some(d::Authority::Trader),
        ..ClientConfig::new(server.grpc_addr().to_string())
    })
    .unwrap();
    trader
        .open_account(d::AccountId(9), d::Principal(9))
        .await
        .unwrap();
    let e = trader
        .open_account(d::AccountId(11), d::Principal(8))
        .await
        .unwrap_err();
    assert_eq!(
        e.rejection().and_then(|r| r.code),
        Some(d::RejectCode::NotOwner)
    );
    assert_eq!(
        c.balances(d::AccountId(9)).await.unwrap().owner,
        d::Principal(9)
    );

    // Nobody listening: unavailable, naming where, after the bounded retries of a safe call.
    let addr = server.grpc_addr();
    server.shutdown().await.unwrap();
    let down = Client::new(ClientConfig {
        retry: RetryPolicy {
            attempts_max: 3,
            backoff_initial_ms: 1,
            backoff_ms_max: 1,
        },
        ..ClientConfig::new(format!("http://{addr}"))
    })
    .unwrap();
    match down.catalog().await {
        Err(e @ ClientError::Unavailable { .. }) => {
            assert!(e.is_transient());
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(down.retries(), 2);
    // An order without a client order id is not resent when it may have arrived.
    let before = down.retries();
    assert!(matches!(
        down.place_order(limit(1, d::Side::Buy, 100, 1, 0)).await,
        Err(ClientError::Unavailable { .. })
    ));
    assert_eq!(down.retries(), before);
    assert!(matches!(
        Client::connect(ClientConfig::new(format!("http://{addr}"))).await,
        Err(ClientError::Unavailable { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_command_returns_the_original_result() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0", 10_000).await;
    let addr = server.grpc_addr();
    let c = client_of(addr);
    catalog(&c).await;
    c.open_account(d::AccountId(1), d::Principal(1))
        .await
        .unwrap();
    c.open_account(d::AccountId(2), d::Principal(2))
        .await
        .unwrap();
    c.deposit(d::TransferId(1), d::AccountId(1), USD, d::Amount(1_000))
        .await
        .unwrap();
    server.shutdown().await.unwrap();

    // The server is down: the client keeps resending the same transfer until the server
    // is back on the same address, then gets its answer.
    let patient = Client::new(ClientConfig {
        retry: RetryPolicy {
            attempts_max: 10_000,
            backoff_initial_ms: 5,
            backoff_ms_max: 50,
        },
        ..ClientConfig::new(format!("http://{addr}"))
    })
    .unwrap();
    let transfer = d::TransferSpec {
        id: d::TransferId(77),
        debit: d::AccountId(1),
        credit: d::AccountId(2),
        asset: USD,
        amount: d::Amount(300),
        balancing: false,
    };
    let sending = {
        let (p, t) = (patient.clone(), transfer.clone());
        tokio::spawn(async move { p.transfer(t).await })
    };
    let deadline = Instant::now() + WAIT;
    while patient.retries() < 2 {
        assert!(Instant::now() < deadline, "the client never retried");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = start(tmp.path(), &addr.to_string(), 10_000).await;
    let first = sending
        .await
        .unwrap()
        .expect("answered once the server is back");
    assert!(!first.duplicate);
    assert_ne!(first.input, 0);

    // Resent again (as after a lost answer): the original result, applied once.
    let again = patient.transfer(transfer.clone()).await.unwrap();
    assert_eq!(
        (again.accepted, again.duplicate, again.shard),
        (first.accepted, true, first.shard)
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let (a, b) = (
            c.balances(d::AccountId(1)).await.unwrap().of(USD),
            c.balances(d::AccountId(2)).await.unwrap().of(USD),
        );
        // Across shards the debit's hold is released once the credit is acknowledged.
        if b.available == d::Amount(300) && a.held == d::Amount(0) {
            assert_eq!(a.available, d::Amount(700));
            break;
        }
        assert!(Instant::now() < deadline, "transfer not credited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The same key with other content is a different command: rejected.
    let other = d::TransferSpec {
        amount: d::Amount(1),
        ..transfer
    };
    assert_eq!(
        patient
            .transfer(other)
            .await
            .unwrap_err()
            .rejection()
            .and_then(|r| r.code),
        Some(d::RejectCode::DuplicateId)
    );
    // An order with a client order id: the same order id the second time.
    c.deposit(d::TransferId(2), d::AccountId(2), BTC, d::Amount(LOT))
        .await
        .unwrap();
    let o = limit(2, d::Side::Sell, 5_000_000, 1, 42);
    let a = patient.place_order(o.clone()).await.unwrap();
    let b = patient.place_order(o).await.unwrap();
    assert_eq!((a.order_id(), a.duplicate), (b.order_id(), false));
    assert!(b.duplicate);
    assert_eq!(c.book(MARKET, 0).await.unwrap().asks.len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_catches_up_then_follows_live_without_gap_or_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0", 100_000).await;
    let c = client_of(server.grpc_addr());
    catalog(&c).await;
    for a in 1..=4 {
        c.open_account(d::AccountId(a), d::Principal(a))
            .await
            .unwrap();
    }
    // History before the subscription: the catch-up part.
    for i in 1..=40u64 {
        c.deposit(d::TransferId(i), d::AccountId(1 + i % 4), USD, d::Amount(i))
            .await
            .unwrap();
    }
    let mut sub = c
        .subscribe(EventStream::All, Position::default())
        .await
        .unwrap();
    let first = sub.next().await.expect("a page").unwrap();
    // More while it runs: the live part.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 41..=120u64 {
                c.deposit(d::TransferId(i), d::AccountId(1 + i % 4), USD, d::Amount(i))
                    .await
                    .unwrap();
            }
        })
    };
    let mut got = first.events.clone();
    let deposited = |events: &[d::EventRecord]| {
        events
            .iter()
            .filter(|e| matches!(e.event, d::Event::Deposited { .. }))
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while deposited(&got) < 120 {
        let page = tokio::time::timeout_at(deadline.into(), sub.next())
            .await
            .expect("events keep coming")
            .expect("the stream stays open")
            .unwrap();
        assert_eq!(&page.position, sub.position());
        got.extend(page.events);
    }
    writer.await.unwrap();
    // Per shard: 1, 2, 3, ... with nothing missing or repeated, across the switch.
    let mut seqs: BTreeMap<d::ShardId, Vec<u64>> = BTreeMap::new();
    for e in &got {
        seqs.entry(e.shard).or_default().push(e.seq);
    }
    for (shard, s) in &seqs {
        let expected: Vec<u64> = (1..=s.len() as u64).collect();
        assert_eq!(s, &expected, "shard {shard}");
    }
    // The same events as a plain read of the history, in each shard's order.
    let by_shard = |events: &[d::EventRecord]| {
        let mut m: BTreeMap<d::ShardId, Vec<d::EventRecord>> = BTreeMap::new();
        for e in events {
            m.entry(e.shard).or_default().push(e.clone());
        }
        m
    };
    let read = read_all(&c).await;
    let read_prefix: Vec<d::EventRecord> = read
        .into_iter()
        .filter(|e| seqs.get(&e.shard).is_some_and(|s| e.seq <= s.len() as u64))
        .collect();
    assert_eq!(by_shard(&got), by_shard(&read_prefix));

    // Resuming from a position mid-way gives exactly the rest.
    let mid = first.position.clone();
    let mut resumed = c.subscribe(EventStream::All, mid.clone()).await.unwrap();
    let mut rest = vec![];
    while rest.len() < got.len() - first.events.len() {
        rest.extend(resumed.next().await.unwrap().unwrap().events);
    }
    assert_eq!(by_shard(&rest), by_shard(&got[first.events.len()..]));

    // A filtered stream: one account's deposits only.
    let mut acct = c
        .subscribe(EventStream::Account(d::AccountId(2)), Position::default())
        .await
        .unwrap();
    let mut mine = vec![];
    while deposited(&mine) < 30 {
        mine.extend(acct.next().await.unwrap().unwrap().events);
    }
    assert!(mine.iter().all(|e| match &e.event {
        d::Event::Deposited { account, .. }
        | d::Event::Balance { account, .. }
        | d::Event::AccountOpened { account, .. } => *account == d::AccountId(2),
        other => panic!("not an event of account 2: {other:?}"),
    }));

    // Shutdown ends the stream.
    server.shutdown().await.unwrap();
    let end = tokio::time::timeout(WAIT, async {
        while let Some(item) = sub.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the subscription did not end with the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_queries_and_past_states_come_back_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0", 10_000).await;
    let c = client_of(server.grpc_addr());
    catalog(&c).await;
    let mut deposits = vec![];
    for (a, asset, amount) in [(1, USD, 10_000_000), (2, BTC, 5 * LOT)] {
        c.open_account(d::AccountId(a), d::Principal(a))
            .await
            .unwrap();
        deposits.push(
            c.deposit(d::TransferId(a), d::AccountId(a), asset, d::Amount(amount))
                .await
                .unwrap(),
        );
    }
    let ask = c
        .place_order(limit(2, d::Side::Sell, 3_000_000, 2, 1))
        .await
        .unwrap();
    let ask_id = ask.order_id().unwrap();
    let bid = c
        .place_order(limit(1, d::Side::Buy, 3_000_000, 1, 1))
        .await
        .unwrap();
    let bid_id = bid.order_id().unwrap();
    let deadline = Instant::now() + WAIT;
    while c.balances(d::AccountId(1)).await.unwrap().of(BTC).available != d::Amount(LOT) {
        assert!(Instant::now() < deadline, "no settlement");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Trades: the one fill, whole (its place in the history as the server tells it).
    let page = c
        .trades(MARKET, d::Timestamp(0), None, None, 0)
        .await
        .unwrap();
    let t = page.trades[0];
    let want = Trade {
        seq: t.seq,
        input: t.input,
        timestamp: t.timestamp,
        market: MARKET,
        price: d::Price(3_000_000),
        qty: d::Qty(LOT),
        taker_side: d::Side::Buy,
        taker: bid_id,
        maker: ask_id,
        taker_account: d::AccountId(1),
        maker_account: d::AccountId(2),
        taker_fee: d::Amount(6_000),
        maker_fee: d::Amount(3_000),
    };
    assert_eq!(
        page,
        TradesPage {
            trades: vec![want],
            position: ShardPosition {
                shard: d::ShardId(0),
                seq: page.position.seq
            },
            at_end: true,
        }
    );
    assert!(page.position.seq >= t.seq && t.seq > 0 && t.input > 0);
    // Paging: after it nothing; one page of one from just before it; the whole range.
    let after = c
        .trades(MARKET, d::Timestamp(0), None, Some(t.seq), 0)
        .await
        .unwrap();
    assert_eq!((after.trades, after.at_end), (vec![], true));
    let one = c
        .trades(MARKET, d::Timestamp(0), None, Some(t.seq - 1), 1)
        .await
        .unwrap();
    assert_eq!(one.trades, vec![want]);
    let all = c
        .trades_to_end(MARKET, d::Timestamp(0), None, None, None)
        .await
        .unwrap();
    assert_eq!(all.trades, vec![want]);
    let before = c
        .trades(MARKET, d::Timestamp(0), Some(t.timestamp), None, 0)
        .await
        .unwrap();
    assert_eq!((before.trades, before.at_end), (vec![], true));

    // Candles: the minute of the trade.
    let minute = 60_000_000_000;
    let start = t.timestamp.0 - t.timestamp.0 % minute;
    let candles = c
        .candles(
            MARKET,
            60,
            d::Timestamp(start),
            d::Timestamp(start + minute),
        )
        .await
        .unwrap();
    assert_eq!(
        candles.candles,
        vec![Candle {
            start: d::Timestamp(start),
            open: d::Price(3_000_000),
            high: d::Price(3_000_000),
            low: d::Price(3_000_000),
            close: d::Price(3_000_000),
            volume: LOT,
            quote_volume: 3_000_000,
            trades: 1,
        }]
    );
    assert_eq!(candles.position.shard, d::ShardId(0));

    // Open orders: the rest of the ask; the bid filled.
    let open = c.open_orders(d::AccountId(2)).await.unwrap();
    assert_eq!(
        open.orders,
        vec![OpenOrder {
            order: ask_id,
            market: MARKET,
            account: d::AccountId(2),
            owner: d::Principal(2),
            side: d::Side::Sell,
            price: d::Price(3_000_000),
            remaining: d::Qty(LOT),
            held: d::Amount(LOT),
            stp: d::SelfTradePrevention::CancelResting,
            post_only: false,
        }]
    );
    let shards: Vec<d::ShardId> = open.positions.iter().map(|p| p.shard).collect();
    assert_eq!(shards, vec![d::ShardId(0), d::ShardId(0)]);
    assert_eq!(c.open_orders(d::AccountId(1)).await.unwrap().orders, vec![]);

    // The buyer's USD statement: deposit, hold for the bid, settlement.
    let st = c
        .statement(d::AccountId(1), USD, d::Timestamp(0), None, None, 0)
        .await
        .unwrap();
    let lines: Vec<(u64, u64, u64, u64, bool)> = st
        .entries
        .iter()
        .map(|e| {
            // The cause is the expected kind of event, about the bid where it names one.
            let cause = match &e.cause {
                Some(d::Event::Deposited { .. }) => true,
                Some(d::Event::FundsHeld { order, .. } | d::Event::Settled { order, .. }) => {
                    *order == bid_id
                }
                _ => false,
            };
            (e.credit.0, e.debit.0, e.available.0, e.held.0, cause)
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (10_000_000, 0, 10_000_000, 0, true),
            (0, 0, 6_994_000, 3_006_000, true),
            (0, 3_006_000, 6_994_000, 0, true),
        ]
    );
    let zero = Balance {
        asset: USD,
        available: d::Amount(0),
        held: d::Amount(0),
    };
    let closing = Balance {
        asset: USD,
        available: d::Amount(6_994_000),
        held: d::Amount(0),
    };
    assert_eq!(
        (st.opening, st.closing, st.truncated, st.position.shard),
        (zero, closing, false, d::ShardId(1))
    );
    // In pages of one, then joined: the same statement.
    let first = c
        .statement(d::AccountId(1), USD, d::Timestamp(0), None, None, 1)
        .await
        .unwrap();
    assert_eq!((first.entries.len(), first.truncated), (1, true));
    let joined = c
        .statement_to_end(d::AccountId(1), USD, d::Timestamp(0), None, None)
        .await
        .unwrap();
    assert_eq!(joined, st);

    // Past states: after the buyer's deposit; the book and the ask when it was placed.
    let b = c
        .balances_as_of(d::AccountId(1), AsOf::LogIndex(deposits[0].input))
        .await
        .unwrap();
    assert_eq!(
        b,
        Balances {
            account: d::AccountId(1),
            owner: d::Principal(1),
            status: AccountStatus::Active,
            balances: vec![Balance {
                asset: USD,
                available: d::Amount(10_000_000),
                held: d::Amount(0)
            }],
            open_orders: 0,
            position: b.position,
            log_index: deposits[0].input,
        }
    );
    assert_eq!(b.position.shard, d::ShardId(1));
    let book = c
        .book_as_of(MARKET, 0, AsOf::LogIndex(ask.input))
        .await
        .unwrap();
    assert_eq!(book.log_index, ask.input);
    assert_eq!(
        (book.bids, book.asks, book.last_price),
        (
            vec![],
            vec![Level {
                price: d::Price(3_000_000),
                qty: d::Qty(2 * LOT),
                orders: 1
            }],
            None
        )
    );
    let o = c
        .order_as_of(MARKET, ask_id, AsOf::Time(t.timestamp))
        .await
        .unwrap();
    assert_eq!((o.remaining, o.held), (d::Qty(LOT), d::Amount(LOT)));
    // Read again at the index it reported: the same order.
    let again = c
        .order_as_of(MARKET, ask_id, AsOf::LogIndex(o.log_index))
        .await
        .unwrap();
    assert_eq!(again, o);
    assert!(matches!(
        c.balances_as_of(d::AccountId(1), AsOf::Time(d::Timestamp(1)))
            .await,
        Err(ClientError::NotFound(_))
    ));

    // On a single node a stale read is a normal one; with an as-of point it is refused.
    assert_eq!(Consistency::default(), c.consistency());
    let stale = c.stale();
    assert_eq!(
        stale.balances(d::AccountId(1)).await.unwrap(),
        c.balances(d::AccountId(1)).await.unwrap()
    );
    assert_eq!(
        stale.open_orders(d::AccountId(2)).await.unwrap().orders,
        open.orders
    );
    assert_eq!(
        stale
            .statement(d::AccountId(1), USD, d::Timestamp(0), None, None, 0)
            .await
            .unwrap(),
        st
    );
    match stale.book_as_of(MARKET, 0, AsOf::LogIndex(ask.input)).await {
        Err(ClientError::InvalidArgument(m)) => {
            assert_eq!(m, "invalid field `stale`: cannot be combined with `as_of`")
        }
        other => panic!("{other:?}"),
    }

    // Bad requests and unknown things, typed.
    match c.candles(MARKET, 0, d::Timestamp(0), d::Timestamp(1)).await {
        Err(ClientError::InvalidArgument(m)) => {
            assert_eq!(m, "invalid field `interval_s`: must not be zero")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.trades(d::MarketId(9), d::Timestamp(0), None, None, 0)
            .await,
        Err(ClientError::NotFound(_))
    ));
    assert!(matches!(
        c.statement(d::AccountId(99), USD, d::Timestamp(0), None, None, 0)
            .await,
        Err(ClientError::NotFound(_))
    ));
    assert!(matches!(
        c.open_orders(d::AccountId(99)).await,
        Err(ClientError::NotFound(_))
    ));
    server.shutdown().await.unwrap();
}
