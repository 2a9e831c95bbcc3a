//! No input panics: arbitrary bytes, and valid encodings with random damage, go through
//! `prost::Message::decode` and then `TryFrom`; whatever converts must convert back and
//! forth unchanged.

use super::strategies::{command, event_record, outcome};
use crate::proto as pb;
use crate::query;
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;
use tradelog_domain as d;

/// Decodes `bytes` as `$wire` and converts it to `$domain` if it decodes. With a third
/// argument, also checks that a converted value survives domain -> wire -> domain.
macro_rules! feed {
    ($bytes:expr, $wire:ty => $domain:ty) => {
        if let Ok(msg) = <$wire>::decode($bytes) {
            let _ = <$domain>::try_from(msg);
        }
    };
    ($bytes:expr, $wire:ty => $domain:ty, stable) => {
        if let Ok(msg) = <$wire>::decode($bytes) {
            if let Ok(v) = <$domain>::try_from(msg) {
                let again = <$domain>::try_from(<$wire>::from(v.clone()));
                prop_assert_eq!(again, Ok(v));
            }
        }
    };
}

/// Every message a server decodes from a client, and every message a client decodes from
/// a server.
fn feed_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    feed!(bytes, pb::CreateAssetRequest => d::Command);
    feed!(bytes, pb::CreateMarketRequest => d::Command);
    feed!(bytes, pb::OpenAccountRequest => d::Command);
    feed!(bytes, pb::DepositRequest => d::Command);
    feed!(bytes, pb::WithdrawRequest => d::Command);
    feed!(bytes, pb::TransferRequest => d::Command);
    feed!(bytes, pb::LinkedTransfersRequest => d::Command);
    feed!(bytes, pb::CreatePendingRequest => d::Command);
    feed!(bytes, pb::PostPendingRequest => d::Command);
    feed!(bytes, pb::VoidPendingRequest => d::Command);
    feed!(bytes, pb::FreezeAccountRequest => d::Command);
    feed!(bytes, pb::UnfreezeAccountRequest => d::Command);
    feed!(bytes, pb::CloseAccountRequest => d::Command);
    feed!(bytes, pb::PlaceOrderRequest => d::Command);
    feed!(bytes, pb::CancelOrderRequest => d::Command);
    feed!(bytes, pb::AmendOrderRequest => d::Command);
    feed!(bytes, pb::HaltMarketRequest => d::Command);
    feed!(bytes, pb::ResumeMarketRequest => d::Command);
    feed!(bytes, pb::Command => d::Command, stable);
    feed!(bytes, pb::CommandBatch => Vec<d::Command>, stable);
    feed!(bytes, pb::GetBalancesRequest => query::BalancesQuery);
    feed!(bytes, pb::GetBalanceHistoryRequest => query::BalanceHistoryQuery);
    feed!(bytes, pb::GetOrderRequest => query::OrderQuery);
    feed!(bytes, pb::GetBookRequest => query::BookQuery);
    feed!(bytes, pb::GetTradesRequest => query::TradesQuery);
    feed!(bytes, pb::GetCandlesRequest => query::CandlesQuery);
    feed!(bytes, pb::GetOpenOrdersRequest => query::OpenOrdersQuery);
    feed!(bytes, pb::GetStatementRequest => query::StatementQuery);
    feed!(bytes, pb::ReadEventsRequest => query::ReadEventsQuery, stable);
    feed!(bytes, pb::SubscribeEventsRequest => query::SubscribeQuery, stable);
    feed!(bytes, pb::EventRecord => d::EventRecord, stable);
    feed!(bytes, pb::Event => d::Event, stable);
    feed!(bytes, pb::Outcome => d::Outcome, stable);
    Ok(())
}

/// `bytes` with some bytes overwritten, and maybe cut short.
fn damage(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    if !bytes.is_empty() {
        for &(at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
    }
    if let Some(c) = cut {
        bytes.truncate(c % (bytes.len() + 1));
    }
    bytes
}

fn edits() -> impl Strategy<Value = (Vec<(usize, u8)>, Option<usize>)> {
    (
        vec((any::<usize>(), any::<u8>()), 1..6),
        proptest::option::of(any::<usize>()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        feed_all(&bytes)?;
    }

    #[test]
    fn damaged_commands_never_panic(cs in vec(command(), 1..4), (e, cut) in edits()) {
        let bytes = pb::CommandBatch::from(cs).encode_to_vec();
        feed_all(&damage(bytes, &e, cut))?;
    }

    #[test]
    fn damaged_events_never_panic(r in event_record(), o in outcome(), (e, cut) in edits()) {
        feed_all(&damage(pb::EventRecord::from(r).encode_to_vec(), &e, cut))?;
        feed_all(&damage(pb::Outcome::from(o).encode_to_vec(), &e, cut))?;
    }
}
