//! Whole-file replacement that survives a crash: the snapshot files and small metadata
//! files of the node and raft crates; and removal of large files.
//!
//! Both are written so that a large file does not stall the `fdatasync` of a log on the
//! same disk. Measured on this project's machine (ext4 mounted with `discard`, virtio
//! disk; docs/design/0005): while a 200 MB file was synced in one `fsync`, a log's 4 KiB
//! `fdatasync`s waited up to 67-107 ms; with the file synced every
//! [`WRITE_SYNC_CHUNK_BYTES`] as it was written, at most 4 ms. Unlinking a 200 MB file
//! stalled them 36-48 ms (the freed blocks are discarded in one journal commit); shrinking
//! it [`REMOVE_SHRINK_CHUNK_BYTES`] at a time first, at most 5 ms.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file being written atomically is synced after every this many bytes (1 MiB), so the
/// disk never has more than this much of it to flush ahead of a log's sync.
pub const WRITE_SYNC_CHUNK_BYTES: usize = 1 << 20;

/// A large file being removed is shrunk by this many bytes (8 MiB) at a time, each step
/// synced, before it is unlinked: each step frees (and discards) only this much.
pub const REMOVE_SHRINK_CHUNK_BYTES: u64 = 8 << 20;

/// Writes `bytes` to `dir/name` so that a crash leaves either the whole new file or the
/// old one: a temporary file written and fsynced, renamed into place, then the directory
/// fsynced. Errors name the path.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let with_path = |p: &Path| {
        let p = p.to_path_buf();
        move |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    {
        let mut f = std::fs::File::create(&tmp).map_err(with_path(&tmp))?;
        let mut chunks = bytes.chunks(WRITE_SYNC_CHUNK_BYTES).peekable();
        while let Some(chunk) = chunks.next() {
            f.write_all(chunk).map_err(with_path(&tmp))?;
            if chunks.peek().is_some() {
                f.sync_data().map_err(with_path(&tmp))?;
            }
        }
        f.sync_all().map_err(with_path(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(with_path(&path))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Removes the file at `path`, first shrinking it [`REMOVE_SHRINK_CHUNK_BYTES`] at a time
/// (each step synced) so that no single journal commit frees the whole of a large file.
/// The removal itself is not synced (a crash may leave the file, shorter or whole; callers
/// remove only files they no longer need). Errors name the path.
pub fn remove_gradually(path: &Path) -> io::Result<()> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    {
        let f = OpenOptions::new().write(true).open(path).map_err(named)?;
        let mut len = f.metadata().map_err(named)?.len();
        while len > REMOVE_SHRINK_CHUNK_BYTES {
            len -= REMOVE_SHRINK_CHUNK_BYTES;
            f.set_len(len).map_err(named)?;
            f.sync_data().map_err(named)?;
        }
    }
    std::fs::remove_file(path).map_err(named)
}

/// `fsync`s a directory (makes renames and new names in it durable). Errors name it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..3 * WRITE_SYNC_CHUNK_BYTES + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        let p = write_atomically(dir.path(), "f", b"old").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(write_atomically(dir.path(), "f", &big).unwrap(), p);
        assert_eq!(std::fs::read(&p).unwrap(), big);
        write_atomically(dir.path(), "f", b"").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["f"]);
    }

    #[test]
    fn removes_large_and_small_files_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * REMOVE_SHRINK_CHUNK_BYTES + 5;
        let big = dir.path().join("big");
        std::fs::File::create(&big).unwrap().set_len(size).unwrap();
        let small = write_atomically(dir.path(), "small", b"x").unwrap();
        remove_gradually(&big).unwrap();
        remove_gradually(&small).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let e = remove_gradually(&big).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("big"), "{e}");
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = write_atomically(&missing, "f", b"x").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
