//! Restart = latest snapshot + the log after it, and the state hash after a restart equals
//! the hash before it, whichever snapshot (or none) is usable.

use tradelog_domain::*;
use tradelog_engine::{Input, Placement};
use tradelog_node::{
    replay_shard_dir, DurableShard, NodeError, ReplayOptions, ShardConfig, SNAPSHOTS_DIR,
};
use tradelog_storage::{FileLogConfig, LogStore};

fn config(dir: &std::path::Path, every: u64) -> ShardConfig {
    ShardConfig {
        dir: dir.to_path_buf(),
        shard: ShardId(0),
        placement: Placement::new(1),
        snapshot_every_records: every,
        snapshot_interval_min_ms: 0,
        log: FileLogConfig {
            segment_bytes_max: 16 << 10,
            record_bytes_max: 4 << 10,
            ..FileLogConfig::default()
        },
        watermark_every_ms: 0,
    }
}

/// A mixed workload (accounts, deposits, transfers, resting and crossing orders), one
/// input per batch after the setup.
fn workload(n: u64) -> Vec<Vec<Input>> {
    tradelog_engine::testing::workload(n, 1)
}

fn run(dir: &std::path::Path, every: u64, batches: &[Vec<Input>]) -> [u8; 32] {
    let (mut shard, _) = DurableShard::open(config(dir, every)).unwrap();
    let mut events = vec![];
    for b in batches {
        shard.submit(b, &mut events).unwrap();
    }
    shard.wait_for_snapshot().unwrap();
    shard.engine().validate().unwrap();
    shard.engine().state_hash()
}

/// The records threshold alone would snapshot every 100 records; the time floor lets one
/// snapshot through, then none for a minute, whatever the records say; a restart then
/// replays what came after the one snapshot.
#[test]
fn the_snapshot_interval_floor_holds_back_snapshots_the_records_would_start() {
    let batches = workload(600);
    let snapshots = |floor_ms: u64| {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(tmp.path(), 100);
        c.snapshot_interval_min_ms = floor_ms;
        let (mut shard, _) = DurableShard::open(c.clone()).unwrap();
        let mut events = vec![];
        for b in &batches {
            shard.submit(b, &mut events).unwrap();
            // Each snapshot finishes before the next batch: only the policy holds one back.
            shard.wait_for_snapshot().unwrap();
        }
        let hash = shard.engine().state_hash();
        drop(shard);
        let n = std::fs::read_dir(tmp.path().join(SNAPSHOTS_DIR))
            .unwrap()
            .count();
        let (shard, report) = DurableShard::open(c).unwrap();
        assert_eq!(shard.engine().state_hash(), hash);
        (n, report.snapshot_index)
    };
    let (many, _) = snapshots(0);
    assert!(many >= 5, "{many} snapshots without a floor");
    let (one, index) = snapshots(60_000);
    assert_eq!(1, one, "one snapshot, then the floor");
    assert!((100..200).contains(&index), "the one snapshot at {index}");
}

#[test]
fn restart_reproduces_the_state_hash_from_snapshot_plus_log() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = workload(600);
    let before = run(tmp.path(), 100, &batches);
    let snaps = std::fs::read_dir(tmp.path().join(SNAPSHOTS_DIR))
        .unwrap()
        .count();
    assert!(snaps >= 3, "{snaps} snapshots");

    let (shard, report) = DurableShard::open(config(tmp.path(), 100)).unwrap();
    assert!(report.snapshot_index > 0, "no snapshot used: {report:?}");
    assert!(report.replayed < 200, "replayed the whole log: {report:?}");
    assert_eq!(shard.engine().state_hash(), before);
    drop(shard);

    // The newest snapshot damaged: the next one back is used, same state.
    let mut files: Vec<_> = std::fs::read_dir(tmp.path().join(SNAPSHOTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let newest = files.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(newest, &bytes).unwrap();
    let (shard, report) = DurableShard::open(config(tmp.path(), 100)).unwrap();
    assert_eq!(report.skipped_snapshots.len(), 1, "{report:?}");
    assert_eq!(shard.engine().state_hash(), before);
    drop(shard);

    // No snapshot at all: replay of the whole log.
    std::fs::remove_dir_all(tmp.path().join(SNAPSHOTS_DIR)).unwrap();
    let (shard, report) = DurableShard::open(config(tmp.path(), 0)).unwrap();
    assert_eq!(report.snapshot_index, 0);
    assert_eq!(shard.applied_index(), report.replayed);
    assert_eq!(shard.engine().state_hash(), before);
}

#[test]
fn a_shard_that_never_snapshots_matches_one_that_does() {
    let batches = workload(300);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert_eq!(run(a.path(), 0, &batches), run(b.path(), 37, &batches));
}

#[test]
fn oversized_submits_are_refused_without_side_effects() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut shard, _) = DurableShard::open(config(tmp.path(), 0)).unwrap();
    let tick = Input::Tick {
        timestamp: Timestamp(5),
    };
    let many = vec![tick; tradelog_node::SUBMIT_INPUTS_MAX + 1];
    let mut events = vec![];
    assert!(matches!(
        shard.submit(&many, &mut events),
        Err(tradelog_node::NodeError::TooManyInputs(_))
    ));
    assert_eq!(shard.applied_index(), 0);
    assert_eq!(shard.log().last_index(), 0);
}

#[test]
fn verify_replays_the_whole_history_and_checks_every_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = workload(400);
    let before = run(tmp.path(), 100, &batches);
    let r = tradelog_node::verify_shard_dir(tmp.path(), ShardId(0), Placement::new(1)).unwrap();
    assert_eq!(r.state_hash, before);
    assert!(r.snapshots_checked >= 3, "{r:?}");
    assert_eq!(
        r.records,
        batches.iter().map(|b| b.len() as u64).sum::<u64>()
    );
    assert_eq!(r.torn_tail_bytes, 0);

    // A snapshot from another history at the same index is caught.
    let other = tempfile::tempdir().unwrap();
    let mut changed = workload(400);
    if let Input::Command {
        command: Command::Deposit { amount, .. },
        ..
    } = &mut changed[1][1]
    {
        *amount = Amount(999);
    } else {
        panic!("workload changed shape");
    }
    run(other.path(), 100, &changed);
    let pick = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d.join(SNAPSHOTS_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v[0].clone()
    };
    let (mine, theirs) = (pick(tmp.path()), pick(other.path()));
    assert_eq!(mine.file_name(), theirs.file_name());
    std::fs::copy(&theirs, &mine).unwrap();
    match tradelog_node::verify_shard_dir(tmp.path(), ShardId(0), Placement::new(1)) {
        Err(tradelog_node::NodeError::Diverged { index, .. }) => {
            assert_eq!(
                format!("snapshot-{index:020}.bin"),
                mine.file_name().unwrap().to_str().unwrap()
            )
        }
        other => panic!("expected a divergence, got {other:?}"),
    }

    // A flipped bit in the log is reported with its file.
    let log = tmp.path().join("log");
    let mut segs: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[200] ^= 4;
    std::fs::write(&segs[0], &bytes).unwrap();
    let err =
        tradelog_node::verify_shard_dir(tmp.path(), ShardId(0), Placement::new(1)).unwrap_err();
    assert!(
        err.to_string().contains("segment-00000000000000000001.log"),
        "{err}"
    );
}

#[test]
fn verify_reports_a_snapshot_beyond_a_cut_log() {
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path(), 100, &workload(1_500));
    // Cut the log back to its first segment: the snapshots now point past its end.
    let log = tmp.path().join("log");
    let mut segs: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    assert!(segs.len() > 2);
    for s in &segs[1..] {
        std::fs::remove_file(s).unwrap();
    }
    match tradelog_node::verify_shard_dir(tmp.path(), ShardId(0), Placement::new(1)) {
        Err(tradelog_node::NodeError::SnapshotBeyondLog { index, last }) => assert!(index > last),
        other => panic!("expected SnapshotBeyondLog, got {other:?}"),
    }
}

/// Cuts `bytes` bytes off the end of the records of the last log segment.
fn cut_tail(dir: &std::path::Path, bytes: u64) {
    let log = dir.join("log");
    let mut segs: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let data = std::fs::read(last).unwrap();
    let end = data.iter().rposition(|b| *b != 0).unwrap() as u64 + 1;
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(end - bytes).unwrap();
}

#[test]
fn a_torn_tail_beyond_the_watermark_is_cut_but_below_it_is_refused() {
    let batches = workload(200);
    // The watermark is written only with the first group (a long interval): everything
    // after it counts as possibly unsynced, so a cut tail is an interrupted write.
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), 0);
    c.watermark_every_ms = u64::MAX;
    {
        let (mut shard, _) = DurableShard::open(c.clone()).unwrap();
        let mut events = vec![];
        for b in &batches {
            shard.submit(b, &mut events).unwrap();
        }
    }
    cut_tail(tmp.path(), 5);
    let (shard, report) = DurableShard::open(c).unwrap();
    assert!(report.log.torn_tail.is_some(), "{report:?}");
    assert_eq!(
        shard.applied_index(),
        batches.iter().map(|b| b.len() as u64).sum::<u64>() - 1
    );
    shard.engine().validate().unwrap();
    drop(shard);

    // With the watermark written after every group, the same cut loses a durable record:
    // refused, and the files are left as they are.
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path(), 0, &batches);
    cut_tail(tmp.path(), 5);
    match DurableShard::open(config(tmp.path(), 0)) {
        Err(tradelog_node::NodeError::AcknowledgedLoss {
            watermark,
            last_valid,
            damage: Some(d),
        }) => {
            assert_eq!(last_valid + 1, watermark);
            assert!(d.contains("segment-"), "{d}");
        }
        Err(other) => panic!("expected AcknowledgedLoss, got {other}"),
        Ok(_) => panic!("expected AcknowledgedLoss, the shard opened"),
    }
}

/// Opening a shard syncs everything its log recovered, so it raises the watermark to it:
/// records a crash left above the last periodic watermark are durable once the shard has
/// opened, and losing them afterwards is damage, not an interrupted write.
#[test]
fn opening_raises_the_watermark_to_everything_recovered() {
    let batches = workload(200);
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), 0);
    c.watermark_every_ms = u64::MAX;
    {
        let (mut shard, _) = DurableShard::open(c.clone()).unwrap();
        let mut events = vec![];
        for b in &batches {
            shard.submit(b, &mut events).unwrap();
        }
    }
    // The periodic watermark covers only the first group; an open (and nothing else) makes
    // it cover the whole log.
    drop(DurableShard::open(c.clone()).unwrap());
    cut_tail(tmp.path(), 5);
    match DurableShard::open(c) {
        Err(tradelog_node::NodeError::AcknowledgedLoss {
            watermark,
            last_valid,
            ..
        }) => assert_eq!(last_valid + 1, watermark),
        Err(other) => panic!("expected AcknowledgedLoss, got {other}"),
        Ok(_) => panic!("expected AcknowledgedLoss, the shard opened"),
    }
}

/// Snapshots are taken from the snapshotter's copy of the state, not the shard's: each one
/// must hold exactly the state the shard had at its index, periodic or requested, whether
/// the snapshotter was started at open or by the first request.
#[test]
fn every_snapshot_holds_the_state_the_shard_had_at_its_index() {
    let batches = workload(400);
    for every in [0, 37] {
        let tmp = tempfile::tempdir().unwrap();
        let (mut shard, _) = DurableShard::open(config(tmp.path(), every)).unwrap();
        let mut at = std::collections::BTreeMap::new();
        let mut events = vec![];
        for (n, b) in batches.iter().enumerate() {
            shard.submit(b, &mut events).unwrap();
            at.insert(shard.applied_index(), shard.engine().state_hash());
            if n % 97 == 0 {
                shard.snapshot_in_background().unwrap();
            }
        }
        shard.wait_for_snapshot().unwrap();
        drop(shard);
        let files: Vec<_> = std::fs::read_dir(tmp.path().join(SNAPSHOTS_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(files.len() >= 4, "{} snapshots", files.len());
        for path in files {
            let file = tradelog_node::read_snapshot_file(&path).unwrap();
            let expected = at[&file.meta.index];
            assert_eq!(file.meta.state_hash, expected, "{}", path.display());
            let restored = tradelog_engine::Engine::restore(&file.engine).unwrap();
            assert_eq!(restored.state_hash(), expected, "{}", path.display());
        }
    }
}

#[test]
fn offline_replay_regenerates_the_events_and_the_state_hash_at_any_index() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = workload(400);
    // Live: every event and the state hash after each log index.
    let (mut shard, _) = DurableShard::open(config(tmp.path(), 100)).unwrap();
    let mut live = vec![];
    let mut hash_at = vec![shard.engine().state_hash()];
    for b in &batches {
        for i in b {
            shard.submit(std::slice::from_ref(i), &mut live).unwrap();
            hash_at.push(shard.engine().state_hash());
        }
    }
    let last = shard.applied_index();
    assert_eq!(last as usize + 1, hash_at.len());

    // While the shard has its log open, replay refuses the directory.
    let opts = ReplayOptions::default();
    let placement = Placement::new(1);
    match replay_shard_dir(tmp.path(), ShardId(0), placement.clone(), &opts, |_| {}) {
        Err(NodeError::Storage(tradelog_storage::StorageError::Locked { .. })) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    shard.wait_for_snapshot().unwrap();
    drop(shard);

    // The whole history: the same events, the same hash, every snapshot checked.
    let mut replayed = vec![];
    let r = replay_shard_dir(tmp.path(), ShardId(0), placement.clone(), &opts, |e| {
        replayed.push(e.clone())
    })
    .unwrap();
    assert_eq!(replayed, live);
    assert_eq!(r.state_hash, hash_at[last as usize]);
    assert_eq!(
        (r.snapshot_index, r.last_index, r.log_last_index, r.records),
        (0, last, last, last)
    );
    assert_eq!(r.events, live.len() as u64);
    assert!(r.snapshots_checked >= 3, "{r:?}");

    // Up to an index: the prefix of the events, the hash the shard had there.
    let to = 150;
    let mut prefix = vec![];
    let opts = ReplayOptions {
        to: Some(to),
        from_snapshot: false,
    };
    let r = replay_shard_dir(tmp.path(), ShardId(0), placement.clone(), &opts, |e| {
        prefix.push(e.clone())
    })
    .unwrap();
    assert_eq!(r.state_hash, hash_at[to as usize]);
    let expected: Vec<_> = live.iter().filter(|e| e.input <= to).cloned().collect();
    assert_eq!(prefix, expected);

    // From the newest snapshot at or below the index: only the events after it.
    let opts = ReplayOptions {
        to: Some(to),
        from_snapshot: true,
    };
    let mut tail = vec![];
    let r = replay_shard_dir(tmp.path(), ShardId(0), placement.clone(), &opts, |e| {
        tail.push(e.clone())
    })
    .unwrap();
    assert!(r.snapshot_index > 0 && r.snapshot_index <= to, "{r:?}");
    assert_eq!(r.state_hash, hash_at[to as usize]);
    assert_eq!(r.records, to - r.snapshot_index);
    let expected: Vec<_> = live
        .iter()
        .filter(|e| e.input > r.snapshot_index && e.input <= to)
        .cloned()
        .collect();
    assert_eq!(tail, expected);

    // Beyond the end of the log: the whole log.
    let opts = ReplayOptions {
        to: Some(last + 1_000),
        from_snapshot: true,
    };
    let r = replay_shard_dir(tmp.path(), ShardId(0), placement.clone(), &opts, |_| {}).unwrap();
    assert_eq!((r.last_index, r.state_hash), (last, hash_at[last as usize]));

    // A snapshot whose recorded hash is wrong is found.
    let snaps = tmp.path().join(SNAPSHOTS_DIR);
    let mut files: Vec<_> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let first = files[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&first, &bytes).unwrap();
    let opts = ReplayOptions::default();
    match replay_shard_dir(tmp.path(), ShardId(0), placement, &opts, |_| {}) {
        Err(NodeError::BadRecord { reason, .. }) => {
            assert!(reason.contains("unreadable"), "{reason}")
        }
        other => panic!("expected an unreadable snapshot, got {other:?}"),
    }
}

#[test]
fn the_slowest_group_is_kept_with_its_parts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut shard, _) = DurableShard::open(config(dir.path(), 0)).unwrap();
    assert_eq!(shard.slowest_group(), Default::default());
    let mut events = vec![];
    let batches = workload(50);
    let most = batches.iter().map(|b| b.len() as u64).max().unwrap();
    for b in &batches {
        shard.submit(b, &mut events).unwrap();
    }
    let g = shard.slowest_group();
    assert!(g.inputs >= 1 && g.inputs <= most, "{g:?}");
    assert_eq!(
        g.total_us(),
        g.append_us + g.sync_us + g.apply_us + g.handoff_us + g.after_us
    );
}
