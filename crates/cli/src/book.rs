//! `tradelog book MARKET` and `tradelog trades MARKET`.

use crate::events;
use crate::output::{self, Table};
use crate::remote::{self, Global};
use anyhow::Result;
use serde_json::json;
use tradelog_client::{format_position, EventStream};
use tradelog_domain as d;

/// Options of `tradelog book`.
#[derive(clap::Args)]
#[command(
    after_help = "Prices are quote minor units per lot, quantities base minor units.\n\n\
    Examples:\n  tradelog book 1\n  tradelog book 1 --depth 5 --json"
)]
pub struct BookArgs {
    /// The market.
    market: u32,
    /// Price levels per side (0: the server's default, 20; at most 1000).
    #[arg(long, default_value_t = 0)]
    depth: u32,
}

/// Options of `tradelog trades`.
#[derive(clap::Args)]
#[command(
    after_help = "The server keeps the events published since it started (see \
    `tradelog serve`), so trades older than that are not listed.\n\nExamples:\n  \
    tradelog trades 1\n  tradelog trades 1 --after 0:120   # only trades after a position"
)]
pub struct TradesArgs {
    /// The market.
    market: u32,
    /// Only trades after this position (SHARD:SEQ,...; default: from the start).
    #[arg(long, value_parser = crate::events::parse_after)]
    after: Option<tradelog_client::Position>,
}

pub fn book(a: BookArgs, g: &Global) -> Result<()> {
    remote::run(g, |ctx| async move {
        let b = ctx.client.book(d::MarketId(a.market), a.depth).await?;
        if ctx.json {
            output::json(&b);
            return Ok(());
        }
        let last = b
            .last_price
            .map(|p| p.to_string())
            .unwrap_or_else(|| "none".into());
        println!(
            "market {}  last price {last}{}  (shard {}, event {})",
            b.market,
            if b.halted { "  HALTED" } else { "" },
            b.position.shard,
            b.position.seq
        );
        let mut t = Table::new(&["SIDE", "PRICE", "QTY", "ORDERS"]);
        let mut level = |side: &str, l: &tradelog_client::Level| {
            t.row(vec![
                side.into(),
                l.price.to_string(),
                l.qty.to_string(),
                l.orders.to_string(),
            ])
        };
        // A ladder: asks from the highest down to the best, then bids from the best down.
        for l in b.asks.iter().rev() {
            level("ask", l);
        }
        for l in &b.bids {
            level("bid", l);
        }
        if t.is_empty() {
            println!("(empty book)");
        } else {
            t.print();
        }
        Ok(())
    })
}

pub fn trades(a: TradesArgs, g: &Global) -> Result<()> {
    let after = a.after.unwrap_or_default();
    remote::run(g, |ctx| async move {
        let stream = EventStream::Market(d::MarketId(a.market));
        let (records, position) = events::read_to_end(&ctx.client, stream, after, None).await?;
        let trades: Vec<_> = records
            .iter()
            .filter(|r| matches!(r.event, d::Event::Trade { .. }))
            .collect();
        if ctx.json {
            let list: Vec<_> = trades
                .iter()
                .map(|r| match &r.event {
                    d::Event::Trade {
                        price,
                        qty,
                        taker_side,
                        taker,
                        maker,
                        taker_account,
                        maker_account,
                        taker_fee,
                        maker_fee,
                        ..
                    } => json!({
                        "shard": r.shard,
                        "seq": r.seq,
                        "timestamp": r.timestamp,
                        "price": price,
                        "qty": qty,
                        "taker_side": taker_side,
                        "taker_order": taker,
                        "maker_order": maker,
                        "taker_account": taker_account,
                        "maker_account": maker_account,
                        "taker_fee": taker_fee,
                        "maker_fee": maker_fee,
                    }),
                    _ => unreachable!("filtered to trades"),
                })
                .collect();
            output::json(&json!({
                "market": a.market,
                "trades": list,
                "position": format_position(&position),
            }));
            return Ok(());
        }
        let mut t = Table::new(&[
            "TIME",
            "PRICE",
            "QTY",
            "TAKER SIDE",
            "TAKER ORDER",
            "MAKER ORDER",
            "TAKER ACCOUNT",
            "MAKER ACCOUNT",
            "TAKER FEE",
            "MAKER FEE",
        ]);
        for r in &trades {
            if let d::Event::Trade {
                price,
                qty,
                taker_side,
                taker,
                maker,
                taker_account,
                maker_account,
                taker_fee,
                maker_fee,
                ..
            } = &r.event
            {
                t.row(vec![
                    output::time(r.timestamp),
                    price.to_string(),
                    qty.to_string(),
                    output::side(*taker_side).into(),
                    taker.to_string(),
                    maker.to_string(),
                    taker_account.to_string(),
                    maker_account.to_string(),
                    taker_fee.to_string(),
                    maker_fee.to_string(),
                ]);
            }
        }
        if t.is_empty() {
            println!("(no trades)");
        } else {
            t.print();
        }
        Ok(())
    })
}
