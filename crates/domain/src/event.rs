//! Events: the immutable record of everything a shard did, in order.

use crate::{
    AccountId, Amount, Asset, AssetId, MarketId, MarketSpec, OrderId, OrderType, Price, Principal,
    Qty, RejectCode, ShardId, Side, TimeInForce, Timestamp, TransferId,
};
use serde::{Deserialize, Serialize};

/// What a rejection was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subject {
    /// An account command.
    Account(AccountId),
    /// A transfer, deposit, withdrawal or pending transfer (by its id).
    Transfer(TransferId),
    /// An order command (by order id).
    Order(OrderId),
    /// A new order that got no id (rejected before one was assigned).
    ClientOrder {
        /// Account.
        account: AccountId,
        /// Client order id.
        client_order_id: u64,
    },
    /// A market command.
    Market(MarketId),
    /// An asset command.
    Asset(AssetId),
}

/// Why an order left the book without filling completely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelReason {
    /// The owner asked.
    Requested,
    /// IOC/market rest, or a FOK that could not fill.
    Unfilled,
    /// Self-trade prevention.
    SelfTrade,
    /// Replaced by an amend (a new order follows).
    Replaced,
    /// The per-order fill limit or a collar stopped a taker.
    Stopped,
}

/// Everything a shard records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A catalog asset was added.
    AssetCreated(Asset),
    /// A catalog market was added.
    MarketCreated(MarketSpec),
    /// An account was opened.
    AccountOpened {
        /// Account.
        account: AccountId,
        /// Owner.
        owner: Principal,
    },
    /// An account was frozen.
    AccountFrozen {
        /// Account.
        account: AccountId,
    },
    /// An account was unfrozen.
    AccountUnfrozen {
        /// Account.
        account: AccountId,
    },
    /// An account was closed.
    AccountClosed {
        /// Account.
        account: AccountId,
    },
    /// Money entered.
    Deposited {
        /// Id.
        id: TransferId,
        /// Account.
        account: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// Money left.
    Withdrawn {
        /// Id.
        id: TransferId,
        /// Account.
        account: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// A transfer completed (same shard, or the debit side of a cross-shard one finalized).
    TransferPosted {
        /// Id.
        id: TransferId,
        /// Debit account.
        debit: AccountId,
        /// Credit account.
        credit: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// The debit side of a cross-shard transfer is held; a credit message is on its way.
    TransferInitiated {
        /// Id.
        id: TransferId,
        /// Debit account (here).
        debit: AccountId,
        /// Credit account (on `to`).
        credit: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
        /// Credit shard.
        to: ShardId,
    },
    /// The credit side of a cross-shard transfer was applied.
    TransferCredited {
        /// Id.
        id: TransferId,
        /// Debit account (on `from`).
        debit: AccountId,
        /// Credit account (here).
        credit: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
        /// Debit shard.
        from: ShardId,
    },
    /// A cross-shard transfer was refused by the credit side; the debit was released.
    TransferRefunded {
        /// Id.
        id: TransferId,
        /// Why the credit side refused.
        code: RejectCode,
    },
    /// A pending (two-phase) transfer reserved funds.
    PendingCreated {
        /// Id.
        id: TransferId,
        /// Debit account.
        debit: AccountId,
        /// Credit account.
        credit: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount reserved.
        amount: Amount,
        /// Leader time at which it is voided automatically.
        expires_at: Timestamp,
    },
    /// A pending transfer was posted (the posted part moves, the rest is released).
    PendingPosted {
        /// Id.
        id: TransferId,
        /// Amount posted.
        amount: Amount,
        /// Amount released back to the debit account.
        released: Amount,
    },
    /// A pending transfer was voided (by command or by timeout).
    PendingVoided {
        /// Id.
        id: TransferId,
        /// Amount released.
        amount: Amount,
        /// True when the timeout voided it.
        expired: bool,
    },
    /// Funds were held for an order.
    FundsHeld {
        /// Order.
        order: OrderId,
        /// Account.
        account: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// Held funds of an order went back to available.
    FundsReleased {
        /// Order.
        order: OrderId,
        /// Account.
        account: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// The account's shard accepted an order and sent it to the market.
    OrderSubmitted {
        /// Assigned id.
        order: OrderId,
        /// Account.
        account: AccountId,
        /// Market.
        market: MarketId,
        /// Side.
        side: Side,
        /// Type.
        order_type: OrderType,
        /// Time in force.
        tif: TimeInForce,
        /// Price.
        price: Price,
        /// Quantity.
        qty: Qty,
        /// Client order id.
        client_order_id: u64,
        /// The order this one replaces (amend at a new price or larger size).
        replaces: Option<OrderId>,
    },
    /// The market accepted the order (it will trade and/or rest).
    OrderAccepted {
        /// Order.
        order: OrderId,
        /// Market.
        market: MarketId,
        /// Account.
        account: AccountId,
        /// Side.
        side: Side,
        /// Price.
        price: Price,
        /// Quantity.
        qty: Qty,
    },
    /// The market rejected the order; its hold is released.
    OrderRejected {
        /// Order.
        order: OrderId,
        /// Market.
        market: MarketId,
        /// Why.
        code: RejectCode,
    },
    /// A trade: the incoming (taker) order met a resting (maker) order.
    Trade {
        /// Market.
        market: MarketId,
        /// Execution price (the maker's).
        price: Price,
        /// Quantity.
        qty: Qty,
        /// Side of the taker.
        taker_side: Side,
        /// Taker order.
        taker: OrderId,
        /// Maker order.
        maker: OrderId,
        /// Taker account.
        taker_account: AccountId,
        /// Maker account.
        maker_account: AccountId,
        /// Fee paid by the taker (quote).
        taker_fee: Amount,
        /// Fee paid by the maker (quote).
        maker_fee: Amount,
    },
    /// An order filled completely.
    OrderFilled {
        /// Order.
        order: OrderId,
        /// Market.
        market: MarketId,
    },
    /// An order left the book (or never rested) with quantity unfilled.
    OrderCancelled {
        /// Order.
        order: OrderId,
        /// Market.
        market: MarketId,
        /// Unfilled quantity.
        remaining: Qty,
        /// Why.
        reason: CancelReason,
    },
    /// An order's quantity went down in place (time priority kept).
    OrderAmended {
        /// Order.
        order: OrderId,
        /// Market.
        market: MarketId,
        /// New price.
        price: Price,
        /// New remaining quantity.
        qty: Qty,
    },
    /// A fill was settled on the order's account.
    Settled {
        /// Order.
        order: OrderId,
        /// Account.
        account: AccountId,
        /// Asset paid from the hold.
        paid_asset: AssetId,
        /// Amount paid.
        paid: Amount,
        /// Asset received.
        received_asset: AssetId,
        /// Amount received.
        received: Amount,
        /// Fee charged.
        fee: Amount,
    },
    /// Fees reached the fee account.
    FeeCollected {
        /// Market.
        market: MarketId,
        /// Fee account.
        account: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// A market was halted.
    MarketHalted {
        /// Market.
        market: MarketId,
    },
    /// A market was resumed.
    MarketResumed {
        /// Market.
        market: MarketId,
    },
    /// A command was rejected (nothing else changed).
    Rejected {
        /// What it was about.
        subject: Subject,
        /// Why.
        code: RejectCode,
    },
    /// The balance of (account, asset) after the events before it in the same input.
    Balance {
        /// Account.
        account: AccountId,
        /// Asset.
        asset: AssetId,
        /// Available.
        available: Amount,
        /// Held.
        held: Amount,
    },
    /// This shard gave the accounts it owned with `id % modulus == residue` (with their
    /// balances, holds, pending and in-flight transfers) to the new shard `child`; their
    /// later events are in its stream (docs/design/0014).
    ShardSplit {
        /// The new shard.
        child: ShardId,
        /// The accounts with `id % modulus == residue` moved.
        modulus: u64,
        /// See `modulus`.
        residue: u64,
        /// How many accounts moved.
        accounts: u64,
    },
}

/// An event with its place in the shard's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Shard that recorded it.
    pub shard: ShardId,
    /// Position in the shard's event stream: 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// Position of the input (command or message) that caused it in the shard's input log.
    pub input: u64,
    /// Leader-assigned time of that input.
    pub timestamp: Timestamp,
    /// Who caused it.
    pub principal: Principal,
    /// What happened.
    pub event: Event,
}

/// Collects the events of one input, stamping each with its header.
pub struct EventSink<'a> {
    out: &'a mut Vec<EventRecord>,
    shard: ShardId,
    input: u64,
    timestamp: Timestamp,
    principal: Principal,
    next_seq: &'a mut u64,
}

impl<'a> EventSink<'a> {
    /// A sink appending to `out`, numbering from `*next_seq`.
    pub fn new(
        out: &'a mut Vec<EventRecord>,
        shard: ShardId,
        input: u64,
        timestamp: Timestamp,
        principal: Principal,
        next_seq: &'a mut u64,
    ) -> Self {
        EventSink {
            out,
            shard,
            input,
            timestamp,
            principal,
            next_seq,
        }
    }

    /// Records one event.
    #[inline]
    pub fn emit(&mut self, event: Event) {
        let seq = *self.next_seq;
        *self.next_seq += 1;
        self.out.push(EventRecord {
            shard: self.shard,
            seq,
            input: self.input,
            timestamp: self.timestamp,
            principal: self.principal,
            event,
        });
    }

    /// A mark to roll back to (for all-or-nothing batches).
    pub fn mark(&self) -> (usize, u64) {
        (self.out.len(), *self.next_seq)
    }

    /// Drops every event recorded since `mark`.
    pub fn rollback(&mut self, mark: (usize, u64)) {
        self.out.truncate(mark.0);
        *self.next_seq = mark.1;
    }

    /// Leader time of the current input.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// Principal of the current input.
    pub fn principal(&self) -> Principal {
        self.principal
    }

    /// Changes the principal for the events that follow (message inputs carry their own).
    pub fn set_principal(&mut self, p: Principal) {
        self.principal = p;
    }
}
