//! Read models built from events alone (rebuildable from scratch by replaying them).

use std::collections::BTreeMap;
use tradelog_domain::*;

/// One point of an account's balance history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalancePoint {
    /// Leader time of the change.
    pub timestamp: Timestamp,
    /// Event sequence number of the change.
    pub seq: u64,
    /// Available after the change.
    pub available: Amount,
    /// Held after the change.
    pub held: Amount,
}

/// Per-account, per-asset balance history, queryable over a time range.
#[derive(Clone, Debug, Default)]
pub struct BalanceHistory {
    points: BTreeMap<(AccountId, AssetId), Vec<BalancePoint>>,
}

impl BalanceHistory {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one event (events must come in shard order).
    pub fn apply(&mut self, r: &EventRecord) {
        if let Event::Balance {
            account,
            asset,
            available,
            held,
        } = r.event
        {
            let v = self.points.entry((account, asset)).or_default();
            if let Some(last) = v.last() {
                assert!(last.seq < r.seq, "events fed out of order");
            }
            v.push(BalancePoint {
                timestamp: r.timestamp,
                seq: r.seq,
                available,
                held,
            });
        }
    }

    /// Changes with `from <= timestamp < to`, oldest first.
    pub fn range(
        &self,
        account: AccountId,
        asset: AssetId,
        from: Timestamp,
        to: Timestamp,
    ) -> &[BalancePoint] {
        let Some(v) = self.points.get(&(account, asset)) else {
            return &[];
        };
        let lo = v.partition_point(|p| p.timestamp < from);
        let hi = v.partition_point(|p| p.timestamp < to);
        &v[lo..hi.max(lo)]
    }

    /// The balance as of time `at` (after every change at or before it).
    pub fn as_of(&self, account: AccountId, asset: AssetId, at: Timestamp) -> (Amount, Amount) {
        let Some(v) = self.points.get(&(account, asset)) else {
            return (Amount::ZERO, Amount::ZERO);
        };
        let n = v.partition_point(|p| p.timestamp <= at);
        if n == 0 {
            (Amount::ZERO, Amount::ZERO)
        } else {
            (v[n - 1].available, v[n - 1].held)
        }
    }
}
