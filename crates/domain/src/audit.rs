//! Audit figures of one shard and the pure checks over all shards' figures: the trial
//! balance of a shard, the consistency of a cut (one log index per shard), and the
//! solvency of the whole system at a consistent cut (docs/design/0012).
//!
//! The engine computes a shard's [`ShardFigures`] at some log index; a distributed job
//! gathers them from every shard and calls [`check_cut`] and [`solvency`] here, so every
//! rule of the audit is plain data and pure functions, the same wherever it runs.

use crate::{AssetId, ShardId, TransferId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most unacknowledged outgoing messages with a value effect, plus cross-shard transfers
/// in flight, one shard's figures list; a shard with more answers `TooManyInFlight`.
pub const AUDIT_FLOWS_MAX: usize = 100_000;

/// One asset's figures on one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetFigures {
    /// Sum of `available` over the shard's accounts.
    pub available: u128,
    /// Sum of `held` over the shard's accounts.
    pub held: u128,
    /// Sum of deposits.
    pub deposited: u128,
    /// Sum of withdrawals.
    pub withdrawn: u128,
    /// Value that left this shard in messages (applied here).
    pub sent: u128,
    /// Value that arrived from other shards (applied here).
    pub received: u128,
}

impl AssetFigures {
    /// `available + held`.
    pub fn balances(&self) -> u128 {
        self.available + self.held
    }

    /// What the flows say the balances must be: `deposited - withdrawn + received - sent`
    /// (`None` if negative, which no correct shard ever shows).
    pub fn expected(&self) -> Option<u128> {
        (self.deposited + self.received).checked_sub(self.withdrawn + self.sent)
    }

    /// Adds `o` field by field.
    pub fn add(&mut self, o: &AssetFigures) {
        self.available += o.available;
        self.held += o.held;
        self.deposited += o.deposited;
        self.withdrawn += o.withdrawn;
        self.sent += o.sent;
        self.received += o.received;
    }
}

/// The sequence numbers of one (this shard, peer) pair of channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSeqs {
    /// Highest sequence number this shard sent to the peer (0 = none).
    pub sent: u64,
    /// Highest sequence number the peer acknowledged (the outbox holds `acked+1..=sent`).
    pub acked: u64,
    /// Highest sequence number this shard applied from the peer (0 = none).
    pub received: u64,
}

/// What applying an outgoing message will do to its destination's flow totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowEffect {
    /// Adds `sent` to the destination's `sent` and `received` to its `received` in `asset`.
    Value {
        /// Asset.
        asset: AssetId,
        /// Value that will leave the destination.
        sent: u64,
        /// Value that will arrive at the destination.
        received: u64,
    },
    /// A successful cross-shard credit: the destination (the debit shard) will finish the
    /// transfer and send what its in-flight record `id` posted.
    TransferPosted {
        /// Transfer id.
        id: TransferId,
    },
}

/// An unacknowledged outgoing message with a value effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutFlow {
    /// Destination shard.
    pub to: ShardId,
    /// Its sequence number on the channel.
    pub seq: u64,
    /// What applying it does.
    pub effect: FlowEffect,
}

/// A cross-shard transfer whose debit is held on this shard, awaiting the credit's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightTransfer {
    /// Transfer id.
    pub id: TransferId,
    /// Asset.
    pub asset: AssetId,
    /// Value the credit carries (sent when the credit succeeds).
    pub posted: u64,
}

/// Where a shard made by a split came from: its parent, and the parent's index whose
/// input was the split (the parent's figures at that index and later no longer hold what
/// moved; the child's figures, from its start state on, do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitOrigin {
    /// The shard that gave the accounts and markets.
    pub parent: ShardId,
    /// The parent's index of the split.
    pub index: u64,
}

/// One shard's audit figures at one log index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFigures {
    /// The shard.
    pub shard: ShardId,
    /// The log index (inputs applied) these figures are of. A shard made by a split is at
    /// index 0 in its start state.
    pub index: u64,
    /// For a shard made by a split, where it came from.
    pub origin: Option<SplitOrigin>,
    /// A shard made by a split, taken at a cut before it existed (before its parent's
    /// split): it holds nothing and exchanged nothing ([`ShardFigures::before_start`]).
    pub before_start: bool,
    /// Per asset (every asset of the catalog).
    pub assets: BTreeMap<AssetId, AssetFigures>,
    /// Per other shard this one exchanged messages with.
    pub peers: BTreeMap<ShardId, PeerSeqs>,
    /// Unacknowledged outgoing messages that move value, by destination and sequence.
    pub outbox: Vec<OutFlow>,
    /// Cross-shard transfers in flight from here.
    pub inflight: Vec<InFlightTransfer>,
    /// Cross-shard transfers whose debit moved away in a split, by the shard it moved to:
    /// their credit's result, arriving here, is forwarded there.
    pub relayed: Vec<(TransferId, ShardId)>,
}

impl ShardFigures {
    /// A shard's figures before its first input: nothing held, nothing exchanged. For a
    /// shard made by a split (`origin`), the moment before the split made it.
    pub fn before_start(shard: ShardId, origin: Option<SplitOrigin>) -> ShardFigures {
        ShardFigures {
            shard,
            origin,
            before_start: origin.is_some(),
            ..ShardFigures::default()
        }
    }

    /// The sequence numbers towards `peer` (zeros if none were exchanged).
    pub fn peer(&self, peer: ShardId) -> PeerSeqs {
        self.peers.get(&peer).copied().unwrap_or_default()
    }

    /// The shard's own trial balance: every asset whose balances differ from its flows.
    pub fn trial_balance(&self) -> Vec<AuditFailure> {
        self.assets
            .iter()
            .filter(|(_, f)| f.expected() != Some(f.balances()))
            .map(|(asset, f)| AuditFailure::ShardUnbalanced {
                shard: self.shard,
                asset: *asset,
                balances: f.balances(),
                deposited: f.deposited,
                withdrawn: f.withdrawn,
                received: f.received,
                sent: f.sent,
            })
            .collect()
    }
}

/// Why a cut is not consistent: shard `shard`'s index must move back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CutFault {
    /// `shard` applied more messages from `peer` than `peer` had sent at its index:
    /// `shard` must move back to where it had applied at most `limit` of them.
    ReceivedUnsent {
        /// The shard that must move back.
        shard: ShardId,
        /// The sender.
        peer: ShardId,
        /// How many `peer` had sent.
        limit: u64,
    },
    /// `shard` saw an acknowledgement from `peer` for messages `peer` had not applied at
    /// its index: `shard` must move back to where its acknowledged count was at most
    /// `limit`.
    AckedUnapplied {
        /// The shard that must move back.
        shard: ShardId,
        /// The receiver.
        peer: ShardId,
        /// How many `peer` had applied.
        limit: u64,
    },
    /// `shard` was made by a split that its parent, at its index, had not applied yet:
    /// what moved is still the parent's, so `shard` must move back to before its start.
    ChildBeforeSplit {
        /// The child, which must move back.
        shard: ShardId,
        /// Its parent.
        parent: ShardId,
        /// The parent's index of the split.
        index: u64,
    },
    /// `shard` had applied the split that made `child`, which the cut takes before its
    /// start: what moved would be counted nowhere, so `shard` must move back to before
    /// `index`.
    ParentPastSplit {
        /// The parent, which must move back.
        shard: ShardId,
        /// The child.
        child: ShardId,
        /// The parent's index of the split.
        index: u64,
    },
}

impl CutFault {
    /// The shard that must move back.
    pub fn shard(&self) -> ShardId {
        match self {
            CutFault::ReceivedUnsent { shard, .. }
            | CutFault::AckedUnapplied { shard, .. }
            | CutFault::ChildBeforeSplit { shard, .. }
            | CutFault::ParentPastSplit { shard, .. } => *shard,
        }
    }

    /// Whether `f` (figures of [`shard`](Self::shard) at some index) no longer has this
    /// fault. Monotone: true at an index means true at every earlier index (and before
    /// the start).
    pub fn cured_by(&self, f: &ShardFigures) -> bool {
        match *self {
            CutFault::ReceivedUnsent { peer, limit, .. } => f.peer(peer).received <= limit,
            CutFault::AckedUnapplied { peer, limit, .. } => f.peer(peer).acked <= limit,
            CutFault::ChildBeforeSplit { .. } => f.before_start,
            CutFault::ParentPastSplit { index, .. } => f.before_start || f.index < index,
        }
    }
}

/// The first reason `cut` (every shard's figures, one per shard) is not a consistent cut,
/// or `None` if it is: a shard made by a split is there exactly when its parent had
/// applied the split, and for every pair of shards, what one applied from the other is
/// between what the sender saw acknowledged and what it had sent.
pub fn check_cut(cut: &[ShardFigures]) -> Option<CutFault> {
    for child in cut {
        let Some(origin) = child.origin else {
            continue;
        };
        let Some(parent) = cut.iter().find(|f| f.shard == origin.parent) else {
            continue;
        };
        let parent_split = !parent.before_start && parent.index >= origin.index;
        if !child.before_start && !parent_split {
            return Some(CutFault::ChildBeforeSplit {
                shard: child.shard,
                parent: parent.shard,
                index: origin.index,
            });
        }
        if child.before_start && parent_split {
            return Some(CutFault::ParentPastSplit {
                shard: parent.shard,
                child: child.shard,
                index: origin.index,
            });
        }
    }
    for dst in cut {
        for src in cut {
            if src.shard == dst.shard {
                continue;
            }
            let sent = src.peer(dst.shard);
            let applied = dst.peer(src.shard).received;
            if applied > sent.sent {
                return Some(CutFault::ReceivedUnsent {
                    shard: dst.shard,
                    peer: src.shard,
                    limit: sent.sent,
                });
            }
            if sent.acked > applied {
                return Some(CutFault::AckedUnapplied {
                    shard: src.shard,
                    peer: dst.shard,
                    limit: applied,
                });
            }
        }
    }
    None
}

/// One asset's line of the solvency audit (sums over all shards at the cut).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolvencyLine {
    /// Sum of available + held over every account of every shard.
    pub balances: u128,
    /// Sum of deposits.
    pub deposited: u128,
    /// Sum of withdrawals.
    pub withdrawn: u128,
    /// Value the shards sent (applied at the cut).
    pub sent: u128,
    /// Value the shards received (applied at the cut).
    pub received: u128,
    /// Value messages in flight at the cut will send when applied.
    pub in_flight_sent: u128,
    /// Value messages in flight at the cut will deliver when applied.
    pub in_flight_received: u128,
}

/// The solvency audit's answer: one line per asset, and every failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Solvency {
    /// Per asset.
    pub assets: BTreeMap<AssetId, SolvencyLine>,
    /// Empty when the audit passes.
    pub failures: Vec<AuditFailure>,
}

/// Why an audit failed; every case names the shard (and asset) where it can.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditFailure {
    /// A shard's balances differ from its own flows.
    ShardUnbalanced {
        /// Shard.
        shard: ShardId,
        /// Asset.
        asset: AssetId,
        /// Sum of its accounts' balances.
        balances: u128,
        /// Its deposits.
        deposited: u128,
        /// Its withdrawals.
        withdrawn: u128,
        /// Value it received.
        received: u128,
        /// Value it sent.
        sent: u128,
    },
    /// The cut is not consistent.
    InconsistentCut(CutFault),
    /// A message in flight to `shard` finishes transfer `id`, which `shard` does not hold
    /// in flight at its index.
    UnknownTransfer {
        /// The debit shard.
        shard: ShardId,
        /// Transfer id.
        id: TransferId,
    },
    /// Over all shards, money was created or destroyed in `asset`: what was sent plus
    /// what in-flight messages will send differs from what was received plus what they
    /// will deliver.
    NotConserved {
        /// Asset.
        asset: AssetId,
        /// The line of the asset.
        line: SolvencyLine,
    },
}

impl std::fmt::Display for AuditFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditFailure::ShardUnbalanced {
                shard,
                asset,
                balances,
                deposited,
                withdrawn,
                received,
                sent,
            } => write!(
                f,
                "shard {shard}, asset {asset}: balances {balances} != deposited {deposited} \
                 - withdrawn {withdrawn} + received {received} - sent {sent}"
            ),
            AuditFailure::InconsistentCut(CutFault::ReceivedUnsent { shard, peer, limit }) => {
                write!(
                    f,
                    "shard {shard}: applied more messages from shard {peer} than the {limit} \
                     it had sent at the cut"
                )
            }
            AuditFailure::InconsistentCut(CutFault::AckedUnapplied { shard, peer, limit }) => {
                write!(
                    f,
                    "shard {shard}: saw acknowledged more messages than the {limit} shard \
                     {peer} had applied at the cut"
                )
            }
            AuditFailure::InconsistentCut(CutFault::ChildBeforeSplit {
                shard,
                parent,
                index,
            }) => write!(
                f,
                "shard {shard}: counted although its parent, shard {parent}, had not applied \
                 the split at its index {index} at the cut"
            ),
            AuditFailure::InconsistentCut(CutFault::ParentPastSplit {
                shard,
                child,
                index,
            }) => write!(
                f,
                "shard {shard}: past its split at index {index} while the cut takes shard \
                 {child}, which the split made, before its start"
            ),
            AuditFailure::UnknownTransfer { shard, id } => write!(
                f,
                "shard {shard}: a credit result in flight for transfer {id}, which the shard \
                 does not hold in flight"
            ),
            AuditFailure::NotConserved { asset, line } => write!(
                f,
                "asset {asset}: not conserved over all shards: sent {} + in flight {} != \
                 received {} + in flight {}",
                line.sent, line.in_flight_sent, line.received, line.in_flight_received
            ),
        }
    }
}

/// The shard that holds in-flight transfer `id` whose credit result is on its way to
/// `dst`: `dst`, or the shard(s) its debit moved to in splits (`None` if one is not in
/// the cut).
fn holder<'a>(
    by_shard: &BTreeMap<ShardId, &'a ShardFigures>,
    dst: &'a ShardFigures,
    id: TransferId,
) -> Option<&'a ShardFigures> {
    let mut at = dst;
    // Each hop goes to a child, made later than its parent: at most one hop per shard.
    for _ in 0..=by_shard.len() {
        match at.relayed.iter().find(|(t, _)| *t == id) {
            Some((_, to)) => at = by_shard.get(to)?,
            None => return Some(at),
        }
    }
    None
}

/// The solvency audit over `cut` (every shard's figures, one per shard): each shard's
/// trial balance, the cut's consistency, and per asset, over all shards, value sent plus
/// value in-flight messages will send == value received plus value they will deliver
/// (so that, with every shard balanced, the sum of balances equals deposits minus
/// withdrawals plus value in flight). Messages in flight are those a sender had sent at its index and
/// its receiver had not applied at its index.
pub fn solvency(cut: &[ShardFigures]) -> Solvency {
    let mut out = Solvency::default();
    for f in cut {
        out.failures.extend(f.trial_balance());
    }
    if let Some(fault) = check_cut(cut) {
        out.failures.push(AuditFailure::InconsistentCut(fault));
        return out;
    }
    for f in cut {
        for (asset, a) in &f.assets {
            let l = out.assets.entry(*asset).or_default();
            l.balances += a.balances();
            l.deposited += a.deposited;
            l.withdrawn += a.withdrawn;
            l.sent += a.sent;
            l.received += a.received;
        }
    }
    let by_shard: BTreeMap<ShardId, &ShardFigures> = cut.iter().map(|f| (f.shard, f)).collect();
    for src in cut {
        for m in &src.outbox {
            let Some(dst) = by_shard.get(&m.to) else {
                continue;
            };
            if m.seq <= dst.peer(src.shard).received {
                continue; // applied at the destination's index
            }
            match m.effect {
                FlowEffect::Value {
                    asset,
                    sent,
                    received,
                } => {
                    let l = out.assets.entry(asset).or_default();
                    l.in_flight_sent += sent as u128;
                    l.in_flight_received += received as u128;
                }
                FlowEffect::TransferPosted { id } => {
                    match holder(&by_shard, dst, id)
                        .and_then(|h| h.inflight.iter().find(|t| t.id == id))
                    {
                        Some(t) => {
                            out.assets.entry(t.asset).or_default().in_flight_sent +=
                                t.posted as u128;
                        }
                        None => out.failures.push(AuditFailure::UnknownTransfer {
                            shard: dst.shard,
                            id,
                        }),
                    }
                }
            }
        }
    }
    for (asset, l) in &out.assets {
        if l.sent + l.in_flight_sent != l.received + l.in_flight_received {
            out.failures.push(AuditFailure::NotConserved {
                asset: *asset,
                line: *l,
            });
        }
    }
    out
}
