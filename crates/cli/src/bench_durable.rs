//! `tradelog bench --only durable`: a [`Node`] with its logs on disk, driven by client
//! threads the way PostgreSQL is driven by pgbench (`bench_pg.rs`), so the two can be
//! compared in one run.
//!
//! Workload: N accounts funded with 1,000,000 each, then random transfers of 1 between two
//! distinct accounts. Three passes per shard count:
//!
//! * closed loop, one by one: C client threads, each submits ONE transfer and waits for its
//!   durable answer ([`Node::submit_wait`]) before the next;
//! * closed loop, batched: each client submits K transfers at once ([`Node::submit`]) and
//!   waits for all K answers (one request = K transfers);
//! * open loop at 50% of the one-by-one throughput: one pacer submits transfers at fixed
//!   intervals and the latency of each counts from its intended start (corrected for
//!   coordinated omission: a late pacer or a stalled node cannot hide slow answers).
//!
//! Group commit is observed from outside the node: the shard thread makes one `pwrite` per
//! group commit (the log's write buffer, followed by one `fdatasync`), so the growth of its
//! `syscw` counter (`/proc/self/task/TID/io`) counts fsyncs, and the growth of
//! [`tradelog_engine::Engine::inputs_applied`] counts log records. `/proc/.../schedstat`
//! splits the shard thread's time into on a CPU, waiting for a CPU and blocked (in fsync or
//! idle).

use super::{hist, Mode, Row};
use anyhow::{bail, Context, Result};
use crossbeam_channel::{bounded, unbounded};
use hdrhistogram::Histogram;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use tradelog_domain::*;
use tradelog_node::{Node, NodeConfig, SubmitError};

const USD: AssetId = AssetId(1);
/// Every account starts with this much (minor units); transfers move 1.
const FUNDING: u64 = 1_000_000;
/// Commands in flight while loading accounts (well below a shard's queue bound).
const LOAD_WINDOW: usize = 4_096;

/// Settings of the durable benchmark.
pub struct Options {
    /// Accounts (opened and funded before the passes).
    pub accounts: u64,
    /// Closed-loop client threads.
    pub clients: usize,
    /// Transfers per request in the batched pass.
    pub batch: usize,
    /// Length of each pass.
    pub duration: Duration,
    /// Shard counts, one node (and one set of rows) each.
    pub shards: Vec<u32>,
    /// Where the temporary data directories go (None: $TMPDIR, else the target dir).
    pub data_dir: Option<PathBuf>,
    /// Snapshot after this many log records (None: the node's default; 0 = never).
    pub snapshot_every: Option<u64>,
}

/// Group-commit figures of one pass.
#[derive(Clone, Debug, Default)]
pub struct Groups {
    /// Log records appended (client commands, cross-shard messages and acks).
    pub records: u64,
    /// Group commits (= fdatasyncs of the log), all shards.
    pub fsyncs: u64,
    /// Client transfers answered in the pass.
    pub transfers: u64,
    /// Share of wall time the shard threads spent on a CPU (mean over shards).
    pub on_cpu: f64,
    /// Share of wall time the shard threads were runnable but waiting for a CPU.
    pub runq: f64,
    /// CPUs the whole process used (all threads).
    pub process_cores: f64,
}

/// The directory the benchmark puts its temporary data directory in, and how it was chosen.
pub(super) fn base_dir(explicit: Option<&Path>) -> Result<(PathBuf, &'static str)> {
    if let Some(d) = explicit {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        return Ok((d.to_path_buf(), "--data-dir"));
    }
    let tmp = std::env::temp_dir();
    let tmp_fs = mount_of(&tmp).map(|m| m.fstype).unwrap_or_default();
    if !in_memory(&tmp_fs) {
        let how = if std::env::var_os("TMPDIR").is_some() {
            "$TMPDIR"
        } else {
            "the temp dir (/tmp, $TMPDIR unset)"
        };
        return Ok((tmp, how));
    }
    // $TMPDIR is in memory: use the target directory the binary was built in.
    let exe = std::env::current_exe().context("locate the tradelog binary")?;
    let dir = exe
        .parent()
        .context("the binary has no parent directory")?
        .join("bench-data");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok((dir, "the target dir (the temp dir is in memory)"))
}

fn in_memory(fstype: &str) -> bool {
    matches!(fstype, "tmpfs" | "ramfs" | "devtmpfs")
}

/// A mount point, from `/proc/self/mountinfo`.
#[derive(Default)]
struct Mount {
    point: PathBuf,
    fstype: String,
    source: String,
}

/// The mount that holds `path` (the longest mount point that is a prefix of it).
fn mount_of(path: &Path) -> Option<Mount> {
    let path = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<Mount> = None;
    for line in info.lines() {
        let (left, right) = line.split_once(" - ")?;
        let point = PathBuf::from(left.split_whitespace().nth(4)?.replace("\\040", " "));
        let mut r = right.split_whitespace();
        let (fstype, source) = (r.next()?.to_string(), r.next()?.to_string());
        if path.starts_with(&point)
            && best
                .as_ref()
                .is_none_or(|b| point.as_os_str().len() >= b.point.as_os_str().len())
        {
            best = Some(Mount {
                point,
                fstype,
                source,
            });
        }
    }
    best
}

/// Latency of `pwrite` + `fdatasync` of `len` bytes, appended sequentially to a 16 MiB
/// file in `dir`: what one group commit costs at least. With `fallocated`, the file is
/// preallocated with `fallocate` as the log's segments are (each sync then also records
/// that the written range is no longer unwritten: a journal commit on ext4); otherwise it
/// was filled with zeros first (a pure overwrite).
fn fsync_probe(
    dir: &Path,
    len: usize,
    fallocated: bool,
    budget: Duration,
) -> Result<Histogram<u64>> {
    let path = dir.join("fsync-probe");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let size = 16u64 << 20;
    if fallocated {
        rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, size)
            .context("fallocate")?;
    } else {
        let zeros = vec![0u8; 1 << 20];
        for i in 0..size >> 20 {
            f.write_all_at(&zeros, i << 20)?;
        }
    }
    f.sync_all()?;
    let buf = vec![0x5au8; len];
    let mut h = hist();
    let start = Instant::now();
    let mut at = 0u64;
    while start.elapsed() < budget && h.len() < 2_000 && at + len as u64 <= size {
        let t = Instant::now();
        f.write_all_at(&buf, at)?;
        f.sync_data()?;
        h.record(t.elapsed().as_nanos() as u64).ok();
        at += len as u64;
    }
    drop(f);
    std::fs::remove_file(&path).ok();
    Ok(h)
}

fn meta() -> Meta {
    Meta {
        timestamp: tradelog_node::runtime::now(),
        principal: Principal(1),
        authority: Authority::Operator,
    }
}

/// Submits `commands` with at most `window` in flight; every one must be accepted.
fn submit_all(node: &Node, commands: impl Iterator<Item = Command>, window: usize) -> Result<()> {
    let (tx, rx) = unbounded();
    let mut in_flight = 0usize;
    let check = |r: Result<tradelog_node::CommandReply, SubmitError>| -> Result<()> {
        match r {
            Ok(rep) if rep.outcome.result.is_ok() => Ok(()),
            Ok(rep) => bail!("setup command rejected: {:?}", rep.outcome.result),
            Err(e) => bail!("setup command failed: {e}"),
        }
    };
    for c in commands {
        if in_flight >= window {
            check(rx.recv().context("node stopped")?)?;
            in_flight -= 1;
        }
        let tx = tx.clone();
        node.submit(
            meta(),
            c,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        in_flight += 1;
    }
    for _ in 0..in_flight {
        check(rx.recv().context("node stopped")?)?;
    }
    Ok(())
}

fn load(node: &Node, accounts: u64) -> Result<()> {
    let asset = Command::CreateAsset(Asset {
        id: USD,
        code: "USD".into(),
        scale: 2,
    });
    let r = node.submit_wait(meta(), asset)?;
    if let Err(e) = r.outcome.result {
        bail!("create asset: {e:?}");
    }
    // Opening and funding an account go to the same shard's queue, in this order.
    let commands = (1..=accounts).flat_map(|a| {
        [
            Command::OpenAccount {
                account: AccountId(a),
                owner: Principal(a),
            },
            Command::Deposit {
                id: TransferId(a),
                account: AccountId(a),
                asset: USD,
                amount: Amount(FUNDING),
            },
        ]
    });
    submit_all(node, commands, LOAD_WINDOW)
}

/// xorshift64*, as in the engine benchmark.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) * n) >> 32
    }
}

/// Random transfers of 1 between two distinct accounts, with unique idempotency keys.
struct Transfers<'a> {
    rng: Rng,
    accounts: u64,
    ids: &'a AtomicU64,
}

impl Transfers<'_> {
    fn next(&mut self) -> Command {
        let debit = 1 + self.rng.below(self.accounts);
        // Uniform over the other accounts.
        let credit = 1 + (debit + self.rng.below(self.accounts - 1)) % self.accounts;
        Command::Transfer(TransferSpec {
            id: TransferId(self.ids.fetch_add(1, Ordering::Relaxed)),
            debit: AccountId(debit),
            credit: AccountId(credit),
            asset: USD,
            amount: Amount(1),
            balancing: false,
        })
    }
}

/// What one pass measured.
struct Pass {
    hist: Histogram<u64>,
    requests: u64,
    transfers: u64,
    rejected: u64,
    errors: u64,
    elapsed: Duration,
}

impl Pass {
    fn row(&self, system: &str, mode: Mode, request: String, groups: Option<Groups>) -> Row {
        let s = self.elapsed.as_secs_f64();
        let us = |q: f64| self.hist.value_at_quantile(q) as f64 / 1e3;
        Row {
            system: system.to_string(),
            mode,
            request,
            transfers_per_s: self.transfers as f64 / s,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.hist.max() as f64 / 1e3,
            requests: self.requests,
            failed: self.rejected + self.errors,
            per_fsync: groups.as_ref().map(|g| {
                (
                    g.transfers as f64 / g.fsyncs.max(1) as f64,
                    g.records as f64 / g.fsyncs.max(1) as f64,
                )
            }),
            replicas: None,
            note: String::new(),
        }
    }
}

fn accepted(r: &Result<tradelog_node::CommandReply, SubmitError>) -> (u64, u64) {
    match r {
        Ok(rep) if rep.outcome.result.is_ok() => (0, 0),
        Ok(_) => (1, 0),
        Err(_) => (0, 1),
    }
}

/// Closed loop: `clients` threads, each submits `batch` transfers and waits for all their
/// answers, again and again for `duration`. One request = `batch` transfers.
fn closed_loop(
    node: &Node,
    accounts: u64,
    clients: usize,
    batch: usize,
    duration: Duration,
    ids: &AtomicU64,
    seed: u64,
) -> Pass {
    let barrier = Barrier::new(clients + 1);
    let mut total = Pass {
        hist: hist(),
        requests: 0,
        transfers: 0,
        rejected: 0,
        errors: 0,
        elapsed: Duration::ZERO,
    };
    let start = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut gen = Transfers {
                        rng: Rng::new(seed ^ (c as u64 + 1) << 20),
                        accounts,
                        ids,
                    };
                    let mut p = Pass {
                        hist: hist(),
                        requests: 0,
                        transfers: 0,
                        rejected: 0,
                        errors: 0,
                        elapsed: Duration::ZERO,
                    };
                    let (tx, rx) = bounded(batch);
                    barrier.wait();
                    let end = Instant::now() + duration;
                    while Instant::now() < end {
                        let t = Instant::now();
                        if batch == 1 {
                            let r = node.submit_wait(meta(), gen.next());
                            let (rej, err) = accepted(&r);
                            p.rejected += rej;
                            p.errors += err;
                        } else {
                            for _ in 0..batch {
                                let tx = tx.clone();
                                node.submit(
                                    meta(),
                                    gen.next(),
                                    Box::new(move |r| {
                                        let _ = tx.send(accepted(&r));
                                    }),
                                );
                            }
                            for _ in 0..batch {
                                let (rej, err) = rx.recv().unwrap_or((0, 1));
                                p.rejected += rej;
                                p.errors += err;
                            }
                        }
                        p.hist.record(t.elapsed().as_nanos() as u64).ok();
                        p.requests += 1;
                        p.transfers += batch as u64;
                    }
                    p
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            let p = h.join().expect("client thread");
            total.hist.add(&p.hist).expect("same bounds");
            total.requests += p.requests;
            total.transfers += p.transfers;
            total.rejected += p.rejected;
            total.errors += p.errors;
        }
        start
    });
    total.elapsed = start.elapsed();
    total
}

/// The open loops' pacer's shortest sleep: at high rates it wakes at most this often and
/// sends what is due then (each wake-up costs CPU that the measured system, on the same
/// machine, would miss).
const PACER_SLEEP_MIN: Duration = Duration::from_micros(200);

/// The open loops' pacer: calls `send(k, intended)` for the `k`-th request at its intended
/// start, `start + k / rate`, until `end`, on this thread, and returns how many it sent
/// and how late each went out. It sleeps the thread between requests (a thread sleep wakes
/// within tens of microseconds; a tokio timer rounds up to the next millisecond, which
/// would send the requests in bursts, one each millisecond, and charge the system measured
/// with the pacer's own lateness); when it wakes late it sends every request already due,
/// back to back. Latencies count from the intended start, so they include that lateness
/// (coordinated omission corrected); the returned histogram shows how much of it there was.
pub(super) fn pace(
    rate: f64,
    start: Instant,
    end: Instant,
    mut send: impl FnMut(u64, Instant),
) -> (u64, Histogram<u64>) {
    let interval_ns = 1e9 / rate.max(1.0);
    let at = |k: u64| start + Duration::from_nanos((k as f64 * interval_ns) as u64);
    let mut lag = hist();
    let mut k = 0u64;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        loop {
            let intended = at(k);
            if intended > now || intended >= end {
                break;
            }
            lag.record(now.duration_since(intended).as_nanos() as u64)
                .ok();
            send(k, intended);
            k += 1;
        }
        let now = Instant::now();
        if at(k) > now {
            std::thread::sleep((at(k) - now).max(PACER_SLEEP_MIN));
        }
    }
    (k, lag)
}

/// Open loop: transfers submitted at `rate` per second at fixed intervals for `duration`,
/// each one's latency measured from its intended start to its durable answer.
fn open_loop(
    node: &Node,
    accounts: u64,
    rate: f64,
    duration: Duration,
    ids: &AtomicU64,
    seed: u64,
) -> Result<(Pass, Histogram<u64>)> {
    let mut gen = Transfers {
        rng: Rng::new(seed),
        accounts,
        ids,
    };
    let (tx, rx) = unbounded::<(u64, (u64, u64))>();
    let start = Instant::now();
    let (k, lag) = pace(rate, start, start + duration, |_, intended| {
        let tx = tx.clone();
        node.submit(
            meta(),
            gen.next(),
            Box::new(move |r| {
                let _ = tx.send((intended.elapsed().as_nanos() as u64, accepted(&r)));
            }),
        );
    });
    drop(tx);
    let mut p = Pass {
        hist: hist(),
        requests: k,
        transfers: k,
        rejected: 0,
        errors: 0,
        elapsed: duration,
    };
    for _ in 0..k {
        let (ns, (rej, err)) = rx
            .recv_timeout(Duration::from_secs(60))
            .context("no answer within 60 s in the open-loop pass")?;
        p.hist.record(ns).ok();
        p.rejected += rej;
        p.errors += err;
    }
    Ok((p, lag))
}

/// Counters of one thread.
#[derive(Clone, Copy, Default)]
struct ThreadStat {
    /// Write syscalls (one pwrite per group commit on a shard thread).
    syscw: u64,
    /// Nanoseconds on a CPU.
    on_cpu_ns: u64,
    /// Nanoseconds runnable but waiting for a CPU.
    runq_ns: u64,
}

fn thread_stat(tid: u32) -> Option<ThreadStat> {
    let io = std::fs::read_to_string(format!("/proc/self/task/{tid}/io")).ok()?;
    let syscw = io
        .lines()
        .find_map(|l| l.strip_prefix("syscw:"))?
        .trim()
        .parse()
        .ok()?;
    let sched = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut f = sched.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some(ThreadStat {
        syscw,
        on_cpu_ns: f.next()??,
        runq_ns: f.next()??,
    })
}

/// Thread ids of the node's shard threads (named `shard-N`), in shard order. A shard
/// thread names itself once it runs, and the snapshot writers it spawns inherit its name:
/// of several threads with one name, the one started first is the shard thread.
fn shard_tids(shards: u32) -> Option<Vec<u32>> {
    let mut found: Vec<Option<(u64, u32)>> = vec![None; shards as usize];
    for e in std::fs::read_dir("/proc/self/task").ok()? {
        let e = e.ok()?;
        let tid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let Some(n) = comm.trim().strip_prefix("shard-") else {
            continue;
        };
        let Some(slot) = n.parse::<usize>().ok().and_then(|n| found.get_mut(n)) else {
            continue;
        };
        // Field 22 of stat (the 20th after the command name): start time.
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let started = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(19)?.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if slot.is_none_or(|(t, _)| started < t) {
            *slot = Some((started, tid));
        }
    }
    found.into_iter().map(|v| v.map(|(_, tid)| tid)).collect()
}

/// [`shard_tids`], waiting up to a second for every shard thread to have named itself.
fn wait_for_shard_tids(shards: u32) -> Option<Vec<u32>> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let found = shard_tids(shards);
        if found.is_some() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// User + system CPU time of the whole process, in clock ticks (USER_HZ = 100).
fn process_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

struct Sample {
    at: Instant,
    threads: Vec<ThreadStat>,
    records: Vec<u64>,
    ticks: u64,
}

fn sample(node: &Node, tids: &[u32]) -> Sample {
    Sample {
        at: Instant::now(),
        threads: tids
            .iter()
            .map(|t| thread_stat(*t).unwrap_or_default())
            .collect(),
        records: (0..node.shard_count())
            .map(|s| node.read(ShardId(s), |e| e.inputs_applied()).unwrap_or(0))
            .collect(),
        ticks: process_ticks().unwrap_or(0),
    }
}

fn groups(a: &Sample, b: &Sample, transfers: u64) -> Groups {
    let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let n = a.threads.len().max(1) as f64;
    let sum = |f: fn(&ThreadStat) -> u64| -> u64 {
        a.threads
            .iter()
            .zip(&b.threads)
            .map(|(x, y)| f(y).saturating_sub(f(x)))
            .sum()
    };
    Groups {
        records: b.records.iter().zip(&a.records).map(|(y, x)| y - x).sum(),
        fsyncs: sum(|t| t.syscw),
        transfers,
        on_cpu: sum(|t| t.on_cpu_ns) as f64 / 1e9 / wall / n,
        runq: sum(|t| t.runq_ns) as f64 / 1e9 / wall / n,
        process_cores: b.ticks.saturating_sub(a.ticks) as f64 / 100.0 / wall,
    }
}

/// What a snapshot costs the shard thread right now: it clones the engine (then writes
/// the copy in the background). Measured on shard 0, between passes.
/// Snapshots are taken from a copy of the state on another thread; the shard only waits
/// for it when it falls too far behind. Totals since the node started.
fn print_snapshotter_stalls(node: &Node) {
    let stalls: Vec<_> = (0..node.shard_count())
        .filter_map(|s| node.inspect(ShardId(s), |d| d.snapshotter_stalls()).ok())
        .collect();
    let count: u64 = stalls.iter().map(|s| s.count).sum();
    let us: u64 = stalls.iter().map(|s| s.total_us).sum();
    println!(
        "    shard threads waited for their snapshotters (so far): {count} times, {} in total",
        fmt_us(us as f64)
    );
}

/// The slowest group commit of any shard so far, and where its time went.
fn print_slowest_group(node: &Node) {
    let slowest = (0..node.shard_count())
        .filter_map(|s| node.inspect(ShardId(s), |d| d.slowest_group()).ok())
        .max_by_key(|g| g.total_us());
    if let Some(g) = slowest {
        println!(
            "    slowest group so far: {} ({} inputs) = append {} + fdatasync {} + apply {} + snapshotter hand-off {} + watermark and snapshot start {}",
            fmt_us(g.total_us() as f64),
            g.inputs,
            fmt_us(g.append_us as f64),
            fmt_us(g.sync_us as f64),
            fmt_us(g.apply_us as f64),
            fmt_us(g.handoff_us as f64),
            fmt_us(g.after_us as f64)
        );
    }
}

fn print_groups(g: &Groups, secs: f64) {
    let f = g.fsyncs.max(1) as f64;
    println!(
        "    group commit: {} records in {} fsyncs = {:.1} records/fsync ({:.1} client transfers/fsync), {:.0} fsyncs/s",
        g.records,
        g.fsyncs,
        g.records as f64 / f,
        g.transfers as f64 / f,
        g.fsyncs as f64 / secs
    );
    println!(
        "    shard thread: on a CPU {:.0}%, waiting for a CPU {:.0}%, blocked (fsync or idle) {:.0}%; whole process {:.2} CPUs",
        g.on_cpu * 100.0,
        g.runq * 100.0,
        ((1.0 - g.on_cpu - g.runq) * 100.0).max(0.0),
        g.process_cores
    );
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} us")
    }
}

fn print_pass(label: &str, p: &Pass) {
    let s = p.elapsed.as_secs_f64();
    println!(
        "  {label}: {:.0} transfers/s ({} requests in {s:.1} s); per request p50 {} p99 {} p999 {} max {}{}",
        p.transfers as f64 / s,
        p.requests,
        fmt_us(p.hist.value_at_quantile(0.5) as f64 / 1e3),
        fmt_us(p.hist.value_at_quantile(0.99) as f64 / 1e3),
        fmt_us(p.hist.value_at_quantile(0.999) as f64 / 1e3),
        fmt_us(p.hist.max() as f64 / 1e3),
        if p.rejected + p.errors > 0 {
            format!("; {} rejected, {} errors", p.rejected, p.errors)
        } else {
            String::new()
        }
    );
}

/// Runs the durable benchmark and returns its rows (printing details on the way).
pub fn run(o: &Options) -> Result<Vec<Row>> {
    if o.accounts < 2 {
        bail!("need at least 2 accounts");
    }
    let (base, how) = base_dir(o.data_dir.as_deref())?;
    let tmp = tempfile::Builder::new()
        .prefix("tradelog-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("create a temporary directory in {}", base.display()))?;
    let m = mount_of(tmp.path()).unwrap_or_default();
    println!(
        "\n== durable: tradelog node on disk, {} accounts, {} clients, {:.1} s per pass ==",
        o.accounts,
        o.clients,
        o.duration.as_secs_f64()
    );
    println!(
        "  data: {} (chosen from {how}): {} on {} mounted at {}",
        tmp.path().display(),
        m.fstype,
        m.source,
        m.point.display()
    );
    if in_memory(&m.fstype) {
        println!(
            "  WARNING: {} is in memory: fsync costs nothing, these are NOT disk figures",
            m.fstype
        );
    }
    let budget = Duration::from_millis(500).min(o.duration);
    for (len, fallocated) in [(4096usize, false), (65536, false), (4096, true)] {
        let h = fsync_probe(tmp.path(), len, fallocated, budget)?;
        println!(
            "  disk: append {:>2} KiB + fdatasync, {}: p50 {} p99 {} (n={})",
            len / 1024,
            if fallocated {
                "fallocated file (as the log)"
            } else {
                "zero-filled file (overwrite)"
            },
            fmt_us(h.value_at_quantile(0.5) as f64 / 1e3),
            fmt_us(h.value_at_quantile(0.99) as f64 / 1e3),
            h.len()
        );
    }
    let ids = AtomicU64::new(1 << 40);
    let mut rows = Vec::new();
    for &shards in &o.shards {
        let dir = tmp.path().join(format!("node-{shards}"));
        let mut config = NodeConfig::new(&dir, shards);
        if let Some(n) = o.snapshot_every {
            config.snapshot_every_records = n;
        }
        println!(
            "\n  -- {shards} shard(s): group commit up to {} inputs, queue {} per shard, snapshot every {} records --",
            config.batch_inputs_max, config.queue_len_max, config.snapshot_every_records
        );
        // As in `tradelog serve` (a node's process), from here on; the engine sections
        // before this one ran with them.
        crate::serve::disable_huge_pages();
        let node = Node::open(config).context("open the node")?;
        // Before any snapshot writer (which inherits the shard thread's name) exists.
        let tids = wait_for_shard_tids(shards);
        if tids.is_none() {
            println!("    (shard threads not found in /proc: no group-commit figures)");
        }
        let tids = tids.unwrap_or_default();
        let t = Instant::now();
        load(&node, o.accounts)?;
        println!(
            "    loaded {} accounts (open + deposit, {} commands) in {:.2} s",
            o.accounts,
            2 * o.accounts,
            t.elapsed().as_secs_f64()
        );
        let system = format!(
            "tradelog, {shards} shard{}",
            if shards == 1 { "" } else { "s" }
        );
        // Warm up (not measured).
        closed_loop(
            &node,
            o.accounts,
            o.clients,
            1,
            o.duration / 10,
            &ids,
            shards as u64,
        );
        // Measures one pass with the group-commit counters around it and makes its row.
        let measured =
            |label: String, mode: Mode, request: String, pass: &dyn Fn() -> Result<Pass>| {
                let a = sample(&node, &tids);
                let p = pass()?;
                let b = sample(&node, &tids);
                print_pass(&label, &p);
                let g = (!tids.is_empty()).then(|| groups(&a, &b, p.transfers));
                if let Some(g) = &g {
                    print_groups(g, p.elapsed.as_secs_f64());
                }
                print_snapshotter_stalls(&node);
                print_slowest_group(&node);
                Ok::<_, anyhow::Error>(p.row(&system, mode, request, g))
            };

        let single = measured(
            format!("one by one, {} clients", o.clients),
            Mode::Single,
            format!("1 transfer, {} clients, closed loop", o.clients),
            &|| {
                Ok(closed_loop(
                    &node, o.accounts, o.clients, 1, o.duration, &ids, 7,
                ))
            },
        )?;
        // The open loop runs next, on about the same state size as the pass it is half of.
        let rate = single.transfers_per_s / 2.0;
        rows.push(single);
        rows.push(measured(
            format!("open loop at {rate:.0}/s (50% of max)"),
            Mode::Open,
            format!("1 transfer, open loop at {rate:.0}/s"),
            &|| {
                let (p, lag) = open_loop(&node, o.accounts, rate, o.duration, &ids, 13)?;
                println!(
                    "    pacer lateness (included in the latencies below): p50 {} p99 {}",
                    fmt_us(lag.value_at_quantile(0.5) as f64 / 1e3),
                    fmt_us(lag.value_at_quantile(0.99) as f64 / 1e3)
                );
                Ok(p)
            },
        )?);
        rows.push(measured(
            format!("batched, {} clients x {} transfers", o.clients, o.batch),
            Mode::Batched,
            format!("{} transfers, {} clients, closed loop", o.batch, o.clients),
            &|| {
                Ok(closed_loop(
                    &node, o.accounts, o.clients, o.batch, o.duration, &ids, 11,
                ))
            },
        )?);

        if !node.wait_quiescent(Duration::from_secs(60)) {
            bail!("cross-shard messages still in flight after 60 s");
        }
        let engines = node.engines()?;
        tradelog_engine::cluster::validate_quiescent(&engines)
            .map_err(|v| anyhow::anyhow!("invariant violated: {v:?}"))?;
        let total: u64 = engines
            .iter()
            .map(|e| e.ledger().totals().get(&USD).map_or(0, |t| t.deposited))
            .sum::<u128>() as u64;
        println!(
            "    invariants: OK ({} log records; deposits {total} = sum of balances)",
            engines.iter().map(|e| e.inputs_applied()).sum::<u64>()
        );
        drop(engines);
        node.shutdown();
    }
    Ok(rows)
}
