//! Black-box tests of the client commands: a real `tradelog serve` (or an in-process
//! server) on free ports of 127.0.0.1, driven by the real `tradelog` binary.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{json, ok, tl, Tail};

const WAIT: Duration = Duration::from_secs(30);
/// The buyer's order: the first order of shard 1 (`1 << 48 | 1`).
const BUY: &str = "281474976710657";

fn free_port() -> u16 {
    tradelog_server::ports::free_loopback_port().expect("a free port")
}

/// The `[shard S, input I]` of an answer with the (timing-dependent) input masked.
fn mask_input(s: &str) -> String {
    s.lines()
        .map(|l| match l.rfind(", input ") {
            Some(i) if l.ends_with(']') => format!("{}, input _]", &l[..i]),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Polls `f` until it returns true, for at most [`WAIT`].
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Available and held of (account, asset) from `account balances --json`.
fn balance(server: &str, account: u64, asset: u64) -> (u64, u64) {
    let b = json(server, &["account", "balances", &account.to_string()]);
    b["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["asset"] == asset)
        .map(|x| {
            (
                x["available"].as_u64().unwrap(),
                x["held"].as_u64().unwrap(),
            )
        })
        .unwrap_or((0, 0))
}

/// Event lines (`S:SEQ  TIME  EVENT`) grouped by shard, in order, without the time.
fn by_shard(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in text.lines() {
        let mut f = l.splitn(3, "  ");
        let (Some(pos), Some(_time), Some(event)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Some((shard, _)) = pos.split_once(':') else {
            continue;
        };
        m.entry(shard.to_owned())
            .or_default()
            .push(format!("{pos}  {event}"));
    }
    m
}

struct Serve {
    child: Child,
    grpc: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn serve(dir: &Path) -> Serve {
    let (grpc_port, http_port) = (free_port(), free_port());
    let log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--shards", "2"])
        .args(["--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
        .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tradelog serve");
    let mut s = Serve {
        child,
        grpc: format!("http://127.0.0.1:{grpc_port}"),
    };
    eventually("tradelog serve to answer", || {
        if let Ok(Some(status)) = s.child.try_wait() {
            panic!("tradelog serve exited early: {status}");
        }
        tl(&s.grpc, &["catalog"]).0 == 0
    });
    s
}

fn terminate(mut s: Serve) {
    let ok = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "graceful exit");
            return;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Catalog, fee account, market, two funded accounts (1 on shard 1, 2 on shard 0 with
/// the market). Every input number is deterministic here: no cross-shard work yet.
fn setup(s: &str) {
    let out = [
        ok(s, &["asset", "create", "1", "USD", "2"]),
        ok(s, &["asset", "create", "2", "BTC", "8"]),
        ok(s, &["account", "open", "100", "--owner", "0"]),
        ok(
            s,
            &[
                "market",
                "create",
                "1",
                "--base",
                "BTC",
                "--quote",
                "usd",
                "--lot-size",
                "1000000",
                "--tick-size",
                "100",
                "--maker-fee-bps",
                "10",
                "--taker-fee-bps",
                "20",
                "--fee-account",
                "100",
            ],
        ),
        ok(s, &["account", "open", "1", "--owner", "1"]),
        ok(s, &["account", "open", "2", "--owner", "2"]),
        ok(
            s,
            &["account", "deposit", "1", "USD", "10000000", "--id", "1"],
        ),
        ok(
            s,
            &["account", "deposit", "2", "2", "500000000", "--id", "2"],
        ),
        ok(
            s,
            &["account", "deposit", "2", "2", "500000000", "--id", "2"],
        ),
    ]
    .concat();
    assert_eq!(
        out,
        "accepted: asset 1 USD (scale 2) [shard 0, input 1]\n\
         accepted: asset 2 BTC (scale 8) [shard 0, input 2]\n\
         accepted: account 100 opened for owner 0 [shard 0, input 3]\n\
         accepted: market 1 (base 2, quote 1) on shard 0 [shard 0, input 4]\n\
         accepted: account 1 opened for owner 1 [shard 1, input 4]\n\
         accepted: account 2 opened for owner 2 [shard 0, input 5]\n\
         accepted: deposit of 10000000 (asset 1) into account 1 (transfer 1) [shard 1, input 5]\n\
         accepted: deposit of 500000000 (asset 2) into account 2 (transfer 2) [shard 0, input 6]\n\
         accepted: deposit of 500000000 (asset 2) into account 2 (transfer 2) (duplicate: the \
         original answer to this idempotency key) [shard 0, input 0]\n"
    );
}

/// A cross-shard transfer, then a resting ask and a crossing bid; waits for each to settle.
fn trade(s: &str) {
    let out = ok(
        s,
        &["account", "transfer", "1", "2", "USD", "2500", "--id", "3"],
    );
    assert_eq!(
        out,
        "accepted: transfer 3 of 2500 (asset 1) from account 1 to account 2; in flight: \
         completes on the credit account's shard [shard 1, input 6]\n"
    );
    eventually("the transfer to complete", || {
        balance(s, 2, 1) == (2_500, 0) && balance(s, 1, 1) == (9_997_500, 0)
    });
    let out = [
        ok(
            s,
            &[
                "order", "place", "2", "1", "sell", "2000000", "--price", "3000000",
            ],
        ),
        ok(
            s,
            &[
                "order",
                "place",
                "1",
                "1",
                "buy",
                "1000000",
                "--price",
                "3000000",
                "--client-order-id",
                "5",
            ],
        ),
    ]
    .concat();
    assert_eq!(
        mask_input(&out),
        format!(
            "accepted: order 1 (sell 2000000 @ 3000000 in market 1 for account 2) [shard 0, input _]\n\
             accepted: order {BUY} (buy 1000000 @ 3000000 in market 1 for account 1) [shard 1, input _]\n"
        )
    );
    eventually("the buyer's settlement", || {
        balance(s, 1, 2) == (1_000_000, 0) && balance(s, 1, 1).1 == 0
    });
}

/// Each line's words, with the words at `drop` (indexes) left out: times and
/// timing-dependent sequence numbers.
fn words(text: &str, drop: &[usize]) -> Vec<String> {
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, w)| w)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The query commands over the query RPCs: trades (GetTrades), candles, open orders,
/// statements, as-of points and stale reads.
#[test]
fn query_commands_against_tradelog_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = serve(&tmp.path().join("data"));
    let grpc = srv.grpc.clone();
    let s = grpc.as_str();
    setup(s);
    trade(s);

    // Trades through GetTrades: the table (time left out), the JSON (timestamp and
    // sequence numbers checked apart), paging with --after and --limit, a range.
    let out = ok(s, &["trades", "1"]);
    assert_eq!(
        words(&out, &[0]),
        [
            "PRICE QTY TAKER SIDE TAKER ORDER MAKER ORDER TAKER ACCOUNT MAKER ACCOUNT TAKER FEE MAKER FEE".to_owned(),
            format!("3000000 1000000 buy {BUY} 1 1 2 6000 3000"),
        ]
    );
    let mut t = json(s, &["trades", "1"]);
    let seq = t["trades"][0]["seq"].take().as_u64().unwrap();
    let ts = t["trades"][0]["timestamp"].take().as_u64().unwrap();
    let position = t["position"].take();
    let (shard, end) = position.as_str().unwrap().split_once(':').unwrap();
    assert_eq!(shard, "0");
    assert!(end.parse::<u64>().unwrap() >= seq, "{position} after {seq}");
    assert_eq!(
        t,
        serde_json::json!({
            "market": 1,
            "position": null,
            "trades": [{
                "shard": 0, "seq": null, "timestamp": null,
                "price": 3_000_000, "qty": 1_000_000, "taker_side": "Buy",
                "taker_order": 281_474_976_710_657u64, "maker_order": 1,
                "taker_account": 1, "maker_account": 2, "taker_fee": 6_000, "maker_fee": 3_000,
            }],
        })
    );
    let after = format!("0:{seq}");
    assert_eq!(ok(s, &["trades", "1", "--after", &after]), "(no trades)\n");
    assert_eq!(
        ok(
            s,
            &[
                "trades",
                "1",
                "--after",
                &(seq - 1).to_string(),
                "--limit",
                "1"
            ]
        ),
        out
    );
    let before = (ts - 1).to_string();
    assert_eq!(ok(s, &["trades", "1", "--to", &before]), "(no trades)\n");
    assert_eq!(ok(s, &["trades", "1", "--from", &before]), out);

    // Candles: one a day over twenty years, one of them with the trade (its start left
    // out: the day of the run).
    let out = ok(
        s,
        &[
            "candles",
            "1",
            "--interval",
            "1d",
            "--from",
            "2020-01-01T00:00:00Z",
            "--to",
            "2040-01-01T00:00:00Z",
        ],
    );
    assert_eq!(
        words(&out, &[0]),
        [
            "OPEN HIGH LOW CLOSE VOLUME QUOTE VOLUME TRADES",
            "3000000 3000000 3000000 3000000 1000000 3000000 1",
        ]
    );
    let c = json(
        s,
        &["candles", "1", "--interval", "1h", "--to", &ts.to_string()],
    );
    assert_eq!(
        c["candles"],
        serde_json::json!([]),
        "the trade is at --to: not in the range"
    );
    let (code, _, err) = tl(s, &["candles", "1", "--interval", "5x"]);
    assert_eq!(
        (code, err.lines().next().unwrap()),
        (2, "error: invalid value '5x' for '--interval <INTERVAL>': \"5x\": expected seconds or a number with s, m, h or d (5m, 1h)")
    );

    // Open orders: the seller's resting ask; the buyer's order filled.
    let out = ok(s, &["account", "orders", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("account 2  open orders 1  (read shard 0 event "),
        "{out}"
    );
    assert_eq!(
        lines[1..].join("\n"),
        "ORDER  MARKET  SIDE    PRICE  REMAINING     HELD  STP             POST-ONLY\n    \
             1       1  sell  3000000    1000000  1000000  cancel-resting  no"
    );
    let o = json(s, &["account", "orders", "2"]);
    assert_eq!(
        o["orders"],
        serde_json::json!([{
            "order": 1, "market": 1, "account": 2, "owner": 2, "side": "Sell",
            "price": 3_000_000, "remaining": 1_000_000, "held": 1_000_000,
            "stp": "CancelResting", "post_only": false,
        }])
    );
    let out = ok(s, &["account", "orders", "1"]);
    assert_eq!(out.lines().nth(1), Some("(no open orders)"), "{out}");

    // The buyer's USD statement: deposit, the transfer out (held, then posted), the
    // order's hold and its settlement (time and sequence numbers left out).
    let out = ok(s, &["account", "statement", "1", "USD"]);
    let all = words(&out, &[]);
    assert!(
        all[0]
            .starts_with("account 1 asset 1 from 1970-01-01T00:00:00.000Z to now (shard 1, event "),
        "{out}"
    );
    let rows = words(&out, &[0, 1]);
    let n = all.len();
    assert_eq!(
        [&all[1..2], &rows[2..n - 1], &all[n - 1..]].concat(),
        [
            "opening available 0 held 0".to_owned(),
            "CREDIT DEBIT AVAILABLE HELD CAUSE".to_owned(),
            "10000000 0 10000000 0 Deposited id=1 account=1 asset=1 amount=10000000".to_owned(),
            "0 0 9997500 2500 TransferInitiated id=3 debit=1 credit=2 asset=1 amount=2500 to=0".to_owned(),
            "0 2500 9997500 0 TransferPosted id=3 debit=1 credit=2 asset=1 amount=2500".to_owned(),
            format!("0 0 6991500 3006000 FundsHeld order={BUY} account=1 asset=1 amount=3006000"),
            format!("0 3006000 6991500 0 Settled order={BUY} account=1 paid_asset=1 paid=3006000 received_asset=2 received=1000000 fee=6000"),
            "closing available 6991500 held 0".to_owned(),
        ]
    );
    let st = json(s, &["account", "statement", "1", "1", "--limit", "2"]);
    assert_eq!(
        (
            &st["opening"],
            &st["closing"],
            &st["truncated"],
            st["entries"].as_array().unwrap().len()
        ),
        (
            &serde_json::json!({"asset": 1, "available": 0, "held": 0}),
            &serde_json::json!({"asset": 1, "available": 9_997_500, "held": 2_500}),
            &Value::from(true),
            2
        )
    );

    // As of a past point: after the deposit (input 5 of shard 1), before it, before the
    // account existed; the book before its market existed.
    assert_eq!(
        ok(s, &["account", "balances", "1", "--as-of-index", "5"]),
        "account 1  owner 1  active  open orders 0  (shard 1, event 6)  as of log index 5\n\
         ASSET  CODE  AVAILABLE  HELD\n    \
         1  USD    10000000     0\n"
    );
    assert_eq!(
        ok(s, &["account", "balances", "1", "--as-of-index", "4"]),
        "account 1  owner 1  active  open orders 0  (shard 1, event 4)  as of log index 4\n\
         (no balances yet)\n"
    );
    let (code, out, err) = tl(
        s,
        &[
            "account",
            "balances",
            "1",
            "--as-of-time",
            "1970-01-01T00:00:01Z",
        ],
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "",
            "error: not found: account 1 does not exist as of 1000000000 ns\n"
        )
    );
    let (code, _, err) = tl(s, &["book", "1", "--as-of-index", "3"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "error: not found: market 1 has no book as of log index 3\n"
        )
    );
    let b = json(s, &["book", "1", "--as-of-index", "4"]);
    assert_eq!(
        (&b["bids"], &b["asks"]),
        (&serde_json::json!([]), &serde_json::json!([]))
    );
    let (code, _, err) = tl(s, &["order", "get", "1", "1", "--as-of-index", "4"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "error: not found: order 1 is not open in market 1 as of log index 4 (its history is in the order's event stream)\n")
    );
    let (code, _, err) = tl(
        s,
        &["account", "balances", "1", "--as-of-time", "yesterday"],
    );
    assert_eq!(
        (code, err.lines().next().unwrap()),
        (2, "error: invalid value 'yesterday' for '--as-of-time <AS_OF_TIME>': \"yesterday\": expected a time as RFC 3339 (2026-11-25T10:00:00Z, 2026-11-25T11:00:00.25+01:00) or nanoseconds since the Unix epoch")
    );

    // Stale reads: on a single node the same answers; not with an as-of point.
    for q in [
        &["account", "balances", "1"][..],
        &["account", "orders", "2"],
        &["book", "1"],
        &["order", "get", "1", "1"],
        &["catalog"],
        &["trades", "1"],
        &["account", "statement", "1", "USD"],
    ] {
        let stale = ok(s, &[q, &["--stale"]].concat());
        let normal = ok(s, q);
        assert_eq!(stale.replace("  stale read", ""), normal, "{q:?}");
    }
    assert!(ok(s, &["account", "balances", "1", "--stale"]).contains("  stale read\n"));
    let (code, _, err) = tl(
        s,
        &["account", "balances", "1", "--stale", "--as-of-index", "3"],
    );
    assert_eq!(
        (code, err.lines().next().unwrap()),
        (
            2,
            "error: the argument '--stale' cannot be used with '--as-of-index <AS_OF_INDEX>'"
        )
    );
    terminate(srv);
}

#[test]
fn a_session_against_tradelog_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let srv = serve(&data);
    let grpc = srv.grpc.clone();
    let s = grpc.as_str();
    setup(s);
    // Follows account 1 from the beginning, then live.
    let mut tail = Tail::start(s, &["--stream", "account:1"]);
    tail.until("Deposited id=1 account=1 asset=1 amount=10000000");
    trade(s);
    let tailed = tail.until(&format!("Settled order={BUY} account=1"));
    drop(tail);

    // Exact balances: the buyer paid 3,000,000 + 0.2% taker fee and sent 2,500; the
    // seller received 3,000,000 - 0.1% maker fee and the 2,500; the fee account both fees.
    let out = ok(s, &["account", "balances", "1"]);
    assert_eq!(
        out,
        "account 1  owner 1  active  open orders 0  (shard 1, event 16)\n\
         ASSET  CODE  AVAILABLE  HELD\n    \
         1  USD     6991500     0\n    \
         2  BTC     1000000     0\n"
    );
    assert_eq!(balance(s, 2, 1), (2_999_500, 0));
    assert_eq!(balance(s, 2, 2), (498_000_000, 1_000_000));
    assert_eq!(balance(s, 100, 1), (9_000, 0));
    let b = json(s, &["account", "balances", "2"]);
    assert_eq!(
        (
            &b["account"],
            &b["owner"],
            &b["status"],
            &b["open_orders"],
            &b["position"]["shard"]
        ),
        (
            &Value::from(2),
            &Value::from(2),
            &Value::from("Active"),
            &Value::from(1),
            &Value::from(0)
        )
    );

    let book = ok(s, &["book", "1"]);
    let book_lines: Vec<&str> = book.lines().collect();
    assert!(
        book_lines[0].starts_with("market 1  last price 3000000  (shard 0, event "),
        "{book}"
    );
    assert_eq!(
        book_lines[1..].join("\n"),
        "SIDE    PRICE      QTY  ORDERS\nask   3000000  1000000       1"
    );
    let out = ok(s, &["order", "get", "1", "1"]);
    assert_eq!(
        out,
        "ORDER  MARKET  ACCOUNT  OWNER  SIDE    PRICE  REMAINING     HELD  STP             POST-ONLY\n    \
         1       1        2      2  sell  3000000    1000000  1000000  cancel-resting  no\n"
    );
    let o = json(s, &["order", "get", "1", "1"]);
    assert_eq!(
        (&o["side"], &o["remaining"]),
        (&Value::from("Sell"), &Value::from(1_000_000))
    );

    // The trade, from the market's event stream (time column left out).
    let out = ok(s, &["trades", "1"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "TIME", "PRICE", "QTY", "TAKER", "SIDE", "TAKER", "ORDER", "MAKER", "ORDER", "TAKER",
            "ACCOUNT", "MAKER", "ACCOUNT", "TAKER", "FEE", "MAKER", "FEE"
        ]
    );
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(
        rows[1][1..],
        ["3000000", "1000000", "buy", BUY, "1", "1", "2", "6000", "3000"]
    );
    let t = json(s, &["trades", "1"]);
    assert_eq!(
        t["trades"][0]["taker_order"],
        Value::from(281_474_976_710_657u64)
    );

    // A retried order with the same client order id: the original order, not a second one.
    let out = ok(
        s,
        &[
            "order",
            "place",
            "1",
            "1",
            "buy",
            "1000000",
            "--price",
            "3000000",
            "--client-order-id",
            "5",
        ],
    );
    assert_eq!(
        out,
        format!(
            "accepted: order {BUY} (buy 1000000 @ 3000000 in market 1 for account 1) (duplicate: \
             the original answer to this idempotency key) [shard 1, input 0]\n"
        )
    );

    // Rejections: the code name and number, a non-zero exit, nothing on stdout.
    let (code, out, err) = tl(
        s,
        &["account", "withdraw", "2", "USD", "999999999", "--id", "4"],
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "",
            "rejected: INSUFFICIENT_FUNDS (10): insufficient funds\n"
        )
    );
    let (code, out, _) = tl(
        s,
        &[
            "account",
            "withdraw",
            "2",
            "USD",
            "999999999",
            "--id",
            "4",
            "--json",
        ],
    );
    assert_eq!(code, 1);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        r,
        serde_json::json!({
            "status": "rejected",
            "reject_code": 10,
            "reject_name": "REJECT_CODE_INSUFFICIENT_FUNDS",
            "message": "insufficient funds",
            "index": 0
        })
    );
    assert_eq!(
        mask_input(&ok(s, &["market", "halt", "1"])),
        "accepted: market 1 halted [shard 0, input _]\n"
    );
    let (code, _, err) = tl(s, &["market", "halt", "1"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "rejected: INVALID_MARKET_STATE (54): market is not in a state that allows this\n"
        )
    );
    ok(s, &["market", "resume", "1"]);
    let (code, _, err) = tl(
        s,
        &[
            "order", "amend", "1", "1", "--price", "3000000", "--qty", "500",
        ],
    );
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "rejected: INVALID_QUANTITY (42): quantity is not a positive multiple of the lot size\n"
        )
    );
    assert_eq!(
        mask_input(&ok(s, &["order", "cancel", "1", "1"])),
        "accepted: cancel of order 1 in market 1 [shard 0, input _]\n"
    );
    assert!(ok(s, &["book", "1"]).ends_with("\n(empty book)\n"));
    let (code, _, err) = tl(s, &["order", "get", "1", "1"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: not found: order 1 is not open"),
        "{err}"
    );
    // Malformed: refused by the server before anything is recorded.
    let (code, _, err) = tl(s, &["account", "deposit", "0", "USD", "5", "--id", "9"]);
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "error: invalid argument: invalid field `account_id`: must not be zero\n"
        )
    );

    // What the tail printed is account 1's stream, as a plain read shows it.
    let read = ok(s, &["events", "read", "--stream", "account:1"]);
    let tailed = by_shard(&tailed);
    let mut read_upto = by_shard(&read);
    for (shard, lines) in read_upto.iter_mut() {
        lines.truncate(tailed.get(shard).map_or(0, |t| t.len()));
    }
    assert_eq!(tailed, read_upto);
    assert_eq!(
        tailed["1"],
        [
            "1:4  AccountOpened account=1 owner=1",
            "1:5  Deposited id=1 account=1 asset=1 amount=10000000",
            "1:6  Balance account=1 asset=1 available=10000000 held=0",
            "1:7  TransferInitiated id=3 debit=1 credit=2 asset=1 amount=2500 to=0",
            "1:8  Balance account=1 asset=1 available=9997500 held=2500",
            "1:9  TransferPosted id=3 debit=1 credit=2 asset=1 amount=2500",
            "1:10  Balance account=1 asset=1 available=9997500 held=0",
            "1:11  FundsHeld order=281474976710657 account=1 asset=1 amount=3006000",
            "1:12  Balance account=1 asset=1 available=6991500 held=3006000",
            "1:13  OrderSubmitted order=281474976710657 account=1 market=1 side=buy \
             order_type=Limit tif=Gtc price=3000000 qty=1000000 client_order_id=5",
            "1:14  Settled order=281474976710657 account=1 paid_asset=1 paid=3006000 \
             received_asset=2 received=1000000 fee=6000",
        ]
    );
    let r = json(
        s,
        &["events", "read", "--stream", "market:1", "--limit", "2"],
    );
    assert_eq!(r["events"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["events"][0]["event"]["MarketCreated"]["id"],
        Value::from(1)
    );

    // The server's events of shard 1, to compare with what replay regenerates.
    let all = ok(s, &["events", "read"]);
    let served_shard_1: Vec<&str> = all.lines().filter(|l| l.starts_with("1:")).collect();

    // Replay refuses a running node's directory.
    let (code, _, err) = tl(s, &["replay", data.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is a node running on it?") && err.contains("is locked"),
        "{err}"
    );

    terminate(srv);
    let unreachable = "http://127.0.0.1:1";
    let (code, _, err) = tl(unreachable, &["catalog"]);
    assert_eq!(code, 3);
    assert!(
        err.starts_with("error: the tradelog server at http://127.0.0.1:1 is unavailable:"),
        "{err}"
    );

    // Offline: replay regenerates exactly the events the server published, and the same
    // state hash verify computes.
    let d = data.to_str().unwrap();
    let replayed = ok(s, &["replay", d, "--events", "--shard", "1"]);
    let replayed: Vec<&str> = replayed.lines().filter(|l| l.starts_with("1:")).collect();
    assert_eq!(replayed, served_shard_1);
    let r = json(s, &["replay", d]);
    let verify = ok(s, &["verify", d]);
    for shard in [0, 1] {
        let hash = r["shards"][shard]["state_hash"].as_str().unwrap();
        let line = verify
            .lines()
            .find(|l| l.starts_with(&format!("shard {shard}: OK")))
            .unwrap();
        assert!(
            line.ends_with(&format!("state {}", &hash[..16])),
            "{line} vs {hash}"
        );
        assert_eq!(
            r["shards"][shard]["last_index"],
            r["shards"][shard]["log_last_index"]
        );
    }
}

#[test]
fn replay_reproduces_the_state_hash_the_server_had() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(tradelog_server::Server::start(
            tradelog_server::ServerConfig {
                data_dir: data.clone(),
                shards: 2,
                grpc_addr: "127.0.0.1:0".parse().unwrap(),
                http_addr: "127.0.0.1:0".parse().unwrap(),
                ..tradelog_server::ServerConfig::default()
            },
        ))
        .unwrap();
    let s = format!("http://{}", server.grpc_addr());
    setup(&s);
    trade(&s);
    assert!(
        server.node().wait_quiescent(WAIT),
        "messages still in flight"
    );
    let had: Vec<String> = server
        .node()
        .engines()
        .unwrap()
        .iter()
        .map(|e| hex(&e.state_hash()))
        .collect();
    let inputs: Vec<u64> = server
        .node()
        .engines()
        .unwrap()
        .iter()
        .map(|e| e.inputs_applied())
        .collect();
    rt.block_on(server.shutdown()).unwrap();

    let out = ok(&s, &["replay", data.to_str().unwrap()]);
    let mut expected =
        String::from("SHARD  FROM   TO  LOG END  RECORDS  EVENTS  SNAPSHOTS CHECKED  STATE HASH\n");
    let r = json(&s, &["replay", data.to_str().unwrap()]);
    for shard in 0..2 {
        let events = r["shards"][shard]["events"].as_u64().unwrap();
        let n = inputs[shard];
        expected.push_str(&format!(
            "    {shard}  start  {n:>2}  {n:>7}  {n:>7}  {events:>6}  {:>17}  {}\n",
            0, had[shard]
        ));
    }
    assert_eq!(out, expected);

    // Up to an earlier index: the state the shard had after its setup (shard 0 applied 6
    // inputs in `setup`), which differs from the final one.
    let r = json(
        &s,
        &[
            "replay",
            data.to_str().unwrap(),
            "--to",
            "6",
            "--shard",
            "0",
        ],
    );
    assert_eq!(r["shards"][0]["last_index"], Value::from(6));
    assert_ne!(r["shards"][0]["state_hash"], Value::from(had[0].clone()));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `tradelog audit` against a single node with two shards after a cross-shard trading
/// session: the solvency audit at a consistent cut, the trial balance and the replay
/// verification of both shards pass, in tables and in JSON; statements, VWAP and OHLCV
/// give the session's exact figures.
#[test]
fn audits_against_tradelog_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = serve(&tmp.path().join("data"));
    let grpc = srv.grpc.clone();
    let s = grpc.as_str();
    setup(s);
    trade(s);

    let out = ok(s, &["audit", "solvency"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("consistent cut: shard 0 @ "), "{out}");
    assert_eq!(
        "ASSET BALANCES DEPOSITED WITHDRAWN IN FLIGHT OUT IN FLIGHT IN RESULT",
        lines[1].split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert_eq!(4, lines.len(), "two assets: {out}");
    let v = json(s, &["audit", "solvency"]);
    assert_eq!(Value::Array(vec![]), v["solvency"]["failures"], "{v}");
    let assets = v["solvency"]["assets"].as_object().unwrap();
    assert_eq!(vec!["1", "2"], assets.keys().collect::<Vec<_>>());
    for (asset, l) in assets {
        let n = |k: &str| l[k].as_u64().unwrap();
        assert!(n("deposited") > 0, "{asset}: {l}");
        assert_eq!(
            n("deposited"),
            n("balances") + n("withdrawn"),
            "{asset}: {l}"
        );
        assert_eq!(n("sent"), n("received"), "{asset}: {l}");
    }
    assert_eq!(2, v["cut"]["figures"].as_array().unwrap().len());

    let v = json(s, &["audit", "trial-balance"]);
    assert_eq!(Value::Array(vec![]), v["failures"], "{v}");
    assert_eq!(2, v["shards"].as_array().unwrap().len());

    let out = ok(s, &["audit", "verify"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        vec!["SHARD", "INDEX", "LIVE", "HASH", "REPLAYED", "HASH", "RESULT"],
        rows[0]
    );
    assert_eq!(3, rows.len(), "{out}");
    for (shard, r) in rows[1..].iter().enumerate() {
        assert_eq!(shard.to_string(), r[0]);
        assert_eq!(r[2], r[3], "live and replayed hashes of shard {shard}");
        assert_eq!(64, r[2].len());
        assert_eq!("ok", r[4]);
    }

    // Statements of every account over the whole history, each line checked.
    let v = json(s, &["audit", "statements"]);
    assert_eq!(Value::Array(vec![]), v["failures"], "{v}");
    let lines: Vec<(u64, u64, u64, u64, u64)> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let total = |h: &Value| h["available"].as_u64().unwrap() + h["held"].as_u64().unwrap();
            assert_eq!(0, total(&l["opening"]), "{l}");
            assert_eq!(l["closing"], l["state_closing"], "{l}");
            (
                l["shard"].as_u64().unwrap(),
                l["account"].as_u64().unwrap(),
                l["asset"].as_u64().unwrap(),
                total(&l["closing"]),
                l["credits"].as_u64().unwrap() - l["debits"].as_u64().unwrap(),
            )
        })
        .collect();
    // Account 1 paid 2500 and bought 1 lot for 3000000 + a 6000 fee; account 2 got
    // 2500 and 3000000 - a 3000 fee, and sold 1000000 BTC; the fee account got 9000.
    assert_eq!(
        vec![
            (0, 2, 1, 2_999_500, 2_999_500),
            (0, 2, 2, 499_000_000, 499_000_000),
            (0, 100, 1, 9_000, 9_000),
            (1, 1, 1, 6_991_500, 6_991_500),
            (1, 1, 2, 1_000_000, 1_000_000),
        ],
        lines
    );
    assert_eq!(v["totals"]["1"]["closing"], Value::from(10_000_000u64));
    assert_eq!(v["totals"]["2"]["closing"], Value::from(500_000_000u64));
    assert_eq!(v["tasks"], Value::from(2));
    let out = ok(s, &["audit", "statements", "--account", "1"]);
    assert_eq!(
        words(&out, &[6])[1..4],
        [
            "SHARD ACCOUNT ASSET OPENING CREDITS DEBITS CLOSING RESULT",
            "1 1 1 0 10000000 3008500 6991500 ok",
            "1 1 2 0 1000000 0 1000000 ok",
        ],
        "{out}"
    );
    assert!(out.starts_with("statements from "), "{out}");
    assert_eq!(
        ok(s, &["audit", "statements", "--to", "1", "--totals-only"])
            .lines()
            .count(),
        1,
        "nothing before the first input"
    );
    let (code, _, err) = tl(s, &["audit", "statements", "--from", "10", "--to", "5"]);
    assert_eq!((2, true), (code, err.contains("before `from_ns`")), "{err}");
    let (code, _, err) = tl(s, &["audit", "statements", "--account", "5555"]);
    assert_eq!(
        (1, true),
        (code, err.contains("no shard holds account(s) 5555")),
        "{err}"
    );

    // VWAP and OHLCV of the market (one trade: 1 lot at 3000000).
    let out = ok(s, &["audit", "vwap"]);
    assert_eq!(
        words(&out, &[])[1..],
        [
            "MARKET SHARD TRADES VOLUME QUOTE VOLUME VWAP OPEN HIGH LOW CLOSE",
            "1 0 1 1000000 3000000 3000000.0000 3000000 3000000 3000000 3000000",
        ],
        "{out}"
    );
    let out = ok(s, &["audit", "ohlcv", "--interval", "1d"]);
    assert_eq!(
        words(&out, &[1])[1..],
        [
            "MARKET OPEN HIGH LOW CLOSE VOLUME QUOTE VOLUME TRADES",
            "1 3000000 3000000 3000000 3000000 1000000 3000000 1",
        ],
        "{out}"
    );
    let v = json(s, &["audit", "ohlcv", "--interval", "1d"]);
    let m = &v["markets"][0];
    assert_eq!(m["vwap"], Value::from("3000000.0000"), "{v}");
    let mut c = m["activity"]["candles"][0].clone();
    assert!(c["start"].take().as_u64().unwrap() > 0);
    assert_eq!(
        c,
        serde_json::json!({
            "start": null, "open": 3_000_000, "high": 3_000_000, "low": 3_000_000,
            "close": 3_000_000, "volume": 1_000_000, "quote_volume": 3_000_000, "trades": 1,
        })
    );
    let (code, _, err) = tl(s, &["audit", "vwap", "--market", "9"]);
    assert_eq!(
        (1, true),
        (code, err.contains("no shard owns market(s) 9")),
        "{err}"
    );
    terminate(srv);
}

/// Every event `events read --json` serves from the start (or after `after`): the
/// events, sorted by (shard, seq), and the position after them.
fn api_events(server: &str, after: Option<&str>) -> (Vec<tradelog_domain::EventRecord>, String) {
    let mut args = vec!["events", "read"];
    if let Some(a) = after {
        args.extend(["--after", a]);
    }
    let v = json(server, &args);
    let mut events: Vec<tradelog_domain::EventRecord> =
        serde_json::from_value(v["events"].clone()).unwrap();
    events.sort_by_key(|e| (e.shard, e.seq));
    (events, v["position"].as_str().unwrap().to_owned())
}

/// Every event of the export in `dir`, read back from its Parquet files, sorted.
fn exported(dir: &Path) -> (tradelog_export::Manifest, Vec<tradelog_domain::EventRecord>) {
    let (manifest, mut events) = tradelog_export::read_dir(dir).unwrap();
    events.sort_by_key(|e| (e.shard, e.seq));
    (manifest, events)
}

#[test]
fn export_parquet_writes_what_the_api_serves_and_then_only_what_is_new() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = serve(&tmp.path().join("data"));
    let grpc = srv.grpc.clone();
    let s = grpc.as_str();
    setup(s);
    trade(s);
    let out = tmp.path().join("export");
    let dir = out.to_str().unwrap();

    let first = json(s, &["export", "parquet", "--out", dir]);
    let (api, position) = api_events(s, None);
    let (manifest, parquet) = exported(&out);
    assert_eq!(api, parquet);
    // Each shard's events are all there, 1, 2, 3, ... without a gap.
    for shard in [0, 1] {
        let seqs: Vec<u64> = parquet
            .iter()
            .filter(|e| e.shard.0 == shard)
            .map(|e| e.seq)
            .collect();
        assert_eq!((1..=seqs.len() as u64).collect::<Vec<_>>(), seqs);
    }
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    assert_eq!(
        serde_json::json!({
            "dir": dir,
            "events": api.len(),
            "files": 2,
            "bytes": bytes,
            "removed": 0,
            "from": "",
            "position": position,
        }),
        first
    );
    assert_eq!(
        vec![
            "shard=0/part-00000000000000000001.parquet",
            "shard=1/part-00000000000000000001.parquet"
        ],
        manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>()
    );

    // More commands on both shards: a deposit, a same-shard transfer, an order that
    // rests and is cancelled, a rejection.
    ok(s, &["account", "open", "3", "--owner", "3"]);
    ok(s, &["account", "deposit", "2", "USD", "700", "--id", "10"]);
    ok(
        s,
        &["account", "transfer", "2", "100", "USD", "50", "--id", "11"],
    );
    ok(
        s,
        &[
            "order", "place", "2", "1", "sell", "1000000", "--price", "4000000",
        ],
    );
    ok(s, &["order", "cancel", "1", "2"]);
    assert_eq!(
        1,
        tl(
            s,
            &["account", "withdraw", "1", "USD", "999999999", "--id", "12"]
        )
        .0
    );
    let (new, position2) = api_events(s, Some(&position));
    assert!(new.len() >= 10, "{new:?}");

    // The second run adds exactly the new events: no duplicate, no gap.
    let second = json(s, &["export", "parquet", "--out", dir]);
    assert_eq!(
        (
            &Value::from(new.len()),
            &Value::from(position.clone()),
            &Value::from(position2.clone())
        ),
        (&second["events"], &second["from"], &second["position"])
    );
    let (all, _) = api_events(s, None);
    let (manifest, parquet) = exported(&out);
    assert_eq!(all, parquet);
    assert_eq!(api.len() + new.len(), parquet.len());
    assert_eq!(
        position2,
        manifest
            .position
            .iter()
            .map(|(s, q)| format!("{s}:{q}"))
            .collect::<Vec<_>>()
            .join(",")
    );

    // Nothing new: no file, and the summary for people.
    let (code, text, err) = tl(s, &["export", "parquet", "--out", dir]);
    assert_eq!(
        (
            0,
            format!(
                "exported 0 events in 0 files (0 bytes) to {dir}\n\
                 position {position2} (the next run into this directory starts there)\n"
            ),
            String::new()
        ),
        (code, text, err)
    );

    // A directory that cannot be created: exit 2, and what failed.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let bad = file.join("export");
    let (code, text, err) = tl(s, &["export", "parquet", "--out", bad.to_str().unwrap()]);
    assert_eq!(
        (
            2,
            String::new(),
            format!(
                "error: opening the export directory {0}: creating {0}: Not a directory (os \
                 error 20)\n",
                bad.display()
            )
        ),
        (code, text, err)
    );
    terminate(srv);

    // The server gone: exit 3, and nothing changed in the export.
    let (code, _, err) = tl(s, &["export", "parquet", "--out", dir]);
    assert_eq!(3, code, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!((manifest, parquet), exported(&out));
}
