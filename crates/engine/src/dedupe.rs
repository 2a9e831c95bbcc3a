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
//! transfer, so its size decides speed (docs/design/0003-engine-performance.md). Each table
//! is split into 64 by key ([`Parted`]), so that its growth, which moves entries all at
//! once, pauses one command for a 64th of the time (docs/design/0005). Capacity never
//! affects behaviour, only speed.

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

/// Bits of a key's hash that choose its part of a [`Parted`] table.
const PART_BITS: u32 = 6;

/// A key of a [`Parted`] table: a number that spreads the keys over the parts.
trait PartKey: std::hash::Hash + Eq + Copy {
    fn spread(&self) -> u64;
}

impl PartKey for u64 {
    #[inline]
    fn spread(&self) -> u64 {
        *self
    }
}

impl PartKey for DedupeKey {
    #[inline]
    fn spread(&self) -> u64 {
        self.a ^ self.b.rotate_left(29) ^ u64::from(self.ns)
    }
}

/// A hash table split into `2^PART_BITS` tables by key. A hash table grows by moving every
/// entry into one twice as large, all at once, inside the insert that crossed its load
/// limit: at a million transfer ids that takes tens of milliseconds of the shard's apply
/// time, paid by every command of that group commit (`bench --only durable` showed a group
/// of 21 transfers taking 31 ms to apply, and the open-loop latency over gRPC stalled at
/// the same counts). With the keys spread over 64 tables, each growth moves a 64th of
/// them, and the 64 growths fall on different inserts. Lookups cost one multiplication
/// more.
#[derive(Clone, Debug)]
struct Parted<K, V> {
    parts: Vec<FxHashMap<K, V>>,
}

impl<K: PartKey, V: Copy> Default for Parted<K, V> {
    fn default() -> Parted<K, V> {
        Parted::with_capacity(0)
    }
}

impl<K: PartKey, V: Copy> Parted<K, V> {
    fn with_capacity(n: usize) -> Parted<K, V> {
        let per_part = n.div_ceil(1 << PART_BITS);
        Parted {
            parts: (0..1 << PART_BITS)
                .map(|_| FxHashMap::with_capacity_and_hasher(per_part, Default::default()))
                .collect(),
        }
    }

    /// The part holding `k`: the top bits of a Fibonacci hash (independent of the bits
    /// the table's own hash uses inside a part).
    #[inline]
    fn part(k: &K) -> usize {
        (k.spread().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - PART_BITS)) as usize
    }

    #[inline]
    fn get(&self, k: &K) -> Option<V> {
        self.parts[Self::part(k)].get(k).copied()
    }

    #[inline]
    fn insert(&mut self, k: K, v: V) {
        self.parts[Self::part(&k)].insert(k, v);
    }

    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    fn reserve(&mut self, n: usize) {
        let per_part = n.div_ceil(1 << PART_BITS);
        for p in &mut self.parts {
            p.reserve(per_part);
        }
    }

    /// Every (key, value), in no particular order.
    fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.parts
            .iter()
            .flat_map(|p| p.iter().map(|(k, v)| (*k, *v)))
    }
}

#[derive(Clone, Debug, Default)]
struct Generation {
    /// Transfer id -> fingerprint | 1 if the outcome was `InFlight` (else `Done`).
    transfers: Parted<u64, u64>,
    /// Every other key.
    others: Parted<DedupeKey, DedupeEntry>,
}

impl Generation {
    fn with_capacity_like(g: &Generation) -> Generation {
        Generation {
            transfers: Parted::with_capacity(g.transfers.len()),
            others: Parted::with_capacity(g.others.len()),
        }
    }

    fn get(&self, k: &DedupeKey) -> Option<DedupeEntry> {
        if k.ns == NS_TRANSFER && k.b == 0 {
            if let Some(v) = self.transfers.get(&k.a) {
                return Some(compact_entry(v));
            }
        }
        self.others.get(k)
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
        let mut transfers: Vec<(u64, u64)> = self.transfers.iter().collect();
        // Ids are distinct, so sorting the pairs sorts by id.
        transfers.sort_unstable();
        let mut others: Vec<_> = self.others.iter().collect();
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
            transfers: Parted::with_capacity(transfers),
            others: Parted::with_capacity(v.len() - transfers),
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

    /// Consecutive ids (how clients number transfers) spread evenly over the parts, so
    /// that each part's growth moves about a 64th of them; and the sorted entries, what a
    /// snapshot encodes, do not depend on the capacity the tables were made with.
    #[test]
    fn consecutive_ids_spread_over_every_part_and_capacity_is_invisible() {
        let n = 64 * 1_024u64;
        let mut sized = Generation {
            transfers: Parted::with_capacity(n as usize),
            others: Parted::with_capacity(16),
        };
        let mut grown = Generation::default();
        for i in 0..n {
            let k = DedupeKey {
                ns: NS_TRANSFER,
                a: (1 << 40) + i,
                b: 0,
            };
            sized.insert(k, entry(2 * i, 0));
            grown.insert(k, entry(2 * i, 0));
        }
        let loads: Vec<usize> = grown.transfers.parts.iter().map(|p| p.len()).collect();
        assert_eq!(loads.len(), 64);
        assert_eq!(loads.iter().sum::<usize>(), n as usize);
        let (least, most) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(
            *least >= 900 && *most <= 1_150,
            "parts hold {least}..={most} of {n} ids"
        );
        assert_eq!(sized.sorted(), grown.sorted());
        assert_eq!(
            grown.get(&DedupeKey {
                ns: NS_TRANSFER,
                a: 1 << 40,
                b: 0
            }),
            Some(entry(0, 0))
        );
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
