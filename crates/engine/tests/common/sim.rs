//! A multi-shard system under test: engines, a router, and a message deliverer that is
//! either in order (`rng: None`) or adversarial (random interleaving across channels,
//! duplicates, out-of-order attempts, late acks, restarts from snapshots).

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use tradelog_engine::routing::{route, Route};
use tradelog_engine::{Applied, Engine, Input, Placement, Split, SplitError};

#[derive(Default, Debug)]
pub struct Stats {
    pub delivered: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub restarts: u64,
    pub acks: u64,
    /// Messages a split shard passed on to the shard that owns what they name now.
    pub forwarded: u64,
    /// Of those, answers to transfers whose debit had moved.
    pub relayed: u64,
}

pub struct Sim {
    pub shards: Vec<Engine>,
    /// Where clients send commands: the base placement and every split so far.
    pub placement: Placement,
    rng: Option<ChaCha8Rng>,
    pub events: Vec<EventRecord>,
    step_orders: BTreeMap<usize, (OrderId, MarketId)>,
    key_of: BTreeMap<OrderId, (usize, u32)>,
    pub pendings: Vec<(usize, u64)>,
    step: usize,
    pub stats: Stats,
    /// Every input applied to each shard, in order (the shard's log).
    pub logs: Vec<Vec<Input>>,
    /// Every event of each shard, in order.
    pub shard_events: Vec<Vec<EventRecord>>,
    /// The snapshot each shard made by a split started from (its log follows it).
    pub initial: BTreeMap<usize, Vec<u8>>,
}

impl OrderIds for Sim {
    fn order_of_step(&self, step: usize) -> Option<(OrderId, MarketId)> {
        self.step_orders.get(&step).copied()
    }

    fn order_steps(&self) -> Vec<usize> {
        self.step_orders.keys().copied().collect()
    }
}

/// An order named by the step that placed it and how many times it was replaced since.
pub type OrderKey = (usize, u32);
/// (taker, maker, price, qty, taker fee, maker fee).
pub type TradeRow = (OrderKey, OrderKey, u64, u64, u64, u64);
/// (order, side, price, remaining) in priority order.
pub type BookRow = (OrderKey, Side, u64, u64);

/// What must be equal between two systems that ran the same workload.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub balances: BTreeMap<(AccountId, AssetId), (u64, u64)>,
    pub trades: BTreeMap<MarketId, Vec<TradeRow>>,
    pub books: BTreeMap<MarketId, Vec<BookRow>>,
    pub cancels: Vec<(OrderKey, u64)>,
}

impl Sim {
    pub fn new(n: u32, seed: Option<u64>) -> Sim {
        let placement = Placement::new(n);
        Sim {
            shards: (0..n)
                .map(|s| Engine::new(ShardId(s), placement.clone()))
                .collect(),
            placement,
            rng: seed.map(ChaCha8Rng::seed_from_u64),
            events: vec![],
            step_orders: BTreeMap::new(),
            key_of: BTreeMap::new(),
            pendings: vec![],
            step: 0,
            stats: Stats::default(),
            logs: vec![vec![]; n as usize],
            shard_events: vec![vec![]; n as usize],
            initial: BTreeMap::new(),
        }
    }

    fn apply(&mut self, s: usize, input: &Input) -> Applied {
        if let Input::Message { message, .. } = input {
            if matches!(message.body, MessageBody::Forwarded { .. })
                && message.seq == self.shards[s].inbox_applied(message.from) + 1
            {
                self.stats.forwarded += 1;
                if let MessageBody::Forwarded { body, .. } = &message.body {
                    if matches!(**body, MessageBody::TransferCreditResult { .. }) {
                        self.stats.relayed += 1;
                    }
                }
            }
        }
        let mut out = vec![];
        let r = self.shards[s].apply(input, &mut out);
        self.logs[s].push(input.clone());
        self.shard_events[s].extend(out.iter().cloned());
        if let Err(v) = self.shards[s].validate() {
            panic!("shard {s} invariant broken after {input:?}: {v}");
        }
        for e in &out {
            if let Event::OrderSubmitted {
                order,
                market,
                replaces,
                ..
            } = e.event
            {
                let key = match replaces {
                    None => (self.step, 0),
                    Some(old) => {
                        let (s, g) = self.key_of[&old];
                        (s, g + 1)
                    }
                };
                self.key_of.insert(order, key);
                self.step_orders.insert(key.0, (order, market));
            }
        }
        self.events.extend(out);
        r
    }

    pub fn tick_all(&mut self, ts: u64) {
        for s in 0..self.shards.len() {
            self.apply(
                s,
                &Input::Tick {
                    timestamp: Timestamp(ts),
                },
            );
        }
    }

    pub fn submit(&mut self, step: usize, meta: Meta, command: Command) -> Vec<Outcome> {
        self.step = step;
        let targets: Vec<usize> = match route(&command, &self.placement, self.shards[0].markets()) {
            Route::All => (0..self.shards.len()).collect(),
            Route::Shard(s) => vec![s.0 as usize],
        };
        let mut v = vec![];
        for s in targets {
            if let Applied::Command(o) = self.apply(
                s,
                &Input::Command {
                    meta,
                    command: command.clone(),
                },
            ) {
                v.push(o);
            }
        }
        if let Command::CreatePending { spec, .. } = &command {
            if v.iter().all(|o| o.result.is_ok()) {
                self.pendings.push((step, spec.debit.0));
            }
        }
        v
    }

    fn channels(&self) -> Vec<(usize, ShardId, Vec<Message>, u64)> {
        let mut v = vec![];
        for (from, e) in self.shards.iter().enumerate() {
            for to in e.outbox_destinations() {
                let msgs: Vec<Message> = e.outbox(to).cloned().collect();
                let applied = self.shards[to.0 as usize].inbox_applied(ShardId(from as u32));
                v.push((from, to, msgs, applied));
            }
        }
        v
    }

    /// Splits shard `parent` at leader time `ts` (messages may be in flight): the
    /// accounts it owns with `id % modulus == residue`, and `markets`, go to a new shard,
    /// numbered next.
    pub fn split(
        &mut self,
        parent: usize,
        modulus: u64,
        residue: u64,
        markets: Vec<MarketId>,
        ts: u64,
    ) -> Result<ShardId, SplitError> {
        let split = Split {
            parent: ShardId(parent as u32),
            child: ShardId(self.shards.len() as u32),
            modulus,
            residue,
            markets,
        };
        let input = Input::Split {
            timestamp: Timestamp(ts),
            split: split.clone(),
        };
        let mut out = vec![];
        let child = self.shards[parent].split(Timestamp(ts), split.clone(), &mut out);
        self.logs[parent].push(input);
        self.shard_events[parent].extend(out.iter().cloned());
        self.events.extend(out);
        let child = child?;
        self.placement
            .split(split.clone())
            .expect("the parent accepted it");
        for e in [&self.shards[parent], &child] {
            if let Err(v) = e.validate() {
                panic!("shard {} invariant broken after {split:?}: {v}", e.shard());
            }
        }
        self.initial.insert(self.shards.len(), child.snapshot());
        self.shards.push(child);
        self.logs.push(vec![]);
        self.shard_events.push(vec![]);
        Ok(split.child)
    }

    /// Delivers until nothing is in flight.
    pub fn settle(&mut self, ts: u64) {
        assert!(self.deliver(ts, usize::MAX), "messages never settled");
    }

    /// Takes up to `budget` delivery actions (all of them in order without a seed);
    /// true once nothing is in flight (everything then acknowledged).
    pub fn deliver(&mut self, ts: u64, budget: usize) -> bool {
        let timestamp = Timestamp(ts);
        for _ in 0..budget.min(1_000_000) {
            let ch = self.channels();
            let undelivered: Vec<usize> = (0..ch.len())
                .filter(|&i| ch[i].2.iter().any(|m| m.seq > ch[i].3))
                .collect();
            if undelivered.is_empty() {
                for (from, to, _, applied) in ch {
                    self.apply(
                        from,
                        &Input::Ack {
                            timestamp,
                            to,
                            upto: applied,
                        },
                    );
                }
                return true;
            }
            let Some(rng) = self.rng.as_mut() else {
                // In order: everything on the first channel, then the next.
                let (from, to, msgs, applied) = &ch[undelivered[0]];
                let (from, to, applied) = (*from, *to, *applied);
                for m in msgs.clone() {
                    if m.seq > applied {
                        let r = self.apply(
                            to.0 as usize,
                            &Input::Message {
                                timestamp,
                                message: m,
                            },
                        );
                        assert_eq!(r, Applied::Message(Delivery::Applied));
                    }
                }
                let _ = from;
                continue;
            };
            let roll = rng.gen_range(0..100);
            let i = undelivered[rng.gen_range(0..undelivered.len())];
            let (from, to, msgs, applied) = ch[i].clone();
            let next = msgs
                .iter()
                .find(|m| m.seq == applied + 1)
                .cloned()
                .expect("channel has no gap");
            if roll < 15 {
                if let Some(old) = msgs.iter().find(|m| m.seq <= applied).cloned() {
                    let r = self.apply(
                        to.0 as usize,
                        &Input::Message {
                            timestamp,
                            message: old,
                        },
                    );
                    assert_eq!(r, Applied::Message(Delivery::Duplicate));
                    self.stats.duplicates += 1;
                    continue;
                }
            } else if roll < 30 {
                if let Some(later) = msgs.iter().find(|m| m.seq > applied + 1).cloned() {
                    let r = self.apply(
                        to.0 as usize,
                        &Input::Message {
                            timestamp,
                            message: later,
                        },
                    );
                    assert_eq!(
                        r,
                        Applied::Message(Delivery::Gap {
                            expected: applied + 1
                        })
                    );
                    self.stats.gaps += 1;
                    continue;
                }
            } else if roll < 38 {
                self.apply(
                    from,
                    &Input::Ack {
                        timestamp,
                        to,
                        upto: applied,
                    },
                );
                self.stats.acks += 1;
                continue;
            } else if roll < 41 {
                // Crash and restart a shard from a snapshot of its state.
                let s = rng.gen_range(0..self.shards.len());
                let before = self.shards[s].state_hash();
                let snap = self.shards[s].snapshot();
                self.shards[s] = Engine::restore(&snap).expect("own snapshot restores");
                assert_eq!(
                    self.shards[s].state_hash(),
                    before,
                    "restore changed the state"
                );
                assert_eq!(self.shards[s].snapshot(), snap, "snapshot not canonical");
                self.stats.restarts += 1;
                continue;
            }
            let r = self.apply(
                to.0 as usize,
                &Input::Message {
                    timestamp,
                    message: next,
                },
            );
            assert_eq!(r, Applied::Message(Delivery::Applied));
            self.stats.delivered += 1;
        }
        false
    }

    pub fn summary(&self) -> Summary {
        let mut balances = BTreeMap::new();
        let mut books = BTreeMap::new();
        for e in &self.shards {
            for a in e.ledger().accounts() {
                for b in &a.balances {
                    if b.available.0 != 0 || b.held.0 != 0 {
                        balances.insert((a.id, b.asset), (b.available.0, b.held.0));
                    }
                }
            }
            for (m, b) in e.books() {
                let mut v = vec![];
                for side in [Side::Buy, Side::Sell] {
                    for o in b.orders(side) {
                        v.push((self.key_of[&o.id], side, o.price.0, o.remaining.0));
                    }
                }
                books.insert(*m, v);
            }
        }
        let mut trades: BTreeMap<MarketId, Vec<_>> = BTreeMap::new();
        let mut cancels = vec![];
        for r in &self.events {
            match r.event {
                Event::Trade {
                    market,
                    price,
                    qty,
                    taker,
                    maker,
                    taker_fee,
                    maker_fee,
                    ..
                } => trades.entry(market).or_default().push((
                    self.key_of[&taker],
                    self.key_of[&maker],
                    price.0,
                    qty.0,
                    taker_fee.0,
                    maker_fee.0,
                )),
                Event::OrderCancelled {
                    order, remaining, ..
                } => cancels.push((self.key_of[&order], remaining.0)),
                _ => {}
            }
        }
        cancels.sort();
        Summary {
            balances,
            trades,
            books,
            cancels,
        }
    }
}

/// Catalog, accounts and deposits.
pub fn start(sim: &mut Sim, market_shards: [ShardId; 2]) {
    for (meta, cmd) in setup(market_shards) {
        sim.submit(0, meta, cmd);
    }
    sim.settle(10);
}

/// Leader time of step `i` of `ops` (waits move it forward).
pub fn step_time(ops: &[Op], i: usize) -> u64 {
    let mut ts = 1_000_000u64;
    for op in &ops[..=i] {
        ts += 1_000_000;
        if let Op::Wait { ms } = op {
            ts += ms * 1_000_000;
        }
    }
    ts
}

/// A split planned in a workload: at step `at`, after the step's command and `delay`
/// delivery actions (so messages are in flight), shard `parent` (modulo the shards there
/// are then) gives the accounts with `id % modulus == residue % modulus` (none if
/// `modulus` is 0) to a new shard,
/// and markets 1 (bit 0 of `markets`) and 2 (bit 1) if it holds their books.
#[derive(Clone, Debug)]
pub struct PlannedSplit {
    pub at: usize,
    pub delay: usize,
    pub parent: usize,
    pub modulus: u64,
    pub residue: u64,
    pub markets: u8,
}

/// Runs step `i` of `ops` and settles it; checks the cluster-wide invariants.
pub fn step(sim: &mut Sim, ops: &[Op], i: usize) {
    step_splitting(sim, ops, i, &[]);
}

/// [`step`], with the splits planned for this step made while its messages are in flight.
pub fn step_splitting(sim: &mut Sim, ops: &[Op], i: usize, splits: &[PlannedSplit]) {
    let step = i + 1;
    let ts = step_time(ops, i);
    sim.tick_all(ts);
    if let Some((meta, cmd)) = command(&ops[i], step, ts, sim, &sim.pendings.clone()) {
        sim.submit(step, meta, cmd);
    }
    for p in splits.iter().filter(|p| p.at == i) {
        sim.deliver(ts, p.delay);
        let parent = p.parent % sim.shards.len();
        let markets = [1u32, 2]
            .into_iter()
            .filter(|m| p.markets & (1 << (m - 1)) != 0)
            .map(MarketId)
            .filter(|m| sim.shards[parent].books().contains_key(m))
            .collect();
        let markets: Vec<MarketId> = markets;
        if p.modulus == 0 && markets.is_empty() {
            continue; // It would move nothing: refused, as the unit tests check.
        }
        let residue = p.residue.checked_rem(p.modulus).unwrap_or(0);
        if let Err(e) = sim.split(parent, p.modulus, residue, markets, ts) {
            panic!("{p:?} refused: {e}");
        }
    }
    sim.settle(ts);
    if let Err(v) = tradelog_engine::cluster::validate_quiescent(&sim.shards) {
        panic!("after step {step} ({:?}): {v}", ops[i]);
    }
}

/// Runs `ops` on one shard (in-order delivery) and on four shards (adversarial delivery
/// from `seed`) side by side and compares their summaries after every step.
pub fn lockstep(ops: &[Op], seed: u64) -> (Sim, Sim) {
    lockstep_splitting(ops, seed, &[])
}

/// [`lockstep`], with the four-shard system also split as `splits` plan.
pub fn lockstep_splitting(ops: &[Op], seed: u64, splits: &[PlannedSplit]) -> (Sim, Sim) {
    let mut one = Sim::new(1, None);
    let mut four = Sim::new(4, Some(seed));
    start(&mut one, [ShardId(0), ShardId(0)]);
    start(&mut four, [ShardId(1), ShardId(2)]);
    for i in 0..ops.len() {
        step(&mut one, ops, i);
        step_splitting(&mut four, ops, i, splits);
        let (a, b) = (one.summary(), four.summary());
        if a != b {
            panic!(
                "1 shard and 4 shards differ after step {} {:?}\n1 shard:  {a:?}\n4 shards: {b:?}",
                i + 1,
                ops[i]
            );
        }
    }
    (one, four)
}
