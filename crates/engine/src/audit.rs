//! The audit figures of a shard ([`Engine::audit_figures`]): per asset the sums of its
//! accounts' balances and its flow totals, per peer shard the sequence numbers of both
//! channels, and what every unacknowledged outgoing message will move when applied, so
//! that a distributed audit can check conservation at a cut of all shards' logs
//! (`tradelog_domain::audit`, docs/design/0012). Read-only.

use crate::Engine;
use std::collections::BTreeMap;
use tradelog_domain::audit::{
    AssetFigures, FlowEffect, InFlightTransfer, OutFlow, PeerSeqs, ShardFigures, AUDIT_FLOWS_MAX,
};
use tradelog_domain::{MessageBody, ShardId, TransferId};

/// Why a shard's figures were not computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FiguresError {
    /// More unacknowledged value-moving messages and in-flight transfers than
    /// [`AUDIT_FLOWS_MAX`].
    #[error("shard {shard} has {count} messages and transfers in flight, more than the audit lists (limit `AUDIT_FLOWS_MAX` = {max})")]
    TooManyInFlight {
        /// Shard.
        shard: ShardId,
        /// How many it has.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// What applying `body` moves on its destination's flow totals, each effect given to `f`.
fn effects(body: &MessageBody, mut f: impl FnMut(FlowEffect)) {
    match *body {
        MessageBody::Settle {
            paid_asset,
            paid,
            received_asset,
            received,
            ..
        } => {
            f(FlowEffect::Value {
                asset: paid_asset,
                sent: paid.0,
                received: 0,
            });
            f(FlowEffect::Value {
                asset: received_asset,
                sent: 0,
                received: received.0,
            });
        }
        MessageBody::FeeCredit { asset, amount, .. } => f(FlowEffect::Value {
            asset,
            sent: 0,
            received: amount.0,
        }),
        MessageBody::TransferCreditResult { id, result: Ok(()) } => {
            f(FlowEffect::TransferPosted { id })
        }
        // A credit that succeeds adds its amount to the receiver's `received` and, through
        // its result, the same amount to the sender's `sent`; one that fails moves nothing.
        // Orders' holds, releases and replacements move value within one shard only.
        // A forwarded message does at its new destination what it would have done at
        // the first one.
        MessageBody::Forwarded { ref body, .. } => effects(body, f),
        MessageBody::TransferCredit { .. }
        | MessageBody::TransferCreditResult { .. }
        | MessageBody::OrderHeld(_)
        | MessageBody::Release { .. }
        | MessageBody::Replace { .. } => {}
    }
}

impl Engine {
    /// This shard's audit figures at its current index ([`Engine::inputs_applied`]).
    pub fn audit_figures(&self) -> Result<ShardFigures, FiguresError> {
        let ledger = self.ledger();
        let mut assets: BTreeMap<_, AssetFigures> = self
            .assets()
            .keys()
            .map(|a| (*a, AssetFigures::default()))
            .collect();
        for (asset, t) in ledger.totals() {
            let f = assets.entry(*asset).or_default();
            f.deposited = t.deposited;
            f.withdrawn = t.withdrawn;
            f.sent = t.sent;
            f.received = t.received;
        }
        for account in ledger.accounts() {
            for b in &account.balances {
                let f = assets.entry(b.asset).or_default();
                f.available += b.available.0 as u128;
                f.held += b.held.0 as u128;
            }
        }
        let mut peers: BTreeMap<ShardId, PeerSeqs> = BTreeMap::new();
        let mut outbox = Vec::new();
        for (to, o) in &self.outbox {
            let acked = o.next_seq - o.unacked.len() as u64;
            peers.insert(
                *to,
                PeerSeqs {
                    sent: o.next_seq,
                    acked,
                    received: 0,
                },
            );
            for m in &o.unacked {
                effects(&m.body, |effect| {
                    outbox.push(OutFlow {
                        to: *to,
                        seq: m.seq,
                        effect,
                    })
                });
            }
        }
        for (from, next) in &self.inbox_next {
            peers.entry(*from).or_default().received = next - 1;
        }
        let inflight: Vec<InFlightTransfer> = ledger
            .inflight()
            .values()
            .map(|f| InFlightTransfer {
                id: f.id,
                asset: f.asset,
                posted: f.posted.0,
            })
            .collect();
        let relayed: Vec<(TransferId, ShardId)> =
            self.relay.iter().map(|(t, s)| (*t, *s)).collect();
        let count = outbox.len() + inflight.len() + relayed.len();
        if count > AUDIT_FLOWS_MAX {
            return Err(FiguresError::TooManyInFlight {
                shard: self.shard(),
                count,
                max: AUDIT_FLOWS_MAX,
            });
        }
        Ok(ShardFigures {
            shard: self.shard(),
            index: self.inputs_applied(),
            origin: self.origin,
            before_start: false,
            assets,
            peers,
            outbox,
            inflight,
            relayed,
        })
    }
}
