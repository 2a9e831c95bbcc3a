//! The shard state machine of tradelog: a deterministic function from (state, input) to
//! (state, events, outgoing messages).
//!
//! Owns: routing checks (does this shard own the account or market?), authorization
//! ([`Authority`]), idempotency (deduplication of transfer ids and client order ids within
//! [`IDEMPOTENCY_WINDOW_MS`]), the cross-shard message protocol (outbox per destination,
//! exactly-once inbox per source, local delivery when both ends live here), event
//! numbering, snapshots and the state hash, and `validate()` over all of it.
//!
//! Inputs are the only source of change and of time: a [`Command`] with its [`Meta`], a
//! delivered [`Message`], an acknowledgement that trims the outbox, or a tick that lets
//! timeouts fire. The same inputs always give byte-identical events and state.
//!
//! Must never depend on: storage, network, Raft, tokio, clocks, randomness, floats, or the
//! iteration order of a hash map. Those belong to the crates that wrap this one.

#![forbid(unsafe_code)]

pub mod audit;
pub mod cluster;
mod dedupe;
pub mod projection;
/// Where accounts and markets live (defined in the domain crate, so clients route the
/// same way).
pub use tradelog_domain::routing;
mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;

use dedupe::{Dedupe, DedupeEntry, DedupeKey, NS_CLIENT_ORDER, NS_TRANSFER};
pub use routing::{Placement, Route, Split, SplitError};
pub use snapshot::{SnapshotError, StateBytes, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};

use rustc_hash::FxHasher;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use tradelog_domain::audit::SplitOrigin;
use tradelog_domain::*;
use tradelog_ledger::Ledger;
use tradelog_matching::{AmendResult, Book, Closed, MatchEvent, MatchOutput, TakerEnd};

/// Inputs warmed and then applied together by [`Engine::apply_batch`].
pub const WARM_CHUNK_LEN: usize = 64;

/// One entry of a shard's input log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Input {
    /// A client command.
    Command {
        /// Who and when.
        meta: Meta,
        /// What.
        command: Command,
    },
    /// A message from another shard, delivered at leader time `timestamp`.
    Message {
        /// Leader time of delivery.
        timestamp: Timestamp,
        /// The message.
        message: Message,
    },
    /// The shard `to` has applied our messages up to `upto`: drop them from the outbox.
    Ack {
        /// Leader time.
        timestamp: Timestamp,
        /// The receiving shard.
        to: ShardId,
        /// Highest sequence number it applied.
        upto: u64,
    },
    /// Time passes (fires timeouts).
    Tick {
        /// Leader time.
        timestamp: Timestamp,
    },
    /// This shard gives the accounts `split` names to a new shard, `split.child`, whose
    /// initial state [`Engine::split`] returns (docs/design/0014-splitting-a-shard.md).
    Split {
        /// Leader time.
        timestamp: Timestamp,
        /// Which accounts go to which new shard.
        split: Split,
    },
}

impl Input {
    /// The leader time the input carries.
    pub fn timestamp(&self) -> Timestamp {
        match self {
            Input::Command { meta, .. } => meta.timestamp,
            Input::Message { timestamp, .. }
            | Input::Ack { timestamp, .. }
            | Input::Tick { timestamp }
            | Input::Split { timestamp, .. } => *timestamp,
        }
    }
}

/// What applying an input produced (besides events). Serializable: a replicated shard
/// returns these to the replica that proposed the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Applied {
    /// The answer to a command.
    Command(Outcome),
    /// What happened to a delivered message.
    Message(Delivery),
    /// Ack or tick.
    Other,
    /// A split: how many accounts moved to the new shard, or why nothing changed.
    Split(Result<u64, SplitError>),
}

/// A broken engine invariant (a bug).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tradelog_ledger::Violation> for Violation {
    fn from(v: tradelog_ledger::Violation) -> Self {
        Violation(format!("ledger: {}", v.0))
    }
}

impl From<tradelog_matching::Violation> for Violation {
    fn from(v: tradelog_matching::Violation) -> Self {
        Violation(format!("book: {}", v.0))
    }
}

/// Outgoing messages to one destination that it has not acknowledged yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Outbox {
    next_seq: u64,
    unacked: VecDeque<Message>,
}

/// The state machine of one shard.
#[derive(Clone, Debug)]
pub struct Engine {
    shard: ShardId,
    placement: Placement,
    assets: BTreeMap<AssetId, Asset>,
    markets: BTreeMap<MarketId, MarketSpec>,
    ledger: Ledger,
    books: BTreeMap<MarketId, Book>,
    dedupe: Dedupe,
    order_counter: u64,
    inbox_next: BTreeMap<ShardId, u64>,
    outbox: BTreeMap<ShardId, Outbox>,
    /// Answers still to come for transfers whose debit moved away in a split (whichever
    /// shard answers: the credit may have moved too): the shard to pass each answer on to.
    relay: BTreeMap<TransferId, ShardId>,
    next_event_seq: u64,
    inputs: u64,
    last_timestamp: Timestamp,
    /// For a shard made by a split: its parent and the parent's index of the split.
    origin: Option<SplitOrigin>,
    // Scratch space, always empty between inputs; not part of the state.
    local: VecDeque<(Principal, MessageBody)>,
    match_out: MatchOutput,
}

type R<T = ()> = Result<T, RejectCode>;

/// A 63-bit fingerprint of a command (the low bit is always 0: the idempotency table
/// keeps a flag there).
fn fingerprint<T: Hash>(v: &T) -> u64 {
    let mut h = FxHasher::default();
    v.hash(&mut h);
    h.finish() & !1
}

impl Engine {
    /// A new, empty shard.
    pub fn new(shard: ShardId, placement: Placement) -> Engine {
        assert!(
            placement.shard_count() > shard.0,
            "shard outside the placement"
        );
        let mut ledger = Ledger::new();
        ledger.set_supply_max(placement.supply_max(shard));
        Engine {
            shard,
            placement,
            assets: BTreeMap::new(),
            markets: BTreeMap::new(),
            ledger,
            books: BTreeMap::new(),
            dedupe: Dedupe::default(),
            order_counter: 0,
            inbox_next: BTreeMap::new(),
            outbox: BTreeMap::new(),
            relay: BTreeMap::new(),
            next_event_seq: 1,
            inputs: 0,
            last_timestamp: Timestamp(0),
            origin: None,
            local: VecDeque::new(),
            match_out: MatchOutput::default(),
        }
    }

    // ----- queries ---------------------------------------------------------------------

    /// Answers to transfers whose debit moved away in a split that this shard still
    /// expects, to pass on.
    pub fn relayed_answers_awaited(&self) -> usize {
        self.relay.len()
    }

    /// This shard's id.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Where accounts and markets live.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The ledger (accounts this shard owns).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The books of the markets this shard owns.
    pub fn books(&self) -> &BTreeMap<MarketId, Book> {
        &self.books
    }

    /// The market catalog.
    pub fn markets(&self) -> &BTreeMap<MarketId, MarketSpec> {
        &self.markets
    }

    /// The asset catalog.
    pub fn assets(&self) -> &BTreeMap<AssetId, Asset> {
        &self.assets
    }

    /// Number of inputs applied.
    pub fn inputs_applied(&self) -> u64 {
        self.inputs
    }

    /// Leader time of the last input applied (for a shard made by a split that applied
    /// nothing yet, the time of the split).
    pub fn last_timestamp(&self) -> Timestamp {
        self.last_timestamp
    }

    /// For a shard made by a split: its parent and the parent's index of the split
    /// (`None` for a base shard, and for a child restored from a version 2 snapshot).
    pub fn origin(&self) -> Option<SplitOrigin> {
        self.origin
    }

    /// Sequence number the next event will get.
    pub fn next_event_seq(&self) -> u64 {
        self.next_event_seq
    }

    /// Messages to `to` not yet acknowledged, oldest first.
    pub fn outbox(&self, to: ShardId) -> impl Iterator<Item = &Message> {
        self.outbox
            .get(&to)
            .into_iter()
            .flat_map(|o| o.unacked.iter())
    }

    /// Destinations with unacknowledged messages.
    pub fn outbox_destinations(&self) -> Vec<ShardId> {
        self.outbox
            .iter()
            .filter(|(_, o)| !o.unacked.is_empty())
            .map(|(s, _)| *s)
            .collect()
    }

    /// Highest sequence number applied from `from` (0 = none).
    pub fn inbox_applied(&self, from: ShardId) -> u64 {
        self.inbox_next.get(&from).map(|n| n - 1).unwrap_or(0)
    }

    /// Capacity planning: makes room in the idempotency table for `n` more transfer ids,
    /// so that a known load does not pause to grow the table (a deployment sizes it for
    /// its window). Changes no behaviour and no state hash.
    pub fn reserve_idempotency_keys(&mut self, n: usize) {
        self.dedupe.reserve_transfers(n);
    }

    // ----- inputs ----------------------------------------------------------------------

    /// Applies one input, appending its events to `out`.
    pub fn apply(&mut self, input: &Input, out: &mut Vec<EventRecord>) -> Applied {
        match input {
            Input::Command { meta, command } => Applied::Command(self.execute(*meta, command, out)),
            Input::Message { timestamp, message } => {
                Applied::Message(self.deliver(*timestamp, message, out))
            }
            Input::Ack {
                timestamp,
                to,
                upto,
            } => {
                self.ack(*timestamp, *to, *upto, out);
                Applied::Other
            }
            Input::Tick { timestamp } => {
                self.tick(*timestamp, out);
                Applied::Other
            }
            // Replay: the child's state is not needed here (it starts its own log).
            Input::Split { timestamp, split } => Applied::Split(
                self.split(*timestamp, split.clone(), out)
                    .map(|c| c.ledger.len() as u64),
            ),
        }
    }

    /// Applies a batch of inputs (one Raft entry, later), exactly as `apply` would one by
    /// one, appending one result per input to `results`.
    ///
    /// Before applying each chunk of [`WARM_CHUNK_LEN`] inputs it reads, without changing
    /// anything, the accounts and idempotency slots the chunk will touch. Those reads are
    /// independent of each other, so the CPU overlaps their cache misses instead of taking
    /// them one after another inside the dependent work (docs/design/0003).
    pub fn apply_batch(
        &mut self,
        inputs: &[Input],
        out: &mut Vec<EventRecord>,
        results: &mut Vec<Applied>,
    ) {
        let mut positions = [u32::MAX; 2 * WARM_CHUNK_LEN];
        for chunk in inputs.chunks(WARM_CHUNK_LEN) {
            // Three passes of independent reads, so that many misses are in flight at
            // once: index buckets, then account records, then idempotency slots.
            let mut acc = 0u64;
            for (n, input) in chunk.iter().enumerate() {
                let (a, b) = Self::accounts_of(input);
                positions[2 * n] = a.and_then(|a| self.ledger.position(a)).unwrap_or(u32::MAX);
                positions[2 * n + 1] = b.and_then(|b| self.ledger.position(b)).unwrap_or(u32::MAX);
            }
            for &p in &positions[..2 * chunk.len()] {
                if p != u32::MAX {
                    acc = acc.wrapping_add(self.ledger.touch_at(p));
                }
            }
            for input in chunk {
                acc = acc.wrapping_add(self.warm(input));
            }
            std::hint::black_box(acc);
            for input in chunk {
                results.push(self.apply(input, out));
            }
        }
    }

    /// The accounts a command reads first on this shard.
    #[inline]
    fn accounts_of(input: &Input) -> (Option<AccountId>, Option<AccountId>) {
        match input {
            Input::Command { command, .. } => match command {
                Command::Transfer(t) => (Some(t.debit), Some(t.credit)),
                Command::PlaceOrder(o) => (Some(o.account), None),
                Command::Deposit { account, .. } | Command::Withdraw { account, .. } => {
                    (Some(*account), None)
                }
                _ => (None, None),
            },
            _ => (None, None),
        }
    }

    /// Reads the idempotency slot `input` will look up first; returns a value so the
    /// read stays.
    #[inline]
    fn warm(&self, input: &Input) -> u64 {
        match input {
            Input::Command { command, .. } => {
                dedupe_key(command).map_or(0, |k| self.dedupe.contains(&k) as u64)
            }
            _ => 0,
        }
    }

    /// The shard clock: the latest leader time of the inputs applied so far (input times
    /// made monotonic: every event is stamped with it). `Timestamp(0)` before any input.
    pub fn clock(&self) -> Timestamp {
        self.last_timestamp
    }

    /// Starts an input: counts it, makes time monotonic, fires due timeouts.
    fn begin(&mut self, ts: Timestamp, out: &mut Vec<EventRecord>) -> Timestamp {
        self.inputs += 1;
        let ts = ts.max(self.last_timestamp);
        self.last_timestamp = ts;
        if self.ledger.has_due_expiry(ts) {
            self.system_events(ts, out, |ledger, sink| ledger.expire(ts, sink));
        }
        self.dedupe.rotate(ts);
        ts
    }

    /// Runs `f` with a sink for events the engine causes itself (by the system principal,
    /// as part of the current input).
    fn system_events(
        &mut self,
        ts: Timestamp,
        out: &mut Vec<EventRecord>,
        f: impl FnOnce(&mut Ledger, &mut EventSink),
    ) {
        let mut seq = self.next_event_seq;
        let mut sink = EventSink::new(
            out,
            self.shard,
            self.inputs,
            ts,
            Principal::SYSTEM,
            &mut seq,
        );
        f(&mut self.ledger, &mut sink);
        self.next_event_seq = seq;
    }

    /// Lets time pass.
    pub fn tick(&mut self, ts: Timestamp, out: &mut Vec<EventRecord>) {
        self.begin(ts, out);
    }

    /// Drops acknowledged messages from the outbox to `to`.
    pub fn ack(&mut self, ts: Timestamp, to: ShardId, upto: u64, out: &mut Vec<EventRecord>) {
        self.begin(ts, out);
        if let Some(o) = self.outbox.get_mut(&to) {
            while o.unacked.front().is_some_and(|m| m.seq <= upto) {
                o.unacked.pop_front();
            }
        }
    }

    /// Applies a message from another shard exactly once.
    pub fn deliver(&mut self, ts: Timestamp, m: &Message, out: &mut Vec<EventRecord>) -> Delivery {
        let ts = self.begin(ts, out);
        if m.to != self.shard || m.from == self.shard {
            return Delivery::Misrouted;
        }
        let expected = *self.inbox_next.get(&m.from).unwrap_or(&1);
        if m.seq < expected {
            return Delivery::Duplicate;
        }
        if m.seq > expected {
            return Delivery::Gap { expected };
        }
        let (origin, body) = match &m.body {
            MessageBody::Forwarded { origin, body } => (*origin, &**body),
            body => (m.from, body),
        };
        if let Some(to) = self.forward_to(body) {
            self.inbox_next.insert(m.from, expected + 1);
            let mut out = Outgoing {
                shard: self.shard,
                outbox: &mut self.outbox,
                local: &mut self.local,
            };
            let body = Box::new(body.clone());
            out.send(to, m.principal, MessageBody::Forwarded { origin, body });
            return Delivery::Applied;
        }
        if let MessageBody::OrderHeld(t) = body {
            // Catalog commands reach every shard on their own; an order may arrive from a
            // shard that created the market before this one did.
            if !self.markets.contains_key(&t.market) {
                return Delivery::Deferred;
            }
        }
        self.inbox_next.insert(m.from, expected + 1);
        let mut seq = self.next_event_seq;
        let mut sink = EventSink::new(out, self.shard, self.inputs, ts, m.principal, &mut seq);
        Self::on_message(
            &mut self.ledger,
            &mut self.books,
            &self.markets,
            &self.placement,
            self.shard,
            &mut self.order_counter,
            &mut self.outbox,
            &mut self.local,
            &mut self.match_out,
            origin,
            m.principal,
            body,
            &mut sink,
        );
        self.drain_local(&mut sink);
        self.next_event_seq = seq;
        Delivery::Applied
    }

    /// Where a message for something this shard gave away in a split goes instead (and
    /// forgets a relayed transfer answer), or `None` if it is applied here.
    fn forward_to(&mut self, body: &MessageBody) -> Option<ShardId> {
        let account = match body {
            MessageBody::Settle { account, .. }
            | MessageBody::Release { account, .. }
            | MessageBody::Replace { account, .. }
            | MessageBody::FeeCredit { account, .. } => *account,
            MessageBody::TransferCredit { credit, .. } => *credit,
            MessageBody::TransferCreditResult { id, .. } => {
                if self.relay.is_empty() {
                    return None;
                }
                return self.relay.remove(id);
            }
            MessageBody::OrderHeld(t) => {
                let spec = self.markets.get(&t.market)?;
                let owner = self.placement.market_shard(t.market, spec.shard);
                return (owner != self.shard).then_some(owner);
            }
            MessageBody::Forwarded { .. } => unreachable!("forwarded messages are not nested"),
        };
        let owner = self.placement.account_shard(account);
        (owner != self.shard).then_some(owner)
    }

    /// Splits this shard: the accounts it owns that `split` names (with their balances,
    /// holds, open pending and in-flight transfers) and the markets it names (with their
    /// books) leave it for the new shard `split.child`, whose initial state is returned.
    /// Messages that still arrive here for what moved are forwarded to the child in
    /// arrival order, so each channel's order holds end to end. The value that moved counts as sent here
    /// and received there, so both shards' flow totals stay exact.
    ///
    /// Refused, changing nothing but the input count and the clock, if `split.parent` is
    /// not this shard, a market it names has no book here, or the placement refuses it.
    pub fn split(
        &mut self,
        timestamp: Timestamp,
        split: Split,
        out: &mut Vec<EventRecord>,
    ) -> Result<Engine, SplitError> {
        let ts = self.begin(timestamp, out);
        if split.parent != self.shard {
            return Err(SplitError::WrongParent(split.parent));
        }
        // Before the markets: a split applied already (its markets gone with it) is
        // answered as such, whatever it names.
        if self.placement.knows(split.child) {
            return Err(SplitError::ChildExists(split.child));
        }
        if let Some(m) = split.markets.iter().find(|m| !self.books.contains_key(m)) {
            return Err(SplitError::MarketNotHere(*m));
        }
        let mut placement = self.placement.clone();
        placement.split(split.clone())?;
        let child_ledger = self
            .ledger
            .split_off(|a| placement.account_shard(a) == split.child);
        for id in child_ledger.inflight().keys() {
            let fresh = self.relay.insert(*id, split.child).is_none();
            assert!(fresh, "transfer {id} in flight twice");
        }
        self.placement = placement.clone();
        self.ledger
            .set_supply_max(self.placement.supply_max(self.shard));
        let event = Event::ShardSplit {
            child: split.child,
            modulus: split.modulus,
            residue: split.residue,
            accounts: child_ledger.len() as u64,
        };
        self.system_events(ts, out, |_, sink| sink.emit(event));
        let mut child = Engine::new(split.child, placement);
        child.assets = self.assets.clone();
        child.markets = self.markets.clone();
        for m in &split.markets {
            let book = self.books.remove(m).expect("checked above");
            child.books.insert(*m, book);
        }
        child.ledger = child_ledger;
        child
            .ledger
            .set_supply_max(child.placement.supply_max(split.child));
        child.dedupe = self.dedupe.clone();
        child.last_timestamp = ts;
        child.origin = Some(SplitOrigin {
            parent: self.shard,
            index: self.inputs,
        });
        for e in [&*self, &child] {
            if let Err(v) = e.validate() {
                panic!("shard {} after split: {v}", e.shard);
            }
        }
        Ok(child)
    }

    /// Applies a client command.
    pub fn execute(&mut self, meta: Meta, cmd: &Command, out: &mut Vec<EventRecord>) -> Outcome {
        let ts = self.begin(meta.timestamp, out);
        let mut seq = self.next_event_seq;
        let mut sink = EventSink::new(out, self.shard, self.inputs, ts, meta.principal, &mut seq);
        let outcome = self.execute_in(meta, cmd, &mut sink);
        self.next_event_seq = seq;
        outcome
    }

    fn execute_in(&mut self, meta: Meta, cmd: &Command, sink: &mut EventSink) -> Outcome {
        // Catalog commands are idempotent by content: the same definition again is a
        // duplicate (a retry, or a node re-sending it to every shard), not an error.
        let already = match cmd {
            Command::CreateAsset(a) => self.assets.get(&a.id) == Some(a),
            Command::CreateMarket(m) => self.markets.get(&m.id) == Some(m),
            _ => false,
        };
        if already {
            return Outcome {
                result: Ok(Accepted::Done),
                duplicate: true,
            };
        }
        let key = dedupe_key(cmd);
        if let Some(key) = key {
            if let Some(e) = self.dedupe.get(&key) {
                if e.fingerprint == fingerprint(cmd) {
                    return Outcome {
                        result: e.outcome.result,
                        duplicate: true,
                    };
                }
                let code = match key.ns {
                    NS_CLIENT_ORDER => RejectCode::DuplicateClientOrderId,
                    _ => RejectCode::DuplicateId,
                };
                sink.emit(Event::Rejected {
                    subject: subject(cmd),
                    code,
                });
                return Outcome::rejected(code);
            }
            // A transfer that moved away in a split keeps its id in use here until its
            // answer is relayed, so an answer always names one transfer.
            if key.ns == NS_TRANSFER
                && !self.relay.is_empty()
                && self.relay.contains_key(&TransferId(key.a))
            {
                let code = RejectCode::DuplicateId;
                sink.emit(Event::Rejected {
                    subject: subject(cmd),
                    code,
                });
                return Outcome::rejected(code);
            }
        }
        if let Command::LinkedTransfers(batch) = cmd {
            if let Some(index) = self.linked_duplicate(batch) {
                let code = RejectCode::DuplicateId;
                sink.emit(Event::Rejected {
                    subject: subject(cmd),
                    code,
                });
                return Outcome {
                    result: Err(Rejection { code, index }),
                    duplicate: false,
                };
            }
        }
        let result = Self::command(
            &mut self.ledger,
            &mut self.books,
            &mut self.assets,
            &mut self.markets,
            &self.placement,
            self.shard,
            &mut self.order_counter,
            &mut self.outbox,
            &mut self.local,
            meta,
            cmd,
            sink,
        );
        let outcome = match result {
            Ok(a) => Outcome::ok(a),
            Err(mut rej) => {
                if let (
                    RejectCode::UnknownTransfer,
                    Command::PostPending { id, .. } | Command::VoidPending { id, .. },
                ) = (rej.code, cmd)
                {
                    // The pending transfer existed (its id is still remembered) but was
                    // posted, voided or expired, or is being posted across shards.
                    let created = DedupeKey {
                        ns: NS_TRANSFER,
                        a: id.0,
                        b: 0,
                    };
                    if self.dedupe.contains(&created) && self.ledger.pending_transfer(*id).is_err()
                    {
                        rej.code = RejectCode::PendingNotOpen;
                    }
                }
                sink.emit(Event::Rejected {
                    subject: subject(cmd),
                    code: rej.code,
                });
                Outcome {
                    result: Err(rej),
                    duplicate: false,
                }
            }
        };
        self.drain_local(sink);
        if let (Some(key), Ok(_)) = (key, outcome.result) {
            self.remember(key, fingerprint(cmd), outcome);
            if let Command::LinkedTransfers(batch) = cmd {
                // Every member id is taken by the batch.
                for t in batch.iter().skip(1) {
                    let k = DedupeKey {
                        ns: NS_TRANSFER,
                        a: t.id.0,
                        b: 0,
                    };
                    if !self.dedupe.contains(&k) {
                        self.remember(k, fingerprint(cmd), outcome);
                    }
                }
            }
        }
        outcome
    }

    /// Index of the first member of a linked batch (after the first, which is the batch's
    /// own key) whose id is already taken, or repeated inside the batch.
    fn linked_duplicate(&self, batch: &[TransferSpec]) -> Option<u32> {
        let mut seen = std::collections::BTreeSet::new();
        for (n, t) in batch.iter().enumerate() {
            let taken = n > 0
                && self.dedupe.contains(&DedupeKey {
                    ns: NS_TRANSFER,
                    a: t.id.0,
                    b: 0,
                });
            if taken || !seen.insert(t.id) {
                return Some(n as u32);
            }
        }
        None
    }

    fn remember(&mut self, key: DedupeKey, fingerprint: u64, outcome: Outcome) {
        self.dedupe.insert(
            key,
            DedupeEntry {
                fingerprint,
                outcome,
            },
        );
    }

    /// Delivers messages addressed to this shard itself, in order, within the same input.
    fn drain_local(&mut self, sink: &mut EventSink) {
        let original = sink.principal();
        while let Some((principal, body)) = self.local.pop_front() {
            sink.set_principal(principal);
            Self::on_message(
                &mut self.ledger,
                &mut self.books,
                &self.markets,
                &self.placement,
                self.shard,
                &mut self.order_counter,
                &mut self.outbox,
                &mut self.local,
                &mut self.match_out,
                self.shard,
                principal,
                &body,
                sink,
            );
        }
        sink.set_principal(original);
    }

    // The handlers below take the engine's fields separately so that the borrow checker
    // lets them use the ledger, the books and the outbox at the same time.

    #[allow(clippy::too_many_arguments)]
    fn command(
        ledger: &mut Ledger,
        books: &mut BTreeMap<MarketId, Book>,
        assets: &mut BTreeMap<AssetId, Asset>,
        markets: &mut BTreeMap<MarketId, MarketSpec>,
        placement: &Placement,
        shard: ShardId,
        order_counter: &mut u64,
        outbox: &mut BTreeMap<ShardId, Outbox>,
        local: &mut VecDeque<(Principal, MessageBody)>,
        meta: Meta,
        cmd: &Command,
        sink: &mut EventSink,
    ) -> Result<Accepted, Rejection> {
        let rej = |code| Rejection { code, index: 0 };
        let p = meta.principal;
        let operator = meta.authority == Authority::Operator;
        if meta.authority == Authority::ReadOnly {
            return Err(rej(RejectCode::NotOwner));
        }
        let mut out = Outgoing {
            shard,
            outbox,
            local,
        };
        // Routing and authorization.
        let own_account = |ledger: &Ledger, a: AccountId| -> R {
            if placement.account_shard(a) != shard {
                return Err(RejectCode::WrongShard);
            }
            if !operator && ledger.owner(a)? != p {
                return Err(RejectCode::NotOwner);
            }
            Ok(())
        };
        let own_market = |markets: &BTreeMap<MarketId, MarketSpec>, m: MarketId| -> R {
            let spec = markets.get(&m).ok_or(RejectCode::UnknownMarket)?;
            if placement.market_shard(m, spec.shard) != shard {
                return Err(RejectCode::WrongShard);
            }
            Ok(())
        };
        let operator_only = || {
            if operator {
                Ok(())
            } else {
                Err(RejectCode::NotOwner)
            }
        };
        match cmd {
            Command::CreateAsset(a) => {
                operator_only().map_err(rej)?;
                if a.code.is_empty()
                    || a.code.len() > ASSET_CODE_LEN_MAX
                    || !a
                        .code
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                    || a.scale > ASSET_SCALE_MAX
                    || a.id.0 == 0
                {
                    return Err(rej(RejectCode::InvalidAsset));
                }
                if assets.contains_key(&a.id) || assets.values().any(|x| x.code == a.code) {
                    return Err(rej(RejectCode::DuplicateId));
                }
                assets.insert(a.id, a.clone());
                ledger.add_asset(a.id);
                sink.emit(Event::AssetCreated(a.clone()));
                Ok(Accepted::Done)
            }
            Command::CreateMarket(m) => {
                operator_only().map_err(rej)?;
                m.validate().map_err(rej)?;
                // Only on a base shard: every shard knows those, whatever splits it has seen,
                // so all of them agree on the catalog.
                if m.id.0 == 0 || m.shard.0 >= placement.base_shard_count() {
                    return Err(rej(RejectCode::InvalidMarket));
                }
                if !assets.contains_key(&m.base) || !assets.contains_key(&m.quote) {
                    return Err(rej(RejectCode::UnknownAsset));
                }
                if markets.contains_key(&m.id) {
                    return Err(rej(RejectCode::DuplicateId));
                }
                markets.insert(m.id, m.clone());
                if m.shard == shard {
                    books.insert(m.id, Book::new(m.clone()));
                }
                sink.emit(Event::MarketCreated(m.clone()));
                Ok(Accepted::Done)
            }
            Command::OpenAccount { account, owner } => {
                if placement.account_shard(*account) != shard {
                    return Err(rej(RejectCode::WrongShard));
                }
                if !operator && *owner != p {
                    return Err(rej(RejectCode::NotOwner));
                }
                ledger.open_account(*account, *owner, sink).map_err(rej)?;
                Ok(Accepted::Done)
            }
            Command::Deposit {
                id,
                account,
                asset,
                amount,
            } => {
                operator_only().map_err(rej)?;
                own_account(ledger, *account).map_err(rej)?;
                ledger
                    .deposit(*id, *account, *asset, *amount, sink)
                    .map_err(rej)?;
                Ok(Accepted::Done)
            }
            Command::Withdraw {
                id,
                account,
                asset,
                amount,
            } => {
                own_account(ledger, *account).map_err(rej)?;
                ledger
                    .withdraw(*id, *account, *asset, *amount, sink)
                    .map_err(rej)?;
                Ok(Accepted::Done)
            }
            Command::Transfer(t) => {
                own_account(ledger, t.debit).map_err(rej)?;
                let to = placement.account_shard(t.credit);
                if to == shard {
                    ledger.transfer_local(t, sink).map_err(rej)?;
                    Ok(Accepted::Done)
                } else {
                    let amount = ledger.begin_remote(t, to, sink).map_err(rej)?;
                    out.send(
                        to,
                        p,
                        MessageBody::TransferCredit {
                            id: t.id,
                            debit: t.debit,
                            credit: t.credit,
                            asset: t.asset,
                            amount,
                        },
                    );
                    Ok(Accepted::InFlight)
                }
            }
            Command::LinkedTransfers(batch) => {
                for (n, t) in batch.iter().enumerate() {
                    let index = n as u32;
                    own_account(ledger, t.debit).map_err(|code| Rejection { code, index })?;
                    if placement.account_shard(t.credit) != shard {
                        return Err(Rejection {
                            code: RejectCode::LinkedCrossShard,
                            index,
                        });
                    }
                }
                ledger
                    .transfer_linked(batch, sink)
                    .map_err(|(index, code)| Rejection { code, index })?;
                Ok(Accepted::Done)
            }
            Command::CreatePending { spec, timeout_ms } => {
                own_account(ledger, spec.debit).map_err(rej)?;
                ledger
                    .create_pending(spec, *timeout_ms, sink)
                    .map_err(rej)?;
                Ok(Accepted::Done)
            }
            Command::PostPending { debit, id, amount } => {
                own_account(ledger, *debit).map_err(rej)?;
                let pend = ledger.pending_transfer(*id).map_err(rej)?;
                if pend.debit != *debit {
                    return Err(rej(RejectCode::UnknownTransfer));
                }
                let to = placement.account_shard(pend.credit);
                if to == shard {
                    ledger.post_pending(*id, *amount, None, sink).map_err(rej)?;
                    Ok(Accepted::Done)
                } else {
                    let (credit, asset) = (pend.credit, pend.asset);
                    let posted = ledger
                        .post_pending(*id, *amount, Some(to), sink)
                        .map_err(rej)?;
                    out.send(
                        to,
                        p,
                        MessageBody::TransferCredit {
                            id: *id,
                            debit: *debit,
                            credit,
                            asset,
                            amount: posted,
                        },
                    );
                    Ok(Accepted::InFlight)
                }
            }
            Command::VoidPending { debit, id } => {
                own_account(ledger, *debit).map_err(rej)?;
                if ledger.pending_transfer(*id).map_err(rej)?.debit != *debit {
                    return Err(rej(RejectCode::UnknownTransfer));
                }
                ledger.void_pending(*id, false, sink).map_err(rej)?;
                Ok(Accepted::Done)
            }
            Command::FreezeAccount { account } => {
                operator_only().map_err(rej)?;
                own_account(ledger, *account).map_err(rej)?;
                ledger.freeze(*account, sink).map_err(rej)?;
                Ok(Accepted::Done)
            }
            Command::UnfreezeAccount { account } => {
                operator_only().map_err(rej)?;
                own_account(ledger, *account).map_err(rej)?;
                ledger.unfreeze(*account, sink).map_err(rej)?;
                Ok(Accepted::Done)
            }
            Command::CloseAccount { account } => {
                own_account(ledger, *account).map_err(rej)?;
                ledger.close(*account, sink).map_err(rej)?;
                Ok(Accepted::Done)
            }
            Command::PlaceOrder(o) => {
                own_account(ledger, o.account).map_err(rej)?;
                let spec = markets
                    .get(&o.market)
                    .ok_or(rej(RejectCode::UnknownMarket))?;
                let id = Self::submit_order(
                    ledger,
                    placement,
                    spec,
                    shard,
                    order_counter,
                    &mut out,
                    p,
                    o,
                    None,
                    sink,
                )
                .map_err(rej)?;
                Ok(Accepted::Order(id))
            }
            Command::CancelOrder { market, order } => {
                own_market(markets, *market).map_err(rej)?;
                let book = books.get_mut(market).expect("owned market has a book");
                let by = if operator { Principal::SYSTEM } else { p };
                let side = book.order(*order).map(|o| o.side);
                let closed = book.cancel(*order, by).map_err(rej)?;
                let side = side.expect("cancelled order existed");
                Self::close_order(placement, book.spec(), &mut out, p, side, &closed, sink);
                Ok(Accepted::Done)
            }
            Command::AmendOrder {
                market,
                order,
                price,
                qty,
            } => {
                own_market(markets, *market).map_err(rej)?;
                let book = books.get_mut(market).expect("owned market has a book");
                let by = if operator { Principal::SYSTEM } else { p };
                let resting = book.order(*order).copied();
                let side = resting.map(|o| o.side);
                match book.amend(*order, by, *price, *qty).map_err(rej)? {
                    AmendResult::Reduced { account, released } => {
                        let side = side.expect("amended order existed");
                        sink.emit(Event::OrderAmended {
                            order: *order,
                            market: *market,
                            price: *price,
                            qty: *qty,
                        });
                        if !released.is_zero() {
                            out.send(
                                placement.account_shard(account),
                                p,
                                MessageBody::Release {
                                    order: *order,
                                    account,
                                    asset: held_asset(book.spec(), side),
                                    amount: released,
                                    done: false,
                                },
                            );
                        }
                    }
                    AmendResult::Replaced(closed) => {
                        let o = resting.expect("amended order existed");
                        sink.emit(Event::OrderCancelled {
                            order: closed.order,
                            market: *market,
                            remaining: closed.remaining,
                            reason: closed.reason,
                        });
                        out.send(
                            placement.account_shard(closed.account),
                            p,
                            MessageBody::Replace {
                                old: *order,
                                account: closed.account,
                                market: *market,
                                price: *price,
                                qty: *qty,
                                side: o.side,
                                stp: o.stp,
                                post_only: o.post_only,
                                released: closed.hold_left,
                            },
                        );
                    }
                }
                Ok(Accepted::Done)
            }
            Command::HaltMarket { market } => {
                operator_only().map_err(rej)?;
                own_market(markets, *market).map_err(rej)?;
                books
                    .get_mut(market)
                    .expect("owned market has a book")
                    .halt()
                    .map_err(rej)?;
                sink.emit(Event::MarketHalted { market: *market });
                Ok(Accepted::Done)
            }
            Command::ResumeMarket { market } => {
                operator_only().map_err(rej)?;
                own_market(markets, *market).map_err(rej)?;
                books
                    .get_mut(market)
                    .expect("owned market has a book")
                    .resume()
                    .map_err(rej)?;
                sink.emit(Event::MarketResumed { market: *market });
                Ok(Accepted::Done)
            }
        }
    }

    /// Account side of a new order: checks, holds funds, sends the ticket to the market.
    #[allow(clippy::too_many_arguments)]
    fn submit_order(
        ledger: &mut Ledger,
        placement: &Placement,
        spec: &MarketSpec,
        shard: ShardId,
        order_counter: &mut u64,
        out: &mut Outgoing,
        principal: Principal,
        o: &NewOrder,
        replaces: Option<OrderId>,
        sink: &mut EventSink,
    ) -> R<OrderId> {
        ledger.check_active(o.account)?;
        tradelog_matching::check_new_order(spec, o.side, o.order_type, o.tif, o.price, o.qty)?;
        if o.post_only && (o.order_type == OrderType::Market || o.tif != TimeInForce::Gtc) {
            return Err(RejectCode::InvalidTimeInForce);
        }
        let (asset, hold) = spec.hold_for(o.side, o.qty, o.price)?;
        let other = if asset == spec.base {
            spec.quote
        } else {
            spec.base
        };
        let id = OrderId::new(shard, *order_counter + 1);
        ledger.hold_order(id, o.account, asset, other, hold, o.client_order_id, sink)?;
        *order_counter += 1;
        sink.emit(Event::OrderSubmitted {
            order: id,
            account: o.account,
            market: o.market,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            price: o.price,
            qty: o.qty,
            client_order_id: o.client_order_id,
            replaces,
        });
        let owner = ledger.owner(o.account).expect("checked active");
        out.send(
            placement.market_shard(spec.id, spec.shard),
            principal,
            MessageBody::OrderHeld(OrderTicket {
                order: id,
                account: o.account,
                owner,
                market: o.market,
                side: o.side,
                order_type: o.order_type,
                tif: o.tif,
                price: o.price,
                qty: o.qty,
                post_only: o.post_only,
                stp: o.stp,
                hold,
                client_order_id: o.client_order_id,
            }),
        );
        Ok(id)
    }

    /// Market side: an order left the book unfilled; tell its account to release the rest.
    fn close_order(
        placement: &Placement,
        spec: &MarketSpec,
        out: &mut Outgoing,
        principal: Principal,
        side: Side,
        c: &Closed,
        sink: &mut EventSink,
    ) {
        sink.emit(Event::OrderCancelled {
            order: c.order,
            market: spec.id,
            remaining: c.remaining,
            reason: c.reason,
        });
        out.send(
            placement.account_shard(c.account),
            principal,
            MessageBody::Release {
                order: c.order,
                account: c.account,
                asset: held_asset(spec, side),
                amount: c.hold_left,
                done: true,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_message(
        ledger: &mut Ledger,
        books: &mut BTreeMap<MarketId, Book>,
        markets: &BTreeMap<MarketId, MarketSpec>,
        placement: &Placement,
        shard: ShardId,
        order_counter: &mut u64,
        outbox: &mut BTreeMap<ShardId, Outbox>,
        local: &mut VecDeque<(Principal, MessageBody)>,
        match_out: &mut MatchOutput,
        from: ShardId,
        principal: Principal,
        body: &MessageBody,
        sink: &mut EventSink,
    ) {
        let mut out = Outgoing {
            shard,
            outbox,
            local,
        };
        match body {
            MessageBody::OrderHeld(t) => {
                let Some(book) = books.get_mut(&t.market) else {
                    // The market is not here (moved or misrouted): refuse, release the hold.
                    let spec = markets.get(&t.market).expect("ticket for a catalog market");
                    sink.emit(Event::OrderRejected {
                        order: t.order,
                        market: t.market,
                        code: RejectCode::WrongShard,
                    });
                    out.send(
                        from,
                        principal,
                        MessageBody::Release {
                            order: t.order,
                            account: t.account,
                            asset: held_asset(spec, t.side),
                            amount: t.hold,
                            done: true,
                        },
                    );
                    return;
                };
                Self::match_order(placement, book, &mut out, principal, t, match_out, sink);
            }
            MessageBody::Settle {
                order,
                account,
                paid_asset,
                paid,
                received_asset,
                received,
                fee,
            } => ledger.settle(
                *order,
                *account,
                *paid_asset,
                *paid,
                *received_asset,
                *received,
                *fee,
                sink,
            ),
            MessageBody::Release {
                order,
                account,
                asset,
                amount,
                done,
            } => ledger.release(*order, *account, *asset, *amount, *done, sink),
            MessageBody::Replace {
                old,
                account,
                market,
                price,
                qty,
                side,
                stp,
                post_only,
                released,
            } => {
                let spec = markets.get(market).expect("replace for a catalog market");
                let client_order_id = ledger
                    .order_hold(*old)
                    .expect("replaced order has a hold")
                    .client_order_id;
                let asset = held_asset(spec, *side);
                ledger.release(*old, *account, asset, *released, true, sink);
                let o = NewOrder {
                    account: *account,
                    market: *market,
                    side: *side,
                    order_type: OrderType::Limit,
                    tif: TimeInForce::Gtc,
                    price: *price,
                    qty: *qty,
                    post_only: *post_only,
                    client_order_id,
                    stp: *stp,
                };
                if let Err(code) = Self::submit_order(
                    ledger,
                    placement,
                    spec,
                    shard,
                    order_counter,
                    &mut out,
                    principal,
                    &o,
                    Some(*old),
                    sink,
                ) {
                    sink.emit(Event::Rejected {
                        subject: Subject::Order(*old),
                        code,
                    });
                }
            }
            MessageBody::FeeCredit {
                market,
                account,
                asset,
                amount,
            } => ledger.credit_fee(*market, *account, *asset, *amount, sink),
            MessageBody::TransferCredit {
                id,
                debit,
                credit,
                asset,
                amount,
            } => {
                let result =
                    ledger.credit_remote(*id, *debit, *credit, *asset, *amount, from, sink);
                if let Err(code) = result {
                    sink.emit(Event::Rejected {
                        subject: Subject::Transfer(*id),
                        code,
                    });
                }
                out.send(
                    from,
                    principal,
                    MessageBody::TransferCreditResult { id: *id, result },
                );
            }
            MessageBody::TransferCreditResult { id, result } => {
                ledger.finish_remote(*id, *result, sink)
            }
            MessageBody::Forwarded { .. } => {
                unreachable!("a forwarded message is unwrapped when delivered")
            }
        }
    }

    /// Market side of a new order: match, then settle every fill and close what is done.
    fn match_order(
        placement: &Placement,
        book: &mut Book,
        out: &mut Outgoing,
        principal: Principal,
        t: &OrderTicket,
        mo: &mut MatchOutput,
        sink: &mut EventSink,
    ) {
        let market = t.market;
        if let Err(code) = book.place(t, mo) {
            sink.emit(Event::OrderRejected {
                order: t.order,
                market,
                code,
            });
            out.send(
                placement.account_shard(t.account),
                principal,
                MessageBody::Release {
                    order: t.order,
                    account: t.account,
                    asset: held_asset(book.spec(), t.side),
                    amount: t.hold,
                    done: true,
                },
            );
            return;
        }
        sink.emit(Event::OrderAccepted {
            order: t.order,
            market,
            account: t.account,
            side: t.side,
            price: t.price,
            qty: t.qty,
        });
        let spec = book.spec();
        let mut fees = Amount::ZERO;
        for ev in &mo.events {
            match ev {
                MatchEvent::Fill(f) => {
                    sink.emit(Event::Trade {
                        market,
                        price: f.price,
                        qty: f.qty,
                        taker_side: f.taker_side,
                        taker: f.taker.order,
                        maker: f.maker.order,
                        taker_account: f.taker.account,
                        maker_account: f.maker.account,
                        taker_fee: f.taker.fee,
                        maker_fee: f.maker.fee,
                    });
                    fees = fees
                        .checked_add(f.taker.fee)
                        .and_then(|x| x.checked_add(f.maker.fee))
                        .expect("fees bounded by notional");
                    for leg in [&f.taker, &f.maker] {
                        out.send(
                            placement.account_shard(leg.account),
                            principal,
                            MessageBody::Settle {
                                order: leg.order,
                                account: leg.account,
                                paid_asset: leg.paid_asset,
                                paid: leg.paid,
                                received_asset: leg.received_asset,
                                received: leg.received,
                                fee: leg.fee,
                            },
                        );
                    }
                    if f.maker_done {
                        sink.emit(Event::OrderFilled {
                            order: f.maker.order,
                            market,
                        });
                        out.send(
                            placement.account_shard(f.maker.account),
                            principal,
                            MessageBody::Release {
                                order: f.maker.order,
                                account: f.maker.account,
                                asset: f.maker.paid_asset,
                                amount: f.maker_hold_left,
                                done: true,
                            },
                        );
                    }
                }
                MatchEvent::MakerCancelled(c) => {
                    Self::close_order(placement, spec, out, principal, t.side.opposite(), c, sink);
                }
            }
        }
        let held = held_asset(spec, t.side);
        let to = placement.account_shard(t.account);
        match mo.end.expect("place sets the end") {
            TakerEnd::Rested { released, .. } => {
                if !released.is_zero() {
                    out.send(
                        to,
                        principal,
                        MessageBody::Release {
                            order: t.order,
                            account: t.account,
                            asset: held,
                            amount: released,
                            done: false,
                        },
                    );
                }
            }
            TakerEnd::Filled { hold_left } => {
                sink.emit(Event::OrderFilled {
                    order: t.order,
                    market,
                });
                out.send(
                    to,
                    principal,
                    MessageBody::Release {
                        order: t.order,
                        account: t.account,
                        asset: held,
                        amount: hold_left,
                        done: true,
                    },
                );
            }
            TakerEnd::Cancelled(c) => {
                Self::close_order(placement, spec, out, principal, t.side, &c, sink);
            }
        }
        if !fees.is_zero() {
            out.send(
                placement.account_shard(spec.fee_account),
                principal,
                MessageBody::FeeCredit {
                    market,
                    account: spec.fee_account,
                    asset: spec.quote,
                    amount: fees,
                },
            );
        }
    }

    // ----- invariants ------------------------------------------------------------------

    /// Checks every invariant of this shard. Tests call it after every input.
    pub fn validate(&self) -> Result<(), Violation> {
        self.ledger.validate()?;
        for (id, b) in &self.books {
            b.validate()?;
            if self.markets.get(id) != Some(b.spec())
                || self.placement.market_shard(*id, b.spec().shard) != self.shard
            {
                return Err(Violation(format!("book {id} does not match the catalog")));
            }
        }
        for (id, m) in &self.markets {
            if self.placement.market_shard(*id, m.shard) == self.shard
                && !self.books.contains_key(id)
            {
                return Err(Violation(format!("owned market {id} has no book")));
            }
        }
        for a in self.ledger.accounts() {
            if self.placement.account_shard(a.id) != self.shard {
                return Err(Violation(format!("account {} is not ours", a.id)));
            }
        }
        for (to, o) in &self.outbox {
            let first = o.next_seq + 1 - o.unacked.len() as u64;
            for (expect, m) in (first..).zip(o.unacked.iter()) {
                if m.seq != expect || m.to != *to || m.from != self.shard {
                    return Err(Violation(format!("outbox to {to} out of order")));
                }
            }
        }
        if !self.local.is_empty() {
            return Err(Violation("local queue not drained".into()));
        }
        Ok(())
    }
}

/// The asset an order holds: quote for buys, base for sells.
pub fn held_asset(spec: &MarketSpec, side: Side) -> AssetId {
    match side {
        Side::Buy => spec.quote,
        Side::Sell => spec.base,
    }
}

/// Messages leaving the current input.
struct Outgoing<'a> {
    shard: ShardId,
    outbox: &'a mut BTreeMap<ShardId, Outbox>,
    local: &'a mut VecDeque<(Principal, MessageBody)>,
}

impl Outgoing<'_> {
    fn send(&mut self, to: ShardId, principal: Principal, body: MessageBody) {
        if to == self.shard {
            self.local.push_back((principal, body));
            return;
        }
        let o = self.outbox.entry(to).or_default();
        o.next_seq += 1;
        o.unacked.push_back(Message {
            from: self.shard,
            to,
            seq: o.next_seq,
            principal,
            body,
        });
    }
}

fn dedupe_key(cmd: &Command) -> Option<DedupeKey> {
    let t = |id: TransferId| {
        Some(DedupeKey {
            ns: NS_TRANSFER,
            a: id.0,
            b: 0,
        })
    };
    match cmd {
        Command::Deposit { id, .. } | Command::Withdraw { id, .. } => t(*id),
        Command::Transfer(s) => t(s.id),
        Command::CreatePending { spec, .. } => t(spec.id),
        Command::LinkedTransfers(b) => b.first().and_then(|s| t(s.id)),
        Command::PlaceOrder(o) if o.client_order_id != 0 => Some(DedupeKey {
            ns: NS_CLIENT_ORDER,
            a: o.account.0,
            b: o.client_order_id,
        }),
        _ => None,
    }
}

fn subject(cmd: &Command) -> Subject {
    match cmd {
        Command::CreateAsset(a) => Subject::Asset(a.id),
        Command::CreateMarket(m) => Subject::Market(m.id),
        Command::OpenAccount { account, .. }
        | Command::FreezeAccount { account }
        | Command::UnfreezeAccount { account }
        | Command::CloseAccount { account } => Subject::Account(*account),
        Command::Deposit { id, .. } | Command::Withdraw { id, .. } => Subject::Transfer(*id),
        Command::Transfer(t) => Subject::Transfer(t.id),
        Command::LinkedTransfers(b) => {
            Subject::Transfer(b.first().map(|t| t.id).unwrap_or_default())
        }
        Command::CreatePending { spec, .. } => Subject::Transfer(spec.id),
        Command::PostPending { id, .. } | Command::VoidPending { id, .. } => Subject::Transfer(*id),
        Command::PlaceOrder(o) => Subject::ClientOrder {
            account: o.account,
            client_order_id: o.client_order_id,
        },
        Command::CancelOrder { order, .. } | Command::AmendOrder { order, .. } => {
            Subject::Order(*order)
        }
        Command::HaltMarket { market } | Command::ResumeMarket { market } => {
            Subject::Market(*market)
        }
    }
}

#[cfg(test)]
mod tests;
