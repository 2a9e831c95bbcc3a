//! Test data shared by the test suites of the crates that wrap the engine (node, raft):
//! deterministic input streams. Enabled by the `testing` feature; never used by the
//! engine itself.

use crate::Input;
use tradelog_domain::*;

fn op(t: u64) -> Meta {
    Meta {
        timestamp: Timestamp(t),
        principal: Principal(1),
        authority: Authority::Operator,
    }
}

/// The catalog of both workloads, at time 1: assets 1 (USD) and 2 (BTC), and market 1
/// (BTC/USD on shard 0, fees to account 99).
fn catalog() -> Vec<Input> {
    let cmd = |command| Input::Command {
        meta: op(1),
        command,
    };
    vec![
        cmd(Command::CreateAsset(Asset {
            id: AssetId(1),
            code: "USD".into(),
            scale: 2,
        })),
        cmd(Command::CreateAsset(Asset {
            id: AssetId(2),
            code: "BTC".into(),
            scale: 8,
        })),
        cmd(Command::CreateMarket(MarketSpec {
            id: MarketId(1),
            base: AssetId(2),
            quote: AssetId(1),
            lot_size: 1,
            tick_size: 1,
            min_qty: Qty(1),
            max_qty: Qty(1_000),
            maker_fee_bps: 5,
            taker_fee_bps: 10,
            fee_account: SHARDED_FEE_ACCOUNT,
            collar_bps: 0,
            shard: ShardId(0),
        })),
    ]
}

/// The `i`-th order of the workloads: a GTC limit order of `account` on market 1, at
/// 90 + i % 20, for 1 + i % 5 units.
fn limit_order(account: u64, buy: bool, i: u64) -> Command {
    Command::PlaceOrder(NewOrder {
        account: AccountId(account),
        market: MarketId(1),
        side: if buy { Side::Buy } else { Side::Sell },
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(90 + i % 20),
        qty: Qty(1 + i % 5),
        post_only: false,
        client_order_id: 0,
        stp: SelfTradePrevention::CancelResting,
    })
}

/// A mixed workload for shard 0 of 1: assets, a market, 10 funded accounts, then `n`
/// batches of transfers and resting and crossing orders (`per_batch` inputs each).
pub fn workload(n: u64, per_batch: u64) -> Vec<Vec<Input>> {
    let cmd = |t, command| Input::Command {
        meta: op(t),
        command,
    };
    let mut batches = vec![catalog()];
    let mut b = vec![];
    for a in 1..=10u64 {
        b.push(cmd(
            2,
            Command::OpenAccount {
                account: AccountId(a),
                owner: Principal(a),
            },
        ));
        for asset in [1u32, 2] {
            b.push(cmd(
                2,
                Command::Deposit {
                    id: TransferId(a * 10 + asset as u64),
                    account: AccountId(a),
                    asset: AssetId(asset),
                    amount: Amount(1_000_000),
                },
            ));
        }
    }
    batches.push(b);
    let mut i = 0u64;
    for _ in 0..n {
        let mut batch = Vec::new();
        for _ in 0..per_batch {
            let a = 1 + i % 10;
            let c = if i.is_multiple_of(3) {
                Command::Transfer(TransferSpec {
                    id: TransferId(1_000 + i),
                    debit: AccountId(a),
                    credit: AccountId(1 + (i * 7) % 10),
                    asset: AssetId(1),
                    amount: Amount(1 + i % 50),
                    balancing: false,
                })
            } else {
                limit_order(a, i.is_multiple_of(2), i)
            };
            batch.push(cmd(10 + i, c));
            i += 1;
        }
        batches.push(batch);
    }
    batches
}

/// Accounts of [`sharded_workload`] (account `a` lives on shard `a % shards`).
pub const SHARDED_ACCOUNTS: u64 = 12;
/// The fee account of [`sharded_workload`]'s market.
pub const SHARDED_FEE_ACCOUNT: AccountId = AccountId(99);

/// A workload for every shard of `shards` (`Placement::new(shards)`): each shard's first
/// batch creates the assets and market 1 (on shard 0; catalog commands go to every shard)
/// and opens and funds the accounts it owns (of `1..=SHARDED_ACCOUNTS` and the fee
/// account); then `n` batches of `per_batch` inputs: transfers from its accounts to any
/// account (cross-shard when the credit lives elsewhere, refunded when it is not open
/// there yet) and orders of its accounts on market 1 (hold here, match on shard 0,
/// settle here). The shards' batches may be applied in any interleaving.
pub fn sharded_workload(shards: u32, n: u64, per_batch: u64) -> Vec<Vec<Vec<Input>>> {
    assert!(shards >= 1);
    let cmd = |t, command| Input::Command {
        meta: op(t),
        command,
    };
    let owned = |s: u32| {
        (1..=SHARDED_ACCOUNTS)
            .chain([SHARDED_FEE_ACCOUNT.0])
            .filter(move |a| a % u64::from(shards) == u64::from(s))
            .collect::<Vec<u64>>()
    };
    (0..shards)
        .map(|s| {
            let mut first = catalog();
            for a in owned(s) {
                first.push(cmd(
                    2,
                    Command::OpenAccount {
                        account: AccountId(a),
                        owner: Principal(a),
                    },
                ));
                for asset in [1u32, 2] {
                    first.push(cmd(
                        2,
                        Command::Deposit {
                            id: TransferId(a * 10 + u64::from(asset)),
                            account: AccountId(a),
                            asset: AssetId(asset),
                            amount: Amount(1_000_000),
                        },
                    ));
                }
            }
            let mine: Vec<u64> = owned(s)
                .into_iter()
                .filter(|a| *a != SHARDED_FEE_ACCOUNT.0)
                .collect();
            let mut batches = vec![first];
            let mut i = 0u64;
            for _ in 0..n {
                let mut batch = Vec::new();
                for _ in 0..per_batch {
                    let a = mine[(i % mine.len() as u64) as usize];
                    let c = if i.is_multiple_of(3) {
                        let mut credit = 1 + (i * 7 + u64::from(s)) % SHARDED_ACCOUNTS;
                        if credit == a {
                            credit = credit % SHARDED_ACCOUNTS + 1;
                        }
                        Command::Transfer(TransferSpec {
                            // Unique over every shard's workload.
                            id: TransferId(1_000 + i * u64::from(shards) + u64::from(s)),
                            debit: AccountId(a),
                            credit: AccountId(credit),
                            asset: AssetId(1),
                            amount: Amount(1 + i % 50),
                            balancing: false,
                        })
                    } else {
                        limit_order(a, (i + u64::from(s)).is_multiple_of(2), i)
                    };
                    batch.push(cmd(10 + i, c));
                    i += 1;
                }
                batches.push(batch);
            }
            batches
        })
        .collect()
}
