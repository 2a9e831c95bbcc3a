//! Proptest strategies for the domain types that cross the wire.
//!
//! Command strategies produce only well-formed commands (non-zero ids, codes within their
//! limits), so every one must survive domain -> wire -> domain. Event strategies produce
//! any value a shard could record, zero ids included.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;
use tradelog_domain as d;

/// A non-zero `u64` id, biased to the edges.
fn id64() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(u64::MAX), 1..=u64::MAX]
}

/// A non-zero `u32` id, biased to the edges.
fn id32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(1u32), Just(u32::MAX), 1..=u32::MAX]
}

/// Any `u64`, biased to the edges.
fn any64() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()]
}

/// A shard a placement can name.
fn shard() -> impl Strategy<Value = d::ShardId> {
    (0..d::SHARD_COUNT_MAX).prop_map(d::ShardId)
}

/// An asset code of 1 to `ASSET_CODE_LEN_MAX` bytes: tickers, and any UTF-8 (the wire
/// only bounds the length; the engine checks the characters).
fn asset_code() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z0-9]{1,12}",
        "\\PC{1,3}".prop_filter("at most 12 bytes", |s| s.len() <= d::ASSET_CODE_LEN_MAX),
    ]
}

pub fn side() -> impl Strategy<Value = d::Side> {
    prop_oneof![Just(d::Side::Buy), Just(d::Side::Sell)]
}

pub fn order_type() -> impl Strategy<Value = d::OrderType> {
    prop_oneof![Just(d::OrderType::Limit), Just(d::OrderType::Market)]
}

pub fn tif() -> impl Strategy<Value = d::TimeInForce> {
    prop_oneof![
        Just(d::TimeInForce::Gtc),
        Just(d::TimeInForce::Ioc),
        Just(d::TimeInForce::Fok)
    ]
}

pub fn stp() -> impl Strategy<Value = d::SelfTradePrevention> {
    prop_oneof![
        Just(d::SelfTradePrevention::CancelResting),
        Just(d::SelfTradePrevention::CancelIncoming),
        Just(d::SelfTradePrevention::CancelBoth)
    ]
}

pub fn cancel_reason() -> impl Strategy<Value = d::CancelReason> {
    prop_oneof![
        Just(d::CancelReason::Requested),
        Just(d::CancelReason::Unfilled),
        Just(d::CancelReason::SelfTrade),
        Just(d::CancelReason::Replaced),
        Just(d::CancelReason::Stopped)
    ]
}

pub fn reject_code() -> impl Strategy<Value = d::RejectCode> {
    proptest::sample::select(d::RejectCode::ALL)
}

/// A well-formed asset to create.
pub fn new_asset() -> impl Strategy<Value = d::Asset> {
    (id32(), asset_code(), any::<u8>()).prop_map(|(id, code, scale)| d::Asset {
        id: d::AssetId(id),
        code,
        scale,
    })
}

/// A well-formed market to create (the trading rules are the engine's, so any numbers).
pub fn new_market() -> impl Strategy<Value = d::MarketSpec> {
    (
        (id32(), id32(), id32(), any64(), any64(), any64(), any64()),
        (any::<u32>(), any::<u32>(), id64(), any::<u32>(), shard()),
    )
        .prop_map(
            |(
                (id, base, quote, lot_size, tick_size, min_qty, max_qty),
                (maker_fee_bps, taker_fee_bps, fee_account, collar_bps, shard),
            )| d::MarketSpec {
                id: d::MarketId(id),
                base: d::AssetId(base),
                quote: d::AssetId(quote),
                lot_size,
                tick_size,
                min_qty: d::Qty(min_qty),
                max_qty: d::Qty(max_qty),
                maker_fee_bps,
                taker_fee_bps,
                fee_account: d::AccountId(fee_account),
                collar_bps,
                shard,
            },
        )
}

/// A well-formed transfer (the amount and debit == credit are the engine's business).
pub fn transfer() -> impl Strategy<Value = d::TransferSpec> {
    (id64(), id64(), id64(), id32(), any64(), any::<bool>()).prop_map(
        |(id, debit, credit, asset, amount, balancing)| d::TransferSpec {
            id: d::TransferId(id),
            debit: d::AccountId(debit),
            credit: d::AccountId(credit),
            asset: d::AssetId(asset),
            amount: d::Amount(amount),
            balancing,
        },
    )
}

pub fn new_order() -> impl Strategy<Value = d::NewOrder> {
    (
        (id64(), id32(), side(), order_type(), tif()),
        (any64(), any64(), any::<bool>(), any64(), stp()),
    )
        .prop_map(
            |(
                (account, market, side, order_type, tif),
                (price, qty, post_only, client_order_id, stp),
            )| d::NewOrder {
                account: d::AccountId(account),
                market: d::MarketId(market),
                side,
                order_type,
                tif,
                price: d::Price(price),
                qty: d::Qty(qty),
                post_only,
                client_order_id,
                stp,
            },
        )
}

/// Any well-formed command, every variant.
pub fn command() -> BoxedStrategy<d::Command> {
    use d::Command as C;
    let acc = || id64().prop_map(d::AccountId);
    let tid = || id64().prop_map(d::TransferId);
    let asset = || id32().prop_map(d::AssetId);
    let market = || id32().prop_map(d::MarketId);
    let order = || id64().prop_map(d::OrderId);
    let amount = || any64().prop_map(d::Amount);
    Union::new(vec![
        new_asset().prop_map(C::CreateAsset).boxed(),
        new_market().prop_map(C::CreateMarket).boxed(),
        (acc(), any64())
            .prop_map(|(account, owner)| C::OpenAccount {
                account,
                owner: d::Principal(owner),
            })
            .boxed(),
        (tid(), acc(), asset(), amount())
            .prop_map(|(id, account, asset, amount)| C::Deposit {
                id,
                account,
                asset,
                amount,
            })
            .boxed(),
        (tid(), acc(), asset(), amount())
            .prop_map(|(id, account, asset, amount)| C::Withdraw {
                id,
                account,
                asset,
                amount,
            })
            .boxed(),
        transfer().prop_map(C::Transfer).boxed(),
        vec(transfer(), 1..8).prop_map(C::LinkedTransfers).boxed(),
        (transfer(), any64())
            .prop_map(|(spec, timeout_ms)| C::CreatePending { spec, timeout_ms })
            .boxed(),
        (acc(), tid(), proptest::option::of(amount()))
            .prop_map(|(debit, id, amount)| C::PostPending { debit, id, amount })
            .boxed(),
        (acc(), tid())
            .prop_map(|(debit, id)| C::VoidPending { debit, id })
            .boxed(),
        acc()
            .prop_map(|account| C::FreezeAccount { account })
            .boxed(),
        acc()
            .prop_map(|account| C::UnfreezeAccount { account })
            .boxed(),
        acc()
            .prop_map(|account| C::CloseAccount { account })
            .boxed(),
        new_order().prop_map(C::PlaceOrder).boxed(),
        (market(), order())
            .prop_map(|(market, order)| C::CancelOrder { market, order })
            .boxed(),
        (market(), order(), any64(), any64())
            .prop_map(|(market, order, price, qty)| C::AmendOrder {
                market,
                order,
                price: d::Price(price),
                qty: d::Qty(qty),
            })
            .boxed(),
        market().prop_map(|market| C::HaltMarket { market }).boxed(),
        market()
            .prop_map(|market| C::ResumeMarket { market })
            .boxed(),
    ])
    .boxed()
}

/// The variant index of a command. The match has no wildcard, so a new domain variant
/// fails to compile here until the strategy (and the wire API) cover it.
pub fn command_variant(c: &d::Command) -> usize {
    use d::Command as C;
    match c {
        C::CreateAsset(_) => 0,
        C::CreateMarket(_) => 1,
        C::OpenAccount { .. } => 2,
        C::Deposit { .. } => 3,
        C::Withdraw { .. } => 4,
        C::Transfer(_) => 5,
        C::LinkedTransfers(_) => 6,
        C::CreatePending { .. } => 7,
        C::PostPending { .. } => 8,
        C::VoidPending { .. } => 9,
        C::FreezeAccount { .. } => 10,
        C::UnfreezeAccount { .. } => 11,
        C::CloseAccount { .. } => 12,
        C::PlaceOrder(_) => 13,
        C::CancelOrder { .. } => 14,
        C::AmendOrder { .. } => 15,
        C::HaltMarket { .. } => 16,
        C::ResumeMarket { .. } => 17,
    }
}

/// Number of [`d::Command`] variants.
pub const COMMAND_VARIANTS: usize = 18;

// ----- events --------------------------------------------------------------------------

fn acc() -> impl Strategy<Value = d::AccountId> {
    any64().prop_map(d::AccountId)
}
fn tid() -> impl Strategy<Value = d::TransferId> {
    any64().prop_map(d::TransferId)
}
fn asset() -> impl Strategy<Value = d::AssetId> {
    any::<u32>().prop_map(d::AssetId)
}
fn market() -> impl Strategy<Value = d::MarketId> {
    any::<u32>().prop_map(d::MarketId)
}
fn order() -> impl Strategy<Value = d::OrderId> {
    any64().prop_map(d::OrderId)
}
fn amount() -> impl Strategy<Value = d::Amount> {
    any64().prop_map(d::Amount)
}
fn price() -> impl Strategy<Value = d::Price> {
    any64().prop_map(d::Price)
}
fn qty() -> impl Strategy<Value = d::Qty> {
    any64().prop_map(d::Qty)
}

pub fn subject() -> impl Strategy<Value = d::Subject> {
    prop_oneof![
        acc().prop_map(d::Subject::Account),
        tid().prop_map(d::Subject::Transfer),
        order().prop_map(d::Subject::Order),
        (acc(), any64()).prop_map(|(account, client_order_id)| d::Subject::ClientOrder {
            account,
            client_order_id
        }),
        market().prop_map(d::Subject::Market),
        asset().prop_map(d::Subject::Asset),
    ]
}

/// Any asset a shard could record (zero id and empty code included).
fn any_asset() -> impl Strategy<Value = d::Asset> {
    (
        any::<u32>(),
        prop_oneof![Just(String::new()), asset_code()],
        any::<u8>(),
    )
        .prop_map(|(id, code, scale)| d::Asset {
            id: d::AssetId(id),
            code,
            scale,
        })
}

/// Any market a shard could record (zero ids and any shard number included).
fn any_market() -> impl Strategy<Value = d::MarketSpec> {
    (new_market(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(mut m, id, base, sh)| {
        m.id = d::MarketId(id);
        m.base = d::AssetId(base);
        m.shard = d::ShardId(sh);
        m
    })
}

/// Any event, every variant.
pub fn event() -> BoxedStrategy<d::Event> {
    use d::Event as E;
    Union::new(vec![
        any_asset().prop_map(E::AssetCreated).boxed(),
        any_market().prop_map(E::MarketCreated).boxed(),
        (acc(), any64())
            .prop_map(|(account, owner)| E::AccountOpened {
                account,
                owner: d::Principal(owner),
            })
            .boxed(),
        acc()
            .prop_map(|account| E::AccountFrozen { account })
            .boxed(),
        acc()
            .prop_map(|account| E::AccountUnfrozen { account })
            .boxed(),
        acc()
            .prop_map(|account| E::AccountClosed { account })
            .boxed(),
        (tid(), acc(), asset(), amount())
            .prop_map(|(id, account, asset, amount)| E::Deposited {
                id,
                account,
                asset,
                amount,
            })
            .boxed(),
        (tid(), acc(), asset(), amount())
            .prop_map(|(id, account, asset, amount)| E::Withdrawn {
                id,
                account,
                asset,
                amount,
            })
            .boxed(),
        (tid(), acc(), acc(), asset(), amount())
            .prop_map(|(id, debit, credit, asset, amount)| E::TransferPosted {
                id,
                debit,
                credit,
                asset,
                amount,
            })
            .boxed(),
        (tid(), acc(), acc(), asset(), amount(), any::<u32>())
            .prop_map(
                |(id, debit, credit, asset, amount, to)| E::TransferInitiated {
                    id,
                    debit,
                    credit,
                    asset,
                    amount,
                    to: d::ShardId(to),
                },
            )
            .boxed(),
        (tid(), acc(), acc(), asset(), amount(), any::<u32>())
            .prop_map(
                |(id, debit, credit, asset, amount, from)| E::TransferCredited {
                    id,
                    debit,
                    credit,
                    asset,
                    amount,
                    from: d::ShardId(from),
                },
            )
            .boxed(),
        (tid(), reject_code())
            .prop_map(|(id, code)| E::TransferRefunded { id, code })
            .boxed(),
        (tid(), acc(), acc(), asset(), amount(), any64())
            .prop_map(
                |(id, debit, credit, asset, amount, expires_at)| E::PendingCreated {
                    id,
                    debit,
                    credit,
                    asset,
                    amount,
                    expires_at: d::Timestamp(expires_at),
                },
            )
            .boxed(),
        (tid(), amount(), amount())
            .prop_map(|(id, amount, released)| E::PendingPosted {
                id,
                amount,
                released,
            })
            .boxed(),
        (tid(), amount(), any::<bool>())
            .prop_map(|(id, amount, expired)| E::PendingVoided {
                id,
                amount,
                expired,
            })
            .boxed(),
        (order(), acc(), asset(), amount())
            .prop_map(|(order, account, asset, amount)| E::FundsHeld {
                order,
                account,
                asset,
                amount,
            })
            .boxed(),
        (order(), acc(), asset(), amount())
            .prop_map(|(order, account, asset, amount)| E::FundsReleased {
                order,
                account,
                asset,
                amount,
            })
            .boxed(),
        (
            (order(), acc(), market(), side(), order_type()),
            (
                tif(),
                price(),
                qty(),
                any64(),
                proptest::option::of(order()),
            ),
        )
            .prop_map(
                |(
                    (order, account, market, side, order_type),
                    (tif, price, qty, client_order_id, replaces),
                )| E::OrderSubmitted {
                    order,
                    account,
                    market,
                    side,
                    order_type,
                    tif,
                    price,
                    qty,
                    client_order_id,
                    replaces,
                },
            )
            .boxed(),
        (order(), market(), acc(), side(), price(), qty())
            .prop_map(
                |(order, market, account, side, price, qty)| E::OrderAccepted {
                    order,
                    market,
                    account,
                    side,
                    price,
                    qty,
                },
            )
            .boxed(),
        (order(), market(), reject_code())
            .prop_map(|(order, market, code)| E::OrderRejected {
                order,
                market,
                code,
            })
            .boxed(),
        (
            (market(), price(), qty(), side(), order()),
            (order(), acc(), acc(), amount(), amount()),
        )
            .prop_map(
                |(
                    (market, price, qty, taker_side, taker),
                    (maker, taker_account, maker_account, taker_fee, maker_fee),
                )| E::Trade {
                    market,
                    price,
                    qty,
                    taker_side,
                    taker,
                    maker,
                    taker_account,
                    maker_account,
                    taker_fee,
                    maker_fee,
                },
            )
            .boxed(),
        (order(), market())
            .prop_map(|(order, market)| E::OrderFilled { order, market })
            .boxed(),
        (order(), market(), qty(), cancel_reason())
            .prop_map(|(order, market, remaining, reason)| E::OrderCancelled {
                order,
                market,
                remaining,
                reason,
            })
            .boxed(),
        (order(), market(), price(), qty())
            .prop_map(|(order, market, price, qty)| E::OrderAmended {
                order,
                market,
                price,
                qty,
            })
            .boxed(),
        (
            order(),
            acc(),
            asset(),
            amount(),
            asset(),
            amount(),
            amount(),
        )
            .prop_map(
                |(order, account, paid_asset, paid, received_asset, received, fee)| E::Settled {
                    order,
                    account,
                    paid_asset,
                    paid,
                    received_asset,
                    received,
                    fee,
                },
            )
            .boxed(),
        (market(), acc(), asset(), amount())
            .prop_map(|(market, account, asset, amount)| E::FeeCollected {
                market,
                account,
                asset,
                amount,
            })
            .boxed(),
        market()
            .prop_map(|market| E::MarketHalted { market })
            .boxed(),
        market()
            .prop_map(|market| E::MarketResumed { market })
            .boxed(),
        (subject(), reject_code())
            .prop_map(|(subject, code)| E::Rejected { subject, code })
            .boxed(),
        (acc(), asset(), amount(), amount())
            .prop_map(|(account, asset, available, held)| E::Balance {
                account,
                asset,
                available,
                held,
            })
            .boxed(),
        (any::<u32>(), any64(), any64(), any64())
            .prop_map(|(child, modulus, residue, accounts)| E::ShardSplit {
                child: d::ShardId(child),
                modulus,
                residue,
                accounts,
            })
            .boxed(),
    ])
    .boxed()
}

/// The variant index of an event (no wildcard: a new domain variant fails to compile here).
pub fn event_variant(e: &d::Event) -> usize {
    use d::Event as E;
    match e {
        E::AssetCreated(_) => 0,
        E::MarketCreated(_) => 1,
        E::AccountOpened { .. } => 2,
        E::AccountFrozen { .. } => 3,
        E::AccountUnfrozen { .. } => 4,
        E::AccountClosed { .. } => 5,
        E::Deposited { .. } => 6,
        E::Withdrawn { .. } => 7,
        E::TransferPosted { .. } => 8,
        E::TransferInitiated { .. } => 9,
        E::TransferCredited { .. } => 10,
        E::TransferRefunded { .. } => 11,
        E::PendingCreated { .. } => 12,
        E::PendingPosted { .. } => 13,
        E::PendingVoided { .. } => 14,
        E::FundsHeld { .. } => 15,
        E::FundsReleased { .. } => 16,
        E::OrderSubmitted { .. } => 17,
        E::OrderAccepted { .. } => 18,
        E::OrderRejected { .. } => 19,
        E::Trade { .. } => 20,
        E::OrderFilled { .. } => 21,
        E::OrderCancelled { .. } => 22,
        E::OrderAmended { .. } => 23,
        E::Settled { .. } => 24,
        E::FeeCollected { .. } => 25,
        E::MarketHalted { .. } => 26,
        E::MarketResumed { .. } => 27,
        E::Rejected { .. } => 28,
        E::Balance { .. } => 29,
        E::ShardSplit { .. } => 30,
    }
}

/// Number of [`d::Event`] variants.
pub const EVENT_VARIANTS: usize = 31;

pub fn event_record() -> impl Strategy<Value = d::EventRecord> {
    (any::<u32>(), any64(), any64(), any64(), any64(), event()).prop_map(
        |(shard, seq, input, timestamp, principal, event)| d::EventRecord {
            shard: d::ShardId(shard),
            seq,
            input,
            timestamp: d::Timestamp(timestamp),
            principal: d::Principal(principal),
            event,
        },
    )
}

pub fn outcome() -> impl Strategy<Value = d::Outcome> {
    let accepted = prop_oneof![
        Just(d::Accepted::Done),
        Just(d::Accepted::InFlight),
        any64().prop_map(|o| d::Accepted::Order(d::OrderId(o))),
    ];
    let rejection =
        (reject_code(), any::<u32>()).prop_map(|(code, index)| d::Rejection { code, index });
    (
        prop_oneof![accepted.prop_map(Ok), rejection.prop_map(Err)],
        any::<bool>(),
    )
        .prop_map(|(result, duplicate)| d::Outcome { result, duplicate })
}
