//! The server end to end: real listeners on 127.0.0.1 (port 0), a real node on a temp
//! directory, the generated tonic client for gRPC and a plain hyper client for HTTP.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Request};
use tradelog_api::proto as pb;
use tradelog_api::proto::tradelog_client::TradelogClient;
use tradelog_domain as d;
use tradelog_server::{RunningServer, Server, ServerConfig};

const USD: u32 = 1;
const BTC: u32 = 2;
const MARKET: u32 = 1;
/// Buyer, on shard 1 of 3.
const BUYER: u64 = 1;
/// Seller, on shard 2 of 3.
const SELLER: u64 = 2;
/// Fee account, on shard 0 of 3 (with the market).
const FEES: u64 = 3;
/// 0.01 BTC.
const LOT: u64 = 1_000_000;
const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &std::path::Path) -> ServerConfig {
    ServerConfig {
        data_dir: dir.to_path_buf(),
        shards: 3,
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
}

async fn start(dir: &std::path::Path) -> RunningServer {
    Server::start(config(dir)).await.expect("server starts")
}

async fn grpc(server: &RunningServer) -> TradelogClient<Channel> {
    TradelogClient::connect(format!("http://{}", server.grpc_addr()))
        .await
        .expect("gRPC connects")
}

/// Polls `f` until it returns `Some`, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn market_spec() -> pb::MarketSpec {
    pb::MarketSpec {
        id: MARKET,
        base_asset_id: BTC,
        quote_asset_id: USD,
        lot_size: LOT,
        tick_size: 100,
        min_qty: LOT,
        max_qty: 100_000 * LOT,
        maker_fee_bps: 10,
        taker_fee_bps: 20,
        fee_account_id: FEES,
        collar_bps: 0,
        shard: 0,
    }
}

fn accepted(r: &pb::CommandResponse) -> pb::accepted::Kind {
    match r.outcome.as_ref().and_then(|o| o.result.clone()) {
        Some(pb::outcome::Result::Accepted(a)) => a.kind.expect("accepted kind"),
        other => panic!("expected an accepted outcome, got {other:?}"),
    }
}

fn limit(account: u64, side: pb::Side, price: u64, lots: u64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        account_id: account,
        market_id: MARKET,
        side: side.into(),
        order_type: pb::OrderType::Limit.into(),
        time_in_force: pb::TimeInForce::Gtc.into(),
        price,
        qty: lots * LOT,
        post_only: false,
        client_order_id: 0,
        stp: 0,
    }
}

/// Catalog, three accounts on three shards, deposits.
async fn setup_grpc(c: &mut TradelogClient<Channel>) {
    for (id, code, scale) in [(USD, "USD", 2), (BTC, "BTC", 8)] {
        let r = c
            .create_asset(pb::CreateAssetRequest {
                asset: Some(pb::Asset {
                    id,
                    code: code.into(),
                    scale,
                }),
            })
            .await
            .unwrap()
            .into_inner();
        accepted(&r);
    }
    let r = c
        .create_market(pb::CreateMarketRequest {
            market: Some(market_spec()),
        })
        .await
        .unwrap()
        .into_inner();
    accepted(&r);
    for account in [BUYER, SELLER, FEES] {
        let r = c
            .open_account(pb::OpenAccountRequest {
                account_id: account,
                owner: account,
            })
            .await
            .unwrap()
            .into_inner();
        accepted(&r);
        assert_eq!(r.shard, (account % 3) as u32, "accounts spread by id");
        assert!(r.input > 0);
    }
    for (id, account, asset, amount) in [(1, BUYER, USD, 10_000_000), (2, SELLER, BTC, 500 * LOT)] {
        let r = c
            .deposit(pb::DepositRequest {
                transfer_id: id,
                account_id: account,
                asset_id: asset,
                amount,
            })
            .await
            .unwrap()
            .into_inner();
        accepted(&r);
    }
}

/// (available, held) per asset.
async fn grpc_balances(c: &mut TradelogClient<Channel>, account: u64) -> BTreeMap<u32, (u64, u64)> {
    let r = c
        .get_balances(pb::GetBalancesRequest {
            account_id: account,
            as_of: None,
            stale: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.account_id, account);
    assert_eq!(r.position.unwrap().shard, (account % 3) as u32);
    r.balances
        .iter()
        .map(|b| (b.asset_id, (b.available, b.held)))
        .collect()
}

fn domain(events: Vec<pb::EventRecord>) -> Vec<d::EventRecord> {
    events
        .into_iter()
        .map(|e| d::EventRecord::try_from(e).expect("well-formed event"))
        .collect()
}

fn all_stream() -> pb::EventStream {
    pb::EventStream {
        stream: Some(pb::event_stream::Stream::All(pb::event_stream::All {})),
    }
}

/// Every event of a stream, following pages to the end.
async fn read_all(c: &mut TradelogClient<Channel>, stream: pb::EventStream) -> Vec<d::EventRecord> {
    read_after(c, stream, None).await
}

/// Every event of a stream after a position, following pages of 7 to the end.
async fn read_after(
    c: &mut TradelogClient<Channel>,
    stream: pb::EventStream,
    after: Option<pb::Position>,
) -> Vec<d::EventRecord> {
    let mut after = after;
    let mut out = Vec::new();
    loop {
        let r = c
            .read_events(pb::ReadEventsRequest {
                stream: Some(stream),
                after: after.clone(),
                limit: 7,
                shards: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        // A page of a filtered stream may be empty yet move on: the end is where the
        // position stops.
        let seqs = |p: &Option<pb::Position>| -> BTreeMap<u32, u64> {
            p.iter()
                .flat_map(|p| &p.shards)
                .filter(|s| s.seq > 0)
                .map(|s| (s.shard, s.seq))
                .collect()
        };
        if r.events.is_empty() && seqs(&r.position) == seqs(&after) {
            return out;
        }
        out.extend(domain(r.events));
        after = r.position;
    }
}

fn assert_invalid(r: Result<tonic::Response<pb::CommandResponse>, tonic::Status>, field: &str) {
    let s = r.expect_err("invalid input is refused");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        s.message().contains(field),
        "{field} not in {:?}",
        s.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_trades_across_shards_reads_events_and_subscribes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = grpc(&server).await;
    setup_grpc(&mut c).await;

    // A crossing pair on accounts of shards 2 (seller, resting) and 1 (buyer, taker);
    // the book lives on shard 0.
    let sell = c
        .place_order(limit(SELLER, pb::Side::Sell, 30_000, 200))
        .await
        .unwrap()
        .into_inner();
    let pb::accepted::Kind::OrderId(sell_id) = accepted(&sell) else {
        panic!("an order id")
    };
    eventually("the sell order to rest", || {
        let mut c = c.clone();
        async move {
            c.get_order(pb::GetOrderRequest {
                market_id: MARKET,
                order_id: sell_id,
                as_of: None,
                stale: false,
            })
            .await
            .ok()
        }
    })
    .await;
    let buy = c
        .place_order(limit(BUYER, pb::Side::Buy, 30_100, 200))
        .await
        .unwrap()
        .into_inner();
    let pb::accepted::Kind::OrderId(buy_id) = accepted(&buy) else {
        panic!("an order id")
    };

    // Notional 200 lots * 30_000 = 6_000_000; taker fee 20 bp = 12_000, maker 10 bp = 6_000.
    let expect = |c: &TradelogClient<Channel>, account: u64, want: BTreeMap<u32, (u64, u64)>| {
        let c = c.clone();
        async move {
            eventually(&format!("balances of {account}"), || {
                let mut c = c.clone();
                let want = want.clone();
                async move { (grpc_balances(&mut c, account).await == want).then_some(()) }
            })
            .await
        }
    };
    expect(
        &c,
        BUYER,
        BTreeMap::from([(USD, (3_988_000, 0)), (BTC, (200 * LOT, 0))]),
    )
    .await;
    expect(
        &c,
        SELLER,
        BTreeMap::from([(BTC, (300 * LOT, 0)), (USD, (5_994_000, 0))]),
    )
    .await;
    expect(&c, FEES, BTreeMap::from([(USD, (18_000, 0))])).await;

    // The trade, in the market's stream.
    let market_events = read_all(
        &mut c,
        pb::EventStream {
            stream: Some(pb::event_stream::Stream::MarketId(MARKET)),
        },
    )
    .await;
    let trades: Vec<_> = market_events
        .iter()
        .filter_map(|e| match &e.event {
            d::Event::Trade {
                price,
                qty,
                taker,
                maker,
                taker_fee,
                maker_fee,
                ..
            } => Some((price.0, qty.0, taker.0, maker.0, taker_fee.0, maker_fee.0)),
            _ => None,
        })
        .collect();
    assert_eq!(
        trades,
        vec![(30_000, 200 * LOT, buy_id, sell_id, 12_000, 6_000)]
    );
    // Trades happen on the market's shard; the market's stream also has its creation on
    // every shard and the orders' submission on their accounts' shards.
    assert!(market_events
        .iter()
        .filter(|e| matches!(e.event, d::Event::Trade { .. }))
        .all(|e| e.shard == d::ShardId(0)));
    assert!(market_events
        .iter()
        .any(|e| matches!(e.event, d::Event::OrderSubmitted { .. }) && e.shard == d::ShardId(1)));
    // The book is empty again; the filled order is no longer open.
    let book = c
        .get_book(pb::GetBookRequest {
            market_id: MARKET,
            depth: 0,
            as_of: None,
            stale: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(book.bids.is_empty() && book.asks.is_empty(), "{book:?}");
    assert_eq!(book.last_price, Some(30_000));
    let gone = c
        .get_order(pb::GetOrderRequest {
            market_id: MARKET,
            order_id: sell_id,
            as_of: None,
            stale: false,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // A cross-shard transfer (shard 1 -> shard 2) completes asynchronously.
    let t = c
        .transfer(pb::TransferRequest {
            transfer: Some(pb::TransferSpec {
                id: 100,
                debit_account_id: BUYER,
                credit_account_id: SELLER,
                asset_id: USD,
                amount: 1_000,
                balancing: false,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        accepted(&t),
        pb::accepted::Kind::InFlight(pb::accepted::InFlight {})
    );
    assert_eq!(t.shard, 1);
    expect(
        &c,
        BUYER,
        BTreeMap::from([(USD, (3_987_000, 0)), (BTC, (200 * LOT, 0))]),
    )
    .await;
    expect(
        &c,
        SELLER,
        BTreeMap::from([(BTC, (300 * LOT, 0)), (USD, (5_995_000, 0))]),
    )
    .await;
    // A business rejection is an outcome, not an error.
    let broke = c
        .withdraw(pb::WithdrawRequest {
            transfer_id: 101,
            account_id: FEES,
            asset_id: USD,
            amount: 1_000_000,
        })
        .await
        .unwrap()
        .into_inner();
    match broke.outcome.unwrap().result.unwrap() {
        pb::outcome::Result::Rejection(r) => {
            assert_eq!(r.reject_code, pb::RejectCode::InsufficientFunds as i32)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }

    // Malformed requests: INVALID_ARGUMENT with the field path, nothing recorded.
    let before = read_all(&mut c, all_stream()).await.len();
    assert_invalid(
        c.deposit(pb::DepositRequest {
            transfer_id: 7,
            account_id: 0,
            asset_id: USD,
            amount: 1,
        })
        .await,
        "account_id",
    );
    assert_invalid(
        c.transfer(pb::TransferRequest { transfer: None }).await,
        "transfer",
    );
    let mut no_side = limit(BUYER, pb::Side::Buy, 100, 1);
    no_side.side = 0;
    assert_invalid(c.place_order(no_side).await, "side");
    let mut unknown_tif = limit(BUYER, pb::Side::Buy, 100, 1);
    unknown_tif.time_in_force = 99;
    assert_invalid(c.place_order(unknown_tif).await, "time_in_force");
    let batch = c
        .submit_batch(pb::CommandBatch {
            commands: vec![pb::Command { command: None }],
        })
        .await
        .unwrap_err();
    assert_eq!(batch.code(), Code::InvalidArgument);
    assert!(batch.message().contains("commands[0]"), "{batch:?}");
    let mut bad_who = Request::new(pb::OpenAccountRequest {
        account_id: 50,
        owner: 50,
    });
    bad_who
        .metadata_mut()
        .insert("x-tradelog-authority", "root".parse().unwrap());
    assert_invalid(c.open_account(bad_who).await, "x-tradelog-authority");
    assert_eq!(read_all(&mut c, all_stream()).await.len(), before);

    // The principal and authority come from metadata (development only): a trader may not
    // deposit, and the rejection records the principal.
    let mut as_trader = Request::new(pb::DepositRequest {
        transfer_id: 102,
        account_id: BUYER,
        asset_id: USD,
        amount: 5,
    });
    as_trader
        .metadata_mut()
        .insert("x-tradelog-principal", "77".parse().unwrap());
    as_trader
        .metadata_mut()
        .insert("x-tradelog-authority", "trader".parse().unwrap());
    let r = c.deposit(as_trader).await.unwrap().into_inner();
    assert!(
        matches!(
            r.outcome.unwrap().result,
            Some(pb::outcome::Result::Rejection(_))
        ),
        "a trader may not deposit"
    );
    let last = read_all(&mut c, all_stream()).await.pop().unwrap();
    assert_eq!(last.principal, d::Principal(77));

    // A batch: submitted together, answered in order.
    let batch = c
        .submit_batch(pb::CommandBatch {
            commands: (0..3)
                .map(|i| pb::Command {
                    command: Some(pb::command::Command::Deposit(pb::DepositRequest {
                        transfer_id: 300 + i,
                        account_id: SELLER,
                        asset_id: USD,
                        amount: 1,
                    })),
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.responses.len(), 3);
    for r in &batch.responses {
        accepted(r);
        assert_eq!(r.shard, 2);
    }

    // Subscribe from the beginning: the stored events (catch-up), then a new one (live),
    // each (shard, seq) exactly once and no gap per shard.
    let stored = read_all(&mut c, all_stream()).await.len();
    let mut sub = c
        .subscribe_events(pb::SubscribeEventsRequest {
            stream: Some(all_stream()),
            after: None,
            shards: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<d::EventRecord> = Vec::new();
    let mut last_position = None;
    while got.len() < stored {
        let m = tokio::time::timeout(WAIT, sub.message())
            .await
            .expect("catch-up in time")
            .unwrap()
            .expect("stream open");
        got.extend(domain(m.events));
        last_position = m.position;
    }
    assert_eq!(
        got.len(),
        stored,
        "catch-up delivers exactly what is stored"
    );
    let live = c
        .deposit(pb::DepositRequest {
            transfer_id: 400,
            account_id: FEES,
            asset_id: USD,
            amount: 9,
        })
        .await
        .unwrap()
        .into_inner();
    accepted(&live);
    let is_live =
        |e: &d::EventRecord| matches!(e.event, d::Event::Deposited { id, .. } if id.0 == 400);
    while !got.iter().any(is_live) {
        let m = tokio::time::timeout(WAIT, sub.message())
            .await
            .expect("live event in time")
            .unwrap()
            .expect("stream open");
        got.extend(domain(m.events));
        last_position = m.position;
    }
    let mut seen = BTreeSet::new();
    let mut per_shard: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for e in &got {
        assert!(
            seen.insert((e.shard, e.seq)),
            "duplicate {:?}/{}",
            e.shard,
            e.seq
        );
        per_shard.entry(e.shard.0).or_default().push(e.seq);
    }
    for (shard, seqs) in &per_shard {
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, &want, "shard {shard}: gapless, in order");
    }
    assert_eq!(per_shard.len(), 3);
    // The last position says where every shard's stream stands.
    let pos = last_position.unwrap();
    for s in pos.shards {
        assert_eq!(s.seq, per_shard[&s.shard].len() as u64);
    }

    // Catalog and balance history.
    let cat = c
        .get_catalog(pb::GetCatalogRequest { stale: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cat.assets.len(), 2);
    assert_eq!(cat.markets, vec![market_spec()]);
    let h = c
        .get_balance_history(pb::GetBalanceHistoryRequest {
            account_id: FEES,
            asset_id: USD,
            from_ns: 0,
            to_ns: None,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let avail: Vec<u64> = h.points.iter().map(|p| p.available).collect();
    assert_eq!(avail.last(), Some(&18_009));
    assert!(!h.truncated);

    let node_ok = server.node().engines().unwrap();
    for e in &node_ok {
        e.validate().expect("invariants hold");
    }
    server.shutdown().await.unwrap();
}

// ----- HTTP ---------------------------------------------------------------------------

/// method, path, body, headers, expected status, text the error must contain.
type ErrorCase = (
    &'static str,
    &'static str,
    Option<String>,
    Vec<(&'static str, &'static str)>,
    u16,
    &'static str,
);

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn http(
    c: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let res = c.request(req).await.expect("HTTP request");
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn post(c: &HttpClient, addr: SocketAddr, v: serde_json::Value) -> serde_json::Value {
    let (status, body) = http(c, addr, "POST", "/v1/commands", Some(v.to_string()), &[]).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["outcome"]["result"].get("Ok").is_some(), "accepted: {v}");
    v
}

async fn get_json(c: &HttpClient, addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(c, addr, "GET", path, None, &[]).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn json_balances(v: &serde_json::Value) -> BTreeMap<u64, (u64, u64)> {
    v["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["asset"].as_u64().unwrap(),
                (
                    b["available"].as_u64().unwrap(),
                    b["held"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

async fn setup_http(c: &HttpClient, addr: SocketAddr) {
    use serde_json::json;
    post(
        c,
        addr,
        json!({"CreateAsset": {"id": USD, "code": "USD", "scale": 2}}),
    )
    .await;
    post(
        c,
        addr,
        json!({"CreateAsset": {"id": BTC, "code": "BTC", "scale": 8}}),
    )
    .await;
    let spec = d::MarketSpec::from(market_spec());
    post(c, addr, json!({ "CreateMarket": spec })).await;
    for a in [BUYER, SELLER, FEES] {
        post(c, addr, json!({"OpenAccount": {"account": a, "owner": a}})).await;
    }
    post(
        c,
        addr,
        json!({"Deposit": {"id": 1, "account": BUYER, "asset": USD, "amount": 10_000_000}}),
    )
    .await;
    post(
        c,
        addr,
        json!({"Deposit": {"id": 2, "account": SELLER, "asset": BTC, "amount": 500 * LOT}}),
    )
    .await;
}

fn order_json(account: u64, side: &str, price: u64, lots: u64) -> serde_json::Value {
    serde_json::json!({"PlaceOrder": {
        "account": account, "market": MARKET, "side": side, "order_type": "Limit",
        "tif": "Gtc", "price": price, "qty": lots * LOT, "post_only": false,
        "client_order_id": 0, "stp": "CancelResting"
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_flow_sse_and_operational_endpoints() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let addr = server.http_addr();
    let c = http_client();

    let (status, body) = get_json(&c, addr, "/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = get_json(&c, addr, "/ready").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));

    setup_http(&c, addr).await;

    // An SSE subscription of the seller's account from the beginning: catch-up first.
    let req = hyper::Request::get(format!(
        "http://{addr}/v1/events/stream?stream=account:{SELLER}"
    ))
    .body(Full::new(Bytes::new()))
    .unwrap();
    let res = c.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut sse = res.into_body();
    let mut sse_text = String::new();
    let mut read_sse_until = async |needle: &str, text: &mut String| {
        let deadline = Instant::now() + WAIT;
        while !text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, sse.frame())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {needle:?} in {text}"))
                .expect("stream open")
                .unwrap();
            if let Some(data) = frame.data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
            }
        }
    };
    read_sse_until("\"Deposited\"", &mut sse_text).await;
    assert!(sse_text.contains("event: events"), "{sse_text}");

    // The crossing pair.
    let sell = post(&c, addr, order_json(SELLER, "Sell", 30_000, 200)).await;
    let sell_id = sell["outcome"]["result"]["Ok"]["Order"].as_u64().unwrap();
    eventually("the sell order to rest", || {
        let c = c.clone();
        async move {
            let (s, v) =
                get_json(&c, addr, &format!("/v1/markets/{MARKET}/orders/{sell_id}")).await;
            (s == 200).then_some(v)
        }
    })
    .await;
    let (_, book) = get_json(&c, addr, &format!("/v1/markets/{MARKET}/book?depth=5")).await;
    assert_eq!(book["asks"][0]["qty"].as_u64(), Some(200 * LOT), "{book}");
    assert_eq!(book["asks"][0]["orders"].as_u64(), Some(1), "{book}");
    post(&c, addr, order_json(BUYER, "Buy", 30_100, 200)).await;
    for (account, want) in [
        (
            BUYER,
            BTreeMap::from([(1, (3_988_000, 0)), (2, (200 * LOT, 0))]),
        ),
        (
            SELLER,
            BTreeMap::from([(2, (300 * LOT, 0)), (1, (5_994_000, 0))]),
        ),
        (FEES, BTreeMap::from([(1, (18_000, 0))])),
    ] {
        eventually(&format!("balances of {account}"), || {
            let c = c.clone();
            let want = want.clone();
            async move {
                let (s, v) = get_json(&c, addr, &format!("/v1/accounts/{account}/balances")).await;
                (s == 200 && json_balances(&v) == want).then_some(())
            }
        })
        .await;
    }
    // The live part of the stream sees the seller's settlement.
    read_sse_until("\"Settled\"", &mut sse_text).await;

    // The trade via the events endpoint, paging with the returned position.
    let mut after = String::new();
    let mut trades = 0;
    loop {
        let (s, page) = get_json(
            &c,
            addr,
            &format!("/v1/events?stream=market:{MARKET}&after={after}&limit=3"),
        )
        .await;
        assert_eq!(s, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        trades += events
            .iter()
            .filter(|e| e["event"].get("Trade").is_some())
            .count();
        after = page["position"].as_str().unwrap().to_owned();
    }
    assert_eq!(trades, 1);

    // One shard's events only: the position moves that shard and keeps the others'.
    let (s, page) = get_json(&c, addr, "/v1/events?shards=1&after=0:2").await;
    assert_eq!(s, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{page}");
    assert!(events.iter().all(|e| e["shard"] == 1), "{page}");
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(page["position"], format!("0:2,1:{last}"), "{page}");

    // A cross-shard transfer and a batch.
    let t = post(
        &c,
        addr,
        json!({"Transfer": {"id": 100, "debit": BUYER, "credit": SELLER, "asset": USD,
                            "amount": 1_000, "balancing": false}}),
    )
    .await;
    assert_eq!(t["outcome"]["result"]["Ok"], "InFlight");
    let (s, body) = http(
        &c,
        addr,
        "POST",
        "/v1/batch",
        Some(
            json!([
                {"Deposit": {"id": 200, "account": FEES, "asset": USD, "amount": 1}},
                {"Withdraw": {"id": 201, "account": FEES, "asset": USD, "amount": 1_000_000_000}}
            ])
            .to_string(),
        ),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["responses"][0]["outcome"]["result"]["Ok"], "Done");
    assert_eq!(
        v["responses"][1]["outcome"]["result"]["Err"]["code"],
        "InsufficientFunds"
    );
    eventually("the cross-shard transfer", || {
        let c = c.clone();
        async move {
            let (_, v) = get_json(&c, addr, &format!("/v1/accounts/{SELLER}/balances")).await;
            (json_balances(&v)[&1] == (5_995_000, 0)).then_some(())
        }
    })
    .await;

    // Typed errors, never a panic.
    let cases: Vec<ErrorCase> = vec![
        (
            "POST",
            "/v1/commands",
            Some("{\"Deposit\":".into()),
            vec![],
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/commands",
            Some("[1,2]".into()),
            vec![],
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/commands",
            Some(json!({"Deposit": {"id": 9, "account": 0, "asset": 1, "amount": 1}}).to_string()),
            vec![],
            400,
            "deposit.account_id",
        ),
        // One byte over: the server reads it all before refusing, so the client is not
        // cut off while still sending.
        (
            "POST",
            "/v1/commands",
            Some("x".repeat(tradelog_server::HTTP_BODY_BYTES_MAX + 1)),
            vec![],
            413,
            "body_too_large",
        ),
        (
            "POST",
            "/v1/commands",
            Some(json!({"OpenAccount": {"account": 9, "owner": 9}}).to_string()),
            vec![("x-tradelog-principal", "minus one")],
            400,
            "x-tradelog-principal",
        ),
        (
            "POST",
            "/v1/batch",
            Some("[]".into()),
            vec![],
            400,
            "commands",
        ),
        (
            "GET",
            "/v1/accounts/999/balances",
            None,
            vec![],
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/accounts/0/balances",
            None,
            vec![],
            400,
            "account_id",
        ),
        (
            "GET",
            "/v1/accounts/x/balances",
            None,
            vec![],
            400,
            "invalid_argument",
        ),
        ("GET", "/v1/markets/9/book", None, vec![], 404, "not_found"),
        (
            "GET",
            "/v1/markets/1/book?depth=5000",
            None,
            vec![],
            400,
            "depth",
        ),
        (
            "GET",
            "/v1/markets/1/orders/12345",
            None,
            vec![],
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/events?stream=bogus",
            None,
            vec![],
            400,
            "stream",
        ),
        (
            "GET",
            "/v1/events?after=0:1,0:2",
            None,
            vec![],
            400,
            "duplicate",
        ),
        (
            "GET",
            "/v1/events?after=7:1",
            None,
            vec![],
            400,
            "does not exist",
        ),
        (
            "GET",
            "/v1/events?after=nonsense",
            None,
            vec![],
            400,
            "after",
        ),
        ("GET", "/v1/events?shards=0,x", None, vec![], 400, "shards"),
        (
            "GET",
            "/v1/events?shards=1,1",
            None,
            vec![],
            400,
            "duplicate",
        ),
        (
            "GET",
            "/v1/events?shards=7",
            None,
            vec![],
            400,
            "shard 7 does not exist",
        ),
        (
            "GET",
            "/v1/events/stream?shards=4096",
            None,
            vec![],
            400,
            "shards[0]",
        ),
        (
            "GET",
            "/v1/events?limit=-1",
            None,
            vec![],
            400,
            "invalid_argument",
        ),
        ("GET", "/nowhere", None, vec![], 404, "not_found"),
    ];
    for (method, path, body, headers, want_status, want_text) in cases {
        let (status, text) = http(&c, addr, method, path, body, &headers).await;
        assert_eq!(status, want_status, "{method} {path}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        assert!(v["error"]["code"].is_string(), "{method} {path}: {text}");
        assert!(
            text.contains(want_text),
            "{method} {path}: {want_text} not in {text}"
        );
    }

    let (status, metrics) = http(&c, addr, "GET", "/metrics", None, &[]).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tradelog_commands_total{interface=\"http\",outcome=\"accepted\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tradelog_command_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tradelog_commands_total{interface=\"http\",outcome=\"invalid\"}"),
        "{metrics}"
    );
    // The node's own: group commits, fsync and apply times, queue depth, per shard.
    for name in [
        "tradelog_group_commit_inputs_bucket{shard=\"0\",le=\"1\"}",
        "tradelog_fsync_duration_seconds_bucket{shard=\"0\",le=\"0.00001\"}",
        "tradelog_apply_duration_seconds_count{shard=\"0\"}",
        "tradelog_inputs_total{shard=\"0\"}",
        "tradelog_applied_index{shard=\"0\"}",
        "tradelog_shard_queue_depth{shard=\"0\"}",
    ] {
        assert!(metrics.contains(name), "{name} not in {metrics}");
    }

    // Shutdown ends the open SSE stream instead of waiting for it.
    let started = Instant::now();
    server.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(sse);
}

// ----- restart ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_balances_and_the_whole_event_history_readable() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = grpc(&server).await;
    setup_grpc(&mut c).await;
    let t = c
        .transfer(pb::TransferRequest {
            transfer: Some(pb::TransferSpec {
                id: 10,
                debit_account_id: BUYER,
                credit_account_id: SELLER,
                asset_id: USD,
                amount: 2_500,
                balancing: false,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    accepted(&t);
    let want_seller = BTreeMap::from([(BTC, (500 * LOT, 0)), (USD, (2_500, 0))]);
    eventually("the transfer", || {
        let mut c = c.clone();
        let want = want_seller.clone();
        async move { (grpc_balances(&mut c, SELLER).await == want).then_some(()) }
    })
    .await;
    let buyer = grpc_balances(&mut c, BUYER).await;
    assert_eq!(buyer, BTreeMap::from([(USD, (9_997_500, 0))]));
    let before = read_all(&mut c, all_stream()).await;
    assert!(before.len() > 20, "{} events", before.len());
    drop(c);
    server.shutdown().await.unwrap();

    let server = start(dir.path()).await;
    let mut c = grpc(&server).await;
    assert_eq!(grpc_balances(&mut c, BUYER).await, buyer);
    assert_eq!(grpc_balances(&mut c, SELLER).await, want_seller);
    // A retried transfer is a duplicate: answered, not applied again.
    let again = c
        .transfer(pb::TransferRequest {
            transfer: Some(pb::TransferSpec {
                id: 10,
                debit_account_id: BUYER,
                credit_account_id: SELLER,
                asset_id: USD,
                amount: 2_500,
                balancing: false,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.outcome.unwrap().duplicate);
    assert_eq!(grpc_balances(&mut c, BUYER).await, buyer);

    // Events from before this start are not in the server's memory: they are regenerated
    // from the logs, identical and in the same order, and reads go on into the events
    // published since, across the seam with no gap and no duplicate.
    assert_eq!(before, read_all(&mut c, all_stream()).await);
    let r = c
        .deposit(pb::DepositRequest {
            transfer_id: 11,
            account_id: SELLER,
            asset_id: USD,
            amount: 1,
        })
        .await
        .unwrap()
        .into_inner();
    accepted(&r);
    let everything = read_all(&mut c, all_stream()).await;
    assert_eq!(before[..], everything[..before.len()]);
    let new: Vec<_> = everything[before.len()..].to_vec();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(matches!(new[0].event, d::Event::Deposited { id, .. } if id.0 == 11));
    assert!(matches!(new[1].event, d::Event::Balance { available, .. } if available.0 == 2_501));
    // From a position in the middle of the old history.
    let mut middle = BTreeMap::new();
    for e in &before[..before.len() / 2] {
        middle.insert(e.shard.0, e.seq);
    }
    let after = pb::Position {
        shards: middle
            .iter()
            .map(|(&shard, &seq)| pb::ShardPosition { shard, seq })
            .collect(),
    };
    let rest = read_after(&mut c, all_stream(), Some(after.clone())).await;
    let want: Vec<_> = everything
        .iter()
        .filter(|e| middle.get(&e.shard.0).is_none_or(|&seq| e.seq > seq))
        .cloned()
        .collect();
    assert_eq!(want, rest);
    // A filtered stream reads through the history too.
    let seller = read_all(
        &mut c,
        pb::EventStream {
            stream: Some(pb::event_stream::Stream::AccountId(SELLER)),
        },
    )
    .await;
    let balances: Vec<_> = seller
        .iter()
        .filter_map(|e| match e.event {
            d::Event::Balance {
                asset, available, ..
            } => Some((e.seq, asset.0, available.0)),
            _ => None,
        })
        .collect();
    // The BTC deposit, the USD transfer in, the USD deposit after the restart.
    assert_eq!(
        balances,
        vec![(6, BTC, 500 * LOT), (8, USD, 2_500), (10, USD, 2_501)]
    );
    // A subscription from the beginning catches up through the history, then goes live.
    let mut sub = c
        .subscribe_events(pb::SubscribeEventsRequest {
            stream: Some(all_stream()),
            after: None,
            shards: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while got.len() < everything.len() {
        let m = tokio::time::timeout(WAIT, sub.message())
            .await
            .expect("events in time")
            .unwrap()
            .expect("stream open");
        got.extend(domain(m.events));
    }
    assert_eq!(everything, got);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_or_bad_config_fails_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path()).await;
    let other = tempfile::tempdir().unwrap();
    let mut cfg = config(other.path());
    cfg.http_addr = first.http_addr();
    let err = Server::start(cfg).await.err().expect("port in use");
    assert!(
        err.to_string().contains(&first.http_addr().to_string()),
        "{err}"
    );
    let mut cfg = config(other.path());
    cfg.shards = 0;
    assert!(Server::start(cfg).await.is_err());
    first.shutdown().await.unwrap();
}

// ----- subscriptions racing writes ----------------------------------------------------

/// Subscriptions that start while commands keep arriving switch from the stored part to
/// the live feed mid-stream: each still sees every event exactly once, gapless per shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_started_during_writes_see_every_event_once() {
    subscriptions_during_writes(ServerConfig::default().events_retained_max).await;
}

/// The same with an index of 16 events per shard: subscriptions catch up from
/// regenerated history while the index drops events under them, and still see each event
/// once, across the seam.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_catching_up_from_history_during_writes_see_every_event_once() {
    subscriptions_during_writes(16).await;
}

async fn subscriptions_during_writes(retained: usize) {
    const DEPOSITS: u64 = 240;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.events_retained_max = retained;
    let server = Server::start(cfg).await.expect("server starts");
    let mut c = grpc(&server).await;
    setup_grpc(&mut c).await;
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for i in 0..DEPOSITS / 3 {
                    let r = c
                        .deposit(pb::DepositRequest {
                            transfer_id: 1_000 + w * 1_000 + i,
                            account_id: [BUYER, SELLER, FEES][w as usize],
                            asset_id: USD,
                            amount: 1,
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    accepted(&r);
                }
            })
        })
        .collect();
    let mut subscribers = Vec::new();
    for k in 0..4u64 {
        tokio::time::sleep(Duration::from_millis(5 * k)).await;
        let mut c = c.clone();
        subscribers.push(tokio::spawn(async move {
            let mut sub = c
                .subscribe_events(pb::SubscribeEventsRequest {
                    stream: Some(all_stream()),
                    after: None,
                    shards: vec![],
                })
                .await
                .unwrap()
                .into_inner();
            let mut got: Vec<d::EventRecord> = Vec::new();
            let deposits = |got: &[d::EventRecord]| {
                got.iter()
                    .filter(|e| matches!(e.event, d::Event::Deposited { id, .. } if id.0 >= 1_000))
                    .count() as u64
            };
            while deposits(&got) < DEPOSITS {
                let m = tokio::time::timeout(WAIT, sub.message())
                    .await
                    .expect("events in time")
                    .unwrap()
                    .expect("stream open");
                got.extend(domain(m.events));
            }
            got
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for s in subscribers {
        let got = s.await.unwrap();
        let mut per_shard: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for e in &got {
            per_shard.entry(e.shard.0).or_default().push(e.seq);
        }
        for (shard, seqs) in &per_shard {
            let want: Vec<u64> = (1..=seqs.len() as u64).collect();
            assert_eq!(seqs, &want, "shard {shard}: every event once, in order");
        }
    }
    server.shutdown().await.unwrap();
}
