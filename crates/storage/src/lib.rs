//! The durable command log of one tradelog shard.
//!
//! A shard's source of truth is an ordered log of opaque records (in practice the canonical
//! encoding of the engine's `Input`s, or, once replication lands, of Raft entries that carry
//! them). This crate stores that log and nothing else.
//!
//! Owns:
//!
//! * **Log files**: segmented, append-only, preallocated files
//!   `DIR/segment-{first_index:020}.log` (format below), the `DIR/archive/` directory that
//!   old segments move to, and the `DIR/LOCK` file that keeps two processes off one log
//!   (and offline readers off a log being written: [`lock_shared`]).
//! * **Durability**: appends are buffered; [`LogStore::sync`] is the group commit (one
//!   `fdatasync` for everything appended since the previous sync) and the only thing that
//!   advances [`LogStore::durable_index`]. An index is never reported durable before it is.
//! * **Recovery**: [`FileLog::open`] validates every record, cuts a torn tail of the last
//!   segment (and reports how many bytes it cut), and refuses to open anything else that is
//!   wrong, with a typed [`StorageError::Corrupt`] naming file, byte offset and index.
//! * **Reading while another writes**: [`LogReader`] reads a log directory (archive and
//!   live) without its lock and without writing, for history queries while the shard runs;
//!   it checks every record it returns and is only asked for indexes known durable.
//! * **The hash chain**: every record carries `chain = SHA-256(previous chain || index (u64
//!   LE) || payload)` ([`chain_next`]), starting from [`GENESIS_HASH`], so the whole history
//!   (archived and live) is tamper-evident and [`verify_dir`] checks it offline.
//!
//! Must never depend on: the engine or its state machine (records are opaque bytes), the
//! network, Raft library types, async runtimes, clocks. The Raft adapter wraps a
//! [`LogStore`]; this crate does not know Raft exists.
//!
//! # Example
//!
//! ```
//! use tradelog_storage::{verify_dir, FileLog, FileLogConfig, LogStore};
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path();
//! let config = FileLogConfig {
//!     segment_bytes_max: 1 << 20,
//!     record_bytes_max: 1 << 16,
//!     ..FileLogConfig::default()
//! };
//! let mut log = FileLog::open(dir, config)?;
//! assert_eq!(log.append(&[b"first".as_slice(), b"second"])?, 1..3); // buffered
//! assert_eq!(log.durable_index(), 0);
//! assert_eq!(log.sync()?, 2); // one fdatasync for both
//! assert_eq!(log.read(2, 10)?[0].payload, b"second");
//! log.close()?;
//! let report = verify_dir(dir)?; // what `tradelog verify` runs
//! assert_eq!((report.last_index, report.torn_tail), (2, None));
//! # Ok::<(), tradelog_storage::StorageError>(())
//! ```
//!
//! # The API and how Raft will use it
//!
//! [`LogStore`] is a synchronous, object-safe trait with two implementations: [`FileLog`]
//! (real files) and [`MemLog`] (memory, same semantics, for tests and simulations). Both run
//! the same behavioural suite, `conformance` (feature `testing`). The operations map onto
//! openraft's log storage without changes to this crate:
//!
//! | Raft log storage | here |
//! |---|---|
//! | append entries, then call back once they are on disk | [`LogStore::append`] + [`LogStore::sync`] (group commit) |
//! | get log state (last purged, last) | [`LogStore::first_index`] - 1, [`LogStore::last_index`] |
//! | read a range of entries | [`LogStore::read`] |
//! | truncate a conflicting suffix (`truncate(since)`) | [`LogStore::truncate_after`]`(since - 1)`, durable on return |
//! | purge up to `upto` | [`LogStore::archive_before`]`(upto + 1)` (moved to `archive/`, never deleted) |
//! | install a snapshot beyond the log | [`LogStore::reset_to`]`(snapshot index, snapshot chain hash)` |
//!
//! The Raft term lives inside the payload (the adapter encodes entries); the vote and the
//! committed index are small separate files the adapter owns. That adapter is
//! `tradelog-raft`'s `ShardLogStore` (Raft index `i` is record `i + 1`; a purge that stops
//! inside the segment being written hides the records it cannot archive yet).
//!
//! # File format (version 1)
//!
//! A segment file is preallocated to [`FileLogConfig::segment_bytes_max`] bytes (zeros) and
//! starts with a 64-byte header:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic [`SEGMENT_MAGIC`] |
//! | 8..12 | format version [`SEGMENT_VERSION`] (u32 LE) |
//! | 12..16 | flags (u32 LE): bit 0 = [`SEGMENT_FLAG_RESTART`], all others zero |
//! | 16..24 | first index (u64 LE), equal to the number in the file name |
//! | 24..56 | chain hash of the record before the first one |
//! | 56..60 | zero |
//! | 60..64 | CRC32C of bytes 0..60 (u32 LE) |
//!
//! Records follow back to back ([`RECORD_HEADER_BYTES`] of framing each):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | `len` (u32 LE) = 40 + payload length: the bytes covered by the CRC. Never 0 |
//! | 4..8 | CRC32C (u32 LE) of the next `len` bytes |
//! | 8..16 | index (u64 LE) |
//! | 16..48 | chain hash |
//! | 48.. | payload |
//!
//! A `len` of 0 (the preallocated zeros) marks the end of the segment's records; every byte
//! after the end is zero. A segment with the restart flag begins a new chain after
//! [`LogStore::reset_to`] (a snapshot installed beyond the log): its first index and previous
//! hash are taken as given rather than checked against the segment before it.
//!
//! # Durability protocol ([`FileLog`])
//!
//! * **Append** encodes records into a write buffer, handed to the kernel (`pwrite`, no
//!   sync) whenever it exceeds [`FileLogConfig::write_buffer_bytes`].
//! * **Sync** writes the buffer and `fdatasync`s the active segment: one sync per group,
//!   however many records. Only then does `durable_index` move. Segments are preallocated,
//!   so the file size never changes on the commit path.
//! * **Rotation** (the next record would not fit): the full segment is written and
//!   `fdatasync`ed first (so only the last segment can ever have a torn tail), then the new
//!   segment is created as `segment-….log.tmp`, preallocated, given its header, synced,
//!   renamed into place, and the directory is `fsync`ed, all before any record goes into
//!   it; a later sync therefore never needs a directory sync. With
//!   [`FileLogConfig::spare_segments`] (the default) the new segment is instead the
//!   zero-filled spare that a background thread wrote once the active segment was half
//!   full (`DIR/`[`SPARE_FILE`]), given its header, synced and renamed the same way; its
//!   zeros are written, not merely allocated, so syncs into it update no metadata
//!   (`src/spare.rs` has the measurement). A spare that is not ready is not waited for.
//! * **Truncate** moves whole discarded segments out (newest first), `fsync`s the
//!   directory, overwrites the discarded bytes of the cut segment with zeros and
//!   `fdatasync`s it. (Records only in the write buffer are simply dropped.)
//! * **Archive / reset** are renames followed by directory `fsync`s; a reset first creates
//!   its restart segment, so a crash half-way is finished on the next open.
//! * **Open** `fdatasync`s the last segment and the directory, so what it finds (perhaps
//!   written by a process that died before syncing) is durable before it is reported so.
//!
//! After a failed write or sync the log refuses further writes ([`StorageError::Poisoned`]):
//! after an `fsync` error the page cache can no longer be trusted, so the only safe way on
//! is to reopen and recover from the files.
//!
//! # Recovery rules ([`FileLog::open`])
//!
//! Segments are scanned in index order. Every header is checked (magic, version, flags,
//! CRC, first index = file name), consecutive segments must continue each other (first
//! index = previous last + 1 and previous-hash = previous last chain hash), and every record
//! is checked: sane length (at least 40, inside the file), CRC, index = expected, chain =
//! [`chain_next`] of the previous one.
//!
//! * A record with a bad length, a bad CRC or one cut by the end of the file, or non-zero
//!   bytes after the end marker, in the **last** segment, is a torn tail: everything from it
//!   to the last non-zero byte of the file is zeroed, and [`RecoveryReport::torn_tail`] says
//!   where and how many bytes. Writes that were never synced can only damage the last
//!   segment, because rotation syncs a segment before the next one is created.
//! * The same in an **earlier** segment, any bad header, a record whose CRC is valid but
//!   whose index or chain hash is wrong (a torn write cannot produce one), or segments that
//!   do not continue each other, is corruption: [`StorageError::Corrupt`] with the file, the
//!   byte offset, the index and the reason. Nothing is ever silently accepted.
//!
//! The library never deletes a record: [`LogStore::archive_before`] moves whole segments to
//! `DIR/archive/`, and segments that [`LogStore::truncate_after`] discards entirely move to
//! `DIR/truncated/`. (Only leftover `*.tmp` files of interrupted segment creations, which
//! never held a record, are removed on open.)

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod atomic;
#[cfg(feature = "testing")]
pub mod conformance;
mod error;
mod file;
mod format;
mod mem;
mod reader;
mod spare;
mod verify;

pub use atomic::{
    remove_gradually, sync_dir, write_atomically, REMOVE_SHRINK_CHUNK_BYTES, WRITE_SYNC_CHUNK_BYTES,
};
pub use error::{CorruptReason, StorageError};
pub use file::{lock_shared, FileLog, FileLogConfig, ReadLock, RecoveryReport, TornTail};
pub use format::{
    chain_next, segment_file_name, GENESIS_HASH, RECORD_HEADER_BYTES, SEGMENT_FLAG_RESTART,
    SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, SEGMENT_VERSION,
};
pub use mem::MemLog;
pub use reader::{LogReader, READER_MARK_EVERY_RECORDS};
pub use spare::SPARE_FILE;
pub use verify::{for_each_record, verify_dir, SegmentInfo, VerifyReport};

use std::ops::Range;

/// Default largest payload of one record (16 MiB). See [`FileLogConfig::record_bytes_max`].
pub const RECORD_BYTES_MAX: usize = 16 << 20;

/// Default size of a segment file (64 MiB). See [`FileLogConfig::segment_bytes_max`].
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// Default size of the write buffer (1 MiB) after which appends are handed to the kernel
/// even before a sync. See [`FileLogConfig::write_buffer_bytes`].
pub const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Largest index a log accepts (2^63 - 1): [`LogStore::reset_to`] refuses to go beyond it
/// and a segment file claiming to start beyond it is corrupt, so index arithmetic never
/// overflows.
pub const INDEX_MAX: u64 = u64::MAX / 2;

/// Name of the archive directory inside a log directory.
pub const ARCHIVE_DIR: &str = "archive";

/// Name of the directory that segments discarded whole by [`LogStore::truncate_after`] move to.
pub const TRUNCATED_DIR: &str = "truncated";

/// A SHA-256 chain hash.
pub type ChainHash = [u8; 32];

/// A group commit in progress (see [`LogStore::begin_sync`]): the file to `fdatasync`
/// (a duplicate of the log's descriptor) and what it covers.
#[derive(Debug)]
pub struct SyncTicket {
    file: Option<(std::fs::File, std::path::PathBuf)>,
    upto: u64,
    truncations: u64,
}

impl SyncTicket {
    /// A ticket with nothing left to wait for: everything up to `upto` is durable.
    pub fn done(upto: u64) -> SyncTicket {
        SyncTicket {
            file: None,
            upto,
            truncations: 0,
        }
    }

    pub(crate) fn file(
        file: std::fs::File,
        path: std::path::PathBuf,
        upto: u64,
        truncations: u64,
    ) -> SyncTicket {
        SyncTicket {
            file: Some((file, path)),
            upto,
            truncations,
        }
    }

    /// The last index it covers.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    pub(crate) fn truncations(&self) -> u64 {
        self.truncations
    }

    /// Makes the covered records durable (`fdatasync`; blocking, and needs no access to
    /// the log).
    pub fn wait(&self) -> Result<(), StorageError> {
        match &self.file {
            Some((f, path)) => f.sync_data().map_err(|e| StorageError::io(path, e)),
            None => Ok(()),
        }
    }
}

/// One record read back from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its index (the first record of a log is 1).
    pub index: u64,
    /// `SHA-256(chain hash of index - 1 || index (u64 LE) || payload)`.
    pub chain_hash: ChainHash,
    /// The opaque bytes that were appended.
    pub payload: Vec<u8>,
}

/// The durable, ordered, hash-chained log of one shard, over opaque records.
///
/// Indexes are consecutive and start at 1 (or after the index given to
/// [`reset_to`](LogStore::reset_to)). The live log holds
/// `first_index()..=last_index()`; it is empty when `first_index() == last_index() + 1`.
/// `durable_index() <= last_index()` always, and every index up to `durable_index()` is on
/// stable storage: it survives a crash (power loss) of the process or the machine.
///
/// Errors from [`append`](LogStore::append), [`sync`](LogStore::sync) and the other writing
/// operations that come from the storage itself (not from bad arguments) leave the log in an
/// unknown state; a [`FileLog`] then refuses all further writes
/// ([`StorageError::Poisoned`]) and must be reopened, which recovers from the files.
pub trait LogStore {
    /// Appends `entries` after the last index and returns the indexes they were given.
    ///
    /// Buffered: nothing is durable until [`sync`](LogStore::sync) returns (although an
    /// implementation may make records durable earlier, e.g. when it rotates a segment).
    /// All-or-nothing for bad arguments: if one entry is larger than the record limit
    /// ([`StorageError::TooLarge`]) none is appended. An empty slice returns an empty range.
    fn append(&mut self, entries: &[&[u8]]) -> Result<Range<u64>, StorageError>;

    /// Group commit: makes every record appended so far durable (one `fdatasync` for all of
    /// them) and returns the durable index, which is then `last_index()`.
    fn sync(&mut self) -> Result<u64, StorageError>;

    /// First half of a group commit split in two, so that the `fdatasync` runs without
    /// holding the log (appends and reads go on meanwhile): hands buffered records to the
    /// operating system and returns a ticket covering every record appended so far.
    /// [`SyncTicket::wait`] makes them durable; [`finish_sync`](LogStore::finish_sync)
    /// records the outcome. Default: a whole [`sync`](LogStore::sync) now, and a ticket
    /// with nothing left to wait for.
    fn begin_sync(&mut self) -> Result<SyncTicket, StorageError> {
        let durable = self.sync()?;
        Ok(SyncTicket::done(durable))
    }

    /// Second half of a split sync: `waited` is the result of `ticket.wait()`. On success
    /// the records the ticket covers are durable (unless the log was truncated
    /// meanwhile: then only what the truncation left durable is); a failure poisons the
    /// log like a failed [`sync`](LogStore::sync). Returns the durable index.
    fn finish_sync(
        &mut self,
        ticket: SyncTicket,
        waited: Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        let _ = ticket;
        waited?;
        Ok(self.durable_index())
    }

    /// Reads up to `max` records starting at `from`.
    ///
    /// `from` must be in `first_index()..=last_index() + 1` ([`StorageError::OutOfRange`]
    /// otherwise); the answer is shorter than `max` when the log ends. Records that are not
    /// yet durable are readable too. A record found damaged on disk is
    /// [`StorageError::Corrupt`].
    fn read(&self, from: u64, max: usize) -> Result<Vec<Record>, StorageError>;

    /// The first index of the live log (records before it were archived).
    fn first_index(&self) -> u64;

    /// The last index appended (0 for a new log).
    fn last_index(&self) -> u64;

    /// Every index up to this one is on stable storage.
    fn durable_index(&self) -> u64;

    /// The chain hash of record `index`, for `index` in `first_index() - 1..=last_index()`
    /// (the hash before the first live record is kept, so `chain_hash(0)` of a new log is
    /// [`GENESIS_HASH`]).
    fn chain_hash(&self, index: u64) -> Result<ChainHash, StorageError>;

    /// Removes every record after `index`, durably: once this returns, no crash can bring
    /// them back (Raft replaces a conflicting suffix this way, including entries that were
    /// synced but not committed). Records up to `index` keep their durability.
    ///
    /// `index >= last_index()` is a no-op; `index < first_index() - 1` (archived records)
    /// is [`StorageError::OutOfRange`].
    fn truncate_after(&mut self, index: u64) -> Result<(), StorageError>;

    /// Moves records before `index` out of the live log, into the archive (never deleted),
    /// and returns the new first index.
    ///
    /// Works in whole storage units (a [`FileLog`] moves whole segments, never its last
    /// one), so it may keep records below `index`, never more than asked: the new first
    /// index is at most `max(old first index, index)`. Only durable records are archived.
    fn archive_before(&mut self, index: u64) -> Result<u64, StorageError>;

    /// Restarts the log after `index`, whose chain hash is `chain_hash` (a snapshot covering
    /// everything up to `index` was installed): every live record moves to the archive and
    /// the next append gets `index + 1`. Durable on return.
    ///
    /// `index < last_index()` (truncate first) or `index >= INDEX_MAX` is
    /// [`StorageError::OutOfRange`].
    fn reset_to(&mut self, index: u64, chain_hash: ChainHash) -> Result<(), StorageError>;
}

impl<L: LogStore + ?Sized> LogStore for Box<L> {
    fn append(&mut self, entries: &[&[u8]]) -> Result<Range<u64>, StorageError> {
        (**self).append(entries)
    }
    fn sync(&mut self) -> Result<u64, StorageError> {
        (**self).sync()
    }
    fn begin_sync(&mut self) -> Result<SyncTicket, StorageError> {
        (**self).begin_sync()
    }
    fn finish_sync(
        &mut self,
        ticket: SyncTicket,
        waited: Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        (**self).finish_sync(ticket, waited)
    }
    fn read(&self, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        (**self).read(from, max)
    }
    fn first_index(&self) -> u64 {
        (**self).first_index()
    }
    fn last_index(&self) -> u64 {
        (**self).last_index()
    }
    fn durable_index(&self) -> u64 {
        (**self).durable_index()
    }
    fn chain_hash(&self, index: u64) -> Result<ChainHash, StorageError> {
        (**self).chain_hash(index)
    }
    fn truncate_after(&mut self, index: u64) -> Result<(), StorageError> {
        (**self).truncate_after(index)
    }
    fn archive_before(&mut self, index: u64) -> Result<u64, StorageError> {
        (**self).archive_before(index)
    }
    fn reset_to(&mut self, index: u64, chain_hash: ChainHash) -> Result<(), StorageError> {
        (**self).reset_to(index, chain_hash)
    }
}

/// Checks `from` against a live range and returns the last index to read (exclusive end).
pub(crate) fn read_bounds(
    from: u64,
    max: usize,
    first: u64,
    last: u64,
) -> Result<Range<u64>, StorageError> {
    if from < first || from > last.saturating_add(1) || from == 0 {
        return Err(StorageError::OutOfRange {
            index: from,
            first,
            last,
        });
    }
    let end = from.saturating_add(max as u64).min(last + 1);
    Ok(from..end)
}
