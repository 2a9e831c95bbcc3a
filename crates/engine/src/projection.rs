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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::LocalCluster;

    fn meta(ms: u64) -> Meta {
        Meta {
            timestamp: Timestamp(ms * 1_000_000),
            principal: Principal(1),
            authority: Authority::Operator,
        }
    }

    #[test]
    fn history_over_a_time_range_and_as_of() {
        let usd = AssetId(1);
        let (a, b) = (AccountId(1), AccountId(2));
        let mut c = LocalCluster::new(2, true);
        c.submit(
            meta(1),
            Command::CreateAsset(Asset {
                id: usd,
                code: "USD".into(),
                scale: 2,
            }),
        );
        for acc in [a, b] {
            c.submit(
                meta(2),
                Command::OpenAccount {
                    account: acc,
                    owner: Principal(acc.0),
                },
            );
        }
        c.submit(
            meta(10),
            Command::Deposit {
                id: TransferId(1),
                account: a,
                asset: usd,
                amount: Amount(100),
            },
        );
        let t = |id, amount| {
            Command::Transfer(TransferSpec {
                id: TransferId(id),
                debit: a,
                credit: b,
                asset: usd,
                amount: Amount(amount),
                balancing: false,
            })
        };
        c.submit(meta(20), t(2, 30));
        c.pump(Timestamp(25_000_000));
        c.submit(meta(30), t(3, 50));
        c.pump(Timestamp(35_000_000));
        let mut h = BalanceHistory::new();
        for s in 0..2 {
            for r in c.events(ShardId(s)) {
                h.apply(r);
            }
        }
        let avail = |pts: &[BalancePoint]| {
            pts.iter()
                .map(|p| (p.timestamp.0 / 1_000_000, p.available.0, p.held.0))
                .collect::<Vec<_>>()
        };
        // Account 1 (shard 1): deposit, then each cross-shard transfer holds, then finalizes.
        assert_eq!(
            avail(h.range(a, usd, Timestamp(0), Timestamp(u64::MAX))),
            vec![
                (10, 100, 0),
                (20, 70, 30),
                (25, 70, 0),
                (30, 20, 50),
                (35, 20, 0)
            ]
        );
        assert_eq!(
            avail(h.range(a, usd, Timestamp(20_000_000), Timestamp(30_000_000))),
            vec![(20, 70, 30), (25, 70, 0)]
        );
        // Account 2 (shard 0): credited when the messages arrive.
        assert_eq!(
            avail(h.range(b, usd, Timestamp(0), Timestamp(u64::MAX))),
            vec![(25, 30, 0), (35, 80, 0)]
        );
        assert_eq!(
            h.as_of(a, usd, Timestamp(9_000_000)),
            (Amount(0), Amount(0))
        );
        assert_eq!(
            h.as_of(a, usd, Timestamp(22_000_000)),
            (Amount(70), Amount(30))
        );
        assert_eq!(
            h.as_of(b, usd, Timestamp(u64::MAX)),
            (Amount(80), Amount(0))
        );
        assert!(h
            .range(AccountId(9), usd, Timestamp(0), Timestamp(u64::MAX))
            .is_empty());
    }
}
