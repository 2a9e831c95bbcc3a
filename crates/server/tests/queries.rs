//! The queries over history, end to end on a real server (three shards, real listeners on
//! 127.0.0.1, the generated gRPC client and plain HTTP): balances, order and book as of a
//! past log index or time, trades, OHLCV candles, open orders and account statements,
//! with known inputs and whole answers compared.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;
use tradelog_api::proto as pb;
use tradelog_api::proto::tradelog_client::TradelogClient;
use tradelog_domain as d;
use tradelog_server::{HistoryLimits, RunningServer, Server, ServerConfig};

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
const SEC: u64 = 1_000_000_000;
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

fn accepted(r: &pb::CommandResponse) -> pb::accepted::Kind {
    match r.outcome.as_ref().and_then(|o| o.result.clone()) {
        Some(pb::outcome::Result::Accepted(a)) => a.kind.expect("accepted kind"),
        other => panic!("expected an accepted outcome, got {other:?}"),
    }
}

fn order_id(r: &pb::CommandResponse) -> u64 {
    match accepted(r) {
        pb::accepted::Kind::OrderId(id) => id,
        other => panic!("expected an order id, got {other:?}"),
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
async fn setup(c: &mut TradelogClient<Channel>) {
    for (id, code, scale) in [(USD, "USD", 2), (BTC, "BTC", 8)] {
        let asset = Some(pb::Asset {
            id,
            code: code.into(),
            scale,
        });
        let r = c.create_asset(pb::CreateAssetRequest { asset }).await;
        accepted(&r.unwrap().into_inner());
    }
    let market = Some(pb::MarketSpec {
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
    });
    let r = c.create_market(pb::CreateMarketRequest { market }).await;
    accepted(&r.unwrap().into_inner());
    for account in [BUYER, SELLER, FEES] {
        let r = c
            .open_account(pb::OpenAccountRequest {
                account_id: account,
                owner: account,
            })
            .await;
        accepted(&r.unwrap().into_inner());
    }
    for (id, account, asset, amount) in [(1, BUYER, USD, 10_000_000), (2, SELLER, BTC, 500 * LOT)] {
        let r = c
            .deposit(pb::DepositRequest {
                transfer_id: id,
                account_id: account,
                asset_id: asset,
                amount,
            })
            .await;
        accepted(&r.unwrap().into_inner());
    }
}

fn as_of_index(i: u64) -> Option<pb::AsOf> {
    Some(pb::AsOf {
        point: Some(pb::as_of::Point::LogIndex(i)),
    })
}

fn as_of_time(t: u64) -> Option<pb::AsOf> {
    Some(pb::AsOf {
        point: Some(pb::as_of::Point::TimeNs(t)),
    })
}

async fn balances(
    c: &mut TradelogClient<Channel>,
    account: u64,
    as_of: Option<pb::AsOf>,
) -> Result<(BTreeMap<u32, (u64, u64)>, u64), tonic::Status> {
    let r = c
        .get_balances(pb::GetBalancesRequest {
            account_id: account,
            as_of,
            stale: false,
        })
        .await?
        .into_inner();
    let b = r
        .balances
        .iter()
        .map(|b| (b.asset_id, (b.available, b.held)))
        .collect();
    Ok((b, r.log_index))
}

fn domain(events: Vec<pb::EventRecord>) -> Vec<d::EventRecord> {
    events
        .into_iter()
        .map(|e| d::EventRecord::try_from(e).expect("well-formed event"))
        .collect()
}

/// Every event of a stream.
async fn read_all(
    c: &mut TradelogClient<Channel>,
    stream: pb::event_stream::Stream,
) -> Vec<d::EventRecord> {
    let mut after: Option<pb::Position> = None;
    let mut out = Vec::new();
    loop {
        let r = c
            .read_events(pb::ReadEventsRequest {
                stream: Some(pb::EventStream {
                    stream: Some(stream),
                }),
                after: after.clone(),
                limit: 0,
                shards: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        if r.events.is_empty() && r.position == after {
            return out;
        }
        out.extend(domain(r.events));
        after = r.position;
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn http_get(c: &HttpClient, addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let req = hyper::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = c.request(req).await.expect("HTTP request");
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_trades_candles_open_orders_and_statements() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let mut c = grpc(&server).await;
    setup(&mut c).await;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let addr = server.http_addr();
    let base = c.clone();

    // ----- balances as of a log index and a time, before and after a transfer --------
    let dep = c
        .deposit(pb::DepositRequest {
            transfer_id: 50,
            account_id: BUYER,
            asset_id: USD,
            amount: 1_000,
        })
        .await
        .unwrap()
        .into_inner();
    accepted(&dep);
    assert_eq!(dep.shard, 1);
    let tr = c
        .transfer(pb::TransferRequest {
            transfer: Some(pb::TransferSpec {
                id: 51,
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
    accepted(&tr);
    eventually("the transfer to finish", || {
        let mut c = c.clone();
        async move {
            let (b, _) = balances(&mut c, BUYER, None).await.unwrap();
            (b[&USD] == (9_998_500, 0)).then_some(())
        }
    })
    .await;
    let at_index = |i| {
        let mut c = base.clone();
        async move { balances(&mut c, BUYER, as_of_index(i)).await.unwrap() }
    };
    assert_eq!(
        at_index(dep.input - 1).await,
        (BTreeMap::from([(USD, (10_000_000, 0))]), dep.input - 1)
    );
    assert_eq!(
        at_index(dep.input).await,
        (BTreeMap::from([(USD, (10_001_000, 0))]), dep.input)
    );
    // The debit is held while the credit shard decides.
    assert_eq!(
        at_index(tr.input).await,
        (BTreeMap::from([(USD, (9_998_500, 2_500))]), tr.input)
    );
    let buyer_events = read_all(&mut c, pb::event_stream::Stream::AccountId(BUYER)).await;
    let t_dep = buyer_events
        .iter()
        .find(|e| matches!(e.event, d::Event::Deposited { id, .. } if id.0 == 50))
        .unwrap()
        .timestamp
        .0;
    let (b, i) = balances(&mut c, BUYER, as_of_time(t_dep)).await.unwrap();
    assert_eq!(
        (b, i),
        (BTreeMap::from([(USD, (10_001_000, 0))]), dep.input)
    );
    let (b, i) = balances(&mut c, BUYER, as_of_time(t_dep - 1))
        .await
        .unwrap();
    assert_eq!(
        (b, i),
        (BTreeMap::from([(USD, (10_000_000, 0))]), dep.input - 1)
    );
    // Before the account existed: not found; beyond what the shard applied or in the
    // future: out of range.
    let e = balances(&mut c, BUYER, as_of_index(0)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("as of log index 0"), "{e:?}");
    let e = balances(&mut c, BUYER, as_of_index(1_000_000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    let future = t_dep + 3_600 * SEC;
    let e = balances(&mut c, BUYER, as_of_time(future))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    let e = balances(&mut c, BUYER, Some(pb::AsOf { point: None }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("as_of.point"), "{e:?}");
    // The same over HTTP.
    let (status, v) = http_get(
        &http,
        addr,
        &format!("/v1/accounts/{BUYER}/balances?as_of_index={}", dep.input),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["balances"],
        json!([{"asset": USD, "available": 10_001_000, "held": 0}])
    );
    assert_eq!(v["log_index"], json!(dep.input));
    let (status, v) = http_get(
        &http,
        addr,
        &format!("/v1/accounts/{BUYER}/balances?as_of_time={}", t_dep - 1),
    )
    .await;
    assert_eq!(
        (status, &v["balances"]),
        (
            200,
            &json!([{"asset": USD, "available": 10_000_000, "held": 0}])
        )
    );
    let (status, v) = http_get(
        &http,
        addr,
        &format!("/v1/accounts/{BUYER}/balances?as_of_time={future}"),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("out_of_range")),
        "{v}"
    );
    let (status, v) = http_get(
        &http,
        addr,
        &format!("/v1/accounts/{BUYER}/balances?as_of_time=1&as_of_index=1"),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("invalid_argument")),
        "{v}"
    );

    // ----- resting orders, open orders, then fills in two separate seconds -----------
    let s1 = order_id(
        &c.place_order(limit(SELLER, pb::Side::Sell, 30_000, 100))
            .await
            .unwrap()
            .into_inner(),
    );
    let s2 = order_id(
        &c.place_order(limit(SELLER, pb::Side::Sell, 30_100, 50))
            .await
            .unwrap()
            .into_inner(),
    );
    let book = |c: &TradelogClient<Channel>, as_of: Option<pb::AsOf>| {
        let mut c = c.clone();
        async move {
            let b = c
                .get_book(pb::GetBookRequest {
                    market_id: MARKET,
                    depth: 0,
                    as_of,
                    stale: false,
                })
                .await
                .unwrap()
                .into_inner();
            let levels = |l: &[pb::PriceLevel]| -> Vec<(u64, u64, u32)> {
                l.iter().map(|l| (l.price, l.qty, l.order_count)).collect()
            };
            (levels(&b.bids), levels(&b.asks), b.log_index)
        }
    };
    eventually("both sell orders to rest", || {
        let c = c.clone();
        async move {
            let (_, asks, _) = book(&c, None).await;
            (asks.len() == 2).then_some(())
        }
    })
    .await;
    let open_req = |account_id| pb::GetOpenOrdersRequest {
        account_id,
        stale: false,
        partial: false,
        order_ids: vec![],
        shards: vec![],
    };
    let open = c
        .get_open_orders(open_req(SELLER))
        .await
        .unwrap()
        .into_inner();
    let resting = |id, price, lots: u64| pb::Order {
        order_id: id,
        market_id: MARKET,
        account_id: SELLER,
        owner: SELLER,
        side: pb::Side::Sell.into(),
        price,
        remaining_qty: lots * LOT,
        held: lots * LOT,
        stp: pb::SelfTradePrevention::CancelResting.into(),
        post_only: false,
    };
    assert_eq!(
        open.orders,
        vec![resting(s1, 30_000, 100), resting(s2, 30_100, 50)]
    );
    assert_eq!(
        open.positions.iter().map(|p| p.shard).collect::<Vec<_>>(),
        vec![2, 0],
        "the account's shard, then the market's"
    );
    assert_eq!(
        (
            open.unread_shards.clone(),
            open.unresolved_order_ids.clone()
        ),
        (vec![], vec![])
    );
    // A partial answer from a node holding every shard is the whole answer.
    let partial = c
        .get_open_orders(pb::GetOpenOrdersRequest {
            partial: true,
            ..open_req(SELLER)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partial, open);
    // Looking orders up by id (how a client completes a partial answer elsewhere): only
    // the books of the shards named are read, not the account's shard; an id that rests
    // nowhere, or is another account's order, is unresolved.
    let lookup = |account_id, order_ids: Vec<u64>, shards: Vec<u32>| {
        let mut c = c.clone();
        async move {
            c.get_open_orders(pb::GetOpenOrdersRequest {
                partial: true,
                order_ids,
                shards,
                ..open_req(account_id)
            })
            .await
            .map(|r| r.into_inner())
        }
    };
    let found = lookup(SELLER, vec![999_999, s2], vec![0]).await.unwrap();
    assert_eq!(found.orders, vec![resting(s2, 30_100, 50)]);
    assert_eq!(
        found.positions.iter().map(|p| p.shard).collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(found.unresolved_order_ids, vec![999_999]);
    assert_eq!(found.unread_shards, Vec::<u32>::new());
    let theirs = lookup(BUYER, vec![s1], vec![]).await.unwrap();
    assert_eq!(
        (theirs.orders, theirs.unresolved_order_ids),
        (vec![], vec![s1]),
        "another account's order"
    );
    let e = lookup(SELLER, vec![s1], vec![99]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("shard 99 does not exist"), "{e:?}");
    let e = lookup(SELLER, vec![s1, s1], vec![]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("order_ids[1]"), "{e:?}");
    // The same over HTTP.
    let (status, v) = http_get(
        &http,
        addr,
        &format!("/v1/accounts/{SELLER}/orders?partial=true&order_ids=999999,{s2}&shards=0"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["order"].clone())
            .collect::<Vec<_>>(),
        vec![json!(s2)],
        "{v}"
    );
    assert_eq!(
        (&v["unread_shards"], &v["unresolved_order_ids"]),
        (&json!([]), &json!([999_999])),
        "{v}"
    );
    for bad in ["order_ids=1,x", "order_ids=0", "shards=1,1", "shards=a"] {
        let (status, v) =
            http_get(&http, addr, &format!("/v1/accounts/{SELLER}/orders?{bad}")).await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (400, &json!("invalid_argument")),
            "{bad}: {v}"
        );
    }
    let b1 = order_id(
        &c.place_order(limit(BUYER, pb::Side::Buy, 30_100, 120))
            .await
            .unwrap()
            .into_inner(),
    );
    eventually("the first fills", || {
        let c = c.clone();
        async move {
            let (_, asks, _) = book(&c, None).await;
            (asks == vec![(30_100, 30 * LOT, 1)]).then_some(())
        }
    })
    .await;
    // A gap of more than two seconds: the one-second candle between is empty.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let b2 = order_id(
        &c.place_order(limit(BUYER, pb::Side::Buy, 30_100, 10))
            .await
            .unwrap()
            .into_inner(),
    );
    eventually("the second fill", || {
        let c = c.clone();
        async move {
            let (_, asks, _) = book(&c, None).await;
            (asks == vec![(30_100, 20 * LOT, 1)]).then_some(())
        }
    })
    .await;

    // ----- trades: whole list, then in pages ------------------------------------------
    let trades = |after_seq, limit| {
        let mut c = base.clone();
        async move {
            c.get_trades(pb::GetTradesRequest {
                market_id: MARKET,
                after_seq,
                from_ns: 0,
                to_ns: None,
                limit,
                stale: false,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let all = trades(None, 0).await;
    assert!(all.at_end);
    let trade = |taker, maker, price, lots: u64, taker_fee, maker_fee| pb::event::Trade {
        market_id: MARKET,
        price,
        qty: lots * LOT,
        taker_side: pb::Side::Buy.into(),
        taker_order_id: taker,
        maker_order_id: maker,
        taker_account_id: BUYER,
        maker_account_id: SELLER,
        taker_fee,
        maker_fee,
    };
    // Notionals 3_000_000, 602_000, 301_000; taker 20 bp, maker 10 bp.
    assert_eq!(
        all.trades
            .iter()
            .map(|t| t.trade.unwrap())
            .collect::<Vec<_>>(),
        vec![
            trade(b1, s1, 30_000, 100, 6_000, 3_000),
            trade(b1, s2, 30_100, 20, 1_204, 602),
            trade(b2, s2, 30_100, 10, 602, 301),
        ]
    );
    let (t1, t3) = (all.trades[0].timestamp_ns, all.trades[2].timestamp_ns);
    assert_eq!(all.trades[1].timestamp_ns, t1, "one input, one time");
    assert!(t3 >= t1 + 2 * SEC);
    let market_events = read_all(&mut c, pb::event_stream::Stream::MarketId(MARKET)).await;
    let want: Vec<(u64, u64, u64)> = market_events
        .iter()
        .filter(|e| matches!(e.event, d::Event::Trade { .. }))
        .map(|e| (e.seq, e.input, e.timestamp.0))
        .collect();
    let got: Vec<_> = all
        .trades
        .iter()
        .map(|t| (t.seq, t.input, t.timestamp_ns))
        .collect();
    assert_eq!(want, got);
    let p1 = trades(None, 2).await;
    assert_eq!((p1.trades.len(), p1.at_end), (2, false));
    assert_eq!(p1.position.as_ref().unwrap().seq, all.trades[1].seq);
    let p2 = trades(Some(p1.position.unwrap().seq), 2).await;
    assert_eq!(p2.trades, all.trades[2..].to_vec());
    assert!(p2.at_end);
    // A time range holding only the second fill.
    let late = c
        .get_trades(pb::GetTradesRequest {
            market_id: MARKET,
            after_seq: None,
            from_ns: t1 + 1,
            to_ns: Some(t3 + 1),
            limit: 0,
            stale: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.trades, all.trades[2..].to_vec());
    assert!(late.at_end);

    // ----- candles ---------------------------------------------------------------------
    let candles = c
        .get_candles(pb::GetCandlesRequest {
            market_id: MARKET,
            interval_s: 1,
            from_ns: t1 - 10 * SEC,
            to_ns: t3 + 10 * SEC,
            stale: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        candles.candles,
        vec![
            pb::Candle {
                start_ns: t1 - t1 % SEC,
                open: 30_000,
                high: 30_100,
                low: 30_000,
                close: 30_100,
                volume: 120 * LOT,
                quote_volume: 3_602_000,
                trades: 2,
            },
            pb::Candle {
                start_ns: t3 - t3 % SEC,
                open: 30_100,
                high: 30_100,
                low: 30_100,
                close: 30_100,
                volume: 10 * LOT,
                quote_volume: 301_000,
                trades: 1,
            },
        ],
        "the empty seconds between are omitted"
    );
    let (status, v) = http_get(
        &http,
        addr,
        &format!(
            "/v1/markets/{MARKET}/candles?interval=1&from={}&to={}",
            t1 - 10 * SEC,
            t3 + 10 * SEC
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["candles"],
        json!([
            {"start": t1 - t1 % SEC, "open": 30_000, "high": 30_100, "low": 30_000, "close": 30_100,
             "volume": 120 * LOT, "quote_volume": 3_602_000, "trades": 2},
            {"start": t3 - t3 % SEC, "open": 30_100, "high": 30_100, "low": 30_100, "close": 30_100,
             "volume": 10 * LOT, "quote_volume": 301_000, "trades": 1},
        ])
    );
    let (status, v) = http_get(
        &http,
        addr,
        &format!(
            "/v1/markets/{MARKET}/candles?interval=1&from=0&to={}",
            20_000 * SEC
        ),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("invalid_argument")),
        "{v}"
    );

    // ----- book and order as of a time -------------------------------------------------
    let before_fills = as_of_time(t1 - 1);
    let (bids, asks, _) = book(&c, before_fills).await;
    assert_eq!(
        (bids, asks),
        (vec![], vec![(30_000, 100 * LOT, 1), (30_100, 50 * LOT, 1)])
    );
    let (_, asks, _) = book(&c, as_of_time(t1)).await;
    assert_eq!(asks, vec![(30_100, 30 * LOT, 1)]);
    let (_, asks, now_index) = book(&c, None).await;
    assert_eq!(asks, vec![(30_100, 20 * LOT, 1)]);
    let (_, asks, index) = book(&c, as_of_index(now_index)).await;
    assert_eq!((asks, index), (vec![(30_100, 20 * LOT, 1)], now_index));
    let get_order = |id, as_of| {
        let mut c = base.clone();
        async move {
            c.get_order(pb::GetOrderRequest {
                market_id: MARKET,
                order_id: id,
                as_of,
                stale: false,
            })
            .await
        }
    };
    let then = get_order(s1, as_of_time(t1 - 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(then.order, Some(resting(s1, 30_000, 100)));
    assert_eq!(
        get_order(s1, None).await.unwrap_err().code(),
        Code::NotFound
    );
    let (status, v) = http_get(
        &http,
        addr,
        &format!("/v1/markets/{MARKET}/orders/{s1}?as_of_time={}", t1 - 1),
    )
    .await;
    assert_eq!((status, &v["remaining"]), (200, &json!(100 * LOT)), "{v}");
    let (status, v) = http_get(
        &http,
        addr,
        &format!("/v1/markets/{MARKET}/book?as_of_time={}", t1 - 1),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["asks"],
        json!([{"price": 30_000, "qty": 100 * LOT, "orders": 1}, {"price": 30_100, "qty": 50 * LOT, "orders": 1}])
    );
    // Open orders now: the rest of s2.
    let (status, v) = http_get(&http, addr, &format!("/v1/accounts/{SELLER}/orders")).await;
    assert_eq!(status, 200, "{v}");
    let orders = v["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "{v}");
    assert_eq!(
        (
            &orders[0]["order"],
            &orders[0]["remaining"],
            &orders[0]["held"]
        ),
        (&json!(s2), &json!(20 * LOT), &json!(20 * LOT))
    );
    let (status, v) = http_get(&http, addr, &format!("/v1/accounts/{BUYER}/orders")).await;
    assert_eq!((status, &v["orders"]), (200, &json!([])), "{v}");

    // ----- statement -------------------------------------------------------------------
    // Up to the buyer's first order: the deposits and the transfer, line by line.
    let t_order = buyer_events
        .iter()
        .chain(&read_all(&mut c, pb::event_stream::Stream::OrderId(b1)).await)
        .find(|e| matches!(e.event, d::Event::OrderSubmitted { order, .. } if order.0 == b1))
        .unwrap()
        .timestamp
        .0;
    let statement = |from_ns, to_ns, limit, after_seq| {
        let mut c = base.clone();
        async move {
            c.get_statement(pb::GetStatementRequest {
                account_id: BUYER,
                asset_id: USD,
                from_ns,
                to_ns,
                limit,
                after_seq,
                stale: false,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let st = statement(0, Some(t_order), 0, None).await;
    let bal = |available, held| {
        Some(pb::Balance {
            asset_id: USD,
            available,
            held,
        })
    };
    assert_eq!(st.opening, bal(0, 0));
    assert_eq!(st.closing, bal(9_998_500, 0));
    assert!(!st.truncated);
    let line = |e: &pb::StatementEntry| {
        let cause = d::Event::try_from(e.cause.clone().unwrap()).unwrap();
        let kind = format!("{cause:?}");
        let kind = kind.split([' ', '{']).next().unwrap().to_owned();
        (kind, e.available, e.held, e.credit, e.debit)
    };
    let lines: Vec<_> = st.entries.iter().map(line).collect();
    let l = |k: &str, a, h, c, d| (k.to_owned(), a, h, c, d);
    assert_eq!(
        lines,
        vec![
            l("Deposited", 10_000_000, 0, 10_000_000, 0),
            l("Deposited", 10_001_000, 0, 1_000, 0),
            l("TransferInitiated", 9_998_500, 2_500, 0, 0),
            l("TransferPosted", 9_998_500, 0, 0, 2_500),
        ]
    );
    // Each line is the balance event of the account's stream, with its place and time.
    let want: Vec<(u64, u64, u64)> = buyer_events
        .iter()
        .filter(|e| matches!(e.event, d::Event::Balance { asset, .. } if asset.0 == USD))
        .map(|e| (e.seq, e.input, e.timestamp.0))
        .collect();
    let got: Vec<_> = st
        .entries
        .iter()
        .map(|e| (e.seq, e.input, e.timestamp_ns))
        .collect();
    assert_eq!(want, got);
    // In pages of two: the second page opens where the first closed.
    let p1 = statement(0, Some(t_order), 2, None).await;
    assert_eq!((p1.entries.len(), p1.truncated), (2, true));
    assert_eq!((p1.opening, p1.closing), (bal(0, 0), bal(10_001_000, 0)));
    let p2 = statement(0, Some(t_order), 2, Some(p1.entries[1].seq)).await;
    assert_eq!(p2.entries, st.entries[2..].to_vec());
    assert_eq!(
        (p2.opening, p2.closing, p2.truncated),
        (bal(10_001_000, 0), bal(9_998_500, 0), false)
    );
    // From the transfer on: the opening balance is the balance as of then.
    let t_tr = st.entries[2].timestamp_ns;
    let st2 = statement(t_tr, None, 0, None).await;
    assert_eq!(st2.opening, bal(10_001_000, 0));
    assert_eq!(st2.entries[..2], st.entries[2..]);
    let (now, _) = balances(&mut c, BUYER, None).await.unwrap();
    assert_eq!(
        st2.closing,
        bal(now[&USD].0, now[&USD].1),
        "closes at the live balance"
    );
    let mut running = (10_001_000u64, 0u64);
    for e in &st2.entries {
        let (before, after) = (running.0 + running.1, e.available + e.held);
        assert_eq!(
            (e.credit, e.debit),
            (after.saturating_sub(before), before.saturating_sub(after))
        );
        running = (e.available, e.held);
    }
    // Over HTTP, the same statement.
    let (status, v) = http_get(
        &http,
        addr,
        &format!("/v1/accounts/{BUYER}/statement?asset={USD}&from=0&to={t_order}"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["opening"], json!({"available": 0, "held": 0}));
    assert_eq!(v["closing"], json!({"available": 9_998_500, "held": 0}));
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(
        entries[0]["cause"],
        json!({"Deposited": {"id": 1, "account": BUYER, "asset": USD, "amount": 10_000_000}})
    );
    assert_eq!(
        (
            &entries[3]["available"],
            &entries[3]["debit"],
            &entries[3]["seq"]
        ),
        (&json!(9_998_500), &json!(2_500), &json!(st.entries[3].seq))
    );
    // Trades over HTTP.
    let (status, v) = http_get(&http, addr, &format!("/v1/markets/{MARKET}/trades?limit=2")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["at_end"], json!(false));
    assert_eq!(
        v["trades"][1],
        json!({
            "seq": all.trades[1].seq, "input": all.trades[1].input, "timestamp": t1,
            "market": MARKET, "price": 30_100, "qty": 20 * LOT, "taker_side": "Buy",
            "taker": b1, "maker": s2, "taker_account": BUYER, "maker_account": SELLER,
            "taker_fee": 1_204, "maker_fee": 602
        })
    );
    let full = statement(0, None, 0, None).await;
    server.shutdown().await.unwrap();

    // ----- after a restart, with an index of 4 events per shard: the same answers ------
    // Everything before the restart is regenerated from the logs; reads that start there
    // cross into the events published since.
    let mut cfg = config(dir.path());
    cfg.events_retained_max = 4;
    let server = Server::start(cfg).await.unwrap();
    let mut c = grpc(&server).await;
    let base = c.clone();
    for id in 60..66 {
        let r = c
            .deposit(pb::DepositRequest {
                transfer_id: id,
                account_id: SELLER,
                asset_id: USD,
                amount: 1,
            })
            .await;
        accepted(&r.unwrap().into_inner());
    }
    let again = |after_seq, limit| {
        let mut c = base.clone();
        async move {
            c.get_trades(pb::GetTradesRequest {
                market_id: MARKET,
                after_seq,
                from_ns: 0,
                to_ns: None,
                limit,
                stale: false,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    assert_eq!(all.trades, again(None, 0).await.trades);
    let p2 = again(Some(all.trades[1].seq), 0).await;
    assert_eq!((p2.trades, p2.at_end), (all.trades[2..].to_vec(), true));
    let candles_again = c
        .get_candles(pb::GetCandlesRequest {
            market_id: MARKET,
            interval_s: 1,
            from_ns: t1 - 10 * SEC,
            to_ns: t3 + 10 * SEC,
            stale: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(candles.candles, candles_again.candles);
    let st_again = c
        .get_statement(pb::GetStatementRequest {
            account_id: BUYER,
            asset_id: USD,
            from_ns: 0,
            to_ns: None,
            limit: 0,
            after_seq: None,
            stale: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (full.opening, full.entries, full.closing),
        (st_again.opening, st_again.entries, st_again.closing)
    );
    // The seller's statement runs from the old history into the new deposits.
    let seller = c
        .get_statement(pb::GetStatementRequest {
            account_id: SELLER,
            asset_id: USD,
            from_ns: 0,
            to_ns: None,
            limit: 0,
            after_seq: None,
            stale: false,
        })
        .await
        .unwrap()
        .into_inner();
    let (now, _) = balances(&mut c, SELLER, None).await.unwrap();
    assert_eq!(
        seller.closing,
        Some(pb::Balance {
            asset_id: USD,
            available: now[&USD].0,
            held: now[&USD].1
        })
    );
    let deposits = seller
        .entries
        .iter()
        .filter(|e| {
            matches!(
                e.cause.as_ref().and_then(|c| c.kind.clone()),
                Some(pb::event::Kind::Deposited(d)) if d.transfer_id >= 60
            )
        })
        .count();
    assert_eq!(deposits, 6);
    let (b, i) = balances(&mut c, BUYER, as_of_time(t_dep)).await.unwrap();
    assert_eq!(
        (b, i),
        (BTreeMap::from([(USD, (10_001_000, 0))]), dep.input)
    );
    server.shutdown().await.unwrap();
}

/// A question that needs more replay than the configured limit is refused with a typed
/// error naming the limit, over both interfaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.history = HistoryLimits {
        replay_records_max: 3,
        ..HistoryLimits::default()
    };
    let server = Server::start(cfg).await.unwrap();
    let mut c = grpc(&server).await;
    setup(&mut c).await;
    // Shard 1 has applied 5+ inputs and no snapshot: index 5 needs 5 records replayed.
    let (_, applied) = balances(&mut c, BUYER, None).await.unwrap();
    assert!(applied >= 5, "{applied}");
    let e = balances(&mut c, BUYER, as_of_index(5)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("replay_records_max"), "{e:?}");
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let (status, v) = http_get(
        &http,
        server.http_addr(),
        &format!("/v1/accounts/{BUYER}/balances?as_of_index=5"),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("limit_exceeded")),
        "{v}"
    );
    // Three records from the genesis are within the limit (before the account opened).
    let e = balances(&mut c, BUYER, as_of_index(3)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    server.shutdown().await.unwrap();
}
