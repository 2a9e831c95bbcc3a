//! Business rejections: values, not errors. Codes are stable forever; never renumber.

use serde::{Deserialize, Serialize};

macro_rules! reject_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $msg:literal; )*) => {
        /// Why a command (or one transfer of a batch, or one message) was rejected.
        ///
        /// The numeric code is part of the public API (gRPC, REST, FIX text, events on disk)
        /// and is stable: new variants get new numbers, old numbers are never reused.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[repr(u16)]
        pub enum RejectCode {
            $( $(#[$doc])* $name = $code, )*
        }

        impl RejectCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [RejectCode] = &[$(RejectCode::$name,)*];

            /// The stable numeric code.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The variant for a numeric code, if it exists.
            pub fn from_code(code: u16) -> Option<RejectCode> {
                match code {
                    $( $code => Some(RejectCode::$name), )*
                    _ => None,
                }
            }

            /// A short, human-readable explanation.
            pub fn message(self) -> &'static str {
                match self {
                    $( RejectCode::$name => $msg, )*
                }
            }
        }
    };
}

reject_codes! {
    /// The account does not exist.
    UnknownAccount = 1, "unknown account";
    /// The asset does not exist in the catalog.
    UnknownAsset = 2, "unknown asset";
    /// The market does not exist in the catalog.
    UnknownMarket = 3, "unknown market";
    /// The order does not exist (or is no longer open).
    UnknownOrder = 4, "unknown or closed order";
    /// The transfer (pending transfer) does not exist.
    UnknownTransfer = 5, "unknown transfer";
    /// Available balance is too small.
    InsufficientFunds = 10, "insufficient funds";
    /// Amount or quantity is zero.
    ZeroAmount = 11, "amount must be greater than zero";
    /// Amount is above AMOUNT_MAX or a sum would overflow.
    AmountOverflow = 12, "amount too large or balance would overflow";
    /// The id is already taken (account, asset, market, transfer with different content).
    DuplicateId = 13, "id already exists";
    /// The account is frozen.
    AccountFrozen = 14, "account is frozen";
    /// The account is closed.
    AccountClosed = 15, "account is closed";
    /// A limit was exceeded (see the named `_MAX` constants).
    LimitExceeded = 16, "limit exceeded";
    /// Debit and credit account are the same.
    SameAccount = 17, "debit and credit account must differ";
    /// Account cannot be closed while it holds funds or open orders.
    AccountNotEmpty = 18, "account still holds funds or open orders";
    /// Principal may not act on this account or order.
    NotOwner = 19, "principal does not own this account or order";
    /// Another transfer of the linked batch failed, so this one was not applied.
    LinkedEventFailed = 20, "another transfer in the linked batch failed";
    /// The pending transfer was already posted, voided or expired.
    PendingNotOpen = 21, "pending transfer is no longer open";
    /// Post amount exceeds the pending amount.
    PostExceedsPending = 22, "post amount exceeds the pending amount";
    /// Timeout is zero or above PENDING_TIMEOUT_MS_MAX.
    InvalidTimeout = 23, "invalid timeout";
    /// Linked batches must keep every account on the receiving shard.
    LinkedCrossShard = 24, "linked batch spans shards";
    /// The account or market is not owned by this shard (routing error: retry elsewhere).
    WrongShard = 25, "not owned by this shard";
    /// Account is not frozen (unfreeze) or already frozen (freeze).
    InvalidAccountState = 26, "account is not in a state that allows this";
    /// Asset code or scale is invalid.
    InvalidAsset = 27, "invalid asset definition";
    /// Market parameters are invalid (same asset twice, zero tick or lot, fee or collar too big).
    InvalidMarket = 28, "invalid market definition";
    /// The market is halted.
    MarketHalted = 40, "market is halted";
    /// Price is zero or not a multiple of the tick size.
    InvalidPrice = 41, "price is not a positive multiple of the tick size";
    /// Quantity is not a multiple of the lot size.
    InvalidQuantity = 42, "quantity is not a positive multiple of the lot size";
    /// Quantity is below the market's minimum order size.
    QuantityTooSmall = 43, "quantity below the market minimum";
    /// Quantity is above the market's maximum order size.
    QuantityTooLarge = 44, "quantity above the market maximum";
    /// Limit price is outside the market's price collar.
    PriceOutsideCollar = 45, "price outside the collar";
    /// A post-only order would have taken liquidity.
    PostOnlyWouldTake = 46, "post-only order would cross the book";
    /// A fill-or-kill order could not be filled completely.
    FokNotFilled = 47, "fill-or-kill order cannot be filled completely";
    /// The client order id was already used by this account with different content.
    DuplicateClientOrderId = 48, "client order id already used";
    /// Time in force not allowed for this order type (e.g. market GTC).
    InvalidTimeInForce = 49, "time in force not allowed for this order type";
    /// Amend would not change anything, or asks for an impossible quantity.
    InvalidAmend = 50, "amend changes nothing or is invalid";
    /// The order was cancelled by self-trade prevention before it could rest or fill.
    SelfTrade = 51, "self-trade prevented";
    /// Market orders need a protection price for buys.
    MissingProtectionPrice = 52, "market buy needs a protection price";
    /// The order was already cancelled or filled.
    OrderClosed = 53, "order already closed";
    /// The market is not halted (resume) or already halted (halt).
    InvalidMarketState = 54, "market is not in a state that allows this";
    /// The book has no liquidity for a market order.
    NoLiquidity = 55, "no liquidity";
    /// The credit side of a cross-shard transfer refused it (see the event for the cause).
    CreditRefused = 60, "credit account refused the transfer";
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

impl std::error::Error for RejectCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &c in RejectCode::ALL {
            assert!(seen.insert(c.code()), "duplicate code {}", c.code());
            assert_eq!(RejectCode::from_code(c.code()), Some(c));
        }
        assert_eq!(RejectCode::from_code(0), None);
        assert_eq!(RejectCode::from_code(9999), None);
    }

    #[test]
    fn codes_are_stable() {
        // These numbers are public API; this test fails if anyone renumbers them.
        assert_eq!(RejectCode::UnknownAccount.code(), 1);
        assert_eq!(RejectCode::InsufficientFunds.code(), 10);
        assert_eq!(RejectCode::MarketHalted.code(), 40);
        assert_eq!(RejectCode::SelfTrade.code(), 51);
        assert_eq!(RejectCode::CreditRefused.code(), 60);
        assert_eq!(
            RejectCode::InsufficientFunds.to_string(),
            "insufficient funds (10)"
        );
    }
}
