//! The receiving side of the node-to-node transport: [`RaftRouter`] holds the Raft instance
//! of every group this node serves and answers the `tradelog.raft.v1.RaftTransport` gRPC
//! service by handing each message to its group.

use crate::forward::{answer_propose, answer_read_index};
use crate::manage::{answer_manage, ManageOp};
use crate::metadata::{MetaRaft, META_GROUP};
use crate::network::{GROUP_METADATA, RAFT_MESSAGE_BYTES_MAX, WIRE_ENCODING};
use crate::pb::raft_reply::Result as PbResult;
use crate::pb::raft_transport_server::{RaftTransport, RaftTransportServer};
use crate::pb::{RaftReply, RaftRequest, SnapshotChunk};
use crate::types::{GroupConfig, GroupRaft, SnapshotMeta, Vote};
use crate::{ShardRaft, Snapshot};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tonic::{Request, Response, Status, Streaming};
use tradelog_domain::ShardId;

/// Largest snapshot a node accepts from a peer (1 GiB, the largest sealed envelope).
pub const SNAPSHOT_BYTES_MAX: u64 = tradelog_codec::ENVELOPE_PAYLOAD_BYTES_MAX as u64;
/// Most bytes reserved up front for an incoming snapshot (64 MiB).
const SNAPSHOT_PREALLOCATE_BYTES_MAX: u64 = 64 << 20;

/// The Raft groups of this node, by group id (a shard's id, or [`META_GROUP`] for the
/// metadata group), and the gRPC service that feeds them. Cheap to clone; groups may be
/// added and removed while serving.
#[derive(Clone, Default)]
pub struct RaftRouter {
    groups: Arc<RwLock<HashMap<u32, ShardRaft>>>,
    meta: Arc<RwLock<Option<MetaRaft>>>,
    counters: Arc<Counters>,
    split_starts: Arc<RwLock<Option<SplitStarts>>>,
}

/// The bytes of this node's start file of a split's child, if it has one (see
/// [`RaftRouter::serve_split_starts`]).
pub type SplitStarts = Arc<dyn Fn(ShardId) -> Option<Vec<u8>> + Send + Sync>;

/// A group this node serves, of either kind.
enum Member {
    Shard(ShardRaft),
    Meta(MetaRaft),
}

/// Runs `$body` with `$raft` bound to the group's Raft instance, whichever its kind.
macro_rules! with_member {
    ($member:expr, $raft:ident => $body:expr) => {
        match $member {
            Member::Shard($raft) => $body,
            Member::Meta($raft) => $body,
        }
    };
}

#[derive(Default)]
struct Counters {
    append_entries: AtomicU64,
    streams: AtomicU64,
    streamed_requests: AtomicU64,
    votes: AtomicU64,
    snapshots: AtomicU64,
}

/// What a node's transport has received since it started (all groups together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Unary AppendEntries calls.
    pub append_entries: u64,
    /// Pipelined `StreamAppend` streams opened.
    pub streams: u64,
    /// AppendEntries requests that arrived through those streams.
    pub streamed_requests: u64,
    /// Vote and pre-vote calls.
    pub votes: u64,
    /// Snapshots received whole.
    pub snapshots: u64,
}

impl RaftRouter {
    /// A router with no group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes messages for `group` to `raft` (replacing any previous instance).
    pub fn add(&self, group: ShardId, raft: ShardRaft) {
        self.groups
            .write()
            .expect("router poisoned")
            .insert(group.0, raft);
    }

    /// Routes messages for the metadata group ([`META_GROUP`]) to `raft`.
    pub fn add_meta(&self, raft: MetaRaft) {
        *self.meta.write().expect("router poisoned") = Some(raft);
    }

    /// Stops routing messages to the metadata group.
    pub fn remove_meta(&self) -> Option<MetaRaft> {
        self.meta.write().expect("router poisoned").take()
    }

    /// Stops routing messages to `group`; its peers then see it as unreachable.
    pub fn remove(&self, group: ShardId) -> Option<ShardRaft> {
        self.groups
            .write()
            .expect("router poisoned")
            .remove(&group.0)
    }

    /// Answers `SplitStart` calls with `starts`: a peer asks for a split's child's start
    /// file when its replica of the parent received the parent's state as a snapshot past
    /// the split. Without it, every such call is answered `NOT_FOUND`.
    pub fn serve_split_starts(&self, starts: SplitStarts) {
        *self.split_starts.write().expect("router poisoned") = Some(starts);
    }

    /// The gRPC service to add to a tonic server.
    pub fn service(&self) -> RaftTransportServer<RaftRouter> {
        RaftTransportServer::new(self.clone())
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
    }

    /// Counts of what this node's transport received.
    pub fn stats(&self) -> TransportStats {
        let c = &self.counters;
        TransportStats {
            append_entries: c.append_entries.load(Ordering::Relaxed),
            streams: c.streams.load(Ordering::Relaxed),
            streamed_requests: c.streamed_requests.load(Ordering::Relaxed),
            votes: c.votes.load(Ordering::Relaxed),
            snapshots: c.snapshots.load(Ordering::Relaxed),
        }
    }

    fn group(&self, group: u32) -> Result<Member, Status> {
        let found = if group == META_GROUP.0 {
            self.meta
                .read()
                .expect("router poisoned")
                .clone()
                .map(Member::Meta)
        } else {
            let groups = self.groups.read().expect("router poisoned");
            groups.get(&group).cloned().map(Member::Shard)
        };
        found.ok_or_else(|| Status::not_found(format!("this node serves no Raft group {group}")))
    }
}

fn check_encoding(encoding: u32) -> Result<(), Status> {
    if encoding == WIRE_ENCODING {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "message encoding {encoding}, this node speaks {WIRE_ENCODING}"
        )))
    }
}

fn decode<T: DeserializeOwned>(r: &RaftRequest) -> Result<T, Status> {
    check_encoding(r.encoding)?;
    tradelog_codec::decode(&r.payload)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

fn reply<T: Serialize, E: std::fmt::Display>(r: Result<T, E>) -> RaftReply {
    RaftReply {
        result: Some(match r {
            Ok(v) => PbResult::Ok(tradelog_codec::encode(&v)),
            Err(e) => PbResult::Error(e.to_string()),
        }),
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<RaftReply, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RaftTransport for RaftRouter {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        let member = self.group(r.group)?;
        self.counters.append_entries.fetch_add(1, Ordering::Relaxed);
        with_member!(member, raft => append_entries(&raft, &r).await)
    }

    type StreamAppendStream = ReplyStream;

    async fn stream_append(
        &self,
        request: Request<Streaming<RaftRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let group: u32 = request
            .metadata()
            .get(GROUP_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!("StreamAppend without `{GROUP_METADATA}`"))
            })?;
        let member = self.group(group)?;
        self.counters.streams.fetch_add(1, Ordering::Relaxed);
        let counters = self.counters.clone();
        let inbound = request.into_inner();
        let replies = with_member!(member, raft => stream_append(raft, group, inbound, counters));
        Ok(Response::new(replies))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        let member = self.group(r.group)?;
        self.counters.votes.fetch_add(1, Ordering::Relaxed);
        with_member!(member, raft => vote(&raft, &r, false).await)
    }

    async fn pre_vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        let member = self.group(r.group)?;
        self.counters.votes.fetch_add(1, Ordering::Relaxed);
        with_member!(member, raft => vote(&raft, &r, true).await)
    }

    async fn transfer_leader(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        let member = self.group(r.group)?;
        with_member!(member, raft => transfer_leader(&raft, &r).await)
    }

    async fn propose(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        let member = self.group(r.group)?;
        with_member!(member, raft => propose(&raft, &r).await)
    }

    async fn read_index(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        check_encoding(r.encoding)?;
        let member = self.group(r.group)?;
        Ok(Response::new(
            with_member!(member, raft => reply(answer_read_index(&raft).await)),
        ))
    }

    async fn split_start(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        check_encoding(r.encoding)?;
        let starts = self
            .split_starts
            .read()
            .expect("router poisoned")
            .clone()
            .ok_or_else(|| Status::not_found("this node serves no split start files"))?;
        let child = ShardId(r.group);
        let bytes = tokio::task::spawn_blocking(move || starts(child))
            .await
            .map_err(|e| Status::internal(format!("reading a split start file: {e}")))?
            .ok_or_else(|| Status::not_found(format!("no split start file of shard {child}")))?;
        Ok(Response::new(reply(Ok::<_, String>(bytes))))
    }

    async fn manage(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        let member = self.group(r.group)?;
        let op: ManageOp = decode(&r)?;
        Ok(Response::new(
            with_member!(member, raft => reply(answer_manage(&raft, op).await)),
        ))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftReply>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot transfer"))?;
        check_encoding(first.encoding)?;
        let member = self.group(first.group)?;
        let (vote, meta, len): (Vote, SnapshotMeta, u64) = tradelog_codec::decode(&first.header)
            .map_err(|e| Status::invalid_argument(format!("undecodable snapshot header: {e}")))?;
        if len > SNAPSHOT_BYTES_MAX {
            return Err(Status::resource_exhausted(format!(
                "snapshot of {len} bytes (at most {SNAPSHOT_BYTES_MAX})"
            )));
        }
        // Grows with what arrives rather than with what the header announces.
        let mut bytes = Vec::with_capacity(len.min(SNAPSHOT_PREALLOCATE_BYTES_MAX) as usize);
        bytes.extend_from_slice(&first.data);
        while let Some(c) = inbound.message().await? {
            if c.group != first.group || c.offset != bytes.len() as u64 {
                return Err(Status::invalid_argument(format!(
                    "snapshot chunk of group {} at offset {} (expected group {} offset {})",
                    c.group,
                    c.offset,
                    first.group,
                    bytes.len()
                )));
            }
            if bytes.len() as u64 + c.data.len() as u64 > len {
                return Err(Status::invalid_argument("snapshot longer than announced"));
            }
            bytes.extend_from_slice(&c.data);
        }
        if bytes.len() as u64 != len {
            return Err(Status::invalid_argument(format!(
                "snapshot transfer ended at {} of {len} bytes",
                bytes.len()
            )));
        }
        let snapshot = Snapshot {
            meta,
            snapshot: bytes,
        };
        self.counters.snapshots.fetch_add(1, Ordering::Relaxed);
        let group = ShardId(first.group);
        with_member!(member, raft => install_snapshot(&raft, group, vote, snapshot).await)
    }
}

type Answer = Result<Response<RaftReply>, Status>;

async fn append_entries<C: GroupConfig>(raft: &GroupRaft<C>, r: &RaftRequest) -> Answer {
    let req = decode(r)?;
    Ok(Response::new(reply(raft.append_entries(req).await)))
}

async fn vote<C: GroupConfig>(raft: &GroupRaft<C>, r: &RaftRequest, pre: bool) -> Answer {
    let req = decode(r)?;
    let answer = if pre {
        raft.pre_vote(req).await
    } else {
        raft.vote(req).await
    };
    Ok(Response::new(reply(answer)))
}

async fn transfer_leader<C: GroupConfig>(raft: &GroupRaft<C>, r: &RaftRequest) -> Answer {
    let req = decode(r)?;
    Ok(Response::new(reply(raft.handle_transfer_leader(req).await)))
}

async fn propose<C: GroupConfig>(raft: &GroupRaft<C>, r: &RaftRequest) -> Answer {
    let data: C::D = decode(r)?;
    // The same limits as a local proposal: a peer cannot slip in what a client cannot.
    let data = C::check_proposal(data).map_err(Status::invalid_argument)?;
    Ok(Response::new(reply(answer_propose(raft, data).await)))
}

async fn install_snapshot<C: GroupConfig>(
    raft: &GroupRaft<C>,
    group: ShardId,
    vote: Vote,
    snapshot: Snapshot,
) -> Answer {
    // The state machine checks everything again before it replaces its state; this
    // check keeps damaged bytes away from openraft.
    C::check_snapshot(&snapshot.snapshot, group, &snapshot.meta)
        .map_err(Status::invalid_argument)?;
    let r = raft.install_full_snapshot(vote, snapshot).await;
    Ok(Response::new(reply::<_, openraft::errors::Fatal<C>>(r)))
}

fn stream_append<C: GroupConfig>(
    raft: GroupRaft<C>,
    group: u32,
    inbound: Streaming<RaftRequest>,
    counters: Arc<Counters>,
) -> ReplyStream {
    // A request that cannot be used ends the input; the reason ends the output.
    let failure: Arc<Mutex<Option<Status>>> = Arc::default();
    let failed = failure.clone();
    let requests = inbound
        .map(move |m| {
            let m = m?;
            if m.group != group {
                return Err(Status::invalid_argument(format!(
                    "group {} in a stream of group {group}",
                    m.group
                )));
            }
            counters.streamed_requests.fetch_add(1, Ordering::Relaxed);
            decode(&m)
        })
        .take_while(move |r| {
            let ok = r.is_ok();
            if let Err(e) = r {
                *failed.lock().expect("poisoned") = Some(e.clone());
            }
            std::future::ready(ok)
        })
        .filter_map(|r| std::future::ready(r.ok()));
    let replies = raft
        .stream_append(Box::pin(requests))
        .map(|r| match r {
            Ok(result) => Ok(reply::<_, String>(Ok(result))),
            Err(fatal) => Err(Status::unavailable(fatal.to_string())),
        })
        .chain(
            futures_util::stream::once(async move { failure.lock().expect("poisoned").take() })
                .filter_map(|e| std::future::ready(e.map(Err))),
        );
    Box::pin(replies)
}
