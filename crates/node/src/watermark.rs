//! The durable watermark file (see [`crate::WATERMARK_FILE`]): written atomically (temp
//! file, fsync, rename, fsync directory) after a group commit, so every index up to the
//! one it names was on disk before it.

use crate::{NodeError, WATERMARK_FILE};
use std::fs;
use std::path::Path;

const MAGIC: [u8; 8] = *b"TLWMARK1";
const VERSION: u32 = 1;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError {
    let path = path.to_path_buf();
    move |source| NodeError::SnapshotIo { path, source }
}

/// Reads the watermark, if the file exists. A damaged file is an error (it is written
/// atomically, so damage means the directory was tampered with).
pub fn read(dir: &Path) -> Result<Option<u64>, NodeError> {
    let path = dir.join(WATERMARK_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let payload =
        tradelog_codec::open(MAGIC, VERSION, &bytes).map_err(|e| NodeError::BadRecord {
            index: 0,
            reason: format!("{} is damaged: {e}", path.display()),
        })?;
    let index: u64 = tradelog_codec::decode(payload).map_err(|e| NodeError::BadRecord {
        index: 0,
        reason: format!("{} is damaged: {e}", path.display()),
    })?;
    Ok(Some(index))
}

/// Records that every index up to `index` is durable.
pub fn write(dir: &Path, index: u64) -> Result<(), NodeError> {
    let sealed = tradelog_codec::seal(MAGIC, VERSION, &tradelog_codec::encode(&index));
    crate::write_atomically(dir, WATERMARK_FILE, &sealed)?;
    Ok(())
}
