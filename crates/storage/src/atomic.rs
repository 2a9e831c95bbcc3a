//! Whole-file replacement that survives a crash: the snapshot files and small metadata
//! files of the node and raft crates.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
        f.write_all(bytes).map_err(with_path(&tmp))?;
        f.sync_all().map_err(with_path(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(with_path(&path))?;
    sync_dir(dir)?;
    Ok(path)
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
        let big: Vec<u8> = (0..(1 << 20) + 7).map(|i| (i % 251) as u8).collect();
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
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = write_atomically(&missing, "f", b"x").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
