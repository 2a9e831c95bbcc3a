//! Conversions of the audit messages (`audit.proto`) to and from the domain's audit
//! figures (`tradelog_domain::audit`), checked on the way in.

use crate::error::{at_most_items, required, shard, ApiError, Reason, Res};
use crate::proto as pb;
use tradelog_domain as d;
use tradelog_domain::audit::{
    AssetFigures, FlowEffect, InFlightTransfer, OutFlow, PeerSeqs, ShardFigures, AUDIT_FLOWS_MAX,
};

/// A u128 as sent: its decimal digits.
fn dec(v: u128) -> String {
    v.to_string()
}

/// A u128 from its decimal digits, or [`Reason::NotANumber`].
fn undec(s: &str, field: &'static str) -> Res<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::new(field, Reason::NotANumber));
    }
    s.parse()
        .map_err(|_| ApiError::new(field, Reason::NotANumber))
}

impl From<ShardFigures> for pb::ShardFigures {
    fn from(f: ShardFigures) -> pb::ShardFigures {
        pb::ShardFigures {
            shard: f.shard.0,
            log_index: f.index,
            assets: f
                .assets
                .into_iter()
                .map(|(asset, a)| pb::AuditAsset {
                    asset_id: asset.0,
                    available: dec(a.available),
                    held: dec(a.held),
                    deposited: dec(a.deposited),
                    withdrawn: dec(a.withdrawn),
                    sent: dec(a.sent),
                    received: dec(a.received),
                })
                .collect(),
            peers: f
                .peers
                .into_iter()
                .map(|(peer, p)| pb::AuditPeer {
                    shard: peer.0,
                    sent: p.sent,
                    acked: p.acked,
                    received: p.received,
                })
                .collect(),
            outbox: f
                .outbox
                .into_iter()
                .map(|m| pb::AuditFlow {
                    to_shard: m.to.0,
                    seq: m.seq,
                    effect: Some(match m.effect {
                        FlowEffect::Value {
                            asset,
                            sent,
                            received,
                        } => pb::audit_flow::Effect::Value(pb::AuditValue {
                            asset_id: asset.0,
                            sent,
                            received,
                        }),
                        FlowEffect::TransferPosted { id } => {
                            pb::audit_flow::Effect::TransferPosted(id.0)
                        }
                    }),
                })
                .collect(),
            inflight: f
                .inflight
                .into_iter()
                .map(|t| pb::AuditInFlight {
                    transfer_id: t.id.0,
                    asset_id: t.asset.0,
                    posted: t.posted,
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::ShardFigures> for ShardFigures {
    type Error = ApiError;

    fn try_from(f: pb::ShardFigures) -> Res<ShardFigures> {
        at_most_items(f.outbox.len(), AUDIT_FLOWS_MAX, "outbox")?;
        at_most_items(f.inflight.len(), AUDIT_FLOWS_MAX, "inflight")?;
        at_most_items(f.peers.len(), d::SHARD_COUNT_MAX as usize, "peers")?;
        let mut assets = std::collections::BTreeMap::new();
        for (i, a) in f.assets.into_iter().enumerate() {
            let figures = (|| {
                Ok(AssetFigures {
                    available: undec(&a.available, "available")?,
                    held: undec(&a.held, "held")?,
                    deposited: undec(&a.deposited, "deposited")?,
                    withdrawn: undec(&a.withdrawn, "withdrawn")?,
                    sent: undec(&a.sent, "sent")?,
                    received: undec(&a.received, "received")?,
                })
            })()
            .map_err(|e: ApiError| e.inside_item("assets", i))?;
            if assets.insert(d::AssetId(a.asset_id), figures).is_some() {
                return Err(ApiError::new(
                    format!("assets[{i}].asset_id"),
                    Reason::Duplicate(u64::from(a.asset_id)),
                ));
            }
        }
        let mut peers = std::collections::BTreeMap::new();
        for (i, p) in f.peers.into_iter().enumerate() {
            let s = shard(p.shard, "shard").map_err(|e| e.inside_item("peers", i))?;
            let seqs = PeerSeqs {
                sent: p.sent,
                acked: p.acked,
                received: p.received,
            };
            if peers.insert(s, seqs).is_some() {
                return Err(ApiError::new(
                    format!("peers[{i}].shard"),
                    Reason::Duplicate(u64::from(p.shard)),
                ));
            }
        }
        let mut outbox = Vec::with_capacity(f.outbox.len());
        for (i, m) in f.outbox.into_iter().enumerate() {
            let flow = (|| {
                let effect = match required(m.effect, "effect")? {
                    pb::audit_flow::Effect::Value(v) => FlowEffect::Value {
                        asset: d::AssetId(v.asset_id),
                        sent: v.sent,
                        received: v.received,
                    },
                    pb::audit_flow::Effect::TransferPosted(id) => FlowEffect::TransferPosted {
                        id: d::TransferId(id),
                    },
                };
                Ok(OutFlow {
                    to: shard(m.to_shard, "to_shard")?,
                    seq: m.seq,
                    effect,
                })
            })()
            .map_err(|e: ApiError| e.inside_item("outbox", i))?;
            outbox.push(flow);
        }
        Ok(ShardFigures {
            shard: shard(f.shard, "shard")?,
            index: f.log_index,
            assets,
            peers,
            outbox,
            inflight: f
                .inflight
                .into_iter()
                .map(|t| InFlightTransfer {
                    id: d::TransferId(t.transfer_id),
                    asset: d::AssetId(t.asset_id),
                    posted: t.posted,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_cross_the_wire_unchanged() {
        let f = ShardFigures {
            shard: d::ShardId(2),
            index: 77,
            assets: [(
                d::AssetId(1),
                AssetFigures {
                    available: 10,
                    held: 5,
                    deposited: u128::from(u64::MAX) * 3,
                    withdrawn: u128::from(u64::MAX) * 3 - 20,
                    sent: 9,
                    received: 4,
                },
            )]
            .into(),
            peers: [(
                d::ShardId(0),
                PeerSeqs {
                    sent: 3,
                    acked: 1,
                    received: 8,
                },
            )]
            .into(),
            outbox: vec![
                OutFlow {
                    to: d::ShardId(0),
                    seq: 2,
                    effect: FlowEffect::Value {
                        asset: d::AssetId(1),
                        sent: 9,
                        received: 0,
                    },
                },
                OutFlow {
                    to: d::ShardId(0),
                    seq: 3,
                    effect: FlowEffect::TransferPosted {
                        id: d::TransferId(5),
                    },
                },
            ],
            inflight: vec![InFlightTransfer {
                id: d::TransferId(6),
                asset: d::AssetId(1),
                posted: 2,
            }],
        };
        let wire = pb::ShardFigures::from(f.clone());
        assert_eq!(Ok(f), ShardFigures::try_from(wire));
    }

    #[test]
    fn malformed_figures_name_the_field() {
        let mut wire = pb::ShardFigures::from(ShardFigures {
            assets: [(d::AssetId(1), AssetFigures::default())].into(),
            ..ShardFigures::default()
        });
        wire.assets[0].held = "-1".into();
        assert_eq!(
            Err(ApiError::new("assets[0].held", Reason::NotANumber)),
            ShardFigures::try_from(wire.clone())
        );
        wire.assets[0].held = "1".into();
        wire.outbox.push(pb::AuditFlow {
            to_shard: 0,
            seq: 1,
            effect: None,
        });
        assert_eq!(
            Err(ApiError::new("outbox[0].effect", Reason::Missing)),
            ShardFigures::try_from(wire)
        );
    }
}
