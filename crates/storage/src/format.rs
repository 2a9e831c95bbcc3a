//! The byte format of segments and records, and the sequential scanner that validates them
//! (shared by recovery and [`verify_dir`](crate::verify_dir)).

use crate::error::{CorruptReason, StorageError};
use crate::{ChainHash, Record};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TLOGSEG\0";

/// Format version written and read by this build.
pub const SEGMENT_VERSION: u32 = 1;

/// Size of the segment header; the first record starts here.
pub const SEGMENT_HEADER_BYTES: u64 = 64;

/// Framing bytes of one record: length (4) + CRC32C (4) + index (8) + chain hash (32).
pub const RECORD_HEADER_BYTES: u64 = 48;

/// Header flag: this segment starts a new chain (after [`crate::LogStore::reset_to`]).
pub const SEGMENT_FLAG_RESTART: u32 = 1;

/// The chain hash "before" index 1.
pub const GENESIS_HASH: ChainHash = [0; 32];

/// Bytes covered by a record's CRC besides the payload: index (8) + chain hash (32).
pub(crate) const BODY_FIXED: u32 = 40;

/// The chain hash of record `index` with `payload`, after `prev`:
/// `SHA-256(prev || index (u64 LE) || payload)`.
pub fn chain_next(prev: &ChainHash, index: u64, payload: &[u8]) -> ChainHash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(index.to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

/// `segment-{first_index:020}.log`.
pub fn segment_file_name(first_index: u64) -> String {
    format!("segment-{first_index:020}.log")
}

/// The first index in a segment file name, if `name` is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files in `dir`, sorted by first index: (first index from the name, path).
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let name = entry.file_name();
        let Some(first) = name.to_str().and_then(parse_segment_file_name) else {
            continue;
        };
        out.push((first, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub flags: u32,
    pub first_index: u64,
    pub prev_hash: ChainHash,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES as usize];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_index.to_le_bytes());
        b[24..56].copy_from_slice(&self.prev_hash);
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; SEGMENT_HEADER_BYTES as usize]) -> Result<Self, CorruptReason> {
        if b[0..8] != SEGMENT_MAGIC {
            return Err(CorruptReason::BadMagic);
        }
        let stored = u32_at(b, 60);
        let computed = crc32c::crc32c(&b[0..60]);
        if stored != computed {
            return Err(CorruptReason::HeaderChecksum { stored, computed });
        }
        let version = u32_at(b, 8);
        if version != SEGMENT_VERSION {
            return Err(CorruptReason::UnsupportedVersion(version));
        }
        let flags = u32_at(b, 12);
        if flags & !SEGMENT_FLAG_RESTART != 0 || b[56..60] != [0; 4] {
            return Err(CorruptReason::UnknownFlags(flags));
        }
        let mut prev_hash = [0u8; 32];
        prev_hash.copy_from_slice(&b[24..56]);
        Ok(SegmentHeader {
            flags,
            first_index: u64_at(b, 16),
            prev_hash,
        })
    }

    pub fn is_restart(&self) -> bool {
        self.flags & SEGMENT_FLAG_RESTART != 0
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Total bytes of a record with a payload of `payload_len` bytes.
pub(crate) fn frame_bytes(payload_len: usize) -> u64 {
    RECORD_HEADER_BYTES + payload_len as u64
}

/// Appends the frame of one record to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, index: u64, chain: &ChainHash, payload: &[u8]) {
    let start = out.len();
    let len = BODY_FIXED + u32::try_from(payload.len()).expect("record length checked");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(chain);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the frame at the start of `buf` (which must hold at least the whole frame) and
/// checks its CRC and index; returns the record and its frame length.
pub(crate) fn decode_frame(
    buf: &[u8],
    expected_index: u64,
) -> Result<(Record, usize), CorruptReason> {
    if buf.len() < RECORD_HEADER_BYTES as usize {
        return Err(CorruptReason::Truncated {
            needed: RECORD_HEADER_BYTES,
            available: buf.len() as u64,
        });
    }
    let len = u32_at(buf, 0);
    if len < BODY_FIXED {
        return Err(CorruptReason::BadLength(len));
    }
    let total = 8 + len as usize;
    if buf.len() < total {
        return Err(CorruptReason::Truncated {
            needed: total as u64,
            available: buf.len() as u64,
        });
    }
    let stored = u32_at(buf, 4);
    let body = &buf[8..total];
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(CorruptReason::Checksum { stored, computed });
    }
    let index = u64_at(body, 0);
    if index != expected_index {
        return Err(CorruptReason::IndexMismatch {
            expected: expected_index,
            found: index,
        });
    }
    let mut chain_hash = [0u8; 32];
    chain_hash.copy_from_slice(&body[8..40]);
    Ok((
        Record {
            index,
            chain_hash,
            payload: body[40..].to_vec(),
        },
        total,
    ))
}

/// An open segment file whose header was validated.
pub(crate) struct SegmentFile {
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    pub header: SegmentHeader,
}

/// Opens a segment file and validates its header against the first index of its name.
pub(crate) fn open_segment(
    path: &Path,
    name_index: u64,
    writable: bool,
) -> Result<SegmentFile, StorageError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| StorageError::io(path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StorageError::io(path, e))?
        .len();
    let corrupt = |reason| StorageError::Corrupt {
        file: path.to_path_buf(),
        offset: 0,
        index: name_index,
        reason,
    };
    if len < SEGMENT_HEADER_BYTES {
        return Err(corrupt(CorruptReason::ShortHeader { len }));
    }
    if len > u64::from(u32::MAX) {
        return Err(corrupt(CorruptReason::SegmentTooLarge { len }));
    }
    let mut b = [0u8; SEGMENT_HEADER_BYTES as usize];
    file.read_exact_at(&mut b, 0)
        .map_err(|e| StorageError::io(path, e))?;
    let header = SegmentHeader::decode(&b).map_err(corrupt)?;
    if header.first_index == 0 || header.first_index > crate::INDEX_MAX {
        return Err(corrupt(CorruptReason::BadFirstIndex(header.first_index)));
    }
    if header.first_index != name_index {
        return Err(corrupt(CorruptReason::NameMismatch {
            name: name_index,
            header: header.first_index,
        }));
    }
    Ok(SegmentFile {
        path: path.to_path_buf(),
        file,
        len,
        header,
    })
}

/// Where and why a scan stopped before the end of the file.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    /// Offset of the bad record (or of the end marker followed by garbage).
    pub offset: u64,
    /// The index that record should have.
    pub index: u64,
    pub reason: CorruptReason,
    /// A valid CRC over a wrong index or chain: never a torn write.
    pub hard: bool,
}

impl Stop {
    pub fn into_error(self, path: &Path) -> StorageError {
        StorageError::Corrupt {
            file: path.to_path_buf(),
            offset: self.offset,
            index: self.index,
            reason: self.reason,
        }
    }
}

/// The result of scanning one segment's records.
pub(crate) struct Scan {
    /// Offsets of the valid records (if asked for).
    pub offsets: Vec<u32>,
    /// Number of valid records.
    pub count: u64,
    /// Offset just after the last valid record.
    pub end: u64,
    /// Chain hash of the last valid record (the header's previous hash if none).
    pub last_hash: ChainHash,
    /// Why the scan stopped early, if it did.
    pub stop: Option<Stop>,
}

const SCAN_BUFFER_BYTES: usize = 1 << 20;

/// Reads every record of `seg` in order, checking length, CRC, index continuity and the
/// chain, and that everything after the end marker is zero. Only I/O failures are errors;
/// damage is reported in [`Scan::stop`].
pub(crate) fn scan_segment(seg: &SegmentFile, keep_offsets: bool) -> Result<Scan, StorageError> {
    let io = |e| StorageError::io(&seg.path, e);
    let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, &seg.file);
    std::io::copy(
        &mut (&mut reader).take(SEGMENT_HEADER_BYTES),
        &mut std::io::sink(),
    )
    .map_err(io)?;
    let mut scan = Scan {
        offsets: Vec::new(),
        count: 0,
        end: SEGMENT_HEADER_BYTES,
        last_hash: seg.header.prev_hash,
        stop: None,
    };
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut body = Vec::new();
    loop {
        let index = seg.header.first_index + scan.count;
        let left = seg.len - pos;
        let soft = |reason| Stop {
            offset: pos,
            index,
            reason,
            hard: false,
        };
        if left == 0 {
            break;
        }
        if left < 8 {
            // Not even a length and a CRC: only zeros may be here.
            if let Some(at) = first_nonzero(&mut reader, pos, left).map_err(io)? {
                scan.stop = Some(soft(CorruptReason::NonZeroAfterEnd { at }));
            }
            break;
        }
        let mut prefix = [0u8; 8];
        reader.read_exact(&mut prefix).map_err(io)?;
        let len = u32_at(&prefix, 0);
        let stored = u32_at(&prefix, 4);
        if len == 0 {
            // End marker: the CRC slot and everything after must be zero too.
            let at = if stored != 0 {
                Some(
                    pos + 4
                        + stored
                            .to_le_bytes()
                            .iter()
                            .position(|&b| b != 0)
                            .unwrap_or(0) as u64,
                )
            } else {
                first_nonzero(&mut reader, pos + 8, left - 8).map_err(io)?
            };
            if let Some(at) = at {
                scan.stop = Some(soft(CorruptReason::NonZeroAfterEnd { at }));
            }
            break;
        }
        if len < BODY_FIXED {
            scan.stop = Some(soft(CorruptReason::BadLength(len)));
            break;
        }
        let needed = 8 + u64::from(len);
        if needed > left {
            scan.stop = Some(soft(CorruptReason::Truncated {
                needed,
                available: left,
            }));
            break;
        }
        body.resize(len as usize, 0);
        reader.read_exact(&mut body).map_err(io)?;
        let computed = crc32c::crc32c(&body);
        if computed != stored {
            scan.stop = Some(soft(CorruptReason::Checksum { stored, computed }));
            break;
        }
        let found = u64_at(&body, 0);
        if found != index {
            scan.stop = Some(Stop {
                offset: pos,
                index,
                reason: CorruptReason::IndexMismatch {
                    expected: index,
                    found,
                },
                hard: true,
            });
            break;
        }
        let expected_chain = chain_next(&scan.last_hash, index, &body[40..]);
        if body[8..40] != expected_chain {
            scan.stop = Some(Stop {
                offset: pos,
                index,
                reason: CorruptReason::ChainMismatch,
                hard: true,
            });
            break;
        }
        if keep_offsets {
            scan.offsets
                .push(u32::try_from(pos).expect("segment size checked"));
        }
        scan.last_hash = expected_chain;
        scan.count += 1;
        pos += needed;
        scan.end = pos;
    }
    Ok(scan)
}

/// Offset of the first non-zero byte among the next `n` bytes of `reader` (at `pos`).
fn first_nonzero(reader: &mut impl Read, pos: u64, n: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0u8; SCAN_BUFFER_BYTES.min(n as usize).max(1)];
    let mut done = 0u64;
    while done < n {
        let want = buf.len().min((n - done) as usize);
        reader.read_exact(&mut buf[..want])?;
        if let Some(i) = buf[..want].iter().position(|&b| b != 0) {
            return Ok(Some(pos + done + i as u64));
        }
        done += want as u64;
    }
    Ok(None)
}

/// Bytes from `from` up to and including the last non-zero byte before `to` (0 if all zero).
pub(crate) fn nonzero_extent(file: &File, from: u64, to: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; SCAN_BUFFER_BYTES];
    let mut pos = from;
    let mut last = None;
    while pos < to {
        let want = buf.len().min((to - pos) as usize);
        file.read_exact_at(&mut buf[..want], pos)?;
        if let Some(i) = buf[..want].iter().rposition(|&b| b != 0) {
            last = Some(pos + i as u64);
        }
        pos += want as u64;
    }
    Ok(last.map_or(0, |l| l + 1 - from))
}

/// Overwrites `from..to` of `file` with zeros.
pub(crate) fn zero_range(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; (64 << 10).min((to.saturating_sub(from)) as usize)];
    let mut pos = from;
    while pos < to {
        let n = zeros.len().min((to - pos) as usize);
        file.write_all_at(&zeros[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// `fsync`s a directory so that file creations and renames in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}
