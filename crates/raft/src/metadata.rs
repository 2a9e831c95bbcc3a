//! The metadata group: one more Raft group, beside the shard groups, whose state machine
//! is the [`ClusterMap`] (nodes, replication factor, every shard's target replica set;
//! docs/design/0013, step 2).
//!
//! It shares everything with the shard groups but its payload: the same log store
//! ([`ShardLogStore`](crate::ShardLogStore)`<_, MetaConfig>`, in its own directory), the
//! same node-to-node transport (group id [`META_GROUP`], outside the shard range) and the
//! same [`GroupHandle`](crate::GroupHandle) for proposals and linearizable reads from any
//! replica. Entries are [`MapCommand`]s; the response to each is the map's version after
//! it and the rejection, if it was refused ([`MapResponse`]).
//!
//! The map is small (a few bytes per node and per shard), so a snapshot is the whole map
//! encoded, sealed ([`META_SNAPSHOT_MAGIC`], CRC32C) and written to `DIR/meta-snapshot`
//! (temporary file, fsync, rename, directory fsync); the state machine starts from it on
//! open and openraft re-applies the committed log after it. Every applied change is
//! published on a watch channel ([`MetaStateMachine::subscribe`]), which is how a node
//! learns the map without asking.

use crate::meta::write_atomically;
use crate::types::{GroupConfig, LogId, Node, NodeId, Snapshot, SnapshotMeta, StoredMembership};
use futures_util::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tradelog_domain::ShardId;
use tradelog_placement::{ClusterMap, ClusterMapV1, MapCommand, MapReject};

/// The group id of the metadata group on the transport: above every shard id.
pub const META_GROUP: ShardId = ShardId(u32::MAX);
/// Name of the metadata group's snapshot file inside its directory.
pub const META_SNAPSHOT_FILE: &str = "meta-snapshot";
/// First bytes of a metadata snapshot.
pub const META_SNAPSHOT_MAGIC: [u8; 8] = *b"TLMSNAP1";
/// Version of the metadata snapshot encoding this build writes (2: the map has its
/// splits). Version 1 snapshots (a map before splits) are still read.
pub const META_SNAPSHOT_VERSION: u32 = 2;
/// Most bytes of one encoded [`MapCommand`] a peer may forward (64 KiB: an `Init` of
/// `SHARD_COUNT_MAX` shards on a few nodes fits).
pub const MAP_COMMAND_BYTES_MAX: usize = 64 << 10;

openraft::declare_raft_types!(
    /// The openraft type configuration of the metadata group: entries are
    /// [`MapCommand`]s, responses [`MapResponse`]s; everything else is as in
    /// [`TypeConfig`](crate::TypeConfig).
    pub MetaConfig:
        D = MapCommand,
        R = MapResponse,
        NodeId = NodeId,
        Node = Node,
        AsyncRuntime = crate::runtime::ShardRuntime,
);

/// The openraft handle of the metadata group.
pub type MetaRaft = openraft::Raft<MetaConfig, MetaStateMachine>;

/// Proposals and reads from any replica of the metadata group.
pub type MetaHandle = crate::GroupHandle<MetaConfig, MetaStateMachine>;

/// The answer to one metadata entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapResponse {
    /// The map's version after the entry.
    pub version: u64,
    /// Why the command was refused (the map did not change), if it was.
    pub rejected: Option<MapReject>,
}

impl GroupConfig for MetaConfig {
    type StateMachine = MetaStateMachine;
    const KIND: &'static str = "metadata group";

    fn check_proposal(data: MapCommand) -> Result<MapCommand, String> {
        let len = tradelog_codec::encode(&data).len();
        if len > MAP_COMMAND_BYTES_MAX {
            return Err(format!(
                "map command of {len} bytes (at most {MAP_COMMAND_BYTES_MAX})"
            ));
        }
        Ok(data)
    }

    fn check_snapshot(bytes: &[u8], group: ShardId, meta: &SnapshotMeta) -> Result<(), String> {
        if group != META_GROUP {
            return Err(format!("a metadata snapshot sent to group {group}"));
        }
        decode_meta_snapshot(bytes, Some(meta)).map(|_| ())
    }
}

#[derive(Serialize, Deserialize)]
struct MetaSnapshotFile {
    meta: SnapshotMeta,
    map: ClusterMap,
}

/// A version 1 metadata snapshot.
#[derive(Serialize, Deserialize)]
struct MetaSnapshotFileV1 {
    meta: SnapshotMeta,
    map: ClusterMapV1,
}

/// Encodes the map at `meta` as metadata snapshot bytes.
pub fn encode_meta_snapshot(meta: &SnapshotMeta, map: &ClusterMap) -> Vec<u8> {
    let file = MetaSnapshotFile {
        meta: meta.clone(),
        map: map.clone(),
    };
    tradelog_codec::seal(
        META_SNAPSHOT_MAGIC,
        META_SNAPSHOT_VERSION,
        &tradelog_codec::encode(&file),
    )
}

/// Checks metadata snapshot bytes completely (envelope, encoding, that `expected` is the
/// recorded metadata when given) and returns what they hold.
pub fn decode_meta_snapshot(
    bytes: &[u8],
    expected: Option<&SnapshotMeta>,
) -> Result<(SnapshotMeta, ClusterMap), String> {
    let version_1 = bytes.len() >= 12 && bytes[8..12] == 1u32.to_le_bytes();
    let file: MetaSnapshotFile = if version_1 {
        let payload =
            tradelog_codec::open(META_SNAPSHOT_MAGIC, 1, bytes).map_err(|e| e.to_string())?;
        let v1: MetaSnapshotFileV1 = tradelog_codec::decode(payload).map_err(|e| e.to_string())?;
        MetaSnapshotFile {
            meta: v1.meta,
            map: v1.map.into(),
        }
    } else {
        let payload = tradelog_codec::open(META_SNAPSHOT_MAGIC, META_SNAPSHOT_VERSION, bytes)
            .map_err(|e| e.to_string())?;
        tradelog_codec::decode(payload).map_err(|e| e.to_string())?
    };
    file.map.check()?;
    if let Some(m) = expected.filter(|m| **m != file.meta) {
        return Err(format!(
            "metadata snapshot is of {:?}, expected {:?}",
            file.meta.last_log_id, m.last_log_id
        ));
    }
    Ok((file.meta, file.map))
}

/// The latest snapshot, shared with the builders.
type Current = Arc<Mutex<Option<(SnapshotMeta, Vec<u8>)>>>;

fn persist(dir: &Path, meta: &SnapshotMeta, bytes: Vec<u8>, current: &Current) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut cur = current
        .lock()
        .map_err(|_| io::Error::other("snapshot lock poisoned by a panic"))?;
    // A builder that started before an install must not put an older snapshot back.
    if cur
        .as_ref()
        .is_some_and(|(m, _)| m.last_log_id > meta.last_log_id)
    {
        return Ok(());
    }
    write_atomically(dir, META_SNAPSHOT_FILE, &bytes)?;
    *cur = Some((meta.clone(), bytes));
    Ok(())
}

/// The metadata group's state machine: the [`ClusterMap`]. See the module documentation.
pub struct MetaStateMachine {
    dir: PathBuf,
    map: ClusterMap,
    applied: Option<LogId>,
    membership: StoredMembership,
    current: Current,
    published: watch::Sender<Arc<ClusterMap>>,
}

impl MetaStateMachine {
    /// Opens the state machine in the group directory `dir`: the map of its snapshot, or
    /// an empty map when there is none. A snapshot file that does not check out is an
    /// error (it is the only copy of the state before the log's start).
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(META_SNAPSHOT_FILE);
        let (applied, membership, map, current) = match std::fs::read(&path) {
            Ok(bytes) => {
                let (meta, map) = decode_meta_snapshot(&bytes, None).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                let current = Some((meta.clone(), bytes));
                (meta.last_log_id, meta.last_membership, map, current)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (
                None,
                StoredMembership::default(),
                ClusterMap::default(),
                None,
            ),
            Err(e) => return Err(e),
        };
        let (published, _) = watch::channel(Arc::new(map.clone()));
        Ok(MetaStateMachine {
            dir,
            map,
            applied,
            membership,
            current: Arc::new(Mutex::new(current)),
            published,
        })
    }

    /// The map as applied on this replica.
    pub fn map(&self) -> &ClusterMap {
        &self.map
    }

    /// The last applied log id.
    pub fn applied(&self) -> Option<LogId> {
        self.applied
    }

    /// Every map this replica applies from now on (the current one first).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMap>> {
        self.published.subscribe()
    }

    fn publish(&self) {
        self.published.send_replace(Arc::new(self.map.clone()));
    }
}

/// Builds a snapshot of the map as it was when the builder was made.
pub struct MetaSnapshotBuilder {
    dir: PathBuf,
    meta: SnapshotMeta,
    map: ClusterMap,
    current: Current,
}

impl RaftSnapshotBuilder<MetaConfig> for MetaSnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let bytes = encode_meta_snapshot(&self.meta, &self.map);
        persist(&self.dir, &self.meta, bytes.clone(), &self.current)?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: bytes,
        })
    }
}

impl RaftStateMachine<MetaConfig> for MetaStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = MetaSnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<MetaConfig>>> + Unpin + Send,
    {
        let mut changed = false;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            if self.applied.is_some_and(|a| log_id.index <= a.index) {
                return Err(io::Error::other(format!(
                    "apply out of order: entry {log_id} after {:?}",
                    self.applied
                )));
            }
            let mut response = MapResponse::default();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(command) => {
                    response.rejected = self.map.apply(&command).err();
                    changed |= response.rejected.is_none();
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                }
            }
            response.version = self.map.version;
            self.applied = Some(log_id);
            if let Some(r) = responder {
                r.send(response);
            }
        }
        if changed {
            self.publish();
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> MetaSnapshotBuilder {
        MetaSnapshotBuilder {
            dir: self.dir.clone(),
            meta: SnapshotMeta {
                last_log_id: self.applied,
                last_membership: self.membership.clone(),
            },
            map: self.map.clone(),
            current: self.current.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let (_, map) = decode_meta_snapshot(&snapshot, Some(meta))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        persist(&self.dir, meta, snapshot, &self.current)?;
        self.map = map;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let cur = self
            .current
            .lock()
            .map_err(|_| io::Error::other("snapshot lock poisoned by a panic"))?
            .clone();
        Ok(cur.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}
