//! Idempotency keys: two generations of hash tables, rotated by leader time.
//!
//! A key is remembered for at least [`IDEMPOTENCY_WINDOW_MS`] and less than twice that:
//! it lives in the current generation until the generation is a window old, then in the
//! previous one for another window, then it is dropped with that whole table (both tables
//! are dropped at once after two quiet windows). Only accepted commands are remembered: a
//! rejected command changed nothing, so its retry is simply evaluated again. Rotation
//! costs one table swap instead of per-key expiry bookkeeping, and the new table is sized
//! like the last one so a steady load never rehashes (see
//! docs/design/0003-engine-performance.md). Capacity never affects behaviour, only speed.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tradelog_domain::{Outcome, Timestamp, IDEMPOTENCY_WINDOW_MS};

/// An idempotency key: (namespace, a, b).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct DedupeKey {
    pub ns: u8,
    pub a: u64,
    pub b: u64,
}

/// What a key remembers: a fingerprint of the command and its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DedupeEntry {
    pub fingerprint: u64,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Dedupe {
    current: FxHashMap<DedupeKey, DedupeEntry>,
    previous: FxHashMap<DedupeKey, DedupeEntry>,
    current_since: Timestamp,
}

/// Sorted entries of both generations and the start of the current one (snapshots).
pub(crate) type DedupeParts = (
    Vec<(DedupeKey, DedupeEntry)>,
    Vec<(DedupeKey, DedupeEntry)>,
    Timestamp,
);

impl Dedupe {
    pub fn get(&self, k: &DedupeKey) -> Option<&DedupeEntry> {
        self.current.get(k).or_else(|| self.previous.get(k))
    }

    pub fn contains(&self, k: &DedupeKey) -> bool {
        self.get(k).is_some()
    }

    pub fn insert(&mut self, k: DedupeKey, e: DedupeEntry) {
        self.current.insert(k, e);
    }

    /// Starts a new generation when the current one is a window old.
    #[inline]
    pub fn rotate(&mut self, now: Timestamp) {
        if now >= self.current_since.plus_ms(2 * IDEMPOTENCY_WINDOW_MS) {
            // Quiet for two windows: everything is at least a window old.
            let cap = self.current.len();
            self.current = FxHashMap::with_capacity_and_hasher(cap, Default::default());
            self.previous = FxHashMap::default();
            self.current_since = now;
        } else if now >= self.current_since.plus_ms(IDEMPOTENCY_WINDOW_MS) {
            let cap = self.current.len();
            let fresh = FxHashMap::with_capacity_and_hasher(cap, Default::default());
            self.previous = std::mem::replace(&mut self.current, fresh);
            self.current_since = now;
        }
    }

    pub fn to_parts(&self) -> DedupeParts {
        let sorted = |m: &FxHashMap<DedupeKey, DedupeEntry>| {
            let mut v: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
            v.sort_unstable_by_key(|(k, _)| *k);
            v
        };
        (
            sorted(&self.current),
            sorted(&self.previous),
            self.current_since,
        )
    }

    pub fn from_parts(p: DedupeParts) -> Dedupe {
        Dedupe {
            current: p.0.into_iter().collect(),
            previous: p.1.into_iter().collect(),
            current_since: p.2,
        }
    }
}
