//! Where accounts and markets live, and which shard a command goes to.

use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The shard map: accounts go to `id % shard_count` unless assigned explicitly; markets
/// name their shard in their [`MarketSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    shard_count: u32,
    accounts: BTreeMap<AccountId, ShardId>,
}

impl Placement {
    /// `shard_count` shards, accounts spread by id.
    pub fn new(shard_count: u32) -> Placement {
        assert!(
            (1..=SHARD_COUNT_MAX).contains(&shard_count),
            "shard count out of range"
        );
        Placement {
            shard_count,
            accounts: BTreeMap::new(),
        }
    }

    /// Pins an account to a shard (before it is opened).
    pub fn assign(&mut self, account: AccountId, shard: ShardId) {
        assert!(shard.0 < self.shard_count, "shard outside the placement");
        self.accounts.insert(account, shard);
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// The shard that owns `account`.
    #[inline]
    pub fn account_shard(&self, account: AccountId) -> ShardId {
        if !self.accounts.is_empty() {
            if let Some(s) = self.accounts.get(&account) {
                return *s;
            }
        }
        ShardId((account.0 % self.shard_count as u64) as u32)
    }
}

/// Where a command must be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Every shard (catalog commands).
    All,
    /// One shard.
    Shard(ShardId),
}

/// Routes a command. Market-scoped commands need the market catalog; an unknown market
/// routes to shard 0, which rejects it with `UnknownMarket`.
pub fn route(
    cmd: &Command,
    placement: &Placement,
    markets: &BTreeMap<MarketId, MarketSpec>,
) -> Route {
    let acc = |a: AccountId| Route::Shard(placement.account_shard(a));
    let mkt = |m: MarketId| Route::Shard(markets.get(&m).map(|s| s.shard).unwrap_or(ShardId(0)));
    match cmd {
        Command::CreateAsset(_) | Command::CreateMarket(_) => Route::All,
        Command::OpenAccount { account, .. }
        | Command::Deposit { account, .. }
        | Command::Withdraw { account, .. }
        | Command::FreezeAccount { account }
        | Command::UnfreezeAccount { account }
        | Command::CloseAccount { account } => acc(*account),
        Command::Transfer(t) => acc(t.debit),
        Command::LinkedTransfers(b) => b
            .first()
            .map(|t| acc(t.debit))
            .unwrap_or(Route::Shard(ShardId(0))),
        Command::CreatePending { spec, .. } => acc(spec.debit),
        Command::PostPending { debit, .. } | Command::VoidPending { debit, .. } => acc(*debit),
        Command::PlaceOrder(o) => acc(o.account),
        Command::CancelOrder { market, .. }
        | Command::AmendOrder { market, .. }
        | Command::HaltMarket { market }
        | Command::ResumeMarket { market } => mkt(*market),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_spread_and_pin() {
        let mut p = Placement::new(4);
        assert_eq!(p.account_shard(AccountId(6)), ShardId(2));
        p.assign(AccountId(6), ShardId(1));
        assert_eq!(p.account_shard(AccountId(6)), ShardId(1));
        assert_eq!(p.account_shard(AccountId(7)), ShardId(3));
    }
}
