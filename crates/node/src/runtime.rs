//! A node: every shard of the cluster embedded in one process, each on its own thread with
//! its own durable log, delivering cross-shard messages to each other.
//!
//! Each shard thread loops: wait for work, take up to `batch_inputs_max` inputs (messages
//! and acks from other shards first, then client commands), append them to the shard's log
//! with one fsync, apply them, answer every client, publish the events, forward new outbox
//! messages to their destination shards and acknowledge the messages it applied. Client
//! queues are bounded: a full queue answers `Overloaded` at once instead of growing.
//!
//! Cross-shard messages are delivered as inputs of the destination's log, deduplicated by
//! the engine (channel sequence numbers), and acknowledged with an input on the source's
//! log; after a restart every unacknowledged message is sent again. No coordinator holds
//! state that a crash could lose.

use crate::host::{catalog_replies, EngineRead, Markets, ShardHost};
use crate::{DurableShard, NodeError, ShardConfig};
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender, TrySendError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tradelog_domain::*;
use tradelog_engine::routing::{route, Route};
use tradelog_engine::{Applied, Engine, Input, Placement};
use tradelog_storage::FileLogConfig;

/// Default bound of each shard's client queue.
pub const QUEUE_LEN_MAX: usize = 16_384;
/// Default largest group commit (inputs per fsync).
pub const BATCH_INPUTS_MAX: usize = 4_096;
/// Default bound of each event subscriber's queue (batches of events).
pub const SUBSCRIBER_QUEUE_LEN_MAX: usize = 1_024;

/// Settings of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where the shards live (`DIR/shard-{n}`).
    pub data_dir: PathBuf,
    /// Number of shards (all embedded in this node).
    pub shards: u32,
    /// Bound of each shard's client queue.
    pub queue_len_max: usize,
    /// Largest number of inputs in one group commit.
    pub batch_inputs_max: usize,
    /// Snapshot after this many log records (0 = never).
    pub snapshot_every_records: u64,
    /// And no sooner than this many ms after the last one began (0: no floor).
    pub snapshot_interval_min_ms: u64,
    /// Log file settings.
    pub log: FileLogConfig,
}

impl NodeConfig {
    /// Defaults for `shards` shards in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>, shards: u32) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            shards,
            queue_len_max: QUEUE_LEN_MAX,
            batch_inputs_max: BATCH_INPUTS_MAX,
            snapshot_every_records: 100_000,
            snapshot_interval_min_ms: crate::SNAPSHOT_INTERVAL_MIN_MS,
            log: FileLogConfig::default(),
        }
    }
}

/// The answer to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandReply {
    /// Accepted or rejected (for catalog commands: shard 0's answer, after every shard
    /// applied it).
    pub outcome: Outcome,
    /// The events the command caused on the shard that received it (work it started on
    /// other shards shows up in the event stream).
    pub events: Vec<EventRecord>,
}

/// Why a command got no answer from the state machine.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The shard's queue is full: retry later (with the same idempotency key).
    #[error("shard {0} is overloaded, retry later")]
    Overloaded(ShardId),
    /// The node is shutting down or stopped.
    #[error("node is stopped")]
    Stopped,
    /// The shard failed (its log could not be written); nothing more is accepted.
    #[error("shard failed: {0}")]
    Failed(String),
    /// The shard cannot commit right now (replicated: no majority of its replicas is
    /// reachable, or this replica is behind); nothing was applied. Retry later.
    #[error("shard unavailable: {0}")]
    Unavailable(String),
    /// The command may or may not have been applied (replicated: leadership changed or a
    /// connection broke while it was in flight). Retry with the same idempotency key.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// This node holds no replica of the shard, so it cannot answer a read of it: ask a
    /// node that does (the cluster map names them; the client re-routes by itself).
    #[error("this node holds no replica of shard {shard} (cluster map version {map_version}); ask a node that does")]
    WrongNode {
        /// The shard.
        shard: ShardId,
        /// The version of the cluster map this node answered by.
        map_version: u64,
    },
}

/// Callback that receives a command's answer (called on a shard thread; keep it short).
pub type Reply = Box<dyn FnOnce(Result<CommandReply, SubmitError>) + Send>;

/// A read run on a shard thread.
type ReadJob = Box<dyn FnOnce(&DurableShard) + Send>;

enum Job {
    Command {
        meta: Meta,
        command: Command,
        reply: Reply,
    },
    Read(ReadJob),
    Stop,
}

struct ShardHandle {
    client: Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

type Subscribers = Arc<Mutex<Vec<Sender<Arc<[EventRecord]>>>>>;

/// All shards of a cluster in one process.
pub struct Node {
    shards: Vec<ShardHandle>,
    placement: Arc<Placement>,
    markets: Markets,
    subscribers: Subscribers,
    stopped: Arc<AtomicBool>,
}

/// The directory of shard `shard` in a node's data directory: `DATA_DIR/shard-{n}`.
pub fn shard_dir(data_dir: &std::path::Path, shard: ShardId) -> PathBuf {
    data_dir.join(format!("shard-{}", shard.0))
}

/// Leader time: the wall clock in nanoseconds (the engine keeps it monotonic).
pub fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    )
}

/// File in a node's data directory naming the number of shards it was created with.
pub const SHARDS_FILE: &str = "shards";
const SHARDS_MAGIC: [u8; 8] = *b"TLSHARDS";
const SHARDS_VERSION: u32 = 1;

/// Makes sure `dir` holds (or will hold) a node of `shards` shards: reads the shard count
/// the directory was created with (or, for a directory written before the count was
/// recorded, counts its `shard-{n}` directories) and refuses another; records it if new.
/// A replicated node keeps the same file.
pub fn check_shard_count(dir: &std::path::Path, shards: u32) -> Result<(), NodeError> {
    let path = dir.join(SHARDS_FILE);
    let io = |source| NodeError::SnapshotIo {
        path: path.clone(),
        source,
    };
    let damaged = |reason: String| NodeError::BadRecord {
        index: 0,
        reason: format!("{} is damaged: {reason}", path.display()),
    };
    let on_disk = match std::fs::read(&path) {
        Ok(bytes) => {
            let payload = tradelog_codec::open(SHARDS_MAGIC, SHARDS_VERSION, &bytes)
                .map_err(|e| damaged(e.to_string()))?;
            Some(tradelog_codec::decode::<u32>(payload).map_err(|e| damaged(e.to_string()))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut found = 0;
            while dir.join(format!("shard-{found}")).is_dir() {
                found += 1;
            }
            (found > 0).then_some(found)
        }
        Err(e) => return Err(io(e)),
    };
    match on_disk {
        Some(n) if n != shards => Err(NodeError::ShardCountMismatch {
            dir: dir.to_path_buf(),
            on_disk: n,
            configured: shards,
        }),
        Some(_) if path.exists() => Ok(()),
        _ => {
            std::fs::create_dir_all(dir).map_err(io)?;
            let sealed = tradelog_codec::seal(
                SHARDS_MAGIC,
                SHARDS_VERSION,
                &tradelog_codec::encode(&shards),
            );
            crate::write_atomically(dir, SHARDS_FILE, &sealed)?;
            Ok(())
        }
    }
}

impl Node {
    /// Opens (recovering) every shard and starts their threads.
    pub fn open(config: NodeConfig) -> Result<Node, NodeError> {
        check_shard_count(&config.data_dir, config.shards)?;
        let placement = Placement::new(config.shards);
        let mut opened = Vec::new();
        for s in 0..config.shards {
            let (shard, _) = DurableShard::open(ShardConfig {
                dir: shard_dir(&config.data_dir, ShardId(s)),
                shard: ShardId(s),
                placement: placement.clone(),
                snapshot_every_records: config.snapshot_every_records,
                snapshot_interval_min_ms: config.snapshot_interval_min_ms,
                log: config.log.clone(),
                watermark_every_ms: crate::WATERMARK_EVERY_MS,
            })?;
            opened.push(shard);
        }
        let markets = Arc::new(RwLock::new(opened[0].engine().markets().clone()));
        let subscribers: Subscribers = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let channels: Vec<_> = (0..config.shards)
            .map(|_| (bounded::<Job>(config.queue_len_max), unbounded::<Input>()))
            .collect();
        let internal: Vec<Sender<Input>> = channels.iter().map(|(_, (tx, _))| tx.clone()).collect();
        let mut shards = Vec::new();
        for (shard, ((client_tx, client_rx), (_, internal_rx))) in opened.into_iter().zip(channels)
        {
            let worker = Worker {
                shard,
                clients: client_rx,
                internal: internal_rx,
                peers: internal.clone(),
                forwarded: BTreeMap::new(),
                deferred: Vec::new(),
                retry_deferred: false,
                subscribers: subscribers.clone(),
                batch_inputs_max: config.batch_inputs_max.max(1),
                failed: None,
            };
            let name = format!("shard-{}", worker.shard.engine().shard());
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker.run())
                .map_err(|source| NodeError::SnapshotIo {
                    path: config.data_dir.clone(),
                    source,
                })?;
            shards.push(ShardHandle {
                client: client_tx,
                thread: Mutex::new(Some(thread)),
            });
        }
        Ok(Node {
            shards,
            placement: Arc::new(placement),
            markets,
            subscribers,
            stopped,
        })
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The placement.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Submits a command; `reply` is called once it is durable and applied (or refused).
    /// Never blocks: a full queue answers `Overloaded` at once.
    pub fn submit(&self, meta: Meta, command: Command, reply: Reply) {
        if self.stopped.load(Ordering::Acquire) {
            return reply(Err(SubmitError::Stopped));
        }
        let r = {
            let markets = self.markets.read().expect("markets lock");
            route(&command, &self.placement, &markets)
        };
        match r {
            Route::Shard(s) => self.enqueue(s, meta, command, reply),
            Route::All => {
                // Every shard applies catalog commands; answer once all have. They wait for
                // room instead of being refused, so that no shard misses one (they are rare
                // and come from operators).
                let parts = catalog_replies(self.shard_count(), &command, &self.markets, reply);
                for (s, part) in parts.into_iter().enumerate() {
                    let job = Job::Command {
                        meta,
                        command: command.clone(),
                        reply: part,
                    };
                    if let Err(e) = self.shards[s].client.send(job) {
                        if let Job::Command { reply, .. } = e.into_inner() {
                            reply(Err(SubmitError::Stopped));
                        }
                    }
                }
            }
        }
    }

    fn enqueue(&self, s: ShardId, meta: Meta, command: Command, reply: Reply) {
        let job = Job::Command {
            meta,
            command,
            reply,
        };
        match self.shards[s.0 as usize].client.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(Job::Command { reply, .. })) => {
                reply(Err(SubmitError::Overloaded(s)))
            }
            Err(TrySendError::Disconnected(Job::Command { reply, .. })) => {
                reply(Err(SubmitError::Stopped))
            }
            Err(_) => unreachable!("only commands are sent here"),
        }
    }

    /// Submits and waits for the answer.
    pub fn submit_wait(&self, meta: Meta, command: Command) -> Result<CommandReply, SubmitError> {
        let (tx, rx) = bounded(1);
        self.submit(
            meta,
            command,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or(Err(SubmitError::Stopped))
    }

    /// Runs `f` on shard `s`'s state after every write it acknowledged before (a
    /// linearizable read on this node).
    pub fn read<R: Send + 'static>(
        &self,
        s: ShardId,
        f: impl FnOnce(&Engine) -> R + Send + 'static,
    ) -> Result<R, SubmitError> {
        self.inspect(s, move |shard| f(shard.engine()))
    }

    /// Runs `f` on shard `s` itself (its log, snapshotter and state) on the shard's thread,
    /// after every write it acknowledged before.
    pub fn inspect<R: Send + 'static>(
        &self,
        s: ShardId,
        f: impl FnOnce(&DurableShard) -> R + Send + 'static,
    ) -> Result<R, SubmitError> {
        let (tx, rx) = bounded(1);
        let job = Job::Read(Box::new(move |shard| {
            let _ = tx.send(f(shard));
        }));
        self.shards
            .get(s.0 as usize)
            .ok_or(SubmitError::Stopped)?
            .client
            .send(job)
            .map_err(|_| SubmitError::Stopped)?;
        rx.recv().map_err(|_| SubmitError::Stopped)
    }

    /// A copy of every shard's state machine (for checks and audits).
    pub fn engines(&self) -> Result<Vec<Engine>, SubmitError> {
        <Self as ShardHost>::engines(self)
    }

    /// A live feed of every event of every shard, in batches, from now on. A subscriber
    /// that falls `SUBSCRIBER_QUEUE_LEN_MAX` batches behind is dropped (its receiver sees
    /// the channel close) rather than slowing the shards down.
    pub fn subscribe(&self) -> Receiver<Arc<[EventRecord]>> {
        let (tx, rx) = bounded(SUBSCRIBER_QUEUE_LEN_MAX);
        self.subscribers.lock().expect("subscribers lock").push(tx);
        rx
    }

    /// Waits until no shard has a message in flight (or `timeout` passes); true if quiet.
    pub fn wait_quiescent(&self, timeout: Duration) -> bool {
        <Self as ShardHost>::wait_quiescent(self, timeout)
    }

    /// Stops accepting commands, lets every shard finish its current group commit, and
    /// joins the shard threads.
    pub fn shutdown(self) {
        self.stop_threads();
    }

    fn stop_threads(&self) {
        self.stopped.store(true, Ordering::Release);
        for h in &self.shards {
            let _ = h.client.send(Job::Stop);
        }
        for h in &self.shards {
            let thread = h.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
        // No more events: close every subscriber's feed.
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl ShardHost for Node {
    fn shard_count(&self) -> u32 {
        Node::shard_count(self)
    }

    fn queued_commands(&self) -> u64 {
        self.shards.iter().map(|h| h.client.len() as u64).sum()
    }

    fn placement(&self) -> Arc<Placement> {
        self.placement.clone()
    }

    fn submit(&self, meta: Meta, command: Command, reply: Reply) {
        Node::submit(self, meta, command, reply)
    }

    fn read_with(&self, shard: ShardId, f: EngineRead) {
        let Some(h) = self.shards.get(shard.0 as usize) else {
            return f(Err(SubmitError::Stopped));
        };
        // If the shard thread is gone, `f` is dropped with the job: a reader waiting on a
        // channel `f` owns sees it close.
        let _ = h.client.send(Job::Read(Box::new(move |s: &DurableShard| {
            f(Ok(s.engine()))
        })));
    }

    fn subscribe(&self) -> Receiver<Arc<[EventRecord]>> {
        Node::subscribe(self)
    }

    fn stop(&self) {
        self.stop_threads();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

struct Worker {
    shard: DurableShard,
    clients: Receiver<Job>,
    internal: Receiver<Input>,
    peers: Vec<Sender<Input>>,
    /// Highest sequence number forwarded to each destination since start.
    forwarded: BTreeMap<ShardId, u64>,
    /// Messages this shard could not apply yet (`Delivery::Deferred`: its catalog lags the
    /// sender's; and the ones behind them on their channel, `Gap`), tried again with the
    /// next batch, in (source, sequence) order.
    deferred: Vec<Input>,
    /// A batch with commands went by since a message was deferred (the catalog may have
    /// caught up): try the deferred ones even if nothing else arrives.
    retry_deferred: bool,
    subscribers: Subscribers,
    batch_inputs_max: usize,
    failed: Option<String>,
}

impl Worker {
    fn run(mut self) {
        self.forward();
        let mut inputs: Vec<Input> = Vec::new();
        let mut replies: Vec<(usize, Reply)> = Vec::new();
        let mut reads: Vec<ReadJob> = Vec::new();
        let mut stop = false;
        while !stop {
            inputs.clear();
            // Wait for anything, with a timeout so timeouts (pending transfers) fire.
            select! {
                recv(self.internal) -> m => if let Ok(i) = m { inputs.push(i) },
                recv(self.clients) -> j => match j {
                    Ok(j) => stop |= self.take(j, &mut inputs, &mut replies, &mut reads),
                    Err(_) => stop = true,
                },
                default(Duration::from_millis(50)) => {},
            }
            while inputs.len() < self.batch_inputs_max {
                match self.internal.try_recv() {
                    Ok(i) => inputs.push(i),
                    Err(_) => break,
                }
            }
            while !stop && inputs.len() < self.batch_inputs_max {
                match self.clients.try_recv() {
                    Ok(j) => stop |= self.take(j, &mut inputs, &mut replies, &mut reads),
                    Err(_) => break,
                }
            }
            self.shard.record_queue_depth(self.clients.len());
            let t = crate::runtime::now();
            if inputs.is_empty() && self.shard.engine().ledger().has_due_expiry(t) {
                inputs.push(Input::Tick { timestamp: t });
            }
            if !self.deferred.is_empty() && (!inputs.is_empty() || self.retry_deferred) {
                self.retry_deferred = false;
                let mut again = std::mem::take(&mut self.deferred);
                again.sort_by_key(|i| match i {
                    Input::Message { message, .. } => (message.from, message.seq),
                    _ => unreachable!("only messages are deferred"),
                });
                again.dedup_by_key(|i| match i {
                    Input::Message { message, .. } => (message.from, message.seq),
                    _ => unreachable!("only messages are deferred"),
                });
                inputs.extend(again);
            }
            self.apply(&inputs, &mut replies);
            for r in reads.drain(..) {
                r(&self.shard);
            }
        }
        let _ = self.shard.wait_for_snapshot();
    }

    /// Adds a client job to the batch; true for Stop.
    fn take(
        &mut self,
        job: Job,
        inputs: &mut Vec<Input>,
        replies: &mut Vec<(usize, Reply)>,
        reads: &mut Vec<ReadJob>,
    ) -> bool {
        match job {
            Job::Command {
                meta,
                command,
                reply,
            } => {
                if let Some(f) = &self.failed {
                    reply(Err(SubmitError::Failed(f.clone())));
                    return false;
                }
                replies.push((inputs.len(), reply));
                inputs.push(Input::Command { meta, command });
                false
            }
            Job::Read(f) => {
                reads.push(f);
                false
            }
            Job::Stop => true,
        }
    }

    fn apply(&mut self, inputs: &[Input], replies: &mut Vec<(usize, Reply)>) {
        if inputs.is_empty() {
            return;
        }
        if let Some(f) = &self.failed {
            for (_, r) in replies.drain(..) {
                r(Err(SubmitError::Failed(f.clone())));
            }
            return;
        }
        let first_input = self.shard.engine().inputs_applied() + 1;
        let mut events = Vec::new();
        let results = match self.shard.submit(inputs, &mut events) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                self.failed = Some(msg.clone());
                for (_, r) in replies.drain(..) {
                    r(Err(SubmitError::Failed(msg.clone())));
                }
                return;
            }
        };
        for (input, r) in inputs.iter().zip(&results) {
            if let (
                Input::Message { .. },
                Applied::Message(Delivery::Deferred | Delivery::Gap { .. }),
            ) = (input, r)
            {
                self.deferred.push(input.clone());
            }
        }
        if !self.deferred.is_empty() && inputs.iter().any(|i| matches!(i, Input::Command { .. })) {
            self.retry_deferred = true;
        }
        // Split the events by input (events carry the input's number).
        let mut by_input: Vec<Vec<EventRecord>> = vec![Vec::new(); inputs.len()];
        for e in &events {
            let k = (e.input - first_input) as usize;
            if k < by_input.len() {
                by_input[k].push(e.clone());
            }
        }
        for (k, reply) in replies.drain(..) {
            match results[k] {
                Applied::Command(outcome) => reply(Ok(CommandReply {
                    outcome,
                    events: std::mem::take(&mut by_input[k]),
                })),
                other => unreachable!("command answered {other:?}"),
            }
        }
        if !events.is_empty() {
            let batch: Arc<[EventRecord]> = events.into();
            self.subscribers
                .lock()
                .expect("subscribers lock")
                .retain(|s| s.try_send(batch.clone()).is_ok());
        }
        // Acknowledge what arrived from other shards, forward what is new in the outbox.
        let me = self.shard.engine().shard();
        let mut sources: Vec<ShardId> = inputs
            .iter()
            .filter_map(|i| match i {
                Input::Message { message, .. } => Some(message.from),
                _ => None,
            })
            .collect();
        sources.sort();
        sources.dedup();
        for from in sources {
            let upto = self.shard.engine().inbox_applied(from);
            let _ = self.peers[from.0 as usize].send(Input::Ack {
                timestamp: now(),
                to: me,
                upto,
            });
        }
        self.forward();
    }

    /// Sends every outbox message not yet forwarded since start to its destination.
    fn forward(&mut self) {
        let e = self.shard.engine();
        for to in e.outbox_destinations() {
            let done = self.forwarded.get(&to).copied().unwrap_or(0);
            let mut last = done;
            for m in e.outbox(to).filter(|m| m.seq > done) {
                last = m.seq;
                let _ = self.peers[to.0 as usize].send(Input::Message {
                    timestamp: now(),
                    message: m.clone(),
                });
            }
            self.forwarded.insert(to, last);
        }
    }
}
