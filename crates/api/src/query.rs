//! Validated query parameters: what the query requests of the wire API mean, as typed
//! values a server can act on without looking at the wire again.

use crate::error::{at_most, at_most_items, nonzero, required, shard, ApiError, Reason, Res};
use crate::proto as pb;
use crate::{
    BALANCE_HISTORY_LIMIT_DEFAULT, BALANCE_HISTORY_LIMIT_MAX, BOOK_DEPTH_DEFAULT, BOOK_DEPTH_MAX,
    CANDLES_MAX, CANDLE_INTERVAL_S_MAX, READ_EVENTS_LIMIT_DEFAULT, READ_EVENTS_LIMIT_MAX,
    STATEMENT_LIMIT_DEFAULT, STATEMENT_LIMIT_MAX, TRADES_LIMIT_DEFAULT, TRADES_LIMIT_MAX,
};
use std::collections::{BTreeMap, BTreeSet};
use tradelog_domain as d;

/// Which events a read or a subscription wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventStream {
    /// Every event of every shard.
    All,
    /// Events about one account.
    Account(d::AccountId),
    /// Events about one market.
    Market(d::MarketId),
    /// Events about one order.
    Order(d::OrderId),
}

impl From<EventStream> for pb::EventStream {
    fn from(s: EventStream) -> pb::EventStream {
        use pb::event_stream::Stream;
        let stream = match s {
            EventStream::All => Stream::All(pb::event_stream::All {}),
            EventStream::Account(id) => Stream::AccountId(id.0),
            EventStream::Market(id) => Stream::MarketId(id.0),
            EventStream::Order(id) => Stream::OrderId(id.0),
        };
        pb::EventStream {
            stream: Some(stream),
        }
    }
}

impl TryFrom<pb::EventStream> for EventStream {
    type Error = ApiError;

    /// The stream is required; account, market and order ids must be non-zero.
    fn try_from(s: pb::EventStream) -> Res<EventStream> {
        use pb::event_stream::Stream;
        Ok(match required(s.stream, "stream")? {
            Stream::All(_) => EventStream::All,
            Stream::AccountId(id) => EventStream::Account(d::AccountId(nonzero(id, "account_id")?)),
            Stream::MarketId(id) => EventStream::Market(d::MarketId(nonzero(id, "market_id")?)),
            Stream::OrderId(id) => EventStream::Order(d::OrderId(nonzero(id, "order_id")?)),
        })
    }
}

/// A position in the cluster's event history: per shard, the sequence number of the last
/// event consumed (absent shards: 0, nothing consumed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Position(pub BTreeMap<d::ShardId, u64>);

impl Position {
    /// The last consumed sequence number of `shard` (0: nothing).
    pub fn get(&self, shard: d::ShardId) -> u64 {
        self.0.get(&shard).copied().unwrap_or(0)
    }

    /// Records that `shard`'s events up to `seq` are consumed.
    pub fn set(&mut self, shard: d::ShardId, seq: u64) {
        self.0.insert(shard, seq);
    }
}

impl From<Position> for pb::Position {
    /// Shards in ascending order.
    fn from(p: Position) -> pb::Position {
        pb::Position {
            shards: p
                .0
                .into_iter()
                .map(|(shard, seq)| pb::ShardPosition {
                    shard: shard.0,
                    seq,
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::Position> for Position {
    type Error = ApiError;

    /// At most [`SHARD_COUNT_MAX`](d::SHARD_COUNT_MAX) entries, each shard below it and
    /// listed once.
    fn try_from(p: pb::Position) -> Res<Position> {
        at_most_items(p.shards.len(), d::SHARD_COUNT_MAX as usize, "shards")?;
        let mut map = BTreeMap::new();
        for (i, s) in p.shards.into_iter().enumerate() {
            let id = shard(s.shard, "shard").map_err(|e| e.inside_item("shards", i))?;
            if map.insert(id, s.seq).is_some() {
                return Err(
                    ApiError::new("shard", Reason::Duplicate(u64::from(s.shard)))
                        .inside_item("shards", i),
                );
            }
        }
        Ok(Position(map))
    }
}

/// Which shards' events a read or subscription covers: empty means every shard.
///
/// A node of a cluster whose shards are not all on every node serves a read of the shards
/// it holds; a client reads the rest from other nodes and merges the pages (positions are
/// per shard, so the parts never overlap).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ShardFilter(pub BTreeSet<d::ShardId>);

impl ShardFilter {
    /// Every shard.
    pub fn all() -> ShardFilter {
        ShardFilter::default()
    }

    /// Only these shards (an empty list means every shard).
    pub fn only(shards: impl IntoIterator<Item = d::ShardId>) -> ShardFilter {
        ShardFilter(shards.into_iter().collect())
    }

    /// Whether events of `shard` are covered.
    pub fn includes(&self, shard: d::ShardId) -> bool {
        self.0.is_empty() || self.0.contains(&shard)
    }

    /// True when every shard is covered.
    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }

    /// The wire form: the shards in ascending order.
    pub fn to_wire(&self) -> Vec<u32> {
        self.0.iter().map(|s| s.0).collect()
    }
}

/// A shard list (`ReadEventsRequest.shards`): at most
/// [`SHARD_COUNT_MAX`](d::SHARD_COUNT_MAX) shards, each below it and listed once.
fn shard_filter(v: Vec<u32>, field: &'static str) -> Res<ShardFilter> {
    at_most_items(v.len(), d::SHARD_COUNT_MAX as usize, field)?;
    let mut set = BTreeSet::new();
    for (i, s) in v.into_iter().enumerate() {
        let id = shard(s, "").map_err(|e| e.inside_item(field, i))?;
        if !set.insert(id) {
            return Err(ApiError::new("", Reason::Duplicate(u64::from(s))).inside_item(field, i));
        }
    }
    Ok(ShardFilter(set))
}

/// An optional position: unset means the beginning.
fn position(p: Option<pb::Position>, field: &'static str) -> Res<Position> {
    match p {
        None => Ok(Position::default()),
        Some(p) => Position::try_from(p).map_err(|e| e.inside(field)),
    }
}

/// A page size: 0 means `default`, above `max` is an error.
fn limit(v: u32, default: u32, max: u32, field: &'static str) -> Res<u32> {
    match v {
        0 => Ok(default),
        v if v > max => Err(ApiError::new(
            field,
            Reason::TooLarge {
                value: u64::from(v),
                max: u64::from(max),
            },
        )),
        v => Ok(v),
    }
}

/// A past point of the history of the shard a query reads (`AsOf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// After the input at this index of the shard's input log (0: before any input).
    LogIndex(u64),
    /// After the last input whose shard clock is at or before this time.
    Time(d::Timestamp),
}

impl TryFrom<pb::AsOf> for AsOf {
    type Error = ApiError;

    /// The point is required.
    fn try_from(a: pb::AsOf) -> Res<AsOf> {
        use pb::as_of::Point;
        Ok(match required(a.point, "point")? {
            Point::LogIndex(i) => AsOf::LogIndex(i),
            Point::TimeNs(t) => AsOf::Time(d::Timestamp(t)),
        })
    }
}

impl From<AsOf> for pb::AsOf {
    fn from(a: AsOf) -> pb::AsOf {
        use pb::as_of::Point;
        pb::AsOf {
            point: Some(match a {
                AsOf::LogIndex(i) => Point::LogIndex(i),
                AsOf::Time(t) => Point::TimeNs(t.0),
            }),
        }
    }
}

/// An optional `as_of` field.
fn as_of(a: Option<pb::AsOf>) -> Res<Option<AsOf>> {
    a.map(|a| AsOf::try_from(a).map_err(|e| e.inside("as_of")))
        .transpose()
}

/// The `as_of` and `stale` fields of a query of live state: a stale read answers from a
/// replica's current state, an as-of read from a fixed point of history, so they do not
/// combine ([`Reason::Excludes`] on `stale`).
fn as_of_or_stale(a: Option<pb::AsOf>, stale: bool) -> Res<(Option<AsOf>, bool)> {
    let at = as_of(a)?;
    if stale && at.is_some() {
        return Err(ApiError::new("stale", Reason::Excludes("as_of")));
    }
    Ok((at, stale))
}

/// `GetBalances`: the balances of one account, now or as of a past point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalancesQuery {
    /// The account.
    pub account: d::AccountId,
    /// The past point to answer as of (`None`: now).
    pub as_of: Option<AsOf>,
    /// Answer from the answering node's replica without asking the leader (not with
    /// `as_of`).
    pub stale: bool,
}

impl TryFrom<pb::GetBalancesRequest> for BalancesQuery {
    type Error = ApiError;

    /// `stale` and `as_of` are not both set.
    fn try_from(r: pb::GetBalancesRequest) -> Res<BalancesQuery> {
        let account = d::AccountId(nonzero(r.account_id, "account_id")?);
        let (as_of, stale) = as_of_or_stale(r.as_of, r.stale)?;
        Ok(BalancesQuery {
            account,
            as_of,
            stale,
        })
    }
}

impl From<BalancesQuery> for pb::GetBalancesRequest {
    fn from(q: BalancesQuery) -> pb::GetBalancesRequest {
        pb::GetBalancesRequest {
            account_id: q.account.0,
            as_of: q.as_of.map(Into::into),
            stale: q.stale,
        }
    }
}

/// A time range `from <= t < to` (`to` optional) whose end is not before its start.
fn range(from: u64, to: Option<u64>) -> Res<(d::Timestamp, Option<d::Timestamp>)> {
    if let Some(to) = to {
        if to < from {
            return Err(ApiError::new("to_ns", Reason::InvalidRange { from, to }));
        }
    }
    Ok((d::Timestamp(from), to.map(d::Timestamp)))
}

/// `GetBalanceHistory`: the changes of one balance with `from <= timestamp < to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceHistoryQuery {
    /// The account.
    pub account: d::AccountId,
    /// The asset.
    pub asset: d::AssetId,
    /// Range start (inclusive).
    pub from: d::Timestamp,
    /// Range end (exclusive); `None`: no end.
    pub to: Option<d::Timestamp>,
    /// Most points to return (1 to [`BALANCE_HISTORY_LIMIT_MAX`]).
    pub limit: u32,
}

impl TryFrom<pb::GetBalanceHistoryRequest> for BalanceHistoryQuery {
    type Error = ApiError;

    fn try_from(r: pb::GetBalanceHistoryRequest) -> Res<BalanceHistoryQuery> {
        let account = d::AccountId(nonzero(r.account_id, "account_id")?);
        let asset = d::AssetId(nonzero(r.asset_id, "asset_id")?);
        let (from, to) = range(r.from_ns, r.to_ns)?;
        Ok(BalanceHistoryQuery {
            account,
            asset,
            from,
            to,
            limit: limit(
                r.limit,
                BALANCE_HISTORY_LIMIT_DEFAULT,
                BALANCE_HISTORY_LIMIT_MAX,
                "limit",
            )?,
        })
    }
}

/// `GetOrder`: one resting order, now or as of a past point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderQuery {
    /// Its market (routes the query).
    pub market: d::MarketId,
    /// The order.
    pub order: d::OrderId,
    /// The past point of the market's shard to answer as of (`None`: now).
    pub as_of: Option<AsOf>,
    /// Answer from the answering node's replicas without asking the leaders (not with
    /// `as_of`).
    pub stale: bool,
}

impl TryFrom<pb::GetOrderRequest> for OrderQuery {
    type Error = ApiError;

    /// `stale` and `as_of` are not both set.
    fn try_from(r: pb::GetOrderRequest) -> Res<OrderQuery> {
        let market = d::MarketId(nonzero(r.market_id, "market_id")?);
        let order = d::OrderId(nonzero(r.order_id, "order_id")?);
        let (as_of, stale) = as_of_or_stale(r.as_of, r.stale)?;
        Ok(OrderQuery {
            market,
            order,
            as_of,
            stale,
        })
    }
}

impl From<OrderQuery> for pb::GetOrderRequest {
    fn from(q: OrderQuery) -> pb::GetOrderRequest {
        pb::GetOrderRequest {
            market_id: q.market.0,
            order_id: q.order.0,
            as_of: q.as_of.map(Into::into),
            stale: q.stale,
        }
    }
}

/// `GetBook`: aggregated depth of one market, now or as of a past point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookQuery {
    /// The market.
    pub market: d::MarketId,
    /// Price levels per side (1 to [`BOOK_DEPTH_MAX`]).
    pub depth: u32,
    /// The past point of the market's shard to answer as of (`None`: now).
    pub as_of: Option<AsOf>,
    /// Answer from the answering node's replicas without asking the leaders (not with
    /// `as_of`).
    pub stale: bool,
}

impl TryFrom<pb::GetBookRequest> for BookQuery {
    type Error = ApiError;

    /// `stale` and `as_of` are not both set.
    fn try_from(r: pb::GetBookRequest) -> Res<BookQuery> {
        let market = d::MarketId(nonzero(r.market_id, "market_id")?);
        let depth = limit(r.depth, BOOK_DEPTH_DEFAULT, BOOK_DEPTH_MAX, "depth")?;
        let (as_of, stale) = as_of_or_stale(r.as_of, r.stale)?;
        Ok(BookQuery {
            market,
            depth,
            as_of,
            stale,
        })
    }
}

impl From<BookQuery> for pb::GetBookRequest {
    fn from(q: BookQuery) -> pb::GetBookRequest {
        pb::GetBookRequest {
            market_id: q.market.0,
            depth: q.depth,
            as_of: q.as_of.map(Into::into),
            stale: q.stale,
        }
    }
}

/// `GetCatalog`: every asset and market.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatalogQuery {
    /// Answer from the answering node's replica without asking the leader.
    pub stale: bool,
}

impl From<pb::GetCatalogRequest> for CatalogQuery {
    fn from(r: pb::GetCatalogRequest) -> CatalogQuery {
        CatalogQuery { stale: r.stale }
    }
}

impl From<CatalogQuery> for pb::GetCatalogRequest {
    fn from(q: CatalogQuery) -> pb::GetCatalogRequest {
        pb::GetCatalogRequest { stale: q.stale }
    }
}

/// `ReadEvents`: a page of a stream after a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEventsQuery {
    /// Which events.
    pub stream: EventStream,
    /// Read the events after this position.
    pub after: Position,
    /// Most events to return (1 to [`READ_EVENTS_LIMIT_MAX`]).
    pub limit: u32,
    /// Only these shards' events.
    pub shards: ShardFilter,
}

impl TryFrom<pb::ReadEventsRequest> for ReadEventsQuery {
    type Error = ApiError;

    fn try_from(r: pb::ReadEventsRequest) -> Res<ReadEventsQuery> {
        let stream = required(r.stream, "stream")?;
        Ok(ReadEventsQuery {
            stream: EventStream::try_from(stream).map_err(|e| e.inside("stream"))?,
            after: position(r.after, "after")?,
            limit: limit(
                r.limit,
                READ_EVENTS_LIMIT_DEFAULT,
                READ_EVENTS_LIMIT_MAX,
                "limit",
            )?,
            shards: shard_filter(r.shards, "shards")?,
        })
    }
}

impl From<ReadEventsQuery> for pb::ReadEventsRequest {
    fn from(q: ReadEventsQuery) -> pb::ReadEventsRequest {
        pb::ReadEventsRequest {
            stream: Some(q.stream.into()),
            after: Some(q.after.into()),
            limit: q.limit,
            shards: q.shards.to_wire(),
        }
    }
}

/// `SubscribeEvents`: a stream's events after a position, then live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeQuery {
    /// Which events.
    pub stream: EventStream,
    /// Deliver the events after this position.
    pub after: Position,
    /// Only these shards' events.
    pub shards: ShardFilter,
}

impl TryFrom<pb::SubscribeEventsRequest> for SubscribeQuery {
    type Error = ApiError;

    fn try_from(r: pb::SubscribeEventsRequest) -> Res<SubscribeQuery> {
        let stream = required(r.stream, "stream")?;
        Ok(SubscribeQuery {
            stream: EventStream::try_from(stream).map_err(|e| e.inside("stream"))?,
            after: position(r.after, "after")?,
            shards: shard_filter(r.shards, "shards")?,
        })
    }
}

impl From<SubscribeQuery> for pb::SubscribeEventsRequest {
    fn from(q: SubscribeQuery) -> pb::SubscribeEventsRequest {
        pb::SubscribeEventsRequest {
            stream: Some(q.stream.into()),
            after: Some(q.after.into()),
            shards: q.shards.to_wire(),
        }
    }
}

/// `GetTrades`: a page of one market's trades in a time range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradesQuery {
    /// The market.
    pub market: d::MarketId,
    /// Continue after this event sequence number of the market's shard.
    pub after_seq: Option<u64>,
    /// Range start (inclusive).
    pub from: d::Timestamp,
    /// Range end (exclusive); `None`: no end.
    pub to: Option<d::Timestamp>,
    /// Most trades to return (1 to [`TRADES_LIMIT_MAX`]).
    pub limit: u32,
    /// Find the market's shard without asking the leader.
    pub stale: bool,
}

impl TryFrom<pb::GetTradesRequest> for TradesQuery {
    type Error = ApiError;

    fn try_from(r: pb::GetTradesRequest) -> Res<TradesQuery> {
        let market = d::MarketId(nonzero(r.market_id, "market_id")?);
        let (from, to) = range(r.from_ns, r.to_ns)?;
        Ok(TradesQuery {
            market,
            after_seq: r.after_seq,
            from,
            to,
            limit: limit(r.limit, TRADES_LIMIT_DEFAULT, TRADES_LIMIT_MAX, "limit")?,
            stale: r.stale,
        })
    }
}

impl From<TradesQuery> for pb::GetTradesRequest {
    fn from(q: TradesQuery) -> pb::GetTradesRequest {
        pb::GetTradesRequest {
            market_id: q.market.0,
            after_seq: q.after_seq,
            from_ns: q.from.0,
            to_ns: q.to.map(|t| t.0),
            limit: q.limit,
            stale: q.stale,
        }
    }
}

/// `GetCandles`: OHLCV candles of one market over `from <= t < to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandlesQuery {
    /// The market.
    pub market: d::MarketId,
    /// Candle length, in nanoseconds (1 s to [`CANDLE_INTERVAL_S_MAX`] s).
    pub interval_ns: u64,
    /// Range start (inclusive).
    pub from: d::Timestamp,
    /// Range end (exclusive), after `from`.
    pub to: d::Timestamp,
    /// Find the market without asking the leader.
    pub stale: bool,
}

impl CandlesQuery {
    /// Number of intervals the range touches (at most [`CANDLES_MAX`]).
    pub fn intervals(&self) -> u64 {
        (self.to.0 - 1) / self.interval_ns - self.from.0 / self.interval_ns + 1
    }
}

impl TryFrom<pb::GetCandlesRequest> for CandlesQuery {
    type Error = ApiError;

    /// The interval is 1 to [`CANDLE_INTERVAL_S_MAX`] seconds, the range non-empty and at
    /// most [`CANDLES_MAX`] intervals long.
    fn try_from(r: pb::GetCandlesRequest) -> Res<CandlesQuery> {
        let market = d::MarketId(nonzero(r.market_id, "market_id")?);
        let interval_s = nonzero(r.interval_s, "interval_s")?;
        at_most(
            u64::from(interval_s),
            u64::from(CANDLE_INTERVAL_S_MAX),
            "interval_s",
        )?;
        if r.to_ns <= r.from_ns {
            return Err(ApiError::new(
                "to_ns",
                Reason::InvalidRange {
                    from: r.from_ns,
                    to: r.to_ns,
                },
            ));
        }
        let q = CandlesQuery {
            market,
            interval_ns: u64::from(interval_s) * 1_000_000_000,
            from: d::Timestamp(r.from_ns),
            to: d::Timestamp(r.to_ns),
            stale: r.stale,
        };
        at_most(q.intervals(), CANDLES_MAX, "to_ns")?;
        Ok(q)
    }
}

impl From<CandlesQuery> for pb::GetCandlesRequest {
    /// The interval in whole seconds (a validated query's interval is one).
    fn from(q: CandlesQuery) -> pb::GetCandlesRequest {
        pb::GetCandlesRequest {
            market_id: q.market.0,
            interval_s: u32::try_from(q.interval_ns / 1_000_000_000).unwrap_or(u32::MAX),
            from_ns: q.from.0,
            to_ns: q.to.0,
            stale: q.stale,
        }
    }
}

/// `GetOpenOrders`: the open orders of one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOrdersQuery {
    /// The account.
    pub account: d::AccountId,
    /// Answer from the answering node's replicas without asking the leaders.
    pub stale: bool,
    /// Answer with the books the node holds and name the shards it lacks, instead of
    /// refusing with `wrong-node`.
    pub partial: bool,
    /// Look up these orders instead of reading the account's holds (empty: read them); at
    /// most [`ACCOUNT_OPEN_ORDERS_MAX`](d::ACCOUNT_OPEN_ORDERS_MAX), each non-zero.
    pub order_ids: BTreeSet<d::OrderId>,
    /// Read only these shards' books (every shard with a market when it covers all).
    pub shards: ShardFilter,
}

impl OpenOrdersQuery {
    /// The whole answer for `account`: its holds, every market shard, no partial answer.
    pub fn of(account: d::AccountId, stale: bool) -> OpenOrdersQuery {
        OpenOrdersQuery {
            account,
            stale,
            partial: false,
            order_ids: BTreeSet::new(),
            shards: ShardFilter::all(),
        }
    }
}

impl TryFrom<pb::GetOpenOrdersRequest> for OpenOrdersQuery {
    type Error = ApiError;

    fn try_from(r: pb::GetOpenOrdersRequest) -> Res<OpenOrdersQuery> {
        let account = d::AccountId(nonzero(r.account_id, "account_id")?);
        at_most_items(
            r.order_ids.len(),
            d::ACCOUNT_OPEN_ORDERS_MAX as usize,
            "order_ids",
        )?;
        let mut order_ids = BTreeSet::new();
        for (i, id) in r.order_ids.into_iter().enumerate() {
            let id = nonzero(id, "").map_err(|e| e.inside_item("order_ids", i))?;
            if !order_ids.insert(d::OrderId(id)) {
                return Err(ApiError::new("", Reason::Duplicate(id)).inside_item("order_ids", i));
            }
        }
        Ok(OpenOrdersQuery {
            account,
            stale: r.stale,
            partial: r.partial,
            order_ids,
            shards: shard_filter(r.shards, "shards")?,
        })
    }
}

impl From<OpenOrdersQuery> for pb::GetOpenOrdersRequest {
    fn from(q: OpenOrdersQuery) -> pb::GetOpenOrdersRequest {
        pb::GetOpenOrdersRequest {
            account_id: q.account.0,
            stale: q.stale,
            partial: q.partial,
            order_ids: q.order_ids.iter().map(|o| o.0).collect(),
            shards: q.shards.to_wire(),
        }
    }
}

/// `GetStatement`: an account statement in one asset over `from <= t < to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementQuery {
    /// The account.
    pub account: d::AccountId,
    /// The asset.
    pub asset: d::AssetId,
    /// Range start (inclusive).
    pub from: d::Timestamp,
    /// Range end (exclusive); `None`: up to now.
    pub to: Option<d::Timestamp>,
    /// Most entries to return (1 to [`STATEMENT_LIMIT_MAX`]).
    pub limit: u32,
    /// Continue after this event sequence number (the last entry of a truncated page).
    pub after_seq: Option<u64>,
    /// Check that the account exists without asking the leader.
    pub stale: bool,
}

impl TryFrom<pb::GetStatementRequest> for StatementQuery {
    type Error = ApiError;

    fn try_from(r: pb::GetStatementRequest) -> Res<StatementQuery> {
        let account = d::AccountId(nonzero(r.account_id, "account_id")?);
        let asset = d::AssetId(nonzero(r.asset_id, "asset_id")?);
        let (from, to) = range(r.from_ns, r.to_ns)?;
        Ok(StatementQuery {
            account,
            asset,
            from,
            to,
            limit: limit(
                r.limit,
                STATEMENT_LIMIT_DEFAULT,
                STATEMENT_LIMIT_MAX,
                "limit",
            )?,
            after_seq: r.after_seq,
            stale: r.stale,
        })
    }
}

impl From<StatementQuery> for pb::GetStatementRequest {
    fn from(q: StatementQuery) -> pb::GetStatementRequest {
        pb::GetStatementRequest {
            account_id: q.account.0,
            asset_id: q.asset.0,
            from_ns: q.from.0,
            to_ns: q.to.map(|t| t.0),
            limit: q.limit,
            after_seq: q.after_seq,
            stale: q.stale,
        }
    }
}
