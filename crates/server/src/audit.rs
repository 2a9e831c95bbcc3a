//! Shard tasks of distributed audit jobs (`RunShardTask`), answered on this node's own
//! replica of the shard (stale reads and this replica's history: no leader needed), and
//! the node's load figure (`GetNodeLoad`) the jobs' scheduler compares. The figures are
//! the engine's ([`Engine::audit_figures`](tradelog_engine::Engine::audit_figures)); this
//! module only finds the state they are computed on.

use crate::core::{read_as, Core, Error};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tradelog_api::proto as pb;
use tradelog_domain as d;
use tradelog_domain::audit::ShardFigures;
use tradelog_engine::audit::FiguresError;

/// Shard tasks this node runs or holds waiting at once; more are refused as overloaded
/// (the scheduler sends them to another replica or retries).
pub const SHARD_TASKS_MAX: u64 = 64;
/// The weight of one shard task in the load figure, in queued commands.
pub const SHARD_TASK_LOAD_WEIGHT: u64 = 1_000;

/// Counts the shard tasks in progress on this node.
#[derive(Clone, Default)]
pub(crate) struct Tasks(Arc<AtomicU64>);

/// One task in progress (counted until dropped).
struct Running(Arc<AtomicU64>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Tasks {
    fn start(&self) -> Result<Running, Error> {
        let before = self.0.fetch_add(1, Ordering::Relaxed);
        let running = Running(self.0.clone());
        if before >= SHARD_TASKS_MAX {
            return Err(Error::Overloaded);
        }
        Ok(running)
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl From<FiguresError> for Error {
    fn from(e: FiguresError) -> Error {
        Error::LimitExceeded(e.to_string())
    }
}

impl Core {
    /// Runs one shard task on this node's replica.
    pub(crate) async fn run_shard_task(
        &self,
        r: pb::RunShardTaskRequest,
    ) -> Result<pb::RunShardTaskResponse, Error> {
        use pb::run_shard_task_request::Task;
        let s = d::ShardId(r.shard);
        if r.shard >= self.node.shard_count() {
            return Err(Error::Invalid(format!(
                "shard {s} does not exist (this node has {} shards)",
                self.node.shard_count()
            )));
        }
        let _running = self.tasks.start()?;
        let result = match r.task {
            None => return Err(Error::Invalid("missing field `task`".into())),
            Some(Task::Figures(t)) => {
                let f = self.figures(s, t.log_index).await?;
                pb::run_shard_task_response::Result::Figures(f.into())
            }
            Some(Task::Verify(_)) => {
                pb::run_shard_task_response::Result::Verify(self.verify(s).await?)
            }
        };
        Ok(pb::RunShardTaskResponse {
            result: Some(result),
        })
    }

    /// Shard `s`'s figures at `index` (this replica's applied index when `None`).
    async fn figures(&self, s: d::ShardId, index: Option<u64>) -> Result<ShardFigures, Error> {
        match index {
            None => Ok(read_as(&*self.node, s, true, |e| e.audit_figures()).await??),
            Some(i) => Ok(self
                .history
                .state_at_replica(s, i, |e| e.audit_figures())
                .await??),
        }
    }

    /// The live state's hash at this replica's applied index, and the hash of the state
    /// regenerated from the replica's log at the same index.
    async fn verify(&self, s: d::ShardId) -> Result<pb::VerifyResult, Error> {
        let live = read_as(&*self.node, s, true, |e| e.clone()).await?;
        let index = live.inputs_applied();
        let live_hash = tokio::task::spawn_blocking(move || live.state_hash())
            .await
            .map_err(|e| Error::Internal(format!("hash task failed: {e}")))?;
        let replayed_hash = self
            .history
            .state_at_replica(s, index, |e| e.state_hash())
            .await?;
        Ok(pb::VerifyResult {
            shard: s.0,
            log_index: index,
            live_hash: live_hash.to_vec(),
            replayed_hash: replayed_hash.to_vec(),
        })
    }

    /// This node's load figure.
    pub(crate) fn node_load(&self) -> pb::GetNodeLoadResponse {
        let shard_tasks = self.tasks.count();
        let queued_commands = self.node.queued_commands();
        pb::GetNodeLoadResponse {
            shard_tasks,
            queued_commands,
            load: shard_tasks
                .saturating_mul(SHARD_TASK_LOAD_WEIGHT)
                .saturating_add(queued_commands),
            shard_count: self.node.shard_count(),
        }
    }
}
