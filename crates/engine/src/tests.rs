//! Whole-output unit tests of the shard engine: every test compares the complete list of
//! events an input produced (header included) and the command's [`Outcome`], and checks
//! `validate()` after every input.
//!
//! Amounts are computed by hand in the comments next to each expectation. The market used
//! throughout is BTC/USD with lot 1, tick 1, maker 10 bps, taker 20 bps, so a buy of `q` at
//! `p` holds `q*p + floor(q*p*20/10_000)` USD.
//!
//! Tests named `bug_*` assert the behaviour the engine should have and currently fail; see
//! the comment above each of them.

use super::*;
use crate::cluster::validate_quiescent;
use tradelog_ledger::LedgerParts;
use tradelog_matching::BookParts;

// ----- fixtures ----------------------------------------------------------------------------

const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);
const M: MarketId = MarketId(1);
const FEE: AccountId = AccountId(999);

const OPERATOR: Principal = Principal(1);
const ALICE: Principal = Principal(11);
const BOB: Principal = Principal(12);
const CAROL: Principal = Principal(13);
const DAVE: Principal = Principal(14);
const AUDITOR: Principal = Principal(50);

const A1: AccountId = AccountId(1);
const A2: AccountId = AccountId(2);
const A3: AccountId = AccountId(3);
const A4: AccountId = AccountId(4);

/// Start of time in the tests (nanoseconds).
const T0: Timestamp = Timestamp(1_000_000_000);

fn usd() -> Asset {
    Asset {
        id: USD,
        code: "USD".into(),
        scale: 2,
    }
}

fn btc() -> Asset {
    Asset {
        id: BTC,
        code: "BTC".into(),
        scale: 8,
    }
}

fn market_spec(shard: ShardId) -> MarketSpec {
    MarketSpec {
        id: M,
        base: BTC,
        quote: USD,
        lot_size: 1,
        tick_size: 1,
        min_qty: Qty(1),
        max_qty: Qty(1_000_000_000_000),
        maker_fee_bps: 10,
        taker_fee_bps: 20,
        fee_account: FEE,
        collar_bps: 0,
        shard,
    }
}

fn oid(shard: u32, n: u64) -> OrderId {
    OrderId::new(ShardId(shard), n)
}

fn xfer(id: u64, debit: AccountId, credit: AccountId, asset: AssetId, amount: u64) -> TransferSpec {
    TransferSpec {
        id: TransferId(id),
        debit,
        credit,
        asset,
        amount: Amount(amount),
        balancing: false,
    }
}

fn deposit(id: u64, account: AccountId, asset: AssetId, amount: u64) -> Command {
    Command::Deposit {
        id: TransferId(id),
        account,
        asset,
        amount: Amount(amount),
    }
}

fn limit(account: AccountId, side: Side, price: u64, qty: u64) -> NewOrder {
    NewOrder {
        account,
        market: M,
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(price),
        qty: Qty(qty),
        post_only: false,
        client_order_id: 0,
        stp: SelfTradePrevention::CancelResting,
    }
}

// ----- event builders ------------------------------------------------------------------------

fn bal(account: AccountId, asset: AssetId, available: u64, held: u64) -> Event {
    Event::Balance {
        account,
        asset,
        available: Amount(available),
        held: Amount(held),
    }
}

fn funds_held(order: OrderId, account: AccountId, asset: AssetId, amount: u64) -> Event {
    Event::FundsHeld {
        order,
        account,
        asset,
        amount: Amount(amount),
    }
}

fn funds_released(order: OrderId, account: AccountId, asset: AssetId, amount: u64) -> Event {
    Event::FundsReleased {
        order,
        account,
        asset,
        amount: Amount(amount),
    }
}

fn submitted(order: OrderId, o: &NewOrder, replaces: Option<OrderId>) -> Event {
    Event::OrderSubmitted {
        order,
        account: o.account,
        market: o.market,
        side: o.side,
        order_type: o.order_type,
        tif: o.tif,
        price: o.price,
        qty: o.qty,
        client_order_id: o.client_order_id,
        replaces,
    }
}

fn accepted(order: OrderId, o: &NewOrder) -> Event {
    Event::OrderAccepted {
        order,
        market: o.market,
        account: o.account,
        side: o.side,
        price: o.price,
        qty: o.qty,
    }
}

#[allow(clippy::too_many_arguments)]
fn trade(
    price: u64,
    qty: u64,
    taker_side: Side,
    taker: OrderId,
    maker: OrderId,
    taker_account: AccountId,
    maker_account: AccountId,
    taker_fee: u64,
    maker_fee: u64,
) -> Event {
    Event::Trade {
        market: M,
        price: Price(price),
        qty: Qty(qty),
        taker_side,
        taker,
        maker,
        taker_account,
        maker_account,
        taker_fee: Amount(taker_fee),
        maker_fee: Amount(maker_fee),
    }
}

#[allow(clippy::too_many_arguments)]
fn settled(
    order: OrderId,
    account: AccountId,
    paid_asset: AssetId,
    paid: u64,
    received_asset: AssetId,
    received: u64,
    fee: u64,
) -> Event {
    Event::Settled {
        order,
        account,
        paid_asset,
        paid: Amount(paid),
        received_asset,
        received: Amount(received),
        fee: Amount(fee),
    }
}

fn filled(order: OrderId) -> Event {
    Event::OrderFilled { order, market: M }
}

fn cancelled(order: OrderId, remaining: u64, reason: CancelReason) -> Event {
    Event::OrderCancelled {
        order,
        market: M,
        remaining: Qty(remaining),
        reason,
    }
}

fn fee_collected(amount: u64) -> Event {
    Event::FeeCollected {
        market: M,
        account: FEE,
        asset: USD,
        amount: Amount(amount),
    }
}

fn fee_account_opened() -> Event {
    Event::AccountOpened {
        account: FEE,
        owner: Principal::SYSTEM,
    }
}

fn transfer_posted(
    id: u64,
    debit: AccountId,
    credit: AccountId,
    asset: AssetId,
    amount: u64,
) -> Event {
    Event::TransferPosted {
        id: TransferId(id),
        debit,
        credit,
        asset,
        amount: Amount(amount),
    }
}

fn rejected(subject: Subject, code: RejectCode) -> Event {
    Event::Rejected { subject, code }
}

fn ok(a: Accepted) -> Outcome {
    Outcome::ok(a)
}

// ----- harness -------------------------------------------------------------------------------

/// One engine plus the event numbering the test expects, kept independently of the engine.
struct H {
    e: Engine,
    /// Next event sequence number the test expects.
    seq: u64,
    /// Number of inputs the test applied.
    input: u64,
    /// Leader time of the next input.
    now: Timestamp,
    /// Counter of the next order id this shard assigns (ids are `shard << 48 | counter`,
    /// 1, 2, 3, ...; checked on every `OrderSubmitted`).
    next_order: u64,
}

impl H {
    fn new(shard: u32, placement: Placement) -> H {
        H {
            e: Engine::new(ShardId(shard), placement),
            seq: 1,
            input: 0,
            now: T0,
            next_order: 1,
        }
    }

    fn meta(&self, principal: Principal, authority: Authority) -> Meta {
        Meta {
            timestamp: self.now,
            principal,
            authority,
        }
    }

    fn op(&self) -> Meta {
        self.meta(OPERATOR, Authority::Operator)
    }

    fn trader(&self, p: Principal) -> Meta {
        self.meta(p, Authority::Trader)
    }

    fn auditor(&self) -> Meta {
        self.meta(AUDITOR, Authority::ReadOnly)
    }

    /// Applies one input; checks numbering, headers and every invariant.
    fn apply(&mut self, input: Input) -> (Applied, Vec<EventRecord>) {
        let mut out = Vec::new();
        let applied = self.e.apply(&input, &mut out);
        self.e
            .validate()
            .unwrap_or_else(|v| panic!("invariant broken after {input:?}: {v}"));
        if self.e.placement().shard_count() == 1 {
            // A single shard has nothing in flight after any input.
            validate_quiescent(std::slice::from_ref(&self.e))
                .unwrap_or_else(|v| panic!("quiescent invariant broken after {input:?}: {v}"));
        }
        self.input += 1;
        assert_eq!(self.e.inputs_applied(), self.input);
        for (n, r) in out.iter().enumerate() {
            assert_eq!(r.shard, self.e.shard(), "event {n} shard");
            assert_eq!(r.seq, self.seq + n as u64, "event {n} numbering");
            assert_eq!(r.input, self.input, "event {n} input");
            if let Event::OrderSubmitted { order, .. } = r.event {
                assert_eq!(order, oid(self.e.shard().0, self.next_order), "order ids");
                self.next_order += 1;
            }
        }
        self.seq += out.len() as u64;
        assert_eq!(self.e.next_event_seq(), self.seq);
        (applied, out)
    }

    fn cmd(&mut self, meta: Meta, command: Command) -> (Outcome, Vec<EventRecord>) {
        match self.apply(Input::Command { meta, command }) {
            (Applied::Command(o), out) => (o, out),
            (other, _) => panic!("command answered {other:?}"),
        }
    }

    /// Set-up step that must be accepted.
    fn ok(&mut self, meta: Meta, command: Command) -> Vec<EventRecord> {
        let (o, out) = self.cmd(meta, command.clone());
        assert!(
            o.result.is_ok() && !o.duplicate,
            "{command:?} answered {o:?}"
        );
        out
    }

    fn deliver(&mut self, message: Message) -> (Delivery, Vec<EventRecord>) {
        let timestamp = self.now;
        match self.apply(Input::Message { timestamp, message }) {
            (Applied::Message(d), out) => (d, out),
            (other, _) => panic!("message answered {other:?}"),
        }
    }

    fn tick(&mut self) -> Vec<EventRecord> {
        let timestamp = self.now;
        let (a, out) = self.apply(Input::Tick { timestamp });
        assert_eq!(a, Applied::Other);
        out
    }

    fn ack(&mut self, to: ShardId, upto: u64) -> Vec<EventRecord> {
        let timestamp = self.now;
        let (a, out) = self.apply(Input::Ack {
            timestamp,
            to,
            upto,
        });
        assert_eq!(a, Applied::Other);
        out
    }

    /// The records the next input should produce, all caused by `principal`.
    fn recs(&self, principal: Principal, events: Vec<Event>) -> Vec<EventRecord> {
        self.recs_by(events.into_iter().map(|e| (principal, e)).collect())
    }

    /// The records the next input should produce, each with its own principal.
    fn recs_by(&self, events: Vec<(Principal, Event)>) -> Vec<EventRecord> {
        events
            .into_iter()
            .enumerate()
            .map(|(n, (principal, event))| EventRecord {
                shard: self.e.shard(),
                seq: self.seq + n as u64,
                input: self.input + 1,
                timestamp: self.now,
                principal,
                event,
            })
            .collect()
    }

    fn outbox(&self, to: u32) -> Vec<Message> {
        self.e.outbox(ShardId(to)).cloned().collect()
    }

    /// (available, held) of an account's asset.
    fn balance(&self, a: AccountId, asset: AssetId) -> (u64, u64) {
        let b = self
            .e
            .ledger()
            .account(a)
            .expect("account here")
            .balance(asset);
        (b.available.0, b.held.0)
    }
}

/// Catalog on one engine: USD, BTC and the market (owned by `market_shard`).
fn catalog(h: &mut H, spec: MarketSpec) {
    h.ok(h.op(), Command::CreateAsset(usd()));
    h.ok(h.op(), Command::CreateAsset(btc()));
    h.ok(h.op(), Command::CreateMarket(spec));
}

/// One shard: accounts 1 (Alice), 2 (Bob), 3 (Carol); 1 and 2 hold USD 1_000_000 and
/// BTC 1_000 each; 3 holds nothing.
fn single() -> H {
    single_with(|_| {})
}

fn single_with(f: impl FnOnce(&mut MarketSpec)) -> H {
    let mut h = H::new(0, Placement::new(1));
    let mut spec = market_spec(ShardId(0));
    f(&mut spec);
    catalog(&mut h, spec);
    for (a, owner) in [(A1, ALICE), (A2, BOB), (A3, CAROL)] {
        h.ok(h.op(), Command::OpenAccount { account: a, owner });
    }
    h.ok(h.op(), deposit(9001, A1, USD, 1_000_000));
    h.ok(h.op(), deposit(9002, A1, BTC, 1_000));
    h.ok(h.op(), deposit(9003, A2, USD, 1_000_000));
    h.ok(h.op(), deposit(9004, A2, BTC, 1_000));
    h
}

/// Two shards (placement by id % 2): accounts 2 (Bob) and 4 (Dave) on shard 0, 1 (Alice)
/// and 3 (Carol) on shard 1; the market lives on shard 1. Accounts 1 and 2 hold USD
/// 1_000_000 and BTC 1_000 each.
fn two() -> (H, H) {
    let mut h0 = H::new(0, Placement::new(2));
    let mut h1 = H::new(1, Placement::new(2));
    for h in [&mut h0, &mut h1] {
        catalog(h, market_spec(ShardId(1)));
    }
    h0.ok(
        h0.op(),
        Command::OpenAccount {
            account: A2,
            owner: BOB,
        },
    );
    h0.ok(
        h0.op(),
        Command::OpenAccount {
            account: A4,
            owner: DAVE,
        },
    );
    h1.ok(
        h1.op(),
        Command::OpenAccount {
            account: A1,
            owner: ALICE,
        },
    );
    h1.ok(
        h1.op(),
        Command::OpenAccount {
            account: A3,
            owner: CAROL,
        },
    );
    h0.ok(h0.op(), deposit(9001, A2, USD, 1_000_000));
    h0.ok(h0.op(), deposit(9002, A2, BTC, 1_000));
    h1.ok(h1.op(), deposit(9003, A1, USD, 1_000_000));
    h1.ok(h1.op(), deposit(9004, A1, BTC, 1_000));
    (h0, h1)
}

fn book_parts(e: &Engine) -> Vec<BookParts> {
    e.books().values().map(|b| b.to_parts()).collect()
}

fn ledger_parts(e: &Engine) -> LedgerParts {
    e.ledger().to_parts()
}

fn outboxes(e: &Engine) -> Vec<Vec<Message>> {
    (0..e.placement().shard_count())
        .map(|s| e.outbox(ShardId(s)).cloned().collect())
        .collect()
}

/// True for commands that carry an idempotency key (their outcome, even a rejection, is
/// remembered so that a retry gets the same answer).
fn keyed(cmd: &Command) -> bool {
    match cmd {
        Command::Deposit { .. }
        | Command::Withdraw { .. }
        | Command::Transfer(_)
        | Command::CreatePending { .. }
        | Command::PostPending { .. }
        | Command::VoidPending { .. } => true,
        Command::LinkedTransfers(b) => !b.is_empty(),
        Command::PlaceOrder(o) => o.client_order_id != 0,
        _ => false,
    }
}

/// How a reference engine is advanced to stand for "the same input, changing nothing".
#[derive(Clone, Copy, PartialEq)]
enum Trace {
    /// The input emitted no event (a duplicate, an ignored message): like a tick.
    Silent,
    /// The input emitted one `Rejected` event: like rejecting a halt of a market that does
    /// not exist, which touches nothing.
    OneRejection,
}

/// `before` advanced by one input at `now` that changes nothing but the input counter, the
/// event sequence (`trace`) and the leader time.
fn reference(before: &Engine, now: Timestamp, trace: Trace) -> Engine {
    let mut e = before.clone();
    let mut out = Vec::new();
    match trace {
        Trace::Silent => e.tick(now, &mut out),
        Trace::OneRejection => {
            let meta = Meta {
                timestamp: now,
                principal: OPERATOR,
                authority: Authority::Operator,
            };
            let cmd = Command::HaltMarket {
                market: MarketId(u32::MAX),
            };
            let o = e.execute(meta, &cmd, &mut out);
            assert_eq!(o, Outcome::rejected(RejectCode::UnknownMarket));
        }
    }
    assert_eq!(out.len(), usize::from(trace == Trace::OneRejection));
    e.validate().unwrap();
    e
}

/// Lets both engines run through two full idempotency windows with identical ticks, so
/// that every remembered key is forgotten in both.
fn forget_keys(a: &mut Engine, b: &mut Engine, now: Timestamp) {
    for n in [2, 3] {
        let ts = now.plus_ms(n * IDEMPOTENCY_WINDOW_MS);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.tick(ts, &mut x);
        b.tick(ts, &mut y);
        a.validate().unwrap();
        b.validate().unwrap();
        assert_eq!(x.len(), y.len());
    }
}

/// Asserts that the input that took `before` to `after` (at leader time `now`) changed
/// nothing but the counters: ledger, books, outboxes and catalog part by part, then the
/// state hash against a reference engine that applied an input known to change nothing.
/// With `keyed`, the command's idempotency key may have been remembered (a retry gets the
/// same answer, by design): the hashes are then compared once both engines have forgotten
/// every key.
fn assert_unchanged(before: &Engine, after: &Engine, now: Timestamp, trace: Trace, keyed: bool) {
    assert_eq!(ledger_parts(after), ledger_parts(before), "ledger changed");
    assert_eq!(book_parts(after), book_parts(before), "books changed");
    assert_eq!(outboxes(after), outboxes(before), "outboxes changed");
    assert_eq!(after.assets(), before.assets(), "assets changed");
    assert_eq!(after.markets(), before.markets(), "markets changed");
    assert_eq!(after.inputs_applied(), before.inputs_applied() + 1);
    let mut r = reference(before, now, trace);
    if keyed {
        let mut a = after.clone();
        forget_keys(&mut a, &mut r, now);
        assert_eq!(a.state_hash(), r.state_hash(), "state changed");
    } else {
        assert_eq!(after.state_hash(), r.state_hash(), "state changed");
    }
}

impl H {
    /// A command rejected by the receiving shard: one `Rejected` event, the outcome, and no
    /// state change (other than remembering the command's own idempotency key, if it has
    /// one).
    fn reject(&mut self, meta: Meta, cmd: Command, subject: Subject, code: RejectCode) {
        self.reject_at(meta, cmd, subject, code, 0)
    }

    fn reject_at(
        &mut self,
        meta: Meta,
        cmd: Command,
        subject: Subject,
        code: RejectCode,
        index: u32,
    ) {
        let before = self.e.clone();
        let want = self.recs(meta.principal, vec![rejected(subject, code)]);
        let (o, got) = self.cmd(meta, cmd.clone());
        let expected = Outcome {
            result: Err(Rejection { code, index }),
            duplicate: false,
        };
        assert_eq!(o, expected);
        assert_eq!(got, want);
        assert_unchanged(&before, &self.e, self.now, Trace::OneRejection, keyed(&cmd));
    }

    /// An order the account's shard accepts and the market (on the same shard) rejects: the
    /// hold is taken and given back in full within the input. `asset` and `hold` are what the
    /// order holds (computed by hand by the caller). Accounts must already have a balance
    /// entry in both assets of the market.
    fn market_reject(
        &mut self,
        meta: Meta,
        o: NewOrder,
        asset: AssetId,
        hold: u64,
        code: RejectCode,
    ) {
        let before = self.e.clone();
        let id = oid(self.e.shard().0, self.next_order);
        let (avail, held) = self.balance(o.account, asset);
        let want = self.recs(
            meta.principal,
            vec![
                funds_held(id, o.account, asset, hold),
                bal(o.account, asset, avail - hold, held + hold),
                submitted(id, &o, None),
                Event::OrderRejected {
                    order: id,
                    market: o.market,
                    code,
                },
                funds_released(id, o.account, asset, hold),
                bal(o.account, asset, avail, held),
            ],
        );
        let (out, got) = self.cmd(meta, Command::PlaceOrder(o.clone()));
        assert_eq!(out, ok(Accepted::Order(id)));
        assert_eq!(got, want);
        // Nothing is left of the order but its used id (and client order id).
        assert_eq!(
            ledger_parts(&self.e),
            ledger_parts(&before),
            "ledger changed"
        );
        assert_eq!(book_parts(&self.e), book_parts(&before), "books changed");
        assert_eq!(outboxes(&self.e), outboxes(&before), "outboxes changed");
        assert_eq!(self.e.ledger().order_hold(id), None);
    }

    /// Places an order that is expected to rest untouched on an uncrossed book.
    fn rest(&mut self, meta: Meta, o: NewOrder, asset: AssetId, hold: u64) -> OrderId {
        let id = oid(self.e.shard().0, self.next_order);
        let (avail, held) = self.balance(o.account, asset);
        let want = self.recs(
            meta.principal,
            vec![
                funds_held(id, o.account, asset, hold),
                bal(o.account, asset, avail - hold, held + hold),
                submitted(id, &o, None),
                accepted(id, &o),
            ],
        );
        let (out, got) = self.cmd(meta, Command::PlaceOrder(o));
        assert_eq!(out, ok(Accepted::Order(id)));
        assert_eq!(got, want);
        id
    }
}

// ----- catalog and accounts -----------------------------------------------------------------

#[test]
fn catalog_and_account_commands_on_a_fresh_shard() {
    let mut h = H::new(0, Placement::new(1));
    let spec = market_spec(ShardId(0));
    let header = |seq, input, principal, event| EventRecord {
        shard: ShardId(0),
        seq,
        input,
        timestamp: T0,
        principal,
        event,
    };

    let (o, got) = h.cmd(h.op(), Command::CreateAsset(usd()));
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(
        got,
        vec![header(1, 1, OPERATOR, Event::AssetCreated(usd()))]
    );

    let (o, got) = h.cmd(h.op(), Command::CreateAsset(btc()));
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(
        got,
        vec![header(2, 2, OPERATOR, Event::AssetCreated(btc()))]
    );

    let (o, got) = h.cmd(h.op(), Command::CreateMarket(spec.clone()));
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(
        got,
        vec![header(3, 3, OPERATOR, Event::MarketCreated(spec.clone()))]
    );
    assert_eq!(h.e.markets().get(&M), Some(&spec));
    assert_eq!(h.e.books()[&M].to_parts().orders, vec![]);

    // An operator opens an account for Alice; Bob opens his own.
    let (o, got) = h.cmd(
        h.op(),
        Command::OpenAccount {
            account: A1,
            owner: ALICE,
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(
        got,
        vec![header(
            4,
            4,
            OPERATOR,
            Event::AccountOpened {
                account: A1,
                owner: ALICE
            }
        )]
    );
    let (o, got) = h.cmd(
        h.trader(BOB),
        Command::OpenAccount {
            account: A2,
            owner: BOB,
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(
        got,
        vec![header(
            5,
            5,
            BOB,
            Event::AccountOpened {
                account: A2,
                owner: BOB
            }
        )]
    );
    assert_eq!(h.e.ledger().owner(A2), Ok(BOB));
    assert_eq!(h.e.assets().len(), 2);
}

#[test]
fn deposit_and_withdraw() {
    let mut h = single();
    let want = h.recs(
        OPERATOR,
        vec![
            Event::Deposited {
                id: TransferId(10),
                account: A3,
                asset: USD,
                amount: Amount(5_000),
            },
            bal(A3, USD, 5_000, 0),
        ],
    );
    let (o, got) = h.cmd(h.op(), deposit(10, A3, USD, 5_000));
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);

    // Carol withdraws from her own account.
    let want = h.recs(
        CAROL,
        vec![
            Event::Withdrawn {
                id: TransferId(11),
                account: A3,
                asset: USD,
                amount: Amount(1_200),
            },
            bal(A3, USD, 3_800, 0),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(CAROL),
        Command::Withdraw {
            id: TransferId(11),
            account: A3,
            asset: USD,
            amount: Amount(1_200),
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
    assert_eq!(h.balance(A3, USD), (3_800, 0));
    let t = h.e.ledger().totals()[&USD];
    assert_eq!((t.deposited, t.withdrawn), (2_005_000, 1_200));
}

#[test]
fn transfer_between_local_accounts() {
    let mut h = single();
    let want = h.recs(
        ALICE,
        vec![
            transfer_posted(20, A1, A3, USD, 250_000),
            bal(A1, USD, 750_000, 0),
            bal(A3, USD, 250_000, 0),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::Transfer(xfer(20, A1, A3, USD, 250_000)),
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
}

#[test]
fn balancing_transfer_moves_at_most_the_available_balance() {
    let mut h = single();
    h.ok(h.op(), deposit(10, A3, USD, 700));
    // Carol asks for 1_000 but has 700: all 700 move.
    let t = TransferSpec {
        balancing: true,
        ..xfer(21, A3, A1, USD, 1_000)
    };
    let want = h.recs(
        CAROL,
        vec![
            transfer_posted(21, A3, A1, USD, 700),
            bal(A3, USD, 0, 0),
            bal(A1, USD, 1_000_700, 0),
        ],
    );
    let (o, got) = h.cmd(h.trader(CAROL), Command::Transfer(t));
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);

    // Below the available balance it moves the amount asked.
    let t = TransferSpec {
        balancing: true,
        ..xfer(22, A1, A3, USD, 300)
    };
    let want = h.recs(
        ALICE,
        vec![
            transfer_posted(22, A1, A3, USD, 300),
            bal(A1, USD, 1_000_400, 0),
            bal(A3, USD, 300, 0),
        ],
    );
    let (o, got) = h.cmd(h.trader(ALICE), Command::Transfer(t));
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);

    // Nothing available: rejected even though balancing.
    h.ok(h.op(), deposit(11, A3, BTC, 5));
    h.ok(h.trader(CAROL), Command::Transfer(xfer(23, A3, A1, BTC, 5)));
    let t = TransferSpec {
        balancing: true,
        ..xfer(24, A3, A1, BTC, 5)
    };
    h.reject(
        h.trader(CAROL),
        Command::Transfer(t),
        Subject::Transfer(TransferId(24)),
        RejectCode::InsufficientFunds,
    );
}

#[test]
fn linked_transfers_apply_all_in_order() {
    let mut h = single();
    let batch = vec![
        xfer(30, A1, A2, USD, 100),
        xfer(31, A2, A3, USD, 60),
        xfer(32, A1, A3, BTC, 7),
    ];
    let want = h.recs(
        OPERATOR,
        vec![
            transfer_posted(30, A1, A2, USD, 100),
            bal(A1, USD, 999_900, 0),
            bal(A2, USD, 1_000_100, 0),
            transfer_posted(31, A2, A3, USD, 60),
            bal(A2, USD, 1_000_040, 0),
            bal(A3, USD, 60, 0),
            transfer_posted(32, A1, A3, BTC, 7),
            bal(A1, BTC, 993, 0),
            bal(A3, BTC, 7, 0),
        ],
    );
    let (o, got) = h.cmd(h.op(), Command::LinkedTransfers(batch.clone()));
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
    // Every member id is taken by the batch: a plain transfer with id 31 is refused.
    h.reject(
        h.op(),
        Command::Transfer(xfer(31, A2, A3, USD, 1)),
        Subject::Transfer(TransferId(31)),
        RejectCode::DuplicateId,
    );
}

#[test]
fn linked_transfers_failing_in_the_middle_apply_nothing() {
    let mut h = single();
    // The second member fails (Carol has no USD); the first one had already applied inside
    // the ledger and must be rolled back, events included.
    let batch = vec![
        xfer(30, A1, A3, USD, 100),
        xfer(31, A3, A2, USD, 500),
        xfer(32, A1, A2, USD, 10),
    ];
    h.reject_at(
        h.op(),
        Command::LinkedTransfers(batch),
        Subject::Transfer(TransferId(30)),
        RejectCode::InsufficientFunds,
        1,
    );
    assert_eq!(h.balance(A1, USD), (1_000_000, 0));
    assert!(h.e.ledger().account(A3).unwrap().balances.is_empty());

    // A failing last member (unknown account) reports index 2.
    let batch = vec![
        xfer(40, A1, A2, USD, 100),
        xfer(41, A2, A1, USD, 100),
        xfer(42, A1, AccountId(77), USD, 10),
    ];
    h.reject_at(
        h.op(),
        Command::LinkedTransfers(batch),
        Subject::Transfer(TransferId(40)),
        RejectCode::UnknownAccount,
        2,
    );
}

// ----- pending transfers --------------------------------------------------------------------

fn create_pending(h: &mut H, id: u64, amount: u64, timeout_ms: u64) {
    let expires_at = h.now.plus_ms(timeout_ms);
    let (avail, held) = h.balance(A1, USD);
    let want = h.recs(
        ALICE,
        vec![
            Event::PendingCreated {
                id: TransferId(id),
                debit: A1,
                credit: A3,
                asset: USD,
                amount: Amount(amount),
                expires_at,
            },
            bal(A1, USD, avail - amount, held + amount),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::CreatePending {
            spec: xfer(id, A1, A3, USD, amount),
            timeout_ms,
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
    assert_eq!(
        h.e.ledger().pending()[&TransferId(id)].expires_at,
        expires_at
    );
}

#[test]
fn pending_transfer_posted_in_full() {
    let mut h = single();
    create_pending(&mut h, 50, 40_000, 60_000);
    let want = h.recs(
        ALICE,
        vec![
            Event::PendingPosted {
                id: TransferId(50),
                amount: Amount(40_000),
                released: Amount(0),
            },
            transfer_posted(50, A1, A3, USD, 40_000),
            bal(A1, USD, 960_000, 0),
            bal(A3, USD, 40_000, 0),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::PostPending {
            debit: A1,
            id: TransferId(50),
            amount: None,
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
    assert!(h.e.ledger().pending().is_empty());
}

#[test]
fn pending_transfer_posted_partially_releases_the_rest() {
    let mut h = single();
    create_pending(&mut h, 50, 40_000, 60_000);
    let want = h.recs(
        OPERATOR,
        vec![
            Event::PendingPosted {
                id: TransferId(50),
                amount: Amount(15_000),
                released: Amount(25_000),
            },
            transfer_posted(50, A1, A3, USD, 15_000),
            bal(A1, USD, 985_000, 0),
            bal(A3, USD, 15_000, 0),
        ],
    );
    let (o, got) = h.cmd(
        h.op(),
        Command::PostPending {
            debit: A1,
            id: TransferId(50),
            amount: Some(Amount(15_000)),
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
}

#[test]
fn pending_transfer_voided() {
    let mut h = single();
    create_pending(&mut h, 50, 40_000, 60_000);
    let want = h.recs(
        ALICE,
        vec![
            Event::PendingVoided {
                id: TransferId(50),
                amount: Amount(40_000),
                expired: false,
            },
            bal(A1, USD, 1_000_000, 0),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::VoidPending {
            debit: A1,
            id: TransferId(50),
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
    assert!(h.e.ledger().pending().is_empty());
}

#[test]
fn balancing_pending_transfer_reserves_at_most_the_available_balance() {
    let mut h = single();
    h.ok(h.op(), deposit(10, A3, USD, 700));
    let expires_at = h.now.plus_ms(1_000);
    let want = h.recs(
        CAROL,
        vec![
            Event::PendingCreated {
                id: TransferId(51),
                debit: A3,
                credit: A1,
                asset: USD,
                amount: Amount(700),
                expires_at,
            },
            bal(A3, USD, 0, 700),
        ],
    );
    let spec = TransferSpec {
        balancing: true,
        ..xfer(51, A3, A1, USD, 5_000)
    };
    let (o, got) = h.cmd(
        h.trader(CAROL),
        Command::CreatePending {
            spec,
            timeout_ms: 1_000,
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
}

#[test]
fn pending_transfer_expires_on_tick() {
    let mut h = single();
    create_pending(&mut h, 50, 40_000, 60_000);
    let expires_at = T0.plus_ms(60_000);

    // One nanosecond early: nothing happens.
    h.now = Timestamp(expires_at.0 - 1);
    assert_eq!(h.tick(), vec![]);
    assert_eq!(h.e.ledger().pending().len(), 1);

    // At the deadline the system voids it.
    h.now = expires_at;
    let want = h.recs(
        Principal::SYSTEM,
        vec![
            Event::PendingVoided {
                id: TransferId(50),
                amount: Amount(40_000),
                expired: true,
            },
            bal(A1, USD, 1_000_000, 0),
        ],
    );
    assert_eq!(h.tick(), want);
    assert!(h.e.ledger().pending().is_empty());

    // Posting it now is too late.
    h.reject(
        h.trader(ALICE),
        Command::PostPending {
            debit: A1,
            id: TransferId(50),
            amount: None,
        },
        Subject::Transfer(TransferId(50)),
        RejectCode::PendingNotOpen,
    );
}

#[test]
fn pending_transfer_expires_before_a_command_of_the_same_input() {
    let mut h = single();
    create_pending(&mut h, 50, 40_000, 60_000);
    // The post arrives at (after) the deadline: the expiry fires first, in the same input,
    // as the system; the post is then rejected.
    h.now = T0.plus_ms(60_001);
    let want = h.recs_by(vec![
        (
            Principal::SYSTEM,
            Event::PendingVoided {
                id: TransferId(50),
                amount: Amount(40_000),
                expired: true,
            },
        ),
        (Principal::SYSTEM, bal(A1, USD, 1_000_000, 0)),
        (
            ALICE,
            rejected(
                Subject::Transfer(TransferId(50)),
                RejectCode::PendingNotOpen,
            ),
        ),
    ]);
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::PostPending {
            debit: A1,
            id: TransferId(50),
            amount: None,
        },
    );
    assert_eq!(o, Outcome::rejected(RejectCode::PendingNotOpen));
    assert_eq!(got, want);
}

// ----- account lifecycle ----------------------------------------------------------------------

#[test]
fn freeze_unfreeze_and_close() {
    let mut h = single();
    h.ok(h.op(), deposit(10, A3, USD, 500));

    let want = h.recs(OPERATOR, vec![Event::AccountFrozen { account: A3 }]);
    let (o, got) = h.cmd(h.op(), Command::FreezeAccount { account: A3 });
    assert_eq!((o, got), (ok(Accepted::Done), want));
    // Frozen: no credits, no debits.
    h.reject(
        h.op(),
        deposit(11, A3, USD, 1),
        Subject::Transfer(TransferId(11)),
        RejectCode::AccountFrozen,
    );
    h.reject(
        h.op(),
        Command::Transfer(xfer(12, A3, A1, USD, 1)),
        Subject::Transfer(TransferId(12)),
        RejectCode::AccountFrozen,
    );

    let want = h.recs(OPERATOR, vec![Event::AccountUnfrozen { account: A3 }]);
    let (o, got) = h.cmd(h.op(), Command::UnfreezeAccount { account: A3 });
    assert_eq!((o, got), (ok(Accepted::Done), want));

    // Not empty yet.
    h.reject(
        h.trader(CAROL),
        Command::CloseAccount { account: A3 },
        Subject::Account(A3),
        RejectCode::AccountNotEmpty,
    );
    h.ok(
        h.trader(CAROL),
        Command::Withdraw {
            id: TransferId(13),
            account: A3,
            asset: USD,
            amount: Amount(500),
        },
    );
    let want = h.recs(CAROL, vec![Event::AccountClosed { account: A3 }]);
    let (o, got) = h.cmd(h.trader(CAROL), Command::CloseAccount { account: A3 });
    assert_eq!((o, got), (ok(Accepted::Done), want));
    assert_eq!(
        h.e.ledger().account(A3).unwrap().status,
        tradelog_ledger::AccountStatus::Closed
    );
}

// ----- orders on one shard ------------------------------------------------------------------

#[test]
fn limit_order_rests() {
    let mut h = single();
    let o = NewOrder {
        client_order_id: 5,
        ..limit(A2, Side::Sell, 1_000, 10)
    };
    // A sell holds its base quantity: 10 BTC units.
    let id = h.rest(h.trader(BOB), o, BTC, 10);
    assert_eq!(id, oid(0, 1));
    let resting = h.e.books()[&M].orders(Side::Sell);
    assert_eq!(resting.len(), 1);
    assert_eq!(
        (
            resting[0].id,
            resting[0].price,
            resting[0].remaining,
            resting[0].hold
        ),
        (id, Price(1_000), Qty(10), Amount(10))
    );
    assert_eq!(h.e.ledger().order_hold(id).unwrap().amount, Amount(10));
    assert_eq!(h.balance(A2, BTC), (990, 10));

    // A buy holds notional plus the larger fee: 5 * 900 = 4_500 + 9 (20 bps).
    let id = h.rest(h.trader(ALICE), limit(A1, Side::Buy, 900, 5), USD, 4_509);
    assert_eq!(id, oid(0, 2));
    assert_eq!(h.balance(A1, USD), (995_491, 4_509));
}

#[test]
fn crossing_order_fills_both_sides_exactly() {
    let mut h = single();
    let maker = h.rest(h.trader(BOB), limit(A2, Side::Sell, 1_000, 10), BTC, 10);
    let taker = oid(0, 2);
    let o = limit(A1, Side::Buy, 1_000, 10);
    // Notional 10 * 1_000 = 10_000; taker fee 20 bps = 20, maker fee 10 bps = 10.
    // The buyer holds 10_020 and pays all of it; the seller receives 10_000 - 10.
    let want = h.recs(
        ALICE,
        vec![
            funds_held(taker, A1, USD, 10_020),
            bal(A1, USD, 989_980, 10_020),
            submitted(taker, &o, None),
            accepted(taker, &o),
            trade(1_000, 10, Side::Buy, taker, maker, A1, A2, 20, 10),
            filled(maker),
            filled(taker),
            settled(taker, A1, USD, 10_020, BTC, 10, 20),
            bal(A1, USD, 989_980, 0),
            bal(A1, BTC, 1_010, 0),
            settled(maker, A2, BTC, 10, USD, 9_990, 10),
            bal(A2, BTC, 990, 0),
            bal(A2, USD, 1_009_990, 0),
            // Both holds are used up exactly: their releases move nothing.
            fee_account_opened(),
            fee_collected(30),
            bal(FEE, USD, 30, 0),
        ],
    );
    let (out, got) = h.cmd(h.trader(ALICE), Command::PlaceOrder(o));
    assert_eq!(out, ok(Accepted::Order(taker)));
    assert_eq!(got, want);
    assert!(h.e.books()[&M].is_empty());
    assert_eq!(h.e.books()[&M].last_price(), Some(Price(1_000)));
    assert_eq!(h.e.ledger().order_holds_sorted(), vec![]);
    assert_eq!(h.e.ledger().account(A1).unwrap().open_orders, 0);
    assert_eq!(h.e.ledger().account(A2).unwrap().open_orders, 0);
    assert_eq!(h.e.ledger().owner(FEE), Ok(Principal::SYSTEM));
}

#[test]
fn partial_fill_rests_the_rest_and_releases_price_improvement() {
    let mut h = single();
    let maker = h.rest(h.trader(BOB), limit(A2, Side::Sell, 1_000, 4), BTC, 4);
    let taker = oid(0, 2);
    let o = limit(A1, Side::Buy, 1_100, 10);
    // Hold: 10 * 1_100 = 11_000 + 22 = 11_022.
    // Fill 4 at 1_000: notional 4_000, taker fee 8, maker fee 4; the buyer pays 4_008.
    // Left held: 7_014; the resting 6 at 1_100 need 6_600 + 13 = 6_613; 401 is released.
    let want = h.recs(
        ALICE,
        vec![
            funds_held(taker, A1, USD, 11_022),
            bal(A1, USD, 988_978, 11_022),
            submitted(taker, &o, None),
            accepted(taker, &o),
            trade(1_000, 4, Side::Buy, taker, maker, A1, A2, 8, 4),
            filled(maker),
            settled(taker, A1, USD, 4_008, BTC, 4, 8),
            bal(A1, USD, 988_978, 7_014),
            bal(A1, BTC, 1_004, 0),
            settled(maker, A2, BTC, 4, USD, 3_996, 4),
            bal(A2, BTC, 996, 0),
            bal(A2, USD, 1_003_996, 0),
            funds_released(taker, A1, USD, 401),
            bal(A1, USD, 989_379, 6_613),
            fee_account_opened(),
            fee_collected(12),
            bal(FEE, USD, 12, 0),
        ],
    );
    let (out, got) = h.cmd(h.trader(ALICE), Command::PlaceOrder(o));
    assert_eq!(out, ok(Accepted::Order(taker)));
    assert_eq!(got, want);
    let bids = h.e.books()[&M].orders(Side::Buy);
    assert_eq!(bids.len(), 1);
    assert_eq!(
        (bids[0].id, bids[0].price, bids[0].remaining, bids[0].hold),
        (taker, Price(1_100), Qty(6), Amount(6_613))
    );
    assert_eq!(
        h.e.ledger().order_hold(taker).unwrap().amount,
        Amount(6_613)
    );
    assert_eq!(h.e.books()[&M].orders(Side::Sell), vec![]);
}

#[test]
fn resting_buy_filled_by_incoming_sell_gets_its_fee_surplus_back() {
    let mut h = single();
    // The resting buy holds 10_000 + 20 (the larger fee) but pays only the maker fee (10).
    let maker = h.rest(
        h.trader(ALICE),
        limit(A1, Side::Buy, 1_000, 10),
        USD,
        10_020,
    );
    let taker = oid(0, 2);
    let o = limit(A2, Side::Sell, 900, 10);
    // Executes at the maker's 1_000: seller gets 10_000 - 20, buyer pays 10_000 + 10.
    let want = h.recs(
        BOB,
        vec![
            funds_held(taker, A2, BTC, 10),
            bal(A2, BTC, 990, 10),
            submitted(taker, &o, None),
            accepted(taker, &o),
            trade(1_000, 10, Side::Sell, taker, maker, A2, A1, 20, 10),
            filled(maker),
            filled(taker),
            settled(taker, A2, BTC, 10, USD, 9_980, 20),
            bal(A2, BTC, 990, 0),
            bal(A2, USD, 1_009_980, 0),
            settled(maker, A1, USD, 10_010, BTC, 10, 10),
            bal(A1, USD, 989_980, 10),
            bal(A1, BTC, 1_010, 0),
            funds_released(maker, A1, USD, 10),
            bal(A1, USD, 989_990, 0),
            fee_account_opened(),
            fee_collected(30),
            bal(FEE, USD, 30, 0),
        ],
    );
    let (out, got) = h.cmd(h.trader(BOB), Command::PlaceOrder(o));
    assert_eq!(out, ok(Accepted::Order(taker)));
    assert_eq!(got, want);
    assert!(h.e.books()[&M].is_empty());
}

#[test]
fn ioc_rest_is_cancelled_and_released() {
    let mut h = single();
    let maker = h.rest(h.trader(BOB), limit(A2, Side::Sell, 1_000, 4), BTC, 4);
    let taker = oid(0, 2);
    let o = NewOrder {
        tif: TimeInForce::Ioc,
        ..limit(A1, Side::Buy, 1_000, 10)
    };
    // Hold 10_020; the fill of 4 costs 4_008; 6_012 is released with the unfilled 6.
    let want = h.recs(
        ALICE,
        vec![
            funds_held(taker, A1, USD, 10_020),
            bal(A1, USD, 989_980, 10_020),
            submitted(taker, &o, None),
            accepted(taker, &o),
            trade(1_000, 4, Side::Buy, taker, maker, A1, A2, 8, 4),
            filled(maker),
            cancelled(taker, 6, CancelReason::Unfilled),
            settled(taker, A1, USD, 4_008, BTC, 4, 8),
            bal(A1, USD, 989_980, 6_012),
            bal(A1, BTC, 1_004, 0),
            settled(maker, A2, BTC, 4, USD, 3_996, 4),
            bal(A2, BTC, 996, 0),
            bal(A2, USD, 1_003_996, 0),
            funds_released(taker, A1, USD, 6_012),
            bal(A1, USD, 995_992, 0),
            fee_account_opened(),
            fee_collected(12),
            bal(FEE, USD, 12, 0),
        ],
    );
    let (out, got) = h.cmd(h.trader(ALICE), Command::PlaceOrder(o));
    assert_eq!(out, ok(Accepted::Order(taker)));
    assert_eq!(got, want);
    assert!(h.e.books()[&M].is_empty());
    assert_eq!(h.e.ledger().order_holds_sorted(), vec![]);
}

#[test]
fn self_trade_cancels_the_resting_order() {
    let mut h = single();
    // Alice's own ask is in the way of her bid (default prevention: cancel the resting one).
    let ask = h.rest(h.trader(ALICE), limit(A1, Side::Sell, 1_000, 5), BTC, 5);
    let bid = oid(0, 2);
    let o = limit(A1, Side::Buy, 1_000, 5);
    let want = h.recs(
        ALICE,
        vec![
            funds_held(bid, A1, USD, 5_010),
            bal(A1, USD, 994_990, 5_010),
            submitted(bid, &o, None),
            accepted(bid, &o),
            cancelled(ask, 5, CancelReason::SelfTrade),
            funds_released(ask, A1, BTC, 5),
            bal(A1, BTC, 1_000, 0),
        ],
    );
    let (out, got) = h.cmd(h.trader(ALICE), Command::PlaceOrder(o));
    assert_eq!((out, got), (ok(Accepted::Order(bid)), want));
    // No trade: the bid rests with its whole hold.
    let bids = h.e.books()[&M].orders(Side::Buy);
    assert_eq!(
        bids.iter()
            .map(|o| (o.id, o.remaining, o.hold))
            .collect::<Vec<_>>(),
        vec![(bid, Qty(5), Amount(5_010))]
    );
    assert_eq!(h.e.books()[&M].orders(Side::Sell), vec![]);
    assert_eq!(h.e.books()[&M].last_price(), None);
}

#[test]
fn cancel_order_releases_its_hold() {
    let mut h = single();
    let id = h.rest(
        h.trader(ALICE),
        limit(A1, Side::Buy, 1_000, 10),
        USD,
        10_020,
    );
    let want = h.recs(
        ALICE,
        vec![
            cancelled(id, 10, CancelReason::Requested),
            funds_released(id, A1, USD, 10_020),
            bal(A1, USD, 1_000_000, 0),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::CancelOrder {
            market: M,
            order: id,
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
    assert!(h.e.books()[&M].is_empty());
    assert_eq!(h.e.ledger().order_holds_sorted(), vec![]);
    assert_eq!(h.e.ledger().account(A1).unwrap().open_orders, 0);
    // Gone: a second cancel (here by the operator) finds nothing.
    h.reject(
        h.op(),
        Command::CancelOrder {
            market: M,
            order: id,
        },
        Subject::Order(id),
        RejectCode::UnknownOrder,
    );
}

#[test]
fn amend_reduces_quantity_in_place() {
    let mut h = single();
    let first = h.rest(
        h.trader(ALICE),
        limit(A1, Side::Buy, 1_000, 10),
        USD,
        10_020,
    );
    let second = h.rest(h.trader(BOB), limit(A2, Side::Buy, 1_000, 3), USD, 3_006);
    // 10 -> 4 at the same price: needs 4_000 + 8; 10_020 - 4_008 = 6_012 released.
    let want = h.recs(
        ALICE,
        vec![
            Event::OrderAmended {
                order: first,
                market: M,
                price: Price(1_000),
                qty: Qty(4),
            },
            funds_released(first, A1, USD, 6_012),
            bal(A1, USD, 995_992, 4_008),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::AmendOrder {
            market: M,
            order: first,
            price: Price(1_000),
            qty: Qty(4),
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
    // Priority kept: still ahead of Bob's order.
    let bids = h.e.books()[&M].orders(Side::Buy);
    assert_eq!(
        bids.iter()
            .map(|o| (o.id, o.remaining, o.hold))
            .collect::<Vec<_>>(),
        vec![
            (first, Qty(4), Amount(4_008)),
            (second, Qty(3), Amount(3_006))
        ]
    );
    assert_eq!(h.e.books()[&M].depth(1).0, vec![(Price(1_000), Qty(7), 2)]);
    assert_eq!(
        h.e.ledger().order_hold(first).unwrap().amount,
        Amount(4_008)
    );

    // A sell reduced by the operator: 10 -> 6 releases 4 BTC units.
    let sell = h.rest(h.trader(BOB), limit(A2, Side::Sell, 2_000, 10), BTC, 10);
    let want = h.recs(
        OPERATOR,
        vec![
            Event::OrderAmended {
                order: sell,
                market: M,
                price: Price(2_000),
                qty: Qty(6),
            },
            funds_released(sell, A2, BTC, 4),
            bal(A2, BTC, 994, 6),
        ],
    );
    let (o, got) = h.cmd(
        h.op(),
        Command::AmendOrder {
            market: M,
            order: sell,
            price: Price(2_000),
            qty: Qty(6),
        },
    );
    assert_eq!((o, got), (ok(Accepted::Done), want));
}

#[test]
fn amend_at_a_new_price_replaces_the_order() {
    let mut h = single();
    let old = h.rest(
        h.trader(ALICE),
        limit(A1, Side::Buy, 1_000, 10),
        USD,
        10_020,
    );
    let new = oid(0, 2);
    // The replacement: 10 at 990 holds 9_900 + 19 (9_900 * 20 / 10_000 = 19.8, rounded down).
    let replacement = limit(A1, Side::Buy, 990, 10);
    let want = h.recs(
        ALICE,
        vec![
            cancelled(old, 10, CancelReason::Replaced),
            funds_released(old, A1, USD, 10_020),
            bal(A1, USD, 1_000_000, 0),
            funds_held(new, A1, USD, 9_919),
            bal(A1, USD, 990_081, 9_919),
            submitted(new, &replacement, Some(old)),
            accepted(new, &replacement),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::AmendOrder {
            market: M,
            order: old,
            price: Price(990),
            qty: Qty(10),
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert_eq!(got, want);
    let bids = h.e.books()[&M].orders(Side::Buy);
    assert_eq!(
        bids.iter()
            .map(|o| (o.id, o.price, o.remaining, o.hold))
            .collect::<Vec<_>>(),
        vec![(new, Price(990), Qty(10), Amount(9_919))]
    );
    assert_eq!(
        h.e.ledger()
            .order_holds_sorted()
            .iter()
            .map(|(o, h)| (*o, h.amount))
            .collect::<Vec<_>>(),
        vec![(new, Amount(9_919))]
    );
    assert_eq!(h.e.ledger().account(A1).unwrap().open_orders, 1);

    // A larger quantity at the same price also replaces (priority lost).
    let newer = oid(0, 3);
    let bigger = limit(A1, Side::Buy, 990, 12);
    // 12 * 990 = 11_880 + 23 (23.76).
    let want = h.recs(
        ALICE,
        vec![
            cancelled(new, 10, CancelReason::Replaced),
            funds_released(new, A1, USD, 9_919),
            bal(A1, USD, 1_000_000, 0),
            funds_held(newer, A1, USD, 11_903),
            bal(A1, USD, 988_097, 11_903),
            submitted(newer, &bigger, Some(new)),
            accepted(newer, &bigger),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::AmendOrder {
            market: M,
            order: new,
            price: Price(990),
            qty: Qty(12),
        },
    );
    assert_eq!((o, got), (ok(Accepted::Done), want));
}

#[test]
fn halted_market_rejects_orders_until_resumed() {
    let mut h = single();
    let resting = h.rest(h.trader(BOB), limit(A2, Side::Sell, 1_000, 5), BTC, 5);
    let want = h.recs(OPERATOR, vec![Event::MarketHalted { market: M }]);
    let (o, got) = h.cmd(h.op(), Command::HaltMarket { market: M });
    assert_eq!((o, got), (ok(Accepted::Done), want));
    assert!(h.e.books()[&M].halted());

    // The account's shard takes the hold, the market refuses and gives it back.
    h.market_reject(
        h.trader(ALICE),
        limit(A1, Side::Buy, 1_000, 5),
        USD,
        5_010,
        RejectCode::MarketHalted,
    );

    // Cancels are still accepted while halted.
    let want = h.recs(
        BOB,
        vec![
            cancelled(resting, 5, CancelReason::Requested),
            funds_released(resting, A2, BTC, 5),
            bal(A2, BTC, 1_000, 0),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(BOB),
        Command::CancelOrder {
            market: M,
            order: resting,
        },
    );
    assert_eq!((o, got), (ok(Accepted::Done), want));

    let want = h.recs(OPERATOR, vec![Event::MarketResumed { market: M }]);
    let (o, got) = h.cmd(h.op(), Command::ResumeMarket { market: M });
    assert_eq!((o, got), (ok(Accepted::Done), want));
    assert!(!h.e.books()[&M].halted());
    h.rest(h.trader(ALICE), limit(A1, Side::Buy, 1_000, 5), USD, 5_010);
}

// ----- command rejections ---------------------------------------------------------------------

#[test]
fn reject_unknown_account() {
    let mut h = single();
    h.reject(
        h.op(),
        deposit(60, AccountId(77), USD, 5),
        Subject::Transfer(TransferId(60)),
        RejectCode::UnknownAccount,
    );
    // A trader naming an unknown account of "theirs".
    h.reject(
        h.trader(ALICE),
        Command::Transfer(xfer(61, AccountId(77), A1, USD, 5)),
        Subject::Transfer(TransferId(61)),
        RejectCode::UnknownAccount,
    );
}

#[test]
fn reject_unknown_asset() {
    let mut h = single();
    h.reject(
        h.op(),
        deposit(60, A1, AssetId(9), 5),
        Subject::Transfer(TransferId(60)),
        RejectCode::UnknownAsset,
    );
    let spec = MarketSpec {
        id: MarketId(2),
        base: AssetId(9),
        ..market_spec(ShardId(0))
    };
    h.reject(
        h.op(),
        Command::CreateMarket(spec),
        Subject::Market(MarketId(2)),
        RejectCode::UnknownAsset,
    );
}

#[test]
fn reject_unknown_market() {
    let mut h = single();
    let o = NewOrder {
        market: MarketId(9),
        ..limit(A1, Side::Buy, 1_000, 1)
    };
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(o),
        Subject::ClientOrder {
            account: A1,
            client_order_id: 0,
        },
        RejectCode::UnknownMarket,
    );
    h.reject(
        h.op(),
        Command::CancelOrder {
            market: MarketId(9),
            order: oid(0, 1),
        },
        Subject::Order(oid(0, 1)),
        RejectCode::UnknownMarket,
    );
    h.reject(
        h.op(),
        Command::HaltMarket {
            market: MarketId(9),
        },
        Subject::Market(MarketId(9)),
        RejectCode::UnknownMarket,
    );
}

#[test]
fn reject_unknown_order() {
    let mut h = single();
    h.reject(
        h.trader(ALICE),
        Command::AmendOrder {
            market: M,
            order: oid(0, 42),
            price: Price(1),
            qty: Qty(1),
        },
        Subject::Order(oid(0, 42)),
        RejectCode::UnknownOrder,
    );
}

#[test]
fn reject_unknown_transfer() {
    let mut h = single();
    h.reject(
        h.trader(ALICE),
        Command::VoidPending {
            debit: A1,
            id: TransferId(42),
        },
        Subject::Transfer(TransferId(42)),
        RejectCode::UnknownTransfer,
    );
    // A pending transfer named with the wrong debit account is unknown too.
    create_pending(&mut h, 50, 100, 1_000);
    h.reject(
        h.trader(BOB),
        Command::PostPending {
            debit: A2,
            id: TransferId(50),
            amount: None,
        },
        Subject::Transfer(TransferId(50)),
        RejectCode::UnknownTransfer,
    );
}

#[test]
fn reject_insufficient_funds() {
    let mut h = single();
    h.reject(
        h.trader(ALICE),
        Command::Withdraw {
            id: TransferId(60),
            account: A1,
            asset: USD,
            amount: Amount(1_000_001),
        },
        Subject::Transfer(TransferId(60)),
        RejectCode::InsufficientFunds,
    );
    h.reject(
        h.trader(ALICE),
        Command::Transfer(xfer(61, A1, A2, BTC, 1_001)),
        Subject::Transfer(TransferId(61)),
        RejectCode::InsufficientFunds,
    );
    // An order whose hold does not fit: 1_000 * 1_000 = 1_000_000 + 2_000 > 1_000_000.
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(limit(A1, Side::Buy, 1_000, 1_000)),
        Subject::ClientOrder {
            account: A1,
            client_order_id: 0,
        },
        RejectCode::InsufficientFunds,
    );
    // Carol has no balance slot at all.
    h.reject(
        h.trader(CAROL),
        Command::PlaceOrder(limit(A3, Side::Sell, 1_000, 1)),
        Subject::ClientOrder {
            account: A3,
            client_order_id: 0,
        },
        RejectCode::InsufficientFunds,
    );
}

#[test]
fn reject_zero_amount() {
    let mut h = single();
    h.reject(
        h.op(),
        deposit(60, A1, USD, 0),
        Subject::Transfer(TransferId(60)),
        RejectCode::ZeroAmount,
    );
    h.reject(
        h.trader(ALICE),
        Command::Transfer(xfer(61, A1, A2, USD, 0)),
        Subject::Transfer(TransferId(61)),
        RejectCode::ZeroAmount,
    );
}

#[test]
fn reject_amount_overflow() {
    let mut h = single();
    h.reject(
        h.op(),
        deposit(62, A1, USD, AMOUNT_MAX + 1),
        Subject::Transfer(TransferId(62)),
        RejectCode::AmountOverflow,
    );
    // 2^31 lots at 2^32 = 2^63 > AMOUNT_MAX.
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(limit(A1, Side::Buy, 1 << 32, 1 << 31)),
        Subject::ClientOrder {
            account: A1,
            client_order_id: 0,
        },
        RejectCode::AmountOverflow,
    );
}

#[test]
fn reject_duplicate_ids() {
    let mut h = single();
    h.reject(
        h.op(),
        Command::OpenAccount {
            account: A1,
            owner: BOB,
        },
        Subject::Account(A1),
        RejectCode::DuplicateId,
    );
    // The same asset again is an idempotent duplicate; other content under its id is not.
    h.resend(h.op(), Command::CreateAsset(usd()), ok(Accepted::Done));
    h.reject(
        h.op(),
        Command::CreateAsset(Asset { scale: 3, ..usd() }),
        Subject::Asset(USD),
        RejectCode::DuplicateId,
    );
    // Same code under another id.
    h.reject(
        h.op(),
        Command::CreateAsset(Asset {
            id: AssetId(3),
            ..usd()
        }),
        Subject::Asset(AssetId(3)),
        RejectCode::DuplicateId,
    );
    h.resend(
        h.op(),
        Command::CreateMarket(market_spec(ShardId(0))),
        ok(Accepted::Done),
    );
    h.reject(
        h.op(),
        Command::CreateMarket(MarketSpec {
            tick_size: 7,
            ..market_spec(ShardId(0))
        }),
        Subject::Market(M),
        RejectCode::DuplicateId,
    );
    // A pending transfer's id cannot be reused by another pending transfer (the idempotency
    // entry of the first answers: different content).
    create_pending(&mut h, 50, 100, 1_000);
    h.reject(
        h.trader(ALICE),
        Command::CreatePending {
            spec: xfer(50, A1, A3, USD, 200),
            timeout_ms: 1_000,
        },
        Subject::Transfer(TransferId(50)),
        RejectCode::DuplicateId,
    );
    // A linked batch repeating an id inside itself.
    h.reject_at(
        h.op(),
        Command::LinkedTransfers(vec![
            xfer(70, A1, A2, USD, 1),
            xfer(71, A1, A2, USD, 1),
            xfer(70, A1, A2, USD, 1),
        ]),
        Subject::Transfer(TransferId(70)),
        RejectCode::DuplicateId,
        2,
    );
}

#[test]
fn reject_frozen_account() {
    let mut h = single();
    h.ok(h.op(), Command::FreezeAccount { account: A1 });
    h.reject(
        h.trader(ALICE),
        Command::Withdraw {
            id: TransferId(60),
            account: A1,
            asset: USD,
            amount: Amount(1),
        },
        Subject::Transfer(TransferId(60)),
        RejectCode::AccountFrozen,
    );
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(limit(A1, Side::Buy, 1_000, 1)),
        Subject::ClientOrder {
            account: A1,
            client_order_id: 0,
        },
        RejectCode::AccountFrozen,
    );
    // Credit side frozen.
    h.reject(
        h.trader(BOB),
        Command::Transfer(xfer(61, A2, A1, USD, 1)),
        Subject::Transfer(TransferId(61)),
        RejectCode::AccountFrozen,
    );
}

#[test]
fn reject_invalid_account_state() {
    let mut h = single();
    h.ok(h.op(), Command::FreezeAccount { account: A1 });
    h.reject(
        h.op(),
        Command::FreezeAccount { account: A1 },
        Subject::Account(A1),
        RejectCode::InvalidAccountState,
    );
    h.reject(
        h.op(),
        Command::UnfreezeAccount { account: A2 },
        Subject::Account(A2),
        RejectCode::InvalidAccountState,
    );
}

#[test]
fn reject_closed_account() {
    let mut h = single();
    h.ok(h.trader(CAROL), Command::CloseAccount { account: A3 });
    h.reject(
        h.op(),
        deposit(60, A3, USD, 1),
        Subject::Transfer(TransferId(60)),
        RejectCode::AccountClosed,
    );
    h.reject(
        h.trader(CAROL),
        Command::CloseAccount { account: A3 },
        Subject::Account(A3),
        RejectCode::AccountClosed,
    );
}

#[test]
fn reject_account_with_open_order_cannot_close() {
    let mut h = single();
    h.ok(h.op(), deposit(10, A3, BTC, 1));
    let id = h.rest(h.trader(CAROL), limit(A3, Side::Sell, 1_000, 1), BTC, 1);
    assert_eq!(h.balance(A3, BTC), (0, 1));
    h.reject(
        h.trader(CAROL),
        Command::CloseAccount { account: A3 },
        Subject::Account(A3),
        RejectCode::AccountNotEmpty,
    );
    h.ok(
        h.trader(CAROL),
        Command::CancelOrder {
            market: M,
            order: id,
        },
    );
    h.ok(
        h.trader(CAROL),
        Command::Withdraw {
            id: TransferId(11),
            account: A3,
            asset: BTC,
            amount: Amount(1),
        },
    );
    h.ok(h.trader(CAROL), Command::CloseAccount { account: A3 });
}

#[test]
fn reject_same_account() {
    let mut h = single();
    h.reject(
        h.trader(ALICE),
        Command::Transfer(xfer(60, A1, A1, USD, 1)),
        Subject::Transfer(TransferId(60)),
        RejectCode::SameAccount,
    );
}

#[test]
fn reject_transfer_id_zero() {
    let mut h = single();
    h.reject(
        h.trader(ALICE),
        Command::Transfer(xfer(0, A1, A2, USD, 1)),
        Subject::Transfer(TransferId(0)),
        RejectCode::UnknownTransfer,
    );
}

#[test]
fn reject_invalid_timeout() {
    let mut h = single();
    h.reject(
        h.trader(ALICE),
        Command::CreatePending {
            spec: xfer(61, A1, A2, USD, 1),
            timeout_ms: 0,
        },
        Subject::Transfer(TransferId(61)),
        RejectCode::InvalidTimeout,
    );
    h.reject(
        h.trader(ALICE),
        Command::CreatePending {
            spec: xfer(62, A1, A2, USD, 1),
            timeout_ms: PENDING_TIMEOUT_MS_MAX + 1,
        },
        Subject::Transfer(TransferId(62)),
        RejectCode::InvalidTimeout,
    );
}

#[test]
fn reject_empty_linked_batch() {
    let mut h = single();
    h.reject(
        h.op(),
        Command::LinkedTransfers(vec![]),
        Subject::Transfer(TransferId(0)),
        RejectCode::LimitExceeded,
    );
}

#[test]
fn reject_post_exceeds_pending() {
    let mut h = single();
    create_pending(&mut h, 50, 100, 1_000);
    h.reject(
        h.trader(ALICE),
        Command::PostPending {
            debit: A1,
            id: TransferId(50),
            amount: Some(Amount(101)),
        },
        Subject::Transfer(TransferId(50)),
        RejectCode::PostExceedsPending,
    );
}

#[test]
fn reject_post_pending_zero_amount() {
    let mut h = single();
    create_pending(&mut h, 50, 100, 1_000);
    h.reject(
        h.trader(ALICE),
        Command::PostPending {
            debit: A1,
            id: TransferId(50),
            amount: Some(Amount(0)),
        },
        Subject::Transfer(TransferId(50)),
        RejectCode::ZeroAmount,
    );
}

#[test]
fn reject_not_owner_for_traders() {
    let mut h = single();
    let alices = h.rest(h.trader(ALICE), limit(A1, Side::Buy, 1_000, 1), USD, 1_002);
    // Bob acting on Alice's account or order.
    h.reject(
        h.trader(BOB),
        Command::CloseAccount { account: A1 },
        Subject::Account(A1),
        RejectCode::NotOwner,
    );
    h.reject(
        h.trader(BOB),
        Command::PlaceOrder(limit(A1, Side::Buy, 1_000, 1)),
        Subject::ClientOrder {
            account: A1,
            client_order_id: 0,
        },
        RejectCode::NotOwner,
    );
    h.reject(
        h.trader(BOB),
        Command::CancelOrder {
            market: M,
            order: alices,
        },
        Subject::Order(alices),
        RejectCode::NotOwner,
    );
    h.reject(
        h.trader(BOB),
        Command::AmendOrder {
            market: M,
            order: alices,
            price: Price(1_000),
            qty: Qty(2),
        },
        Subject::Order(alices),
        RejectCode::NotOwner,
    );
    h.reject(
        h.trader(BOB),
        Command::OpenAccount {
            account: AccountId(5),
            owner: ALICE,
        },
        Subject::Account(AccountId(5)),
        RejectCode::NotOwner,
    );
    // Operator-only commands.
    h.reject(
        h.trader(BOB),
        Command::FreezeAccount { account: A2 },
        Subject::Account(A2),
        RejectCode::NotOwner,
    );
    h.reject(
        h.trader(BOB),
        Command::HaltMarket { market: M },
        Subject::Market(M),
        RejectCode::NotOwner,
    );
    h.reject(
        h.trader(BOB),
        Command::CreateAsset(Asset {
            id: AssetId(3),
            code: "ETH".into(),
            scale: 18,
        }),
        Subject::Asset(AssetId(3)),
        RejectCode::NotOwner,
    );
}

#[test]
fn reject_everything_for_read_only() {
    let mut h = single();
    let id = h.rest(h.trader(ALICE), limit(A1, Side::Buy, 1_000, 1), USD, 1_002);
    h.reject(
        h.auditor(),
        Command::OpenAccount {
            account: AccountId(5),
            owner: AUDITOR,
        },
        Subject::Account(AccountId(5)),
        RejectCode::NotOwner,
    );
    h.reject(
        h.auditor(),
        Command::CancelOrder {
            market: M,
            order: id,
        },
        Subject::Order(id),
        RejectCode::NotOwner,
    );
    h.reject(
        h.auditor(),
        Command::ResumeMarket { market: M },
        Subject::Market(M),
        RejectCode::NotOwner,
    );
}

#[test]
fn reject_invalid_asset() {
    let mut h = single();
    for bad in [
        Asset {
            id: AssetId(3),
            code: "eth".into(),
            scale: 18,
        },
        Asset {
            id: AssetId(3),
            code: "ETH".into(),
            scale: ASSET_SCALE_MAX + 1,
        },
        Asset {
            id: AssetId(0),
            code: "ETH".into(),
            scale: 18,
        },
        Asset {
            id: AssetId(3),
            code: String::new(),
            scale: 1,
        },
    ] {
        let subject = Subject::Asset(bad.id);
        h.reject(
            h.op(),
            Command::CreateAsset(bad),
            subject,
            RejectCode::InvalidAsset,
        );
    }
}

#[test]
fn reject_invalid_market() {
    let mut h = single();
    let two = MarketSpec {
        id: MarketId(2),
        ..market_spec(ShardId(0))
    };
    for bad in [
        MarketSpec {
            quote: BTC,
            ..two.clone()
        },
        MarketSpec {
            shard: ShardId(1),
            ..two.clone()
        },
        MarketSpec {
            id: MarketId(0),
            ..two.clone()
        },
        MarketSpec {
            taker_fee_bps: FEE_BPS_MAX + 1,
            ..two.clone()
        },
    ] {
        let subject = Subject::Market(bad.id);
        h.reject(
            h.op(),
            Command::CreateMarket(bad),
            subject,
            RejectCode::InvalidMarket,
        );
    }
}

#[test]
fn reject_invalid_market_state() {
    let mut h = single();
    h.reject(
        h.op(),
        Command::ResumeMarket { market: M },
        Subject::Market(M),
        RejectCode::InvalidMarketState,
    );
    h.ok(h.op(), Command::HaltMarket { market: M });
    h.reject(
        h.op(),
        Command::HaltMarket { market: M },
        Subject::Market(M),
        RejectCode::InvalidMarketState,
    );
}

fn client_order(account: AccountId) -> Subject {
    Subject::ClientOrder {
        account,
        client_order_id: 0,
    }
}

#[test]
fn reject_invalid_time_in_force() {
    let mut h = single();
    let market_gtc = NewOrder {
        order_type: OrderType::Market,
        ..limit(A1, Side::Buy, 1_000, 1)
    };
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(market_gtc),
        client_order(A1),
        RejectCode::InvalidTimeInForce,
    );
    let post_only_ioc = NewOrder {
        post_only: true,
        tif: TimeInForce::Ioc,
        ..limit(A1, Side::Buy, 1_000, 1)
    };
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(post_only_ioc),
        client_order(A1),
        RejectCode::InvalidTimeInForce,
    );
    let post_only_market = NewOrder {
        post_only: true,
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        ..limit(A1, Side::Buy, 1_000, 1)
    };
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(post_only_market),
        client_order(A1),
        RejectCode::InvalidTimeInForce,
    );
}

#[test]
fn reject_missing_protection_price() {
    let mut h = single();
    let o = NewOrder {
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        ..limit(A1, Side::Buy, 0, 1)
    };
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(o),
        client_order(A1),
        RejectCode::MissingProtectionPrice,
    );
}

/// A market with lot 10, tick 5, quantities 20..=1_000.
fn coarse() -> H {
    single_with(|m| {
        m.lot_size = 10;
        m.tick_size = 5;
        m.min_qty = Qty(20);
        m.max_qty = Qty(1_000);
    })
}

fn reject_order(h: &mut H, o: NewOrder, code: RejectCode) {
    let subject = client_order(o.account);
    h.reject(h.trader(ALICE), Command::PlaceOrder(o), subject, code);
}

#[test]
fn reject_invalid_price() {
    let mut h = coarse();
    reject_order(
        &mut h,
        limit(A1, Side::Buy, 0, 20),
        RejectCode::InvalidPrice,
    );
    reject_order(
        &mut h,
        limit(A1, Side::Buy, 1_003, 20),
        RejectCode::InvalidPrice,
    );
    reject_order(
        &mut h,
        limit(A1, Side::Buy, (AMOUNT_MAX / 5 + 1) * 5, 20),
        RejectCode::InvalidPrice,
    );
    // A market sell's optional protection price must still be on the tick.
    let o = NewOrder {
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        ..limit(A1, Side::Sell, 7, 20)
    };
    reject_order(&mut h, o, RejectCode::InvalidPrice);
}

#[test]
fn reject_invalid_quantity() {
    let mut h = coarse();
    reject_order(
        &mut h,
        limit(A1, Side::Buy, 1_000, 0),
        RejectCode::InvalidQuantity,
    );
    reject_order(
        &mut h,
        limit(A1, Side::Buy, 1_000, 25),
        RejectCode::InvalidQuantity,
    );
}

#[test]
fn reject_quantity_too_small() {
    let mut h = coarse();
    reject_order(
        &mut h,
        limit(A1, Side::Buy, 1_000, 10),
        RejectCode::QuantityTooSmall,
    );
}

#[test]
fn reject_quantity_too_large() {
    let mut h = coarse();
    reject_order(
        &mut h,
        limit(A1, Side::Buy, 1_000, 1_010),
        RejectCode::QuantityTooLarge,
    );
}

#[test]
fn reject_invalid_amend() {
    let mut h = single();
    let id = h.rest(h.trader(ALICE), limit(A1, Side::Buy, 1_000, 5), USD, 5_010);
    let amend = |price, qty| Command::AmendOrder {
        market: M,
        order: id,
        price: Price(price),
        qty: Qty(qty),
    };
    h.reject(
        h.trader(ALICE),
        amend(1_000, 5),
        Subject::Order(id),
        RejectCode::InvalidAmend,
    );
    h.reject(
        h.trader(ALICE),
        amend(0, 5),
        Subject::Order(id),
        RejectCode::InvalidPrice,
    );
    h.reject(
        h.trader(ALICE),
        amend(1_000, 0),
        Subject::Order(id),
        RejectCode::InvalidQuantity,
    );
}

// ----- rejections at the market -------------------------------------------------------------

#[test]
fn reject_post_only_would_take() {
    let mut h = single();
    h.rest(h.trader(BOB), limit(A2, Side::Sell, 1_000, 5), BTC, 5);
    let o = NewOrder {
        post_only: true,
        ..limit(A1, Side::Buy, 1_000, 3)
    };
    // 3 * 1_000 + 6.
    h.market_reject(
        h.trader(ALICE),
        o,
        USD,
        3_006,
        RejectCode::PostOnlyWouldTake,
    );
    // Below the ask it rests.
    let o = NewOrder {
        post_only: true,
        ..limit(A1, Side::Buy, 999, 3)
    };
    h.rest(h.trader(ALICE), o, USD, 3_002);
}

#[test]
fn reject_fok_not_filled() {
    let mut h = single();
    h.rest(h.trader(BOB), limit(A2, Side::Sell, 1_000, 5), BTC, 5);
    let o = NewOrder {
        tif: TimeInForce::Fok,
        client_order_id: 8,
        ..limit(A1, Side::Buy, 1_000, 6)
    };
    // 6 * 1_000 + 12.
    h.market_reject(h.trader(ALICE), o, USD, 6_012, RejectCode::FokNotFilled);
}

#[test]
fn reject_price_outside_collar() {
    let mut h = single_with(|m| m.collar_bps = 1_000);
    // No reference price yet: anything goes.
    h.rest(h.trader(BOB), limit(A2, Side::Sell, 1_000, 1), BTC, 1);
    h.ok(
        h.trader(ALICE),
        Command::PlaceOrder(limit(A1, Side::Buy, 1_000, 1)),
    );
    assert_eq!(h.e.books()[&M].last_price(), Some(Price(1_000)));
    // Band is [900, 1_100].
    h.market_reject(
        h.trader(ALICE),
        limit(A1, Side::Buy, 1_101, 2),
        USD,
        2_206, // 2_202 + 4
        RejectCode::PriceOutsideCollar,
    );
    h.market_reject(
        h.trader(BOB),
        limit(A2, Side::Sell, 899, 2),
        BTC,
        2,
        RejectCode::PriceOutsideCollar,
    );
    h.rest(h.trader(ALICE), limit(A1, Side::Buy, 1_100, 2), USD, 2_204);
}

#[test]
fn reject_market_order_without_liquidity() {
    let mut h = single();
    let o = NewOrder {
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        ..limit(A2, Side::Sell, 0, 3)
    };
    h.market_reject(h.trader(BOB), o, BTC, 3, RejectCode::NoLiquidity);
}

// ----- idempotency ----------------------------------------------------------------------------

impl H {
    /// Sends `cmd` again: same answer flagged duplicate, no events, nothing changes.
    fn resend(&mut self, meta: Meta, cmd: Command, first: Outcome) {
        let before = self.e.clone();
        let (o, got) = self.cmd(meta, cmd);
        assert_eq!(
            o,
            Outcome {
                result: first.result,
                duplicate: true
            }
        );
        assert_eq!(got, vec![]);
        assert_unchanged(&before, &self.e, self.now, Trace::Silent, false);
    }
}

#[test]
fn duplicate_transfer_is_answered_from_memory() {
    let mut h = single();
    let cmd = Command::Transfer(xfer(80, A1, A2, USD, 500));
    let (first, out) = h.cmd(h.trader(ALICE), cmd.clone());
    assert_eq!(first, ok(Accepted::Done));
    assert_eq!(out.len(), 3);
    h.resend(h.trader(ALICE), cmd.clone(), first);
    assert_eq!(h.balance(A1, USD), (999_500, 0));
    // Different content under the same id.
    h.reject(
        h.trader(ALICE),
        Command::Transfer(xfer(80, A1, A2, USD, 501)),
        Subject::Transfer(TransferId(80)),
        RejectCode::DuplicateId,
    );
    // A deposit is content too.
    h.reject(
        h.op(),
        deposit(80, A1, USD, 500),
        Subject::Transfer(TransferId(80)),
        RejectCode::DuplicateId,
    );
    // The original still answers as before.
    h.resend(h.trader(ALICE), cmd, first);
}

#[test]
fn duplicate_deposit_is_answered_from_memory() {
    let mut h = single();
    let cmd = deposit(81, A3, BTC, 9);
    let (first, _) = h.cmd(h.op(), cmd.clone());
    assert_eq!(first, ok(Accepted::Done));
    h.resend(h.op(), cmd, first);
    assert_eq!(h.balance(A3, BTC), (9, 0));
    h.reject(
        h.op(),
        deposit(81, A3, BTC, 10),
        Subject::Transfer(TransferId(81)),
        RejectCode::DuplicateId,
    );
}

#[test]
fn duplicate_place_order_is_answered_from_memory() {
    let mut h = single();
    let o = NewOrder {
        client_order_id: 77,
        ..limit(A1, Side::Buy, 1_000, 2)
    };
    let id = h.rest(h.trader(ALICE), o.clone(), USD, 2_004);
    h.resend(
        h.trader(ALICE),
        Command::PlaceOrder(o.clone()),
        ok(Accepted::Order(id)),
    );
    assert_eq!(h.e.books()[&M].len(), 1);
    // Same client order id, other content.
    let other = NewOrder {
        price: Price(999),
        ..o.clone()
    };
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(other),
        Subject::ClientOrder {
            account: A1,
            client_order_id: 77,
        },
        RejectCode::DuplicateClientOrderId,
    );
    // Even after the order is gone.
    h.ok(
        h.trader(ALICE),
        Command::CancelOrder {
            market: M,
            order: id,
        },
    );
    h.resend(
        h.trader(ALICE),
        Command::PlaceOrder(o.clone()),
        ok(Accepted::Order(id)),
    );
    // The key is per account: Bob may use 77 too.
    let bobs = NewOrder { account: A2, ..o };
    h.rest(h.trader(BOB), bobs, USD, 2_004);
}

/// Deposit 83 (Carol, 100 USD) and Alice's order with client order id 5, both at T0.
fn remember_two_keys(h: &mut H) -> (Command, NewOrder, OrderId) {
    let dep = deposit(83, A3, USD, 100);
    h.ok(h.op(), dep.clone());
    let o = NewOrder {
        client_order_id: 5,
        ..limit(A1, Side::Buy, 1_000, 2)
    };
    let first = h.rest(h.trader(ALICE), o.clone(), USD, 2_004);
    (dep, o, first)
}

/// At `h.now` both keys of `remember_two_keys` are free again: the same deposit id with
/// other content applies, and the client order id places a new order.
fn keys_are_reusable(h: &mut H, dep: Command, o: NewOrder, first: OrderId) {
    let want = h.recs(
        OPERATOR,
        vec![
            Event::Deposited {
                id: TransferId(83),
                account: A3,
                asset: USD,
                amount: Amount(100),
            },
            bal(A3, USD, 200, 0),
        ],
    );
    let (out, got) = h.cmd(h.op(), dep.clone());
    assert_eq!((out, got), (ok(Accepted::Done), want));
    let second = h.rest(h.trader(ALICE), o, USD, 2_004);
    assert_eq!(second.0, first.0 + 1);
    // The new entries are remembered from now on.
    h.resend(h.op(), dep, ok(Accepted::Done));
}

#[test]
fn idempotency_keys_are_remembered_for_the_whole_window() {
    let mut h = single();
    let (dep, o, first) = remember_two_keys(&mut h);
    // The last instant of the window: still duplicates (and different content is refused).
    h.now = Timestamp(T0.plus_ms(IDEMPOTENCY_WINDOW_MS).0 - 1);
    h.resend(h.op(), dep, ok(Accepted::Done));
    h.resend(
        h.trader(ALICE),
        Command::PlaceOrder(o.clone()),
        ok(Accepted::Order(first)),
    );
    h.reject(
        h.op(),
        deposit(83, A3, USD, 101),
        Subject::Transfer(TransferId(83)),
        RejectCode::DuplicateId,
    );
    let other = NewOrder { qty: Qty(3), ..o };
    h.reject(
        h.trader(ALICE),
        Command::PlaceOrder(other),
        Subject::ClientOrder {
            account: A1,
            client_order_id: 5,
        },
        RejectCode::DuplicateClientOrderId,
    );
}

/// Was a bug: after a quiet period the generational table kept keys for much longer than even
/// its own documented bound ("less than twice" the window, engine/src/dedupe.rs): the first
/// input after a gap rotates only once, moving the stale current generation (here: keys
/// written three windows ago) into `previous` instead of dropping it. Expected: three
/// windows later every key is free.
#[test]
fn idempotency_keys_are_forgotten_after_a_quiet_period() {
    let mut h = single();
    let (dep, o, first) = remember_two_keys(&mut h);
    h.now = T0.plus_ms(3 * IDEMPOTENCY_WINDOW_MS);
    keys_are_reusable(&mut h, dep, o, first);
}

// ----- two shards -----------------------------------------------------------------------------

fn credit_msg(from: u32, to: u32, seq: u64, principal: Principal, body: MessageBody) -> Message {
    Message {
        from: ShardId(from),
        to: ShardId(to),
        seq,
        principal,
        body,
    }
}

/// Bob (shard 0) sends `amount` USD to `credit` (shard 1) with transfer id `id`; returns the
/// message in shard 0's outbox.
fn start_transfer(h0: &mut H, id: u64, credit: AccountId, amount: u64, seq: u64) -> Message {
    let (avail, held) = h0.balance(A2, USD);
    let want = h0.recs(
        BOB,
        vec![
            Event::TransferInitiated {
                id: TransferId(id),
                debit: A2,
                credit,
                asset: USD,
                amount: Amount(amount),
                to: ShardId(1),
            },
            bal(A2, USD, avail - amount, held + amount),
        ],
    );
    let (o, got) = h0.cmd(
        h0.trader(BOB),
        Command::Transfer(xfer(id, A2, credit, USD, amount)),
    );
    assert_eq!(o, ok(Accepted::InFlight));
    assert_eq!(got, want);
    let msg = credit_msg(
        0,
        1,
        seq,
        BOB,
        MessageBody::TransferCredit {
            id: TransferId(id),
            debit: A2,
            credit,
            asset: USD,
            amount: Amount(amount),
        },
    );
    assert_eq!(h0.outbox(1).last(), Some(&msg));
    msg
}

#[test]
fn cross_shard_transfer_is_initiated_credited_and_posted() {
    let (mut h0, mut h1) = two();
    let credit = start_transfer(&mut h0, 500, A1, 25_000, 1);
    assert_eq!(h0.outbox(1), vec![credit.clone()]);
    assert_eq!(h0.e.outbox_destinations(), vec![ShardId(1)]);
    assert_eq!(h0.e.ledger().inflight().len(), 1);
    assert_eq!(h0.balance(A2, USD), (975_000, 25_000));

    let want = h1.recs(
        BOB,
        vec![
            Event::TransferCredited {
                id: TransferId(500),
                debit: A2,
                credit: A1,
                asset: USD,
                amount: Amount(25_000),
                from: ShardId(0),
            },
            bal(A1, USD, 1_025_000, 0),
        ],
    );
    let (d, got) = h1.deliver(credit);
    assert_eq!((d, got), (Delivery::Applied, want));
    assert_eq!(h1.e.inbox_applied(ShardId(0)), 1);
    let result = credit_msg(
        1,
        0,
        1,
        BOB,
        MessageBody::TransferCreditResult {
            id: TransferId(500),
            result: Ok(()),
        },
    );
    assert_eq!(h1.outbox(0), vec![result.clone()]);

    let want = h0.recs(
        BOB,
        vec![
            transfer_posted(500, A2, A1, USD, 25_000),
            bal(A2, USD, 975_000, 0),
        ],
    );
    let (d, got) = h0.deliver(result);
    assert_eq!((d, got), (Delivery::Applied, want));
    assert!(h0.e.ledger().inflight().is_empty());

    // Both sides acknowledge; the cluster is quiet and balanced.
    assert_eq!(h0.ack(ShardId(1), 1), vec![]);
    assert_eq!(h1.ack(ShardId(0), 1), vec![]);
    assert!(h0.e.outbox_destinations().is_empty());
    assert!(h1.e.outbox_destinations().is_empty());
    validate_quiescent(&[h0.e.clone(), h1.e.clone()]).unwrap();
}

#[test]
fn cross_shard_transfer_is_refunded_when_the_credit_account_is_frozen() {
    let (mut h0, mut h1) = two();
    h1.ok(h1.op(), Command::FreezeAccount { account: A1 });
    let credit = start_transfer(&mut h0, 501, A1, 25_000, 1);

    let before = h1.e.clone();
    let want = h1.recs(
        BOB,
        vec![rejected(
            Subject::Transfer(TransferId(501)),
            RejectCode::AccountFrozen,
        )],
    );
    let (d, got) = h1.deliver(credit);
    assert_eq!((d, got), (Delivery::Applied, want));
    assert_eq!(ledger_parts(&h1.e), ledger_parts(&before));
    let result = credit_msg(
        1,
        0,
        1,
        BOB,
        MessageBody::TransferCreditResult {
            id: TransferId(501),
            result: Err(RejectCode::AccountFrozen),
        },
    );
    assert_eq!(h1.outbox(0), vec![result.clone()]);

    let want = h0.recs(
        BOB,
        vec![
            Event::TransferRefunded {
                id: TransferId(501),
                code: RejectCode::AccountFrozen,
            },
            bal(A2, USD, 1_000_000, 0),
        ],
    );
    let (d, got) = h0.deliver(result);
    assert_eq!((d, got), (Delivery::Applied, want));
    assert!(h0.e.ledger().inflight().is_empty());
    h0.ack(ShardId(1), 1);
    h1.ack(ShardId(0), 1);
    validate_quiescent(&[h0.e.clone(), h1.e.clone()]).unwrap();
}

#[test]
fn duplicate_message_is_ignored() {
    let (mut h0, mut h1) = two();
    let credit = start_transfer(&mut h0, 502, A1, 1_000, 1);
    let (d, _) = h1.deliver(credit.clone());
    assert_eq!(d, Delivery::Applied);
    let before = h1.e.clone();
    let (d, got) = h1.deliver(credit);
    assert_eq!((d, got), (Delivery::Duplicate, vec![]));
    assert_unchanged(&before, &h1.e, h1.now, Trace::Silent, false);
    assert_eq!(h1.balance(A1, USD), (1_001_000, 0));
}

#[test]
fn message_ahead_of_its_channel_reports_a_gap() {
    let (mut h0, mut h1) = two();
    let first = start_transfer(&mut h0, 503, A1, 1_000, 1);
    let second = start_transfer(&mut h0, 504, A3, 2_000, 2);
    assert_eq!(h0.outbox(1), vec![first.clone(), second.clone()]);

    let before = h1.e.clone();
    let (d, got) = h1.deliver(second.clone());
    assert_eq!((d, got), (Delivery::Gap { expected: 1 }, vec![]));
    assert_unchanged(&before, &h1.e, h1.now, Trace::Silent, false);

    let (d, _) = h1.deliver(first);
    assert_eq!(d, Delivery::Applied);
    let want = h1.recs(
        BOB,
        vec![
            Event::TransferCredited {
                id: TransferId(504),
                debit: A2,
                credit: A3,
                asset: USD,
                amount: Amount(2_000),
                from: ShardId(0),
            },
            bal(A3, USD, 2_000, 0),
        ],
    );
    let (d, got) = h1.deliver(second);
    assert_eq!((d, got), (Delivery::Applied, want));
    assert_eq!(h1.e.inbox_applied(ShardId(0)), 2);
    assert_eq!(
        h1.outbox(0).iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn misrouted_message_is_ignored() {
    let (mut h0, mut h1) = two();
    let credit = start_transfer(&mut h0, 505, A1, 1_000, 1);
    // Delivered back to its own sender.
    let before = h0.e.clone();
    let (d, got) = h0.deliver(credit.clone());
    assert_eq!((d, got), (Delivery::Misrouted, vec![]));
    assert_unchanged(&before, &h0.e, h0.now, Trace::Silent, false);
    // Addressed to shard 0 but handed to shard 1.
    let wrong = Message {
        to: ShardId(0),
        ..credit.clone()
    };
    let before = h1.e.clone();
    let (d, got) = h1.deliver(wrong);
    assert_eq!((d, got), (Delivery::Misrouted, vec![]));
    assert_unchanged(&before, &h1.e, h1.now, Trace::Silent, false);
    // Claiming to come from the receiving shard itself (local messages never travel).
    let from_self = Message {
        from: ShardId(1),
        ..credit.clone()
    };
    let before = h1.e.clone();
    let (d, got) = h1.deliver(from_self);
    assert_eq!((d, got), (Delivery::Misrouted, vec![]));
    assert_unchanged(&before, &h1.e, h1.now, Trace::Silent, false);
    // The right one still applies as the first of its channel.
    assert_eq!(h1.deliver(credit).0, Delivery::Applied);
}

#[test]
fn ack_trims_the_outbox() {
    let (mut h0, _) = two();
    let first = start_transfer(&mut h0, 506, A1, 1_000, 1);
    let second = start_transfer(&mut h0, 507, A1, 1_000, 2);
    let third = start_transfer(&mut h0, 508, A1, 1_000, 3);
    assert_eq!(h0.outbox(1), vec![first, second.clone(), third.clone()]);
    assert_eq!(h0.ack(ShardId(1), 2), vec![]);
    assert_eq!(h0.outbox(1), vec![third.clone()]);
    // Acks are cumulative and may repeat.
    assert_eq!(h0.ack(ShardId(1), 1), vec![]);
    assert_eq!(h0.outbox(1), vec![third]);
    assert_eq!(h0.ack(ShardId(1), 3), vec![]);
    assert_eq!(h0.outbox(1), vec![]);
    assert!(h0.e.outbox_destinations().is_empty());
    // Numbering goes on after the trim.
    let fourth = start_transfer(&mut h0, 509, A1, 1_000, 4);
    assert_eq!(h0.outbox(1), vec![fourth]);
}

#[test]
fn reject_wrong_shard() {
    let (mut h0, _) = two();
    // Account 1 lives on shard 1.
    h0.reject(
        h0.op(),
        deposit(60, A1, USD, 1),
        Subject::Transfer(TransferId(60)),
        RejectCode::WrongShard,
    );
    h0.reject(
        h0.op(),
        Command::OpenAccount {
            account: A3,
            owner: CAROL,
        },
        Subject::Account(A3),
        RejectCode::WrongShard,
    );
    h0.reject(
        h0.trader(ALICE),
        Command::PlaceOrder(limit(A1, Side::Buy, 1_000, 1)),
        client_order(A1),
        RejectCode::WrongShard,
    );
    // The market lives on shard 1.
    h0.reject(
        h0.op(),
        Command::CancelOrder {
            market: M,
            order: oid(1, 1),
        },
        Subject::Order(oid(1, 1)),
        RejectCode::WrongShard,
    );
    h0.reject(
        h0.op(),
        Command::HaltMarket { market: M },
        Subject::Market(M),
        RejectCode::WrongShard,
    );
}

#[test]
fn reject_linked_cross_shard() {
    let (mut h0, _) = two();
    h0.reject_at(
        h0.op(),
        Command::LinkedTransfers(vec![xfer(90, A2, A4, USD, 1), xfer(91, A2, A1, USD, 1)]),
        Subject::Transfer(TransferId(90)),
        RejectCode::LinkedCrossShard,
        1,
    );
}

/// On the market's shard: Bob's buy of 10 at 1_000 (`o`, order `taker`) fills Alice's
/// resting sell `maker`; Alice and the fee account settle there.
fn bobs_buy_meets_alices_sell(taker: OrderId, maker: OrderId, o: &NewOrder) -> Vec<Event> {
    vec![
        accepted(taker, o),
        trade(1_000, 10, Side::Buy, taker, maker, A2, A1, 20, 10),
        filled(maker),
        filled(taker),
        settled(maker, A1, BTC, 10, USD, 9_990, 10),
        bal(A1, BTC, 990, 0),
        bal(A1, USD, 1_009_990, 0),
        fee_account_opened(),
        fee_collected(30),
        bal(FEE, USD, 30, 0),
    ]
}

/// On Bob's shard: his side of [`bobs_buy_meets_alices_sell`].
fn bobs_buy_settled(taker: OrderId) -> Vec<Event> {
    vec![
        settled(taker, A2, USD, 10_020, BTC, 10, 20),
        bal(A2, USD, 989_980, 0),
        bal(A2, BTC, 1_010, 0),
    ]
}

#[test]
fn cross_shard_order_settles_on_both_shards() {
    let (mut h0, mut h1) = two();
    // Alice (shard 1) rests a sell on the market's own shard.
    let maker = h1.rest(h1.trader(ALICE), limit(A1, Side::Sell, 1_000, 10), BTC, 10);
    assert_eq!(maker, oid(1, 1));

    // Bob (shard 0) buys: shard 0 holds and sends the ticket.
    let taker = oid(0, 1);
    let o = limit(A2, Side::Buy, 1_000, 10);
    let want = h0.recs(
        BOB,
        vec![
            funds_held(taker, A2, USD, 10_020),
            bal(A2, USD, 989_980, 10_020),
            submitted(taker, &o, None),
        ],
    );
    let (out, got) = h0.cmd(h0.trader(BOB), Command::PlaceOrder(o.clone()));
    assert_eq!((out, got), (ok(Accepted::Order(taker)), want));
    let ticket = credit_msg(
        0,
        1,
        1,
        BOB,
        MessageBody::OrderHeld(OrderTicket {
            order: taker,
            account: A2,
            owner: BOB,
            market: M,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(1_000),
            qty: Qty(10),
            post_only: false,
            stp: SelfTradePrevention::CancelResting,
            hold: Amount(10_020),
            client_order_id: 0,
        }),
    );
    assert_eq!(h0.outbox(1), vec![ticket.clone()]);

    // Shard 1 matches; Alice and the fee account settle there, Bob's legs go back.
    let want = h1.recs(BOB, bobs_buy_meets_alices_sell(taker, maker, &o));
    let (d, got) = h1.deliver(ticket);
    assert_eq!((d, got), (Delivery::Applied, want));
    let settle = credit_msg(
        1,
        0,
        1,
        BOB,
        MessageBody::Settle {
            order: taker,
            account: A2,
            paid_asset: USD,
            paid: Amount(10_020),
            received_asset: BTC,
            received: Amount(10),
            fee: Amount(20),
        },
    );
    let release = credit_msg(
        1,
        0,
        2,
        BOB,
        MessageBody::Release {
            order: taker,
            account: A2,
            asset: USD,
            amount: Amount(0),
            done: true,
        },
    );
    assert_eq!(h1.outbox(0), vec![settle.clone(), release.clone()]);

    let want = h0.recs(BOB, bobs_buy_settled(taker));
    let (d, got) = h0.deliver(settle);
    assert_eq!((d, got), (Delivery::Applied, want));
    let (d, got) = h0.deliver(release);
    assert_eq!((d, got), (Delivery::Applied, vec![]));
    assert_eq!(h0.e.ledger().order_holds_sorted(), vec![]);
    assert_eq!(h0.e.ledger().account(A2).unwrap().open_orders, 0);

    h0.ack(ShardId(1), 1);
    h1.ack(ShardId(0), 2);
    validate_quiescent(&[h0.e.clone(), h1.e.clone()]).unwrap();
}

// ----- splits ----------------------------------------------------------------------------------

/// Shard 0 splits while Bob's order ticket and his transfer to Alice are on their way to
/// shard 1: Bob's account (2 = 2 mod 4) moves to the new shard 2 with its holds and its
/// in-flight transfer; Dave's (4) stays. Shard 1 knows nothing of the split, so it answers
/// shard 0, which forwards each answer to shard 2 in the order it came; shard 2 applies
/// them as if shard 1 had sent them there.
#[test]
fn a_split_moves_accounts_and_forwards_what_was_in_flight() {
    let (mut h0, mut h1) = two();
    let taker = oid(0, 1);
    let o = limit(A2, Side::Buy, 1_000, 10);
    let (out, _) = h0.cmd(h0.trader(BOB), Command::PlaceOrder(o.clone()));
    assert_eq!(out, ok(Accepted::Order(taker)));
    let ticket = h0.outbox(1).pop().expect("ticket");
    let credit = start_transfer(&mut h0, 500, A1, 25_000, 2);
    let maker = h1.rest(h1.trader(ALICE), limit(A1, Side::Sell, 1_000, 10), BTC, 10);
    let (bob_usd, bob_btc) = (h0.balance(A2, USD), h0.balance(A2, BTC));
    assert_eq!(bob_usd, (1_000_000 - 10_020 - 25_000, 10_020 + 25_000));
    let before = h0.e.clone();

    let split = Split {
        parent: ShardId(0),
        child: ShardId(2),
        modulus: 4,
        residue: 2,
        markets: vec![],
    };
    // Refusals change nothing but the input count and the clock.
    for (bad, why) in [
        (
            Split {
                parent: ShardId(1),
                ..split.clone()
            },
            SplitError::WrongParent(ShardId(1)),
        ),
        (
            Split {
                child: ShardId(1),
                ..split.clone()
            },
            SplitError::ChildExists(ShardId(1)),
        ),
        (
            Split {
                modulus: 1,
                residue: 0,
                ..split.clone()
            },
            SplitError::Rule {
                modulus: 1,
                residue: 0,
            },
        ),
        (
            Split {
                residue: 4,
                ..split.clone()
            },
            SplitError::Rule {
                modulus: 4,
                residue: 4,
            },
        ),
    ] {
        let mut e = before.clone();
        let (a, out) = {
            let mut out = vec![];
            (
                e.apply(
                    &Input::Split {
                        timestamp: h0.now,
                        split: bad.clone(),
                    },
                    &mut out,
                ),
                out,
            )
        };
        assert_eq!((a, out), (Applied::Split(Err(why)), vec![]));
        let mut expected = before.clone();
        expected.tick(h0.now, &mut vec![]);
        assert_eq!(e.state_hash(), expected.state_hash(), "{bad:?}");
    }

    let mut out = vec![];
    let want = h0.recs(
        Principal::SYSTEM,
        vec![Event::ShardSplit {
            child: ShardId(2),
            modulus: 4,
            residue: 2,
            accounts: 1,
        }],
    );
    let child = h0.e.split(h0.now, split.clone(), &mut out).expect("split");
    assert_eq!(out, want);
    h0.input += 1;
    h0.seq += 1;
    let mut h2 = H {
        e: child,
        seq: 1,
        input: 0,
        now: h0.now,
        next_order: 1,
    };
    // The accounts, their holds and the in-flight transfer moved; the flows account for it.
    let ids = |e: &Engine| {
        e.ledger()
            .accounts()
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>()
    };
    assert_eq!((ids(&h0.e), ids(&h2.e)), (vec![A4], vec![A2]));
    assert_eq!(
        (h2.balance(A2, USD), h2.balance(A2, BTC)),
        (bob_usd, bob_btc)
    );
    assert_eq!(
        ledger_parts(&h2.e).order_holds,
        ledger_parts(&before).order_holds
    );
    assert_eq!(ledger_parts(&h2.e).inflight, ledger_parts(&before).inflight);
    assert_eq!(ledger_parts(&h0.e).order_holds, vec![]);
    assert_eq!(h0.e.ledger().inflight().len(), 0);
    assert_eq!(h0.e.relayed_answers_awaited(), 1);
    let usd_total = |e: &Engine| e.ledger().totals()[&USD];
    assert_eq!(usd_total(&h0.e).sent, 1_000_000);
    assert_eq!(usd_total(&h2.e).received, 1_000_000);
    assert_eq!(h2.e.placement().account_shard(A2), ShardId(2));
    assert_eq!(h2.e.markets(), h0.e.markets());
    assert_eq!(h2.e.clock(), h0.e.clock());
    // Each shard's supply share halves: together no more than the parent had.
    let share = |e: &Engine| e.placement().supply_max(e.shard());
    assert_eq!(
        share(&h0.e) + share(&h2.e),
        before.placement().supply_max(ShardId(0))
    );

    // The same split as an input of the parent's log gives the same parent.
    let mut replayed = before.clone();
    let a = replayed.apply(
        &Input::Split {
            timestamp: h0.now,
            split,
        },
        &mut vec![],
    );
    assert_eq!(a, Applied::Split(Ok(1)));
    assert_eq!(replayed.state_hash(), h0.e.state_hash());
    // Snapshots carry the split and the relay.
    for e in [&h0.e, &h2.e] {
        let restored = Engine::restore(&e.snapshot()).expect("restore");
        assert_eq!(restored.state_hash(), e.state_hash());
    }

    // A market is created on a base shard only, so shards that have not seen the split
    // (shard 1 here) agree on the catalog with those that have.
    let mut on_child = market_spec(ShardId(2));
    on_child.id = MarketId(2);
    for e in [&mut h0.e, &mut h2.e, &mut h1.e] {
        let before = e.clone();
        let mut out = vec![];
        let meta = Meta {
            timestamp: h0.now,
            principal: OPERATOR,
            authority: Authority::Operator,
        };
        let o = e.execute(meta, &Command::CreateMarket(on_child.clone()), &mut out);
        assert_eq!(
            o,
            Outcome::rejected(RejectCode::InvalidMarket),
            "shard {}",
            e.shard()
        );
        assert_eq!(e.markets(), before.markets());
        *e = before;
    }

    // Commands for Bob's account now belong to shard 2.
    let w = Command::Withdraw {
        id: TransferId(77),
        account: A2,
        asset: USD,
        amount: Amount(1),
    };
    let (o2, _) = h0.cmd(h0.op(), w.clone());
    assert_eq!(
        o2.result,
        Err(Rejection {
            code: RejectCode::WrongShard,
            index: 0
        })
    );

    // Until its answer is relayed, the moved transfer's id stays in use here, even once
    // the idempotency table has forgotten it.
    h0.now = Timestamp(h0.now.0 + 2 * IDEMPOTENCY_WINDOW_MS * 1_000_000 + 1);
    let reuse = Command::Transfer(xfer(500, A4, A1, USD, 1));
    let (o4, out) = h0.cmd(h0.trader(DAVE), reuse.clone());
    assert_eq!(o4, Outcome::rejected(RejectCode::DuplicateId));
    assert_eq!(
        out.into_iter().map(|r| r.event).collect::<Vec<_>>(),
        vec![rejected(
            Subject::Transfer(TransferId(500)),
            RejectCode::DuplicateId
        )]
    );

    // Shard 1 matches the ticket and credits Alice, answering shard 0 as before.
    h1.deliver(ticket);
    h1.deliver(credit);
    let answers = h1.outbox(0);
    assert_eq!(answers.len(), 3, "{answers:?}");
    for m in &answers {
        let (d, got) = h0.deliver(m.clone());
        assert_eq!((d, got), (Delivery::Applied, vec![]), "{m:?}");
    }
    let forwarded: Vec<Message> = answers
        .iter()
        .enumerate()
        .map(|(n, m)| {
            credit_msg(
                0,
                2,
                n as u64 + 1,
                m.principal,
                MessageBody::Forwarded {
                    origin: ShardId(1),
                    body: Box::new(m.body.clone()),
                },
            )
        })
        .collect();
    assert_eq!(h0.outbox(2), forwarded);
    assert_eq!(h0.e.relayed_answers_awaited(), 0);

    // Shard 2 settles the fill, closes the order and posts the transfer.
    let mut got = vec![];
    for m in forwarded {
        let (d, out) = h2.deliver(m);
        assert_eq!(d, Delivery::Applied);
        got.extend(out.into_iter().map(|r| r.event));
    }
    assert_eq!(
        got,
        vec![
            settled(taker, A2, USD, 10_020, BTC, 10, 20),
            bal(A2, USD, 1_000_000 - 10_020 - 25_000, 25_000),
            bal(A2, BTC, 1_010, 0),
            transfer_posted(500, A2, A1, USD, 25_000),
            bal(A2, USD, 1_000_000 - 10_020 - 25_000, 0),
        ]
    );
    let _ = maker;
    assert_eq!(h2.e.ledger().order_holds_sorted(), vec![]);
    let (o2, _) = h2.cmd(h2.op(), w);
    assert!(o2.result.is_ok(), "{o2:?}");

    h0.ack(ShardId(1), 2);
    h0.ack(ShardId(2), 3);
    h1.ack(ShardId(0), 3);
    validate_quiescent(&[h0.e.clone(), h1.e.clone(), h2.e.clone()]).unwrap();
}

/// A split that takes the market: Alice's resting order goes with the book to shard 1
/// (and Alice with it: odd ids move); Bob stays. His new order is held on shard 0 and sent
/// to the book's new shard; cancels there are refused on shard 0.
#[test]
fn a_split_moves_a_market_with_its_book() {
    let mut h = single();
    let maker = h.rest(h.trader(ALICE), limit(A1, Side::Sell, 1_000, 10), BTC, 10);
    let split = Split {
        parent: ShardId(0),
        child: ShardId(1),
        modulus: 2,
        residue: 1,
        markets: vec![M],
    };
    let mut out = vec![];
    let mut e = h.e.clone();
    let missing = Split {
        markets: vec![M, MarketId(9)],
        ..split.clone()
    };
    assert_eq!(
        e.split(h.now, missing, &mut out).err(),
        Some(SplitError::MarketNotHere(MarketId(9)))
    );
    let child = h.e.split(h.now, split.clone(), &mut out).expect("split");
    // The same split again (its market gone with it) is answered as made already.
    assert_eq!(
        h.e.clone().split(h.now, split, &mut vec![]).err(),
        Some(SplitError::ChildExists(ShardId(1)))
    );
    h.input += 1;
    h.seq += 1;
    let mut h1 = H {
        e: child,
        seq: 1,
        input: 0,
        now: h.now,
        next_order: 1,
    };
    assert!(h.e.books().is_empty());
    assert_eq!(h1.e.books().keys().collect::<Vec<_>>(), [&M]);
    assert_eq!(book_parts(&h1.e)[0].orders.len(), 1);
    assert_eq!(h1.e.placement().market_shard(M, ShardId(0)), ShardId(1));

    // The book's commands belong to shard 1 now.
    let cancel = Command::CancelOrder {
        market: M,
        order: maker,
    };
    let (o, _) = h.cmd(h.op(), cancel);
    assert_eq!(o, Outcome::rejected(RejectCode::WrongShard));

    // Bob buys on shard 0: held there, matched on shard 1.
    let taker = oid(0, 2);
    let o = limit(A2, Side::Buy, 1_000, 10);
    let (out, _) = h.cmd(h.trader(BOB), Command::PlaceOrder(o.clone()));
    assert_eq!(out, ok(Accepted::Order(taker)));
    let ticket = h.outbox(1);
    assert_eq!(ticket.len(), 1);
    assert!(matches!(ticket[0].body, MessageBody::OrderHeld(_)));
    let want = h1.recs(BOB, bobs_buy_meets_alices_sell(taker, maker, &o));
    let (d, got) = h1.deliver(ticket[0].clone());
    assert_eq!((d, got), (Delivery::Applied, want));
    let back = h1.outbox(0);
    let want = h.recs(BOB, bobs_buy_settled(taker));
    let (d, got) = h.deliver(back[0].clone());
    assert_eq!((d, got), (Delivery::Applied, want));
    let (d, got) = h.deliver(back[1].clone());
    assert_eq!((d, got), (Delivery::Applied, vec![]));
    h.ack(ShardId(1), 1);
    h1.ack(ShardId(0), 2);
    validate_quiescent(&[h.e.clone(), h1.e.clone()]).unwrap();
}

// ----- regressions (each was a bug) -----------------------------------------------------------

/// Was a bug: a command refused for lack of authority was recorded in the idempotency table
/// (`Engine::execute_in` calls `remember` for every outcome of a keyed command, including
/// the `NotOwner` that `Engine::command` returns for `Authority::ReadOnly`). A read-only
/// principal must change nothing, yet here it changes the state hash and takes transfer
/// id 95 for the whole idempotency window: when the account's owner then sends the very
/// same transfer, it gets the auditor's `NotOwner` back as a "duplicate" and nothing moves.
/// (A trader refused with `NotOwner` on someone else's account squats the id the same way.)
#[test]
fn read_only_rejection_leaves_the_transfer_id_free() {
    let mut h = single();
    let cmd = Command::Transfer(xfer(95, A1, A3, USD, 100));
    let before = h.e.clone();
    let want = h.recs(
        AUDITOR,
        vec![rejected(
            Subject::Transfer(TransferId(95)),
            RejectCode::NotOwner,
        )],
    );
    let (o, got) = h.cmd(h.auditor(), cmd.clone());
    assert_eq!((o, got), (Outcome::rejected(RejectCode::NotOwner), want));
    let after_read_only = h.e.clone();

    // The owner's own transfer with that id is applied.
    let want = h.recs(
        ALICE,
        vec![
            transfer_posted(95, A1, A3, USD, 100),
            bal(A1, USD, 999_900, 0),
            bal(A3, USD, 100, 0),
        ],
    );
    let (o, got) = h.cmd(h.trader(ALICE), cmd);
    assert_eq!((o, got), (ok(Accepted::Done), want));

    // And the read-only command left no trace in the state (checked last so that the
    // failure shows the visible symptom first).
    assert_unchanged(&before, &after_read_only, T0, Trace::OneRejection, false);
}

/// Was a bug: post and void of a pending transfer shared one idempotency key (the pending id:
/// `dedupe_key` in lib.rs, namespace `NS_PENDING_RESOLVE`), and rejected attempts are
/// remembered too (`Engine::execute_in`). So
/// once a post is refused (here: the credit account is frozen) the debit owner can neither
/// void the transfer (`DuplicateId`) nor retry the post after the credit account is
/// unfrozen (the stale `AccountFrozen` comes back as a duplicate): the funds stay held until
/// the timeout. Expected: a refused post leaves the pending transfer resolvable.
#[test]
fn refused_post_leaves_the_pending_transfer_resolvable() {
    let mut h = single();
    create_pending(&mut h, 50, 100, 60_000);
    h.ok(h.op(), Command::FreezeAccount { account: A3 });
    let (o, _) = h.cmd(
        h.trader(ALICE),
        Command::PostPending {
            debit: A1,
            id: TransferId(50),
            amount: None,
        },
    );
    assert_eq!(o, Outcome::rejected(RejectCode::AccountFrozen));

    let want = h.recs(
        ALICE,
        vec![
            Event::PendingVoided {
                id: TransferId(50),
                amount: Amount(100),
                expired: false,
            },
            bal(A1, USD, 1_000_000, 0),
        ],
    );
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::VoidPending {
            debit: A1,
            id: TransferId(50),
        },
    );
    assert_eq!((o, got), (ok(Accepted::Done), want));
}

/// Keys live less than two windows: two windows after they were written they are free.
#[test]
fn idempotency_keys_are_forgotten_within_two_windows() {
    let mut h = single();
    let (dep, o, first) = remember_two_keys(&mut h);
    // One window later (an input rotates the generations) they are still remembered.
    h.now = T0.plus_ms(IDEMPOTENCY_WINDOW_MS);
    h.resend(h.op(), dep.clone(), ok(Accepted::Done));
    h.now = T0.plus_ms(2 * IDEMPOTENCY_WINDOW_MS);
    keys_are_reusable(&mut h, dep, o, first);
}

/// A rejected command changed nothing, so it is not remembered: its retry is evaluated
/// again (and succeeds once the reason is gone).
#[test]
fn rejected_commands_are_not_remembered() {
    let mut h = single();
    let cmd = Command::Transfer(xfer(82, A3, A1, USD, 5));
    for _ in 0..2 {
        h.reject(
            h.trader(CAROL),
            cmd.clone(),
            Subject::Transfer(TransferId(82)),
            RejectCode::InsufficientFunds,
        );
    }
    h.ok(h.op(), deposit(84, A3, USD, 5));
    let want = h.recs(
        CAROL,
        vec![
            transfer_posted(82, A3, A1, USD, 5),
            bal(A3, USD, 0, 0),
            bal(A1, USD, 1_000_005, 0),
        ],
    );
    let (o, got) = h.cmd(h.trader(CAROL), cmd.clone());
    assert_eq!((o, got), (ok(Accepted::Done), want));
    h.resend(h.trader(CAROL), cmd, ok(Accepted::Done));
}

/// Post and void are idempotent through state: a second post, or a void after a post, is
/// rejected with `PendingNotOpen` and moves nothing.
#[test]
fn resolving_a_pending_transfer_twice_is_rejected() {
    let mut h = single();
    create_pending(&mut h, 50, 100, 1_000);
    let post = Command::PostPending {
        debit: A1,
        id: TransferId(50),
        amount: Some(Amount(40)),
    };
    h.ok(h.trader(ALICE), post.clone());
    let before = (h.balance(A1, USD), h.balance(A3, USD));
    h.reject(
        h.trader(ALICE),
        post,
        Subject::Transfer(TransferId(50)),
        RejectCode::PendingNotOpen,
    );
    h.reject(
        h.trader(ALICE),
        Command::VoidPending {
            debit: A1,
            id: TransferId(50),
        },
        Subject::Transfer(TransferId(50)),
        RejectCode::PendingNotOpen,
    );
    assert_eq!((h.balance(A1, USD), h.balance(A3, USD)), before);
}

/// A replacement keeps the order's client order id, self-trade prevention and post-only
/// flag; post-only still applies to the new price.
#[test]
fn amend_replace_keeps_client_order_id_stp_and_post_only() {
    let mut h = single();
    let original = NewOrder {
        client_order_id: 77,
        stp: SelfTradePrevention::CancelBoth,
        post_only: true,
        ..limit(A1, Side::Buy, 1_000, 10)
    };
    let old = h.rest(h.trader(ALICE), original.clone(), USD, 10_020);
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::AmendOrder {
            market: M,
            order: old,
            price: Price(990),
            qty: Qty(10),
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    let new = oid(0, 2);
    let submitted: Vec<_> = got
        .iter()
        .filter_map(|r| match &r.event {
            Event::OrderSubmitted {
                order,
                client_order_id,
                replaces,
                ..
            } => Some((*order, *client_order_id, *replaces)),
            _ => None,
        })
        .collect();
    assert_eq!(submitted, vec![(new, 77, Some(old))]);
    let bids = h.e.books()[&M].orders(Side::Buy);
    assert_eq!(
        bids.iter()
            .map(|o| (o.id, o.stp, o.post_only))
            .collect::<Vec<_>>(),
        vec![(new, SelfTradePrevention::CancelBoth, true)]
    );
    assert_eq!(h.e.ledger().order_hold(new).unwrap().client_order_id, 77);

    // Bob offers at 1_000; moving the post-only bid onto his ask is refused at the
    // market, and the replacement's funds come back.
    h.rest(h.trader(BOB), limit(A2, Side::Sell, 1_000, 5), BTC, 5);
    let (o, got) = h.cmd(
        h.trader(ALICE),
        Command::AmendOrder {
            market: M,
            order: new,
            price: Price(1_000),
            qty: Qty(10),
        },
    );
    assert_eq!(o, ok(Accepted::Done));
    assert!(got.iter().any(|r| matches!(
        r.event,
        Event::OrderRejected {
            code: RejectCode::PostOnlyWouldTake,
            ..
        }
    )));
    assert_eq!(h.balance(A1, USD), (1_000_000, 0));
    assert!(h.e.books()[&M].orders(Side::Buy).is_empty());
}

/// Net deposits per shard are capped at `u64::MAX / shard_count`, so an asset's supply
/// over the whole cluster fits in a `u64` and no balance, settlement or fee credit can
/// overflow, whatever clients do.
#[test]
fn deposits_are_capped_so_that_supply_fits_in_u64() {
    let mut e = Engine::new(ShardId(1), Placement::new(4));
    let mut out = vec![];
    let op = Meta {
        timestamp: T0,
        principal: OPERATOR,
        authority: Authority::Operator,
    };
    let usd = Asset {
        id: USD,
        code: "USD".into(),
        scale: 2,
    };
    assert!(e
        .execute(op, &Command::CreateAsset(usd), &mut out)
        .result
        .is_ok());
    for a in [1u64, 5] {
        let open = Command::OpenAccount {
            account: AccountId(a),
            owner: Principal(a),
        };
        assert!(e.execute(op, &open, &mut out).result.is_ok());
    }
    let cap = u64::MAX / 4;
    assert_eq!(e.placement().supply_max(e.shard()), cap);
    let dep = |id: u64, account: u64, amount: u64| Command::Deposit {
        id: TransferId(id),
        account: AccountId(account),
        asset: USD,
        amount: Amount(amount),
    };
    // Half the cap to each of two accounts fits (cap is odd: one unit is left)...
    let half = cap / 2;
    for (id, acc) in [(1, 1), (2, 5)] {
        let o = e.execute(op, &dep(id, acc, half), &mut out);
        assert!(o.result.is_ok(), "{o:?}");
    }
    let left = cap - 2 * half;
    assert_eq!(left, 1);
    // ...one unit more than what is left does not, whichever account it goes to.
    let o = e.execute(op, &dep(4, 5, left + 1), &mut out);
    assert_eq!(o.code(), Some(RejectCode::LimitExceeded));
    let o = e.execute(op, &dep(5, 5, left), &mut out);
    assert!(o.result.is_ok(), "{o:?}");
    assert_eq!(
        e.execute(op, &dep(3, 1, 1), &mut out).code(),
        Some(RejectCode::LimitExceeded)
    );
    // Withdrawals make room again.
    let w = Command::Withdraw {
        id: TransferId(6),
        account: AccountId(5),
        asset: USD,
        amount: Amount(10),
    };
    assert!(e.execute(op, &w, &mut out).result.is_ok());
    assert!(e.execute(op, &dep(7, 1, 10), &mut out).result.is_ok());
    assert_eq!(
        e.execute(op, &dep(8, 1, 1), &mut out).code(),
        Some(RejectCode::LimitExceeded)
    );
    e.validate().unwrap();
    // The cap survives a snapshot.
    let mut r = Engine::restore(&e.snapshot()).unwrap();
    assert_eq!(
        r.execute(op, &dep(9, 1, 1), &mut out).code(),
        Some(RejectCode::LimitExceeded)
    );
}

/// Reserving idempotency capacity changes neither behaviour nor the state hash.
#[test]
fn reserving_idempotency_capacity_changes_nothing() {
    let mut a = single();
    let mut b = single();
    b.e.reserve_idempotency_keys(10_000);
    assert_eq!(a.e.state_hash(), b.e.state_hash());
    for h in [&mut a, &mut b] {
        h.ok(h.op(), deposit(81, A3, BTC, 9));
        h.resend(h.op(), deposit(81, A3, BTC, 9), ok(Accepted::Done));
    }
    assert_eq!(a.e.state_hash(), b.e.state_hash());
    assert_eq!(a.e.snapshot(), b.e.snapshot());
}

#[test]
fn order_for_a_market_the_receiver_has_not_created_yet_is_deferred_then_applied() {
    let (mut h0, mut h1) = two();
    // Shard 0 learned of market 2 (on shard 1) before shard 1 did: catalog commands reach
    // every shard on their own.
    let mut spec = market_spec(ShardId(1));
    spec.id = MarketId(2);
    h0.ok(h0.op(), Command::CreateMarket(spec.clone()));
    let mut o = limit(A2, Side::Buy, 100, 5);
    o.market = MarketId(2);
    h0.ok(h0.op(), Command::PlaceOrder(o));
    let held = outboxes(&h0.e).concat();
    assert_eq!(held.len(), 1, "{held:?}");
    let before = (
        ledger_parts(&h1.e),
        book_parts(&h1.e),
        h1.e.inbox_applied(ShardId(0)),
    );
    // Not applied, nothing changed, the channel did not move: the sender delivers it again.
    assert_eq!(h1.deliver(held[0].clone()), (Delivery::Deferred, vec![]));
    let after = (
        ledger_parts(&h1.e),
        book_parts(&h1.e),
        h1.e.inbox_applied(ShardId(0)),
    );
    assert_eq!(before, after);
    h1.e.validate().unwrap();
    h1.ok(h1.op(), Command::CreateMarket(spec));
    let (d, got) = h1.deliver(held[0].clone());
    assert_eq!(d, Delivery::Applied);
    assert!(
        got.iter().any(
            |e| matches!(e.event, Event::OrderAccepted { market, .. } if market == MarketId(2))
        ),
        "{got:?}"
    );
    assert_eq!(h1.e.inbox_applied(ShardId(0)), 1);
    h1.e.validate().unwrap();
}
