//! Shard tasks of distributed audit jobs (`RunShardTask`), answered on this node's own
//! replica of the shard (stale reads and this replica's history: no leader needed), and
//! the node's load figure (`GetNodeLoad`) the jobs' scheduler compares. The figures are
//! the engine's ([`Engine::audit_figures`](tradelog_engine::Engine::audit_figures)), the
//! statement lines and market activity the domain's accumulators
//! ([`tradelog_domain::jobs`]) fed with this replica's events; this module only finds the
//! states and events they are computed on.

use crate::core::{read_as, Core, Error};
use crate::history::{Scanned, Visitor};
use crate::queries::limit_exceeded;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tradelog_api::proto as pb;
use tradelog_domain as d;
use tradelog_domain::audit::ShardFigures;
use tradelog_domain::jobs::{
    Activity, ActivityError, Holding, ShardActivity, ShardStatements, Statements,
    ACTIVITY_MARKETS_MAX, STATEMENT_ACCOUNTS_MAX, STATEMENT_LINES_MAX,
};
use tradelog_domain::EventRecord;
use tradelog_engine::audit::FiguresError;
use tradelog_engine::Engine;

/// Longest candle of an activity task (one day), in seconds.
pub const ACTIVITY_INTERVAL_S_MAX: u32 = 86_400;

struct StatementsVisitor(Statements);

impl Visitor for StatementsVisitor {
    fn visit(&mut self, e: &EventRecord) -> ControlFlow<()> {
        self.0.visit(e)
    }
}

struct ActivityVisitor(Activity);

impl Visitor for ActivityVisitor {
    fn visit(&mut self, e: &EventRecord) -> ControlFlow<()> {
        self.0.visit(e)
    }
}

/// The accounts of one statements page and their balances at the range's end.
type Page = Vec<(d::AccountId, Vec<(d::AssetId, Holding)>)>;

fn holdings(a: &tradelog_ledger::Account) -> Vec<(d::AssetId, Holding)> {
    a.balances
        .iter()
        .map(|b| {
            (
                b.asset,
                Holding {
                    available: b.available.0,
                    held: b.held.0,
                },
            )
        })
        .collect()
}

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
            Some(Task::Statements(t)) => {
                pb::run_shard_task_response::Result::Statements(self.statements(s, t).await?.into())
            }
            Some(Task::Activity(t)) => {
                pb::run_shard_task_response::Result::Activity(self.activity(s, t).await?.into())
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

    /// Statement lines of a page of shard `s`'s accounts over `[from, to)`: the page and
    /// the closing balances from this replica's state holding the events before `to`,
    /// the opening balances from its state before `from`, the changes from its events in
    /// between.
    async fn statements(
        &self,
        s: d::ShardId,
        t: pb::StatementsTask,
    ) -> Result<ShardStatements, Error> {
        if t.to_ns < t.from_ns {
            return Err(Error::Invalid(format!(
                "invalid field `to_ns`: {} is before `from_ns` {}",
                t.to_ns, t.from_ns
            )));
        }
        if t.account_ids.len() > STATEMENT_ACCOUNTS_MAX || t.limit as usize > STATEMENT_ACCOUNTS_MAX
        {
            return Err(Error::Invalid(format!(
                "a statements task covers at most {STATEMENT_ACCOUNTS_MAX} accounts (limit \
                 `STATEMENT_ACCOUNTS_MAX`)"
            )));
        }
        let limit = match t.limit {
            0 => STATEMENT_ACCOUNTS_MAX,
            n => n as usize,
        };
        // The accounts asked that the closing state holds: at `to`, an account that a
        // split moved since was still its parent's.
        let asked: Option<BTreeSet<d::AccountId>> = (!t.account_ids.is_empty())
            .then(|| t.account_ids.iter().map(|a| d::AccountId(*a)).collect());
        let after = d::AccountId(t.after_account);
        let to = d::Timestamp(t.to_ns);
        type Closing = (Page, Option<d::AccountId>, u64, u64);
        let page_of = move |e: &Engine| -> Result<Closing, Error> {
            // A shard made by a split at or after `to`: its start state's accounts
            // were the parent's then, which answers for them.
            if e.origin().is_some() && e.inputs_applied() == 0 && e.last_timestamp() >= to {
                return Ok((Vec::new(), None, 0, e.next_event_seq() - 1));
            }
            let mut accounts: Vec<_> = e
                .ledger()
                .accounts()
                .iter()
                .filter(|a| match &asked {
                    Some(set) => set.contains(&a.id),
                    None => a.id > after,
                })
                .collect();
            accounts.sort_by_key(|a| a.id);
            let mut page: Page = Vec::new();
            let (mut lines, mut next) = (0, None);
            for a in accounts {
                let n = a.balances.len();
                if !page.is_empty() && (page.len() == limit || lines + n > STATEMENT_LINES_MAX) {
                    if asked.is_some() {
                        return Err(Error::LimitExceeded(format!(
                            "the accounts asked have more than {STATEMENT_LINES_MAX} \
                                 (account, asset) lines on shard {s} (limit \
                                 `STATEMENT_LINES_MAX`); ask for fewer accounts"
                        )));
                    }
                    next = page.last().map(|(id, _)| *id);
                    break;
                }
                lines += n;
                page.push((a.id, holdings(a)));
            }
            Ok((page, next, e.inputs_applied(), e.next_event_seq() - 1))
        };
        let (page, next_after, closing_index, last_seq) = match t.to_log_index {
            Some(index) => self.history.state_at_replica(s, index, page_of).await??,
            None => {
                self.history
                    .state_before_time_on(s, to, true, page_of)
                    .await??
            }
        };
        let ids: Vec<d::AccountId> = page.iter().map(|(id, _)| *id).collect();
        let wanted = ids.clone();
        let from = d::Timestamp(t.from_ns);
        let (opening, opening_index, after_seq, from_split) = self
            .history
            .state_before_time_on(s, from, true, move |e| {
                let opening: Vec<_> = wanted
                    .iter()
                    .filter_map(|id| e.ledger().account(*id))
                    .map(|a| (a.id, holdings(a)))
                    .collect();
                // The start state of a shard made by a split at or after `from`: the
                // range's earlier part is on the parent.
                let from_split = e
                    .origin()
                    .filter(|_| e.inputs_applied() == 0 && e.last_timestamp() >= from);
                (
                    opening,
                    e.inputs_applied(),
                    e.next_event_seq() - 1,
                    from_split,
                )
            })
            .await?;
        if opening_index > closing_index {
            return Err(Error::Invalid(format!(
                "invalid field `to_log_index`: {closing_index} is before the state at \
                 `from_ns` (index {opening_index})"
            )));
        }
        let mut st = Statements::new(ids, last_seq);
        for (account, hs) in opening {
            for (asset, h) in hs {
                st.opening(account, asset, h);
            }
        }
        for (account, hs) in page {
            for (asset, h) in hs {
                st.state_closing(account, asset, h);
            }
        }
        if after_seq < last_seq {
            // The events up to the closing state's last one are in this node's index.
            self.index_caught_up().await;
            let (v, end) = self
                .history
                .scan(s, after_seq, StatementsVisitor(st))
                .await?;
            match end {
                Scanned::Stopped(l) | Scanned::End(l) if l == last_seq => {}
                Scanned::Limit(l) => return Err(limit_exceeded("the statements", s, l)),
                Scanned::Stopped(l) | Scanned::End(l) => {
                    return Err(Error::Internal(format!(
                        "shard {s}'s events ended at {l}, before the closing state's last \
                         event {last_seq}"
                    )))
                }
            }
            st = v.0;
        }
        Ok(ShardStatements {
            shard: s,
            opening_index,
            closing_index,
            lines: st.finish(),
            next_after,
            from_split,
        })
    }

    /// VWAP and OHLCV of shard `s`'s markets (those it owns or owned before a split moved
    /// them) over `[from, to)` from this replica's events.
    async fn activity(&self, s: d::ShardId, t: pb::ActivityTask) -> Result<ShardActivity, Error> {
        if t.interval_s > ACTIVITY_INTERVAL_S_MAX {
            return Err(Error::Invalid(format!(
                "invalid field `interval_s`: {}, at most {ACTIVITY_INTERVAL_S_MAX}",
                t.interval_s
            )));
        }
        if t.market_ids.len() > ACTIVITY_MARKETS_MAX {
            return Err(Error::Invalid(format!(
                "an activity task covers at most {ACTIVITY_MARKETS_MAX} markets (limit \
                 `ACTIVITY_MARKETS_MAX`)"
            )));
        }
        let asked: BTreeSet<d::MarketId> = t.market_ids.iter().map(|m| d::MarketId(*m)).collect();
        let specs: Vec<d::MarketSpec> = read_as(&*self.node, s, true, move |e| {
            e.markets()
                .values()
                // A market a split moved has its trades before the split on the
                // parent, after it on the child: each answers for its part.
                .filter(|m| {
                    (asked.is_empty() || asked.contains(&m.id))
                        && e.placement().market_shards(m.id, m.shard).contains(&s)
                })
                .cloned()
                .collect()
        })
        .await?;
        let activity = Activity::new(
            t.from_ns,
            t.to_ns,
            u64::from(t.interval_s) * 1_000_000_000,
            &specs,
        )
        .map_err(|e| match e {
            ActivityError::EmptyRange { .. } => Error::Invalid(e.to_string()),
            _ => Error::LimitExceeded(e.to_string()),
        })?;
        // Read this node's events up to what it applied.
        self.index_caught_up().await;
        let after = self
            .history
            .seq_before_time_on(s, d::Timestamp(t.from_ns), true)
            .await?;
        let (v, end) = self
            .history
            .scan(s, after, ActivityVisitor(activity))
            .await?;
        let last_seq = match end {
            Scanned::Limit(l) => return Err(limit_exceeded("the range", s, l)),
            // The event that stopped it (past the range) was not consumed.
            Scanned::Stopped(l) => l.saturating_sub(1).max(after),
            Scanned::End(l) => l,
        };
        let markets =
            v.0.finish()
                .map_err(|e| Error::LimitExceeded(e.to_string()))?;
        Ok(ShardActivity {
            shard: s,
            last_seq,
            markets,
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
