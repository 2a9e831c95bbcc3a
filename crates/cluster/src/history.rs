//! [`RaftLogSource`]: a replica's Raft log and snapshots as a [`HistorySource`], so that a
//! replicated node regenerates history (states as of a past point, events older than the
//! server's index) exactly as a single node does, with the same [`ShardHistory`].
//!
//! A group directory (see `tradelog_raft`'s log store) holds the Raft log, whose record
//! `i + 1` is Raft index `i`, each a whole entry: a [`Batch`](tradelog_raft::Batch) of
//! engine inputs, a membership or blank. History is indexed by the engine's count of inputs
//! applied, so the source maps input indexes to log records:
//!
//! * **Anchor.** Record 1 (input count 0) for a replica that holds its whole log, archive
//!   included. A replica that installed a snapshot from its leader restarted its log
//!   after it, with a gap before ([`LogReader::run_start`]); the records before the gap
//!   (possibly entries that were never committed) are not used, and the anchor
//!   is the oldest snapshot from the restart on (its state and the record after its last
//!   entry). States before the anchor, and times before its shard clock, are
//!   [`HistoryError::Missing`], as on a single node whose log does not start at 1.
//! * **Known points** `(inputs before record, record)`: the anchor, every snapshot (its
//!   inputs applied and the record after its last log id) and a mark every
//!   [`INPUT_MARK_EVERY_RECORDS`] records or inputs learnt while reading. A read of input
//!   `i` starts at the nearest known point at or before `i` and decodes entries forward.
//!
//! The source reads only records of inputs up to the index it is asked for, which the
//! caller has from the live replica ([`GroupHandle::read_local`](tradelog_raft::GroupHandle)
//! on the node's own replica): applied, so committed, flushed to this replica's log and
//! never truncated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tradelog_domain::ShardId;
use tradelog_engine::{Engine, Input, Placement};
use tradelog_node::{
    shard_dir, HistoryError, HistoryLimits, HistorySource, NodeHistory, ShardHistory,
};
use tradelog_raft::{
    decode_entry, decode_snapshot, read_split_start, EntryPayload, LOG_DIR, SNAPSHOTS_DIR,
};
use tradelog_storage::LogReader;

/// A known point is kept every this many log records or inputs read, whichever comes
/// first, so a read decodes at most about this many entries before the input it wants.
pub const INPUT_MARK_EVERY_RECORDS: u64 = 1_024;
/// Log records read from the files per step.
const READ_CHUNK_RECORDS: usize = 256;
/// Longest a read waits for an applied record to reach this replica's log file (ms). A
/// leader may apply an entry that a majority of *other* replicas made durable before its
/// own append has run; the record is in the file moments later.
pub const APPLIED_RECORD_WAIT_MS: u64 = 2_000;

/// What a snapshot file holds, learnt once per file.
#[derive(Clone, Copy, Debug)]
struct SnapInfo {
    /// Inputs applied in the snapshot's state.
    inputs: u64,
    /// The log record after the snapshot's last entry.
    next_record: u64,
}

/// The input-to-record map (see the module documentation).
#[derive(Default)]
struct InputMap {
    /// The chain start the map was built for (None: not built yet).
    chain: Option<u64>,
    /// Inputs applied before the anchor record (the anchor's state).
    anchor_inputs: u64,
    /// Known points: inputs applied before a record -> that record.
    points: BTreeMap<u64, u64>,
    /// Where the last read stopped (inputs before, record): the next read usually
    /// continues there.
    hint: Option<(u64, u64)>,
}

/// A replica's Raft log and snapshots in its group directory, as a [`HistorySource`] (see
/// the module documentation).
pub struct RaftLogSource {
    dir: PathBuf,
    shard: ShardId,
    log: LogReader,
    /// Records the live replica applied ([`ShardStateMachine::applied_records`]): never
    /// read past.
    ///
    /// [`ShardStateMachine::applied_records`]: tradelog_raft::ShardStateMachine::applied_records
    applied_records: Arc<AtomicU64>,
    map: Mutex<InputMap>,
    /// Snapshot files seen, by file name.
    snaps: Mutex<BTreeMap<String, Option<SnapInfo>>>,
    /// The state a split's child started from ([`SPLIT_START_FILE`](tradelog_raft::SPLIT_START_FILE)), read once: outer
    /// `None` until read, inner `None` for a shard without one.
    start: Mutex<Option<Option<Engine>>>,
}

impl std::fmt::Debug for RaftLogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLogSource")
            .field("dir", &self.dir)
            .field("shard", &self.shard)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bad(record: u64, reason: String) -> HistoryError {
    HistoryError::BadRecord {
        index: record,
        reason: format!("{reason} (a record of the Raft log)"),
    }
}

impl RaftLogSource {
    /// Opens the source of shard `shard` whose group directory is `dir`, read only (the
    /// replica may be running). `applied_records` is the replica's
    /// [`ShardStateMachine::applied_records`](tradelog_raft::ShardStateMachine::applied_records):
    /// no record after it is read.
    pub fn open(
        dir: impl AsRef<Path>,
        shard: ShardId,
        applied_records: Arc<AtomicU64>,
    ) -> Result<RaftLogSource, HistoryError> {
        let dir = dir.as_ref().to_path_buf();
        let log = LogReader::open(dir.join(LOG_DIR))?;
        Ok(RaftLogSource {
            dir,
            shard,
            log,
            applied_records,
            map: Mutex::new(InputMap::default()),
            snaps: Mutex::new(BTreeMap::new()),
            start: Mutex::new(None),
        })
    }

    /// Reads and decodes records `from..=upto` (at most `max`): each record's inputs (none
    /// for a blank or membership entry).
    fn entries(
        &self,
        from: u64,
        upto: u64,
        max: usize,
    ) -> Result<Vec<(u64, Vec<Input>)>, HistoryError> {
        // Only records applied are asked for (`upto` is at most `applied_records`), but
        // one may not be in the file yet: wait for it, a little at a time.
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(APPLIED_RECORD_WAIT_MS);
        let mut pause = std::time::Duration::from_millis(1);
        let records = loop {
            match self.log.read(from, upto, max) {
                Err(tradelog_storage::StorageError::OutOfRange { index, first, last })
                    if index >= first && index > last && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(50));
                }
                r => break r?,
            }
        };
        records
            .iter()
            .map(|r| {
                let entry = decode_entry(&r.payload).map_err(|e| bad(r.index, e))?;
                if entry.log_id.index + 1 != r.index {
                    return Err(bad(
                        r.index,
                        format!("holds the entry of Raft index {}", entry.log_id.index),
                    ));
                }
                let inputs = match entry.payload {
                    EntryPayload::Normal(batch) => batch.inputs,
                    EntryPayload::Blank | EntryPayload::Membership(_) => Vec::new(),
                };
                Ok((r.index, inputs))
            })
            .collect()
    }

    /// The snapshot files present, with what each holds (`None`: unreadable), oldest
    /// entry first.
    fn snapshot_files(&self) -> Result<Vec<(PathBuf, SnapInfo)>, HistoryError> {
        let d = self.dir.join(SNAPSHOTS_DIR);
        let listing = |e: std::io::Error| HistoryError::BadRecord {
            index: 0,
            reason: format!("listing snapshots in {}: {e}", d.display()),
        };
        let mut names = Vec::new();
        match std::fs::read_dir(&d) {
            Ok(entries) => {
                for e in entries {
                    let name = e.map_err(listing)?.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if name.starts_with("raft-snapshot-") && name.ends_with(".bin") {
                        names.push(name.to_string());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(listing(e)),
        }
        names.sort();
        let mut out = Vec::new();
        let mut snaps = lock(&self.snaps);
        snaps.retain(|n, _| names.binary_search(n).is_ok());
        for name in names {
            let path = d.join(&name);
            let info = match snaps.get(&name) {
                Some(i) => *i,
                None => {
                    let i = self.read_snapshot(&path).map(|(info, _)| info);
                    snaps.insert(name, i);
                    i
                }
            };
            if let Some(info) = info {
                out.push((path, info));
            }
        }
        out.sort_by_key(|(_, i)| i.next_record);
        Ok(out)
    }

    fn read_snapshot(&self, path: &Path) -> Option<(SnapInfo, Engine)> {
        let bytes = std::fs::read(path).ok()?;
        let (meta, engine) = decode_snapshot(&bytes, self.shard, None).ok()?;
        let next_index = meta.last_log_id.map_or(0, |l| l.index + 1);
        let info = SnapInfo {
            inputs: engine.inputs_applied(),
            next_record: next_index + 1,
        };
        Some((info, engine))
    }

    /// The map, (re)built when the anchor moved (see the module documentation), with
    /// every snapshot present as a known point.
    fn map(&self) -> Result<MutexGuard<'_, InputMap>, HistoryError> {
        let chain = self.log.run_start()?.unwrap_or(1);
        let snaps = self.snapshot_files()?;
        let (anchor_inputs, anchor_record) = if chain == 1 {
            (0, 1)
        } else {
            // The log restarted after a snapshot: the oldest snapshot from there on.
            let s = snaps
                .iter()
                .map(|(_, s)| *s)
                .find(|s| s.next_record >= chain)
                .ok_or_else(|| HistoryError::BadRecord {
                    index: chain,
                    reason: format!(
                        "the Raft log of shard {} restarts at record {chain} and no snapshot \
                         from there on is readable",
                        self.shard
                    ),
                })?;
            (s.inputs, s.next_record)
        };
        let mut map = lock(&self.map);
        if map.chain != Some(chain) || map.anchor_inputs != anchor_inputs {
            *map = InputMap {
                chain: Some(chain),
                anchor_inputs,
                points: BTreeMap::from([(anchor_inputs, anchor_record)]),
                hint: None,
            };
        }
        for (_, s) in snaps {
            if s.inputs >= anchor_inputs && s.next_record >= anchor_record {
                map.points.entry(s.inputs).or_insert(s.next_record);
            }
        }
        Ok(map)
    }
}

impl HistorySource for RaftLogSource {
    fn first_input(&self, _applied: u64) -> Result<u64, HistoryError> {
        Ok(self.map()?.anchor_inputs + 1)
    }

    fn read(&self, from: u64, upto: u64, max: usize) -> Result<Vec<(u64, Input)>, HistoryError> {
        let mut out = Vec::new();
        if from > upto || max == 0 {
            return Ok(out);
        }
        let end = upto.min(from.saturating_add(max as u64 - 1));
        let map = self.map()?;
        if from <= map.anchor_inputs {
            return Err(HistoryError::Missing {
                shard: self.shard,
                first: map.anchor_inputs + 1,
            });
        }
        // The nearest known point: `before` inputs precede record `record`.
        let (mut before, mut record) = map
            .points
            .range(..from)
            .next_back()
            .map(|(i, r)| (*i, *r))
            .expect("the anchor is a point at or before every readable input");
        if let Some((i, r)) = map.hint {
            if i < from && i > before {
                (before, record) = (i, r);
            }
        }
        drop(map);
        let (mut mark_inputs, mut mark_record) = (before, record);
        let mut learnt = Vec::new();
        let last = self.applied_records.load(Ordering::Acquire);
        while before < end {
            if record > last {
                return Err(bad(
                    record,
                    format!("input {} is not in the {last} records applied", before + 1),
                ));
            }
            let chunk = self.entries(record, last, READ_CHUNK_RECORDS)?;
            for (r, inputs) in chunk {
                if before - mark_inputs >= INPUT_MARK_EVERY_RECORDS
                    || r - mark_record >= INPUT_MARK_EVERY_RECORDS
                {
                    learnt.push((before, r));
                    (mark_inputs, mark_record) = (before, r);
                }
                let first = before + 1;
                before += inputs.len() as u64;
                record = r + 1;
                for (k, input) in inputs.into_iter().enumerate() {
                    let index = first + k as u64;
                    if index >= from && index <= end {
                        out.push((index, input));
                    }
                }
                if before >= end {
                    break;
                }
            }
        }
        let mut map = lock(&self.map);
        for (i, r) in learnt {
            map.points.entry(i).or_insert(r);
        }
        if before >= map.anchor_inputs {
            map.hint = Some((before, record));
        }
        Ok(out)
    }

    fn snapshots(&self) -> Result<Vec<u64>, HistoryError> {
        let map = self.map()?;
        let anchor = map.anchor_inputs;
        let chain = map.chain.unwrap_or(1);
        drop(map);
        let mut v: Vec<u64> = self
            .snapshot_files()?
            .into_iter()
            .filter(|(_, s)| s.next_record >= chain && s.inputs >= anchor)
            .map(|(_, s)| s.inputs)
            .collect();
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }

    fn restore(&self, index: u64) -> Option<Engine> {
        let files = self.snapshot_files().ok()?;
        // The newest file with that many inputs (several may differ only in blank or
        // membership entries after the last batch).
        let (path, _) = files.into_iter().rev().find(|(_, s)| s.inputs == index)?;
        let (_, engine) = self.read_snapshot(&path)?;
        (engine.inputs_applied() == index).then_some(engine)
    }

    /// A split's child whose log starts at record 1 starts from the state its replica of
    /// the parent wrote ([`SPLIT_START_FILE`](tradelog_raft::SPLIT_START_FILE)); a replica whose log restarted after a
    /// snapshot starts from that snapshot instead (its first input is past 1).
    fn initial(&self) -> Result<Option<Engine>, HistoryError> {
        let mut start = lock(&self.start);
        if start.is_none() {
            let read =
                read_split_start(&self.dir, self.shard).map_err(|e| HistoryError::BadRecord {
                    index: 0,
                    reason: format!("the start of split shard {}: {e}", self.shard),
                })?;
            *start = Some(read.map(|(_, engine)| engine));
        }
        Ok(start.clone().flatten())
    }
}

/// Opens the history of every shard of a replicated node whose data directory is
/// `data_dir` (each shard's group directory `DATA_DIR/shard-{n}`, read with a
/// [`RaftLogSource`]); `applied_records[s]` is shard `s`'s replica's applied record counter,
/// `None` for a shard the node holds no replica of (or keeps no history of). The replicas
/// must have been opened (their directories exist); they may be running. `base_shards`:
/// the shards the cluster was formed with (the placement their logs replay with; a
/// split's child replays from the state its parent gave it, which has its own).
pub fn open_history(
    data_dir: &Path,
    applied_records: &[Option<Arc<AtomicU64>>],
    base_shards: u32,
    limits: HistoryLimits,
) -> Result<NodeHistory, HistoryError> {
    let placement = Placement::new(base_shards);
    let shards = applied_records
        .iter()
        .enumerate()
        .map(|(s, applied)| {
            let Some(applied) = applied else {
                return Ok(None);
            };
            let shard = ShardId(s as u32);
            let source = RaftLogSource::open(shard_dir(data_dir, shard), shard, applied.clone())?;
            Ok(Some(ShardHistory::with_source(
                Box::new(source),
                shard,
                placement.clone(),
                limits.clone(),
            )))
        })
        .collect::<Result<_, HistoryError>>()?;
    Ok(NodeHistory::from_shards(shards))
}
