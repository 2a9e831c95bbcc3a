//! Limit order books with price-time priority: one [`Book`] per market.
//!
//! Owns: resting orders, price levels, matching (limit/market, GTC/IOC/FOK, post-only,
//! self-trade prevention, collars, halt), amend and cancel, and the settlement amounts of
//! every fill (notional, fees, what each side pays from its hold). It mirrors each order's
//! hold exactly, so it can tell the account's shard what to release when the order closes.
//!
//! Must never depend on: the ledger (balances live on the account's shard and change only
//! through the settlement values this crate computes), the shard engine, storage, network,
//! clocks, randomness. Hash maps are only looked up, never iterated.
//!
//! Layout: orders live in a slab (`Vec<Node>` + free list) linked per price level in
//! arrival order; levels live in a `BTreeMap` per side; an `FxHashMap` finds an order by id.
//! Cancel is O(log levels), matching walks levels from the best price.

#![forbid(unsafe_code)]

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use tradelog_domain::*;

const NIL: u32 = u32::MAX;

/// A resting order as the book stores it (64 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestingOrder {
    /// Id.
    pub id: OrderId,
    /// Trading account.
    pub account: AccountId,
    /// Owner of the account.
    pub owner: Principal,
    /// Limit price.
    pub price: Price,
    /// Unfilled quantity.
    pub remaining: Qty,
    /// What is still held for it on the account's shard (mirrored exactly).
    pub hold: Amount,
    /// Side.
    pub side: Side,
    /// Self-trade prevention mode (kept for a replacement after an amend).
    pub stp: SelfTradePrevention,
    /// Post-only (kept for a replacement after an amend).
    pub post_only: bool,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    order: RestingOrder,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Level {
    head: u32,
    tail: u32,
    qty: u64,
    count: u32,
}

/// What one side of a fill pays and receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    /// Order.
    pub order: OrderId,
    /// Account.
    pub account: AccountId,
    /// Asset paid from the hold.
    pub paid_asset: AssetId,
    /// Amount paid (fee included for buyers).
    pub paid: Amount,
    /// Asset received.
    pub received_asset: AssetId,
    /// Amount received (fee deducted for sellers).
    pub received: Amount,
    /// Fee.
    pub fee: Amount,
}

/// One trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// Execution price (the maker's).
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Taker side.
    pub taker_side: Side,
    /// Taker's leg.
    pub taker: Leg,
    /// Maker's leg.
    pub maker: Leg,
    /// The maker filled completely; `maker_hold_left` is released to it.
    pub maker_done: bool,
    /// What the maker still holds after this fill (released if `maker_done`).
    pub maker_hold_left: Amount,
}

/// An order that left the book (or never entered it) unfilled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed {
    /// Order.
    pub order: OrderId,
    /// Account.
    pub account: AccountId,
    /// Unfilled quantity.
    pub remaining: Qty,
    /// Hold to release.
    pub hold_left: Amount,
    /// Why.
    pub reason: CancelReason,
}

/// Things that happen while an incoming order matches, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchEvent {
    /// A trade.
    Fill(Fill),
    /// A resting order was cancelled by self-trade prevention.
    MakerCancelled(Closed),
}

/// How the incoming order ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakerEnd {
    /// Rests on the book with this quantity; `released` of its hold was returned
    /// (price improvement), the rest stays held.
    Rested {
        /// Resting quantity.
        remaining: Qty,
        /// Excess hold to release now.
        released: Amount,
    },
    /// Filled completely; `hold_left` is released.
    Filled {
        /// Hold to release.
        hold_left: Amount,
    },
    /// The rest was cancelled.
    Cancelled(Closed),
}

/// The result of [`Book::place`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchOutput {
    /// Fills and maker cancellations, in order.
    pub events: Vec<MatchEvent>,
    /// How the taker ended (`None` until `place` returns Ok).
    pub end: Option<TakerEnd>,
}

/// The result of [`Book::amend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmendResult {
    /// Quantity reduced in place, priority kept; `released` of the hold is returned.
    Reduced {
        /// Account.
        account: AccountId,
        /// Hold to release now.
        released: Amount,
    },
    /// The order was removed; a new one must be placed (new price or larger size).
    Replaced(Closed),
}

/// A broken book invariant (a bug).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

/// The book of one market.
#[derive(Clone, Debug)]
pub struct Book {
    spec: MarketSpec,
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: FxHashMap<OrderId, u32>,
    bids: BTreeMap<u64, Level>,
    asks: BTreeMap<u64, Level>,
    halted: bool,
    last_price: Option<Price>,
}

type R<T = ()> = Result<T, RejectCode>;

impl Book {
    /// An empty book.
    pub fn new(spec: MarketSpec) -> Book {
        Book {
            spec,
            nodes: Vec::new(),
            free: Vec::new(),
            index: FxHashMap::default(),
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            halted: false,
            last_price: None,
        }
    }

    /// The market.
    pub fn spec(&self) -> &MarketSpec {
        &self.spec
    }

    /// True when halted.
    pub fn halted(&self) -> bool {
        self.halted
    }

    /// Last trade price.
    pub fn last_price(&self) -> Option<Price> {
        self.last_price
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True if nothing rests.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Best bid price.
    pub fn best_bid(&self) -> Option<Price> {
        self.bids.last_key_value().map(|(p, _)| Price(*p))
    }

    /// Best ask price.
    pub fn best_ask(&self) -> Option<Price> {
        self.asks.first_key_value().map(|(p, _)| Price(*p))
    }

    /// A resting order.
    pub fn order(&self, id: OrderId) -> Option<&RestingOrder> {
        self.index.get(&id).map(|&i| &self.nodes[i as usize].order)
    }

    /// Aggregated depth: up to `levels` (price, qty, count) per side, best first.
    #[allow(clippy::type_complexity)]
    pub fn depth(&self, levels: usize) -> (Vec<(Price, Qty, u32)>, Vec<(Price, Qty, u32)>) {
        let f = |(p, l): (&u64, &Level)| (Price(*p), Qty(l.qty), l.count);
        (
            self.bids.iter().rev().take(levels).map(f).collect(),
            self.asks.iter().take(levels).map(f).collect(),
        )
    }

    /// Resting orders of one side in priority order (best price first, then arrival).
    pub fn orders(&self, side: Side) -> Vec<RestingOrder> {
        let mut v = Vec::new();
        let levels: Box<dyn Iterator<Item = &Level>> = match side {
            Side::Buy => Box::new(self.bids.values().rev()),
            Side::Sell => Box::new(self.asks.values()),
        };
        for l in levels {
            let mut i = l.head;
            while i != NIL {
                v.push(self.nodes[i as usize].order);
                i = self.nodes[i as usize].next;
            }
        }
        v
    }

    /// Halts matching.
    pub fn halt(&mut self) -> R {
        if self.halted {
            return Err(RejectCode::InvalidMarketState);
        }
        self.halted = true;
        Ok(())
    }

    /// Resumes matching.
    pub fn resume(&mut self) -> R {
        if !self.halted {
            return Err(RejectCode::InvalidMarketState);
        }
        self.halted = false;
        Ok(())
    }

    fn side_levels(&mut self, side: Side) -> &mut BTreeMap<u64, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Best opposite level for a taker on `side` whose price limit is `limit`.
    #[inline]
    fn best_opposite(&self, side: Side, limit: u64) -> Option<(u64, Level)> {
        match side {
            Side::Buy => self
                .asks
                .first_key_value()
                .filter(|(p, _)| **p <= limit)
                .map(|(p, l)| (*p, *l)),
            Side::Sell => self
                .bids
                .last_key_value()
                .filter(|(p, _)| **p >= limit)
                .map(|(p, l)| (*p, *l)),
        }
    }

    /// The price limit a taker matches up to, after the collar.
    fn effective_limit(&self, t: &OrderTicket) -> R<u64> {
        let band = self.spec.collar(self.last_price);
        match t.order_type {
            OrderType::Limit => {
                if let Some((lo, hi)) = band {
                    if t.price < lo || t.price > hi {
                        return Err(RejectCode::PriceOutsideCollar);
                    }
                }
                Ok(t.price.0)
            }
            OrderType::Market => Ok(match (t.side, band) {
                (Side::Buy, Some((_, hi))) => t.price.0.min(hi.0),
                (Side::Buy, None) => t.price.0,
                (Side::Sell, Some((lo, _))) => t.price.0.max(lo.0),
                (Side::Sell, None) => t.price.0,
            }),
        }
    }

    /// Checks a new order against the market's rules (also done by the account's shard;
    /// repeated here because the market's shard is the authority).
    pub fn check_ticket(&self, t: &OrderTicket) -> R {
        if t.market != self.spec.id {
            return Err(RejectCode::UnknownMarket);
        }
        if self.halted {
            return Err(RejectCode::MarketHalted);
        }
        check_new_order(&self.spec, t.side, t.order_type, t.tif, t.price, t.qty)?;
        let (_, need) = self.spec.hold_for(t.side, t.qty, t.price)?;
        if t.hold < need {
            // The account's shard computes the same figure; a smaller hold is a bug there.
            panic!("order {} holds {} but needs {need}", t.order, t.hold);
        }
        Ok(())
    }

    /// Matches an incoming order and rests what is left (GTC limit). On `Err` nothing
    /// changed and the whole hold is to be released.
    pub fn place(&mut self, t: &OrderTicket, out: &mut MatchOutput) -> R {
        out.events.clear();
        out.end = None;
        self.check_ticket(t)?;
        let limit = self.effective_limit(t)?;
        if t.post_only && self.best_opposite(t.side, limit).is_some() {
            return Err(RejectCode::PostOnlyWouldTake);
        }
        if t.tif == TimeInForce::Fok && !self.fok_fillable(t, limit) {
            return Err(RejectCode::FokNotFilled);
        }
        if t.order_type == OrderType::Market && self.best_opposite(t.side, limit).is_none() {
            return Err(RejectCode::NoLiquidity);
        }

        let mut remaining = t.qty.0;
        let mut hold = t.hold;
        let mut fills = 0usize;
        let mut taker_stopped: Option<CancelReason> = None;
        let (taker_bps, maker_bps) = (self.spec.taker_fee_bps, self.spec.maker_fee_bps);
        while remaining > 0 {
            let Some((price, level)) = self.best_opposite(t.side, limit) else {
                break;
            };
            if fills >= ORDER_FILLS_MAX {
                taker_stopped = Some(CancelReason::Stopped);
                break;
            }
            let mi = level.head;
            let maker = self.nodes[mi as usize].order;
            if maker.owner == t.owner {
                match t.stp {
                    SelfTradePrevention::CancelResting => {
                        let closed = self.remove(mi, CancelReason::SelfTrade);
                        out.events.push(MatchEvent::MakerCancelled(closed));
                        continue;
                    }
                    SelfTradePrevention::CancelIncoming => {
                        taker_stopped = Some(CancelReason::SelfTrade);
                        break;
                    }
                    SelfTradePrevention::CancelBoth => {
                        let closed = self.remove(mi, CancelReason::SelfTrade);
                        out.events.push(MatchEvent::MakerCancelled(closed));
                        taker_stopped = Some(CancelReason::SelfTrade);
                        break;
                    }
                }
            }
            let qty = remaining.min(maker.remaining.0);
            let px = Price(price);
            let notional = self
                .spec
                .notional(Qty(qty), px)
                .expect("notional bounded by the hold checks");
            let taker_fee = MarketSpec::fee(notional, taker_bps);
            let maker_fee = MarketSpec::fee(notional, maker_bps);
            let (taker_leg, maker_leg) = match t.side {
                Side::Buy => (
                    self.buy_leg(t.order, t.account, qty, notional, taker_fee),
                    self.sell_leg(maker.id, maker.account, qty, notional, maker_fee),
                ),
                Side::Sell => (
                    self.sell_leg(t.order, t.account, qty, notional, taker_fee),
                    self.buy_leg(maker.id, maker.account, qty, notional, maker_fee),
                ),
            };
            hold = hold
                .checked_sub(taker_leg.paid)
                .expect("taker paid more than it held");
            remaining -= qty;
            fills += 1;
            self.last_price = Some(px);
            // Update the maker in place.
            let node = &mut self.nodes[mi as usize].order;
            node.remaining = Qty(node.remaining.0 - qty);
            node.hold = node
                .hold
                .checked_sub(maker_leg.paid)
                .expect("maker paid more than it held");
            let maker_done = node.remaining.0 == 0;
            let maker_hold_left = node.hold;
            let lv = self
                .side_levels(t.side.opposite())
                .get_mut(&price)
                .expect("level exists");
            lv.qty -= qty;
            if maker_done {
                self.unlink(mi);
            }
            out.events.push(MatchEvent::Fill(Fill {
                price: px,
                qty: Qty(qty),
                taker_side: t.side,
                taker: taker_leg,
                maker: maker_leg,
                maker_done,
                maker_hold_left,
            }));
        }

        let closed = |reason| {
            TakerEnd::Cancelled(Closed {
                order: t.order,
                account: t.account,
                remaining: Qty(remaining),
                hold_left: hold,
                reason,
            })
        };
        out.end = Some(if remaining == 0 {
            TakerEnd::Filled { hold_left: hold }
        } else if let Some(reason) = taker_stopped {
            closed(reason)
        } else if t.order_type == OrderType::Market
            && limit != t.price.0
            && self.best_opposite(t.side, t.price.0).is_some()
        {
            // The collar stopped it: the book still has liquidity within its own price.
            closed(CancelReason::Stopped)
        } else if t.order_type == OrderType::Market || t.tif != TimeInForce::Gtc {
            closed(CancelReason::Unfilled)
        } else if self.index.len() >= BOOK_ORDERS_MAX
            || (self.side_levels(t.side).len() >= BOOK_LEVELS_MAX
                && !self.side_levels(t.side).contains_key(&t.price.0))
        {
            closed(CancelReason::Stopped)
        } else {
            let (_, need) = self
                .spec
                .hold_for(t.side, Qty(remaining), t.price)
                .expect("smaller than the original hold");
            let released = hold.checked_sub(need).expect("hold covers the rest");
            self.insert(RestingOrder {
                id: t.order,
                account: t.account,
                owner: t.owner,
                price: t.price,
                remaining: Qty(remaining),
                hold: need,
                side: t.side,
                stp: t.stp,
                post_only: t.post_only,
            });
            TakerEnd::Rested {
                remaining: Qty(remaining),
                released,
            }
        });
        Ok(())
    }

    fn buy_leg(&self, order: OrderId, account: AccountId, qty: u64, n: Amount, fee: Amount) -> Leg {
        Leg {
            order,
            account,
            paid_asset: self.spec.quote,
            paid: n.checked_add(fee).expect("bounded by AMOUNT_MAX"),
            received_asset: self.spec.base,
            received: Amount(qty),
            fee,
        }
    }

    fn sell_leg(
        &self,
        order: OrderId,
        account: AccountId,
        qty: u64,
        n: Amount,
        fee: Amount,
    ) -> Leg {
        Leg {
            order,
            account,
            paid_asset: self.spec.base,
            paid: Amount(qty),
            received_asset: self.spec.quote,
            received: n.checked_sub(fee).expect("fee at most the notional"),
            fee,
        }
    }

    /// Can a FOK order fill completely (respecting self-trade prevention and the fill cap)?
    fn fok_fillable(&self, t: &OrderTicket, limit: u64) -> bool {
        let mut need = t.qty.0;
        let mut fills = 0usize;
        let levels: Box<dyn Iterator<Item = (&u64, &Level)>> = match t.side {
            Side::Buy => Box::new(self.asks.range(..=limit)),
            Side::Sell => Box::new(self.bids.range(limit..).rev()),
        };
        for (_, l) in levels {
            let mut i = l.head;
            while i != NIL {
                let o = &self.nodes[i as usize].order;
                if o.owner == t.owner {
                    if t.stp != SelfTradePrevention::CancelResting {
                        return false;
                    }
                } else {
                    fills += 1;
                    if fills > ORDER_FILLS_MAX {
                        return false;
                    }
                    if o.remaining.0 >= need {
                        return true;
                    }
                    need -= o.remaining.0;
                }
                i = self.nodes[i as usize].next;
            }
        }
        false
    }

    fn insert(&mut self, o: RestingOrder) {
        let node = Node {
            order: o,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let prev = self.index.insert(o.id, i);
        assert!(prev.is_none(), "order {} already rests", o.id);
        let level = self.side_levels(o.side).entry(o.price.0).or_insert(Level {
            head: NIL,
            tail: NIL,
            qty: 0,
            count: 0,
        });
        let tail = level.tail;
        level.tail = i;
        if level.head == NIL {
            level.head = i;
        }
        level.qty += o.remaining.0;
        level.count += 1;
        if tail != NIL {
            self.nodes[tail as usize].next = i;
            self.nodes[i as usize].prev = tail;
        }
    }

    /// Unlinks node `i` from its level and the index; frees the slot.
    fn unlink(&mut self, i: u32) {
        let Node { order, prev, next } = self.nodes[i as usize];
        let levels = self.side_levels(order.side);
        let level = levels.get_mut(&order.price.0).expect("level exists");
        level.qty -= order.remaining.0;
        level.count -= 1;
        if prev == NIL {
            level.head = next;
        }
        if next == NIL {
            level.tail = prev;
        }
        if level.count == 0 {
            levels.remove(&order.price.0);
        }
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        self.index.remove(&order.id);
        self.free.push(i);
    }

    fn remove(&mut self, i: u32, reason: CancelReason) -> Closed {
        let o = self.nodes[i as usize].order;
        self.unlink(i);
        Closed {
            order: o.id,
            account: o.account,
            remaining: o.remaining,
            hold_left: o.hold,
            reason,
        }
    }

    /// Cancels a resting order. `by` must be its owner (or the system).
    pub fn cancel(&mut self, id: OrderId, by: Principal) -> R<Closed> {
        let &i = self.index.get(&id).ok_or(RejectCode::UnknownOrder)?;
        let o = &self.nodes[i as usize].order;
        if by != Principal::SYSTEM && by != o.owner {
            return Err(RejectCode::NotOwner);
        }
        Ok(self.remove(i, CancelReason::Requested))
    }

    /// Cancel-replace. Same price and smaller quantity: reduced in place (priority kept),
    /// also while halted. Otherwise the order is removed and the caller places the
    /// replacement; while halted that is refused with `MarketHalted` and nothing changes.
    pub fn amend(&mut self, id: OrderId, by: Principal, price: Price, qty: Qty) -> R<AmendResult> {
        let &i = self.index.get(&id).ok_or(RejectCode::UnknownOrder)?;
        let o = self.nodes[i as usize].order;
        if by != Principal::SYSTEM && by != o.owner {
            return Err(RejectCode::NotOwner);
        }
        self.spec.check_qty(qty)?;
        self.spec.check_price(price)?;
        self.spec.hold_for(o.side, qty, price)?;
        if price == o.price && qty == o.remaining {
            return Err(RejectCode::InvalidAmend);
        }
        if price == o.price && qty < o.remaining {
            let (_, need) = self.spec.hold_for(o.side, qty, price)?;
            let released = o
                .hold
                .checked_sub(need)
                .expect("hold covers a smaller order");
            let delta = o.remaining.0 - qty.0;
            let node = &mut self.nodes[i as usize].order;
            node.remaining = qty;
            node.hold = need;
            self.side_levels(o.side)
                .get_mut(&price.0)
                .expect("level exists")
                .qty -= delta;
            return Ok(AmendResult::Reduced {
                account: o.account,
                released,
            });
        }
        if self.halted {
            // A replacement could not be placed: refuse instead of cancelling the order.
            return Err(RejectCode::MarketHalted);
        }
        Ok(AmendResult::Replaced(
            self.remove(i, CancelReason::Replaced),
        ))
    }

    /// Checks every book invariant.
    pub fn validate(&self) -> Result<(), Violation> {
        let v = |s: String| Err(Violation(s));
        if let (Some(b), Some(a)) = (self.best_bid(), self.best_ask()) {
            if b >= a {
                return v(format!("market {}: book crossed {b} >= {a}", self.spec.id));
            }
        }
        let mut n = 0usize;
        for (side, levels) in [(Side::Buy, &self.bids), (Side::Sell, &self.asks)] {
            for (p, l) in levels {
                let (mut qty, mut count, mut i, mut prev) = (0u64, 0u32, l.head, NIL);
                while i != NIL {
                    let node = &self.nodes[i as usize];
                    let o = &node.order;
                    if node.prev != prev {
                        return v(format!("order {}: broken prev link", o.id));
                    }
                    if o.side != side || o.price.0 != *p {
                        return v(format!("order {} on the wrong level", o.id));
                    }
                    if self.spec.check_price(o.price).is_err() {
                        return v(format!("order {}: bad price {}", o.id, o.price));
                    }
                    if o.remaining.0 == 0 || !o.remaining.0.is_multiple_of(self.spec.lot_size) {
                        return v(format!("order {}: bad remaining {}", o.id, o.remaining));
                    }
                    let (_, need) = self
                        .spec
                        .hold_for(side, o.remaining, o.price)
                        .map_err(|c| Violation(format!("order {}: {c}", o.id)))?;
                    if o.hold < need {
                        return v(format!("order {}: hold {} < needed {need}", o.id, o.hold));
                    }
                    if self.index.get(&o.id) != Some(&i) {
                        return v(format!("order {} not indexed", o.id));
                    }
                    qty += o.remaining.0;
                    count += 1;
                    prev = i;
                    i = node.next;
                }
                if prev != l.tail || count != l.count || qty != l.qty || count == 0 {
                    return v(format!("level {p} of {side:?}: totals or tail wrong"));
                }
                n += count as usize;
            }
        }
        if n != self.index.len() {
            return v(format!("{} indexed but {n} linked", self.index.len()));
        }
        Ok(())
    }

    /// The book as ordered parts (snapshot): bids then asks, each in priority order.
    pub fn to_parts(&self) -> BookParts {
        let mut orders = self.orders(Side::Buy);
        orders.extend(self.orders(Side::Sell));
        BookParts {
            spec: self.spec.clone(),
            halted: self.halted,
            last_price: self.last_price,
            orders,
        }
    }

    /// Rebuilds a book from parts; `from_parts(to_parts())` has the same parts.
    pub fn from_parts(p: BookParts) -> Result<Book, Violation> {
        let mut b = Book::new(p.spec);
        b.halted = p.halted;
        b.last_price = p.last_price;
        for o in p.orders {
            if b.index.contains_key(&o.id) {
                return Err(Violation(format!("order {} twice in snapshot", o.id)));
            }
            b.insert(o);
        }
        b.validate()?;
        Ok(b)
    }
}

/// The book as ordered parts, for snapshots.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BookParts {
    /// Market.
    pub spec: MarketSpec,
    /// Halted.
    pub halted: bool,
    /// Last trade price.
    pub last_price: Option<Price>,
    /// Bids best-first, then asks best-first; arrival order within a level.
    pub orders: Vec<RestingOrder>,
}

/// Static checks of a new order against a market (shared by the account's shard, which
/// checks before holding funds, and the market's shard).
pub fn check_new_order(
    spec: &MarketSpec,
    side: Side,
    order_type: OrderType,
    tif: TimeInForce,
    price: Price,
    qty: Qty,
) -> R {
    spec.check_qty(qty)?;
    match order_type {
        OrderType::Limit => spec.check_price(price)?,
        OrderType::Market => {
            if tif == TimeInForce::Gtc {
                return Err(RejectCode::InvalidTimeInForce);
            }
            if side == Side::Buy && price.0 == 0 {
                return Err(RejectCode::MissingProtectionPrice);
            }
            if price.0 != 0 {
                spec.check_price(price)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
