//! Tests of the order book.
//!
//! 1. Whole-output unit tests: every scenario builds the exact expected [`MatchOutput`], with
//!    each fill's amounts computed by hand (see the comments), and compares it whole.
//! 2. A deliberately naive reference matcher (a `Vec` of resting orders, linear scans, FOK by
//!    simulation on a clone) compared with the book after every operation of random streams.
//! 3. Snapshots (`to_parts` / `from_parts`) and the per-order fill limit.
//!
//! Unless a test says otherwise the market is: lot 100, tick 5, maker fee 10 bps, taker fee
//! 20 bps, no collar. A buy holds `lots * price + floor(lots * price * 20 / 10_000)` quote, a
//! sell holds its quantity in base.

use super::*;
use proptest::prelude::*;

const BASE: AssetId = AssetId(1);
const QUOTE: AssetId = AssetId(2);
const MARKET: MarketId = MarketId(7);
const ALICE: Principal = Principal(1);
const BOB: Principal = Principal(2);
const CAROL: Principal = Principal(3);
const SYSTEM: Principal = Principal::SYSTEM;

use CancelReason::{Replaced, Requested, SelfTrade, Stopped, Unfilled};
use Side::{Buy, Sell};

fn spec_with(maker_fee_bps: u32, taker_fee_bps: u32, collar_bps: u32) -> MarketSpec {
    MarketSpec {
        id: MARKET,
        base: BASE,
        quote: QUOTE,
        lot_size: 100,
        tick_size: 5,
        min_qty: Qty(100),
        max_qty: Qty(1_000_000_000),
        maker_fee_bps,
        taker_fee_bps,
        fee_account: AccountId(9),
        collar_bps,
        shard: ShardId(0),
    }
}

fn spec() -> MarketSpec {
    spec_with(10, 20, 0)
}

fn account(owner: Principal) -> AccountId {
    AccountId(owner.0 * 11)
}

/// A GTC limit ticket (cancel-resting STP, not post-only) holding exactly what it needs.
fn lim(
    spec: &MarketSpec,
    id: u64,
    owner: Principal,
    side: Side,
    price: u64,
    qty: u64,
) -> OrderTicket {
    let (_, hold) = spec
        .hold_for(side, Qty(qty), Price(price))
        .expect("hold fits");
    OrderTicket {
        order: OrderId(id),
        account: account(owner),
        owner,
        market: spec.id,
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(price),
        qty: Qty(qty),
        post_only: false,
        stp: SelfTradePrevention::CancelResting,
        hold,
        client_order_id: 0,
    }
}

fn ioc(t: OrderTicket) -> OrderTicket {
    OrderTicket {
        tif: TimeInForce::Ioc,
        ..t
    }
}

fn fok(t: OrderTicket) -> OrderTicket {
    OrderTicket {
        tif: TimeInForce::Fok,
        ..t
    }
}

fn post(t: OrderTicket) -> OrderTicket {
    OrderTicket {
        post_only: true,
        ..t
    }
}

fn stp(t: OrderTicket, stp: SelfTradePrevention) -> OrderTicket {
    OrderTicket { stp, ..t }
}

/// A market ticket (`price` is the protection price, 0 = none).
fn mkt(
    spec: &MarketSpec,
    id: u64,
    owner: Principal,
    side: Side,
    tif: TimeInForce,
    price: u64,
    qty: u64,
) -> OrderTicket {
    OrderTicket {
        order_type: OrderType::Market,
        tif,
        ..lim(spec, id, owner, side, price, qty)
    }
}

/// Places `t`; checks the book after it, and on a rejection that nothing changed.
fn place(book: &mut Book, t: &OrderTicket) -> Result<MatchOutput, RejectCode> {
    let before = book.to_parts();
    let mut out = MatchOutput {
        events: vec![MatchEvent::MakerCancelled(closed(
            999, ALICE, 1, 1, Requested,
        ))],
        end: Some(TakerEnd::Filled {
            hold_left: Amount(1),
        }),
    };
    let r = book.place(t, &mut out);
    book.validate().expect("book valid after place");
    match r {
        Ok(()) => Ok(out),
        Err(code) => {
            assert_eq!(out, MatchOutput::default(), "rejection left output behind");
            assert_eq!(book.to_parts(), before, "rejected order changed the book");
            Err(code)
        }
    }
}

/// Places an order that must rest untouched.
fn rest(book: &mut Book, t: &OrderTicket) {
    let want = out(vec![], rested(t.qty.0, 0));
    assert_eq!(place(book, t), Ok(want), "order {} should rest", t.order);
}

fn cancel(book: &mut Book, id: u64, by: Principal) -> Result<Closed, RejectCode> {
    let before = book.to_parts();
    let r = book.cancel(OrderId(id), by);
    book.validate().expect("book valid after cancel");
    if r.is_err() {
        assert_eq!(book.to_parts(), before, "rejected cancel changed the book");
    }
    r
}

fn amend(
    book: &mut Book,
    id: u64,
    by: Principal,
    price: u64,
    qty: u64,
) -> Result<AmendResult, RejectCode> {
    let before = book.to_parts();
    let r = book.amend(OrderId(id), by, Price(price), Qty(qty));
    book.validate().expect("book valid after amend");
    if r.is_err() {
        assert_eq!(book.to_parts(), before, "rejected amend changed the book");
    }
    r
}

fn out(events: Vec<MatchEvent>, end: TakerEnd) -> MatchOutput {
    MatchOutput {
        events,
        end: Some(end),
    }
}

/// A buyer's leg: pays `paid` quote (fee included), receives `received` base.
fn bleg(order: u64, owner: Principal, paid: u64, received: u64, fee: u64) -> Leg {
    Leg {
        order: OrderId(order),
        account: account(owner),
        paid_asset: QUOTE,
        paid: Amount(paid),
        received_asset: BASE,
        received: Amount(received),
        fee: Amount(fee),
    }
}

/// A seller's leg: pays `paid` base, receives `received` quote (fee deducted).
fn sleg(order: u64, owner: Principal, paid: u64, received: u64, fee: u64) -> Leg {
    Leg {
        order: OrderId(order),
        account: account(owner),
        paid_asset: BASE,
        paid: Amount(paid),
        received_asset: QUOTE,
        received: Amount(received),
        fee: Amount(fee),
    }
}

fn fill(
    price: u64,
    qty: u64,
    taker: Leg,
    maker: Leg,
    maker_done: bool,
    maker_hold_left: u64,
) -> MatchEvent {
    let taker_side = if taker.paid_asset == QUOTE { Buy } else { Sell };
    MatchEvent::Fill(Fill {
        price: Price(price),
        qty: Qty(qty),
        taker_side,
        taker,
        maker,
        maker_done,
        maker_hold_left: Amount(maker_hold_left),
    })
}

fn closed(
    order: u64,
    owner: Principal,
    remaining: u64,
    hold_left: u64,
    reason: CancelReason,
) -> Closed {
    Closed {
        order: OrderId(order),
        account: account(owner),
        remaining: Qty(remaining),
        hold_left: Amount(hold_left),
        reason,
    }
}

fn rested(remaining: u64, released: u64) -> TakerEnd {
    TakerEnd::Rested {
        remaining: Qty(remaining),
        released: Amount(released),
    }
}

fn filled(hold_left: u64) -> TakerEnd {
    TakerEnd::Filled {
        hold_left: Amount(hold_left),
    }
}

fn cancelled(c: Closed) -> TakerEnd {
    TakerEnd::Cancelled(c)
}

fn ro(
    id: u64,
    owner: Principal,
    side: Side,
    price: u64,
    remaining: u64,
    hold: u64,
) -> RestingOrder {
    RestingOrder {
        id: OrderId(id),
        account: account(owner),
        owner,
        price: Price(price),
        remaining: Qty(remaining),
        hold: Amount(hold),
        side,
        stp: SelfTradePrevention::CancelResting,
        post_only: false,
    }
}

type DepthRow = (Price, Qty, u32);

fn lv(price: u64, qty: u64, count: u32) -> DepthRow {
    (Price(price), Qty(qty), count)
}

fn depth(book: &Book) -> (Vec<DepthRow>, Vec<DepthRow>) {
    book.depth(usize::MAX)
}

// ------------------------------------------------------------------------------------------
// Resting, priority, prices, fees.
// ------------------------------------------------------------------------------------------

#[test]
fn gtc_orders_rest_in_price_time_order_with_exact_depth() {
    let s = spec();
    let mut b = Book::new(s.clone());
    assert!(b.is_empty());
    assert_eq!(depth(&b), (vec![], vec![]));

    let t1 = lim(&s, 1, ALICE, Buy, 1000, 200);
    // 2 lots * 1000 = 2000, + 20 bps = 4.
    assert_eq!(t1.hold, Amount(2004));
    rest(&mut b, &t1);
    // 995 + floor(1.99) = 996.
    rest(&mut b, &lim(&s, 2, BOB, Buy, 995, 100));
    rest(&mut b, &lim(&s, 3, CAROL, Buy, 1000, 300));
    rest(&mut b, &lim(&s, 4, BOB, Sell, 1010, 300));
    rest(&mut b, &lim(&s, 5, ALICE, Sell, 1005, 100));
    rest(&mut b, &lim(&s, 6, CAROL, Sell, 1010, 100));

    assert_eq!(
        b.orders(Buy),
        vec![
            ro(1, ALICE, Buy, 1000, 200, 2004),
            ro(3, CAROL, Buy, 1000, 300, 3006),
            ro(2, BOB, Buy, 995, 100, 996),
        ]
    );
    assert_eq!(
        b.orders(Sell),
        vec![
            ro(5, ALICE, Sell, 1005, 100, 100),
            ro(4, BOB, Sell, 1010, 300, 300),
            ro(6, CAROL, Sell, 1010, 100, 100),
        ]
    );
    assert_eq!(
        depth(&b),
        (
            vec![lv(1000, 500, 2), lv(995, 100, 1)],
            vec![lv(1005, 100, 1), lv(1010, 400, 2)]
        )
    );
    assert_eq!(b.depth(1), (vec![lv(1000, 500, 2)], vec![lv(1005, 100, 1)]));
    assert_eq!(b.depth(0), (vec![], vec![]));
    assert_eq!(b.best_bid(), Some(Price(1000)));
    assert_eq!(b.best_ask(), Some(Price(1005)));
    assert_eq!(b.len(), 6);
    assert!(!b.is_empty());
    assert_eq!(b.last_price(), None);
    assert_eq!(
        b.order(OrderId(3)),
        Some(&ro(3, CAROL, Buy, 1000, 300, 3006))
    );
    assert_eq!(b.order(OrderId(7)), None);
}

#[test]
fn taker_buy_walks_best_price_first_then_arrival_at_maker_prices() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Sell, 1010, 100));
    rest(&mut b, &lim(&s, 2, BOB, Sell, 1005, 200));
    rest(&mut b, &lim(&s, 3, CAROL, Sell, 1005, 200));
    rest(&mut b, &lim(&s, 4, CAROL, Sell, 1000, 100));

    let t = ioc(lim(&s, 5, ALICE, Buy, 1010, 400));
    // 4 * 1010 = 4040, + floor(8.08) = 8.
    assert_eq!(t.hold, Amount(4048));
    let want = out(
        vec![
            // 1 lot @1000: notional 1000, taker fee 2, maker fee 1.
            fill(
                1000,
                100,
                bleg(5, ALICE, 1002, 100, 2),
                sleg(4, CAROL, 100, 999, 1),
                true,
                0,
            ),
            // 2 lots @1005: notional 2010, taker fee floor(4.02) = 4, maker fee floor(2.01) = 2.
            fill(
                1005,
                200,
                bleg(5, ALICE, 2014, 200, 4),
                sleg(2, BOB, 200, 2008, 2),
                true,
                0,
            ),
            // 1 lot @1005 (of 2): notional 1005, taker fee 2, maker fee 1.
            fill(
                1005,
                100,
                bleg(5, ALICE, 1007, 100, 2),
                sleg(3, CAROL, 100, 1004, 1),
                false,
                100,
            ),
        ],
        // 4048 - 1002 - 2014 - 1007.
        filled(25),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(
        b.orders(Sell),
        vec![
            ro(3, CAROL, Sell, 1005, 100, 100),
            ro(1, BOB, Sell, 1010, 100, 100)
        ]
    );
    assert_eq!(b.orders(Buy), vec![]);
    assert_eq!(
        depth(&b),
        (vec![], vec![lv(1005, 100, 1), lv(1010, 100, 1)])
    );
    assert_eq!(b.last_price(), Some(Price(1005)));
}

#[test]
fn taker_sell_trades_at_the_bid_price_rests_gtc_and_cancels_ioc() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, ALICE, Buy, 1000, 300));
    rest(&mut b, &lim(&s, 2, BOB, Buy, 995, 100));

    // GTC sell 4 lots @1000 takes the 3 lots bid at 1000 and rests 1 lot.
    let want = out(
        // notional 3000; the seller (taker) pays 20 bps = 6, the buyer (maker) 10 bps = 3.
        // The maker held 3006 and paid 3003.
        vec![fill(
            1000,
            300,
            sleg(3, CAROL, 300, 2994, 6),
            bleg(1, ALICE, 3003, 300, 3),
            true,
            3,
        )],
        rested(100, 0),
    );
    assert_eq!(place(&mut b, &lim(&s, 3, CAROL, Sell, 1000, 400)), Ok(want));
    assert_eq!(b.orders(Buy), vec![ro(2, BOB, Buy, 995, 100, 996)]);
    assert_eq!(b.orders(Sell), vec![ro(3, CAROL, Sell, 1000, 100, 100)]);

    // IOC sell 2 lots @990 trades at the maker's 995, not 990; the rest is cancelled.
    let want = out(
        // notional 995: taker fee floor(1.99) = 1, maker fee floor(0.995) = 0; the maker
        // held 996.
        vec![fill(
            995,
            100,
            sleg(4, ALICE, 100, 994, 1),
            bleg(2, BOB, 995, 100, 0),
            true,
            1,
        )],
        cancelled(closed(4, ALICE, 100, 100, Unfilled)),
    );
    assert_eq!(
        place(&mut b, &ioc(lim(&s, 4, ALICE, Sell, 990, 200))),
        Ok(want)
    );
    assert_eq!(b.orders(Buy), vec![]);
    assert_eq!(b.orders(Sell), vec![ro(3, CAROL, Sell, 1000, 100, 100)]);
    assert_eq!(b.last_price(), Some(Price(995)));

    // An IOC that crosses nothing is cancelled whole, and nothing changes.
    // 1990 + floor(3.98) = 1993.
    let want = out(vec![], cancelled(closed(5, BOB, 200, 1993, Unfilled)));
    assert_eq!(
        place(&mut b, &ioc(lim(&s, 5, BOB, Buy, 995, 200))),
        Ok(want)
    );
    assert_eq!(b.len(), 1);
}

#[test]
fn resting_remainder_of_a_buy_releases_its_price_improvement() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Sell, 1000, 100));
    let t = lim(&s, 2, ALICE, Buy, 1010, 300);
    // 3030 + floor(6.06) = 3036.
    assert_eq!(t.hold, Amount(3036));
    let want = out(
        vec![fill(
            1000,
            100,
            bleg(2, ALICE, 1002, 100, 2),
            sleg(1, BOB, 100, 999, 1),
            true,
            0,
        )],
        // Left 3036 - 1002 = 2034; 2 lots @1010 need 2020 + floor(4.04) = 2024.
        rested(200, 10),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.orders(Buy), vec![ro(2, ALICE, Buy, 1010, 200, 2024)]);
    assert_eq!(b.orders(Sell), vec![]);
}

#[test]
fn partial_fills_of_a_resting_buy_mirror_its_hold_exactly() {
    let s = spec();
    let mut b = Book::new(s.clone());
    let maker = lim(&s, 1, ALICE, Buy, 1005, 700);
    // 7035 + floor(14.07) = 7049.
    assert_eq!(maker.hold, Amount(7049));
    rest(&mut b, &maker);
    let mut paid = 0;
    for k in 1..=7u64 {
        let t = ioc(lim(&s, 10 + k, BOB, Sell, 1005, 100));
        // notional 1005: taker fee floor(2.01) = 2, maker fee floor(1.005) = 1.
        let left = 7049 - 1006 * k;
        let want = out(
            vec![fill(
                1005,
                100,
                sleg(10 + k, BOB, 100, 1003, 2),
                bleg(1, ALICE, 1006, 100, 1),
                k == 7,
                left,
            )],
            filled(0),
        );
        assert_eq!(place(&mut b, &t), Ok(want), "fill {k}");
        paid += 1006;
        if k < 7 {
            let o = *b.order(OrderId(1)).expect("still rests");
            assert_eq!(o.remaining, Qty(700 - 100 * k));
            assert_eq!(o.hold, Amount(left));
            let (_, need) = s.hold_for(Buy, o.remaining, o.price).unwrap();
            assert!(o.hold >= need, "hold {} below {need}", o.hold);
            assert_eq!(paid + o.hold.0, 7049);
        } else {
            assert_eq!(b.order(OrderId(1)), None);
            // 7 * 1006 paid + 7 released on completion.
            assert_eq!(paid + left, 7049);
            assert_eq!(left, 7);
        }
    }
    assert!(b.is_empty());
}

#[test]
fn fees_charge_maker_and_taker_rates_by_role() {
    // Maker 30 bps, taker 5 bps: holds cover the larger rate.
    let s = spec_with(30, 5, 0);
    let mut b = Book::new(s.clone());
    let maker = lim(&s, 1, BOB, Buy, 1000, 200);
    // 2000 + 30 bps = 6.
    assert_eq!(maker.hold, Amount(2006));
    rest(&mut b, &maker);
    // Taker sell: notional 1000, taker fee floor(0.5) = 0, maker fee 3.
    let want = out(
        vec![fill(
            1000,
            100,
            sleg(2, ALICE, 100, 1000, 0),
            bleg(1, BOB, 1003, 100, 3),
            false,
            1003,
        )],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &ioc(lim(&s, 2, ALICE, Sell, 1000, 100))),
        Ok(want)
    );
    // 1 lot @1000 needs exactly 1003 again.
    assert_eq!(b.orders(Buy), vec![ro(1, BOB, Buy, 1000, 100, 1003)]);

    rest(&mut b, &lim(&s, 3, BOB, Sell, 1010, 100));
    let t = ioc(lim(&s, 4, ALICE, Buy, 1010, 100));
    // 1010 + floor(3.03) = 1013.
    assert_eq!(t.hold, Amount(1013));
    // Taker buy: notional 1010, taker fee floor(0.505) = 0, maker fee floor(3.03) = 3.
    let want = out(
        vec![fill(
            1010,
            100,
            bleg(4, ALICE, 1010, 100, 0),
            sleg(3, BOB, 100, 1007, 3),
            true,
            0,
        )],
        filled(3),
    );
    assert_eq!(place(&mut b, &t), Ok(want));

    // No fees at all.
    let s = spec_with(0, 0, 0);
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Sell, 995, 200));
    let want = out(
        vec![fill(
            995,
            200,
            bleg(2, ALICE, 1990, 200, 0),
            sleg(1, BOB, 200, 1990, 0),
            true,
            0,
        )],
        rested(100, 10),
    );
    // Holds 3000, pays 1990, the rest lot @1000 needs 1000.
    assert_eq!(place(&mut b, &lim(&s, 2, ALICE, Buy, 1000, 300)), Ok(want));
}

// ------------------------------------------------------------------------------------------
// Market orders, IOC, FOK, post-only.
// ------------------------------------------------------------------------------------------

#[test]
fn market_buy_stops_at_its_protection_price_and_never_rests() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Sell, 1000, 100));
    rest(&mut b, &lim(&s, 2, BOB, Sell, 1005, 100));
    rest(&mut b, &lim(&s, 3, CAROL, Sell, 1010, 100));
    let t = mkt(&s, 4, ALICE, Buy, TimeInForce::Ioc, 1005, 400);
    // 4020 + floor(8.04) = 4028.
    assert_eq!(t.hold, Amount(4028));
    let want = out(
        vec![
            fill(
                1000,
                100,
                bleg(4, ALICE, 1002, 100, 2),
                sleg(1, BOB, 100, 999, 1),
                true,
                0,
            ),
            fill(
                1005,
                100,
                bleg(4, ALICE, 1007, 100, 2),
                sleg(2, BOB, 100, 1004, 1),
                true,
                0,
            ),
        ],
        // 4028 - 2009.
        cancelled(closed(4, ALICE, 200, 2019, Unfilled)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.orders(Buy), vec![]);
    assert_eq!(b.orders(Sell), vec![ro(3, CAROL, Sell, 1010, 100, 100)]);
}

#[test]
fn market_sell_without_price_takes_any_bid() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Buy, 1000, 100));
    // 500 + floor(1.0) = 501.
    rest(&mut b, &lim(&s, 2, CAROL, Buy, 500, 100));
    let t = mkt(&s, 3, ALICE, Sell, TimeInForce::Ioc, 0, 300);
    assert_eq!(t.hold, Amount(300));
    let want = out(
        vec![
            // notional 1000: seller fee 2, buyer fee 1 (held 1002).
            fill(
                1000,
                100,
                sleg(3, ALICE, 100, 998, 2),
                bleg(1, BOB, 1001, 100, 1),
                true,
                1,
            ),
            // notional 500: seller fee 1, buyer fee floor(0.5) = 0 (held 501).
            fill(
                500,
                100,
                sleg(3, ALICE, 100, 499, 1),
                bleg(2, CAROL, 500, 100, 0),
                true,
                1,
            ),
        ],
        cancelled(closed(3, ALICE, 100, 100, Unfilled)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert!(b.is_empty());
    assert_eq!(b.last_price(), Some(Price(500)));
}

#[test]
fn market_order_rules() {
    let s = spec();
    let mut b = Book::new(s.clone());
    use TimeInForce::{Fok, Gtc, Ioc};
    assert_eq!(
        place(&mut b, &mkt(&s, 1, ALICE, Buy, Gtc, 1000, 100)),
        Err(RejectCode::InvalidTimeInForce)
    );
    assert_eq!(
        place(&mut b, &mkt(&s, 1, ALICE, Buy, Ioc, 0, 100)),
        Err(RejectCode::MissingProtectionPrice)
    );
    assert_eq!(
        place(&mut b, &mkt(&s, 1, ALICE, Sell, Ioc, 1003, 100)),
        Err(RejectCode::InvalidPrice)
    );
    assert_eq!(
        place(&mut b, &mkt(&s, 1, ALICE, Buy, Ioc, 1000, 100)),
        Err(RejectCode::NoLiquidity)
    );
    assert_eq!(
        place(&mut b, &mkt(&s, 1, ALICE, Sell, Ioc, 0, 100)),
        Err(RejectCode::NoLiquidity)
    );
    rest(&mut b, &lim(&s, 1, BOB, Sell, 1000, 200));
    // Only liquidity above the protection price.
    assert_eq!(
        place(&mut b, &mkt(&s, 2, ALICE, Buy, Ioc, 995, 100)),
        Err(RejectCode::NoLiquidity)
    );
    assert_eq!(
        place(&mut b, &mkt(&s, 2, ALICE, Buy, Fok, 1000, 300)),
        Err(RejectCode::FokNotFilled)
    );
    // A market FOK that can fill: notional 2000, taker fee 4, maker fee 2.
    let want = out(
        vec![fill(
            1000,
            200,
            bleg(3, ALICE, 2004, 200, 4),
            sleg(1, BOB, 200, 1998, 2),
            true,
            0,
        )],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &mkt(&s, 3, ALICE, Buy, Fok, 1000, 200)),
        Ok(want)
    );
    assert!(b.is_empty());
}

#[test]
fn static_ticket_checks() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Sell, 1000, 100));
    let wrong_market = OrderTicket {
        market: MarketId(8),
        ..lim(&s, 2, ALICE, Buy, 1000, 100)
    };
    assert_eq!(place(&mut b, &wrong_market), Err(RejectCode::UnknownMarket));
    let cases = [
        (
            lim(&s, 2, ALICE, Buy, 1000, 150),
            RejectCode::InvalidQuantity,
        ),
        (lim(&s, 2, ALICE, Buy, 1000, 0), RejectCode::InvalidQuantity),
        (
            lim(&s, 2, ALICE, Sell, 1000, 1_000_000_100),
            RejectCode::QuantityTooLarge,
        ),
        (lim(&s, 2, ALICE, Buy, 1003, 100), RejectCode::InvalidPrice),
        (lim(&s, 2, ALICE, Sell, 0, 100), RejectCode::InvalidPrice),
    ];
    for (t, code) in cases {
        assert_eq!(place(&mut b, &t), Err(code), "{t:?}");
    }
    let small = spec_with(10, 20, 0);
    let small = MarketSpec {
        min_qty: Qty(300),
        ..small
    };
    let mut b = Book::new(small.clone());
    assert_eq!(
        place(&mut b, &lim(&small, 1, ALICE, Buy, 1000, 200)),
        Err(RejectCode::QuantityTooSmall)
    );
}

#[test]
fn fok_fills_completely_or_changes_nothing() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Sell, 1000, 100));
    rest(&mut b, &lim(&s, 2, CAROL, Sell, 1005, 100));
    rest(&mut b, &lim(&s, 3, BOB, Sell, 1010, 100));
    // Only 2 lots at or below 1005.
    assert_eq!(
        place(&mut b, &fok(lim(&s, 4, ALICE, Buy, 1005, 300))),
        Err(RejectCode::FokNotFilled)
    );
    // 4 lots are not there at all.
    assert_eq!(
        place(&mut b, &fok(lim(&s, 4, ALICE, Buy, 1010, 400))),
        Err(RejectCode::FokNotFilled)
    );
    let t = fok(lim(&s, 5, ALICE, Buy, 1010, 300));
    // 3030 + 6.
    assert_eq!(t.hold, Amount(3036));
    let want = out(
        vec![
            fill(
                1000,
                100,
                bleg(5, ALICE, 1002, 100, 2),
                sleg(1, BOB, 100, 999, 1),
                true,
                0,
            ),
            fill(
                1005,
                100,
                bleg(5, ALICE, 1007, 100, 2),
                sleg(2, CAROL, 100, 1004, 1),
                true,
                0,
            ),
            // notional 1010: taker fee floor(2.02) = 2, maker fee floor(1.01) = 1.
            fill(
                1010,
                100,
                bleg(5, ALICE, 1012, 100, 2),
                sleg(3, BOB, 100, 1009, 1),
                true,
                0,
            ),
        ],
        // 3036 - 3021.
        filled(15),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert!(b.is_empty());

    // FOK sell against bids, exactly the size available at or above its price.
    rest(&mut b, &lim(&s, 6, BOB, Buy, 1000, 200));
    rest(&mut b, &lim(&s, 7, BOB, Buy, 990, 100));
    assert_eq!(
        place(&mut b, &fok(lim(&s, 8, ALICE, Sell, 995, 300))),
        Err(RejectCode::FokNotFilled)
    );
    let want = out(
        // notional 2000: seller fee 4, buyer fee 2; buyer held 2004.
        vec![fill(
            1000,
            200,
            sleg(9, ALICE, 200, 1996, 4),
            bleg(6, BOB, 2002, 200, 2),
            true,
            2,
        )],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &fok(lim(&s, 9, ALICE, Sell, 995, 200))),
        Ok(want)
    );
    assert_eq!(b.orders(Buy), vec![ro(7, BOB, Buy, 990, 100, 991)]);
}

#[test]
fn fok_respects_self_trade_prevention() {
    use SelfTradePrevention::*;
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, ALICE, Sell, 1000, 100));
    rest(&mut b, &lim(&s, 2, BOB, Sell, 1000, 100));
    // Alice's own order is first: cancel-incoming / cancel-both would stop before any fill.
    for mode in [CancelIncoming, CancelBoth] {
        assert_eq!(
            place(&mut b, &stp(fok(lim(&s, 3, ALICE, Buy, 1000, 100)), mode)),
            Err(RejectCode::FokNotFilled)
        );
    }
    // Cancel-resting skips her own order, but 2 lots are not there from others.
    assert_eq!(
        place(&mut b, &fok(lim(&s, 3, ALICE, Buy, 1000, 200))),
        Err(RejectCode::FokNotFilled)
    );
    let want = out(
        vec![
            MatchEvent::MakerCancelled(closed(1, ALICE, 100, 100, SelfTrade)),
            fill(
                1000,
                100,
                bleg(4, ALICE, 1002, 100, 2),
                sleg(2, BOB, 100, 999, 1),
                true,
                0,
            ),
        ],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &fok(lim(&s, 4, ALICE, Buy, 1000, 100))),
        Ok(want)
    );
    assert!(b.is_empty());
}

#[test]
fn post_only_rests_or_is_rejected_when_it_would_cross() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Sell, 1000, 100));
    rest(&mut b, &lim(&s, 2, BOB, Buy, 990, 100));
    for t in [
        post(lim(&s, 3, ALICE, Buy, 1000, 100)),
        post(lim(&s, 3, ALICE, Buy, 1005, 100)),
        post(lim(&s, 3, ALICE, Sell, 990, 100)),
        post(lim(&s, 3, ALICE, Sell, 985, 300)),
        post(ioc(lim(&s, 3, ALICE, Sell, 985, 300))),
        // Even against its own owner's order.
        post(lim(&s, 3, BOB, Buy, 1000, 100)),
    ] {
        assert_eq!(
            place(&mut b, &t),
            Err(RejectCode::PostOnlyWouldTake),
            "{t:?}"
        );
    }
    rest(&mut b, &post(lim(&s, 3, ALICE, Buy, 995, 100)));
    rest(&mut b, &post(lim(&s, 4, ALICE, Sell, 1005, 100)));
    assert_eq!(
        depth(&b),
        (
            vec![lv(995, 100, 1), lv(990, 100, 1)],
            vec![lv(1000, 100, 1), lv(1005, 100, 1)]
        )
    );
}

// ------------------------------------------------------------------------------------------
// Self-trade prevention.
// ------------------------------------------------------------------------------------------

#[test]
fn stp_cancel_resting_removes_own_makers_and_keeps_matching() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, ALICE, Sell, 1000, 200));
    rest(&mut b, &lim(&s, 2, BOB, Sell, 1000, 100));
    // Same owner through another account still counts as a self-trade.
    let other_account = OrderTicket {
        account: AccountId(99),
        ..lim(&s, 3, ALICE, Sell, 1005, 100)
    };
    rest(&mut b, &other_account);
    rest(&mut b, &lim(&s, 4, CAROL, Sell, 1005, 100));

    let t = lim(&s, 5, ALICE, Buy, 1005, 200);
    // 2010 + 4.
    assert_eq!(t.hold, Amount(2014));
    let want = out(
        vec![
            MatchEvent::MakerCancelled(closed(1, ALICE, 200, 200, SelfTrade)),
            fill(
                1000,
                100,
                bleg(5, ALICE, 1002, 100, 2),
                sleg(2, BOB, 100, 999, 1),
                true,
                0,
            ),
            MatchEvent::MakerCancelled(Closed {
                account: AccountId(99),
                ..closed(3, ALICE, 100, 100, SelfTrade)
            }),
            fill(
                1005,
                100,
                bleg(5, ALICE, 1007, 100, 2),
                sleg(4, CAROL, 100, 1004, 1),
                true,
                0,
            ),
        ],
        // 2014 - 2009.
        filled(5),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert!(b.is_empty());

    // Own makers only: all cancelled, then the GTC rest rests.
    rest(&mut b, &lim(&s, 6, BOB, Buy, 990, 100));
    let want = out(
        vec![MatchEvent::MakerCancelled(closed(
            6, BOB, 100, 991, SelfTrade,
        ))],
        rested(100, 0),
    );
    assert_eq!(place(&mut b, &lim(&s, 7, BOB, Sell, 990, 100)), Ok(want));
    assert_eq!(b.orders(Sell), vec![ro(7, BOB, Sell, 990, 100, 100)]);
    assert_eq!(b.orders(Buy), vec![]);
}

fn stp_book(s: &MarketSpec) -> Book {
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(s, 1, BOB, Sell, 995, 100));
    rest(&mut b, &lim(s, 2, ALICE, Sell, 1000, 100));
    rest(&mut b, &lim(s, 3, BOB, Sell, 1000, 100));
    b
}

#[test]
fn stp_cancel_incoming_stops_the_taker_even_if_gtc() {
    let s = spec();
    let mut b = stp_book(&s);
    let t = stp(
        lim(&s, 4, ALICE, Buy, 1000, 300),
        SelfTradePrevention::CancelIncoming,
    );
    assert_eq!(t.hold, Amount(3006));
    let want = out(
        // notional 995: taker fee floor(1.99) = 1, maker fee 0.
        vec![fill(
            995,
            100,
            bleg(4, ALICE, 996, 100, 1),
            sleg(1, BOB, 100, 995, 0),
            true,
            0,
        )],
        // 3006 - 996.
        cancelled(closed(4, ALICE, 200, 2010, SelfTrade)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(
        b.orders(Sell),
        vec![
            ro(2, ALICE, Sell, 1000, 100, 100),
            ro(3, BOB, Sell, 1000, 100, 100)
        ]
    );
    assert_eq!(b.orders(Buy), vec![]);

    // With the own order first, nothing trades.
    let t = stp(
        ioc(lim(&s, 5, ALICE, Buy, 1000, 100)),
        SelfTradePrevention::CancelIncoming,
    );
    let want = out(vec![], cancelled(closed(5, ALICE, 100, 1002, SelfTrade)));
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.len(), 2);
}

#[test]
fn stp_cancel_both_removes_the_maker_and_stops_the_taker() {
    let s = spec();
    let mut b = stp_book(&s);
    let t = stp(
        lim(&s, 4, ALICE, Buy, 1000, 300),
        SelfTradePrevention::CancelBoth,
    );
    let want = out(
        vec![
            fill(
                995,
                100,
                bleg(4, ALICE, 996, 100, 1),
                sleg(1, BOB, 100, 995, 0),
                true,
                0,
            ),
            MatchEvent::MakerCancelled(closed(2, ALICE, 100, 100, SelfTrade)),
        ],
        cancelled(closed(4, ALICE, 200, 2010, SelfTrade)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.orders(Sell), vec![ro(3, BOB, Sell, 1000, 100, 100)]);
    assert_eq!(b.orders(Buy), vec![]);
    assert_eq!(depth(&b), (vec![], vec![lv(1000, 100, 1)]));
}

// ------------------------------------------------------------------------------------------
// Collars, halt.
// ------------------------------------------------------------------------------------------

#[test]
fn collars_bound_limit_prices_and_stop_market_orders_at_the_band() {
    use TimeInForce::Ioc;
    // 10% collar.
    let s = spec_with(10, 20, 1000);
    let mut b = Book::new(s.clone());
    // No trade yet: no collar.
    rest(&mut b, &lim(&s, 1, CAROL, Sell, 1150, 100));
    rest(&mut b, &lim(&s, 2, CAROL, Buy, 850, 100));
    rest(&mut b, &lim(&s, 3, BOB, Sell, 1000, 100));
    let want = out(
        vec![fill(
            1000,
            100,
            bleg(4, ALICE, 1002, 100, 2),
            sleg(3, BOB, 100, 999, 1),
            true,
            0,
        )],
        filled(0),
    );
    assert_eq!(place(&mut b, &lim(&s, 4, ALICE, Buy, 1000, 100)), Ok(want));
    assert_eq!(b.last_price(), Some(Price(1000)));

    // Band [900, 1100], edges included.
    for t in [
        lim(&s, 5, ALICE, Buy, 1105, 100),
        lim(&s, 5, ALICE, Sell, 895, 100),
        post(lim(&s, 5, ALICE, Buy, 1105, 100)),
        fok(lim(&s, 5, ALICE, Sell, 1200, 100)),
    ] {
        assert_eq!(
            place(&mut b, &t),
            Err(RejectCode::PriceOutsideCollar),
            "{t:?}"
        );
    }
    rest(&mut b, &lim(&s, 5, CAROL, Sell, 1050, 100));
    rest(&mut b, &lim(&s, 6, CAROL, Sell, 1100, 100));
    rest(&mut b, &lim(&s, 7, CAROL, Buy, 900, 100));
    // Band [900, 1100]: a market sell trades the bid at 900 (the edge).
    assert_eq!(
        place(&mut b, &mkt(&s, 8, ALICE, Sell, Ioc, 0, 100)),
        Ok(out(
            // notional 900: seller fee 1, buyer fee 0; buyer held 900 + floor(1.8) = 901.
            vec![fill(
                900,
                100,
                sleg(8, ALICE, 100, 899, 1),
                bleg(7, CAROL, 900, 100, 0),
                true,
                1
            )],
            filled(0),
        ))
    );
    assert_eq!(b.last_price(), Some(Price(900)));
    // Band now [810, 990]: the asks at 1050 and up are beyond it.
    assert_eq!(
        place(&mut b, &mkt(&s, 9, ALICE, Buy, Ioc, 1200, 100)),
        Err(RejectCode::NoLiquidity)
    );
    // Trade at 1000 again to move the band back to [900, 1100].
    rest(&mut b, &lim(&s, 10, BOB, Sell, 990, 100));
    let want = out(
        vec![fill(
            990,
            100,
            bleg(11, ALICE, 991, 100, 1),
            sleg(10, BOB, 100, 990, 0),
            true,
            0,
        )],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &ioc(lim(&s, 11, ALICE, Buy, 990, 100))),
        Ok(want)
    );
    // Band [891, 1089]: a limit at 1100 is now outside.
    assert_eq!(
        place(&mut b, &lim(&s, 12, ALICE, Buy, 1100, 100)),
        Err(RejectCode::PriceOutsideCollar)
    );
    rest(&mut b, &lim(&s, 12, BOB, Sell, 1000, 100));
    let want = out(
        vec![fill(
            1000,
            100,
            bleg(13, ALICE, 1002, 100, 2),
            sleg(12, BOB, 100, 999, 1),
            true,
            0,
        )],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &ioc(lim(&s, 13, ALICE, Buy, 1000, 100))),
        Ok(want)
    );

    // Band [900, 1100]. A market buy protected at 1200 trades 1050 and 1100 and is stopped
    // at the band edge although 1150 is within its protection price. The band is fixed when
    // the order arrives: the trade at 1050 does not widen it to 1155 for this order.
    let t = mkt(&s, 14, ALICE, Buy, Ioc, 1200, 300);
    // 3600 + floor(7.2) = 3607.
    assert_eq!(t.hold, Amount(3607));
    let want = out(
        vec![
            // notional 1050: taker fee floor(2.1) = 2, maker fee floor(1.05) = 1.
            fill(
                1050,
                100,
                bleg(14, ALICE, 1052, 100, 2),
                sleg(5, CAROL, 100, 1049, 1),
                true,
                0,
            ),
            // notional 1100: taker fee floor(2.2) = 2, maker fee floor(1.1) = 1.
            fill(
                1100,
                100,
                bleg(14, ALICE, 1102, 100, 2),
                sleg(6, CAROL, 100, 1099, 1),
                true,
                0,
            ),
        ],
        // 3607 - 2154.
        cancelled(closed(14, ALICE, 100, 1453, Stopped)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.orders(Sell), vec![ro(1, CAROL, Sell, 1150, 100, 100)]);

    // Band [990, 1210]. A market sell without a price is stopped at 990.
    rest(&mut b, &lim(&s, 15, BOB, Buy, 1000, 100));
    let want = out(
        vec![fill(
            1000,
            100,
            sleg(16, ALICE, 100, 998, 2),
            bleg(15, BOB, 1001, 100, 1),
            true,
            1,
        )],
        cancelled(closed(16, ALICE, 200, 200, Stopped)),
    );
    assert_eq!(
        place(&mut b, &mkt(&s, 16, ALICE, Sell, Ioc, 0, 300)),
        Ok(want)
    );
    assert_eq!(b.orders(Buy), vec![ro(2, CAROL, Buy, 850, 100, 851)]);

    // Band [900, 1100]. Stopped by its own protection price inside the band: Unfilled.
    rest(&mut b, &lim(&s, 17, CAROL, Sell, 1095, 100));
    let t = mkt(&s, 18, ALICE, Buy, Ioc, 1100, 200);
    // 2200 + floor(4.4) = 2204.
    assert_eq!(t.hold, Amount(2204));
    let want = out(
        // notional 1095: taker fee floor(2.19) = 2, maker fee floor(1.095) = 1.
        vec![fill(
            1095,
            100,
            bleg(18, ALICE, 1097, 100, 2),
            sleg(17, CAROL, 100, 1094, 1),
            true,
            0,
        )],
        cancelled(closed(18, ALICE, 100, 1107, Unfilled)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    // A market sell protected at 1000 stops at its own price, not at the band: Unfilled.
    rest(&mut b, &lim(&s, 19, BOB, Buy, 1000, 100));
    rest(&mut b, &lim(&s, 20, BOB, Buy, 990, 100));
    let want = out(
        // notional 1000 (last was 1095: band [986, 1204]).
        vec![fill(
            1000,
            100,
            sleg(21, ALICE, 100, 998, 2),
            bleg(19, BOB, 1001, 100, 1),
            true,
            1,
        )],
        cancelled(closed(21, ALICE, 100, 100, Unfilled)),
    );
    assert_eq!(
        place(&mut b, &mkt(&s, 21, ALICE, Sell, Ioc, 1000, 200)),
        Ok(want)
    );
}

#[test]
fn halted_market_rejects_orders_but_accepts_cancels() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Sell, 1000, 100));
    rest(&mut b, &lim(&s, 2, BOB, Sell, 1005, 100));
    assert!(!b.halted());
    assert_eq!(b.resume(), Err(RejectCode::InvalidMarketState));
    assert_eq!(b.halt(), Ok(()));
    assert!(b.halted());
    assert_eq!(b.halt(), Err(RejectCode::InvalidMarketState));
    for t in [
        lim(&s, 3, ALICE, Buy, 1000, 100),
        lim(&s, 3, ALICE, Buy, 990, 100),
        mkt(&s, 3, ALICE, Sell, TimeInForce::Ioc, 0, 100),
        fok(lim(&s, 3, ALICE, Buy, 1000, 100)),
    ] {
        assert_eq!(place(&mut b, &t), Err(RejectCode::MarketHalted), "{t:?}");
    }
    assert_eq!(
        cancel(&mut b, 2, BOB),
        Ok(closed(2, BOB, 100, 100, Requested))
    );
    assert_eq!(b.resume(), Ok(()));
    assert!(!b.halted());
    let want = out(
        vec![fill(
            1000,
            100,
            bleg(3, ALICE, 1002, 100, 2),
            sleg(1, BOB, 100, 999, 1),
            true,
            0,
        )],
        filled(0),
    );
    assert_eq!(place(&mut b, &lim(&s, 3, ALICE, Buy, 1000, 100)), Ok(want));
}

// ------------------------------------------------------------------------------------------
// Cancel, amend.
// ------------------------------------------------------------------------------------------

#[test]
fn cancel_by_owner_or_system_only() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, ALICE, Buy, 1000, 100));
    rest(&mut b, &lim(&s, 2, BOB, Buy, 1000, 200));
    rest(&mut b, &lim(&s, 3, CAROL, Buy, 1000, 100));
    rest(&mut b, &lim(&s, 4, BOB, Sell, 1010, 100));

    assert_eq!(cancel(&mut b, 2, ALICE), Err(RejectCode::NotOwner));
    assert_eq!(
        cancel(&mut b, 2, BOB),
        Ok(closed(2, BOB, 200, 2004, Requested))
    );
    assert_eq!(
        b.orders(Buy),
        vec![
            ro(1, ALICE, Buy, 1000, 100, 1002),
            ro(3, CAROL, Buy, 1000, 100, 1002)
        ]
    );
    assert_eq!(depth(&b), (vec![lv(1000, 200, 2)], vec![lv(1010, 100, 1)]));
    assert_eq!(cancel(&mut b, 2, BOB), Err(RejectCode::UnknownOrder));
    assert_eq!(cancel(&mut b, 99, SYSTEM), Err(RejectCode::UnknownOrder));
    assert_eq!(
        cancel(&mut b, 4, SYSTEM),
        Ok(closed(4, BOB, 100, 100, Requested))
    );
    assert_eq!(b.best_ask(), None);

    // A partially filled order returns what is left of its hold.
    let want = out(
        vec![fill(
            1000,
            100,
            sleg(5, BOB, 100, 998, 2),
            bleg(1, ALICE, 1001, 100, 1),
            true,
            1,
        )],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &ioc(lim(&s, 5, BOB, Sell, 1000, 100))),
        Ok(want)
    );
    rest(&mut b, &lim(&s, 6, ALICE, Buy, 1000, 300));
    let want = out(
        vec![
            fill(
                1000,
                100,
                sleg(7, BOB, 100, 998, 2),
                bleg(3, CAROL, 1001, 100, 1),
                true,
                1,
            ),
            fill(
                1000,
                100,
                sleg(7, BOB, 100, 998, 2),
                bleg(6, ALICE, 1001, 100, 1),
                false,
                2005,
            ),
        ],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &ioc(lim(&s, 7, BOB, Sell, 1000, 200))),
        Ok(want)
    );
    assert_eq!(
        cancel(&mut b, 6, ALICE),
        Ok(closed(6, ALICE, 200, 2005, Requested))
    );
    assert!(b.is_empty());
    assert_eq!(depth(&b), (vec![], vec![]));

    // Slots are reused: a level of three, cancel the middle one, then the head.
    for id in 8..=10 {
        rest(&mut b, &lim(&s, id, CAROL, Sell, 1020, 100));
    }
    assert_eq!(cancel(&mut b, 9, CAROL).map(|c| c.order), Ok(OrderId(9)));
    assert_eq!(
        b.orders(Sell),
        vec![
            ro(8, CAROL, Sell, 1020, 100, 100),
            ro(10, CAROL, Sell, 1020, 100, 100)
        ]
    );
    assert_eq!(cancel(&mut b, 8, CAROL).map(|c| c.order), Ok(OrderId(8)));
    rest(&mut b, &lim(&s, 11, BOB, Sell, 1020, 100));
    assert_eq!(
        b.orders(Sell),
        vec![
            ro(10, CAROL, Sell, 1020, 100, 100),
            ro(11, BOB, Sell, 1020, 100, 100)
        ]
    );
}

#[test]
fn amend_down_at_the_same_price_keeps_priority_and_releases_hold() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, ALICE, Buy, 1000, 300));
    rest(&mut b, &lim(&s, 2, BOB, Buy, 1000, 100));
    rest(&mut b, &lim(&s, 3, BOB, Sell, 1010, 500));

    // 3006 held; 1 lot needs 1002.
    assert_eq!(
        amend(&mut b, 1, ALICE, 1000, 100),
        Ok(AmendResult::Reduced {
            account: account(ALICE),
            released: Amount(2004),
        })
    );
    assert_eq!(
        b.orders(Buy),
        vec![
            ro(1, ALICE, Buy, 1000, 100, 1002),
            ro(2, BOB, Buy, 1000, 100, 1002)
        ]
    );
    assert_eq!(depth(&b), (vec![lv(1000, 200, 2)], vec![lv(1010, 500, 1)]));
    assert_eq!(
        amend(&mut b, 3, SYSTEM, 1010, 200),
        Ok(AmendResult::Reduced {
            account: account(BOB),
            released: Amount(300),
        })
    );
    assert_eq!(b.orders(Sell), vec![ro(3, BOB, Sell, 1010, 200, 200)]);

    // Order 1 is still first.
    let want = out(
        vec![fill(
            1000,
            100,
            sleg(4, CAROL, 100, 998, 2),
            bleg(1, ALICE, 1001, 100, 1),
            true,
            1,
        )],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &ioc(lim(&s, 4, CAROL, Sell, 1000, 100))),
        Ok(want)
    );
    assert_eq!(b.orders(Buy), vec![ro(2, BOB, Buy, 1000, 100, 1002)]);
}

#[test]
fn amend_after_a_partial_fill_releases_the_rounding_surplus() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, ALICE, Buy, 1000, 300));
    let want = out(
        vec![fill(
            1000,
            100,
            sleg(2, BOB, 100, 998, 2),
            bleg(1, ALICE, 1001, 100, 1),
            false,
            2005,
        )],
        filled(0),
    );
    assert_eq!(
        place(&mut b, &ioc(lim(&s, 2, BOB, Sell, 1000, 100))),
        Ok(want)
    );
    // Holds 2005 for 2 lots; 1 lot needs 1002.
    assert_eq!(
        amend(&mut b, 1, ALICE, 1000, 100),
        Ok(AmendResult::Reduced {
            account: account(ALICE),
            released: Amount(1003),
        })
    );
    assert_eq!(
        cancel(&mut b, 1, ALICE),
        Ok(closed(1, ALICE, 100, 1002, Requested))
    );
    // 1001 paid + 1003 released + 1002 released = 3006 held.
    assert_eq!(1001 + 1003 + 1002, lim(&s, 1, ALICE, Buy, 1000, 300).hold.0);
}

#[test]
fn amend_other_changes_replace_the_order() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, ALICE, Buy, 1000, 200));
    rest(&mut b, &lim(&s, 2, BOB, Buy, 1000, 100));
    rest(&mut b, &lim(&s, 3, BOB, Sell, 1010, 200));

    assert_eq!(
        amend(&mut b, 1, ALICE, 1000, 200),
        Err(RejectCode::InvalidAmend)
    );
    assert_eq!(amend(&mut b, 1, BOB, 1000, 100), Err(RejectCode::NotOwner));
    assert_eq!(
        amend(&mut b, 9, ALICE, 1000, 100),
        Err(RejectCode::UnknownOrder)
    );
    assert_eq!(
        amend(&mut b, 3, BOB, 1010, 150),
        Err(RejectCode::InvalidQuantity)
    );
    assert_eq!(
        amend(&mut b, 3, BOB, 1010, 0),
        Err(RejectCode::InvalidQuantity)
    );
    assert_eq!(
        amend(&mut b, 3, BOB, 1012, 100),
        Err(RejectCode::InvalidPrice)
    );
    assert_eq!(amend(&mut b, 3, BOB, 0, 100), Err(RejectCode::InvalidPrice));

    // Larger at the same price: replaced.
    assert_eq!(
        amend(&mut b, 1, ALICE, 1000, 300),
        Ok(AmendResult::Replaced(closed(1, ALICE, 200, 2004, Replaced)))
    );
    assert_eq!(b.order(OrderId(1)), None);
    assert_eq!(
        amend(&mut b, 1, ALICE, 1000, 100),
        Err(RejectCode::UnknownOrder)
    );
    assert_eq!(cancel(&mut b, 1, ALICE), Err(RejectCode::UnknownOrder));
    // The replacement arrives later and queues behind order 2.
    rest(&mut b, &lim(&s, 4, ALICE, Buy, 1000, 300));
    assert_eq!(
        b.orders(Buy),
        vec![
            ro(2, BOB, Buy, 1000, 100, 1002),
            ro(4, ALICE, Buy, 1000, 300, 3006)
        ]
    );

    // Another price (even smaller): replaced.
    assert_eq!(
        amend(&mut b, 3, SYSTEM, 1005, 100),
        Ok(AmendResult::Replaced(closed(3, BOB, 200, 200, Replaced)))
    );
    assert_eq!(
        amend(&mut b, 2, BOB, 995, 100),
        Ok(AmendResult::Replaced(closed(2, BOB, 100, 1002, Replaced)))
    );
    assert_eq!(b.orders(Buy), vec![ro(4, ALICE, Buy, 1000, 300, 3006)]);
    assert_eq!(b.orders(Sell), vec![]);
}

// ------------------------------------------------------------------------------------------
// Snapshots.
// ------------------------------------------------------------------------------------------

fn snapshot_book(s: &MarketSpec) -> Book {
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(s, 1, ALICE, Buy, 1000, 300));
    rest(&mut b, &lim(s, 2, BOB, Buy, 995, 100));
    rest(&mut b, &lim(s, 3, CAROL, Buy, 1000, 100));
    rest(&mut b, &lim(s, 4, BOB, Sell, 1010, 300));
    rest(&mut b, &lim(s, 5, ALICE, Sell, 1005, 100));
    rest(&mut b, &lim(s, 6, CAROL, Sell, 1005, 200));
    // Partial fill of order 1 (hold 3006 - 1001), then cancel 2 to leave a free slot.
    place(&mut b, &ioc(lim(s, 7, BOB, Sell, 1000, 100))).unwrap();
    cancel(&mut b, 2, BOB).unwrap();
    b
}

#[test]
fn snapshot_round_trips_and_behaves_the_same() {
    let s = spec_with(10, 20, 1000);
    let b = snapshot_book(&s);
    let parts = b.to_parts();
    assert_eq!(
        parts,
        BookParts {
            spec: s.clone(),
            halted: false,
            last_price: Some(Price(1000)),
            orders: vec![
                ro(1, ALICE, Buy, 1000, 200, 2005),
                ro(3, CAROL, Buy, 1000, 100, 1002),
                ro(5, ALICE, Sell, 1005, 100, 100),
                ro(6, CAROL, Sell, 1005, 200, 200),
                ro(4, BOB, Sell, 1010, 300, 300),
            ],
        }
    );
    let mut copy = Book::from_parts(parts.clone()).expect("valid parts");
    assert_eq!(copy.to_parts(), parts);
    assert_eq!(copy.depth(9), b.depth(9));
    assert_eq!(copy.len(), b.len());

    // The same operations give the same results on both.
    let s2 = s.clone();
    type BookOp = Box<dyn Fn(&mut Book) -> String>;
    let ops: Vec<BookOp> = vec![
        Box::new(move |b| format!("{:?}", place(b, &ioc(lim(&s2, 8, BOB, Buy, 1010, 400))))),
        Box::new(|b| format!("{:?}", amend(b, 1, ALICE, 1000, 100))),
        Box::new(|b| format!("{:?}", cancel(b, 3, CAROL))),
        Box::new(move |b| format!("{:?}", place(b, &lim(&s, 9, CAROL, Sell, 1000, 300)))),
    ];
    let mut orig = b;
    for op in &ops {
        let (x, y) = (op(&mut orig), op(&mut copy));
        assert_eq!(x, y);
        assert_eq!(orig.to_parts(), copy.to_parts());
    }
    // 8 took the asks at 1005 and cancelled Bob's own ask at 1010; 9 took what was left of 1.
    assert_eq!(orig.orders(Buy), vec![]);
    assert_eq!(orig.orders(Sell), vec![ro(9, CAROL, Sell, 1000, 200, 200)]);

    // Halted survives a snapshot.
    orig.halt().unwrap();
    let again = Book::from_parts(orig.to_parts()).unwrap();
    assert!(again.halted());
    assert_eq!(again.to_parts(), orig.to_parts());
}

#[test]
fn from_parts_rejects_corrupted_parts() {
    let s = spec();
    let parts = snapshot_book(&s).to_parts();
    assert!(Book::from_parts(parts.clone()).is_ok());
    let corrupt = |f: &dyn Fn(&mut Vec<RestingOrder>)| {
        let mut p = parts.clone();
        f(&mut p.orders);
        Book::from_parts(p)
    };
    type Corruption = Box<dyn Fn(&mut Vec<RestingOrder>)>;
    let cases: Vec<(&str, Corruption)> = vec![
        ("duplicate id", Box::new(|o| o.push(o[0]))),
        (
            "duplicate id on the other side",
            Box::new(|o| {
                o.push(RestingOrder {
                    side: Sell,
                    price: Price(1020),
                    hold: Amount(200),
                    ..o[0]
                })
            }),
        ),
        (
            "crossed book",
            Box::new(|o| o.push(ro(20, BOB, Sell, 1000, 100, 100))),
        ),
        (
            "crossed book, bid above ask",
            Box::new(|o| o.push(ro(20, BOB, Buy, 1005, 100, 1007))),
        ),
        ("zero remaining", Box::new(|o| o[2].remaining = Qty(0))),
        (
            "remaining off the lot",
            Box::new(|o| o[2].remaining = Qty(150)),
        ),
        ("hold below need", Box::new(|o| o[0].hold = Amount(2003))),
        (
            "sell hold below need",
            Box::new(|o| o[4].hold = Amount(299)),
        ),
        ("price off the tick", Box::new(|o| o[4].price = Price(1012))),
        (
            "zero price",
            Box::new(|o| o.push(ro(20, BOB, Buy, 0, 100, 0))),
        ),
    ];
    for (what, f) in cases {
        match corrupt(&*f) {
            Err(Violation(msg)) => assert!(!msg.is_empty(), "{what}"),
            Ok(b) => panic!("{what}: accepted {:?}", b.to_parts()),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Limits.
// ------------------------------------------------------------------------------------------

#[test]
fn fill_limit_stops_the_taker() {
    let s = spec();
    let n = ORDER_FILLS_MAX as u64;
    let fresh = || {
        let mut b = Book::new(s.clone());
        let mut o = MatchOutput::default();
        for id in 1..=n + 1 {
            b.place(&lim(&s, id, BOB, Sell, 1000, 100), &mut o).unwrap();
        }
        b.validate().unwrap();
        b
    };
    let taker = n + 2;
    let expected_fills = || -> Vec<MatchEvent> {
        (1..=n)
            .map(|id| {
                fill(
                    1000,
                    100,
                    bleg(taker, ALICE, 1002, 100, 2),
                    sleg(id, BOB, 100, 999, 1),
                    true,
                    0,
                )
            })
            .collect()
    };
    let mut b = fresh();
    // Needs one fill too many.
    assert_eq!(
        place(
            &mut b,
            &fok(lim(&s, taker, ALICE, Buy, 1000, 100 * (n + 1)))
        ),
        Err(RejectCode::FokNotFilled)
    );
    let t = ioc(lim(&s, taker, ALICE, Buy, 1000, 100 * (n + 1)));
    // 10_001_000 + 20_002.
    assert_eq!(t.hold, Amount(10_021_002));
    let want = out(
        expected_fills(),
        cancelled(closed(taker, ALICE, 100, 1002, Stopped)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.orders(Sell), vec![ro(n + 1, BOB, Sell, 1000, 100, 100)]);

    // A GTC taker is stopped too (its rest would still cross), it does not rest.
    let mut b = fresh();
    let t = lim(&s, taker, ALICE, Buy, 1000, 100 * (n + 1));
    let want = out(
        expected_fills(),
        cancelled(closed(taker, ALICE, 100, 1002, Stopped)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.orders(Buy), vec![]);

    // Exactly the limit is fine for FOK.
    let mut b = fresh();
    let want = out(expected_fills(), filled(0));
    assert_eq!(
        place(&mut b, &fok(lim(&s, taker, ALICE, Buy, 1000, 100 * n))),
        Ok(want)
    );
    assert_eq!(b.len(), 1);
}

// ------------------------------------------------------------------------------------------
// Reference matcher: a flat Vec of resting orders, linear scans, FOK by simulation.
// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct RefOrder {
    o: RestingOrder,
    /// Arrival number: priority within a price.
    seq: u64,
}

#[derive(Clone, Debug)]
struct RefBook {
    spec: MarketSpec,
    orders: Vec<RefOrder>,
    next_seq: u64,
    halted: bool,
    last: Option<u64>,
}

fn ref_notional(spec: &MarketSpec, qty: u64, price: u64) -> u64 {
    let n = (qty / spec.lot_size) as u128 * price as u128;
    u64::try_from(n).expect("small numbers in tests")
}

fn ref_fee(notional: u64, bps: u32) -> u64 {
    (notional as u128 * bps as u128 / 10_000) as u64
}

fn ref_hold(spec: &MarketSpec, side: Side, qty: u64, price: u64) -> u64 {
    match side {
        Buy => {
            let n = ref_notional(spec, qty, price);
            n + ref_fee(n, spec.maker_fee_bps.max(spec.taker_fee_bps))
        }
        Sell => qty,
    }
}

/// Would a taker on `side` with price limit `limit` trade with a resting order at `price`?
fn ref_crosses(side: Side, limit: u64, price: u64) -> bool {
    match side {
        Buy => price <= limit,
        Sell => price >= limit,
    }
}

fn ref_closed(o: &RestingOrder, reason: CancelReason) -> Closed {
    Closed {
        order: o.id,
        account: o.account,
        remaining: o.remaining,
        hold_left: o.hold,
        reason,
    }
}

impl RefBook {
    fn new(spec: MarketSpec) -> RefBook {
        RefBook {
            spec,
            orders: Vec::new(),
            next_seq: 0,
            halted: false,
            last: None,
        }
    }

    /// Resting orders of a side, best price first, then arrival.
    fn sorted(&self, side: Side) -> Vec<RestingOrder> {
        let mut v: Vec<&RefOrder> = self.orders.iter().filter(|r| r.o.side == side).collect();
        v.sort_by_key(|r| {
            let p = r.o.price.0;
            (if side == Buy { u64::MAX - p } else { p }, r.seq)
        });
        v.into_iter().map(|r| r.o).collect()
    }

    /// Index of the first opposite order in priority that a taker on `side` with `limit`
    /// would meet.
    fn best_for(&self, side: Side, limit: u64) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, r) in self.orders.iter().enumerate() {
            if r.o.side == side || !ref_crosses(side, limit, r.o.price.0) {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    let (p, q) = (r.o.price.0, self.orders[b].o.price.0);
                    let better_price = if side == Buy { p < q } else { p > q };
                    better_price || (p == q && r.seq < self.orders[b].seq)
                }
            };
            if better {
                best = Some(i);
            }
        }
        best
    }

    fn position(&self, id: OrderId) -> Option<usize> {
        self.orders.iter().position(|r| r.o.id == id)
    }

    fn band(&self) -> Option<(u64, u64)> {
        let r = self.last?;
        if self.spec.collar_bps == 0 {
            return None;
        }
        let d = (r as u128 * self.spec.collar_bps as u128 / 10_000) as u64;
        Some((r.saturating_sub(d), r + d))
    }

    fn place(&mut self, t: &OrderTicket) -> Result<MatchOutput, RejectCode> {
        let spec = self.spec.clone();
        if t.market != spec.id {
            return Err(RejectCode::UnknownMarket);
        }
        if self.halted {
            return Err(RejectCode::MarketHalted);
        }
        spec.check_qty(t.qty)?;
        let market = t.order_type == OrderType::Market;
        if market {
            if t.tif == TimeInForce::Gtc {
                return Err(RejectCode::InvalidTimeInForce);
            }
            if t.side == Buy && t.price.0 == 0 {
                return Err(RejectCode::MissingProtectionPrice);
            }
        }
        if !market || t.price.0 != 0 {
            spec.check_price(t.price)?;
        }
        assert_eq!(t.hold.0, ref_hold(&spec, t.side, t.qty.0, t.price.0));
        let band = self.band();
        let limit = match (t.order_type, t.side, band) {
            (_, _, None) => t.price.0,
            (OrderType::Limit, _, Some((lo, hi))) => {
                if t.price.0 < lo || t.price.0 > hi {
                    return Err(RejectCode::PriceOutsideCollar);
                }
                t.price.0
            }
            (OrderType::Market, Buy, Some((_, hi))) => t.price.0.min(hi),
            (OrderType::Market, Sell, Some((lo, _))) => t.price.0.max(lo),
        };
        let can_trade = self.best_for(t.side, limit).is_some();
        if t.post_only && can_trade {
            return Err(RejectCode::PostOnlyWouldTake);
        }
        if t.tif == TimeInForce::Fok {
            let mut sim = self.clone();
            let out = sim.run(t, limit);
            if !matches!(out.end, Some(TakerEnd::Filled { .. })) {
                return Err(RejectCode::FokNotFilled);
            }
        }
        if market && !can_trade {
            return Err(RejectCode::NoLiquidity);
        }
        Ok(self.run(t, limit))
    }

    fn run(&mut self, t: &OrderTicket, limit: u64) -> MatchOutput {
        let spec = self.spec.clone();
        let mut events = Vec::new();
        let mut remaining = t.qty.0;
        let mut hold = t.hold.0;
        let mut fills = 0;
        let mut stopped = None;
        while remaining > 0 {
            let Some(i) = self.best_for(t.side, limit) else {
                break;
            };
            if fills == ORDER_FILLS_MAX {
                stopped = Some(Stopped);
                break;
            }
            let m = self.orders[i].o;
            if m.owner == t.owner {
                match t.stp {
                    SelfTradePrevention::CancelResting => {
                        self.orders.remove(i);
                        events.push(MatchEvent::MakerCancelled(ref_closed(&m, SelfTrade)));
                        continue;
                    }
                    SelfTradePrevention::CancelIncoming => {
                        stopped = Some(SelfTrade);
                        break;
                    }
                    SelfTradePrevention::CancelBoth => {
                        self.orders.remove(i);
                        events.push(MatchEvent::MakerCancelled(ref_closed(&m, SelfTrade)));
                        stopped = Some(SelfTrade);
                        break;
                    }
                }
            }
            let q = remaining.min(m.remaining.0);
            let px = m.price.0;
            let n = ref_notional(&spec, q, px);
            let (tf, mf) = (
                ref_fee(n, spec.taker_fee_bps),
                ref_fee(n, spec.maker_fee_bps),
            );
            let leg = |order: OrderId, account: AccountId, side: Side, fee: u64| match side {
                Buy => Leg {
                    order,
                    account,
                    paid_asset: spec.quote,
                    paid: Amount(n + fee),
                    received_asset: spec.base,
                    received: Amount(q),
                    fee: Amount(fee),
                },
                Sell => Leg {
                    order,
                    account,
                    paid_asset: spec.base,
                    paid: Amount(q),
                    received_asset: spec.quote,
                    received: Amount(n - fee),
                    fee: Amount(fee),
                },
            };
            let taker = leg(t.order, t.account, t.side, tf);
            let maker = leg(m.id, m.account, m.side, mf);
            hold -= taker.paid.0;
            remaining -= q;
            fills += 1;
            self.last = Some(px);
            let r = &mut self.orders[i].o;
            r.remaining.0 -= q;
            r.hold.0 -= maker.paid.0;
            let (maker_done, maker_hold_left) = (r.remaining.0 == 0, r.hold);
            if maker_done {
                self.orders.remove(i);
            }
            events.push(MatchEvent::Fill(Fill {
                price: Price(px),
                qty: Qty(q),
                taker_side: t.side,
                taker,
                maker,
                maker_done,
                maker_hold_left,
            }));
        }
        let cancel = |reason| {
            TakerEnd::Cancelled(Closed {
                order: t.order,
                account: t.account,
                remaining: Qty(remaining),
                hold_left: Amount(hold),
                reason,
            })
        };
        let end = if remaining == 0 {
            TakerEnd::Filled {
                hold_left: Amount(hold),
            }
        } else if let Some(reason) = stopped {
            cancel(reason)
        } else if t.order_type == OrderType::Market {
            // Stopped by the collar when it would still trade within its own price.
            if self.best_for(t.side, t.price.0).is_some() {
                cancel(Stopped)
            } else {
                cancel(Unfilled)
            }
        } else if t.tif != TimeInForce::Gtc {
            cancel(Unfilled)
        } else {
            let need = ref_hold(&spec, t.side, remaining, t.price.0);
            self.orders.push(RefOrder {
                o: RestingOrder {
                    id: t.order,
                    account: t.account,
                    owner: t.owner,
                    price: t.price,
                    remaining: Qty(remaining),
                    hold: Amount(need),
                    side: t.side,
                    stp: t.stp,
                    post_only: t.post_only,
                },
                seq: self.next_seq,
            });
            self.next_seq += 1;
            TakerEnd::Rested {
                remaining: Qty(remaining),
                released: Amount(hold - need),
            }
        };
        MatchOutput {
            events,
            end: Some(end),
        }
    }

    fn cancel(&mut self, id: OrderId, by: Principal) -> Result<Closed, RejectCode> {
        let i = self.position(id).ok_or(RejectCode::UnknownOrder)?;
        let o = self.orders[i].o;
        if by != SYSTEM && by != o.owner {
            return Err(RejectCode::NotOwner);
        }
        self.orders.remove(i);
        Ok(ref_closed(&o, Requested))
    }

    fn amend(
        &mut self,
        id: OrderId,
        by: Principal,
        price: Price,
        qty: Qty,
    ) -> Result<AmendResult, RejectCode> {
        let i = self.position(id).ok_or(RejectCode::UnknownOrder)?;
        let o = self.orders[i].o;
        if by != SYSTEM && by != o.owner {
            return Err(RejectCode::NotOwner);
        }
        self.spec.check_qty(qty)?;
        self.spec.check_price(price)?;
        if price == o.price && qty == o.remaining {
            return Err(RejectCode::InvalidAmend);
        }
        if price == o.price && qty < o.remaining {
            let need = ref_hold(&self.spec, o.side, qty.0, price.0);
            let r = &mut self.orders[i].o;
            let released = Amount(r.hold.0 - need);
            r.remaining = qty;
            r.hold = Amount(need);
            return Ok(AmendResult::Reduced {
                account: o.account,
                released,
            });
        }
        if self.halted {
            return Err(RejectCode::MarketHalted);
        }
        self.orders.remove(i);
        Ok(AmendResult::Replaced(ref_closed(&o, Replaced)))
    }

    fn halt(&mut self) -> Result<(), RejectCode> {
        if self.halted {
            return Err(RejectCode::InvalidMarketState);
        }
        self.halted = true;
        Ok(())
    }

    fn resume(&mut self) -> Result<(), RejectCode> {
        if !self.halted {
            return Err(RejectCode::InvalidMarketState);
        }
        self.halted = false;
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Random streams: the book against the reference, after every operation.
// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Place {
        owner: u64,
        side: Side,
        market: bool,
        /// 0..10: limit GTC 0..=6, IOC 7..=8, FOK 9; market GTC 0, IOC 1..=6, FOK 7..=9.
        tif: u8,
        level: u64,
        lots: u64,
        post_only: bool,
        stp: u8,
        /// Market orders without a (protection) price.
        no_price: bool,
    },
    Cancel {
        pick: Pick,
        by: u8,
    },
    Amend {
        pick: Pick,
        by: u8,
        level: u64,
        lots: u64,
        same_price: bool,
    },
    Halt,
    Resume,
}

/// Which order a cancel or amend names: mostly a resting one, else any id ever sent (or
/// one never sent).
#[derive(Clone, Debug)]
struct Pick {
    resting: bool,
    index: prop::sample::Index,
}

fn pick_strategy() -> impl Strategy<Value = Pick> {
    (0u8..10, any::<prop::sample::Index>()).prop_map(|(r, index)| Pick {
        resting: r < 8,
        index,
    })
}

const LEVELS: u64 = 10;

fn level_price(level: u64) -> u64 {
    975 + 5 * level
}

fn principal(k: u64) -> Principal {
    Principal(k)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let place = (
        1u64..=3,
        any::<bool>(),
        0u8..20,
        0u8..10,
        0..LEVELS,
        1u64..=5,
        0u8..10,
        0u8..3,
        0u8..10,
    )
        .prop_map(
            |(owner, buy, kind, tif, level, lots, po, stp, np)| Op::Place {
                owner,
                side: if buy { Buy } else { Sell },
                market: kind < 5,
                tif,
                level,
                lots,
                post_only: po == 0,
                stp,
                no_price: np < 3,
            },
        );
    let cancel = (pick_strategy(), 0u8..10).prop_map(|(pick, by)| Op::Cancel { pick, by });
    let amend = (pick_strategy(), 0u8..10, 0..LEVELS, 1u64..=5, 0u8..4).prop_map(
        |(pick, by, level, lots, same)| Op::Amend {
            pick,
            by,
            level,
            lots,
            same_price: same < 3,
        },
    );
    prop_oneof![
        40 => place,
        8 => cancel,
        8 => amend,
        1 => Just(Op::Halt),
        6 => Just(Op::Resume),
    ]
}

/// What the harness tracks of every order it ever sent.
#[derive(Clone, Copy, Debug)]
struct Track {
    side: Side,
    owner: Principal,
    qty: u64,
    hold: u64,
    filled: u64,
    paid: u64,
    released: u64,
    closed: bool,
}

/// How often each path was taken (to show the streams exercise them).
#[derive(Clone, Debug, Default)]
struct Seen {
    fills: usize,
    partial_maker_fills: usize,
    stp_maker_cancels: usize,
    rested: usize,
    filled: usize,
    cancelled: Vec<(CancelReason, usize)>,
    rejected: Vec<(RejectCode, usize)>,
    reduced: usize,
    replaced: usize,
    cancels: usize,
    snapshots: usize,
}

fn bump<K: PartialEq>(v: &mut Vec<(K, usize)>, k: K) {
    match v.iter_mut().find(|(x, _)| *x == k) {
        Some((_, n)) => *n += 1,
        None => v.push((k, 1)),
    }
}

/// The comparable gist of a place result (for readable failures before the full compare).
#[derive(Debug, PartialEq)]
enum Gist {
    Rejected(RejectCode),
    Done {
        /// (maker, taker, price, qty).
        fills: Vec<(u64, u64, u64, u64)>,
        maker_cancels: Vec<u64>,
        end: String,
        remaining: u64,
    },
}

fn gist(r: &Result<MatchOutput, RejectCode>) -> Gist {
    let out = match r {
        Err(c) => return Gist::Rejected(*c),
        Ok(out) => out,
    };
    let mut fills = Vec::new();
    let mut maker_cancels = Vec::new();
    for e in &out.events {
        match e {
            MatchEvent::Fill(f) => {
                fills.push((f.maker.order.0, f.taker.order.0, f.price.0, f.qty.0))
            }
            MatchEvent::MakerCancelled(c) => maker_cancels.push(c.order.0),
        }
    }
    let (end, remaining) = match out.end {
        Some(TakerEnd::Rested { remaining, .. }) => ("rested".to_string(), remaining.0),
        Some(TakerEnd::Filled { .. }) => ("filled".to_string(), 0),
        Some(TakerEnd::Cancelled(c)) => (format!("cancelled {:?}", c.reason), c.remaining.0),
        None => ("none".to_string(), 0),
    };
    Gist::Done {
        fills,
        maker_cancels,
        end,
        remaining,
    }
}

struct Harness {
    book: Book,
    model: RefBook,
    /// Indexed by order id - 1.
    track: Vec<Track>,
    step: usize,
    seen: Seen,
}

impl Harness {
    fn new(spec: MarketSpec) -> Harness {
        Harness {
            book: Book::new(spec.clone()),
            model: RefBook::new(spec),
            track: Vec::new(),
            step: 0,
            seen: Seen::default(),
        }
    }

    fn tr(&mut self, id: OrderId) -> &mut Track {
        &mut self.track[id.0 as usize - 1]
    }

    fn close(&mut self, id: OrderId, hold_left: Amount) {
        let t = self.tr(id);
        assert!(!t.closed, "order {id} closed twice");
        t.released += hold_left.0;
        t.closed = true;
    }

    fn new_ticket(&mut self, owner: Principal, side: Side, price: u64, qty: u64) -> OrderTicket {
        let spec = self.book.spec().clone();
        let id = self.track.len() as u64 + 1;
        let t = lim(&spec, id, owner, side, price, qty);
        self.track.push(Track {
            side,
            owner,
            qty,
            hold: t.hold.0,
            filled: 0,
            paid: 0,
            released: 0,
            closed: false,
        });
        t
    }

    fn apply(&mut self, op: &Op) {
        self.step += 1;
        match *op {
            Op::Place {
                owner,
                side,
                market,
                tif,
                level,
                lots,
                post_only,
                stp,
                no_price,
            } => {
                let price = if market && no_price {
                    0
                } else {
                    level_price(level)
                };
                // Market orders are larger, to sweep through the band more often.
                let qty = if market { lots * 500 } else { lots * 100 };
                let mut t = self.new_ticket(principal(owner), side, price, qty);
                t.post_only = post_only;
                t.stp = [
                    SelfTradePrevention::CancelResting,
                    SelfTradePrevention::CancelIncoming,
                    SelfTradePrevention::CancelBoth,
                ][stp as usize];
                if market {
                    t.order_type = OrderType::Market;
                    t.tif = match tif {
                        0 => TimeInForce::Gtc,
                        1..=6 => TimeInForce::Ioc,
                        _ => TimeInForce::Fok,
                    };
                } else {
                    t.tif = match tif {
                        0..=6 => TimeInForce::Gtc,
                        7..=8 => TimeInForce::Ioc,
                        _ => TimeInForce::Fok,
                    };
                }
                let _ = self.place(&t);
            }
            Op::Cancel { ref pick, by } => {
                let (id, by) = self.pick(pick, by);
                let before = self.book.to_parts();
                let got = self.book.cancel(id, principal(by));
                let want = self.model.cancel(id, principal(by));
                assert_eq!(got, want, "step {}: cancel {id} by {by}", self.step);
                match got {
                    Ok(c) => {
                        self.seen.cancels += 1;
                        self.close(c.order, c.hold_left);
                    }
                    Err(code) => {
                        bump(&mut self.seen.rejected, code);
                        assert_eq!(self.book.to_parts(), before);
                    }
                }
            }
            Op::Amend {
                ref pick,
                by,
                level,
                lots,
                same_price,
            } => {
                let (id, by) = self.pick(pick, by);
                let price = match (same_price, self.book.order(id)) {
                    (true, Some(o)) => o.price,
                    _ => Price(level_price(level)),
                };
                let qty = Qty(lots * 100);
                let before = self.book.to_parts();
                let got = self.book.amend(id, principal(by), price, qty);
                let want = self.model.amend(id, principal(by), price, qty);
                assert_eq!(
                    got, want,
                    "step {}: amend {id} by {by} to {qty} @{price}",
                    self.step
                );
                match got {
                    Ok(AmendResult::Reduced { released, .. }) => {
                        self.seen.reduced += 1;
                        self.tr(id).released += released.0;
                    }
                    Ok(AmendResult::Replaced(c)) => {
                        self.seen.replaced += 1;
                        self.close(c.order, c.hold_left);
                        // The caller places the replacement as a new order.
                        let Track { owner, side, .. } = *self.tr(id);
                        let t = self.new_ticket(owner, side, price.0, qty.0);
                        let _ = self.place(&t);
                    }
                    Err(code) => {
                        bump(&mut self.seen.rejected, code);
                        assert_eq!(self.book.to_parts(), before);
                    }
                }
            }
            Op::Halt | Op::Resume => {
                let (got, want) = if matches!(op, Op::Halt) {
                    (self.book.halt(), self.model.halt())
                } else {
                    (self.book.resume(), self.model.resume())
                };
                assert_eq!(got, want, "step {}: {op:?}", self.step);
                if let Err(code) = got {
                    bump(&mut self.seen.rejected, code);
                }
            }
        }
        if self.step.is_multiple_of(41) {
            // Continue on a book rebuilt from its snapshot.
            let parts = self.book.to_parts();
            let copy = Book::from_parts(parts.clone()).expect("snapshot of a valid book");
            assert_eq!(copy.to_parts(), parts);
            self.book = copy;
            self.seen.snapshots += 1;
        }
        self.check();
    }

    /// The order named by `pick`, and who asks: system (by 0), owner 1 or 2 (by 1, 2), else
    /// the order's owner.
    fn pick(&self, pick: &Pick, by: u8) -> (OrderId, u64) {
        let id = if pick.resting && !self.model.orders.is_empty() {
            self.model.orders[pick.index.index(self.model.orders.len())]
                .o
                .id
        } else {
            OrderId(pick.index.index(self.track.len() + 1) as u64 + 1)
        };
        let by = match by {
            0..=2 => by as u64,
            _ => self.track.get(id.0 as usize - 1).map_or(1, |t| t.owner.0),
        };
        (id, by)
    }

    fn place(&mut self, t: &OrderTicket) -> Result<MatchOutput, RejectCode> {
        let before = self.book.to_parts();
        let mut out = MatchOutput::default();
        let got = self.book.place(t, &mut out).map(|()| out);
        let want = self.model.place(t);
        assert_eq!(gist(&got), gist(&want), "step {}: {t:?}", self.step);
        assert_eq!(got, want, "step {}: {t:?}", self.step);
        let out = match &got {
            Err(code) => {
                bump(&mut self.seen.rejected, *code);
                assert_eq!(
                    self.book.to_parts(),
                    before,
                    "rejected order changed the book"
                );
                // The account's shard releases the whole hold.
                self.close(t.order, t.hold);
                return got;
            }
            Ok(out) => out.clone(),
        };
        let lot = self.book.spec().lot_size;
        for e in &out.events {
            match *e {
                MatchEvent::Fill(f) => {
                    self.seen.fills += 1;
                    assert!(f.qty.0 > 0 && f.qty.0 % lot == 0, "fill of {}", f.qty);
                    assert_eq!(f.taker.order, t.order);
                    assert_eq!(f.taker_side, t.side);
                    assert_ne!(f.maker.order, t.order);
                    let tk = self.tr(t.order);
                    tk.filled += f.qty.0;
                    tk.paid += f.taker.paid.0;
                    let mk = self.tr(f.maker.order);
                    assert!(!mk.closed, "closed order {} traded", f.maker.order);
                    assert_eq!(mk.side, t.side.opposite());
                    mk.filled += f.qty.0;
                    mk.paid += f.maker.paid.0;
                    if f.maker_done {
                        self.close(f.maker.order, f.maker_hold_left);
                    } else {
                        self.seen.partial_maker_fills += 1;
                    }
                }
                MatchEvent::MakerCancelled(c) => {
                    self.seen.stp_maker_cancels += 1;
                    assert_eq!(c.reason, SelfTrade);
                    assert_eq!(self.tr(c.order).owner, t.owner);
                    self.close(c.order, c.hold_left);
                }
            }
        }
        match out.end.expect("an accepted order ends somehow") {
            TakerEnd::Rested {
                released,
                remaining,
            } => {
                self.seen.rested += 1;
                assert_eq!(t.order_type, OrderType::Limit);
                assert_eq!(t.tif, TimeInForce::Gtc);
                let tk = self.tr(t.order);
                assert_eq!(tk.filled + remaining.0, tk.qty);
                tk.released += released.0;
            }
            TakerEnd::Filled { hold_left } => {
                self.seen.filled += 1;
                self.close(t.order, hold_left);
                assert_eq!(self.tr(t.order).filled, t.qty.0);
            }
            TakerEnd::Cancelled(c) => {
                bump(&mut self.seen.cancelled, c.reason);
                assert_ne!(t.tif, TimeInForce::Fok, "a FOK fills or is rejected");
                self.close(t.order, c.hold_left);
                assert_eq!(self.tr(t.order).filled + c.remaining.0, t.qty.0);
            }
        }
        got
    }

    /// Everything that must hold between operations.
    fn check(&self) {
        let (b, m) = (&self.book, &self.model);
        let step = self.step;
        b.validate()
            .unwrap_or_else(|v| panic!("step {step}: {v:?}"));
        if let (Some(bid), Some(ask)) = (b.best_bid(), b.best_ask()) {
            assert!(bid < ask, "step {step}: crossed {bid} >= {ask}");
        }
        let (bids, asks) = (b.orders(Buy), b.orders(Sell));
        assert_eq!(bids, m.sorted(Buy), "step {step}: bids");
        assert_eq!(asks, m.sorted(Sell), "step {step}: asks");
        assert_eq!(b.len(), m.orders.len());
        assert_eq!(b.halted(), m.halted);
        assert_eq!(b.last_price().map(|p| p.0), m.last);
        // Depth is the aggregate of the orders.
        let agg = |orders: &[RestingOrder]| {
            let mut v: Vec<DepthRow> = Vec::new();
            for o in orders {
                match v.last_mut() {
                    Some(l) if l.0 == o.price => {
                        l.1 .0 += o.remaining.0;
                        l.2 += 1;
                    }
                    _ => v.push((o.price, o.remaining, 1)),
                }
            }
            v
        };
        assert_eq!(
            b.depth(usize::MAX),
            (agg(&bids), agg(&asks)),
            "step {step}: depth"
        );
        // Holds: mirrored, never below what the rest needs, and conserved exactly.
        let spec = b.spec();
        for (i, t) in self.track.iter().enumerate() {
            let id = OrderId(i as u64 + 1);
            assert!(t.filled <= t.qty, "step {step}: order {id} overfilled");
            match b.order(id) {
                Some(o) => {
                    assert!(!t.closed, "step {step}: closed order {id} rests");
                    assert_eq!(o.owner, t.owner);
                    assert!(
                        t.filled + o.remaining.0 <= t.qty,
                        "step {step}: order {id} grew"
                    );
                    let need = ref_hold(spec, o.side, o.remaining.0, o.price.0);
                    assert!(
                        o.hold.0 >= need,
                        "step {step}: order {id} holds {} < {need}",
                        o.hold
                    );
                    assert_eq!(
                        t.paid + t.released + o.hold.0,
                        t.hold,
                        "step {step}: order {id} hold"
                    );
                }
                None => {
                    assert!(t.closed, "step {step}: order {id} vanished without closing");
                    assert_eq!(t.paid + t.released, t.hold, "step {step}: order {id} hold");
                }
            }
        }
    }

    /// Ends the stream: a copy rebuilt from the snapshot reacts to sweeping orders exactly
    /// like the book (and the book still like the reference).
    fn finish(&mut self) {
        if self.model.halted {
            self.apply(&Op::Resume);
        }
        let parts = self.book.to_parts();
        let mut copy = Book::from_parts(parts.clone()).expect("snapshot of a valid book");
        assert_eq!(copy.to_parts(), parts);
        for (side, price) in [(Buy, level_price(LEVELS)), (Sell, level_price(0))] {
            let t = ioc(self.new_ticket(Principal(9), side, price, 3_000));
            let mut out = MatchOutput::default();
            let from_copy = copy.place(&t, &mut out).map(|()| out);
            let from_book = self.place(&t);
            assert_eq!(from_copy, from_book, "snapshot copy diverged");
            assert_eq!(copy.to_parts(), self.book.to_parts());
            self.check();
        }
    }
}

fn run_stream(spec: MarketSpec, ops: &[Op]) -> Seen {
    let mut h = Harness::new(spec);
    for op in ops {
        h.apply(op);
    }
    h.finish();
    h.seen
}

fn stream_strategy() -> impl Strategy<Value = (MarketSpec, Vec<Op>)> {
    (
        0u32..=30,
        0u32..=30,
        // No collar, about 3 levels either side, about 1 level either side.
        prop_oneof![2 => Just(0u32), 1 => Just(150), 1 => Just(60)],
        prop::collection::vec(op_strategy(), 1..300),
    )
        .prop_map(|(maker, taker, collar, ops)| (spec_with(maker, taker, collar), ops))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn book_matches_the_reference_matcher((spec, ops) in stream_strategy()) {
        run_stream(spec, &ops);
    }
}

/// The random streams reach every path the property is meant to cover.
#[test]
fn random_streams_exercise_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut all = Seen::default();
    for _ in 0..48 {
        let (spec, ops) = stream_strategy()
            .new_tree(&mut runner)
            .expect("strategy")
            .current();
        let s = run_stream(spec, &ops);
        all.fills += s.fills;
        all.partial_maker_fills += s.partial_maker_fills;
        all.stp_maker_cancels += s.stp_maker_cancels;
        all.rested += s.rested;
        all.filled += s.filled;
        all.reduced += s.reduced;
        all.replaced += s.replaced;
        all.cancels += s.cancels;
        all.snapshots += s.snapshots;
        for (k, n) in s.cancelled {
            for _ in 0..n {
                bump(&mut all.cancelled, k);
            }
        }
        for (k, n) in s.rejected {
            for _ in 0..n {
                bump(&mut all.rejected, k);
            }
        }
    }
    let counts = [
        all.fills,
        all.partial_maker_fills,
        all.stp_maker_cancels,
        all.rested,
        all.filled,
        all.reduced,
        all.replaced,
        all.cancels,
        all.snapshots,
    ];
    assert!(counts.iter().all(|&n| n > 0), "{all:?}");
    for reason in [Unfilled, SelfTrade, Stopped] {
        assert!(
            all.cancelled.iter().any(|(r, _)| *r == reason),
            "no {reason:?}: {all:?}"
        );
    }
    for code in [
        RejectCode::MarketHalted,
        RejectCode::PostOnlyWouldTake,
        RejectCode::FokNotFilled,
        RejectCode::PriceOutsideCollar,
        RejectCode::NoLiquidity,
        RejectCode::InvalidTimeInForce,
        RejectCode::MissingProtectionPrice,
        RejectCode::UnknownOrder,
        RejectCode::NotOwner,
        RejectCode::InvalidAmend,
        RejectCode::InvalidMarketState,
    ] {
        assert!(
            all.rejected.iter().any(|(c, _)| *c == code),
            "no {code:?}: {all:?}"
        );
    }
}

#[test]
fn amend_while_halted_reduces_in_place_but_refuses_a_replace() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, ALICE, Buy, 1000, 300));
    b.halt().unwrap();
    assert_eq!(
        amend(&mut b, 1, ALICE, 1010, 300),
        Err(RejectCode::MarketHalted)
    );
    assert_eq!(
        amend(&mut b, 1, ALICE, 1000, 400),
        Err(RejectCode::MarketHalted)
    );
    assert_eq!(
        amend(&mut b, 1, ALICE, 1000, 100),
        Ok(AmendResult::Reduced {
            account: account(ALICE),
            released: Amount(2004),
        })
    );
    assert_eq!(b.len(), 1);
}
