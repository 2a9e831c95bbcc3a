//! openraft's own storage test suite (`openraft::testing::log::Suite`) against the real
//! log store and state machine, on real files, in two log geometries, and in the
//! deterministic modes the simulation uses (over a `MemLog`, flushing on a task).

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use tempfile::TempDir;
use tradelog_domain::ShardId;
use tradelog_engine::Placement;
use tradelog_raft::{FlushMode, LogStoreConfig, ShardLogStore, ShardStateMachine, TypeConfig};
use tradelog_storage::FileLogConfig;

fn store_err(e: std::io::Error) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e)
}

struct Builder {
    log: FileLogConfig,
}

impl StoreBuilder<TypeConfig, ShardLogStore, ShardStateMachine, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, ShardLogStore, ShardStateMachine), StorageError<TypeConfig>> {
        let tmp = tempfile::tempdir().map_err(store_err)?;
        let config = LogStoreConfig {
            log: self.log.clone(),
            ..LogStoreConfig::default()
        };
        let store = ShardLogStore::open(tmp.path(), config).map_err(store_err)?;
        let sm = ShardStateMachine::open(tmp.path(), ShardId(0), Placement::new(1))
            .map_err(store_err)?;
        Ok((tmp, store, sm))
    }
}

fn run(log: FileLogConfig) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(Suite::test_all(Builder { log }))
        .expect("openraft storage suite");
}

#[test]
fn openraft_suite_one_segment() {
    run(FileLogConfig {
        segment_bytes_max: 1 << 20,
        record_bytes_max: 64 << 10,
        write_buffer_bytes: 4 << 10,
        spare_segments: false,
    });
}

#[test]
fn openraft_suite_tiny_segments() {
    // A few entries per segment: purges archive whole segments, truncations cross them.
    run(FileLogConfig {
        segment_bytes_max: 64 + 48 + 256,
        record_bytes_max: 256,
        write_buffer_bytes: 1,
        spare_segments: true,
    });
}

/// The deterministic modes the simulation uses: the store over a `MemLog`, flushing on a
/// task of a single-threaded runtime, and the state machine doing snapshot I/O inline.
struct DeterministicBuilder;

impl StoreBuilder<TypeConfig, ShardLogStore<tradelog_storage::MemLog>, ShardStateMachine, TempDir>
    for DeterministicBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            TempDir,
            ShardLogStore<tradelog_storage::MemLog>,
            ShardStateMachine,
        ),
        StorageError<TypeConfig>,
    > {
        let tmp = tempfile::tempdir().map_err(store_err)?;
        let config = LogStoreConfig {
            flush: FlushMode::Task,
            ..LogStoreConfig::default()
        };
        let store =
            ShardLogStore::with_log(tmp.path(), tradelog_storage::MemLog::default(), config)
                .map_err(store_err)?;
        let sm = ShardStateMachine::open(tmp.path(), ShardId(0), Placement::new(1))
            .map_err(store_err)?
            .with_inline_io();
        Ok((tmp, store, sm))
    }
}

#[test]
fn openraft_suite_mem_log_task_flush_inline_io() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(Suite::test_all(DeterministicBuilder))
        .expect("openraft storage suite");
}

/// The metadata group's store and state machine ([`MetaConfig`]) pass the same suite.
struct MetaBuilder;

impl
    StoreBuilder<
        tradelog_raft::MetaConfig,
        ShardLogStore<tradelog_storage::FileLog, tradelog_raft::MetaConfig>,
        tradelog_raft::MetaStateMachine,
        TempDir,
    > for MetaBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            TempDir,
            ShardLogStore<tradelog_storage::FileLog, tradelog_raft::MetaConfig>,
            tradelog_raft::MetaStateMachine,
        ),
        StorageError<tradelog_raft::MetaConfig>,
    > {
        let err = |e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e);
        let tmp = tempfile::tempdir().map_err(err)?;
        let store =
            ShardLogStore::open_group(tmp.path(), LogStoreConfig::default()).map_err(err)?;
        let sm = tradelog_raft::MetaStateMachine::open(tmp.path()).map_err(err)?;
        Ok((tmp, store, sm))
    }
}

#[test]
fn openraft_suite_metadata_group() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(Suite::test_all(MetaBuilder))
        .expect("openraft storage suite");
}
