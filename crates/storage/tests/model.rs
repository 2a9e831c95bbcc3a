//! Property test: `FileLog` and `MemLog` agree under random sequences of appends, syncs,
//! truncations, archiving, resets, reads, clean restarts and crashes.

use crate::common::fast_tempdir;
use proptest::prelude::*;
use tradelog_storage::{
    chain_next, verify_dir, FileLog, FileLogConfig, LogStore, MemLog, StorageError,
};

const RECORD_MAX: usize = 150;

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Vec<u8>>),
    Sync,
    /// Truncate after `last - n` (out of range when that is archived).
    Truncate(u64),
    /// Sync, then archive before `first + n`.
    Archive(u64),
    /// Reset to `last + n`.
    Reset(u64),
    Read(u64, usize),
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=RECORD_MAX), 0..5)
            .prop_map(Op::Append),
        3 => Just(Op::Sync),
        2 => (0u64..8).prop_map(Op::Truncate),
        1 => (0u64..40).prop_map(Op::Archive),
        1 => (0u64..3).prop_map(Op::Reset),
        2 => (0u64..200, 0usize..12).prop_map(|(f, m)| Op::Read(f, m)),
        1 => Just(Op::Reopen),
        2 => Just(Op::Crash),
    ]
}

fn same_outcome<T: PartialEq + std::fmt::Debug>(
    file: Result<T, StorageError>,
    mem: Result<T, StorageError>,
    what: &str,
) -> Result<(), TestCaseError> {
    match (file, mem) {
        (Ok(f), Ok(m)) => prop_assert_eq!(f, m, "{}", what),
        (Err(StorageError::OutOfRange { .. }), Err(StorageError::OutOfRange { .. })) => {}
        (f, m) => prop_assert!(false, "{}: file {:?} vs mem {:?}", what, f, m),
    }
    Ok(())
}

fn compare(file: &FileLog, mem: &MemLog) -> Result<(), TestCaseError> {
    prop_assert_eq!(file.first_index(), mem.first_index(), "first_index");
    prop_assert_eq!(file.last_index(), mem.last_index(), "last_index");
    // The file log may be durable further (rotation syncs), never less, never past the end.
    prop_assert!(
        file.durable_index() >= mem.durable_index(),
        "durable behind the model"
    );
    prop_assert!(
        file.durable_index() <= file.last_index(),
        "durable past the end"
    );
    let first = file.first_index();
    same_outcome(
        file.read(first, usize::MAX),
        mem.read(first, usize::MAX),
        "content",
    )?;
    same_outcome(
        file.chain_hash(first - 1),
        mem.chain_hash(first - 1),
        "chain before first",
    )?;
    same_outcome(
        file.chain_hash(file.last_index()),
        mem.chain_hash(mem.last_index()),
        "last chain",
    )?;
    Ok(())
}

fn run(ops: Vec<Op>, write_buffer_bytes: usize) -> Result<(), TestCaseError> {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let config = FileLogConfig {
        segment_bytes_max: 512,
        record_bytes_max: RECORD_MAX,
        write_buffer_bytes,
        spare_segments: true,
    };
    let mut file = FileLog::open(&dir, config.clone()).expect("open");
    let mut mem = MemLog::new(RECORD_MAX);
    for op in ops {
        match op {
            Op::Append(batch) => {
                let refs: Vec<&[u8]> = batch.iter().map(|p| p.as_slice()).collect();
                same_outcome(file.append(&refs), mem.append(&refs), "append")?;
            }
            Op::Sync => same_outcome(file.sync(), mem.sync(), "sync")?,
            Op::Truncate(n) => {
                let index = file.last_index().saturating_sub(n);
                same_outcome(
                    file.truncate_after(index),
                    mem.truncate_after(index),
                    "truncate",
                )?;
            }
            Op::Archive(n) => {
                same_outcome(file.sync(), mem.sync(), "sync")?;
                let asked = file.first_index() + n;
                let f = file.archive_before(asked).expect("archive");
                prop_assert!(f <= asked.max(1), "archived at or above the index");
                prop_assert_eq!(mem.archive_before(f).expect("archive"), f);
            }
            Op::Reset(n) => {
                let index = file.last_index() + n;
                let hash = chain_next(&[0xC3; 32], index, b"snapshot");
                same_outcome(
                    file.reset_to(index, hash),
                    mem.reset_to(index, hash),
                    "reset",
                )?;
            }
            Op::Read(f, max) => {
                let from = f % (file.last_index() + 3);
                same_outcome(file.read(from, max), mem.read(from, max), "read")?;
            }
            Op::Reopen => {
                drop(file);
                file = FileLog::open(&dir, config.clone()).expect("reopen");
                prop_assert!(file.recovery().torn_tail.is_none());
                mem = mem.reopen();
            }
            Op::Crash => {
                let (durable, last) = (file.durable_index(), file.last_index());
                file.simulate_crash();
                file = FileLog::open(&dir, config.clone()).expect("open after crash");
                let kept = file.last_index();
                prop_assert!(
                    durable <= kept && kept <= last,
                    "crash kept {} records, durable {} last {}",
                    kept,
                    durable,
                    last
                );
                let unsynced = kept - mem.durable_index();
                mem = mem.crash_keeping(unsynced);
            }
        }
        compare(&file, &mem)?;
    }
    file.close().expect("close");
    let report = verify_dir(&dir).expect("verify");
    prop_assert_eq!(report.last_index, mem.last_index());
    prop_assert_eq!(
        report.last_chain_hash,
        mem.chain_hash(mem.last_index()).unwrap()
    );
    prop_assert!(report.torn_tail.is_none());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn file_log_behaves_like_mem_log(
        ops in prop::collection::vec(op(), 1..60),
        write_buffer_bytes in prop_oneof![Just(1usize), Just(300), Just(1 << 20)],
    ) {
        run(ops, write_buffer_bytes)?;
    }
}
