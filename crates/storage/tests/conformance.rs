//! The conformance suite for both implementations, in several configurations.

use crate::common::FileHarness;
use tradelog_storage::conformance::{run_all, Harness};
use tradelog_storage::{FileLogConfig, MemLog};

struct MemHarness {
    record_bytes_max: usize,
}

impl Harness for MemHarness {
    type Log = MemLog;
    fn create(&mut self) -> MemLog {
        MemLog::new(self.record_bytes_max)
    }
    fn reopen(&mut self, log: MemLog) -> MemLog {
        log.reopen()
    }
    fn crash(&mut self, log: MemLog) -> MemLog {
        log.crash()
    }
    fn record_bytes_max(&self) -> usize {
        self.record_bytes_max
    }
}

/// A harness whose crashes keep some unsynced records, as a real crash may.
struct MemKeepHarness;

impl Harness for MemKeepHarness {
    type Log = MemLog;
    fn create(&mut self) -> MemLog {
        MemLog::new(300)
    }
    fn reopen(&mut self, log: MemLog) -> MemLog {
        log.reopen()
    }
    fn crash(&mut self, log: MemLog) -> MemLog {
        log.crash_keeping(2)
    }
    fn record_bytes_max(&self) -> usize {
        300
    }
}

#[test]
fn mem_log() {
    run_all(&mut MemHarness {
        record_bytes_max: 300,
    });
    run_all(&mut MemHarness {
        record_bytes_max: 0,
    });
    run_all(&mut MemKeepHarness);
}

#[test]
fn file_log_small_segments_tiny_buffer() {
    // Segments of a few records, every record handed to the kernel at once.
    run_all(&mut FileHarness::new(FileLogConfig {
        segment_bytes_max: 64 + 48 + 300,
        record_bytes_max: 300,
        write_buffer_bytes: 1,
        spare_segments: true,
    }));
}

#[test]
fn file_log_small_segments_large_buffer() {
    // Rotation with buffered records; crashes lose the whole buffer.
    run_all(&mut FileHarness::new(FileLogConfig {
        segment_bytes_max: 1024,
        record_bytes_max: 300,
        write_buffer_bytes: 1 << 20,
        spare_segments: false,
    }));
}

#[test]
fn file_log_one_segment() {
    run_all(&mut FileHarness::new(FileLogConfig {
        segment_bytes_max: 1 << 20,
        record_bytes_max: 300,
        write_buffer_bytes: 256,
        spare_segments: true,
    }));
}

#[test]
fn boxed_dyn_log_store() {
    // The trait is object safe and `Box<dyn LogStore>` is a LogStore.
    struct BoxHarness;
    impl Harness for BoxHarness {
        type Log = Box<dyn tradelog_storage::LogStore>;
        fn create(&mut self) -> Self::Log {
            Box::new(MemLog::new(100))
        }
        fn reopen(&mut self, mut log: Self::Log) -> Self::Log {
            // A restart syncs what it finds.
            log.sync().expect("sync");
            log
        }
        fn crash(&mut self, mut log: Self::Log) -> Self::Log {
            // A crash in which every record survived (a valid outcome).
            log.sync().expect("sync");
            log
        }
        fn record_bytes_max(&self) -> usize {
            100
        }
    }
    run_all(&mut BoxHarness);
}
