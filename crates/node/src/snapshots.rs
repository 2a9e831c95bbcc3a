//! Snapshot files: `DIR/snapshots/snapshot-{index:020}.bin`, each a sealed envelope (magic,
//! version, length, CRC32C) around the snapshot's metadata and the engine's own sealed
//! snapshot. Written to a temporary file, fsynced, renamed into place, directory fsynced:
//! a crash leaves either the complete file or none.

use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use tradelog_domain::ShardId;

/// Directory of snapshot files inside a shard directory.
pub const SNAPSHOTS_DIR: &str = "snapshots";
const MAGIC: [u8; 8] = *b"TLSHARD1";
const VERSION: u32 = 1;

/// What a snapshot file says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The shard.
    pub shard: ShardId,
    /// Log index of the last input the snapshot includes.
    pub index: u64,
    /// The log's chain hash at that index.
    pub chain_hash: [u8; 32],
    /// The engine's state hash at that index.
    pub state_hash: [u8; 32],
}

/// A decoded snapshot file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Metadata.
    pub meta: SnapshotMeta,
    /// The engine's sealed snapshot (`Engine::snapshot`).
    #[serde(with = "tradelog_codec::bytes")]
    pub engine: Vec<u8>,
}

/// [`SnapshotFile`] by reference: the same encoding, without copying the engine's bytes.
#[derive(Serialize)]
struct SnapshotFileRef<'a> {
    meta: &'a SnapshotMeta,
    #[serde(serialize_with = "tradelog_codec::bytes::serialize")]
    engine: &'a [u8],
}

fn name(index: u64) -> String {
    format!("snapshot-{index:020}.bin")
}

/// The path of the snapshot file at `index` in the shard directory `dir`.
pub fn path(dir: &Path, index: u64) -> PathBuf {
    dir.join(SNAPSHOTS_DIR).join(name(index))
}

/// Snapshot files of a shard directory, oldest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let d = dir.join(SNAPSHOTS_DIR);
    let mut v = Vec::new();
    let entries = match fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let n = e.file_name();
        let Some(n) = n.to_str() else { continue };
        if let Some(num) = n
            .strip_prefix("snapshot-")
            .and_then(|s| s.strip_suffix(".bin"))
        {
            if let Ok(i) = num.parse::<u64>() {
                v.push((i, e.path()));
            }
        }
    }
    v.sort();
    Ok(v)
}

/// Reads and checks one snapshot file.
pub fn read(path: &Path) -> Result<SnapshotFile, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let payload = tradelog_codec::open(MAGIC, VERSION, &bytes).map_err(|e| e.to_string())?;
    tradelog_codec::decode(payload).map_err(|e| e.to_string())
}

/// Writes a snapshot file atomically and durably; returns its path.
pub fn write(dir: &Path, meta: &SnapshotMeta, engine: &[u8]) -> Result<PathBuf, crate::NodeError> {
    let d = dir.join(SNAPSHOTS_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| crate::NodeError::SnapshotIo { path, source }
    };
    fs::create_dir_all(&d).map_err(io(&d))?;
    let file = SnapshotFileRef { meta, engine };
    let sealed = tradelog_codec::seal(MAGIC, VERSION, &tradelog_codec::encode_large(&file));
    crate::write_atomically(&d, &name(meta.index), &sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_by_reference_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta {
            shard: ShardId(3),
            index: 1234,
            chain_hash: [7; 32],
            state_hash: [9; 32],
        };
        let engine: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let p = write(dir.path(), &meta, &engine).unwrap();
        assert_eq!(p, path(dir.path(), 1234));
        let back = read(&p).unwrap();
        assert_eq!((back.meta, back.engine), (meta.clone(), engine.clone()));
        // The same bytes as the owned struct, so files of either writer read either way.
        let owned = SnapshotFile {
            meta: meta.clone(),
            engine: engine.clone(),
        };
        let by_ref = SnapshotFileRef {
            meta: &meta,
            engine: &engine,
        };
        assert_eq!(
            tradelog_codec::encode(&by_ref),
            tradelog_codec::encode(&owned)
        );
        assert_eq!(list(dir.path()).unwrap(), vec![(1234, p)]);
    }
}
