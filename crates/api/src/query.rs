//! Validated query parameters: what the query requests of the wire API mean, as typed
//! values a server can act on without looking at the wire again.

use crate::error::{at_most_items, nonzero, required, shard, ApiError, Reason, Res};
use crate::proto as pb;
use crate::{
    BALANCE_HISTORY_LIMIT_DEFAULT, BALANCE_HISTORY_LIMIT_MAX, BOOK_DEPTH_DEFAULT, BOOK_DEPTH_MAX,
    READ_EVENTS_LIMIT_DEFAULT, READ_EVENTS_LIMIT_MAX,
};
use std::collections::BTreeMap;
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

/// `GetBalances`: the current balances of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalancesQuery {
    /// The account.
    pub account: d::AccountId,
}

impl TryFrom<pb::GetBalancesRequest> for BalancesQuery {
    type Error = ApiError;

    fn try_from(r: pb::GetBalancesRequest) -> Res<BalancesQuery> {
        Ok(BalancesQuery {
            account: d::AccountId(nonzero(r.account_id, "account_id")?),
        })
    }
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
        if let Some(to) = r.to_ns {
            if to < r.from_ns {
                return Err(ApiError::new(
                    "to_ns",
                    Reason::InvalidRange {
                        from: r.from_ns,
                        to,
                    },
                ));
            }
        }
        Ok(BalanceHistoryQuery {
            account,
            asset,
            from: d::Timestamp(r.from_ns),
            to: r.to_ns.map(d::Timestamp),
            limit: limit(
                r.limit,
                BALANCE_HISTORY_LIMIT_DEFAULT,
                BALANCE_HISTORY_LIMIT_MAX,
                "limit",
            )?,
        })
    }
}

/// `GetOrder`: one resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderQuery {
    /// Its market (routes the query).
    pub market: d::MarketId,
    /// The order.
    pub order: d::OrderId,
}

impl TryFrom<pb::GetOrderRequest> for OrderQuery {
    type Error = ApiError;

    fn try_from(r: pb::GetOrderRequest) -> Res<OrderQuery> {
        Ok(OrderQuery {
            market: d::MarketId(nonzero(r.market_id, "market_id")?),
            order: d::OrderId(nonzero(r.order_id, "order_id")?),
        })
    }
}

/// `GetBook`: aggregated depth of one market.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookQuery {
    /// The market.
    pub market: d::MarketId,
    /// Price levels per side (1 to [`BOOK_DEPTH_MAX`]).
    pub depth: u32,
}

impl TryFrom<pb::GetBookRequest> for BookQuery {
    type Error = ApiError;

    fn try_from(r: pb::GetBookRequest) -> Res<BookQuery> {
        Ok(BookQuery {
            market: d::MarketId(nonzero(r.market_id, "market_id")?),
            depth: limit(r.depth, BOOK_DEPTH_DEFAULT, BOOK_DEPTH_MAX, "depth")?,
        })
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
        })
    }
}

impl From<ReadEventsQuery> for pb::ReadEventsRequest {
    fn from(q: ReadEventsQuery) -> pb::ReadEventsRequest {
        pb::ReadEventsRequest {
            stream: Some(q.stream.into()),
            after: Some(q.after.into()),
            limit: q.limit,
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
}

impl TryFrom<pb::SubscribeEventsRequest> for SubscribeQuery {
    type Error = ApiError;

    fn try_from(r: pb::SubscribeEventsRequest) -> Res<SubscribeQuery> {
        let stream = required(r.stream, "stream")?;
        Ok(SubscribeQuery {
            stream: EventStream::try_from(stream).map_err(|e| e.inside("stream"))?,
            after: position(r.after, "after")?,
        })
    }
}

impl From<SubscribeQuery> for pb::SubscribeEventsRequest {
    fn from(q: SubscribeQuery) -> pb::SubscribeEventsRequest {
        pb::SubscribeEventsRequest {
            stream: Some(q.stream.into()),
            after: Some(q.after.into()),
        }
    }
}
