//! Whole-output tests: events written, read back with the parquet crate's own reader,
//! compared column by column and event by event.

use super::*;
use arrow_array::{
    Array, BooleanArray, RecordBatch, StringArray, TimestampNanosecondArray, UInt16Array,
    UInt32Array, UInt64Array,
};
use std::collections::BTreeMap;
use tradelog_domain as d;
use tradelog_domain::Event;

fn rec(shard: u32, seq: u64, event: Event) -> EventRecord {
    EventRecord {
        shard: d::ShardId(shard),
        seq,
        input: 100 + seq,
        timestamp: d::Timestamp(1_764_000_000_000_000_000 + seq * 1_000),
        principal: d::Principal(7),
        event,
    }
}

/// The index of a variant in [`samples`]. Exhaustive: a variant added to `Event` does
/// not compile until it is listed here, and then `every_variant_round_trips` fails until
/// a sample of it (mapped to columns and back) is added.
fn variant(e: &Event) -> usize {
    match e {
        Event::AssetCreated(_) => 0,
        Event::MarketCreated(_) => 1,
        Event::AccountOpened { .. } => 2,
        Event::AccountFrozen { .. } => 3,
        Event::AccountUnfrozen { .. } => 4,
        Event::AccountClosed { .. } => 5,
        Event::Deposited { .. } => 6,
        Event::Withdrawn { .. } => 7,
        Event::TransferPosted { .. } => 8,
        Event::TransferInitiated { .. } => 9,
        Event::TransferCredited { .. } => 10,
        Event::TransferRefunded { .. } => 11,
        Event::PendingCreated { .. } => 12,
        Event::PendingPosted { .. } => 13,
        Event::PendingVoided { .. } => 14,
        Event::FundsHeld { .. } => 15,
        Event::FundsReleased { .. } => 16,
        Event::OrderSubmitted { .. } => 17,
        Event::OrderAccepted { .. } => 18,
        Event::OrderRejected { .. } => 19,
        Event::Trade { .. } => 20,
        Event::OrderFilled { .. } => 21,
        Event::OrderCancelled { .. } => 22,
        Event::OrderAmended { .. } => 23,
        Event::Settled { .. } => 24,
        Event::FeeCollected { .. } => 25,
        Event::MarketHalted { .. } => 26,
        Event::MarketResumed { .. } => 27,
        Event::Rejected { .. } => 28,
        Event::Balance { .. } => 29,
        Event::ShardSplit { .. } => 30,
    }
}
const VARIANTS: usize = 31;

/// At least one event of every variant (and every subject, side, order type, time in
/// force and cancel reason), every field set to a distinct value.
fn samples() -> Vec<Event> {
    use d::*;
    let mut v = vec![
        Event::AssetCreated(Asset {
            id: AssetId(3),
            code: "BTC".into(),
            scale: 8,
        }),
        Event::MarketCreated(MarketSpec {
            id: MarketId(4),
            base: AssetId(3),
            quote: AssetId(5),
            lot_size: 6,
            tick_size: 7,
            min_qty: Qty(8),
            max_qty: Qty(9),
            maker_fee_bps: 10,
            taker_fee_bps: 11,
            fee_account: AccountId(12),
            collar_bps: 13,
            shard: ShardId(14),
        }),
        Event::AccountOpened {
            account: AccountId(15),
            owner: Principal(16),
        },
        Event::AccountFrozen {
            account: AccountId(17),
        },
        Event::AccountUnfrozen {
            account: AccountId(18),
        },
        Event::AccountClosed {
            account: AccountId(19),
        },
        Event::Deposited {
            id: TransferId(20),
            account: AccountId(21),
            asset: AssetId(22),
            amount: Amount(u64::MAX),
        },
        Event::Withdrawn {
            id: TransferId(24),
            account: AccountId(25),
            asset: AssetId(26),
            amount: Amount(27),
        },
        Event::TransferPosted {
            id: TransferId(28),
            debit: AccountId(29),
            credit: AccountId(30),
            asset: AssetId(31),
            amount: Amount(32),
        },
        Event::TransferInitiated {
            id: TransferId(33),
            debit: AccountId(34),
            credit: AccountId(35),
            asset: AssetId(36),
            amount: Amount(37),
            to: ShardId(38),
        },
        Event::TransferCredited {
            id: TransferId(39),
            debit: AccountId(40),
            credit: AccountId(41),
            asset: AssetId(42),
            amount: Amount(43),
            from: ShardId(44),
        },
        Event::TransferRefunded {
            id: TransferId(45),
            code: RejectCode::CreditRefused,
        },
        Event::PendingCreated {
            id: TransferId(46),
            debit: AccountId(47),
            credit: AccountId(48),
            asset: AssetId(49),
            amount: Amount(50),
            // Far future ("never") saturates: kept exactly as an unsigned integer.
            expires_at: Timestamp(u64::MAX),
        },
        Event::PendingPosted {
            id: TransferId(51),
            amount: Amount(52),
            released: Amount(53),
        },
        Event::PendingVoided {
            id: TransferId(54),
            amount: Amount(55),
            expired: true,
        },
        Event::FundsHeld {
            order: OrderId(56),
            account: AccountId(57),
            asset: AssetId(58),
            amount: Amount(59),
        },
        Event::FundsReleased {
            order: OrderId(60),
            account: AccountId(61),
            asset: AssetId(62),
            amount: Amount(63),
        },
        Event::OrderSubmitted {
            order: OrderId(64),
            account: AccountId(65),
            market: MarketId(66),
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(67),
            qty: Qty(68),
            client_order_id: 69,
            replaces: Some(OrderId(70)),
        },
        Event::OrderAccepted {
            order: OrderId(71),
            market: MarketId(72),
            account: AccountId(73),
            side: Side::Sell,
            price: Price(74),
            qty: Qty(75),
        },
        Event::OrderRejected {
            order: OrderId(76),
            market: MarketId(77),
            code: RejectCode::PriceOutsideCollar,
        },
        Event::Trade {
            market: MarketId(78),
            price: Price(79),
            qty: Qty(80),
            taker_side: Side::Sell,
            taker: OrderId(81),
            maker: OrderId(82),
            taker_account: AccountId(83),
            maker_account: AccountId(84),
            taker_fee: Amount(85),
            maker_fee: Amount(86),
        },
        Event::OrderFilled {
            order: OrderId(87),
            market: MarketId(88),
        },
        Event::OrderAmended {
            order: OrderId(93),
            market: MarketId(94),
            price: Price(95),
            qty: Qty(96),
        },
        Event::Settled {
            order: OrderId(97),
            account: AccountId(98),
            paid_asset: AssetId(99),
            paid: Amount(100),
            received_asset: AssetId(101),
            received: Amount(102),
            fee: Amount(103),
        },
        Event::FeeCollected {
            market: MarketId(104),
            account: AccountId(105),
            asset: AssetId(106),
            amount: Amount(107),
        },
        Event::MarketHalted {
            market: MarketId(108),
        },
        Event::MarketResumed {
            market: MarketId(109),
        },
        Event::Balance {
            account: AccountId(110),
            asset: AssetId(111),
            available: Amount(112),
            held: Amount(113),
        },
        Event::ShardSplit {
            child: ShardId(150),
            modulus: 151,
            residue: 152,
            accounts: 153,
        },
        Event::OrderSubmitted {
            order: OrderId(114),
            account: AccountId(115),
            market: MarketId(116),
            side: Side::Sell,
            order_type: OrderType::Market,
            tif: TimeInForce::Ioc,
            price: Price(0),
            qty: Qty(117),
            client_order_id: 0,
            replaces: None,
        },
        Event::OrderSubmitted {
            order: OrderId(118),
            account: AccountId(119),
            market: MarketId(120),
            side: Side::Buy,
            order_type: OrderType::Market,
            tif: TimeInForce::Fok,
            price: Price(121),
            qty: Qty(122),
            client_order_id: 123,
            replaces: None,
        },
        Event::PendingVoided {
            id: TransferId(124),
            amount: Amount(125),
            expired: false,
        },
    ];
    for (i, reason) in [
        CancelReason::Requested,
        CancelReason::Unfilled,
        CancelReason::SelfTrade,
        CancelReason::Replaced,
        CancelReason::Stopped,
    ]
    .into_iter()
    .enumerate()
    {
        v.push(Event::OrderCancelled {
            order: OrderId(200 + i as u64),
            market: MarketId(210 + i as u32),
            remaining: Qty(220 + i as u64),
            reason,
        });
    }
    for subject in [
        Subject::Account(AccountId(300)),
        Subject::Transfer(TransferId(301)),
        Subject::Order(OrderId(302)),
        Subject::ClientOrder {
            account: AccountId(303),
            client_order_id: 304,
        },
        Subject::Market(MarketId(305)),
        Subject::Asset(AssetId(306)),
    ] {
        v.push(Event::Rejected {
            subject,
            code: RejectCode::InsufficientFunds,
        });
    }
    v
}

fn sample_records() -> Vec<EventRecord> {
    samples()
        .into_iter()
        .enumerate()
        .map(|(i, e)| rec(i as u32 % 3, i as u64 / 3 + 1, e))
        .collect()
}

#[test]
fn every_variant_round_trips() {
    let records = sample_records();
    let mut seen = [false; VARIANTS];
    for r in &records {
        seen[variant(&r.event)] = true;
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|i| !seen[*i]).collect();
    assert_eq!(Vec::<usize>::new(), missing, "variants without a sample");

    let batch = to_batch(&records).unwrap();
    assert_eq!(records.len(), batch.num_rows());
    assert_eq!(records, from_batch(&batch).unwrap());

    // Through a real Parquet file and the parquet crate's reader.
    let dir = tempfile::tempdir().unwrap();
    let mut x = Exporter::open(dir.path()).unwrap();
    let mut position = BTreeMap::new();
    for r in &records {
        position.insert(r.shard, r.seq);
    }
    x.write(&records, &position).unwrap();
    x.finish().unwrap();
    let (_, back) = read_dir(dir.path()).unwrap();
    let mut expected = records.clone();
    expected.sort_by_key(|r| (r.shard, r.seq));
    assert_eq!(expected, back);
}

#[test]
fn kind_names_are_the_api_names() {
    let names: Vec<&str> = samples().iter().take(30).map(kind_name).collect();
    assert_eq!(
        vec![
            "asset_created",
            "market_created",
            "account_opened",
            "account_frozen",
            "account_unfrozen",
            "account_closed",
            "deposited",
            "withdrawn",
            "transfer_posted",
            "transfer_initiated",
            "transfer_credited",
            "transfer_refunded",
            "pending_created",
            "pending_posted",
            "pending_voided",
            "funds_held",
            "funds_released",
            "order_submitted",
            "order_accepted",
            "order_rejected",
            "trade",
            "order_filled",
            "order_amended",
            "settled",
            "fee_collected",
            "market_halted",
            "market_resumed",
            "balance",
            "shard_split",
            "order_submitted",
        ],
        names
    );
}

/// Reads the single part file of shard 0 with the parquet crate, as one batch.
fn read_shard0(dir: &Path) -> RecordBatch {
    let path = dir.join("shard=0/part-00000000000000000001.parquet");
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select_concat(&batches)
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(1, batches.len(), "one batch expected");
    batches[0].clone()
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("type of {name}"))
}

#[test]
fn columns_hold_exactly_what_was_written() {
    use d::*;
    let events = vec![
        rec(
            0,
            1,
            Event::Deposited {
                id: TransferId(1),
                account: AccountId(7),
                asset: AssetId(1),
                amount: Amount(12_345),
            },
        ),
        rec(
            0,
            2,
            Event::Trade {
                market: MarketId(2),
                price: Price(50_000),
                qty: Qty(300),
                taker_side: Side::Buy,
                taker: OrderId(9),
                maker: OrderId(8),
                taker_account: AccountId(7),
                maker_account: AccountId(6),
                taker_fee: Amount(30),
                maker_fee: Amount(15),
            },
        ),
        rec(
            0,
            3,
            Event::Balance {
                account: AccountId(7),
                asset: AssetId(1),
                available: Amount(u64::MAX),
                held: Amount(0),
            },
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut x = Exporter::open(dir.path()).unwrap();
    x.write(&events, &BTreeMap::from([(ShardId(0), 3)]))
        .unwrap();
    let summary = x.finish().unwrap();
    let b = read_shard0(dir.path());

    assert_eq!(COLUMNS.len(), b.num_columns());
    assert_eq!(
        &UInt32Array::from(vec![0, 0, 0]),
        col::<UInt32Array>(&b, "shard")
    );
    assert_eq!(
        &UInt64Array::from(vec![1, 2, 3]),
        col::<UInt64Array>(&b, "seq")
    );
    assert_eq!(
        &UInt64Array::from(vec![101, 102, 103]),
        col::<UInt64Array>(&b, "input")
    );
    assert_eq!(
        &TimestampNanosecondArray::from(vec![
            1_764_000_000_000_001_000,
            1_764_000_000_000_002_000,
            1_764_000_000_000_003_000
        ])
        .with_timezone("UTC"),
        col::<TimestampNanosecondArray>(&b, "timestamp")
    );
    assert_eq!(
        &UInt64Array::from(vec![7, 7, 7]),
        col::<UInt64Array>(&b, "principal")
    );
    assert_eq!(
        &StringArray::from(vec!["deposited", "trade", "balance"]),
        col::<StringArray>(&b, "kind")
    );
    assert_eq!(
        &UInt64Array::from(vec![Some(7), None, Some(7)]),
        col::<UInt64Array>(&b, "account")
    );
    assert_eq!(
        &UInt64Array::from(vec![Some(1), None, None]),
        col::<UInt64Array>(&b, "transfer_id")
    );
    assert_eq!(
        &UInt32Array::from(vec![Some(1), None, Some(1)]),
        col::<UInt32Array>(&b, "asset")
    );
    assert_eq!(
        &UInt64Array::from(vec![Some(12_345), None, None]),
        col::<UInt64Array>(&b, "amount")
    );
    assert_eq!(
        &UInt32Array::from(vec![None, Some(2), None]),
        col::<UInt32Array>(&b, "market")
    );
    assert_eq!(
        &UInt64Array::from(vec![None, Some(50_000), None]),
        col::<UInt64Array>(&b, "price")
    );
    assert_eq!(
        &UInt64Array::from(vec![None, Some(300), None]),
        col::<UInt64Array>(&b, "qty")
    );
    assert_eq!(
        &StringArray::from(vec![None, Some("buy"), None]),
        col::<StringArray>(&b, "side")
    );
    assert_eq!(
        &UInt64Array::from(vec![None, Some(9), None]),
        col::<UInt64Array>(&b, "taker_order_id")
    );
    assert_eq!(
        &UInt64Array::from(vec![None, Some(8), None]),
        col::<UInt64Array>(&b, "maker_order_id")
    );
    assert_eq!(
        &UInt64Array::from(vec![None, Some(6), None]),
        col::<UInt64Array>(&b, "maker_account")
    );
    assert_eq!(
        &UInt64Array::from(vec![None, Some(30), None]),
        col::<UInt64Array>(&b, "taker_fee")
    );
    assert_eq!(
        &UInt64Array::from(vec![None, None, Some(u64::MAX)]),
        col::<UInt64Array>(&b, "available")
    );
    assert_eq!(
        &UInt64Array::from(vec![None, None, Some(0)]),
        col::<UInt64Array>(&b, "held")
    );
    // Columns no event here uses are all null.
    for name in [
        "owner",
        "reject_code",
        "asset_code",
        "cancel_reason",
        "expired",
    ] {
        let c = b.column_by_name(name).unwrap();
        assert_eq!((name, 3), (name, c.null_count()));
    }
    assert_eq!(3, col::<UInt16Array>(&b, "reject_code").len());
    assert_eq!(3, col::<BooleanArray>(&b, "expired").len());

    // The Parquet schema keeps the unsigned and time types (what DuckDB, Spark and Trino
    // see), and the manifest lists the one file.
    let file =
        std::fs::File::open(dir.path().join("shard=0/part-00000000000000000001.parquet")).unwrap();
    let meta = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let descr = meta.parquet_schema();
    let shown = |name: &str| {
        let c = descr.columns().iter().find(|c| c.name() == name).unwrap();
        format!("{:?} {:?}", c.physical_type(), c.logical_type_ref())
    };
    assert_eq!(
        "INT64 Some(Integer(IntType { bit_width: 64, is_signed: false }))",
        shown("amount")
    );
    assert_eq!(
        "INT64 Some(Timestamp(TimestampType { is_adjusted_to_u_t_c: true, unit: NANOS }))",
        shown("timestamp")
    );
    assert_eq!("BYTE_ARRAY Some(String)", shown("kind"));
    let (manifest, _) = read_dir(dir.path()).unwrap();
    assert_eq!(
        Manifest {
            position: BTreeMap::from([(0, 3)]),
            files: vec![PartFile {
                path: "shard=0/part-00000000000000000001.parquet".into(),
                shard: 0,
                first_seq: 1,
                last_seq: 3,
                rows: 3,
                bytes: summary.bytes,
            }],
            ..Manifest::default()
        },
        manifest
    );
    assert_eq!(
        Summary {
            events: 3,
            files: 1,
            bytes: summary.bytes,
            removed: 0
        },
        summary
    );
}

/// Events of shards 0 and 1, seq 1..=n each, interleaved like an `all` page.
fn stream(n: u64) -> Vec<EventRecord> {
    let mut out = vec![];
    for seq in 1..=n {
        for shard in 0..2 {
            out.push(rec(
                shard,
                seq,
                Event::Deposited {
                    id: d::TransferId(seq),
                    account: d::AccountId(1 + shard as u64),
                    asset: d::AssetId(1),
                    amount: d::Amount(seq * 10),
                },
            ));
        }
    }
    out
}

/// Writes `events` as pages of `page` events with the position after each page.
fn export(x: &mut Exporter, events: &[EventRecord], page: usize) {
    for chunk in events.chunks(page) {
        let mut position = x.position();
        for e in chunk {
            position.insert(e.shard, e.seq);
        }
        x.write(chunk, &position).unwrap();
    }
}

#[test]
fn a_second_run_exports_only_what_is_new() {
    let all = stream(10);
    let dir = tempfile::tempdir().unwrap();
    let mut x = Exporter::open(dir.path()).unwrap();
    export(&mut x, &all[..8], 3);
    let first = x.finish().unwrap();
    assert_eq!((8, 2), (first.events, first.files));

    let mut x = Exporter::open(dir.path()).unwrap();
    assert_eq!(
        BTreeMap::from([(d::ShardId(0), 4), (d::ShardId(1), 4)]),
        x.position()
    );
    // A page repeating an exported event is refused whole, nothing written.
    let err = x
        .write(
            &all[6..10],
            &BTreeMap::from([(d::ShardId(0), 5), (d::ShardId(1), 5)]),
        )
        .unwrap_err();
    assert_eq!(
        "event 4 of shard 0 is out of order: expected after 4 and at most 5",
        err.to_string()
    );
    // A position going back is refused.
    let err = x
        .write(&[], &BTreeMap::from([(d::ShardId(1), 3)]))
        .unwrap_err();
    assert_eq!(
        "the position of shard 1 goes back from 4 to 3",
        err.to_string()
    );
    export(&mut x, &all[8..], 5);
    let second = x.finish().unwrap();
    assert_eq!((12, 2), (second.events, second.files));

    // A third run with nothing new writes no file.
    let x = Exporter::open(dir.path()).unwrap();
    assert_eq!(Summary::default(), x.finish().unwrap());

    let (manifest, back) = read_dir(dir.path()).unwrap();
    let mut expected = all.clone();
    expected.sort_by_key(|e| (e.shard, e.seq));
    // Files: run 1 shard 0, shard 1; run 2 shard 0, shard 1.
    let mut by_file = manifest.files.clone();
    by_file.sort_by_key(|f| (f.shard, f.first_seq));
    let mut got = vec![];
    for f in &by_file {
        got.extend(read_file(&dir.path().join(&f.path)).unwrap());
    }
    assert_eq!(expected, got);
    assert_eq!(all.len(), back.len());
    assert_eq!(
        vec![
            ("shard=0/part-00000000000000000001.parquet", 1, 4),
            ("shard=1/part-00000000000000000001.parquet", 1, 4),
            ("shard=0/part-00000000000000000005.parquet", 5, 10),
            ("shard=1/part-00000000000000000005.parquet", 5, 10),
        ],
        manifest
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.first_seq, f.last_seq))
            .collect::<Vec<_>>()
    );
    assert_eq!(BTreeMap::from([(0, 10), (1, 10)]), manifest.position);
}

#[test]
fn full_files_are_completed_and_a_crash_leaves_no_duplicate() {
    let all = stream(12);
    let dir = tempfile::tempdir().unwrap();
    let mut x = Exporter::open(dir.path()).unwrap().with_limits(2, 5);
    export(&mut x, &all[..14], 4);
    // Shard 0 and 1 have 7 events each: one full file (1..=5) each is complete and in
    // the manifest; the rest (6..=7) is in open parts. Dropping the exporter here is a
    // crash: the next open removes the temporary parts and resumes after 5.
    assert_eq!(BTreeMap::from([(0, 5), (1, 5)]), x.manifest().position);
    drop(x);
    let names = |dir: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("shard=0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        vec![
            ".part-00000000000000000006.parquet.tmp",
            "part-00000000000000000001.parquet"
        ],
        names(dir.path())
    );
    // An orphan: a complete file the manifest never listed (crash before the manifest).
    std::fs::write(
        dir.path().join("shard=1/part-00000000000000000006.parquet"),
        b"x",
    )
    .unwrap();
    std::fs::write(dir.path().join("shard=1/notes.txt"), b"mine").unwrap();
    // Another tool's part file in the same layout is not ours to remove.
    std::fs::write(
        dir.path().join("shard=1/part-00000-1b2c.snappy.parquet"),
        b"theirs",
    )
    .unwrap();

    let mut x = Exporter::open(dir.path()).unwrap().with_limits(2, 5);
    assert_eq!(
        BTreeMap::from([(d::ShardId(0), 5), (d::ShardId(1), 5)]),
        x.position()
    );
    let rest: Vec<EventRecord> = all.iter().filter(|e| e.seq > 5).cloned().collect();
    export(&mut x, &rest, 3);
    let summary = x.finish().unwrap();
    assert_eq!((14, 4, 3), (summary.events, summary.files, summary.removed));
    assert_eq!(
        vec![
            "part-00000000000000000001.parquet",
            "part-00000000000000000006.parquet",
            "part-00000000000000000011.parquet"
        ],
        names(dir.path())
    );
    assert!(dir.path().join("shard=1/notes.txt").exists());
    std::fs::remove_file(dir.path().join("shard=1/part-00000-1b2c.snappy.parquet")).unwrap();

    let (manifest, back) = read_dir(dir.path()).unwrap();
    let mut expected = all.clone();
    expected.sort_by_key(|e| (e.shard, e.seq));
    let mut back_sorted = back.clone();
    back_sorted.sort_by_key(|e| (e.shard, e.seq));
    assert_eq!(expected, back_sorted);
    assert_eq!(vec![5, 5, 5, 5, 2, 2], {
        let mut rows: Vec<u64> = manifest.files.iter().map(|f| f.rows).collect();
        rows.sort_by(|a, b| b.cmp(a));
        rows
    });
    // Row groups of at most 2 rows: a 5-row file has 3.
    let file =
        std::fs::File::open(dir.path().join("shard=0/part-00000000000000000006.parquet")).unwrap();
    let meta = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(
        vec![2, 2, 1],
        meta.metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect::<Vec<_>>()
    );
}

#[test]
fn one_export_per_directory_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let x = Exporter::open(dir.path()).unwrap();
    let err = Exporter::open(dir.path()).err().unwrap();
    assert_eq!(
        format!(
            "{}: another export is running into this directory",
            dir.path().display()
        ),
        err.to_string()
    );
    x.finish().unwrap();
    Exporter::open(dir.path()).unwrap().finish().unwrap();

    // Not a directory one can create.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = Exporter::open(&file.join("out")).err().unwrap();
    assert!(
        matches!(&err, ExportError::Io { action: "creating", path, .. } if path == &file.join("out")),
        "{err:?}"
    );

    // A manifest of something else.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join(MANIFEST_FILE), b"{\"format\": 1}").unwrap();
    let err = Exporter::open(&other).err().unwrap();
    assert!(matches!(err, ExportError::Manifest { .. }), "{err:?}");

    // A timestamp past 2262 is refused before anything is written.
    let mut x = Exporter::open(&dir.path().join("ts")).unwrap();
    let mut e = stream(1).remove(0);
    e.timestamp = d::Timestamp(u64::MAX);
    let err = x
        .write(&[e], &BTreeMap::from([(d::ShardId(0), 1)]))
        .unwrap_err();
    assert_eq!(
        "event 1 of shard 0: timestamp 18446744073709551615 ns does not fit a Parquet TIMESTAMP",
        err.to_string()
    );
    assert_eq!(BTreeMap::new(), x.position());
}

#[test]
fn a_row_no_event_could_have_written_is_refused() {
    let records = vec![rec(
        0,
        1,
        Event::AccountFrozen {
            account: d::AccountId(5),
        },
    )];
    let batch = to_batch(&records).unwrap();
    // Put an amount in an account_frozen row.
    let mut columns = batch.columns().to_vec();
    let i = COLUMNS.iter().position(|c| *c == "amount").unwrap();
    columns[i] = std::sync::Arc::new(UInt64Array::from(vec![Some(1)]));
    let bad = RecordBatch::try_new(schema(), columns).unwrap();
    assert_eq!(
        "column amount, row 0: set in a \"account_frozen\" row, which has no such field",
        from_batch(&bad).unwrap_err().to_string()
    );
}

#[test]
fn after_a_failed_write_nothing_more_is_written_or_completed() {
    let dir = tempfile::tempdir().unwrap();
    // A file where shard 0's directory should be: creating the part fails.
    std::fs::write(dir.path().join("shard=0"), b"").unwrap();
    let mut x = Exporter::open(dir.path()).unwrap();
    let position = BTreeMap::from([(d::ShardId(0), 1), (d::ShardId(1), 1)]);
    let err = x.write(&stream(1), &position).unwrap_err();
    assert!(
        matches!(
            &err,
            ExportError::Io {
                action: "creating",
                ..
            }
        ),
        "{err:?}"
    );
    let again = "an earlier write of this export failed; run the export again";
    assert_eq!(again, x.write(&[], &position).unwrap_err().to_string());
    assert_eq!(again, x.finish().unwrap_err().to_string());
    assert!(!dir.path().join(MANIFEST_FILE).exists());
}
