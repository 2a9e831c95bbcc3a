//! Arbitrary damage to segment files never panics and is never accepted silently.

use crate::common::fast_tempdir;
use proptest::prelude::*;
use std::fs;
use tradelog_storage::{
    segment_file_name, verify_dir, CorruptReason, FileLog, FileLogConfig, LogStore, StorageError,
    SEGMENT_HEADER_BYTES,
};

fn config() -> FileLogConfig {
    FileLogConfig {
        segment_bytes_max: 512,
        record_bytes_max: 100,
        write_buffer_bytes: 64,
        spare_segments: true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Overwrites a random range of a random segment with random bytes.
    #[test]
    fn random_damage_is_caught(
        records in 8u64..20,
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        garbage in prop::collection::vec(any::<u8>(), 1..200),
    ) {
        let tmp = fast_tempdir();
        let dir = tmp.path().join("log");
        let mut log = FileLog::open(&dir, config()).unwrap();
        let payloads: Vec<Vec<u8>> = (0..records).map(|i| vec![i as u8 | 1; (i * 7 % 90) as usize]).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        log.append(&refs).unwrap();
        log.sync().unwrap();
        let segs = log.segments();
        drop(log);
        let k = which.index(segs.len());
        let path = &segs[k].path;
        let original = fs::read(path).unwrap();
        let start = at.index(original.len());
        let mut bytes = original.clone();
        let end = (start + garbage.len()).min(bytes.len());
        bytes[start..end].copy_from_slice(&garbage[..end - start]);
        prop_assume!(bytes != original);
        fs::write(path, &bytes).unwrap();
        let is_last = k + 1 == segs.len();

        match verify_dir(&dir) {
            Ok(r) => prop_assert!(is_last && r.torn_tail.is_some(), "verify accepted damage"),
            Err(e) => prop_assert!(e.is_corrupt(), "{}", e),
        }
        match FileLog::open(&dir, config()) {
            Ok(log) => {
                prop_assert!(is_last && log.recovery().torn_tail.is_some(), "open accepted damage");
                let got = log.read(1, usize::MAX).unwrap();
                let first_diff = bytes.iter().zip(&original).position(|(a, b)| a != b).unwrap();
                prop_assert!(got.len() < payloads.len() || first_diff as u64 >= segs[k].end);
                for r in got {
                    prop_assert_eq!(&r.payload, &payloads[(r.index - 1) as usize]);
                }
            }
            Err(e) => prop_assert!(e.is_corrupt(), "{}", e),
        }
    }
}

#[test]
fn impossible_first_indexes_are_corruption() {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    FileLog::open(&dir, config()).unwrap().close().unwrap();
    let good = dir.join(segment_file_name(1));
    let bytes = fs::read(&good).unwrap();
    for first in [0u64, u64::MAX] {
        let mut b = bytes.clone();
        b[16..24].copy_from_slice(&first.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        fs::remove_file(&good).ok();
        for f in fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "log") {
                fs::remove_file(p).unwrap();
            }
        }
        let name = dir.join(segment_file_name(first));
        fs::write(&name, &b).unwrap();
        for e in [
            FileLog::open(&dir, config()).map(|_| ()).unwrap_err(),
            verify_dir(&dir).map(|_| ()).unwrap_err(),
        ] {
            match e {
                StorageError::Corrupt { reason, offset, .. } => {
                    assert_eq!((reason, offset), (CorruptReason::BadFirstIndex(first), 0));
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
        fs::remove_file(&name).unwrap();
    }
    // A file shorter than a header.
    fs::write(
        dir.join(segment_file_name(1)),
        &bytes[..SEGMENT_HEADER_BYTES as usize - 1],
    )
    .unwrap();
    assert!(matches!(
        FileLog::open(&dir, config()),
        Err(StorageError::Corrupt {
            reason: CorruptReason::ShortHeader { .. },
            ..
        })
    ));
}
