//! Our own tests of `ShardStateMachine`: apply equals the engine, snapshot install gives
//! the same state hash, damaged or foreign snapshots are refused without any change,
//! restart uses the newest snapshot that checks out.

use crate::common::*;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use std::path::Path;
use tradelog_domain::ShardId;
use tradelog_engine::{Engine, Placement};
use tradelog_raft::{Entry, ShardStateMachine, SnapshotMeta, StoredMembership, SNAPSHOTS_DIR};

fn open(dir: &Path) -> ShardStateMachine {
    ShardStateMachine::open(dir, ShardId(0), Placement::new(1)).expect("open")
}

async fn apply(sm: &mut ShardStateMachine, entries: Vec<Entry>) {
    let items = entries.into_iter().map(|e| Ok((e, None)));
    sm.apply(futures_util::stream::iter(items))
        .await
        .expect("apply");
}

/// Membership at 0, then the batches of `workload(n, 4)` from index 1.
fn history(n: u64) -> Vec<Entry> {
    let mut v = vec![membership(1, 0, &[1, 2, 3])];
    v.extend(entries(1, &workload(n, 4), 1));
    v
}

fn engine_after(entries: &[Entry]) -> Engine {
    let mut e = Engine::new(ShardId(0), Placement::new(1));
    let (mut events, mut results) = (Vec::new(), Vec::new());
    for entry in entries {
        if let tradelog_raft::EntryPayload::Normal(b) = &entry.payload {
            e.apply_batch(&b.inputs, &mut events, &mut results);
        }
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_entries_equals_the_engine_applying_their_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let h = history(40);
    let mut sm = open(tmp.path());
    apply(&mut sm, h[..10].to_vec()).await;
    apply(&mut sm, h[10..].to_vec()).await;
    assert_eq!(engine_after(&h).state_hash(), sm.state_hash());
    assert_eq!(Some(log_id(1, 1, 42)), sm.applied());
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(Some(log_id(1, 1, 42)), applied);
    assert_eq!(
        StoredMembership::new(Some(log_id(1, 1, 0)), members(&[1, 2, 3])),
        membership
    );
    sm.engine().validate().expect("engine invariants");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_snapshot_gives_the_same_state_hash_and_survives_restart() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let h = history(60);
    let mut leader = open(a.path());
    apply(&mut leader, h[..40].to_vec()).await;
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(Some(log_id(1, 1, 39)), snap.meta.last_log_id);
    // The builder worked on a copy: the leader goes on applying meanwhile.
    apply(&mut leader, h[40..].to_vec()).await;

    let mut follower = open(b.path());
    follower
        .install_snapshot(&snap.meta, snap.snapshot.clone())
        .await
        .unwrap();
    assert_eq!(engine_after(&h[..40]).state_hash(), follower.state_hash());
    assert_eq!(
        (snap.meta.last_log_id, snap.meta.last_membership.clone()),
        follower.applied_state().await.unwrap()
    );
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snap.meta, current.meta);
    assert_eq!(snap.snapshot, current.snapshot);

    apply(&mut follower, h[40..].to_vec()).await;
    assert_eq!(leader.state_hash(), follower.state_hash());

    // Restart: the follower comes back from its snapshot file, at the snapshot's index.
    drop(follower);
    let mut follower = open(b.path());
    assert_eq!(Some(log_id(1, 1, 39)), follower.applied());
    assert_eq!(engine_after(&h[..40]).state_hash(), follower.state_hash());
    apply(&mut follower, h[40..].to_vec()).await;
    assert_eq!(leader.state_hash(), follower.state_hash());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_mislabelled_or_foreign_snapshots_are_refused_and_change_nothing() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let h = history(30);
    let mut leader = open(a.path());
    apply(&mut leader, h.clone()).await;
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let mut follower = open(b.path());
    apply(&mut follower, h[..5].to_vec()).await;
    let before = (
        follower.state_hash(),
        follower.applied_state().await.unwrap(),
    );
    let unchanged = |f: &ShardStateMachine| f.state_hash();

    // A flipped bit anywhere: the envelope's CRC refuses it.
    for at in [30, snap.snapshot.len() / 2, snap.snapshot.len() - 1] {
        let mut bad = snap.snapshot.clone();
        bad[at] ^= 0x10;
        let err = follower
            .install_snapshot(&snap.meta, bad)
            .await
            .unwrap_err();
        assert_eq!(std::io::ErrorKind::InvalidData, err.kind(), "{err}");
        assert_eq!(before.0, unchanged(&follower));
    }
    // Offered as something it is not.
    let other = SnapshotMeta {
        last_log_id: Some(log_id(7, 2, 29)),
        last_membership: snap.meta.last_membership.clone(),
    };
    let err = follower
        .install_snapshot(&other, snap.snapshot.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("differs from the expected"),
        "{err}"
    );
    // A snapshot of another shard.
    let mut foreign = ShardStateMachine::open(c.path(), ShardId(1), Placement::new(2)).unwrap();
    apply(&mut foreign, vec![blank(1, 0)]).await;
    let fsnap = foreign
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let err = follower
        .install_snapshot(&fsnap.meta, fsnap.snapshot)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("shard 1 offered to shard 0"),
        "{err}"
    );

    assert_eq!(before.0, follower.state_hash());
    assert_eq!(before.1, follower.applied_state().await.unwrap());
    assert!(follower.get_current_snapshot().await.unwrap().is_none());
    // Nothing was written either.
    assert_eq!(
        0,
        std::fs::read_dir(b.path().join(SNAPSHOTS_DIR))
            .map(|d| d.count())
            .unwrap_or(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_uses_the_newest_snapshot_that_checks_out() {
    let tmp = tempfile::tempdir().unwrap();
    let h = history(30);
    {
        let mut sm = open(tmp.path());
        apply(&mut sm, h[..10].to_vec()).await;
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        apply(&mut sm, h[10..20].to_vec()).await;
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
    }
    let dir = tmp.path().join(SNAPSHOTS_DIR);
    let newest = dir.join(format!("raft-snapshot-{:020}.bin", 20));
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&newest, &bytes).unwrap();

    let sm = open(tmp.path());
    assert_eq!(Some(log_id(1, 1, 9)), sm.applied());
    assert_eq!(engine_after(&h[..10]).state_hash(), sm.state_hash());
    assert_eq!(
        Some(dir.join(format!("raft-snapshot-{:020}.bin", 10))),
        sm.open_report().restored_from
    );
    assert_eq!(1, sm.open_report().skipped.len());
    assert_eq!(newest, sm.open_report().skipped[0].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_snapshots_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let h = history(10);
    let mut sm = open(tmp.path());
    for k in 0..5 {
        apply(&mut sm, h[2 * k..2 * k + 2].to_vec()).await;
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(tmp.path().join(SNAPSHOTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        vec![
            format!("raft-snapshot-{:020}.bin", 8),
            format!("raft-snapshot-{:020}.bin", 10)
        ],
        names
    );
}

#[test]
fn batches_are_checked_before_they_are_proposed() {
    use tradelog_raft::{Batch, BatchError, BATCH_BYTES_MAX, BATCH_INPUTS_MAX};
    assert_eq!(Err(BatchError::Empty), Batch::new(Vec::new()));
    let input = workload(1, 1)[2][0].clone();
    let many = vec![input.clone(); BATCH_INPUTS_MAX + 1];
    assert_eq!(
        Err(BatchError::TooManyInputs(BATCH_INPUTS_MAX + 1)),
        Batch::new(many)
    );
    let big = tradelog_engine::Input::Command {
        meta: tradelog_domain::Meta {
            timestamp: tradelog_domain::Timestamp(1),
            principal: tradelog_domain::Principal(1),
            authority: tradelog_domain::Authority::Operator,
        },
        command: tradelog_domain::Command::CreateAsset(tradelog_domain::Asset {
            id: tradelog_domain::AssetId(9),
            code: "X".repeat(BATCH_BYTES_MAX),
            scale: 0,
        }),
    };
    match Batch::new(vec![big]) {
        Err(BatchError::TooLarge(n)) => assert!(n > BATCH_BYTES_MAX),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let split = tradelog_engine::Input::Split {
        timestamp: tradelog_domain::Timestamp(1),
        split: tradelog_engine::Split {
            parent: tradelog_domain::ShardId(0),
            child: tradelog_domain::ShardId(1),
            modulus: 2,
            residue: 1,
            markets: vec![],
        },
    };
    assert_eq!(
        Err(BatchError::Split(1)),
        Batch::new(vec![input.clone(), split.clone()])
    );
    // Alone, a split is an entry of its own.
    assert_eq!(Batch::new(vec![split.clone()]).unwrap().inputs, vec![split]);
    let ok = vec![input; BATCH_INPUTS_MAX];
    assert_eq!(BATCH_INPUTS_MAX, Batch::new(ok).unwrap().inputs.len());
}

fn split_input(parent: u32, child: u32) -> tradelog_engine::Input {
    tradelog_engine::Input::Split {
        timestamp: tradelog_domain::Timestamp(10_000),
        split: tradelog_engine::Split {
            parent: ShardId(parent),
            child: ShardId(child),
            modulus: 2,
            residue: 1,
            markets: vec![tradelog_domain::MarketId(1)],
        },
    }
}

/// Where the tests put a child's group directory.
fn child_dirs(root: &Path) -> tradelog_raft::ChildDirs {
    let root = root.to_path_buf();
    std::sync::Arc::new(move |s: ShardId| root.join(format!("child-{}", s.0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_entry_writes_the_childs_start_and_the_child_opens_from_it() {
    use tradelog_engine::Input;
    let tmp = tempfile::tempdir().unwrap();
    let (parent_dir, root) = (tmp.path().join("parent"), tmp.path().join("children"));
    // Membership at 0, 20 batches, the split at 21, 10 more batches after it.
    let batches = workload(28, 4);
    let mut h = vec![membership(1, 0, &[1, 2, 3])];
    h.extend(entries(1, &batches[..20], 1));
    let split_at = log_id(1, 1, 21);
    h.push(normal(1, 21, vec![split_input(0, 1)]));
    h.extend(entries(1, &batches[20..], 22));
    // What the engine alone does: the parent after every input, and the child the split
    // made (replay through `Engine::apply` discards it).
    let mut parent = Engine::new(ShardId(0), Placement::new(1));
    let mut child = None;
    let (mut events, mut results) = (Vec::new(), Vec::new());
    for e in &h {
        if let tradelog_raft::EntryPayload::Normal(b) = &e.payload {
            if let [Input::Split { timestamp, split }] = &b.inputs[..] {
                child = Some(
                    parent
                        .split(*timestamp, split.clone(), &mut events)
                        .unwrap(),
                );
            } else {
                parent.apply_batch(&b.inputs, &mut events, &mut results);
            }
        }
    }
    let child = child.unwrap();
    assert!(child.ledger().len() >= 5, "odd accounts moved");
    // A replica without a place for the child refuses the split entry, changing nothing.
    let mut blind = open(&parent_dir);
    apply(&mut blind, h[..21].to_vec()).await;
    let before = blind.state_hash();
    let items = h[21..22].iter().cloned().map(|e| Ok((e, None)));
    let err = blind
        .apply(futures_util::stream::iter(items))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no directory for the new shard"),
        "{err}"
    );
    assert_eq!(blind.state_hash(), before);
    drop(blind);
    let _ = std::fs::remove_dir_all(&parent_dir);

    let published = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut sm = open(&parent_dir).with_child_dirs(child_dirs(&root));
    let seen = published.clone();
    sm.set_event_sink(std::sync::Arc::new(move |item| {
        if let tradelog_raft::SinkItem::Applied(ev) = item {
            seen.lock().unwrap().extend(ev.iter().cloned());
        }
    }));
    apply(&mut sm, h[..21].to_vec()).await;
    apply(&mut sm, h[21..].to_vec()).await;
    assert_eq!(sm.state_hash(), parent.state_hash());
    assert_eq!(sm.engine().placement().splits().len(), 1);
    // Every event reached the sink, the split's too.
    let kinds: Vec<_> = published
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.event.clone())
        .collect();
    assert!(kinds.iter().any(|e| matches!(
        e,
        tradelog_domain::Event::ShardSplit {
            child: ShardId(1),
            ..
        }
    )));
    let child_dir = root.join("child-1");
    let (start, restored) = tradelog_raft::read_split_start(&child_dir, ShardId(1))
        .unwrap()
        .expect("the child's start");
    assert_eq!(restored.state_hash(), child.state_hash());
    assert_eq!(
        (start.parent, start.split_at, start.membership.clone()),
        (
            ShardId(0),
            split_at,
            StoredMembership::new(Some(log_id(1, 1, 0)), members(&[1, 2, 3]))
        )
    );
    // The child's state machine starts there, not empty.
    let opened = ShardStateMachine::open(&child_dir, ShardId(1), Placement::new(1)).unwrap();
    assert_eq!(opened.state_hash(), child.state_hash());
    assert_eq!(opened.applied(), None);
    assert_eq!(
        opened.open_report().split_start,
        Some(child_dir.join(tradelog_raft::SPLIT_START_FILE))
    );
    opened.engine().validate().expect("child invariants");
    // A replica of the child without its start state: it needs the child's placement,
    // and applies no batch until it has a snapshot.
    let bare_dir = tmp.path().join("bare");
    let err = ShardStateMachine::open(&bare_dir, ShardId(1), Placement::new(1))
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    let placement = opened.engine().placement().clone();
    let mut bare = ShardStateMachine::open(&bare_dir, ShardId(1), placement).unwrap();
    let pay = |id: u64| tradelog_engine::Input::Command {
        meta: tradelog_domain::Meta {
            timestamp: tradelog_domain::Timestamp(20_000 + id),
            principal: tradelog_domain::Principal(1),
            authority: tradelog_domain::Authority::Operator,
        },
        command: tradelog_domain::Command::Transfer(tradelog_domain::TransferSpec {
            id: tradelog_domain::TransferId(id),
            debit: tradelog_domain::AccountId(1),
            credit: tradelog_domain::AccountId(3),
            asset: tradelog_domain::AssetId(1),
            amount: tradelog_domain::Amount(5),
            balancing: false,
        }),
    };
    let child_log = [
        membership(1, 0, &[1, 2, 3]),
        normal(1, 1, vec![pay(800_001)]),
        normal(1, 2, vec![pay(800_002)]),
    ];
    let mut opened = opened;
    apply(&mut opened, child_log[..2].to_vec()).await;
    let items = child_log[..2].iter().cloned().map(|e| Ok((e, None)));
    let err = bare
        .apply(futures_util::stream::iter(items))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must be sent a snapshot"), "{err}");
    let snap = opened
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    bare.install_snapshot(&snap.meta, snap.snapshot.clone())
        .await
        .unwrap();
    apply(&mut opened, child_log[2..].to_vec()).await;
    apply(&mut bare, child_log[2..].to_vec()).await;
    assert_eq!(bare.state_hash(), opened.state_hash());
    assert_ne!(
        opened.state_hash(),
        child.state_hash(),
        "the payments applied"
    );
    // Applying the split again (a restart from before it) writes the same bytes.
    let first = std::fs::read(child_dir.join(tradelog_raft::SPLIT_START_FILE)).unwrap();
    let again_dir = tmp.path().join("again");
    let mut again = open(&again_dir).with_child_dirs(child_dirs(&root));
    apply(&mut again, h.clone()).await;
    assert_eq!(
        std::fs::read(child_dir.join(tradelog_raft::SPLIT_START_FILE)).unwrap(),
        first
    );
    assert_eq!(again.state_hash(), parent.state_hash());
    // A damaged start file is refused on open, by name (where there is no snapshot: the
    // child's directory has one now, which comes first).
    let mut bad = first.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(damaged.join(tradelog_raft::SPLIT_START_FILE), &bad).unwrap();
    let err = ShardStateMachine::open(&damaged, ShardId(1), Placement::new(1))
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        err.to_string().contains(tradelog_raft::SPLIT_START_FILE),
        "{err}"
    );
    // Another shard's start file is refused too.
    std::fs::write(child_dir.join(tradelog_raft::SPLIT_START_FILE), &first).unwrap();
    let err = tradelog_raft::read_split_start(&child_dir, ShardId(2)).unwrap_err();
    assert!(
        err.to_string().contains("shard 1 offered to shard 2"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_split_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("children");
    let mut sm = open(&tmp.path().join("parent")).with_child_dirs(child_dirs(&root));
    let mut h = history(3);
    // Shard 0 is asked to split shard 3 (wrong parent), then to make shard 0 (exists).
    h.push(normal(1, 6, vec![split_input(3, 1)]));
    h.push(normal(1, 7, vec![split_input(0, 0)]));
    let before = {
        let mut e = open(&tmp.path().join("reference"));
        apply(&mut e, history(3)).await;
        e.engine().clone()
    };
    apply(&mut sm, h).await;
    assert!(!root.exists(), "nothing written for refused splits");
    assert!(sm.engine().placement().splits().is_empty());
    assert_eq!(sm.engine().ledger().len(), before.ledger().len());
    assert_eq!(sm.engine().inputs_applied(), before.inputs_applied() + 2);
}
