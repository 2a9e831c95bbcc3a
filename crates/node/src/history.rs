//! History from the log: read-only access to a shard's durable past while the shard runs.
//!
//! The log is the source of truth and the state machine is deterministic, so any past state
//! and any past event can be recomputed: the newest readable snapshot at or below the point
//! wanted, then the log records after it replayed into a scratch [`Engine`]. A
//! [`ShardHistory`] does exactly that, reading the shard's files (no lock, no write: the
//! shard keeps appending meanwhile) and never past the index the caller says the live
//! shard has applied (every applied record is durable).
//!
//! The shard's inputs and snapshots are read through a [`HistorySource`]: [`LogSource`] for
//! the single-node log (record `i` is input `i`); a replicated shard's Raft log, whose
//! entries each hold a batch of inputs, is another (in the cluster crate). Indexes are the
//! engine's count of inputs applied in every source.
//!
//! Three questions are answered:
//!
//! * **State as of a log index** ([`ShardHistory::state_at`]): the state after input
//!   `index`; its state hash is the one the live shard had then.
//! * **Index as of a leader time** ([`ShardHistory::index_at_time`]): the last input whose
//!   *effective* time is at or before `t`. Input timestamps are not monotonic in the log (a
//!   message carries its sender's clock, a command the time the server accepted it, and a
//!   batch takes messages before commands); the engine makes time monotonic by taking the
//!   running maximum, and that running maximum (the shard clock) is what every event is
//!   stamped with. So the index answered is the last one whose shard clock is `<= t`, and
//!   the state there holds exactly the events stamped `<= t`. The clock is indexed once
//!   per process (one mark every [`CLOCK_MARK_EVERY_RECORDS`] records) and searched by
//!   binary search over the marks plus a scan of one block.
//! * **The events after a point** ([`ShardHistory::events_after_index`],
//!   [`ShardHistory::events_after_seq`]): an [`EventReader`] regenerates them by replay, one
//!   at a time, byte-identical to the ones the shard published live.
//!
//! Work is bounded per request by [`HistoryLimits`]; a request that needs more gets a
//! typed [`HistoryError`] instead. Replayed states are kept (at most
//! [`HistoryLimits::cursors_max`] per shard) so that the next request near the same point,
//! such as the next page of an event read, continues from there instead of from a snapshot.

use crate::runtime::{shard_dir, NodeConfig};
use crate::snapshots;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use tradelog_domain::{EventRecord, ShardId, Timestamp};
use tradelog_engine::{Engine, Input, Placement};
use tradelog_storage::{LogReader, StorageError};

/// Where a [`ShardHistory`] reads a shard's past: its inputs by index and its snapshots.
///
/// The single-node log ([`LogSource`]: one log record per input, record `i` is input `i`)
/// is one; a replicated shard's Raft log, whose entries each hold a batch of inputs, is
/// another (`tradelog_cluster::RaftLogSource`). Indexes are the engine's count of inputs
/// applied ([`Engine::inputs_applied`]) in both: the state after input `i` is the state
/// whose `inputs_applied()` is `i`.
///
/// A source is only asked for inputs up to an index the caller got from the live shard
/// (applied there, so durable and never rewritten).
pub trait HistorySource: Send + Sync {
    /// The first input the source can read while the shard has applied `applied` inputs:
    /// 1 when it holds the whole history; otherwise the inputs before it exist only in
    /// snapshots (a log that restarted after a snapshot), and a state before the oldest
    /// usable snapshot is [`HistoryError::Missing`].
    fn first_input(&self, applied: u64) -> Result<u64, HistoryError>;

    /// Inputs `from..=upto` with their indexes, in order, at most `max` of them (fewer
    /// only when `max` is reached). Every index in the range is at or after
    /// [`first_input`](Self::first_input) and applied by the live shard; one before the
    /// first is [`HistoryError::Missing`].
    fn read(&self, from: u64, upto: u64, max: usize) -> Result<Vec<(u64, Input)>, HistoryError>;

    /// The input indexes of the snapshots present, ascending (possibly unreadable ones:
    /// [`restore`](Self::restore) tells).
    fn snapshots(&self) -> Result<Vec<u64>, HistoryError>;

    /// The state of the snapshot at input index `index`, restored and checked (its
    /// `inputs_applied()` is `index`), or `None` when it is unreadable, gone or not this
    /// shard's.
    fn restore(&self, index: u64) -> Option<Engine>;

    /// The state before input 1 when it is not the empty state: a shard a split made
    /// starts from the state its parent gave it. `None` (the default): the empty state.
    fn initial(&self) -> Result<Option<Engine>, HistoryError> {
        Ok(None)
    }
}

/// The history source of a single-node shard directory (the one a
/// [`DurableShard`](crate::DurableShard) writes): its log, read with a [`LogReader`]
/// (archive included), where record `i` is input `i`, and its `snapshots/`.
pub struct LogSource {
    dir: PathBuf,
    shard: ShardId,
    log: LogReader,
}

impl std::fmt::Debug for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSource").field("dir", &self.dir).finish()
    }
}

impl LogSource {
    /// Opens the source of shard `shard` in `dir`, read only (the shard may be running).
    pub fn open(dir: impl AsRef<Path>, shard: ShardId) -> Result<LogSource, HistoryError> {
        let dir = dir.as_ref().to_path_buf();
        let log = LogReader::open(dir.join("log"))?;
        Ok(LogSource { dir, shard, log })
    }
}

impl HistorySource for LogSource {
    fn first_input(&self, _applied: u64) -> Result<u64, HistoryError> {
        Ok(self.log.first_index().unwrap_or(1))
    }

    fn read(&self, from: u64, upto: u64, max: usize) -> Result<Vec<(u64, Input)>, HistoryError> {
        let first = self.log.first_index().unwrap_or(1);
        if from < first {
            return Err(HistoryError::Missing {
                shard: self.shard,
                first,
            });
        }
        self.log
            .read(from, upto, max)?
            .iter()
            .map(|r| Ok((r.index, decode(r)?)))
            .collect()
    }

    fn snapshots(&self) -> Result<Vec<u64>, HistoryError> {
        let list = snapshots::list(&self.dir).map_err(|e| HistoryError::BadRecord {
            index: 0,
            reason: format!("listing snapshots: {e}"),
        })?;
        Ok(list.into_iter().map(|(i, _)| i).collect())
    }

    fn restore(&self, index: u64) -> Option<Engine> {
        let path = snapshots::path(&self.dir, index);
        let file = snapshots::read(&path).ok()?;
        if file.meta.shard != self.shard || file.meta.index != index {
            return None;
        }
        let engine = Engine::restore(&file.engine).ok()?;
        (engine.inputs_applied() == index).then_some(engine)
    }
}

/// Default [`HistoryLimits::replay_records_max`].
pub const REPLAY_RECORDS_MAX: u64 = 1_000_000;
/// Default [`HistoryLimits::clock_scan_records_max`].
pub const CLOCK_SCAN_RECORDS_MAX: u64 = 4_000_000;
/// Default [`HistoryLimits::cursors_max`].
pub const CURSORS_MAX: usize = 2;
/// The clock index keeps the shard clock after every this-many-th record.
pub const CLOCK_MARK_EVERY_RECORDS: u64 = 1_024;
/// Records read from the log per step of a replay.
const REPLAY_CHUNK_RECORDS: usize = 512;
/// A kept state this many records or fewer before a snapshot is replayed forward rather
/// than the snapshot restored (restoring costs about as much as replaying this many).
const KEPT_STATE_PREFERRED_RECORDS: u64 = 10_000;

/// How much work one request may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most log records one request replays, counting both the way from the nearest
    /// snapshot (or kept state) to its starting point and the range it reads.
    pub replay_records_max: u64,
    /// Most log records one request reads to extend the clock index (the first time
    /// question on a long log takes several requests; each answers
    /// [`HistoryError::ClockIndexing`] until the index is complete).
    pub clock_scan_records_max: u64,
    /// Replayed states kept for the next request (each is a whole copy of the shard's
    /// state in memory; 0 keeps none).
    pub cursors_max: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            replay_records_max: REPLAY_RECORDS_MAX,
            clock_scan_records_max: CLOCK_SCAN_RECORDS_MAX,
            cursors_max: CURSORS_MAX,
        }
    }
}

/// Why a history question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The index asked for is beyond what the shard has applied.
    #[error("log index {index} of shard {shard} is beyond what it has applied ({applied})")]
    Beyond {
        /// The shard.
        shard: ShardId,
        /// The index asked for.
        index: u64,
        /// The last index the shard applied.
        applied: u64,
    },
    /// Answering needs more replay than [`HistoryLimits::replay_records_max`].
    #[error(
        "answering needs more than {max} log records replayed from the nearest state (at index \
         {from} of shard {shard}); ask for a point nearer a snapshot or a smaller range"
    )]
    ReplayLimit {
        /// The shard.
        shard: ShardId,
        /// Index of the state the replay would start from.
        from: u64,
        /// The limit.
        max: u64,
    },
    /// The clock index is still being built (see
    /// [`HistoryLimits::clock_scan_records_max`]): retry.
    #[error(
        "the time index of shard {shard} covers {indexed} of {applied} log records so far \
         (each request extends it by at most {max}); retry"
    )]
    ClockIndexing {
        /// The shard.
        shard: ShardId,
        /// Records indexed.
        indexed: u64,
        /// Records to index.
        applied: u64,
        /// Records indexed per request.
        max: u64,
    },
    /// The log does not start at index 1 and no snapshot covers the part before it.
    #[error("history of shard {shard} before log index {first} is not available")]
    Missing {
        /// The shard.
        shard: ShardId,
        /// The first index the log holds.
        first: u64,
    },
    /// Reading the log failed (I/O, corruption: see the inner error).
    #[error("command log: {0}")]
    Storage(#[from] StorageError),
    /// A log record is not a valid input, or replay disagrees with the log.
    #[error("log record {index}: {reason}")]
    BadRecord {
        /// Its index.
        index: u64,
        /// Why.
        reason: String,
    },
}

/// Where a scan starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// The state after input `n` (exactly).
    Index(u64),
    /// A state from which the events with sequence numbers above `n` can be produced.
    Seq(u64),
}

/// Why an [`EventReader`] has no next event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every input up to the applied index was replayed.
    Applied,
    /// [`HistoryLimits::replay_records_max`] records were replayed (after at least one
    /// event was read: before that, running out is [`HistoryError::ReplayLimit`]).
    Limit,
}

/// A replayed state: the engine after input `engine.inputs_applied()` and that input's
/// events.
struct Cursor {
    engine: Engine,
    last: Vec<EventRecord>,
    /// Replay disagreed with the log: never kept.
    broken: bool,
}

impl Cursor {
    fn index(&self) -> u64 {
        self.engine.inputs_applied()
    }

    /// Whether the events after sequence number `after` can be produced from here: the
    /// next event is at most `after + 1`, or `after + 1` is among the last input's events.
    fn serves_seq(&self, after: u64) -> bool {
        let next = after.saturating_add(1);
        self.engine.next_event_seq() <= next || self.last.first().is_some_and(|e| e.seq <= next)
    }
}

/// The shard clock, indexed from input `base + 1` on.
#[derive(Default)]
struct ClockIndex {
    /// The index is built from the state after input `base` (0: the whole history; else
    /// the oldest snapshot of a source whose history starts later).
    base: u64,
    /// The clock after input `base`.
    base_clock: Timestamp,
    /// `marks[k]`: the clock after input `base + (k + 1) * CLOCK_MARK_EVERY_RECORDS`.
    marks: Vec<Timestamp>,
    /// Inputs indexed (`base + 1..=indexed`).
    indexed: u64,
    /// The clock after input `indexed`.
    clock: Timestamp,
}

/// Read-only access to one shard's history (see the module documentation).
pub struct ShardHistory {
    shard: ShardId,
    placement: Placement,
    limits: HistoryLimits,
    source: Box<dyn HistorySource>,
    clock: Mutex<ClockIndex>,
    cursors: Mutex<VecDeque<Cursor>>,
    /// Next event sequence number of each snapshot, learnt when restoring it.
    snapshot_seqs: Mutex<BTreeMap<u64, u64>>,
}

impl std::fmt::Debug for ShardHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardHistory")
            .field("shard", &self.shard)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The leader time an input carries.
fn input_time(input: &Input) -> Timestamp {
    input.timestamp()
}

fn decode(r: &tradelog_storage::Record) -> Result<Input, HistoryError> {
    tradelog_codec::decode(&r.payload).map_err(|e| HistoryError::BadRecord {
        index: r.index,
        reason: format!("not a valid input: {e}"),
    })
}

impl ShardHistory {
    /// Opens the history of the shard whose directory is `dir` (the directory a
    /// [`DurableShard`](crate::DurableShard) uses), read only. The shard may be running.
    pub fn open(
        dir: impl AsRef<Path>,
        shard: ShardId,
        placement: Placement,
        limits: HistoryLimits,
    ) -> Result<ShardHistory, HistoryError> {
        let source = LogSource::open(dir, shard)?;
        Ok(ShardHistory::with_source(
            Box::new(source),
            shard,
            placement,
            limits,
        ))
    }

    /// The history of shard `shard` read from `source` (`placement`: the engine's, for the
    /// empty initial state, when the source has no other ([`HistorySource::initial`])).
    pub fn with_source(
        source: Box<dyn HistorySource>,
        shard: ShardId,
        placement: Placement,
        limits: HistoryLimits,
    ) -> ShardHistory {
        ShardHistory {
            shard,
            placement,
            limits,
            source,
            clock: Mutex::new(ClockIndex::default()),
            cursors: Mutex::new(VecDeque::new()),
            snapshot_seqs: Mutex::new(BTreeMap::new()),
        }
    }

    /// The shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The limits in force.
    pub fn limits(&self) -> &HistoryLimits {
        &self.limits
    }

    /// Runs `f` on the shard's state after input `index` (0: the empty initial state).
    /// `applied` is the last index the live shard applied; `index` must not exceed it.
    pub fn state_at<R>(
        &self,
        index: u64,
        applied: u64,
        f: impl FnOnce(&Engine) -> R,
    ) -> Result<R, HistoryError> {
        self.check_applied(index, applied)?;
        let mut cur = self.start(Start::Index(index), applied)?;
        let mut used = 0;
        let r = self.replay_to(&mut cur, index, &mut used);
        let out = r.map(|()| f(&cur.engine));
        self.keep(cur);
        out
    }

    /// The last log index (at most `applied`) whose shard clock is at or before `t`: the
    /// state there holds exactly the events stamped `<= t` (see the module documentation).
    /// 0 when even the first input is later than `t`.
    ///
    /// When the history starts after input 0 (a log that restarted after a snapshot), the
    /// clock is indexed from the oldest usable snapshot on, and a time before that
    /// snapshot's clock is [`HistoryError::Missing`].
    pub fn index_at_time(&self, t: Timestamp, applied: u64) -> Result<u64, HistoryError> {
        let mut ci = lock(&self.clock);
        self.extend_clock(&mut ci, applied)?;
        if ci.base > 0 && t < ci.base_clock {
            return Err(HistoryError::Missing {
                shard: self.shard,
                first: ci.base + 1,
            });
        }
        // The index may reach past `applied` (an earlier caller knew a later point): the
        // search below never looks beyond `applied`.
        let k = ci.marks.partition_point(|m| *m <= t);
        let block_first = ci.base + k as u64 * CLOCK_MARK_EVERY_RECORDS + 1;
        if block_first > applied {
            // Every record up to `applied` has a clock at or before marks[k - 1] <= t.
            return Ok(applied);
        }
        let mut clock = if k == 0 {
            ci.base_clock
        } else {
            ci.marks[k - 1]
        };
        drop(ci);
        // The clock passes `t` in this block (or after `applied`).
        let block_last = (block_first + CLOCK_MARK_EVERY_RECORDS - 1).min(applied);
        let mut next = block_first;
        while next <= block_last {
            for (index, input) in self.source.read(next, block_last, REPLAY_CHUNK_RECORDS)? {
                clock = clock.max(input_time(&input));
                if clock > t {
                    return Ok(index - 1);
                }
                next = index + 1;
            }
        }
        Ok(block_last)
    }

    /// Indexes the clock up to `applied`, reading at most the limit's records.
    fn extend_clock(&self, ci: &mut ClockIndex, applied: u64) -> Result<(), HistoryError> {
        let first = self.source.first_input(applied)?;
        if ci.base + 1 != first {
            // The history starts later now (or this is the first question): start from
            // the state before its first input.
            let base_clock = if first == 1 {
                self.source
                    .initial()?
                    .map_or(Timestamp(0), |engine| engine.clock())
            } else {
                let engine = self.restore(first - 1).ok_or(HistoryError::Missing {
                    shard: self.shard,
                    first,
                })?;
                engine.clock()
            };
            *ci = ClockIndex {
                base: first - 1,
                base_clock,
                marks: Vec::new(),
                indexed: first - 1,
                clock: base_clock,
            };
        }
        if ci.indexed >= applied {
            return Ok(());
        }
        let budget_end = ci
            .indexed
            .saturating_add(self.limits.clock_scan_records_max);
        let end = applied.min(budget_end);
        while ci.indexed < end {
            for (index, input) in self
                .source
                .read(ci.indexed + 1, end, REPLAY_CHUNK_RECORDS)?
            {
                ci.clock = ci.clock.max(input_time(&input));
                ci.indexed = index;
                if (ci.indexed - ci.base).is_multiple_of(CLOCK_MARK_EVERY_RECORDS) {
                    ci.marks.push(ci.clock);
                }
            }
        }
        if ci.indexed < applied {
            return Err(HistoryError::ClockIndexing {
                shard: self.shard,
                indexed: ci.indexed,
                applied,
                max: self.limits.clock_scan_records_max,
            });
        }
        Ok(())
    }

    /// Regenerates the events of inputs `after_index + 1 ..= applied`: a reader whose
    /// [`state`](EventReader::state) is first the state after input `after_index`.
    pub fn events_after_index(
        &self,
        after_index: u64,
        applied: u64,
    ) -> Result<EventReader<'_>, HistoryError> {
        self.check_applied(after_index, applied)?;
        let mut cur = self.start(Start::Index(after_index), applied)?;
        let mut used = 0;
        if let Err(e) = self.replay_to(&mut cur, after_index, &mut used) {
            self.keep(cur);
            return Err(e);
        }
        let after_seq = cur.engine.next_event_seq() - 1;
        Ok(EventReader::new(self, cur, after_seq, applied, used))
    }

    /// Regenerates the events with sequence numbers above `after_seq` (of inputs up to
    /// `applied`).
    pub fn events_after_seq(
        &self,
        after_seq: u64,
        applied: u64,
    ) -> Result<EventReader<'_>, HistoryError> {
        let cur = self.start(Start::Seq(after_seq), applied)?;
        Ok(EventReader::new(self, cur, after_seq, applied, 0))
    }

    fn check_applied(&self, index: u64, applied: u64) -> Result<(), HistoryError> {
        if index > applied {
            return Err(HistoryError::Beyond {
                shard: self.shard,
                index,
                applied,
            });
        }
        Ok(())
    }

    /// Replays `cur` up to input `index` exactly, within the replay limit (checked before
    /// any work: the distance is known).
    fn replay_to(&self, cur: &mut Cursor, index: u64, used: &mut u64) -> Result<(), HistoryError> {
        let from = cur.index();
        if index - from > self.limits.replay_records_max {
            return Err(HistoryError::ReplayLimit {
                shard: self.shard,
                from,
                max: self.limits.replay_records_max,
            });
        }
        while cur.index() < index {
            let n = ((index - cur.index()) as usize).min(REPLAY_CHUNK_RECORDS);
            for r in self.source.read(cur.index() + 1, index, n)? {
                self.apply(cur, &r)?;
                *used += 1;
            }
        }
        Ok(())
    }

    /// Applies one log record to `cur` (its events become `cur.last`).
    fn apply(&self, cur: &mut Cursor, r: &(u64, Input)) -> Result<(), HistoryError> {
        let (index, input) = r;
        cur.last.clear();
        cur.engine.apply(input, &mut cur.last);
        if cur.index() != *index {
            cur.broken = true;
            return Err(HistoryError::BadRecord {
                index: *index,
                reason: format!(
                    "the state machine counts {} inputs after applying it",
                    cur.index()
                ),
            });
        }
        Ok(())
    }

    /// The best state to start from: a kept one or the newest usable snapshot, whichever
    /// is nearer; the empty state when neither exists.
    fn start(&self, target: Start, applied: u64) -> Result<Cursor, HistoryError> {
        // A kept state the source can no longer continue (its history now starts later:
        // a replica's log restarted, or the snapshot it started from is gone) is not used.
        let first = self.source.first_input(applied)?;
        let kept = {
            let mut cursors = lock(&self.cursors);
            let best = cursors
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.index() <= applied
                        && c.index() + 1 >= first
                        && match target {
                            Start::Index(i) => c.index() <= i,
                            Start::Seq(s) => c.serves_seq(s),
                        }
                })
                .max_by_key(|(_, c)| c.index())
                .map(|(k, _)| k);
            best.and_then(|k| cursors.remove(k))
        };
        let floor = kept
            .as_ref()
            .map_or(0, |c| c.index() + KEPT_STATE_PREFERRED_RECORDS);
        let snap = self.best_snapshot(target, applied, floor)?;
        match (snap, kept) {
            (Some(engine), kept) => {
                if let Some(k) = kept {
                    self.keep(k);
                }
                Ok(Cursor {
                    engine,
                    last: Vec::new(),
                    broken: false,
                })
            }
            (None, Some(k)) => Ok(k),
            (None, None) => {
                if first != 1 {
                    return Err(HistoryError::Missing {
                        shard: self.shard,
                        first,
                    });
                }
                let engine = match self.source.initial()? {
                    Some(engine) => engine,
                    None => Engine::new(self.shard, self.placement.clone()),
                };
                Ok(Cursor {
                    engine,
                    last: Vec::new(),
                    broken: false,
                })
            }
        }
    }

    /// The newest readable snapshot above `floor` (and at most `applied`) that can start
    /// `target`, restored. Unreadable snapshots are passed over, as on open.
    fn best_snapshot(
        &self,
        target: Start,
        applied: u64,
        floor: u64,
    ) -> Result<Option<Engine>, HistoryError> {
        let mut candidates: Vec<u64> = self
            .source
            .snapshots()?
            .into_iter()
            .filter(|i| *i > floor && *i <= applied)
            .filter(|i| match target {
                Start::Index(n) => *i <= n,
                Start::Seq(_) => true,
            })
            .collect();
        loop {
            let Some(pick) = self.pick(&mut candidates, target) else {
                return Ok(None);
            };
            match self.restore(candidates[pick]) {
                Some(e) => return Ok(Some(e)),
                None => {
                    candidates.remove(pick);
                }
            }
        }
    }

    /// The position in `candidates` (sorted indexes) of the snapshot to use: the newest
    /// for an index target; for a sequence target, the newest whose next event is at most
    /// `after + 1` (binary search; next event numbers grow with the index). Unreadable
    /// snapshots met on the way are removed.
    fn pick(&self, candidates: &mut Vec<u64>, target: Start) -> Option<usize> {
        let after = match target {
            Start::Index(_) => return candidates.len().checked_sub(1),
            Start::Seq(s) => s,
        };
        let (mut lo, mut hi) = (0, candidates.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let index = candidates[mid];
            let known = lock(&self.snapshot_seqs).get(&index).copied();
            let next = match known.or_else(|| self.restore(index).map(|e| e.next_event_seq())) {
                Some(n) => n,
                None => {
                    candidates.remove(mid);
                    return self.pick(candidates, target);
                }
            };
            if next <= after.saturating_add(1) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Restores one snapshot, or `None` if it is unreadable or not this shard's.
    fn restore(&self, index: u64) -> Option<Engine> {
        let engine = self.source.restore(index)?;
        if engine.inputs_applied() != index || engine.shard() != self.shard {
            return None;
        }
        lock(&self.snapshot_seqs).insert(index, engine.next_event_seq());
        Some(engine)
    }

    /// Keeps a replayed state for the next request (the oldest kept one goes).
    fn keep(&self, cur: Cursor) {
        if self.limits.cursors_max == 0 || cur.broken {
            return;
        }
        let mut cursors = lock(&self.cursors);
        cursors.push_back(cur);
        while cursors.len() > self.limits.cursors_max {
            cursors.pop_front();
        }
    }
}

/// The history of every shard of a node. A replicated node opens and closes replicas
/// while it runs (docs/design/0013), so each shard's history can be set and cleared.
#[derive(Debug)]
pub struct NodeHistory {
    /// Per shard, its history if this node holds the shard.
    shards: Vec<std::sync::RwLock<Option<std::sync::Arc<ShardHistory>>>>,
}

impl NodeHistory {
    /// Opens the history of every shard of the node `config` describes (the node must have
    /// been opened once, so that its shard directories exist; it may be running).
    pub fn open(config: &NodeConfig, limits: HistoryLimits) -> Result<NodeHistory, HistoryError> {
        let placement = Placement::new(config.shards);
        let shards = (0..config.shards)
            .map(|s| {
                let shard = ShardId(s);
                ShardHistory::open(
                    shard_dir(&config.data_dir, shard),
                    shard,
                    placement.clone(),
                    limits.clone(),
                )
                .map(Some)
            })
            .collect::<Result<_, _>>()?;
        Ok(NodeHistory::from_shards(shards))
    }

    /// The history of a node whose shard `s` is `shards[s]`, `None` for a shard it does
    /// not hold (a replicated node's, whose sources read Raft logs).
    pub fn from_shards(shards: Vec<Option<ShardHistory>>) -> NodeHistory {
        for (k, h) in shards.iter().enumerate() {
            if let Some(h) = h {
                assert_eq!(k as u32, h.shard.0, "shard histories in shard order");
            }
        }
        NodeHistory {
            shards: shards
                .into_iter()
                .map(|h| std::sync::RwLock::new(h.map(std::sync::Arc::new)))
                .collect(),
        }
    }

    /// One shard's history (`None` for a shard that does not exist or that this node does
    /// not hold).
    pub fn shard(&self, s: ShardId) -> Option<std::sync::Arc<ShardHistory>> {
        self.shards
            .get(s.0 as usize)
            .and_then(|h| h.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Sets shard `s`'s history (a replica opened here) or clears it (`None`: a replica
    /// closed). Readers already holding the old one finish with it.
    pub fn set(&self, s: ShardId, history: Option<ShardHistory>) {
        if let Some(h) = &history {
            assert_eq!(s, h.shard, "a shard's history in its own slot");
        }
        if let Some(slot) = self.shards.get(s.0 as usize) {
            *slot.write().unwrap_or_else(|p| p.into_inner()) = history.map(std::sync::Arc::new);
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }
}

/// Regenerated events, one at a time, in sequence order: replays the shard's inputs as it
/// goes (no more than needed to produce the next event). Dropping it keeps its state for
/// the next request, which then continues from exactly there.
pub struct EventReader<'h> {
    history: &'h ShardHistory,
    cur: Option<Cursor>,
    /// Next position in `cur.last` to look at.
    pos: usize,
    /// Events at or below this sequence number are skipped.
    after: u64,
    applied: u64,
    /// Records replayed for this request so far.
    used: u64,
    /// An event was read (or is ready to be).
    reached: bool,
    /// Index of the state the request started from.
    from: u64,
    ended: Option<ScanEnd>,
    /// Inputs read from the log, not applied yet.
    ahead: std::collections::VecDeque<(u64, Input)>,
}

impl std::fmt::Debug for EventReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader")
            .field("shard", &self.history.shard)
            .field("after", &self.after)
            .field("index", &self.state().inputs_applied())
            .finish()
    }
}

impl<'h> EventReader<'h> {
    fn new(
        history: &'h ShardHistory,
        cur: Cursor,
        after: u64,
        applied: u64,
        used: u64,
    ) -> EventReader<'h> {
        // A kept state in the middle of an input: the rest of that input's events first.
        let pos = if cur.engine.next_event_seq() > after.saturating_add(1) {
            cur.last.partition_point(|e| e.seq <= after)
        } else {
            cur.last.len()
        };
        EventReader {
            history,
            from: cur.index(),
            cur: Some(cur),
            pos,
            after,
            applied,
            used,
            reached: false,
            ended: None,
            ahead: std::collections::VecDeque::new(),
        }
    }

    fn cur(&self) -> &Cursor {
        self.cur.as_ref().expect("present until dropped")
    }

    /// The state after the last input replayed so far (before the first event is read:
    /// the state the reader starts from).
    pub fn state(&self) -> &Engine {
        &self.cur().engine
    }

    /// Why [`next_event`](EventReader::next_event) returned `None`, once it did.
    pub fn end(&self) -> Option<ScanEnd> {
        self.ended
    }

    /// The next event, without consuming it.
    pub fn peek_event(&mut self) -> Result<Option<&EventRecord>, HistoryError> {
        if !self.fill()? {
            return Ok(None);
        }
        Ok(self.cur().last.get(self.pos))
    }

    /// The next event.
    pub fn next_event(&mut self) -> Result<Option<EventRecord>, HistoryError> {
        if !self.fill()? {
            return Ok(None);
        }
        let e = self.cur().last[self.pos].clone();
        self.pos += 1;
        Ok(Some(e))
    }

    /// Makes `cur.last[pos]` the next event above `after`, replaying inputs as needed;
    /// false at the end.
    fn fill(&mut self) -> Result<bool, HistoryError> {
        loop {
            if self.ended.is_some() {
                return Ok(false);
            }
            let cur = self.cur.as_ref().expect("present until dropped");
            while self.pos < cur.last.len() && cur.last[self.pos].seq <= self.after {
                self.pos += 1;
            }
            if self.pos < cur.last.len() {
                self.reached = true;
                return Ok(true);
            }
            let h = self.history;
            if cur.index() >= self.applied {
                self.ended = Some(ScanEnd::Applied);
                continue;
            }
            if self.used >= h.limits.replay_records_max {
                if !self.reached {
                    return Err(HistoryError::ReplayLimit {
                        shard: h.shard,
                        from: self.from,
                        max: h.limits.replay_records_max,
                    });
                }
                self.ended = Some(ScanEnd::Limit);
                continue;
            }
            if self.ahead.is_empty() {
                let left =
                    (self.applied - cur.index()).min(h.limits.replay_records_max - self.used);
                let n = (left as usize).min(REPLAY_CHUNK_RECORDS);
                self.ahead = h.source.read(cur.index() + 1, self.applied, n)?.into();
            }
            let r = self.ahead.pop_front().expect("a record was read");
            let cur = self.cur.as_mut().expect("present until dropped");
            h.apply(cur, &r)?;
            self.used += 1;
            self.pos = 0;
        }
    }
}

impl Drop for EventReader<'_> {
    fn drop(&mut self) {
        if let Some(cur) = self.cur.take() {
            self.history.keep(cur);
        }
    }
}
