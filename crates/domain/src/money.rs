//! Identifiers and integer money. No floats, checked arithmetic only.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub $inner);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// An account, chosen by the client. Zero is not a valid id.
    AccountId(u64)
);
id_type!(
    /// An asset in the catalog (USD, BTC, ...).
    AssetId(u32)
);
id_type!(
    /// A market (base/quote pair) in the catalog.
    MarketId(u32)
);
id_type!(
    /// An order, assigned by the shard that accepted it: `shard << 48 | counter`, so ids
    /// are unique across the cluster without coordination.
    OrderId(u64)
);
id_type!(
    /// A transfer (plain, pending or cross-shard), chosen by the client: it is the
    /// idempotency key of the transfer.
    TransferId(u64)
);
id_type!(
    /// A shard (one state machine, later one Raft group).
    ShardId(u32)
);
id_type!(
    /// Who caused a command: the authenticated user or API key. `Principal::SYSTEM` is the
    /// engine itself (timeouts, settlement).
    Principal(u64)
);
id_type!(
    /// Leader-assigned time of an input, nanoseconds since the Unix epoch. The engine never
    /// reads a clock: time only arrives with inputs.
    Timestamp(u64)
);

impl Principal {
    /// The engine itself.
    pub const SYSTEM: Principal = Principal(0);
}

impl OrderId {
    /// Number of bits of the per-shard counter.
    pub const COUNTER_BITS: u32 = 48;

    /// The id of the `counter`-th order accepted by `shard`.
    pub fn new(shard: ShardId, counter: u64) -> OrderId {
        assert!(
            counter < (1 << Self::COUNTER_BITS),
            "order counter overflow"
        );
        OrderId(((shard.0 as u64) << Self::COUNTER_BITS) | counter)
    }

    /// The shard that assigned this id (the shard of the order's account).
    pub fn shard(self) -> ShardId {
        ShardId((self.0 >> Self::COUNTER_BITS) as u32)
    }
}

impl Timestamp {
    /// `self + ms` milliseconds, saturating (far future is "never").
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms.saturating_mul(1_000_000)))
    }
}

/// An amount of an asset in minor units (cents, satoshis).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Amount(pub u64);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// `self + rhs`, or `None` on overflow.
    #[inline]
    pub fn checked_add(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_add(rhs.0).map(Amount)
    }

    /// `self - rhs`, or `None` if it would go negative.
    #[inline]
    pub fn checked_sub(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_sub(rhs.0).map(Amount)
    }

    /// True for zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A price: quote-asset minor units per lot of the base asset. Always a multiple of the
/// market's tick size.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Price(pub u64);

/// A quantity of the base asset in minor units. Always a multiple of the market's lot size.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Qty(pub u64);

impl std::fmt::Display for Price {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for Qty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Bid: pays quote, receives base.
    Buy,
    /// Ask: pays base, receives quote.
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// An asset in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Asset {
    /// Its id.
    pub id: AssetId,
    /// Ticker, e.g. "USD" (ASCII upper-case letters and digits).
    pub code: String,
    /// Decimal digits of the minor unit (USD: 2, BTC: 8).
    pub scale: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_id_packs_shard() {
        let id = OrderId::new(ShardId(7), 42);
        assert_eq!(id.shard(), ShardId(7));
        assert_eq!(id.0 & ((1 << 48) - 1), 42);
    }

    #[test]
    fn amount_checked() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount(3).checked_sub(Amount(2)), Some(Amount(1)));
    }
}
