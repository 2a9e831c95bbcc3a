//! [`FileLog`]: the log on real files.

use crate::error::{CorruptReason, StorageError};
use crate::format::{chain_next, decode_frame};
use crate::format::{
    encode_frame, frame_bytes, list_segments, nonzero_extent, open_segment, scan_segment,
    segment_file_name, sync_dir, zero_range, SegmentHeader, GENESIS_HASH, SEGMENT_FLAG_RESTART,
    SEGMENT_HEADER_BYTES,
};
use crate::spare::Spare;
use crate::verify::SegmentInfo;
use crate::{
    read_bounds, ChainHash, LogStore, Record, SyncTicket, ARCHIVE_DIR, RECORD_BYTES_MAX,
    SEGMENT_BYTES_MAX, TRUNCATED_DIR, WRITE_BUFFER_BYTES,
};
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Name of the lock file inside a log directory.
const LOCK_FILE: &str = "LOCK";

/// Sizes of a [`FileLog`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLogConfig {
    /// Size every segment file is preallocated to; a record goes to a new segment when it
    /// would not fit. At least [`SEGMENT_HEADER_BYTES`] + [`crate::RECORD_HEADER_BYTES`] +
    /// `record_bytes_max`, at most 4 GiB. Default [`SEGMENT_BYTES_MAX`].
    pub segment_bytes_max: u64,
    /// Largest payload [`LogStore::append`] accepts. Default [`RECORD_BYTES_MAX`]. Only
    /// appends are limited: records already in the files are read whatever this says.
    pub record_bytes_max: usize,
    /// Appended bytes are written to the file (not synced) once this many are buffered.
    /// Default [`WRITE_BUFFER_BYTES`].
    pub write_buffer_bytes: usize,
    /// Write the next segment's zeros ahead, on a background thread, so that syncs of the
    /// log need no metadata update (see [`SPARE_FILE`](crate::SPARE_FILE)). Default true;
    /// false makes every segment with `fallocate` when it is needed.
    pub spare_segments: bool,
}

impl Default for FileLogConfig {
    fn default() -> Self {
        FileLogConfig {
            segment_bytes_max: SEGMENT_BYTES_MAX,
            record_bytes_max: RECORD_BYTES_MAX,
            write_buffer_bytes: WRITE_BUFFER_BYTES,
            spare_segments: true,
        }
    }
}

impl FileLogConfig {
    /// Checks that the sizes can work together.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.record_bytes_max > (u32::MAX - crate::format::BODY_FIXED) as usize {
            return Err(StorageError::Config(format!(
                "record_bytes_max {} does not fit a u32 frame length",
                self.record_bytes_max
            )));
        }
        let min = SEGMENT_HEADER_BYTES + frame_bytes(self.record_bytes_max);
        if self.segment_bytes_max < min {
            return Err(StorageError::Config(format!(
                "segment_bytes_max {} is below {min} (header + one record of record_bytes_max {})",
                self.segment_bytes_max, self.record_bytes_max
            )));
        }
        if self.segment_bytes_max > u64::from(u32::MAX) {
            return Err(StorageError::Config(format!(
                "segment_bytes_max {} is over 4 GiB",
                self.segment_bytes_max
            )));
        }
        Ok(())
    }
}

/// What [`FileLog::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Live segments after recovery.
    pub segments: usize,
    /// Valid records in them.
    pub records: u64,
    /// The cut torn tail, if the last segment ended with one.
    pub torn_tail: Option<TornTail>,
    /// Live segments moved to the archive to finish a [`LogStore::reset_to`] that a crash
    /// interrupted.
    pub archived_on_open: usize,
    /// The directory held no segment: a new log was created.
    pub created: bool,
}

/// A damaged end of the last segment (writes that did not finish before a crash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Offset of the first bad byte range (just after the last valid record).
    pub offset: u64,
    /// The index the first bad record would have had.
    pub index: u64,
    /// Why the record there is not valid.
    pub reason: CorruptReason,
    /// Bytes from `offset` to the last non-zero byte of the file: what was (or, for
    /// [`verify_dir`](crate::verify_dir), would be) zeroed.
    pub bytes: u64,
}

/// One live segment.
struct Segment {
    path: PathBuf,
    file: File,
    first_index: u64,
    prev_hash: ChainHash,
    /// Byte offset of each record, in index order.
    offsets: Vec<u32>,
    /// Offset just after the last record (including bytes still in the write buffer).
    end: u64,
}

impl Segment {
    fn count(&self) -> u64 {
        self.offsets.len() as u64
    }

    fn last_index(&self) -> u64 {
        self.first_index + self.count() - 1
    }

    fn info(&self) -> SegmentInfo {
        SegmentInfo {
            path: self.path.clone(),
            archived: false,
            first_index: self.first_index,
            records: self.count(),
            end: self.end,
        }
    }
}

/// The log of one shard on real files: segmented, preallocated, append-only.
///
/// See the crate documentation for the file format and the recovery rules. One `FileLog`
/// per directory (enforced with an exclusive `flock` on `DIR/LOCK`). Unix only.
///
/// Dropping a `FileLog` hands buffered records to the kernel (without syncing them); use
/// [`FileLog::close`] to sync and see errors.
pub struct FileLog {
    dir: PathBuf,
    config: FileLogConfig,
    /// Live segments in index order; never empty; the last one is active.
    segments: Vec<Segment>,
    /// Encoded records of the active segment not yet written to its file.
    pending: Vec<u8>,
    /// Offset in the active file where `pending` goes (= bytes written to it).
    pending_at: u64,
    /// The active file holds written but not synced bytes.
    unsynced: bool,
    last_hash: ChainHash,
    durable: u64,
    /// Truncations and resets so far (a split sync that spans one proves nothing).
    truncations: u64,
    poisoned: Option<String>,
    recovery: RecoveryReport,
    /// The next segment, being zero-filled ahead (when `config.spare_segments`).
    spare: Option<Spare>,
    /// Segments made from a spare since open.
    spares_used: u64,
    _lock: File,
}

impl std::fmt::Debug for FileLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLog")
            .field("dir", &self.dir)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .field("durable_index", &self.durable)
            .field("segments", &self.segments.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl FileLog {
    /// Opens (or creates) the log in `dir`, recovering it (see the crate documentation).
    ///
    /// Everything found is synced before this returns, so `durable_index() ==
    /// last_index()`. What was repaired is in [`FileLog::recovery`].
    pub fn open(dir: impl AsRef<Path>, config: FileLogConfig) -> Result<FileLog, StorageError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock = lock_dir(&dir)?;
        remove_stale_tmp_files(&dir)?;
        let mut recovery = RecoveryReport::default();

        let mut found = list_segments(&dir)?;
        if found.is_empty() {
            let archive = dir.join(ARCHIVE_DIR);
            if archive.is_dir() && !list_segments(&archive)?.is_empty() {
                return Err(StorageError::Corrupt {
                    file: archive,
                    offset: 0,
                    index: 0,
                    reason: CorruptReason::NoLiveSegment,
                });
            }
            let header = SegmentHeader {
                flags: 0,
                first_index: 1,
                prev_hash: GENESIS_HASH,
            };
            create_segment_file(&dir, &header, config.segment_bytes_max)?;
            found = list_segments(&dir)?;
            recovery.created = true;
        }

        let mut files = Vec::with_capacity(found.len());
        for (first, path) in &found {
            files.push(open_segment(path, *first, true)?);
        }

        // Finish an interrupted reset: everything before the last restart segment is history.
        if let Some(r) = files.iter().rposition(|f| f.header.is_restart()) {
            if r > 0 {
                let archive = ensure_subdir(&dir, ARCHIVE_DIR)?;
                for f in files.drain(..r) {
                    move_into(&f.path, &archive, false)?;
                    recovery.archived_on_open += 1;
                }
                sync_dir(&archive)?;
                sync_dir(&dir)?;
            }
        }

        let n = files.len();
        let mut segments: Vec<Segment> = Vec::with_capacity(n);
        let mut last_hash = GENESIS_HASH;
        for (i, f) in files.into_iter().enumerate() {
            if let Some(prev) = segments.last() {
                check_continues(prev.last_index(), &last_hash, &f.path, &f.header)?;
            }
            let scan = scan_segment(&f, true)?;
            let is_last = i + 1 == n;
            if let Some(stop) = scan.stop {
                if stop.hard || !is_last {
                    return Err(stop.into_error(&f.path));
                }
                let bytes = nonzero_extent(&f.file, stop.offset, f.len)
                    .map_err(|e| StorageError::io(&f.path, e))?;
                zero_range(&f.file, stop.offset, stop.offset + bytes)
                    .map_err(|e| StorageError::io(&f.path, e))?;
                recovery.torn_tail = Some(TornTail {
                    file: f.path.clone(),
                    offset: stop.offset,
                    index: stop.index,
                    reason: stop.reason,
                    bytes,
                });
            }
            last_hash = scan.last_hash;
            segments.push(Segment {
                path: f.path,
                file: f.file,
                first_index: f.header.first_index,
                prev_hash: f.header.prev_hash,
                offsets: scan.offsets,
                end: scan.end,
            });
        }

        // The active segment: full size again (it may have been cut short), and everything
        // in it (possibly written by a process that died before syncing) made durable.
        let active = segments.last().expect("at least one segment");
        let len = active
            .file
            .metadata()
            .map_err(|e| StorageError::io(&active.path, e))?
            .len();
        if len < config.segment_bytes_max {
            preallocate(&active.file, config.segment_bytes_max)
                .map_err(|e| StorageError::io(&active.path, e))?;
        }
        active
            .file
            .sync_data()
            .map_err(|e| StorageError::io(&active.path, e))?;
        sync_dir(&dir)?;

        recovery.segments = segments.len();
        recovery.records = segments.iter().map(Segment::count).sum();
        let pending_at = active.end;
        let mut log = FileLog {
            dir,
            config,
            segments,
            pending: Vec::new(),
            pending_at,
            unsynced: false,
            last_hash,
            durable: 0,
            truncations: 0,
            poisoned: None,
            recovery,
            spare: None,
            spares_used: 0,
            _lock: lock,
        };
        log.durable = log.last_index();
        crate::spare::remove_leftover(&log.dir)
            .map_err(|e| StorageError::io(log.dir.join(crate::SPARE_FILE), e))?;
        Ok(log)
    }

    /// What recovery found when this log was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sizes in use.
    pub fn config(&self) -> &FileLogConfig {
        &self.config
    }

    /// Segments made from a zero-filled spare since the log was opened (see
    /// [`FileLogConfig::spare_segments`]).
    pub fn spare_segments_used(&self) -> u64 {
        self.spares_used
    }

    /// Waits until the spare segment is written, if one is being written (so that the next
    /// segment is certain to come from it: tests and benchmarks).
    pub fn wait_for_spare(&mut self) {
        if let Some(s) = &mut self.spare {
            s.wait();
        }
    }

    /// Starts writing the next segment's spare once the active one is half full (when
    /// spares are on and none is being written).
    fn maybe_start_spare(&mut self) -> Result<(), StorageError> {
        if self.config.spare_segments
            && self.spare.is_none()
            && self.active().end >= self.config.segment_bytes_max / 2
        {
            let spare = Spare::start(&self.dir, self.config.segment_bytes_max)
                .map_err(|e| StorageError::io(self.dir.join(crate::SPARE_FILE), e))?;
            self.spare = Some(spare);
        }
        Ok(())
    }

    /// The live segments, in index order.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments.iter().map(Segment::info).collect()
    }

    /// Syncs and closes the log.
    pub fn close(mut self) -> Result<u64, StorageError> {
        self.sync()
    }

    /// Simulates a crash of the process: records still in the write buffer are lost, those
    /// already handed to the kernel stay (the files are not synced either way).
    #[cfg(feature = "testing")]
    pub fn simulate_crash(mut self) {
        self.pending.clear();
        drop(self);
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("at least one segment")
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(why) => Err(StorageError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Remembers a storage failure: what is on disk is unknown from now on.
    fn poison<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e) = &result {
            self.poisoned = Some(e.to_string());
        }
        result
    }

    /// Hands the write buffer to the kernel.
    fn write_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let active = self.segments.last().expect("at least one segment");
        active
            .file
            .write_all_at(&self.pending, self.pending_at)
            .map_err(|e| StorageError::io(&active.path, e))?;
        self.pending_at += self.pending.len() as u64;
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Writes and `fdatasync`s everything appended to the active segment.
    fn sync_active(&mut self) -> Result<(), StorageError> {
        self.write_pending()?;
        if self.unsynced {
            let active = self.active();
            active
                .file
                .sync_data()
                .map_err(|e| StorageError::io(&active.path, e))?;
            self.unsynced = false;
        }
        self.durable = self.last_index();
        Ok(())
    }

    /// Closes the active segment (synced, so that no earlier segment can ever have a torn
    /// tail) and starts the next one.
    fn rotate(&mut self) -> Result<(), StorageError> {
        self.sync_active()?;
        let header = SegmentHeader {
            flags: 0,
            first_index: self.last_index() + 1,
            prev_hash: self.last_hash,
        };
        let path = self.dir.join(segment_file_name(header.first_index));
        if path.exists() {
            return Err(StorageError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "segment already exists"),
            ));
        }
        let spare = self.spare.as_mut().and_then(Spare::take);
        let seg = match spare {
            Some((spare, file)) => {
                let seg = segment_from_spare(&self.dir, &spare, file, &header)?;
                self.spare = None;
                self.spares_used += 1;
                seg
            }
            None => {
                if self.spare.as_ref().is_some_and(Spare::spent) {
                    // Writing it failed: start afresh when this segment is half full.
                    self.spare = None;
                }
                create_segment_file(&self.dir, &header, self.config.segment_bytes_max)?
            }
        };
        self.segments.push(seg);
        self.pending_at = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    fn append_inner(&mut self, entries: &[&[u8]]) -> Result<Range<u64>, StorageError> {
        let start = self.last_index() + 1;
        for payload in entries {
            let frame = frame_bytes(payload.len());
            if self.active().end + frame > self.config.segment_bytes_max {
                self.rotate()?;
            }
            let index = self.last_index() + 1;
            let chain = chain_next(&self.last_hash, index, payload);
            encode_frame(&mut self.pending, index, &chain, payload);
            let active = self.segments.last_mut().expect("at least one segment");
            active
                .offsets
                .push(u32::try_from(active.end).expect("segment size checked"));
            active.end += frame;
            self.last_hash = chain;
            if self.pending.len() >= self.config.write_buffer_bytes {
                self.write_pending()?;
            }
        }
        self.maybe_start_spare()?;
        Ok(start..self.last_index() + 1)
    }

    /// Index of the live segment holding `index` (which must be live).
    fn segment_of(&self, index: u64) -> usize {
        self.segments.partition_point(|s| s.first_index <= index) - 1
    }

    /// Bytes `from..to` of segment `s`, from the file and, for the active segment, from
    /// the write buffer.
    fn read_bytes(&self, s: usize, from: u64, to: u64) -> Result<Vec<u8>, StorageError> {
        let seg = &self.segments[s];
        let mut buf = vec![0u8; (to - from) as usize];
        let in_file_to = if s + 1 == self.segments.len() {
            to.min(self.pending_at)
        } else {
            to
        };
        if from < in_file_to {
            seg.file
                .read_exact_at(&mut buf[..(in_file_to - from) as usize], from)
                .map_err(|e| StorageError::io(&seg.path, e))?;
        }
        if to > in_file_to {
            let p_from = (in_file_to.max(from) - self.pending_at) as usize;
            let p_to = (to - self.pending_at) as usize;
            let b_from = (in_file_to.max(from) - from) as usize;
            buf[b_from..].copy_from_slice(&self.pending[p_from..p_to]);
        }
        Ok(buf)
    }

    fn truncate_inner(&mut self, index: u64) -> Result<(), StorageError> {
        self.truncations += 1;
        let s = self.segment_of(index + 1);
        let keep = (index + 1 - self.segments[s].first_index) as usize;
        let cut = u64::from(self.segments[s].offsets[keep]);
        let new_hash = self.chain_hash(index)?;
        let is_active = s + 1 == self.segments.len();
        if is_active && cut >= self.pending_at {
            // Everything removed is still in the write buffer: the files never saw it.
            self.pending.truncate((cut - self.pending_at) as usize);
            self.durable = self.durable.min(index);
        } else {
            self.write_pending()?;
            if s + 1 < self.segments.len() {
                // Whole segments after the cut leave the live log, newest first, so that a
                // crash in between leaves a longer log, never a gap.
                let truncated = ensure_subdir(&self.dir, TRUNCATED_DIR)?;
                while self.segments.len() > s + 1 {
                    let seg = self.segments.pop().expect("checked");
                    move_into(&seg.path, &truncated, true)?;
                }
                sync_dir(&truncated)?;
                sync_dir(&self.dir)?;
            }
            let seg = &self.segments[s];
            zero_range(&seg.file, cut, seg.end).map_err(|e| StorageError::io(&seg.path, e))?;
            seg.file
                .sync_data()
                .map_err(|e| StorageError::io(&seg.path, e))?;
            self.pending_at = cut;
            self.unsynced = false;
            // Earlier segments were synced when they were closed, this one just now.
            self.durable = index;
        }
        let seg = &mut self.segments[s];
        seg.offsets.truncate(keep);
        seg.end = cut;
        self.last_hash = new_hash;
        Ok(())
    }

    fn archive_inner(&mut self, n: usize) -> Result<(), StorageError> {
        let archive = ensure_subdir(&self.dir, ARCHIVE_DIR)?;
        for seg in &self.segments[..n] {
            move_into(&seg.path, &archive, false)?;
        }
        sync_dir(&archive)?;
        sync_dir(&self.dir)?;
        self.segments.drain(..n);
        Ok(())
    }

    fn reset_inner(&mut self, index: u64, chain_hash: ChainHash) -> Result<(), StorageError> {
        self.truncations += 1;
        // The old active segment goes to the archive whole and synced (no torn tail there).
        self.sync_active()?;
        let header = SegmentHeader {
            flags: SEGMENT_FLAG_RESTART,
            first_index: index + 1,
            prev_hash: chain_hash,
        };
        // Renaming into place may replace an empty active segment with the same name; a
        // crash after this point finishes the archiving on open.
        let seg = create_segment_file(&self.dir, &header, self.config.segment_bytes_max)?;
        let old = std::mem::replace(&mut self.segments, vec![seg]);
        let archive = ensure_subdir(&self.dir, ARCHIVE_DIR)?;
        for s in old.iter().filter(|s| s.first_index != index + 1) {
            move_into(&s.path, &archive, false)?;
        }
        sync_dir(&archive)?;
        sync_dir(&self.dir)?;
        self.pending.clear();
        self.pending_at = SEGMENT_HEADER_BYTES;
        self.unsynced = false;
        self.last_hash = chain_hash;
        self.durable = index;
        Ok(())
    }
}

impl LogStore for FileLog {
    fn append(&mut self, entries: &[&[u8]]) -> Result<Range<u64>, StorageError> {
        self.check_poisoned()?;
        if let Some(big) = entries
            .iter()
            .find(|e| e.len() > self.config.record_bytes_max)
        {
            return Err(StorageError::TooLarge {
                len: big.len(),
                max: self.config.record_bytes_max,
            });
        }
        let r = self.append_inner(entries);
        self.poison(r)
    }

    fn sync(&mut self) -> Result<u64, StorageError> {
        self.check_poisoned()?;
        let r = self.sync_active();
        self.poison(r)?;
        Ok(self.durable)
    }

    fn begin_sync(&mut self) -> Result<SyncTicket, StorageError> {
        self.check_poisoned()?;
        let r = self.write_pending();
        self.poison(r)?;
        if !self.unsynced {
            self.durable = self.last_index();
            return Ok(SyncTicket::done(self.durable));
        }
        // Earlier segments were synced when they were closed: only the active one.
        let active = self.active();
        let file = active
            .file
            .try_clone()
            .map_err(|e| StorageError::io(&active.path, e))?;
        Ok(SyncTicket::file(
            file,
            active.path.clone(),
            self.last_index(),
            self.truncations,
        ))
    }

    fn finish_sync(
        &mut self,
        ticket: SyncTicket,
        waited: Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        self.check_poisoned()?;
        self.poison(waited)?;
        if ticket.truncations() == self.truncations {
            if ticket.upto() == self.last_index() && self.pending.is_empty() {
                // Nothing was written after the ticket was taken.
                self.unsynced = false;
            }
            self.durable = self.durable.max(ticket.upto());
        }
        Ok(self.durable)
    }

    fn read(&self, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        let range = read_bounds(from, max, self.first_index(), self.last_index())?;
        let mut out = Vec::with_capacity((range.end - range.start).min(4096) as usize);
        let mut i = range.start;
        while i < range.end {
            let s = self.segment_of(i);
            let seg = &self.segments[s];
            let a = (i - seg.first_index) as usize;
            let b = ((range.end - seg.first_index) as usize).min(seg.offsets.len());
            let from_byte = u64::from(seg.offsets[a]);
            let to_byte = if b < seg.offsets.len() {
                u64::from(seg.offsets[b])
            } else {
                seg.end
            };
            let buf = self.read_bytes(s, from_byte, to_byte)?;
            let mut at = 0usize;
            for k in a..b {
                let index = seg.first_index + k as u64;
                let (record, len) =
                    decode_frame(&buf[at..], index).map_err(|reason| StorageError::Corrupt {
                        file: seg.path.clone(),
                        offset: from_byte + at as u64,
                        index,
                        reason,
                    })?;
                out.push(record);
                at += len;
            }
            i = seg.first_index + b as u64;
        }
        Ok(out)
    }

    fn first_index(&self) -> u64 {
        self.segments[0].first_index
    }

    fn last_index(&self) -> u64 {
        self.active().last_index()
    }

    fn durable_index(&self) -> u64 {
        self.durable
    }

    fn chain_hash(&self, index: u64) -> Result<ChainHash, StorageError> {
        let (first, last) = (self.first_index(), self.last_index());
        if index == last {
            return Ok(self.last_hash);
        }
        if index + 1 == first {
            return Ok(self.segments[0].prev_hash);
        }
        if index < first || index > last {
            return Err(StorageError::OutOfRange { index, first, last });
        }
        Ok(self.read(index, 1)?[0].chain_hash)
    }

    fn truncate_after(&mut self, index: u64) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let (first, last) = (self.first_index(), self.last_index());
        if index >= last {
            return Ok(());
        }
        if index + 1 < first {
            return Err(StorageError::OutOfRange { index, first, last });
        }
        let r = self.truncate_inner(index);
        self.poison(r)
    }

    fn archive_before(&mut self, index: u64) -> Result<u64, StorageError> {
        self.check_poisoned()?;
        // Segment k is entirely below `index` when the next one starts at or before it; the
        // active segment never moves (it is the only one that may hold unsynced records).
        let n = self.segments.len() - 1;
        let n = (0..n)
            .take_while(|&k| self.segments[k + 1].first_index <= index)
            .count();
        if n > 0 {
            let r = self.archive_inner(n);
            self.poison(r)?;
        }
        Ok(self.first_index())
    }

    fn reset_to(&mut self, index: u64, chain_hash: ChainHash) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let (first, last) = (self.first_index(), self.last_index());
        if index < last || index >= crate::INDEX_MAX {
            return Err(StorageError::OutOfRange { index, first, last });
        }
        let r = self.reset_inner(index, chain_hash);
        self.poison(r)
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        if self.poisoned.is_none() {
            // Best effort: a clean shutdown keeps what was appended. Not synced.
            let _ = self.write_pending();
        }
    }
}

/// Checks that a segment continues the previous one (a restart segment only has to start
/// after it).
pub(crate) fn check_continues(
    prev_last: u64,
    prev_hash: &ChainHash,
    path: &Path,
    header: &SegmentHeader,
) -> Result<(), StorageError> {
    let corrupt = |reason| StorageError::Corrupt {
        file: path.to_path_buf(),
        offset: 0,
        index: header.first_index,
        reason,
    };
    if header.is_restart() && header.first_index > prev_last {
        return Ok(());
    }
    if header.first_index != prev_last + 1 {
        return Err(corrupt(CorruptReason::SegmentGap {
            expected: prev_last + 1,
            found: header.first_index,
        }));
    }
    if header.prev_hash != *prev_hash {
        return Err(corrupt(CorruptReason::SegmentChainBreak));
    }
    Ok(())
}

/// Creates a segment atomically: a `.tmp` file is preallocated, given its header and
/// synced, then renamed into place, and the directory is synced. A crash leaves either no
/// segment or a complete, durable, empty one.
fn create_segment_file(
    dir: &Path,
    header: &SegmentHeader,
    size: u64,
) -> Result<Segment, StorageError> {
    let name = segment_file_name(header.first_index);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |e| StorageError::io(&tmp, e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io)?;
    preallocate(&file, size).map_err(io)?;
    file.write_all_at(&header.encode(), 0).map_err(io)?;
    file.sync_all().map_err(io)?;
    place_segment(dir, &tmp, file, header)
}

/// Makes the segment of `header` from a complete spare (`file`, open on `spare`): the
/// header written and synced, then renamed into place and the directory synced, as in
/// [`create_segment_file`]. A crash leaves either the spare (removed on open) or a
/// complete, durable, empty segment.
fn segment_from_spare(
    dir: &Path,
    spare: &Path,
    file: File,
    header: &SegmentHeader,
) -> Result<Segment, StorageError> {
    let io = |e| StorageError::io(spare, e);
    file.write_all_at(&header.encode(), 0).map_err(io)?;
    file.sync_data().map_err(io)?;
    place_segment(dir, spare, file, header)
}

/// Renames `from` (a complete, synced, empty segment of `header`, open as `file`) to its
/// segment name and syncs the directory.
fn place_segment(
    dir: &Path,
    from: &Path,
    file: File,
    header: &SegmentHeader,
) -> Result<Segment, StorageError> {
    let path = dir.join(segment_file_name(header.first_index));
    std::fs::rename(from, &path).map_err(|e| StorageError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(Segment {
        path,
        file,
        first_index: header.first_index,
        prev_hash: header.prev_hash,
        offsets: Vec::new(),
        end: SEGMENT_HEADER_BYTES,
    })
}

/// Gives `file` `size` bytes of allocated zeros (`fallocate`, or `set_len` where that is
/// not supported), keeping what it holds.
fn preallocate(file: &File, size: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{fallocate, FallocateFlags};
        if fallocate(file, FallocateFlags::empty(), 0, size).is_ok() {
            return Ok(());
        }
    }
    if file.metadata()?.len() < size {
        file.set_len(size)?;
    }
    Ok(())
}

/// Takes the exclusive lock on `dir/LOCK`.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    use rustix::fs::{flock, FlockOperation};
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StorageError::Locked { path }),
        Err(e) => Err(StorageError::io(&path, e.into())),
    }
}

/// A reader's (shared) lock on a log directory, held until dropped: while it is held no
/// [`FileLog`] can open the directory (it fails with [`StorageError::Locked`]), and it
/// cannot be taken while a `FileLog` has the directory open. Offline readers (replay) hold
/// one so that they never read a log that a running node is writing.
#[derive(Debug)]
pub struct ReadLock {
    _file: Option<File>,
}

/// Takes a [`ReadLock`] on the log directory `dir` without waiting: a shared `flock` on
/// `dir/LOCK`, opened read only. [`StorageError::Locked`] if a [`FileLog`] has the
/// directory open. A directory that no `FileLog` ever opened has no `LOCK` file and
/// nothing to lock (nothing is created: readers change nothing).
pub fn lock_shared(dir: impl AsRef<Path>) -> Result<ReadLock, StorageError> {
    let path = dir.as_ref().join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadLock { _file: None }),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    use rustix::fs::{flock, FlockOperation};
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(ReadLock { _file: Some(file) }),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StorageError::Locked { path }),
        Err(e) => Err(StorageError::io(&path, e.into())),
    }
}

/// Removes `segment-*.log.tmp` files: segment creations that a crash interrupted before the
/// rename (they never held a record).
fn remove_stale_tmp_files(dir: &Path) -> Result<(), StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seg) = name.strip_suffix(".tmp") {
            if crate::format::parse_segment_file_name(seg).is_some() {
                std::fs::remove_file(entry.path())
                    .map_err(|e| StorageError::io(entry.path(), e))?;
            }
        }
    }
    Ok(())
}

/// `dir/name`, created (durably) if missing.
fn ensure_subdir(dir: &Path, name: &str) -> Result<PathBuf, StorageError> {
    let sub = dir.join(name);
    if !sub.is_dir() {
        std::fs::create_dir_all(&sub).map_err(|e| StorageError::io(&sub, e))?;
        sync_dir(dir)?;
    }
    Ok(sub)
}

/// Moves `file` into `to_dir` under the same name. An existing file there is never
/// replaced: with `rename_if_taken` the moved file gets a free `.N` suffix, otherwise the
/// move fails.
fn move_into(file: &Path, to_dir: &Path, rename_if_taken: bool) -> Result<(), StorageError> {
    let name = file.file_name().expect("segment path has a name");
    let mut target = to_dir.join(name);
    let mut n = 1;
    while target.exists() {
        if !rename_if_taken {
            return Err(StorageError::io(
                &target,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "segment already there"),
            ));
        }
        target = to_dir.join(format!("{}.{n}", name.to_string_lossy()));
        n += 1;
    }
    std::fs::rename(file, &target).map_err(|e| StorageError::io(file, e))
}
