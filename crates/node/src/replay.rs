//! Offline, read-only replay of one shard directory: rebuild the state machine from the
//! log (and optionally a snapshot), regenerate the events and the state hash, up to any
//! log index. `tradelog replay` runs it.
//!
//! Read only and never beside a writer: it holds a reader's lock on the log
//! ([`tradelog_storage::lock_shared`]) for the whole replay, so it refuses the directory of
//! a running node ([`tradelog_storage::StorageError::Locked`]) and a node cannot open the
//! directory while a replay reads it. It changes nothing, not even a torn tail (which is
//! not replayed and is reported).

use crate::{snapshots, NodeError, SNAPSHOTS_DIR};
use std::collections::BTreeMap;
use std::path::Path;
use tradelog_domain::{EventRecord, ShardId};
use tradelog_engine::{Engine, Input, Placement};

/// What to replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Stop after this log index (`None`: the end of the log). An index beyond the end of
    /// the log replays the whole log.
    pub to: Option<u64>,
    /// Start from the newest snapshot at or below `to` (checking that it restores to the
    /// state hash it records) instead of from the first record: faster, but only the
    /// events after the snapshot are regenerated.
    pub from_snapshot: bool,
}

/// What a replay did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayReport {
    /// The shard.
    pub shard: ShardId,
    /// Log index of the snapshot the replay started from (0: from the first record).
    pub snapshot_index: u64,
    /// Log index of the last record applied (equal to `snapshot_index` if none was).
    pub last_index: u64,
    /// Log index of the last valid record in the log.
    pub log_last_index: u64,
    /// Records applied.
    pub records: u64,
    /// Events regenerated (passed to the callback).
    pub events: u64,
    /// Snapshots passed on the way whose recorded state hash the replay reproduced.
    pub snapshots_checked: usize,
    /// The state hash after the last record applied.
    pub state_hash: [u8; 32],
    /// Bytes of a torn tail at the end of the log (not replayed; a node would cut them).
    pub torn_tail_bytes: u64,
    /// Chain hash of the log's last valid record (compare with a copy kept elsewhere).
    pub log_last_chain_hash: [u8; 32],
}

/// Replays the shard in `dir` (the `shard-N` directory of a node) read only, calling
/// `on_event` with every regenerated event in order, and returns the resulting state
/// hash. Every snapshot the replay passes is checked against it
/// ([`NodeError::Diverged`] on a mismatch); an unreadable snapshot file is an error.
pub fn replay_shard_dir(
    dir: &Path,
    shard: ShardId,
    placement: Placement,
    options: &ReplayOptions,
    mut on_event: impl FnMut(&EventRecord),
) -> Result<ReplayReport, NodeError> {
    let log_dir = dir.join("log");
    if !log_dir.is_dir() {
        return Err(NodeError::BadRecord {
            index: 0,
            reason: format!("{} holds no log", dir.display()),
        });
    }
    let _lock = tradelog_storage::lock_shared(&log_dir)?;
    let to = options.to.unwrap_or(u64::MAX);

    let snaps = snapshots::list(dir).map_err(|source| NodeError::SnapshotIo {
        path: dir.join(SNAPSHOTS_DIR),
        source,
    })?;
    let mut expected = BTreeMap::new();
    let mut start = None;
    for (index, path) in &snaps {
        let f = snapshots::read(path).map_err(|reason| NodeError::BadRecord {
            index: *index,
            reason: format!("snapshot {} is unreadable: {reason}", path.display()),
        })?;
        if f.meta.shard != shard || f.meta.index != *index {
            return Err(NodeError::BadRecord {
                index: *index,
                reason: format!(
                    "snapshot {} belongs to another shard or index",
                    path.display()
                ),
            });
        }
        expected.insert(*index, f.meta.state_hash);
        if options.from_snapshot && *index <= to {
            start = Some((*index, f));
        }
    }

    let (mut engine, snapshot_index) = match start {
        Some((index, f)) => {
            let e = Engine::restore(&f.engine).map_err(|err| NodeError::BadRecord {
                index,
                reason: format!("snapshot does not restore: {err}"),
            })?;
            let actual = e.state_hash();
            if actual != f.meta.state_hash {
                return Err(NodeError::Diverged {
                    index,
                    expected: tradelog_codec::hex(&f.meta.state_hash),
                    actual: tradelog_codec::hex(&actual),
                });
            }
            (e, index)
        }
        None => (Engine::new(shard, placement), 0),
    };

    let mut out = Vec::new();
    let mut failure: Option<NodeError> = None;
    let mut last = snapshot_index;
    let mut records = 0;
    let mut events = 0;
    let mut checked = 0;
    let report = tradelog_storage::for_each_record(&log_dir, |r| {
        if r.index <= snapshot_index {
            return true;
        }
        if r.index > to {
            return false;
        }
        if r.index != last + 1 {
            failure = Some(NodeError::BadRecord {
                index: last + 1,
                reason: format!(
                    "not in the log (its history starts at {}); replay from a snapshot at or \
                     after {}",
                    r.index,
                    r.index - 1
                ),
            });
            return false;
        }
        let input: Input = match tradelog_codec::decode(&r.payload) {
            Ok(i) => i,
            Err(e) => {
                failure = Some(NodeError::BadRecord {
                    index: r.index,
                    reason: e.to_string(),
                });
                return false;
            }
        };
        engine.apply(&input, &mut out);
        for e in &out {
            on_event(e);
        }
        events += out.len() as u64;
        out.clear();
        last = r.index;
        records += 1;
        if let Some(h) = expected.get(&r.index) {
            let actual = engine.state_hash();
            if &actual != h {
                failure = Some(NodeError::Diverged {
                    index: r.index,
                    expected: tradelog_codec::hex(h),
                    actual: tradelog_codec::hex(&actual),
                });
                return false;
            }
            checked += 1;
        }
        true
    })?;
    if let Some(f) = failure {
        return Err(f);
    }
    // Replaying the whole log, every snapshot must be within it: one beyond means the log
    // lost records the snapshot had seen.
    if let (None, Some((&index, _))) = (options.to, expected.range(last + 1..).next()) {
        return Err(NodeError::SnapshotBeyondLog { index, last });
    }
    if snapshot_index > report.last_index {
        return Err(NodeError::SnapshotBeyondLog {
            index: snapshot_index,
            last: report.last_index,
        });
    }
    Ok(ReplayReport {
        shard,
        snapshot_index,
        last_index: last,
        log_last_index: report.last_index,
        records,
        events,
        snapshots_checked: checked,
        state_hash: engine.state_hash(),
        torn_tail_bytes: report.torn_tail.map(|t| t.bytes).unwrap_or(0),
        log_last_chain_hash: report.last_chain_hash,
    })
}
