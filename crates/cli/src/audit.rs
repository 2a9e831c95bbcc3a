//! `tradelog audit`: distributed audit jobs over every shard (`tradelog-audit`), one task
//! per shard on the least-loaded live replica, with a progress bar per task on a terminal,
//! a table (or `--json`) of the result, and exit status 4 when an audit fails.

use crate::output::{self, Table};
use crate::remote::Global;
use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use tradelog_audit::{Auditor, TaskDone};

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
            .indexes()
            .iter()
            .enumerate()
            .map(|(s, i)| format!("shard {s} @ {i}"))
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
