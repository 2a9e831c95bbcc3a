//! Snapshots: the whole state of a shard as one versioned, checksummed byte string, and the
//! state hash (SHA-256 of the canonical state encoding).
//!
//! The snapshot format is independent of the in-memory layout: hash maps are written as
//! lists sorted by key, books as orders in priority order, so equal states always give
//! equal bytes and equal hashes.

use crate::dedupe::{Dedupe, DedupeParts};
use crate::{Engine, Outbox, Placement, Violation};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use tradelog_domain::audit::SplitOrigin;
use tradelog_domain::routing::PlacementV1;
use tradelog_domain::*;
use tradelog_ledger::{Ledger, LedgerParts};
use tradelog_matching::{Book, BookParts, MatchOutput};

/// First bytes of every engine snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"TLSNAPv1";
/// Version of the snapshot payload of a shard made by a split (it records its origin for
/// the audit). Each layout is written only for the states that need it, so the bytes and
/// state hash of every other state are what they always were: a state no split touched
/// is written as version 1 (the layout before splits), one that splits touched (splits
/// in its placement, transfer answers to relay) but not made by one as version 2. A data
/// directory written by an older version restores, replays and verifies against the
/// hashes it recorded.
pub const SNAPSHOT_VERSION: u32 = 3;

/// The canonical encoding of a state, with the snapshot version of its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateBytes {
    /// 1 or [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The encoding.
    pub bytes: Vec<u8>,
}

impl std::ops::Deref for StateBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Envelope or payload damaged or of another version.
    #[error("snapshot is unreadable: {0}")]
    Codec(#[from] tradelog_codec::CodecError),
    /// Decoded, but the state breaks an invariant.
    #[error("snapshot state is inconsistent: {0}")]
    Invalid(String),
}

#[derive(Serialize, Deserialize)]
struct State {
    shard: ShardId,
    placement: Placement,
    assets: Vec<Asset>,
    markets: Vec<MarketSpec>,
    ledger: LedgerParts,
    books: Vec<BookParts>,
    dedupe: DedupeParts,
    order_counter: u64,
    inbox_next: Vec<(ShardId, u64)>,
    outbox: Vec<(ShardId, Outbox)>,
    relay: Vec<(TransferId, ShardId)>,
    next_event_seq: u64,
    inputs: u64,
    last_timestamp: Timestamp,
    origin: Option<SplitOrigin>,
}

/// The state as version 2 wrote it (and as a state that splits touched, not made by one,
/// is written).
#[derive(Serialize, Deserialize)]
struct StateV2 {
    shard: ShardId,
    placement: Placement,
    assets: Vec<Asset>,
    markets: Vec<MarketSpec>,
    ledger: LedgerParts,
    books: Vec<BookParts>,
    dedupe: DedupeParts,
    order_counter: u64,
    inbox_next: Vec<(ShardId, u64)>,
    outbox: Vec<(ShardId, Outbox)>,
    relay: Vec<(TransferId, ShardId)>,
    next_event_seq: u64,
    inputs: u64,
    last_timestamp: Timestamp,
}

impl From<StateV2> for State {
    fn from(v: StateV2) -> State {
        State {
            shard: v.shard,
            placement: v.placement,
            assets: v.assets,
            markets: v.markets,
            ledger: v.ledger,
            books: v.books,
            dedupe: v.dedupe,
            order_counter: v.order_counter,
            inbox_next: v.inbox_next,
            outbox: v.outbox,
            relay: v.relay,
            next_event_seq: v.next_event_seq,
            inputs: v.inputs,
            last_timestamp: v.last_timestamp,
            origin: None,
        }
    }
}

/// The state as version 1 wrote it (and as a state that no split touched is written).
#[derive(Serialize, Deserialize)]
struct StateV1 {
    shard: ShardId,
    placement: PlacementV1,
    assets: Vec<Asset>,
    markets: Vec<MarketSpec>,
    ledger: LedgerParts,
    books: Vec<BookParts>,
    dedupe: DedupeParts,
    order_counter: u64,
    inbox_next: Vec<(ShardId, u64)>,
    outbox: Vec<(ShardId, Outbox)>,
    next_event_seq: u64,
    inputs: u64,
    last_timestamp: Timestamp,
}

impl From<StateV1> for State {
    fn from(v: StateV1) -> State {
        State {
            shard: v.shard,
            placement: v.placement.into(),
            assets: v.assets,
            markets: v.markets,
            ledger: v.ledger,
            books: v.books,
            dedupe: v.dedupe,
            order_counter: v.order_counter,
            inbox_next: v.inbox_next,
            outbox: v.outbox,
            relay: Vec::new(),
            next_event_seq: v.next_event_seq,
            inputs: v.inputs,
            last_timestamp: v.last_timestamp,
            origin: None,
        }
    }
}

impl Engine {
    fn state(&self) -> State {
        State {
            shard: self.shard,
            placement: self.placement.clone(),
            assets: self.assets.values().cloned().collect(),
            markets: self.markets.values().cloned().collect(),
            ledger: self.ledger.to_parts(),
            books: self.books.values().map(|b| b.to_parts()).collect(),
            dedupe: self.dedupe.to_parts(),
            order_counter: self.order_counter,
            inbox_next: self.inbox_next.iter().map(|(k, v)| (*k, *v)).collect(),
            outbox: self.outbox.iter().map(|(k, v)| (*k, v.clone())).collect(),
            relay: self.relay.iter().map(|(k, v)| (*k, *v)).collect(),
            next_event_seq: self.next_event_seq,
            inputs: self.inputs,
            last_timestamp: self.last_timestamp,
            origin: self.origin,
        }
    }

    /// The canonical encoding of the whole state (what the hash covers): the version 1
    /// layout unless a split touched this shard, version 2 unless a split made it.
    pub fn state_bytes(&self) -> StateBytes {
        let s = self.state();
        if s.origin.is_some() {
            return StateBytes {
                version: SNAPSHOT_VERSION,
                bytes: tradelog_codec::encode_large(&s),
            };
        }
        if s.placement.splits().is_empty() && s.relay.is_empty() {
            let v1 = StateV1 {
                shard: s.shard,
                placement: PlacementV1::try_from(s.placement).expect("no splits"),
                assets: s.assets,
                markets: s.markets,
                ledger: s.ledger,
                books: s.books,
                dedupe: s.dedupe,
                order_counter: s.order_counter,
                inbox_next: s.inbox_next,
                outbox: s.outbox,
                next_event_seq: s.next_event_seq,
                inputs: s.inputs,
                last_timestamp: s.last_timestamp,
            };
            StateBytes {
                version: 1,
                bytes: tradelog_codec::encode_large(&v1),
            }
        } else {
            let v2 = StateV2 {
                shard: s.shard,
                placement: s.placement,
                assets: s.assets,
                markets: s.markets,
                ledger: s.ledger,
                books: s.books,
                dedupe: s.dedupe,
                order_counter: s.order_counter,
                inbox_next: s.inbox_next,
                outbox: s.outbox,
                relay: s.relay,
                next_event_seq: s.next_event_seq,
                inputs: s.inputs,
                last_timestamp: s.last_timestamp,
            };
            StateBytes {
                version: 2,
                bytes: tradelog_codec::encode_large(&v2),
            }
        }
    }

    /// SHA-256 of the canonical state: equal states have equal hashes.
    pub fn state_hash(&self) -> [u8; 32] {
        tradelog_codec::sha256(&self.state_bytes())
    }

    /// The state as a sealed snapshot (magic, version, length, CRC32C, payload).
    pub fn snapshot(&self) -> Vec<u8> {
        Self::seal_state_bytes(&self.state_bytes())
    }

    /// Seals [`Engine::state_bytes`] taken earlier as a snapshot (the same bytes as
    /// [`Engine::snapshot`] at that moment), so the copy of the state can be taken on one
    /// thread and the sealing, hashing and writing done on another.
    pub fn seal_state_bytes(state: &StateBytes) -> Vec<u8> {
        tradelog_codec::seal(SNAPSHOT_MAGIC, state.version, &state.bytes)
    }

    /// Restores a shard from a snapshot, checking the envelope and every invariant.
    pub fn restore(bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let version = |v: u32| bytes.len() >= 12 && bytes[8..12] == v.to_le_bytes();
        let s: State = if version(1) {
            let payload = tradelog_codec::open(SNAPSHOT_MAGIC, 1, bytes)?;
            tradelog_codec::decode::<StateV1>(payload)?.into()
        } else if version(2) {
            let payload = tradelog_codec::open(SNAPSHOT_MAGIC, 2, bytes)?;
            tradelog_codec::decode::<StateV2>(payload)?.into()
        } else {
            tradelog_codec::decode(tradelog_codec::open(
                SNAPSHOT_MAGIC,
                SNAPSHOT_VERSION,
                bytes,
            )?)?
        };
        let invalid = |v: String| SnapshotError::Invalid(v);
        if !s.placement.knows(s.shard) {
            return Err(invalid("shard outside its placement".into()));
        }
        let mut ledger = Ledger::from_parts(s.ledger).map_err(|v| invalid(v.0))?;
        ledger.set_supply_max(s.placement.supply_max(s.shard));
        let mut books = std::collections::BTreeMap::new();
        for p in s.books {
            let id = p.spec.id;
            let b = Book::from_parts(p).map_err(|v| invalid(v.0))?;
            if books.insert(id, b).is_some() {
                return Err(invalid(format!("market {id} twice")));
            }
        }
        let e = Engine {
            shard: s.shard,
            placement: s.placement,
            assets: s.assets.into_iter().map(|a| (a.id, a)).collect(),
            markets: s.markets.into_iter().map(|m| (m.id, m)).collect(),
            ledger,
            books,
            dedupe: Dedupe::from_parts(s.dedupe),
            order_counter: s.order_counter,
            inbox_next: s.inbox_next.into_iter().collect(),
            outbox: s.outbox.into_iter().collect(),
            relay: s.relay.into_iter().collect(),
            next_event_seq: s.next_event_seq,
            inputs: s.inputs,
            last_timestamp: s.last_timestamp,
            origin: s.origin,
            local: VecDeque::new(),
            match_out: MatchOutput::default(),
        };
        e.validate().map_err(|Violation(v)| invalid(v))?;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Split;

    /// A snapshot written before splits existed restores to the same state.
    #[test]
    fn version_1_snapshots_are_still_read() {
        let mut e = Engine::new(ShardId(1), Placement::new(2));
        let meta = Meta {
            timestamp: Timestamp(5),
            principal: Principal(1),
            authority: Authority::Operator,
        };
        let mut out = vec![];
        let usd = Asset {
            id: AssetId(1),
            code: "USD".into(),
            scale: 2,
        };
        e.execute(meta, &Command::CreateAsset(usd), &mut out);
        let open = Command::OpenAccount {
            account: AccountId(3),
            owner: Principal(3),
        };
        e.execute(meta, &open, &mut out);
        let deposit = Command::Deposit {
            id: TransferId(1),
            account: AccountId(3),
            asset: AssetId(1),
            amount: Amount(700),
        };
        assert!(e.execute(meta, &deposit, &mut out).result.is_ok());
        let s = e.state();
        assert!(s.relay.is_empty() && s.placement.splits().is_empty());
        let v1 = StateV1 {
            shard: s.shard,
            placement: tradelog_codec::decode(&tradelog_codec::encode(&(
                2u32,
                Vec::<(AccountId, ShardId)>::new(),
            )))
            .expect("a version 1 placement"),
            assets: s.assets,
            markets: s.markets,
            ledger: s.ledger,
            books: s.books,
            dedupe: s.dedupe,
            order_counter: s.order_counter,
            inbox_next: s.inbox_next,
            outbox: s.outbox,
            next_event_seq: s.next_event_seq,
            inputs: s.inputs,
            last_timestamp: s.last_timestamp,
        };
        let bytes = tradelog_codec::seal(SNAPSHOT_MAGIC, 1, &tradelog_codec::encode(&v1));
        let restored = Engine::restore(&bytes).expect("version 1 restores");
        assert_eq!(restored.state_hash(), e.state_hash());
        // A state no split touched is still written as version 1, byte for byte, so its
        // hash is the one recorded before splits existed.
        assert_eq!(e.snapshot(), bytes);
        assert_eq!(
            e.state_hash(),
            tradelog_codec::sha256(&tradelog_codec::encode(&v1))
        );
        // A split makes the parent version 2 and the child, which records its origin,
        // version 3.
        let mut parent = e.clone();
        let split = Split {
            parent: ShardId(1),
            child: ShardId(2),
            modulus: 4,
            residue: 3,
            markets: vec![],
        };
        let child = parent
            .split(Timestamp(6), split, &mut vec![])
            .expect("split");
        for (x, version) in [(&parent, 2u32), (&child, SNAPSHOT_VERSION)] {
            let snap = x.snapshot();
            assert_eq!(snap[8..12], version.to_le_bytes());
            let back = Engine::restore(&snap).expect("version 2 and 3 restore");
            assert_eq!(back.state_hash(), x.state_hash());
            assert_eq!(back.origin(), x.origin());
        }
        assert_eq!(None, parent.origin());
        assert_eq!(
            Some(SplitOrigin {
                parent: ShardId(1),
                index: parent.inputs_applied(),
            }),
            child.origin()
        );
        // A child written by version 2 (before origins) restores, without an origin.
        let c = child.state();
        let v2 = StateV2 {
            shard: c.shard,
            placement: c.placement,
            assets: c.assets,
            markets: c.markets,
            ledger: c.ledger,
            books: c.books,
            dedupe: c.dedupe,
            order_counter: c.order_counter,
            inbox_next: c.inbox_next,
            outbox: c.outbox,
            relay: c.relay,
            next_event_seq: c.next_event_seq,
            inputs: c.inputs,
            last_timestamp: c.last_timestamp,
        };
        let old = tradelog_codec::seal(SNAPSHOT_MAGIC, 2, &tradelog_codec::encode(&v2));
        let back = Engine::restore(&old).expect("a version 2 child restores");
        assert_eq!(None, back.origin());
        assert_eq!(back.ledger().len(), child.ledger().len());
        assert_eq!(child.ledger().len(), 1);
        // A damaged version 1 snapshot is refused, not misread.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            Engine::restore(&bad),
            Err(SnapshotError::Codec(_))
        ));
        // Other versions are refused by name.
        let mut v4 = e.snapshot();
        v4[8] = 4;
        assert!(matches!(
            Engine::restore(&v4),
            Err(SnapshotError::Codec(
                tradelog_codec::CodecError::UnsupportedVersion { found: 4, .. }
            ))
        ));
    }
}
