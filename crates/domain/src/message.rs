//! Cross-shard messages: the only way shards affect each other.
//!
//! A message is emitted by one shard's state machine into its outbox, delivered to the
//! destination shard as an input of its log, and applied there exactly once: each
//! (source, destination) channel numbers its messages 1, 2, 3, ... and the receiver applies
//! only the next number it expects (older numbers are duplicates, newer ones wait).
//! See docs/design/0002-cross-shard-messages.md.

use crate::{
    AccountId, Amount, AssetId, MarketId, OrderId, OrderType, Price, Principal, Qty, RejectCode,
    SelfTradePrevention, ShardId, Side, TimeInForce, TransferId,
};
use serde::{Deserialize, Serialize};

/// An order whose funds are held, on its way to the market's shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTicket {
    /// Assigned by the account's shard.
    pub order: OrderId,
    /// Trading account.
    pub account: AccountId,
    /// Owner of the account (for self-trade prevention and cancel rights).
    pub owner: Principal,
    /// Market.
    pub market: MarketId,
    /// Side.
    pub side: Side,
    /// Type.
    pub order_type: OrderType,
    /// Time in force.
    pub tif: TimeInForce,
    /// Limit (or protection) price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Post-only.
    pub post_only: bool,
    /// Self-trade prevention.
    pub stp: SelfTradePrevention,
    /// What the account's shard holds for this order (quote for buys, base for sells).
    pub hold: Amount,
    /// Client order id (0 = none).
    pub client_order_id: u64,
}

/// The payload of a cross-shard message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Account shard -> market shard: funds are held, please match.
    OrderHeld(OrderTicket),
    /// Market shard -> account shard: a fill. Take `paid` from the order's hold (in
    /// `paid_asset`) and credit `received` (in `received_asset`) to available.
    Settle {
        /// The order that filled.
        order: OrderId,
        /// Its account.
        account: AccountId,
        /// Asset paid (from the hold).
        paid_asset: AssetId,
        /// Amount paid, fee included for buys.
        paid: Amount,
        /// Asset received.
        received_asset: AssetId,
        /// Amount received, fee deducted for sells.
        received: Amount,
        /// Fee charged (already inside `paid` or deducted from `received`).
        fee: Amount,
    },
    /// Market shard -> account shard: give back part of an order's hold. With `done`, the
    /// order is closed at the market and the hold record can be dropped (amount is then
    /// everything that was left).
    Release {
        /// The order.
        order: OrderId,
        /// Its account.
        account: AccountId,
        /// Held asset.
        asset: AssetId,
        /// Amount released to available.
        amount: Amount,
        /// The order is closed.
        done: bool,
    },
    /// Market shard -> account shard: the order was cancelled for a replace at a new price
    /// or larger quantity. Release what the old order still held (`released`, closing its
    /// hold record), then hold funds for the new one (same side, client order id,
    /// self-trade prevention and post-only) and send it back. One message, so the two steps
    /// are applied together.
    Replace {
        /// The cancelled order.
        old: OrderId,
        /// Its account.
        account: AccountId,
        /// Market.
        market: MarketId,
        /// New price.
        price: Price,
        /// New quantity.
        qty: Qty,
        /// Side of the order.
        side: Side,
        /// Self-trade prevention mode of the order.
        stp: SelfTradePrevention,
        /// Post-only flag of the order.
        post_only: bool,
        /// What the old order still held (released to available first).
        released: Amount,
    },
    /// Market shard -> fee account's shard: collected fees.
    FeeCredit {
        /// Market that charged them.
        market: MarketId,
        /// The market's fee account.
        account: AccountId,
        /// Asset (the quote asset).
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// Debit shard -> credit shard: credit a transfer whose debit is held.
    TransferCredit {
        /// Transfer id.
        id: TransferId,
        /// Debited account (on the sender).
        debit: AccountId,
        /// Account to credit (on the receiver).
        credit: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// Credit shard -> debit shard: the outcome of a `TransferCredit`.
    TransferCreditResult {
        /// Transfer id.
        id: TransferId,
        /// `Ok` if credited, else why it was refused (the debit is then released).
        result: Result<(), RejectCode>,
    },
    /// A shard that split passes on a message for what it gave away (an account, or the
    /// answer to a transfer whose debit moved) to the shard that now owns it, in the
    /// order the messages reached it. The receiver applies `body` as if `origin` had sent
    /// it (a credit is answered to `origin` directly). Never nested: a forwarded message
    /// forwarded again keeps its first origin.
    Forwarded {
        /// The shard that sent `body` first.
        origin: ShardId,
        /// The message.
        body: Box<MessageBody>,
    },
}

/// One message on a (from, to) channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Sending shard.
    pub from: ShardId,
    /// Receiving shard.
    pub to: ShardId,
    /// Position on the (from, to) channel: 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// The principal of the command that started the workflow.
    pub principal: Principal,
    /// Payload.
    pub body: MessageBody,
}

/// What happened to a delivered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Applied now.
    Applied,
    /// Already applied earlier: ignored.
    Duplicate,
    /// A message before it on its channel has not arrived: ignored, deliver that one first.
    Gap {
        /// The sequence number the receiver expects next.
        expected: u64,
    },
    /// Addressed to another shard: ignored.
    Misrouted,
    /// It names a catalog entry (a market) this shard has not created yet: the catalog
    /// command that every shard applies has not reached this one. Not applied; deliver it
    /// again later (the messages after it on its channel wait behind it).
    Deferred,
}
