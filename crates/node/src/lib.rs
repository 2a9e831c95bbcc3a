//! A durable shard: the engine's inputs in a [`LogStore`] on disk, applied only once they
//! are durable, with snapshots written in the background and recovery from the latest
//! snapshot plus the log after it.
//!
//! Owns: the order "append, fsync (group commit), apply, acknowledge"; the snapshot files
//! (`DIR/snapshots/snapshot-{index:020}.bin`, taken from the snapshotter's copy of the
//! state so the shard never pauses for them, written to a temporary file, fsynced, renamed,
//! directory fsynced); recovery (latest readable snapshot, then replay of the log after it,
//! checking that the state hash recorded with each snapshot is reproduced); offline,
//! read-only verification ([`verify_shard_dir`]) and replay ([`replay_shard_dir`]) of a
//! stopped shard's directory; reading the past back while the shard runs ([`history`]:
//! state as of a log index or a leader time, regenerated events).
//!
//! Must never depend on: the network, Raft, async runtimes. The replication layer will put
//! Raft between `submit` and the log; the server calls `submit`.

#![forbid(unsafe_code)]

pub mod history;
pub mod host;
pub mod metrics;
mod replay;
pub mod runtime;
mod snapshots;
mod snapshotter;
mod watermark;

/// Writes `bytes` to `dir/name` so that a crash leaves either the whole new file or the
/// old one ([`tradelog_storage::write_atomically`]), errors as [`NodeError::SnapshotIo`].
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, NodeError> {
    tradelog_storage::write_atomically(dir, name, bytes).map_err(|source| NodeError::SnapshotIo {
        path: dir.join(name),
        source,
    })
}

pub use history::{
    EventReader, HistoryError, HistoryLimits, HistorySource, LogSource, NodeHistory, ScanEnd,
    ShardHistory,
};
pub use host::{catalog_replies, EngineRead, Markets, ShardHost};
pub use replay::{replay_shard_dir, ReplayOptions, ReplayReport};
pub use runtime::{
    check_shard_count, shard_dir, CommandReply, Node, NodeConfig, Reply, SubmitError, SHARDS_FILE,
};
pub use snapshots::{
    read as read_snapshot_file, write as write_snapshot_file, SnapshotFile, SnapshotMeta,
    SNAPSHOTS_DIR,
};
pub use snapshotter::{Stalls as SnapshotterStalls, SNAPSHOTTER_LAG_INPUTS_MAX};

use std::path::{Path, PathBuf};
use tradelog_domain::{EventRecord, ShardId};
use tradelog_engine::{Applied, Engine, Input, Placement};
use tradelog_storage::{FileLog, FileLogConfig, LogStore, RecoveryReport, StorageError};

/// Largest number of inputs in one [`DurableShard::submit`] call (one group commit).
pub const SUBMIT_INPUTS_MAX: usize = 8_192;
/// Records read per step while replaying the log on open.
const REPLAY_CHUNK_LEN: usize = 4_096;

/// Why a shard could not be opened or could not accept inputs.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The log failed (I/O, corruption: see the inner error).
    #[error("command log: {0}")]
    Storage(#[from] StorageError),
    /// A snapshot file could not be written.
    #[error("snapshot {path}: {source}")]
    SnapshotIo {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A log record is not a valid input (the log was written by something else).
    #[error("log record {index} is not a valid input: {reason}")]
    BadRecord {
        /// Its index.
        index: u64,
        /// Why.
        reason: String,
    },
    /// Replaying the log did not reproduce the state hash recorded with a snapshot.
    #[error("replay diverged at index {index}: snapshot says {expected}, replay gives {actual}")]
    Diverged {
        /// Log index of the snapshot.
        index: u64,
        /// Hash recorded in the snapshot file.
        expected: String,
        /// Hash replay produced.
        actual: String,
    },
    /// A snapshot claims a log index the log does not reach (the log lost its tail).
    #[error("snapshot at index {index} is beyond the end of the log ({last})")]
    SnapshotBeyondLog {
        /// The snapshot's index.
        index: u64,
        /// The log's last valid index.
        last: u64,
    },
    /// The log's valid records end below the durable watermark: records that were on
    /// disk (and acknowledged) are damaged or missing. Nothing was changed.
    #[error(
        "acknowledged records lost: the log's valid records end at {last_valid} but {watermark} \
         were durable{}",
        .damage.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    AcknowledgedLoss {
        /// The durable watermark.
        watermark: u64,
        /// The last valid record.
        last_valid: u64,
        /// Where the damage starts, if the log shows it.
        damage: Option<String>,
    },
    /// Too many inputs in one call.
    #[error("{0} inputs in one submit (at most {SUBMIT_INPUTS_MAX})")]
    TooManyInputs(usize),
    /// The data directory was created with another number of shards. Accounts and markets
    /// are placed by shard count, so replaying its logs under another count would give
    /// another state: the count is fixed when the directory is created.
    #[error(
        "{dir} holds a node of {on_disk} shard(s) but {configured} were asked for: start it \
         with {on_disk} shard(s), or use a new data directory"
    )]
    ShardCountMismatch {
        /// The data directory.
        dir: PathBuf,
        /// Shards the directory was created with.
        on_disk: u32,
        /// Shards asked for.
        configured: u32,
    },
}

/// Settings of one durable shard.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// Directory of this shard (log segments, archive, snapshots).
    pub dir: PathBuf,
    /// Which shard.
    pub shard: ShardId,
    /// The cluster's placement.
    pub placement: Placement,
    /// Take a snapshot after this many log records since the last one (0 = never).
    pub snapshot_every_records: u64,
    /// And no sooner than this many milliseconds after the last one began (0: as soon as
    /// the records say). Under a heavy load the records threshold alone would keep a
    /// snapshot being built and written all the time (see [`SNAPSHOT_INTERVAL_MIN_MS`]).
    pub snapshot_interval_min_ms: u64,
    /// Log file settings.
    pub log: FileLogConfig,
    /// Write the durable watermark (the highest index known to be on disk) at most this
    /// often, in milliseconds (0 = after every group commit). See [`WATERMARK_FILE`].
    pub watermark_every_ms: u64,
}

/// Default for [`ShardConfig::snapshot_interval_min_ms`]: at most one snapshot every 10 s.
/// At 300 k transfers/s a snapshot every 100,000 records meant one every third of a
/// second, and building and writing them took about 40% of a 2-core machine's CPU
/// (docs/design/0004); a restart now replays at most about this long of load after the
/// newest snapshot.
pub const SNAPSHOT_INTERVAL_MIN_MS: u64 = 10_000;

/// Default for [`ShardConfig::watermark_every_ms`].
pub const WATERMARK_EVERY_MS: u64 = 100;

/// File in a shard directory holding the durable watermark: an index every record up to
/// which was on disk when the file was written. On open, a log whose valid records end
/// below it lost acknowledged records (damage, not an interrupted write): the shard
/// refuses to open instead of cutting them as a torn tail.
pub const WATERMARK_FILE: &str = "durable-index";

/// What opening a shard found.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// The log's own recovery (torn tail cut, segments).
    pub log: RecoveryReport,
    /// Log index of the snapshot the state was loaded from (0 = none).
    pub snapshot_index: u64,
    /// Snapshots that could not be read and were skipped (newest first).
    pub skipped_snapshots: Vec<(PathBuf, String)>,
    /// Log records replayed after the snapshot.
    pub replayed: u64,
}

/// One shard whose every acknowledged input is on disk.
pub struct DurableShard {
    config: ShardConfig,
    engine: Engine,
    log: FileLog,
    /// Log index of the last input applied to `engine`.
    applied: u64,
    last_snapshot: u64,
    /// When the last snapshot began (none since the shard opened: `None`).
    last_snapshot_at: Option<std::time::Instant>,
    /// Keeps the copy of the state snapshots are taken from (started with the first
    /// snapshot, or at open when snapshots are periodic).
    snapshotter: Option<snapshotter::Snapshotter>,
    metrics: metrics::ShardMetrics,
    watermark_at: Option<std::time::Instant>,
    /// The slowest group since the shard opened.
    slowest_group: GroupTiming,
}

/// Where the time of one group (one [`DurableShard::submit`]) went, in microseconds: to
/// tell a slow `fdatasync` from a slow apply, a segment rotation or a wait for the
/// snapshotter when a request took long.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupTiming {
    /// Inputs in the group.
    pub inputs: u64,
    /// Encoding the inputs and appending them to the log (a segment rotation included).
    pub append_us: u64,
    /// Making them durable (`fdatasync`).
    pub sync_us: u64,
    /// Applying them to the engine.
    pub apply_us: u64,
    /// Handing them to the snapshotter (a wait for it included).
    pub handoff_us: u64,
    /// The rest: the durability watermark and starting a snapshot.
    pub after_us: u64,
}

impl GroupTiming {
    /// The whole group.
    pub fn total_us(&self) -> u64 {
        self.append_us + self.sync_us + self.apply_us + self.handoff_us + self.after_us
    }
}

impl DurableShard {
    /// Opens (or creates) the shard in `config.dir`: recovers the log, loads the newest
    /// readable snapshot and replays the log after it.
    pub fn open(config: ShardConfig) -> Result<(DurableShard, OpenReport), NodeError> {
        let log_dir = config.dir.join("log");
        // Before the log cuts a torn tail, make sure the tail holds no record that was
        // already durable: that would be damage, and cutting it would lose acknowledged
        // writes.
        if let Some(watermark) = watermark::read(&config.dir)? {
            let report = tradelog_storage::verify_dir(&log_dir)?;
            if report.last_index < watermark {
                return Err(NodeError::AcknowledgedLoss {
                    watermark,
                    last_valid: report.last_index,
                    damage: report.torn_tail.map(|t| {
                        format!("{} at byte {} of {}", t.reason, t.offset, t.file.display())
                    }),
                });
            }
        }
        let log = FileLog::open(&log_dir, config.log.clone())?;
        // Everything the log recovered is synced by `FileLog::open`: raise the watermark to
        // it now, so damage to any of it is told apart from an interrupted write on the next
        // start (a crash can leave records newer than the last periodic watermark).
        watermark::write(&config.dir, log.last_index())?;
        let mut report = OpenReport {
            log: log.recovery().clone(),
            ..OpenReport::default()
        };
        let snaps = snapshots::list(&config.dir).map_err(|source| NodeError::SnapshotIo {
            path: config.dir.join(SNAPSHOTS_DIR),
            source,
        })?;
        let mut engine = None;
        for (index, path) in snaps.into_iter().rev() {
            if index > log.last_index() {
                report
                    .skipped_snapshots
                    .push((path, "beyond the end of the log".into()));
                continue;
            }
            match snapshots::read(&path) {
                Ok(file) if file.meta.shard == config.shard && file.meta.index == index => {
                    match Engine::restore(&file.engine) {
                        Ok(e) => {
                            report.snapshot_index = index;
                            engine = Some(e);
                            break;
                        }
                        Err(err) => report.skipped_snapshots.push((path, err.to_string())),
                    }
                }
                Ok(_) => report
                    .skipped_snapshots
                    .push((path, "belongs to another shard or index".into())),
                Err(err) => report.skipped_snapshots.push((path, err)),
            }
        }
        let engine = engine.unwrap_or_else(|| Engine::new(config.shard, config.placement.clone()));
        let metrics = metrics::ShardMetrics::new(config.shard);
        let mut shard = DurableShard {
            metrics,
            applied: report.snapshot_index,
            last_snapshot: report.snapshot_index,
            last_snapshot_at: None,
            config,
            engine,
            log,
            snapshotter: None,
            watermark_at: None,
            slowest_group: GroupTiming::default(),
        };
        if shard.applied + 1 < shard.log.first_index() {
            // The records after the snapshot were archived: replay from an older snapshot
            // or the archive is needed; refuse rather than skip history.
            return Err(NodeError::BadRecord {
                index: shard.applied + 1,
                reason: "archived; no snapshot covers it".into(),
            });
        }
        report.replayed = shard.replay()?;
        if shard.config.snapshot_every_records > 0 {
            // The one copy of the state the snapshotter starts from, made before the shard
            // serves anything.
            shard.start_snapshotter();
        }
        Ok((shard, report))
    }

    fn replay(&mut self) -> Result<u64, NodeError> {
        let mut replayed = 0;
        let mut out = Vec::new();
        while self.applied < self.log.last_index() {
            let records = self.log.read(self.applied + 1, REPLAY_CHUNK_LEN)?;
            for r in records {
                let input: Input =
                    tradelog_codec::decode(&r.payload).map_err(|e| NodeError::BadRecord {
                        index: r.index,
                        reason: e.to_string(),
                    })?;
                self.engine.apply(&input, &mut out);
                out.clear();
                self.applied = r.index;
                replayed += 1;
            }
        }
        Ok(replayed)
    }

    /// The state machine (read-only).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The command log (read-only).
    pub fn log(&self) -> &FileLog {
        &self.log
    }

    /// Log index of the last applied (and durable) input.
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Appends `inputs` to the log, makes them durable with one fsync, applies them and
    /// returns one result per input plus the events, in order. Nothing is applied (and so
    /// nothing can be acknowledged) unless the whole group is on disk.
    pub fn submit(
        &mut self,
        inputs: &[Input],
        events: &mut Vec<EventRecord>,
    ) -> Result<Vec<Applied>, NodeError> {
        if inputs.len() > SUBMIT_INPUTS_MAX {
            return Err(NodeError::TooManyInputs(inputs.len()));
        }
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let us = |t: std::time::Instant| t.elapsed().as_micros() as u64;
        let mut timing = GroupTiming {
            inputs: inputs.len() as u64,
            ..GroupTiming::default()
        };
        let t = std::time::Instant::now();
        let encoded: Vec<Vec<u8>> = inputs.iter().map(tradelog_codec::encode).collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|v| v.as_slice()).collect();
        let range = self.log.append(&refs)?;
        drop(refs);
        timing.append_us = us(t);
        let t = std::time::Instant::now();
        self.log.sync()?;
        self.metrics.fsync_seconds.record(t.elapsed().as_secs_f64());
        timing.sync_us = us(t);
        assert_eq!(
            range.start,
            self.applied + 1,
            "log and state machine out of step"
        );
        let mut results = Vec::with_capacity(inputs.len());
        let t = std::time::Instant::now();
        self.engine.apply_batch(inputs, events, &mut results);
        self.metrics.apply_seconds.record(t.elapsed().as_secs_f64());
        timing.apply_us = us(t);
        let t = std::time::Instant::now();
        self.metrics.group_inputs.record(inputs.len() as f64);
        self.metrics.inputs.increment(inputs.len() as u64);
        self.applied = range.end - 1;
        self.metrics.applied_index.set(self.applied as f64);
        if let Some(s) = &mut self.snapshotter {
            let before = s.stalls().total_us;
            s.push(range.start, encoded);
            let waited_us = s.stalls().total_us - before;
            if waited_us > 0 {
                self.metrics.stall_us.increment(waited_us);
            }
        }
        timing.handoff_us = us(t);
        let t = std::time::Instant::now();
        let due = self
            .watermark_at
            .is_none_or(|at| at.elapsed().as_millis() as u64 >= self.config.watermark_every_ms);
        if due {
            watermark::write(&self.config.dir, self.applied)?;
            self.watermark_at = Some(std::time::Instant::now());
        }
        self.maybe_snapshot()?;
        timing.after_us = us(t);
        if timing.total_us() > self.slowest_group.total_us() {
            self.slowest_group = timing;
        }
        Ok(results)
    }

    /// The slowest group since the shard opened, and where its time went.
    pub fn slowest_group(&self) -> GroupTiming {
        self.slowest_group
    }

    /// Starts a background snapshot if enough records were applied since the last one and
    /// none is being written. The shard keeps serving while it is written.
    fn maybe_snapshot(&mut self) -> Result<(), NodeError> {
        let busy = self.snapshotter.as_ref().is_some_and(|s| s.busy());
        if !busy {
            // Surface the result (an I/O error) of a finished snapshot, if any.
            self.wait_for_snapshot()?;
        }
        let every = self.config.snapshot_every_records;
        let interval = std::time::Duration::from_millis(self.config.snapshot_interval_min_ms);
        let too_soon = self
            .last_snapshot_at
            .is_some_and(|t| t.elapsed() < interval);
        if every == 0 || busy || too_soon || self.applied < self.last_snapshot + every {
            return Ok(());
        }
        self.snapshot_in_background()
    }

    fn start_snapshotter(&mut self) -> &mut snapshotter::Snapshotter {
        let (engine, applied) = (&self.engine, self.applied);
        self.snapshotter
            .get_or_insert_with(|| snapshotter::Snapshotter::start(engine.clone(), applied))
    }

    /// Takes a snapshot of the current state in the background (after waiting for one being
    /// written). It is taken from the snapshotter's copy of the state (see
    /// [`SNAPSHOTTER_LAG_INPUTS_MAX`]), so the shard neither copies nor encodes its state
    /// and goes on applying inputs meanwhile. The first call on a shard that does not take
    /// periodic snapshots makes that copy.
    pub fn snapshot_in_background(&mut self) -> Result<(), NodeError> {
        self.wait_for_snapshot()?;
        let meta = SnapshotMeta {
            shard: self.config.shard,
            index: self.applied,
            chain_hash: self.log.chain_hash(self.applied)?,
            state_hash: [0; 32],
        };
        let dir = self.config.dir.clone();
        self.start_snapshotter().request(&dir, meta);
        self.last_snapshot = self.applied;
        self.last_snapshot_at = Some(std::time::Instant::now());
        Ok(())
    }

    /// Waits for a snapshot being written, if any; returns its path.
    pub fn wait_for_snapshot(&mut self) -> Result<Option<PathBuf>, NodeError> {
        let written = match &mut self.snapshotter {
            Some(s) => s.wait_for_snapshot().transpose()?,
            None => None,
        };
        if written.is_some() {
            self.metrics.snapshots.increment(1);
        }
        Ok(written)
    }

    /// Records the depth of the shard's client queue (the node's runtime knows it).
    pub(crate) fn record_queue_depth(&self, depth: usize) {
        self.metrics.queue_depth.set(depth as f64);
    }

    /// How often and how long the shard waited for its snapshotter (zero when snapshots
    /// keep up, which is the normal case; see [`SNAPSHOTTER_LAG_INPUTS_MAX`]).
    pub fn snapshotter_stalls(&self) -> SnapshotterStalls {
        self.snapshotter
            .as_ref()
            .map(|s| s.stalls())
            .unwrap_or_default()
    }

    /// The shard's directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }
}

impl Drop for DurableShard {
    fn drop(&mut self) {
        // Let a snapshot being written finish (its file is complete or absent).
        let _ = self.wait_for_snapshot();
    }
}

/// What [`verify_shard_dir`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardVerifyReport {
    /// Records replayed (the whole history).
    pub records: u64,
    /// Snapshots whose state hash replay reproduced.
    pub snapshots_checked: usize,
    /// Chain hash of the last record (compare with a copy kept elsewhere).
    pub last_chain_hash: [u8; 32],
    /// State hash after replaying everything.
    pub state_hash: [u8; 32],
    /// Bytes of a torn tail at the end of the log (cut the next time the shard opens).
    pub torn_tail_bytes: u64,
}

/// Checks a shard directory offline and read only: the log's framing, checksums and hash
/// chain (archive included), then replays the whole history and checks that it reproduces
/// the state hash recorded in every snapshot. The first problem is returned precisely
/// (file, offset and index for the log; index and both hashes for a snapshot). It is a
/// whole-history [`replay_shard_dir`], so it also refuses the directory of a running node.
pub fn verify_shard_dir(
    dir: &Path,
    shard: ShardId,
    placement: Placement,
) -> Result<ShardVerifyReport, NodeError> {
    let r = replay_shard_dir(dir, shard, placement, &ReplayOptions::default(), |_| {})?;
    Ok(ShardVerifyReport {
        records: r.records,
        snapshots_checked: r.snapshots_checked,
        last_chain_hash: r.log_last_chain_hash,
        state_hash: r.state_hash,
        torn_tail_bytes: r.torn_tail_bytes,
    })
}
