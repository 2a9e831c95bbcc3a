//! Our own tests of `ShardStateMachine`: apply equals the engine, snapshot install gives
//! the same state hash, damaged or foreign snapshots are refused without any change,
//! restart uses the newest snapshot that checks out.

mod common;

use common::*;
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
        Batch::new(vec![input.clone(), split])
    );
    let ok = vec![input; BATCH_INPUTS_MAX];
    assert_eq!(BATCH_INPUTS_MAX, Batch::new(ok).unwrap().inputs.len());
}
