//! Where accounts and markets live, and which shard a command goes to.

use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The shard map: accounts go to `id % shard_count` unless assigned explicitly, then
/// follow the splits that moved them; markets name their shard in their [`MarketSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    shard_count: u32,
    accounts: BTreeMap<AccountId, ShardId>,
    splits: Vec<Split>,
}

/// A split: the accounts `parent` owned whose id is `residue` modulo `modulus`, and the
/// markets it names, moved to the new shard `child` (docs/design/0014-splitting-a-shard.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The shard that gave the accounts.
    pub parent: ShardId,
    /// The shard made for them.
    pub child: ShardId,
    /// Accounts `parent` owned with `id % modulus == residue` moved; 0 (with residue 0):
    /// no account moved, only markets.
    pub modulus: u64,
    /// See `modulus`.
    pub residue: u64,
    /// Markets `parent` held that moved with their books (sorted, at most
    /// [`SPLIT_MARKETS_MAX`]).
    pub markets: Vec<MarketId>,
}

/// Every shard that has owned `market`, starting at `shard`, oldest first: `shard`, then
/// each child that `splits` (oldest first) moved it to.
pub fn market_path(splits: &[Split], market: MarketId, shard: ShardId) -> Vec<ShardId> {
    let mut path = vec![shard];
    let mut at = shard;
    // A child comes after its parent, so one pass follows a chain of splits.
    for s in splits {
        if s.parent == at && s.markets.binary_search(&market).is_ok() {
            at = s.child;
            path.push(at);
        }
    }
    path
}

/// Why a split was refused (every case leaves the placement unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SplitError {
    /// The split was given to a shard other than its parent.
    #[error("the split names shard {0} as its parent, not this shard")]
    WrongParent(ShardId),
    /// The child id is in use (a base shard or an earlier split's child), or is not below
    /// [`SHARD_COUNT_MAX`].
    #[error("shard {0} already exists or is out of range")]
    ChildExists(ShardId),
    /// The parent is not a shard of this placement.
    #[error("shard {0} is not in the placement")]
    UnknownParent(ShardId),
    /// `modulus` is 1 or above [`SPLIT_MODULUS_MAX`], `residue` is not below it (or not 0
    /// with modulus 0), or the split moves nothing (modulus 0 and no market).
    #[error("split rule {residue} mod {modulus} is invalid")]
    Rule {
        /// Modulus asked.
        modulus: u64,
        /// Residue asked.
        residue: u64,
    },
    /// The placement already has [`SPLITS_MAX`] splits.
    #[error("the placement already has the most splits it may have")]
    TooMany,
    /// The markets are not sorted without repeats, or more than [`SPLIT_MARKETS_MAX`].
    #[error("the split's markets must be sorted, without repeats, at most {SPLIT_MARKETS_MAX}")]
    Markets,
    /// A market the split names does not live on the parent.
    #[error("market {0} does not live on the shard that splits")]
    MarketNotHere(MarketId),
}

/// The version 1 snapshot form of a [`Placement`] (before splits), still read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementV1 {
    shard_count: u32,
    accounts: BTreeMap<AccountId, ShardId>,
}

impl TryFrom<Placement> for PlacementV1 {
    type Error = Placement;
    /// The version 1 form, if the placement has no split.
    fn try_from(p: Placement) -> Result<PlacementV1, Placement> {
        if !p.splits.is_empty() {
            return Err(p);
        }
        Ok(PlacementV1 {
            shard_count: p.shard_count,
            accounts: p.accounts,
        })
    }
}

impl From<PlacementV1> for Placement {
    fn from(v: PlacementV1) -> Placement {
        Placement {
            shard_count: v.shard_count,
            accounts: v.accounts,
            splits: Vec::new(),
        }
    }
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
            splits: Vec::new(),
        }
    }

    /// The placement of `base` shards after `splits`, in order, the `k`-th of which made
    /// shard `base + k` (how the cluster map names the shards it makes); why not, naming
    /// the split, when they do not fit.
    pub fn with_splits(base: u32, splits: &[Split]) -> Result<Placement, String> {
        if !(1..=SHARD_COUNT_MAX).contains(&base) {
            return Err(format!("{base} base shards"));
        }
        let mut placement = Placement::new(base);
        for (k, split) in splits.iter().enumerate() {
            if split.child.0 != base + k as u32 {
                return Err(format!("split {k} made shard {}", split.child));
            }
            placement
                .split(split.clone())
                .map_err(|e| format!("split {k}: {e}"))?;
        }
        Ok(placement)
    }

    /// Pins an account to a base shard (before it is opened; splits then apply to it as
    /// to any account of that shard).
    pub fn assign(&mut self, account: AccountId, shard: ShardId) {
        assert!(shard.0 < self.shard_count, "shard outside the placement");
        self.accounts.insert(account, shard);
    }

    /// One more than the highest shard id this placement knows: the base shards and the
    /// children of the splits it has seen (a shard learns the splits of its ancestors and
    /// its own, not those elsewhere).
    pub fn shard_count(&self) -> u32 {
        self.splits
            .iter()
            .map(|s| s.child.0 + 1)
            .fold(self.shard_count, u32::max)
    }

    /// The shards the cluster was formed with (markets live on these).
    pub fn base_shard_count(&self) -> u32 {
        self.shard_count
    }

    /// The splits, oldest first.
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// True if `shard` is a base shard or the child of a known split.
    pub fn knows(&self, shard: ShardId) -> bool {
        shard.0 < self.shard_count || self.splits.iter().any(|s| s.child == shard)
    }

    /// Records a split: from now on the accounts `parent` owns with
    /// `id % modulus == residue` belong to `child`.
    pub fn split(&mut self, split: Split) -> Result<(), SplitError> {
        if self.splits.len() >= SPLITS_MAX {
            return Err(SplitError::TooMany);
        }
        if !self.knows(split.parent) {
            return Err(SplitError::UnknownParent(split.parent));
        }
        if self.knows(split.child) || split.child.0 >= SHARD_COUNT_MAX {
            return Err(SplitError::ChildExists(split.child));
        }
        let accounts_only = (2..=SPLIT_MODULUS_MAX).contains(&split.modulus);
        let rule_ok = if split.modulus == 0 {
            split.residue == 0 && !split.markets.is_empty()
        } else {
            accounts_only && split.residue < split.modulus
        };
        if !rule_ok {
            return Err(SplitError::Rule {
                modulus: split.modulus,
                residue: split.residue,
            });
        }
        if split.markets.len() > SPLIT_MARKETS_MAX || split.markets.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(SplitError::Markets);
        }
        self.splits.push(split);
        Ok(())
    }

    /// The shard that holds `market`'s book, given the shard its [`MarketSpec`] names
    /// (`home`): there, unless splits moved it on.
    #[inline]
    pub fn market_shard(&self, market: MarketId, home: ShardId) -> ShardId {
        let mut shard = home;
        for s in &self.splits {
            if s.parent == shard && s.markets.binary_search(&market).is_ok() {
                shard = s.child;
            }
        }
        shard
    }

    /// Every shard that has owned `market` (created on `home`), oldest first: `home`,
    /// then each child a split moved it to ([`market_path`]).
    pub fn market_shards(&self, market: MarketId, home: ShardId) -> Vec<ShardId> {
        market_path(&self.splits, market, home)
    }

    /// The shard that owns `account`.
    #[inline]
    pub fn account_shard(&self, account: AccountId) -> ShardId {
        let mut shard = ShardId((account.0 % self.shard_count as u64) as u32);
        if !self.accounts.is_empty() {
            if let Some(s) = self.accounts.get(&account) {
                shard = *s;
            }
        }
        // A child comes after its parent, so one pass follows a chain of splits.
        for s in &self.splits {
            if s.parent == shard && s.modulus != 0 && account.0 % s.modulus == s.residue {
                shard = s.child;
            }
        }
        shard
    }

    /// Most net deposits of one asset `shard` may take: the base shards share `u64::MAX`
    /// equally, and a split gives half of its parent's share to the child, so the shares
    /// of all shards never sum to more than `u64::MAX`.
    pub fn supply_max(&self, shard: ShardId) -> u64 {
        let mut shares: BTreeMap<ShardId, u64> = BTreeMap::new();
        let base = u64::MAX / self.shard_count as u64;
        let share =
            |s: ShardId, shares: &mut BTreeMap<ShardId, u64>| *shares.entry(s).or_insert(base);
        for s in &self.splits {
            let parent = share(s.parent, &mut shares);
            shares.insert(s.child, parent / 2);
            shares.insert(s.parent, parent - parent / 2);
        }
        share(shard, &mut shares)
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
    let mkt = |m: MarketId| {
        Route::Shard(
            markets
                .get(&m)
                .map(|s| placement.market_shard(m, s.shard))
                .unwrap_or(ShardId(0)),
        )
    };
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

    fn split(parent: u32, child: u32, modulus: u64, residue: u64) -> Split {
        Split {
            parent: ShardId(parent),
            child: ShardId(child),
            modulus,
            residue,
            markets: vec![],
        }
    }

    #[test]
    fn splits_move_part_of_a_shard_and_chain() {
        let mut p = Placement::new(2);
        p.assign(AccountId(8), ShardId(1));
        // Shard 1 owns the odd ids and 8; those that are 3 mod 4 go to shard 5, with
        // markets 4 and 6.
        p.split(Split {
            markets: vec![MarketId(4), MarketId(6)],
            ..split(1, 5, 4, 3)
        })
        .unwrap();
        // Shard 5's ids that are 7 mod 8 go on to shard 2, with market 6.
        p.split(Split {
            markets: vec![MarketId(6)],
            ..split(5, 2, 8, 7)
        })
        .unwrap();
        let m = |id: u32, home: u32| p.market_shard(MarketId(id), ShardId(home)).0;
        assert_eq!(
            [m(4, 1), m(6, 1), m(5, 1), m(4, 0), m(6, 5)],
            [5, 2, 1, 0, 2],
            "a market follows its shard's splits only"
        );
        let owners: Vec<u32> = (0..16).map(|a| p.account_shard(AccountId(a)).0).collect();
        assert_eq!(
            owners,
            vec![0, 1, 0, 5, 0, 1, 0, 2, 1, 1, 0, 5, 0, 1, 0, 2],
            "8 is pinned to 1 and is 0 mod 4, so it stays"
        );
        assert_eq!((p.shard_count(), p.base_shard_count()), (6, 2));
        assert!(p.knows(ShardId(5)) && p.knows(ShardId(2)) && !p.knows(ShardId(3)));
        // Shares of the supply: the parent keeps half, the child takes half.
        let half = u64::MAX / 2;
        assert_eq!(p.supply_max(ShardId(0)), half);
        assert_eq!(p.supply_max(ShardId(1)), half - half / 2);
        assert_eq!(p.supply_max(ShardId(5)), half / 2 - half / 4);
        assert_eq!(p.supply_max(ShardId(2)), half / 4);
        let sum: u128 = [0, 1, 5, 2]
            .map(|s| p.supply_max(ShardId(s)) as u128)
            .iter()
            .sum();
        assert!(sum <= u64::MAX as u128);
        // Shard 0 gives market 9 and no account to shard 7.
        p.split(Split {
            markets: vec![MarketId(9)],
            ..split(0, 7, 0, 0)
        })
        .unwrap();
        assert_eq!(p.market_shard(MarketId(9), ShardId(0)), ShardId(7));
        let after: Vec<u32> = (0..16).map(|a| p.account_shard(AccountId(a)).0).collect();
        assert_eq!(after, owners, "no account moved");
    }

    #[test]
    fn bad_splits_are_refused_and_change_nothing() {
        let mut p = Placement::new(2);
        p.split(split(0, 2, 2, 0)).unwrap();
        let before = p.clone();
        for (s, why) in [
            (split(3, 4, 2, 0), SplitError::UnknownParent(ShardId(3))),
            (split(0, 1, 2, 0), SplitError::ChildExists(ShardId(1))),
            (split(0, 2, 2, 0), SplitError::ChildExists(ShardId(2))),
            (
                split(0, SHARD_COUNT_MAX, 2, 0),
                SplitError::ChildExists(ShardId(SHARD_COUNT_MAX)),
            ),
            (
                split(0, 4, 1, 0),
                SplitError::Rule {
                    modulus: 1,
                    residue: 0,
                },
            ),
            (
                split(0, 4, 4, 4),
                SplitError::Rule {
                    modulus: 4,
                    residue: 4,
                },
            ),
            (
                split(0, 4, SPLIT_MODULUS_MAX + 1, 0),
                SplitError::Rule {
                    modulus: SPLIT_MODULUS_MAX + 1,
                    residue: 0,
                },
            ),
            (
                split(0, 4, 0, 0),
                SplitError::Rule {
                    modulus: 0,
                    residue: 0,
                },
            ),
            (
                Split {
                    markets: vec![MarketId(1)],
                    ..split(0, 4, 0, 1)
                },
                SplitError::Rule {
                    modulus: 0,
                    residue: 1,
                },
            ),
            (
                Split {
                    markets: vec![MarketId(2), MarketId(1)],
                    ..split(0, 4, 2, 0)
                },
                SplitError::Markets,
            ),
            (
                Split {
                    markets: vec![MarketId(1), MarketId(1)],
                    ..split(0, 4, 2, 0)
                },
                SplitError::Markets,
            ),
            (
                Split {
                    markets: (0..=SPLIT_MARKETS_MAX as u32).map(MarketId).collect(),
                    ..split(0, 4, 2, 0)
                },
                SplitError::Markets,
            ),
        ] {
            assert_eq!(p.split(s.clone()), Err(why), "{s:?}");
            assert_eq!(p, before);
        }
        for n in 1..SPLITS_MAX as u32 {
            p.split(split(0, 2 + n, 2, 0)).unwrap();
        }
        assert_eq!(p.split(split(0, 999, 2, 0)), Err(SplitError::TooMany));
    }
}
