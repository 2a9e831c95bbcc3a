//! [`LogReader`]: read-only access to a log directory while its writer goes on appending.

use crate::error::{CorruptReason, StorageError};
use crate::format::{chain_next, decode_frame, list_segments, open_segment, RECORD_HEADER_BYTES};
use crate::{ChainHash, Record, ARCHIVE_DIR, SEGMENT_HEADER_BYTES};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The reader remembers where every this-many-th record of a segment starts (and the chain
/// hash before it), so a read seeks to at most this many records before the one asked for.
pub const READER_MARK_EVERY_RECORDS: u64 = 1_024;

/// Bytes a read fetches from a segment file at a time (more when one record is larger).
const READ_WINDOW_BYTES: usize = 1 << 20;

/// One segment file as the reader knows it.
struct Seg {
    first_index: u64,
    path: PathBuf,
    /// File length (segments are preallocated: it does not change).
    len: u64,
    restart: bool,
    /// For a restart: whether the record before it is present (learnt by `run_start`).
    continues: Option<bool>,
    /// A record of it was read (so it holds durable records that never change).
    read_any: bool,
    prev_hash: ChainHash,
    /// `marks[k]`: byte offset of record `first_index + k * READER_MARK_EVERY_RECORDS` and
    /// the chain hash of the record before it. `marks[0]` is the first record.
    marks: Vec<(u64, ChainHash)>,
}

/// Reads the records of a log directory (archive and live segments) without locking it or
/// writing anything, while a [`FileLog`](crate::FileLog) in this or another process appends
/// to it. This is how history is read back while a shard keeps running.
///
/// The reader knows nothing about what the writer has made durable: a caller only asks for
/// indexes it knows are durable (the writer reported them synced). Records up to such an
/// index never change (a running shard never truncates), so the reader can check and
/// remember them: every record read is checked (length, CRC32C, index) and its chain hash
/// is recomputed from the one before, from the segment's header on; damage is
/// [`StorageError::Corrupt`] naming file, offset and index.
///
/// Reads are sequential scans from the nearest remembered position (one every
/// [`READER_MARK_EVERY_RECORDS`] records, learnt while reading), so the first read deep into
/// a segment reads the segment up to there once.
pub struct LogReader {
    dir: PathBuf,
    segments: Mutex<Vec<Seg>>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader").field("dir", &self.dir).finish()
    }
}

impl LogReader {
    /// A reader of the log in `dir` (which must exist). Opens no lock and writes nothing.
    pub fn open(dir: impl AsRef<Path>) -> Result<LogReader, StorageError> {
        let reader = LogReader {
            dir: dir.as_ref().to_path_buf(),
            segments: Mutex::new(Vec::new()),
        };
        reader.refresh(&mut reader.lock())?;
        Ok(reader)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Seg>> {
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first index of the history (1 unless the log restarted after a snapshot), or
    /// `None` when the directory holds no segment yet.
    pub fn first_index(&self) -> Option<u64> {
        self.lock().first().map(|s| s.first_index)
    }

    /// Where the newest run of consecutive records starts: the log's first index, unless
    /// the log restarted ([`LogStore::reset_to`](crate::LogStore::reset_to)) with a gap
    /// before the restart (records missing), in which case the first index of the newest
    /// such restart. A restart right after the last record (a purge of everything up to
    /// it) continues the run. `None` when the directory holds no segment yet.
    pub fn run_start(&self) -> Result<Option<u64>, StorageError> {
        let (first, restarts) = {
            let mut segs = self.lock();
            self.refresh(&mut segs)?;
            let Some(first) = segs.first().map(|s| s.first_index) else {
                return Ok(None);
            };
            let v: Vec<(u64, Option<bool>)> = segs
                .iter()
                .rev()
                .filter(|s| s.restart && s.first_index > first)
                .map(|s| (s.first_index, s.continues))
                .collect();
            (first, v)
        };
        for (r, known) in restarts {
            let continues = match known {
                Some(c) => c,
                None => match self.read(r - 1, r - 1, 1) {
                    Ok(_) => true,
                    Err(StorageError::OutOfRange { .. }) => false,
                    Err(e) => return Err(e),
                },
            };
            if let Some(seg) = self.lock().iter_mut().find(|s| s.first_index == r) {
                seg.continues = Some(continues);
            }
            if !continues {
                return Ok(Some(r));
            }
        }
        Ok(Some(first))
    }

    /// Lists the segment files again (the writer may have started new ones since), keeping
    /// what is known about those already seen.
    fn refresh(&self, segs: &mut Vec<Seg>) -> Result<(), StorageError> {
        let mut found = Vec::new();
        let archive = self.dir.join(ARCHIVE_DIR);
        if archive.is_dir() {
            found.extend(list_segments(&archive)?);
        }
        found.extend(list_segments(&self.dir)?);
        found.sort();
        found.dedup_by_key(|(first, _)| *first);
        let mut old: Vec<Seg> = std::mem::take(segs);
        for (first, path) in found {
            if let Some(k) = old.iter().position(|s| s.first_index == first) {
                let mut seg = old.swap_remove(k);
                // A live segment none of whose records was read may have been truncated
                // away and replaced by a new one with the same first index (a replicated
                // log drops uncommitted entries): check its header again.
                let replaced = !seg.read_any && path.parent() == Some(self.dir.as_path()) && {
                    let h = open_segment(&path, first, false)?.header;
                    h.prev_hash != seg.prev_hash || h.is_restart() != seg.restart
                };
                if !replaced {
                    seg.path = path; // it may have moved to the archive
                    segs.push(seg);
                    continue;
                }
            }
            let seg = open_segment(&path, first, false)?;
            segs.push(Seg {
                first_index: first,
                restart: seg.header.is_restart(),
                continues: None,
                read_any: false,
                prev_hash: seg.header.prev_hash,
                marks: vec![(SEGMENT_HEADER_BYTES, seg.header.prev_hash)],
                path,
                len: seg.len,
            });
        }
        Ok(())
    }

    /// Records `from..=upto`, at most `max` of them (fewer only when `max` is reached).
    ///
    /// Every index in the range must exist and be durable (the caller knows it from the
    /// writer); an index the files do not hold is [`StorageError::OutOfRange`].
    pub fn read(&self, from: u64, upto: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        let mut out = Vec::new();
        if from > upto || max == 0 {
            return Ok(out);
        }
        let end = upto.min(from.saturating_add(max as u64 - 1));
        let mut segs = self.lock();
        let mut next = from;
        let mut refreshed = false;
        while next <= end {
            let s = segs.partition_point(|s| s.first_index <= next);
            if s == 0 {
                return Err(self.out_of_range(&segs, next));
            }
            let s = s - 1;
            let limit = segs.get(s + 1).map(|n| n.first_index);
            let unread = !segs[s].read_any;
            let scanned = match scan(&mut segs[s], next, end, limit, &mut out) {
                // The file moved (to the archive) since it was listed: list again.
                Err(StorageError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && !refreshed =>
                {
                    self.refresh(&mut segs)?;
                    refreshed = true;
                    continue;
                }
                // A segment never read may have been replaced since it was listed (see
                // `refresh`): list again before calling it damaged.
                Err(StorageError::Corrupt { .. }) if unread && !refreshed => {
                    self.refresh(&mut segs)?;
                    refreshed = true;
                    continue;
                }
                r => r?,
            };
            match scanned {
                Some(after) => {
                    segs[s].read_any |= after > next;
                    next = after;
                }
                None => {
                    // The segment ended before `next`: the writer has started a new one, or
                    // the index does not exist.
                    if refreshed {
                        return Err(self.out_of_range(&segs, next));
                    }
                    self.refresh(&mut segs)?;
                    refreshed = true;
                    continue;
                }
            }
            refreshed = false;
            if next <= end {
                // Crossing into the next segment: it must continue this one's chain.
                let prev = out.last().map(|r| r.chain_hash);
                let breaks = |segs: &[Seg]| {
                    let n = segs.iter().find(|n| n.first_index == next)?;
                    (!n.restart && prev.is_some_and(|p| p != n.prev_hash))
                        .then(|| (n.path.clone(), n.read_any))
                };
                if let Some((_, false)) = breaks(&segs) {
                    // Never read: it may have been replaced since it was listed.
                    self.refresh(&mut segs)?;
                }
                if let Some((file, _)) = breaks(&segs) {
                    return Err(StorageError::Corrupt {
                        file,
                        offset: 0,
                        index: next,
                        reason: CorruptReason::SegmentChainBreak,
                    });
                }
            }
        }
        Ok(out)
    }

    fn out_of_range(&self, segs: &[Seg], index: u64) -> StorageError {
        StorageError::OutOfRange {
            index,
            first: segs.first().map_or(1, |s| s.first_index),
            last: index.saturating_sub(1),
        }
    }
}

/// Reads records `from..=end` of `seg` into `out` (stopping at `limit`, the next segment's
/// first index). Returns the index after the last one read, or `None` if the segment's
/// records end before `from`.
fn scan(
    seg: &mut Seg,
    from: u64,
    end: u64,
    limit: Option<u64>,
    out: &mut Vec<Record>,
) -> Result<Option<u64>, StorageError> {
    let k = ((from - seg.first_index) / READER_MARK_EVERY_RECORDS) as usize;
    let k = k.min(seg.marks.len() - 1);
    let (mut pos, mut prev) = seg.marks[k];
    let mut index = seg.first_index + k as u64 * READER_MARK_EVERY_RECORDS;
    // Opened per read, not kept: a long history has many segments, and a reader must not
    // hold a file descriptor for each.
    let file = File::open(&seg.path).map_err(|e| StorageError::io(&seg.path, e))?;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = pos;
    let corrupt = |offset, index, reason| StorageError::Corrupt {
        file: seg.path.clone(),
        offset,
        index,
        reason,
    };
    loop {
        if index > end || limit.is_some_and(|l| index >= l) {
            return Ok(Some(index));
        }
        // The frame's length, then the whole frame, from the window (refilled as needed).
        let rel = (pos - buf_at) as usize;
        if rel + 8 > buf.len() {
            buf_at = pos;
            buf = read_window(&file, &seg.path, pos, READ_WINDOW_BYTES)?;
        }
        let rel = (pos - buf_at) as usize;
        let len = match buf.get(rel..rel + 4) {
            Some(b) => u32::from_le_bytes(b.try_into().expect("4 bytes")),
            None => 0, // the end of the file
        };
        if len == 0 {
            // End of this segment's records.
            return if index > from {
                Ok(Some(index))
            } else {
                Ok(None)
            };
        }
        let frame = 8 + len as usize;
        if pos + frame as u64 > seg.len {
            let reason = CorruptReason::Truncated {
                needed: frame as u64,
                available: seg.len - pos,
            };
            return Err(corrupt(pos, index, reason));
        }
        if rel + frame > buf.len() {
            buf_at = pos;
            buf = read_window(&file, &seg.path, pos, frame.max(READ_WINDOW_BYTES))?;
        }
        let rel = (pos - buf_at) as usize;
        let (record, n) = decode_frame(&buf[rel..], index).map_err(|r| corrupt(pos, index, r))?;
        debug_assert_eq!(n, frame);
        if chain_next(&prev, index, &record.payload) != record.chain_hash {
            return Err(corrupt(pos, index, CorruptReason::ChainMismatch));
        }
        prev = record.chain_hash;
        pos += n as u64;
        index += 1;
        let rank = index - seg.first_index;
        if rank.is_multiple_of(READER_MARK_EVERY_RECORDS)
            && (rank / READER_MARK_EVERY_RECORDS) as usize == seg.marks.len()
        {
            seg.marks.push((pos, prev));
        }
        if record.index >= from {
            out.push(record);
        }
    }
}

/// Up to `len` bytes of `file` from `at` (fewer at the end of the file).
fn read_window(file: &File, path: &Path, at: u64, len: usize) -> Result<Vec<u8>, StorageError> {
    let mut buf = vec![0u8; len.max(RECORD_HEADER_BYTES as usize)];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], at + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StorageError::io(path, e)),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileLog, FileLogConfig, LogStore};

    fn config() -> FileLogConfig {
        FileLogConfig {
            segment_bytes_max: 4 << 10,
            record_bytes_max: 1 << 10,
            write_buffer_bytes: 256,
            spare_segments: true,
        }
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("record {i} ")
            .repeat((i % 7 + 1) as usize)
            .into_bytes()
    }

    #[test]
    fn reads_what_the_writer_synced_across_segments_while_it_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(tmp.path(), config()).unwrap();
        let reader = LogReader::open(tmp.path()).unwrap();
        assert_eq!(reader.first_index(), Some(1));
        let mut written = 0u64;
        for round in 0..6u64 {
            let batch: Vec<Vec<u8>> = (written + 1..=written + 300).map(payload).collect();
            let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
            log.append(&refs).unwrap();
            written = log.sync().unwrap();
            // Unsynced records after the durable index are never asked for.
            log.append(&[b"not yet durable".as_slice()]).unwrap();
            written = log.sync().unwrap().max(written);
            let from = round * 200 + 1;
            let got = reader.read(from, written, usize::MAX).unwrap();
            let want = log.read(from, (written - from + 1) as usize).unwrap();
            assert_eq!(want, got, "round {round}");
        }
        assert!(log.segments().len() > 5, "the test spans many segments");
        // Random access, in any order, agrees with the writer's own reads.
        for from in [written, 1, 1_025, 700, 1_500, 3] {
            let got = reader.read(from, written, 5).unwrap();
            assert_eq!(log.read(from, 5).unwrap(), got);
        }
        // Beyond what exists.
        assert!(matches!(
            reader.read(written + 1, written + 1, 1),
            Err(StorageError::OutOfRange { index, .. }) if index == written + 1
        ));
        assert_eq!(reader.read(5, 4, 10).unwrap(), Vec::new());
        // Archived segments stay readable, by this reader and by a new one.
        let every = reader.read(1, written, usize::MAX).unwrap();
        assert!(log.archive_before(1_000).unwrap() > 1);
        assert_eq!(every, reader.read(1, written, usize::MAX).unwrap());
        let fresh = LogReader::open(tmp.path()).unwrap();
        assert_eq!(every, fresh.read(1, written, usize::MAX).unwrap());
    }

    fn append(log: &mut FileLog, payloads: &[Vec<u8>]) -> u64 {
        let refs: Vec<&[u8]> = payloads.iter().map(|b| b.as_slice()).collect();
        log.append(&refs).unwrap();
        log.sync().unwrap()
    }

    #[test]
    fn run_start_passes_a_restart_right_after_the_last_record_and_stops_after_a_gap() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(tmp.path(), config()).unwrap();
        let reader = LogReader::open(tmp.path()).unwrap();
        append(&mut log, &(1..=40).map(payload).collect::<Vec<_>>());
        assert_eq!(Some(1), reader.run_start().unwrap());
        // Everything up to 40 purged: the log restarts at 41, nothing missing.
        log.reset_to(40, [7; 32]).unwrap();
        append(&mut log, &(41..=60).map(payload).collect::<Vec<_>>());
        assert_eq!(Some(1), reader.run_start().unwrap());
        assert_eq!(60, reader.read(1, 60, usize::MAX).unwrap().len());
        // A restart at 100: records 61..=99 are missing.
        log.reset_to(99, [8; 32]).unwrap();
        append(&mut log, &(100..=110).map(payload).collect::<Vec<_>>());
        assert_eq!(Some(100), reader.run_start().unwrap());
        assert_eq!(
            Some(100),
            LogReader::open(tmp.path()).unwrap().run_start().unwrap()
        );
        assert_eq!(
            log.read(100, 11).unwrap(),
            reader.read(100, 110, usize::MAX).unwrap()
        );
    }

    #[test]
    fn a_live_segment_replaced_after_a_truncation_is_read_from_its_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(tmp.path(), config()).unwrap();
        let reader = LogReader::open(tmp.path()).unwrap();
        let last = append(&mut log, &(1..=150).map(payload).collect::<Vec<_>>());
        let segs = log.segments();
        assert!(segs.len() >= 3, "{segs:?}");
        let (prev, newest) = (&segs[segs.len() - 2], &segs[segs.len() - 1]);
        // The reader lists the newest segment but reads none of its records.
        reader.read(1, prev.first_index - 1, usize::MAX).unwrap();
        assert_eq!(Some(1), reader.run_start().unwrap());
        // Its records and some before it are replaced by others of the same sizes: a
        // new segment with the same first index and another chain hash before it.
        let cut = prev.first_index + 1;
        log.truncate_after(cut).unwrap();
        let other: Vec<Vec<u8>> = (cut + 1..=last)
            .map(|i| payload(i).iter().map(|b| b ^ 0x20).collect())
            .collect();
        append(&mut log, &other);
        assert_eq!(
            newest.first_index,
            log.segments().last().unwrap().first_index
        );
        assert_eq!(
            log.read(cut + 1, (last - cut) as usize).unwrap(),
            reader.read(cut + 1, last, usize::MAX).unwrap()
        );
    }

    #[test]
    fn a_changed_record_is_reported_with_its_file_and_index() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(tmp.path(), config()).unwrap();
        let batch: Vec<Vec<u8>> = (1..=40).map(payload).collect();
        let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
        log.append(&refs).unwrap();
        log.sync().unwrap();
        let seg = log.segments()[0].clone();
        drop(log);
        // Flip one payload byte of record 3 (its CRC then fails).
        let bytes = std::fs::read(&seg.path).unwrap();
        let mut at = SEGMENT_HEADER_BYTES as usize;
        for _ in 0..2 {
            at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        }
        let mut damaged = bytes.clone();
        damaged[at + 60] ^= 1;
        std::fs::write(&seg.path, &damaged).unwrap();
        let reader = LogReader::open(tmp.path()).unwrap();
        assert_eq!(reader.read(1, 2, 10).unwrap().len(), 2);
        match reader.read(1, 10, 10) {
            Err(StorageError::Corrupt {
                file,
                offset,
                index,
                reason: CorruptReason::Checksum { .. },
            }) => assert_eq!((file, offset, index), (seg.path.clone(), at as u64, 3)),
            other => panic!("expected a checksum error, got {other:?}"),
        }
    }
}
