//! Conversions of the audit messages (`audit.proto`) to and from the domain's audit
//! figures (`tradelog_domain::audit`), checked on the way in.

use crate::error::{at_most_items, required, shard, ApiError, Reason, Res};
use crate::proto as pb;
use tradelog_domain as d;
use tradelog_domain::audit::{
    AssetFigures, FlowEffect, InFlightTransfer, OutFlow, PeerSeqs, ShardFigures, SplitOrigin,
    AUDIT_FLOWS_MAX,
};
use tradelog_domain::jobs::{
    Candle, Holding, MarketActivity, ShardActivity, ShardStatements, StatementLine,
    ACTIVITY_CANDLES_MAX, ACTIVITY_MARKETS_MAX, STATEMENT_LINES_MAX,
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
            origin: f.origin.map(|o| pb::AuditSplitOrigin {
                parent: o.parent.0,
                parent_log_index: o.index,
            }),
            relayed: f
                .relayed
                .into_iter()
                .map(|(id, to)| pb::AuditRelayed {
                    transfer_id: id.0,
                    to_shard: to.0,
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
        at_most_items(f.relayed.len(), AUDIT_FLOWS_MAX, "relayed")?;
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
        let origin = match f.origin {
            Some(o) => Some(SplitOrigin {
                parent: shard(o.parent, "origin.parent")?,
                index: o.parent_log_index,
            }),
            None => None,
        };
        let mut relayed = Vec::with_capacity(f.relayed.len());
        for (i, r) in f.relayed.into_iter().enumerate() {
            let to = shard(r.to_shard, "to_shard").map_err(|e| e.inside_item("relayed", i))?;
            relayed.push((d::TransferId(r.transfer_id), to));
        }
        Ok(ShardFigures {
            shard: shard(f.shard, "shard")?,
            index: f.log_index,
            origin,
            // A shard answers figures of a state it has: never before its start.
            before_start: false,
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
            relayed,
        })
    }
}

impl From<Holding> for pb::Holding {
    fn from(h: Holding) -> pb::Holding {
        pb::Holding {
            available: h.available,
            held: h.held,
        }
    }
}

fn holding(h: Option<pb::Holding>, field: &'static str) -> Res<Holding> {
    let h = required(h, field)?;
    Ok(Holding {
        available: h.available,
        held: h.held,
    })
}

impl From<Candle> for pb::Candle {
    fn from(c: Candle) -> pb::Candle {
        pb::Candle {
            start_ns: c.start,
            open: c.open.0,
            high: c.high.0,
            low: c.low.0,
            close: c.close.0,
            volume: c.volume,
            quote_volume: c.quote_volume,
            trades: c.trades,
        }
    }
}

impl From<pb::Candle> for Candle {
    fn from(c: pb::Candle) -> Candle {
        Candle {
            start: c.start_ns,
            open: d::Price(c.open),
            high: d::Price(c.high),
            low: d::Price(c.low),
            close: d::Price(c.close),
            volume: c.volume,
            quote_volume: c.quote_volume,
            trades: c.trades,
        }
    }
}

impl From<ShardStatements> for pb::ShardStatements {
    fn from(s: ShardStatements) -> pb::ShardStatements {
        pb::ShardStatements {
            shard: s.shard.0,
            opening_index: s.opening_index,
            closing_index: s.closing_index,
            lines: s
                .lines
                .into_iter()
                .map(|l| pb::StatementLine {
                    account_id: l.account.0,
                    asset_id: l.asset.0,
                    opening: Some(l.opening.into()),
                    credits: dec(l.credits),
                    debits: dec(l.debits),
                    changes: l.changes,
                    closing: Some(l.closing.into()),
                    state_closing: Some(l.state_closing.into()),
                })
                .collect(),
            next_after_account: s.next_after.map(|a| a.0),
            from_split: s.from_split.map(|o| pb::AuditSplitOrigin {
                parent: o.parent.0,
                parent_log_index: o.index,
            }),
        }
    }
}

impl TryFrom<pb::ShardStatements> for ShardStatements {
    type Error = ApiError;

    fn try_from(s: pb::ShardStatements) -> Res<ShardStatements> {
        at_most_items(s.lines.len(), STATEMENT_LINES_MAX, "lines")?;
        let lines = s
            .lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                (|| {
                    Ok(StatementLine {
                        account: d::AccountId(l.account_id),
                        asset: d::AssetId(l.asset_id),
                        opening: holding(l.opening, "opening")?,
                        credits: undec(&l.credits, "credits")?,
                        debits: undec(&l.debits, "debits")?,
                        changes: l.changes,
                        closing: holding(l.closing, "closing")?,
                        state_closing: holding(l.state_closing, "state_closing")?,
                    })
                })()
                .map_err(|e: ApiError| e.inside_item("lines", i))
            })
            .collect::<Res<Vec<_>>>()?;
        let from_split = match s.from_split {
            Some(o) => Some(SplitOrigin {
                parent: shard(o.parent, "from_split.parent")?,
                index: o.parent_log_index,
            }),
            None => None,
        };
        Ok(ShardStatements {
            shard: shard(s.shard, "shard")?,
            opening_index: s.opening_index,
            closing_index: s.closing_index,
            lines,
            next_after: s.next_after_account.map(d::AccountId),
            from_split,
        })
    }
}

impl From<ShardActivity> for pb::ShardActivity {
    fn from(a: ShardActivity) -> pb::ShardActivity {
        pb::ShardActivity {
            shard: a.shard.0,
            last_seq: a.last_seq,
            markets: a
                .markets
                .into_iter()
                .map(|m| pb::MarketActivity {
                    market_id: m.market.0,
                    base_asset_id: m.base.0,
                    quote_asset_id: m.quote.0,
                    trades: m.trades,
                    volume: dec(m.volume),
                    quote_volume: dec(m.quote_volume),
                    price_volume: dec(m.price_volume),
                    open: m.open.map(|p| p.0),
                    high: m.high.map(|p| p.0),
                    low: m.low.map(|p| p.0),
                    close: m.close.map(|p| p.0),
                    candles: m.candles.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::ShardActivity> for ShardActivity {
    type Error = ApiError;

    fn try_from(a: pb::ShardActivity) -> Res<ShardActivity> {
        at_most_items(a.markets.len(), ACTIVITY_MARKETS_MAX, "markets")?;
        let markets = a
            .markets
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                at_most_items(m.candles.len(), ACTIVITY_CANDLES_MAX as usize, "candles")
                    .map_err(|e| e.inside_item("markets", i))?;
                (|| {
                    Ok(MarketActivity {
                        market: d::MarketId(m.market_id),
                        base: d::AssetId(m.base_asset_id),
                        quote: d::AssetId(m.quote_asset_id),
                        trades: m.trades,
                        volume: undec(&m.volume, "volume")?,
                        quote_volume: undec(&m.quote_volume, "quote_volume")?,
                        price_volume: undec(&m.price_volume, "price_volume")?,
                        open: m.open.map(d::Price),
                        high: m.high.map(d::Price),
                        low: m.low.map(d::Price),
                        close: m.close.map(d::Price),
                        candles: m.candles.into_iter().map(Into::into).collect(),
                    })
                })()
                .map_err(|e: ApiError| e.inside_item("markets", i))
            })
            .collect::<Res<Vec<_>>>()?;
        Ok(ShardActivity {
            shard: shard(a.shard, "shard")?,
            last_seq: a.last_seq,
            markets,
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
            origin: Some(SplitOrigin {
                parent: d::ShardId(0),
                index: 41,
            }),
            before_start: false,
            relayed: vec![(d::TransferId(8), d::ShardId(3))],
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
            ShardFigures::try_from(wire.clone())
        );
        wire.outbox.clear();
        wire.relayed.push(pb::AuditRelayed {
            transfer_id: 4,
            to_shard: u32::MAX,
        });
        let err = ShardFigures::try_from(wire.clone()).unwrap_err();
        assert_eq!("relayed[0].to_shard", err.field);
        wire.relayed.clear();
        wire.origin = Some(pb::AuditSplitOrigin {
            parent: u32::MAX,
            parent_log_index: 3,
        });
        let err = ShardFigures::try_from(wire).unwrap_err();
        assert_eq!("origin.parent", err.field);
    }

    fn line(account: u64, asset: u32) -> StatementLine {
        StatementLine {
            account: d::AccountId(account),
            asset: d::AssetId(asset),
            opening: Holding {
                available: 5,
                held: 1,
            },
            credits: u128::from(u64::MAX) * 2,
            debits: 3,
            changes: 9,
            closing: Holding {
                available: u64::MAX,
                held: 0,
            },
            state_closing: Holding {
                available: 7,
                held: 8,
            },
        }
    }

    #[test]
    fn statements_and_activity_cross_the_wire_unchanged() {
        let st = ShardStatements {
            shard: d::ShardId(3),
            opening_index: 4,
            closing_index: 10,
            lines: vec![line(1, 1), line(1, 2), line(9, 1)],
            next_after: Some(d::AccountId(9)),
            from_split: Some(SplitOrigin {
                parent: d::ShardId(1),
                index: 17,
            }),
        };
        let wire = pb::ShardStatements::from(st.clone());
        assert_eq!(Ok(st.clone()), ShardStatements::try_from(wire));
        let last_page = ShardStatements {
            next_after: None,
            from_split: None,
            ..st
        };
        let wire = pb::ShardStatements::from(last_page.clone());
        assert_eq!(Ok(last_page), ShardStatements::try_from(wire));

        let candle = Candle {
            start: 60,
            open: d::Price(5),
            high: d::Price(9),
            low: d::Price(2),
            close: d::Price(3),
            volume: 40,
            quote_volume: 120,
            trades: 4,
        };
        let a = ShardActivity {
            shard: d::ShardId(1),
            last_seq: 99,
            markets: vec![
                MarketActivity {
                    market: d::MarketId(1),
                    base: d::AssetId(2),
                    quote: d::AssetId(1),
                    trades: 4,
                    volume: 40,
                    quote_volume: 120,
                    price_volume: u128::from(u64::MAX) * u128::from(u64::MAX),
                    open: Some(d::Price(5)),
                    high: Some(d::Price(9)),
                    low: Some(d::Price(2)),
                    close: Some(d::Price(3)),
                    candles: vec![
                        candle,
                        Candle {
                            start: 120,
                            ..candle
                        },
                    ],
                },
                MarketActivity {
                    market: d::MarketId(2),
                    base: d::AssetId(2),
                    quote: d::AssetId(1),
                    trades: 0,
                    volume: 0,
                    quote_volume: 0,
                    price_volume: 0,
                    open: None,
                    high: None,
                    low: None,
                    close: None,
                    candles: vec![],
                },
            ],
        };
        let wire = pb::ShardActivity::from(a.clone());
        assert_eq!(Ok(a), ShardActivity::try_from(wire));
    }

    #[test]
    fn malformed_statements_and_activity_name_the_field() {
        let mut wire = pb::ShardStatements::from(ShardStatements {
            shard: d::ShardId(0),
            opening_index: 0,
            closing_index: 0,
            lines: vec![line(1, 1), line(2, 1)],
            next_after: None,
            from_split: None,
        });
        wire.lines[1].debits = "1e3".into();
        assert_eq!(
            Err(ApiError::new("lines[1].debits", Reason::NotANumber)),
            ShardStatements::try_from(wire.clone())
        );
        wire.lines[1].debits = "3".into();
        wire.lines[0].state_closing = None;
        assert_eq!(
            Err(ApiError::new("lines[0].state_closing", Reason::Missing)),
            ShardStatements::try_from(wire.clone())
        );
        wire.lines = vec![pb::StatementLine::default(); STATEMENT_LINES_MAX + 1];
        assert!(ShardStatements::try_from(wire).is_err());

        let mut wire = pb::ShardActivity {
            shard: 0,
            last_seq: 0,
            markets: vec![pb::MarketActivity::default()],
        };
        assert_eq!(
            Err(ApiError::new("markets[0].volume", Reason::NotANumber)),
            ShardActivity::try_from(wire.clone())
        );
        wire.markets[0].candles = vec![pb::Candle::default(); ACTIVITY_CANDLES_MAX as usize + 1];
        assert!(ShardActivity::try_from(wire).is_err());
    }
}
