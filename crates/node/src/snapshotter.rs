//! The snapshotter: a second copy of the shard's state, kept on its own thread by
//! replaying the inputs the shard made durable, from which snapshots are encoded and
//! written. The shard thread never copies or encodes its state: taking a snapshot costs it
//! one message, so it keeps serving with no pause (see docs/design/0004).
//!
//! The copy is made once, when the snapshotter starts (at open, before the shard serves).
//! After that the shard hands over each durable group's encoded inputs (the bytes it
//! already wrote to the log, moved, not copied) and the snapshotter decodes and applies
//! them in the same order, so at any log index its state equals the shard's (the engine is
//! deterministic). A snapshot request names the index it must be taken at; the snapshotter
//! asserts that it has applied exactly that far.
//!
//! Memory: a second engine, a third while a snapshot is being encoded and written (the
//! snapshotter copies its state and goes on applying; a writer thread encodes the copy),
//! plus at most [`SNAPSHOTTER_LAG_INPUTS_MAX`] queued inputs; when the snapshotter falls
//! that far behind (the shard is faster than it), the shard waits for it rather than
//! queueing without bound.

use crate::snapshots::{self, SnapshotMeta};
use crate::NodeError;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tradelog_engine::{Engine, Input};

/// Most inputs handed to the snapshotter and not yet applied by it. At about 100 bytes an
/// encoded input this bounds the queue near 100 MiB.
pub const SNAPSHOTTER_LAG_INPUTS_MAX: usize = 1 << 20;

enum Job {
    /// Encoded inputs with log indexes `first..first + encoded.len()`.
    Inputs { first: u64, encoded: Vec<Vec<u8>> },
    /// Write a snapshot at `meta.index` (the state hash is filled in by the snapshotter).
    Snapshot { dir: PathBuf, meta: SnapshotMeta },
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Inputs in `jobs`.
    queued_inputs: usize,
    closed: bool,
    /// Results of snapshot jobs, in order.
    results: VecDeque<Result<PathBuf, NodeError>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is queued or the queue is closed.
    work: Condvar,
    /// Signalled when the snapshotter took jobs off the queue or finished a snapshot.
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("snapshotter lock poisoned")
    }
}

/// Handle held by the shard.
pub(crate) struct Snapshotter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Snapshot jobs queued whose result was not taken yet.
    outstanding: usize,
    /// Log index of the last input handed over.
    handed: u64,
    /// Times the shard waited because the snapshotter was too far behind, and for how long.
    stalls: Stalls,
}

/// Times the shard thread waited for the snapshotter (it was
/// [`SNAPSHOTTER_LAG_INPUTS_MAX`] inputs behind), and the total time waited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stalls {
    /// How many times.
    pub count: u64,
    /// Total wait, in microseconds.
    pub total_us: u64,
}

impl Snapshotter {
    /// Starts a snapshotter from `engine`, a copy of the shard's state at log index
    /// `applied`.
    pub fn start(engine: Engine, applied: u64) -> Snapshotter {
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("snapshotter".into())
            .spawn(move || run(&worker, engine, applied))
            .expect("spawn the snapshotter thread");
        Snapshotter {
            shared,
            thread: Some(thread),
            outstanding: 0,
            handed: applied,
            stalls: Stalls::default(),
        }
    }

    /// Hands over the encoded inputs at log indexes `first..`, which the shard made durable
    /// and applied. Waits while the snapshotter is [`SNAPSHOTTER_LAG_INPUTS_MAX`] behind.
    pub fn push(&mut self, first: u64, encoded: Vec<Vec<u8>>) {
        assert_eq!(
            first,
            self.handed + 1,
            "inputs handed to the snapshotter out of order"
        );
        self.handed += encoded.len() as u64;
        let n = encoded.len();
        let shared = Arc::clone(&self.shared);
        let mut s = shared.lock();
        if s.queued_inputs > 0 && s.queued_inputs + n > SNAPSHOTTER_LAG_INPUTS_MAX {
            let t = std::time::Instant::now();
            while s.queued_inputs > 0 && s.queued_inputs + n > SNAPSHOTTER_LAG_INPUTS_MAX {
                s = wait(&shared, &mut self.thread, s);
            }
            self.stalls.count += 1;
            self.stalls.total_us += t.elapsed().as_micros() as u64;
        }
        s.queued_inputs += n;
        s.jobs.push_back(Job::Inputs { first, encoded });
        drop(s);
        self.shared.work.notify_one();
    }

    /// Asks for a snapshot of the state after every input handed over so far.
    pub fn request(&mut self, dir: &Path, meta: SnapshotMeta) {
        assert_eq!(
            meta.index, self.handed,
            "snapshot requested at another index"
        );
        let mut s = self.shared.lock();
        s.jobs.push_back(Job::Snapshot {
            dir: dir.to_path_buf(),
            meta,
        });
        drop(s);
        self.outstanding += 1;
        self.shared.work.notify_one();
    }

    /// See [`Stalls`].
    pub fn stalls(&self) -> Stalls {
        self.stalls
    }

    /// True if a requested snapshot is not finished yet.
    pub fn busy(&self) -> bool {
        self.outstanding > self.shared.lock().results.len()
    }

    /// Waits for the oldest requested snapshot; `None` if none is outstanding.
    pub fn wait_for_snapshot(&mut self) -> Option<Result<PathBuf, NodeError>> {
        if self.outstanding == 0 {
            return None;
        }
        let shared = Arc::clone(&self.shared);
        let mut s = shared.lock();
        loop {
            if let Some(r) = s.results.pop_front() {
                self.outstanding -= 1;
                return Some(r);
            }
            s = wait(&shared, &mut self.thread, s);
        }
    }
}

/// Waits for progress; a snapshotter that died (a bug: it panicked) takes the shard down
/// with it.
fn wait<'a>(
    shared: &'a Shared,
    thread: &mut Option<JoinHandle<()>>,
    s: MutexGuard<'a, State>,
) -> MutexGuard<'a, State> {
    if thread.as_ref().is_some_and(|t| t.is_finished()) {
        drop(s);
        let t = thread.take().expect("checked above");
        match t.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("the snapshotter stopped while the shard needs it"),
        }
    }
    let (s, _) = shared
        .progress
        .wait_timeout(s, std::time::Duration::from_millis(100))
        .expect("snapshotter lock poisoned");
    s
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            // A snapshot being written finishes (its file is complete or absent); inputs
            // not yet applied are dropped with the copy.
            let _ = t.join();
        }
    }
}

fn run(shared: &Arc<Shared>, mut engine: Engine, mut applied: u64) {
    let mut writer: Option<JoinHandle<()>> = None;
    let mut inputs: Vec<Input> = Vec::new();
    let mut events = Vec::new();
    let mut results = Vec::new();
    loop {
        let job = {
            let mut s = shared.lock();
            loop {
                if let Some(job) = s.jobs.pop_front() {
                    if let Job::Inputs { encoded, .. } = &job {
                        s.queued_inputs -= encoded.len();
                    }
                    break job;
                }
                if s.closed {
                    drop(s);
                    if let Some(w) = writer.take() {
                        w.join().expect("snapshot writer panicked");
                    }
                    return;
                }
                s = shared.work.wait(s).expect("snapshotter lock poisoned");
            }
        };
        shared.progress.notify_all();
        match job {
            Job::Inputs { first, encoded } => {
                assert_eq!(first, applied + 1, "snapshotter out of step with the shard");
                inputs.clear();
                inputs.extend(encoded.iter().map(|bytes| {
                    tradelog_codec::decode::<Input>(bytes)
                        .expect("the shard encoded this input itself")
                }));
                engine.apply_batch(&inputs, &mut events, &mut results);
                events.clear();
                results.clear();
                applied += encoded.len() as u64;
            }
            Job::Snapshot { dir, meta } => {
                assert_eq!(meta.index, applied, "snapshot taken at the wrong index");
                // The snapshot is taken from a copy of the state made here, and encoded,
                // hashed, sealed and written on a writer thread, while this one goes back
                // to applying inputs. A copy is mostly flat memory and takes a fraction of
                // the encoding's time (`bench --only transfers` shows both); were this
                // thread to encode, the shard could run `SNAPSHOTTER_LAG_INPUTS_MAX`
                // inputs ahead of it meanwhile and wait. The shard asks for the next
                // snapshot only after this one's result, so at most one writer runs.
                let copy = engine.clone();
                if let Some(w) = writer.take() {
                    w.join().expect("snapshot writer panicked");
                }
                let shared = Arc::clone(shared);
                writer = Some(
                    std::thread::Builder::new()
                        .name("snapshot-writer".into())
                        .spawn(move || {
                            let state = copy.state_bytes();
                            drop(copy);
                            let meta = SnapshotMeta {
                                state_hash: tradelog_codec::sha256(&state),
                                ..meta
                            };
                            let sealed = Engine::seal_state_bytes(&state);
                            drop(state);
                            let r = snapshots::write(&dir, &meta, &sealed);
                            shared.lock().results.push_back(r);
                            shared.progress.notify_all();
                        })
                        .expect("spawn the snapshot writer thread"),
                );
            }
        }
    }
}
