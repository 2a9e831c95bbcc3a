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
fn lim(spec: &MarketSpec, id: u64, owner: Principal, side: Side, price: u64, qty: u64) -> OrderTicket {
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
fn mkt(spec: &MarketSpec, id: u64, owner: Principal, side: Side, tif: TimeInForce, price: u64, qty: u64) -> OrderTicket {
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
        events: vec![MatchEvent::MakerCancelled(closed(999, ALICE, 1, 1, Requested))],
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

fn amend(book: &mut Book, id: u64, by: Principal, price: u64, qty: u64) -> Result<AmendResult, RejectCode> {
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

fn fill(price: u64, qty: u64, taker: Leg, maker: Leg, maker_done: bool, maker_hold_left: u64) -> MatchEvent {
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

fn closed(order: u64, owner: Principal, remaining: u64, hold_left: u64, reason: CancelReason) -> Closed {
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

fn ro(id: u64, owner: Principal, side: Side, price: u64, remaining: u64, hold: u64) -> RestingOrder {
    RestingOrder {
        id: OrderId(id),
        account: account(owner),
        owner,
        price: Price(price),
        remaining: Qty(remaining),
        hold: Amount(hold),
        side,
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
    assert_eq!(b.order(OrderId(3)), Some(&ro(3, CAROL, Buy, 1000, 300, 3006)));
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
            fill(1000, 100, bleg(5, ALICE, 1002, 100, 2), sleg(4, CAROL, 100, 999, 1), true, 0),
            // 2 lots @1005: notional 2010, taker fee floor(4.02) = 4, maker fee floor(2.01) = 2.
            fill(1005, 200, bleg(5, ALICE, 2014, 200, 4), sleg(2, BOB, 200, 2008, 2), true, 0),
            // 1 lot @1005 (of 2): notional 1005, taker fee 2, maker fee 1.
            fill(1005, 100, bleg(5, ALICE, 1007, 100, 2), sleg(3, CAROL, 100, 1004, 1), false, 100),
        ],
        // 4048 - 1002 - 2014 - 1007.
        filled(25),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(
        b.orders(Sell),
        vec![ro(3, CAROL, Sell, 1005, 100, 100), ro(1, BOB, Sell, 1010, 100, 100)]
    );
    assert_eq!(b.orders(Buy), vec![]);
    assert_eq!(depth(&b), (vec![], vec![lv(1005, 100, 1), lv(1010, 100, 1)]));
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
        vec![fill(1000, 300, sleg(3, CAROL, 300, 2994, 6), bleg(1, ALICE, 3003, 300, 3), true, 3)],
        rested(100, 0),
    );
    assert_eq!(place(&mut b, &lim(&s, 3, CAROL, Sell, 1000, 400)), Ok(want));
    assert_eq!(b.orders(Buy), vec![ro(2, BOB, Buy, 995, 100, 996)]);
    assert_eq!(b.orders(Sell), vec![ro(3, CAROL, Sell, 1000, 100, 100)]);

    // IOC sell 2 lots @990 trades at the maker's 995, not 990; the rest is cancelled.
    let want = out(
        // notional 995: taker fee floor(1.99) = 1, maker fee floor(0.995) = 0; the maker
        // held 996.
        vec![fill(995, 100, sleg(4, ALICE, 100, 994, 1), bleg(2, BOB, 995, 100, 0), true, 1)],
        cancelled(closed(4, ALICE, 100, 100, Unfilled)),
    );
    assert_eq!(place(&mut b, &ioc(lim(&s, 4, ALICE, Sell, 990, 200))), Ok(want));
    assert_eq!(b.orders(Buy), vec![]);
    assert_eq!(b.orders(Sell), vec![ro(3, CAROL, Sell, 1000, 100, 100)]);
    assert_eq!(b.last_price(), Some(Price(995)));

    // An IOC that crosses nothing is cancelled whole, and nothing changes.
    // 1990 + floor(3.98) = 1993.
    let want = out(vec![], cancelled(closed(5, BOB, 200, 1993, Unfilled)));
    assert_eq!(place(&mut b, &ioc(lim(&s, 5, BOB, Buy, 995, 200))), Ok(want));
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
        vec![fill(1000, 100, bleg(2, ALICE, 1002, 100, 2), sleg(1, BOB, 100, 999, 1), true, 0)],
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
            vec![fill(1005, 100, sleg(10 + k, BOB, 100, 1003, 2), bleg(1, ALICE, 1006, 100, 1), k == 7, left)],
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
        vec![fill(1000, 100, sleg(2, ALICE, 100, 1000, 0), bleg(1, BOB, 1003, 100, 3), false, 1003)],
        filled(0),
    );
    assert_eq!(place(&mut b, &ioc(lim(&s, 2, ALICE, Sell, 1000, 100))), Ok(want));
    // 1 lot @1000 needs exactly 1003 again.
    assert_eq!(b.orders(Buy), vec![ro(1, BOB, Buy, 1000, 100, 1003)]);

    rest(&mut b, &lim(&s, 3, BOB, Sell, 1010, 100));
    let t = ioc(lim(&s, 4, ALICE, Buy, 1010, 100));
    // 1010 + floor(3.03) = 1013.
    assert_eq!(t.hold, Amount(1013));
    // Taker buy: notional 1010, taker fee floor(0.505) = 0, maker fee floor(3.03) = 3.
    let want = out(
        vec![fill(1010, 100, bleg(4, ALICE, 1010, 100, 0), sleg(3, BOB, 100, 1007, 3), true, 0)],
        filled(3),
    );
    assert_eq!(place(&mut b, &t), Ok(want));

    // No fees at all.
    let s = spec_with(0, 0, 0);
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, BOB, Sell, 995, 200));
    let want = out(
        vec![fill(995, 200, bleg(2, ALICE, 1990, 200, 0), sleg(1, BOB, 200, 1990, 0), true, 0)],
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
            fill(1000, 100, bleg(4, ALICE, 1002, 100, 2), sleg(1, BOB, 100, 999, 1), true, 0),
            fill(1005, 100, bleg(4, ALICE, 1007, 100, 2), sleg(2, BOB, 100, 1004, 1), true, 0),
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
            fill(1000, 100, sleg(3, ALICE, 100, 998, 2), bleg(1, BOB, 1001, 100, 1), true, 1),
            // notional 500: seller fee 1, buyer fee floor(0.5) = 0 (held 501).
            fill(500, 100, sleg(3, ALICE, 100, 499, 1), bleg(2, CAROL, 500, 100, 0), true, 1),
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
        vec![fill(1000, 200, bleg(3, ALICE, 2004, 200, 4), sleg(1, BOB, 200, 1998, 2), true, 0)],
        filled(0),
    );
    assert_eq!(place(&mut b, &mkt(&s, 3, ALICE, Buy, Fok, 1000, 200)), Ok(want));
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
        (lim(&s, 2, ALICE, Buy, 1000, 150), RejectCode::InvalidQuantity),
        (lim(&s, 2, ALICE, Buy, 1000, 0), RejectCode::InvalidQuantity),
        (lim(&s, 2, ALICE, Sell, 1000, 1_000_000_100), RejectCode::QuantityTooLarge),
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
            fill(1000, 100, bleg(5, ALICE, 1002, 100, 2), sleg(1, BOB, 100, 999, 1), true, 0),
            fill(1005, 100, bleg(5, ALICE, 1007, 100, 2), sleg(2, CAROL, 100, 1004, 1), true, 0),
            // notional 1010: taker fee floor(2.02) = 2, maker fee floor(1.01) = 1.
            fill(1010, 100, bleg(5, ALICE, 1012, 100, 2), sleg(3, BOB, 100, 1009, 1), true, 0),
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
        vec![fill(1000, 200, sleg(9, ALICE, 200, 1996, 4), bleg(6, BOB, 2002, 200, 2), true, 2)],
        filled(0),
    );
    assert_eq!(place(&mut b, &fok(lim(&s, 9, ALICE, Sell, 995, 200))), Ok(want));
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
            fill(1000, 100, bleg(4, ALICE, 1002, 100, 2), sleg(2, BOB, 100, 999, 1), true, 0),
        ],
        filled(0),
    );
    assert_eq!(place(&mut b, &fok(lim(&s, 4, ALICE, Buy, 1000, 100))), Ok(want));
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
        assert_eq!(place(&mut b, &t), Err(RejectCode::PostOnlyWouldTake), "{t:?}");
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
            fill(1000, 100, bleg(5, ALICE, 1002, 100, 2), sleg(2, BOB, 100, 999, 1), true, 0),
            MatchEvent::MakerCancelled(Closed {
                account: AccountId(99),
                ..closed(3, ALICE, 100, 100, SelfTrade)
            }),
            fill(1005, 100, bleg(5, ALICE, 1007, 100, 2), sleg(4, CAROL, 100, 1004, 1), true, 0),
        ],
        // 2014 - 2009.
        filled(5),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert!(b.is_empty());

    // Own makers only: all cancelled, then the GTC rest rests.
    rest(&mut b, &lim(&s, 6, BOB, Buy, 990, 100));
    let want = out(
        vec![MatchEvent::MakerCancelled(closed(6, BOB, 100, 991, SelfTrade))],
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
    let t = stp(lim(&s, 4, ALICE, Buy, 1000, 300), SelfTradePrevention::CancelIncoming);
    assert_eq!(t.hold, Amount(3006));
    let want = out(
        // notional 995: taker fee floor(1.99) = 1, maker fee 0.
        vec![fill(995, 100, bleg(4, ALICE, 996, 100, 1), sleg(1, BOB, 100, 995, 0), true, 0)],
        // 3006 - 996.
        cancelled(closed(4, ALICE, 200, 2010, SelfTrade)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(
        b.orders(Sell),
        vec![ro(2, ALICE, Sell, 1000, 100, 100), ro(3, BOB, Sell, 1000, 100, 100)]
    );
    assert_eq!(b.orders(Buy), vec![]);

    // With the own order first, nothing trades.
    let t = stp(ioc(lim(&s, 5, ALICE, Buy, 1000, 100)), SelfTradePrevention::CancelIncoming);
    let want = out(vec![], cancelled(closed(5, ALICE, 100, 1002, SelfTrade)));
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.len(), 2);
}

#[test]
fn stp_cancel_both_removes_the_maker_and_stops_the_taker() {
    let s = spec();
    let mut b = stp_book(&s);
    let t = stp(lim(&s, 4, ALICE, Buy, 1000, 300), SelfTradePrevention::CancelBoth);
    let want = out(
        vec![
            fill(995, 100, bleg(4, ALICE, 996, 100, 1), sleg(1, BOB, 100, 995, 0), true, 0),
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
        vec![fill(1000, 100, bleg(4, ALICE, 1002, 100, 2), sleg(3, BOB, 100, 999, 1), true, 0)],
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
        assert_eq!(place(&mut b, &t), Err(RejectCode::PriceOutsideCollar), "{t:?}");
    }
    rest(&mut b, &lim(&s, 5, CAROL, Sell, 1050, 100));
    rest(&mut b, &lim(&s, 6, CAROL, Sell, 1100, 100));
    rest(&mut b, &lim(&s, 7, CAROL, Buy, 900, 100));
    // Band [900, 1100]: a market sell trades the bid at 900 (the edge).
    assert_eq!(
        place(&mut b, &mkt(&s, 8, ALICE, Sell, Ioc, 0, 100)),
        Ok(out(
            // notional 900: seller fee 1, buyer fee 0; buyer held 900 + floor(1.8) = 901.
            vec![fill(900, 100, sleg(8, ALICE, 100, 899, 1), bleg(7, CAROL, 900, 100, 0), true, 1)],
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
        vec![fill(990, 100, bleg(11, ALICE, 991, 100, 1), sleg(10, BOB, 100, 990, 0), true, 0)],
        filled(0),
    );
    assert_eq!(place(&mut b, &ioc(lim(&s, 11, ALICE, Buy, 990, 100))), Ok(want));
    // Band [891, 1089]: a limit at 1100 is now outside.
    assert_eq!(
        place(&mut b, &lim(&s, 12, ALICE, Buy, 1100, 100)),
        Err(RejectCode::PriceOutsideCollar)
    );
    rest(&mut b, &lim(&s, 12, BOB, Sell, 1000, 100));
    let want = out(
        vec![fill(1000, 100, bleg(13, ALICE, 1002, 100, 2), sleg(12, BOB, 100, 999, 1), true, 0)],
        filled(0),
    );
    assert_eq!(place(&mut b, &ioc(lim(&s, 13, ALICE, Buy, 1000, 100))), Ok(want));

    // Band [900, 1100]. A market buy protected at 1200 trades 1050 and 1100 and is stopped
    // at the band edge although 1150 is within its protection price. The band is fixed when
    // the order arrives: the trade at 1050 does not widen it to 1155 for this order.
    let t = mkt(&s, 14, ALICE, Buy, Ioc, 1200, 300);
    // 3600 + floor(7.2) = 3607.
    assert_eq!(t.hold, Amount(3607));
    let want = out(
        vec![
            // notional 1050: taker fee floor(2.1) = 2, maker fee floor(1.05) = 1.
            fill(1050, 100, bleg(14, ALICE, 1052, 100, 2), sleg(5, CAROL, 100, 1049, 1), true, 0),
            // notional 1100: taker fee floor(2.2) = 2, maker fee floor(1.1) = 1.
            fill(1100, 100, bleg(14, ALICE, 1102, 100, 2), sleg(6, CAROL, 100, 1099, 1), true, 0),
        ],
        // 3607 - 2154.
        cancelled(closed(14, ALICE, 100, 1453, Stopped)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.orders(Sell), vec![ro(1, CAROL, Sell, 1150, 100, 100)]);

    // Band [990, 1210]. A market sell without a price is stopped at 990.
    rest(&mut b, &lim(&s, 15, BOB, Buy, 1000, 100));
    let want = out(
        vec![fill(1000, 100, sleg(16, ALICE, 100, 998, 2), bleg(15, BOB, 1001, 100, 1), true, 1)],
        cancelled(closed(16, ALICE, 200, 200, Stopped)),
    );
    assert_eq!(place(&mut b, &mkt(&s, 16, ALICE, Sell, Ioc, 0, 300)), Ok(want));
    assert_eq!(b.orders(Buy), vec![ro(2, CAROL, Buy, 850, 100, 851)]);

    // Band [900, 1100]. Stopped by its own protection price inside the band: Unfilled.
    rest(&mut b, &lim(&s, 17, CAROL, Sell, 1095, 100));
    let t = mkt(&s, 18, ALICE, Buy, Ioc, 1100, 200);
    // 2200 + floor(4.4) = 2204.
    assert_eq!(t.hold, Amount(2204));
    let want = out(
        // notional 1095: taker fee floor(2.19) = 2, maker fee floor(1.095) = 1.
        vec![fill(1095, 100, bleg(18, ALICE, 1097, 100, 2), sleg(17, CAROL, 100, 1094, 1), true, 0)],
        cancelled(closed(18, ALICE, 100, 1107, Unfilled)),
    );
    assert_eq!(place(&mut b, &t), Ok(want));
    // A market sell protected at 1000 stops at its own price, not at the band: Unfilled.
    rest(&mut b, &lim(&s, 19, BOB, Buy, 1000, 100));
    rest(&mut b, &lim(&s, 20, BOB, Buy, 990, 100));
    let want = out(
        // notional 1000 (last was 1095: band [986, 1204]).
        vec![fill(1000, 100, sleg(21, ALICE, 100, 998, 2), bleg(19, BOB, 1001, 100, 1), true, 1)],
        cancelled(closed(21, ALICE, 100, 100, Unfilled)),
    );
    assert_eq!(place(&mut b, &mkt(&s, 21, ALICE, Sell, Ioc, 1000, 200)), Ok(want));
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
    assert_eq!(cancel(&mut b, 2, BOB), Ok(closed(2, BOB, 100, 100, Requested)));
    assert_eq!(b.resume(), Ok(()));
    assert!(!b.halted());
    let want = out(
        vec![fill(1000, 100, bleg(3, ALICE, 1002, 100, 2), sleg(1, BOB, 100, 999, 1), true, 0)],
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
    assert_eq!(cancel(&mut b, 2, BOB), Ok(closed(2, BOB, 200, 2004, Requested)));
    assert_eq!(
        b.orders(Buy),
        vec![ro(1, ALICE, Buy, 1000, 100, 1002), ro(3, CAROL, Buy, 1000, 100, 1002)]
    );
    assert_eq!(depth(&b), (vec![lv(1000, 200, 2)], vec![lv(1010, 100, 1)]));
    assert_eq!(cancel(&mut b, 2, BOB), Err(RejectCode::UnknownOrder));
    assert_eq!(cancel(&mut b, 99, SYSTEM), Err(RejectCode::UnknownOrder));
    assert_eq!(cancel(&mut b, 4, SYSTEM), Ok(closed(4, BOB, 100, 100, Requested)));
    assert_eq!(b.best_ask(), None);

    // A partially filled order returns what is left of its hold.
    let want = out(
        vec![fill(1000, 100, sleg(5, BOB, 100, 998, 2), bleg(1, ALICE, 1001, 100, 1), true, 1)],
        filled(0),
    );
    assert_eq!(place(&mut b, &ioc(lim(&s, 5, BOB, Sell, 1000, 100))), Ok(want));
    rest(&mut b, &lim(&s, 6, ALICE, Buy, 1000, 300));
    let want = out(
        vec![
            fill(1000, 100, sleg(7, BOB, 100, 998, 2), bleg(3, CAROL, 1001, 100, 1), true, 1),
            fill(1000, 100, sleg(7, BOB, 100, 998, 2), bleg(6, ALICE, 1001, 100, 1), false, 2005),
        ],
        filled(0),
    );
    assert_eq!(place(&mut b, &ioc(lim(&s, 7, BOB, Sell, 1000, 200))), Ok(want));
    assert_eq!(cancel(&mut b, 6, ALICE), Ok(closed(6, ALICE, 200, 2005, Requested)));
    assert!(b.is_empty());
    assert_eq!(depth(&b), (vec![], vec![]));

    // Slots are reused: a level of three, cancel the middle one, then the head.
    for id in 8..=10 {
        rest(&mut b, &lim(&s, id, CAROL, Sell, 1020, 100));
    }
    assert_eq!(cancel(&mut b, 9, CAROL).map(|c| c.order), Ok(OrderId(9)));
    assert_eq!(
        b.orders(Sell),
        vec![ro(8, CAROL, Sell, 1020, 100, 100), ro(10, CAROL, Sell, 1020, 100, 100)]
    );
    assert_eq!(cancel(&mut b, 8, CAROL).map(|c| c.order), Ok(OrderId(8)));
    rest(&mut b, &lim(&s, 11, BOB, Sell, 1020, 100));
    assert_eq!(
        b.orders(Sell),
        vec![ro(10, CAROL, Sell, 1020, 100, 100), ro(11, BOB, Sell, 1020, 100, 100)]
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
        vec![ro(1, ALICE, Buy, 1000, 100, 1002), ro(2, BOB, Buy, 1000, 100, 1002)]
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
        vec![fill(1000, 100, sleg(4, CAROL, 100, 998, 2), bleg(1, ALICE, 1001, 100, 1), true, 1)],
        filled(0),
    );
    assert_eq!(place(&mut b, &ioc(lim(&s, 4, CAROL, Sell, 1000, 100))), Ok(want));
    assert_eq!(b.orders(Buy), vec![ro(2, BOB, Buy, 1000, 100, 1002)]);
}

#[test]
fn amend_after_a_partial_fill_releases_the_rounding_surplus() {
    let s = spec();
    let mut b = Book::new(s.clone());
    rest(&mut b, &lim(&s, 1, ALICE, Buy, 1000, 300));
    let want = out(
        vec![fill(1000, 100, sleg(2, BOB, 100, 998, 2), bleg(1, ALICE, 1001, 100, 1), false, 2005)],
        filled(0),
    );
    assert_eq!(place(&mut b, &ioc(lim(&s, 2, BOB, Sell, 1000, 100))), Ok(want));
    // Holds 2005 for 2 lots; 1 lot needs 1002.
    assert_eq!(
        amend(&mut b, 1, ALICE, 1000, 100),
        Ok(AmendResult::Reduced {
            account: account(ALICE),
            released: Amount(1003),
        })
    );
    assert_eq!(cancel(&mut b, 1, ALICE), Ok(closed(1, ALICE, 100, 1002, Requested)));
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

    assert_eq!(amend(&mut b, 1, ALICE, 1000, 200), Err(RejectCode::InvalidAmend));
    assert_eq!(amend(&mut b, 1, BOB, 1000, 100), Err(RejectCode::NotOwner));
    assert_eq!(amend(&mut b, 9, ALICE, 1000, 100), Err(RejectCode::UnknownOrder));
    assert_eq!(amend(&mut b, 3, BOB, 1010, 150), Err(RejectCode::InvalidQuantity));
    assert_eq!(amend(&mut b, 3, BOB, 1010, 0), Err(RejectCode::InvalidQuantity));
    assert_eq!(amend(&mut b, 3, BOB, 1012, 100), Err(RejectCode::InvalidPrice));
    assert_eq!(amend(&mut b, 3, BOB, 0, 100), Err(RejectCode::InvalidPrice));

    // Larger at the same price: replaced.
    assert_eq!(
        amend(&mut b, 1, ALICE, 1000, 300),
        Ok(AmendResult::Replaced(closed(1, ALICE, 200, 2004, Replaced)))
    );
    assert_eq!(b.order(OrderId(1)), None);
    assert_eq!(amend(&mut b, 1, ALICE, 1000, 100), Err(RejectCode::UnknownOrder));
    assert_eq!(cancel(&mut b, 1, ALICE), Err(RejectCode::UnknownOrder));
    // The replacement arrives later and queues behind order 2.
    rest(&mut b, &lim(&s, 4, ALICE, Buy, 1000, 300));
    assert_eq!(
        b.orders(Buy),
        vec![ro(2, BOB, Buy, 1000, 100, 1002), ro(4, ALICE, Buy, 1000, 300, 3006)]
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
    let ops: Vec<Box<dyn Fn(&mut Book) -> String>> = vec![
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
    let cases: Vec<(&str, Box<dyn Fn(&mut Vec<RestingOrder>)>)> = vec![
        ("duplicate id", Box::new(|o| o.push(o[0]))),
        (
            "duplicate id on the other side",
            Box::new(|o| o.push(RestingOrder { side: Sell, price: Price(1020), hold: Amount(200), ..o[0] })),
        ),
        ("crossed book", Box::new(|o| o.push(ro(20, BOB, Sell, 1000, 100, 100)))),
        ("crossed book, bid above ask", Box::new(|o| o.push(ro(20, BOB, Buy, 1005, 100, 1007)))),
        ("zero remaining", Box::new(|o| o[2].remaining = Qty(0))),
        ("remaining off the lot", Box::new(|o| o[2].remaining = Qty(150))),
        ("hold below need", Box::new(|o| o[0].hold = Amount(2003))),
        ("sell hold below need", Box::new(|o| o[4].hold = Amount(299))),
        ("price off the tick", Box::new(|o| o[4].price = Price(1012))),
        ("zero price", Box::new(|o| o.push(ro(20, BOB, Buy, 0, 100, 0)))),
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
            .map(|id| fill(1000, 100, bleg(taker, ALICE, 1002, 100, 2), sleg(id, BOB, 100, 999, 1), true, 0))
            .collect()
    };
    let mut b = fresh();
    // Needs one fill too many.
    assert_eq!(
        place(&mut b, &fok(lim(&s, taker, ALICE, Buy, 1000, 100 * (n + 1)))),
        Err(RejectCode::FokNotFilled)
    );
    let t = ioc(lim(&s, taker, ALICE, Buy, 1000, 100 * (n + 1)));
    // 10_001_000 + 20_002.
    assert_eq!(t.hold, Amount(10_021_002));
    let want = out(expected_fills(), cancelled(closed(taker, ALICE, 100, 1002, Stopped)));
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.orders(Sell), vec![ro(n + 1, BOB, Sell, 1000, 100, 100)]);

    // A GTC taker is stopped too (its rest would still cross), it does not rest.
    let mut b = fresh();
    let t = lim(&s, taker, ALICE, Buy, 1000, 100 * (n + 1));
    let want = out(expected_fills(), cancelled(closed(taker, ALICE, 100, 1002, Stopped)));
    assert_eq!(place(&mut b, &t), Ok(want));
    assert_eq!(b.orders(Buy), vec![]);

    // Exactly the limit is fine for FOK.
    let mut b = fresh();
    let want = out(expected_fills(), filled(0));
    assert_eq!(place(&mut b, &fok(lim(&s, taker, ALICE, Buy, 1000, 100 * n))), Ok(want));
    assert_eq!(b.len(), 1);
}
