//! Errors of the log.

use std::io;
use std::path::PathBuf;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused an operation on `path`.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Stored bytes are not a valid log: a record or a segment is damaged, missing or
    /// does not continue the one before it.
    #[error("corrupt log: {} at byte {offset} (index {index}): {reason}", file.display())]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset in that file of the bad header or record.
        offset: u64,
        /// The index the bad record has or should have had.
        index: u64,
        /// What is wrong.
        reason: CorruptReason,
    },
    /// A record is larger than the configured limit.
    #[error("record of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An index outside what the operation accepts.
    #[error("index {index} is out of range (the live log holds {first}..={last})")]
    OutOfRange {
        /// The index asked for.
        index: u64,
        /// The first live index.
        first: u64,
        /// The last index.
        last: u64,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Another process (or another `FileLog` in this one) has the log open.
    #[error("{} is locked by another user of the log", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An earlier write or sync failed, so what is on disk is unknown; reopen the log.
    #[error("the log refuses writes after an earlier I/O failure ({0}); reopen it")]
    Poisoned(String),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    /// True for [`StorageError::Corrupt`].
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StorageError::Corrupt { .. })
    }
}

/// What exactly is wrong in a [`StorageError::Corrupt`] (or a torn tail).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    /// The file is shorter than a segment header.
    #[error("file too short for a segment header ({len} bytes)")]
    ShortHeader {
        /// File length.
        len: u64,
    },
    /// The header does not start with the segment magic.
    #[error("bad segment magic")]
    BadMagic,
    /// The header's checksum does not match.
    #[error("segment header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// A format version this build does not read.
    #[error("unsupported segment format version {0}")]
    UnsupportedVersion(u32),
    /// Unknown flag bits or non-zero reserved bytes in the header.
    #[error("unknown segment flags {0:#x}")]
    UnknownFlags(u32),
    /// The header's first index differs from the one in the file name.
    #[error("header says first index {header}, file name says {name}")]
    NameMismatch {
        /// From the file name.
        name: u64,
        /// From the header.
        header: u64,
    },
    /// A first index of 0 or above [`INDEX_MAX`](crate::INDEX_MAX).
    #[error("impossible first index {0}")]
    BadFirstIndex(u64),
    /// The segment file is larger than a segment can be (4 GiB).
    #[error("segment file of {len} bytes is larger than 4 GiB")]
    SegmentTooLarge {
        /// File length.
        len: u64,
    },
    /// A record length that cannot be right (under 40).
    #[error("impossible record length {0}")]
    BadLength(u32),
    /// The record runs past the end of the file.
    #[error("record of {needed} bytes runs past the end of the file ({available} bytes left)")]
    Truncated {
        /// Bytes the record needs from its start.
        needed: u64,
        /// Bytes left in the file from its start.
        available: u64,
    },
    /// The record's checksum does not match its bytes.
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// The record has a valid checksum but not the index that comes next.
    #[error("expected index {expected}, found {found}")]
    IndexMismatch {
        /// The index that should be here.
        expected: u64,
        /// The one stored.
        found: u64,
    },
    /// The record has a valid checksum but its chain hash is not SHA-256(previous chain ||
    /// index || payload): the record (or one before it) was replaced.
    #[error(
        "hash chain broken: stored chain hash differs from SHA-256(previous || index || payload)"
    )]
    ChainMismatch,
    /// Non-zero bytes after the end-of-records marker.
    #[error("non-zero bytes after the last record (first at byte {at})")]
    NonZeroAfterEnd {
        /// Offset of the first non-zero byte.
        at: u64,
    },
    /// A segment does not start where the previous one ended.
    #[error("segment starts at index {found}, expected {expected}")]
    SegmentGap {
        /// The previous segment's last index + 1.
        expected: u64,
        /// This segment's first index.
        found: u64,
    },
    /// A segment's previous-hash is not the previous segment's last chain hash.
    #[error(
        "segment's previous chain hash differs from the last chain hash of the segment before"
    )]
    SegmentChainBreak,
    /// The earliest segment of the whole history does not start at index 1 (nor after a
    /// snapshot restart): the segments before it are missing.
    #[error("history starts at index {first}: earlier segments are missing")]
    HistoryMissing {
        /// The earliest index found.
        first: u64,
    },
    /// The archive holds segments but the live directory has none: the live log was lost
    /// (a new, empty log is never created over an existing history).
    #[error("the archive holds segments but the live directory has none")]
    NoLiveSegment,
    /// Two segment files with the same first index (live and archived).
    #[error("another segment file also starts at this index: {}", other.display())]
    DuplicateSegment {
        /// The other file.
        other: PathBuf,
    },
}
