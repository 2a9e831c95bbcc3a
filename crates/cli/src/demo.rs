//! An in-process trading session over several shards, printed as it happens.

use anyhow::{bail, Result};
use tradelog_domain::*;
use tradelog_engine::cluster::LocalCluster;

/// Options of `tradelog demo`.
#[derive(clap::Args)]
#[command(
    long_about = "Runs a short trading session on an in-process cluster of shards and \
        prints every event, the trades, the book and the final balances, then checks every \
        invariant and prints each shard's state hash. Midway, while an order is on its way to \
        the market, the market's shard splits: the market and some of its accounts move to a \
        new shard, and what was in flight is forwarded there (docs/design/0014).",
    after_help = "Examples:\n  tradelog demo\n  tradelog demo --shards 1   # same balances on one shard"
)]
pub struct Args {
    /// Number of shards (accounts are spread over them by id; the market lives on the last).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// Print every event, not only the interesting ones.
    #[arg(long)]
    all_events: bool,
}

const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);
const FEES: AccountId = AccountId(100);

fn name(a: AccountId) -> &'static str {
    match a.0 {
        1 => "alice",
        2 => "bob",
        3 => "carol",
        4 => "dave",
        100 => "fees",
        _ => "?",
    }
}

fn usd(x: Amount) -> String {
    format!("{}.{:02}", x.0 / 100, x.0 % 100)
}

fn btc(x: Amount) -> String {
    format!("{}.{:08}", x.0 / 100_000_000, x.0 % 100_000_000)
}

/// Prices are quote cents per lot of 0.01 BTC; show them per BTC.
fn px(p: Price) -> String {
    usd(Amount(p.0 * 100))
}

fn fmt_asset(asset: AssetId, x: Amount) -> String {
    if asset == USD {
        format!("{} USD", usd(x))
    } else {
        format!("{} BTC", btc(x))
    }
}

fn describe(e: &Event) -> Option<String> {
    Some(match e {
        Event::AccountOpened { account, owner } => {
            format!(
                "account {} ({}) opened for principal {}",
                account,
                name(*account),
                owner
            )
        }
        Event::Deposited {
            account,
            asset,
            amount,
            ..
        } => {
            format!(
                "{} deposited {}",
                name(*account),
                fmt_asset(*asset, *amount)
            )
        }
        Event::TransferPosted {
            debit,
            credit,
            asset,
            amount,
            ..
        } => format!(
            "transfer posted: {} -> {} {}",
            name(*debit),
            name(*credit),
            fmt_asset(*asset, *amount)
        ),
        Event::TransferInitiated {
            debit,
            credit,
            asset,
            amount,
            to,
            ..
        } => format!(
            "cross-shard transfer started: {} -> {} {} (credit on shard {})",
            name(*debit),
            name(*credit),
            fmt_asset(*asset, *amount),
            to
        ),
        Event::TransferCredited {
            credit,
            asset,
            amount,
            from,
            ..
        } => format!(
            "cross-shard credit applied: {} +{} (from shard {})",
            name(*credit),
            fmt_asset(*asset, *amount),
            from
        ),
        Event::PendingCreated {
            debit,
            credit,
            asset,
            amount,
            ..
        } => format!(
            "pending transfer reserved: {} -> {} {}",
            name(*debit),
            name(*credit),
            fmt_asset(*asset, *amount)
        ),
        Event::PendingPosted {
            amount, released, ..
        } => format!(
            "pending transfer posted: {} moved, {} released",
            usd(*amount),
            usd(*released)
        ),
        Event::PendingVoided {
            amount, expired, ..
        } => format!(
            "pending transfer voided{}: {} released",
            if *expired { " by timeout" } else { "" },
            usd(*amount)
        ),
        Event::OrderSubmitted {
            order,
            account,
            side,
            price,
            qty,
            ..
        } => format!(
            "order {order} submitted by {}: {:?} {} BTC @ {} USD/BTC",
            name(*account),
            side,
            btc(Amount(qty.0)),
            px(*price)
        ),
        Event::FundsHeld {
            account,
            asset,
            amount,
            ..
        } => {
            format!("  {} holds {}", name(*account), fmt_asset(*asset, *amount))
        }
        Event::OrderAccepted { order, .. } => format!("order {order} accepted by the market"),
        Event::OrderRejected { order, code, .. } => format!("order {order} rejected: {code}"),
        Event::Trade {
            price,
            qty,
            taker,
            maker,
            taker_fee,
            maker_fee,
            ..
        } => format!(
            "TRADE {} BTC @ {} USD/BTC (taker {taker}, maker {maker}, fees {} + {} USD)",
            btc(Amount(qty.0)),
            px(*price),
            usd(*taker_fee),
            usd(*maker_fee)
        ),
        Event::Settled {
            account,
            paid_asset,
            paid,
            received_asset,
            received,
            ..
        } => format!(
            "  settled {}: paid {}, received {}",
            name(*account),
            fmt_asset(*paid_asset, *paid),
            fmt_asset(*received_asset, *received)
        ),
        Event::FeeCollected { amount, .. } => format!("  fees collected: {} USD", usd(*amount)),
        Event::FundsReleased {
            account,
            asset,
            amount,
            ..
        } => {
            format!(
                "  {} released {}",
                name(*account),
                fmt_asset(*asset, *amount)
            )
        }
        Event::OrderFilled { order, .. } => format!("order {order} filled"),
        Event::OrderCancelled {
            order,
            remaining,
            reason,
            ..
        } => format!(
            "order {order} cancelled ({reason:?}), {} BTC unfilled",
            btc(Amount(remaining.0))
        ),
        Event::OrderAmended { order, qty, .. } => {
            format!(
                "order {order} amended to {} BTC (priority kept)",
                btc(Amount(qty.0))
            )
        }
        Event::Rejected { subject, code } => format!("REJECTED {subject:?}: {code}"),
        Event::ShardSplit {
            child, accounts, ..
        } => {
            format!("SPLIT: this shard gave the market and {accounts} account(s) to shard {child}")
        }
        _ => return None,
    })
}

pub fn run(args: Args) -> Result<()> {
    let n = args.shards;
    let market_shard = ShardId(n - 1);
    let mut c = LocalCluster::new(n, true);
    let op = |t: u64| Meta {
        timestamp: Timestamp(1_700_000_000_000_000_000 + t * 1_000_000),
        principal: Principal(1_000),
        authority: Authority::Operator,
    };
    let trader = |t: u64, p: u64| Meta {
        principal: Principal(p),
        authority: Authority::Trader,
        ..op(t)
    };
    let mut t = 0;
    let mut next = || {
        t += 1;
        t
    };
    println!("tradelog demo: {n} shard(s), market BTC/USD on shard {market_shard}\n");
    let mut cmds: Vec<(Meta, Command)> = vec![
        (
            op(next()),
            Command::CreateAsset(Asset {
                id: USD,
                code: "USD".into(),
                scale: 2,
            }),
        ),
        (
            op(next()),
            Command::CreateAsset(Asset {
                id: BTC,
                code: "BTC".into(),
                scale: 8,
            }),
        ),
        (
            op(next()),
            Command::CreateMarket(MarketSpec {
                id: MarketId(1),
                base: BTC,
                quote: USD,
                lot_size: 1_000_000, // 0.01 BTC
                tick_size: 1,        // 0.01 USD per lot
                min_qty: Qty(1_000_000),
                max_qty: Qty(100_000_000_000),
                maker_fee_bps: 10,
                taker_fee_bps: 20,
                fee_account: FEES,
                collar_bps: 1_000,
                shard: market_shard,
            }),
        ),
    ];
    for a in 1..=4u64 {
        cmds.push((
            op(next()),
            Command::OpenAccount {
                account: AccountId(a),
                owner: Principal(a),
            },
        ));
    }
    for (a, asset, amount) in [
        (1, USD, 10_000_000u64),
        (2, BTC, 300_000_000),
        (3, BTC, 100_000_000),
        (4, USD, 5_000_000),
    ] {
        cmds.push((
            op(next()),
            Command::Deposit {
                id: TransferId(a * 100),
                account: AccountId(a),
                asset,
                amount: Amount(amount),
            },
        ));
    }
    // BTC at 30,000.00 USD: a lot (0.01 BTC) costs 300.00 USD = 30,000 cents.
    let order = |account: u64, side, price: u64, lots: u64, tif| NewOrder {
        account: AccountId(account),
        market: MarketId(1),
        side,
        order_type: OrderType::Limit,
        tif,
        price: Price(price),
        qty: Qty(lots * 1_000_000),
        post_only: false,
        client_order_id: 0,
        stp: SelfTradePrevention::CancelResting,
    };
    cmds.extend([
        (
            trader(next(), 2),
            Command::PlaceOrder(order(2, Side::Sell, 30_000, 200, TimeInForce::Gtc)),
        ),
        (
            trader(next(), 3),
            Command::PlaceOrder(order(3, Side::Sell, 30_010, 100, TimeInForce::Gtc)),
        ),
        (
            trader(next(), 1),
            Command::PlaceOrder(order(1, Side::Buy, 30_010, 250, TimeInForce::Gtc)),
        ),
        (
            trader(next(), 4),
            Command::PlaceOrder(order(4, Side::Buy, 29_990, 10, TimeInForce::Gtc)),
        ),
        (
            trader(next(), 4),
            Command::PlaceOrder(order(4, Side::Buy, 31_000, 1_000, TimeInForce::Gtc)),
        ),
        (
            trader(next(), 1),
            Command::Transfer(TransferSpec {
                id: TransferId(9_001),
                debit: AccountId(1),
                credit: AccountId(4),
                asset: USD,
                amount: Amount(50_000),
                balancing: false,
            }),
        ),
        (
            trader(next(), 1),
            Command::CreatePending {
                spec: TransferSpec {
                    id: TransferId(9_002),
                    debit: AccountId(1),
                    credit: AccountId(2),
                    asset: USD,
                    amount: Amount(100_000),
                    balancing: false,
                },
                timeout_ms: 60_000,
            },
        ),
        (
            trader(next(), 1),
            Command::PostPending {
                debit: AccountId(1),
                id: TransferId(9_002),
                amount: Some(Amount(25_000)),
            },
        ),
    ]);
    // Dave's bid at 29,990 is held on his shard and sent to the market's: before it gets
    // there, the market's shard splits, moving the market and, of its accounts, those
    // with id % (2 * shards) == its own number to a new shard, which receives the bid
    // from the old one.
    let split_after = cmds.len() - 5;
    for (k, (meta, cmd)) in cmds.into_iter().enumerate() {
        let answers = c.submit(meta, cmd.clone());
        if k == split_after {
            let modulus = 2 * u64::from(n);
            let residue = u64::from(market_shard.0);
            c.split(
                meta.timestamp,
                market_shard,
                modulus,
                residue,
                vec![MarketId(1)],
            )?;
        }
        c.pump(meta.timestamp);
        for (shard, o) in answers {
            if let Err(r) = o.result {
                if !cmd.is_catalog() || shard.0 == 0 {
                    println!("command rejected on shard {shard}: {}", r.code);
                }
            }
        }
    }
    // Cancel dave's resting bid (found from the events) as an operator.
    let resting: Vec<(OrderId, MarketId)> = c
        .shards()
        .iter()
        .flat_map(|e| e.books().values())
        .flat_map(|b| {
            b.orders(Side::Buy)
                .into_iter()
                .map(move |o| (o.id, b.spec().id))
        })
        .collect();
    if let Some(&(order, market)) = resting.first() {
        let m = op(next());
        c.submit(m, Command::CancelOrder { market, order });
        c.pump(m.timestamp);
    }

    println!("events in the order the shards applied them ([shard:seq]):");
    for r in c.timeline() {
        let text = if args.all_events {
            Some(format!("{:?}", r.event))
        } else {
            describe(&r.event)
        };
        if let Some(text) = text {
            println!("  [{}:{:>3}] {text}", r.shard, r.seq);
        }
    }

    let book_shard = c.placement().market_shard(MarketId(1), market_shard);
    println!("\nbook BTC/USD (shard {book_shard}, split from shard {market_shard}):");
    let book = &c.shards()[book_shard.0 as usize].books()[&MarketId(1)];
    let (bids, asks) = book.depth(5);
    for (p, q, k) in asks.iter().rev() {
        println!(
            "  ask {:>10} USD/BTC  {:>12} BTC  ({k} orders)",
            px(*p),
            btc(Amount(q.0))
        );
    }
    for (p, q, k) in &bids {
        println!(
            "  bid {:>10} USD/BTC  {:>12} BTC  ({k} orders)",
            px(*p),
            btc(Amount(q.0))
        );
    }
    if bids.is_empty() && asks.is_empty() {
        println!("  (empty)");
    }

    println!("\nfinal balances:");
    println!(
        "  {:<8} {:>5} {:>16} {:>16} {:>16} {:>16}",
        "account", "shard", "USD avail", "USD held", "BTC avail", "BTC held"
    );
    let mut accounts: Vec<_> = c
        .shards()
        .iter()
        .flat_map(|e| {
            e.ledger()
                .accounts()
                .iter()
                .map(move |a| (a.id, e.shard(), a))
        })
        .collect();
    accounts.sort_by_key(|(id, _, _)| *id);
    for (id, shard, a) in accounts {
        let (u, b) = (a.balance(USD), a.balance(BTC));
        println!(
            "  {:<8} {:>5} {:>16} {:>16} {:>16} {:>16}",
            name(id),
            shard,
            usd(u.available),
            usd(u.held),
            btc(b.available),
            btc(b.held)
        );
    }
    let trades = c
        .all_events()
        .filter(|r| matches!(r.event, Event::Trade { .. }))
        .count();
    let shards = c.shards().len();
    let events: usize = (0..shards).map(|s| c.events(ShardId(s as u32)).len()).sum();
    println!("\n{trades} trades, {events} events over {shards} shard(s)");
    match c.validate() {
        Ok(()) => println!("invariants: OK (conservation per asset, holds == open orders + pending, books uncrossed)"),
        Err(v) => bail!("invariant violated: {v}"),
    }
    for e in c.shards() {
        println!(
            "shard {} state hash {}",
            e.shard(),
            tradelog_codec::hex(&e.state_hash())
        );
    }
    Ok(())
}
