//! Every malformed input yields the expected `ApiError` (field path and reason).

use crate::proto as pb;
use crate::query::{
    AsOf, BalanceHistoryQuery, BalancesQuery, BookQuery, CandlesQuery, OpenOrdersQuery, OrderQuery,
    ReadEventsQuery, StatementQuery, SubscribeQuery, TradesQuery,
};
use crate::{ApiError, Reason};
use tradelog_domain as d;

type Check = Result<(), ApiError>;

fn cmd<T>(r: T) -> Check
where
    d::Command: TryFrom<T, Error = ApiError>,
{
    d::Command::try_from(r).map(drop)
}

fn transfer() -> pb::TransferSpec {
    pb::TransferSpec {
        id: 1,
        debit_account_id: 2,
        credit_account_id: 3,
        asset_id: 4,
        amount: 5,
        balancing: false,
    }
}

fn asset() -> pb::Asset {
    pb::Asset {
        id: 1,
        code: "USD".into(),
        scale: 2,
    }
}

fn market() -> pb::MarketSpec {
    pb::MarketSpec {
        id: 1,
        base_asset_id: 2,
        quote_asset_id: 3,
        lot_size: 100,
        tick_size: 5,
        min_qty: 100,
        max_qty: 1_000_000,
        maker_fee_bps: 10,
        taker_fee_bps: 20,
        fee_account_id: 9,
        collar_bps: 1_000,
        shard: 0,
    }
}

fn order() -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        account_id: 1,
        market_id: 2,
        side: pb::Side::Buy.into(),
        order_type: pb::OrderType::Limit.into(),
        time_in_force: pb::TimeInForce::Gtc.into(),
        price: 1_000,
        qty: 100,
        post_only: false,
        client_order_id: 7,
        stp: pb::SelfTradePrevention::CancelBoth.into(),
    }
}

fn wrap(c: pb::command::Command) -> pb::Command {
    pb::Command { command: Some(c) }
}

fn stream_all() -> Option<pb::EventStream> {
    Some(pb::EventStream {
        stream: Some(pb::event_stream::Stream::All(pb::event_stream::All {})),
    })
}

fn pos(shards: &[(u32, u64)]) -> Option<pb::Position> {
    Some(pb::Position {
        shards: shards
            .iter()
            .map(|&(shard, seq)| pb::ShardPosition { shard, seq })
            .collect(),
    })
}

fn history() -> pb::GetBalanceHistoryRequest {
    pb::GetBalanceHistoryRequest {
        account_id: 1,
        asset_id: 2,
        from_ns: 10,
        to_ns: Some(20),
        limit: 0,
    }
}

const SEC: u64 = 1_000_000_000;

fn trades() -> pb::GetTradesRequest {
    pb::GetTradesRequest {
        market_id: 1,
        after_seq: None,
        from_ns: 10,
        to_ns: Some(20),
        limit: 0,
        stale: false,
    }
}

fn candles() -> pb::GetCandlesRequest {
    pb::GetCandlesRequest {
        market_id: 1,
        interval_s: 60,
        from_ns: 0,
        to_ns: 3_600 * SEC,
        stale: false,
    }
}

fn statement() -> pb::GetStatementRequest {
    pb::GetStatementRequest {
        account_id: 1,
        asset_id: 2,
        from_ns: 10,
        to_ns: Some(20),
        limit: 0,
        after_seq: None,
        stale: false,
    }
}

fn open_orders() -> pb::GetOpenOrdersRequest {
    pb::GetOpenOrdersRequest {
        account_id: 1,
        stale: false,
        partial: false,
        order_ids: vec![],
        shards: vec![],
    }
}

fn read(stream: Option<pb::EventStream>, after: Option<pb::Position>, limit: u32) -> Check {
    read_of(stream, after, limit, vec![])
}

fn read_of(
    stream: Option<pb::EventStream>,
    after: Option<pb::Position>,
    limit: u32,
    shards: Vec<u32>,
) -> Check {
    ReadEventsQuery::try_from(pb::ReadEventsRequest {
        stream,
        after,
        limit,
        shards,
    })
    .map(drop)
}

fn event(kind: pb::event::Kind) -> Check {
    d::Event::try_from(pb::Event { kind: Some(kind) }).map(drop)
}

fn outcome(result: Option<pb::outcome::Result>) -> Check {
    d::Outcome::try_from(pb::Outcome {
        result,
        duplicate: false,
    })
    .map(drop)
}

fn rejection(code: i32) -> Option<pb::outcome::Result> {
    Some(pb::outcome::Result::Rejection(pb::Rejection {
        reject_code: code,
        name: String::new(),
        message: String::new(),
        index: 0,
    }))
}

fn trade(taker_side: i32) -> pb::event::Trade {
    pb::event::Trade {
        market_id: 1,
        price: 2,
        qty: 3,
        taker_side,
        taker_order_id: 4,
        maker_order_id: 5,
        taker_account_id: 6,
        maker_account_id: 7,
        taker_fee: 0,
        maker_fee: 0,
    }
}

/// (what, result, expected field path, expected reason).
#[rustfmt::skip]
fn cases() -> Vec<(&'static str, Check, &'static str, Reason)> {
    use pb::command::Command as C;
    use pb::event::Kind as K;
    use Reason::*;
    let too_long = "ABCDEFGHIJKLM".to_owned(); // 13 bytes
    let linked_max = d::LINKED_BATCH_LEN_MAX;
    let batch_max = crate::COMMAND_BATCH_LEN_MAX;
    vec![
        // ----- catalog
        ("create asset: no asset", cmd(pb::CreateAssetRequest { asset: None }), "asset", Missing),
        ("create asset: zero id", cmd(pb::CreateAssetRequest { asset: Some(pb::Asset { id: 0, ..asset() }) }), "asset.id", Zero),
        ("create asset: empty code", cmd(pb::CreateAssetRequest { asset: Some(pb::Asset { code: String::new(), ..asset() }) }), "asset.code", Empty),
        ("create asset: long code", cmd(pb::CreateAssetRequest { asset: Some(pb::Asset { code: too_long.clone(), ..asset() }) }), "asset.code", TooLong { len: 13, max: 12 }),
        ("create asset: long multibyte code", cmd(pb::CreateAssetRequest { asset: Some(pb::Asset { code: "€€€€€".into(), ..asset() }) }), "asset.code", TooLong { len: 15, max: 12 }),
        ("create asset: scale beyond u8", cmd(pb::CreateAssetRequest { asset: Some(pb::Asset { scale: 256, ..asset() }) }), "asset.scale", TooLarge { value: 256, max: 255 }),
        ("create market: no market", cmd(pb::CreateMarketRequest { market: None }), "market", Missing),
        ("create market: zero id", cmd(pb::CreateMarketRequest { market: Some(pb::MarketSpec { id: 0, ..market() }) }), "market.id", Zero),
        ("create market: zero base", cmd(pb::CreateMarketRequest { market: Some(pb::MarketSpec { base_asset_id: 0, ..market() }) }), "market.base_asset_id", Zero),
        ("create market: zero quote", cmd(pb::CreateMarketRequest { market: Some(pb::MarketSpec { quote_asset_id: 0, ..market() }) }), "market.quote_asset_id", Zero),
        ("create market: zero fee account", cmd(pb::CreateMarketRequest { market: Some(pb::MarketSpec { fee_account_id: 0, ..market() }) }), "market.fee_account_id", Zero),
        ("create market: shard too large", cmd(pb::CreateMarketRequest { market: Some(pb::MarketSpec { shard: 4_096, ..market() }) }), "market.shard", TooLarge { value: 4_096, max: 4_095 }),
        // ----- accounts and money
        ("open account: zero id", cmd(pb::OpenAccountRequest { account_id: 0, owner: 5 }), "account_id", Zero),
        ("deposit: zero transfer id", cmd(pb::DepositRequest { transfer_id: 0, account_id: 1, asset_id: 1, amount: 1 }), "transfer_id", Zero),
        ("deposit: zero account", cmd(pb::DepositRequest { transfer_id: 1, account_id: 0, asset_id: 1, amount: 1 }), "account_id", Zero),
        ("deposit: zero asset", cmd(pb::DepositRequest { transfer_id: 1, account_id: 1, asset_id: 0, amount: 1 }), "asset_id", Zero),
        ("withdraw: zero transfer id", cmd(pb::WithdrawRequest { transfer_id: 0, account_id: 1, asset_id: 1, amount: 1 }), "transfer_id", Zero),
        ("withdraw: zero account", cmd(pb::WithdrawRequest { transfer_id: 1, account_id: 0, asset_id: 1, amount: 1 }), "account_id", Zero),
        ("withdraw: zero asset", cmd(pb::WithdrawRequest { transfer_id: 1, account_id: 1, asset_id: 0, amount: 1 }), "asset_id", Zero),
        ("transfer: no transfer", cmd(pb::TransferRequest { transfer: None }), "transfer", Missing),
        ("transfer: zero id", cmd(pb::TransferRequest { transfer: Some(pb::TransferSpec { id: 0, ..transfer() }) }), "transfer.id", Zero),
        ("transfer: zero debit", cmd(pb::TransferRequest { transfer: Some(pb::TransferSpec { debit_account_id: 0, ..transfer() }) }), "transfer.debit_account_id", Zero),
        ("transfer: zero credit", cmd(pb::TransferRequest { transfer: Some(pb::TransferSpec { credit_account_id: 0, ..transfer() }) }), "transfer.credit_account_id", Zero),
        ("transfer: zero asset", cmd(pb::TransferRequest { transfer: Some(pb::TransferSpec { asset_id: 0, ..transfer() }) }), "transfer.asset_id", Zero),
        ("linked: empty", cmd(pb::LinkedTransfersRequest { transfers: vec![] }), "transfers", Empty),
        ("linked: too many", cmd(pb::LinkedTransfersRequest { transfers: vec![transfer(); linked_max + 1] }), "transfers", TooMany { len: linked_max + 1, max: linked_max }),
        ("linked: bad item", cmd(pb::LinkedTransfersRequest { transfers: vec![transfer(), transfer(), pb::TransferSpec { credit_account_id: 0, ..transfer() }] }), "transfers[2].credit_account_id", Zero),
        ("pending: no transfer", cmd(pb::CreatePendingRequest { transfer: None, timeout_ms: 5 }), "transfer", Missing),
        ("pending: zero id", cmd(pb::CreatePendingRequest { transfer: Some(pb::TransferSpec { id: 0, ..transfer() }), timeout_ms: 5 }), "transfer.id", Zero),
        ("post pending: zero debit", cmd(pb::PostPendingRequest { debit_account_id: 0, transfer_id: 1, amount: Some(3) }), "debit_account_id", Zero),
        ("post pending: zero id", cmd(pb::PostPendingRequest { debit_account_id: 1, transfer_id: 0, amount: None }), "transfer_id", Zero),
        ("void pending: zero debit", cmd(pb::VoidPendingRequest { debit_account_id: 0, transfer_id: 1 }), "debit_account_id", Zero),
        ("void pending: zero id", cmd(pb::VoidPendingRequest { debit_account_id: 1, transfer_id: 0 }), "transfer_id", Zero),
        ("freeze: zero account", cmd(pb::FreezeAccountRequest { account_id: 0 }), "account_id", Zero),
        ("unfreeze: zero account", cmd(pb::UnfreezeAccountRequest { account_id: 0 }), "account_id", Zero),
        ("close: zero account", cmd(pb::CloseAccountRequest { account_id: 0 }), "account_id", Zero),
        // ----- orders and markets
        ("place: zero account", cmd(pb::PlaceOrderRequest { account_id: 0, ..order() }), "account_id", Zero),
        ("place: zero market", cmd(pb::PlaceOrderRequest { market_id: 0, ..order() }), "market_id", Zero),
        ("place: no side", cmd(pb::PlaceOrderRequest { side: 0, ..order() }), "side", Missing),
        ("place: unknown side", cmd(pb::PlaceOrderRequest { side: 7, ..order() }), "side", UnknownEnumValue(7)),
        ("place: no order type", cmd(pb::PlaceOrderRequest { order_type: 0, ..order() }), "order_type", Missing),
        ("place: unknown order type", cmd(pb::PlaceOrderRequest { order_type: 99, ..order() }), "order_type", UnknownEnumValue(99)),
        ("place: no time in force", cmd(pb::PlaceOrderRequest { time_in_force: 0, ..order() }), "time_in_force", Missing),
        ("place: negative time in force", cmd(pb::PlaceOrderRequest { time_in_force: -1, ..order() }), "time_in_force", UnknownEnumValue(-1)),
        ("place: unknown stp", cmd(pb::PlaceOrderRequest { stp: 4, ..order() }), "stp", UnknownEnumValue(4)),
        ("cancel: zero market", cmd(pb::CancelOrderRequest { market_id: 0, order_id: 1 }), "market_id", Zero),
        ("cancel: zero order", cmd(pb::CancelOrderRequest { market_id: 1, order_id: 0 }), "order_id", Zero),
        ("amend: zero market", cmd(pb::AmendOrderRequest { market_id: 0, order_id: 1, price: 1, qty: 1 }), "market_id", Zero),
        ("amend: zero order", cmd(pb::AmendOrderRequest { market_id: 1, order_id: 0, price: 1, qty: 1 }), "order_id", Zero),
        ("halt: zero market", cmd(pb::HaltMarketRequest { market_id: 0 }), "market_id", Zero),
        ("resume: zero market", cmd(pb::ResumeMarketRequest { market_id: 0 }), "market_id", Zero),
        // ----- the Command oneof and batches
        ("command: empty oneof", cmd(pb::Command { command: None }), "command", Missing),
        ("command: nested", cmd(wrap(C::PlaceOrder(pb::PlaceOrderRequest { side: 0, ..order() }))), "place_order.side", Missing),
        ("command: nested deep", cmd(wrap(C::CreatePending(pb::CreatePendingRequest { transfer: Some(pb::TransferSpec { asset_id: 0, ..transfer() }), timeout_ms: 1 }))), "create_pending.transfer.asset_id", Zero),
        ("batch: empty", Vec::<d::Command>::try_from(pb::CommandBatch { commands: vec![] }).map(drop), "commands", Empty),
        ("batch: too many", Vec::<d::Command>::try_from(pb::CommandBatch { commands: vec![wrap(C::HaltMarket(pb::HaltMarketRequest { market_id: 1 })); batch_max + 1] }).map(drop), "commands", TooMany { len: batch_max + 1, max: batch_max }),
        ("batch: bad item", Vec::<d::Command>::try_from(pb::CommandBatch { commands: vec![wrap(C::HaltMarket(pb::HaltMarketRequest { market_id: 1 })), wrap(C::OpenAccount(pb::OpenAccountRequest { account_id: 0, owner: 1 }))] }).map(drop), "commands[1].open_account.account_id", Zero),
        ("batch: unset item", Vec::<d::Command>::try_from(pb::CommandBatch { commands: vec![pb::Command { command: None }] }).map(drop), "commands[0].command", Missing),
        ("batch: bad linked item", Vec::<d::Command>::try_from(pb::CommandBatch { commands: vec![wrap(C::LinkedTransfers(pb::LinkedTransfersRequest { transfers: vec![transfer(), pb::TransferSpec { id: 0, ..transfer() }] }))] }).map(drop), "commands[0].linked_transfers.transfers[1].id", Zero),
        // ----- outcomes (what a client decodes)
        ("outcome: no result", outcome(None), "result", Missing),
        ("outcome: accepted without kind", outcome(Some(pb::outcome::Result::Accepted(pb::Accepted { kind: None }))), "accepted.kind", Missing),
        ("outcome: code unset", outcome(rejection(0)), "rejection.reject_code", Missing),
        ("outcome: code in a gap", outcome(rejection(6)), "rejection.reject_code", UnknownEnumValue(6)),
        ("outcome: code too large", outcome(rejection(70_000)), "rejection.reject_code", UnknownEnumValue(70_000)),
        ("outcome: negative code", outcome(rejection(-10)), "rejection.reject_code", UnknownEnumValue(-10)),
        // ----- events (what a client decodes)
        ("event: no kind", d::Event::try_from(pb::Event { kind: None }).map(drop), "kind", Missing),
        ("event: asset without asset", event(K::AssetCreated(pb::event::AssetCreated { asset: None })), "asset_created.asset", Missing),
        ("event: asset code too long", event(K::AssetCreated(pb::event::AssetCreated { asset: Some(pb::Asset { code: too_long, ..asset() }) })), "asset_created.asset.code", TooLong { len: 13, max: 12 }),
        ("event: market without market", event(K::MarketCreated(pb::event::MarketCreated { market: None })), "market_created.market", Missing),
        ("event: trade side unset", event(K::Trade(trade(0))), "trade.taker_side", Missing),
        ("event: trade side unknown", event(K::Trade(trade(3))), "trade.taker_side", UnknownEnumValue(3)),
        ("event: cancel reason unknown", event(K::OrderCancelled(pb::event::OrderCancelled { order_id: 1, market_id: 1, remaining: 1, reason: 42 })), "order_cancelled.reason", UnknownEnumValue(42)),
        ("event: refund code unset", event(K::TransferRefunded(pb::event::TransferRefunded { transfer_id: 1, code: 0 })), "transfer_refunded.code", Missing),
        ("event: order rejected unknown code", event(K::OrderRejected(pb::event::OrderRejected { order_id: 1, market_id: 1, code: 999 })), "order_rejected.code", UnknownEnumValue(999)),
        ("event: submitted without tif", event(K::OrderSubmitted(pb::event::OrderSubmitted { order_id: 1, account_id: 1, market_id: 1, side: 1, order_type: 1, time_in_force: 0, price: 1, qty: 1, client_order_id: 0, replaces_order_id: None })), "order_submitted.time_in_force", Missing),
        ("event: rejected without subject", event(K::Rejected(pb::event::Rejected { subject: None, code: 1 })), "rejected.subject", Missing),
        ("event: subject without kind", event(K::Rejected(pb::event::Rejected { subject: Some(pb::Subject { kind: None }), code: 1 })), "rejected.subject.kind", Missing),
        ("record: no event", d::EventRecord::try_from(pb::EventRecord { shard: 0, seq: 1, input: 1, timestamp_ns: 0, principal: 0, event: None }).map(drop), "event", Missing),
        ("record: nested", d::EventRecord::try_from(pb::EventRecord { shard: 0, seq: 1, input: 1, timestamp_ns: 0, principal: 0, event: Some(pb::Event { kind: Some(K::Trade(trade(9))) }) }).map(drop), "event.trade.taker_side", UnknownEnumValue(9)),
        // ----- queries
        ("balances: zero account", BalancesQuery::try_from(pb::GetBalancesRequest { account_id: 0, as_of: None, stale: false }).map(drop), "account_id", Zero),
        ("history: zero account", BalanceHistoryQuery::try_from(pb::GetBalanceHistoryRequest { account_id: 0, ..history() }).map(drop), "account_id", Zero),
        ("history: zero asset", BalanceHistoryQuery::try_from(pb::GetBalanceHistoryRequest { asset_id: 0, ..history() }).map(drop), "asset_id", Zero),
        ("history: range backwards", BalanceHistoryQuery::try_from(pb::GetBalanceHistoryRequest { from_ns: 30, to_ns: Some(20), ..history() }).map(drop), "to_ns", InvalidRange { from: 30, to: 20 }),
        ("history: limit too large", BalanceHistoryQuery::try_from(pb::GetBalanceHistoryRequest { limit: 10_001, ..history() }).map(drop), "limit", TooLarge { value: 10_001, max: 10_000 }),
        ("order: zero market", OrderQuery::try_from(pb::GetOrderRequest { market_id: 0, order_id: 1, as_of: None, stale: false }).map(drop), "market_id", Zero),
        ("order: zero order", OrderQuery::try_from(pb::GetOrderRequest { market_id: 1, order_id: 0, as_of: None, stale: false }).map(drop), "order_id", Zero),
        ("book: zero market", BookQuery::try_from(pb::GetBookRequest { market_id: 0, depth: 5, as_of: None, stale: false }).map(drop), "market_id", Zero),
        ("book: too deep", BookQuery::try_from(pb::GetBookRequest { market_id: 1, depth: 1_001, as_of: None, stale: false }).map(drop), "depth", TooLarge { value: 1_001, max: 1_000 }),
        ("balances: as_of without point", BalancesQuery::try_from(pb::GetBalancesRequest { account_id: 1, as_of: Some(pb::AsOf { point: None }), stale: false }).map(drop), "as_of.point", Missing),
        ("order: as_of without point", OrderQuery::try_from(pb::GetOrderRequest { market_id: 1, order_id: 1, as_of: Some(pb::AsOf { point: None }), stale: false }).map(drop), "as_of.point", Missing),
        ("book: as_of without point", BookQuery::try_from(pb::GetBookRequest { market_id: 1, depth: 0, as_of: Some(pb::AsOf { point: None }), stale: false }).map(drop), "as_of.point", Missing),
        ("trades: zero market", TradesQuery::try_from(pb::GetTradesRequest { market_id: 0, ..trades() }).map(drop), "market_id", Zero),
        ("trades: range backwards", TradesQuery::try_from(pb::GetTradesRequest { from_ns: 30, to_ns: Some(20), ..trades() }).map(drop), "to_ns", InvalidRange { from: 30, to: 20 }),
        ("trades: limit too large", TradesQuery::try_from(pb::GetTradesRequest { limit: 10_001, ..trades() }).map(drop), "limit", TooLarge { value: 10_001, max: 10_000 }),
        ("candles: zero market", CandlesQuery::try_from(pb::GetCandlesRequest { market_id: 0, ..candles() }).map(drop), "market_id", Zero),
        ("candles: zero interval", CandlesQuery::try_from(pb::GetCandlesRequest { interval_s: 0, ..candles() }).map(drop), "interval_s", Zero),
        ("candles: interval over a day", CandlesQuery::try_from(pb::GetCandlesRequest { interval_s: 86_401, ..candles() }).map(drop), "interval_s", TooLarge { value: 86_401, max: 86_400 }),
        ("candles: empty range", CandlesQuery::try_from(pb::GetCandlesRequest { from_ns: SEC, to_ns: SEC, ..candles() }).map(drop), "to_ns", InvalidRange { from: SEC, to: SEC }),
        ("candles: too many", CandlesQuery::try_from(pb::GetCandlesRequest { interval_s: 1, from_ns: SEC / 2, to_ns: 10_000 * SEC + 1, ..candles() }).map(drop), "to_ns", TooLarge { value: 10_001, max: 10_000 }),
        ("balances: stale as of", BalancesQuery::try_from(pb::GetBalancesRequest { account_id: 1, as_of: Some(AsOf::LogIndex(3).into()), stale: true }).map(drop), "stale", Excludes("as_of")),
        ("order: stale as of", OrderQuery::try_from(pb::GetOrderRequest { market_id: 1, order_id: 1, as_of: Some(AsOf::Time(d::Timestamp(5)).into()), stale: true }).map(drop), "stale", Excludes("as_of")),
        ("book: stale as of", BookQuery::try_from(pb::GetBookRequest { market_id: 1, depth: 0, as_of: Some(AsOf::LogIndex(0).into()), stale: true }).map(drop), "stale", Excludes("as_of")),
        ("open orders: zero account", OpenOrdersQuery::try_from(pb::GetOpenOrdersRequest { account_id: 0, ..open_orders() }).map(drop), "account_id", Zero),
        ("open orders: zero order id", OpenOrdersQuery::try_from(pb::GetOpenOrdersRequest { order_ids: vec![4, 0], ..open_orders() }).map(drop), "order_ids[1]", Zero),
        ("open orders: order id twice", OpenOrdersQuery::try_from(pb::GetOpenOrdersRequest { order_ids: vec![4, 9, 4], ..open_orders() }).map(drop), "order_ids[2]", Duplicate(4)),
        ("open orders: too many order ids", OpenOrdersQuery::try_from(pb::GetOpenOrdersRequest { order_ids: (1..=10_001).collect(), ..open_orders() }).map(drop), "order_ids", TooMany { len: 10_001, max: 10_000 }),
        ("open orders: shard too large", OpenOrdersQuery::try_from(pb::GetOpenOrdersRequest { shards: vec![4_096], ..open_orders() }).map(drop), "shards[0]", TooLarge { value: 4_096, max: 4_095 }),
        ("open orders: shard twice", OpenOrdersQuery::try_from(pb::GetOpenOrdersRequest { shards: vec![1, 1], ..open_orders() }).map(drop), "shards[1]", Duplicate(1)),
        ("statement: zero account", StatementQuery::try_from(pb::GetStatementRequest { account_id: 0, ..statement() }).map(drop), "account_id", Zero),
        ("statement: zero asset", StatementQuery::try_from(pb::GetStatementRequest { asset_id: 0, ..statement() }).map(drop), "asset_id", Zero),
        ("statement: range backwards", StatementQuery::try_from(pb::GetStatementRequest { from_ns: 30, to_ns: Some(29), ..statement() }).map(drop), "to_ns", InvalidRange { from: 30, to: 29 }),
        ("statement: limit too large", StatementQuery::try_from(pb::GetStatementRequest { limit: 10_001, ..statement() }).map(drop), "limit", TooLarge { value: 10_001, max: 10_000 }),
        ("read: no stream", read(None, None, 10), "stream", Missing),
        ("read: stream without kind", read(Some(pb::EventStream { stream: None }), None, 10), "stream.stream", Missing),
        ("read: zero account stream", read(Some(pb::EventStream { stream: Some(pb::event_stream::Stream::AccountId(0)) }), None, 10), "stream.account_id", Zero),
        ("read: zero market stream", read(Some(pb::EventStream { stream: Some(pb::event_stream::Stream::MarketId(0)) }), None, 10), "stream.market_id", Zero),
        ("read: zero order stream", read(Some(pb::EventStream { stream: Some(pb::event_stream::Stream::OrderId(0)) }), None, 10), "stream.order_id", Zero),
        ("read: shard too large", read(stream_all(), pos(&[(4_096, 1)]), 10), "after.shards[0].shard", TooLarge { value: 4_096, max: 4_095 }),
        ("read: duplicate shard", read(stream_all(), pos(&[(3, 1), (1, 1), (3, 2)]), 10), "after.shards[2].shard", Duplicate(3)),
        ("read: too many shards", read(stream_all(), Some(pb::Position { shards: vec![pb::ShardPosition { shard: 0, seq: 0 }; 4_097] }), 10), "after.shards", TooMany { len: 4_097, max: 4_096 }),
        ("read: limit too large", read(stream_all(), None, 10_001), "limit", TooLarge { value: 10_001, max: 10_000 }),
        ("read: filter shard too large", read_of(stream_all(), None, 10, vec![1, 4_096]), "shards[1]", TooLarge { value: 4_096, max: 4_095 }),
        ("read: filter shard twice", read_of(stream_all(), None, 10, vec![2, 0, 2]), "shards[2]", Duplicate(2)),
        ("read: filter too long", read_of(stream_all(), None, 10, vec![0; 4_097]), "shards", TooMany { len: 4_097, max: 4_096 }),
        ("subscribe: no stream", SubscribeQuery::try_from(pb::SubscribeEventsRequest { stream: None, after: None, shards: vec![] }).map(drop), "stream", Missing),
        ("subscribe: duplicate shard", SubscribeQuery::try_from(pb::SubscribeEventsRequest { stream: stream_all(), after: pos(&[(0, 5), (0, 5)]), shards: vec![] }).map(drop), "after.shards[1].shard", Duplicate(0)),
        ("subscribe: filter shard twice", SubscribeQuery::try_from(pb::SubscribeEventsRequest { stream: stream_all(), after: None, shards: vec![3, 3] }).map(drop), "shards[1]", Duplicate(3)),
    ]
}

#[test]
fn every_invalid_input_gives_its_error() {
    let mut failures = Vec::new();
    for (what, got, field, reason) in cases() {
        let want = Err(ApiError::new(field, reason));
        if got != want {
            failures.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_baseline_requests_are_valid() {
    // The table above changes one field of these; each must be valid as it is, or a
    // case could pass for the wrong reason.
    assert_eq!(
        cmd(pb::CreateAssetRequest {
            asset: Some(asset())
        }),
        Ok(())
    );
    assert_eq!(
        cmd(pb::CreateMarketRequest {
            market: Some(market())
        }),
        Ok(())
    );
    assert_eq!(
        cmd(pb::TransferRequest {
            transfer: Some(transfer())
        }),
        Ok(())
    );
    assert_eq!(cmd(order()), Ok(()));
    assert_eq!(
        OpenOrdersQuery::try_from(open_orders()),
        Ok(OpenOrdersQuery::of(d::AccountId(1), false))
    );
    assert_eq!(
        OpenOrdersQuery::try_from(pb::GetOpenOrdersRequest {
            order_ids: (1..=10_000).collect(),
            shards: (0..4_096).collect(),
            ..open_orders()
        })
        .map(|q| (q.order_ids.len(), q.shards.0.len())),
        Ok((10_000, 4_096))
    );
    assert_eq!(
        BalanceHistoryQuery::try_from(history()).map(|q| q.limit),
        Ok(crate::BALANCE_HISTORY_LIMIT_DEFAULT)
    );
    assert_eq!(read(stream_all(), pos(&[(3, 1), (1, 1)]), 10), Ok(()));
    assert_eq!(
        TradesQuery::try_from(trades()).map(|q| q.limit),
        Ok(crate::TRADES_LIMIT_DEFAULT)
    );
    let c = CandlesQuery::try_from(candles()).unwrap();
    assert_eq!((c.interval_ns, c.intervals()), (60 * SEC, 60));
    // The largest range: exactly CANDLES_MAX intervals, unaligned at both ends.
    let c = CandlesQuery::try_from(pb::GetCandlesRequest {
        interval_s: 1,
        from_ns: SEC / 2,
        to_ns: 10_000 * SEC,
        ..candles()
    })
    .unwrap();
    assert_eq!(c.intervals(), crate::CANDLES_MAX);
    assert_eq!(
        StatementQuery::try_from(statement()).map(|q| q.limit),
        Ok(crate::STATEMENT_LIMIT_DEFAULT)
    );
    // An as-of point is either of its two kinds.
    for (point, want) in [
        (pb::as_of::Point::LogIndex(0), AsOf::LogIndex(0)),
        (pb::as_of::Point::TimeNs(5), AsOf::Time(d::Timestamp(5))),
    ] {
        let q = BalancesQuery::try_from(pb::GetBalancesRequest {
            account_id: 1,
            as_of: Some(pb::AsOf { point: Some(point) }),
            stale: false,
        });
        assert_eq!(q.map(|q| q.as_of), Ok(Some(want)));
        assert_eq!(pb::AsOf::from(want).point, Some(point));
    }
    assert_eq!(event(pb::event::Kind::Trade(trade(1))), Ok(()));
    assert_eq!(outcome(rejection(60)), Ok(()));
    // The stale flag is carried by every query of live state (alone: as_of is refused
    // with it above).
    let stale_balances = BalancesQuery::try_from(pb::GetBalancesRequest {
        account_id: 1,
        as_of: None,
        stale: true,
    });
    assert_eq!(
        stale_balances,
        Ok(BalancesQuery {
            account: d::AccountId(1),
            as_of: None,
            stale: true
        })
    );
    let stale = |s| {
        [
            OrderQuery::try_from(pb::GetOrderRequest {
                market_id: 1,
                order_id: 1,
                as_of: None,
                stale: s,
            })
            .map(|q| q.stale),
            BookQuery::try_from(pb::GetBookRequest {
                market_id: 1,
                depth: 0,
                as_of: None,
                stale: s,
            })
            .map(|q| q.stale),
            TradesQuery::try_from(pb::GetTradesRequest {
                stale: s,
                ..trades()
            })
            .map(|q| q.stale),
            CandlesQuery::try_from(pb::GetCandlesRequest {
                stale: s,
                ..candles()
            })
            .map(|q| q.stale),
            OpenOrdersQuery::try_from(pb::GetOpenOrdersRequest {
                stale: s,
                ..open_orders()
            })
            .map(|q| q.stale),
            StatementQuery::try_from(pb::GetStatementRequest {
                stale: s,
                ..statement()
            })
            .map(|q| q.stale),
            Ok(crate::query::CatalogQuery::from(pb::GetCatalogRequest { stale: s }).stale),
        ]
    };
    assert_eq!(stale(true), [const { Ok(true) }; 7]);
    assert_eq!(stale(false), [const { Ok(false) }; 7]);
    // Zero ids are valid in events (recorded as they came).
    assert_eq!(
        event(pb::event::Kind::AccountOpened(pb::event::AccountOpened {
            account_id: 0,
            owner: 0
        })),
        Ok(())
    );
}

#[test]
fn errors_read_well_and_become_invalid_argument() {
    let e = ApiError::new("side", Reason::Missing).inside_item("commands", 2);
    assert_eq!(e.field, "commands[2].side");
    let e = e.inside("batch");
    assert_eq!(
        e.to_string(),
        "invalid field `batch.commands[2].side`: required field is not set"
    );
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "invalid field `batch.commands[2].side`: required field is not set"
    );
    assert_eq!(
        ApiError::new("code", Reason::TooLong { len: 13, max: 12 }).to_string(),
        "invalid field `code`: too long: 13 bytes, at most 12"
    );
}
