//! The leader's pump of one shard group: what a shard's leader does besides answering
//! proposals. It delivers the shard's outbox (cross-shard messages, replicated state) to
//! the destination shards as proposals of their groups, acknowledges them back on its own
//! group once they are applied there, and proposes a tick when a pending transfer is due
//! to expire. Exactly once comes from the engine (a destination applies each (source,
//! sequence) once; an acknowledgement trims the outbox), so the pump keeps no durable state
//! and any leader of any term may redo what a previous one did. Used by the replicated
//! node (crate cluster) and by the seeded simulation, which runs it on simulated time.

use crate::{Batch, GroupHandle, Proposer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tradelog_domain::{Delivery, Message, ShardId, Timestamp};
use tradelog_engine::{Applied, Input};

/// Most messages one round delivers to one destination (well inside a batch's
/// `BATCH_INPUTS_MAX` and `BATCH_BYTES_MAX`: a message is a few hundred bytes).
pub const PUMP_MESSAGES_MAX: usize = 1_024;

/// Where the pump sends a destination shard's messages: its replica on this node, or a
/// node holding one (`None`: no such shard).
pub type Destinations = Arc<dyn Fn(ShardId) -> Option<Proposer> + Send + Sync>;

/// Destinations when this node holds a replica of every shard: `all[s]` is shard `s`.
pub fn local_destinations(all: Vec<GroupHandle>) -> Destinations {
    Arc::new(move |to: ShardId| all.get(to.0 as usize).cloned().map(Proposer::Local))
}

/// The leader duties of one shard, on whichever node leads it: deliver new outbox
/// messages to their destination shards (and acknowledge them back once applied there),
/// and propose a tick when a pending transfer is due to expire.
///
/// `now` stamps the inputs it proposes (the cluster's wall clock; a simulation's own);
/// `interval_ms`: how often it looks when nothing woke it. It returns once `stopped` is set.
pub async fn pump(
    group: GroupHandle,
    destinations: Destinations,
    wake: Arc<Notify>,
    stopped: Arc<AtomicBool>,
    now: fn() -> Timestamp,
    interval_ms: u64,
) {
    let me = group.group();
    // Highest sequence number delivered to each destination while this node leads.
    let mut delivered: BTreeMap<ShardId, u64> = BTreeMap::new();
    let mut was_leader = false;
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(interval_ms), wake.notified()).await;
        if stopped.load(Ordering::Acquire) {
            return;
        }
        let leader = group.is_leader();
        if leader != was_leader {
            // A new term of leadership starts from what the log says is unacknowledged.
            delivered.clear();
            was_leader = leader;
        }
        if !leader {
            continue;
        }
        let t = now();
        let work = group
            .read_local(move |e| {
                let mut out: Vec<(ShardId, Vec<Message>)> = Vec::new();
                for to in e.outbox_destinations() {
                    out.push((to, e.outbox(to).cloned().collect()));
                }
                (out, e.ledger().has_due_expiry(t))
            })
            .await;
        let Ok((outbox, due)) = work else { continue };
        for (to, messages) in outbox {
            let done = delivered.get(&to).copied().unwrap_or(0);
            // At most `PUMP_MESSAGES_MAX` per round, so a backlog (a destination that was
            // down under load) always fits in a batch; the rest go in the next rounds.
            let next: Vec<&Message> = messages
                .iter()
                .filter(|m| m.seq > done)
                .take(PUMP_MESSAGES_MAX)
                .collect();
            let fresh_seqs: Vec<u64> = next.iter().map(|m| m.seq).collect();
            let fresh: Vec<Input> = next
                .into_iter()
                .map(|m| Input::Message {
                    timestamp: now(),
                    message: m.clone(),
                })
                .collect();
            if fresh_seqs.is_empty() {
                continue;
            }
            let Some(dest) = destinations(to) else {
                continue;
            };
            let batch = match Batch::new(fresh) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(from = %me, %to, "messages do not fit a batch: {e}");
                    continue;
                }
            };
            match dest.propose(batch).await {
                Ok(r) => {
                    // Acknowledge what the destination applied (now or before), in order,
                    // up to the first message it could not apply yet (`Deferred`: its
                    // catalog lags; `Gap`): that one and the rest go again next round.
                    let mut upto = done;
                    for (m, a) in fresh_seqs.iter().zip(&r.results) {
                        match a {
                            Applied::Message(Delivery::Applied | Delivery::Duplicate) => upto = *m,
                            _ => break,
                        }
                    }
                    if upto > done {
                        delivered.insert(to, upto);
                        let ack = Input::Ack {
                            timestamp: now(),
                            to,
                            upto,
                        };
                        if let Ok(b) = Batch::new(vec![ack]) {
                            let _ = group.propose(b).await;
                        }
                    }
                }
                Err(e) => tracing::debug!(from = %me, %to, "delivering messages: {e}"),
            }
        }
        if due {
            if let Ok(b) = Batch::new(vec![Input::Tick { timestamp: now() }]) {
                let _ = group.propose(b).await;
            }
        }
    }
}
