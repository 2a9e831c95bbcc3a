//! [`ShardStateMachine`]: the shard's [`Engine`] as openraft's state machine, and its
//! snapshots.
//!
//! Committed entries are applied in order: a [`Batch`](crate::Batch) goes through
//! [`Engine::apply_batch`] and its per-input results are the entry's response; blank and
//! membership entries only move the applied log id (and the membership).
//!
//! Snapshots live in `DIR/snapshots/raft-snapshot-{next index:020}.bin`, each a sealed
//! envelope ([`SNAPSHOT_FILE_MAGIC`], CRC32C) around the snapshot's Raft metadata (last log
//! id, membership), the shard id, the engine's state hash and the engine's own sealed
//! snapshot ([`Engine::snapshot`] encoding, versioned and checksummed). The same bytes are
//! what openraft sends to a replica that is too far behind. A snapshot is written to a
//! temporary file, fsynced, renamed into place and the directory fsynced; the newest
//! [`SNAPSHOTS_KEPT`] are kept (snapshots are derived from the log, which keeps the
//! history).
//!
//! Installing a snapshot checks everything before anything changes: the envelope, the
//! metadata against what openraft says it is, the shard, every engine invariant
//! ([`Engine::restore`]) and the state hash.
//!
//! **Splits** (docs/design/0014): an entry whose batch is a single
//! [`Input::Split`](tradelog_engine::Input::Split) is applied with [`Engine::split`], and
//! the new shard's initial state is written, before the entry counts as applied, to
//! [`SPLIT_START_FILE`] in the child's group directory (named by the [`ChildDirs`] the
//! runner gives, [`ShardStateMachine::with_child_dirs`]), with the parent's membership at
//! that entry: the child's group starts on those voters, each from that state, so no data
//! crosses the network (a voter that skipped the entry, sent a snapshot past it, copies the
//! file from a peer: `RaftRouter::serve_split_starts`). The write is deterministic (the same entry always writes the same
//! bytes), so a replica that applies the entry again after a restart writes it again
//! unchanged. A child's state machine with no snapshot starts from that file instead of
//! an empty engine; one with neither (a replica added later) applies no batch until a
//! snapshot is installed, since the child's log does not start from an empty state (its
//! leader purges the log before a learner joins).

use crate::meta::write_atomically;
use crate::runtime::run_blocking;
use crate::types::{BatchResponse, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::EntryPayload;
use futures_util::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::LogIdOptionExt;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tradelog_domain::routing::{Split, SplitError};
use tradelog_domain::{EventRecord, ShardId, Timestamp};
use tradelog_engine::{Applied, Engine, Input, Placement};

/// Directory of snapshot files inside a group directory.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// First bytes of a replicated snapshot file.
pub const SNAPSHOT_FILE_MAGIC: [u8; 8] = *b"TLRSNAP1";
/// Version of the replicated snapshot file this build writes and reads.
pub const SNAPSHOT_FILE_VERSION: u32 = 1;
/// Snapshot files kept on disk (the newest ones; older ones are removed).
pub const SNAPSHOTS_KEPT: usize = 2;

/// Name of the file, in a split's child's group directory, that holds the child's initial
/// state.
pub const SPLIT_START_FILE: &str = "split-start.bin";
/// First bytes of a split start file.
pub const SPLIT_START_MAGIC: [u8; 8] = *b"TLSPLIT1";
/// Version of the split start file this build writes and reads.
pub const SPLIT_START_VERSION: u32 = 1;

/// Where the group directory of a split's child is (`DATA_DIR/shard-N` in a cluster).
pub type ChildDirs = Arc<dyn Fn(ShardId) -> PathBuf + Send + Sync>;

/// A split's child as its parent's replica left it: what the child's group starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitStart {
    /// The shard that split.
    pub parent: ShardId,
    /// The parent's log entry that made the split.
    pub split_at: LogId,
    /// The parent's membership when it applied that entry: the child's first voters.
    pub membership: StoredMembership,
    /// The child's state hash.
    pub state_hash: [u8; 32],
    /// The child's sealed engine state.
    #[serde(with = "tradelog_codec::bytes")]
    pub engine: Vec<u8>,
}

/// Encodes a split's child state as [`SPLIT_START_FILE`] bytes.
pub fn encode_split_start(
    parent: ShardId,
    split_at: LogId,
    membership: &StoredMembership,
    child: &Engine,
) -> Vec<u8> {
    let state = child.state_bytes();
    let start = SplitStart {
        parent,
        split_at,
        membership: membership.clone(),
        state_hash: tradelog_codec::sha256(&state),
        engine: Engine::seal_state_bytes(&state),
    };
    tradelog_codec::seal(
        SPLIT_START_MAGIC,
        SPLIT_START_VERSION,
        &tradelog_codec::encode_large(&start),
    )
}

/// Checks split start bytes completely and returns them decoded with the restored child
/// engine, which must be shard `shard`'s with the recorded state hash.
pub fn decode_split_start(
    bytes: &[u8],
    shard: ShardId,
) -> Result<(SplitStart, Engine), SnapshotCheckError> {
    let payload = tradelog_codec::open(SPLIT_START_MAGIC, SPLIT_START_VERSION, bytes)?;
    let start: SplitStart = tradelog_codec::decode(payload)?;
    let engine = Engine::restore(&start.engine)?;
    if engine.shard() != shard {
        return Err(SnapshotCheckError::WrongShard {
            expected: shard,
            found: engine.shard(),
        });
    }
    let actual = engine.state_hash();
    if actual != start.state_hash {
        return Err(SnapshotCheckError::HashMismatch {
            expected: tradelog_codec::hex(&start.state_hash),
            actual: tradelog_codec::hex(&actual),
        });
    }
    Ok((start, engine))
}

/// Reads the split start file of shard `shard`'s group directory `group_dir`: `None` when
/// there is none (a shard the cluster was formed with, or a replica that did not apply
/// its parent's split); an `InvalidData` error when it does not check out (it is the only
/// copy of the child's state before its log).
pub fn read_split_start(
    group_dir: &Path,
    shard: ShardId,
) -> io::Result<Option<(SplitStart, Engine)>> {
    let path = group_dir.join(SPLIT_START_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => decode_split_start(&bytes, shard).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The decoded content of a snapshot file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    shard: ShardId,
    state_hash: [u8; 32],
    /// The engine's sealed snapshot.
    #[serde(with = "tradelog_codec::bytes")]
    engine: Vec<u8>,
}

/// Why snapshot bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotCheckError {
    /// The envelope or its content is damaged or of another version.
    #[error("snapshot is unreadable: {0}")]
    Codec(#[from] tradelog_codec::CodecError),
    /// The snapshot says it covers something else than it was offered as.
    #[error("snapshot metadata {found:?} differs from the expected {expected:?}")]
    MetaMismatch {
        /// What openraft said.
        expected: Box<SnapshotMeta>,
        /// What the bytes say.
        found: Box<SnapshotMeta>,
    },
    /// A snapshot of another shard.
    #[error("snapshot of shard {found} offered to shard {expected}")]
    WrongShard {
        /// This shard.
        expected: ShardId,
        /// The snapshot's shard.
        found: ShardId,
    },
    /// The engine state does not restore (damaged or inconsistent).
    #[error("snapshot engine state: {0}")]
    Engine(#[from] tradelog_engine::SnapshotError),
    /// The restored state does not have the recorded hash.
    #[error("snapshot state hash {actual} differs from the recorded {expected}")]
    HashMismatch {
        /// Recorded in the snapshot.
        expected: String,
        /// Of the restored state.
        actual: String,
    },
}

/// Encodes the state of `engine` at `meta` as snapshot file bytes.
pub fn encode_snapshot(meta: &SnapshotMeta, engine: &Engine) -> Vec<u8> {
    let state = engine.state_bytes();
    let file = SnapshotFile {
        meta: meta.clone(),
        shard: engine.shard(),
        state_hash: tradelog_codec::sha256(&state),
        engine: Engine::seal_state_bytes(&state),
    };
    tradelog_codec::seal(
        SNAPSHOT_FILE_MAGIC,
        SNAPSHOT_FILE_VERSION,
        &tradelog_codec::encode_large(&file),
    )
}

/// Checks the outer envelope of snapshot bytes (length, CRC32C, version), that they are the
/// snapshot `meta` says and of shard `shard`, without restoring the engine: the cheap check
/// a node makes on bytes received from a peer before handing them to Raft.
pub fn verify_snapshot_envelope(
    bytes: &[u8],
    shard: ShardId,
    meta: &SnapshotMeta,
) -> Result<(), SnapshotCheckError> {
    let payload = tradelog_codec::open(SNAPSHOT_FILE_MAGIC, SNAPSHOT_FILE_VERSION, bytes)?;
    let file: SnapshotFile = tradelog_codec::decode(payload)?;
    if file.meta != *meta {
        return Err(SnapshotCheckError::MetaMismatch {
            expected: Box::new(meta.clone()),
            found: Box::new(file.meta),
        });
    }
    if file.shard != shard {
        return Err(SnapshotCheckError::WrongShard {
            expected: shard,
            found: file.shard,
        });
    }
    Ok(())
}

/// Checks snapshot file bytes completely and returns what they hold: the metadata and the
/// restored engine. `expected` (when given) must equal the recorded metadata.
pub fn decode_snapshot(
    bytes: &[u8],
    shard: ShardId,
    expected: Option<&SnapshotMeta>,
) -> Result<(SnapshotMeta, Engine), SnapshotCheckError> {
    let payload = tradelog_codec::open(SNAPSHOT_FILE_MAGIC, SNAPSHOT_FILE_VERSION, bytes)?;
    let file: SnapshotFile = tradelog_codec::decode(payload)?;
    if let Some(m) = expected {
        if *m != file.meta {
            return Err(SnapshotCheckError::MetaMismatch {
                expected: Box::new(m.clone()),
                found: Box::new(file.meta),
            });
        }
    }
    if file.shard != shard {
        return Err(SnapshotCheckError::WrongShard {
            expected: shard,
            found: file.shard,
        });
    }
    let engine = Engine::restore(&file.engine)?;
    if engine.shard() != shard {
        return Err(SnapshotCheckError::WrongShard {
            expected: shard,
            found: engine.shard(),
        });
    }
    let actual = engine.state_hash();
    if actual != file.state_hash {
        return Err(SnapshotCheckError::HashMismatch {
            expected: tradelog_codec::hex(&file.state_hash),
            actual: tradelog_codec::hex(&actual),
        });
    }
    Ok((file.meta, engine))
}

fn file_name(meta: &SnapshotMeta) -> String {
    format!("raft-snapshot-{:020}.bin", meta.last_log_id.next_index())
}

/// Snapshot files of `dir/snapshots`, newest first.
fn list_snapshots(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<(u64, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let n = name
            .strip_prefix("raft-snapshot-")
            .and_then(|s| s.strip_suffix(".bin"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(n) = n {
            v.push((n, e.path()));
        }
    }
    v.sort();
    Ok(v.into_iter().rev().map(|(_, p)| p).collect())
}

/// The newest snapshot on disk, shared by the state machine and its snapshot builders.
#[derive(Clone, Debug)]
struct Current {
    meta: SnapshotMeta,
    path: PathBuf,
}

/// Writes a snapshot file durably, records it as the newest and removes old ones.
fn persist_snapshot(
    dir: &Path,
    meta: &SnapshotMeta,
    bytes: &[u8],
    current: &Mutex<Option<Current>>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = write_atomically(dir, &file_name(meta), bytes)?;
    let mut cur = current
        .lock()
        .map_err(|_| io::Error::other("snapshot lock poisoned by a panic"))?;
    // A builder that started before an install must not make an older snapshot current.
    if cur
        .as_ref()
        .is_none_or(|c| c.meta.last_log_id <= meta.last_log_id)
    {
        *cur = Some(Current {
            meta: meta.clone(),
            path,
        });
    }
    let keep = cur.as_ref().map(|c| c.path.clone());
    for (k, old) in list_snapshots(dir)?.into_iter().enumerate() {
        if k >= SNAPSHOTS_KEPT && Some(&old) != keep.as_ref() {
            tradelog_storage::remove_gradually(&old)?;
        }
    }
    Ok(())
}

/// What [`ShardStateMachine::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmOpenReport {
    /// The snapshot the state was restored from (None: a new, empty shard).
    pub restored_from: Option<PathBuf>,
    /// Snapshot files that could not be used, with the reason (newer than the one used).
    pub skipped: Vec<(PathBuf, String)>,
    /// With no snapshot: the split start file the state came from (a split's child).
    pub split_start: Option<PathBuf>,
    /// With `split_start`: the parent's membership when it split, whose voters are the
    /// child's first voters.
    pub split_membership: Option<StoredMembership>,
}

/// The shard's engine as openraft's state machine. See the module documentation.
pub struct ShardStateMachine {
    shard: ShardId,
    dir: PathBuf,
    engine: Engine,
    applied: Option<LogId>,
    membership: StoredMembership,
    current: Arc<Mutex<Option<Current>>>,
    sink: Option<EventSink>,
    report: SmOpenReport,
    /// Snapshot I/O on the applying task rather than tokio's blocking pool.
    inline_io: bool,
    /// Log records applied (the last applied Raft index plus one; 0: none), shared with
    /// readers of the log ([`ShardStateMachine::applied_records`]).
    applied_records: Arc<AtomicU64>,
    /// Where a split's child's initial state goes (None: this replica refuses to apply a
    /// split).
    child_dirs: Option<ChildDirs>,
    /// A split's child with neither its start state nor a snapshot: no batch applies
    /// until a snapshot is installed.
    needs_snapshot: bool,
}

/// Receives what the state machine does to the shard's event stream, in log order, on the
/// state machine's task (keep it short: hand the events on, never block).
pub type EventSink = Arc<dyn Fn(SinkItem<'_>) + Send + Sync>;

/// What an [`EventSink`] is told.
#[derive(Clone, Copy, Debug)]
pub enum SinkItem<'a> {
    /// The events of one applied batch, in order.
    Applied(&'a [EventRecord]),
    /// A snapshot replaced the state: the events before `next_event_seq` that were not
    /// published here are history (regenerate them from a replica's log).
    Installed {
        /// The next event sequence number of the installed state.
        next_event_seq: u64,
    },
}

impl ShardStateMachine {
    /// Opens the state machine of shard `shard` in the group directory `dir`: restored from
    /// the newest snapshot that checks out completely (damaged ones are skipped and
    /// reported); with none, from the [`SPLIT_START_FILE`] a parent's split wrote (an
    /// error if it is damaged), or a new engine with `placement` when there is none either.
    pub fn open(dir: impl AsRef<Path>, shard: ShardId, placement: Placement) -> io::Result<Self> {
        let group_dir = dir.as_ref();
        let dir = group_dir.join(SNAPSHOTS_DIR);
        let mut report = SmOpenReport::default();
        for path in list_snapshots(&dir)? {
            let checked = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| decode_snapshot(&b, shard, None).map_err(|e| e.to_string()));
            match checked {
                Ok((meta, engine)) => {
                    report.restored_from = Some(path.clone());
                    let applied_records = meta.last_log_id.next_index();
                    return Ok(ShardStateMachine {
                        shard,
                        dir,
                        engine,
                        applied: meta.last_log_id,
                        membership: meta.last_membership.clone(),
                        current: Arc::new(Mutex::new(Some(Current { meta, path }))),
                        sink: None,
                        report,
                        inline_io: false,
                        applied_records: Arc::new(AtomicU64::new(applied_records)),
                        child_dirs: None,
                        needs_snapshot: false,
                    });
                }
                Err(why) => report.skipped.push((path, why)),
            }
        }
        let base = shard.0 < placement.base_shard_count();
        let (engine, needs_snapshot) = match read_split_start(group_dir, shard)? {
            Some((start, engine)) => {
                report.split_start = Some(group_dir.join(SPLIT_START_FILE));
                report.split_membership = Some(start.membership);
                (engine, false)
            }
            None if !placement.knows(shard) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("shard {shard} is not in the placement it was opened with"),
                ))
            }
            None => (Engine::new(shard, placement), !base),
        };
        Ok(ShardStateMachine {
            shard,
            dir,
            engine,
            applied: None,
            membership: StoredMembership::default(),
            current: Arc::new(Mutex::new(None)),
            sink: None,
            report,
            inline_io: false,
            applied_records: Arc::new(AtomicU64::new(0)),
            child_dirs: None,
            needs_snapshot,
        })
    }

    /// Lets this replica apply splits, writing each child's initial state into the group
    /// directory `dirs` names for it.
    pub fn with_child_dirs(mut self, dirs: ChildDirs) -> Self {
        self.child_dirs = Some(dirs);
        self
    }

    /// Applies the split of entry `log_id`: the parent changes, and the child's initial
    /// state is durable in its group directory before this returns. A split the engine
    /// refuses changes nothing but the clock and writes nothing.
    async fn apply_split(
        &mut self,
        log_id: LogId,
        timestamp: Timestamp,
        split: &Split,
        out: &mut Vec<EventRecord>,
    ) -> io::Result<Result<u64, SplitError>> {
        let Some(dirs) = &self.child_dirs else {
            return Err(io::Error::other(format!(
                "shard {} cannot apply entry {log_id}: a split, and this replica has no \
                 directory for the new shard",
                self.shard
            )));
        };
        let child_dir = dirs(split.child);
        let child = match self.engine.split(timestamp, split.clone(), out) {
            Ok(child) => child,
            Err(refused) => return Ok(Err(refused)),
        };
        let accounts = child.ledger().len() as u64;
        let bytes = encode_split_start(self.shard, log_id, &self.membership, &child);
        run_blocking(self.inline_io, move || {
            std::fs::create_dir_all(&child_dir)?;
            if let Some(up) = child_dir.parent() {
                tradelog_storage::sync_dir(up)?;
            }
            write_atomically(&child_dir, SPLIT_START_FILE, &bytes)
        })
        .await??;
        Ok(Ok(accounts))
    }

    /// The number of log records this state machine has applied (its last applied Raft
    /// index plus one, which is that entry's log record number; 0 before any), kept up to
    /// date as it applies and installs snapshots. Whoever reads a state of the engine
    /// (e.g. through `with_state_machine`) and then loads this counter (`Acquire`) gets a
    /// record number at or after the entry that produced that state: a bound for readers
    /// of the log that must not go past what is applied (applied entries are committed:
    /// durable on a majority, though not always yet in this replica's own log file: a
    /// leader may apply an entry the other replicas made durable before its own append
    /// has run, so a reader waits for such a record; see the cluster crate's history).
    pub fn applied_records(&self) -> Arc<AtomicU64> {
        self.applied_records.clone()
    }

    /// Hands the events of every batch applied from now on to `sink` (every replica
    /// applies every committed batch, so every replica can publish the shard's events).
    pub fn set_event_sink(&mut self, sink: EventSink) {
        self.sink = Some(sink);
    }

    /// The shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Does snapshot I/O (building, installing, reading) on the task that asks for it
    /// instead of tokio's blocking pool: for a deterministic single-threaded simulation.
    pub fn with_inline_io(mut self) -> Self {
        self.inline_io = true;
        self
    }

    /// What opening found.
    pub fn open_report(&self) -> &SmOpenReport {
        &self.report
    }

    /// The engine (read only).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The last applied log id.
    pub fn applied(&self) -> Option<LogId> {
        self.applied
    }

    /// The engine's state hash.
    pub fn state_hash(&self) -> [u8; 32] {
        self.engine.state_hash()
    }

    fn current_meta(&self) -> io::Result<Option<Current>> {
        self.current
            .lock()
            .map(|c| c.clone())
            .map_err(|_| io::Error::other("snapshot lock poisoned by a panic"))
    }
}

/// Builds a snapshot from a copy of the engine taken when the builder was made, so the
/// state machine goes on applying meanwhile.
pub struct ShardSnapshotBuilder {
    dir: PathBuf,
    engine: Option<Engine>,
    meta: SnapshotMeta,
    current: Arc<Mutex<Option<Current>>>,
    inline_io: bool,
}

impl RaftSnapshotBuilder<TypeConfig> for ShardSnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let engine = self
            .engine
            .take()
            .ok_or_else(|| io::Error::other("snapshot builder used twice"))?;
        let (dir, meta, current) = (self.dir.clone(), self.meta.clone(), self.current.clone());
        run_blocking(self.inline_io, move || {
            let bytes = encode_snapshot(&meta, &engine);
            persist_snapshot(&dir, &meta, &bytes, &current)?;
            Ok::<_, io::Error>(Snapshot {
                meta,
                snapshot: bytes,
            })
        })
        .await?
    }
}

impl RaftStateMachine<TypeConfig> for ShardStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = ShardSnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + Send,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            // openraft applies in log order; its storage suite skips indexes, so only the
            // order is checked.
            if log_id.index < self.applied.next_index() {
                return Err(io::Error::other(format!(
                    "apply out of order: entry {log_id} after {:?}",
                    self.applied
                )));
            }
            let mut response = BatchResponse::default();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    if self.needs_snapshot {
                        return Err(io::Error::other(format!(
                            "shard {} was made by a split and this replica has neither its \
                             start state nor a snapshot: it cannot apply entry {log_id}, it \
                             must be sent a snapshot",
                            self.shard
                        )));
                    }
                    response.first_input = self.engine.inputs_applied() + 1;
                    if let [Input::Split { timestamp, split }] = &batch.inputs[..] {
                        let done = self
                            .apply_split(log_id, *timestamp, split, &mut response.events)
                            .await?;
                        response.results.push(Applied::Split(done));
                    } else {
                        self.engine.apply_batch(
                            &batch.inputs,
                            &mut response.events,
                            &mut response.results,
                        );
                    }
                    if let (Some(sink), false) = (&self.sink, response.events.is_empty()) {
                        sink(SinkItem::Applied(&response.events));
                    }
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                }
            }
            self.applied = Some(log_id);
            self.applied_records
                .store(log_id.index + 1, Ordering::Release);
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> ShardSnapshotBuilder {
        ShardSnapshotBuilder {
            dir: self.dir.clone(),
            engine: Some(self.engine.clone()),
            meta: SnapshotMeta {
                last_log_id: self.applied,
                last_membership: self.membership.clone(),
            },
            current: self.current.clone(),
            inline_io: self.inline_io,
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let shard = self.shard;
        let expected = meta.clone();
        let (engine, bytes) = run_blocking(self.inline_io, move || {
            decode_snapshot(&snapshot, shard, Some(&expected))
                .map(|(_, engine)| (engine, snapshot))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        })
        .await??;
        let already_current = self
            .current_meta()?
            .is_some_and(|c| c.meta == *meta && c.path.exists());
        if !already_current {
            let (dir, m, current) = (self.dir.clone(), meta.clone(), self.current.clone());
            run_blocking(self.inline_io, move || {
                persist_snapshot(&dir, &m, &bytes, &current)
            })
            .await??;
        }
        self.engine = engine;
        self.needs_snapshot = false;
        self.applied = meta.last_log_id;
        self.applied_records
            .store(meta.last_log_id.next_index(), Ordering::Release);
        self.membership = meta.last_membership.clone();
        if let Some(sink) = &self.sink {
            sink(SinkItem::Installed {
                next_event_seq: self.engine.next_event_seq(),
            });
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let Some(cur) = self.current_meta()? else {
            return Ok(None);
        };
        let path = cur.path.clone();
        let bytes = run_blocking(self.inline_io, move || std::fs::read(path)).await??;
        Ok(Some(Snapshot {
            meta: cur.meta,
            snapshot: bytes,
        }))
    }
}
