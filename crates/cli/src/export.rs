//! `tradelog export parquet`: the event history as Parquet files, for DuckDB, Spark,
//! Trino, DataFusion or pandas to query. The files and the schema are the export crate's
//! (`tradelog-export`); this module reads the events through the client, page by page on
//! the `all` stream, from the position the directory's manifest records.

use crate::events::same_position;
use crate::output;
use crate::remote::{self, Global};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use tradelog_client::{format_position, EventStream, Position};
use tradelog_export::Exporter;

/// Export: the event history to files other engines query.
#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Appends every event not yet exported to Parquet files in --out (one table,
    /// partitioned by shard), from a running server or cluster.
    #[command(
        after_help = "What it writes (docs/export.md has the schema and queries):\n  \
        DIR/shard=N/part-<first seq>.parquet   one row per event: shard, seq, input, \
        timestamp (UTC), principal, kind (deposited, trade, ...) and typed columns \
        (account, asset, amount, market, order_id, side, price, qty, fee, ...)\n  \
        DIR/_tradelog_export.json            the manifest: the position exported up to \
        and every file\n\n\
        Incremental: a second run into the same DIR reads the events after the manifest's \
        position and adds new part files (no duplicate, no gap). Files are written under \
        a temporary name and renamed when complete; the manifest is replaced after them; \
        an interrupted run leaves nothing the next run does not clean up. Runs outside \
        the node's hot path: it reads events like `events read` does.\n\n\
        Query it with, for example, DuckDB:\n  \
        SELECT kind, count(*) FROM read_parquet('DIR/*/*.parquet', hive_partitioning = true) \
        GROUP BY kind;\n\n\
        Examples:\n  \
        tradelog export parquet --out ./tradelog-export\n  \
        tradelog export parquet --out ./tradelog-export --server http://10.0.0.1:50051,http://10.0.0.2:50051\n  \
        tradelog export parquet --out ./tradelog-export --json   # the summary as JSON"
    )]
    Parquet(ParquetArgs),
}

#[derive(clap::Args)]
pub struct ParquetArgs {
    /// The export directory (created if missing). Run again with the same one to add
    /// only the events since the last run.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(cmd: Cmd, g: &Global) -> Result<()> {
    match cmd {
        Cmd::Parquet(a) => parquet(a, g),
    }
}

fn parquet(a: ParquetArgs, g: &Global) -> Result<()> {
    let dir = a.out;
    let mut x = Exporter::open(&dir)
        .with_context(|| format!("opening the export directory {}", dir.display()))?;
    remote::run(g, |ctx| async move {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} exporting: {human_pos} events ({per_sec}) {elapsed} {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let mut after = Position(x.position());
        let start = after.clone();
        loop {
            let page = ctx
                .client
                .read_events(
                    EventStream::All,
                    &after,
                    tradelog_api::READ_EVENTS_LIMIT_MAX,
                )
                .await?;
            // An empty page that did not move is the end of the history so far.
            if page.events.is_empty() && same_position(&page.position, &after) {
                break;
            }
            x.write(&page.events, &page.position.0)
                .with_context(|| format!("writing to {}", dir.display()))?;
            bar.inc(page.events.len() as u64);
            bar.set_message(format!("position {}", format_position(&page.position)));
            after = page.position;
        }
        let summary = x
            .finish()
            .with_context(|| format!("completing the export in {}", dir.display()))?;
        bar.finish_and_clear();
        if ctx.json {
            output::json(&json!({
                "dir": dir,
                "events": summary.events,
                "files": summary.files,
                "bytes": summary.bytes,
                "removed": summary.removed,
                "from": format_position(&start),
                "position": format_position(&after),
            }));
        } else {
            if summary.removed > 0 {
                println!(
                    "removed {} leftover file(s) of an interrupted run",
                    summary.removed
                );
            }
            println!(
                "exported {} event{} in {} file{} ({} bytes) to {}",
                summary.events,
                if summary.events == 1 { "" } else { "s" },
                summary.files,
                if summary.files == 1 { "" } else { "s" },
                summary.bytes,
                dir.display()
            );
            println!(
                "position {} (the next run into this directory starts there)",
                describe(&after)
            );
        }
        Ok(())
    })
}

/// A position for people: `SHARD:SEQ,...`, or `start` when nothing was ever exported.
fn describe(p: &Position) -> String {
    if p.0.is_empty() {
        "start".into()
    } else {
        format_position(p)
    }
}
