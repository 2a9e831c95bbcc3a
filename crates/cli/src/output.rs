//! Output for people and for scripts: aligned tables, JSON documents and JSON lines,
//! timestamps, one-line event descriptions.

use serde::Serialize;
use tradelog_domain as d;

/// A table printed with aligned columns: numbers to the right, text to the left.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, no trailing spaces.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut width = vec![0; n];
        let mut numeric = vec![true; n];
        for (i, h) in self.headers.iter().enumerate() {
            width[i] = h.len();
        }
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
                numeric[i] &= !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit());
            }
        }
        if self.rows.is_empty() {
            numeric = vec![false; n];
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let pad = width[i] - c.chars().count();
                if numeric[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                }
            }
            s.trim_end().to_owned()
        };
        let mut out = line(&self.headers);
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// Exit status when stdout is a pipe its reader closed (128 + SIGPIPE, what a shell shows
/// for a process a SIGPIPE ended).
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Writes to stdout (the crate's `print!`/`println!`); ends the process with
/// [`EXIT_BROKEN_PIPE`] when the reader of a stdout pipe is gone.
pub fn write_stdout(args: std::fmt::Arguments, newline: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let r = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(EXIT_BROKEN_PIPE)
        }
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}

/// The columns of [`candle_cells`].
pub const CANDLE_COLUMNS: [&str; 8] = [
    "START",
    "OPEN",
    "HIGH",
    "LOW",
    "CLOSE",
    "VOLUME",
    "QUOTE VOLUME",
    "TRADES",
];

/// The cells of a candle's row: start, open, high, low, close, volume, quote volume,
/// trades.
pub fn candle_cells(c: &tradelog_client::Candle) -> Vec<String> {
    vec![
        time(c.start),
        c.open.to_string(),
        c.high.to_string(),
        c.low.to_string(),
        c.close.to_string(),
        c.volume.to_string(),
        c.quote_volume.to_string(),
        c.trades.to_string(),
    ]
}

/// Prints one JSON document (pretty) for scripts.
pub fn json(v: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("values serialize to JSON")
    );
}

/// Prints one JSON line (for streams: one document per line).
pub fn json_line(v: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string(v).expect("values serialize to JSON")
    );
}

/// A timestamp as `2026-11-25T14:39:17.123Z` (UTC, milliseconds).
pub fn time(t: d::Timestamp) -> String {
    let ns = t.0;
    let secs = ns / 1_000_000_000;
    let ms = (ns / 1_000_000) % 1_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3_600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian calendar;
/// Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if month <= 2 { y + 1 } else { y }, month, day)
}

/// Days since 1970-01-01 of a date (proleptic Gregorian; Howard Hinnant's
/// `days_from_civil`, the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let (m, d) = (i64::from(m), i64::from(d));
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time on the command line: RFC 3339 (`2026-11-25T10:00:00Z`, with an optional
/// fraction of a second and a `Z` or `+HH:MM` / `-HH:MM` offset) or a whole number of
/// nanoseconds since the Unix epoch. Before 1970 or after 2554: an error.
pub fn parse_time(s: &str) -> Result<d::Timestamp, String> {
    let bad = || {
        format!(
            "{s:?}: expected a time as RFC 3339 (2026-11-25T10:00:00Z, \
             2026-11-25T11:00:00.25+01:00) or nanoseconds since the Unix epoch"
        )
    };
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map(d::Timestamp).map_err(|_| bad());
    }
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let part = t.get(r).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse::<u32>().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day == 0
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    // Fraction of a second: up to nanoseconds.
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        nanos = u64::from(num(i + 1..i + 1 + digits)?) * 10u64.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset_s: i64 = match &t[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && matches!(&o[..1], "+" | "-") && &o[3..4] == ":" => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let v = i64::from(h * 3_600 + m * 60);
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    let secs = days_from_civil(i64::from(year), month, day) * 86_400
        + i64::from(hour * 3_600 + minute * 60 + second)
        - offset_s;
    u64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1_000_000_000))
        .and_then(|ns| ns.checked_add(nanos))
        .map(d::Timestamp)
        .ok_or_else(bad)
}

/// A rejection code as `INSUFFICIENT_FUNDS(10)`.
pub fn code(c: d::RejectCode) -> String {
    let name = tradelog_api::reject_code_name(c);
    format!(
        "{}({})",
        name.strip_prefix("REJECT_CODE_").unwrap_or(name),
        c.code()
    )
}

/// One event on one line: `Kind key=value ...` (field names as in the domain's JSON,
/// rejection codes with their name and number).
pub fn event(e: &d::Event) -> String {
    use d::Event::*;
    match e {
        AssetCreated(a) => format!("AssetCreated id={} code={} scale={}", a.id, a.code, a.scale),
        MarketCreated(m) => format!(
            "MarketCreated id={} base={} quote={} lot_size={} tick_size={} min_qty={} \
             max_qty={} maker_fee_bps={} taker_fee_bps={} fee_account={} collar_bps={} shard={}",
            m.id,
            m.base,
            m.quote,
            m.lot_size,
            m.tick_size,
            m.min_qty,
            m.max_qty,
            m.maker_fee_bps,
            m.taker_fee_bps,
            m.fee_account,
            m.collar_bps,
            m.shard
        ),
        AccountOpened { account, owner } => {
            format!("AccountOpened account={account} owner={owner}")
        }
        AccountFrozen { account } => format!("AccountFrozen account={account}"),
        AccountUnfrozen { account } => format!("AccountUnfrozen account={account}"),
        AccountClosed { account } => format!("AccountClosed account={account}"),
        Deposited {
            id,
            account,
            asset,
            amount,
        } => format!("Deposited id={id} account={account} asset={asset} amount={amount}"),
        Withdrawn {
            id,
            account,
            asset,
            amount,
        } => format!("Withdrawn id={id} account={account} asset={asset} amount={amount}"),
        TransferPosted {
            id,
            debit,
            credit,
            asset,
            amount,
        } => format!(
            "TransferPosted id={id} debit={debit} credit={credit} asset={asset} amount={amount}"
        ),
        TransferInitiated {
            id,
            debit,
            credit,
            asset,
            amount,
            to,
        } => format!(
            "TransferInitiated id={id} debit={debit} credit={credit} asset={asset} \
             amount={amount} to={to}"
        ),
        TransferCredited {
            id,
            debit,
            credit,
            asset,
            amount,
            from,
        } => format!(
            "TransferCredited id={id} debit={debit} credit={credit} asset={asset} \
             amount={amount} from={from}"
        ),
        TransferRefunded { id, code: c } => format!("TransferRefunded id={id} code={}", code(*c)),
        PendingCreated {
            id,
            debit,
            credit,
            asset,
            amount,
            expires_at,
        } => format!(
            "PendingCreated id={id} debit={debit} credit={credit} asset={asset} \
             amount={amount} expires_at={}",
            time(*expires_at)
        ),
        PendingPosted {
            id,
            amount,
            released,
        } => format!("PendingPosted id={id} amount={amount} released={released}"),
        PendingVoided {
            id,
            amount,
            expired,
        } => format!("PendingVoided id={id} amount={amount} expired={expired}"),
        FundsHeld {
            order,
            account,
            asset,
            amount,
        } => format!("FundsHeld order={order} account={account} asset={asset} amount={amount}"),
        FundsReleased {
            order,
            account,
            asset,
            amount,
        } => format!("FundsReleased order={order} account={account} asset={asset} amount={amount}"),
        OrderSubmitted {
            order,
            account,
            market,
            side: sd,
            order_type,
            tif,
            price,
            qty,
            client_order_id,
            replaces,
        } => {
            let mut s = format!(
                "OrderSubmitted order={order} account={account} market={market} side={} \
                 order_type={order_type:?} tif={tif:?} price={price} qty={qty} \
                 client_order_id={client_order_id}",
                side(*sd)
            );
            if let Some(r) = replaces {
                s.push_str(&format!(" replaces={r}"));
            }
            s
        }
        OrderAccepted {
            order,
            market,
            account,
            side: sd,
            price,
            qty,
        } => format!(
            "OrderAccepted order={order} market={market} account={account} side={} \
             price={price} qty={qty}",
            side(*sd)
        ),
        OrderRejected {
            order,
            market,
            code: c,
        } => format!(
            "OrderRejected order={order} market={market} code={}",
            code(*c)
        ),
        Trade {
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
        } => format!(
            "Trade market={market} price={price} qty={qty} taker_side={} taker={taker} \
             maker={maker} taker_account={taker_account} maker_account={maker_account} \
             taker_fee={taker_fee} maker_fee={maker_fee}",
            side(*taker_side)
        ),
        OrderFilled { order, market } => format!("OrderFilled order={order} market={market}"),
        OrderCancelled {
            order,
            market,
            remaining,
            reason,
        } => format!(
            "OrderCancelled order={order} market={market} remaining={remaining} \
             reason={reason:?}"
        ),
        OrderAmended {
            order,
            market,
            price,
            qty,
        } => format!("OrderAmended order={order} market={market} price={price} qty={qty}"),
        Settled {
            order,
            account,
            paid_asset,
            paid,
            received_asset,
            received,
            fee,
        } => format!(
            "Settled order={order} account={account} paid_asset={paid_asset} paid={paid} \
             received_asset={received_asset} received={received} fee={fee}"
        ),
        FeeCollected {
            market,
            account,
            asset,
            amount,
        } => {
            format!("FeeCollected market={market} account={account} asset={asset} amount={amount}")
        }
        MarketHalted { market } => format!("MarketHalted market={market}"),
        MarketResumed { market } => format!("MarketResumed market={market}"),
        Rejected { subject, code: c } => {
            let subject = match subject {
                d::Subject::Account(a) => format!("account:{a}"),
                d::Subject::Transfer(t) => format!("transfer:{t}"),
                d::Subject::Order(o) => format!("order:{o}"),
                d::Subject::ClientOrder {
                    account,
                    client_order_id,
                } => format!("account:{account}/client_order_id:{client_order_id}"),
                d::Subject::Market(m) => format!("market:{m}"),
                d::Subject::Asset(a) => format!("asset:{a}"),
            };
            format!("Rejected subject={subject} code={}", code(*c))
        }
        Balance {
            account,
            asset,
            available,
            held,
        } => format!("Balance account={account} asset={asset} available={available} held={held}"),
        ShardSplit {
            child,
            modulus,
            residue,
            accounts,
        } => format!("ShardSplit child={child} rule=id%{modulus}=={residue} accounts={accounts}"),
    }
}

/// An event record on one line: `SHARD:SEQ  TIME  Kind key=value ...`.
pub fn event_line(r: &d::EventRecord) -> String {
    format!(
        "{}:{}  {}  {}",
        r.shard,
        r.seq,
        time(r.timestamp),
        event(&r.event)
    )
}

pub fn side(s: d::Side) -> &'static str {
    match s {
        d::Side::Buy => "buy",
        d::Side::Sell => "sell",
    }
}

pub fn stp(s: d::SelfTradePrevention) -> &'static str {
    match s {
        d::SelfTradePrevention::CancelResting => "cancel-resting",
        d::SelfTradePrevention::CancelIncoming => "cancel-incoming",
        d::SelfTradePrevention::CancelBoth => "cancel-both",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_from_rfc_3339_or_nanoseconds() {
        let ok = |s: &str| parse_time(s).map(|t| t.0);
        assert_eq!(ok("0"), Ok(0));
        assert_eq!(ok("1795600800123456789"), Ok(1_795_600_800_123_456_789));
        assert_eq!(ok("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(ok("2026-11-25T10:00:00Z"), Ok(1_795_600_800_000_000_000));
        assert_eq!(ok("2026-11-25t10:00:00z"), Ok(1_795_600_800_000_000_000));
        assert_eq!(
            ok("2026-11-25 11:00:00+01:00"),
            Ok(1_795_600_800_000_000_000)
        );
        assert_eq!(
            ok("2026-11-25T09:30:00.25-00:30"),
            Ok(1_795_600_800_250_000_000)
        );
        assert_eq!(
            ok("2026-11-25T10:00:00.123456789Z"),
            Ok(1_795_600_800_123_456_789)
        );
        assert_eq!(ok("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000_000_000));
        // What `time` prints parses back to the same millisecond.
        let t = d::Timestamp(1_795_600_800_123_000_000);
        assert_eq!(ok(&time(t)), Ok(t.0));
        for bad in [
            "",
            "yesterday",
            "-5",
            "2026-11-25",
            "2026-11-25T10:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:00:00.Z",
            "2026-11-25T10:00:00.1234567891Z",
            "2026-11-25T10:00:00+1:00",
            "1969-12-31T23:59:59Z",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_time(bad),
                Err(format!(
                    "{bad:?}: expected a time as RFC 3339 (2026-11-25T10:00:00Z, \
                     2026-11-25T11:00:00.25+01:00) or nanoseconds since the Unix epoch"
                )),
                "{bad}"
            );
        }
    }

    #[test]
    fn tables_align_numbers_right_and_text_left() {
        let mut t = Table::new(&["ASSET", "CODE", "AVAILABLE"]);
        t.row(vec!["1".into(), "USD".into(), "12345".into()]);
        t.row(vec!["22".into(), "BTC".into(), "7".into()]);
        assert_eq!(
            t.render(),
            "ASSET  CODE  AVAILABLE\n    1  USD       12345\n   22  BTC           7\n"
        );
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        assert_eq!(time(d::Timestamp(0)), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T23:59:59.999 UTC (a leap day).
        assert_eq!(
            time(d::Timestamp(1_709_251_199_999_000_000)),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            time(d::Timestamp(1_764_081_557_123_456_789)),
            "2025-11-25T14:39:17.123Z"
        );
    }

    #[test]
    fn events_read_as_one_line() {
        assert_eq!(
            event(&d::Event::Deposited {
                id: d::TransferId(1),
                account: d::AccountId(7),
                asset: d::AssetId(1),
                amount: d::Amount(12345),
            }),
            "Deposited id=1 account=7 asset=1 amount=12345"
        );
        assert_eq!(
            event(&d::Event::Rejected {
                subject: d::Subject::Transfer(d::TransferId(3)),
                code: d::RejectCode::InsufficientFunds,
            }),
            "Rejected subject=transfer:3 code=INSUFFICIENT_FUNDS(10)"
        );
        assert_eq!(
            event(&d::Event::AssetCreated(d::Asset {
                id: d::AssetId(1),
                code: "USD".into(),
                scale: 2
            })),
            "AssetCreated id=1 code=USD scale=2"
        );
    }
}
