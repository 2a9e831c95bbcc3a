//! Shared workload for the engine's integration tests: a small exchange (accounts with
//! deposits, two markets) and random operations over it.

#![allow(dead_code)]

pub mod sim;

use proptest::prelude::*;
use tradelog_domain::*;

pub const USD: AssetId = AssetId(1);
pub const BTC: AssetId = AssetId(2);
pub const ETH: AssetId = AssetId(3);
pub const FEE_ACCOUNT: AccountId = AccountId(999);
pub const ACCOUNTS: u64 = 8;

pub fn op_meta(ts: u64) -> Meta {
    Meta {
        timestamp: Timestamp(ts),
        principal: Principal(1_000),
        authority: Authority::Operator,
    }
}

pub fn trader(ts: u64, account: u64) -> Meta {
    Meta {
        timestamp: Timestamp(ts),
        principal: Principal(account),
        authority: Authority::Trader,
    }
}

pub fn market(id: u32, base: AssetId, shard: ShardId) -> MarketSpec {
    MarketSpec {
        id: MarketId(id),
        base,
        quote: USD,
        lot_size: 10,
        tick_size: 5,
        min_qty: Qty(10),
        max_qty: Qty(100_000),
        maker_fee_bps: 10,
        taker_fee_bps: 25,
        fee_account: FEE_ACCOUNT,
        collar_bps: 0,
        shard,
    }
}

/// Catalog and accounts: every account owned by the principal with its own id, funded.
/// `market_shards` says where markets 1 and 2 live.
pub fn setup(market_shards: [ShardId; 2]) -> Vec<(Meta, Command)> {
    let mut v = vec![];
    for (id, code, scale) in [(USD, "USD", 2u8), (BTC, "BTC", 8), (ETH, "ETH", 8)] {
        v.push((
            op_meta(1),
            Command::CreateAsset(Asset {
                id,
                code: code.into(),
                scale,
            }),
        ));
    }
    v.push((
        op_meta(1),
        Command::CreateMarket(market(1, BTC, market_shards[0])),
    ));
    v.push((
        op_meta(1),
        Command::CreateMarket(market(2, ETH, market_shards[1])),
    ));
    for a in 1..=ACCOUNTS {
        v.push((
            op_meta(2),
            Command::OpenAccount {
                account: AccountId(a),
                owner: Principal(a),
            },
        ));
        for (n, asset) in [USD, BTC, ETH].into_iter().enumerate() {
            v.push((
                op_meta(3),
                Command::Deposit {
                    id: TransferId(a * 10 + n as u64),
                    account: AccountId(a),
                    asset,
                    amount: Amount(100_000_000),
                },
            ));
        }
    }
    v
}

/// One random operation. Orders are referred to by the index of the step that placed them.
#[derive(Clone, Debug)]
pub enum Op {
    Transfer {
        from: u64,
        to: u64,
        asset: AssetId,
        amount: u64,
        balancing: bool,
    },
    Deposit {
        account: u64,
        asset: AssetId,
        amount: u64,
    },
    Withdraw {
        account: u64,
        asset: AssetId,
        amount: u64,
    },
    Place {
        account: u64,
        market: u32,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        price: u64,
        qty: u64,
        post_only: bool,
        stp: SelfTradePrevention,
    },
    Cancel {
        step: usize,
    },
    Amend {
        step: usize,
        price: u64,
        qty: u64,
    },
    Pending {
        from: u64,
        to: u64,
        asset: AssetId,
        amount: u64,
        timeout_ms: u64,
    },
    Post {
        step: usize,
        part: bool,
    },
    Void {
        step: usize,
    },
    Freeze {
        account: u64,
    },
    Unfreeze {
        account: u64,
    },
    Wait {
        ms: u64,
    },
}

fn asset() -> impl Strategy<Value = AssetId> {
    prop_oneof![Just(USD), Just(BTC), Just(ETH)]
}

fn account() -> impl Strategy<Value = u64> {
    1..=ACCOUNTS
}

pub fn op() -> impl Strategy<Value = Op> {
    let place = (
        account(),
        1..=2u32,
        prop_oneof![Just(Side::Buy), Just(Side::Sell)],
        prop_oneof![4 => Just(OrderType::Limit), 1 => Just(OrderType::Market)],
        prop_oneof![4 => Just(TimeInForce::Gtc), 1 => Just(TimeInForce::Ioc), 1 => Just(TimeInForce::Fok)],
        18..=22u64,
        1..=6u64,
        prop::bool::weighted(0.1),
        prop_oneof![Just(SelfTradePrevention::CancelResting), Just(SelfTradePrevention::CancelIncoming), Just(SelfTradePrevention::CancelBoth)],
    )
        .prop_map(|(account, market, side, order_type, tif, price, lots, post_only, stp)| {
            let tif = if order_type == OrderType::Market && tif == TimeInForce::Gtc { TimeInForce::Ioc } else { tif };
            Op::Place { account, market, side, order_type, tif, price: price * 500, qty: lots * 10, post_only, stp }
        });
    prop_oneof![
        3 => (account(), account(), asset(), 1..5_000u64, prop::bool::weighted(0.2)).prop_map(|(from, to, asset, amount, balancing)| Op::Transfer { from, to, asset, amount, balancing }),
        1 => (account(), asset(), 1..5_000u64).prop_map(|(account, asset, amount)| Op::Deposit { account, asset, amount }),
        1 => (account(), asset(), 1..50_000u64).prop_map(|(account, asset, amount)| Op::Withdraw { account, asset, amount }),
        8 => place,
        2 => (0..200usize).prop_map(|step| Op::Cancel { step }),
        2 => (0..200usize, 18..=22u64, 1..=6u64).prop_map(|(step, p, l)| Op::Amend { step, price: p * 500, qty: l * 10 }),
        2 => (account(), account(), asset(), 1..5_000u64, 1..3_000u64).prop_map(|(from, to, asset, amount, timeout_ms)| Op::Pending { from, to, asset, amount, timeout_ms }),
        2 => (0..200usize, any::<bool>()).prop_map(|(step, part)| Op::Post { step, part }),
        1 => (0..200usize).prop_map(|step| Op::Void { step }),
        2 => account().prop_map(|account| Op::Freeze { account }),
        1 => account().prop_map(|account| Op::Unfreeze { account }),
        1 => (1..2_000u64).prop_map(|ms| Op::Wait { ms }),
    ]
}

/// What a system needs to turn an [`Op`] into a command: the order ids it assigned.
pub trait OrderIds {
    /// The current id of the order placed at `step` (following replacements), if any.
    fn order_of_step(&self, step: usize) -> Option<(OrderId, MarketId)>;
    /// Steps that placed an order, oldest first.
    fn order_steps(&self) -> Vec<usize>;
}

/// The command for `op` at `step`, or `None` if it refers to something that never existed.
/// Returns the command and its meta (traders act for themselves; some ops need an operator).
pub fn command(
    op: &Op,
    step: usize,
    ts: u64,
    ids: &dyn OrderIds,
    pendings: &[(usize, u64)],
) -> Option<(Meta, Command)> {
    let tid = TransferId(1_000_000 + step as u64);
    Some(match *op {
        Op::Transfer {
            from,
            to,
            asset,
            amount,
            balancing,
        } => (
            trader(ts, from),
            Command::Transfer(TransferSpec {
                id: tid,
                debit: AccountId(from),
                credit: AccountId(to),
                asset,
                amount: Amount(amount),
                balancing,
            }),
        ),
        Op::Deposit {
            account,
            asset,
            amount,
        } => (
            op_meta(ts),
            Command::Deposit {
                id: tid,
                account: AccountId(account),
                asset,
                amount: Amount(amount),
            },
        ),
        Op::Withdraw {
            account,
            asset,
            amount,
        } => (
            trader(ts, account),
            Command::Withdraw {
                id: tid,
                account: AccountId(account),
                asset,
                amount: Amount(amount),
            },
        ),
        Op::Place {
            account,
            market,
            side,
            order_type,
            tif,
            price,
            qty,
            post_only,
            stp,
        } => (
            trader(ts, account),
            Command::PlaceOrder(NewOrder {
                account: AccountId(account),
                market: MarketId(market),
                side,
                order_type,
                tif,
                price: Price(price),
                qty: Qty(qty),
                post_only,
                client_order_id: step as u64 + 1,
                stp,
            }),
        ),
        Op::Cancel { step: nth } => {
            let steps = ids.order_steps();
            let s = *steps.get(nth % steps.len().max(1))?;
            let (order, market) = ids.order_of_step(s)?;
            (op_meta(ts), Command::CancelOrder { market, order })
        }
        Op::Amend {
            step: nth,
            price,
            qty,
        } => {
            let steps = ids.order_steps();
            let s = *steps.get(nth % steps.len().max(1))?;
            let (order, market) = ids.order_of_step(s)?;
            (
                op_meta(ts),
                Command::AmendOrder {
                    market,
                    order,
                    price: Price(price),
                    qty: Qty(qty),
                },
            )
        }
        Op::Pending {
            from,
            to,
            asset,
            amount,
            timeout_ms,
        } => (
            trader(ts, from),
            Command::CreatePending {
                spec: TransferSpec {
                    id: tid,
                    debit: AccountId(from),
                    credit: AccountId(to),
                    asset,
                    amount: Amount(amount),
                    balancing: false,
                },
                timeout_ms,
            },
        ),
        Op::Post { step: nth, part } => {
            let &(s, from) = pendings.get(nth % pendings.len().max(1))?;
            (
                trader(ts, from),
                Command::PostPending {
                    debit: AccountId(from),
                    id: TransferId(1_000_000 + s as u64),
                    amount: part.then_some(Amount(1)),
                },
            )
        }
        Op::Void { step: nth } => {
            let &(s, from) = pendings.get(nth % pendings.len().max(1))?;
            (
                trader(ts, from),
                Command::VoidPending {
                    debit: AccountId(from),
                    id: TransferId(1_000_000 + s as u64),
                },
            )
        }
        Op::Freeze { account } => (
            op_meta(ts),
            Command::FreezeAccount {
                account: AccountId(account),
            },
        ),
        Op::Unfreeze { account } => (
            op_meta(ts),
            Command::UnfreezeAccount {
                account: AccountId(account),
            },
        ),
        Op::Wait { .. } => return None,
    })
}
