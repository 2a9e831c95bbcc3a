//! Our own tests of `ShardLogStore`: restart, truncation and re-append, purge into the
//! archive, recovery of an interrupted purge, refusals that change nothing.

use crate::common::*;
use openraft::storage::{LogState, RaftLogReader, RaftLogStorage};
use std::path::Path;
use tradelog_raft::{LogStoreConfig, RaftMeta, ShardLogStore, TypeConfig, Vote, LOG_DIR};
use tradelog_storage::FileLogConfig;

fn tiny() -> LogStoreConfig {
    // A few entries per segment, so truncations and purges cross segment boundaries.
    LogStoreConfig {
        log: FileLogConfig {
            segment_bytes_max: 64 + 48 + 2048,
            record_bytes_max: 2048,
            write_buffer_bytes: 1,
            spare_segments: true,
        },
        ..LogStoreConfig::default()
    }
}

fn open(dir: &Path) -> ShardLogStore {
    ShardLogStore::open(dir, tiny()).expect("open")
}

async fn all(store: &mut ShardLogStore) -> Vec<tradelog_raft::Entry> {
    store.try_get_log_entries(0..u64::MAX).await.expect("read")
}

fn state(
    purged: Option<tradelog_raft::LogId>,
    last: Option<tradelog_raft::LogId>,
) -> LogState<TypeConfig> {
    LogState {
        last_purged_log_id: purged,
        last_log_id: last,
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// 1 membership entry and `n` batches: Raft indexes 0..=n.
fn history(n: u64) -> Vec<tradelog_raft::Entry> {
    let mut v = vec![membership(1, 0, &[1, 2, 3])];
    v.extend(entries(1, &workload(n - 2, 3), 1));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_vote_log_committed_and_purged() {
    let tmp = tempfile::tempdir().unwrap();
    let h = history(30);
    let vote = Vote::new(3, 2);
    {
        let mut s = open(tmp.path());
        append(&mut s, h[..20].to_vec()).await;
        append(&mut s, h[20..].to_vec()).await;
        s.save_vote(&vote).await.unwrap();
        s.save_committed(Some(log_id(1, 1, 25))).await.unwrap();
        s.purge(log_id(1, 1, 22)).await.unwrap();
        assert!(files_in(&tmp.path().join(LOG_DIR).join("archive")) > 0);
    }
    let mut s = open(tmp.path());
    assert_eq!(
        state(Some(log_id(1, 1, 22)), Some(log_id(1, 1, 30))),
        s.get_log_state().await.unwrap()
    );
    assert_eq!(Some(vote), s.read_vote().await.unwrap());
    assert_eq!(Some(log_id(1, 1, 25)), s.read_committed().await.unwrap());
    assert_eq!(h[23..].to_vec(), all(&mut s).await);
    // The whole history, archived and live, is one valid hash chain.
    let report = tradelog_storage::verify_dir(tmp.path().join(LOG_DIR)).unwrap();
    assert_eq!(31, report.last_index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_then_reappend_replaces_the_suffix_durably() {
    let tmp = tempfile::tempdir().unwrap();
    let h = history(20);
    let other: Vec<_> = entries(2, &workload(5, 2)[2..], 8);
    {
        let mut s = open(tmp.path());
        append(&mut s, h.clone()).await;
        s.truncate_after(Some(log_id(1, 1, 7))).await.unwrap();
        assert_eq!(
            state(None, Some(log_id(1, 1, 7))),
            s.get_log_state().await.unwrap()
        );
        append(&mut s, other.clone()).await;
    }
    // Whole segments cut off went to `truncated/`, not away.
    assert!(files_in(&tmp.path().join(LOG_DIR).join("truncated")) > 0);
    let mut s = open(tmp.path());
    let mut expected = h[..8].to_vec();
    expected.extend(other.iter().cloned());
    assert_eq!(expected, all(&mut s).await);
    assert_eq!(
        state(None, Some(log_id(2, 1, 12))),
        s.get_log_state().await.unwrap()
    );
    // The replaced entry is not reported as committed even if that id was saved.
    s.save_committed(Some(log_id(1, 1, 10))).await.unwrap();
    assert_eq!(None, s.read_committed().await.unwrap());
    s.save_committed(Some(log_id(2, 1, 10))).await.unwrap();
    assert_eq!(Some(log_id(2, 1, 10)), s.read_committed().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_id_beyond_the_log_is_not_reported_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut s = open(tmp.path());
        append(&mut s, history(10)).await;
        // A follower may learn that entries are committed before its own copy is durable.
        s.save_committed(Some(log_id(1, 1, 14))).await.unwrap();
    }
    assert_eq!(
        Some(log_id(1, 1, 14)),
        RaftMeta::load(tmp.path()).unwrap().committed
    );
    let mut s = open(tmp.path());
    assert_eq!(None, s.read_committed().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_beyond_the_end_restarts_the_log_after_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let h = history(10);
    {
        let mut s = open(tmp.path());
        append(&mut s, h.clone()).await;
        s.purge(log_id(2, 3, 40)).await.unwrap();
        assert_eq!(
            state(Some(log_id(2, 3, 40)), Some(log_id(2, 3, 40))),
            s.get_log_state().await.unwrap()
        );
        assert_eq!(Vec::<tradelog_raft::Entry>::new(), all(&mut s).await);
        append(&mut s, vec![blank(2, 41), blank(2, 42)]).await;
    }
    let mut s = open(tmp.path());
    assert_eq!(vec![blank(2, 41), blank(2, 42)], all(&mut s).await);
    assert_eq!(
        state(Some(log_id(2, 3, 40)), Some(log_id(2, 1, 42))),
        s.get_log_state().await.unwrap()
    );
    // The old entries are in the archive, and the chain restarts after them.
    let report = tradelog_storage::verify_dir(tmp.path().join(LOG_DIR)).unwrap();
    assert_eq!(43, report.last_index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_purge_beyond_the_end_is_finished_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut s = open(tmp.path());
        append(&mut s, history(5)).await;
    }
    // A crash after the purged id was written and before the log restarted.
    let mut meta = RaftMeta::load(tmp.path()).unwrap();
    meta.purged = Some(log_id(1, 1, 9));
    meta.store(tmp.path()).unwrap();

    let mut s = open(tmp.path());
    assert!(s.open_report().finished_purge);
    assert_eq!(
        state(Some(log_id(1, 1, 9)), Some(log_id(1, 1, 9))),
        s.get_log_state().await.unwrap()
    );
    append(&mut s, vec![blank(1, 10)]).await;
    assert_eq!(vec![blank(1, 10)], all(&mut s).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_would_leave_a_hole_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    let h = history(5);
    append(&mut s, h.clone()).await;
    let (tx, _rx) = <TypeConfig as openraft::type_config::TypeConfigExt>::oneshot();
    let err = s
        .append(vec![blank(1, 9)], openraft::storage::IOFlushed::signal(tx))
        .await
        .unwrap_err();
    assert_eq!(std::io::ErrorKind::InvalidInput, err.kind());
    assert_eq!(h, all(&mut s).await);
    // Truncating into the purged prefix is refused too.
    s.purge(log_id(1, 1, 3)).await.unwrap();
    let err = s.truncate_after(Some(log_id(1, 1, 1))).await.unwrap_err();
    assert_eq!(std::io::ErrorKind::InvalidInput, err.kind());
    assert_eq!(h[4..].to_vec(), all(&mut s).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_meta_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut s = open(tmp.path());
        s.save_vote(&Vote::new(1, 1)).await.unwrap();
    }
    let path = tmp.path().join(tradelog_raft::META_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = ShardLogStore::open(tmp.path(), tiny())
        .err()
        .expect("refused");
    assert_eq!(std::io::ErrorKind::InvalidData, err.kind());
    assert!(err.to_string().contains("raft-meta"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_starts_where_its_first_entry_is_but_never_moves_back() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut s = open(tmp.path());
        // openraft's suite starts new stores at index 1 or 2.
        append(&mut s, vec![blank(1, 5), blank(1, 6)]).await;
        assert_eq!(
            state(None, Some(log_id(1, 1, 6))),
            s.get_log_state().await.unwrap()
        );
    }
    let mut s = open(tmp.path());
    assert_eq!(vec![blank(1, 5), blank(1, 6)], all(&mut s).await);
    s.truncate_after(None).await.unwrap();
    assert_eq!(state(None, None), s.get_log_state().await.unwrap());
    let (tx, _rx) = <TypeConfig as openraft::type_config::TypeConfigExt>::oneshot();
    let err = s
        .append(vec![blank(1, 0)], openraft::storage::IOFlushed::signal(tx))
        .await
        .unwrap_err();
    assert_eq!(std::io::ErrorKind::InvalidInput, err.kind());
    assert_eq!(Vec::<tradelog_raft::Entry>::new(), all(&mut s).await);
    append(&mut s, vec![blank(2, 7)]).await;
    assert_eq!(vec![blank(2, 7)], all(&mut s).await);
}
