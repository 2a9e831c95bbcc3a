//! Offline verification of a whole log directory: archive and live segments.

use crate::error::{CorruptReason, StorageError};
use crate::file::{check_continues, TornTail};
use crate::format::{list_segments, nonzero_extent, open_segment, scan_segment, GENESIS_HASH};
use crate::{ChainHash, ARCHIVE_DIR};
use std::path::{Path, PathBuf};

/// One segment file as found by [`verify_dir`] or listed by
/// [`FileLog::segments`](crate::FileLog::segments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The file.
    pub path: PathBuf,
    /// It is in `DIR/archive/`.
    pub archived: bool,
    /// Index of its first record.
    pub first_index: u64,
    /// Number of valid records in it.
    pub records: u64,
    /// Byte offset just after its last valid record.
    pub end: u64,
}

/// What [`verify_dir`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every segment, archived then live, in index order.
    pub segments: Vec<SegmentInfo>,
    /// First index of the history (1, or the first index after a snapshot restart).
    pub first_index: u64,
    /// Last valid index (`first_index - 1` when there is no record).
    pub last_index: u64,
    /// Number of valid records.
    pub records: u64,
    /// Chain hash of the last valid record: compare it with a copy kept elsewhere (another
    /// replica, a snapshot, a published checkpoint) to detect a rewritten history.
    pub last_chain_hash: ChainHash,
    /// First indexes of segments that start a new chain after a snapshot was installed
    /// ([`LogStore::reset_to`](crate::LogStore::reset_to)): the chain is not checked across
    /// these points.
    pub restarts: Vec<u64>,
    /// A torn tail at the end of the last live segment (writes that a crash interrupted;
    /// opening the log cuts it). Anywhere else the same damage is an error.
    pub torn_tail: Option<TornTail>,
}

/// Checks every segment of the log in `dir` (in `dir/archive/` and `dir`), read only:
/// headers, record lengths, CRCs, index continuity, and the hash chain from index 1 (or a
/// restart) across all segments.
///
/// The first problem found is returned as [`StorageError::Corrupt`] with the file, byte
/// offset, index and reason; the only damage tolerated is a torn tail of the last live
/// segment, reported in [`VerifyReport::torn_tail`]. Segments moved to `dir/truncated/`
/// (discarded suffixes) are not part of the history and are not checked.
pub fn verify_dir(dir: impl AsRef<Path>) -> Result<VerifyReport, StorageError> {
    let dir = dir.as_ref();
    let mut all: Vec<(u64, PathBuf, bool)> = Vec::new();
    let archive = dir.join(ARCHIVE_DIR);
    if archive.is_dir() {
        all.extend(
            list_segments(&archive)?
                .into_iter()
                .map(|(first, path)| (first, path, true)),
        );
    }
    all.extend(
        list_segments(dir)?
            .into_iter()
            .map(|(first, path)| (first, path, false)),
    );
    all.sort_by_key(|(first, _, archived)| (*first, !*archived));

    let mut report = VerifyReport {
        segments: Vec::with_capacity(all.len()),
        first_index: 1,
        last_index: 0,
        records: 0,
        last_chain_hash: GENESIS_HASH,
        restarts: Vec::new(),
        torn_tail: None,
    };
    let n = all.len();
    for (i, (first, path, archived)) in all.iter().enumerate() {
        if i > 0 && all[i - 1].0 == *first {
            return Err(StorageError::Corrupt {
                file: path.clone(),
                offset: 0,
                index: *first,
                reason: CorruptReason::DuplicateSegment {
                    other: all[i - 1].1.clone(),
                },
            });
        }
        let seg = open_segment(path, *first, false)?;
        if seg.header.is_restart() {
            report.restarts.push(*first);
        }
        if i == 0 {
            let genesis = seg.header.first_index == 1 && seg.header.prev_hash == GENESIS_HASH;
            if !genesis && !seg.header.is_restart() {
                return Err(StorageError::Corrupt {
                    file: path.clone(),
                    offset: 0,
                    index: *first,
                    reason: CorruptReason::HistoryMissing { first: *first },
                });
            }
            report.first_index = *first;
            report.last_index = *first - 1;
        } else {
            check_continues(
                report.last_index,
                &report.last_chain_hash,
                path,
                &seg.header,
            )?;
        }
        let scan = scan_segment(&seg, false)?;
        if let Some(stop) = scan.stop {
            if stop.hard || *archived || i + 1 < n {
                return Err(stop.into_error(path));
            }
            let bytes = nonzero_extent(&seg.file, stop.offset, seg.len)
                .map_err(|e| StorageError::io(path, e))?;
            report.torn_tail = Some(TornTail {
                file: path.clone(),
                offset: stop.offset,
                index: stop.index,
                reason: stop.reason,
                bytes,
            });
        }
        report.segments.push(SegmentInfo {
            path: path.clone(),
            archived: *archived,
            first_index: *first,
            records: scan.count,
            end: scan.end,
        });
        report.records += scan.count;
        report.last_index = *first + scan.count - 1;
        report.last_chain_hash = scan.last_hash;
    }
    Ok(report)
}

/// Checks the log in `dir` with [`verify_dir`], then reads it back, read only, and calls
/// `visit` with every record of the history (archive, then live) in index order, until
/// `visit` returns `false`. A torn tail of the last live segment is not visited. This is
/// how offline tools replay a shard's whole history.
pub fn for_each_record(
    dir: impl AsRef<Path>,
    mut visit: impl FnMut(crate::Record) -> bool,
) -> Result<VerifyReport, StorageError> {
    let report = verify_dir(dir)?;
    for seg in &report.segments {
        let bytes = std::fs::read(&seg.path).map_err(|e| StorageError::io(&seg.path, e))?;
        let end = (seg.end as usize).min(bytes.len());
        let mut pos = crate::SEGMENT_HEADER_BYTES as usize;
        for k in 0..seg.records {
            let index = seg.first_index + k;
            let (record, len) = crate::format::decode_frame(&bytes[pos.min(end)..end], index)
                .map_err(|reason| StorageError::Corrupt {
                    file: seg.path.clone(),
                    offset: pos as u64,
                    index,
                    reason,
                })?;
            pos += len;
            if !visit(record) {
                return Ok(report);
            }
        }
    }
    Ok(report)
}
