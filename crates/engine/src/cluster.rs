//! An in-process cluster of shard engines that delivers messages between them directly.
//!
//! It stands in for the network and the replicated logs in the demo and in tests: every
//! input applied to a shard is also recorded in that shard's input log, so any shard can
//! be rebuilt by replay. Delivery is in channel order; tests that want random
//! interleavings, duplicates and delays drive [`Engine::deliver`] themselves.

use crate::routing::{route, Route};
use crate::{Applied, Engine, Input, Placement, Split, SplitError, Violation};
use std::collections::BTreeMap;
use tradelog_domain::*;

/// Shards of one cluster, in one process.
#[derive(Clone, Debug)]
pub struct LocalCluster {
    shards: Vec<Engine>,
    /// Where commands go: the base placement and every split so far.
    placement: Placement,
    logs: Vec<Vec<Input>>,
    events: Vec<Vec<EventRecord>>,
    timeline: Vec<EventRecord>,
    record: bool,
}

impl LocalCluster {
    /// `n` empty shards with accounts spread by id. With `record`, inputs and events are
    /// kept (for replay and inspection); benchmarks turn it off.
    pub fn new(n: u32, record: bool) -> LocalCluster {
        let placement = Placement::new(n);
        LocalCluster {
            shards: (0..n)
                .map(|s| Engine::new(ShardId(s), placement.clone()))
                .collect(),
            placement,
            logs: vec![Vec::new(); n as usize],
            events: vec![Vec::new(); n as usize],
            timeline: Vec::new(),
            record,
        }
    }

    /// The shards.
    pub fn shards(&self) -> &[Engine] {
        &self.shards
    }

    /// Where commands go: the base placement and every split so far.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Splits shard `parent` at leader time `timestamp`: the accounts it owns with
    /// `id % modulus == residue` (none if `modulus` is 0) and `markets` go to a new shard,
    /// numbered next, which is returned. Messages may be in flight: the parent forwards
    /// what still reaches it. The split is an input of the parent's log; the child's log
    /// starts from the state the split made (docs/design/0014).
    pub fn split(
        &mut self,
        timestamp: Timestamp,
        parent: ShardId,
        modulus: u64,
        residue: u64,
        markets: Vec<MarketId>,
    ) -> Result<ShardId, SplitError> {
        let split = Split {
            parent,
            child: ShardId(self.shards.len() as u32),
            modulus,
            residue,
            markets,
        };
        let p = parent.0 as usize;
        if p >= self.shards.len() {
            return Err(SplitError::UnknownParent(parent));
        }
        let mut out = Vec::new();
        let child = self.shards[p].split(timestamp, split.clone(), &mut out);
        if self.record {
            self.logs[p].push(Input::Split {
                timestamp,
                split: split.clone(),
            });
            self.timeline.extend(out.iter().cloned());
            self.events[p].extend(out);
        }
        let child = child?;
        self.placement
            .split(split.clone())
            .expect("the parent accepted the split");
        self.shards.push(child);
        self.logs.push(Vec::new());
        self.events.push(Vec::new());
        Ok(split.child)
    }

    /// One shard's input log.
    pub fn log(&self, s: ShardId) -> &[Input] {
        &self.logs[s.0 as usize]
    }

    /// One shard's events.
    pub fn events(&self, s: ShardId) -> &[EventRecord] {
        &self.events[s.0 as usize]
    }

    /// Every event of every shard in the order the cluster applied them (causal order).
    pub fn timeline(&self) -> &[EventRecord] {
        &self.timeline
    }

    /// Every event of every shard, shard by shard.
    pub fn all_events(&self) -> impl Iterator<Item = &EventRecord> {
        self.events.iter().flatten()
    }

    fn apply(&mut self, s: usize, input: Input) -> Applied {
        let mut out = Vec::new();
        let r = self.shards[s].apply(&input, &mut out);
        if self.record {
            self.logs[s].push(input);
            self.timeline.extend(out.iter().cloned());
            self.events[s].extend(out);
        }
        r
    }

    /// Submits a command where it belongs (every shard for catalog commands) and returns
    /// each shard's answer. Messages it causes are not delivered until [`pump`](Self::pump).
    pub fn submit(&mut self, meta: Meta, command: Command) -> Vec<(ShardId, Outcome)> {
        let targets: Vec<usize> = match route(&command, &self.placement, self.shards[0].markets()) {
            Route::All => (0..self.shards.len()).collect(),
            Route::Shard(s) => vec![s.0 as usize],
        };
        let mut answers = Vec::new();
        for s in targets {
            let input = Input::Command {
                meta,
                command: command.clone(),
            };
            match self.apply(s, input) {
                Applied::Command(o) => answers.push((ShardId(s as u32), o)),
                other => unreachable!("command answered {other:?}"),
            }
        }
        answers
    }

    /// Delivers every outstanding message (and acknowledges it) until no shard has
    /// anything left to send. Returns how many messages were delivered.
    pub fn pump(&mut self, timestamp: Timestamp) -> usize {
        let mut delivered = 0;
        loop {
            let mut progress = false;
            for from in 0..self.shards.len() {
                for to in self.shards[from].outbox_destinations() {
                    let msgs: Vec<Message> = self.shards[from].outbox(to).cloned().collect();
                    let mut upto = 0;
                    for m in msgs {
                        let seq = m.seq;
                        let r = self.apply(
                            to.0 as usize,
                            Input::Message {
                                timestamp,
                                message: m,
                            },
                        );
                        assert!(
                            matches!(r, Applied::Message(Delivery::Applied | Delivery::Duplicate)),
                            "in-order delivery failed: {r:?}"
                        );
                        upto = seq;
                        delivered += 1;
                    }
                    self.apply(
                        from,
                        Input::Ack {
                            timestamp,
                            to,
                            upto,
                        },
                    );
                    progress = true;
                }
            }
            if !progress {
                return delivered;
            }
        }
    }

    /// Every shard's invariants, plus the cluster-wide ones that hold once all messages
    /// are delivered: per asset, balances over all shards equal deposits minus
    /// withdrawals; what shards sent equals what they received; every open order's hold
    /// on its account's shard equals the hold its market's book mirrors.
    pub fn validate(&self) -> Result<(), Violation> {
        for e in &self.shards {
            e.validate()
                .map_err(|v| Violation(format!("shard {}: {v}", e.shard())))?;
        }
        let quiet = self
            .shards
            .iter()
            .all(|e| e.outbox_destinations().is_empty());
        if !quiet {
            return Ok(());
        }
        validate_quiescent(&self.shards)
    }
}

/// Cluster-wide invariants over shards with no message in flight.
pub fn validate_quiescent(shards: &[Engine]) -> Result<(), Violation> {
    let mut flows: BTreeMap<AssetId, (u128, u128, u128, u128)> = BTreeMap::new();
    let mut sums: BTreeMap<AssetId, u128> = BTreeMap::new();
    let mut holds = BTreeMap::new();
    let mut mirrored = BTreeMap::new();
    for e in shards {
        for (asset, t) in e.ledger().totals() {
            let f = flows.entry(*asset).or_default();
            f.0 += t.deposited;
            f.1 += t.withdrawn;
            f.2 += t.received;
            f.3 += t.sent;
        }
        for a in e.ledger().accounts() {
            for b in &a.balances {
                *sums.entry(b.asset).or_default() += b.available.0 as u128 + b.held.0 as u128;
            }
        }
        for (o, h) in e.ledger().order_holds_sorted() {
            holds.insert(o, h.amount);
        }
        for b in e.books().values() {
            for side in [Side::Buy, Side::Sell] {
                for o in b.orders(side) {
                    mirrored.insert(o.id, o.hold);
                }
            }
        }
        if e.relayed_answers_awaited() != 0 {
            return Err(Violation(format!(
                "shard {}: transfer answers to relay with no message outstanding",
                e.shard()
            )));
        }
        if !e.ledger().inflight().is_empty() {
            return Err(Violation(format!(
                "shard {}: transfers in flight with no message outstanding",
                e.shard()
            )));
        }
    }
    for (asset, (dep, wd, rx, tx)) in &flows {
        if rx != tx {
            return Err(Violation(format!(
                "asset {asset}: shards received {rx} but sent {tx}"
            )));
        }
        let sum = sums.get(asset).copied().unwrap_or(0);
        if sum + wd != *dep {
            return Err(Violation(format!(
                "asset {asset}: balances {sum} != deposits {dep} - withdrawals {wd}"
            )));
        }
    }
    if holds != mirrored {
        return Err(Violation(format!(
            "order holds on accounts {holds:?} differ from the books' {mirrored:?}"
        )));
    }
    Ok(())
}
