//! [`ShardLogStore`]: openraft's log storage over the shard's [`FileLog`].
//!
//! Layout of a group directory `DIR`:
//!
//! * `DIR/log/`: the [`FileLog`] (segments, `archive/`, `truncated/`, `LOCK`). Raft index
//!   `i` is log record `i + 1` (openraft counts from 0, the log from 1). Each record's
//!   payload is [`ENTRY_FORMAT`] followed by the canonical encoding of the whole entry: its
//!   log id (term, leader, index) and its payload (a [`Batch`](crate::Batch), a membership
//!   or blank).
//! * `DIR/raft-meta`: vote, committed log id and last purged log id ([`crate::RaftMeta`]),
//!   replaced atomically (temporary file, fsync, rename, directory fsync).
//!
//! Writes:
//!
//! * **append** encodes and buffers the entries (readable at once) and hands the flush
//!   callback to the store's flusher, which takes every callback that is waiting, makes
//!   all of them durable with **one** `fdatasync` ([`LogStore::sync`]) and only then
//!   reports them flushed: group commit across appends. The flusher is a thread
//!   ([`FlushMode::Thread`], the default) or a task of the tokio runtime that opened the
//!   store ([`FlushMode::Task`]: no thread of its own, so that a single-threaded
//!   deterministic simulation decides when a flush happens).
//! * **save_vote**, **truncate_after** and **purge** first make every earlier append
//!   durable (openraft expects log and vote I/O to complete in the order submitted) and are
//!   durable when they return.
//! * **truncate_after** removes the conflicting suffix with [`LogStore::truncate_after`]
//!   (whole segments go to `log/truncated/`, nothing is deleted).
//! * **purge** first records the purged log id in `raft-meta`, then moves whole segments
//!   below it to `log/archive/` ([`LogStore::archive_before`]; records of the segment
//!   being written stay on disk but are no longer readable through the store). Purging
//!   beyond the last entry (a snapshot was installed ahead of the log) restarts the log
//!   after it ([`LogStore::reset_to`]), archiving every live segment; a crash between the
//!   two steps is finished on open.
//! * **save_committed** only records the id in memory; the flusher writes it to
//!   `raft-meta` at most every [`LogStoreConfig::committed_persist_interval`] (and it goes
//!   with every vote and purge). It is an optimisation for restart (the state machine is
//!   re-applied up to it), so it may lag; [`ShardLogStore`] only reports a committed id the
//!   log still holds.
//!
//! The log is a [`FileLog`] in production; any [`LogStore`] works
//! ([`ShardLogStore::with_log`]), e.g. the storage crate's `MemLog`, whose `crash` loses
//! exactly what was not synced (what a simulation of power loss needs).

use crate::meta::{self, RaftMeta};
use crate::types::{GroupConfig, LogId, TypeConfig, Vote};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::LogIdOptionExt;
use openraft::RaftTypeConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tradelog_storage::{FileLog, FileLogConfig, LogStore, RecoveryReport};

/// Where a [`ShardLogStore`] makes appends durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushMode {
    /// On a thread of its own, which group-commits whatever is waiting (production).
    #[default]
    Thread,
    /// On a task spawned on the tokio runtime that opens the store: the same group
    /// commit without a thread, so that a single-threaded runtime (a deterministic
    /// simulation) orders every flush. Its `fdatasync` blocks that runtime.
    Task,
}

/// First byte of every log record payload: the version of the entry encoding.
pub const ENTRY_FORMAT: u8 = 1;

/// Name of the log directory inside a group directory.
pub const LOG_DIR: &str = "log";

/// Default of [`LogStoreConfig::committed_persist_interval`] (100 ms).
pub const COMMITTED_PERSIST_INTERVAL_MS: u64 = 100;

/// Settings of a [`ShardLogStore`].
#[derive(Clone, Debug)]
pub struct LogStoreConfig {
    /// The log's sizes.
    pub log: FileLogConfig,
    /// How often, at most, a changed committed log id is written to `raft-meta`.
    pub committed_persist_interval: Duration,
    /// Where appends are made durable.
    pub flush: FlushMode,
    /// With [`FlushMode::Task`]: how long each flush takes on the runtime's clock before it
    /// is done (a simulation's disk latency, during which a crash loses the entries
    /// waiting). Zero: at once.
    pub flush_delay: Duration,
}

impl Default for LogStoreConfig {
    fn default() -> Self {
        LogStoreConfig {
            log: FileLogConfig::default(),
            committed_persist_interval: Duration::from_millis(COMMITTED_PERSIST_INTERVAL_MS),
            flush: FlushMode::Thread,
            flush_delay: Duration::ZERO,
        }
    }
}

/// What [`ShardLogStore::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOpenReport {
    /// What the log's own recovery did (torn tail cut, ...).
    pub log: RecoveryReport,
    /// An interrupted purge beyond the end of the log was finished.
    pub finished_purge: bool,
}

/// Everything behind the store's lock.
struct Inner<L> {
    log: L,
    /// Last purged log id (everything up to it is gone from the store's point of view).
    purged: Option<LogId>,
    /// Last log id present, or `purged` when no entry is.
    last: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// `committed` changed since `raft-meta` was written.
    committed_dirty: bool,
}

impl<L: LogStore> Inner<L> {
    fn meta(&self) -> RaftMeta {
        RaftMeta {
            vote: self.vote,
            committed: self.committed,
            purged: self.purged,
        }
    }

    /// Reads the entries with Raft indexes `from..to` (which must be present).
    fn read_records(&self, from: u64, to: u64) -> io::Result<Vec<tradelog_storage::Record>> {
        if from >= to {
            return Ok(Vec::new());
        }
        self.log
            .read(from + 1, (to - from) as usize)
            .map_err(io::Error::other)
    }

    /// The first Raft index the store may hold: after the purged prefix, and not before
    /// the log's first live record.
    fn first_present(&self) -> u64 {
        self.purged.next_index().max(self.log.first_index() - 1)
    }

    /// True when the store holds no entry (only, perhaps, a purged prefix).
    fn is_empty(&self) -> bool {
        self.last == self.purged
    }
}

struct Shared<L> {
    dir: PathBuf,
    /// Serialises writes of `raft-meta` (taken before `inner`, never after).
    meta_lock: Mutex<()>,
    inner: Mutex<Inner<L>>,
}

impl<L: LogStore> Shared<L> {
    fn lock(&self) -> io::Result<MutexGuard<'_, Inner<L>>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("log store lock poisoned by a panic"))
    }

    /// Writes `raft-meta` with the current values after `change` (run under the lock).
    fn persist_meta(&self, change: impl FnOnce(&mut Inner<L>) -> io::Result<()>) -> io::Result<()> {
        let _m = self
            .meta_lock
            .lock()
            .map_err(|_| io::Error::other("meta lock poisoned by a panic"))?;
        let meta = {
            let mut inner = self.lock()?;
            change(&mut inner)?;
            inner.committed_dirty = false;
            inner.meta()
        };
        meta::store(&self.dir, &meta)
    }
}

/// An entry of a group of kind `C`.
type EntryOf<C> = <C as RaftTypeConfig>::Entry;

enum FlushRequest<C: RaftTypeConfig> {
    Flush(IOFlushed<C>),
    Stop,
}

/// The flusher of a store, as [`FlushMode`] says.
enum Flusher<C: RaftTypeConfig> {
    Thread {
        tx: mpsc::Sender<FlushRequest<C>>,
        handle: Option<JoinHandle<()>>,
    },
    Task {
        tx: tokio::sync::mpsc::UnboundedSender<FlushRequest<C>>,
    },
}

impl<C: RaftTypeConfig> Flusher<C> {
    fn send(&self, request: FlushRequest<C>) -> Result<(), ()> {
        match self {
            Flusher::Thread { tx, .. } => tx.send(request).map_err(|_| ()),
            Flusher::Task { tx } => tx.send(request).map_err(|_| ()),
        }
    }
}

/// openraft's log storage for one group (a shard's by default, or the metadata group's:
/// `C`), over a [`FileLog`] (or another [`LogStore`]). See the module documentation for the
/// layout and the durability protocol.
pub struct ShardLogStore<L: LogStore + Send + 'static = FileLog, C: RaftTypeConfig = TypeConfig> {
    shared: Arc<Shared<L>>,
    flusher: Flusher<C>,
    report: LogOpenReport,
}

/// Reads entries and the vote for openraft's replication tasks; shares the store's log.
pub struct ShardLogReader<L: LogStore + Send + 'static = FileLog, C: RaftTypeConfig = TypeConfig> {
    shared: Arc<Shared<L>>,
    kind: PhantomData<fn() -> C>,
}

impl<L: LogStore + Send + 'static, C: GroupConfig> Clone for ShardLogReader<L, C> {
    fn clone(&self) -> Self {
        ShardLogReader {
            shared: self.shared.clone(),
            kind: PhantomData,
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Encodes an entry as a log record payload.
pub fn encode_entry<E: Serialize>(entry: &E) -> Vec<u8> {
    let mut out = vec![ENTRY_FORMAT];
    tradelog_codec::encode_into(entry, &mut out);
    out
}

/// Decodes a log record payload written by [`encode_entry`].
pub fn decode_entry(payload: &[u8]) -> Result<crate::Entry, String> {
    decode_entry_as(payload)
}

/// Decodes a log record payload written by [`encode_entry`] as an entry of any group kind.
pub fn decode_entry_as<E: DeserializeOwned>(payload: &[u8]) -> Result<E, String> {
    match payload.split_first() {
        Some((&ENTRY_FORMAT, rest)) => tradelog_codec::decode(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("unknown entry format {v}")),
        None => Err("empty record".into()),
    }
}

fn decode_record<C: GroupConfig>(r: &tradelog_storage::Record) -> io::Result<EntryOf<C>> {
    let entry: EntryOf<C> =
        decode_entry_as(&r.payload).map_err(|e| invalid(format!("log record {}: {e}", r.index)))?;
    if entry.index() + 1 != r.index {
        return Err(invalid(format!(
            "log record {} holds the entry of Raft index {}",
            r.index,
            entry.index()
        )));
    }
    Ok(entry)
}

/// The chain hash a log restarts from after a purge beyond its end (a snapshot installed
/// ahead of it): derived from the purged log id, the same on every replica.
fn restart_hash(purged: &LogId) -> [u8; 32] {
    let mut bytes = b"tradelog-raft restart after ".to_vec();
    tradelog_codec::encode_into(purged, &mut bytes);
    tradelog_codec::sha256(&bytes)
}

/// The chain hash a log restarts from when its first entry has Raft index `index` > 0 with
/// nothing before it (no purged id to derive one from).
fn restart_hash_at(index: u64) -> [u8; 32] {
    let mut bytes = b"tradelog-raft restart at ".to_vec();
    bytes.extend_from_slice(&index.to_le_bytes());
    tradelog_codec::sha256(&bytes)
}

impl ShardLogStore<FileLog, TypeConfig> {
    /// Opens (or creates) the log store of the shard group directory `dir`.
    ///
    /// The log recovers as [`FileLog::open`] does (torn tail cut, anything else damaged
    /// refused); `raft-meta` must be readable if it exists.
    pub fn open(dir: impl AsRef<Path>, config: LogStoreConfig) -> io::Result<Self> {
        Self::open_group(dir, config)
    }
}

impl<C: GroupConfig> ShardLogStore<FileLog, C> {
    /// Opens (or creates) the log store of a group of kind `C` in `dir`, as
    /// [`open`](ShardLogStore::open) does for a shard.
    pub fn open_group(dir: impl AsRef<Path>, config: LogStoreConfig) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let log = FileLog::open(dir.join(LOG_DIR), config.log.clone()).map_err(io::Error::other)?;
        let recovery = log.recovery().clone();
        let mut store = ShardLogStore::with_log(dir, log, config)?;
        store.report.log = recovery;
        Ok(store)
    }
}

impl<L: LogStore + Send + 'static, C: GroupConfig> ShardLogStore<L, C> {
    /// Opens the log store of the group directory `dir` over `log` (already open: a
    /// reopened [`FileLog`], or e.g. a `MemLog` that survived a simulated crash); only
    /// `raft-meta` is read from `dir`. `config.log` is not used.
    ///
    /// With [`FlushMode::Task`] this must be called inside a tokio runtime.
    pub fn with_log(dir: impl AsRef<Path>, mut log: L, config: LogStoreConfig) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let m = meta::load(&dir)?;
        let mut report = LogOpenReport::default();
        let purged = m.purged;
        // A purge beyond the end of the log that a crash interrupted: the purged id is on
        // disk, the log restart is not.
        if let Some(p) = &purged {
            if log.last_index() < p.index + 1 {
                log.reset_to(p.index + 1, restart_hash(p))
                    .map_err(io::Error::other)?;
                report.finished_purge = true;
            }
        }
        let mut last = purged;
        if log.last_index() >= log.first_index() && log.last_index() > purged.next_index() {
            let rec = log
                .read(log.last_index(), 1)
                .map_err(io::Error::other)?
                .pop()
                .expect("the last record exists");
            last = Some(decode_record::<C>(&rec)?.log_id());
        }
        let inner = Inner {
            log,
            purged,
            last,
            vote: m.vote,
            committed: m.committed,
            committed_dirty: false,
        };
        let shared = Arc::new(Shared {
            dir,
            meta_lock: Mutex::new(()),
            inner: Mutex::new(inner),
        });
        let s = shared.clone();
        let interval = config.committed_persist_interval;
        let flusher = match config.flush {
            FlushMode::Thread => {
                let (tx, rx) = mpsc::channel();
                let handle = std::thread::Builder::new()
                    .name("raft-log-flush".into())
                    .spawn(move || flusher_thread(s, rx, interval))?;
                Flusher::Thread {
                    tx,
                    handle: Some(handle),
                }
            }
            FlushMode::Task => {
                let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                runtime.spawn(flusher_task(s, rx, interval, config.flush_delay));
                Flusher::Task { tx }
            }
        };
        Ok(ShardLogStore {
            shared,
            flusher,
            report,
        })
    }

    /// What opening the store found and repaired.
    pub fn open_report(&self) -> &LogOpenReport {
        &self.report
    }

    /// The group directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Makes everything appended durable now (also done by the flusher).
    pub fn sync(&self) -> io::Result<()> {
        self.shared
            .lock()?
            .log
            .sync()
            .map(|_| ())
            .map_err(io::Error::other)
    }

    /// The metadata as currently held (vote, committed, purged).
    pub fn meta(&self) -> io::Result<RaftMeta> {
        Ok(self.shared.lock()?.meta())
    }
}

impl<L: LogStore + Send + 'static, C: RaftTypeConfig> Drop for ShardLogStore<L, C> {
    fn drop(&mut self) {
        let _ = self.flusher.send(FlushRequest::Stop);
        if let Flusher::Thread { handle, .. } = &mut self.flusher {
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// One group commit: makes the log durable once and reports every waiting append.
fn flush_waiting<L: LogStore, C: GroupConfig>(shared: &Shared<L>, waiting: Vec<IOFlushed<C>>) {
    if waiting.is_empty() {
        return;
    }
    // The fdatasync runs without the lock, so that openraft's appends (on the Raft core's
    // task) and reads (replication to followers) are not held up by the disk.
    let result = (|| {
        let ticket = shared.lock()?.log.begin_sync().map_err(io::Error::other)?;
        let waited = ticket.wait();
        shared
            .lock()?
            .log
            .finish_sync(ticket, waited)
            .map_err(io::Error::other)
    })()
    .map(|_| ())
    .map_err(|e| e.to_string());
    for cb in waiting {
        cb.io_completed(result.clone().map_err(io::Error::other));
    }
}

/// Writes `raft-meta` if the committed id changed since it was last written.
fn persist_committed<L: LogStore>(shared: &Shared<L>) {
    let dirty = shared.lock().map(|i| i.committed_dirty).unwrap_or(false);
    if dirty {
        // A failure here only loses a recovery optimisation; the next vote or purge
        // writes the file again (and reports its error).
        let _ = shared.persist_meta(|_| Ok(()));
    }
}

/// The flusher thread: group commit of appends, and lazy persistence of `committed`.
fn flusher_thread<L: LogStore, C: GroupConfig>(
    shared: Arc<Shared<L>>,
    rx: mpsc::Receiver<FlushRequest<C>>,
    interval: Duration,
) {
    let mut last_meta_write = Instant::now();
    let mut stop = false;
    while !stop {
        let mut waiting = Vec::new();
        match rx.recv_timeout(interval) {
            Ok(FlushRequest::Flush(cb)) => waiting.push(cb),
            Ok(FlushRequest::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => stop = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        loop {
            match rx.try_recv() {
                Ok(FlushRequest::Flush(cb)) => waiting.push(cb),
                Ok(FlushRequest::Stop) => stop = true,
                Err(_) => break,
            }
        }
        flush_waiting(&shared, waiting);
        if stop || last_meta_write.elapsed() >= interval {
            persist_committed(&shared);
            last_meta_write = Instant::now();
        }
    }
}

/// The flusher task ([`FlushMode::Task`]): the same loop on the runtime's clock. It yields
/// once before each flush so that appends submitted meanwhile share it.
async fn flusher_task<L: LogStore, C: GroupConfig>(
    shared: Arc<Shared<L>>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<FlushRequest<C>>,
    interval: Duration,
    delay: Duration,
) {
    let mut last_meta_write = tokio::time::Instant::now();
    let mut stop = false;
    while !stop {
        let mut waiting = Vec::new();
        match tokio::time::timeout(interval, rx.recv()).await {
            Ok(Some(FlushRequest::Flush(cb))) => waiting.push(cb),
            Ok(Some(FlushRequest::Stop)) | Ok(None) => stop = true,
            Err(_) => {}
        }
        if !waiting.is_empty() {
            if delay.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(delay).await;
            }
        }
        loop {
            match rx.try_recv() {
                Ok(FlushRequest::Flush(cb)) => waiting.push(cb),
                Ok(FlushRequest::Stop) => stop = true,
                Err(_) => break,
            }
        }
        flush_waiting(&shared, waiting);
        if stop || last_meta_write.elapsed() >= interval {
            persist_committed(&shared);
            last_meta_write = tokio::time::Instant::now();
        }
    }
}

/// `range` as `from..to` clipped to the entries present.
fn clip<L: LogStore>(inner: &Inner<L>, range: &impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    let from = from.max(inner.first_present());
    let to = to.min(inner.last.next_index());
    (from, to.max(from))
}

async fn read_entries<L: LogStore, C: GroupConfig>(
    shared: &Shared<L>,
    range: impl RangeBounds<u64>,
) -> io::Result<Vec<EntryOf<C>>> {
    let records = {
        let inner = shared.lock()?;
        let (from, to) = clip(&inner, &range);
        inner.read_records(from, to)?
    };
    records.iter().map(decode_record::<C>).collect()
}

impl<L: LogStore + Send + 'static, C: GroupConfig> RaftLogReader<C> for ShardLogReader<L, C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<EntryOf<C>>> {
        read_entries::<L, C>(&self.shared, range).await
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.shared.lock()?.vote)
    }
}

impl<L: LogStore + Send + 'static, C: GroupConfig> RaftLogReader<C> for ShardLogStore<L, C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<EntryOf<C>>> {
        read_entries::<L, C>(&self.shared, range).await
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.shared.lock()?.vote)
    }
}

impl<L: LogStore + Send + 'static, C: GroupConfig> RaftLogStorage<C> for ShardLogStore<L, C> {
    type LogReader = ShardLogReader<L, C>;

    async fn get_log_state(&mut self) -> io::Result<LogState<C>> {
        let inner = self.shared.lock()?;
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: inner.last,
        })
    }

    async fn get_log_reader(&mut self) -> ShardLogReader<L, C> {
        ShardLogReader {
            shared: self.shared.clone(),
            kind: PhantomData,
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let vote = *vote;
        self.shared.persist_meta(|inner| {
            inner.log.sync().map_err(io::Error::other)?;
            inner.vote = Some(vote);
            Ok(())
        })
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        let mut inner = self.shared.lock()?;
        if inner.committed != committed {
            inner.committed = committed;
            inner.committed_dirty = true;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        let inner = self.shared.lock()?;
        let Some(c) = inner.committed else {
            return Ok(None);
        };
        // Only an id the log still holds (or one covered by the purged prefix) is
        // reported: the saved value may be ahead of what reached this replica's disk.
        if inner.purged.is_some_and(|p| c.index <= p.index) {
            return Ok(Some(c));
        }
        if c.index >= inner.last.next_index() || c.index < inner.first_present() {
            return Ok(None);
        }
        let rec = inner.read_records(c.index, c.index + 1)?;
        let held = decode_record::<C>(&rec[0])?.log_id();
        Ok((held == c).then_some(c))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> io::Result<()>
    where
        I: IntoIterator<Item = EntryOf<C>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<EntryOf<C>> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id()) else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let encoded: Vec<Vec<u8>> = entries.iter().map(encode_entry).collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|e| e.as_slice()).collect();
        {
            let mut inner = self.shared.lock()?;
            let mut next = inner.last.next_index();
            let first = entries[0].index();
            if inner.is_empty() && first > next {
                // An empty store may begin anywhere after its purged prefix (openraft's
                // suite relies on it): the log restarts just before the first entry.
                inner
                    .log
                    .reset_to(first, restart_hash_at(first))
                    .map_err(io::Error::other)?;
                next = first;
            }
            for (k, e) in entries.iter().enumerate() {
                if e.index() != next + k as u64 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "append would leave a hole: entry {} where {} is next",
                            e.log_id(),
                            next + k as u64
                        ),
                    ));
                }
            }
            if inner.log.last_index() != next {
                // Only reachable after a truncation of everything in a log that restarted
                // at a later index: the log cannot restart backwards.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "cannot append Raft index {next}: the log continues at {}",
                        inner.log.last_index()
                    ),
                ));
            }
            inner.log.append(&refs).map_err(io::Error::other)?;
            inner.last = Some(last);
        }
        self.flusher
            .send(FlushRequest::Flush(callback))
            .map_err(|_| io::Error::other("log flusher stopped"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let mut inner = self.shared.lock()?;
        let keep_to = last_log_id.next_index(); // Raft indexes below this stay.
        if keep_to >= inner.last.next_index() {
            return Ok(());
        }
        if keep_to < inner.purged.next_index() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "truncating after {last_log_id:?} would remove purged entries (purged up to {:?})",
                    inner.purged
                ),
            ));
        }
        if let Some(keep) = last_log_id
            .as_ref()
            .filter(|k| k.index >= inner.first_present())
        {
            if inner.purged.as_ref() != Some(keep) {
                let rec = inner.read_records(keep.index, keep.index + 1)?;
                let held = decode_record::<C>(&rec[0])?.log_id();
                if held != *keep {
                    return Err(invalid(format!(
                        "truncate after {keep}: the log holds {held} at that index"
                    )));
                }
            }
        }
        // Log record `keep_to` holds Raft index `keep_to - 1`, the last one kept.
        let keep_record = keep_to.max(inner.log.first_index() - 1);
        inner
            .log
            .truncate_after(keep_record)
            .map_err(io::Error::other)?;
        inner.log.sync().map_err(io::Error::other)?;
        inner.last = last_log_id
            .filter(|k| k.index >= inner.first_present())
            .or(inner.purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        {
            let inner = self.shared.lock()?;
            if inner.purged.is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
        }
        // The purged id is durable first: a crash after it leaves entries that are hidden
        // (or a log restart that open finishes), never a log that claims entries it lost.
        self.shared.persist_meta(|inner| {
            inner.log.sync().map_err(io::Error::other)?;
            inner.purged = Some(log_id);
            Ok(())
        })?;
        let mut inner = self.shared.lock()?;
        if inner.last.next_index() <= log_id.index + 1 {
            // Nothing after it is left: the log restarts after the purged entry.
            inner
                .log
                .reset_to(log_id.index + 1, restart_hash(&log_id))
                .map_err(io::Error::other)?;
            inner.last = Some(log_id);
        } else {
            inner
                .log
                .archive_before(log_id.index + 2)
                .map_err(io::Error::other)?;
        }
        Ok(())
    }
}
