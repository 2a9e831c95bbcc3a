//! `tradelog verify DATA_DIR`: offline check of a node's data directory.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tradelog_domain::ShardId;
use tradelog_engine::Placement;

/// Options of `tradelog verify`.
#[derive(clap::Args)]
#[command(
    long_about = "Checks a stopped node's data directory offline, read only: every log \
        record's checksum and the hash chain, then replays each shard's whole history and \
        checks that it reproduces every snapshot's state hash. Reports the first bad record \
        precisely and exits 1 if anything is wrong.",
    after_help = "Examples:\n  tradelog verify ./tradelog-data"
)]
pub struct Args {
    /// The node's data directory (it holds `shard-0`, `shard-1`, ...). Read only: nothing
    /// is changed, not even a torn tail.
    data_dir: PathBuf,
}

/// The shard numbers of a node's data directory (`shard-0` .. `shard-N`, all present).
pub fn shard_ids(data_dir: &Path) -> Result<Vec<u32>> {
    let mut shards = Vec::new();
    for e in
        std::fs::read_dir(data_dir).with_context(|| format!("reading {}", data_dir.display()))?
    {
        let e = e?;
        let name = e.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_prefix("shard-")) {
            if let Ok(n) = n.parse::<u32>() {
                shards.push(n);
            }
        }
    }
    shards.sort();
    if shards.is_empty() {
        bail!(
            "{} holds no shard directory (shard-0, ...)",
            data_dir.display()
        );
    }
    let count = shards.len() as u32;
    if shards != (0..count).collect::<Vec<_>>() {
        bail!(
            "shard directories are not shard-0..shard-{}: {shards:?}",
            count - 1
        );
    }
    Ok(shards)
}

pub fn run(args: Args) -> Result<()> {
    let shards = shard_ids(&args.data_dir)?;
    let count = shards.len() as u32;
    let placement = Placement::new(count);
    let mut failed = false;
    for s in shards {
        let dir = args.data_dir.join(format!("shard-{s}"));
        match tradelog_node::verify_shard_dir(&dir, ShardId(s), placement.clone()) {
            Ok(r) if r.torn_tail_bytes > 0 => {
                // An interrupted write and a damaged record look the same at the end of the
                // log: either way records after the last good one are unreadable. Say so.
                failed = true;
                println!(
                    "shard {s}: FAILED  {} bytes after record {} are unreadable (an interrupted \
                     write or damage); the shard would cut them when it starts",
                    r.torn_tail_bytes, r.records
                );
            }
            Ok(r) => println!(
                "shard {s}: OK  {} records replayed, {} snapshot(s) reproduced, chain {}, state {}",
                r.records,
                r.snapshots_checked,
                &tradelog_codec::hex(&r.last_chain_hash)[..16],
                &tradelog_codec::hex(&r.state_hash)[..16],
            ),
            Err(e) => {
                failed = true;
                println!("shard {s}: FAILED  {e}");
            }
        }
    }
    if failed {
        bail!("verification failed");
    }
    Ok(())
}
