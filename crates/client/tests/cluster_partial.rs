//! A cluster whose nodes hold only some shards (docs/design/0013, step 3): five servers in
//! this process form a cluster of four shards with three replicas each, so each node
//! opens only the two or three shards the placement policy gives it.
//!
//! Through the public API only: commands sent to any node reach their shard (a node that
//! holds no replica proposes through a node that does), cross-shard transfers and orders
//! settle on shards that share no node, and reads of a shard go to a node that holds it
//! (the client re-routes on `WRONG_NODE`). Afterwards every balance is exactly what the
//! transfers and fills say, the three replicas of each shard agree, and a node restarted
//! from its data directory opens the same shards again.
//!
//! A second cluster (four nodes, two shards, two replicas each: no node holds both)
//! answers open-orders reads whose books are on the shard the account's node lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tradelog_client::{Client, ClientConfig, ClientError, EventStream, Position, RetryPolicy};
use tradelog_domain::routing::Placement;
use tradelog_domain::*;
use tradelog_server::testing::{free_port, loopback_url as url, start_cluster_node_rf};
use tradelog_server::RunningServer;

const NODES: u64 = 5;
const SHARDS: u32 = 4;
const RF: usize = 3;
const ACCOUNTS: u64 = 16;
const FUNDS: u64 = 1_000_000;
const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);
const MARKET: MarketId = MarketId(1);
const WAIT: Duration = Duration::from_secs(90);

fn client(urls: &[String]) -> Client {
    let mut c = ClientConfig::cluster(urls.iter().cloned());
    c.request_timeout_ms = 60_000;
    c.retry.attempts_max = 40;
    c.retry.backoff_ms_max = 500;
    Client::new(c).unwrap()
}

/// A client of one node that never routes: its commands go to that node whatever their
/// shard, and a refusal reaches the caller.
fn pinned(u: &str) -> Client {
    let mut c = ClientConfig::new(u.to_string());
    c.request_timeout_ms = 60_000;
    c.route_to_leaders = false;
    c.retry = RetryPolicy::NEVER;
    Client::new(c).unwrap()
}

/// The shards each node opened a replica of.
fn hosted(servers: &BTreeMap<u64, RunningServer>) -> BTreeMap<u64, BTreeSet<ShardId>> {
    servers
        .iter()
        .map(|(id, s)| (*id, s.cluster().unwrap().hosted()))
        .collect()
}

/// Waits until every shard has a leader, as the nodes holding it see it.
async fn leaders(servers: &BTreeMap<u64, RunningServer>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut led = BTreeSet::new();
        for s in servers.values() {
            let c = s.cluster().unwrap();
            for shard in c.hosted() {
                let g = c.group(shard).unwrap();
                if g.raft().current_leader().await.is_some() {
                    led.insert(shard);
                }
            }
        }
        if led.len() == SHARDS as usize {
            return;
        }
        assert!(Instant::now() < deadline, "leaders of {led:?} only");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every shard has a leader and no node leads more than one shard (four
/// shards on five nodes: the formation spreads them).
async fn leaders_spread(servers: &BTreeMap<u64, RunningServer>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut leader: BTreeMap<ShardId, u64> = BTreeMap::new();
        for s in servers.values() {
            let c = s.cluster().unwrap();
            for shard in c.hosted() {
                if let Some(l) = c.group(shard).unwrap().raft().current_leader().await {
                    leader.insert(shard, l);
                }
            }
        }
        let mut led: BTreeMap<u64, usize> = BTreeMap::new();
        for l in leader.values() {
            *led.entry(*l).or_default() += 1;
        }
        if leader.len() == SHARDS as usize && led.values().all(|n| *n == 1) {
            return;
        }
        assert!(Instant::now() < deadline, "leaders: {leader:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /ready` on a server's HTTP port: the status code.
fn ready(s: &RunningServer) -> u16 {
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect(s.http_addr()).unwrap();
    t.write_all(b"GET /ready HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    t.read_to_string(&mut out).unwrap();
    out.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Waits until the replicas of every shard report the same state hash.
async fn converged(servers: &BTreeMap<u64, RunningServer>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut views: BTreeMap<ShardId, BTreeSet<[u8; 32]>> = BTreeMap::new();
        for s in servers.values() {
            let c = s.cluster().unwrap();
            for shard in c.hosted() {
                let (_, h) = c.state_hash(shard).await.unwrap();
                views.entry(shard).or_default().insert(h);
            }
        }
        if views.len() == SHARDS as usize && views.values().all(|h| h.len() == 1) {
            return;
        }
        assert!(Instant::now() < deadline, "replicas differ: {views:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A BTC/USD market on `shard`: lots and ticks of 1, no fees (they go to account 1).
fn market(id: MarketId, shard: ShardId) -> MarketSpec {
    MarketSpec {
        id,
        base: BTC,
        quote: USD,
        lot_size: 1,
        tick_size: 1,
        min_qty: Qty(1),
        max_qty: Qty(1_000),
        maker_fee_bps: 0,
        taker_fee_bps: 0,
        fee_account: AccountId(1),
        collar_bps: 0,
        shard,
    }
}

fn order(account: u64, side: Side, price: u64, qty: u64, client_order_id: u64) -> NewOrder {
    NewOrder {
        account: AccountId(account),
        market: MARKET,
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(price),
        qty: Qty(qty),
        post_only: false,
        client_order_id,
        stp: SelfTradePrevention::CancelResting,
    }
}

/// Waits (at most [`WAIT`]) until `f` answers true.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, f: impl Fn() -> F) {
    let deadline = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per shard, the sequence numbers of `events` in order.
fn seqs(events: &[EventRecord]) -> BTreeMap<ShardId, Vec<u64>> {
    let mut out: BTreeMap<ShardId, Vec<u64>> = BTreeMap::new();
    for e in events {
        out.entry(e.shard).or_default().push(e.seq);
    }
    out
}

/// Asserts that each shard's events in `events` are numbered 1, 2, 3, ... (none missing,
/// none twice, in order); returns how many each has.
fn contiguous(events: &[EventRecord], what: &str) -> BTreeMap<ShardId, u64> {
    seqs(events)
        .into_iter()
        .map(|(s, v)| {
            let want: Vec<u64> = (1..=v.len() as u64).collect();
            assert_eq!(want, v, "{what}: shard {s}");
            (s, v.len() as u64)
        })
        .collect()
}

/// The all stream through a routed client (which starts at `entry`, a node holding only
/// some shards): read in small pages, it has every event of every shard once, in order,
/// at least as many as each shard had recorded before; a subscription delivers the same
/// and then follows a new transfer live.
async fn merged_streams(servers: &BTreeMap<u64, RunningServer>, all: &Client, entry: &str) {
    // How many events each shard has recorded, from a node holding it.
    let mut recorded: BTreeMap<ShardId, u64> = BTreeMap::new();
    for s in servers.values() {
        let c = s.cluster().unwrap();
        for shard in c.hosted() {
            let n = c
                .group(shard)
                .unwrap()
                .read(|e| e.next_event_seq() - 1)
                .await
                .unwrap();
            recorded.insert(shard, n);
        }
    }
    assert_eq!(recorded.len(), SHARDS as usize);
    let c = client(&[entry.to_string()]);
    let mut events: Vec<EventRecord> = Vec::new();
    let mut after = Position::default();
    loop {
        let page = c.read_events(EventStream::All, &after, 7).await.unwrap();
        assert!(page.events.len() <= 7, "{} events", page.events.len());
        if page.events.is_empty() && page.position == after {
            break;
        }
        events.extend(page.events);
        after = page.position;
    }
    let read = contiguous(&events, "the all stream read in pages of 7");
    for (s, n) in &recorded {
        assert!(
            read.get(s).copied().unwrap_or(0) >= *n,
            "shard {s}: {read:?} < {recorded:?}"
        );
        assert_eq!(after.get(*s), read[s], "position {after:?}");
    }
    assert!(
        events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "merged by leader time"
    );
    // A subscription from the beginning: the same events, then a new one live.
    use tokio_stream::StreamExt;
    let mut sub = c
        .subscribe(EventStream::All, Position::default())
        .await
        .unwrap();
    let mut got: Vec<EventRecord> = Vec::new();
    while (0..SHARDS).any(|s| sub.position().get(ShardId(s)) < after.get(ShardId(s))) {
        let page = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("a page in time")
            .expect("open")
            .unwrap();
        got.extend(page.events);
    }
    let caught_up: Vec<EventRecord> = got
        .iter()
        .filter(|e| e.seq <= after.get(e.shard))
        .cloned()
        .collect();
    assert_eq!(
        seqs(&events),
        seqs(&caught_up),
        "the subscription's catch-up"
    );
    let a = all
        .submit(Command::Transfer(TransferSpec {
            id: TransferId(900_000),
            debit: AccountId(1),
            credit: AccountId(2),
            asset: USD,
            amount: Amount(1),
            balancing: false,
        }))
        .await
        .unwrap();
    assert!(a.result.is_ok());
    let posted = |e: &EventRecord| matches!(e.event, Event::TransferPosted { id, .. } if id == TransferId(900_000));
    tokio::time::timeout(WAIT, async {
        while !got.iter().any(posted) {
            let page = sub.next().await.expect("open").unwrap();
            got.extend(page.events);
        }
    })
    .await
    .expect("the new transfer, live");
    contiguous(&got, "the subscription");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_holding_some_shards_serve_every_command_and_read() {
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let urls: Vec<String> = ports.iter().map(|p| url(*p)).collect();
    let members: BTreeMap<u64, String> = (1..=NODES)
        .map(|id| (id, urls[id as usize - 1].clone()))
        .collect();
    let dir = |id: u64| root.path().join(format!("node-{id}"));
    let mut servers: BTreeMap<u64, RunningServer> = BTreeMap::new();
    for id in 1..=NODES {
        let s = start_cluster_node_rf(
            id,
            ports[id as usize - 1],
            dir(id),
            &members,
            SHARDS,
            Some(RF),
        )
        .await;
        servers.insert(id, s);
    }

    // Placement: every shard on RF distinct nodes, loads within one, and a node's data
    // directory holds exactly the shards it opened.
    let placed = hosted(&servers);
    let mut holders: BTreeMap<ShardId, BTreeSet<u64>> = BTreeMap::new();
    for (node, shards) in &placed {
        for s in shards {
            holders.entry(*s).or_default().insert(*node);
        }
        let on_disk: BTreeSet<ShardId> = (0..SHARDS)
            .map(ShardId)
            .filter(|s| dir(*node).join(format!("shard-{}", s.0)).is_dir())
            .collect();
        assert_eq!(&on_disk, shards, "node {node}'s shard directories");
    }
    assert_eq!(holders.len(), SHARDS as usize, "{placed:?}");
    assert!(holders.values().all(|h| h.len() == RF), "{placed:?}");
    let loads: Vec<usize> = placed.values().map(|s| s.len()).collect();
    assert!(
        loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
        "{placed:?}"
    );
    assert!(
        placed.values().all(|s| s.len() < SHARDS as usize),
        "no node holds every shard: {placed:?}"
    );
    leaders_spread(&servers).await;
    for s in servers.values() {
        assert_eq!(
            ready(s),
            200,
            "every node is ready, whichever shards it holds"
        );
    }

    // The cluster map records the same placement, with every node.
    let deadline = Instant::now() + WAIT;
    loop {
        let maps: Vec<_> = servers
            .values()
            .map(|s| s.cluster().unwrap().map())
            .collect();
        let done = maps.iter().all(|m| {
            m.is_initialised()
                && m.replication_factor == RF
                && m.nodes.len() == NODES as usize
                && (0..SHARDS).all(|s| {
                    m.replicas(ShardId(s)).map(|r| r.iter().copied().collect())
                        == holders.get(&ShardId(s)).cloned()
                })
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the map: {:?}", maps[0]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Setup through a routed client; accounts 1..=16 spread over the four shards.
    let c = client(&urls);
    c.create_asset(Asset {
        id: USD,
        code: "USD".into(),
        scale: 2,
    })
    .await
    .unwrap();
    c.create_asset(Asset {
        id: BTC,
        code: "BTC".into(),
        scale: 0,
    })
    .await
    .unwrap();
    for a in 1..=ACCOUNTS {
        c.open_account(AccountId(a), Principal(a)).await.unwrap();
        c.deposit(TransferId(a), AccountId(a), USD, Amount(FUNDS))
            .await
            .unwrap();
        c.deposit(TransferId(1_000 + a), AccountId(a), BTC, Amount(FUNDS))
            .await
            .unwrap();
    }

    // Transfers sent to every node without routing: a node that holds no replica of the
    // debited account's shard proposes through one that does. Half of them cross shards.
    let mut want: BTreeMap<u64, u64> = (1..=ACCOUNTS).map(|a| (a, FUNDS)).collect();
    let mut id = 10_000;
    for (k, u) in urls.iter().enumerate() {
        let p = pinned(u);
        for j in 0..24u64 {
            id += 1;
            let debit = 1 + (id * 7 + j) % ACCOUNTS;
            let credit = 1 + (debit + 1 + (k as u64) % 3) % ACCOUNTS;
            let amount = 1 + id % 7;
            let a = p
                .submit(Command::Transfer(TransferSpec {
                    id: TransferId(id),
                    debit: AccountId(debit),
                    credit: AccountId(credit),
                    asset: USD,
                    amount: Amount(amount),
                    balancing: false,
                }))
                .await
                .unwrap_or_else(|e| panic!("transfer {id} through node {}: {e}", k + 1));
            assert!(a.result.is_ok(), "transfer {id}: {:?}", a.result);
            *want.get_mut(&debit).unwrap() -= amount;
            *want.get_mut(&credit).unwrap() += amount;
        }
    }

    // A market on the last shard: orders from accounts on the other shards hold, match
    // and settle across shards.
    let market_shard = ShardId(SHARDS - 1);
    c.create_market(market(MARKET, market_shard)).await.unwrap();
    // Sellers 1..=4 rest 10 BTC each at 100..=103; buyers 5..=8 take 10 at up to 103.
    // An order's answer means its account's shard holds the funds; it reaches the book
    // later, by a cross-shard message from that shard, and messages from different
    // shards arrive in no fixed order. So each waits until the book shows the one before.
    let mut coid = 0;
    for s in 1..=4u64 {
        coid += 1;
        c.place_order(order(s, Side::Sell, 99 + s, 10, coid))
            .await
            .unwrap();
        eventually("the ask resting", || async {
            c.book(MARKET, 10).await.unwrap().asks.len() == s as usize
        })
        .await;
    }
    for (k, b) in (5..=8u64).enumerate() {
        coid += 1;
        c.place_order(order(b, Side::Buy, 103, 10, coid))
            .await
            .unwrap();
        eventually("the buy matched", || async {
            c.book(MARKET, 10).await.unwrap().asks.len() == 3 - k
        })
        .await;
    }
    // Price-time priority: buyer 5 takes seller 1's ten at 100, buyer 6 seller 2's at 101...
    for (seller, buyer, price) in [(1, 5, 100), (2, 6, 101), (3, 7, 102), (4, 8, 103)] {
        *want.get_mut(&seller).unwrap() += 10 * price;
        *want.get_mut(&buyer).unwrap() -= 10 * price;
    }

    // Reads go to nodes holding each shard; every balance is exact once the cross-shard
    // settlements landed, and money is conserved.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut got = BTreeMap::new();
        let mut btc = BTreeMap::new();
        for a in 1..=ACCOUNTS {
            let b = c.balances(AccountId(a)).await.unwrap();
            got.insert(a, b.of(USD).available.0 + b.of(USD).held.0);
            btc.insert(a, b.of(BTC).available.0 + b.of(BTC).held.0);
        }
        let btc_want: BTreeMap<u64, u64> = (1..=ACCOUNTS)
            .map(|a| {
                let d = match a {
                    1..=4 => FUNDS - 10,
                    5..=8 => FUNDS + 10,
                    _ => FUNDS,
                };
                (a, d)
            })
            .collect();
        if got == want && btc == btc_want {
            assert_eq!(got.values().sum::<u64>(), FUNDS * ACCOUNTS);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "balances: got {got:?} / {btc:?}, want {want:?} / {btc_want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    converged(&servers).await;

    // A node asked directly about a shard it does not hold says so, typed, and names
    // the shard; a routed client given only that node finds a holder.
    let (lonely, missing) = placed
        .iter()
        .find_map(|(n, s)| {
            (0..SHARDS)
                .map(ShardId)
                .find(|x| !s.contains(x))
                .map(|x| (*n, x))
        })
        .unwrap();
    let account = (1..=ACCOUNTS)
        .find(|a| Placement::new(SHARDS).account_shard(AccountId(*a)) == missing)
        .unwrap();
    let only = &urls[lonely as usize - 1];
    match pinned(only).balances(AccountId(account)).await {
        Err(ClientError::WrongNode { shard, .. }) => assert_eq!(shard, missing),
        other => panic!("node {lonely} about shard {missing}: {other:?}"),
    }
    let b = client(std::slice::from_ref(only))
        .balances(AccountId(account))
        .await
        .unwrap();
    assert_eq!(
        b.of(USD).available.0 + b.of(USD).held.0,
        want[&account],
        "account {account} read through node {lonely}"
    );
    // Trades come from the market shard's events: a node that does not hold it refuses
    // (its event index has none of them) instead of answering an empty page, and a
    // routed client finds a holder and all four fills.
    let outsider = placed
        .iter()
        .find(|(_, s)| !s.contains(&market_shard))
        .map(|(n, _)| &urls[*n as usize - 1])
        .unwrap();
    match pinned(outsider)
        .trades(MARKET, Timestamp(0), None, None, 100)
        .await
    {
        Err(ClientError::WrongNode { shard, .. }) => assert_eq!(shard, market_shard),
        other => panic!("trades from a node without shard {market_shard}: {other:?}"),
    }
    let t = client(std::slice::from_ref(outsider))
        .trades(MARKET, Timestamp(0), None, None, 100)
        .await
        .unwrap();
    assert_eq!(t.trades.len(), 4, "{t:?}");
    // A stream merges every shard: a node holding some refuses rather than leave a gap,
    // and a routed client reads each shard from a node holding it and merges the parts.
    match pinned(only)
        .read_events(EventStream::All, &Position::default(), 10)
        .await
    {
        Err(ClientError::WrongNode { .. }) => {}
        other => panic!("the all stream on node {lonely}: {other:?}"),
    }
    merged_streams(&servers, &c, only).await;
    // Node 1 restarted from its data directory (same flags) opens the same shards.
    let before = placed[&1].clone();
    servers.remove(&1).unwrap().shutdown().await.unwrap();
    let again = start_cluster_node_rf(1, ports[0], dir(1), &members, SHARDS, Some(RF)).await;
    assert_eq!(again.cluster().unwrap().hosted(), before);
    servers.insert(1, again);
    leaders(&servers).await;
    id += 1;
    let a = c
        .submit(Command::Transfer(TransferSpec {
            id: TransferId(id),
            debit: AccountId(1),
            credit: AccountId(2),
            asset: USD,
            amount: Amount(1),
            balancing: false,
        }))
        .await
        .unwrap();
    assert!(a.result.is_ok());
    converged(&servers).await;
    tradelog_server::testing::shutdown_all(servers.into_values()).await;
}

/// Four nodes, two shards, two replicas each: every node holds one shard, so no node
/// can answer an open-orders read alone when an account's orders rest on the other
/// shard's market. The client reads the account's holds where its shard lives and looks
/// the rest up on a holder of the market's shard, wherever it enters the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_orders_merge_books_from_nodes_that_share_no_shard() {
    const NODES: u64 = 4;
    const SHARDS: u32 = 2;
    const LOCAL: MarketId = MarketId(2);
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let urls: Vec<String> = ports.iter().map(|p| url(*p)).collect();
    let members: BTreeMap<u64, String> = (1..=NODES)
        .map(|id| (id, urls[id as usize - 1].clone()))
        .collect();
    let mut servers: BTreeMap<u64, RunningServer> = BTreeMap::new();
    for id in 1..=NODES {
        let dir = root.path().join(format!("node-{id}"));
        let s =
            start_cluster_node_rf(id, ports[id as usize - 1], dir, &members, SHARDS, Some(2)).await;
        servers.insert(id, s);
    }
    let placed = hosted(&servers);
    assert!(placed.values().all(|s| s.len() == 1), "{placed:?}");
    let holder_of = |s: u32| -> Vec<u64> {
        placed
            .iter()
            .filter(|(_, h)| h.contains(&ShardId(s)))
            .map(|(id, _)| *id)
            .collect()
    };
    assert_eq!(
        (holder_of(0).len(), holder_of(1).len()),
        (2, 2),
        "{placed:?}"
    );

    let c = client(&urls);
    for (id, code) in [(USD, "USD"), (BTC, "BTC")] {
        c.create_asset(Asset {
            id,
            code: code.into(),
            scale: 0,
        })
        .await
        .unwrap();
    }
    // Market 1 on shard 1, market 2 on shard 0.
    for (id, shard) in [(MARKET, ShardId(1)), (LOCAL, ShardId(0))] {
        c.create_market(market(id, shard)).await.unwrap();
    }
    // Account 2 lives on shard 0, account 3 on shard 1.
    let placement = Placement::new(SHARDS);
    assert_eq!(placement.account_shard(AccountId(2)), ShardId(0));
    assert_eq!(placement.account_shard(AccountId(3)), ShardId(1));
    for a in [2u64, 3] {
        c.open_account(AccountId(a), Principal(a)).await.unwrap();
        c.deposit(TransferId(a), AccountId(a), USD, Amount(FUNDS))
            .await
            .unwrap();
    }
    // Bids (they rest: nobody sells): account 2 on both markets, account 3 on market 2.
    let mut ids: BTreeMap<(u64, MarketId), Vec<OrderId>> = BTreeMap::new();
    let mut coid = 0;
    for (account, market, price) in [
        (2u64, MARKET, 90u64),
        (2, LOCAL, 80),
        (2, MARKET, 91),
        (3, LOCAL, 81),
    ] {
        coid += 1;
        let r = c
            .place_order(NewOrder {
                market,
                ..order(account, Side::Buy, price, 5, coid)
            })
            .await
            .unwrap();
        ids.entry((account, market))
            .or_default()
            .push(r.order_id().unwrap());
    }
    let want =
        |ids: &BTreeMap<(u64, MarketId), Vec<OrderId>>, account: u64| -> Vec<(OrderId, MarketId)> {
            let mut v: Vec<(OrderId, MarketId)> = ids
                .iter()
                .filter(|((a, _), _)| *a == account)
                .flat_map(|((_, m), v)| v.iter().map(|id| (*id, *m)))
                .collect();
            v.sort();
            v
        };
    let got = |o: &tradelog_client::OpenOrders| -> Vec<(OrderId, MarketId)> {
        o.orders.iter().map(|o| (o.order, o.market)).collect()
    };
    // The orders reach their books by cross-shard messages: wait for every one.
    for m in [MARKET, LOCAL] {
        eventually("the bids resting", || async {
            let n: usize = ids
                .iter()
                .filter(|((_, mk), _)| *mk == m)
                .map(|(_, v)| v.len())
                .sum();
            c.book(m, 10)
                .await
                .unwrap()
                .bids
                .iter()
                .map(|l| l.orders as usize)
                .sum::<usize>()
                == n
        })
        .await;
    }
    // Through a routed client entering at each node: the whole answer, with the
    // positions of the account's shard and of both books.
    for u in &urls {
        let entry = client(std::slice::from_ref(u));
        for account in [2u64, 3] {
            let open = entry.open_orders(AccountId(account)).await.unwrap();
            assert_eq!(
                got(&open),
                want(&ids, account),
                "account {account} through {u}"
            );
            let shards: BTreeSet<ShardId> = open.positions.iter().map(|p| p.shard).collect();
            assert_eq!(shards, BTreeSet::from([ShardId(0), ShardId(1)]), "{open:?}");
            assert!(open.orders.iter().all(|o| o.account == AccountId(account)));
        }
    }
    // A client that does not route gets the node's typed refusal for the shard it lacks.
    let shard0 = &urls[holder_of(0)[0] as usize - 1];
    match pinned(shard0).open_orders(AccountId(2)).await {
        Err(ClientError::WrongNode { shard, .. }) => assert_eq!(shard, ShardId(1)),
        other => panic!("expected WrongNode for shard 1, got {other:?}"),
    }
    // A cancelled order leaves the answer once its market's shard removed it.
    let gone = ids[&(2, MARKET)][0];
    c.cancel_order(MARKET, gone).await.unwrap();
    ids.get_mut(&(2, MARKET)).unwrap().remove(0);
    eventually("the cancel to reach the book", || async {
        got(&c.open_orders(AccountId(2)).await.unwrap()) == want(&ids, 2)
    })
    .await;
    assert_eq!(want(&ids, 2).len(), 2);
    drop(c);
    tradelog_server::testing::shutdown_all(servers.into_values()).await;
}

/// A replica that received its shard as a snapshot has no events before it (its Raft log
/// starts there): three nodes, one shard at two replicas, snapshots every 20 entries; the
/// shard moves onto the third node, which installs a snapshot. A routed client entering
/// at that node reads and subscribes to the whole stream from the start anyway: the node
/// answers `OUT_OF_RANGE`, and the client asks the holder that has the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_a_new_replica_is_read_from_a_holder_that_has_it() {
    use tokio_stream::StreamExt;
    const NODES: u64 = 3;
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let urls: Vec<String> = ports.iter().map(|p| url(*p)).collect();
    let members: BTreeMap<u64, String> = (1..=NODES)
        .map(|id| (id, urls[id as usize - 1].clone()))
        .collect();
    let mut servers: BTreeMap<u64, RunningServer> = BTreeMap::new();
    for id in 1..=NODES {
        let dir = root.path().join(format!("node-{id}"));
        let s = tradelog_server::testing::start_cluster_node_snapshotting(
            id,
            ports[id as usize - 1],
            dir,
            &members,
            1,
            Some(2),
            20,
        )
        .await;
        servers.insert(id, s);
    }
    let placed = hosted(&servers);
    let holders: Vec<u64> = placed
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(holders.len(), 2, "{placed:?}");
    let newcomer = (1..=NODES).find(|n| !holders.contains(n)).unwrap();
    let (kept, dropped) = (holders[0], holders[1]);

    let c = client(&urls);
    c.create_asset(Asset {
        id: USD,
        code: "USD".into(),
        scale: 2,
    })
    .await
    .unwrap();
    for a in 1..=2 {
        c.open_account(AccountId(a), Principal(a)).await.unwrap();
        c.deposit(TransferId(a), AccountId(a), USD, Amount(FUNDS))
            .await
            .unwrap();
    }
    // One entry each: snapshots at 20, 40, 60 and 80 entries, the log purged behind them.
    for id in 100..180u64 {
        c.transfer(TransferSpec {
            id: TransferId(id),
            debit: AccountId(1 + id % 2),
            credit: AccountId(2 - id % 2),
            asset: USD,
            amount: Amount(1),
            balancing: false,
        })
        .await
        .unwrap();
    }
    // The shard moves onto the new node, off one holder.
    let change = tradelog_client::ClusterChange::MoveShard {
        shard: 0,
        nodes: vec![kept, newcomer],
    };
    c.change_cluster(&change).await.unwrap();
    eventually("the new replica to open", || async {
        servers[&newcomer]
            .cluster()
            .unwrap()
            .hosted()
            .contains(&ShardId(0))
            && !servers[&dropped]
                .cluster()
                .unwrap()
                .hosted()
                .contains(&ShardId(0))
    })
    .await;
    let new_url = &urls[newcomer as usize - 1];
    let kept_url = &urls[kept as usize - 1];
    // Everything from the node that held the shard from the start.
    let all = read_all(&pinned(kept_url), EventStream::All).await.unwrap();
    let per_shard = contiguous(&all, "the kept holder's stream");
    assert!(per_shard[&ShardId(0)] > 160, "{per_shard:?}");
    // The new replica lacks the start of it, and says so.
    match read_all(&pinned(new_url), EventStream::All).await {
        Err(ClientError::OutOfRange(m)) => println!("the new replica: {m}"),
        other => panic!("expected OUT_OF_RANGE from the new replica, got {other:?}"),
    }
    // A routed client entering there reads it all from the holder that has it ...
    let entry = client(std::slice::from_ref(new_url));
    let read = read_all(&entry, EventStream::All).await.unwrap();
    assert_eq!(read, all, "the whole stream through the new replica's node");
    // ... and a subscription from the start catches up the same events.
    let mut sub = entry
        .subscribe(EventStream::All, Position::default())
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < all.len() {
        let page = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("the subscription catches up")
            .expect("the subscription goes on")
            .unwrap();
        got.extend(page.events);
    }
    assert_eq!(got, all, "the subscription's catch-up");
    drop((sub, entry, c));
    tradelog_server::testing::shutdown_all(servers.into_values()).await;
}

/// Every event of `stream` from the start, page by page to the end.
async fn read_all(c: &Client, stream: EventStream) -> Result<Vec<EventRecord>, ClientError> {
    let mut after = Position::default();
    let mut out = Vec::new();
    loop {
        let page = c.read_events(stream, &after, 50).await?;
        let moved = page.position != after;
        out.extend(page.events);
        after = page.position;
        if !moved {
            return Ok(out);
        }
    }
}
