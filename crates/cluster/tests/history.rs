//! History regenerated from a replica's Raft log ([`RaftLogSource`] under a
//! [`ShardHistory`]): a group log written through the real log store and applied by the
//! real state machine, batches of varying sizes with membership and blank entries between,
//! a snapshot and a purge into the archive. The state at every input index (also in the
//! middle of a batch) has the hash the engine had there, time questions answer the last
//! input whose shard clock is at or before the time, and the events after every index and
//! every sequence number are byte-identical to the ones the state machine published. A
//! replica that installed a snapshot (its log restarted after it) answers from the
//! snapshot on (time questions too, from the snapshot's clock) and says `Missing` before
//! it.

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::TypeConfigExt;
use openraft::Membership;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tradelog_cluster::RaftLogSource;
use tradelog_domain::{EventRecord, ShardId, Timestamp};
use tradelog_engine::{Engine, Input, Placement};
use tradelog_node::{HistoryError, HistoryLimits, ShardHistory};
use tradelog_raft::{
    Batch, Entry, EntryPayload, LogId, LogStoreConfig, Node, ShardLogStore, ShardStateMachine,
    SinkItem, Snapshot, TypeConfig,
};
use tradelog_storage::FileLogConfig;

fn log_id(index: u64) -> LogId {
    LogId::new(
        openraft::impls::leader_id_adv::LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    )
}

fn membership(index: u64, voters: &[u64]) -> Entry {
    let set: BTreeSet<u64> = voters.iter().copied().collect();
    let nodes: BTreeMap<u64, Node> = voters
        .iter()
        .map(|&v| (v, Node::new(format!("http://node-{v}"))))
        .collect();
    Entry::new(
        log_id(index),
        EntryPayload::Membership(Membership::new(vec![set], nodes).unwrap()),
    )
}

/// A few entries per segment, so that a purge moves segments to the archive.
fn tiny() -> LogStoreConfig {
    LogStoreConfig {
        log: FileLogConfig {
            segment_bytes_max: 64 + 48 + 16_384,
            record_bytes_max: 16_384,
            write_buffer_bytes: 1,
            spare_segments: true,
        },
        ..LogStoreConfig::default()
    }
}

/// The leader time an input carries.
fn input_time(input: &Input) -> Timestamp {
    input.timestamp()
}

/// The log: membership, blank, then the workload's inputs in batches of 1, 7, 3, 12, 2, ...
/// with a membership entry and a blank entry among them. Timestamps go back now and then
/// (as a batch's messages and commands do), so the shard clock is a running maximum.
fn log() -> Vec<Entry> {
    let mut inputs: Vec<Input> = tradelog_engine::testing::workload(300, 4)
        .into_iter()
        .flatten()
        .collect();
    for (k, input) in inputs.iter_mut().enumerate() {
        if let Input::Command { meta, .. } = input {
            meta.timestamp = Timestamp(100 + 3 * k as u64 - (k as u64 % 4) * 5);
        }
    }
    let sizes = [1usize, 7, 3, 12, 2, 5];
    let mut entries = vec![membership(0, &[1, 2, 3]), Entry::new_blank(log_id(1))];
    let mut rest = &inputs[..];
    let mut k = 0;
    while !rest.is_empty() {
        let index = entries.len() as u64;
        match k {
            5 => entries.push(membership(index, &[1, 2, 3, 4])),
            9 => entries.push(Entry::new_blank(log_id(index))),
            _ => {
                let n = sizes[k % sizes.len()].min(rest.len());
                let batch = Batch::new(rest[..n].to_vec()).unwrap();
                entries.push(Entry::new(log_id(index), EntryPayload::Normal(batch)));
                rest = &rest[n..];
            }
        }
        k += 1;
    }
    entries
}

/// What applying the log input by input gives: the state hash and shard clock after
/// every input (`[0]`: the initial state).
struct Expected {
    hashes: Vec<[u8; 32]>,
    clocks: Vec<Timestamp>,
}

fn expected(entries: &[Entry]) -> Expected {
    let mut engine = Engine::new(ShardId(0), Placement::new(1));
    let mut out = Expected {
        hashes: vec![engine.state_hash()],
        clocks: vec![Timestamp(0)],
    };
    let mut events = Vec::new();
    for e in entries {
        if let EntryPayload::Normal(b) = &e.payload {
            for input in &b.inputs {
                engine.apply(input, &mut events);
                out.hashes.push(engine.state_hash());
                let clock = (*out.clocks.last().unwrap()).max(input_time(input));
                out.clocks.push(clock);
            }
        }
    }
    out
}

/// A replica: the real log store and state machine in `dir`, the events it published and
/// its state hash after every entry (by inputs applied).
struct Replica {
    store: ShardLogStore,
    sm: ShardStateMachine,
    published: Arc<Mutex<Vec<EventRecord>>>,
    live: BTreeMap<u64, [u8; 32]>,
}

impl Replica {
    fn open(dir: &Path) -> Replica {
        let store = ShardLogStore::open(dir, tiny()).unwrap();
        let mut sm = ShardStateMachine::open(dir, ShardId(0), Placement::new(1)).unwrap();
        let published: Arc<Mutex<Vec<EventRecord>>> = Arc::default();
        let p = published.clone();
        sm.set_event_sink(Arc::new(move |item| {
            if let SinkItem::Applied(events) = item {
                p.lock().unwrap().extend_from_slice(events);
            }
        }));
        Replica {
            store,
            sm,
            published,
            live: BTreeMap::new(),
        }
    }

    /// Appends `entries` durably, then applies them one by one.
    async fn write(&mut self, entries: &[Entry]) {
        let (tx, rx) = TypeConfig::oneshot();
        self.store
            .append(entries.to_vec(), IOFlushed::signal(tx))
            .await
            .unwrap();
        rx.await.unwrap().unwrap();
        for e in entries {
            let item = Ok((e.clone(), None));
            self.sm
                .apply(futures_util::stream::iter([item]))
                .await
                .unwrap();
            let engine = self.sm.engine();
            self.live
                .insert(engine.inputs_applied(), engine.state_hash());
        }
    }

    async fn snapshot(&mut self) -> Snapshot {
        self.sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap()
    }

    fn applied(&self) -> u64 {
        self.sm.engine().inputs_applied()
    }

    fn history(&self, dir: &Path) -> ShardHistory {
        let source = RaftLogSource::open(dir, ShardId(0), self.sm.applied_records()).unwrap();
        let limits = HistoryLimits {
            cursors_max: 2,
            ..HistoryLimits::default()
        };
        ShardHistory::with_source(Box::new(source), ShardId(0), Placement::new(1), limits)
    }
}

fn events_after_index(h: &ShardHistory, after: u64, applied: u64) -> Vec<EventRecord> {
    let mut r = h.events_after_index(after, applied).unwrap();
    let mut out = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        out.push(e);
    }
    out
}

fn events_after_seq(h: &ShardHistory, after: u64, applied: u64) -> Vec<EventRecord> {
    let mut r = h.events_after_seq(after, applied).unwrap();
    let mut out = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        out.push(e);
    }
    out
}

fn bytes(events: &[EventRecord]) -> Vec<Vec<u8>> {
    events.iter().map(tradelog_codec::encode).collect()
}

/// Every state, time and event question of `h` over inputs `from..=applied` against
/// what applying the log gave.
fn check_all(h: &ShardHistory, exp: &Expected, published: &[EventRecord], from: u64) {
    let applied = (exp.hashes.len() - 1) as u64;
    for i in from..=applied {
        let hash = h.state_at(i, applied, |e| e.state_hash()).unwrap();
        assert_eq!(exp.hashes[i as usize], hash, "state hash after input {i}");
    }
    // Every index near the start, then a sample (every pair is quadratic).
    let sample = |i: &u64| *i < from + 25 || i.is_multiple_of(61) || *i + 3 > applied;
    for i in (from..=applied).filter(sample) {
        let want: Vec<EventRecord> = published.iter().filter(|e| e.input > i).cloned().collect();
        let got = events_after_index(h, i, applied);
        assert_eq!(bytes(&want), bytes(&got), "events after input {i}");
    }
    // Time: the last input whose shard clock is at or before t; before the history's
    // first state, Missing.
    let mut times: Vec<u64> = exp.clocks[from as usize..].iter().map(|c| c.0).collect();
    times.extend(exp.clocks[from as usize + 1..].iter().map(|c| c.0 - 1));
    times.push(u64::MAX);
    for t in times {
        let want = exp.clocks.iter().rposition(|c| c.0 <= t).unwrap() as u64;
        assert_eq!(
            want,
            h.index_at_time(Timestamp(t), applied).unwrap(),
            "index at time {t}"
        );
    }
    let start = exp.clocks[from as usize].0;
    if from > 0 && start > 0 {
        let before = h.index_at_time(Timestamp(start - 1), applied);
        assert!(
            matches!(before, Err(HistoryError::Missing { first, .. }) if first == from + 1),
            "{before:?}"
        );
    }
    let first_seq = published
        .iter()
        .find(|e| e.input > from)
        .map_or(u64::MAX, |e| e.seq);
    for e in published
        .iter()
        .filter(|e| e.seq >= first_seq && sample(&e.seq))
    {
        let after = e.seq - 1;
        let want: Vec<EventRecord> = published
            .iter()
            .filter(|x| x.seq > after)
            .cloned()
            .collect();
        let got = events_after_seq(h, after, applied);
        assert_eq!(bytes(&want), bytes(&got), "events after seq {after}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raft_log_regenerates_every_state_time_and_event() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = log();
    let exp = expected(&entries);
    let mut r = Replica::open(tmp.path());
    let half = entries.len() / 2;
    r.write(&entries[..half]).await;
    // A snapshot, and the log before it purged into the archive.
    let snap = r.snapshot().await;
    let purged = snap.meta.last_log_id.unwrap();
    r.store.purge(purged).await.unwrap();
    assert!(
        std::fs::read_dir(tmp.path().join("log/archive"))
            .unwrap()
            .count()
            > 0,
        "the purge archived segments"
    );
    r.write(&entries[half..]).await;
    let applied = r.applied();
    assert_eq!((exp.hashes.len() - 1) as u64, applied);
    // The oracle agrees with the live state machine at every entry boundary.
    for (i, hash) in &r.live {
        assert_eq!(exp.hashes[*i as usize], *hash, "live hash after input {i}");
    }
    // Nothing but the events the engine gives applying input by input was published.
    let published = r.published.lock().unwrap().clone();
    assert_eq!(
        published.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=published.len() as u64).collect::<Vec<_>>()
    );

    let h = r.history(tmp.path());
    check_all(&h, &exp, &published, 0);

    assert_eq!(0, h.index_at_time(Timestamp(0), applied).unwrap());

    // Never past what the replica applied.
    assert!(matches!(
        h.state_at(applied + 1, applied + 1, |_| ()),
        Err(HistoryError::BadRecord { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_installed_a_snapshot_answers_from_it_on() {
    let leader_dir = tempfile::tempdir().unwrap();
    let entries = log();
    let exp = expected(&entries);
    let mut leader = Replica::open(leader_dir.path());
    let cut = entries.len() / 3;
    leader.write(&entries[..cut]).await;
    let snap = leader.snapshot().await;
    leader.write(&entries[cut..]).await;
    let published = leader.published.lock().unwrap().clone();

    // A replica with the first few entries installs the leader's snapshot: its log
    // restarts after it.
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path());
    r.write(&entries[..3]).await;
    r.sm.install_snapshot(&snap.meta, snap.snapshot.clone())
        .await
        .unwrap();
    let last = snap.meta.last_log_id.unwrap();
    r.store.purge(last).await.unwrap();
    let from = r.applied();
    assert!(from > 0 && from < (exp.hashes.len() - 1) as u64);
    let rest = &entries[last.index as usize + 1..];
    r.write(&rest[..rest.len() / 2]).await;
    r.snapshot().await;
    let mid = r.applied();
    r.write(&rest[rest.len() / 2..]).await;
    let applied = r.applied();

    let h = r.history(dir.path());
    check_all(&h, &exp, &published, from);
    let before = h.state_at(from - 1, applied, |_| ());
    assert!(
        matches!(before, Err(HistoryError::Missing { first, .. }) if first == from + 1),
        "{before:?}"
    );

    // Once the installed snapshot is gone (two newer ones kept), the history starts at
    // the oldest snapshot left, for the reader that knew the older one too.
    r.snapshot().await;
    let files = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(tradelog_raft::SNAPSHOTS_KEPT, files);
    assert!(mid > from);
    for h in [h, r.history(dir.path())] {
        check_all(&h, &exp, &published, mid);
        let at = h.state_at(mid - 1, applied, |_| ());
        assert!(
            matches!(at, Err(HistoryError::Missing { first, .. }) if first == mid + 1),
            "{at:?}"
        );
    }
}

/// A leader may apply an entry that the other replicas made durable before its own append
/// has run: the history waits for such a record to reach the file instead of failing
/// (`APPLIED_RECORD_WAIT_MS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_applied_before_it_is_in_this_replicas_file_is_waited_for() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = log();
    let exp = expected(&entries);
    let mut r = Replica::open(tmp.path());
    let half = entries.len() / 2;
    r.write(&entries[..half]).await;
    // The second half applied before this replica appended it.
    for e in &entries[half..] {
        let item = Ok((e.clone(), None));
        r.sm.apply(futures_util::stream::iter([item]))
            .await
            .unwrap();
    }
    let applied = r.applied();
    let h = r.history(tmp.path());
    let reader =
        tokio::task::spawn_blocking(move || h.state_at(applied, applied, |e| e.state_hash()));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!reader.is_finished(), "the read waits for the records");
    let (tx, rx) = TypeConfig::oneshot();
    r.store
        .append(entries[half..].to_vec(), IOFlushed::signal(tx))
        .await
        .unwrap();
    rx.await.unwrap().unwrap();
    let hash = reader
        .await
        .unwrap()
        .expect("the state once the records are there");
    assert_eq!(exp.hashes[applied as usize], hash);
}
