//! `FileLog` on real files: reopen, torn tails, bit flips, forged records, rotation,
//! archiving, truncation across segments, resets, verification.

use crate::common::{disk_tempdir, fast_tempdir};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tradelog_storage::{
    chain_next, segment_file_name, verify_dir, ChainHash, CorruptReason, FileLog, FileLogConfig,
    LogStore, StorageError, ARCHIVE_DIR, GENESIS_HASH, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
    SEGMENT_MAGIC, TRUNCATED_DIR,
};

fn small(segment_bytes_max: u64) -> FileLogConfig {
    FileLogConfig {
        segment_bytes_max,
        record_bytes_max: 100,
        write_buffer_bytes: 4096,
        spare_segments: true,
    }
}

/// Payload `i`: 1..=100 bytes, never all zero.
fn payload(i: u64) -> Vec<u8> {
    let len = 1 + (i * 53 % 100) as usize;
    (0..len).map(|k| (i as u8) ^ (k as u8) | 1).collect()
}

fn payloads(from: u64, n: u64) -> Vec<Vec<u8>> {
    (from..from + n).map(payload).collect()
}

fn append_all(log: &mut FileLog, ps: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = ps.iter().map(|p| p.as_slice()).collect();
    log.append(&refs).expect("append");
}

/// The live records' payloads.
fn content(log: &FileLog) -> Vec<Vec<u8>> {
    log.read(log.first_index(), usize::MAX)
        .expect("read")
        .into_iter()
        .map(|r| r.payload)
        .collect()
}

fn chain_of(ps: &[Vec<u8>]) -> ChainHash {
    ps.iter()
        .enumerate()
        .fold(GENESIS_HASH, |h, (i, p)| chain_next(&h, i as u64 + 1, p))
}

/// Creates a synced, closed log holding `ps` and returns the paths of its segments.
fn build(dir: &Path, config: &FileLogConfig, ps: &[Vec<u8>]) -> Vec<PathBuf> {
    let mut log = FileLog::open(dir, config.clone()).expect("open");
    append_all(&mut log, ps);
    log.sync().expect("sync");
    let paths = log.segments().into_iter().map(|s| s.path).collect();
    log.close().expect("close");
    paths
}

/// Byte offsets of the records of a segment whose records have these payloads.
fn offsets(ps: &[Vec<u8>]) -> Vec<u64> {
    let mut at = SEGMENT_HEADER_BYTES;
    ps.iter()
        .map(|p| {
            let o = at;
            at += RECORD_HEADER_BYTES + p.len() as u64;
            o
        })
        .collect()
}

fn corrupt_parts(e: StorageError) -> (PathBuf, u64, u64, CorruptReason) {
    match e {
        StorageError::Corrupt {
            file,
            offset,
            index,
            reason,
        } => (file, offset, index, reason),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn reopen_after_sync_preserves_everything() {
    let tmp = disk_tempdir();
    let config = small(2048);
    let ps = payloads(1, 300);
    let paths = build(tmp.path(), &config, &ps);
    assert!(
        paths.len() > 10,
        "expected many segments, got {}",
        paths.len()
    );
    let log = FileLog::open(tmp.path(), config.clone()).expect("reopen");
    assert_eq!(log.recovery().torn_tail, None);
    assert_eq!(log.recovery().records, 300);
    assert_eq!(log.recovery().segments, paths.len());
    assert_eq!((log.first_index(), log.last_index()), (1, 300));
    assert_eq!(log.durable_index(), 300);
    assert_eq!(content(&log), ps);
    assert_eq!(log.chain_hash(300).expect("chain"), chain_of(&ps));
    for p in &paths {
        assert_eq!(fs::metadata(p).expect("stat").len(), 2048, "preallocated");
    }
    let report = verify_dir(tmp.path()).expect("verify");
    assert_eq!(
        (report.first_index, report.last_index, report.records),
        (1, 300, 300)
    );
    assert_eq!(report.last_chain_hash, chain_of(&ps));
    assert_eq!(report.torn_tail, None);
}

#[test]
fn rotation_and_reads_across_segments() {
    let tmp = disk_tempdir();
    let config = small(1024);
    let mut log = FileLog::open(tmp.path(), config.clone()).expect("open");
    let ps = payloads(1, 120);
    append_all(&mut log, &ps[..60]);
    log.sync().expect("sync");
    append_all(&mut log, &ps[60..]); // partly unsynced, crossing several rotations
    assert!(
        log.durable_index() >= 60,
        "rotation syncs the closed segment"
    );
    let segs = log.segments();
    assert!(segs.len() >= 8, "{} segments", segs.len());
    let mut next = 1;
    for s in &segs {
        assert_eq!(s.first_index, next);
        assert_eq!(
            s.path.file_name().unwrap().to_str().unwrap(),
            segment_file_name(s.first_index)
        );
        let bytes = fs::read(&s.path).expect("read segment");
        assert_eq!(bytes.len(), 1024);
        assert_eq!(bytes[..8], SEGMENT_MAGIC);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), next);
        assert!(s.records > 0 && s.end <= 1024);
        next += s.records;
    }
    assert_eq!(next, 121);
    // Every window of 5 across every boundary, buffered records included.
    for from in 1..=120u64 {
        let rs = log.read(from, 5).expect("read");
        assert_eq!(rs.len(), (121 - from).min(5) as usize);
        for r in rs {
            assert_eq!(r.payload, ps[(r.index - 1) as usize], "record {}", r.index);
        }
    }
    // The chain hash of the record before each segment is in its header.
    for w in segs.windows(2) {
        let bytes = fs::read(&w[1].path).expect("read");
        let h = log.chain_hash(w[1].first_index - 1).expect("chain");
        assert_eq!(bytes[24..56], h);
    }
    log.sync().expect("sync");
    drop(log);
    let log = FileLog::open(tmp.path(), config).expect("reopen");
    assert_eq!(content(&log), ps);
    // A record of exactly the limit fits a fresh segment.
    let mut log = log;
    let big = vec![7u8; 100];
    log.append(&[&big, &big, &big])
        .expect("append at the limit");
    assert_eq!(log.read(121, 3).expect("read").len(), 3);
}

/// Cuts the last segment at every byte offset within its last three records (shortened file,
/// and zeros in place): recovery keeps exactly the complete records before the cut, reports
/// the torn bytes, and the log accepts appends afterwards.
#[test]
fn torn_tail_at_every_offset_recovers_a_prefix() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = small(1024);
    // Enough records for several segments, the last holding at least four.
    let mut ps = Vec::new();
    let mut log = FileLog::open(&dir, config.clone()).expect("open");
    while ps.len() < 30 || log.segments().last().unwrap().records < 4 {
        let p = payload(ps.len() as u64 + 1);
        log.append(&[&p]).expect("append");
        ps.push(p);
    }
    let paths: Vec<PathBuf> = log.segments().into_iter().map(|s| s.path).collect();
    log.close().expect("close");
    let last = paths.last().unwrap().clone();
    let pristine = fs::read(&last).expect("read");
    let log = FileLog::open(&dir, config.clone()).expect("open");
    let seg = log.segments().pop().unwrap();
    drop(log);
    let in_last: Vec<Vec<u8>> = ps[(seg.first_index - 1) as usize..].to_vec();
    assert!(in_last.len() >= 3, "the last segment needs a few records");
    let offs = offsets(&in_last);
    assert_eq!(
        seg.end,
        offs.last().unwrap() + RECORD_HEADER_BYTES + in_last.last().unwrap().len() as u64
    );
    let ends: Vec<u64> = offs.iter().skip(1).copied().chain([seg.end]).collect();
    let start = offs[offs.len() - 3];

    let mut cases = 0;
    for cut in start..=seg.end {
        for shorten in [true, false] {
            fs::write(&last, &pristine).expect("restore");
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&last)
                .expect("open");
            if shorten {
                f.set_len(cut).expect("set_len");
            } else {
                f.write_all_at(&vec![0u8; (seg.end - cut) as usize], cut)
                    .expect("zero");
            }
            drop(f);
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            let kept = (seg.first_index - 1) as usize + complete;
            let boundary = if complete == 0 {
                SEGMENT_HEADER_BYTES
            } else {
                ends[complete - 1]
            };

            let mut log = FileLog::open(&dir, config.clone())
                .unwrap_or_else(|e| panic!("cut {cut} shorten {shorten}: {e}"));
            assert_eq!(log.last_index(), kept as u64, "cut {cut} shorten {shorten}");
            assert_eq!(content(&log), ps[..kept], "cut {cut}");
            match &log.recovery().torn_tail {
                None => assert_eq!(cut, boundary, "cut {cut}: torn bytes not reported"),
                Some(t) => {
                    assert!(cut > boundary, "cut {cut}: torn tail at a record boundary");
                    assert_eq!(t.offset, boundary);
                    assert_eq!(t.index, kept as u64 + 1);
                    assert!(
                        t.bytes > 0 && t.bytes <= cut - boundary,
                        "bytes {}",
                        t.bytes
                    );
                }
            }
            assert_eq!(
                fs::metadata(&last).unwrap().len(),
                1024,
                "active segment re-extended"
            );
            let extra = payloads(1000, 2);
            append_all(&mut log, &extra);
            log.sync().expect("sync");
            drop(log);
            let log = FileLog::open(&dir, config.clone()).expect("reopen");
            assert_eq!(log.recovery().torn_tail, None);
            let mut expected = ps[..kept].to_vec();
            expected.extend(extra);
            assert_eq!(content(&log), expected);
            drop(log);
            let report = verify_dir(&dir).expect("verify");
            assert_eq!(report.torn_tail, None);
            assert_eq!(report.last_chain_hash, chain_of(&expected));
            // Back to the original segment set for the next case.
            for p in fs::read_dir(&dir).unwrap() {
                let p = p.unwrap().path();
                if p.extension().is_some_and(|e| e == "log") && !paths.contains(&p) {
                    fs::remove_file(p).unwrap();
                }
            }
            cases += 1;
        }
    }
    assert!(cases > 100);
}

/// Flips one bit in every byte of every segment of a small log: verification and recovery
/// always notice, as a torn tail only in the last segment (and then keep a prefix of the
/// records), as corruption everywhere else. Never the same log with different content.
#[test]
fn bit_flips_anywhere_are_detected() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = small(512);
    let ps = payloads(1, 14);
    let paths = build(&dir, &config, &ps);
    assert!(paths.len() >= 3, "{} segments", paths.len());
    let pristine: Vec<Vec<u8>> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
    let last_first = {
        let log = FileLog::open(&dir, config.clone()).unwrap();
        log.segments().pop().unwrap().first_index
    };
    let last_offsets = offsets(&ps[(last_first - 1) as usize..]);
    // The index of the record of the last segment whose frame holds byte `pos`, if any.
    let record_at = |pos: u64| {
        last_offsets
            .iter()
            .rposition(|&o| o <= pos)
            .map(|k| last_first + k as u64)
            .filter(|&i| {
                let k = (i - last_first) as usize;
                pos < last_offsets[k] + RECORD_HEADER_BYTES + ps[(i - 1) as usize].len() as u64
            })
    };
    let (mut torn, mut corrupt) = (0, 0);
    for (f, path) in paths.iter().enumerate() {
        let is_last = f + 1 == paths.len();
        for pos in 0..pristine[f].len() {
            let mut bytes = pristine[f].clone();
            bytes[pos] ^= 1 << (pos % 8);
            fs::write(path, &bytes).unwrap();
            let what = format!("file {f} byte {pos}");

            match verify_dir(&dir) {
                Ok(r) => {
                    assert!(
                        is_last,
                        "{what}: verify accepted a flip in an earlier segment"
                    );
                    assert!(
                        r.torn_tail.is_some(),
                        "{what}: verify accepted a flipped log"
                    );
                }
                Err(e) => assert!(e.is_corrupt(), "{what}: {e}"),
            }
            match FileLog::open(&dir, config.clone()) {
                Ok(log) => {
                    assert!(
                        is_last,
                        "{what}: open accepted a flip in an earlier segment"
                    );
                    let t = log.recovery().torn_tail.clone();
                    assert!(t.is_some(), "{what}: open accepted a flipped log silently");
                    let got = content(&log);
                    assert!(
                        got.len() <= ps.len() && got[..] == ps[..got.len()],
                        "{what}: not a prefix"
                    );
                    assert!(log.last_index() >= last_first - 1);
                    if let Some(i) = record_at(pos as u64) {
                        assert!(
                            log.last_index() < i,
                            "{what}: the flipped record {i} was kept"
                        );
                    } else {
                        assert_eq!(got, ps, "{what}: a flip after the end cost records");
                    }
                    torn += 1;
                }
                Err(e) => {
                    assert!(e.is_corrupt(), "{what}: {e}");
                    corrupt += 1;
                }
            }
            fs::write(path, &pristine[f]).unwrap();
        }
    }
    assert!(torn > 0 && corrupt > 0);
    verify_dir(&dir).expect("restored log verifies");
}

/// Replaces a record by one with a different payload and a valid CRC: the hash chain
/// catches it (a hard error even in the last segment), whether or not the forger also
/// recomputed the record's chain hash.
#[test]
fn forged_records_with_valid_crc_are_caught_by_the_chain() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = small(512);
    let ps = payloads(1, 14);
    let paths = build(&dir, &config, &ps);
    let segs = {
        let log = FileLog::open(&dir, config.clone()).unwrap();
        log.segments()
    };
    let last_index = ps.len() as u64;

    // (index to forge, recompute its chain hash too)
    let mut targets = Vec::new();
    for s in &segs {
        targets.push((s.first_index, false));
        targets.push((s.first_index, true));
        targets.push((s.first_index + s.records - 1, true));
    }
    for (index, rechain) in targets {
        let s = segs.iter().rposition(|s| s.first_index <= index).unwrap();
        let seg = &segs[s];
        let in_seg =
            &ps[(seg.first_index - 1) as usize..(seg.first_index - 1 + seg.records) as usize];
        let off = offsets(in_seg)[(index - seg.first_index) as usize];
        let original = fs::read(&seg.path).unwrap();
        let mut bytes = original.clone();
        let plen = ps[(index - 1) as usize].len();
        let at = off as usize;
        let body = at + 8..at + 48 + plen;
        for b in &mut bytes[at + 48..at + 48 + plen] {
            *b = b.wrapping_add(1); // a different payload of the same length
        }
        if rechain {
            let prev = if index == 1 {
                GENESIS_HASH
            } else {
                chain_of(&ps[..(index - 1) as usize])
            };
            let forged = chain_next(&prev, index, &bytes[at + 48..at + 48 + plen]);
            bytes[at + 16..at + 48].copy_from_slice(&forged);
        }
        let crc = crc32c::crc32c(&bytes[body]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        fs::write(&seg.path, &bytes).unwrap();

        let what = format!("forged {index} rechain {rechain}");
        let opened = FileLog::open(&dir, config.clone());
        let verified = verify_dir(&dir);
        if rechain && index == last_index {
            // The newest record rewritten with a consistent chain: only an anchor kept
            // elsewhere (another replica, a snapshot) tells.
            let r = verified.expect("verify");
            assert_ne!(r.last_chain_hash, chain_of(&ps), "{what}");
            assert!(opened.is_ok());
        } else {
            for e in [
                opened.map(|_| ()).unwrap_err(),
                verified.map(|_| ()).unwrap_err(),
            ] {
                let (file, offset, idx, reason) = corrupt_parts(e);
                if !rechain {
                    assert_eq!(
                        (file, offset, idx, reason),
                        (seg.path.clone(), off, index, CorruptReason::ChainMismatch),
                        "{what}"
                    );
                } else if index + 1 < seg.first_index + seg.records {
                    // The next record no longer chains.
                    assert_eq!(
                        (idx, reason),
                        (index + 1, CorruptReason::ChainMismatch),
                        "{what}"
                    );
                    assert_eq!(file, seg.path, "{what}");
                } else {
                    // The next segment's header no longer chains.
                    assert_eq!(
                        (idx, reason),
                        (index + 1, CorruptReason::SegmentChainBreak),
                        "{what}"
                    );
                    assert_eq!(file, segs[s + 1].path, "{what}");
                }
            }
        }
        fs::write(&seg.path, &original).unwrap();
        let _ = &paths;
    }
    verify_dir(&dir).expect("restored");
}

#[test]
fn archive_before_then_verify_archive_and_live() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = small(1024);
    let ps = payloads(1, 100);
    let mut log = FileLog::open(&dir, config.clone()).unwrap();
    append_all(&mut log, &ps);
    log.sync().unwrap();
    let before = log.segments().len();
    let first = log.archive_before(60).expect("archive");
    assert!(first > 1 && first <= 60, "first {first}");
    let live = log.segments();
    assert_eq!(live[0].first_index, first);
    let archived: Vec<PathBuf> = fs::read_dir(dir.join(ARCHIVE_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        archived.len() + live.len(),
        before,
        "segments moved, none lost"
    );
    assert_eq!(content(&log), ps[(first - 1) as usize..]);
    assert_eq!(
        log.chain_hash(first - 1).unwrap(),
        chain_of(&ps[..(first - 1) as usize])
    );
    drop(log);

    let report = verify_dir(&dir).expect("verify");
    assert_eq!(
        (report.first_index, report.last_index, report.records),
        (1, 100, 100)
    );
    assert_eq!(report.last_chain_hash, chain_of(&ps));
    assert_eq!(
        report.segments.iter().filter(|s| s.archived).count(),
        archived.len()
    );
    assert!(report
        .segments
        .windows(2)
        .all(|w| w[0].first_index < w[1].first_index));

    let log = FileLog::open(&dir, config.clone()).expect("reopen");
    assert_eq!(log.first_index(), first);
    assert_eq!(content(&log), ps[(first - 1) as usize..]);
    drop(log);

    // Damage in an archived segment is found, with its file.
    let mut sorted = archived.clone();
    sorted.sort();
    let victim = &sorted[1];
    let original = fs::read(victim).unwrap();
    let mut bad = original.clone();
    bad[SEGMENT_HEADER_BYTES as usize + 20] ^= 0x10;
    fs::write(victim, &bad).unwrap();
    let (file, offset, _, reason) = corrupt_parts(verify_dir(&dir).unwrap_err());
    assert_eq!((file, offset), (victim.clone(), SEGMENT_HEADER_BYTES));
    assert!(
        matches!(reason, CorruptReason::Checksum { .. }),
        "{reason:?}"
    );
    fs::write(victim, &original).unwrap();

    // A missing archived segment is a gap; a missing first one is missing history.
    let aside = tmp.path().join("aside");
    fs::rename(victim, &aside).unwrap();
    let (_, _, _, reason) = corrupt_parts(verify_dir(&dir).unwrap_err());
    assert!(
        matches!(reason, CorruptReason::SegmentGap { .. }),
        "{reason:?}"
    );
    fs::rename(&aside, victim).unwrap();
    fs::rename(&sorted[0], &aside).unwrap();
    let (_, _, _, reason) = corrupt_parts(verify_dir(&dir).unwrap_err());
    assert!(
        matches!(reason, CorruptReason::HistoryMissing { .. }),
        "{reason:?}"
    );
    fs::rename(&aside, &sorted[0]).unwrap();
    verify_dir(&dir).expect("whole again");

    // Without its live segments, the log does not restart from scratch over its history.
    let live_aside = tmp.path().join("live-aside");
    fs::create_dir(&live_aside).unwrap();
    for s in &live {
        fs::rename(&s.path, live_aside.join(s.path.file_name().unwrap())).unwrap();
    }
    let (_, _, _, reason) = corrupt_parts(FileLog::open(&dir, config).unwrap_err());
    assert_eq!(reason, CorruptReason::NoLiveSegment);
}

#[test]
fn truncate_across_segments_moves_discarded_segments_aside() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = small(1024);
    let ps = payloads(1, 100);
    let mut log = FileLog::open(&dir, config.clone()).unwrap();
    append_all(&mut log, &ps);
    log.sync().unwrap();
    let segments_before = log.segments().len();
    log.truncate_after(15).expect("truncate");
    assert_eq!((log.last_index(), log.durable_index()), (15, 15));
    let moved = fs::read_dir(dir.join(TRUNCATED_DIR)).unwrap().count();
    assert_eq!(moved + log.segments().len(), segments_before);
    let more = payloads(500, 30);
    append_all(&mut log, &more);
    log.sync().unwrap();
    // Truncate the same region again: names already in truncated/ are not replaced.
    log.truncate_after(15).expect("truncate again");
    append_all(&mut log, &more);
    log.sync().unwrap();
    drop(log);
    assert!(fs::read_dir(dir.join(TRUNCATED_DIR)).unwrap().count() > moved);
    let log = FileLog::open(&dir, config).unwrap();
    assert_eq!(
        log.recovery().torn_tail,
        None,
        "truncated bytes were zeroed"
    );
    let mut expected = ps[..15].to_vec();
    expected.extend(more);
    assert_eq!(content(&log), expected);
    let report = verify_dir(&dir).expect("verify");
    assert_eq!(report.last_chain_hash, chain_of(&expected));
}

#[test]
fn reset_to_restarts_the_chain_and_finishes_after_a_crash() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = small(1024);
    let ps = payloads(1, 50);
    let mut log = FileLog::open(&dir, config.clone()).unwrap();
    append_all(&mut log, &ps);
    let anchor = [9u8; 32];
    log.reset_to(500, anchor).expect("reset");
    let after = payloads(501, 5);
    append_all(&mut log, &after);
    log.sync().unwrap();
    drop(log);
    let report = verify_dir(&dir).expect("verify");
    assert_eq!(report.restarts, vec![501]);
    assert_eq!(
        (report.first_index, report.last_index, report.records),
        (1, 505, 55)
    );
    let chain = after
        .iter()
        .enumerate()
        .fold(anchor, |h, (i, p)| chain_next(&h, 501 + i as u64, p));
    assert_eq!(report.last_chain_hash, chain);

    // A crash in the middle of the reset leaves old segments live: open finishes the move.
    let newest_old = fs::read_dir(dir.join(ARCHIVE_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    fs::rename(&newest_old, dir.join(newest_old.file_name().unwrap())).unwrap();
    let log = FileLog::open(&dir, config).expect("open");
    assert_eq!(log.recovery().archived_on_open, 1);
    assert_eq!((log.first_index(), log.last_index()), (501, 505));
    assert_eq!(content(&log), after);
    drop(log);
    verify_dir(&dir).expect("verify");
}

#[test]
fn verify_reports_a_torn_tail_without_touching_it() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = small(1024);
    let ps = payloads(1, 5);
    let paths = build(&dir, &config, &ps);
    let last = paths.last().unwrap();
    let end = offsets(&ps).last().unwrap() + RECORD_HEADER_BYTES + ps[4].len() as u64;
    let f = fs::OpenOptions::new().write(true).open(last).unwrap();
    f.write_all_at(&[0x40, 0, 0, 0, 1, 2, 3], end).unwrap(); // a half-written record
    f.write_all_at(&[0xFF], 900).unwrap(); // and garbage further on
    drop(f);
    let before = fs::read(last).unwrap();
    let report = verify_dir(&dir).expect("verify");
    let t = report.torn_tail.expect("torn tail");
    assert_eq!((t.offset, t.index, t.bytes), (end, 6, 901 - end));
    assert_eq!(report.last_index, 5);
    assert_eq!(fs::read(last).unwrap(), before, "verify is read only");
    let log = FileLog::open(&dir, config).unwrap();
    assert_eq!(log.recovery().torn_tail.as_ref().unwrap().bytes, 901 - end);
    assert_eq!(content(&log), ps);
    drop(log);
    assert!(fs::read(last).unwrap()[end as usize..]
        .iter()
        .all(|&b| b == 0));
    assert_eq!(verify_dir(&dir).unwrap().torn_tail, None);
}

#[test]
fn damage_after_open_is_an_error_on_read_not_a_panic() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = small(1 << 16);
    let ps = payloads(1, 10);
    let mut log = FileLog::open(&dir, config).unwrap();
    append_all(&mut log, &ps);
    log.sync().unwrap();
    let path = log.segments()[0].path.clone();
    let off = offsets(&ps)[4];
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xEE], off + 50).unwrap();
    let (file, offset, index, reason) = corrupt_parts(log.read(3, 5).unwrap_err());
    assert_eq!((file, offset, index), (path, off, 5));
    assert!(matches!(reason, CorruptReason::Checksum { .. }));
    assert!(log.read(1, 4).is_ok());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let tmp = fast_tempdir();
    let log = FileLog::open(tmp.path(), small(1024)).unwrap();
    match FileLog::open(tmp.path(), small(1024)) {
        Err(StorageError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(log);
    FileLog::open(tmp.path(), small(1024)).expect("free again");
}

#[test]
fn a_reader_lock_excludes_writers_and_is_refused_while_one_writes() {
    let tmp = fast_tempdir();
    // No LOCK file yet (no writer ever opened it): nothing to lock, nothing created.
    let r = tradelog_storage::lock_shared(tmp.path()).expect("nothing to lock");
    assert!(!tmp.path().join("LOCK").exists());
    drop(r);
    let log = FileLog::open(tmp.path(), small(1024)).unwrap();
    match tradelog_storage::lock_shared(tmp.path()) {
        Err(StorageError::Locked { .. }) => {}
        other => panic!("expected Locked while a writer has it open, got {other:?}"),
    }
    drop(log);
    let r1 = tradelog_storage::lock_shared(tmp.path()).expect("free again");
    let r2 = tradelog_storage::lock_shared(tmp.path()).expect("readers share");
    match FileLog::open(tmp.path(), small(1024)) {
        Err(StorageError::Locked { .. }) => {}
        other => panic!("expected Locked while readers hold it, got {other:?}"),
    }
    drop((r1, r2));
    FileLog::open(tmp.path(), small(1024)).expect("free for a writer again");
}

#[test]
fn impossible_configurations_are_refused() {
    let tmp = fast_tempdir();
    for config in [
        FileLogConfig {
            segment_bytes_max: 64 + 48 + 99,
            record_bytes_max: 100,
            write_buffer_bytes: 1,
            spare_segments: true,
        },
        FileLogConfig {
            segment_bytes_max: 1 << 33,
            ..FileLogConfig::default()
        },
    ] {
        match FileLog::open(tmp.path(), config) {
            Err(StorageError::Config(_)) => {}
            other => panic!("expected Config, got {other:?}"),
        }
    }
    FileLog::open(tmp.path(), FileLogConfig::default()).expect("the default works");
}

#[test]
fn a_header_that_does_not_match_its_file_name_is_corruption() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = small(1024);
    let paths = build(&dir, &config, &payloads(1, 40));
    // Swap two segment files: names and headers disagree.
    let (a, b) = (&paths[1], &paths[2]);
    let tmpname = dir.join("x");
    fs::rename(a, &tmpname).unwrap();
    fs::rename(b, a).unwrap();
    fs::rename(&tmpname, b).unwrap();
    let (file, offset, _, reason) = corrupt_parts(FileLog::open(&dir, config).unwrap_err());
    assert_eq!((file, offset), (a.clone(), 0));
    assert!(
        matches!(reason, CorruptReason::NameMismatch { .. }),
        "{reason:?}"
    );
}

#[test]
fn segments_come_from_zero_filled_spares_written_ahead() {
    let tmp = disk_tempdir();
    let config = small(4096);
    let spare = tmp.path().join(tradelog_storage::SPARE_FILE);
    // A spare left by an earlier process is not part of the log: open removes it.
    fs::write(&spare, b"left over").unwrap();
    let mut log = FileLog::open(tmp.path(), config.clone()).expect("open");
    assert!(!spare.exists());
    let ps = payloads(1, 400);
    let mut next = 0usize;
    // Fill the first segment past half: a spare is written for the second.
    while log.segments().len() == 1 && log.segments()[0].end < 2048 {
        append_all(&mut log, &ps[next..next + 1]);
        next += 1;
    }
    log.wait_for_spare();
    let bytes = fs::read(&spare).expect("the spare exists");
    assert_eq!(bytes.len(), 4096);
    assert!(bytes.iter().all(|&b| b == 0), "a spare is zeros");
    assert_eq!(log.spare_segments_used(), 0);
    // The next segment is the spare, renamed, with its header.
    while log.segments().len() == 1 {
        append_all(&mut log, &ps[next..next + 1]);
        next += 1;
    }
    assert_eq!(log.spare_segments_used(), 1);
    assert!(!spare.exists(), "taken, and the next one is not due yet");
    let second = &log.segments()[1];
    let bytes = fs::read(&second.path).expect("read");
    assert_eq!(bytes.len(), 4096);
    assert_eq!(bytes[..8], SEGMENT_MAGIC);
    assert_eq!(
        u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
        second.first_index
    );
    // Many more segments, spares or not as they are ready; everything reads back, after a
    // reopen too, and the directory verifies.
    append_all(&mut log, &ps[next..]);
    log.sync().expect("sync");
    assert!(log.segments().len() >= 8);
    let read = |log: &FileLog| -> Vec<Vec<u8>> {
        log.read(1, 1000)
            .expect("read")
            .into_iter()
            .map(|r| r.payload)
            .collect()
    };
    assert_eq!(read(&log), ps);
    drop(log);
    let log = FileLog::open(tmp.path(), config).expect("reopen");
    assert_eq!(read(&log), ps);
    assert!(!spare.exists());
    verify_dir(tmp.path()).expect("verifies");
}

#[test]
fn without_spares_no_spare_is_written() {
    let tmp = fast_tempdir();
    let config = FileLogConfig {
        spare_segments: false,
        ..small(4096)
    };
    let mut log = FileLog::open(tmp.path(), config).expect("open");
    append_all(&mut log, &payloads(1, 200));
    log.wait_for_spare();
    assert!(log.segments().len() > 2);
    assert_eq!(log.spare_segments_used(), 0);
    assert!(!tmp.path().join(tradelog_storage::SPARE_FILE).exists());
}
