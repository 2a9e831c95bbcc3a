//! `tradelog order place|cancel|amend|get`.

use crate::output::{self, Table};
use crate::remote::{self, Global};
use anyhow::{bail, Result};
use tradelog_domain as d;

/// Orders: place, cancel, amend, look one up.
#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Places an order: its funds are held on the account's shard, then it matches on the
    /// market's shard (follow it with `tradelog events tail --stream order:ID`).
    #[command(
        after_help = "Units: QTY in base minor units (a multiple of the market's lot); \
        --price in quote minor units per lot (a multiple of the tick). See \
        `tradelog market create --help`.\n\nExamples:\n  \
        tradelog order place 2 1 sell 2000000 --price 3000000\n  \
        tradelog order place 1 1 buy 1000000 --price 3000000 --client-order-id 7\n  \
        tradelog order place 1 1 buy 1000000 --type market --price 3100000   # protection \
        price\n  \
        tradelog order place 1 1 buy 1000000 --price 2900000 --post-only"
    )]
    Place(PlaceArgs),
    /// Cancels an open order.
    #[command(after_help = "Examples:\n  tradelog order cancel 1 281474976710657")]
    Cancel {
        /// Market of the order.
        market: u32,
        /// The order id.
        order: u64,
    },
    /// Amends (cancel-replaces) an open order: a lower quantity at the same price keeps
    /// its time priority, anything else replaces it with a new order.
    #[command(after_help = "Examples:\n  \
        tradelog order amend 1 281474976710657 --price 3000000 --qty 1000000")]
    Amend {
        /// Market of the order.
        market: u32,
        /// The order id.
        order: u64,
        /// New limit price (quote minor units per lot).
        #[arg(long)]
        price: u64,
        /// New remaining quantity (base minor units).
        #[arg(long)]
        qty: u64,
    },
    /// Shows an open order (a filled or cancelled one is not found: its history is in
    /// `tradelog events read --stream order:ID`).
    #[command(
        after_help = "--as-of-index / --as-of-time show the order as it rested at a \
        past point of its market's shard; --stale answers from the node you talk to even \
        when its cluster has no leader.\n\n\
        Examples:\n  tradelog order get 1 281474976710657\n  \
        tradelog order get 1 281474976710657 --as-of-time 2026-11-25T10:00:00Z"
    )]
    Get {
        /// Market of the order.
        market: u32,
        /// The order id.
        order: u64,
        #[command(flatten)]
        read: remote::ReadArgs,
    },
}

#[derive(clap::Args)]
pub struct PlaceArgs {
    /// Trading account (holds the funds).
    account: u64,
    /// Market.
    market: u32,
    /// buy or sell.
    #[arg(value_enum)]
    side: SideArg,
    /// Quantity in base minor units.
    qty: u64,
    /// Limit price (quote minor units per lot); for market orders the protection price
    /// (required for buys; for sells the least accepted, default any).
    #[arg(long)]
    price: Option<u64>,
    /// Order type.
    #[arg(long = "type", value_enum, default_value = "limit")]
    order_type: TypeArg,
    /// Time in force (default: gtc for limit orders, ioc for market orders).
    #[arg(long, value_enum)]
    tif: Option<TifArg>,
    /// Reject instead of taking liquidity.
    #[arg(long)]
    post_only: bool,
    /// Your idempotency key for this order (unique per account): a retry with the same
    /// key is answered with the original order id.
    #[arg(long, default_value_t = 0)]
    client_order_id: u64,
    /// Self-trade prevention.
    #[arg(long, value_enum, default_value = "cancel-resting")]
    stp: StpArg,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum SideArg {
    Buy,
    Sell,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum TypeArg {
    /// Trades at its price or better; the rest may rest (GTC).
    Limit,
    /// Trades at any price up to its protection price; never rests.
    Market,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum TifArg {
    /// Good till cancelled (limit orders only).
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum StpArg {
    #[value(name = "cancel-resting")]
    Resting,
    #[value(name = "cancel-incoming")]
    Incoming,
    #[value(name = "cancel-both")]
    Both,
}

pub fn run(cmd: Cmd, g: &Global) -> Result<()> {
    remote::run(g, |ctx| async move {
        let c = &ctx.client;
        match cmd {
            Cmd::Place(a) => {
                let side = match a.side {
                    SideArg::Buy => d::Side::Buy,
                    SideArg::Sell => d::Side::Sell,
                };
                let order_type = match a.order_type {
                    TypeArg::Limit => d::OrderType::Limit,
                    TypeArg::Market => d::OrderType::Market,
                };
                let tif = match (a.tif, a.order_type) {
                    (Some(TifArg::Gtc), _) | (None, TypeArg::Limit) => d::TimeInForce::Gtc,
                    (Some(TifArg::Ioc), _) | (None, TypeArg::Market) => d::TimeInForce::Ioc,
                    (Some(TifArg::Fok), _) => d::TimeInForce::Fok,
                };
                let price = match (a.price, a.order_type) {
                    (Some(p), _) => p,
                    (None, TypeArg::Market) => 0,
                    (None, TypeArg::Limit) => bail!("a limit order needs --price"),
                };
                let stp = match a.stp {
                    StpArg::Resting => d::SelfTradePrevention::CancelResting,
                    StpArg::Incoming => d::SelfTradePrevention::CancelIncoming,
                    StpArg::Both => d::SelfTradePrevention::CancelBoth,
                };
                let r = c
                    .place_order(d::NewOrder {
                        account: d::AccountId(a.account),
                        market: d::MarketId(a.market),
                        side,
                        order_type,
                        tif,
                        price: d::Price(price),
                        qty: d::Qty(a.qty),
                        post_only: a.post_only,
                        client_order_id: a.client_order_id,
                        stp,
                    })
                    .await;
                let id = r
                    .as_ref()
                    .ok()
                    .and_then(|r| r.order_id())
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                let what = format!(
                    "order {id} ({} {} @ {price} in market {} for account {})",
                    output::side(side),
                    a.qty,
                    a.market,
                    a.account
                );
                remote::answer(&ctx, &what, r)
            }
            Cmd::Cancel { market, order } => {
                let r = c.cancel_order(d::MarketId(market), d::OrderId(order)).await;
                remote::answer(
                    &ctx,
                    &format!("cancel of order {order} in market {market}"),
                    r,
                )
            }
            Cmd::Amend {
                market,
                order,
                price,
                qty,
            } => {
                let r = c
                    .amend_order(
                        d::MarketId(market),
                        d::OrderId(order),
                        d::Price(price),
                        d::Qty(qty),
                    )
                    .await;
                let what = format!("amend of order {order} in market {market} to {qty} @ {price}");
                remote::answer(&ctx, &what, r)
            }
            Cmd::Get {
                market,
                order,
                read,
            } => {
                let q = read.stale.client(c);
                let (m, id) = (d::MarketId(market), d::OrderId(order));
                let o = match read.as_of() {
                    None => q.order(m, id).await?,
                    Some(at) => q.order_as_of(m, id, at).await?,
                };
                if ctx.json {
                    output::json(&o);
                    return Ok(());
                }
                let mut t = Table::new(&[
                    "ORDER",
                    "MARKET",
                    "ACCOUNT",
                    "OWNER",
                    "SIDE",
                    "PRICE",
                    "REMAINING",
                    "HELD",
                    "STP",
                    "POST-ONLY",
                ]);
                t.row(vec![
                    o.order.to_string(),
                    o.market.to_string(),
                    o.account.to_string(),
                    o.owner.to_string(),
                    output::side(o.side).into(),
                    o.price.to_string(),
                    o.remaining.to_string(),
                    o.held.to_string(),
                    output::stp(o.stp).into(),
                    if o.post_only { "yes" } else { "no" }.into(),
                ]);
                t.print();
                Ok(())
            }
        }
    })
}
