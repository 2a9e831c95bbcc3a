//! Commands: what clients ask a shard to do, and what a shard answers.

use crate::{
    AccountId, Amount, Asset, AssetId, MarketId, MarketSpec, OrderId, OrderType, Price, Principal,
    Qty, RejectCode, SelfTradePrevention, Side, TimeInForce, TransferId,
};
use serde::{Deserialize, Serialize};

/// A transfer between two accounts of one asset.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransferSpec {
    /// Idempotency key, chosen by the client. Non-zero.
    pub id: TransferId,
    /// Account that pays.
    pub debit: AccountId,
    /// Account that receives.
    pub credit: AccountId,
    /// What moves.
    pub asset: AssetId,
    /// How much (minor units). With `balancing`, the most that moves.
    pub amount: Amount,
    /// Balancing transfer: move `min(amount, available)` instead of rejecting.
    pub balancing: bool,
}

/// A new order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewOrder {
    /// The account that trades (and holds the funds).
    pub account: AccountId,
    /// Where.
    pub market: MarketId,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// GTC, IOC or FOK. Market orders must be IOC or FOK.
    pub tif: TimeInForce,
    /// Limit price; for market orders the protection price (required for buys: the most
    /// the buyer pays per lot; for sells the least accepted, 0 = any).
    pub price: Price,
    /// Quantity, base minor units.
    pub qty: Qty,
    /// Reject instead of taking liquidity.
    pub post_only: bool,
    /// Client's idempotency key for this order, unique per account (0 = none).
    pub client_order_id: u64,
    /// Self-trade prevention mode.
    pub stp: SelfTradePrevention,
}

/// Everything a shard can be asked to do. Catalog commands (assets, markets) are applied by
/// every shard; the others by the shard that owns the account (ledger commands, placing
/// orders) or the market (cancel, amend, halt).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Adds an asset to the catalog.
    CreateAsset(Asset),
    /// Adds a market to the catalog.
    CreateMarket(MarketSpec),
    /// Opens an account owned by `owner`.
    OpenAccount {
        /// New account id (non-zero).
        account: AccountId,
        /// Who owns it.
        owner: Principal,
    },
    /// Money enters the system.
    Deposit {
        /// Idempotency key.
        id: TransferId,
        /// Credited account.
        account: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// Money leaves the system.
    Withdraw {
        /// Idempotency key.
        id: TransferId,
        /// Debited account.
        account: AccountId,
        /// Asset.
        asset: AssetId,
        /// Amount.
        amount: Amount,
    },
    /// A transfer; across shards it runs as debit-hold, credit, finalize.
    Transfer(TransferSpec),
    /// All-or-nothing batch of transfers (all accounts on this shard).
    LinkedTransfers(Vec<TransferSpec>),
    /// Reserves funds now (two-phase transfer); voided automatically after the timeout.
    CreatePending {
        /// The transfer and its amount (balancing allowed).
        spec: TransferSpec,
        /// Leader-time milliseconds until it is voided automatically.
        timeout_ms: u64,
    },
    /// Posts a pending transfer, fully (`None`) or partly; the rest is released.
    PostPending {
        /// Its debit account (routes the command to the shard that holds the funds).
        debit: AccountId,
        /// Pending transfer id.
        id: TransferId,
        /// How much to post, at most the pending amount.
        amount: Option<Amount>,
    },
    /// Voids a pending transfer, releasing its funds.
    VoidPending {
        /// Its debit account (routes the command).
        debit: AccountId,
        /// Pending transfer id.
        id: TransferId,
    },
    /// No debits, credits or new orders until unfrozen (settlement of open orders goes on).
    FreezeAccount {
        /// Account.
        account: AccountId,
    },
    /// Undoes a freeze.
    UnfreezeAccount {
        /// Account.
        account: AccountId,
    },
    /// Closes an empty account for good.
    CloseAccount {
        /// Account.
        account: AccountId,
    },
    /// Places an order (sent to the account's shard).
    PlaceOrder(NewOrder),
    /// Cancels an open order (sent to the market's shard).
    CancelOrder {
        /// Market of the order.
        market: MarketId,
        /// The order.
        order: OrderId,
    },
    /// Cancel-replace (sent to the market's shard). Keeps time priority when the price is
    /// unchanged and the quantity goes down; otherwise the order is replaced by a new one.
    AmendOrder {
        /// Market of the order.
        market: MarketId,
        /// The order.
        order: OrderId,
        /// New limit price.
        price: Price,
        /// New remaining quantity.
        qty: Qty,
    },
    /// Stops matching new orders in a market (cancels are still accepted).
    HaltMarket {
        /// Market.
        market: MarketId,
    },
    /// Resumes a halted market.
    ResumeMarket {
        /// Market.
        market: MarketId,
    },
}

/// What the principal of a command may do. The server maps roles to it (admin, operator
/// and the system itself: `Operator`; trader: `Trader`; auditor: `ReadOnly`); the engine
/// enforces it, so the replicated log itself proves every change was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Authority {
    /// Anything: catalog, deposits, freezes, acting on any account or order.
    Operator,
    /// Only its own accounts and orders: open (as owner), transfer or withdraw from,
    /// place, cancel and amend orders, post or void its pending transfers.
    Trader,
    /// Nothing that changes state.
    ReadOnly,
}

/// Who sends a command, and when the leader received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Meta {
    /// Leader-assigned time.
    pub timestamp: crate::Timestamp,
    /// Who.
    pub principal: Principal,
    /// What they may do.
    pub authority: Authority,
}

impl Command {
    /// True for commands every shard applies (the catalog).
    pub fn is_catalog(&self) -> bool {
        matches!(self, Command::CreateAsset(_) | Command::CreateMarket(_))
    }
}

/// What an accepted command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Accepted {
    /// Fully applied.
    Done,
    /// Applied on this shard; the rest continues through cross-shard messages (a transfer
    /// whose credit account lives elsewhere).
    InFlight,
    /// The order got this id; matching happens at the market's shard.
    Order(OrderId),
}

/// A rejected command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Why.
    pub code: RejectCode,
    /// For linked batches, the index of the transfer that failed (0 otherwise).
    pub index: u32,
}

/// The answer to one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Accepted or rejected.
    pub result: Result<Accepted, Rejection>,
    /// True when this is a retry of an idempotency key already seen: `result` is the
    /// original answer and nothing was applied again.
    pub duplicate: bool,
}

impl Outcome {
    /// Accepted, first time.
    pub fn ok(a: Accepted) -> Outcome {
        Outcome {
            result: Ok(a),
            duplicate: false,
        }
    }

    /// Rejected, first time.
    pub fn rejected(code: RejectCode) -> Outcome {
        Outcome {
            result: Err(Rejection { code, index: 0 }),
            duplicate: false,
        }
    }

    /// The rejection code, if any.
    pub fn code(&self) -> Option<RejectCode> {
        self.result.err().map(|r| r.code)
    }
}
