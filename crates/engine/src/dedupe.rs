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
                return Some(compact_entry(v));
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

    /// Every entry, sorted by key (the snapshot's canonical order). The compact transfer
    /// table is sorted on its own (plain integer pairs sort several times faster than
    /// keys) and merged with the few other keys.
    fn sorted(&self) -> Vec<(DedupeKey, DedupeEntry)> {
        let mut transfers: Vec<(u64, u64)> = self.transfers.iter().map(|(&a, &v)| (a, v)).collect();
        // Ids are distinct, so sorting the pairs sorts by id.
        transfers.sort_unstable();
        let mut others: Vec<_> = self.others.iter().map(|(k, v)| (*k, *v)).collect();
        others.sort_unstable_by_key(|(k, _)| *k);
        let mut out = Vec::with_capacity(transfers.len() + others.len());
        let mut others = others.into_iter().peekable();
        for (a, v) in transfers {
            let k = DedupeKey {
                ns: NS_TRANSFER,
                a,
                b: 0,
            };
            while let Some(o) = others.next_if(|(ok, _)| *ok < k) {
                out.push(o);
            }
            out.push((k, compact_entry(v)));
        }
        out.extend(others);
        out
    }

    fn from_sorted(v: Vec<(DedupeKey, DedupeEntry)>) -> Generation {
        let transfers = v
            .iter()
            .filter(|(k, _)| k.ns == NS_TRANSFER && k.b == 0)
            .count();
        let mut g = Generation {
            transfers: FxHashMap::with_capacity_and_hasher(transfers, Default::default()),
            others: FxHashMap::with_capacity_and_hasher(v.len() - transfers, Default::default()),
        };
        for (k, e) in v {
            g.insert(k, e);
        }
        g
    }
}

/// The entry a compact transfer-table value stands for (fingerprint, "in flight" bit).
fn compact_entry(v: u64) -> DedupeEntry {
    let outcome = if v & 1 == 1 {
        Accepted::InFlight
    } else {
        Accepted::Done
    };
    DedupeEntry {
        fingerprint: v & !1,
        outcome: Outcome::ok(outcome),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use tradelog_domain::OrderId;

    fn entry(fingerprint: u64, kind: u8) -> DedupeEntry {
        let result = match kind % 3 {
            0 => Accepted::Done,
            1 => Accepted::InFlight,
            _ => Accepted::Order(OrderId(fingerprint)),
        };
        DedupeEntry {
            fingerprint,
            outcome: Outcome {
                result: Ok(result),
                duplicate: kind >= 3,
            },
        }
    }

    proptest! {
        /// Whatever table a key lands in, a generation's sorted entries are exactly what
        /// it answers for each key, in key order, and survive a round trip.
        #[test]
        fn sorted_entries_are_the_generation_in_key_order(
            keys in proptest::collection::vec(
                (prop_oneof![Just(NS_TRANSFER), Just(NS_CLIENT_ORDER)], 0u64..40, 0u64..3, any::<u64>(), 0u8..6),
                0..200,
            )
        ) {
            let mut g = Generation::default();
            let mut model = BTreeMap::new();
            for (ns, a, b, fingerprint, kind) in keys {
                let k = DedupeKey { ns, a, b };
                if model.contains_key(&k) {
                    continue; // the engine inserts a key once
                }
                let e = entry(fingerprint, kind);
                g.insert(k, e);
                model.insert(k, g.get(&k).expect("just inserted"));
            }
            let sorted = g.sorted();
            let expected: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(&sorted, &expected);
            prop_assert_eq!(Generation::from_sorted(sorted.clone()).sorted(), sorted);
        }
    }
}
