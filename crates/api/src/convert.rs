//! Conversions of the shared vocabulary (enums, assets, markets, transfers), the commands
//! and the outcomes.
//!
//! Domain to wire is total (`From`). Wire to domain (`TryFrom`) checks the shape: required
//! fields and oneofs, known enum values, non-zero ids, string and list sizes, numbers the
//! domain type can hold. Business rules stay with the engine.

use crate::error::{at_most_items, known, nonzero, required, ApiError, Reason, Res};
use crate::proto as pb;
use crate::COMMAND_BATCH_LEN_MAX;
use tradelog_domain as d;

// ----- enums ---------------------------------------------------------------------------

impl From<d::Side> for pb::Side {
    fn from(v: d::Side) -> pb::Side {
        match v {
            d::Side::Buy => pb::Side::Buy,
            d::Side::Sell => pb::Side::Sell,
        }
    }
}

/// A required side.
pub(crate) fn side(v: i32, field: &'static str) -> Res<d::Side> {
    match known(v, field)? {
        pb::Side::Unspecified => Err(ApiError::new(field, Reason::Missing)),
        pb::Side::Buy => Ok(d::Side::Buy),
        pb::Side::Sell => Ok(d::Side::Sell),
    }
}

impl From<d::OrderType> for pb::OrderType {
    fn from(v: d::OrderType) -> pb::OrderType {
        match v {
            d::OrderType::Limit => pb::OrderType::Limit,
            d::OrderType::Market => pb::OrderType::Market,
        }
    }
}

/// A required order type.
pub(crate) fn order_type(v: i32, field: &'static str) -> Res<d::OrderType> {
    match known(v, field)? {
        pb::OrderType::Unspecified => Err(ApiError::new(field, Reason::Missing)),
        pb::OrderType::Limit => Ok(d::OrderType::Limit),
        pb::OrderType::Market => Ok(d::OrderType::Market),
    }
}

impl From<d::TimeInForce> for pb::TimeInForce {
    fn from(v: d::TimeInForce) -> pb::TimeInForce {
        match v {
            d::TimeInForce::Gtc => pb::TimeInForce::Gtc,
            d::TimeInForce::Ioc => pb::TimeInForce::Ioc,
            d::TimeInForce::Fok => pb::TimeInForce::Fok,
        }
    }
}

/// A required time in force.
pub(crate) fn time_in_force(v: i32, field: &'static str) -> Res<d::TimeInForce> {
    match known(v, field)? {
        pb::TimeInForce::Unspecified => Err(ApiError::new(field, Reason::Missing)),
        pb::TimeInForce::Gtc => Ok(d::TimeInForce::Gtc),
        pb::TimeInForce::Ioc => Ok(d::TimeInForce::Ioc),
        pb::TimeInForce::Fok => Ok(d::TimeInForce::Fok),
    }
}

impl From<d::SelfTradePrevention> for pb::SelfTradePrevention {
    fn from(v: d::SelfTradePrevention) -> pb::SelfTradePrevention {
        match v {
            d::SelfTradePrevention::CancelResting => pb::SelfTradePrevention::CancelResting,
            d::SelfTradePrevention::CancelIncoming => pb::SelfTradePrevention::CancelIncoming,
            d::SelfTradePrevention::CancelBoth => pb::SelfTradePrevention::CancelBoth,
        }
    }
}

/// A self-trade prevention mode; unset means the default, cancel resting.
pub(crate) fn stp(v: i32, field: &'static str) -> Res<d::SelfTradePrevention> {
    Ok(match known(v, field)? {
        pb::SelfTradePrevention::Unspecified | pb::SelfTradePrevention::CancelResting => {
            d::SelfTradePrevention::CancelResting
        }
        pb::SelfTradePrevention::CancelIncoming => d::SelfTradePrevention::CancelIncoming,
        pb::SelfTradePrevention::CancelBoth => d::SelfTradePrevention::CancelBoth,
    })
}

impl From<d::CancelReason> for pb::CancelReason {
    fn from(v: d::CancelReason) -> pb::CancelReason {
        match v {
            d::CancelReason::Requested => pb::CancelReason::Requested,
            d::CancelReason::Unfilled => pb::CancelReason::Unfilled,
            d::CancelReason::SelfTrade => pb::CancelReason::SelfTrade,
            d::CancelReason::Replaced => pb::CancelReason::Replaced,
            d::CancelReason::Stopped => pb::CancelReason::Stopped,
        }
    }
}

/// A required cancel reason.
pub(crate) fn cancel_reason(v: i32, field: &'static str) -> Res<d::CancelReason> {
    match known(v, field)? {
        pb::CancelReason::Unspecified => Err(ApiError::new(field, Reason::Missing)),
        pb::CancelReason::Requested => Ok(d::CancelReason::Requested),
        pb::CancelReason::Unfilled => Ok(d::CancelReason::Unfilled),
        pb::CancelReason::SelfTrade => Ok(d::CancelReason::SelfTrade),
        pb::CancelReason::Replaced => Ok(d::CancelReason::Replaced),
        pb::CancelReason::Stopped => Ok(d::CancelReason::Stopped),
    }
}

/// The wire value of a rejection code: its stable number, unchanged.
pub fn reject_code_to_wire(code: d::RejectCode) -> i32 {
    i32::from(code.code())
}

/// The proto enum value name of a rejection code (e.g. `REJECT_CODE_INSUFFICIENT_FUNDS`).
pub fn reject_code_name(code: d::RejectCode) -> &'static str {
    match pb::RejectCode::try_from(reject_code_to_wire(code)) {
        Ok(c) => c.as_str_name(),
        // Unreachable while the proto enum lists every domain code (a test checks it);
        // a name, not a panic, if someone adds a code to one side only.
        Err(_) => "REJECT_CODE_UNKNOWN",
    }
}

/// A required rejection code: one of the domain's stable numbers.
pub(crate) fn reject_code(v: i32, field: &'static str) -> Res<d::RejectCode> {
    if v == 0 {
        return Err(ApiError::new(field, Reason::Missing));
    }
    u16::try_from(v)
        .ok()
        .and_then(d::RejectCode::from_code)
        .ok_or_else(|| ApiError::new(field, Reason::UnknownEnumValue(v)))
}

// ----- catalog and transfers -----------------------------------------------------------

impl From<d::Asset> for pb::Asset {
    fn from(a: d::Asset) -> pb::Asset {
        pb::Asset {
            id: a.id.0,
            code: a.code,
            scale: u32::from(a.scale),
        }
    }
}

impl TryFrom<pb::Asset> for d::Asset {
    type Error = ApiError;

    /// Checks the code length (at most [`d::ASSET_CODE_LEN_MAX`] bytes) and that the scale
    /// fits a `u8`. Zero ids, empty codes and the scale limit are checked by
    /// `CreateAssetRequest` (and the engine).
    fn try_from(a: pb::Asset) -> Res<d::Asset> {
        if a.code.len() > d::ASSET_CODE_LEN_MAX {
            return Err(ApiError::new(
                "code",
                Reason::TooLong {
                    len: a.code.len(),
                    max: d::ASSET_CODE_LEN_MAX,
                },
            ));
        }
        let scale = u8::try_from(a.scale).map_err(|_| {
            ApiError::new(
                "scale",
                Reason::TooLarge {
                    value: u64::from(a.scale),
                    max: u64::from(u8::MAX),
                },
            )
        })?;
        Ok(d::Asset {
            id: d::AssetId(a.id),
            code: a.code,
            scale,
        })
    }
}

impl From<d::MarketSpec> for pb::MarketSpec {
    fn from(m: d::MarketSpec) -> pb::MarketSpec {
        pb::MarketSpec {
            id: m.id.0,
            base_asset_id: m.base.0,
            quote_asset_id: m.quote.0,
            lot_size: m.lot_size,
            tick_size: m.tick_size,
            min_qty: m.min_qty.0,
            max_qty: m.max_qty.0,
            maker_fee_bps: m.maker_fee_bps,
            taker_fee_bps: m.taker_fee_bps,
            fee_account_id: m.fee_account.0,
            collar_bps: m.collar_bps,
            shard: m.shard.0,
        }
    }
}

impl From<pb::MarketSpec> for d::MarketSpec {
    /// Field by field: every wire value is a valid domain value. `CreateMarketRequest`
    /// adds the request checks; the engine checks the trading rules.
    fn from(m: pb::MarketSpec) -> d::MarketSpec {
        d::MarketSpec {
            id: d::MarketId(m.id),
            base: d::AssetId(m.base_asset_id),
            quote: d::AssetId(m.quote_asset_id),
            lot_size: m.lot_size,
            tick_size: m.tick_size,
            min_qty: d::Qty(m.min_qty),
            max_qty: d::Qty(m.max_qty),
            maker_fee_bps: m.maker_fee_bps,
            taker_fee_bps: m.taker_fee_bps,
            fee_account: d::AccountId(m.fee_account_id),
            collar_bps: m.collar_bps,
            shard: d::ShardId(m.shard),
        }
    }
}

impl From<d::TransferSpec> for pb::TransferSpec {
    fn from(t: d::TransferSpec) -> pb::TransferSpec {
        pb::TransferSpec {
            id: t.id.0,
            debit_account_id: t.debit.0,
            credit_account_id: t.credit.0,
            asset_id: t.asset.0,
            amount: t.amount.0,
            balancing: t.balancing,
        }
    }
}

impl TryFrom<pb::TransferSpec> for d::TransferSpec {
    type Error = ApiError;

    /// Non-zero transfer id, accounts and asset. The amount (zero, above `AMOUNT_MAX`) and
    /// debit == credit are business rejections of the engine.
    fn try_from(t: pb::TransferSpec) -> Res<d::TransferSpec> {
        Ok(d::TransferSpec {
            id: d::TransferId(nonzero(t.id, "id")?),
            debit: d::AccountId(nonzero(t.debit_account_id, "debit_account_id")?),
            credit: d::AccountId(nonzero(t.credit_account_id, "credit_account_id")?),
            asset: d::AssetId(nonzero(t.asset_id, "asset_id")?),
            amount: d::Amount(t.amount),
            balancing: t.balancing,
        })
    }
}

// ----- commands ------------------------------------------------------------------------

impl TryFrom<pb::CreateAssetRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::CreateAssetRequest) -> Res<d::Command> {
        let a = required(r.asset, "asset")?;
        new_asset(a)
            .map(d::Command::CreateAsset)
            .map_err(|e| e.inside("asset"))
    }
}

/// An asset to create: non-zero id, non-empty code, plus the checks of any asset.
fn new_asset(a: pb::Asset) -> Res<d::Asset> {
    nonzero(a.id, "id")?;
    if a.code.is_empty() {
        return Err(ApiError::new("code", Reason::Empty));
    }
    d::Asset::try_from(a)
}

impl TryFrom<pb::CreateMarketRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::CreateMarketRequest) -> Res<d::Command> {
        let m = required(r.market, "market")?;
        new_market(m)
            .map(d::Command::CreateMarket)
            .map_err(|e| e.inside("market"))
    }
}

/// A market to create: non-zero id, assets and fee account; a shard a placement can name.
fn new_market(m: pb::MarketSpec) -> Res<d::MarketSpec> {
    nonzero(m.id, "id")?;
    nonzero(m.base_asset_id, "base_asset_id")?;
    nonzero(m.quote_asset_id, "quote_asset_id")?;
    nonzero(m.fee_account_id, "fee_account_id")?;
    crate::error::shard(m.shard, "shard")?;
    Ok(d::MarketSpec::from(m))
}

impl TryFrom<pb::OpenAccountRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::OpenAccountRequest) -> Res<d::Command> {
        Ok(d::Command::OpenAccount {
            account: d::AccountId(nonzero(r.account_id, "account_id")?),
            owner: d::Principal(r.owner),
        })
    }
}

impl TryFrom<pb::DepositRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::DepositRequest) -> Res<d::Command> {
        Ok(d::Command::Deposit {
            id: d::TransferId(nonzero(r.transfer_id, "transfer_id")?),
            account: d::AccountId(nonzero(r.account_id, "account_id")?),
            asset: d::AssetId(nonzero(r.asset_id, "asset_id")?),
            amount: d::Amount(r.amount),
        })
    }
}

impl TryFrom<pb::WithdrawRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::WithdrawRequest) -> Res<d::Command> {
        Ok(d::Command::Withdraw {
            id: d::TransferId(nonzero(r.transfer_id, "transfer_id")?),
            account: d::AccountId(nonzero(r.account_id, "account_id")?),
            asset: d::AssetId(nonzero(r.asset_id, "asset_id")?),
            amount: d::Amount(r.amount),
        })
    }
}

impl TryFrom<pb::TransferRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::TransferRequest) -> Res<d::Command> {
        let t = required(r.transfer, "transfer")?;
        d::TransferSpec::try_from(t)
            .map(d::Command::Transfer)
            .map_err(|e| e.inside("transfer"))
    }
}

impl TryFrom<pb::LinkedTransfersRequest> for d::Command {
    type Error = ApiError;

    /// 1 to [`d::LINKED_BATCH_LEN_MAX`] transfers, each well formed.
    fn try_from(r: pb::LinkedTransfersRequest) -> Res<d::Command> {
        if r.transfers.is_empty() {
            return Err(ApiError::new("transfers", Reason::Empty));
        }
        at_most_items(r.transfers.len(), d::LINKED_BATCH_LEN_MAX, "transfers")?;
        let batch = r
            .transfers
            .into_iter()
            .enumerate()
            .map(|(i, t)| d::TransferSpec::try_from(t).map_err(|e| e.inside_item("transfers", i)))
            .collect::<Res<Vec<_>>>()?;
        Ok(d::Command::LinkedTransfers(batch))
    }
}

impl TryFrom<pb::CreatePendingRequest> for d::Command {
    type Error = ApiError;

    /// The timeout's range is a business rule (`InvalidTimeout`).
    fn try_from(r: pb::CreatePendingRequest) -> Res<d::Command> {
        let t = required(r.transfer, "transfer")?;
        let spec = d::TransferSpec::try_from(t).map_err(|e| e.inside("transfer"))?;
        Ok(d::Command::CreatePending {
            spec,
            timeout_ms: r.timeout_ms,
        })
    }
}

impl TryFrom<pb::PostPendingRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::PostPendingRequest) -> Res<d::Command> {
        Ok(d::Command::PostPending {
            debit: d::AccountId(nonzero(r.debit_account_id, "debit_account_id")?),
            id: d::TransferId(nonzero(r.transfer_id, "transfer_id")?),
            amount: r.amount.map(d::Amount),
        })
    }
}

impl TryFrom<pb::VoidPendingRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::VoidPendingRequest) -> Res<d::Command> {
        Ok(d::Command::VoidPending {
            debit: d::AccountId(nonzero(r.debit_account_id, "debit_account_id")?),
            id: d::TransferId(nonzero(r.transfer_id, "transfer_id")?),
        })
    }
}

impl TryFrom<pb::FreezeAccountRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::FreezeAccountRequest) -> Res<d::Command> {
        Ok(d::Command::FreezeAccount {
            account: d::AccountId(nonzero(r.account_id, "account_id")?),
        })
    }
}

impl TryFrom<pb::UnfreezeAccountRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::UnfreezeAccountRequest) -> Res<d::Command> {
        Ok(d::Command::UnfreezeAccount {
            account: d::AccountId(nonzero(r.account_id, "account_id")?),
        })
    }
}

impl TryFrom<pb::CloseAccountRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::CloseAccountRequest) -> Res<d::Command> {
        Ok(d::Command::CloseAccount {
            account: d::AccountId(nonzero(r.account_id, "account_id")?),
        })
    }
}

impl From<d::NewOrder> for pb::PlaceOrderRequest {
    fn from(o: d::NewOrder) -> pb::PlaceOrderRequest {
        pb::PlaceOrderRequest {
            account_id: o.account.0,
            market_id: o.market.0,
            side: pb::Side::from(o.side).into(),
            order_type: pb::OrderType::from(o.order_type).into(),
            time_in_force: pb::TimeInForce::from(o.tif).into(),
            price: o.price.0,
            qty: o.qty.0,
            post_only: o.post_only,
            client_order_id: o.client_order_id,
            stp: pb::SelfTradePrevention::from(o.stp).into(),
        }
    }
}

impl TryFrom<pb::PlaceOrderRequest> for d::NewOrder {
    type Error = ApiError;

    /// Non-zero account and market; side, order type and time in force set; known enum
    /// values. Price, quantity and their combination with the type are business rules.
    fn try_from(r: pb::PlaceOrderRequest) -> Res<d::NewOrder> {
        Ok(d::NewOrder {
            account: d::AccountId(nonzero(r.account_id, "account_id")?),
            market: d::MarketId(nonzero(r.market_id, "market_id")?),
            side: side(r.side, "side")?,
            order_type: order_type(r.order_type, "order_type")?,
            tif: time_in_force(r.time_in_force, "time_in_force")?,
            price: d::Price(r.price),
            qty: d::Qty(r.qty),
            post_only: r.post_only,
            client_order_id: r.client_order_id,
            stp: stp(r.stp, "stp")?,
        })
    }
}

impl TryFrom<pb::PlaceOrderRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::PlaceOrderRequest) -> Res<d::Command> {
        d::NewOrder::try_from(r).map(d::Command::PlaceOrder)
    }
}

impl TryFrom<pb::CancelOrderRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::CancelOrderRequest) -> Res<d::Command> {
        Ok(d::Command::CancelOrder {
            market: d::MarketId(nonzero(r.market_id, "market_id")?),
            order: d::OrderId(nonzero(r.order_id, "order_id")?),
        })
    }
}

impl TryFrom<pb::AmendOrderRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::AmendOrderRequest) -> Res<d::Command> {
        Ok(d::Command::AmendOrder {
            market: d::MarketId(nonzero(r.market_id, "market_id")?),
            order: d::OrderId(nonzero(r.order_id, "order_id")?),
            price: d::Price(r.price),
            qty: d::Qty(r.qty),
        })
    }
}

impl TryFrom<pb::HaltMarketRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::HaltMarketRequest) -> Res<d::Command> {
        Ok(d::Command::HaltMarket {
            market: d::MarketId(nonzero(r.market_id, "market_id")?),
        })
    }
}

impl TryFrom<pb::ResumeMarketRequest> for d::Command {
    type Error = ApiError;

    fn try_from(r: pb::ResumeMarketRequest) -> Res<d::Command> {
        Ok(d::Command::ResumeMarket {
            market: d::MarketId(nonzero(r.market_id, "market_id")?),
        })
    }
}

impl TryFrom<pb::Command> for d::Command {
    type Error = ApiError;

    /// The command of the oneof (required); errors name the oneof field first
    /// (`place_order.side`).
    fn try_from(c: pb::Command) -> Res<d::Command> {
        use pb::command::Command as C;
        let (name, result) = match required(c.command, "command")? {
            C::CreateAsset(r) => ("create_asset", d::Command::try_from(r)),
            C::CreateMarket(r) => ("create_market", d::Command::try_from(r)),
            C::OpenAccount(r) => ("open_account", d::Command::try_from(r)),
            C::Deposit(r) => ("deposit", d::Command::try_from(r)),
            C::Withdraw(r) => ("withdraw", d::Command::try_from(r)),
            C::Transfer(r) => ("transfer", d::Command::try_from(r)),
            C::LinkedTransfers(r) => ("linked_transfers", d::Command::try_from(r)),
            C::CreatePending(r) => ("create_pending", d::Command::try_from(r)),
            C::PostPending(r) => ("post_pending", d::Command::try_from(r)),
            C::VoidPending(r) => ("void_pending", d::Command::try_from(r)),
            C::FreezeAccount(r) => ("freeze_account", d::Command::try_from(r)),
            C::UnfreezeAccount(r) => ("unfreeze_account", d::Command::try_from(r)),
            C::CloseAccount(r) => ("close_account", d::Command::try_from(r)),
            C::PlaceOrder(r) => ("place_order", d::Command::try_from(r)),
            C::CancelOrder(r) => ("cancel_order", d::Command::try_from(r)),
            C::AmendOrder(r) => ("amend_order", d::Command::try_from(r)),
            C::HaltMarket(r) => ("halt_market", d::Command::try_from(r)),
            C::ResumeMarket(r) => ("resume_market", d::Command::try_from(r)),
        };
        result.map_err(|e| e.inside(name))
    }
}

impl From<d::Command> for pb::Command {
    fn from(c: d::Command) -> pb::Command {
        use pb::command::Command as C;
        let command = match c {
            d::Command::CreateAsset(a) => C::CreateAsset(pb::CreateAssetRequest {
                asset: Some(a.into()),
            }),
            d::Command::CreateMarket(m) => C::CreateMarket(pb::CreateMarketRequest {
                market: Some(m.into()),
            }),
            d::Command::OpenAccount { account, owner } => C::OpenAccount(pb::OpenAccountRequest {
                account_id: account.0,
                owner: owner.0,
            }),
            d::Command::Deposit {
                id,
                account,
                asset,
                amount,
            } => C::Deposit(pb::DepositRequest {
                transfer_id: id.0,
                account_id: account.0,
                asset_id: asset.0,
                amount: amount.0,
            }),
            d::Command::Withdraw {
                id,
                account,
                asset,
                amount,
            } => C::Withdraw(pb::WithdrawRequest {
                transfer_id: id.0,
                account_id: account.0,
                asset_id: asset.0,
                amount: amount.0,
            }),
            d::Command::Transfer(t) => C::Transfer(pb::TransferRequest {
                transfer: Some(t.into()),
            }),
            d::Command::LinkedTransfers(batch) => C::LinkedTransfers(pb::LinkedTransfersRequest {
                transfers: batch.into_iter().map(Into::into).collect(),
            }),
            d::Command::CreatePending { spec, timeout_ms } => {
                C::CreatePending(pb::CreatePendingRequest {
                    transfer: Some(spec.into()),
                    timeout_ms,
                })
            }
            d::Command::PostPending { debit, id, amount } => {
                C::PostPending(pb::PostPendingRequest {
                    debit_account_id: debit.0,
                    transfer_id: id.0,
                    amount: amount.map(|a| a.0),
                })
            }
            d::Command::VoidPending { debit, id } => C::VoidPending(pb::VoidPendingRequest {
                debit_account_id: debit.0,
                transfer_id: id.0,
            }),
            d::Command::FreezeAccount { account } => C::FreezeAccount(pb::FreezeAccountRequest {
                account_id: account.0,
            }),
            d::Command::UnfreezeAccount { account } => {
                C::UnfreezeAccount(pb::UnfreezeAccountRequest {
                    account_id: account.0,
                })
            }
            d::Command::CloseAccount { account } => C::CloseAccount(pb::CloseAccountRequest {
                account_id: account.0,
            }),
            d::Command::PlaceOrder(o) => C::PlaceOrder(o.into()),
            d::Command::CancelOrder { market, order } => C::CancelOrder(pb::CancelOrderRequest {
                market_id: market.0,
                order_id: order.0,
            }),
            d::Command::AmendOrder {
                market,
                order,
                price,
                qty,
            } => C::AmendOrder(pb::AmendOrderRequest {
                market_id: market.0,
                order_id: order.0,
                price: price.0,
                qty: qty.0,
            }),
            d::Command::HaltMarket { market } => C::HaltMarket(pb::HaltMarketRequest {
                market_id: market.0,
            }),
            d::Command::ResumeMarket { market } => C::ResumeMarket(pb::ResumeMarketRequest {
                market_id: market.0,
            }),
        };
        pb::Command {
            command: Some(command),
        }
    }
}

impl TryFrom<pb::CommandBatch> for Vec<d::Command> {
    type Error = ApiError;

    /// 1 to [`COMMAND_BATCH_LEN_MAX`] commands, each well formed (errors name the item:
    /// `commands[2].deposit.account_id`).
    fn try_from(b: pb::CommandBatch) -> Res<Vec<d::Command>> {
        if b.commands.is_empty() {
            return Err(ApiError::new("commands", Reason::Empty));
        }
        at_most_items(b.commands.len(), COMMAND_BATCH_LEN_MAX, "commands")?;
        b.commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| d::Command::try_from(c).map_err(|e| e.inside_item("commands", i)))
            .collect()
    }
}

impl From<Vec<d::Command>> for pb::CommandBatch {
    fn from(commands: Vec<d::Command>) -> pb::CommandBatch {
        pb::CommandBatch {
            commands: commands.into_iter().map(Into::into).collect(),
        }
    }
}

// ----- outcomes ------------------------------------------------------------------------

impl From<d::Accepted> for pb::Accepted {
    fn from(a: d::Accepted) -> pb::Accepted {
        use pb::accepted::Kind;
        let kind = match a {
            d::Accepted::Done => Kind::Done(pb::accepted::Done {}),
            d::Accepted::InFlight => Kind::InFlight(pb::accepted::InFlight {}),
            d::Accepted::Order(id) => Kind::OrderId(id.0),
        };
        pb::Accepted { kind: Some(kind) }
    }
}

impl TryFrom<pb::Accepted> for d::Accepted {
    type Error = ApiError;

    fn try_from(a: pb::Accepted) -> Res<d::Accepted> {
        use pb::accepted::Kind;
        Ok(match required(a.kind, "kind")? {
            Kind::Done(_) => d::Accepted::Done,
            Kind::InFlight(_) => d::Accepted::InFlight,
            Kind::OrderId(id) => d::Accepted::Order(d::OrderId(id)),
        })
    }
}

impl From<d::Rejection> for pb::Rejection {
    fn from(r: d::Rejection) -> pb::Rejection {
        pb::Rejection {
            reject_code: reject_code_to_wire(r.code),
            name: reject_code_name(r.code).to_owned(),
            message: r.code.message().to_owned(),
            index: r.index,
        }
    }
}

impl TryFrom<pb::Rejection> for d::Rejection {
    type Error = ApiError;

    /// The code must be one of the domain's; `name` and `message` are informational and
    /// ignored.
    fn try_from(r: pb::Rejection) -> Res<d::Rejection> {
        Ok(d::Rejection {
            code: reject_code(r.reject_code, "reject_code")?,
            index: r.index,
        })
    }
}

impl From<d::Outcome> for pb::Outcome {
    fn from(o: d::Outcome) -> pb::Outcome {
        use pb::outcome::Result as R;
        pb::Outcome {
            result: Some(match o.result {
                Ok(a) => R::Accepted(a.into()),
                Err(r) => R::Rejection(r.into()),
            }),
            duplicate: o.duplicate,
        }
    }
}

impl TryFrom<pb::Outcome> for d::Outcome {
    type Error = ApiError;

    fn try_from(o: pb::Outcome) -> Res<d::Outcome> {
        use pb::outcome::Result as R;
        let result = match required(o.result, "result")? {
            R::Accepted(a) => Ok(d::Accepted::try_from(a).map_err(|e| e.inside("accepted"))?),
            R::Rejection(r) => Err(d::Rejection::try_from(r).map_err(|e| e.inside("rejection"))?),
        };
        Ok(d::Outcome {
            result,
            duplicate: o.duplicate,
        })
    }
}
