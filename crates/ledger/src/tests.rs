//! Tests of the ledger.
//!
//! * Whole-output unit tests: every operation, the exact event records it emits.
//! * One test per rejection path: the code, and that nothing changed (state, events, seq).
//! * Snapshots: `from_parts(to_parts())` round trip, corrupted parts are refused.
//! * A property test against a small reference model.
//!
//! `validate()` runs after every step of every test (see [`H::run`] and the property test).

use super::*;
use proptest::prelude::*;
use std::fmt::Debug;

const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);
const NOPE: AssetId = AssetId(9);
const A: AccountId = AccountId(1);
const B: AccountId = AccountId(2);
const C: AccountId = AccountId(3);
const GHOST: AccountId = AccountId(42);
const REMOTE: AccountId = AccountId(900);
const FEES: AccountId = AccountId(77);
const OWNER: Principal = Principal(7);
const NOW: Timestamp = Timestamp(1_000);
const NS_PER_MS: u64 = 1_000_000;

// ----- helpers ---------------------------------------------------------------------------

/// The record a step's sink stamps around `event`.
fn rec(seq: u64, event: Event) -> EventRecord {
    rec_at(NOW, seq, event)
}

fn rec_at(timestamp: Timestamp, seq: u64, event: Event) -> EventRecord {
    EventRecord {
        shard: ShardId(0),
        seq,
        input: 1,
        timestamp,
        principal: OWNER,
        event,
    }
}

fn bal_ev(account: AccountId, asset: AssetId, available: u64, held: u64) -> Event {
    Event::Balance {
        account,
        asset,
        available: Amount(available),
        held: Amount(held),
    }
}

fn spec(id: u64, debit: AccountId, credit: AccountId, asset: AssetId, amount: u64) -> TransferSpec {
    TransferSpec {
        id: TransferId(id),
        debit,
        credit,
        asset,
        amount: Amount(amount),
        balancing: false,
    }
}

fn balancing(
    id: u64,
    debit: AccountId,
    credit: AccountId,
    asset: AssetId,
    amount: u64,
) -> TransferSpec {
    TransferSpec {
        balancing: true,
        ..spec(id, debit, credit, asset, amount)
    }
}

/// (available, held) of an account's asset.
fn bal(l: &Ledger, a: AccountId, asset: AssetId) -> (u64, u64) {
    let b = l.account(a).expect("account exists").balance(asset);
    (b.available.0, b.held.0)
}

fn totals(l: &Ledger, asset: AssetId) -> AssetTotals {
    l.totals().get(&asset).copied().unwrap_or_default()
}

fn order(n: u64) -> OrderId {
    OrderId::new(ShardId(0), n)
}

/// A ledger plus the shard's event counter; every step gets a fresh sink.
struct H {
    l: Ledger,
    seq: u64,
    /// Leader time of the next steps (always `NOW` but where a test needs time to pass).
    now: Timestamp,
}

impl H {
    /// Catalog USD and BTC, no accounts.
    fn new() -> H {
        let mut l = Ledger::new();
        l.add_asset(USD);
        l.add_asset(BTC);
        l.validate().unwrap();
        H {
            l,
            seq: 1,
            now: NOW,
        }
    }

    fn with_accounts(ids: &[AccountId]) -> H {
        let mut h = H::new();
        for &id in ids {
            h.ok(|l, s| l.open_account(id, OWNER, s));
        }
        h
    }

    /// A, B, C open; A has 1000 USD, B has 500 BTC.
    fn funded() -> H {
        let mut h = H::with_accounts(&[A, B, C]);
        h.ok(|l, s| l.deposit(TransferId(1), A, USD, Amount(1_000), s));
        h.ok(|l, s| l.deposit(TransferId(2), B, BTC, Amount(500), s));
        h
    }

    /// Runs one step with a fresh sink, then validates.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Ledger, &mut EventSink<'_>) -> T,
    ) -> (T, Vec<EventRecord>) {
        let mut out = Vec::new();
        let r = {
            let mut sink = EventSink::new(&mut out, ShardId(0), 1, self.now, OWNER, &mut self.seq);
            f(&mut self.l, &mut sink)
        };
        if let Err(v) = self.l.validate() {
            panic!("invariant broken: {v}");
        }
        (r, out)
    }

    /// A setup step that must succeed (its output is tested elsewhere).
    fn ok<T, E: Debug>(
        &mut self,
        f: impl FnOnce(&mut Ledger, &mut EventSink<'_>) -> Result<T, E>,
    ) -> T {
        self.run(f).0.expect("setup step failed")
    }

    /// One step whose whole output must be `result` and exactly `events`, numbered on from
    /// the current sequence number.
    fn step<T: Debug + PartialEq>(
        &mut self,
        result: T,
        events: Vec<Event>,
        f: impl FnOnce(&mut Ledger, &mut EventSink<'_>) -> T,
    ) {
        let first = self.seq;
        let (r, out) = self.run(f);
        assert_eq!(result, r);
        let expected: Vec<EventRecord> = events
            .into_iter()
            .enumerate()
            .map(|(n, e)| rec_at(self.now, first + n as u64, e))
            .collect();
        assert_eq!(expected, out);
        assert_eq!(first + out.len() as u64, self.seq);
    }

    /// A step that must be refused; checks that it changed nothing: parts, events already
    /// in the output, sequence counter. Returns the error.
    fn fail<T: Debug, E>(
        &mut self,
        f: impl FnOnce(&mut Ledger, &mut EventSink<'_>) -> Result<T, E>,
    ) -> E {
        let before = self.l.to_parts();
        let seq = self.seq;
        let earlier = rec(0, Event::AccountFrozen { account: GHOST });
        let mut out = vec![earlier.clone()];
        let r = {
            let mut sink = EventSink::new(&mut out, ShardId(0), 1, NOW, OWNER, &mut self.seq);
            f(&mut self.l, &mut sink)
        };
        let e = match r {
            Ok(v) => panic!("expected a rejection, got Ok({v:?})"),
            Err(e) => e,
        };
        assert_eq!(vec![earlier], out, "a rejection emitted events");
        assert_eq!(seq, self.seq, "a rejection used sequence numbers");
        assert_eq!(before, self.l.to_parts(), "a rejection changed the ledger");
        self.l.validate().unwrap();
        e
    }

    fn reject<T: Debug>(
        &mut self,
        code: RejectCode,
        f: impl FnOnce(&mut Ledger, &mut EventSink<'_>) -> Result<T, RejectCode>,
    ) {
        assert_eq!(code, self.fail(f));
    }
}

// ----- whole-output unit tests -----------------------------------------------------------

#[test]
fn open_account_emits_opened() {
    let mut h = H::new();
    h.step(
        Ok(()),
        vec![Event::AccountOpened {
            account: A,
            owner: OWNER,
        }],
        |l, s| l.open_account(A, OWNER, s),
    );
    h.step(
        Ok(()),
        vec![Event::AccountOpened {
            account: B,
            owner: Principal(9),
        }],
        |l, s| l.open_account(B, Principal(9), s),
    );
    let expected = |id, owner| Account {
        id,
        owner,
        status: AccountStatus::Active,
        balances: Default::default(),
        open_orders: 0,
    };
    assert_eq!(
        h.l.accounts(),
        &[expected(A, OWNER), expected(B, Principal(9))]
    );
    assert_eq!(h.l.account(B), Some(&expected(B, Principal(9))));
    assert_eq!(h.l.owner(B), Ok(Principal(9)));
    assert_eq!(h.l.len(), 2);
}

#[test]
fn deposit_and_withdraw() {
    let mut h = H::with_accounts(&[A]);
    h.step(
        Ok(()),
        vec![
            Event::Deposited {
                id: TransferId(10),
                account: A,
                asset: USD,
                amount: Amount(100),
            },
            bal_ev(A, USD, 100, 0),
        ],
        |l, s| l.deposit(TransferId(10), A, USD, Amount(100), s),
    );
    h.step(
        Ok(()),
        vec![
            Event::Deposited {
                id: TransferId(11),
                account: A,
                asset: BTC,
                amount: Amount(50),
            },
            bal_ev(A, BTC, 50, 0),
        ],
        |l, s| l.deposit(TransferId(11), A, BTC, Amount(50), s),
    );
    h.step(
        Ok(()),
        vec![
            Event::Deposited {
                id: TransferId(12),
                account: A,
                asset: USD,
                amount: Amount(5),
            },
            bal_ev(A, USD, 105, 0),
        ],
        |l, s| l.deposit(TransferId(12), A, USD, Amount(5), s),
    );
    h.step(
        Ok(()),
        vec![
            Event::Withdrawn {
                id: TransferId(13),
                account: A,
                asset: USD,
                amount: Amount(30),
            },
            bal_ev(A, USD, 75, 0),
        ],
        |l, s| l.withdraw(TransferId(13), A, USD, Amount(30), s),
    );
    // Everything that is left.
    h.step(
        Ok(()),
        vec![
            Event::Withdrawn {
                id: TransferId(14),
                account: A,
                asset: USD,
                amount: Amount(75),
            },
            bal_ev(A, USD, 0, 0),
        ],
        |l, s| l.withdraw(TransferId(14), A, USD, Amount(75), s),
    );
    // Balances keep the order in which assets were first touched.
    let a = h.l.account(A).unwrap();
    assert_eq!(
        a.balances.to_vec(),
        vec![
            Balance {
                asset: USD,
                available: Amount(0),
                held: Amount(0)
            },
            Balance {
                asset: BTC,
                available: Amount(50),
                held: Amount(0)
            },
        ]
    );
    assert_eq!(
        totals(&h.l, USD),
        AssetTotals {
            deposited: 105,
            withdrawn: 105,
            received: 0,
            sent: 0
        }
    );
    assert_eq!(
        totals(&h.l, BTC),
        AssetTotals {
            deposited: 50,
            withdrawn: 0,
            received: 0,
            sent: 0
        }
    );
}

#[test]
fn deposit_of_amount_max_is_accepted() {
    let mut h = H::with_accounts(&[A]);
    h.step(
        Ok(()),
        vec![
            Event::Deposited {
                id: TransferId(1),
                account: A,
                asset: USD,
                amount: Amount(AMOUNT_MAX),
            },
            bal_ev(A, USD, AMOUNT_MAX, 0),
        ],
        |l, s| l.deposit(TransferId(1), A, USD, Amount(AMOUNT_MAX), s),
    );
}

#[test]
fn transfer_local_moves_available() {
    let mut h = H::funded();
    h.step(
        Ok(Amount(300)),
        vec![
            Event::TransferPosted {
                id: TransferId(5),
                debit: A,
                credit: B,
                asset: USD,
                amount: Amount(300),
            },
            bal_ev(A, USD, 700, 0),
            bal_ev(B, USD, 300, 0),
        ],
        |l, s| l.transfer_local(&spec(5, A, B, USD, 300), s),
    );
    // Exactly everything that is available.
    h.step(
        Ok(Amount(700)),
        vec![
            Event::TransferPosted {
                id: TransferId(6),
                debit: A,
                credit: C,
                asset: USD,
                amount: Amount(700),
            },
            bal_ev(A, USD, 0, 0),
            bal_ev(C, USD, 700, 0),
        ],
        |l, s| l.transfer_local(&spec(6, A, C, USD, 700), s),
    );
    // B got its USD slot after its BTC one.
    let assets: Vec<AssetId> =
        h.l.account(B)
            .unwrap()
            .balances
            .iter()
            .map(|b| b.asset)
            .collect();
    assert_eq!(assets, vec![BTC, USD]);
    // Local transfers are not flows.
    assert_eq!(
        totals(&h.l, USD),
        AssetTotals {
            deposited: 1_000,
            ..Default::default()
        }
    );
}

#[test]
fn transfer_local_balancing_moves_at_most_available() {
    let mut h = H::funded();
    h.step(
        Ok(Amount(1_000)),
        vec![
            Event::TransferPosted {
                id: TransferId(5),
                debit: A,
                credit: B,
                asset: USD,
                amount: Amount(1_000),
            },
            bal_ev(A, USD, 0, 0),
            bal_ev(B, USD, 1_000, 0),
        ],
        |l, s| l.transfer_local(&balancing(5, A, B, USD, 5_000), s),
    );
    // Less than available: the asked amount moves.
    h.step(
        Ok(Amount(10)),
        vec![
            Event::TransferPosted {
                id: TransferId(6),
                debit: B,
                credit: A,
                asset: USD,
                amount: Amount(10),
            },
            bal_ev(B, USD, 990, 0),
            bal_ev(A, USD, 10, 0),
        ],
        |l, s| l.transfer_local(&balancing(6, B, A, USD, 10), s),
    );
}

#[test]
fn transfer_linked_applies_every_transfer_in_order() {
    let mut h = H::funded();
    // The second transfer spends what the first one brought.
    let batch = vec![
        spec(7, A, B, USD, 100),
        spec(8, B, C, USD, 100),
        balancing(9, B, A, BTC, 10_000),
    ];
    h.step(
        Ok(()),
        vec![
            Event::TransferPosted {
                id: TransferId(7),
                debit: A,
                credit: B,
                asset: USD,
                amount: Amount(100),
            },
            bal_ev(A, USD, 900, 0),
            bal_ev(B, USD, 100, 0),
            Event::TransferPosted {
                id: TransferId(8),
                debit: B,
                credit: C,
                asset: USD,
                amount: Amount(100),
            },
            bal_ev(B, USD, 0, 0),
            bal_ev(C, USD, 100, 0),
            Event::TransferPosted {
                id: TransferId(9),
                debit: B,
                credit: A,
                asset: BTC,
                amount: Amount(500),
            },
            bal_ev(B, BTC, 0, 0),
            bal_ev(A, BTC, 500, 0),
        ],
        |l, s| l.transfer_linked(&batch, s),
    );
}

#[test]
fn remote_transfer_begin_then_finish_ok() {
    let mut h = H::funded();
    h.step(
        Ok(Amount(400)),
        vec![
            Event::TransferInitiated {
                id: TransferId(20),
                debit: A,
                credit: REMOTE,
                asset: USD,
                amount: Amount(400),
                to: ShardId(3),
            },
            bal_ev(A, USD, 600, 400),
        ],
        |l, s| l.begin_remote(&spec(20, A, REMOTE, USD, 400), ShardId(3), s),
    );
    assert_eq!(
        h.l.inflight().values().cloned().collect::<Vec<_>>(),
        vec![InFlight {
            id: TransferId(20),
            debit: A,
            credit: REMOTE,
            asset: USD,
            amount: Amount(400),
            posted: Amount(400),
            pending_expires_at: None,
        }]
    );
    h.step(
        (),
        vec![
            Event::TransferPosted {
                id: TransferId(20),
                debit: A,
                credit: REMOTE,
                asset: USD,
                amount: Amount(400),
            },
            bal_ev(A, USD, 600, 0),
        ],
        |l, s| l.finish_remote(TransferId(20), Ok(()), s),
    );
    assert!(h.l.inflight().is_empty());
    assert_eq!(
        totals(&h.l, USD),
        AssetTotals {
            deposited: 1_000,
            sent: 400,
            ..Default::default()
        }
    );
    // Balancing: at most what is available.
    h.step(
        Ok(Amount(600)),
        vec![
            Event::TransferInitiated {
                id: TransferId(21),
                debit: A,
                credit: REMOTE,
                asset: USD,
                amount: Amount(600),
                to: ShardId(3),
            },
            bal_ev(A, USD, 0, 600),
        ],
        |l, s| l.begin_remote(&balancing(21, A, REMOTE, USD, 10_000), ShardId(3), s),
    );
}

#[test]
fn remote_transfer_finish_err_refunds() {
    let mut h = H::funded();
    h.ok(|l, s| l.begin_remote(&spec(20, A, REMOTE, USD, 400), ShardId(3), s));
    h.step(
        (),
        vec![
            Event::TransferRefunded {
                id: TransferId(20),
                code: RejectCode::AccountFrozen,
            },
            bal_ev(A, USD, 1_000, 0),
        ],
        |l, s| l.finish_remote(TransferId(20), Err(RejectCode::AccountFrozen), s),
    );
    assert!(h.l.inflight().is_empty());
    assert_eq!(
        totals(&h.l, USD),
        AssetTotals {
            deposited: 1_000,
            ..Default::default()
        }
    );
}

#[test]
fn credit_remote_credits_available() {
    let mut h = H::funded();
    h.step(
        Ok(()),
        vec![
            Event::TransferCredited {
                id: TransferId(30),
                debit: REMOTE,
                credit: C,
                asset: BTC,
                amount: Amount(25),
                from: ShardId(4),
            },
            bal_ev(C, BTC, 25, 0),
        ],
        |l, s| l.credit_remote(TransferId(30), REMOTE, C, BTC, Amount(25), ShardId(4), s),
    );
    assert_eq!(
        totals(&h.l, BTC),
        AssetTotals {
            deposited: 500,
            received: 25,
            ..Default::default()
        }
    );
}

fn pending_created(id: u64, credit: AccountId, amount: u64, timeout_ms: u64) -> Event {
    Event::PendingCreated {
        id: TransferId(id),
        debit: A,
        credit,
        asset: USD,
        amount: Amount(amount),
        expires_at: Timestamp(NOW.0 + timeout_ms * NS_PER_MS),
    }
}

#[test]
fn pending_create_then_post_full() {
    let mut h = H::funded();
    h.step(
        Ok(Amount(300)),
        vec![pending_created(40, B, 300, 5_000), bal_ev(A, USD, 700, 300)],
        |l, s| l.create_pending(&spec(40, A, B, USD, 300), 5_000, s),
    );
    let p = Pending {
        id: TransferId(40),
        debit: A,
        credit: B,
        asset: USD,
        amount: Amount(300),
        expires_at: Timestamp(1_000 + 5_000 * NS_PER_MS),
    };
    assert_eq!(h.l.pending_transfer(TransferId(40)), Ok(&p));
    assert_eq!(h.l.pending().values().collect::<Vec<_>>(), vec![&p]);
    h.step(
        Ok(Amount(300)),
        vec![
            Event::PendingPosted {
                id: TransferId(40),
                amount: Amount(300),
                released: Amount(0),
            },
            Event::TransferPosted {
                id: TransferId(40),
                debit: A,
                credit: B,
                asset: USD,
                amount: Amount(300),
            },
            bal_ev(A, USD, 700, 0),
            bal_ev(B, USD, 300, 0),
        ],
        |l, s| l.post_pending(TransferId(40), None, None, s),
    );
    assert!(h.l.pending().is_empty());
    assert_eq!(
        h.l.pending_transfer(TransferId(40)),
        Err(RejectCode::UnknownTransfer)
    );
    // Its timeout is gone with it.
    h.step((), vec![], |l, s| l.expire(Timestamp(u64::MAX), s));
}

#[test]
fn pending_create_balancing_reserves_at_most_available() {
    let mut h = H::funded();
    h.step(
        Ok(Amount(1_000)),
        vec![pending_created(40, B, 1_000, 1), bal_ev(A, USD, 0, 1_000)],
        |l, s| l.create_pending(&balancing(40, A, B, USD, 9_999), 1, s),
    );
}

#[test]
fn pending_post_partial_releases_the_rest() {
    let mut h = H::funded();
    h.ok(|l, s| l.create_pending(&spec(40, A, B, USD, 300), 5_000, s));
    h.step(
        Ok(Amount(120)),
        vec![
            Event::PendingPosted {
                id: TransferId(40),
                amount: Amount(120),
                released: Amount(180),
            },
            Event::TransferPosted {
                id: TransferId(40),
                debit: A,
                credit: B,
                asset: USD,
                amount: Amount(120),
            },
            bal_ev(A, USD, 880, 0),
            bal_ev(B, USD, 120, 0),
        ],
        |l, s| l.post_pending(TransferId(40), Some(Amount(120)), None, s),
    );
    assert!(h.l.pending().is_empty());
}

#[test]
fn pending_post_remote_then_credit_ok() {
    let mut h = H::funded();
    h.step(
        Ok(Amount(300)),
        vec![
            pending_created(41, REMOTE, 300, 5_000),
            bal_ev(A, USD, 700, 300),
        ],
        |l, s| l.create_pending(&spec(41, A, REMOTE, USD, 300), 5_000, s),
    );
    // Nothing moves until the credit shard answers: the whole pending amount stays held.
    h.step(
        Ok(Amount(100)),
        vec![Event::TransferInitiated {
            id: TransferId(41),
            debit: A,
            credit: REMOTE,
            asset: USD,
            amount: Amount(100),
            to: ShardId(5),
        }],
        |l, s| l.post_pending(TransferId(41), Some(Amount(100)), Some(ShardId(5)), s),
    );
    assert_eq!(bal(&h.l, A, USD), (700, 300));
    assert!(h.l.pending().is_empty());
    assert_eq!(
        h.l.inflight().values().cloned().collect::<Vec<_>>(),
        vec![InFlight {
            id: TransferId(41),
            debit: A,
            credit: REMOTE,
            asset: USD,
            amount: Amount(300),
            posted: Amount(100),
            pending_expires_at: Some(Timestamp(NOW.0 + 5_000 * NS_PER_MS)),
        }]
    );
    // In flight, it cannot time out.
    assert!(!h.l.has_due_expiry(Timestamp(u64::MAX)));
    h.step((), vec![], |l, s| l.expire(Timestamp(u64::MAX), s));
    h.step(
        (),
        vec![
            Event::PendingPosted {
                id: TransferId(41),
                amount: Amount(100),
                released: Amount(200),
            },
            Event::TransferPosted {
                id: TransferId(41),
                debit: A,
                credit: REMOTE,
                asset: USD,
                amount: Amount(100),
            },
            bal_ev(A, USD, 900, 0),
        ],
        |l, s| l.finish_remote(TransferId(41), Ok(()), s),
    );
    assert!(h.l.inflight().is_empty() && h.l.pending().is_empty());
    assert_eq!(
        totals(&h.l, USD),
        AssetTotals {
            deposited: 1_000,
            sent: 100,
            ..Default::default()
        }
    );
}

#[test]
fn pending_post_remote_refused_reopens_the_pending_transfer() {
    let mut h = H::funded();
    h.ok(|l, s| l.create_pending(&spec(42, A, REMOTE, USD, 300), 5_000, s));
    h.step(
        Ok(Amount(300)),
        vec![Event::TransferInitiated {
            id: TransferId(42),
            debit: A,
            credit: REMOTE,
            asset: USD,
            amount: Amount(300),
            to: ShardId(5),
        }],
        |l, s| l.post_pending(TransferId(42), None, Some(ShardId(5)), s),
    );
    let parts_before_post = {
        let mut p = h.l.to_parts();
        p.inflight.clear();
        p
    };
    // Refused before the timeout: the pending transfer is open again, funds still held.
    h.step(
        (),
        vec![Event::TransferRefunded {
            id: TransferId(42),
            code: RejectCode::AccountClosed,
        }],
        |l, s| l.finish_remote(TransferId(42), Err(RejectCode::AccountClosed), s),
    );
    assert!(h.l.inflight().is_empty());
    let p = Pending {
        id: TransferId(42),
        debit: A,
        credit: REMOTE,
        asset: USD,
        amount: Amount(300),
        expires_at: Timestamp(NOW.0 + 5_000 * NS_PER_MS),
    };
    assert_eq!(h.l.pending_transfer(TransferId(42)), Ok(&p));
    assert_eq!(bal(&h.l, A, USD), (700, 300));
    assert_eq!(h.l.to_parts().pending, vec![p.clone()]);
    assert_eq!(h.l.to_parts().accounts, parts_before_post.accounts);
    assert_eq!(totals(&h.l, USD).sent, 0);
    // ... with its timeout back.
    assert!(h.l.has_due_expiry(p.expires_at));
    h.step(
        (),
        vec![
            Event::PendingVoided {
                id: TransferId(42),
                amount: Amount(300),
                expired: true,
            },
            bal_ev(A, USD, 1_000, 0),
        ],
        |l, s| l.expire(p.expires_at, s),
    );

    // Refused after the timeout passed: reopened and voided by the timeout at once.
    h.ok(|l, s| l.create_pending(&spec(43, A, REMOTE, USD, 300), 5, s));
    h.ok(|l, s| l.post_pending(TransferId(43), Some(Amount(10)), Some(ShardId(5)), s));
    h.now = Timestamp(NOW.0 + 5 * NS_PER_MS);
    h.step(
        (),
        vec![
            Event::TransferRefunded {
                id: TransferId(43),
                code: RejectCode::AccountFrozen,
            },
            Event::PendingVoided {
                id: TransferId(43),
                amount: Amount(300),
                expired: true,
            },
            bal_ev(A, USD, 1_000, 0),
        ],
        |l, s| l.finish_remote(TransferId(43), Err(RejectCode::AccountFrozen), s),
    );
    assert!(h.l.pending().is_empty() && h.l.inflight().is_empty());
}

#[test]
fn pending_void_releases_everything() {
    let mut h = H::funded();
    h.ok(|l, s| l.create_pending(&spec(40, A, B, USD, 300), 5_000, s));
    h.step(
        Ok(()),
        vec![
            Event::PendingVoided {
                id: TransferId(40),
                amount: Amount(300),
                expired: false,
            },
            bal_ev(A, USD, 1_000, 0),
        ],
        |l, s| l.void_pending(TransferId(40), false, s),
    );
    assert!(h.l.pending().is_empty());
    h.step((), vec![], |l, s| l.expire(Timestamp(u64::MAX), s));
    h.reject(RejectCode::UnknownTransfer, |l, s| {
        l.void_pending(TransferId(40), false, s)
    });
}

#[test]
fn expire_voids_due_pending_transfers_oldest_first() {
    let mut h = H::funded();
    h.ok(|l, s| l.create_pending(&spec(50, A, B, USD, 100), 20, s));
    h.ok(|l, s| l.create_pending(&spec(51, A, B, USD, 200), 10, s));
    h.ok(|l, s| l.create_pending(&spec(52, A, B, USD, 300), 30, s));
    assert_eq!(bal(&h.l, A, USD), (400, 600));
    // Just before the first timeout: nothing.
    h.step((), vec![], |l, s| {
        l.expire(Timestamp(NOW.0 + 10 * NS_PER_MS - 1), s)
    });
    // Two due: by timeout, not by id.
    h.step(
        (),
        vec![
            Event::PendingVoided {
                id: TransferId(51),
                amount: Amount(200),
                expired: true,
            },
            bal_ev(A, USD, 600, 400),
            Event::PendingVoided {
                id: TransferId(50),
                amount: Amount(100),
                expired: true,
            },
            bal_ev(A, USD, 700, 300),
        ],
        |l, s| l.expire(Timestamp(NOW.0 + 20 * NS_PER_MS), s),
    );
    assert_eq!(
        h.l.pending().keys().copied().collect::<Vec<_>>(),
        vec![TransferId(52)]
    );
    h.step(
        (),
        vec![
            Event::PendingVoided {
                id: TransferId(52),
                amount: Amount(300),
                expired: true,
            },
            bal_ev(A, USD, 1_000, 0),
        ],
        |l, s| l.expire(Timestamp(NOW.0 + 30 * NS_PER_MS), s),
    );
    h.step((), vec![], |l, s| l.expire(Timestamp(u64::MAX), s));
    assert!(h.l.pending().is_empty());
}

#[test]
fn freeze_unfreeze_close() {
    let mut h = H::with_accounts(&[A]);
    let status = |h: &H| h.l.account(A).unwrap().status;
    h.step(Ok(()), vec![Event::AccountFrozen { account: A }], |l, s| {
        l.freeze(A, s)
    });
    assert_eq!(status(&h), AccountStatus::Frozen);
    assert_eq!(h.l.check_active(A), Err(RejectCode::AccountFrozen));
    h.step(
        Ok(()),
        vec![Event::AccountUnfrozen { account: A }],
        |l, s| l.unfreeze(A, s),
    );
    assert_eq!(status(&h), AccountStatus::Active);
    assert_eq!(h.l.check_active(A), Ok(()));
    // Emptied balances do not keep an account open.
    h.ok(|l, s| l.deposit(TransferId(1), A, USD, Amount(10), s));
    h.ok(|l, s| l.withdraw(TransferId(2), A, USD, Amount(10), s));
    h.step(Ok(()), vec![Event::AccountClosed { account: A }], |l, s| {
        l.close(A, s)
    });
    assert_eq!(status(&h), AccountStatus::Closed);
    assert_eq!(h.l.check_active(A), Err(RejectCode::AccountClosed));
}

#[test]
fn orders_hold_settle_release() {
    let mut h = H::funded();
    let (o1, o2) = (order(1), order(2));
    h.step(
        Ok(()),
        vec![
            Event::FundsHeld {
                order: o1,
                account: A,
                asset: USD,
                amount: Amount(500),
            },
            bal_ev(A, USD, 500, 500),
        ],
        |l, s| l.hold_order(o1, A, USD, BTC, Amount(500), 0, s),
    );
    // The other asset got a slot, so settlement can never be refused.
    let a = h.l.account(A).unwrap();
    assert_eq!(a.open_orders, 1);
    assert_eq!(
        a.balances.to_vec(),
        vec![
            Balance {
                asset: USD,
                available: Amount(500),
                held: Amount(500)
            },
            Balance {
                asset: BTC,
                available: Amount(0),
                held: Amount(0)
            },
        ]
    );
    assert_eq!(
        h.l.order_hold(o1),
        Some(&OrderHold {
            account: A,
            asset: USD,
            amount: Amount(500),
            client_order_id: 0,
        })
    );
    h.step(
        Ok(()),
        vec![
            Event::FundsHeld {
                order: o2,
                account: A,
                asset: USD,
                amount: Amount(100),
            },
            bal_ev(A, USD, 400, 600),
        ],
        |l, s| l.hold_order(o2, A, USD, BTC, Amount(100), 0, s),
    );
    assert_eq!(h.l.account(A).unwrap().open_orders, 2);

    // Settlement and release go on while the account is frozen.
    h.ok(|l, s| l.freeze(A, s));
    h.step(
        (),
        vec![
            Event::Settled {
                order: o1,
                account: A,
                paid_asset: USD,
                paid: Amount(200),
                received_asset: BTC,
                received: Amount(3),
                fee: Amount(2),
            },
            bal_ev(A, USD, 400, 400),
            bal_ev(A, BTC, 3, 0),
        ],
        |l, s| l.settle(o1, A, USD, Amount(200), BTC, Amount(3), Amount(2), s),
    );
    assert_eq!(h.l.order_hold(o1).unwrap().amount, Amount(300));
    assert_eq!(
        totals(&h.l, USD),
        AssetTotals {
            deposited: 1_000,
            sent: 200,
            ..Default::default()
        }
    );
    assert_eq!(
        totals(&h.l, BTC),
        AssetTotals {
            deposited: 500,
            received: 3,
            ..Default::default()
        }
    );
    h.step(
        (),
        vec![
            Event::FundsReleased {
                order: o1,
                account: A,
                asset: USD,
                amount: Amount(50),
            },
            bal_ev(A, USD, 450, 350),
        ],
        |l, s| l.release(o1, A, USD, Amount(50), false, s),
    );
    assert_eq!(h.l.order_hold(o1).unwrap().amount, Amount(250));
    assert_eq!(h.l.account(A).unwrap().open_orders, 2);
    h.step(
        (),
        vec![
            Event::FundsReleased {
                order: o1,
                account: A,
                asset: USD,
                amount: Amount(250),
            },
            bal_ev(A, USD, 700, 100),
        ],
        |l, s| l.release(o1, A, USD, Amount(250), true, s),
    );
    assert_eq!(h.l.order_hold(o1), None);
    assert_eq!(h.l.account(A).unwrap().open_orders, 1);

    // o2 fills completely; closing it releases nothing and emits nothing.
    h.step(
        (),
        vec![
            Event::Settled {
                order: o2,
                account: A,
                paid_asset: USD,
                paid: Amount(100),
                received_asset: BTC,
                received: Amount(1),
                fee: Amount(0),
            },
            bal_ev(A, USD, 700, 0),
            bal_ev(A, BTC, 4, 0),
        ],
        |l, s| l.settle(o2, A, USD, Amount(100), BTC, Amount(1), Amount(0), s),
    );
    assert_eq!(h.l.order_hold(o2).unwrap().amount, Amount(0));
    h.step((), vec![], |l, s| l.release(o2, A, USD, Amount(0), true, s));
    assert_eq!(h.l.order_hold(o2), None);
    assert_eq!(h.l.account(A).unwrap().open_orders, 0);
    assert!(h.l.order_holds_sorted().is_empty());
}

#[test]
fn credit_fee_opens_the_fee_account_on_first_use() {
    let mut h = H::funded();
    h.step(
        (),
        vec![
            Event::AccountOpened {
                account: FEES,
                owner: Principal::SYSTEM,
            },
            Event::FeeCollected {
                market: MarketId(3),
                account: FEES,
                asset: USD,
                amount: Amount(5),
            },
            bal_ev(FEES, USD, 5, 0),
        ],
        |l, s| l.credit_fee(MarketId(3), FEES, USD, Amount(5), s),
    );
    assert_eq!(h.l.owner(FEES), Ok(Principal::SYSTEM));
    h.step(
        (),
        vec![
            Event::FeeCollected {
                market: MarketId(3),
                account: FEES,
                asset: USD,
                amount: Amount(7),
            },
            bal_ev(FEES, USD, 12, 0),
        ],
        |l, s| l.credit_fee(MarketId(3), FEES, USD, Amount(7), s),
    );
    h.step(
        (),
        vec![
            Event::FeeCollected {
                market: MarketId(4),
                account: FEES,
                asset: BTC,
                amount: Amount(2),
            },
            bal_ev(FEES, BTC, 2, 0),
        ],
        |l, s| l.credit_fee(MarketId(4), FEES, BTC, Amount(2), s),
    );
    assert_eq!(totals(&h.l, USD).received, 12);
    assert_eq!(totals(&h.l, BTC).received, 2);
}

// ----- rejections ------------------------------------------------------------------------

#[test]
fn rejects_unknown_account() {
    use RejectCode::UnknownAccount as U;
    let mut h = H::funded();
    h.reject(U, |l, s| l.open_account(AccountId(0), OWNER, s));
    h.reject(U, |l, s| l.deposit(TransferId(3), GHOST, USD, Amount(1), s));
    h.reject(U, |l, s| {
        l.withdraw(TransferId(3), GHOST, USD, Amount(1), s)
    });
    h.reject(U, |l, s| l.transfer_local(&spec(3, A, GHOST, USD, 1), s));
    h.reject(U, |l, s| l.transfer_local(&spec(3, GHOST, A, USD, 1), s));
    h.reject(U, |l, s| {
        l.begin_remote(&spec(3, GHOST, REMOTE, USD, 1), ShardId(1), s)
    });
    h.reject(U, |l, s| {
        l.create_pending(&spec(3, GHOST, A, USD, 1), 10, s)
    });
    h.reject(U, |l, s| {
        l.credit_remote(TransferId(3), REMOTE, GHOST, USD, Amount(1), ShardId(1), s)
    });
    h.reject(U, |l, s| l.freeze(GHOST, s));
    h.reject(U, |l, s| l.unfreeze(GHOST, s));
    h.reject(U, |l, s| l.close(GHOST, s));
    h.reject(U, |l, s| {
        l.hold_order(order(1), GHOST, USD, BTC, Amount(1), 0, s)
    });
    assert_eq!(h.l.owner(GHOST), Err(U));
    assert_eq!(h.l.check_active(GHOST), Err(U));
    // The credit account of a pending transfer is checked when it is posted (locally).
    h.ok(|l, s| l.create_pending(&spec(4, A, GHOST, USD, 10), 10, s));
    h.reject(U, |l, s| l.post_pending(TransferId(4), None, None, s));
}

#[test]
fn rejects_unknown_asset() {
    use RejectCode::UnknownAsset as U;
    let mut h = H::funded();
    h.reject(U, |l, s| l.deposit(TransferId(3), A, NOPE, Amount(1), s));
    h.reject(U, |l, s| l.withdraw(TransferId(3), A, NOPE, Amount(1), s));
    h.reject(U, |l, s| l.transfer_local(&spec(3, A, B, NOPE, 1), s));
    h.reject(U, |l, s| l.transfer_local(&balancing(3, A, B, NOPE, 1), s));
    h.reject(U, |l, s| {
        l.begin_remote(&spec(3, A, REMOTE, NOPE, 1), ShardId(1), s)
    });
    h.reject(U, |l, s| l.create_pending(&spec(3, A, B, NOPE, 1), 10, s));
    h.reject(U, |l, s| {
        l.credit_remote(TransferId(3), REMOTE, A, NOPE, Amount(1), ShardId(1), s)
    });
    assert!(!h.l.has_asset(NOPE));
}

#[test]
fn rejects_zero_amount() {
    use RejectCode::ZeroAmount as Z;
    let mut h = H::funded();
    h.reject(Z, |l, s| l.deposit(TransferId(3), A, USD, Amount(0), s));
    h.reject(Z, |l, s| l.withdraw(TransferId(3), A, USD, Amount(0), s));
    h.reject(Z, |l, s| l.transfer_local(&spec(3, A, B, USD, 0), s));
    h.reject(Z, |l, s| l.transfer_local(&balancing(3, A, B, USD, 0), s));
    h.reject(Z, |l, s| {
        l.begin_remote(&spec(3, A, REMOTE, USD, 0), ShardId(1), s)
    });
    h.reject(Z, |l, s| l.create_pending(&spec(3, A, B, USD, 0), 10, s));
    h.reject(Z, |l, s| {
        l.hold_order(order(1), A, USD, BTC, Amount(0), 0, s)
    });
    h.ok(|l, s| l.create_pending(&spec(4, A, B, USD, 10), 10, s));
    h.reject(Z, |l, s| {
        l.post_pending(TransferId(4), Some(Amount(0)), None, s)
    });
}

#[test]
fn rejects_amount_over_max() {
    use RejectCode::AmountOverflow as O;
    let big = AMOUNT_MAX + 1;
    let mut h = H::funded();
    h.reject(O, |l, s| l.deposit(TransferId(3), A, USD, Amount(big), s));
    h.reject(O, |l, s| l.withdraw(TransferId(3), A, USD, Amount(big), s));
    h.reject(O, |l, s| l.transfer_local(&spec(3, A, B, USD, big), s));
    h.reject(O, |l, s| l.transfer_local(&balancing(3, A, B, USD, big), s));
    h.reject(O, |l, s| {
        l.begin_remote(&spec(3, A, REMOTE, USD, big), ShardId(1), s)
    });
    h.reject(O, |l, s| l.create_pending(&spec(3, A, B, USD, big), 10, s));
    h.reject(O, |l, s| {
        l.hold_order(order(1), A, USD, BTC, Amount(big), 0, s)
    });
    h.reject(O, |l, s| {
        l.deposit(TransferId(3), A, USD, Amount(u64::MAX), s)
    });

    // Each amount is fine, but the balance would overflow.
    let max = Amount(AMOUNT_MAX);
    h.ok(|l, s| l.deposit(TransferId(4), C, USD, max, s));
    h.ok(|l, s| l.deposit(TransferId(5), C, USD, max, s));
    h.ok(|l, s| l.deposit(TransferId(6), C, USD, max, s));
    h.reject(O, |l, s| l.deposit(TransferId(7), C, USD, max, s));
    // The shard's supply cap (u64::MAX net deposits per asset here) refuses a fourth
    // deposit anywhere; value can still arrive from other shards.
    h.reject(RejectCode::LimitExceeded, |l, s| {
        l.deposit(TransferId(8), B, USD, max, s)
    });
    h.ok(|l, s| l.credit_remote(TransferId(8), REMOTE, B, USD, max, ShardId(1), s));
    h.reject(O, |l, s| {
        l.transfer_local(&spec(9, B, C, USD, AMOUNT_MAX), s)
    });
    h.reject(O, |l, s| {
        l.credit_remote(TransferId(9), REMOTE, C, USD, max, ShardId(1), s)
    });
    h.ok(|l, s| l.create_pending(&spec(10, B, C, USD, AMOUNT_MAX), 10, s));
    h.reject(O, |l, s| l.post_pending(TransferId(10), None, None, s));
}

#[test]
fn rejects_insufficient_funds() {
    use RejectCode::InsufficientFunds as I;
    let mut h = H::funded();
    // An account with an emptied USD slot, and C with no slot at all.
    h.ok(|l, s| l.deposit(TransferId(3), B, USD, Amount(5), s));
    h.ok(|l, s| l.withdraw(TransferId(4), B, USD, Amount(5), s));
    h.reject(I, |l, s| {
        l.withdraw(TransferId(5), A, USD, Amount(1_001), s)
    });
    h.reject(I, |l, s| l.withdraw(TransferId(5), A, BTC, Amount(1), s));
    h.reject(I, |l, s| l.withdraw(TransferId(5), B, USD, Amount(1), s));
    h.reject(I, |l, s| l.transfer_local(&spec(5, A, B, USD, 1_001), s));
    h.reject(I, |l, s| l.transfer_local(&spec(5, C, A, USD, 1), s));
    h.reject(I, |l, s| l.transfer_local(&balancing(5, C, A, USD, 1), s));
    h.reject(I, |l, s| l.transfer_local(&balancing(5, B, A, USD, 1), s));
    h.reject(I, |l, s| {
        l.begin_remote(&spec(5, A, REMOTE, USD, 1_001), ShardId(1), s)
    });
    h.reject(I, |l, s| {
        l.begin_remote(&balancing(5, B, REMOTE, USD, 1), ShardId(1), s)
    });
    h.reject(I, |l, s| {
        l.begin_remote(&spec(5, C, REMOTE, USD, 1), ShardId(1), s)
    });
    h.reject(I, |l, s| {
        l.create_pending(&spec(5, A, B, USD, 1_001), 10, s)
    });
    h.reject(I, |l, s| {
        l.create_pending(&balancing(5, B, A, USD, 1), 10, s)
    });
    h.reject(I, |l, s| l.create_pending(&spec(5, C, A, USD, 1), 10, s));
    h.reject(I, |l, s| {
        l.hold_order(order(1), A, USD, BTC, Amount(1_001), 0, s)
    });
    h.reject(I, |l, s| {
        l.hold_order(order(1), C, USD, BTC, Amount(1), 0, s)
    });
    // Held funds cannot be spent twice.
    h.ok(|l, s| l.create_pending(&spec(6, A, B, USD, 600), 10, s));
    h.reject(I, |l, s| l.withdraw(TransferId(7), A, USD, Amount(401), s));
    h.reject(I, |l, s| l.transfer_local(&spec(7, A, B, USD, 401), s));
    h.reject(I, |l, s| {
        l.hold_order(order(1), A, USD, BTC, Amount(401), 0, s)
    });
    h.ok(|l, s| l.withdraw(TransferId(8), A, USD, Amount(400), s));
    h.reject(I, |l, s| l.transfer_local(&balancing(9, A, B, USD, 1), s));
}

#[test]
fn rejects_same_account() {
    use RejectCode::SameAccount as S;
    let mut h = H::funded();
    h.reject(S, |l, s| l.transfer_local(&spec(3, A, A, USD, 1), s));
    h.reject(S, |l, s| l.transfer_local(&balancing(3, A, A, USD, 1), s));
    h.reject(S, |l, s| {
        l.begin_remote(&spec(3, A, A, USD, 1), ShardId(1), s)
    });
    h.reject(S, |l, s| l.create_pending(&spec(3, A, A, USD, 1), 10, s));
    assert_eq!(
        h.fail(|l, s| l.transfer_linked(&[spec(3, A, B, USD, 1), spec(4, B, B, USD, 1)], s)),
        (1, S)
    );
}

#[test]
fn rejects_frozen_account() {
    use RejectCode::AccountFrozen as F;
    let mut h = H::funded();
    h.ok(|l, s| l.create_pending(&spec(3, A, B, USD, 10), 10, s));
    h.ok(|l, s| l.freeze(A, s));
    h.ok(|l, s| l.freeze(B, s));
    h.reject(F, |l, s| l.deposit(TransferId(4), A, USD, Amount(1), s));
    h.reject(F, |l, s| l.withdraw(TransferId(4), A, USD, Amount(1), s));
    h.reject(F, |l, s| l.transfer_local(&spec(4, A, C, USD, 1), s));
    h.reject(F, |l, s| l.transfer_local(&spec(4, C, B, USD, 1), s));
    h.reject(F, |l, s| {
        l.begin_remote(&spec(4, A, REMOTE, USD, 1), ShardId(1), s)
    });
    h.reject(F, |l, s| l.create_pending(&spec(4, A, C, USD, 1), 10, s));
    // The credit account froze after the pending transfer was created.
    h.reject(F, |l, s| l.post_pending(TransferId(3), None, None, s));
    h.reject(F, |l, s| {
        l.credit_remote(TransferId(4), REMOTE, A, USD, Amount(1), ShardId(1), s)
    });
    h.reject(F, |l, s| {
        l.hold_order(order(1), A, USD, BTC, Amount(1), 0, s)
    });
    h.reject(RejectCode::InvalidAccountState, |l, s| l.freeze(A, s));
    h.reject(RejectCode::InvalidAccountState, |l, s| l.unfreeze(C, s));
    // Voiding still works (it only gives back).
    h.ok(|l, s| l.void_pending(TransferId(3), false, s));
}

#[test]
fn rejects_closed_account() {
    use RejectCode::AccountClosed as X;
    let mut h = H::funded();
    h.ok(|l, s| l.create_pending(&spec(3, A, C, USD, 10), 10, s));
    h.ok(|l, s| l.close(C, s));
    h.reject(X, |l, s| l.deposit(TransferId(4), C, USD, Amount(1), s));
    h.reject(X, |l, s| l.withdraw(TransferId(4), C, USD, Amount(1), s));
    h.reject(X, |l, s| l.transfer_local(&spec(4, A, C, USD, 1), s));
    h.reject(X, |l, s| l.transfer_local(&spec(4, C, A, USD, 1), s));
    h.reject(X, |l, s| {
        l.begin_remote(&spec(4, C, REMOTE, USD, 1), ShardId(1), s)
    });
    h.reject(X, |l, s| l.create_pending(&spec(4, C, A, USD, 1), 10, s));
    h.reject(X, |l, s| l.post_pending(TransferId(3), None, None, s));
    h.reject(X, |l, s| {
        l.credit_remote(TransferId(4), REMOTE, C, USD, Amount(1), ShardId(1), s)
    });
    h.reject(X, |l, s| {
        l.hold_order(order(1), C, USD, BTC, Amount(1), 0, s)
    });
    h.reject(X, |l, s| l.close(C, s));
    h.reject(RejectCode::InvalidAccountState, |l, s| l.freeze(C, s));
    h.reject(RejectCode::InvalidAccountState, |l, s| l.unfreeze(C, s));
    h.ok(|l, s| l.void_pending(TransferId(3), false, s));
}

#[test]
fn rejects_duplicate_id() {
    use RejectCode::DuplicateId as D;
    let mut h = H::funded();
    h.reject(D, |l, s| l.open_account(A, Principal(99), s));
    assert_eq!(h.l.owner(A), Ok(OWNER));
    h.ok(|l, s| l.create_pending(&spec(40, A, B, USD, 10), 10, s));
    h.reject(D, |l, s| l.create_pending(&spec(40, A, B, USD, 10), 10, s));
    h.reject(D, |l, s| l.create_pending(&spec(40, B, A, BTC, 1), 10, s));
    h.reject(D, |l, s| {
        l.begin_remote(&spec(40, A, REMOTE, USD, 10), ShardId(1), s)
    });
    h.ok(|l, s| l.begin_remote(&spec(41, A, REMOTE, USD, 10), ShardId(1), s));
    h.reject(D, |l, s| {
        l.begin_remote(&spec(41, A, REMOTE, USD, 10), ShardId(1), s)
    });
    h.reject(D, |l, s| l.create_pending(&spec(41, A, B, USD, 10), 10, s));
    // A pending transfer posted to another shard keeps its id while in flight.
    h.ok(|l, s| l.create_pending(&spec(42, A, REMOTE, USD, 10), 10, s));
    h.ok(|l, s| l.post_pending(TransferId(42), None, Some(ShardId(1)), s));
    h.reject(D, |l, s| l.create_pending(&spec(42, A, B, USD, 10), 10, s));
    h.reject(D, |l, s| {
        l.begin_remote(&spec(42, A, REMOTE, USD, 10), ShardId(1), s)
    });
}

#[test]
fn rejects_unknown_transfer() {
    use RejectCode::UnknownTransfer as U;
    let mut h = H::funded();
    h.reject(U, |l, s| l.post_pending(TransferId(40), None, None, s));
    h.reject(U, |l, s| l.void_pending(TransferId(40), false, s));
    h.reject(U, |l, s| l.transfer_local(&spec(0, A, B, USD, 1), s));
    h.reject(U, |l, s| l.create_pending(&spec(0, A, B, USD, 1), 10, s));
    h.reject(U, |l, s| {
        l.begin_remote(&spec(0, A, REMOTE, USD, 1), ShardId(1), s)
    });
    // Posted: no longer pending.
    h.ok(|l, s| l.create_pending(&spec(40, A, B, USD, 10), 10, s));
    h.ok(|l, s| l.post_pending(TransferId(40), None, None, s));
    h.reject(U, |l, s| l.post_pending(TransferId(40), None, None, s));
    h.reject(U, |l, s| l.void_pending(TransferId(40), false, s));
}

#[test]
fn rejects_over_the_account_asset_limit() {
    use RejectCode::LimitExceeded as L;
    let mut h = H::with_accounts(&[A, B]);
    let extra: Vec<AssetId> = (0..=ACCOUNT_ASSETS_MAX as u32)
        .map(|k| AssetId(100 + k))
        .collect();
    for &x in &extra {
        h.l.add_asset(x);
    }
    let (full, last) = extra.split_at(ACCOUNT_ASSETS_MAX);
    let next = last[0];
    for (n, &x) in full.iter().enumerate() {
        h.ok(|l, s| l.deposit(TransferId(n as u64 + 1), A, x, Amount(1), s));
    }
    assert_eq!(h.l.account(A).unwrap().balances.len(), ACCOUNT_ASSETS_MAX);
    // Existing slots still take money.
    h.ok(|l, s| l.deposit(TransferId(99), A, full[0], Amount(1), s));
    h.reject(L, |l, s| l.deposit(TransferId(100), A, next, Amount(1), s));
    h.ok(|l, s| l.deposit(TransferId(101), B, next, Amount(50), s));
    h.ok(|l, s| l.deposit(TransferId(102), B, USD, Amount(50), s));
    h.reject(L, |l, s| l.transfer_local(&spec(103, B, A, next, 1), s));
    h.reject(L, |l, s| {
        l.transfer_local(&balancing(103, B, A, next, 1), s)
    });
    h.reject(L, |l, s| {
        l.credit_remote(TransferId(103), REMOTE, A, next, Amount(1), ShardId(1), s)
    });
    h.reject(L, |l, s| {
        l.hold_order(order(1), A, full[0], next, Amount(1), 0, s)
    });
    // One free slot is enough for an order's missing asset.
    let d = AccountId(4);
    h.ok(|l, s| l.open_account(d, OWNER, s));
    for (n, &x) in full[..ACCOUNT_ASSETS_MAX - 1].iter().enumerate() {
        h.ok(|l, s| l.deposit(TransferId(200 + n as u64), d, x, Amount(1), s));
    }
    h.ok(|l, s| l.hold_order(order(2), d, full[0], next, Amount(1), 0, s));
    assert_eq!(h.l.account(d).unwrap().balances.len(), ACCOUNT_ASSETS_MAX);
    assert_eq!(bal(&h.l, d, next), (0, 0));
    // A pending transfer to the full account: checked when it is posted.
    h.ok(|l, s| l.create_pending(&spec(104, B, A, next, 1), 10, s));
    h.reject(L, |l, s| l.post_pending(TransferId(104), None, None, s));
    // A linked batch stops at the transfer that needs the slot.
    assert_eq!(
        h.fail(|l, s| {
            l.transfer_linked(&[spec(105, A, B, full[1], 1), spec(106, B, A, next, 1)], s)
        }),
        (1, L)
    );
    // Batch length limits.
    assert_eq!(h.fail(|l, s| l.transfer_linked(&[], s)), (0, L));
    let too_long = vec![spec(107, B, A, USD, 1); LINKED_BATCH_LEN_MAX + 1];
    assert_eq!(h.fail(|l, s| l.transfer_linked(&too_long, s)), (0, L));
    // Fee accounts are system accounts: no asset limit.
    h.run(|l, s| l.credit_fee(MarketId(1), A, next, Amount(3), s));
    assert_eq!(
        h.l.account(A).unwrap().balances.len(),
        ACCOUNT_ASSETS_MAX + 1
    );
}

#[test]
fn rejects_post_exceeding_pending() {
    use RejectCode::PostExceedsPending as P;
    let mut h = H::funded();
    h.ok(|l, s| l.create_pending(&spec(40, A, B, USD, 300), 10, s));
    h.reject(P, |l, s| {
        l.post_pending(TransferId(40), Some(Amount(301)), None, s)
    });
    h.reject(P, |l, s| {
        l.post_pending(TransferId(40), Some(Amount(301)), Some(ShardId(1)), s)
    });
    h.reject(P, |l, s| {
        l.post_pending(TransferId(40), Some(Amount(u64::MAX)), None, s)
    });
    assert_eq!(
        h.ok(|l, s| l.post_pending(TransferId(40), Some(Amount(300)), None, s)),
        Amount(300)
    );
}

#[test]
fn rejects_invalid_timeout() {
    use RejectCode::InvalidTimeout as T;
    let mut h = H::funded();
    for t in [0, PENDING_TIMEOUT_MS_MAX + 1, u64::MAX] {
        h.reject(T, |l, s| l.create_pending(&spec(40, A, B, USD, 1), t, s));
    }
    h.ok(|l, s| l.create_pending(&spec(40, A, B, USD, 1), PENDING_TIMEOUT_MS_MAX, s));
    assert_eq!(
        h.l.pending_transfer(TransferId(40)).unwrap().expires_at,
        Timestamp(NOW.0 + PENDING_TIMEOUT_MS_MAX * NS_PER_MS)
    );
}

#[test]
fn rejects_closing_a_non_empty_account() {
    use RejectCode::AccountNotEmpty as N;
    let mut h = H::funded();
    // Available funds.
    h.reject(N, |l, s| l.close(A, s));
    // Only held funds: pending.
    h.ok(|l, s| l.create_pending(&spec(3, A, B, USD, 1_000), 10, s));
    assert_eq!(bal(&h.l, A, USD), (0, 1_000));
    h.reject(N, |l, s| l.close(A, s));
    h.ok(|l, s| l.void_pending(TransferId(3), false, s));
    // Only held funds: in flight.
    h.ok(|l, s| l.begin_remote(&spec(4, A, REMOTE, USD, 1_000), ShardId(1), s));
    h.reject(N, |l, s| l.close(A, s));
    h.run(|l, s| l.finish_remote(TransferId(4), Ok(()), s));
    assert_eq!(bal(&h.l, A, USD), (0, 0));
    // An open order with nothing left held (zero balances) still keeps it open.
    h.ok(|l, s| l.deposit(TransferId(5), A, USD, Amount(10), s));
    h.ok(|l, s| l.hold_order(order(1), A, USD, BTC, Amount(10), 0, s));
    h.reject(N, |l, s| l.close(A, s));
    h.run(|l, s| l.settle(order(1), A, USD, Amount(10), BTC, Amount(0), Amount(0), s));
    assert_eq!(bal(&h.l, A, USD), (0, 0));
    assert_eq!(bal(&h.l, A, BTC), (0, 0));
    h.reject(N, |l, s| l.close(A, s));
    h.run(|l, s| l.release(order(1), A, USD, Amount(0), true, s));
    h.ok(|l, s| l.close(A, s));
}

#[test]
fn linked_batch_failing_in_the_middle_changes_nothing() {
    let mut h = H::funded();
    h.ok(|l, s| l.freeze(C, s));
    h.ok(|l, s| l.unfreeze(C, s));
    // Events of an earlier input are already in `out`; the batch must leave them alone.
    let mut out = Vec::new();
    let mut seq = h.seq;
    let r = {
        let mut sink = EventSink::new(&mut out, ShardId(0), 1, NOW, OWNER, &mut seq);
        h.l.deposit(TransferId(3), C, BTC, Amount(1), &mut sink)
    };
    assert_eq!(r, Ok(()));
    h.l.validate().unwrap();
    let out_before = out.clone();
    let seq_before = seq;
    let parts_before = h.l.to_parts();
    assert_eq!(out_before.len(), 2);

    // The first two apply (one creates C's USD slot, one moves BTC), the third cannot.
    let batch = vec![
        spec(10, A, C, USD, 100),
        spec(11, B, C, BTC, 50),
        spec(12, A, B, USD, 5_000),
        spec(13, A, B, USD, 1),
    ];
    let r = {
        let mut sink = EventSink::new(&mut out, ShardId(0), 1, NOW, OWNER, &mut seq);
        h.l.transfer_linked(&batch, &mut sink)
    };
    assert_eq!(r, Err((2, RejectCode::InsufficientFunds)));
    h.l.validate().unwrap();
    assert_eq!(out_before, out);
    assert_eq!(seq_before, seq);
    assert_eq!(parts_before, h.l.to_parts());
    assert_eq!(
        h.l.account(C)
            .unwrap()
            .balances
            .iter()
            .map(|b| b.asset)
            .collect::<Vec<_>>(),
        vec![BTC]
    );

    // Other codes, other positions.
    h.seq = seq;
    let ghost_last = vec![
        spec(10, A, C, USD, 100),
        spec(11, B, C, BTC, 50),
        spec(12, C, A, USD, 100),
        spec(13, A, GHOST, USD, 1),
    ];
    assert_eq!(
        h.fail(|l, s| l.transfer_linked(&ghost_last, s)),
        (3, RejectCode::UnknownAccount)
    );
    assert_eq!(
        h.fail(|l, s| l.transfer_linked(&[spec(10, A, B, NOPE, 1)], s)),
        (0, RejectCode::UnknownAsset)
    );
    h.ok(|l, s| l.freeze(B, s));
    assert_eq!(
        h.fail(|l, s| l.transfer_linked(&[spec(10, A, C, USD, 1), spec(11, A, B, USD, 1)], s)),
        (1, RejectCode::AccountFrozen)
    );

    // The next input numbers on without a gap.
    let next = h.seq;
    assert_eq!(next, seq_before + 1); // the freeze above
    h.step(
        Ok(Amount(1)),
        vec![
            Event::TransferPosted {
                id: TransferId(14),
                debit: A,
                credit: C,
                asset: USD,
                amount: Amount(1),
            },
            bal_ev(A, USD, 999, 0),
            bal_ev(C, USD, 1, 0),
        ],
        |l, s| l.transfer_local(&spec(14, A, C, USD, 1), s),
    );
}

// ----- snapshots -------------------------------------------------------------------------

/// A ledger with something of everything: frozen and closed accounts, a fee account,
/// pending and in-flight transfers, order holds (one fully settled), flows of every kind.
fn rich() -> H {
    let mut h = H::funded();
    let (d, e) = (AccountId(4), AccountId(5));
    h.ok(|l, s| l.open_account(d, Principal(8), s));
    h.ok(|l, s| l.open_account(e, Principal(8), s));
    h.ok(|l, s| l.close(e, s));
    h.ok(|l, s| l.deposit(TransferId(3), d, USD, Amount(50), s));
    h.ok(|l, s| l.freeze(d, s));
    h.ok(|l, s| l.create_pending(&spec(40, A, B, USD, 100), 20, s));
    h.ok(|l, s| l.create_pending(&spec(41, A, REMOTE, USD, 100), 10, s));
    h.ok(|l, s| l.create_pending(&spec(42, A, REMOTE, USD, 100), 30, s));
    h.ok(|l, s| l.post_pending(TransferId(42), Some(Amount(60)), Some(ShardId(2)), s));
    h.ok(|l, s| l.begin_remote(&spec(43, B, REMOTE, BTC, 70), ShardId(2), s));
    h.ok(|l, s| l.credit_remote(TransferId(44), REMOTE, C, BTC, Amount(9), ShardId(2), s));
    h.ok(|l, s| l.hold_order(order(1), A, USD, BTC, Amount(200), 0, s));
    h.ok(|l, s| l.hold_order(order(2), B, BTC, USD, Amount(30), 0, s));
    h.run(|l, s| l.settle(order(2), B, BTC, Amount(30), USD, Amount(90), Amount(1), s));
    h.run(|l, s| l.settle(order(1), A, USD, Amount(90), BTC, Amount(30), Amount(1), s));
    h.run(|l, s| l.credit_fee(MarketId(1), FEES, USD, Amount(2), s));
    h.ok(|l, s| l.withdraw(TransferId(45), C, BTC, Amount(4), s));
    h
}

#[test]
fn snapshot_round_trip() {
    let mut h = rich();
    let parts = h.l.to_parts();
    assert_eq!(parts.pending.len(), 2);
    assert_eq!(parts.inflight.len(), 2);
    assert_eq!(parts.order_holds.len(), 2);
    let restored = Ledger::from_parts(parts.clone()).expect("valid snapshot");
    restored.validate().unwrap();
    assert_eq!(parts, restored.to_parts());
    for a in h.l.accounts() {
        assert_eq!(restored.account(a.id), Some(a));
    }
    assert!(restored.has_asset(USD) && restored.has_asset(BTC) && !restored.has_asset(NOPE));

    // The copy behaves exactly like the original (index and expiries were rebuilt).
    let mut copy = H {
        l: restored,
        seq: h.seq,
        now: NOW,
    };
    let script = |h: &mut H| {
        let mut all = Vec::new();
        all.extend(
            h.run(|l, s| l.expire(Timestamp(NOW.0 + 15 * NS_PER_MS), s))
                .1,
        );
        all.extend(h.run(|l, s| l.finish_remote(TransferId(42), Ok(()), s)).1);
        all.extend(
            h.run(|l, s| l.finish_remote(TransferId(43), Err(RejectCode::UnknownAccount), s))
                .1,
        );
        all.extend(
            h.run(|l, s| l.release(order(1), A, USD, Amount(110), true, s))
                .1,
        );
        all.extend(
            h.run(|l, s| l.release(order(2), B, BTC, Amount(0), true, s))
                .1,
        );
        let (r, out) = h.run(|l, s| l.post_pending(TransferId(40), None, None, s));
        assert_eq!(r, Ok(Amount(100)));
        all.extend(out);
        all.extend(h.run(|l, s| l.expire(Timestamp(u64::MAX), s)).1);
        let (r, out) = h.run(|l, s| l.close(AccountId(4), s));
        assert_eq!(r, Err(RejectCode::AccountNotEmpty));
        all.extend(out);
        all
    };
    let a = script(&mut h);
    let b = script(&mut copy);
    assert_eq!(a, b);
    assert!(a.iter().any(|r| matches!(
        r.event,
        Event::PendingVoided {
            id: TransferId(41),
            expired: true,
            ..
        }
    )));
    assert_eq!(h.l.to_parts(), copy.l.to_parts());
    assert!(copy.l.pending().is_empty() && copy.l.inflight().is_empty());
    assert!(copy.l.order_holds_sorted().is_empty());
}

fn acct(p: &mut LedgerParts, a: AccountId) -> &mut Account {
    p.accounts.iter_mut().find(|x| x.id == a).unwrap()
}

fn slot(p: &mut LedgerParts, a: AccountId, asset: AssetId) -> &mut Balance {
    acct(p, a)
        .balances
        .iter_mut()
        .find(|b| b.asset == asset)
        .unwrap()
}

type Corruption = (&'static str, fn(&mut LedgerParts));

#[test]
fn from_parts_rejects_corrupted_parts() {
    let good = rich().l.to_parts();
    assert!(Ledger::from_parts(good.clone()).is_ok());
    let cases: Vec<Corruption> = vec![
        ("held above its holds", |p| {
            let b = slot(p, A, USD);
            b.held.0 += 1;
            b.available.0 -= 1;
        }),
        ("held below its holds", |p| {
            let b = slot(p, B, BTC);
            b.held.0 -= 1;
            b.available.0 += 1;
        }),
        ("available not matching flows", |p| {
            slot(p, A, USD).available.0 += 1
        }),
        ("deposits not matching balances", |p| {
            p.totals[0].1.deposited += 1
        }),
        ("sent not matching balances", |p| p.totals[1].1.sent += 1),
        ("account twice", |p| {
            let a = p.accounts[2].clone();
            p.accounts.push(a)
        }),
        ("asset slot twice", |p| {
            let b = *slot(p, C, BTC);
            acct(p, C).balances.push(Balance {
                available: Amount(0),
                ..b
            });
        }),
        ("pending dropped", |p| {
            p.pending.remove(0);
        }),
        ("pending amount", |p| p.pending[0].amount.0 += 1),
        ("pending on another account", |p| p.pending[0].debit = C),
        ("pending on an unknown account", |p| {
            p.pending[0].debit = GHOST
        }),
        ("in-flight dropped", |p| {
            p.inflight.remove(0);
        }),
        ("in-flight amount", |p| p.inflight[1].amount.0 -= 1),
        ("in-flight on another account", |p| p.inflight[1].debit = A),
        ("in-flight posts more than it holds", |p| {
            let f = &mut p.inflight[0];
            f.posted.0 = f.amount.0 + 1;
        }),
        ("in-flight and pending at once", |p| {
            let f = p.inflight[0].clone();
            let i = p.pending.iter().position(|x| x.debit == f.debit).unwrap();
            let q = &mut p.pending[i];
            q.id = f.id;
            p.pending.sort_by_key(|x| x.id);
        }),
        ("order hold dropped", |p| {
            p.order_holds.remove(0);
        }),
        ("settled order hold dropped", |p| {
            p.order_holds.remove(1);
        }),
        ("order hold amount", |p| p.order_holds[0].1.amount.0 += 1),
        ("open order count", |p| acct(p, A).open_orders += 1),
        ("order hold with id 0", |p| p.order_holds[1].0 = OrderId(0)),
        ("settled order hold on an unknown account", |p| {
            p.order_holds[1].1.account = GHOST
        }),
        ("settled order hold on an asset without a balance", |p| {
            p.order_holds[1].1.asset = NOPE
        }),
        ("extra settled order hold on an unknown account", |p| {
            let h = OrderHold {
                account: GHOST,
                asset: USD,
                amount: Amount(0),
                client_order_id: 0,
            };
            p.order_holds.push((order(9), h))
        }),
        ("totals twice", |p| {
            let x = p.totals[0];
            p.totals.push(x)
        }),
        ("pending twice", |p| {
            let x = p.pending[0].clone();
            p.pending.push(x)
        }),
        ("in-flight twice", |p| {
            let x = p.inflight[0].clone();
            p.inflight.push(x)
        }),
        ("order hold twice", |p| {
            let x = p.order_holds[0];
            p.order_holds.push(x)
        }),
    ];
    for (name, corrupt) in cases {
        let mut p = good.clone();
        corrupt(&mut p);
        assert_ne!(p, good, "{name}: corruption changed nothing");
        match Ledger::from_parts(p) {
            Ok(_) => panic!("{name}: corrupted parts accepted"),
            Err(Violation(msg)) => assert!(!msg.is_empty(), "{name}"),
        }
    }
}

// ----- property test against a reference model -------------------------------------------

/// Accounts 1..=6 are opened, 7 never is. Assets 1 and 2 are in the catalog, 3 is not.
const MODEL_ACCOUNTS: u64 = 6;

/// A transfer as generated (plain numbers).
#[derive(Clone, Debug)]
struct Tx {
    id: u64,
    debit: u64,
    credit: u64,
    asset: u32,
    amount: u64,
    balancing: bool,
}

impl Tx {
    fn spec(&self) -> TransferSpec {
        TransferSpec {
            id: TransferId(self.id),
            debit: AccountId(self.debit),
            credit: AccountId(self.credit),
            asset: AssetId(self.asset),
            amount: Amount(self.amount),
            balancing: self.balancing,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Deposit(u64, u32, u64),
    Withdraw(u64, u32, u64),
    Transfer(Tx),
    Linked(Vec<Tx>),
    CreatePending(Tx, u64),
    Post(u64, Option<u64>),
    Void(u64),
    /// Advance time by this many milliseconds, then expire.
    Advance(u64),
    /// A transfer to an account on another shard.
    BeginRemote(Tx),
    /// Posts a pending transfer whose credit account is on another shard.
    PostRemote(u64, Option<u64>),
    /// The answer of the other shard for one of the transfers in flight (if any).
    Finish(prop::sample::Index, bool),
    Freeze(u64),
    Unfreeze(u64),
    Close(u64),
}

#[derive(Clone, Debug, PartialEq)]
struct MPending {
    debit: u64,
    credit: u64,
    asset: u32,
    amount: u64,
    expires_at: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct MFlight {
    debit: u64,
    credit: u64,
    asset: u32,
    /// Held.
    amount: u64,
    /// To be credited.
    posted: u64,
    /// Timeout of the pending transfer it came from.
    pending_expires_at: Option<u64>,
}

/// The reference: plain maps, the rules written out one by one.
#[derive(Clone, Debug, Default)]
struct Model {
    status: BTreeMap<u64, AccountStatus>,
    /// (account, asset) -> (available, held).
    bal: BTreeMap<(u64, u32), (u64, u64)>,
    pending: BTreeMap<u64, MPending>,
    inflight: BTreeMap<u64, MFlight>,
    deposited: BTreeMap<u32, u128>,
    withdrawn: BTreeMap<u32, u128>,
    sent: BTreeMap<u32, u128>,
    now: u64,
}

type MR<T = ()> = Result<T, RejectCode>;

fn m_amount(amount: u64) -> MR {
    if amount == 0 {
        Err(RejectCode::ZeroAmount)
    } else if amount > AMOUNT_MAX {
        Err(RejectCode::AmountOverflow)
    } else {
        Ok(())
    }
}

fn m_asset(asset: u32) -> MR {
    if asset == 1 || asset == 2 {
        Ok(())
    } else {
        Err(RejectCode::UnknownAsset)
    }
}

impl Model {
    fn active(&self, a: u64) -> MR {
        match self.status.get(&a) {
            None => Err(RejectCode::UnknownAccount),
            Some(AccountStatus::Active) => Ok(()),
            Some(AccountStatus::Frozen) => Err(RejectCode::AccountFrozen),
            Some(AccountStatus::Closed) => Err(RejectCode::AccountClosed),
        }
    }

    fn get(&self, a: u64, asset: u32) -> (u64, u64) {
        self.bal.get(&(a, asset)).copied().unwrap_or((0, 0))
    }

    fn set(&mut self, a: u64, asset: u32, v: (u64, u64)) {
        self.bal.insert((a, asset), v);
    }

    fn deposit(&mut self, a: u64, asset: u32, amount: u64) -> MR {
        m_amount(amount)?;
        m_asset(asset)?;
        self.active(a)?;
        let (av, h) = self.get(a, asset);
        self.set(a, asset, (av + amount, h));
        *self.deposited.entry(asset).or_default() += amount as u128;
        Ok(())
    }

    fn withdraw(&mut self, a: u64, asset: u32, amount: u64) -> MR {
        m_amount(amount)?;
        m_asset(asset)?;
        self.active(a)?;
        let (av, h) = self.get(a, asset);
        if av < amount {
            return Err(RejectCode::InsufficientFunds);
        }
        self.set(a, asset, (av - amount, h));
        *self.withdrawn.entry(asset).or_default() += amount as u128;
        Ok(())
    }

    fn check_tx(&self, t: &Tx) -> MR {
        if t.id == 0 {
            return Err(RejectCode::UnknownTransfer);
        }
        m_amount(t.amount)?;
        if t.debit == t.credit {
            return Err(RejectCode::SameAccount);
        }
        m_asset(t.asset)
    }

    /// How much a transfer takes from the debit's available balance.
    fn take(&self, t: &Tx) -> MR<u64> {
        let av = self.get(t.debit, t.asset).0;
        let amount = if t.balancing {
            if av == 0 {
                return Err(RejectCode::InsufficientFunds);
            }
            t.amount.min(av)
        } else {
            t.amount
        };
        if av < amount {
            return Err(RejectCode::InsufficientFunds);
        }
        Ok(amount)
    }

    fn transfer(&mut self, t: &Tx) -> MR<u64> {
        self.check_tx(t)?;
        self.active(t.debit)?;
        self.active(t.credit)?;
        let amount = self.take(t)?;
        let (dav, dh) = self.get(t.debit, t.asset);
        self.set(t.debit, t.asset, (dav - amount, dh));
        let (cav, ch) = self.get(t.credit, t.asset);
        self.set(t.credit, t.asset, (cav + amount, ch));
        Ok(amount)
    }

    fn linked(&mut self, batch: &[Tx]) -> Result<(), (u32, RejectCode)> {
        if batch.is_empty() || batch.len() > LINKED_BATCH_LEN_MAX {
            return Err((0, RejectCode::LimitExceeded));
        }
        let mut next = self.clone();
        for (n, t) in batch.iter().enumerate() {
            next.transfer(t).map_err(|c| (n as u32, c))?;
        }
        *self = next;
        Ok(())
    }

    fn create_pending(&mut self, t: &Tx, timeout_ms: u64) -> MR<u64> {
        self.check_tx(t)?;
        if timeout_ms == 0 || timeout_ms > PENDING_TIMEOUT_MS_MAX {
            return Err(RejectCode::InvalidTimeout);
        }
        if self.pending.contains_key(&t.id) || self.inflight.contains_key(&t.id) {
            return Err(RejectCode::DuplicateId);
        }
        self.active(t.debit)?;
        // The credit account is checked when the transfer is posted.
        let amount = self.take(t)?;
        let (av, h) = self.get(t.debit, t.asset);
        self.set(t.debit, t.asset, (av - amount, h + amount));
        let p = MPending {
            debit: t.debit,
            credit: t.credit,
            asset: t.asset,
            amount,
            expires_at: self.now + timeout_ms * NS_PER_MS,
        };
        self.pending.insert(t.id, p);
        Ok(amount)
    }

    fn post(&mut self, id: u64, amount: Option<u64>) -> MR<u64> {
        let p = self.pending.get(&id).ok_or(RejectCode::UnknownTransfer)?;
        let post = amount.unwrap_or(p.amount);
        if post == 0 {
            return Err(RejectCode::ZeroAmount);
        }
        if post > p.amount {
            return Err(RejectCode::PostExceedsPending);
        }
        self.active(p.credit)?;
        let p = self.pending.remove(&id).unwrap();
        let (dav, dh) = self.get(p.debit, p.asset);
        self.set(p.debit, p.asset, (dav + (p.amount - post), dh - p.amount));
        let (cav, ch) = self.get(p.credit, p.asset);
        self.set(p.credit, p.asset, (cav + post, ch));
        Ok(post)
    }

    fn begin_remote(&mut self, t: &Tx) -> MR<u64> {
        self.check_tx(t)?;
        if self.pending.contains_key(&t.id) || self.inflight.contains_key(&t.id) {
            return Err(RejectCode::DuplicateId);
        }
        self.active(t.debit)?;
        let amount = self.take(t)?;
        let (av, h) = self.get(t.debit, t.asset);
        self.set(t.debit, t.asset, (av - amount, h + amount));
        let f = MFlight {
            debit: t.debit,
            credit: t.credit,
            asset: t.asset,
            amount,
            posted: amount,
            pending_expires_at: None,
        };
        self.inflight.insert(t.id, f);
        Ok(amount)
    }

    /// Nothing moves: the pending transfer becomes a transfer in flight.
    fn post_remote(&mut self, id: u64, amount: Option<u64>) -> MR<u64> {
        let p = self.pending.get(&id).ok_or(RejectCode::UnknownTransfer)?;
        let post = amount.unwrap_or(p.amount);
        if post == 0 {
            return Err(RejectCode::ZeroAmount);
        }
        if post > p.amount {
            return Err(RejectCode::PostExceedsPending);
        }
        let p = self.pending.remove(&id).unwrap();
        let f = MFlight {
            debit: p.debit,
            credit: p.credit,
            asset: p.asset,
            amount: p.amount,
            posted: post,
            pending_expires_at: Some(p.expires_at),
        };
        self.inflight.insert(id, f);
        Ok(post)
    }

    /// The credit shard answered. Returns the ids the timeout voided.
    fn finish(&mut self, id: u64, ok: bool) -> Vec<u64> {
        let f = self.inflight.remove(&id).unwrap();
        let (av, h) = self.get(f.debit, f.asset);
        if ok {
            self.set(f.debit, f.asset, (av + (f.amount - f.posted), h - f.amount));
            *self.sent.entry(f.asset).or_default() += f.posted as u128;
            return vec![];
        }
        match f.pending_expires_at {
            None => {
                self.set(f.debit, f.asset, (av + f.amount, h - f.amount));
                vec![]
            }
            Some(expires_at) => {
                // Open again, as if the post had never happened.
                let p = MPending {
                    debit: f.debit,
                    credit: f.credit,
                    asset: f.asset,
                    amount: f.amount,
                    expires_at,
                };
                self.pending.insert(id, p);
                if expires_at <= self.now {
                    self.void(id).unwrap();
                    vec![id]
                } else {
                    vec![]
                }
            }
        }
    }

    fn void(&mut self, id: u64) -> MR {
        let p = self
            .pending
            .remove(&id)
            .ok_or(RejectCode::UnknownTransfer)?;
        let (av, h) = self.get(p.debit, p.asset);
        self.set(p.debit, p.asset, (av + p.amount, h - p.amount));
        Ok(())
    }

    /// Voids what is due at `now`, oldest first; returns the voided ids in order.
    fn expire(&mut self) -> Vec<u64> {
        let mut due: Vec<(u64, u64)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.expires_at <= self.now)
            .map(|(id, p)| (p.expires_at, *id))
            .collect();
        due.sort();
        for &(_, id) in &due {
            self.void(id).unwrap();
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    fn freeze(&mut self, a: u64) -> MR {
        match self.status.get(&a) {
            None => Err(RejectCode::UnknownAccount),
            Some(AccountStatus::Active) => {
                self.status.insert(a, AccountStatus::Frozen);
                Ok(())
            }
            Some(_) => Err(RejectCode::InvalidAccountState),
        }
    }

    fn unfreeze(&mut self, a: u64) -> MR {
        match self.status.get(&a) {
            None => Err(RejectCode::UnknownAccount),
            Some(AccountStatus::Frozen) => {
                self.status.insert(a, AccountStatus::Active);
                Ok(())
            }
            Some(_) => Err(RejectCode::InvalidAccountState),
        }
    }

    fn close(&mut self, a: u64) -> MR {
        match self.status.get(&a) {
            None => Err(RejectCode::UnknownAccount),
            Some(AccountStatus::Closed) => Err(RejectCode::AccountClosed),
            Some(_) => {
                if self
                    .bal
                    .iter()
                    .any(|(&(x, _), &(av, h))| x == a && (av != 0 || h != 0))
                {
                    return Err(RejectCode::AccountNotEmpty);
                }
                self.status.insert(a, AccountStatus::Closed);
                Ok(())
            }
        }
    }
}

fn account_s() -> impl Strategy<Value = u64> {
    prop_oneof![15 => 1..=MODEL_ACCOUNTS, 1 => Just(MODEL_ACCOUNTS + 1)]
}

fn asset_s() -> impl Strategy<Value = u32> {
    prop_oneof![15 => 1..=2u32, 1 => Just(3u32)]
}

fn amount_s() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 1 => Just(AMOUNT_MAX + 1), 40 => 1..=400u64]
}

fn tx_s() -> impl Strategy<Value = Tx> {
    (
        prop_oneof![1 => Just(0u64), 30 => 1..=12u64],
        account_s(),
        account_s(),
        asset_s(),
        amount_s(),
        any::<bool>(),
    )
        .prop_map(|(id, debit, credit, asset, amount, balancing)| Tx {
            id,
            debit,
            credit,
            asset,
            amount,
            balancing,
        })
}

fn op_s() -> impl Strategy<Value = Op> {
    let timeout = prop_oneof![
        1 => Just(0u64),
        1 => Just(PENDING_TIMEOUT_MS_MAX + 1),
        20 => 1..=60u64,
    ];
    // Few pending ids, so that posts and voids find them and duplicates happen.
    let pending_id = prop_oneof![1 => Just(0u64), 30 => 1..=5u64];
    prop_oneof![
        6 => (account_s(), asset_s(), amount_s()).prop_map(|(a, s, n)| Op::Deposit(a, s, n)),
        3 => (account_s(), asset_s(), amount_s()).prop_map(|(a, s, n)| Op::Withdraw(a, s, n)),
        6 => tx_s().prop_map(Op::Transfer),
        2 => prop::collection::vec(tx_s(), 0..=4).prop_map(Op::Linked),
        5 => (tx_s(), pending_id.clone(), timeout).prop_map(|(t, id, ms)| {
            Op::CreatePending(Tx { id, ..t }, ms)
        }),
        4 => (pending_id.clone(), prop::option::of(0..=400u64)).prop_map(|(id, n)| Op::Post(id, n)),
        2 => pending_id.clone().prop_map(Op::Void),
        2 => (0..=25u64).prop_map(Op::Advance),
        2 => (tx_s(), prop_oneof![9 => Just(REMOTE.0), 1 => account_s()]).prop_map(|(t, credit)| {
            Op::BeginRemote(Tx { credit, ..t })
        }),
        2 => (pending_id, prop::option::of(0..=400u64))
            .prop_map(|(id, n)| Op::PostRemote(id, n)),
        3 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, ok)| Op::Finish(i, ok)),
        1 => account_s().prop_map(Op::Freeze),
        2 => account_s().prop_map(Op::Unfreeze),
        1 => account_s().prop_map(Op::Close),
    ]
}

/// Compares everything the model knows with the ledger.
fn compare(l: &Ledger, m: &Model) {
    for a in 1..=MODEL_ACCOUNTS + 1 {
        let acc = l.account(AccountId(a));
        assert_eq!(
            acc.map(|x| x.status),
            m.status.get(&a).copied(),
            "account {a}"
        );
        for asset in 1..=3u32 {
            let got = acc
                .map(|x| x.balance(AssetId(asset)))
                .map(|b| (b.available.0, b.held.0));
            let want = m.status.contains_key(&a).then(|| m.get(a, asset));
            assert_eq!(got, want, "balance of account {a} asset {asset}");
        }
        if let Some(x) = acc {
            assert_eq!(x.open_orders, 0);
            assert!(
                x.balances.iter().all(|b| b.asset.0 <= 2),
                "slot for an unknown asset"
            );
        }
    }
    assert_eq!(l.len() as u64, MODEL_ACCOUNTS);
    let pending: BTreeMap<u64, MPending> = l
        .pending()
        .values()
        .map(|p| {
            (
                p.id.0,
                MPending {
                    debit: p.debit.0,
                    credit: p.credit.0,
                    asset: p.asset.0,
                    amount: p.amount.0,
                    expires_at: p.expires_at.0,
                },
            )
        })
        .collect();
    assert_eq!(pending, m.pending);
    let inflight: BTreeMap<u64, MFlight> = l
        .inflight()
        .values()
        .map(|f| {
            (
                f.id.0,
                MFlight {
                    debit: f.debit.0,
                    credit: f.credit.0,
                    asset: f.asset.0,
                    amount: f.amount.0,
                    posted: f.posted.0,
                    pending_expires_at: f.pending_expires_at.map(|t| t.0),
                },
            )
        })
        .collect();
    assert_eq!(inflight, m.inflight);
    // Conservation: what is in the accounts is what came in minus what went out.
    for asset in 1..=2u32 {
        let dep = m.deposited.get(&asset).copied().unwrap_or(0);
        let wd = m.withdrawn.get(&asset).copied().unwrap_or(0);
        let sent = m.sent.get(&asset).copied().unwrap_or(0);
        let sum: u128 = l
            .accounts()
            .iter()
            .map(|a| {
                let b = a.balance(AssetId(asset));
                b.available.0 as u128 + b.held.0 as u128
            })
            .sum();
        assert_eq!(sum, dep - wd - sent, "conservation of asset {asset}");
        let t = totals(l, AssetId(asset));
        assert_eq!(
            t,
            AssetTotals {
                deposited: dep,
                withdrawn: wd,
                received: 0,
                sent,
            }
        );
    }
}

/// Runs one op on both and compares the results. Returns whether it was rejected and the
/// ids the timeout should have voided, in order.
fn apply(l: &mut Ledger, m: &mut Model, op: &Op, s: &mut EventSink<'_>) -> (bool, Vec<u64>) {
    let id = TransferId(1);
    let rejected = match op {
        &Op::Deposit(a, asset, n) => {
            let r = l.deposit(id, AccountId(a), AssetId(asset), Amount(n), s);
            assert_eq!(r, m.deposit(a, asset, n));
            r.is_err()
        }
        &Op::Withdraw(a, asset, n) => {
            let r = l.withdraw(id, AccountId(a), AssetId(asset), Amount(n), s);
            assert_eq!(r, m.withdraw(a, asset, n));
            r.is_err()
        }
        Op::Transfer(t) => {
            let r = l.transfer_local(&t.spec(), s).map(|x| x.0);
            assert_eq!(r, m.transfer(t));
            r.is_err()
        }
        Op::Linked(batch) => {
            let specs: Vec<TransferSpec> = batch.iter().map(Tx::spec).collect();
            let r = l.transfer_linked(&specs, s);
            assert_eq!(r, m.linked(batch));
            r.is_err()
        }
        Op::CreatePending(t, ms) => {
            let r = l.create_pending(&t.spec(), *ms, s).map(|x| x.0);
            assert_eq!(r, m.create_pending(t, *ms));
            r.is_err()
        }
        &Op::Post(id, n) => {
            let r = l
                .post_pending(TransferId(id), n.map(Amount), None, s)
                .map(|x| x.0);
            assert_eq!(r, m.post(id, n));
            r.is_err()
        }
        &Op::Void(id) => {
            let r = l.void_pending(TransferId(id), false, s);
            assert_eq!(r, m.void(id));
            r.is_err()
        }
        Op::Advance(_) => {
            l.expire(Timestamp(m.now), s);
            return (false, m.expire());
        }
        Op::BeginRemote(t) => {
            let r = l.begin_remote(&t.spec(), ShardId(1), s).map(|x| x.0);
            assert_eq!(r, m.begin_remote(t));
            r.is_err()
        }
        &Op::PostRemote(id, n) => {
            let r = l
                .post_pending(TransferId(id), n.map(Amount), Some(ShardId(1)), s)
                .map(|x| x.0);
            assert_eq!(r, m.post_remote(id, n));
            r.is_err()
        }
        Op::Finish(i, ok) => {
            if m.inflight.is_empty() {
                return (false, vec![]);
            }
            let id = *m.inflight.keys().nth(i.index(m.inflight.len())).unwrap();
            let result = if *ok {
                Ok(())
            } else {
                Err(RejectCode::AccountFrozen)
            };
            l.finish_remote(TransferId(id), result, s);
            return (false, m.finish(id, *ok));
        }
        &Op::Freeze(a) => {
            let r = l.freeze(AccountId(a), s);
            assert_eq!(r, m.freeze(a));
            r.is_err()
        }
        &Op::Unfreeze(a) => {
            let r = l.unfreeze(AccountId(a), s);
            assert_eq!(r, m.unfreeze(a));
            r.is_err()
        }
        &Op::Close(a) => {
            let r = l.close(AccountId(a), s);
            assert_eq!(r, m.close(a));
            r.is_err()
        }
    };
    (rejected, Vec::new())
}

fn run_model(ops: &[Op]) {
    let mut l = Ledger::new();
    l.add_asset(AssetId(1));
    l.add_asset(AssetId(2));
    let mut m = Model {
        now: NOW.0,
        ..Model::default()
    };
    let mut seq = 1u64;
    let mut out = Vec::new();
    // Every account but the last starts with 500 of each asset.
    for a in 1..=MODEL_ACCOUNTS {
        let mut s = EventSink::new(&mut out, ShardId(0), 1, NOW, OWNER, &mut seq);
        l.open_account(AccountId(a), OWNER, &mut s).unwrap();
        m.status.insert(a, AccountStatus::Active);
        for asset in (1..=2u32).filter(|_| a < MODEL_ACCOUNTS) {
            l.deposit(
                TransferId(a),
                AccountId(a),
                AssetId(asset),
                Amount(500),
                &mut s,
            )
            .unwrap();
            m.deposit(a, asset, 500).unwrap();
        }
        l.validate().unwrap();
    }
    compare(&l, &m);
    for op in ops {
        if let Op::Advance(ms) = op {
            m.now += ms * NS_PER_MS;
        }
        let before = l.to_parts();
        let first = seq;
        let mut out = Vec::new();
        let (rejected, voided) = {
            let mut s = EventSink::new(&mut out, ShardId(0), 1, Timestamp(m.now), OWNER, &mut seq);
            apply(&mut l, &mut m, op, &mut s)
        };
        if let Err(v) = l.validate() {
            panic!("{op:?}: {v}");
        }
        // Numbered on without gaps, stamped with the input's time.
        assert_eq!(seq, first + out.len() as u64);
        for (n, r) in out.iter().enumerate() {
            assert_eq!((r.seq, r.timestamp), (first + n as u64, Timestamp(m.now)));
        }
        if rejected {
            assert!(out.is_empty(), "{op:?}: rejected but emitted {out:?}");
            assert_eq!(
                before,
                l.to_parts(),
                "{op:?}: rejected but changed the ledger"
            );
        } else if !matches!(op, Op::Advance(_) | Op::Finish(..)) {
            assert!(!out.is_empty(), "{op:?}: accepted but emitted nothing");
        }
        let expired: Vec<u64> = out
            .iter()
            .filter_map(|r| match r.event {
                Event::PendingVoided {
                    id, expired: true, ..
                } => Some(id.0),
                _ => None,
            })
            .collect();
        assert_eq!(expired, voided, "{op:?}: expired transfers");
        // The last balance event of each (account, asset) is its balance after the step.
        let mut last = BTreeMap::new();
        for r in &out {
            if let Event::Balance {
                account,
                asset,
                available,
                held,
            } = r.event
            {
                last.insert((account, asset), (available, held));
            }
        }
        for ((a, asset), reported) in last {
            let b = l.account(a).unwrap().balance(asset);
            assert_eq!((b.available, b.held), reported, "{op:?}: balance event");
        }
        compare(&l, &m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn ledger_matches_reference_model(ops in prop::collection::vec(op_s(), 1..=200)) {
        run_model(&ops);
    }
}
