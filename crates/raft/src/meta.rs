//! The small state a Raft log store keeps beside its log: the vote, the committed log id and
//! the last purged log id, in one file (`DIR/raft-meta`) that is replaced atomically.

use crate::types::{LogId, Vote};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Name of the metadata file inside a group directory.
pub const META_FILE: &str = "raft-meta";
const MAGIC: [u8; 8] = *b"TLRMETA1";
const VERSION: u32 = 1;

/// What the metadata file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftMeta {
    /// The last vote this replica made or saw (durable before openraft acts on it).
    pub vote: Option<Vote>,
    /// The last committed log id this replica knew of when the file was written (may lag:
    /// it is an optimisation for recovery, never needed for safety).
    pub committed: Option<LogId>,
    /// Everything up to this log id left the log (it is in a snapshot).
    pub purged: Option<LogId>,
}

impl RaftMeta {
    /// Reads `dir/raft-meta`; a missing file is the default (a new replica).
    pub fn load(dir: &Path) -> std::io::Result<RaftMeta> {
        load(dir)
    }

    /// Replaces `dir/raft-meta` durably (temporary file, fsync, rename, directory fsync).
    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        store(dir, self)
    }
}

/// Reads `dir/raft-meta`; a missing file is the default (a new replica).
pub(crate) fn load(dir: &Path) -> std::io::Result<RaftMeta> {
    let path = dir.join(META_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RaftMeta::default()),
        Err(e) => return Err(e),
    };
    let bad = |what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let payload = tradelog_codec::open(MAGIC, VERSION, &bytes).map_err(|e| bad(e.to_string()))?;
    tradelog_codec::decode(payload).map_err(|e| bad(e.to_string()))
}

/// Replaces `dir/raft-meta` durably: a crash leaves the old file or the new one, whole.
pub(crate) fn store(dir: &Path, meta: &RaftMeta) -> std::io::Result<()> {
    let sealed = tradelog_codec::seal(MAGIC, VERSION, &tradelog_codec::encode(meta));
    write_atomically(dir, META_FILE, &sealed).map(|_| ())
}

pub(crate) use tradelog_storage::write_atomically;
