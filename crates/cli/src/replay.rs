//! `tradelog replay DATA_DIR`: rebuild every shard of a stopped node offline, read only,
//! from its log (and optionally a snapshot), and print the regenerated events and each
//! shard's state hash.

use crate::output::{self, Table};
use crate::remote::Global;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::PathBuf;
use tradelog_domain::ShardId;
use tradelog_engine::Placement;
use tradelog_node::{ReplayOptions, ReplayReport};

/// Options of `tradelog replay`.
#[derive(clap::Args)]
#[command(
    after_help = "Read only and offline: it holds a reader's lock on each shard's \
    log, so it refuses the directory of a running node (stop it first, or replay a copy) \
    and a node cannot start on the directory while it runs. A torn tail (an interrupted \
    last write) is not replayed and is reported.\n\n\
    The state hash is the SHA-256 of the shard's canonical state: equal hashes, identical \
    state. `tradelog verify` checks every snapshot and the hash chain as well.\n\n\
    Examples:\n  tradelog replay ./tradelog-data\n  \
    tradelog replay ./tradelog-data --events --shard 1\n  \
    tradelog replay ./tradelog-data --to 120 --from-snapshot\n  \
    tradelog replay ./tradelog-data --events --json   # events as JSON lines, then the summary"
)]
pub struct Args {
    /// The node's data directory (it holds `shard-0`, `shard-1`, ...).
    data_dir: PathBuf,
    /// Stop after this log index of each shard (default: the end of its log).
    #[arg(long)]
    to: Option<u64>,
    /// Only this shard.
    #[arg(long)]
    shard: Option<u32>,
    /// Print every regenerated event (default: only the summary).
    #[arg(long)]
    events: bool,
    /// Start from the newest snapshot at or below --to instead of the first record
    /// (faster; only the events after the snapshot are regenerated).
    #[arg(long)]
    from_snapshot: bool,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let ids = crate::verify::shard_ids(&a.data_dir)?;
    let placement = Placement::new(ids.len() as u32);
    let shards: Vec<u32> = match a.shard {
        Some(s) if !ids.contains(&s) => bail!(
            "shard {s} is not in {} (it has shards 0..{})",
            a.data_dir.display(),
            ids.len() - 1
        ),
        Some(s) => vec![s],
        None => ids,
    };
    let options = ReplayOptions {
        to: a.to,
        from_snapshot: a.from_snapshot,
    };
    let mut reports = Vec::new();
    for s in shards {
        let dir = a.data_dir.join(format!("shard-{s}"));
        let r =
            tradelog_node::replay_shard_dir(&dir, ShardId(s), placement.clone(), &options, |e| {
                if !a.events {
                    return;
                }
                if g.json {
                    output::json_line(e);
                } else {
                    println!("{}", output::event_line(e));
                }
            })
            .with_context(|| {
                format!(
                    "replaying shard {s} of {} (replay reads a stopped node's data: is a node \
                 running on it?)",
                    a.data_dir.display()
                )
            })?;
        reports.push(r);
    }
    if g.json {
        let shards: Vec<_> = reports.iter().map(summary_json).collect();
        let doc = json!({ "shards": shards });
        if a.events {
            output::json_line(&doc);
        } else {
            output::json(&doc);
        }
        return Ok(());
    }
    let mut t = Table::new(&[
        "SHARD",
        "FROM",
        "TO",
        "LOG END",
        "RECORDS",
        "EVENTS",
        "SNAPSHOTS CHECKED",
        "STATE HASH",
    ]);
    for r in &reports {
        t.row(vec![
            r.shard.to_string(),
            if r.snapshot_index == 0 {
                "start".into()
            } else {
                format!("snapshot@{}", r.snapshot_index)
            },
            r.last_index.to_string(),
            r.log_last_index.to_string(),
            r.records.to_string(),
            r.events.to_string(),
            r.snapshots_checked.to_string(),
            tradelog_codec::hex(&r.state_hash),
        ]);
    }
    t.print();
    for r in reports.iter().filter(|r| r.torn_tail_bytes > 0) {
        println!(
            "shard {}: {} bytes after record {} are unreadable (a torn tail); not replayed",
            r.shard, r.torn_tail_bytes, r.log_last_index
        );
    }
    Ok(())
}

fn summary_json(r: &ReplayReport) -> serde_json::Value {
    json!({
        "shard": r.shard,
        "snapshot_index": r.snapshot_index,
        "last_index": r.last_index,
        "log_last_index": r.log_last_index,
        "records": r.records,
        "events": r.events,
        "snapshots_checked": r.snapshots_checked,
        "state_hash": tradelog_codec::hex(&r.state_hash),
        "torn_tail_bytes": r.torn_tail_bytes,
    })
}
