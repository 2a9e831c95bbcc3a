//! Conversions of events and event records.
//!
//! Events are server output, so wire to domain checks only the shape (required oneofs and
//! messages, known enum values, asset codes and scales the domain can hold): ids are
//! taken as recorded, zero included (a rejected request naming account 0 is recorded as
//! such).

use crate::convert::{
    cancel_reason, order_type, reject_code, reject_code_to_wire, side, time_in_force,
};
use crate::error::{required, ApiError, Res};
use crate::proto as pb;
use pb::event as e;
use tradelog_domain as d;

impl From<d::Subject> for pb::Subject {
    fn from(s: d::Subject) -> pb::Subject {
        use pb::subject::Kind;
        let kind = match s {
            d::Subject::Account(id) => Kind::AccountId(id.0),
            d::Subject::Transfer(id) => Kind::TransferId(id.0),
            d::Subject::Order(id) => Kind::OrderId(id.0),
            d::Subject::ClientOrder {
                account,
                client_order_id,
            } => Kind::ClientOrder(pb::subject::ClientOrder {
                account_id: account.0,
                client_order_id,
            }),
            d::Subject::Market(id) => Kind::MarketId(id.0),
            d::Subject::Asset(id) => Kind::AssetId(id.0),
        };
        pb::Subject { kind: Some(kind) }
    }
}

impl TryFrom<pb::Subject> for d::Subject {
    type Error = ApiError;

    fn try_from(s: pb::Subject) -> Res<d::Subject> {
        use pb::subject::Kind;
        Ok(match required(s.kind, "kind")? {
            Kind::AccountId(id) => d::Subject::Account(d::AccountId(id)),
            Kind::TransferId(id) => d::Subject::Transfer(d::TransferId(id)),
            Kind::OrderId(id) => d::Subject::Order(d::OrderId(id)),
            Kind::ClientOrder(c) => d::Subject::ClientOrder {
                account: d::AccountId(c.account_id),
                client_order_id: c.client_order_id,
            },
            Kind::MarketId(id) => d::Subject::Market(d::MarketId(id)),
            Kind::AssetId(id) => d::Subject::Asset(d::AssetId(id)),
        })
    }
}

impl From<d::Event> for pb::Event {
    fn from(ev: d::Event) -> pb::Event {
        use e::Kind as K;
        let kind = match ev {
            d::Event::AssetCreated(a) => K::AssetCreated(e::AssetCreated {
                asset: Some(a.into()),
            }),
            d::Event::MarketCreated(m) => K::MarketCreated(e::MarketCreated {
                market: Some(m.into()),
            }),
            d::Event::AccountOpened { account, owner } => K::AccountOpened(e::AccountOpened {
                account_id: account.0,
                owner: owner.0,
            }),
            d::Event::AccountFrozen { account } => K::AccountFrozen(e::AccountFrozen {
                account_id: account.0,
            }),
            d::Event::AccountUnfrozen { account } => K::AccountUnfrozen(e::AccountUnfrozen {
                account_id: account.0,
            }),
            d::Event::AccountClosed { account } => K::AccountClosed(e::AccountClosed {
                account_id: account.0,
            }),
            d::Event::Deposited {
                id,
                account,
                asset,
                amount,
            } => K::Deposited(e::Deposited {
                transfer_id: id.0,
                account_id: account.0,
                asset_id: asset.0,
                amount: amount.0,
            }),
            d::Event::Withdrawn {
                id,
                account,
                asset,
                amount,
            } => K::Withdrawn(e::Withdrawn {
                transfer_id: id.0,
                account_id: account.0,
                asset_id: asset.0,
                amount: amount.0,
            }),
            d::Event::TransferPosted {
                id,
                debit,
                credit,
                asset,
                amount,
            } => K::TransferPosted(e::TransferPosted {
                transfer_id: id.0,
                debit_account_id: debit.0,
                credit_account_id: credit.0,
                asset_id: asset.0,
                amount: amount.0,
            }),
            d::Event::TransferInitiated {
                id,
                debit,
                credit,
                asset,
                amount,
                to,
            } => K::TransferInitiated(e::TransferInitiated {
                transfer_id: id.0,
                debit_account_id: debit.0,
                credit_account_id: credit.0,
                asset_id: asset.0,
                amount: amount.0,
                to_shard: to.0,
            }),
            d::Event::TransferCredited {
                id,
                debit,
                credit,
                asset,
                amount,
                from,
            } => K::TransferCredited(e::TransferCredited {
                transfer_id: id.0,
                debit_account_id: debit.0,
                credit_account_id: credit.0,
                asset_id: asset.0,
                amount: amount.0,
                from_shard: from.0,
            }),
            d::Event::TransferRefunded { id, code } => K::TransferRefunded(e::TransferRefunded {
                transfer_id: id.0,
                code: reject_code_to_wire(code),
            }),
            d::Event::PendingCreated {
                id,
                debit,
                credit,
                asset,
                amount,
                expires_at,
            } => K::PendingCreated(e::PendingCreated {
                transfer_id: id.0,
                debit_account_id: debit.0,
                credit_account_id: credit.0,
                asset_id: asset.0,
                amount: amount.0,
                expires_at_ns: expires_at.0,
            }),
            d::Event::PendingPosted {
                id,
                amount,
                released,
            } => K::PendingPosted(e::PendingPosted {
                transfer_id: id.0,
                amount: amount.0,
                released: released.0,
            }),
            d::Event::PendingVoided {
                id,
                amount,
                expired,
            } => K::PendingVoided(e::PendingVoided {
                transfer_id: id.0,
                amount: amount.0,
                expired,
            }),
            d::Event::FundsHeld {
                order,
                account,
                asset,
                amount,
            } => K::FundsHeld(e::FundsHeld {
                order_id: order.0,
                account_id: account.0,
                asset_id: asset.0,
                amount: amount.0,
            }),
            d::Event::FundsReleased {
                order,
                account,
                asset,
                amount,
            } => K::FundsReleased(e::FundsReleased {
                order_id: order.0,
                account_id: account.0,
                asset_id: asset.0,
                amount: amount.0,
            }),
            d::Event::OrderSubmitted {
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
            } => K::OrderSubmitted(e::OrderSubmitted {
                order_id: order.0,
                account_id: account.0,
                market_id: market.0,
                side: pb::Side::from(side).into(),
                order_type: pb::OrderType::from(order_type).into(),
                time_in_force: pb::TimeInForce::from(tif).into(),
                price: price.0,
                qty: qty.0,
                client_order_id,
                replaces_order_id: replaces.map(|o| o.0),
            }),
            d::Event::OrderAccepted {
                order,
                market,
                account,
                side,
                price,
                qty,
            } => K::OrderAccepted(e::OrderAccepted {
                order_id: order.0,
                market_id: market.0,
                account_id: account.0,
                side: pb::Side::from(side).into(),
                price: price.0,
                qty: qty.0,
            }),
            d::Event::OrderRejected {
                order,
                market,
                code,
            } => K::OrderRejected(e::OrderRejected {
                order_id: order.0,
                market_id: market.0,
                code: reject_code_to_wire(code),
            }),
            d::Event::Trade {
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
            } => K::Trade(e::Trade {
                market_id: market.0,
                price: price.0,
                qty: qty.0,
                taker_side: pb::Side::from(taker_side).into(),
                taker_order_id: taker.0,
                maker_order_id: maker.0,
                taker_account_id: taker_account.0,
                maker_account_id: maker_account.0,
                taker_fee: taker_fee.0,
                maker_fee: maker_fee.0,
            }),
            d::Event::OrderFilled { order, market } => K::OrderFilled(e::OrderFilled {
                order_id: order.0,
                market_id: market.0,
            }),
            d::Event::OrderCancelled {
                order,
                market,
                remaining,
                reason,
            } => K::OrderCancelled(e::OrderCancelled {
                order_id: order.0,
                market_id: market.0,
                remaining: remaining.0,
                reason: pb::CancelReason::from(reason).into(),
            }),
            d::Event::OrderAmended {
                order,
                market,
                price,
                qty,
            } => K::OrderAmended(e::OrderAmended {
                order_id: order.0,
                market_id: market.0,
                price: price.0,
                qty: qty.0,
            }),
            d::Event::Settled {
                order,
                account,
                paid_asset,
                paid,
                received_asset,
                received,
                fee,
            } => K::Settled(e::Settled {
                order_id: order.0,
                account_id: account.0,
                paid_asset_id: paid_asset.0,
                paid: paid.0,
                received_asset_id: received_asset.0,
                received: received.0,
                fee: fee.0,
            }),
            d::Event::FeeCollected {
                market,
                account,
                asset,
                amount,
            } => K::FeeCollected(e::FeeCollected {
                market_id: market.0,
                account_id: account.0,
                asset_id: asset.0,
                amount: amount.0,
            }),
            d::Event::MarketHalted { market } => K::MarketHalted(e::MarketHalted {
                market_id: market.0,
            }),
            d::Event::MarketResumed { market } => K::MarketResumed(e::MarketResumed {
                market_id: market.0,
            }),
            d::Event::Rejected { subject, code } => K::Rejected(e::Rejected {
                subject: Some(subject.into()),
                code: reject_code_to_wire(code),
            }),
            d::Event::Balance {
                account,
                asset,
                available,
                held,
            } => K::Balance(e::Balance {
                account_id: account.0,
                asset_id: asset.0,
                available: available.0,
                held: held.0,
            }),
            d::Event::ShardSplit {
                child,
                modulus,
                residue,
                accounts,
            } => K::ShardSplit(e::ShardSplit {
                child_shard: child.0,
                modulus,
                residue,
                accounts,
            }),
        };
        pb::Event { kind: Some(kind) }
    }
}

impl TryFrom<pb::Event> for d::Event {
    type Error = ApiError;

    /// The event of the oneof (required; an event kind this version does not know decodes
    /// as an unset oneof and is reported as [`Reason::Missing`](crate::Reason::Missing) on
    /// `kind`). Errors name the oneof field first (`trade.taker_side`).
    fn try_from(ev: pb::Event) -> Res<d::Event> {
        use e::Kind as K;
        let (name, result) = match required(ev.kind, "kind")? {
            K::AssetCreated(x) => ("asset_created", asset_created(x)),
            K::MarketCreated(x) => (
                "market_created",
                required(x.market, "market").map(|m| d::Event::MarketCreated(m.into())),
            ),
            K::AccountOpened(x) => (
                "account_opened",
                Ok(d::Event::AccountOpened {
                    account: d::AccountId(x.account_id),
                    owner: d::Principal(x.owner),
                }),
            ),
            K::AccountFrozen(x) => (
                "account_frozen",
                Ok(d::Event::AccountFrozen {
                    account: d::AccountId(x.account_id),
                }),
            ),
            K::AccountUnfrozen(x) => (
                "account_unfrozen",
                Ok(d::Event::AccountUnfrozen {
                    account: d::AccountId(x.account_id),
                }),
            ),
            K::AccountClosed(x) => (
                "account_closed",
                Ok(d::Event::AccountClosed {
                    account: d::AccountId(x.account_id),
                }),
            ),
            K::Deposited(x) => (
                "deposited",
                Ok(d::Event::Deposited {
                    id: d::TransferId(x.transfer_id),
                    account: d::AccountId(x.account_id),
                    asset: d::AssetId(x.asset_id),
                    amount: d::Amount(x.amount),
                }),
            ),
            K::Withdrawn(x) => (
                "withdrawn",
                Ok(d::Event::Withdrawn {
                    id: d::TransferId(x.transfer_id),
                    account: d::AccountId(x.account_id),
                    asset: d::AssetId(x.asset_id),
                    amount: d::Amount(x.amount),
                }),
            ),
            K::TransferPosted(x) => (
                "transfer_posted",
                Ok(d::Event::TransferPosted {
                    id: d::TransferId(x.transfer_id),
                    debit: d::AccountId(x.debit_account_id),
                    credit: d::AccountId(x.credit_account_id),
                    asset: d::AssetId(x.asset_id),
                    amount: d::Amount(x.amount),
                }),
            ),
            K::TransferInitiated(x) => (
                "transfer_initiated",
                Ok(d::Event::TransferInitiated {
                    id: d::TransferId(x.transfer_id),
                    debit: d::AccountId(x.debit_account_id),
                    credit: d::AccountId(x.credit_account_id),
                    asset: d::AssetId(x.asset_id),
                    amount: d::Amount(x.amount),
                    to: d::ShardId(x.to_shard),
                }),
            ),
            K::TransferCredited(x) => (
                "transfer_credited",
                Ok(d::Event::TransferCredited {
                    id: d::TransferId(x.transfer_id),
                    debit: d::AccountId(x.debit_account_id),
                    credit: d::AccountId(x.credit_account_id),
                    asset: d::AssetId(x.asset_id),
                    amount: d::Amount(x.amount),
                    from: d::ShardId(x.from_shard),
                }),
            ),
            K::TransferRefunded(x) => (
                "transfer_refunded",
                reject_code(x.code, "code").map(|code| d::Event::TransferRefunded {
                    id: d::TransferId(x.transfer_id),
                    code,
                }),
            ),
            K::PendingCreated(x) => (
                "pending_created",
                Ok(d::Event::PendingCreated {
                    id: d::TransferId(x.transfer_id),
                    debit: d::AccountId(x.debit_account_id),
                    credit: d::AccountId(x.credit_account_id),
                    asset: d::AssetId(x.asset_id),
                    amount: d::Amount(x.amount),
                    expires_at: d::Timestamp(x.expires_at_ns),
                }),
            ),
            K::PendingPosted(x) => (
                "pending_posted",
                Ok(d::Event::PendingPosted {
                    id: d::TransferId(x.transfer_id),
                    amount: d::Amount(x.amount),
                    released: d::Amount(x.released),
                }),
            ),
            K::PendingVoided(x) => (
                "pending_voided",
                Ok(d::Event::PendingVoided {
                    id: d::TransferId(x.transfer_id),
                    amount: d::Amount(x.amount),
                    expired: x.expired,
                }),
            ),
            K::FundsHeld(x) => (
                "funds_held",
                Ok(d::Event::FundsHeld {
                    order: d::OrderId(x.order_id),
                    account: d::AccountId(x.account_id),
                    asset: d::AssetId(x.asset_id),
                    amount: d::Amount(x.amount),
                }),
            ),
            K::FundsReleased(x) => (
                "funds_released",
                Ok(d::Event::FundsReleased {
                    order: d::OrderId(x.order_id),
                    account: d::AccountId(x.account_id),
                    asset: d::AssetId(x.asset_id),
                    amount: d::Amount(x.amount),
                }),
            ),
            K::OrderSubmitted(x) => ("order_submitted", order_submitted(x)),
            K::OrderAccepted(x) => (
                "order_accepted",
                side(x.side, "side").map(|side| d::Event::OrderAccepted {
                    order: d::OrderId(x.order_id),
                    market: d::MarketId(x.market_id),
                    account: d::AccountId(x.account_id),
                    side,
                    price: d::Price(x.price),
                    qty: d::Qty(x.qty),
                }),
            ),
            K::OrderRejected(x) => (
                "order_rejected",
                reject_code(x.code, "code").map(|code| d::Event::OrderRejected {
                    order: d::OrderId(x.order_id),
                    market: d::MarketId(x.market_id),
                    code,
                }),
            ),
            K::Trade(x) => (
                "trade",
                side(x.taker_side, "taker_side").map(|taker_side| d::Event::Trade {
                    market: d::MarketId(x.market_id),
                    price: d::Price(x.price),
                    qty: d::Qty(x.qty),
                    taker_side,
                    taker: d::OrderId(x.taker_order_id),
                    maker: d::OrderId(x.maker_order_id),
                    taker_account: d::AccountId(x.taker_account_id),
                    maker_account: d::AccountId(x.maker_account_id),
                    taker_fee: d::Amount(x.taker_fee),
                    maker_fee: d::Amount(x.maker_fee),
                }),
            ),
            K::OrderFilled(x) => (
                "order_filled",
                Ok(d::Event::OrderFilled {
                    order: d::OrderId(x.order_id),
                    market: d::MarketId(x.market_id),
                }),
            ),
            K::OrderCancelled(x) => (
                "order_cancelled",
                cancel_reason(x.reason, "reason").map(|reason| d::Event::OrderCancelled {
                    order: d::OrderId(x.order_id),
                    market: d::MarketId(x.market_id),
                    remaining: d::Qty(x.remaining),
                    reason,
                }),
            ),
            K::OrderAmended(x) => (
                "order_amended",
                Ok(d::Event::OrderAmended {
                    order: d::OrderId(x.order_id),
                    market: d::MarketId(x.market_id),
                    price: d::Price(x.price),
                    qty: d::Qty(x.qty),
                }),
            ),
            K::Settled(x) => (
                "settled",
                Ok(d::Event::Settled {
                    order: d::OrderId(x.order_id),
                    account: d::AccountId(x.account_id),
                    paid_asset: d::AssetId(x.paid_asset_id),
                    paid: d::Amount(x.paid),
                    received_asset: d::AssetId(x.received_asset_id),
                    received: d::Amount(x.received),
                    fee: d::Amount(x.fee),
                }),
            ),
            K::FeeCollected(x) => (
                "fee_collected",
                Ok(d::Event::FeeCollected {
                    market: d::MarketId(x.market_id),
                    account: d::AccountId(x.account_id),
                    asset: d::AssetId(x.asset_id),
                    amount: d::Amount(x.amount),
                }),
            ),
            K::MarketHalted(x) => (
                "market_halted",
                Ok(d::Event::MarketHalted {
                    market: d::MarketId(x.market_id),
                }),
            ),
            K::MarketResumed(x) => (
                "market_resumed",
                Ok(d::Event::MarketResumed {
                    market: d::MarketId(x.market_id),
                }),
            ),
            K::Rejected(x) => ("rejected", rejected(x)),
            K::Balance(x) => (
                "balance",
                Ok(d::Event::Balance {
                    account: d::AccountId(x.account_id),
                    asset: d::AssetId(x.asset_id),
                    available: d::Amount(x.available),
                    held: d::Amount(x.held),
                }),
            ),
            K::ShardSplit(x) => (
                "shard_split",
                Ok(d::Event::ShardSplit {
                    child: d::ShardId(x.child_shard),
                    modulus: x.modulus,
                    residue: x.residue,
                    accounts: x.accounts,
                }),
            ),
        };
        result.map_err(|err| err.inside(name))
    }
}

fn asset_created(x: e::AssetCreated) -> Res<d::Event> {
    let a = required(x.asset, "asset")?;
    let a = d::Asset::try_from(a).map_err(|err| err.inside("asset"))?;
    Ok(d::Event::AssetCreated(a))
}

fn order_submitted(x: e::OrderSubmitted) -> Res<d::Event> {
    Ok(d::Event::OrderSubmitted {
        order: d::OrderId(x.order_id),
        account: d::AccountId(x.account_id),
        market: d::MarketId(x.market_id),
        side: side(x.side, "side")?,
        order_type: order_type(x.order_type, "order_type")?,
        tif: time_in_force(x.time_in_force, "time_in_force")?,
        price: d::Price(x.price),
        qty: d::Qty(x.qty),
        client_order_id: x.client_order_id,
        replaces: x.replaces_order_id.map(d::OrderId),
    })
}

fn rejected(x: e::Rejected) -> Res<d::Event> {
    let subject = required(x.subject, "subject")?;
    let subject = d::Subject::try_from(subject).map_err(|err| err.inside("subject"))?;
    Ok(d::Event::Rejected {
        subject,
        code: reject_code(x.code, "code")?,
    })
}

impl From<d::EventRecord> for pb::EventRecord {
    fn from(r: d::EventRecord) -> pb::EventRecord {
        pb::EventRecord {
            shard: r.shard.0,
            seq: r.seq,
            input: r.input,
            timestamp_ns: r.timestamp.0,
            principal: r.principal.0,
            event: Some(r.event.into()),
        }
    }
}

impl TryFrom<pb::EventRecord> for d::EventRecord {
    type Error = ApiError;

    fn try_from(r: pb::EventRecord) -> Res<d::EventRecord> {
        let event = required(r.event, "event")?;
        Ok(d::EventRecord {
            shard: d::ShardId(r.shard),
            seq: r.seq,
            input: r.input,
            timestamp: d::Timestamp(r.timestamp_ns),
            principal: d::Principal(r.principal),
            event: d::Event::try_from(event).map_err(|err| err.inside("event"))?,
        })
    }
}
