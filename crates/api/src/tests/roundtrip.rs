//! domain -> wire -> domain is the identity, in memory and through encoded bytes.

use super::strategies::*;
use crate::proto as pb;
use crate::query::{
    AsOf, BalancesQuery, BookQuery, CandlesQuery, CatalogQuery, EventStream, OpenOrdersQuery,
    OrderQuery, Position, ReadEventsQuery, ShardFilter, StatementQuery, SubscribeQuery,
    TradesQuery,
};
use crate::{COMMAND_BATCH_LEN_MAX, READ_EVENTS_LIMIT_MAX};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use prost::Message;
use tradelog_domain as d;

/// The single-command request inside a `Command`, converted on its own (the unary RPC
/// path) rather than through the oneof.
fn via_request(c: pb::Command) -> Result<d::Command, crate::ApiError> {
    use pb::command::Command as C;
    match c.command.expect("From<d::Command> always sets the oneof") {
        C::CreateAsset(r) => r.try_into(),
        C::CreateMarket(r) => r.try_into(),
        C::OpenAccount(r) => r.try_into(),
        C::Deposit(r) => r.try_into(),
        C::Withdraw(r) => r.try_into(),
        C::Transfer(r) => r.try_into(),
        C::LinkedTransfers(r) => r.try_into(),
        C::CreatePending(r) => r.try_into(),
        C::PostPending(r) => r.try_into(),
        C::VoidPending(r) => r.try_into(),
        C::FreezeAccount(r) => r.try_into(),
        C::UnfreezeAccount(r) => r.try_into(),
        C::CloseAccount(r) => r.try_into(),
        C::PlaceOrder(r) => r.try_into(),
        C::CancelOrder(r) => r.try_into(),
        C::AmendOrder(r) => r.try_into(),
        C::HaltMarket(r) => r.try_into(),
        C::ResumeMarket(r) => r.try_into(),
    }
}

fn stream() -> impl Strategy<Value = EventStream> {
    prop_oneof![
        Just(EventStream::All),
        (1..=u64::MAX).prop_map(|a| EventStream::Account(d::AccountId(a))),
        (1..=u32::MAX).prop_map(|m| EventStream::Market(d::MarketId(m))),
        (1..=u64::MAX).prop_map(|o| EventStream::Order(d::OrderId(o))),
    ]
}

fn position() -> impl Strategy<Value = Position> {
    btree_map(
        (0..d::SHARD_COUNT_MAX).prop_map(d::ShardId),
        any::<u64>(),
        0..16,
    )
    .prop_map(Position)
}

fn shard_filter() -> impl Strategy<Value = ShardFilter> {
    proptest::collection::btree_set((0..d::SHARD_COUNT_MAX).prop_map(d::ShardId), 0..8)
        .prop_map(ShardFilter)
}

proptest! {
    #[test]
    fn command_roundtrips(c in command()) {
        let wire = pb::Command::from(c.clone());
        prop_assert_eq!(d::Command::try_from(wire.clone()), Ok(c.clone()));
        prop_assert_eq!(via_request(wire.clone()), Ok(c.clone()));
        let bytes = wire.encode_to_vec();
        let decoded = pb::Command::decode(bytes.as_slice()).expect("own encoding decodes");
        prop_assert_eq!(&decoded, &wire);
        prop_assert_eq!(d::Command::try_from(decoded), Ok(c));
    }

    #[test]
    fn command_batch_roundtrips(cs in vec(command(), 1..6)) {
        let wire = pb::CommandBatch::from(cs.clone());
        let bytes = wire.encode_to_vec();
        let decoded = pb::CommandBatch::decode(bytes.as_slice()).expect("own encoding decodes");
        prop_assert_eq!(Vec::<d::Command>::try_from(decoded), Ok(cs));
    }

    #[test]
    fn event_record_roundtrips(r in event_record()) {
        let wire = pb::EventRecord::from(r.clone());
        prop_assert_eq!(d::EventRecord::try_from(wire.clone()), Ok(r.clone()));
        prop_assert_eq!(
            wire.event.clone().map(d::Event::try_from),
            Some(Ok(r.event.clone()))
        );
        let bytes = wire.encode_to_vec();
        let decoded = pb::EventRecord::decode(bytes.as_slice()).expect("own encoding decodes");
        prop_assert_eq!(&decoded, &wire);
        prop_assert_eq!(d::EventRecord::try_from(decoded), Ok(r));
    }

    #[test]
    fn outcome_roundtrips(o in outcome()) {
        let wire = pb::Outcome::from(o);
        if let Some(pb::outcome::Result::Rejection(r)) = &wire.result {
            let code = o.code().expect("a rejection has a code");
            prop_assert_eq!(r.reject_code, i32::from(code.code()));
            prop_assert_eq!(r.message.as_str(), code.message());
            prop_assert_eq!(r.name.as_str(), crate::reject_code_name(code));
        }
        let bytes = wire.encode_to_vec();
        let decoded = pb::Outcome::decode(bytes.as_slice()).expect("own encoding decodes");
        prop_assert_eq!(d::Outcome::try_from(decoded), Ok(o));
    }

    #[test]
    fn event_queries_roundtrip(
        s in stream(),
        after in position(),
        limit in 1..=READ_EVENTS_LIMIT_MAX,
        shards in shard_filter(),
    ) {
        let read = ReadEventsQuery { stream: s, after: after.clone(), limit, shards: shards.clone() };
        let bytes = pb::ReadEventsRequest::from(read.clone()).encode_to_vec();
        let decoded = pb::ReadEventsRequest::decode(bytes.as_slice()).expect("decodes");
        prop_assert_eq!(ReadEventsQuery::try_from(decoded), Ok(read));

        let sub = SubscribeQuery { stream: s, after, shards };
        let bytes = pb::SubscribeEventsRequest::from(sub.clone()).encode_to_vec();
        let decoded = pb::SubscribeEventsRequest::decode(bytes.as_slice()).expect("decodes");
        prop_assert_eq!(SubscribeQuery::try_from(decoded), Ok(sub));
    }

    #[test]
    fn state_queries_roundtrip(
        id in 1..=u32::MAX,
        depth in 1..=crate::BOOK_DEPTH_MAX,
        limit in 1..=crate::TRADES_LIMIT_MAX,
        at in prop_oneof![
            Just(None),
            any::<u64>().prop_map(|i| Some(AsOf::LogIndex(i))),
            any::<u64>().prop_map(|t| Some(AsOf::Time(d::Timestamp(t)))),
        ],
        stale in any::<bool>(),
        after_seq in proptest::option::of(any::<u64>()),
        from in 0..u64::MAX / 2,
        span in 1..1_000_000_000_000u64,
        order_ids in proptest::collection::btree_set(1..=u64::MAX, 0..20),
        shards in shard_filter(),
    ) {
        fn through<Q, W>(q: Q) -> Result<Q, crate::ApiError>
        where
            W: From<Q> + Message + Default,
            Q: TryFrom<W, Error = crate::ApiError>,
        {
            let bytes = W::from(q).encode_to_vec();
            Q::try_from(W::decode(bytes.as_slice()).expect("decodes"))
        }
        // as_of and stale do not combine: only one of them is drawn set.
        let stale_alone = stale && at.is_none();
        let (market, account) = (d::MarketId(id), d::AccountId(u64::from(id)));
        let b = BalancesQuery { account, as_of: at, stale: stale_alone };
        prop_assert_eq!(through::<_, pb::GetBalancesRequest>(b), Ok(b));
        let o = OrderQuery { market, order: d::OrderId(u64::from(id)), as_of: at, stale: stale_alone };
        prop_assert_eq!(through::<_, pb::GetOrderRequest>(o), Ok(o));
        let k = BookQuery { market, depth, as_of: at, stale: stale_alone };
        prop_assert_eq!(through::<_, pb::GetBookRequest>(k), Ok(k));
        let to = Some(d::Timestamp(from + span));
        let t = TradesQuery { market, after_seq, from: d::Timestamp(from), to, limit, stale };
        prop_assert_eq!(through::<_, pb::GetTradesRequest>(t), Ok(t));
        let c = CandlesQuery {
            market,
            interval_ns: 60_000_000_000,
            from: d::Timestamp(from),
            to: d::Timestamp(from + span),
            stale,
        };
        prop_assert_eq!(through::<_, pb::GetCandlesRequest>(c), Ok(c));
        let oo = OpenOrdersQuery {
            account,
            stale,
            partial: stale_alone,
            order_ids: order_ids.into_iter().map(d::OrderId).collect(),
            shards: shards.clone(),
        };
        prop_assert_eq!(through::<_, pb::GetOpenOrdersRequest>(oo.clone()), Ok(oo));
        let st = StatementQuery {
            account,
            asset: d::AssetId(id),
            from: d::Timestamp(from),
            to,
            limit,
            after_seq,
            stale,
        };
        prop_assert_eq!(through::<_, pb::GetStatementRequest>(st), Ok(st));
        let cat = CatalogQuery { stale };
        let bytes = pb::GetCatalogRequest::from(cat).encode_to_vec();
        let decoded = pb::GetCatalogRequest::decode(bytes.as_slice()).expect("decodes");
        prop_assert_eq!(CatalogQuery::from(decoded), cat);
    }
}

/// Draws `n` values and returns which variant indices appeared.
fn variants_seen<T: std::fmt::Debug>(
    strategy: BoxedStrategy<T>,
    variant: fn(&T) -> usize,
    count: usize,
) -> Vec<bool> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = vec![false; count];
    for _ in 0..4_000 {
        let v = strategy
            .new_tree(&mut runner)
            .expect("strategy draws")
            .current();
        seen[variant(&v)] = true;
    }
    seen
}

#[test]
fn strategies_cover_every_command_and_event_variant() {
    let seen = variants_seen(command(), command_variant, COMMAND_VARIANTS);
    assert!(seen.iter().all(|&s| s), "command variants drawn: {seen:?}");
    let seen = variants_seen(event(), event_variant, EVENT_VARIANTS);
    assert!(seen.iter().all(|&s| s), "event variants drawn: {seen:?}");
}

#[test]
fn batch_limits_are_inclusive() {
    let t = d::TransferSpec {
        id: d::TransferId(1),
        debit: d::AccountId(1),
        credit: d::AccountId(2),
        asset: d::AssetId(1),
        amount: d::Amount(5),
        balancing: false,
    };
    let linked = d::Command::LinkedTransfers(vec![t; d::LINKED_BATCH_LEN_MAX]);
    assert_eq!(
        d::Command::try_from(pb::Command::from(linked.clone())),
        Ok(linked)
    );
    let batch = vec![
        d::Command::HaltMarket {
            market: d::MarketId(1)
        };
        COMMAND_BATCH_LEN_MAX
    ];
    assert_eq!(
        Vec::<d::Command>::try_from(pb::CommandBatch::from(batch.clone())),
        Ok(batch)
    );
}

#[test]
fn defaults_of_optional_wire_fields() {
    // stp unset means cancel-resting; post_pending without amount posts everything.
    let order = pb::PlaceOrderRequest {
        account_id: 1,
        market_id: 2,
        side: pb::Side::Sell.into(),
        order_type: pb::OrderType::Market.into(),
        time_in_force: pb::TimeInForce::Ioc.into(),
        price: 0,
        qty: 100,
        post_only: false,
        client_order_id: 0,
        stp: pb::SelfTradePrevention::Unspecified.into(),
    };
    assert_eq!(
        d::NewOrder::try_from(order).map(|o| o.stp),
        Ok(d::SelfTradePrevention::CancelResting)
    );
    let post = pb::PostPendingRequest {
        debit_account_id: 1,
        transfer_id: 2,
        amount: None,
    };
    assert_eq!(
        d::Command::try_from(post),
        Ok(d::Command::PostPending {
            debit: d::AccountId(1),
            id: d::TransferId(2),
            amount: None
        })
    );
    // Query defaults: page sizes and the beginning of history.
    let q = crate::query::ReadEventsQuery::try_from(pb::ReadEventsRequest {
        stream: Some(EventStream::All.into()),
        after: None,
        limit: 0,
        shards: vec![],
    });
    assert_eq!(
        q,
        Ok(ReadEventsQuery {
            stream: EventStream::All,
            after: Position::default(),
            limit: crate::READ_EVENTS_LIMIT_DEFAULT,
            shards: ShardFilter::all(),
        })
    );
    let b = crate::query::BookQuery::try_from(pb::GetBookRequest {
        market_id: 3,
        depth: 0,
        as_of: None,
        stale: false,
    });
    assert_eq!(b.map(|b| b.depth), Ok(crate::BOOK_DEPTH_DEFAULT));
}
