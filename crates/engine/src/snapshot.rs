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
use tradelog_domain::*;
use tradelog_ledger::{Ledger, LedgerParts};
use tradelog_matching::{Book, BookParts, MatchOutput};

/// First bytes of every engine snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"TLSNAPv1";
/// Version of the snapshot payload this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

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
    next_event_seq: u64,
    inputs: u64,
    last_timestamp: Timestamp,
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
            next_event_seq: self.next_event_seq,
            inputs: self.inputs,
            last_timestamp: self.last_timestamp,
        }
    }

    /// The canonical encoding of the whole state (what the hash covers).
    pub fn state_bytes(&self) -> Vec<u8> {
        tradelog_codec::encode_large(&self.state())
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
    pub fn seal_state_bytes(state_bytes: &[u8]) -> Vec<u8> {
        tradelog_codec::seal(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, state_bytes)
    }

    /// Restores a shard from a snapshot, checking the envelope and every invariant.
    pub fn restore(bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let payload = tradelog_codec::open(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, bytes)?;
        let s: State = tradelog_codec::decode(payload)?;
        let invalid = |v: String| SnapshotError::Invalid(v);
        if s.shard.0 >= s.placement.shard_count() {
            return Err(invalid("shard outside its placement".into()));
        }
        let mut ledger = Ledger::from_parts(s.ledger).map_err(|v| invalid(v.0))?;
        ledger.set_supply_max(crate::supply_max(&s.placement));
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
            next_event_seq: s.next_event_seq,
            inputs: s.inputs,
            last_timestamp: s.last_timestamp,
            local: VecDeque::new(),
            match_out: MatchOutput::default(),
        };
        e.validate().map_err(|Violation(v)| invalid(v))?;
        Ok(e)
    }
}
