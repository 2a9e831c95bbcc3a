//! Reads of the past: the node's regenerated history (`tradelog_node::history`) joined with
//! the in-memory event index, so that a read never depends on what this server process
//! happens to hold.
//!
//! Every history question runs on a blocking thread, at most [`HISTORY_RUNNING_MAX`] at a
//! time, with at most [`HISTORY_WAITING_MAX`] more waiting (beyond that: overloaded, retry),
//! and is bounded by the node's [`HistoryLimits`](tradelog_node::HistoryLimits). The
//! history never reads past the index a shard reports applied (asked just before).

use crate::core::Error;
use crate::events::{EventLog, Page, Select, Visited};
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tradelog_api::query::{AsOf, Position};
use tradelog_domain::{EventRecord, ShardId, Timestamp};
use tradelog_engine::Engine;
use tradelog_node::{HistoryError, NodeHistory, ScanEnd, ShardHost};

/// History questions answered at the same time (each keeps a core busy).
pub const HISTORY_RUNNING_MAX: usize = 2;
/// History questions waiting for a turn before more are refused as overloaded.
pub const HISTORY_WAITING_MAX: usize = 64;
/// Most regenerated events one page of `ReadEvents` (or of a subscription catching up)
/// looks at, matching its stream or not; its position says where it stopped.
pub const HISTORY_PAGE_SCAN_MAX: usize = 20_000;

impl From<HistoryError> for Error {
    fn from(e: HistoryError) -> Error {
        let m = e.to_string();
        match e {
            HistoryError::Beyond { .. } | HistoryError::Missing { .. } => Error::OutOfRange(m),
            HistoryError::ReplayLimit { .. } => {
                Error::LimitExceeded(format!("{m} (limit `replay_records_max`)"))
            }
            HistoryError::ClockIndexing { .. } => Error::Unavailable(m),
            HistoryError::Storage(_) | HistoryError::BadRecord { .. } => Error::Internal(m),
        }
    }
}

/// A visitor of one shard's events (moved to a blocking thread and back).
pub(crate) trait Visitor: Send + 'static {
    /// Sees the next event; `Break` stops the scan.
    fn visit(&mut self, e: &EventRecord) -> ControlFlow<()>;
}

/// How a [`History::scan`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// The visitor stopped after the event with this sequence number.
    Stopped(u64),
    /// Every event the shard recorded so far was seen; the last one has this number.
    End(u64),
    /// The replay limit stopped a read of the history after this sequence number.
    Limit(u64),
}

/// The history of every shard, and the node to ask what each has applied (on a replicated
/// node: this node's replica, read after the leader's read index).
pub(crate) struct History {
    node: Arc<dyn ShardHost>,
    /// Regenerated from the single-node logs or, on a replicated node, from this node's
    /// replicas' Raft logs (`tradelog_cluster::RaftLogSource`).
    shards: Arc<NodeHistory>,
    events: Arc<EventLog>,
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
}

impl History {
    pub(crate) fn new(
        node: Arc<dyn ShardHost>,
        shards: Arc<NodeHistory>,
        events: Arc<EventLog>,
    ) -> History {
        History {
            node,
            shards,
            events,
            running: Arc::new(Semaphore::new(HISTORY_RUNNING_MAX)),
            admitted: Arc::new(Semaphore::new(HISTORY_RUNNING_MAX + HISTORY_WAITING_MAX)),
        }
    }

    /// The last input shard `s` applied (every one up to it is durable).
    pub(crate) async fn applied(&self, s: ShardId) -> Result<u64, Error> {
        self.applied_on(s, false).await
    }

    /// [`applied`](Self::applied), or with `replica` the last input this node's replica
    /// applied (no leader asked).
    async fn applied_on(&self, s: ShardId, replica: bool) -> Result<u64, Error> {
        crate::core::read_as(&*self.node, s, replica, |e| e.inputs_applied()).await
    }

    /// Runs `f` on a blocking thread when a turn is free.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&NodeHistory) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded)?;
        let _running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable("history closed".into()))?;
        let shards = self.shards.clone();
        tokio::task::spawn_blocking(move || f(&shards))
            .await
            .map_err(|e| Error::Internal(format!("history task failed: {e}")))?
    }

    /// Runs `f` on shard `s`'s state as of `at`; returns its answer and the log index of
    /// that state.
    pub(crate) async fn as_of<R: Send + 'static>(
        &self,
        s: ShardId,
        at: AsOf,
        f: impl FnOnce(&Engine) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let applied = self.applied(s).await?;
        if let AsOf::Time(t) = at {
            let now = tradelog_node::runtime::now();
            if t > now {
                return Err(Error::OutOfRange(format!(
                    "as_of time {} ns is in the future (now is {} ns)",
                    t.0, now.0
                )));
            }
        }
        self.run(move |h| {
            let h = shard(h, s)?;
            let index = match at {
                AsOf::LogIndex(i) => i,
                AsOf::Time(t) => h.index_at_time(t, applied)?,
            };
            Ok(h.state_at(index, applied, f)?)
        })
        .await
    }

    /// Runs `f` on shard `s`'s state at log index `index`, regenerated from this node's
    /// replica (bounded by what the replica applied, read without asking the leader).
    pub(crate) async fn state_at_replica<R: Send + 'static>(
        &self,
        s: ShardId,
        index: u64,
        f: impl FnOnce(&Engine) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let applied = crate::core::read_as(&*self.node, s, true, |e| e.inputs_applied()).await?;
        self.run(move |h| Ok(shard(h, s)?.state_at(index, applied, f)?))
            .await
    }

    /// The sequence number after which shard `s`'s events are stamped at or after `t`
    /// (the index if it knows, else the shard clock in the history).
    pub(crate) async fn seq_before_time(&self, s: ShardId, t: Timestamp) -> Result<u64, Error> {
        self.seq_before_time_on(s, t, false).await
    }

    /// [`seq_before_time`](Self::seq_before_time), with `replica`: bounded by what this
    /// node's replica applied, no leader asked.
    pub(crate) async fn seq_before_time_on(
        &self,
        s: ShardId,
        t: Timestamp,
        replica: bool,
    ) -> Result<u64, Error> {
        // The index holds only the shards this node holds; another's would look empty.
        self.node.check_hosted(s)?;
        if t.0 == 0 {
            return Ok(0);
        }
        if let Some(seq) = self.events.seq_before_time(s, t) {
            return Ok(seq);
        }
        self.state_before_time_on(s, t, replica, |e| e.next_event_seq() - 1)
            .await
    }

    /// Runs `f` on shard `s`'s state holding exactly the events stamped before `t`.
    pub(crate) async fn state_before_time<R: Send + 'static>(
        &self,
        s: ShardId,
        t: Timestamp,
        f: impl FnOnce(&Engine) -> R + Send + 'static,
    ) -> Result<R, Error> {
        self.state_before_time_on(s, t, false, f).await
    }

    /// [`state_before_time`](Self::state_before_time), with `replica`: bounded by what
    /// this node's replica applied, no leader asked.
    pub(crate) async fn state_before_time_on<R: Send + 'static>(
        &self,
        s: ShardId,
        t: Timestamp,
        replica: bool,
        f: impl FnOnce(&Engine) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let applied = self.applied_on(s, replica).await?;
        self.run(move |h| {
            let h = shard(h, s)?;
            let index = match t.0.checked_sub(1) {
                Some(before) => h.index_at_time(Timestamp(before), applied)?,
                None => 0,
            };
            Ok(h.state_at(index, applied, f)?)
        })
        .await
    }

    /// Shows `visitor` shard `s`'s events after sequence number `after`, oldest first:
    /// regenerated from the log below the index's first event, then from the index, until
    /// it stops, the events end, or the history's replay limit is reached.
    pub(crate) async fn scan<V: Visitor>(
        &self,
        s: ShardId,
        after: u64,
        mut visitor: V,
    ) -> Result<(V, Scanned), Error> {
        // The index holds only the shards this node holds; another's would look empty.
        self.node.check_hosted(s)?;
        let mut after = after;
        loop {
            let seam = self.events.seams()?[s.0 as usize];
            if after.saturating_add(1) < seam {
                let applied = self.applied(s).await?;
                let (v, r) = self
                    .run(move |h| {
                        let history = shard(h, s)?;
                        let mut reader = history.events_after_seq(after, applied)?;
                        let mut last = after;
                        loop {
                            let next = reader.peek_event()?.map(|e| e.seq);
                            match next {
                                Some(seq) if seq < seam => {}
                                // The rest is in the index.
                                _ if reader.end() != Some(ScanEnd::Limit) => {
                                    return Ok((visitor, Ok(last)))
                                }
                                _ => return Ok((visitor, Err(Scanned::Limit(last)))),
                            }
                            let e = reader.next_event()?.expect("peeked");
                            last = e.seq;
                            if visitor.visit(&e).is_break() {
                                return Ok((visitor, Err(Scanned::Stopped(last))));
                            }
                        }
                    })
                    .await?;
                visitor = v;
                match r {
                    Ok(last) => after = last,
                    Err(end) => return Ok((visitor, end)),
                }
                continue;
            }
            let mut f = |e: &EventRecord| visitor.visit(e);
            match self.events.visit(s, after, &mut f)? {
                Visited::BelowIndex => continue, // the index moved on meanwhile
                Visited::Stopped { last } => return Ok((visitor, Scanned::Stopped(last))),
                Visited::End { last } => return Ok((visitor, Scanned::End(last))),
                Visited::More { last } => {
                    after = last;
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// A page of `stream` after `after` for the shards whose position is older than the
    /// index (`seams[s]` is each shard's first indexed event): regenerated events of those
    /// shards, merged by leader time, up to the seam. Other shards' positions are kept.
    pub(crate) async fn page(
        &self,
        sel: &Select,
        after: &Position,
        limit: usize,
        seams: Vec<u64>,
    ) -> Result<Page, Error> {
        let behind: Vec<ShardId> = (0..seams.len() as u32)
            .map(ShardId)
            .filter(|s| sel.covers(*s) && after.get(*s).saturating_add(1) < seams[s.0 as usize])
            .collect();
        let sel = sel.clone();
        let mut applied = Vec::with_capacity(behind.len());
        for s in &behind {
            applied.push(self.applied(*s).await?);
        }
        let mut position = after.clone();
        self.run(move |h| {
            let histories = behind
                .iter()
                .map(|s| shard(h, *s))
                .collect::<Result<Vec<_>, _>>()?;
            let mut readers = Vec::with_capacity(behind.len());
            for ((s, applied), history) in behind.iter().zip(&applied).zip(&histories) {
                readers.push(history.events_after_seq(position.get(*s), *applied)?);
            }
            let mut events = Vec::new();
            let mut scanned = 0;
            while events.len() < limit && scanned < HISTORY_PAGE_SCAN_MAX {
                // The reader whose next event (below its seam) is the oldest; a reader that
                // stopped early (replay limit) ends the page, so the merge stays in order.
                let mut best: Option<(Timestamp, usize)> = None;
                for (k, r) in readers.iter_mut().enumerate() {
                    let seam = seams[behind[k].0 as usize];
                    let next = r.peek_event()?.map(|e| (e.seq, e.timestamp));
                    match next {
                        Some((seq, ts)) if seq < seam && best.is_none_or(|(t, _)| ts < t) => {
                            best = Some((ts, k));
                        }
                        None if r.end() == Some(ScanEnd::Limit) => {
                            best = None;
                            break;
                        }
                        _ => {}
                    }
                }
                let Some((_, k)) = best else { break };
                let e = readers[k].next_event()?.expect("peeked");
                scanned += 1;
                position.set(e.shard, e.seq);
                if sel.wants(&e.event) {
                    events.push(e);
                }
            }
            Ok(Page {
                events,
                position,
                at_end: false,
            })
        })
        .await
    }
}

fn shard(h: &NodeHistory, s: ShardId) -> Result<Arc<tradelog_node::ShardHistory>, Error> {
    h.shard(s).ok_or_else(|| {
        if s.0 < h.shard_count() {
            Error::Unavailable(format!("this node keeps no history of shard {s}"))
        } else {
            Error::Invalid(format!("shard {s} does not exist"))
        }
    })
}
