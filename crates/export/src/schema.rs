//! The Parquet (Arrow) schema of tradelog events and the mapping of every [`Event`] to one
//! row of it, both ways.
//!
//! One flat table, one row per [`EventRecord`]: the record's header (`shard`, `seq`,
//! `input`, `timestamp`, `principal`), the event's `kind` (the API's stable snake_case
//! names: `deposited`, `transfer_posted`, `order_submitted`, `trade`, ...) and one
//! nullable, typed column per field an event can carry. A column holds the same meaning
//! in every kind that sets it (`account`, `asset`, `amount`, `market`, `order_id`, ...);
//! columns a kind does not use are null. Integers stay integers: ids and money are
//! unsigned (Parquet INT with the unsigned logical type), never floats.

use crate::ExportError;
use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, StringBuilder, TimestampNanosecondBuilder, UInt16Builder,
    UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampNanosecondArray, UInt16Array,
    UInt32Array, UInt64Array, UInt8Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;
use tradelog_domain as d;
use tradelog_domain::{Event, EventRecord};

/// How one kind of column is stored: its Rust value, Arrow builder and array.
trait Col {
    type Value;
    type Builder: ArrayBuilder;
    type Array: Array + 'static;
    fn data_type() -> DataType;
    fn builder(capacity: usize) -> Self::Builder;
    fn append(b: &mut Self::Builder, v: Option<Self::Value>);
    fn value(a: &Self::Array, i: usize) -> Self::Value;
}

macro_rules! primitive_col {
    ($marker:ident, $value:ty, $builder:ty, $array:ty, $dt:expr) => {
        struct $marker;
        impl Col for $marker {
            type Value = $value;
            type Builder = $builder;
            type Array = $array;
            fn data_type() -> DataType {
                $dt
            }
            fn builder(capacity: usize) -> $builder {
                <$builder>::with_capacity(capacity)
            }
            fn append(b: &mut $builder, v: Option<$value>) {
                b.append_option(v)
            }
            fn value(a: &$array, i: usize) -> $value {
                a.value(i)
            }
        }
    };
}

primitive_col!(U8, u8, UInt8Builder, UInt8Array, DataType::UInt8);
primitive_col!(U16, u16, UInt16Builder, UInt16Array, DataType::UInt16);
primitive_col!(U32, u32, UInt32Builder, UInt32Array, DataType::UInt32);
primitive_col!(U64, u64, UInt64Builder, UInt64Array, DataType::UInt64);

/// The time zone of the `timestamp` column: instants, shown in UTC.
pub const TIME_ZONE: &str = "UTC";

struct Ts;
impl Col for Ts {
    type Value = i64;
    type Builder = TimestampNanosecondBuilder;
    type Array = TimestampNanosecondArray;
    fn data_type() -> DataType {
        DataType::Timestamp(TimeUnit::Nanosecond, Some(TIME_ZONE.into()))
    }
    fn builder(capacity: usize) -> Self::Builder {
        TimestampNanosecondBuilder::with_capacity(capacity).with_timezone(TIME_ZONE)
    }
    fn append(b: &mut Self::Builder, v: Option<i64>) {
        b.append_option(v)
    }
    fn value(a: &Self::Array, i: usize) -> i64 {
        a.value(i)
    }
}

struct Bool;
impl Col for Bool {
    type Value = bool;
    type Builder = BooleanBuilder;
    type Array = BooleanArray;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn builder(capacity: usize) -> Self::Builder {
        BooleanBuilder::with_capacity(capacity)
    }
    fn append(b: &mut Self::Builder, v: Option<bool>) {
        b.append_option(v)
    }
    fn value(a: &Self::Array, i: usize) -> bool {
        a.value(i)
    }
}

struct Str;
impl Col for Str {
    type Value = String;
    type Builder = StringBuilder;
    type Array = StringArray;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(capacity: usize) -> Self::Builder {
        StringBuilder::with_capacity(capacity, capacity * 8)
    }
    fn append(b: &mut Self::Builder, v: Option<String>) {
        b.append_option(v)
    }
    fn value(a: &Self::Array, i: usize) -> String {
        a.value(i).to_owned()
    }
}

macro_rules! columns {
    ($( $(#[$doc:meta])* $name:ident : $col:ident, $nullable:literal; )*) => {
        /// One event as a row: every column, `None` where the event has no such field.
        #[derive(Debug, Default)]
        struct Row {
            $( $name: Option<<$col as Col>::Value>, )*
        }

        impl Row {
            /// The first column still holding a value, if any.
            fn leftover(&self) -> Option<&'static str> {
                $( if self.$name.is_some() { return Some(stringify!($name)); } )*
                None
            }
        }

        struct Builders {
            $( $name: <$col as Col>::Builder, )*
        }

        impl Builders {
            fn new(capacity: usize) -> Builders {
                Builders { $( $name: <$col>::builder(capacity), )* }
            }

            fn push(&mut self, r: Row) {
                $( <$col>::append(&mut self.$name, r.$name); )*
            }

            fn finish(mut self) -> Vec<ArrayRef> {
                vec![$( ArrayBuilder::finish(&mut self.$name), )*]
            }
        }

        /// Every column: name, Arrow type, nullable, in schema order.
        fn fields() -> Vec<Field> {
            vec![$( Field::new(stringify!($name), <$col>::data_type(), $nullable), )*]
        }

        /// The names of every column, in schema order.
        pub const COLUMNS: &[&str] = &[$( stringify!($name), )*];

        /// Row `i` of `batch` (whose schema is [`schema`]).
        fn row_at(batch: &RecordBatch, i: usize) -> Result<Row, ExportError> {
            let mut r = Row::default();
            let mut _c = 0;
            $(
                let a = batch
                    .column(_c)
                    .as_any()
                    .downcast_ref::<<$col as Col>::Array>()
                    .ok_or_else(|| decode(stringify!($name), i, "unexpected column type"))?;
                if !a.is_null(i) {
                    r.$name = Some(<$col>::value(a, i));
                }
                _c += 1;
            )*
            Ok(r)
        }
    };
}

columns! {
    /// Shard that recorded the event.
    shard: U32, false;
    /// Position in the shard's event stream (1, 2, 3, ... without gaps).
    seq: U64, false;
    /// Position in the shard's input log of the input that caused it.
    input: U64, false;
    /// Leader time of that input (UTC, nanoseconds).
    timestamp: Ts, false;
    /// Who caused it (0: the engine itself).
    principal: U64, false;
    /// What happened: the API's event name (`deposited`, `trade`, ...).
    kind: Str, false;
    account: U64, true;
    owner: U64, true;
    transfer_id: U64, true;
    debit_account: U64, true;
    credit_account: U64, true;
    asset: U32, true;
    amount: U64, true;
    released: U64, true;
    expired: Bool, true;
    expires_at_ns: U64, true;
    to_shard: U32, true;
    from_shard: U32, true;
    asset_code: Str, true;
    asset_scale: U8, true;
    market: U32, true;
    base_asset: U32, true;
    quote_asset: U32, true;
    lot_size: U64, true;
    tick_size: U64, true;
    min_qty: U64, true;
    max_qty: U64, true;
    maker_fee_bps: U32, true;
    taker_fee_bps: U32, true;
    fee_account: U64, true;
    collar_bps: U32, true;
    market_shard: U32, true;
    order_id: U64, true;
    side: Str, true;
    order_type: Str, true;
    time_in_force: Str, true;
    price: U64, true;
    qty: U64, true;
    client_order_id: U64, true;
    replaces_order_id: U64, true;
    taker_order_id: U64, true;
    maker_order_id: U64, true;
    taker_account: U64, true;
    maker_account: U64, true;
    taker_fee: U64, true;
    maker_fee: U64, true;
    remaining: U64, true;
    cancel_reason: Str, true;
    paid_asset: U32, true;
    paid: U64, true;
    received_asset: U32, true;
    received: U64, true;
    fee: U64, true;
    reject_code: U16, true;
    subject: Str, true;
    available: U64, true;
    held: U64, true;
    split_modulus: U64, true;
    split_residue: U64, true;
    accounts_moved: U64, true;
}

fn decode(column: &'static str, row: usize, message: impl Into<String>) -> ExportError {
    ExportError::Decode {
        column,
        row,
        message: message.into(),
    }
}

/// The Arrow schema of the event table (the Parquet schema is derived from it).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(fields()))
}

/// The stable name of an event's kind: the same snake_case names as the API's event
/// oneof (`deposited`, `transfer_posted`, `order_submitted`, `trade`, ...).
pub fn kind_name(e: &Event) -> &'static str {
    match e {
        Event::AssetCreated(_) => "asset_created",
        Event::MarketCreated(_) => "market_created",
        Event::AccountOpened { .. } => "account_opened",
        Event::AccountFrozen { .. } => "account_frozen",
        Event::AccountUnfrozen { .. } => "account_unfrozen",
        Event::AccountClosed { .. } => "account_closed",
        Event::Deposited { .. } => "deposited",
        Event::Withdrawn { .. } => "withdrawn",
        Event::TransferPosted { .. } => "transfer_posted",
        Event::TransferInitiated { .. } => "transfer_initiated",
        Event::TransferCredited { .. } => "transfer_credited",
        Event::TransferRefunded { .. } => "transfer_refunded",
        Event::PendingCreated { .. } => "pending_created",
        Event::PendingPosted { .. } => "pending_posted",
        Event::PendingVoided { .. } => "pending_voided",
        Event::FundsHeld { .. } => "funds_held",
        Event::FundsReleased { .. } => "funds_released",
        Event::OrderSubmitted { .. } => "order_submitted",
        Event::OrderAccepted { .. } => "order_accepted",
        Event::OrderRejected { .. } => "order_rejected",
        Event::Trade { .. } => "trade",
        Event::OrderFilled { .. } => "order_filled",
        Event::OrderCancelled { .. } => "order_cancelled",
        Event::OrderAmended { .. } => "order_amended",
        Event::Settled { .. } => "settled",
        Event::FeeCollected { .. } => "fee_collected",
        Event::MarketHalted { .. } => "market_halted",
        Event::MarketResumed { .. } => "market_resumed",
        Event::Rejected { .. } => "rejected",
        Event::Balance { .. } => "balance",
        Event::ShardSplit { .. } => "shard_split",
    }
}

fn side(s: d::Side) -> String {
    match s {
        d::Side::Buy => "buy",
        d::Side::Sell => "sell",
    }
    .into()
}

fn order_type(t: d::OrderType) -> String {
    match t {
        d::OrderType::Limit => "limit",
        d::OrderType::Market => "market",
    }
    .into()
}

fn tif(t: d::TimeInForce) -> String {
    match t {
        d::TimeInForce::Gtc => "gtc",
        d::TimeInForce::Ioc => "ioc",
        d::TimeInForce::Fok => "fok",
    }
    .into()
}

fn cancel_reason(r: d::CancelReason) -> String {
    match r {
        d::CancelReason::Requested => "requested",
        d::CancelReason::Unfilled => "unfilled",
        d::CancelReason::SelfTrade => "self_trade",
        d::CancelReason::Replaced => "replaced",
        d::CancelReason::Stopped => "stopped",
    }
    .into()
}

/// One record as a row. Every field of every variant lands in a column: the patterns
/// name every field (no `..`), so a field or variant added to [`Event`] does not compile
/// until it is mapped here and in [`event_of`].
fn row_of(r: &EventRecord) -> Result<Row, ExportError> {
    let timestamp = i64::try_from(r.timestamp.0).map_err(|_| ExportError::TimestampOutOfRange {
        shard: r.shard.0,
        seq: r.seq,
        nanos: r.timestamp.0,
    })?;
    let mut w = Row {
        shard: Some(r.shard.0),
        seq: Some(r.seq),
        input: Some(r.input),
        timestamp: Some(timestamp),
        principal: Some(r.principal.0),
        kind: Some(kind_name(&r.event).into()),
        ..Row::default()
    };
    match r.event.clone() {
        Event::AssetCreated(d::Asset { id, code, scale }) => {
            w.asset = Some(id.0);
            w.asset_code = Some(code);
            w.asset_scale = Some(scale);
        }
        Event::MarketCreated(d::MarketSpec {
            id,
            base,
            quote,
            lot_size,
            tick_size,
            min_qty,
            max_qty,
            maker_fee_bps,
            taker_fee_bps,
            fee_account,
            collar_bps,
            shard,
        }) => {
            w.market = Some(id.0);
            w.base_asset = Some(base.0);
            w.quote_asset = Some(quote.0);
            w.lot_size = Some(lot_size);
            w.tick_size = Some(tick_size);
            w.min_qty = Some(min_qty.0);
            w.max_qty = Some(max_qty.0);
            w.maker_fee_bps = Some(maker_fee_bps);
            w.taker_fee_bps = Some(taker_fee_bps);
            w.fee_account = Some(fee_account.0);
            w.collar_bps = Some(collar_bps);
            w.market_shard = Some(shard.0);
        }
        Event::AccountOpened { account, owner } => {
            w.account = Some(account.0);
            w.owner = Some(owner.0);
        }
        Event::AccountFrozen { account }
        | Event::AccountUnfrozen { account }
        | Event::AccountClosed { account } => w.account = Some(account.0),
        Event::Deposited {
            id,
            account,
            asset,
            amount,
        }
        | Event::Withdrawn {
            id,
            account,
            asset,
            amount,
        } => {
            w.transfer_id = Some(id.0);
            w.account = Some(account.0);
            w.asset = Some(asset.0);
            w.amount = Some(amount.0);
        }
        Event::TransferPosted {
            id,
            debit,
            credit,
            asset,
            amount,
        } => transfer(&mut w, id, debit, credit, asset, amount),
        Event::TransferInitiated {
            id,
            debit,
            credit,
            asset,
            amount,
            to,
        } => {
            transfer(&mut w, id, debit, credit, asset, amount);
            w.to_shard = Some(to.0);
        }
        Event::TransferCredited {
            id,
            debit,
            credit,
            asset,
            amount,
            from,
        } => {
            transfer(&mut w, id, debit, credit, asset, amount);
            w.from_shard = Some(from.0);
        }
        Event::TransferRefunded { id, code } => {
            w.transfer_id = Some(id.0);
            w.reject_code = Some(code.code());
        }
        Event::PendingCreated {
            id,
            debit,
            credit,
            asset,
            amount,
            expires_at,
        } => {
            transfer(&mut w, id, debit, credit, asset, amount);
            w.expires_at_ns = Some(expires_at.0);
        }
        Event::PendingPosted {
            id,
            amount,
            released,
        } => {
            w.transfer_id = Some(id.0);
            w.amount = Some(amount.0);
            w.released = Some(released.0);
        }
        Event::PendingVoided {
            id,
            amount,
            expired,
        } => {
            w.transfer_id = Some(id.0);
            w.amount = Some(amount.0);
            w.expired = Some(expired);
        }
        Event::FundsHeld {
            order,
            account,
            asset,
            amount,
        }
        | Event::FundsReleased {
            order,
            account,
            asset,
            amount,
        } => {
            w.order_id = Some(order.0);
            w.account = Some(account.0);
            w.asset = Some(asset.0);
            w.amount = Some(amount.0);
        }
        Event::OrderSubmitted {
            order,
            account,
            market,
            side: s,
            order_type: t,
            tif: f,
            price,
            qty,
            client_order_id,
            replaces,
        } => {
            w.order_id = Some(order.0);
            w.account = Some(account.0);
            w.market = Some(market.0);
            w.side = Some(side(s));
            w.order_type = Some(order_type(t));
            w.time_in_force = Some(tif(f));
            w.price = Some(price.0);
            w.qty = Some(qty.0);
            w.client_order_id = Some(client_order_id);
            w.replaces_order_id = replaces.map(|o| o.0);
        }
        Event::OrderAccepted {
            order,
            market,
            account,
            side: s,
            price,
            qty,
        } => {
            w.order_id = Some(order.0);
            w.market = Some(market.0);
            w.account = Some(account.0);
            w.side = Some(side(s));
            w.price = Some(price.0);
            w.qty = Some(qty.0);
        }
        Event::OrderRejected {
            order,
            market,
            code,
        } => {
            w.order_id = Some(order.0);
            w.market = Some(market.0);
            w.reject_code = Some(code.code());
        }
        Event::Trade {
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
        } => {
            w.market = Some(market.0);
            w.price = Some(price.0);
            w.qty = Some(qty.0);
            w.side = Some(side(taker_side));
            w.taker_order_id = Some(taker.0);
            w.maker_order_id = Some(maker.0);
            w.taker_account = Some(taker_account.0);
            w.maker_account = Some(maker_account.0);
            w.taker_fee = Some(taker_fee.0);
            w.maker_fee = Some(maker_fee.0);
        }
        Event::OrderFilled { order, market } => {
            w.order_id = Some(order.0);
            w.market = Some(market.0);
        }
        Event::OrderCancelled {
            order,
            market,
            remaining,
            reason,
        } => {
            w.order_id = Some(order.0);
            w.market = Some(market.0);
            w.remaining = Some(remaining.0);
            w.cancel_reason = Some(cancel_reason(reason));
        }
        Event::OrderAmended {
            order,
            market,
            price,
            qty,
        } => {
            w.order_id = Some(order.0);
            w.market = Some(market.0);
            w.price = Some(price.0);
            w.qty = Some(qty.0);
        }
        Event::Settled {
            order,
            account,
            paid_asset,
            paid,
            received_asset,
            received,
            fee,
        } => {
            w.order_id = Some(order.0);
            w.account = Some(account.0);
            w.paid_asset = Some(paid_asset.0);
            w.paid = Some(paid.0);
            w.received_asset = Some(received_asset.0);
            w.received = Some(received.0);
            w.fee = Some(fee.0);
        }
        Event::FeeCollected {
            market,
            account,
            asset,
            amount,
        } => {
            w.market = Some(market.0);
            w.account = Some(account.0);
            w.asset = Some(asset.0);
            w.amount = Some(amount.0);
        }
        Event::MarketHalted { market } | Event::MarketResumed { market } => {
            w.market = Some(market.0)
        }
        Event::Rejected { subject, code } => {
            w.reject_code = Some(code.code());
            w.subject = Some(
                match subject {
                    d::Subject::Account(a) => {
                        w.account = Some(a.0);
                        "account"
                    }
                    d::Subject::Transfer(t) => {
                        w.transfer_id = Some(t.0);
                        "transfer"
                    }
                    d::Subject::Order(o) => {
                        w.order_id = Some(o.0);
                        "order"
                    }
                    d::Subject::ClientOrder {
                        account,
                        client_order_id,
                    } => {
                        w.account = Some(account.0);
                        w.client_order_id = Some(client_order_id);
                        "client_order"
                    }
                    d::Subject::Market(m) => {
                        w.market = Some(m.0);
                        "market"
                    }
                    d::Subject::Asset(a) => {
                        w.asset = Some(a.0);
                        "asset"
                    }
                }
                .into(),
            );
        }
        Event::Balance {
            account,
            asset,
            available,
            held,
        } => {
            w.account = Some(account.0);
            w.asset = Some(asset.0);
            w.available = Some(available.0);
            w.held = Some(held.0);
        }
        Event::ShardSplit {
            child,
            modulus,
            residue,
            accounts,
        } => {
            w.to_shard = Some(child.0);
            w.split_modulus = Some(modulus);
            w.split_residue = Some(residue);
            w.accounts_moved = Some(accounts);
        }
    }
    Ok(w)
}

fn transfer(
    w: &mut Row,
    id: d::TransferId,
    debit: d::AccountId,
    credit: d::AccountId,
    asset: d::AssetId,
    amount: d::Amount,
) {
    w.transfer_id = Some(id.0);
    w.debit_account = Some(debit.0);
    w.credit_account = Some(credit.0);
    w.asset = Some(asset.0);
    w.amount = Some(amount.0);
}

/// The events as one record batch of [`schema`], in the order given.
pub fn to_batch(events: &[EventRecord]) -> Result<RecordBatch, ExportError> {
    let mut b = Builders::new(events.len());
    for r in events {
        b.push(row_of(r)?);
    }
    Ok(RecordBatch::try_new(schema(), b.finish())?)
}

/// The events of a record batch of [`schema`] (as read back from an export), in row
/// order. The inverse of [`to_batch`]; a row that no event could have written is a
/// [`ExportError::Decode`] naming its column and row.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<EventRecord>, ExportError> {
    if batch.schema().fields() != schema().fields() {
        return Err(decode(
            "*",
            0,
            "the batch's schema is not the tradelog event schema",
        ));
    }
    (0..batch.num_rows())
        .map(|i| event_of(row_at(batch, i)?, i))
        .collect()
}

/// Takes a required value out of a row's column.
macro_rules! take {
    ($r:ident . $name:ident, $row:expr) => {
        $r.$name.take().ok_or_else(|| {
            decode(
                stringify!($name),
                $row,
                "null where the event kind needs a value",
            )
        })?
    };
}

fn event_of(mut r: Row, i: usize) -> Result<EventRecord, ExportError> {
    let kind = take!(r.kind, i);
    let code = |c: Option<u16>| -> Result<d::RejectCode, ExportError> {
        let c = c.ok_or_else(|| decode("reject_code", i, "null"))?;
        d::RejectCode::from_code(c)
            .ok_or_else(|| decode("reject_code", i, format!("unknown code {c}")))
    };
    let side_of = |s: Option<String>, col: &'static str| match s.as_deref() {
        Some("buy") => Ok(d::Side::Buy),
        Some("sell") => Ok(d::Side::Sell),
        other => Err(decode(col, i, format!("{other:?} is not buy or sell"))),
    };
    let event = match kind.as_str() {
        "asset_created" => Event::AssetCreated(d::Asset {
            id: d::AssetId(take!(r.asset, i)),
            code: take!(r.asset_code, i),
            scale: take!(r.asset_scale, i),
        }),
        "market_created" => Event::MarketCreated(d::MarketSpec {
            id: d::MarketId(take!(r.market, i)),
            base: d::AssetId(take!(r.base_asset, i)),
            quote: d::AssetId(take!(r.quote_asset, i)),
            lot_size: take!(r.lot_size, i),
            tick_size: take!(r.tick_size, i),
            min_qty: d::Qty(take!(r.min_qty, i)),
            max_qty: d::Qty(take!(r.max_qty, i)),
            maker_fee_bps: take!(r.maker_fee_bps, i),
            taker_fee_bps: take!(r.taker_fee_bps, i),
            fee_account: d::AccountId(take!(r.fee_account, i)),
            collar_bps: take!(r.collar_bps, i),
            shard: d::ShardId(take!(r.market_shard, i)),
        }),
        "account_opened" => Event::AccountOpened {
            account: d::AccountId(take!(r.account, i)),
            owner: d::Principal(take!(r.owner, i)),
        },
        "account_frozen" => Event::AccountFrozen {
            account: d::AccountId(take!(r.account, i)),
        },
        "account_unfrozen" => Event::AccountUnfrozen {
            account: d::AccountId(take!(r.account, i)),
        },
        "account_closed" => Event::AccountClosed {
            account: d::AccountId(take!(r.account, i)),
        },
        "deposited" => Event::Deposited {
            id: d::TransferId(take!(r.transfer_id, i)),
            account: d::AccountId(take!(r.account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            amount: d::Amount(take!(r.amount, i)),
        },
        "withdrawn" => Event::Withdrawn {
            id: d::TransferId(take!(r.transfer_id, i)),
            account: d::AccountId(take!(r.account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            amount: d::Amount(take!(r.amount, i)),
        },
        "transfer_posted" => Event::TransferPosted {
            id: d::TransferId(take!(r.transfer_id, i)),
            debit: d::AccountId(take!(r.debit_account, i)),
            credit: d::AccountId(take!(r.credit_account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            amount: d::Amount(take!(r.amount, i)),
        },
        "transfer_initiated" => Event::TransferInitiated {
            id: d::TransferId(take!(r.transfer_id, i)),
            debit: d::AccountId(take!(r.debit_account, i)),
            credit: d::AccountId(take!(r.credit_account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            amount: d::Amount(take!(r.amount, i)),
            to: d::ShardId(take!(r.to_shard, i)),
        },
        "transfer_credited" => Event::TransferCredited {
            id: d::TransferId(take!(r.transfer_id, i)),
            debit: d::AccountId(take!(r.debit_account, i)),
            credit: d::AccountId(take!(r.credit_account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            amount: d::Amount(take!(r.amount, i)),
            from: d::ShardId(take!(r.from_shard, i)),
        },
        "transfer_refunded" => Event::TransferRefunded {
            id: d::TransferId(take!(r.transfer_id, i)),
            code: code(r.reject_code.take())?,
        },
        "pending_created" => Event::PendingCreated {
            id: d::TransferId(take!(r.transfer_id, i)),
            debit: d::AccountId(take!(r.debit_account, i)),
            credit: d::AccountId(take!(r.credit_account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            amount: d::Amount(take!(r.amount, i)),
            expires_at: d::Timestamp(take!(r.expires_at_ns, i)),
        },
        "pending_posted" => Event::PendingPosted {
            id: d::TransferId(take!(r.transfer_id, i)),
            amount: d::Amount(take!(r.amount, i)),
            released: d::Amount(take!(r.released, i)),
        },
        "pending_voided" => Event::PendingVoided {
            id: d::TransferId(take!(r.transfer_id, i)),
            amount: d::Amount(take!(r.amount, i)),
            expired: take!(r.expired, i),
        },
        "funds_held" => Event::FundsHeld {
            order: d::OrderId(take!(r.order_id, i)),
            account: d::AccountId(take!(r.account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            amount: d::Amount(take!(r.amount, i)),
        },
        "funds_released" => Event::FundsReleased {
            order: d::OrderId(take!(r.order_id, i)),
            account: d::AccountId(take!(r.account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            amount: d::Amount(take!(r.amount, i)),
        },
        "order_submitted" => Event::OrderSubmitted {
            order: d::OrderId(take!(r.order_id, i)),
            account: d::AccountId(take!(r.account, i)),
            market: d::MarketId(take!(r.market, i)),
            side: side_of(r.side.take(), "side")?,
            order_type: match r.order_type.take().as_deref() {
                Some("limit") => d::OrderType::Limit,
                Some("market") => d::OrderType::Market,
                other => return Err(decode("order_type", i, format!("{other:?}"))),
            },
            tif: match r.time_in_force.take().as_deref() {
                Some("gtc") => d::TimeInForce::Gtc,
                Some("ioc") => d::TimeInForce::Ioc,
                Some("fok") => d::TimeInForce::Fok,
                other => return Err(decode("time_in_force", i, format!("{other:?}"))),
            },
            price: d::Price(take!(r.price, i)),
            qty: d::Qty(take!(r.qty, i)),
            client_order_id: take!(r.client_order_id, i),
            replaces: r.replaces_order_id.take().map(d::OrderId),
        },
        "order_accepted" => Event::OrderAccepted {
            order: d::OrderId(take!(r.order_id, i)),
            market: d::MarketId(take!(r.market, i)),
            account: d::AccountId(take!(r.account, i)),
            side: side_of(r.side.take(), "side")?,
            price: d::Price(take!(r.price, i)),
            qty: d::Qty(take!(r.qty, i)),
        },
        "order_rejected" => Event::OrderRejected {
            order: d::OrderId(take!(r.order_id, i)),
            market: d::MarketId(take!(r.market, i)),
            code: code(r.reject_code.take())?,
        },
        "trade" => Event::Trade {
            market: d::MarketId(take!(r.market, i)),
            price: d::Price(take!(r.price, i)),
            qty: d::Qty(take!(r.qty, i)),
            taker_side: side_of(r.side.take(), "side")?,
            taker: d::OrderId(take!(r.taker_order_id, i)),
            maker: d::OrderId(take!(r.maker_order_id, i)),
            taker_account: d::AccountId(take!(r.taker_account, i)),
            maker_account: d::AccountId(take!(r.maker_account, i)),
            taker_fee: d::Amount(take!(r.taker_fee, i)),
            maker_fee: d::Amount(take!(r.maker_fee, i)),
        },
        "order_filled" => Event::OrderFilled {
            order: d::OrderId(take!(r.order_id, i)),
            market: d::MarketId(take!(r.market, i)),
        },
        "order_cancelled" => Event::OrderCancelled {
            order: d::OrderId(take!(r.order_id, i)),
            market: d::MarketId(take!(r.market, i)),
            remaining: d::Qty(take!(r.remaining, i)),
            reason: match r.cancel_reason.take().as_deref() {
                Some("requested") => d::CancelReason::Requested,
                Some("unfilled") => d::CancelReason::Unfilled,
                Some("self_trade") => d::CancelReason::SelfTrade,
                Some("replaced") => d::CancelReason::Replaced,
                Some("stopped") => d::CancelReason::Stopped,
                other => return Err(decode("cancel_reason", i, format!("{other:?}"))),
            },
        },
        "order_amended" => Event::OrderAmended {
            order: d::OrderId(take!(r.order_id, i)),
            market: d::MarketId(take!(r.market, i)),
            price: d::Price(take!(r.price, i)),
            qty: d::Qty(take!(r.qty, i)),
        },
        "settled" => Event::Settled {
            order: d::OrderId(take!(r.order_id, i)),
            account: d::AccountId(take!(r.account, i)),
            paid_asset: d::AssetId(take!(r.paid_asset, i)),
            paid: d::Amount(take!(r.paid, i)),
            received_asset: d::AssetId(take!(r.received_asset, i)),
            received: d::Amount(take!(r.received, i)),
            fee: d::Amount(take!(r.fee, i)),
        },
        "fee_collected" => Event::FeeCollected {
            market: d::MarketId(take!(r.market, i)),
            account: d::AccountId(take!(r.account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            amount: d::Amount(take!(r.amount, i)),
        },
        "market_halted" => Event::MarketHalted {
            market: d::MarketId(take!(r.market, i)),
        },
        "market_resumed" => Event::MarketResumed {
            market: d::MarketId(take!(r.market, i)),
        },
        "rejected" => {
            let subject = match take!(r.subject, i).as_str() {
                "account" => d::Subject::Account(d::AccountId(take!(r.account, i))),
                "transfer" => d::Subject::Transfer(d::TransferId(take!(r.transfer_id, i))),
                "order" => d::Subject::Order(d::OrderId(take!(r.order_id, i))),
                "client_order" => d::Subject::ClientOrder {
                    account: d::AccountId(take!(r.account, i)),
                    client_order_id: take!(r.client_order_id, i),
                },
                "market" => d::Subject::Market(d::MarketId(take!(r.market, i))),
                "asset" => d::Subject::Asset(d::AssetId(take!(r.asset, i))),
                other => return Err(decode("subject", i, format!("unknown subject {other:?}"))),
            };
            Event::Rejected {
                subject,
                code: code(r.reject_code.take())?,
            }
        }
        "balance" => Event::Balance {
            account: d::AccountId(take!(r.account, i)),
            asset: d::AssetId(take!(r.asset, i)),
            available: d::Amount(take!(r.available, i)),
            held: d::Amount(take!(r.held, i)),
        },
        "shard_split" => Event::ShardSplit {
            child: d::ShardId(take!(r.to_shard, i)),
            modulus: take!(r.split_modulus, i),
            residue: take!(r.split_residue, i),
            accounts: take!(r.accounts_moved, i),
        },
        other => return Err(decode("kind", i, format!("unknown event kind {other:?}"))),
    };
    let timestamp = take!(r.timestamp, i);
    let record = EventRecord {
        shard: d::ShardId(take!(r.shard, i)),
        seq: take!(r.seq, i),
        input: take!(r.input, i),
        timestamp: d::Timestamp(
            u64::try_from(timestamp).map_err(|_| decode("timestamp", i, "before 1970"))?,
        ),
        principal: d::Principal(take!(r.principal, i)),
        event,
    };
    match r.leftover() {
        Some(column) => Err(decode(
            column,
            i,
            format!("set in a {kind:?} row, which has no such field"),
        )),
        None => Ok(record),
    }
}
