//! Zero-filled spare segments, written ahead on a background thread.
//!
//! A segment made with `fallocate` holds *unwritten* extents: the first write into each
//! block changes the file's metadata, so every `fdatasync` of the log waits for a journal
//! commit. In a file whose zeros were really written, a sync is only the data. Measured on
//! this project's machine (ext4, virtio disk; docs/design/0005): a 4 KiB append and
//! `fdatasync` took p50 0.25-0.29 ms in a fallocated file, 0.13 ms in a zero-filled one.
//!
//! Writing a segment's zeros takes a while (64 MiB by default), so it is done ahead: once
//! the active segment is half full (a log that never gets that far never writes one), a
//! thread writes `DIR/`[`SPARE_FILE`], syncing every
//! [`WRITE_SYNC_CHUNK_BYTES`](crate::WRITE_SYNC_CHUNK_BYTES) so that it never holds up the
//! log's own syncs for long. When the log moves to a new segment it takes the spare if it
//! is complete (writing the header, syncing, renaming it into place, syncing the
//! directory: the same steps and crash guarantees as a fresh segment); the next spare is
//! started once that segment is half full. If the spare is not ready the log makes the
//! segment with `fallocate` as before; if writing it failed, it is dropped and the next
//! half-full segment tries again. A spare
//! is not part of the log: one found when the log opens (a crash, or a log dropped while
//! one was being written) is removed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Name of the spare segment inside a log directory.
pub const SPARE_FILE: &str = "spare-segment.tmp";

/// Removes a spare left in `dir` (by a crash, or a log dropped while writing one).
pub(crate) fn remove_leftover(dir: &Path) -> io::Result<()> {
    match crate::remove_gradually(&dir.join(SPARE_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A spare segment being written, or written.
pub(crate) struct Spare {
    path: PathBuf,
    size: u64,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// The writer's result, once it finished.
    result: Option<io::Result<()>>,
}

impl Spare {
    /// Starts writing a spare of `size` bytes in `dir` (replacing any there).
    pub fn start(dir: &Path, size: u64) -> io::Result<Spare> {
        let path = dir.join(SPARE_FILE);
        let cancel = Arc::new(AtomicBool::new(false));
        let (p, c) = (path.clone(), Arc::clone(&cancel));
        let thread = std::thread::Builder::new()
            .name("log-spare".into())
            .spawn(move || fill(&p, size, &c))?;
        Ok(Spare {
            path,
            size,
            cancel,
            thread: Some(thread),
            result: None,
        })
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            self.result = Some(t.join().expect("the spare writer panicked"));
        }
    }

    /// The spare, opened for writing, if it is complete; `None` while it is being written
    /// or if writing it failed (the log then makes its next segment without it).
    pub fn take(&mut self) -> Option<(PathBuf, File)> {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            self.join();
        }
        self.result.take()?.ok()?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .ok()?;
        (file.metadata().ok()?.len() == self.size).then(|| (self.path.clone(), file))
    }

    /// True when the writer has stopped and its result was taken: this spare will never
    /// be ready.
    pub fn spent(&self) -> bool {
        self.thread.is_none() && self.result.is_none()
    }

    /// Waits until the spare is written (tests and benchmarks).
    pub fn wait(&mut self) {
        self.join();
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes `size` zero bytes to `path`, syncing every chunk; stops early when cancelled.
fn fill(path: &Path, size: u64, cancel: &AtomicBool) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let zeros = vec![0u8; crate::WRITE_SYNC_CHUNK_BYTES];
    let mut at = 0;
    while at < size {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "spare cancelled",
            ));
        }
        let n = (size - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        file.sync_data()?;
        at += n as u64;
    }
    file.sync_all()
}
