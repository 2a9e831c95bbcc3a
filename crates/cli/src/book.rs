//! `tradelog book MARKET`, `tradelog trades MARKET` and `tradelog candles MARKET`.

use crate::output::{self, Table};
use crate::remote::{self, Global};
use anyhow::Result;
use serde_json::json;
use tradelog_domain as d;

/// Options of `tradelog book`.
#[derive(clap::Args)]
#[command(
    after_help = "Prices are quote minor units per lot, quantities base minor units. \
    --as-of-index / --as-of-time show the book at a past point of the market's shard; \
    --stale answers from the node you talk to even when its cluster has no leader.\n\n\
    Examples:\n  tradelog book 1\n  tradelog book 1 --depth 5 --json\n  \
    tradelog book 1 --as-of-time 2026-11-25T10:00:00Z"
)]
pub struct BookArgs {
    /// The market.
    market: u32,
    /// Price levels per side (0: the server's default, 20; at most 1000).
    #[arg(long, default_value_t = 0)]
    depth: u32,
    #[command(flatten)]
    read: remote::ReadArgs,
}

/// Options of `tradelog trades`.
#[derive(clap::Args)]
#[command(
    after_help = "Times are RFC 3339 (2026-11-25T10:00:00Z) or nanoseconds since the Unix \
    epoch. The trades come from the market shard's whole history (the server reads its \
    log for old ones), page by page; the `position` of --json (SHARD:SEQ) passed back as \
    --after lists only what came since.\n\n\
    Examples:\n  tradelog trades 1\n  \
    tradelog trades 1 --from 2026-11-25T00:00:00Z --to 2026-11-26T00:00:00Z\n  \
    tradelog trades 1 --after 0:120 --limit 50   # the next 50 after event 120"
)]
pub struct TradesArgs {
    /// The market.
    market: u32,
    /// Only trades after this event of the market's shard: SEQ, or SHARD:SEQ as printed
    /// in `position` (default: from --from).
    #[arg(long, value_parser = parse_after_seq)]
    after: Option<u64>,
    /// Range start (inclusive); default: the beginning.
    #[arg(long, value_parser = output::parse_time)]
    from: Option<d::Timestamp>,
    /// Range end (exclusive); default: no end.
    #[arg(long, value_parser = output::parse_time)]
    to: Option<d::Timestamp>,
    /// Most trades listed (default: all).
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    stale: remote::StaleArg,
}

/// `SEQ` or `SHARD:SEQ` (one shard: the market's).
fn parse_after_seq(s: &str) -> Result<u64, String> {
    let seq = s.rsplit_once(':').map_or(s, |(shard, seq)| {
        if shard.trim().parse::<u32>().is_ok() {
            seq
        } else {
            ""
        }
    });
    seq.trim()
        .parse::<u64>()
        .map_err(|_| format!("{s:?}: expected SEQ or SHARD:SEQ (an event of the market's shard)"))
}

/// Options of `tradelog candles`.
#[derive(clap::Args)]
#[command(
    after_help = "Times are RFC 3339 (2026-11-25T10:00:00Z) or nanoseconds since the Unix \
    epoch. Candles start at whole multiples of the interval since the epoch (UTC); \
    intervals without trades are left out; one call covers at most 10000 intervals. \
    Prices are quote minor units per lot, VOLUME base minor units, QUOTE VOLUME quote \
    minor units.\n\n\
    Examples:\n  tradelog candles 1                       # 1-minute candles of the last 1000 minutes\n  \
    tradelog candles 1 --interval 1h --from 2026-11-25T00:00:00Z --to 2026-11-26T00:00:00Z\n  \
    tradelog candles 1 --interval 5m --json"
)]
pub struct CandlesArgs {
    /// The market.
    market: u32,
    /// Candle length: seconds, or with a unit: 30s, 5m, 1h, 1d (1 s to 1 d).
    #[arg(long, default_value = "1m", value_parser = parse_interval)]
    interval: u32,
    /// Range start (inclusive); default: 1000 intervals before --to.
    #[arg(long, value_parser = output::parse_time)]
    from: Option<d::Timestamp>,
    /// Range end (exclusive); default: now.
    #[arg(long, value_parser = output::parse_time)]
    to: Option<d::Timestamp>,
    #[command(flatten)]
    stale: remote::StaleArg,
}

/// `60`, `60s`, `5m`, `1h`, `1d`: seconds.
pub(crate) fn parse_interval(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?}: expected seconds or a number with s, m, h or d (5m, 1h)");
    let t = s.trim();
    let (n, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 1),
        Some((i, _)) => (
            &t[..i],
            match &t[i..] {
                "s" => 1,
                "m" => 60,
                "h" => 3_600,
                "d" => 86_400,
                _ => return Err(bad()),
            },
        ),
    };
    n.parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|s| *s > 0)
        .ok_or_else(bad)
}

pub fn book(a: BookArgs, g: &Global) -> Result<()> {
    remote::run(g, |ctx| async move {
        let q = a.read.stale.client(&ctx.client);
        let m = d::MarketId(a.market);
        let b = match a.read.as_of() {
            None => q.book(m, a.depth).await?,
            Some(at) => q.book_as_of(m, a.depth, at).await?,
        };
        if ctx.json {
            output::json(&b);
            return Ok(());
        }
        let last = b
            .last_price
            .map(|p| p.to_string())
            .unwrap_or_else(|| "none".into());
        println!(
            "market {}  last price {last}{}  (shard {}, event {}){}",
            b.market,
            if b.halted { "  HALTED" } else { "" },
            b.position.shard,
            b.position.seq,
            a.read.describe()
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
    remote::run(g, |ctx| async move {
        let page = a
            .stale
            .client(&ctx.client)
            .trades_to_end(
                d::MarketId(a.market),
                a.from.unwrap_or(d::Timestamp(0)),
                a.to,
                a.after,
                a.limit,
            )
            .await?;
        let shard = page.position.shard;
        let position = format!("{}:{}", shard, page.position.seq);
        if ctx.json {
            let list: Vec<_> = page
                .trades
                .iter()
                .map(|t| {
                    json!({
                        "shard": shard,
                        "seq": t.seq,
                        "timestamp": t.timestamp,
                        "price": t.price,
                        "qty": t.qty,
                        "taker_side": t.taker_side,
                        "taker_order": t.taker,
                        "maker_order": t.maker,
                        "taker_account": t.taker_account,
                        "maker_account": t.maker_account,
                        "taker_fee": t.taker_fee,
                        "maker_fee": t.maker_fee,
                    })
                })
                .collect();
            output::json(&json!({
                "market": a.market,
                "trades": list,
                "position": position,
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
        for r in &page.trades {
            t.row(vec![
                output::time(r.timestamp),
                r.price.to_string(),
                r.qty.to_string(),
                output::side(r.taker_side).into(),
                r.taker.to_string(),
                r.maker.to_string(),
                r.taker_account.to_string(),
                r.maker_account.to_string(),
                r.taker_fee.to_string(),
                r.maker_fee.to_string(),
            ]);
        }
        if t.is_empty() {
            println!("(no trades)");
        } else {
            t.print();
        }
        Ok(())
    })
}

pub fn candles(a: CandlesArgs, g: &Global) -> Result<()> {
    let to = a.to.unwrap_or_else(tradelog_node::runtime::now);
    let span = u64::from(a.interval) * 1_000_000_000 * 1_000;
    let from = a.from.unwrap_or(d::Timestamp(to.0.saturating_sub(span)));
    remote::run(g, |ctx| async move {
        let c = a
            .stale
            .client(&ctx.client)
            .candles(d::MarketId(a.market), a.interval, from, to)
            .await?;
        if ctx.json {
            output::json(&json!({
                "market": a.market,
                "interval_s": a.interval,
                "from": from,
                "to": to,
                "candles": c.candles,
                "position": c.position,
            }));
            return Ok(());
        }
        let mut t = Table::new(&output::CANDLE_COLUMNS);
        for x in &c.candles {
            t.row(output::candle_cells(x));
        }
        if t.is_empty() {
            println!("(no trades in the range)");
        } else {
            t.print();
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_positions_parse() {
        assert_eq!(parse_interval("60"), Ok(60));
        assert_eq!(parse_interval("30s"), Ok(30));
        assert_eq!(parse_interval("5m"), Ok(300));
        assert_eq!(parse_interval("1h"), Ok(3_600));
        assert_eq!(parse_interval("1d"), Ok(86_400));
        for bad in ["", "0", "m", "5x", "1.5h", "99999999999d"] {
            assert_eq!(
                parse_interval(bad),
                Err(format!(
                    "{bad:?}: expected seconds or a number with s, m, h or d (5m, 1h)"
                ))
            );
        }
        assert_eq!(parse_after_seq("120"), Ok(120));
        assert_eq!(parse_after_seq("0:120"), Ok(120));
        for bad in ["", "x:1", "0:", "0:1,1:2"] {
            assert_eq!(
                parse_after_seq(bad),
                Err(format!(
                    "{bad:?}: expected SEQ or SHARD:SEQ (an event of the market's shard)"
                ))
            );
        }
    }
}
