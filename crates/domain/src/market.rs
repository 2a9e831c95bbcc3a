//! Market definitions and the integer arithmetic of notional, fees and holds.
//!
//! Every shard computes holds and settlements with these functions, so an account's shard
//! and a market's shard agree to the minor unit without talking.

use crate::{AccountId, Amount, AssetId, MarketId, Price, Qty, RejectCode, ShardId, Side};
use crate::{COLLAR_BPS_MAX, FEE_BPS_MAX};
use serde::{Deserialize, Serialize};

/// A market: a base/quote pair with its trading rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MarketSpec {
    /// Its id.
    pub id: MarketId,
    /// What is bought and sold (e.g. BTC).
    pub base: AssetId,
    /// What it is paid with (e.g. USD).
    pub quote: AssetId,
    /// Quantities are multiples of this many base minor units (one lot).
    pub lot_size: u64,
    /// Prices (quote minor units per lot) are multiples of this.
    pub tick_size: u64,
    /// Smallest order quantity (base minor units).
    pub min_qty: Qty,
    /// Largest order quantity (base minor units).
    pub max_qty: Qty,
    /// Fee charged to the resting side of a trade, in basis points of the notional.
    pub maker_fee_bps: u32,
    /// Fee charged to the incoming side of a trade, in basis points of the notional.
    pub taker_fee_bps: u32,
    /// Account (in the quote asset) that collects fees.
    pub fee_account: AccountId,
    /// Limit prices must lie within this many basis points of the last trade price
    /// (0 = no collar). Market orders never trade outside the band either.
    pub collar_bps: u32,
    /// The shard that owns this market's book.
    pub shard: ShardId,
}

impl MarketSpec {
    /// Checks the static parameters.
    pub fn validate(&self) -> Result<(), RejectCode> {
        let ok = self.base != self.quote
            && self.lot_size > 0
            && self.tick_size > 0
            && self.min_qty.0 > 0
            && self.min_qty <= self.max_qty
            && self.min_qty.0.is_multiple_of(self.lot_size)
            && self.max_qty.0.is_multiple_of(self.lot_size)
            && self.max_qty.0 <= crate::AMOUNT_MAX
            && self.maker_fee_bps <= FEE_BPS_MAX
            && self.taker_fee_bps <= FEE_BPS_MAX
            && self.collar_bps <= COLLAR_BPS_MAX
            && self.fee_account.0 != 0;
        if ok {
            Ok(())
        } else {
            Err(RejectCode::InvalidMarket)
        }
    }

    /// Larger of the two fee rates: what a hold must cover.
    pub fn fee_bps_max(&self) -> u32 {
        self.maker_fee_bps.max(self.taker_fee_bps)
    }

    /// Quote minor units for `qty` at `price`: `qty / lot_size * price`.
    pub fn notional(&self, qty: Qty, price: Price) -> Result<Amount, RejectCode> {
        let lots = (qty.0 / self.lot_size) as u128;
        let n = lots * price.0 as u128;
        if n > crate::AMOUNT_MAX as u128 {
            return Err(RejectCode::AmountOverflow);
        }
        Ok(Amount(n as u64))
    }

    /// Fee on a notional at `bps`, rounded down.
    pub fn fee(notional: Amount, bps: u32) -> Amount {
        Amount(((notional.0 as u128 * bps as u128) / 10_000) as u64)
    }

    /// What an order must hold before it may rest or trade: for a buy, the notional at its
    /// (limit or protection) price plus the largest fee; for a sell, the base quantity.
    /// Returns (asset, amount).
    pub fn hold_for(
        &self,
        side: Side,
        qty: Qty,
        price: Price,
    ) -> Result<(AssetId, Amount), RejectCode> {
        match side {
            Side::Buy => {
                let n = self.notional(qty, price)?;
                let f = Self::fee(n, self.fee_bps_max());
                let total = n.checked_add(f).ok_or(RejectCode::AmountOverflow)?;
                if total.0 > crate::AMOUNT_MAX {
                    return Err(RejectCode::AmountOverflow);
                }
                Ok((self.quote, total))
            }
            Side::Sell => Ok((self.base, Amount(qty.0))),
        }
    }

    /// Checks quantity rules (lot, min, max).
    pub fn check_qty(&self, qty: Qty) -> Result<(), RejectCode> {
        if qty.0 == 0 || !qty.0.is_multiple_of(self.lot_size) {
            return Err(RejectCode::InvalidQuantity);
        }
        if qty < self.min_qty {
            return Err(RejectCode::QuantityTooSmall);
        }
        if qty > self.max_qty {
            return Err(RejectCode::QuantityTooLarge);
        }
        Ok(())
    }

    /// Checks price rules (positive multiple of the tick).
    pub fn check_price(&self, price: Price) -> Result<(), RejectCode> {
        if price.0 == 0 || !price.0.is_multiple_of(self.tick_size) || price.0 > crate::AMOUNT_MAX {
            return Err(RejectCode::InvalidPrice);
        }
        Ok(())
    }

    /// The collar band `[low, high]` around a reference price, or `None` if no collar applies.
    pub fn collar(&self, reference: Option<Price>) -> Option<(Price, Price)> {
        let r = reference?;
        if self.collar_bps == 0 {
            return None;
        }
        let delta = (r.0 as u128 * self.collar_bps as u128 / 10_000) as u64;
        Some((
            Price(r.0.saturating_sub(delta)),
            Price(r.0.saturating_add(delta)),
        ))
    }
}

/// Order type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderType {
    /// Trades at its price or better; may rest.
    Limit,
    /// Trades at any price up to its protection price (buys need one); never rests.
    Market,
}

/// Time in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeInForce {
    /// Good till cancelled: the rest rests on the book.
    Gtc,
    /// Immediate or cancel: the rest is cancelled.
    Ioc,
    /// Fill or kill: all at once or nothing.
    Fok,
}

/// Self-trade prevention: what happens when an order would trade against an order of
/// the same owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelfTradePrevention {
    /// Cancel the resting order and keep matching (the default).
    CancelResting,
    /// Cancel the rest of the incoming order.
    CancelIncoming,
    /// Cancel both.
    CancelBoth,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MarketSpec {
        MarketSpec {
            id: MarketId(1),
            base: AssetId(1),
            quote: AssetId(2),
            lot_size: 100,
            tick_size: 5,
            min_qty: Qty(100),
            max_qty: Qty(1_000_000),
            maker_fee_bps: 10,
            taker_fee_bps: 20,
            fee_account: AccountId(9),
            collar_bps: 1_000,
            shard: ShardId(0),
        }
    }

    #[test]
    fn hold_covers_price_and_worst_fee() {
        let s = spec();
        // 3 lots at 1000 = 3000 notional, 20 bps fee = 6.
        assert_eq!(
            s.hold_for(Side::Buy, Qty(300), Price(1000)),
            Ok((AssetId(2), Amount(3006)))
        );
        assert_eq!(
            s.hold_for(Side::Sell, Qty(300), Price(1000)),
            Ok((AssetId(1), Amount(300)))
        );
        assert_eq!(
            s.hold_for(Side::Buy, Qty(1 << 40), Price(1 << 40)),
            Err(RejectCode::AmountOverflow)
        );
    }

    #[test]
    fn rules() {
        let s = spec();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.check_qty(Qty(150)), Err(RejectCode::InvalidQuantity));
        assert_eq!(s.check_qty(Qty(0)), Err(RejectCode::InvalidQuantity));
        assert_eq!(
            s.check_qty(Qty(2_000_000)),
            Err(RejectCode::QuantityTooLarge)
        );
        assert_eq!(s.check_price(Price(7)), Err(RejectCode::InvalidPrice));
        assert_eq!(s.collar(Some(Price(1000))), Some((Price(900), Price(1100))));
        assert_eq!(s.collar(None), None);
        let mut bad = s.clone();
        bad.quote = bad.base;
        assert_eq!(bad.validate(), Err(RejectCode::InvalidMarket));
    }
}
