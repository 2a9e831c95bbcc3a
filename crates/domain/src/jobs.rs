//! Data jobs over a time range of the shards' histories: account statements (per account
//! and asset, the opening and closing balance and what moved in between) and market
//! activity (VWAP and OHLCV candles). A job runs one task per shard; each task feeds its
//! shard's events to the accumulators here ([`Statements`], [`Activity`]) and a job's
//! reducer checks and sums the answers ([`StatementLine::fault`]). Plain data and pure
//! functions: the same wherever a task runs.

use crate::audit::SplitOrigin;
use crate::{AccountId, AssetId, EventRecord, MarketId, MarketSpec, Price, ShardId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

/// Most accounts one statements task covers (a job asks for the rest page by page).
pub const STATEMENT_ACCOUNTS_MAX: usize = 1_000;
/// Most lines (account, asset) one statements task answers: a page ends before the
/// account that would pass it (about 1.7 MB on the wire at most).
pub const STATEMENT_LINES_MAX: usize = 10_000;
/// Most candles of one market one activity task answers.
pub const ACTIVITY_CANDLES_MAX: u64 = 10_000;
/// Most markets one activity task covers.
pub const ACTIVITY_MARKETS_MAX: usize = 1_000;

/// One asset's balance in one account at one point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// Spendable, in minor units.
    pub available: u64,
    /// Reserved, in minor units.
    pub held: u64,
}

impl Holding {
    /// `available + held`.
    pub fn total(&self) -> u128 {
        u128::from(self.available) + u128::from(self.held)
    }
}

/// One (account, asset) over a range: the balance at its start, every change in it
/// summed, and the balance at its end twice, once as the events left it and once as the
/// shard's state holds it, so a reducer checks that the events and the state agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    /// The account.
    pub account: AccountId,
    /// The asset.
    pub asset: AssetId,
    /// The balance before the range (zero if the account or asset was not there yet).
    pub opening: Holding,
    /// Sum of the increases of `available + held`.
    pub credits: u128,
    /// Sum of the decreases of `available + held`.
    pub debits: u128,
    /// Number of balance changes (moves between available and held included).
    pub changes: u64,
    /// The balance after the range's last change (the opening one if none).
    pub closing: Holding,
    /// The balance the shard's state holds at the range's end.
    pub state_closing: Holding,
}

/// Why a statement line does not add up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StatementFault {
    /// `opening + credits - debits != closing`.
    #[error(
        "shard {shard}: account {account} asset {asset}: opening {opening} + credits {credits} \
         - debits {debits} != closing {closing}"
    )]
    Movements {
        /// The shard.
        shard: ShardId,
        /// The account.
        account: AccountId,
        /// The asset.
        asset: AssetId,
        /// Opening total.
        opening: u128,
        /// Credits.
        credits: u128,
        /// Debits.
        debits: u128,
        /// Closing total.
        closing: u128,
    },
    /// An account that a split moved: the balance its parent's statement closes with at
    /// the split differs from the one the child's opens with.
    #[error(
        "shard {shard}: account {account} asset {asset}: the parent's statement ends at the \
         split with {parent:?}, the shard's starts with {child:?}"
    )]
    SplitDiffers {
        /// The child (where the account is now).
        shard: ShardId,
        /// The account.
        account: AccountId,
        /// The asset.
        asset: AssetId,
        /// The parent's closing balance at the split.
        parent: Holding,
        /// The child's opening balance.
        child: Holding,
    },
    /// The events end at another balance than the state holds.
    #[error(
        "shard {shard}: account {account} asset {asset}: the events end at {events:?}, the \
         state holds {state:?}"
    )]
    StateDiffers {
        /// The shard.
        shard: ShardId,
        /// The account.
        account: AccountId,
        /// The asset.
        asset: AssetId,
        /// The closing balance by the events.
        events: Holding,
        /// The closing balance in the state.
        state: Holding,
    },
}

impl StatementLine {
    fn new(account: AccountId, asset: AssetId, opening: Holding) -> StatementLine {
        StatementLine {
            account,
            asset,
            opening,
            credits: 0,
            debits: 0,
            changes: 0,
            closing: opening,
            state_closing: Holding::default(),
        }
    }

    /// The line of an account that a split moved: `self`, its parent's line up to the
    /// split, followed by `later`, the child's from its start. The result opens with the
    /// parent's opening and closes with the child's closing; `Err` if the parent's
    /// closing balance is not the child's opening one (`shard`: the child).
    pub fn then(
        &self,
        later: &StatementLine,
        shard: ShardId,
    ) -> Result<StatementLine, StatementFault> {
        assert!(self.account == later.account && self.asset == later.asset);
        if self.closing != later.opening {
            return Err(StatementFault::SplitDiffers {
                shard,
                account: self.account,
                asset: self.asset,
                parent: self.closing,
                child: later.opening,
            });
        }
        Ok(StatementLine {
            account: self.account,
            asset: self.asset,
            opening: self.opening,
            credits: self.credits + later.credits,
            debits: self.debits + later.debits,
            changes: self.changes + later.changes,
            closing: later.closing,
            state_closing: later.state_closing,
        })
    }

    /// What is wrong with the line, if anything (`shard`: where it came from).
    pub fn fault(&self, shard: ShardId) -> Option<StatementFault> {
        let expected = (self.opening.total() + self.credits).checked_sub(self.debits);
        if expected != Some(self.closing.total()) {
            return Some(StatementFault::Movements {
                shard,
                account: self.account,
                asset: self.asset,
                opening: self.opening.total(),
                credits: self.credits,
                debits: self.debits,
                closing: self.closing.total(),
            });
        }
        if self.closing != self.state_closing {
            return Some(StatementFault::StateDiffers {
                shard,
                account: self.account,
                asset: self.asset,
                events: self.closing,
                state: self.state_closing,
            });
        }
        None
    }
}

/// Builds the statement lines of a set of accounts of one shard over a range: the opening
/// balances (from the state before the range), then the range's events in order, then the
/// closing balances (from the state at the range's end).
#[derive(Clone, Debug, Default)]
pub struct Statements {
    accounts: BTreeSet<AccountId>,
    lines: BTreeMap<(AccountId, AssetId), StatementLine>,
    /// Only events up to this sequence number belong to the range.
    last_seq: u64,
}

impl Statements {
    /// Statements of `accounts`, over the events numbered up to `last_seq`.
    pub fn new(accounts: impl IntoIterator<Item = AccountId>, last_seq: u64) -> Statements {
        Statements {
            accounts: accounts.into_iter().collect(),
            lines: BTreeMap::new(),
            last_seq,
        }
    }

    /// A balance before the range.
    pub fn opening(&mut self, account: AccountId, asset: AssetId, h: Holding) {
        if self.accounts.contains(&account) {
            self.lines
                .insert((account, asset), StatementLine::new(account, asset, h));
        }
    }

    /// The next event of the range; `Break` at its last event and past it.
    pub fn visit(&mut self, e: &EventRecord) -> ControlFlow<()> {
        if e.seq > self.last_seq {
            return ControlFlow::Break(());
        }
        if let crate::Event::Balance {
            account,
            asset,
            available,
            held,
        } = e.event
        {
            if self.accounts.contains(&account) {
                let line = self
                    .lines
                    .entry((account, asset))
                    .or_insert_with(|| StatementLine::new(account, asset, Holding::default()));
                let now = Holding {
                    available: available.0,
                    held: held.0,
                };
                let (before, after) = (line.closing.total(), now.total());
                line.credits += after.saturating_sub(before);
                line.debits += before.saturating_sub(after);
                line.changes += 1;
                line.closing = now;
            }
        }
        if e.seq == self.last_seq {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// A balance at the range's end, as the state holds it.
    pub fn state_closing(&mut self, account: AccountId, asset: AssetId, h: Holding) {
        if self.accounts.contains(&account) {
            self.lines
                .entry((account, asset))
                .or_insert_with(|| StatementLine::new(account, asset, Holding::default()))
                .state_closing = h;
        }
    }

    /// The lines, by account and asset.
    pub fn finish(self) -> Vec<StatementLine> {
        self.lines.into_values().collect()
    }
}

/// One interval of one market's trading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candle {
    /// Start of the interval, ns since the Unix epoch.
    pub start: u64,
    /// Price of the first trade, quote minor units per lot.
    pub open: Price,
    /// Highest price.
    pub high: Price,
    /// Lowest price.
    pub low: Price,
    /// Price of the last trade.
    pub close: Price,
    /// Quantity traded, base minor units.
    pub volume: u64,
    /// Notional traded (quantity / lot size * price, summed), quote minor units.
    pub quote_volume: u64,
    /// Number of trades.
    pub trades: u64,
}

impl Candle {
    /// A candle of one trade.
    pub fn first(start: u64, price: Price) -> Candle {
        Candle {
            start,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 0,
            quote_volume: 0,
            trades: 0,
        }
    }

    /// Adds a trade of `qty` at `price` worth `notional`; `None` (and nothing changed)
    /// when a volume would exceed `u64::MAX`.
    pub fn add(&mut self, price: Price, qty: u64, notional: u64) -> Option<()> {
        let volume = self.volume.checked_add(qty)?;
        let quote_volume = self.quote_volume.checked_add(notional)?;
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
        self.trades += 1;
        self.volume = volume;
        self.quote_volume = quote_volume;
        Some(())
    }

    /// This candle followed by `later` of the same interval (its trades all after this
    /// one's); `None` when a volume would exceed `u64::MAX`.
    pub fn then(&self, later: &Candle) -> Option<Candle> {
        assert_eq!(self.start, later.start, "candles of different intervals");
        Some(Candle {
            start: self.start,
            open: self.open,
            high: self.high.max(later.high),
            low: self.low.min(later.low),
            close: later.close,
            volume: self.volume.checked_add(later.volume)?,
            quote_volume: self.quote_volume.checked_add(later.quote_volume)?,
            trades: self.trades + later.trades,
        })
    }
}

/// One market's trading over a range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketActivity {
    /// The market.
    pub market: MarketId,
    /// Its base asset.
    pub base: AssetId,
    /// Its quote asset.
    pub quote: AssetId,
    /// Number of trades.
    pub trades: u64,
    /// Quantity traded, base minor units.
    pub volume: u128,
    /// Notional traded, quote minor units.
    pub quote_volume: u128,
    /// Sum of price × quantity over the trades (the VWAP's numerator; the volume is its
    /// denominator).
    pub price_volume: u128,
    /// First, highest, lowest and last price of the range (`None`: no trade).
    pub open: Option<Price>,
    /// Highest price.
    pub high: Option<Price>,
    /// Lowest price.
    pub low: Option<Price>,
    /// Last price.
    pub close: Option<Price>,
    /// Candles of the range (intervals without trades left out; none asked: empty).
    pub candles: Vec<Candle>,
}

impl MarketActivity {
    /// This market's activity followed by `later`, the same market's over the same range
    /// on the shard it moved to in a split (every trade of `later` after every trade of
    /// this one): sums, the first open, the last close, the extremes, candles of the same
    /// interval joined. `Err` when a candle's volume would exceed `u64::MAX`.
    pub fn then(&self, later: &MarketActivity) -> Result<MarketActivity, ActivityError> {
        assert_eq!(self.market, later.market, "activity of different markets");
        let mut candles: BTreeMap<u64, Candle> =
            self.candles.iter().map(|c| (c.start, *c)).collect();
        for c in &later.candles {
            let joined = match candles.get(&c.start) {
                Some(e) => e
                    .then(c)
                    .ok_or(ActivityError::CandleOverflow(self.market))?,
                None => *c,
            };
            candles.insert(c.start, joined);
        }
        Ok(MarketActivity {
            market: self.market,
            base: self.base,
            quote: self.quote,
            trades: self.trades + later.trades,
            volume: self.volume + later.volume,
            quote_volume: self.quote_volume + later.quote_volume,
            price_volume: self.price_volume + later.price_volume,
            open: self.open.or(later.open),
            high: self.high.max(later.high),
            low: match (self.low, later.low) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            close: later.close.or(self.close),
            candles: candles.into_values().collect(),
        })
    }

    /// The volume-weighted average price, quote minor units per lot, as a fraction
    /// (numerator, denominator); `None` without trades.
    pub fn vwap(&self) -> Option<(u128, u128)> {
        (self.volume > 0).then_some((self.price_volume, self.volume))
    }

    /// The VWAP in decimal with `decimals` digits after the point, rounded down (`-`
    /// without trades).
    pub fn vwap_decimal(&self, decimals: u32) -> String {
        let Some((n, d)) = self.vwap() else {
            return "-".into();
        };
        let whole = n / d;
        if decimals == 0 {
            return whole.to_string();
        }
        let scale = 10u128.pow(decimals);
        let frac = (n % d) * scale / d;
        format!("{whole}.{frac:0width$}", width = decimals as usize)
    }
}

/// A statements task's answer: one shard's lines for a page of its accounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatements {
    /// The shard.
    pub shard: ShardId,
    /// Log index of the state before the range.
    pub opening_index: u64,
    /// Log index of the state at the range's end.
    pub closing_index: u64,
    /// By account, then asset.
    pub lines: Vec<StatementLine>,
    /// More accounts follow this one (ask the next page after it).
    pub next_after: Option<AccountId>,
    /// For a shard made by a split after the range's start: where the lines' earlier
    /// part is (the parent, up to the index before the split).
    pub from_split: Option<SplitOrigin>,
}

/// An activity task's answer: one shard's markets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardActivity {
    /// The shard.
    pub shard: ShardId,
    /// The last event read.
    pub last_seq: u64,
    /// By market.
    pub markets: Vec<MarketActivity>,
}

/// Why an activity task cannot answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActivityError {
    /// A candle's volume would exceed `u64::MAX` minor units.
    #[error(
        "market {0}: a candle's volume exceeds 2^64 - 1 minor units; ask for a shorter interval"
    )]
    CandleOverflow(MarketId),
    /// The range holds more candles than allowed.
    #[error("the range spans more than {ACTIVITY_CANDLES_MAX} candles (limit `ACTIVITY_CANDLES_MAX`); ask for a longer interval or a shorter range")]
    TooManyCandles,
    /// More markets than allowed.
    #[error("more than {ACTIVITY_MARKETS_MAX} markets in one task (limit `ACTIVITY_MARKETS_MAX`)")]
    TooManyMarkets,
    /// The range ends before it starts.
    #[error("the range ends ({to} ns) before it starts ({from} ns)")]
    EmptyRange {
        /// Start.
        from: u64,
        /// End.
        to: u64,
    },
}

struct MarketAcc {
    lot_size: u64,
    activity: MarketActivity,
    candles: BTreeMap<u64, Candle>,
}

/// Builds the activity of a set of markets over `[from, to)` from their shard's events.
pub struct Activity {
    from: u64,
    to: u64,
    interval_ns: u64,
    markets: BTreeMap<MarketId, MarketAcc>,
    failed: Option<ActivityError>,
}

impl Activity {
    /// The activity of `markets` over `[from_ns, to_ns)`, with candles of `interval_ns`
    /// (0: none).
    pub fn new<'a>(
        from_ns: u64,
        to_ns: u64,
        interval_ns: u64,
        markets: impl IntoIterator<Item = &'a MarketSpec>,
    ) -> Result<Activity, ActivityError> {
        if to_ns < from_ns {
            return Err(ActivityError::EmptyRange {
                from: from_ns,
                to: to_ns,
            });
        }
        if interval_ns > 0 {
            let first = from_ns - from_ns % interval_ns;
            if (to_ns - first).div_ceil(interval_ns) > ACTIVITY_CANDLES_MAX {
                return Err(ActivityError::TooManyCandles);
            }
        }
        let markets: BTreeMap<MarketId, MarketAcc> = markets
            .into_iter()
            .map(|m| {
                (
                    m.id,
                    MarketAcc {
                        lot_size: m.lot_size,
                        activity: MarketActivity {
                            market: m.id,
                            base: m.base,
                            quote: m.quote,
                            trades: 0,
                            volume: 0,
                            quote_volume: 0,
                            price_volume: 0,
                            open: None,
                            high: None,
                            low: None,
                            close: None,
                            candles: Vec::new(),
                        },
                        candles: BTreeMap::new(),
                    },
                )
            })
            .collect();
        if markets.len() > ACTIVITY_MARKETS_MAX {
            return Err(ActivityError::TooManyMarkets);
        }
        Ok(Activity {
            from: from_ns,
            to: to_ns,
            interval_ns,
            markets,
            failed: None,
        })
    }

    /// The next event of the markets' shard; `Break` once past the range (or on a
    /// failure, which [`Activity::finish`] reports).
    pub fn visit(&mut self, e: &EventRecord) -> ControlFlow<()> {
        let ts = e.timestamp.0;
        if ts >= self.to {
            return ControlFlow::Break(());
        }
        let crate::Event::Trade {
            market, price, qty, ..
        } = e.event
        else {
            return ControlFlow::Continue(());
        };
        if ts < self.from {
            return ControlFlow::Continue(());
        }
        let Some(m) = self.markets.get_mut(&market) else {
            return ControlFlow::Continue(());
        };
        let notional = qty.0 / m.lot_size * price.0;
        if self.interval_ns > 0 {
            let start = ts - ts % self.interval_ns;
            let c = m
                .candles
                .entry(start)
                .or_insert_with(|| Candle::first(start, price));
            if c.add(price, qty.0, notional).is_none() {
                self.failed = Some(ActivityError::CandleOverflow(market));
                return ControlFlow::Break(());
            }
        }
        let a = &mut m.activity;
        a.trades += 1;
        a.volume += u128::from(qty.0);
        a.quote_volume += u128::from(notional);
        a.price_volume += u128::from(price.0) * u128::from(qty.0);
        a.open.get_or_insert(price);
        a.high = Some(a.high.map_or(price, |h| h.max(price)));
        a.low = Some(a.low.map_or(price, |l| l.min(price)));
        a.close = Some(price);
        ControlFlow::Continue(())
    }

    /// Every market's activity, by market id.
    pub fn finish(self) -> Result<Vec<MarketActivity>, ActivityError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        Ok(self
            .markets
            .into_values()
            .map(|mut m| {
                m.activity.candles = m.candles.into_values().collect();
                m.activity
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Amount, Event, OrderId, Principal, Qty, Side, Timestamp};

    fn rec(seq: u64, ts: u64, event: Event) -> EventRecord {
        EventRecord {
            shard: ShardId(0),
            seq,
            input: seq,
            timestamp: Timestamp(ts),
            principal: Principal(1),
            event,
        }
    }

    fn balance(seq: u64, account: u64, asset: u32, available: u64, held: u64) -> EventRecord {
        rec(
            seq,
            seq * 10,
            Event::Balance {
                account: AccountId(account),
                asset: AssetId(asset),
                available: Amount(available),
                held: Amount(held),
            },
        )
    }

    fn trade(seq: u64, ts: u64, market: u32, price: u64, qty: u64) -> EventRecord {
        rec(
            seq,
            ts,
            Event::Trade {
                market: MarketId(market),
                price: Price(price),
                qty: Qty(qty),
                taker_side: Side::Buy,
                taker: OrderId(1),
                maker: OrderId(2),
                taker_account: AccountId(1),
                maker_account: AccountId(2),
                taker_fee: Amount(0),
                maker_fee: Amount(0),
            },
        )
    }

    fn h(available: u64, held: u64) -> Holding {
        Holding { available, held }
    }

    #[test]
    fn a_markets_activity_before_and_after_a_split_join_into_one() {
        let candle = |start, open, high, low, close, volume, trades| Candle {
            start,
            open: Price(open),
            high: Price(high),
            low: Price(low),
            close: Price(close),
            volume,
            quote_volume: volume,
            trades,
        };
        let activity = |trades: u64,
                        open: Option<u64>,
                        high: Option<u64>,
                        low: Option<u64>,
                        close: Option<u64>,
                        candles: Vec<Candle>| MarketActivity {
            market: MarketId(1),
            base: AssetId(2),
            quote: AssetId(1),
            trades,
            volume: u128::from(trades) * 10,
            quote_volume: u128::from(trades) * 20,
            price_volume: u128::from(trades) * 1_000,
            open: open.map(Price),
            high: high.map(Price),
            low: low.map(Price),
            close: close.map(Price),
            candles,
        };
        let parent = activity(
            3,
            Some(100),
            Some(120),
            Some(90),
            Some(110),
            vec![
                candle(0, 100, 120, 95, 118, 20, 2),
                candle(60, 90, 110, 90, 110, 10, 1),
            ],
        );
        let child = activity(
            2,
            Some(105),
            Some(130),
            Some(80),
            Some(80),
            vec![
                candle(60, 105, 130, 105, 130, 5, 1),
                candle(120, 80, 80, 80, 80, 5, 1),
            ],
        );
        let joined = parent.then(&child).unwrap();
        let expected = MarketActivity {
            trades: 5,
            volume: 50,
            quote_volume: 100,
            price_volume: 5_000,
            open: Some(Price(100)),
            high: Some(Price(130)),
            low: Some(Price(80)),
            close: Some(Price(80)),
            candles: vec![
                candle(0, 100, 120, 95, 118, 20, 2),
                candle(60, 90, 130, 90, 130, 15, 2),
                candle(120, 80, 80, 80, 80, 5, 1),
            ],
            ..parent.clone()
        };
        assert_eq!(expected, joined);
        // A side without trades changes nothing.
        let none = activity(0, None, None, None, None, vec![]);
        assert_eq!(parent, parent.then(&none).unwrap());
        assert_eq!(child, none.then(&child).unwrap());
        // A joined candle's volume beyond u64::MAX is refused, naming the market.
        let big = activity(
            1,
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            vec![candle(0, 1, 1, 1, 1, u64::MAX, 1)],
        );
        assert_eq!(
            Err(ActivityError::CandleOverflow(MarketId(1))),
            parent.then(&big)
        );
    }

    #[test]
    fn a_line_up_to_a_split_and_the_childs_from_it_join_into_one() {
        let line = |opening, credits, debits, changes, closing| StatementLine {
            account: AccountId(5),
            asset: AssetId(1),
            opening,
            credits,
            debits,
            changes,
            closing,
            state_closing: closing,
        };
        let parent = line(h(0, 0), 1_000, 200, 3, h(700, 100));
        let child = line(h(700, 100), 50, 600, 2, h(250, 0));
        let joined = parent.then(&child, ShardId(2)).unwrap();
        assert_eq!(line(h(0, 0), 1_050, 800, 5, h(250, 0)), joined);
        assert_eq!(None, joined.fault(ShardId(2)));
        // The balance at the split must be the same on both sides (held included).
        let other = line(h(800, 0), 50, 600, 2, h(250, 0));
        let err = parent.then(&other, ShardId(2)).unwrap_err();
        assert_eq!(
            StatementFault::SplitDiffers {
                shard: ShardId(2),
                account: AccountId(5),
                asset: AssetId(1),
                parent: h(700, 100),
                child: h(800, 0),
            },
            err
        );
        assert!(err.to_string().starts_with(
            "shard 2: account 5 asset 1: the parent's statement ends at the split with"
        ));
    }

    #[test]
    fn statement_lines_sum_the_changes_of_the_accounts_asked_up_to_the_last_seq() {
        let mut s = Statements::new([AccountId(1), AccountId(2)], 6);
        s.opening(AccountId(1), AssetId(1), h(100, 0));
        s.opening(AccountId(3), AssetId(1), h(7, 0)); // not asked
        for e in [
            balance(1, 1, 1, 60, 40), // hold: no credit, no debit
            balance(2, 1, 1, 60, 0),  // debit 40
            balance(3, 3, 1, 0, 0),   // not asked
            balance(4, 2, 2, 25, 0),  // a new asset: credit 25
            rec(
                5,
                50,
                Event::AccountOpened {
                    account: AccountId(2),
                    owner: Principal(2),
                },
            ),
        ] {
            assert!(s.visit(&e).is_continue());
        }
        assert!(s.visit(&balance(6, 1, 1, 90, 0)).is_break(), "last seq");
        assert!(
            s.visit(&balance(7, 1, 1, 0, 0)).is_break(),
            "past the range"
        );
        let mut other = Statements::new([AccountId(1)], 1);
        let opened = rec(
            1,
            10,
            Event::AccountOpened {
                account: AccountId(1),
                owner: Principal(1),
            },
        );
        assert!(
            other.visit(&opened).is_break(),
            "the last seq ends it, whatever the event"
        );
        s.state_closing(AccountId(1), AssetId(1), h(90, 0));
        s.state_closing(AccountId(2), AssetId(2), h(25, 0));
        s.state_closing(AccountId(2), AssetId(3), h(1, 0)); // no event ever explained it
        let lines = s.finish();
        let line =
            |account, asset, opening, credits, debits, changes, closing, state| StatementLine {
                account: AccountId(account),
                asset: AssetId(asset),
                opening,
                credits,
                debits,
                changes,
                closing,
                state_closing: state,
            };
        assert_eq!(
            vec![
                line(1, 1, h(100, 0), 30, 40, 3, h(90, 0), h(90, 0)),
                line(2, 2, h(0, 0), 25, 0, 1, h(25, 0), h(25, 0)),
                line(2, 3, h(0, 0), 0, 0, 0, h(0, 0), h(1, 0)),
            ],
            lines
        );
        assert_eq!(None, lines[0].fault(ShardId(0)));
        assert_eq!(None, lines[1].fault(ShardId(0)));
        assert_eq!(
            Some(StatementFault::StateDiffers {
                shard: ShardId(0),
                account: AccountId(2),
                asset: AssetId(3),
                events: h(0, 0),
                state: h(1, 0),
            }),
            lines[2].fault(ShardId(0))
        );
        let mut bad = lines[0];
        bad.credits += 1;
        assert!(matches!(
            bad.fault(ShardId(0)),
            Some(StatementFault::Movements { closing: 90, .. })
        ));
    }

    fn spec(id: u32, lot_size: u64) -> MarketSpec {
        MarketSpec {
            id: MarketId(id),
            base: AssetId(1),
            quote: AssetId(2),
            lot_size,
            tick_size: 1,
            min_qty: Qty(lot_size),
            max_qty: Qty(1_000_000),
            maker_fee_bps: 0,
            taker_fee_bps: 0,
            fee_account: AccountId(9),
            collar_bps: 0,
            shard: ShardId(0),
        }
    }

    #[test]
    fn activity_gives_vwap_range_prices_and_candles_of_each_market() {
        let specs = [spec(1, 10), spec(2, 1)];
        let mut a = Activity::new(100, 1_000, 100, &specs).unwrap();
        for e in [
            trade(1, 99, 1, 1, 10), // before the range
            trade(2, 105, 1, 50, 20),
            trade(3, 150, 1, 70, 10),
            trade(4, 150, 3, 70, 10), // another shard's market
            trade(5, 310, 1, 40, 30),
            trade(6, 320, 2, 8, 3),
        ] {
            assert!(a.visit(&e).is_continue());
        }
        assert!(a.visit(&trade(7, 1_000, 1, 1, 10)).is_break());
        let got = a.finish().unwrap();
        let c = |start, o, hi, lo, cl, v, qv, n| Candle {
            start,
            open: Price(o),
            high: Price(hi),
            low: Price(lo),
            close: Price(cl),
            volume: v,
            quote_volume: qv,
            trades: n,
        };
        assert_eq!(
            vec![
                MarketActivity {
                    market: MarketId(1),
                    base: AssetId(1),
                    quote: AssetId(2),
                    trades: 3,
                    volume: 60,
                    // 2*50 + 1*70 + 3*40
                    quote_volume: 290,
                    // 50*20 + 70*10 + 40*30
                    price_volume: 2_900,
                    open: Some(Price(50)),
                    high: Some(Price(70)),
                    low: Some(Price(40)),
                    close: Some(Price(40)),
                    candles: vec![
                        c(100, 50, 70, 50, 70, 30, 170, 2),
                        c(300, 40, 40, 40, 40, 30, 120, 1)
                    ],
                },
                MarketActivity {
                    market: MarketId(2),
                    base: AssetId(1),
                    quote: AssetId(2),
                    trades: 1,
                    volume: 3,
                    quote_volume: 24,
                    price_volume: 24,
                    open: Some(Price(8)),
                    high: Some(Price(8)),
                    low: Some(Price(8)),
                    close: Some(Price(8)),
                    candles: vec![c(300, 8, 8, 8, 8, 3, 24, 1)],
                },
            ],
            got
        );
        assert_eq!(Some((2_900, 60)), got[0].vwap());
        assert_eq!("48.333", got[0].vwap_decimal(3));
        assert_eq!("48", got[0].vwap_decimal(0));
        assert_eq!("8.00", got[1].vwap_decimal(2));
    }

    #[test]
    fn activity_refuses_bad_ranges_and_reports_overflow() {
        let specs = [spec(1, 1)];
        assert_eq!(
            Some(ActivityError::EmptyRange { from: 5, to: 4 }),
            Activity::new(5, 4, 0, &specs).err()
        );
        assert_eq!(
            Some(ActivityError::TooManyCandles),
            Activity::new(0, 10_001, 1, &specs).err()
        );
        assert!(Activity::new(0, 10_000, 1, &specs).is_ok());
        let mut a = Activity::new(0, 100, 100, &specs).unwrap();
        assert!(a.visit(&trade(1, 1, 1, 1, u64::MAX)).is_continue());
        assert!(a.visit(&trade(2, 2, 1, 1, 1)).is_break());
        assert_eq!(Err(ActivityError::CandleOverflow(MarketId(1))), a.finish());
        let empty = Activity::new(0, 100, 0, &specs).unwrap().finish().unwrap();
        assert_eq!("-", empty[0].vwap_decimal(2));
        assert!(empty[0].candles.is_empty());
    }
}
