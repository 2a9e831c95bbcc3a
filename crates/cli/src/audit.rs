//! `tradelog audit`: distributed audit jobs over every shard (`tradelog-audit`), one task
//! per shard on the least-loaded live replica, with a progress bar per task on a terminal,
//! a table (or `--json`) of the result, and exit status 4 when an audit fails. Jobs: the
//! solvency audit, the trial balance, replay verification, account statements, VWAP and
//! OHLCV.

use crate::output::{self, Table};
use crate::remote::Global;
use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use tradelog_audit::{Auditor, TaskDone};
use tradelog_domain as d;

/// Exit status: the audit ran and found a fault (printed, with the shard named).
pub const EXIT_AUDIT_FAILED: u8 = 4;

/// An audit that ran and failed (its failures are already printed).
#[derive(Debug, thiserror::Error)]
#[error("audit failed: {0}")]
pub struct Failed(pub String);

/// `tradelog audit` subcommands.
#[derive(Subcommand)]
pub enum Cmd {
    /// Money is conserved: per asset, over all shards at a consistent cut of their logs,
    /// balances == deposits - withdrawals + value in flight between shards.
    #[command(
        after_help = "Each shard reports its figures (per asset: available, held, \
        deposited, withdrawn, sent to and received from other shards; per peer shard: \
        the message sequence numbers) at its current log index, computed by any replica. \
        Then, while some shard has applied a message its sender had not yet sent at the \
        sender's index, that shard's index moves back (a binary search over its past \
        figures) until the cut is consistent. At the cut, every shard must balance on its \
        own and, over all shards, what was sent plus what messages in flight will send \
        must equal what was received plus what they will deliver. A failure names the \
        shard and asset.\n\nExit status: 0 passed, 4 failed, 3 no replica of a shard \
        answered.\n\nExamples:\n  tradelog audit solvency\n  \
        tradelog --server http://127.0.0.1:7710,http://127.0.0.1:7720 audit solvency --json"
    )]
    Solvency,
    /// Every shard's figures at its current index, each shard checked on its own
    /// (balances == deposited - withdrawn + received - sent), with totals.
    #[command(after_help = "Examples:\n  tradelog audit trial-balance\n  \
        tradelog audit trial-balance --json")]
    TrialBalance,
    /// Every shard's state regenerated from its log (newest snapshot, then replay) and
    /// compared, by state hash, with the live state at the same index.
    #[command(
        after_help = "The replica that answers a shard's task replays its own log; \
        a mismatch names the shard and both hashes.\n\nExamples:\n  tradelog audit verify"
    )]
    Verify,
    /// Account statements over a time range: per account and asset, the opening balance,
    /// credits, debits, number of changes and the closing balance, each line checked.
    #[command(
        after_help = "Each shard's task reads one replica's state before --from \
        (opening balances), its events in the range, and its state at --to (closing \
        balances); a line fails when opening + credits - debits differs from the closing \
        balance, or when the events end at another balance than the state holds. Every \
        account of every shard is listed page by page unless --account names some. \
        Amounts are minor units (available + held). Times are RFC 3339 or nanoseconds \
        since the Unix epoch.\n\nExit status: 0 passed, 4 a line failed, 3 no replica of \
        a shard answered.\n\nExamples:\n  tradelog audit statements\n  \
        tradelog audit statements --account 7 --account 8 --from 2026-11-25T00:00:00Z \
        --to 2026-11-26T00:00:00Z\n  tradelog audit statements --totals-only --json"
    )]
    Statements(StatementsArgs),
    /// Volume-weighted average price, volumes and the range's open/high/low/close of every
    /// market (or those named) over a time range.
    #[command(
        after_help = "VWAP = sum(price * quantity) / sum(quantity), in quote minor \
        units per lot, from the trades of the market's shard (one task per shard, on one \
        replica). Times are RFC 3339 or nanoseconds since the Unix epoch.\n\nExamples:\n  \
        tradelog audit vwap\n  tradelog audit vwap --market 1 --from 2026-11-25T00:00:00Z"
    )]
    Vwap(RangeArgs),
    /// OHLCV candles of every market (or those named) over a time range.
    #[command(
        after_help = "Candles start at whole multiples of the interval since the \
        epoch (UTC); intervals without trades are left out; at most 10000 candles per \
        market. Times are RFC 3339 or nanoseconds since the Unix epoch.\n\nExamples:\n  \
        tradelog audit ohlcv --interval 1h\n  tradelog audit ohlcv --market 1 --interval 5m \
        --from 2026-11-25T00:00:00Z --to 2026-11-26T00:00:00Z --json"
    )]
    Ohlcv(OhlcvArgs),
}

/// Options of `tradelog audit statements`.
#[derive(clap::Args)]
pub struct StatementsArgs {
    /// Only this account (repeat for more); default: every account.
    #[arg(long = "account")]
    accounts: Vec<u64>,
    /// Range start (inclusive); default: the beginning.
    #[arg(long, value_parser = output::parse_time)]
    from: Option<d::Timestamp>,
    /// Range end (exclusive); default: now.
    #[arg(long, value_parser = output::parse_time)]
    to: Option<d::Timestamp>,
    /// Print only the totals per asset (and any failed line).
    #[arg(long)]
    totals_only: bool,
}

/// Options of `tradelog audit vwap`.
#[derive(clap::Args)]
pub struct RangeArgs {
    /// Only this market (repeat for more); default: every market.
    #[arg(long = "market")]
    markets: Vec<u32>,
    /// Range start (inclusive); default: the beginning.
    #[arg(long, value_parser = output::parse_time)]
    from: Option<d::Timestamp>,
    /// Range end (exclusive); default: now.
    #[arg(long, value_parser = output::parse_time)]
    to: Option<d::Timestamp>,
}

/// Options of `tradelog audit ohlcv`.
#[derive(clap::Args)]
pub struct OhlcvArgs {
    /// Only this market (repeat for more); default: every market.
    #[arg(long = "market")]
    markets: Vec<u32>,
    /// Candle length: seconds, or with a unit: 30s, 5m, 1h, 1d (1 s to 1 d).
    #[arg(long, default_value = "1h", value_parser = crate::book::parse_interval)]
    interval: u32,
    /// Range start (inclusive); default: 1000 intervals before --to.
    #[arg(long, value_parser = output::parse_time)]
    from: Option<d::Timestamp>,
    /// Range end (exclusive); default: now.
    #[arg(long, value_parser = output::parse_time)]
    to: Option<d::Timestamp>,
}

fn progress(shards: u32, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(u64::from(shards)), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("  {prefix} [{bar:30}] {pos}/{len} tasks {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

pub fn run(cmd: Cmd, g: &Global) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let config = g.config();
    let json = g.json;
    runtime.block_on(async move {
        let auditor = Auditor::connect(&config).await?;
        let label = match cmd {
            Cmd::Solvency => "solvency",
            Cmd::TrialBalance => "trial balance",
            Cmd::Verify => "verify",
            Cmd::Statements(_) => "statements",
            Cmd::Vwap(_) => "vwap",
            Cmd::Ohlcv(_) => "ohlcv",
        };
        let bar = progress(auditor.shard_count(), label);
        let b = bar.clone();
        let auditor = auditor.with_progress(Arc::new(move |t: &TaskDone| {
            // The cut search sends more tasks than shards: the bar grows with it.
            if b.position() >= b.length().unwrap_or(0) {
                b.inc_length(1);
            }
            b.inc(1);
            b.set_message(format!("shard {} on {}", t.shard, t.node));
        }));
        let result = match cmd {
            Cmd::Solvency => solvency(&auditor, json).await,
            Cmd::TrialBalance => trial_balance(&auditor, json).await,
            Cmd::Verify => verify(&auditor, json).await,
            Cmd::Statements(a) => statements(&auditor, a, json).await,
            Cmd::Vwap(a) => {
                let to = a.to.unwrap_or_else(tradelog_node::runtime::now);
                let from = a.from.unwrap_or(d::Timestamp(0));
                activity(&auditor, from, to, 0, &a.markets, json).await
            }
            Cmd::Ohlcv(a) => {
                let to = a.to.unwrap_or_else(tradelog_node::runtime::now);
                let span = u64::from(a.interval) * 1_000_000_000 * 1_000;
                let from = a.from.unwrap_or(d::Timestamp(to.0.saturating_sub(span)));
                activity(&auditor, from, to, a.interval, &a.markets, json).await
            }
        };
        bar.finish_and_clear();
        result
    })
}

fn fail_if(failures: Vec<String>) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    for f in &failures {
        eprintln!("FAILED: {f}");
    }
    Err(Failed(failures.join("; ")).into())
}

async fn solvency(a: &Auditor, json: bool) -> Result<()> {
    let r = a.solvency().await?;
    if json {
        output::json(&r);
    } else {
        let cut: Vec<String> = r
            .cut
            .figures
            .iter()
            .map(|f| match f.origin {
                Some(o) if f.before_start => format!(
                    "shard {} before its split (shard {} @ {})",
                    f.shard, o.parent, o.index
                ),
                _ => format!("shard {} @ {}", f.shard, f.index),
            })
            .collect();
        println!(
            "consistent cut: {} ({} extra figures tasks)",
            cut.join(", "),
            r.cut.probes
        );
        let mut t = Table::new(&[
            "ASSET",
            "BALANCES",
            "DEPOSITED",
            "WITHDRAWN",
            "IN FLIGHT OUT",
            "IN FLIGHT IN",
            "RESULT",
        ]);
        for (asset, l) in &r.solvency.assets {
            let bad = r.solvency.failures.iter().any(|f| {
                matches!(f, tradelog_domain::audit::AuditFailure::NotConserved { asset: x, .. }
                    | tradelog_domain::audit::AuditFailure::ShardUnbalanced { asset: x, .. } if x == asset)
            });
            t.row(vec![
                asset.to_string(),
                l.balances.to_string(),
                l.deposited.to_string(),
                l.withdrawn.to_string(),
                l.in_flight_sent.to_string(),
                l.in_flight_received.to_string(),
                if bad { "FAILED" } else { "ok" }.into(),
            ]);
        }
        t.print();
    }
    fail_if(r.solvency.failures.iter().map(|f| f.to_string()).collect())
}

async fn trial_balance(a: &Auditor, json: bool) -> Result<()> {
    let r = a.trial_balance().await?;
    if json {
        output::json(&r);
    } else {
        let mut t = Table::new(&[
            "SHARD",
            "INDEX",
            "ASSET",
            "AVAILABLE",
            "HELD",
            "DEPOSITED",
            "WITHDRAWN",
            "RECEIVED",
            "SENT",
        ]);
        for f in &r.shards {
            for (asset, v) in &f.assets {
                t.row(vec![
                    f.shard.to_string(),
                    f.index.to_string(),
                    asset.to_string(),
                    v.available.to_string(),
                    v.held.to_string(),
                    v.deposited.to_string(),
                    v.withdrawn.to_string(),
                    v.received.to_string(),
                    v.sent.to_string(),
                ]);
            }
        }
        for (asset, v) in &r.totals {
            t.row(vec![
                "all".into(),
                "-".into(),
                asset.to_string(),
                v.available.to_string(),
                v.held.to_string(),
                v.deposited.to_string(),
                v.withdrawn.to_string(),
                v.received.to_string(),
                v.sent.to_string(),
            ]);
        }
        t.print();
    }
    fail_if(r.failures.iter().map(|f| f.to_string()).collect())
}

async fn verify(a: &Auditor, json: bool) -> Result<()> {
    let r = a.verify().await?;
    if json {
        output::json(&r);
    } else {
        let mut t = Table::new(&["SHARD", "INDEX", "LIVE HASH", "REPLAYED HASH", "RESULT"]);
        for v in &r.shards {
            t.row(vec![
                v.shard.to_string(),
                v.log_index.to_string(),
                v.live_hash.clone(),
                v.replayed_hash.clone(),
                if v.matches() { "ok" } else { "FAILED" }.into(),
            ]);
        }
        t.print();
    }
    fail_if(
        r.shards
            .iter()
            .filter(|v| !v.matches())
            .map(|v| {
                format!(
                    "shard {}: the state replayed from the log at index {} has hash {}, the \
                     live state {}",
                    v.shard, v.log_index, v.replayed_hash, v.live_hash
                )
            })
            .collect(),
    )
}

async fn statements(a: &Auditor, args: StatementsArgs, json: bool) -> Result<()> {
    let to = args.to.unwrap_or_else(tradelog_node::runtime::now);
    let from = args.from.unwrap_or(d::Timestamp(0));
    let accounts: Vec<d::AccountId> = args.accounts.iter().map(|a| d::AccountId(*a)).collect();
    let r = a.statements(from, to, &accounts).await?;
    not_found("no shard holds account(s)", &r.unknown_accounts)?;
    if json {
        if args.totals_only {
            output::json(&serde_json::json!({
                "from": r.from,
                "to": r.to,
                "totals": r.totals,
                "failures": r.failures,
                "tasks": r.tasks,
            }));
        } else {
            output::json(&r);
        }
    } else {
        println!(
            "statements from {} to {} ({} lines, {} tasks)",
            output::time(from),
            output::time(to),
            r.lines.len(),
            r.tasks
        );
        if !args.totals_only {
            let mut t = Table::new(&[
                "SHARD", "ACCOUNT", "ASSET", "OPENING", "CREDITS", "DEBITS", "CHANGES", "CLOSING",
                "RESULT",
            ]);
            for l in &r.lines {
                let bad = l.line.fault(l.shard).is_some();
                t.row(vec![
                    l.shard.to_string(),
                    l.line.account.to_string(),
                    l.line.asset.to_string(),
                    l.line.opening.total().to_string(),
                    l.line.credits.to_string(),
                    l.line.debits.to_string(),
                    l.line.changes.to_string(),
                    l.line.closing.total().to_string(),
                    if bad { "FAILED" } else { "ok" }.into(),
                ]);
            }
            if t.is_empty() {
                println!("(no balances)");
            } else {
                t.print();
            }
        }
        let mut t = Table::new(&[
            "ASSET", "ACCOUNTS", "OPENING", "CREDITS", "DEBITS", "CHANGES", "CLOSING",
        ]);
        for (asset, v) in &r.totals {
            t.row(vec![
                asset.to_string(),
                v.accounts.to_string(),
                v.opening.to_string(),
                v.credits.to_string(),
                v.debits.to_string(),
                v.changes.to_string(),
                v.closing.to_string(),
            ]);
        }
        if !t.is_empty() {
            t.print();
        }
    }
    fail_if(r.failures.iter().map(|f| f.to_string()).collect())
}

async fn activity(
    a: &Auditor,
    from: d::Timestamp,
    to: d::Timestamp,
    interval_s: u32,
    markets: &[u32],
    json: bool,
) -> Result<()> {
    let markets: Vec<d::MarketId> = markets.iter().map(|m| d::MarketId(*m)).collect();
    let r = a.activity(from, to, interval_s, &markets).await?;
    not_found("no shard owns market(s)", &r.unknown_markets)?;
    if json {
        let markets: Vec<_> = r
            .markets
            .iter()
            .map(|(shard, last_seq, m)| {
                serde_json::json!({
                    "shard": shard,
                    "last_seq": last_seq,
                    "vwap": m.vwap().map(|_| m.vwap_decimal(VWAP_DECIMALS)),
                    "activity": m,
                })
            })
            .collect();
        output::json(&serde_json::json!({
            "from": r.from,
            "to": r.to,
            "interval_s": r.interval_s,
            "markets": markets,
        }));
        return Ok(());
    }
    println!("from {} to {}", output::time(from), output::time(to));
    let price = |p: Option<d::Price>| p.map_or("-".to_string(), |p| p.to_string());
    if interval_s == 0 {
        let mut t = Table::new(&[
            "MARKET",
            "SHARD",
            "TRADES",
            "VOLUME",
            "QUOTE VOLUME",
            "VWAP",
            "OPEN",
            "HIGH",
            "LOW",
            "CLOSE",
        ]);
        for (shard, _, m) in &r.markets {
            t.row(vec![
                m.market.to_string(),
                shard.to_string(),
                m.trades.to_string(),
                m.volume.to_string(),
                m.quote_volume.to_string(),
                m.vwap_decimal(VWAP_DECIMALS),
                price(m.open),
                price(m.high),
                price(m.low),
                price(m.close),
            ]);
        }
        if t.is_empty() {
            println!("(no markets)");
        } else {
            t.print();
        }
        return Ok(());
    }
    let mut columns = vec!["MARKET"];
    columns.extend(output::CANDLE_COLUMNS);
    let mut t = Table::new(&columns);
    for (_, _, m) in &r.markets {
        for c in &m.candles {
            let mut row = vec![m.market.to_string()];
            row.extend(output::candle_cells(&(*c).into()));
            t.row(row);
        }
    }
    if t.is_empty() {
        println!("(no trades in the range)");
    } else {
        t.print();
    }
    Ok(())
}

/// Refuses with `NOT_FOUND` (exit status 1) naming `ids` when there are any.
fn not_found(what: &str, ids: &[impl std::fmt::Display]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    Err(tradelog_client::ClientError::NotFound(format!("{what} {}", list.join(", "))).into())
}

/// Digits after the point of a printed VWAP.
const VWAP_DECIMALS: u32 = 4;
