//! A minimal gRPC client of etcd's v3 KV service, for `tradelog bench --only etcd` (the
//! replicated-write baseline: docs/design/0009) and nothing else.
//!
//! The code is generated at build time (protox + tonic-prost-build, no `protoc`) from a
//! subset of etcd's own `rpc.proto` and `kv.proto` kept in this crate's `proto/` directory:
//! the `etcdserverpb.KV` service's `Range`, `Put` and `Txn` with etcd's package, method and
//! message names and field numbers, so any etcd 3.x server answers it. The `etcd-client`
//! crate was not used: it runs `protoc` at build time, which this workspace does not need
//! anywhere else (docs/design/0009).
//!
//! Owns: the generated messages ([`etcdserverpb`], [`mvccpb`]), the [`KvClient`] and a few
//! constructors for the operations the benchmark composes. Must never depend on any other
//! tradelog crate: it speaks etcd's protocol, not ours.

/// etcd's `mvccpb` package (the subset in `proto/etcd/mvccpb/kv.proto`).
#[allow(missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's `etcdserverpb` package (the subset in `proto/etcd/etcdserverpb/rpc.proto`).
#[allow(missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

use etcdserverpb::{compare, request_op, Compare, PutRequest, RangeRequest, RequestOp};

/// The client of the KV service over one HTTP/2 connection (cheap to clone: clones share
/// the connection).
pub type KvClient = etcdserverpb::kv_client::KvClient<tonic::transport::Channel>;

/// Connects to one member's client URL, e.g. `http://127.0.0.1:2379`.
pub async fn connect(endpoint: &str) -> Result<KvClient, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(KvClient::new(channel))
}

/// A `Put` of `value` at `key`, as one operation of a `Txn`.
pub fn put(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            ..PutRequest::default()
        })),
    }
}

/// A `Range` reading the single key `key`, as one operation of a `Txn`. `serializable`:
/// answered from the member's local state without a round through the leader.
pub fn get(key: Vec<u8>, serializable: bool) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key,
            serializable,
            ..RangeRequest::default()
        })),
    }
}

/// The compare "`key` was last changed at revision `mod_revision`" (0: the key does not
/// exist), which makes a read-check-write `Txn` fail if anything wrote the key since it
/// was read.
pub fn unchanged_since(key: Vec<u8>, mod_revision: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key,
        target_union: Some(compare::TargetUnion::ModRevision(mod_revision)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The encoding is etcd's: field numbers of the subset match etcd's rpc.proto (a
    /// `Compare` on MOD with mod_revision 7 for key "k": result=EQUAL (0, omitted),
    /// target=MOD (field 2 = 2), key (field 3), mod_revision (field 6 = 7)).
    #[test]
    fn encodes_with_etcd_field_numbers() {
        assert_eq!(
            vec![0x10, 0x02, 0x1a, 0x01, b'k', 0x30, 0x07],
            unchanged_since(b"k".to_vec(), 7).encode_to_vec()
        );
        // RequestOp.request_put (field 2) { key (1) = "a", value (2) = "b" }.
        assert_eq!(
            vec![0x12, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b'],
            put(b"a".to_vec(), b"b".to_vec()).encode_to_vec()
        );
        // RequestOp.request_range (field 1) { key (1) = "a", serializable (7) = true }.
        assert_eq!(
            vec![0x0a, 0x05, 0x0a, 0x01, b'a', 0x38, 0x01],
            get(b"a".to_vec(), true).encode_to_vec()
        );
    }
}
