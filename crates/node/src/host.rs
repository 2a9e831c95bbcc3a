//! [`ShardHost`]: what a server needs from whatever runs the shards, so that the same
//! server runs on an embedded single-process [`Node`](crate::Node) or on a replicated
//! cluster node (`tradelog-cluster`), and the catalog fan-out both share.

use crate::runtime::{CommandReply, Reply, SubmitError};
use crossbeam_channel::Receiver;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use tradelog_domain::*;
use tradelog_engine::{Engine, Placement};

/// A read of one shard's state machine, called once with the state (or why there is none).
pub type EngineRead = Box<dyn FnOnce(Result<&Engine, SubmitError>) + Send>;

/// Runs a cluster's shards for a server: commands in, answers and events out, reads of a
/// shard's state. Every method returns at once; answers come through callbacks.
pub trait ShardHost: Send + Sync + 'static {
    /// Number of shards now (a cluster's grows when a shard splits).
    fn shard_count(&self) -> u32;

    /// The most shards this host may ever have: the bound of its per-shard tables (shard
    /// ids are below it). The shard count, unless shards can split while it runs.
    fn shard_slots(&self) -> u32 {
        self.shard_count()
    }

    /// Where accounts and markets live now (a cluster's changes when a shard splits).
    fn placement(&self) -> Arc<Placement>;

    /// Submits a command; `reply` is called once it is durable (on a majority, when
    /// replicated) and applied, or refused. Never blocks: a full queue answers
    /// `Overloaded` at once.
    fn submit(&self, meta: Meta, command: Command, reply: Reply);

    /// Calls `f` with shard `shard`'s state after every write acknowledged before the call
    /// (a linearizable read).
    fn read_with(&self, shard: ShardId, f: EngineRead);

    /// Calls `f` with this host's copy of shard `shard`'s state as it is, without
    /// confirming that it holds every acknowledged write (a stale read: on a replicated
    /// node it does not ask the leader, so it answers while the shard has no leader, and
    /// may miss writes acknowledged elsewhere). The default is [`read_with`](Self::read_with):
    /// a single node's state is always current.
    fn read_stale(&self, shard: ShardId, f: EngineRead) {
        self.read_with(shard, f)
    }

    /// Commands waiting in this host's client queues, over all shards (a load figure for
    /// the schedulers of audit jobs). The default: 0 (not measured).
    fn queued_commands(&self) -> u64 {
        0
    }

    /// `Ok` when this host holds a replica of `shard` and can answer reads of it; else
    /// [`SubmitError::WrongNode`] (a replicated node holding only some shards). The
    /// default: every shard is here.
    fn check_hosted(&self, shard: ShardId) -> Result<(), SubmitError> {
        let _ = shard;
        Ok(())
    }

    /// A live feed of every event of every shard this host holds, in batches, from now on; a subscriber
    /// that falls too far behind is dropped (its receiver sees the channel close).
    fn subscribe(&self) -> Receiver<Arc<[EventRecord]>>;

    /// Stops accepting work, finishes what is in flight and stops the shards; returns when
    /// they stopped. Calling it again does nothing.
    fn stop(&self);

    /// Waits until no shard has a cross-shard message in flight (or `timeout` passes); true
    /// if quiet. Blocks.
    fn wait_quiescent(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let busy = (0..self.shard_count()).any(|s| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                self.read_with(
                    ShardId(s),
                    Box::new(move |r| {
                        let _ = tx.send(r.map(|e| !e.outbox_destinations().is_empty()));
                    }),
                );
                rx.recv().ok().and_then(|r| r.ok()).unwrap_or(true)
            });
            if !busy {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// A copy of every shard's state machine (for checks and audits); blocks.
    fn engines(&self) -> Result<Vec<Engine>, SubmitError> {
        (0..self.shard_count())
            .map(|s| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                self.read_with(
                    ShardId(s),
                    Box::new(move |r| {
                        let _ = tx.send(r.cloned());
                    }),
                );
                rx.recv().unwrap_or(Err(SubmitError::Stopped))
            })
            .collect()
    }
}

/// The market catalog a host routes market-scoped commands by.
pub type Markets = Arc<RwLock<BTreeMap<MarketId, MarketSpec>>>;

/// Splits the answer to a catalog command (applied by every one of `shards` shards) into
/// one reply per shard: `reply` gets shard 0's answer once every shard answered (or the
/// first failure), and a created market enters `markets` once every shard has it.
pub fn catalog_replies(
    shards: u32,
    command: &Command,
    markets: &Markets,
    reply: Reply,
) -> Vec<Reply> {
    let state = Arc::new(Mutex::new((shards, Some(reply), None::<CommandReply>)));
    let spec = match command {
        Command::CreateMarket(m) => Some(m.clone()),
        _ => None,
    };
    (0..shards)
        .map(|s| {
            let state = state.clone();
            let markets = markets.clone();
            let spec = spec.clone();
            let part: Reply = Box::new(move |res| {
                let mut st = state.lock().expect("catalog reply lock");
                st.0 -= 1;
                match res {
                    Err(e) => {
                        if let Some(r) = st.1.take() {
                            r(Err(e));
                        }
                    }
                    Ok(rep) => {
                        if s == 0 {
                            st.2 = Some(rep);
                        }
                    }
                }
                if st.0 == 0 {
                    if let (Some(r), Some(rep)) = (st.1.take(), st.2.take()) {
                        if let (Some(m), Ok(_)) = (spec, rep.outcome.result) {
                            markets.write().expect("markets lock").insert(m.id, m);
                        }
                        r(Ok(rep));
                    }
                }
            });
            part
        })
        .collect()
}
