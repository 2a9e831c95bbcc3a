//! Idempotency keys: two generations of hash tables, rotated by leader time.
//!
//! A key is remembered for at least [`IDEMPOTENCY_WINDOW_MS`] and less than twice that:
//! it lives in the current generation until the generation is a window old, then in the
//! previous one for another window, then it is dropped with that whole table (both tables
//! are dropped at once after two quiet windows). Only accepted commands are remembered: a
//! rejected command changed nothing, so its retry is simply evaluated again.
//!
//! Layout: transfer ids, by far the most common keys, live in a compact table of 16-byte
//! entries (id -> fingerprint with the "in flight" outcome in its low bit); other keys
//! (client order ids) in a general one. This table is the largest per-command cost of a
//! transfer, so its size decides speed (docs/design/0003-engine-performance.md). Capacity
//! never affects behaviour, only speed.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tradelog_domain::{Accepted, Outcome, Timestamp, IDEMPOTENCY_WINDOW_MS};

/// Namespace of transfer ids (deposits, withdrawals, transfers, pending transfers).
pub(crate) const NS_TRANSFER: u8 = 1;
/// Namespace of (account, client order id).
pub(crate) const NS_CLIENT_ORDER: u8 = 3;

/// An idempotency key: (namespace, a, b).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct DedupeKey {
    pub ns: u8,
    pub a: u64,
    pub b: u64,
}

/// What a key remembers: a fingerprint of the command (always even: its low bit is free)
/// and its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DedupeEntry {
    pub fingerprint: u64,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Default)]
struct Generation {
    /// Transfer id -> fingerprint | 1 if the outcome was `InFlight` (else `Done`).
    transfers: FxHashMap<u64, u64>,
    /// Every other key.
    others: FxHashMap<DedupeKey, DedupeEntry>,
}

impl Generation {
    fn with_capacity_like(g: &Generation) -> Generation {
        Generation {
            transfers: FxHashMap::with_capacity_and_hasher(g.transfers.len(), Default::default()),
            others: FxHashMap::with_capacity_and_hasher(g.others.len(), Default::default()),
        }
    }

    fn get(&self, k: &DedupeKey) -> Option<DedupeEntry> {
        if k.ns == NS_TRANSFER && k.b == 0 {
            if let Some(&v) = self.transfers.get(&k.a) {
                let outcome = if v & 1 == 1 {
                    Accepted::InFlight
                } else {
                    Accepted::Done
                };
                return Some(DedupeEntry {
                    fingerprint: v & !1,
                    outcome: Outcome::ok(outcome),
                });
            }
        }
        self.others.get(k).copied()
    }

    fn insert(&mut self, k: DedupeKey, e: DedupeEntry) {
        let compact = match e.outcome {
            Outcome {
                result: Ok(Accepted::Done),
                duplicate: false,
            } => Some(0),
            Outcome {
                result: Ok(Accepted::InFlight),
                duplicate: false,
            } => Some(1),
            _ => None,
        };
        match compact {
            Some(bit) if k.ns == NS_TRANSFER && k.b == 0 && e.fingerprint & 1 == 0 => {
                self.transfers.insert(k.a, e.fingerprint | bit);
            }
            _ => {
                self.others.insert(k, e);
            }
        }
    }

    fn len(&self) -> usize {
        self.transfers.len() + self.others.len()
    }

    fn sorted(&self) -> Vec<(DedupeKey, DedupeEntry)> {
        let mut v: Vec<_> = self.others.iter().map(|(k, v)| (*k, *v)).collect();
        v.extend(self.transfers.keys().map(|&a| {
            let k = DedupeKey {
                ns: NS_TRANSFER,
                a,
                b: 0,
            };
            (k, self.get(&k).expect("present"))
        }));
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }

    fn from_sorted(v: Vec<(DedupeKey, DedupeEntry)>) -> Generation {
        let mut g = Generation::default();
        for (k, e) in v {
            g.insert(k, e);
        }
        g
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Dedupe {
    current: Generation,
    previous: Generation,
    current_since: Timestamp,
}

/// Sorted entries of both generations and the start of the current one (snapshots).
pub(crate) type DedupeParts = (
    Vec<(DedupeKey, DedupeEntry)>,
    Vec<(DedupeKey, DedupeEntry)>,
    Timestamp,
);

impl Dedupe {
    pub fn get(&self, k: &DedupeKey) -> Option<DedupeEntry> {
        self.current.get(k).or_else(|| self.previous.get(k))
    }

    pub fn contains(&self, k: &DedupeKey) -> bool {
        self.get(k).is_some()
    }

    pub fn insert(&mut self, k: DedupeKey, e: DedupeEntry) {
        self.current.insert(k, e);
    }

    /// Makes room for `n` more transfer ids in the current generation (capacity planning:
    /// no rehash pause while they arrive). Changes no behaviour.
    pub fn reserve_transfers(&mut self, n: usize) {
        self.current.transfers.reserve(n);
    }

    /// Number of remembered keys.
    #[allow(dead_code)]
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Starts a new generation when the current one is a window old.
    #[inline]
    pub fn rotate(&mut self, now: Timestamp) {
        if now >= self.current_since.plus_ms(2 * IDEMPOTENCY_WINDOW_MS) {
            // Quiet for two windows: everything is at least a window old.
            self.current = Generation::with_capacity_like(&self.current);
            self.previous = Generation::default();
            self.current_since = now;
        } else if now >= self.current_since.plus_ms(IDEMPOTENCY_WINDOW_MS) {
            let fresh = Generation::with_capacity_like(&self.current);
            self.previous = std::mem::replace(&mut self.current, fresh);
            self.current_since = now;
        }
    }

    pub fn to_parts(&self) -> DedupeParts {
        (
            self.current.sorted(),
            self.previous.sorted(),
            self.current_since,
        )
    }

    pub fn from_parts(p: DedupeParts) -> Dedupe {
        Dedupe {
            current: Generation::from_sorted(p.0),
            previous: Generation::from_sorted(p.1),
            current_since: p.2,
        }
    }
}
