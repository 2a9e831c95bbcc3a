//! Queries over the event history: trades, OHLCV candles, account statements, and the
//! open orders of an account. Each reads one shard's events in order (regenerated history,
//! then the in-memory index: see [`History::scan`]) through a small visitor that builds
//! the answer; all arithmetic is on integers.

use crate::core::{order_view, shard_pos, Core, Error, OrderView, ShardPos};
use crate::history::{Scanned, Visitor};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use tradelog_api::query::{CandlesQuery, OpenOrdersQuery, StatementQuery, TradesQuery};
use tradelog_domain as d;
use tradelog_domain::{Event, EventRecord};

/// One trade with its place in the market shard's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct TradeView {
    pub seq: u64,
    pub input: u64,
    pub timestamp: d::Timestamp,
    pub market: d::MarketId,
    pub price: d::Price,
    pub qty: d::Qty,
    pub taker_side: d::Side,
    pub taker: d::OrderId,
    pub maker: d::OrderId,
    pub taker_account: d::AccountId,
    pub maker_account: d::AccountId,
    pub taker_fee: d::Amount,
    pub maker_fee: d::Amount,
}

impl TradeView {
    /// The trade `e` records, if it is one of `market`.
    fn of(e: &EventRecord, market: d::MarketId) -> Option<TradeView> {
        match e.event {
            Event::Trade {
                market: m,
                price,
                qty,
                taker_side,
                taker,
                maker,
                taker_account,
                maker_account,
                taker_fee,
                maker_fee,
            } if m == market => Some(TradeView {
                seq: e.seq,
                input: e.input,
                timestamp: e.timestamp,
                market,
                price,
                qty,
                taker_side,
                taker,
                maker,
                taker_account,
                maker_account,
                taker_fee,
                maker_fee,
            }),
            _ => None,
        }
    }
}

/// A page of trades.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TradesView {
    pub trades: Vec<TradeView>,
    pub position: ShardPos,
    pub at_end: bool,
}

/// One candle (the domain's, which the activity jobs build too).
pub(crate) type CandleView = d::jobs::Candle;

/// Candles of a range.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CandlesView {
    pub candles: Vec<CandleView>,
    pub position: ShardPos,
}

/// A balance at a point of a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct StatementBalance {
    pub available: d::Amount,
    pub held: d::Amount,
}

impl StatementBalance {
    const ZERO: StatementBalance = StatementBalance {
        available: d::Amount::ZERO,
        held: d::Amount::ZERO,
    };

    /// Available + held (fits: an asset's whole supply fits in a `u64`).
    fn total(&self) -> u64 {
        self.available
            .0
            .checked_add(self.held.0)
            .expect("a balance never exceeds the asset's supply")
    }
}

/// One line of a statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct StatementEntry {
    pub seq: u64,
    pub input: u64,
    pub timestamp: d::Timestamp,
    /// The event just before the balance change, in the same input.
    pub cause: Option<Event>,
    pub available: d::Amount,
    pub held: d::Amount,
    pub credit: d::Amount,
    pub debit: d::Amount,
}

/// A statement.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StatementView {
    pub account: d::AccountId,
    pub asset: d::AssetId,
    pub opening: StatementBalance,
    pub entries: Vec<StatementEntry>,
    pub closing: StatementBalance,
    pub truncated: bool,
    pub position: ShardPos,
}

/// Open orders of an account.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct OpenOrdersView {
    pub orders: Vec<OrderView>,
    pub positions: Vec<ShardPos>,
    /// With `partial`: the shards whose books this node does not hold.
    pub unread_shards: Vec<d::ShardId>,
    /// With `partial`: the orders sought that were not on the books read.
    pub unresolved_order_ids: Vec<d::OrderId>,
}

/// Collects the trades of one market in `[from, to)`, at most `limit`.
struct Trades {
    market: d::MarketId,
    from: d::Timestamp,
    to: Option<d::Timestamp>,
    limit: usize,
    out: Vec<TradeView>,
    /// An event at or after `to` was seen: the range is over.
    range_over: bool,
}

impl Visitor for Trades {
    fn visit(&mut self, e: &EventRecord) -> ControlFlow<()> {
        if self.to.is_some_and(|to| e.timestamp >= to) {
            self.range_over = true;
            return ControlFlow::Break(());
        }
        if e.timestamp >= self.from {
            if let Some(t) = TradeView::of(e, self.market) {
                self.out.push(t);
                if self.out.len() == self.limit {
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Builds the candles of one market in `[from, to)`.
struct Candles {
    market: d::MarketId,
    lot_size: u64,
    interval_ns: u64,
    to: d::Timestamp,
    candles: BTreeMap<u64, CandleView>,
    overflow: bool,
    /// The shard a split moved the market to from the shard read now: its trades end at
    /// that split.
    moved_to: Option<d::ShardId>,
}

impl Visitor for Candles {
    fn visit(&mut self, e: &EventRecord) -> ControlFlow<()> {
        if e.timestamp >= self.to {
            return ControlFlow::Break(());
        }
        if let Event::ShardSplit { child, .. } = e.event {
            if Some(child) == self.moved_to {
                return ControlFlow::Break(());
            }
        }
        let Event::Trade {
            market, price, qty, ..
        } = e.event
        else {
            return ControlFlow::Continue(());
        };
        if market != self.market {
            return ControlFlow::Continue(());
        }
        let start = e.timestamp.0 - e.timestamp.0 % self.interval_ns;
        let notional = qty.0 / self.lot_size * price.0;
        let c = self
            .candles
            .entry(start)
            .or_insert_with(|| CandleView::first(start, price));
        if c.add(price, qty.0, notional).is_none() {
            self.overflow = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// Builds a statement of one (account, asset) from a known balance on.
struct Statement {
    account: d::AccountId,
    asset: d::AssetId,
    to: Option<d::Timestamp>,
    after_seq: u64,
    limit: usize,
    /// The balance so far.
    balance: StatementBalance,
    /// The balance before the first entry returned.
    opening: StatementBalance,
    entries: Vec<StatementEntry>,
    /// The last event of the current input that is not a balance.
    cause: Option<EventRecord>,
    truncated: bool,
}

impl Visitor for Statement {
    fn visit(&mut self, e: &EventRecord) -> ControlFlow<()> {
        if self.to.is_some_and(|to| e.timestamp >= to) {
            return ControlFlow::Break(());
        }
        let Event::Balance {
            account,
            asset,
            available,
            held,
        } = e.event
        else {
            self.cause = Some(e.clone());
            return ControlFlow::Continue(());
        };
        if account != self.account || asset != self.asset {
            return ControlFlow::Continue(());
        }
        let after = StatementBalance { available, held };
        if e.seq <= self.after_seq {
            // Before a continuation point: only the running balance matters.
            self.balance = after;
            self.opening = after;
            return ControlFlow::Continue(());
        }
        if self.entries.len() == self.limit {
            self.truncated = true;
            return ControlFlow::Break(());
        }
        let (before, now) = (self.balance.total(), after.total());
        let cause = self
            .cause
            .as_ref()
            .filter(|c| c.input == e.input)
            .map(|c| c.event.clone());
        self.entries.push(StatementEntry {
            seq: e.seq,
            input: e.input,
            timestamp: e.timestamp,
            cause,
            available,
            held,
            credit: d::Amount(now.saturating_sub(before)),
            debit: d::Amount(before.saturating_sub(now)),
        });
        self.balance = after;
        ControlFlow::Continue(())
    }
}

pub(crate) fn scanned_last(s: Scanned) -> u64 {
    match s {
        Scanned::Stopped(l) | Scanned::End(l) | Scanned::Limit(l) => l,
    }
}

pub(crate) fn limit_exceeded(what: &str, shard: d::ShardId, last: u64) -> Error {
    Error::LimitExceeded(format!(
        "{what} needs more of shard {shard}'s history replayed than one request may (limit \
         `replay_records_max`, reached after event {shard}:{last}); ask for a shorter range"
    ))
}

impl Core {
    /// A page of one market's trades.
    pub(crate) async fn trades(&self, q: TradesQuery) -> Result<TradesView, Error> {
        // Read your writes: the events these read are those the node had applied.
        self.index_caught_up().await;
        let shard = self.market_shard(q.market, q.stale).await?;
        let after = match q.after_seq {
            Some(a) => a,
            None => self.history.seq_before_time(shard, q.from).await?,
        };
        let visitor = Trades {
            market: q.market,
            from: q.from,
            to: q.to,
            limit: q.limit as usize,
            out: Vec::new(),
            range_over: false,
        };
        let (v, end) = self.history.scan(shard, after, visitor).await?;
        let at_end = v.range_over || matches!(end, Scanned::End(_));
        // Stopped at the range's end: the event that ended it was not consumed.
        let seq = match (end, v.out.last()) {
            (Scanned::Stopped(_), Some(t)) if !v.range_over => t.seq,
            (Scanned::Stopped(l), _) if v.range_over => l.saturating_sub(1).max(after),
            (s, _) => scanned_last(s),
        };
        Ok(TradesView {
            trades: v.out,
            position: ShardPos { shard, seq },
            at_end,
        })
    }

    /// OHLCV candles of one market (intervals without trades omitted).
    pub(crate) async fn candles(&self, q: CandlesQuery) -> Result<CandlesView, Error> {
        // Read your writes: the events these read are those the node had applied.
        self.index_caught_up().await;
        // A split may have moved the market: its trades before the split are on the
        // shards it left, oldest first (a node holding every one of them answers).
        let home = self.market_home(q.market, q.stale).await?;
        let path = self.node.placement().market_shards(q.market, home);
        let lot_size = self
            .read_as(self.catalog_shard(), q.stale, move |e| {
                e.markets().get(&q.market).map(|m| m.lot_size)
            })
            .await?
            .ok_or_else(|| Error::NotFound(format!("market {} does not exist", q.market)))?;
        let mut v = Candles {
            market: q.market,
            lot_size,
            interval_ns: q.interval_ns,
            to: q.to,
            candles: BTreeMap::new(),
            overflow: false,
            moved_to: None,
        };
        let mut position = None;
        for (i, shard) in path.iter().copied().enumerate() {
            v.moved_to = path.get(i + 1).copied();
            let after = self.history.seq_before_time(shard, q.from).await?;
            let (next, end) = self.history.scan(shard, after, v).await?;
            v = next;
            if v.overflow {
                return Err(Error::LimitExceeded(
                    "a candle's volume exceeds 2^64 - 1 minor units; ask for a shorter interval"
                        .into(),
                ));
            }
            let last = match end {
                Scanned::Limit(l) => return Err(limit_exceeded("the range", shard, l)),
                Scanned::Stopped(l) => l.saturating_sub(1).max(after),
                Scanned::End(l) => l,
            };
            position = Some(ShardPos { shard, seq: last });
        }
        Ok(CandlesView {
            candles: v.candles.into_values().collect(),
            position: position.expect("a market's path has its home shard"),
        })
    }

    /// An account statement in one asset.
    pub(crate) async fn statement(&self, q: StatementQuery) -> Result<StatementView, Error> {
        // Read your writes: the events these read are those the node had applied.
        self.index_caught_up().await;
        let shard = self.node.placement().account_shard(q.account);
        let (account, asset) = (q.account, q.asset);
        let exists = self
            .read_as(shard, q.stale, move |e| {
                e.ledger().account(account).is_some()
            })
            .await?;
        if !exists {
            return Err(Error::NotFound(format!("account {account} does not exist")));
        }
        let (opening, after) = self
            .history
            .state_before_time(shard, q.from, move |e| {
                let b = e
                    .ledger()
                    .account(account)
                    .map(|a| a.balance(asset))
                    .map_or(StatementBalance::ZERO, |b| StatementBalance {
                        available: b.available,
                        held: b.held,
                    });
                (b, e.next_event_seq() - 1)
            })
            .await?;
        let visitor = Statement {
            account,
            asset,
            to: q.to,
            after_seq: q.after_seq.unwrap_or(0),
            limit: q.limit as usize,
            balance: opening,
            opening,
            entries: Vec::new(),
            cause: None,
            truncated: false,
        };
        let (v, end) = self.history.scan(shard, after, visitor).await?;
        let last = match end {
            Scanned::Limit(l) => return Err(limit_exceeded("the statement", shard, l)),
            Scanned::Stopped(l) => l.saturating_sub(1).max(after),
            Scanned::End(l) => l,
        };
        Ok(StatementView {
            account,
            asset,
            opening: v.opening,
            closing: v.balance,
            position: ShardPos {
                shard,
                seq: if v.truncated {
                    v.entries.last().map_or(last, |e| e.seq)
                } else {
                    last
                },
            },
            entries: v.entries,
            truncated: v.truncated,
        })
    }

    /// The open orders of an account: the orders holding funds on its shard that rest on
    /// their market's book. With `order_ids`, those orders (of this account) instead of
    /// the holds, and the account's shard is not read. With `partial`, books on shards
    /// this node does not hold are named in the answer, with the orders not found,
    /// instead of refused with `WrongNode`.
    pub(crate) async fn open_orders(&self, q: OpenOrdersQuery) -> Result<OpenOrdersView, Error> {
        let OpenOrdersQuery {
            account,
            stale,
            partial,
            order_ids,
            shards,
        } = q;
        if let Some(s) = shards.0.iter().find(|s| s.0 >= self.shard_count()) {
            return Err(Error::Invalid(format!(
                "shard {s} does not exist (this node has {} shards)",
                self.shard_count()
            )));
        }
        let mut positions = Vec::new();
        let sought: BTreeSet<d::OrderId> = if order_ids.is_empty() {
            let shard = self.node.placement().account_shard(account);
            let (exists, holds, pos) = self
                .read_as(shard, stale, move |e| {
                    (
                        e.ledger().account(account).is_some(),
                        e.ledger().order_holds_of(account),
                        shard_pos(e),
                    )
                })
                .await?;
            if !exists {
                return Err(Error::NotFound(format!("account {account} does not exist")));
            }
            positions.push(pos);
            holds.iter().map(|(id, _)| *id).collect()
        } else {
            order_ids
        };
        let mut orders = Vec::new();
        let mut unread_shards = Vec::new();
        if !sought.is_empty() {
            let book_shards: Vec<d::ShardId> = if shards.is_all() {
                let mut v: Vec<d::ShardId> = self
                    .read_as(self.catalog_shard(), stale, |e| {
                        e.markets().values().map(|m| m.shard).collect::<Vec<_>>()
                    })
                    .await?;
                v.sort();
                v.dedup();
                v
            } else {
                shards.0.iter().copied().collect()
            };
            let ids: std::sync::Arc<[d::OrderId]> = sought.iter().copied().collect();
            for s in book_shards {
                if partial && self.node.check_hosted(s).is_err() {
                    unread_shards.push(s);
                    continue;
                }
                let ids = ids.clone();
                let read = self
                    .read_as(s, stale, move |e| {
                        let mut found = Vec::new();
                        for book in e.books().values() {
                            for id in ids.iter() {
                                if let Some(o) = book.order(*id).filter(|o| o.account == account) {
                                    found.push(order_view(e, book.spec().id, o));
                                }
                            }
                        }
                        (found, shard_pos(e))
                    })
                    .await;
                match read {
                    Ok((found, pos)) => {
                        orders.extend(found);
                        positions.push(pos);
                    }
                    // The shard moved away between the check and the read.
                    Err(Error::WrongNode { .. }) if partial => unread_shards.push(s),
                    Err(e) => return Err(e),
                }
            }
        }
        orders.sort_by_key(|o| o.order);
        let unresolved_order_ids = if partial {
            let found: BTreeSet<d::OrderId> = orders.iter().map(|o| o.order).collect();
            sought.difference(&found).copied().collect()
        } else {
            Vec::new()
        };
        Ok(OpenOrdersView {
            orders,
            positions,
            unread_shards,
            unresolved_order_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(seq: u64, ts: u64, price: u64, qty: u64) -> EventRecord {
        EventRecord {
            shard: d::ShardId(0),
            seq,
            input: seq,
            timestamp: d::Timestamp(ts),
            principal: d::Principal(1),
            event: Event::Trade {
                market: d::MarketId(1),
                price: d::Price(price),
                qty: d::Qty(qty),
                taker_side: d::Side::Buy,
                taker: d::OrderId(1),
                maker: d::OrderId(2),
                taker_account: d::AccountId(1),
                maker_account: d::AccountId(2),
                taker_fee: d::Amount(0),
                maker_fee: d::Amount(0),
            },
        }
    }

    #[test]
    fn candles_bucket_by_interval_and_omit_empty_ones() {
        let mut c = Candles {
            market: d::MarketId(1),
            lot_size: 10,
            interval_ns: 100,
            to: d::Timestamp(1_000),
            candles: BTreeMap::new(),
            overflow: false,
            moved_to: Some(d::ShardId(4)),
        };
        let split = |seq, child| EventRecord {
            event: Event::ShardSplit {
                child: d::ShardId(child),
                modulus: 2,
                residue: 1,
                accounts: 3,
            },
            ..trade(seq, 310, 1, 1)
        };
        for e in [
            trade(1, 105, 50, 20),
            trade(2, 150, 70, 10),
            trade(3, 199, 40, 30),
            // 200..300 has no trade
            trade(4, 300, 60, 10),
        ] {
            assert!(c.visit(&e).is_continue());
        }
        // A split that did not move the market changes nothing; the one that did ends
        // the market's trades on this shard.
        assert!(c.visit(&split(5, 3)).is_continue());
        assert!(c.visit(&split(6, 4)).is_break(), "the market moved");
        c.moved_to = None;
        assert!(
            c.visit(&trade(7, 1_000, 1, 10)).is_break(),
            "the range ended"
        );
        let got: Vec<_> = c.candles.into_values().collect();
        let candle = |start, o, h, l, cl, v, qv, n| CandleView {
            start,
            open: d::Price(o),
            high: d::Price(h),
            low: d::Price(l),
            close: d::Price(cl),
            volume: v,
            quote_volume: qv,
            trades: n,
        };
        assert_eq!(
            vec![
                // 20/10*50 + 10/10*70 + 30/10*40 = 100 + 70 + 120
                candle(100, 50, 70, 40, 40, 60, 290, 3),
                candle(300, 60, 60, 60, 60, 10, 60, 1),
            ],
            got
        );
    }
}
