//! The behavioural suite every [`LogStore`] implementation must pass (feature `testing`).
//!
//! An implementation provides a [`Harness`] (how to create, cleanly reopen and crash one of
//! its logs) and calls [`run_all`] from a test. Each check starts from a fresh log and
//! panics with a message naming what broke.

use crate::{chain_next, ChainHash, LogStore, Record, StorageError, GENESIS_HASH};

/// How the suite creates, restarts and crashes logs of one implementation.
pub trait Harness {
    /// The implementation under test.
    type Log: LogStore;

    /// A new, empty log.
    fn create(&mut self) -> Self::Log;

    /// A clean restart (close, then open the same storage): nothing appended is lost.
    fn reopen(&mut self, log: Self::Log) -> Self::Log;

    /// A crash (power loss) and restart: records after `durable_index()` may be lost, any
    /// suffix of them, never anything before.
    fn crash(&mut self, log: Self::Log) -> Self::Log;

    /// The largest payload the logs from [`Harness::create`] accept.
    fn record_bytes_max(&self) -> usize;
}

/// Runs every check of the suite.
pub fn run_all<H: Harness>(h: &mut H) {
    empty_log(h);
    append_assigns_consecutive_indexes(h);
    read_ranges_and_limits(h);
    record_size_limit(h);
    sync_makes_everything_durable(h);
    split_sync_covers_what_was_appended_before_it(h);
    reopen_preserves_everything(h);
    crash_keeps_a_prefix_of_at_least_the_durable_records(h);
    truncate_after(h);
    truncate_is_durable(h);
    truncated_records_never_come_back(h);
    archive_before(h);
    reset_to(h);
    many_records(h);
}

/// Deterministic payload number `tag`, of a length that varies (including 0).
pub fn payload(tag: u64, max: usize) -> Vec<u8> {
    let len = (tag.wrapping_mul(37) % 97) as usize % (max.min(200) + 1);
    (0..len)
        .map(|i| (tag as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

fn append_payloads<L: LogStore>(log: &mut L, payloads: &[Vec<u8>]) -> std::ops::Range<u64> {
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    let last = log.last_index();
    let r = log.append(&refs).expect("append");
    assert_eq!(
        r,
        last + 1..last + 1 + payloads.len() as u64,
        "append range"
    );
    assert_eq!(log.last_index(), r.end - 1, "last_index after append");
    assert!(
        log.durable_index() <= log.last_index(),
        "durable beyond last"
    );
    r
}

fn tagged(from: u64, n: u64, max: usize) -> Vec<Vec<u8>> {
    (from..from + n).map(|t| payload(t, max)).collect()
}

/// Checks that the live log holds exactly `expected` (from `first_index()`), with a valid
/// chain from `chain_hash(first_index() - 1)`.
pub fn assert_content<L: LogStore>(log: &L, expected: &[Vec<u8>]) {
    let first = log.first_index();
    assert_eq!(
        log.last_index(),
        first + expected.len() as u64 - 1,
        "last_index vs expected content"
    );
    let records = log.read(first, usize::MAX).expect("read all");
    assert_eq!(records.len(), expected.len(), "number of records read");
    let mut prev = log.chain_hash(first - 1).expect("chain hash before first");
    for (k, (r, p)) in records.iter().zip(expected).enumerate() {
        let index = first + k as u64;
        assert_eq!(r.index, index, "record index");
        assert_eq!(&r.payload, p, "payload of record {index}");
        let chain = chain_next(&prev, index, p);
        assert_eq!(r.chain_hash, chain, "chain hash of record {index}");
        prev = chain;
    }
    assert_eq!(
        log.chain_hash(log.last_index())
            .expect("chain hash of last"),
        prev,
        "chain_hash(last_index)"
    );
}

fn assert_out_of_range<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(StorageError::OutOfRange { .. }) => {}
        other => panic!("{what}: expected OutOfRange, got {other:?}"),
    }
}

/// A new log: indexes 1.., nothing durable, the genesis hash, reads at the edges.
pub fn empty_log<H: Harness>(h: &mut H) {
    let mut log = h.create();
    assert_eq!(log.first_index(), 1);
    assert_eq!(log.last_index(), 0);
    assert_eq!(log.durable_index(), 0);
    assert_eq!(log.chain_hash(0).expect("chain_hash(0)"), GENESIS_HASH);
    assert_out_of_range(log.chain_hash(1), "chain_hash(1) of an empty log");
    assert!(log.read(1, 10).expect("read(1) of empty").is_empty());
    assert_out_of_range(log.read(0, 10), "read(0)");
    assert_out_of_range(log.read(2, 10), "read(2) of an empty log");
    assert_eq!(log.sync().expect("sync"), 0);
    assert_eq!(log.append(&[]).expect("empty append"), 1..1);
    let log = h.reopen(log);
    assert_eq!((log.first_index(), log.last_index()), (1, 0));
}

/// Indexes are consecutive across appends; the chain is SHA-256(prev || index || payload).
pub fn append_assigns_consecutive_indexes<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let mut all = tagged(1, 3, max);
    assert_eq!(append_payloads(&mut log, &all), 1..4);
    assert_eq!(log.append(&[]).expect("empty append"), 4..4);
    let more = tagged(4, 2, max);
    assert_eq!(append_payloads(&mut log, &more), 4..6);
    all.extend(more);
    assert_content(&log, &all);
    let mut prev = GENESIS_HASH;
    for (i, p) in all.iter().enumerate() {
        let index = i as u64 + 1;
        prev = chain_next(&prev, index, p);
        assert_eq!(log.chain_hash(index).expect("chain_hash"), prev);
    }
}

/// `read` honours `max`, stops at the end, rejects what is outside the live log.
pub fn read_ranges_and_limits<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let all = tagged(10, 20, max);
    append_payloads(&mut log, &all);
    let idx = |rs: Vec<Record>| rs.iter().map(|r| r.index).collect::<Vec<_>>();
    assert_eq!(idx(log.read(2, 3).expect("read")), vec![2, 3, 4]);
    assert_eq!(idx(log.read(18, 10).expect("read")), vec![18, 19, 20]);
    assert_eq!(idx(log.read(20, 1).expect("read")), vec![20]);
    assert!(log.read(21, 5).expect("read at last + 1").is_empty());
    assert!(log.read(5, 0).expect("read max 0").is_empty());
    assert_out_of_range(log.read(22, 1), "read past last + 1");
    assert_out_of_range(log.read(u64::MAX, 1), "read(u64::MAX)");
    assert_out_of_range(log.chain_hash(21), "chain_hash past last");
    let r = log.read(1, usize::MAX).expect("read all");
    assert_eq!(r.len(), 20);
    for (k, rec) in r.iter().enumerate() {
        assert_eq!(rec.payload, all[k]);
    }
}

/// Payloads up to the limit (and empty ones) are accepted; one byte more is `TooLarge` and
/// nothing of that append is kept.
pub fn record_size_limit<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let big = vec![0xA5; max];
    let empty: Vec<u8> = Vec::new();
    assert_eq!(log.append(&[&big, &empty]).expect("at the limit"), 1..3);
    let too_big = vec![1u8; max + 1];
    match log.append(&[&big[..max.min(4)], &too_big]) {
        Err(StorageError::TooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(log.last_index(), 2, "a rejected append keeps nothing");
    log.sync().expect("sync");
    let log = h.reopen(log);
    assert_content(&log, &[big, empty]);
}

/// `sync` returns the last index, `durable_index` follows it, never exceeds `last_index`.
pub fn sync_makes_everything_durable<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    for round in 0..5u64 {
        append_payloads(&mut log, &tagged(round * 10, round + 1, max));
        assert!(log.durable_index() <= log.last_index());
        let d = log.sync().expect("sync");
        assert_eq!(d, log.last_index(), "sync returns the last index");
        assert_eq!(log.durable_index(), d);
        assert_eq!(log.sync().expect("second sync"), d, "idempotent sync");
    }
}

/// After sync, a clean reopen has every record and the chain continues across it.
pub fn reopen_preserves_everything<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let mut all = tagged(100, 7, max);
    append_payloads(&mut log, &all);
    log.sync().expect("sync");
    let more = tagged(200, 3, max);
    append_payloads(&mut log, &more); // not synced: a clean restart keeps it too
    all.extend(more);
    let mut log = h.reopen(log);
    assert_content(&log, &all);
    assert_eq!(
        log.durable_index(),
        log.last_index(),
        "reopen syncs what it finds"
    );
    let more = tagged(300, 4, max);
    assert_eq!(append_payloads(&mut log, &more), 11..15);
    all.extend(more);
    log.sync().expect("sync");
    let log = h.crash(log);
    assert_content(&log, &all);
}

/// A split sync (`begin_sync`, `wait` without the log, `finish_sync`) makes durable what
/// was appended before it began, not what came after; a truncation meanwhile voids it.
pub fn split_sync_covers_what_was_appended_before_it<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let mut all = tagged(1, 6, max);
    append_payloads(&mut log, &all);
    let ticket = log.begin_sync().expect("begin");
    assert_eq!(ticket.upto(), 6);
    // Appends go on while the sync runs.
    let later = tagged(20, 3, max);
    append_payloads(&mut log, &later);
    all.extend(later);
    let waited = ticket.wait();
    assert_eq!(
        log.finish_sync(ticket, waited).expect("finish"),
        log.durable_index()
    );
    assert!(
        (6..=9).contains(&log.durable_index()),
        "durable {} after a split sync covering 6 of 9",
        log.durable_index()
    );
    // The ones after it need a sync of their own; a crash keeps at least the covered ones.
    let mut log = h.crash(log);
    assert!(log.last_index() >= 6);
    all.truncate(log.last_index() as usize);
    assert_content(&log, &all);

    // A truncation while a sync runs: only what the truncation left durable counts.
    let extra = tagged(40, 4, max);
    let base = log.last_index();
    append_payloads(&mut log, &extra);
    let ticket = log.begin_sync().expect("begin");
    log.truncate_after(base + 1).expect("truncate");
    append_payloads(&mut log, &tagged(60, 2, max));
    let waited = ticket.wait();
    let durable = log.finish_sync(ticket, waited).expect("finish");
    assert!(
        durable <= base + 1,
        "durable {durable}: the records after the cut at {} were replaced",
        base + 1
    );
    assert_eq!(log.sync().expect("sync"), base + 3);
}

/// A crash keeps every durable record and possibly some of the rest, as a prefix; appends
/// continue the chain from whatever survived.
pub fn crash_keeps_a_prefix_of_at_least_the_durable_records<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let mut all = tagged(1, 5, max);
    append_payloads(&mut log, &all);
    assert_eq!(log.sync().expect("sync"), 5);
    let unsynced = tagged(50, 6, max);
    append_payloads(&mut log, &unsynced);
    all.extend(unsynced);
    let durable = log.durable_index();
    let mut log = h.crash(log);
    let last = log.last_index();
    assert!(
        (durable..=11).contains(&last),
        "after a crash last_index {last} must be in {durable}..=11"
    );
    all.truncate(last as usize);
    assert_content(&log, &all);
    assert_eq!(log.durable_index(), last);
    let more = tagged(90, 2, max);
    append_payloads(&mut log, &more);
    all.extend(more);
    log.sync().expect("sync");
    let log = h.crash(log);
    assert_content(&log, &all);
}

/// `truncate_after` removes the suffix; appends reuse the indexes with a chain from the cut.
pub fn truncate_after<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let mut all = tagged(1, 10, max);
    append_payloads(&mut log, &all);
    log.sync().expect("sync");
    let before = log.chain_hash(7).expect("chain_hash(7)");
    log.truncate_after(7).expect("truncate");
    all.truncate(7);
    assert_eq!(log.last_index(), 7);
    assert!(log.durable_index() <= 7);
    assert_eq!(log.chain_hash(7).expect("chain_hash(7)"), before);
    assert!(log.read(8, 5).expect("read at last + 1").is_empty());
    assert_out_of_range(log.read(9, 1), "read after truncation");
    log.truncate_after(7).expect("truncate at last is a no-op");
    log.truncate_after(100)
        .expect("truncate past last is a no-op");
    assert_eq!(log.last_index(), 7);
    let more = tagged(500, 3, max);
    assert_eq!(append_payloads(&mut log, &more), 8..11);
    all.extend(more);
    assert_content(&log, &all);
    // Unsynced records can be truncated too.
    log.truncate_after(9).expect("truncate unsynced");
    all.truncate(9);
    assert_content(&log, &all);
    // Everything.
    log.truncate_after(0).expect("truncate all");
    assert_eq!((log.first_index(), log.last_index()), (1, 0));
    assert_eq!(log.chain_hash(0).expect("chain_hash(0)"), GENESIS_HASH);
    let fresh = tagged(700, 2, max);
    assert_eq!(append_payloads(&mut log, &fresh), 1..3);
    log.sync().expect("sync");
    let log = h.reopen(log);
    assert_content(&log, &fresh);
}

/// A truncation of synced records is durable on return: a crash right after it does not
/// bring them back, and records up to the cut keep their durability.
pub fn truncate_is_durable<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let mut all = tagged(1, 10, max);
    append_payloads(&mut log, &all);
    log.sync().expect("sync");
    log.truncate_after(4).expect("truncate");
    assert_eq!(log.durable_index(), 4, "records up to the cut stay durable");
    all.truncate(4);
    let mut log = h.crash(log);
    assert_content(&log, &all);
    let more = tagged(40, 3, max);
    append_payloads(&mut log, &more);
    all.extend(more);
    log.sync().expect("sync");
    let log = h.crash(log);
    assert_content(&log, &all);
}

/// Records removed by `truncate_after` never reappear after a crash, whatever mix of
/// synced, unsynced and replacement records there was.
pub fn truncated_records_never_come_back<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let mut all = tagged(1, 6, max);
    append_payloads(&mut log, &all);
    log.sync().expect("sync");
    append_payloads(&mut log, &tagged(7, 4, max)); // 7..=10, unsynced
    log.truncate_after(8).expect("truncate");
    all.extend(tagged(7, 2, max));
    let replacement = tagged(1000, 2, max); // new 9, 10
    append_payloads(&mut log, &replacement);
    all.extend(replacement);
    let durable = log.durable_index();
    assert!(durable >= 6);
    let log = h.crash(log);
    let last = log.last_index();
    assert!(
        (durable..=10).contains(&last),
        "after a crash last_index {last} must be in {durable}..=10"
    );
    all.truncate(last as usize);
    assert_content(&log, &all);
}

/// `archive_before` moves a prefix out (never a record at or above the index, never an
/// unsynced one); archived indexes are no longer readable or truncatable; it survives
/// restarts.
pub fn archive_before<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let mut all = tagged(1, 60, max);
    append_payloads(&mut log, &all);
    log.sync().expect("sync");
    let first = log.archive_before(1).expect("archive nothing");
    assert_eq!(first, 1);
    let first = log.archive_before(30).expect("archive");
    assert!(
        (1..=30).contains(&first),
        "new first index {first} not in 1..=30"
    );
    assert_eq!(log.first_index(), first);
    assert_eq!(log.last_index(), 60);
    let live = all.split_off((first - 1) as usize);
    let mut all = live;
    assert_content(&log, &all);
    if first > 1 {
        assert_out_of_range(log.read(first - 1, 1), "read an archived index");
        assert_out_of_range(log.truncate_after(first - 2), "truncate into the archive");
        if first > 2 {
            assert_out_of_range(log.chain_hash(first - 2), "chain hash of an archived index");
        }
    }
    // Unsynced records are never archived.
    let unsynced = tagged(61, 5, max);
    append_payloads(&mut log, &unsynced);
    all.extend(unsynced);
    let durable = log.durable_index();
    let first2 = log
        .archive_before(u64::MAX)
        .expect("archive everything possible");
    assert!(
        first2 >= first && first2 <= durable + 1,
        "archived unsynced records"
    );
    let all = all.split_off((first2 - first) as usize);
    assert_content(&log, &all);
    let mut log = h.reopen(log);
    assert_eq!(log.first_index(), first2, "first index survives a restart");
    assert_content(&log, &all);
    let mut all = all;
    let more = tagged(70, 2, max);
    append_payloads(&mut log, &more);
    all.extend(more);
    log.sync().expect("sync");
    let log = h.crash(log);
    assert_content(&log, &all);
}

/// `reset_to` restarts the log after a snapshot index with the snapshot's chain hash.
pub fn reset_to<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    append_payloads(&mut log, &tagged(1, 5, max));
    assert_out_of_range(log.reset_to(3, [7; 32]), "reset below the last index");
    let anchor: ChainHash = [0x5A; 32];
    log.reset_to(1000, anchor).expect("reset");
    assert_eq!(log.first_index(), 1001);
    assert_eq!(log.last_index(), 1000);
    assert_eq!(log.durable_index(), 1000, "a reset is durable");
    assert_eq!(
        log.chain_hash(1000).expect("chain hash at the reset"),
        anchor
    );
    assert!(log.read(1001, 5).expect("read at last + 1").is_empty());
    assert_out_of_range(log.read(1000, 1), "read below a reset");
    let all = tagged(2000, 4, max);
    assert_eq!(append_payloads(&mut log, &all), 1001..1005);
    assert_eq!(
        log.chain_hash(1001).expect("chain"),
        chain_next(&anchor, 1001, &all[0])
    );
    let log = h.crash(log);
    assert_eq!(log.first_index(), 1001, "a reset survives a crash");
    let mut log = log;
    let mut kept = all;
    kept.truncate((log.last_index() - 1000) as usize);
    assert_content(&log, &kept);
    // Reset exactly at the last index (the snapshot covers the whole log).
    let last = log.last_index();
    let h2 = log.chain_hash(last).expect("chain");
    log.reset_to(last, h2).expect("reset at last");
    assert_eq!((log.first_index(), log.last_index()), (last + 1, last));
    log.reset_to(last, h2).expect("reset an empty log again");
    let log = h.reopen(log);
    assert_eq!((log.first_index(), log.last_index()), (last + 1, last));
    assert_eq!(log.chain_hash(last).expect("chain"), h2);
}

/// Enough records to cross storage units (segments) in every implementation's test setup.
pub fn many_records<H: Harness>(h: &mut H) {
    let max = h.record_bytes_max();
    let mut log = h.create();
    let mut all = Vec::new();
    for round in 0..20u64 {
        let batch = tagged(round * 1000, 1 + round % 7, max);
        append_payloads(&mut log, &batch);
        all.extend(batch);
        if round % 3 == 0 {
            log.sync().expect("sync");
        }
    }
    assert_content(&log, &all);
    let log = h.reopen(log);
    assert_content(&log, &all);
    for from in [1, 2, 17, all.len() as u64] {
        let rs = log.read(from, 9).expect("read");
        for r in rs {
            assert_eq!(r.payload, all[(r.index - 1) as usize]);
        }
    }
}
