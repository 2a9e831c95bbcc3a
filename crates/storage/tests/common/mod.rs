//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use tempfile::TempDir;
use tradelog_storage::conformance::Harness;
use tradelog_storage::{FileLog, FileLogConfig};

/// A temporary directory, on tmpfs when there is one: the byte-by-byte tests open a log
/// thousands of times and every open syncs, which costs milliseconds on a disk.
pub fn fast_tempdir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("tradelog-storage-")
            .tempdir_in(shm)
        {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// A temporary directory on the default (disk) temporary file system.
pub fn disk_tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("tradelog-storage-")
        .tempdir()
        .expect("tempdir")
}

/// The conformance harness of `FileLog`: one directory per created log.
pub struct FileHarness {
    pub config: FileLogConfig,
    dirs: Vec<TempDir>,
    paths: Vec<PathBuf>,
}

impl FileHarness {
    pub fn new(config: FileLogConfig) -> Self {
        FileHarness {
            config,
            dirs: Vec::new(),
            paths: Vec::new(),
        }
    }

    fn path_of(&self, log: &FileLog) -> PathBuf {
        log.dir().to_path_buf()
    }
}

impl Harness for FileHarness {
    type Log = FileLog;

    fn create(&mut self) -> FileLog {
        let dir = disk_tempdir();
        let path = dir.path().join("log");
        self.dirs.push(dir);
        self.paths.push(path.clone());
        FileLog::open(&path, self.config.clone()).expect("open a new log")
    }

    fn reopen(&mut self, log: FileLog) -> FileLog {
        let path = self.path_of(&log);
        drop(log);
        let log = FileLog::open(&path, self.config.clone()).expect("reopen");
        assert!(
            log.recovery().torn_tail.is_none(),
            "clean restart found a torn tail"
        );
        log
    }

    fn crash(&mut self, log: FileLog) -> FileLog {
        let path = self.path_of(&log);
        log.simulate_crash();
        FileLog::open(&path, self.config.clone()).expect("reopen after crash")
    }

    fn record_bytes_max(&self) -> usize {
        self.config.record_bytes_max
    }
}
