//! The sending side of the node-to-node transport: [`PeerChannels`] (one gRPC channel per
//! peer node, shared by every group on this node), [`GroupNetwork`] (openraft's network
//! factory for one group) and [`PeerClient`] (openraft's `RaftNetworkV2` towards one peer
//! for one group, with pipelined AppendEntries over a bidirectional stream and snapshots
//! sent in chunks).

use crate::pb::raft_reply::Result as PbResult;
use crate::pb::raft_transport_client::RaftTransportClient;
use crate::pb::{RaftReply, RaftRequest, SnapshotChunk};
use crate::types::{GroupConfig, Node, NodeId, Snapshot, TypeConfig, Vote};
use futures_util::future::Either;
use futures_util::StreamExt;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, OptionalSend, RPCTypes};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tradelog_domain::ShardId;

/// gRPC metadata key naming the group of a `StreamAppend` call.
pub const GROUP_METADATA: &str = "x-tradelog-raft-group";

/// Layout of the encoded openraft messages in the transport (see the proto file). Bumped
/// whenever the pinned openraft version or tradelog's entry types change their encoding.
pub const WIRE_ENCODING: u32 = 1;

/// Largest gRPC message either side sends or accepts (80 MiB): an AppendEntries of up to
/// [`RAFT_PAYLOAD_ENTRIES_MAX`] entries of at most [`BATCH_BYTES_MAX`](crate::BATCH_BYTES_MAX)
/// each, with room for framing.
pub const RAFT_MESSAGE_BYTES_MAX: usize =
    RAFT_PAYLOAD_ENTRIES_MAX as usize * crate::BATCH_BYTES_MAX + (16 << 20);

/// Most entries in one AppendEntries request (openraft's `max_payload_entries`).
pub const RAFT_PAYLOAD_ENTRIES_MAX: u64 = 16;

/// Bytes of snapshot per [`SnapshotChunk`] (1 MiB).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Time allowed to set up a TCP connection to a peer (ms).
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Interval of HTTP/2 keep-alive pings on peer connections (ms): a dead peer is noticed
/// within this plus [`KEEPALIVE_TIMEOUT_MS`] even on a connection that is only streaming.
pub const KEEPALIVE_INTERVAL_MS: u64 = 1_000;
/// Time a keep-alive ping may go unanswered before the connection is dropped (ms).
pub const KEEPALIVE_TIMEOUT_MS: u64 = 2_000;

/// First pause after a replication stream to a peer failed to open (ms); it doubles with
/// each failure in a row, up to [`STREAM_RETRY_MS_MAX`].
///
/// openraft backs off only between the requests of an open stream, so a peer that refuses
/// the stream at once (it holds no replica of the group yet, as a split's child before
/// its replica opens) would otherwise be asked again in a tight loop.
pub const STREAM_RETRY_MS_MIN: u64 = 10;
/// Longest pause between attempts to open a replication stream to a peer (ms): how late,
/// at most, replication to a peer resumes once it can take the stream.
pub const STREAM_RETRY_MS_MAX: u64 = 250;

/// The pause after the `failures`-th failure in a row to open a replication stream.
fn stream_retry_wait(failures: u32) -> Duration {
    let ms = STREAM_RETRY_MS_MIN
        .saturating_mul(1u64 << failures.saturating_sub(1).min(16))
        .min(STREAM_RETRY_MS_MAX);
    Duration::from_millis(ms)
}

/// Longest wait for a peer's split start file ([`PeerChannels::split_start`], ms).
pub const SPLIT_START_TIMEOUT_MS: u64 = 10_000;

/// Makes a channel from a configured endpoint (see [`PeerChannels::with_connector`]).
type Connect = Arc<dyn Fn(Endpoint) -> Channel + Send + Sync>;

/// The gRPC channels of one node to its peers: one per peer address, created lazily (the
/// connection is made on first use and re-made after failures by tonic), shared by every
/// Raft group on the node. Cheap to clone.
#[derive(Clone, Default)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect: Option<Connect>,
    /// Replication streams to peers that failed to open, by every group on this node.
    stream_failures: Arc<AtomicU64>,
}

impl std::fmt::Debug for PeerChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerChannels")
            .field("addresses", &self.addresses())
            .field("custom_connector", &self.connect.is_some())
            .finish()
    }
}

impl PeerChannels {
    /// No channels yet; connections are TCP (`Endpoint::connect_lazy`).
    pub fn new() -> Self {
        Self::default()
    }

    /// No channels yet; each channel is made by `connect` from the endpoint configured as
    /// [`channel`](Self::channel) says (timeouts, keep-alive), e.g. with
    /// `Endpoint::connect_with_connector_lazy` over a simulated network.
    pub fn with_connector(connect: impl Fn(Endpoint) -> Channel + Send + Sync + 'static) -> Self {
        PeerChannels {
            channels: Arc::default(),
            connect: Some(Arc::new(connect)),
            stream_failures: Arc::default(),
        }
    }

    /// The channel to `addr` (a URL such as `http://127.0.0.1:7001`), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.channels.lock().expect("peer channel map poisoned");
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(addr.to_string())?
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .http2_keep_alive_interval(Duration::from_millis(KEEPALIVE_INTERVAL_MS))
            .keep_alive_timeout(Duration::from_millis(KEEPALIVE_TIMEOUT_MS))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let channel = match &self.connect {
            Some(connect) => connect(endpoint),
            None => endpoint.connect_lazy(),
        };
        map.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// How many replication streams from this node's groups to peers failed to open (the
    /// peer was unreachable or holds no replica of the group); each failure in a row
    /// waits longer before the next attempt ([`STREAM_RETRY_MS_MIN`]).
    pub fn stream_failures(&self) -> u64 {
        self.stream_failures.load(Ordering::Relaxed)
    }

    /// The start file of split child `child` as the node at `addr` has it
    /// ([`SPLIT_START_FILE`](crate::SPLIT_START_FILE)'s bytes, unchecked): `Ok(None)` when
    /// that node has none, an error when it could not be asked.
    pub async fn split_start(&self, addr: &str, child: ShardId) -> Result<Option<Vec<u8>>, String> {
        let channel = self.channel(addr).map_err(|e| e.to_string())?;
        let mut client = RaftTransportClient::new(channel)
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
        let call = client.split_start(RaftRequest {
            group: child.0,
            encoding: WIRE_ENCODING,
            payload: Vec::new(),
        });
        let wait = Duration::from_millis(SPLIT_START_TIMEOUT_MS);
        match tokio::time::timeout(wait, call).await {
            Err(_) => Err(format!(
                "no answer from {addr} within {SPLIT_START_TIMEOUT_MS} ms"
            )),
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Ok(Err(s)) => Err(format!("{addr}: {s}")),
            Ok(Ok(r)) => decode_reply(r.into_inner())
                .map(Some)
                .map_err(|e| format!("{addr}: {e}")),
        }
    }

    /// Peer addresses with a channel (one per peer, whatever the number of groups).
    pub fn addresses(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .channels
            .lock()
            .expect("peer channel map poisoned")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

/// openraft's network factory for one group on this node (a shard's by default, or the
/// metadata group's: `C`).
#[derive(Debug)]
pub struct GroupNetwork<C: openraft::RaftTypeConfig = TypeConfig> {
    group: ShardId,
    from: NodeId,
    peers: PeerChannels,
    kind: PhantomData<fn() -> C>,
}

impl<C: GroupConfig> Clone for GroupNetwork<C> {
    fn clone(&self) -> Self {
        GroupNetwork {
            group: self.group,
            from: self.from,
            peers: self.peers.clone(),
            kind: PhantomData,
        }
    }
}

impl<C: GroupConfig> GroupNetwork<C> {
    /// The network of group `group` as seen from node `from`, over the node's `peers`.
    pub fn new(group: ShardId, from: NodeId, peers: PeerChannels) -> Self {
        GroupNetwork {
            group,
            from,
            peers,
            kind: PhantomData,
        }
    }
}

impl<C: GroupConfig> RaftNetworkFactory<C> for GroupNetwork<C> {
    type Network = PeerClient<C>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient<C> {
        let client = self
            .peers
            .channel(&node.addr)
            .map(|c| {
                RaftTransportClient::new(c)
                    .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            })
            .map_err(|e| format!("bad address {:?} of node {target}: {e}", node.addr));
        PeerClient {
            group: self.group,
            from: self.from,
            target,
            client,
            stream_failures: 0,
            failures_counter: self.peers.stream_failures.clone(),
            kind: PhantomData,
        }
    }
}

/// openraft's `RaftNetworkV2` for one group towards one peer.
pub struct PeerClient<C: openraft::RaftTypeConfig = TypeConfig> {
    group: ShardId,
    from: NodeId,
    target: NodeId,
    client: Result<RaftTransportClient<Channel>, String>,
    /// Attempts in a row to open a replication stream that failed.
    stream_failures: u32,
    /// The node's count of such failures ([`PeerChannels::stream_failures`]).
    failures_counter: Arc<AtomicU64>,
    kind: PhantomData<fn() -> C>,
}

type RpcResult<T, C> = Result<T, RPCError<C>>;

fn unreachable<C: GroupConfig>(e: &(impl std::error::Error + 'static)) -> RPCError<C> {
    RPCError::Unreachable(Unreachable::new(e))
}

fn network<C: GroupConfig>(msg: impl ToString) -> NetworkError<C> {
    NetworkError::new(&AnyError::error(msg))
}

/// A gRPC failure as openraft sees it: the peer cannot be reached (backs off), or the
/// exchange failed.
fn status_error<C: GroupConfig>(s: tonic::Status) -> RPCError<C> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::NotFound => unreachable(&s),
        _ => RPCError::Network(NetworkError::new(&s)),
    }
}

fn encode<T: Serialize>(group: ShardId, v: &T) -> RaftRequest {
    RaftRequest {
        group: group.0,
        encoding: WIRE_ENCODING,
        payload: tradelog_codec::encode(v),
    }
}

/// The openraft response in a reply.
pub(crate) fn decode_reply<T: DeserializeOwned>(reply: RaftReply) -> Result<T, String> {
    match reply.result {
        Some(PbResult::Ok(bytes)) => tradelog_codec::decode(&bytes).map_err(|e| e.to_string()),
        Some(PbResult::Error(e)) => Err(format!("peer: {e}")),
        None => Err("empty reply".into()),
    }
}

impl<C: GroupConfig> PeerClient<C> {
    fn client(&self) -> RpcResult<RaftTransportClient<Channel>, C> {
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&AnyError::error(e))))
    }

    fn timeout(&self, action: RPCTypes, ttl: Duration) -> RPCError<C> {
        RPCError::Timeout(Timeout {
            action,
            id: self.from,
            target: self.target,
            timeout: ttl,
        })
    }

    /// One unary call: encode, send within the option's soft deadline, decode.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
        call: F,
    ) -> RpcResult<Resp, C>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftTransportClient<Channel>, RaftRequest) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftReply>, tonic::Status>>,
    {
        let client = self.client()?;
        let ttl = option.soft_ttl();
        let reply = tokio::time::timeout(ttl, call(client, encode(self.group, req)))
            .await
            .map_err(|_| self.timeout(action, ttl))?
            .map_err(status_error)?;
        decode_reply(reply.into_inner()).map_err(|e| RPCError::Network(network(e)))
    }
}

impl<C: GroupConfig> RaftNetworkV2<C> for PeerClient<C> {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<C>, C> {
        self.unary(
            RPCTypes::AppendEntries,
            &rpc,
            &option,
            |mut c, r| async move { c.append_entries(r).await },
        )
        .await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, RpcResult<BoxStream<'s, RpcResult<StreamAppendResult<C>, C>>, C>>
    where
        S: futures_util::Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
    {
        let group = self.group;
        let ttl = option.soft_ttl();
        let fu = async move {
            let opened = async {
                let mut client = self.client()?;
                let requests = input.map(move |r| encode(group, &r));
                // The group is in the call's metadata too: the peer routes the stream before
                // the first request exists (openraft produces requests once it is open).
                let mut call = tonic::Request::new(requests);
                call.metadata_mut().insert(
                    GROUP_METADATA,
                    tonic::metadata::MetadataValue::from(group.0),
                );
                tokio::time::timeout(ttl, client.stream_append(call))
                    .await
                    .map_err(|_| self.timeout(RPCTypes::AppendEntries, ttl))?
                    .map_err(status_error)
            }
            .await;
            let response = match opened {
                Ok(r) => {
                    self.stream_failures = 0;
                    r
                }
                Err(e) => {
                    // openraft opens the next stream at once: wait here, longer each
                    // failure in a row (a timeout has waited already).
                    self.failures_counter.fetch_add(1, Ordering::Relaxed);
                    self.stream_failures = self.stream_failures.saturating_add(1);
                    if !matches!(e, RPCError::Timeout(_)) {
                        tokio::time::sleep(stream_retry_wait(self.stream_failures)).await;
                    }
                    return Err(e);
                }
            };
            let replies = response.into_inner().map(|item| {
                let reply = item.map_err(status_error)?;
                decode_reply::<StreamAppendResult<C>>(reply)
                    .map_err(|e| RPCError::Network(network(e)))
            });
            Ok(Box::pin(replies) as BoxStream<'s, _>)
        };
        Box::pin(fu)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<C>, C> {
        self.unary(RPCTypes::Vote, &rpc, &option, |mut c, r| async move {
            c.vote(r).await
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<C>, C> {
        self.unary(RPCTypes::Vote, &rpc, &option, |mut c, r| async move {
            c.pre_vote(r).await
        })
        .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> RpcResult<TransferLeaderResponse<C>, C> {
        self.unary(
            RPCTypes::TransferLeader,
            &req,
            &option,
            |mut c, r| async move { c.transfer_leader(r).await },
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let mut client = self.client().map_err(rpc_to_streaming)?;
        let chunk = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK_BYTES)
            .clamp(1, SNAPSHOT_CHUNK_BYTES);
        let header =
            tradelog_codec::encode(&(vote, &snapshot.meta, snapshot.snapshot.len() as u64));
        let group = self.group.0;
        let head = SnapshotChunk {
            group,
            encoding: WIRE_ENCODING,
            header,
            offset: 0,
            data: Vec::new(),
        };
        // Chunks are cut as the transport asks for them, not copied all up front.
        let bytes = std::sync::Arc::new(snapshot.snapshot);
        let pieces = bytes.len().div_ceil(chunk);
        let chunks = futures_util::stream::iter(0..pieces).map(move |k| {
            let from = k * chunk;
            let to = (from + chunk).min(bytes.len());
            SnapshotChunk {
                group,
                encoding: WIRE_ENCODING,
                header: Vec::new(),
                offset: from as u64,
                data: bytes[from..to].to_vec(),
            }
        });
        let chunks = futures_util::stream::once(async move { head }).chain(chunks);
        let ttl = option.hard_ttl();
        let send = tokio::time::timeout(ttl, client.install_snapshot(chunks));
        let reply = match futures_util::future::select(Box::pin(cancel), Box::pin(send)).await {
            Either::Left((closed, _)) => return Err(StreamingError::Closed(closed)),
            Either::Right((r, _)) => r,
        };
        let reply = reply
            .map_err(|_| rpc_to_streaming(self.timeout(RPCTypes::InstallSnapshot, ttl)))?
            .map_err(|s| rpc_to_streaming(status_error(s)))?;
        decode_reply(reply.into_inner()).map_err(|e| StreamingError::Network(network(e)))
    }
}

fn rpc_to_streaming<C: GroupConfig>(e: RPCError<C>) -> StreamingError<C> {
    match e {
        RPCError::Timeout(t) => StreamingError::Timeout(t),
        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
        RPCError::Network(n) => StreamingError::Network(n),
        RPCError::RemoteError(r) => StreamingError::Network(network(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_before_reopening_a_stream_doubles_up_to_its_max() {
        let waits: Vec<u64> = (1..=8)
            .map(|n| stream_retry_wait(n).as_millis() as u64)
            .collect();
        assert_eq!(vec![10, 20, 40, 80, 160, 250, 250, 250], waits);
        assert_eq!(250, stream_retry_wait(u32::MAX).as_millis());
    }
}
