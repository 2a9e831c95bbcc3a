//! Distributed audit jobs end to end on a three-node cluster in this process (two shards,
//! every node a replica of both): while cross-shard transfers and crossing orders go on,
//! the solvency audit finds a consistent cut and passes, the trial balance passes, and the
//! replay verification of every shard matches; then, with the load stopped and one node
//! down, the tasks sent to the stopped node are retried on the other replicas and the
//! audits still pass. On a cluster whose shards live on different nodes, every task goes
//! to a replica of its shard.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tradelog_audit::{Auditor, TaskDone};
use tradelog_client::{Client, ClientConfig};
use tradelog_domain::jobs::Holding;
use tradelog_domain::*;
use tradelog_server::RunningServer;

const SHARDS: u32 = 2;
const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);
const MARKET: MarketId = MarketId(1);
const FEES: AccountId = AccountId(99);

use tradelog_server::testing::{free_port, loopback_url as url};

async fn start(
    id: u64,
    port: u16,
    dir: std::path::PathBuf,
    members: &BTreeMap<u64, String>,
) -> RunningServer {
    tradelog_server::testing::start_cluster_node(id, port, dir, members, SHARDS).await
}

async fn setup(c: &Client) {
    for (id, code) in [(USD, "USD"), (BTC, "BTC")] {
        c.create_asset(Asset {
            id,
            code: code.into(),
            scale: 2,
        })
        .await
        .unwrap();
    }
    c.create_market(MarketSpec {
        id: MARKET,
        base: BTC,
        quote: USD,
        lot_size: 1,
        tick_size: 1,
        min_qty: Qty(1),
        max_qty: Qty(1_000),
        maker_fee_bps: 5,
        taker_fee_bps: 10,
        fee_account: FEES,
        collar_bps: 0,
        shard: ShardId(1),
    })
    .await
    .unwrap();
    for a in (1..=8).chain([99]) {
        c.open_account(AccountId(a), Principal(a)).await.unwrap(); // STP is per owner
    }
    let mut id = 1;
    for a in 1..=8 {
        for asset in [USD, BTC] {
            id += 1;
            c.deposit(TransferId(id), AccountId(a), asset, Amount(1_000_000))
                .await
                .unwrap();
        }
    }
}

/// Cross-shard transfers (accounts alternate shards) and crossing orders from accounts of
/// both shards, until `stop`; returns how many commands were accepted.
async fn load(c: Client, stop: Arc<AtomicBool>) -> u64 {
    let accepted = AtomicU64::new(0);
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let a = AccountId(1 + n % 8);
        let b = AccountId(1 + (n + 3) % 8);
        let r = if n.is_multiple_of(3) {
            c.place_order(NewOrder {
                account: a,
                market: MARKET,
                side: if n.is_multiple_of(2) {
                    Side::Buy
                } else {
                    Side::Sell
                },
                order_type: OrderType::Limit,
                tif: TimeInForce::Gtc,
                price: Price(100 + n % 3),
                qty: Qty(1 + n % 7),
                post_only: false,
                client_order_id: 0,
                stp: SelfTradePrevention::CancelResting,
            })
            .await
        } else {
            c.transfer(TransferSpec {
                id: TransferId(1_000 + n),
                debit: a,
                credit: b,
                asset: if n.is_multiple_of(2) { USD } else { BTC },
                amount: Amount(1 + n % 50),
                balancing: false,
            })
            .await
        };
        if r.is_ok() {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
    }
    accepted.load(Ordering::Relaxed)
}

/// Three nodes of a new cluster (every node a replica of both shards) with the catalog and
/// funded accounts: their URLs, the servers by node id, and a client of all three.
async fn three_nodes(
    root: &std::path::Path,
) -> (Vec<String>, BTreeMap<u64, RunningServer>, Client) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let urls: Vec<String> = ports.iter().map(|p| url(*p)).collect();
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, urls[id as usize - 1].clone()))
        .collect();
    let mut servers = BTreeMap::new();
    for id in 1..=3u64 {
        let dir = root.join(format!("node-{id}"));
        servers.insert(id, start(id, ports[id as usize - 1], dir, &members).await);
    }
    let client = Client::new(config(&urls)).unwrap();
    setup(&client).await;
    (urls, servers, client)
}

/// Waits (at most 120 s) until the market has at least `n` trades.
async fn trades_at_least(client: &Client, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = client
            .trades_to_end(MARKET, Timestamp(0), None, None, None)
            .await
            .unwrap();
        if t.trades.len() >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} trades, not {n}",
            t.trades.len()
        );
    }
}

fn config(urls: &[String]) -> ClientConfig {
    let mut c = ClientConfig::cluster(urls.iter().cloned());
    c.request_timeout_ms = 30_000;
    c.retry.attempts_max = 60;
    c.retry.backoff_ms_max = 500;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audits_pass_under_load_and_with_a_node_down() {
    let root = tempfile::tempdir().unwrap();
    let (urls, mut servers, client) = three_nodes(root.path()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(load(client.clone(), stop.clone()));
    // Let the load build up some history (and messages in flight) first.
    trades_at_least(&client, 20).await;

    let done: Arc<Mutex<Vec<TaskDone>>> = Arc::default();
    let d = done.clone();
    let auditor = Auditor::connect(&config(&urls[..1]))
        .await
        .unwrap()
        .with_progress(Arc::new(move |t: &TaskDone| {
            d.lock().unwrap().push(t.clone())
        }));
    assert_eq!(SHARDS, auditor.shard_count());
    assert_eq!(
        urls.iter().map(|u| (u.clone(), false)).collect::<Vec<_>>(),
        auditor.nodes()
    );

    // Under load: a few rounds, each at a fresh cut.
    for _ in 0..3 {
        let s = auditor.solvency().await.unwrap();
        assert!(s.passed(), "{:?}", s.solvency.failures);
        assert_eq!(None, tradelog_domain::audit::check_cut(&s.cut.figures));
        let usd = s.solvency.assets[&USD];
        assert_eq!(
            usd.balances + usd.withdrawn + usd.in_flight_received,
            usd.deposited + usd.in_flight_sent
        );
        assert_eq!(8_000_000, usd.deposited);
        let tb = auditor.trial_balance().await.unwrap();
        assert!(tb.passed(), "{:?}", tb.failures);
        let v = auditor.verify().await.unwrap();
        assert_eq!(SHARDS as usize, v.shards.len());
        assert!(v.passed(), "{:?}", v.shards);
        assert!(v.shards.iter().all(|s| s.log_index > 0), "{:?}", v.shards);
    }
    assert!(done.lock().unwrap().iter().all(|t| t.attempts == 1));

    // Quiet, then node 1 (the first the auditor prefers when loads are equal) stops.
    stop.store(true, Ordering::Relaxed);
    let accepted = writer.await.unwrap();
    assert!(accepted > 20, "{accepted}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let auditor = Auditor::connect(&config(&urls[1..2]))
        .await
        .unwrap()
        .with_progress({
            let d = done.clone();
            Arc::new(move |t: &TaskDone| d.lock().unwrap().push(t.clone()))
        });
    done.lock().unwrap().clear();
    servers.remove(&1).unwrap().shutdown().await.unwrap();

    let s = auditor.solvency().await.unwrap();
    assert!(s.passed(), "{:?}", s.solvency.failures);
    // Nothing in flight once quiet: balances == deposits - withdrawals exactly.
    for (asset, l) in &s.solvency.assets {
        assert_eq!(l.deposited, l.balances + l.withdrawn, "asset {asset}");
        assert_eq!(l.sent, l.received, "asset {asset}");
    }
    let tb = auditor.trial_balance().await.unwrap();
    assert!(tb.passed(), "{:?}", tb.failures);
    let totals_usd = tb.totals[&USD];
    assert_eq!(s.solvency.assets[&USD].balances, totals_usd.balances());
    let v = auditor.verify().await.unwrap();
    assert!(v.passed(), "{:?}", v.shards);
    let done = done.lock().unwrap().clone();
    assert!(
        done.iter().any(|t| t.attempts > 1),
        "no task was retried: {done:?}"
    );
    assert!(done.iter().all(|t| t.node != urls[0]), "{done:?}");
    assert_eq!(
        vec![
            (urls[0].clone(), true),
            (urls[1].clone(), false),
            (urls[2].clone(), false)
        ],
        auditor.nodes()
    );
    data_jobs(&auditor, &client).await;
    tradelog_server::testing::shutdown_all(servers.into_values()).await;
}

/// The audits across a split, under load: shard 1 gives accounts 1 and 5 and the market
/// (with its book) to a new shard 2 while cross-shard transfers and orders go on. The
/// auditor then counts three shards; the solvency audit finds consistent cuts that count
/// what moved once (the child only with its parent past the split), the trial balance
/// passes, and the replay verification of the child (from its start state) matches. The
/// market's book and trades are read from the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audits_pass_across_a_split_under_load() {
    let root = tempfile::tempdir().unwrap();
    let (urls, servers, client) = three_nodes(root.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(load(client.clone(), stop.clone()));
    trades_at_least(&client, 20).await;
    let before = Auditor::connect(&config(&urls)).await.unwrap();
    assert_eq!(SHARDS, before.shard_count());
    let s = before.solvency().await.unwrap();
    assert!(s.passed(), "{:?}", s.solvency.failures);

    let split = tradelog_client::ClusterChange::SplitShard {
        shard: 1,
        modulus: 4,
        residue: 1,
        markets: vec![MARKET.0],
    };
    let before_split = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let st = client.change_cluster(&split).await.unwrap();
    assert_eq!(1, st.metadata.splits.len(), "{:?}", st.metadata.splits);
    // The load goes on, on three shards: wait for the child to apply some of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let st = client.cluster_status().await.unwrap();
        let applied = st.shards.get(2).and_then(|r| r.applied).unwrap_or(0);
        if applied >= 300 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "child at {applied}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let auditor = Auditor::connect(&config(&urls)).await.unwrap();
    // The market's reads follow it to the child: every node answers its book and its
    // trades since the split from shard 2 (the parent no longer has the book).
    for u in &urls {
        let c = Client::new(config(std::slice::from_ref(u))).unwrap();
        let book = c.book(MARKET, 10).await.unwrap();
        assert_eq!(ShardId(2), book.position.shard, "{u}");
        let t = c
            .trades_to_end(MARKET, Timestamp(0), None, None, None)
            .await
            .unwrap();
        assert_eq!(ShardId(2), t.position.shard, "{u}");
        assert!(!t.trades.is_empty(), "{u}");
    }
    assert_eq!(SHARDS + 1, auditor.shard_count());
    for _ in 0..3 {
        let s = auditor.solvency().await.unwrap();
        assert!(s.passed(), "{:?}", s.solvency.failures);
        assert_eq!(None, tradelog_domain::audit::check_cut(&s.cut.figures));
        let (parent, child) = (&s.cut.figures[1], &s.cut.figures[2]);
        let origin = child.origin.expect("the child knows its origin");
        assert_eq!(ShardId(1), origin.parent);
        assert!(
            child.before_start || parent.index >= origin.index,
            "{parent:?} {child:?}"
        );
        for asset in [USD, BTC] {
            let l = s.solvency.assets[&asset];
            assert_eq!(8_000_000, l.deposited, "asset {asset}");
            assert_eq!(
                l.balances + l.withdrawn + l.in_flight_received,
                l.deposited + l.in_flight_sent,
                "asset {asset}"
            );
        }
        let tb = auditor.trial_balance().await.unwrap();
        assert!(tb.passed(), "{:?}", tb.failures);
        assert_eq!(3, tb.shards.len());
        let v = auditor.verify().await.unwrap();
        assert_eq!(3, v.shards.len());
        assert!(v.passed(), "{:?}", v.shards);
    }

    let now = || {
        Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        )
    };
    // Statements up to a time before the split: the parent answers for the accounts
    // that moved since (the child's start state is not counted a second time).
    let moved = [AccountId(1), AccountId(5)];
    let r = auditor
        .statements(Timestamp(0), before_split, &[])
        .await
        .unwrap();
    assert!(r.passed(), "{:?}", r.failures);
    for l in &r.lines {
        assert_ne!(ShardId(2), l.shard, "{l:?}");
        assert_eq!(0, l.line.opening.total(), "{l:?}");
        if moved.contains(&l.line.account) {
            assert_eq!(ShardId(1), l.shard, "{l:?}");
        }
    }
    let r = auditor
        .statements(Timestamp(0), before_split, &moved)
        .await
        .unwrap();
    assert!(r.passed() && r.unknown_accounts.is_empty(), "{r:?}");
    assert!(
        !r.lines.is_empty() && r.lines.iter().all(|l| l.shard == ShardId(1)),
        "{r:?}"
    );
    // Up to now, the child answers for them, with their history on the parent before
    // the split joined in front: they open at zero and their deposits are there.
    let r = auditor
        .statements(Timestamp(0), now(), &moved)
        .await
        .unwrap();
    assert!(r.passed() && r.unknown_accounts.is_empty(), "{r:?}");
    assert!(
        !r.lines.is_empty() && r.lines.iter().all(|l| l.shard == ShardId(2)),
        "{r:?}"
    );
    for l in &r.lines {
        assert_eq!(0, l.line.opening.total(), "{l:?}");
        assert!(l.line.credits >= 1_000_000, "{l:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let accepted = writer.await.unwrap();
    assert!(accepted > 60, "{accepted}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = auditor.solvency().await.unwrap();
    assert!(s.passed(), "{:?}", s.solvency.failures);
    assert!(!s.cut.figures[2].before_start);
    // The child holds what moved: accounts 1 and 5 have balances there.
    let child_usd = s.cut.figures[2].assets[&USD];
    assert!(child_usd.balances() > 0, "{child_usd:?}");
    for (asset, l) in &s.solvency.assets {
        assert_eq!(l.deposited, l.balances + l.withdrawn, "asset {asset}");
        assert_eq!(l.sent, l.received, "asset {asset}");
    }
    // VWAP and OHLCV over the last hour, quiet: the market's trades on the parent before
    // the split and on the child after it, as one market (each trade once).
    let mut trades: Vec<EventRecord> = Vec::new();
    let mut after = tradelog_client::Position::default();
    loop {
        let page = client
            .read_events(tradelog_client::EventStream::Market(MARKET), &after, 500)
            .await
            .unwrap();
        let moved = page.position != after;
        trades.extend(
            page.events
                .into_iter()
                .filter(|e| matches!(e.event, Event::Trade { .. })),
        );
        after = page.position;
        if !moved {
            break;
        }
    }
    let on = |s: u32| trades.iter().filter(|e| e.shard == ShardId(s)).count() as u64;
    assert!(
        on(1) > 0 && on(2) > 0,
        "trades on the parent {} and child {}",
        on(1),
        on(2)
    );
    let hour_ago = Timestamp(now().0 - 3_600_000_000_000);
    let r = auditor.activity(hour_ago, now(), 60, &[]).await.unwrap();
    assert_eq!(1, r.markets.len(), "{r:?}");
    let (shard, _, m) = &r.markets[0];
    assert_eq!((ShardId(2), MARKET), (*shard, m.market));
    assert_eq!(on(1) + on(2), m.trades);
    let volume: u128 = trades
        .iter()
        .map(|e| match e.event {
            Event::Trade { qty, .. } => u128::from(qty.0),
            _ => 0,
        })
        .sum();
    assert_eq!(volume, m.volume);
    let candle_trades: u64 = m.candles.iter().map(|c| c.trades).sum();
    assert_eq!(m.trades, candle_trades);
    // GetCandles reads the market's shards in order too: the same candles as the job.
    let end = now();
    let r = auditor.activity(hour_ago, end, 60, &[]).await.unwrap();
    let job: Vec<tradelog_client::Candle> =
        r.markets[0].2.candles.iter().map(|c| (*c).into()).collect();
    let got = client.candles(MARKET, 60, hour_ago, end).await.unwrap();
    assert_eq!(job, got.candles);
    assert_eq!(ShardId(2), got.position.shard);
    assert_eq!(
        on(1) + on(2),
        got.candles.iter().map(|c| c.trades).sum::<u64>()
    );
    // Up to before the split: the parent's part only.
    let r = auditor
        .activity(hour_ago, before_split, 60, &[])
        .await
        .unwrap();
    let before = trades.iter().filter(|e| e.timestamp < before_split).count() as u64;
    assert_eq!(before, r.markets[0].2.trades);
    // The whole history of every account, quiet: from zero to the deposits, every
    // account once, the moved ones on the child with their whole history.
    let all = auditor.statements(Timestamp(0), now(), &[]).await.unwrap();
    assert!(all.passed(), "{:?}", all.failures);
    for asset in [USD, BTC] {
        let t = all.totals[&asset];
        assert_eq!(
            (0, 8_000_000),
            (t.opening, t.closing),
            "asset {asset}: {t:?}"
        );
        assert_eq!(t.closing, t.credits - t.debits, "asset {asset}");
    }
    for l in &all.lines {
        let expected = if moved.contains(&l.line.account) {
            2
        } else {
            l.line.account.0 % 2
        };
        assert_eq!(ShardId(expected as u32), l.shard, "{l:?}");
        assert_eq!(0, l.line.opening.total(), "{l:?}");
    }
    tradelog_server::testing::shutdown_all(servers.into_values()).await;
}

/// The same jobs on a cluster whose shards live on different nodes (four nodes, two
/// shards, two replicas each: every node holds one shard): every task runs on a replica
/// of its shard at the first attempt, and the audits and data jobs pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_run_on_the_replicas_of_their_shard() {
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let urls: Vec<String> = ports.iter().map(|p| url(*p)).collect();
    let members: BTreeMap<u64, String> = (1..=4)
        .map(|id| (id, urls[id as usize - 1].clone()))
        .collect();
    let mut servers = BTreeMap::new();
    for id in 1..=4u64 {
        let dir = root.path().join(format!("node-{id}"));
        let s = tradelog_server::testing::start_cluster_node_rf(
            id,
            ports[id as usize - 1],
            dir,
            &members,
            SHARDS,
            Some(2),
        )
        .await;
        servers.insert(id, s);
    }
    let held: Vec<Vec<String>> = (0..SHARDS)
        .map(|s| {
            servers
                .iter()
                .filter(|(_, srv)| srv.cluster().unwrap().hosted().contains(&ShardId(s)))
                .map(|(id, _)| urls[*id as usize - 1].clone())
                .collect()
        })
        .collect();
    assert!(held.iter().all(|h| h.len() == 2), "{held:?}");
    let client = Client::new(config(&urls)).unwrap();
    setup(&client).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(load(client.clone(), stop.clone()));
    // Enough trades for the data jobs' checks.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while client
        .trades_to_end(MARKET, Timestamp(0), None, None, None)
        .await
        .unwrap()
        .trades
        .len()
        < 20
    {
        assert!(std::time::Instant::now() < deadline, "no trades");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0);

    let done: Arc<Mutex<Vec<TaskDone>>> = Arc::default();
    let d = done.clone();
    let auditor = Auditor::connect(&config(&urls[..1]))
        .await
        .unwrap()
        .with_progress(Arc::new(move |t: &TaskDone| {
            d.lock().unwrap().push(t.clone())
        }));
    for s in 0..SHARDS {
        assert_eq!(held[s as usize], auditor.holders(ShardId(s)), "shard {s}");
    }
    let s = auditor.solvency().await.unwrap();
    assert!(s.passed(), "{:?}", s.solvency.failures);
    let tb = auditor.trial_balance().await.unwrap();
    assert!(tb.passed(), "{:?}", tb.failures);
    let v = auditor.verify().await.unwrap();
    assert_eq!(SHARDS as usize, v.shards.len());
    assert!(v.passed(), "{:?}", v.shards);
    data_jobs(&auditor, &client).await;
    let done = done.lock().unwrap().clone();
    assert!(!done.is_empty());
    for t in &done {
        assert_eq!(1, t.attempts, "{t:?}");
        assert!(
            held[t.shard.0 as usize].contains(&t.node),
            "{t:?} not on {held:?}"
        );
    }
    tradelog_server::testing::shutdown_all(servers.into_values()).await;
}

/// Statements, VWAP and OHLCV jobs (with node 1 down, the load stopped) against what the
/// per-account and per-market queries answer.
async fn data_jobs(auditor: &Auditor, client: &Client) {
    let now = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let trades = client
        .trades_to_end(MARKET, Timestamp(0), None, None, None)
        .await
        .unwrap()
        .trades;
    assert!(trades.len() >= 20, "{}", trades.len());
    let accounts: Vec<AccountId> = (1..=8).chain([99]).map(AccountId).collect();

    // The whole history: opening zero, closing == the balances now, deposits conserved.
    let all = auditor.statements(Timestamp(0), now, &[]).await.unwrap();
    assert!(all.passed(), "{:?}", all.failures);
    assert!(all.unknown_accounts.is_empty());
    let mut closing = BTreeMap::new();
    for a in &accounts {
        for b in client.balances(*a).await.unwrap().balances {
            closing.insert((*a, b.asset), (b.available.0, b.held.0));
        }
    }
    let got: BTreeMap<_, _> = all
        .lines
        .iter()
        .map(|l| {
            assert_eq!(
                routing::Placement::new(SHARDS).account_shard(l.line.account),
                l.shard
            );
            assert_eq!(0, l.line.opening.total(), "{l:?}");
            (
                (l.line.account, l.line.asset),
                (l.line.closing.available, l.line.closing.held),
            )
        })
        .collect();
    assert_eq!(closing, got);
    for asset in [USD, BTC] {
        let t = all.totals[&asset];
        assert_eq!(8_000_000, t.closing, "asset {asset}");
        assert_eq!(t.closing, t.credits - t.debits, "asset {asset}");
    }

    // From the 20th trade on, for some accounts: opening == the balances just before it.
    let mid = trades[19].timestamp;
    let some = [AccountId(1), AccountId(2), AccountId(77_777)];
    let part = auditor.statements(mid, now, &some).await.unwrap();
    assert!(part.passed(), "{:?}", part.failures);
    assert_eq!(vec![AccountId(77_777)], part.unknown_accounts);
    for a in &some[..2] {
        let before = client
            .balances_as_of(*a, tradelog_client::AsOf::Time(Timestamp(mid.0 - 1)))
            .await
            .unwrap();
        let mut opening: Vec<_> = before
            .balances
            .iter()
            .map(|b| (b.asset, (b.available.0, b.held.0)))
            .collect();
        opening.sort();
        let now: Vec<_> = closing
            .iter()
            .filter(|((acc, _), _)| acc == a)
            .map(|((_, asset), h)| (*asset, *h))
            .collect();
        let of = |h: fn(&tradelog_domain::jobs::StatementLine) -> Holding| -> Vec<_> {
            part.lines
                .iter()
                .filter(|l| l.line.account == *a)
                .map(|l| (l.line.asset, (h(&l.line).available, h(&l.line).held)))
                .collect()
        };
        assert_eq!(opening, of(|l| l.opening), "account {a}: opening");
        assert_eq!(now, of(|l| l.closing), "account {a}: closing");
    }

    // VWAP and candles from the 20th trade on, against the trades and GetCandles.
    let r = auditor.activity(mid, now, 1, &[]).await.unwrap();
    assert!(r.unknown_markets.is_empty());
    assert_eq!(1, r.markets.len());
    let (shard, _, m) = &r.markets[0];
    assert_eq!(
        (ShardId(1), MARKET, USD, BTC),
        (*shard, m.market, m.quote, m.base)
    );
    let in_range: Vec<_> = trades.iter().filter(|t| t.timestamp >= mid).collect();
    assert_eq!(in_range.len() as u64, m.trades);
    let volume: u128 = in_range.iter().map(|t| u128::from(t.qty.0)).sum();
    let pv: u128 = in_range
        .iter()
        .map(|t| u128::from(t.price.0) * u128::from(t.qty.0))
        .sum();
    assert_eq!(Some((pv, volume)), m.vwap());
    assert_eq!(Some(in_range[0].price), m.open);
    assert_eq!(Some(in_range[in_range.len() - 1].price), m.close);
    assert_eq!(in_range.iter().map(|t| t.price).max(), m.high);
    assert_eq!(in_range.iter().map(|t| t.price).min(), m.low);
    let candles = client.candles(MARKET, 1, mid, now).await.unwrap().candles;
    let job: Vec<tradelog_client::Candle> = m.candles.iter().map(|c| (*c).into()).collect();
    assert_eq!(candles, job);
    assert_eq!(m.trades, job.iter().map(|c| c.trades).sum::<u64>());
    let none = auditor
        .activity(mid, now, 0, &[MARKET, MarketId(42)])
        .await
        .unwrap();
    assert_eq!(vec![MarketId(42)], none.unknown_markets);
    assert!(none.markets[0].2.candles.is_empty());
    assert_eq!(m.vwap(), none.markets[0].2.vwap());
}
