//! `tradelog bench --only etcd`: the replicated-write baseline (docs/design/0009). Runs
//! `scripts/bench-etcd.sh` (a private 3-member etcd cluster on 127.0.0.1, each member
//! fsyncing its Raft log, as etcd does by default) and drives it over etcd's own gRPC API
//! (`tradelog-etcd`) from this process with the shape of the transfer workload of the
//! `server` section: the same accounts, funding and random transfers of 1, 64 concurrent
//! clients on 8 connections, closed loop one transfer per request, open loop at half of
//! that (latency from each request's scheduled start), and batched requests.
//!
//! One transfer in etcd is an optimistic read-check-write, the way an etcd user keeps an
//! invariant over several keys (etcd has no server-side logic):
//!
//! 1. read both balances: one `Txn` of two `Range`s (serializable: answered by the leader
//!    from its applied state, without a ReadIndex round; a stale value only makes step 2
//!    fail and retry);
//! 2. check the debit balance covers the amount (else the transfer is rejected, no write);
//! 3. one `Txn`: compare that both balance keys still have the `mod_revision` read in (1);
//!    on success put the debit balance - 1, the credit balance + 1 and a transfer record
//!    `t/<id>` (the analogue of PostgreSQL's `INSERT INTO transfers` and of tradelog's
//!    transfer event): one Raft entry, committed once a majority has fsynced it; on
//!    failure (another client changed one of the keys) the same `Txn` returns both current
//!    balances and (2)-(3) are retried.
//!
//! A batched request does the same for K transfers at once: one read `Txn` of every
//! distinct account involved, the K transfers applied in order to those values, one write
//! `Txn` comparing every key read and putting every changed balance once plus K transfer
//! records. etcd's `--max-txn-ops` (default 128) is raised by the script to fit 3K ops.
//! Two more passes measure etcd's write path without the check: one `Put` per request and a
//! `Txn` of K `Put`s of fresh keys per request (its ceiling for blind writes).
//!
//! At the end the sum of all balances must equal what was deposited and the number of
//! transfer records the number of transfers acknowledged: a lost update or a lost write
//! would show. Anything that goes wrong on the etcd side (not installable, does not start)
//! is returned as the reason there are no etcd rows.

use super::durable::{pace, Rng};
use super::server::{print_lag, progress, tick, Pass};
use super::{find_script, script_fields, Mode, Row};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tradelog_etcd::etcdserverpb::{response_op, PutRequest, RangeRequest, TxnRequest};
use tradelog_etcd::{get, put, unchanged_since, KvClient};

/// Options of the etcd section.
pub struct Options {
    /// Accounts (balance keys) written first.
    pub accounts: u64,
    /// Concurrent clients (tasks, each with one request in flight).
    pub clients: usize,
    /// Transfers (or puts) per request in the batched passes.
    pub batch: usize,
    /// Length of each pass.
    pub duration: Duration,
    /// Where the cluster's temporary directory goes.
    pub base_dir: Option<PathBuf>,
    /// The script (None: `scripts/bench-etcd.sh` of this source tree, or of the current
    /// directory).
    pub script: Option<PathBuf>,
}

/// Connections (HTTP/2, each multiplexing many requests) the clients share.
const CONNECTIONS: usize = 8;
/// Each account's opening balance (as in the PostgreSQL script).
const FUNDING: u64 = 1_000_000;
/// Balance puts per `Txn` while loading the accounts.
const LOAD_TXN_LEN: usize = 500;
/// `Txn`s in flight while loading.
const LOAD_TASKS: usize = 8;
/// Keys per `Range` page in the final check.
const CHECK_PAGE_LEN: i64 = 10_000;
/// Members of the cluster.
const MEMBERS: u32 = 3;
/// The `--max-txn-ops` given to the members, at least (etcd's default is 128).
const MAX_TXN_OPS_MIN: usize = 1_024;
/// A request still retrying this long after its pass ended is given up (counted failed).
const GIVE_UP_AFTER_END: Duration = Duration::from_secs(10);

fn balance_key(account: u64) -> Vec<u8> {
    format!("b/{account}").into_bytes()
}

fn transfer_key(id: u64) -> Vec<u8> {
    format!("t/{id}").into_bytes()
}

/// The etcd cluster of the script, held up until [`Cluster::stop`] (or drop) closes the
/// script's standard input.
struct Cluster {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<Lines<BufReader<ChildStdout>>>,
    /// Client URLs, the leader's first.
    endpoints: Vec<String>,
    version: String,
    fs: String,
}

impl Cluster {
    fn start(o: &Options, max_txn_ops: usize) -> Result<Cluster, String> {
        let script = find_script(o.script.as_deref(), "bench-etcd.sh").ok_or_else(|| {
            "scripts/bench-etcd.sh not found (run from the repository or pass --etcd-script)"
                .to_string()
        })?;
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .args(["--members", &MEMBERS.to_string()])
            .args(["--max-txn-ops", &max_txn_ops.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(b) = &o.base_dir {
            cmd.arg("--base-dir").arg(b);
        }
        println!("  running: bash {} ...", script.display());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run bash {}: {e}", script.display()))?;
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut last = String::new();
        for line in lines.by_ref().map_while(Result::ok) {
            println!("  etcd | {line}");
            if let Some(reason) = line.strip_prefix("ETCD_SKIP reason=") {
                let _ = child.wait();
                return Err(reason.trim_matches('"').to_string());
            }
            if line.starts_with("ETCD_READY ") {
                let f = script_fields(&line);
                let mut endpoints: Vec<String> = f
                    .get("endpoints")
                    .map(|e| e.split(',').map(str::to_string).collect())
                    .unwrap_or_default();
                if let Some(leader) = f.get("leader") {
                    endpoints.sort_by_key(|e| e != leader);
                }
                let cluster = Cluster {
                    child,
                    stdin,
                    lines: Some(lines),
                    endpoints,
                    version: f.get("version").cloned().unwrap_or_else(|| "?".into()),
                    fs: f.get("fs").cloned().unwrap_or_else(|| "?".into()),
                };
                if cluster.endpoints.is_empty() {
                    return Err(format!("the script named no endpoints: {line}"));
                }
                return Ok(cluster);
            }
            last = line;
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        Err(format!(
            "the script exited with {status} before the cluster was ready (last line: {last:?})"
        ))
    }

    /// Closes the script's input: it stops the members and removes their directory.
    fn stop(mut self) -> Result<(), String> {
        drop(self.stdin.take());
        for line in self
            .lines
            .take()
            .into_iter()
            .flatten()
            .map_while(Result::ok)
        {
            println!("  etcd | {line}");
        }
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("bench-etcd.sh exited with {status}"));
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.wait();
        }
    }
}

/// What one request did.
#[derive(Default)]
struct Outcome {
    /// Transfers (or puts) committed.
    committed: u64,
    /// Transfers rejected: the debit balance did not cover the amount.
    rejected: u64,
    /// Write `Txn`s whose compare failed (retried).
    conflicts: u64,
    /// Write `Txn`s sent.
    txns: u64,
}

/// (balance, mod_revision) of each account read by a `Txn` of `Range`s or returned by a
/// failed write `Txn`, in the order of `accounts`.
fn balances(
    accounts: &[u64],
    responses: Vec<tradelog_etcd::etcdserverpb::ResponseOp>,
) -> Result<BTreeMap<u64, (u64, i64)>, String> {
    if responses.len() != accounts.len() {
        return Err(format!(
            "{} answers for {} reads",
            responses.len(),
            accounts.len()
        ));
    }
    let mut out = BTreeMap::new();
    for (a, r) in accounts.iter().zip(responses) {
        let Some(response_op::Response::ResponseRange(range)) = r.response else {
            return Err("a read answered something else than a range".into());
        };
        let kv = range
            .kvs
            .first()
            .ok_or_else(|| format!("account {a} is missing"))?;
        let balance = std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("account {a} holds {:?}", kv.value))?;
        out.insert(*a, (balance, kv.mod_revision));
    }
    Ok(out)
}

/// One request of `transfers` (debit, credit, id): read, check, write, retried on conflict
/// until `give_up`.
async fn transfer(
    kv: &mut KvClient,
    transfers: &[(u64, u64, u64)],
    give_up: Instant,
) -> Result<Outcome, String> {
    let mut accounts: Vec<u64> = transfers.iter().flat_map(|t| [t.0, t.1]).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let reads = || {
        accounts
            .iter()
            .map(|a| get(balance_key(*a), true))
            .collect::<Vec<_>>()
    };
    let read = TxnRequest {
        success: reads(),
        ..TxnRequest::default()
    };
    let answer = kv.txn(read).await.map_err(|s| s.message().to_string())?;
    let mut seen = balances(&accounts, answer.into_inner().responses)?;
    let mut out = Outcome::default();
    loop {
        let mut now: BTreeMap<u64, u64> = seen.iter().map(|(a, (b, _))| (*a, *b)).collect();
        let mut records = Vec::new();
        out.rejected = 0;
        for &(debit, credit, id) in transfers {
            if now[&debit] >= 1 {
                *now.get_mut(&debit).expect("read") -= 1;
                *now.get_mut(&credit).expect("read") += 1;
                records.push(put(
                    transfer_key(id),
                    format!("{debit} {credit} 1").into_bytes(),
                ));
            } else {
                out.rejected += 1;
            }
        }
        if records.is_empty() {
            return Ok(out);
        }
        let mut success: Vec<_> = now
            .iter()
            .filter(|(a, b)| seen[a].0 != **b)
            .map(|(a, b)| put(balance_key(*a), b.to_string().into_bytes()))
            .collect();
        success.extend(records);
        let write = TxnRequest {
            compare: seen
                .iter()
                .map(|(a, (_, rev))| unchanged_since(balance_key(*a), *rev))
                .collect(),
            success,
            failure: reads(),
        };
        out.txns += 1;
        let answer = kv
            .txn(write)
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        if answer.succeeded {
            out.committed = transfers.len() as u64 - out.rejected;
            return Ok(out);
        }
        out.conflicts += 1;
        if Instant::now() > give_up {
            return Err(format!("still conflicting after {} tries", out.txns));
        }
        seen = balances(&accounts, answer.responses)?;
    }
}

/// One request of `n` blind puts of fresh keys: a `Put`, or a `Txn` of `n` `Put`s.
async fn puts(kv: &mut KvClient, client: usize, first: u64, n: usize) -> Result<Outcome, String> {
    let key = |k: u64| format!("w/{client}/{k}").into_bytes();
    let value = || FUNDING.to_string().into_bytes();
    if n == 1 {
        kv.put(PutRequest {
            key: key(first),
            value: value(),
            ..PutRequest::default()
        })
        .await
        .map_err(|s| s.message().to_string())?;
    } else {
        let txn = TxnRequest {
            success: (first..first + n as u64)
                .map(|k| put(key(k), value()))
                .collect(),
            ..TxnRequest::default()
        };
        kv.txn(txn).await.map_err(|s| s.message().to_string())?;
    }
    Ok(Outcome {
        committed: n as u64,
        txns: 1,
        ..Outcome::default()
    })
}

/// What a pass counts besides its [`Pass`].
#[derive(Default)]
struct Counters {
    conflicts: AtomicU64,
    txns: AtomicU64,
    committed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    /// Adds one request's outcome to `p` and to the counters.
    fn count(&self, p: &mut Pass, n: usize, outcome: Result<Outcome, String>) {
        match outcome {
            Ok(o) => {
                p.commands += o.committed + o.rejected;
                p.failed += o.rejected;
                self.conflicts.fetch_add(o.conflicts, Ordering::Relaxed);
                self.txns.fetch_add(o.txns, Ordering::Relaxed);
                self.committed.fetch_add(o.committed, Ordering::Relaxed);
            }
            Err(e) => {
                p.failed += n as u64;
                self.first_error
                    .lock()
                    .expect("not poisoned")
                    .get_or_insert(e);
            }
        }
    }

    fn print(&self, p: &Pass, writes_per_commit: u64) {
        let s = p.elapsed.as_secs_f64().max(1e-9);
        let txns = self.txns.load(Ordering::Relaxed);
        println!(
            "    = {:.0} etcd writes/s ({writes_per_commit} key(s) per transfer or put), {:.0} write requests/s, \
             {} compare failures retried",
            (self.committed.load(Ordering::Relaxed) * writes_per_commit) as f64 / s,
            txns as f64 / s,
            self.conflicts.load(Ordering::Relaxed)
        );
        if let Some(e) = self.first_error.lock().expect("not poisoned").as_ref() {
            println!("    first error: {e}");
        }
    }
}

/// The kinds of request a pass sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    Transfers,
    Puts,
}

/// Random transfers of 1 between two distinct accounts, with unique ids.
fn next_transfer(rng: &mut Rng, accounts: u64, ids: &AtomicU64) -> (u64, u64, u64) {
    let debit = 1 + rng.below(accounts);
    let credit = 1 + (debit + rng.below(accounts - 1)) % accounts;
    (debit, credit, ids.fetch_add(1, Ordering::Relaxed))
}

/// Closed loop: `clients` tasks, each sends one request of `batch` transfers (or puts) and
/// waits for its answer, again and again for the pass's duration.
#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    conns: &[KvClient],
    o: &Options,
    work: Work,
    batch: usize,
    ids: &Arc<AtomicU64>,
    label: &str,
    seed: u64,
    counters: &Arc<Counters>,
) -> Result<Pass, String> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + o.duration;
    let ticker = tokio::spawn(tick(progress(label, o.duration), start, end, done.clone()));
    let mut tasks = Vec::new();
    for c in 0..o.clients {
        let mut kv = conns[c % conns.len()].clone();
        let mut rng = Rng::new(seed ^ ((c as u64 + 1) << 20));
        let (ids, done, counters, accounts) =
            (ids.clone(), done.clone(), counters.clone(), o.accounts);
        tasks.push(tokio::spawn(async move {
            let mut p = Pass::new();
            while Instant::now() < end {
                let t = Instant::now();
                let outcome = match work {
                    Work::Transfers => {
                        let ts: Vec<_> = (0..batch)
                            .map(|_| next_transfer(&mut rng, accounts, &ids))
                            .collect();
                        transfer(&mut kv, &ts, end + GIVE_UP_AFTER_END).await
                    }
                    Work::Puts => {
                        let first = ids.fetch_add(batch as u64, Ordering::Relaxed);
                        puts(&mut kv, c, first, batch).await
                    }
                };
                p.hist.record(t.elapsed().as_nanos() as u64).ok();
                p.requests += 1;
                counters.count(&mut p, batch, outcome);
                done.fetch_add(batch as u64, Ordering::Relaxed);
            }
            p
        }));
    }
    let mut total = Pass::new();
    for t in tasks {
        total.add(&t.await.map_err(|e| e.to_string())?);
    }
    total.elapsed = start.elapsed();
    ticker.await.map_err(|e| e.to_string())?;
    Ok(total)
}

/// Open loop: one transfer per request, sent at `rate` per second at fixed intervals
/// whatever the answers do (paced by [`pace`] on a blocking thread); each latency counts
/// from the request's scheduled start.
async fn open_loop(
    conns: &[KvClient],
    o: &Options,
    rate: f64,
    ids: &Arc<AtomicU64>,
    label: &str,
    counters: &Arc<Counters>,
) -> Result<Pass, String> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + o.duration;
    let ticker = tokio::spawn(tick(progress(label, o.duration), start, end, done.clone()));
    let mut rng = Rng::new(99);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (conns, accounts, ids) = (conns.to_vec(), o.accounts, ids.clone());
    let runtime = tokio::runtime::Handle::current();
    let pacer = tokio::task::spawn_blocking(move || {
        pace(rate, start, end, |k, intended| {
            let mut kv = conns[k as usize % conns.len()].clone();
            let t = next_transfer(&mut rng, accounts, &ids);
            let (tx, done) = (tx.clone(), done.clone());
            runtime.spawn(async move {
                let outcome = transfer(&mut kv, &[t], end + GIVE_UP_AFTER_END).await;
                done.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send((intended.elapsed().as_nanos() as u64, outcome));
            });
        })
    });
    let (_, lag) = pacer.await.map_err(|e| e.to_string())?;
    print_lag(&lag);
    let mut p = Pass::new();
    while let Some((ns, outcome)) = rx.recv().await {
        p.hist.record(ns).ok();
        p.requests += 1;
        counters.count(&mut p, 1, outcome);
    }
    p.elapsed = o.duration;
    ticker.await.map_err(|e| e.to_string())?;
    Ok(p)
}

/// Writes every account's opening balance, `LOAD_TXN_LEN` per `Txn`, `LOAD_TASKS` at once.
async fn load(kv: &KvClient, accounts: u64) -> Result<(), String> {
    let all: Vec<u64> = (1..=accounts).collect();
    let chunks: Vec<Vec<u64>> = all.chunks(LOAD_TXN_LEN).map(<[u64]>::to_vec).collect();
    let next = Arc::new(AtomicU64::new(0));
    let chunks = Arc::new(chunks);
    let mut tasks = Vec::new();
    for _ in 0..LOAD_TASKS {
        let (mut kv, next, chunks) = (kv.clone(), next.clone(), chunks.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(chunk) = chunks.get(k) else {
                    return Ok::<_, String>(());
                };
                let txn = TxnRequest {
                    success: chunk
                        .iter()
                        .map(|a| put(balance_key(*a), FUNDING.to_string().into_bytes()))
                        .collect(),
                    ..TxnRequest::default()
                };
                kv.txn(txn).await.map_err(|s| s.message().to_string())?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Linearizable reads of every balance and of the number of transfer records: (accounts,
/// sum of balances, transfer records).
async fn check(kv: &mut KvClient) -> Result<(u64, u64, i64), String> {
    let (mut accounts, mut sum) = (0u64, 0u64);
    let mut from = b"b/".to_vec();
    loop {
        let page = kv
            .range(RangeRequest {
                key: from.clone(),
                range_end: b"b0".to_vec(),
                limit: CHECK_PAGE_LEN,
                ..RangeRequest::default()
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        for kv in &page.kvs {
            accounts += 1;
            sum += std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| format!("{:?} holds {:?}", kv.key, kv.value))?;
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                from = last.key.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    let records = kv
        .range(RangeRequest {
            key: b"t/".to_vec(),
            range_end: b"t0".to_vec(),
            count_only: true,
            ..RangeRequest::default()
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner()
        .count;
    Ok((accounts, sum, records))
}

/// Runs the etcd section; returns its rows (transfers one by one, open loop, batched; then
/// the blind puts), or why there are none.
pub fn run(o: &Options) -> Result<Vec<Row>, String> {
    println!(
        "\n== etcd: {MEMBERS} members on loopback (Raft, fsync on every member), the same transfers as \
         read-check-write Txns over gRPC, {} accounts, {} clients on {CONNECTIONS} connections, {:.1} s per pass ==",
        o.accounts,
        o.clients,
        o.duration.as_secs_f64()
    );
    if o.accounts < 2 {
        return Err("need at least 2 accounts".into());
    }
    let cluster = Cluster::start(o, MAX_TXN_OPS_MIN.max(3 * o.batch))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-etcd")
        .build()
        .map_err(|e| e.to_string())?;
    let system = format!("etcd {}, {MEMBERS} members", cluster.version);
    let endpoint = cluster.endpoints[0].clone();
    println!(
        "  clients talk to the leader, {endpoint} (data on {}); followers would forward to it",
        cluster.fs
    );
    let rows = runtime.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            conns.push(
                tradelog_etcd::connect(&endpoint)
                    .await
                    .map_err(|e| format!("connecting to {endpoint}: {e}"))?,
            );
        }
        let t = Instant::now();
        load(&conns[0], o.accounts).await?;
        println!(
            "  loaded {} accounts (a balance key each, {LOAD_TXN_LEN} puts per Txn) in {:.2} s",
            o.accounts,
            t.elapsed().as_secs_f64()
        );
        let ids = Arc::new(AtomicU64::new(1));
        let replicas = Some(MEMBERS);
        // Transfers acknowledged by the three transfer passes, and whether any request
        // failed with an error (its write may or may not have been applied).
        let (mut acknowledged, mut errors) = (0u64, false);
        let mut tally = |c: &Counters| {
            acknowledged += c.committed.load(Ordering::Relaxed);
            errors |= c.first_error.lock().expect("not poisoned").is_some();
        };
        let mut rows = Vec::new();
        let c = Arc::new(Counters::default());
        let single = closed_loop(&conns, o, Work::Transfers, 1, &ids, "etcd transfers one by one", 7, &c).await?;
        single.print(&format!("transfers one by one, {} clients", o.clients), "transfers");
        c.print(&single, 3);
        tally(&c);
        let mut row = single.row(&system, replicas, Mode::Single, format!("1 transfer, {} clients, closed loop", o.clients));
        row.note = format!("{} compare failures retried", c.conflicts.load(Ordering::Relaxed));
        rows.push(row);
        let rate = single.rate() / 2.0;
        let c = Arc::new(Counters::default());
        let open = open_loop(&conns, o, rate, &ids, "etcd transfers open loop", &c).await?;
        open.print(&format!("transfers open loop at {rate:.0}/s (50% of max)"), "transfers");
        c.print(&open, 3);
        tally(&c);
        let mut row = open.row(&system, replicas, Mode::Open, format!("1 transfer, open loop at {rate:.0}/s"));
        row.note = format!("{} compare failures retried", c.conflicts.load(Ordering::Relaxed));
        rows.push(row);
        let c = Arc::new(Counters::default());
        let batched = closed_loop(&conns, o, Work::Transfers, o.batch, &ids, "etcd transfers batched", 11, &c).await?;
        batched.print(&format!("transfers batched, {} clients x {}", o.clients, o.batch), "transfers");
        c.print(&batched, 3);
        tally(&c);
        let mut row = batched.row(
            &system,
            replicas,
            Mode::Batched,
            format!("{} transfers in one Txn, {} clients, closed loop", o.batch, o.clients),
        );
        row.note = format!("{} compare failures retried", c.conflicts.load(Ordering::Relaxed));
        rows.push(row);
        let c = Arc::new(Counters::default());
        let p = closed_loop(&conns, o, Work::Puts, 1, &ids, "etcd puts one by one", 13, &c).await?;
        p.print(&format!("blind puts one by one, {} clients", o.clients), "puts");
        c.print(&p, 1);
        rows.push(p.row(&system, replicas, Mode::Single, format!("1 put (no check), {} clients, closed loop", o.clients)));
        let c = Arc::new(Counters::default());
        let p = closed_loop(&conns, o, Work::Puts, o.batch, &ids, "etcd puts batched", 17, &c).await?;
        p.print(&format!("blind puts batched, {} clients x {}", o.clients, o.batch), "puts");
        c.print(&p, 1);
        rows.push(p.row(
            &system,
            replicas,
            Mode::Batched,
            format!("{} puts (no check) in one Txn, {} clients, closed loop", o.batch, o.clients),
        ));
        let (accounts, sum, records) = check(&mut conns[0]).await?;
        let expected = o.accounts * FUNDING;
        println!(
            "  check (linearizable reads): {accounts} accounts, total balance {sum} (expected {expected}), \
             {records} transfer records ({acknowledged} transfers acknowledged)"
        );
        if accounts != o.accounts || sum != expected || (!errors && records != acknowledged as i64) {
            return Err(format!(
                "etcd check failed: {accounts} accounts holding {sum} and {records} transfer records, \
                 expected {} holding {expected} and {acknowledged} records",
                o.accounts
            ));
        }
        Ok::<_, String>(rows)
    })?;
    drop(runtime);
    cluster.stop()?;
    Ok(rows)
}
