//! `tradelog bench --only server`: the durable workloads through the network API, as a
//! user's application sees them. A real `tradelog serve` process (this binary) on
//! loopback with its data on disk, driven over gRPC by `tradelog-client` from this
//! process: transfers one by one (closed loop, many concurrent clients), open loop at half
//! of that maximum (latency from each request's scheduled start: coordinated omission
//! corrected), batched transfers, then orders and a transfer/order mix, one by one and
//! batched. The transfer rows join the PostgreSQL comparison table and, as "tradelog, 1
//! node", the replicated-writes table next to etcd. [`drive`] runs the passes against the
//! gRPC endpoints of any running deployment ([`Target`]), so a replicated cluster is
//! measured by starting it and passing its nodes' endpoints.

use super::durable::{pace, Rng};
use super::{hist, Mode, Row};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tradelog_client::{Client, ClientConfig, ClientError};
use tradelog_domain::*;

/// Options of the server section.
pub struct Options {
    /// Accounts opened and funded first.
    pub accounts: u64,
    /// Concurrent clients (tasks, each with one request in flight).
    pub clients: usize,
    /// Commands per request in the batched passes.
    pub batch: usize,
    /// Length of each pass.
    pub duration: Duration,
    /// Shards of the server.
    pub shards: u32,
    /// Where the temporary data directory goes.
    pub data_dir: Option<PathBuf>,
}

/// Connections (HTTP/2, each multiplexing many requests) the clients share.
const CONNECTIONS: usize = 8;
/// Commands per request while loading accounts.
const LOAD_BATCH_LEN: usize = 2_000;
/// Each account's funding in each asset.
const FUNDING: u64 = 1_000_000_000;
const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);
const MARKET: MarketId = MarketId(1);
/// Orders rest around this price, within `PRICE_SPREAD` ticks.
const MID_PRICE: u64 = 10_000;
const PRICE_SPREAD: u64 = 50;

/// The server process, stopped (SIGTERM, then waited for) when dropped.
pub(super) struct ServerProcess {
    child: Child,
    pub(super) grpc: String,
}

impl ServerProcess {
    pub(super) fn start(data_dir: &std::path::Path, shards: u32) -> Result<ServerProcess> {
        let exe = std::env::current_exe().context("locating the tradelog binary")?;
        let mut child = Process::new(exe)
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .arg("--shards")
            .arg(shards.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tradelog serve")?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading tradelog serve's first line")?;
        // "tradelog serving N shards from DIR: gRPC on ADDR, HTTP on ..."
        let Some(addr) = line
            .split("gRPC on ")
            .nth(1)
            .and_then(|s| s.split(',').next())
        else {
            let _ = child.kill();
            bail!("tradelog serve did not say where it listens: {line:?}");
        };
        Ok(ServerProcess {
            grpc: format!("http://{}", addr.trim()),
            child,
        })
    }

    /// Stops the server gracefully; an error if it did not exit cleanly.
    pub(super) fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        Process::new("kill").args(["-TERM", &pid]).status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("tradelog serve exited with {status}");
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one pass measured.
pub(super) struct Pass {
    pub(super) hist: Histogram<u64>,
    pub(super) requests: u64,
    pub(super) commands: u64,
    pub(super) failed: u64,
    pub(super) elapsed: Duration,
}

impl Pass {
    pub(super) fn new() -> Pass {
        Pass {
            hist: hist(),
            requests: 0,
            commands: 0,
            failed: 0,
            elapsed: Duration::ZERO,
        }
    }

    pub(super) fn add(&mut self, o: &Pass) {
        self.hist.add(&o.hist).expect("same bounds");
        self.requests += o.requests;
        self.commands += o.commands;
        self.failed += o.failed;
    }

    pub(super) fn rate(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The pass as a table row; `replicas`: copies of every write (see [`Row::replicas`]).
    pub(super) fn row(
        &self,
        system: &str,
        replicas: Option<u32>,
        mode: Mode,
        request: String,
    ) -> Row {
        let us = |q: f64| self.hist.value_at_quantile(q) as f64 / 1e3;
        Row {
            system: system.to_string(),
            mode,
            request,
            transfers_per_s: self.rate(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.hist.max() as f64 / 1e3,
            requests: self.requests,
            failed: self.failed,
            per_fsync: None,
            replicas,
            note: String::new(),
        }
    }

    pub(super) fn print(&self, label: &str, what: &str) {
        let ms = |q: f64| self.hist.value_at_quantile(q) as f64 / 1e3;
        println!(
            "  {label}: {:.0} {what}/s ({} requests, {} failed); per request p50 {} p99 {} p999 {} max {}",
            self.rate(),
            self.requests,
            self.failed,
            super::fmt_latency(ms(0.5)),
            super::fmt_latency(ms(0.99)),
            super::fmt_latency(ms(0.999)),
            super::fmt_latency(self.hist.max() as f64 / 1e3),
        );
    }
}

/// The kinds of work a pass sends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    Transfers,
    Orders,
    /// Half transfers, half orders.
    Mix,
}

/// One client's command generator: transfers between random accounts, and an order mix
/// (resting limit orders around the mid price, marketable IOC orders, cancels of its own
/// resting orders).
pub(crate) struct Gen {
    rng: Rng,
    accounts: u64,
    ids: Arc<AtomicU64>,
    /// Orders this client placed that may still rest (cancelled at random).
    resting: Vec<OrderId>,
}

impl Gen {
    /// A generator over accounts `1..=accounts` (see [`load`]), drawing transfer ids from
    /// `ids`.
    pub(crate) fn new(seed: u64, accounts: u64, ids: Arc<AtomicU64>) -> Gen {
        Gen {
            rng: Rng::new(seed),
            accounts,
            ids,
            resting: Vec::new(),
        }
    }

    fn transfer(&mut self) -> Command {
        let debit = 1 + self.rng.below(self.accounts);
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

    fn order(&mut self) -> Command {
        let roll = self.rng.below(100);
        if roll < 20 && !self.resting.is_empty() {
            let k = self.rng.below(self.resting.len() as u64) as usize;
            let order = self.resting.swap_remove(k);
            return Command::CancelOrder {
                market: MARKET,
                order,
            };
        }
        let side = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let marketable = roll >= 80;
        let offset = self.rng.below(PRICE_SPREAD) + 1;
        let price = match (side, marketable) {
            (Side::Buy, false) | (Side::Sell, true) => MID_PRICE - offset,
            (Side::Sell, false) | (Side::Buy, true) => MID_PRICE + offset,
        };
        Command::PlaceOrder(NewOrder {
            account: AccountId(1 + self.rng.below(self.accounts)),
            market: MARKET,
            side,
            order_type: OrderType::Limit,
            tif: if marketable {
                TimeInForce::Ioc
            } else {
                TimeInForce::Gtc
            },
            price: Price(price),
            qty: Qty(1 + self.rng.below(10)),
            post_only: false,
            client_order_id: 0,
            stp: SelfTradePrevention::CancelResting,
        })
    }

    pub(crate) fn next(&mut self, work: Work) -> Command {
        match work {
            Work::Transfers => self.transfer(),
            Work::Orders => self.order(),
            Work::Mix if self.rng.below(2) == 0 => self.transfer(),
            Work::Mix => self.order(),
        }
    }

    /// Notes an answer: a placed order may rest and be cancelled later.
    pub(crate) fn answered(&mut self, command: &Command, result: &Result<Accepted, impl Sized>) {
        if let (Command::PlaceOrder(o), Ok(Accepted::Order(id))) = (command, result) {
            if o.tif == TimeInForce::Gtc && self.resting.len() < 1_000 {
                self.resting.push(*id);
            }
        }
    }
}

pub(super) fn progress(label: &str, duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("  {prefix:<34} [{bar:30}] {elapsed:>3} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Ticks `bar` until `end`, showing the commands counted so far per second.
pub(super) async fn tick(bar: ProgressBar, start: Instant, end: Instant, done: Arc<AtomicU64>) {
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let e = start.elapsed();
        bar.set_position(e.as_millis() as u64);
        bar.set_message(format!(
            "{:.0}/s",
            done.load(Ordering::Relaxed) as f64 / e.as_secs_f64().max(1e-9)
        ));
    }
    bar.finish_and_clear();
}

/// What one client task of a closed loop sends: its next command, and what it learns from
/// each answer (orders that rest, to cancel later).
pub(super) trait Source: Send + 'static {
    /// The next command.
    fn next(&mut self) -> Command;
    /// The answer to `command`.
    fn answered(
        &mut self,
        command: &Command,
        result: &Result<Accepted, tradelog_client::Rejection>,
    );
}

/// Closed loop: `clients` tasks (task `c` sends what `source(c)` makes), each sends one
/// request of `batch` commands (one by one when 1) and waits for its answer, again and
/// again for `duration`.
pub(super) async fn closed_loop_of<S: Source>(
    conns: &[Client],
    clients: usize,
    duration: Duration,
    batch: usize,
    label: &str,
    source: impl Fn(usize) -> S,
) -> Result<Pass> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + duration;
    let ticker = tokio::spawn(tick(progress(label, duration), start, end, done.clone()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = conns[c % conns.len()].clone();
        let mut gen = source(c);
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut p = Pass::new();
            while Instant::now() < end {
                let t = Instant::now();
                let commands: Vec<Command> = (0..batch).map(|_| gen.next()).collect();
                let answers = if batch == 1 {
                    client.submit(commands[0].clone()).await.map(|a| vec![a])
                } else {
                    client.submit_batch(commands.clone()).await
                };
                match answers {
                    Ok(answers) => {
                        for (command, a) in commands.iter().zip(&answers) {
                            p.failed += a.result.is_err() as u64;
                            gen.answered(command, &a.result);
                        }
                    }
                    Err(_) => p.failed += batch as u64,
                }
                p.hist.record(t.elapsed().as_nanos() as u64).ok();
                p.requests += 1;
                p.commands += batch as u64;
                done.fetch_add(batch as u64, Ordering::Relaxed);
            }
            p
        }));
    }
    let mut total = Pass::new();
    for t in tasks {
        total.add(&t.await?);
    }
    total.elapsed = start.elapsed();
    ticker.await?;
    Ok(total)
}

/// One client task's commands of one kind of work.
struct WorkSource {
    gen: Gen,
    work: Work,
}

impl Source for WorkSource {
    fn next(&mut self) -> Command {
        self.gen.next(self.work)
    }

    fn answered(
        &mut self,
        command: &Command,
        result: &Result<Accepted, tradelog_client::Rejection>,
    ) {
        self.gen.answered(command, result);
    }
}

/// [`closed_loop_of`] with this section's generator: `work` from accounts `1..=accounts`.
async fn closed_loop(
    conns: &[Client],
    o: &Options,
    work: Work,
    batch: usize,
    ids: &Arc<AtomicU64>,
    label: &str,
    seed: u64,
) -> Result<Pass> {
    closed_loop_of(conns, o.clients, o.duration, batch, label, |c| WorkSource {
        gen: Gen {
            rng: Rng::new(seed ^ ((c as u64 + 1) << 20)),
            accounts: o.accounts,
            ids: ids.clone(),
            resting: Vec::new(),
        },
        work,
    })
    .await
}

/// Open loop: one transfer per request, sent at `rate` per second at fixed intervals
/// whatever the answers do (paced by [`pace`] on a blocking thread); each latency counts
/// from the request's scheduled start. Returns the pass and the pacer's lateness.
async fn open_loop(
    conns: &[Client],
    o: &Options,
    rate: f64,
    ids: &Arc<AtomicU64>,
    label: &str,
) -> Result<(Pass, Histogram<u64>)> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + o.duration;
    let ticker = tokio::spawn(tick(progress(label, o.duration), start, end, done.clone()));
    let mut gen = Gen {
        rng: Rng::new(99),
        accounts: o.accounts,
        ids: ids.clone(),
        resting: Vec::new(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, bool)>();
    let conns = conns.to_vec();
    let runtime = tokio::runtime::Handle::current();
    let pacer = tokio::task::spawn_blocking(move || {
        pace(rate, start, end, |k, intended| {
            let client = conns[k as usize % conns.len()].clone();
            let command = gen.transfer();
            let (tx, done) = (tx.clone(), done.clone());
            runtime.spawn(async move {
                let ok = matches!(client.submit(command).await, Ok(a) if a.result.is_ok());
                done.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send((intended.elapsed().as_nanos() as u64, ok));
            });
        })
    });
    let (_, lag) = pacer.await?;
    let mut p = Pass::new();
    while let Some((ns, ok)) = rx.recv().await {
        p.hist.record(ns).ok();
        p.requests += 1;
        p.commands += 1;
        p.failed += !ok as u64;
    }
    p.elapsed = o.duration;
    ticker.await?;
    Ok((p, lag))
}

/// Prints the pacer's lateness of an open-loop pass (included in its latencies).
pub(super) fn print_lag(lag: &Histogram<u64>) {
    let us = |q: f64| lag.value_at_quantile(q) as f64 / 1e3;
    println!(
        "    pacer lateness (included in the latencies): p50 {} p99 {} max {}",
        super::fmt_latency(us(0.5)),
        super::fmt_latency(us(0.99)),
        super::fmt_latency(lag.max() as f64 / 1e3),
    );
}

/// Loads the catalog (USD, BTC, market 1 on shard 0, fee account `accounts + 1`) and
/// `accounts` funded accounts.
pub(crate) async fn load(client: &Client, accounts: u64) -> Result<()> {
    let catalog = vec![
        Command::CreateAsset(Asset {
            id: USD,
            code: "USD".into(),
            scale: 2,
        }),
        Command::CreateAsset(Asset {
            id: BTC,
            code: "BTC".into(),
            scale: 0,
        }),
        Command::OpenAccount {
            account: AccountId(accounts + 1),
            owner: Principal(accounts + 1),
        },
    ];
    for c in catalog {
        client.submit(c).await?.into_receipt()?;
    }
    client
        .submit(Command::CreateMarket(MarketSpec {
            id: MARKET,
            base: BTC,
            quote: USD,
            lot_size: 1,
            tick_size: 1,
            min_qty: Qty(1),
            max_qty: Qty(1_000_000),
            maker_fee_bps: 1,
            taker_fee_bps: 2,
            fee_account: AccountId(accounts + 1),
            collar_bps: 0,
            shard: ShardId(0),
        }))
        .await?
        .into_receipt()?;
    let commands: Vec<Command> = (1..=accounts)
        .flat_map(|a| {
            [
                Command::OpenAccount {
                    account: AccountId(a),
                    owner: Principal(a),
                },
                Command::Deposit {
                    id: TransferId(2 * a),
                    account: AccountId(a),
                    asset: USD,
                    amount: Amount(FUNDING),
                },
                Command::Deposit {
                    id: TransferId(2 * a + 1),
                    account: AccountId(a),
                    asset: BTC,
                    amount: Amount(FUNDING),
                },
            ]
        })
        .collect();
    for chunk in commands.chunks(LOAD_BATCH_LEN) {
        for (k, a) in client
            .submit_batch(chunk.to_vec())
            .await?
            .into_iter()
            .enumerate()
        {
            if let Err(r) = a.result {
                bail!("loading: {:?} was rejected: {r}", chunk[k]);
            }
        }
    }
    Ok(())
}

/// The tradelog deployment a [`drive`] run talks to.
pub(super) struct Target {
    /// gRPC endpoints (`http://host:port`); the connections are spread over them in turn.
    pub endpoints: Vec<String>,
    /// The rows' system name.
    pub system: String,
    /// Copies of every write: 1 for one `tradelog serve`; the replicas of each shard's
    /// Raft group for a cluster.
    pub replicas: u32,
}

/// Loads the accounts through `target` and runs every pass against it (transfers one by
/// one, open loop at half of that, batched; then orders and the mix); returns the transfer
/// rows. The deployment must be running and empty; this function starts and stops nothing,
/// so a replicated cluster is measured by passing its endpoints (every node accepts
/// requests for any shard).
pub(super) async fn drive(target: &Target, o: &Options) -> Result<Vec<Row>> {
    let mut conns = Vec::new();
    for k in 0..CONNECTIONS {
        let endpoint = &target.endpoints[k % target.endpoints.len()];
        let mut c = ClientConfig::new(endpoint.clone());
        c.request_timeout_ms = 60_000;
        conns.push(
            Client::connect(c)
                .await
                .map_err(|e: ClientError| anyhow::anyhow!("connecting to {endpoint}: {e}"))?,
        );
    }
    let t = Instant::now();
    load(&conns[0], o.accounts).await?;
    println!(
        "  loaded {} accounts (open + 2 deposits each, in batches of {LOAD_BATCH_LEN}) in {:.2} s",
        o.accounts,
        t.elapsed().as_secs_f64()
    );
    let (system, replicas) = (target.system.as_str(), Some(target.replicas));
    let ids = Arc::new(AtomicU64::new(1 << 40));
    let mut rows = Vec::new();
    let single = closed_loop(
        &conns,
        o,
        Work::Transfers,
        1,
        &ids,
        "transfers one by one",
        7,
    )
    .await?;
    single.print(
        &format!("transfers one by one, {} clients", o.clients),
        "transfers",
    );
    rows.push(single.row(
        system,
        replicas,
        Mode::Single,
        format!("1 transfer, {} clients, closed loop", o.clients),
    ));
    let rate = single.rate() / 2.0;
    let (open, lag) = open_loop(&conns, o, rate, &ids, "transfers open loop").await?;
    open.print(
        &format!("transfers open loop at {rate:.0}/s (50% of max)"),
        "transfers",
    );
    print_lag(&lag);
    rows.push(open.row(
        system,
        replicas,
        Mode::Open,
        format!("1 transfer, open loop at {rate:.0}/s"),
    ));
    let batched = closed_loop(
        &conns,
        o,
        Work::Transfers,
        o.batch,
        &ids,
        "transfers batched",
        11,
    )
    .await?;
    batched.print(
        &format!("transfers batched, {} clients x {}", o.clients, o.batch),
        "transfers",
    );
    rows.push(batched.row(
        system,
        replicas,
        Mode::Batched,
        format!("{} transfers, {} clients, closed loop", o.batch, o.clients),
    ));
    for (work, what) in [
        (Work::Orders, "orders"),
        (Work::Mix, "commands (half transfers, half orders)"),
    ] {
        let label = if work == Work::Orders {
            "orders"
        } else {
            "mix"
        };
        let p = closed_loop(&conns, o, work, 1, &ids, &format!("{label} one by one"), 13).await?;
        p.print(&format!("{label} one by one, {} clients", o.clients), what);
        let p = closed_loop(
            &conns,
            o,
            work,
            o.batch,
            &ids,
            &format!("{label} batched"),
            17,
        )
        .await?;
        p.print(
            &format!("{label} batched, {} clients x {}", o.clients, o.batch),
            what,
        );
    }
    println!(
        "  (orders: 60% resting limit orders within {PRICE_SPREAD} ticks of the mid, 20% marketable IOC, \
         20% cancels of the client's own resting orders; failed = rejected, e.g. cancels of orders already filled)"
    );
    Ok(rows)
}

/// Runs the server section: starts one `tradelog serve`, [`drive`]s it, stops it and
/// verifies its data directory; returns the transfer rows for the comparison tables.
pub fn run(o: &Options) -> Result<Vec<Row>> {
    if o.accounts < 2 {
        bail!("need at least 2 accounts");
    }
    let (base, how) = super::durable::base_dir(o.data_dir.as_deref())?;
    let tmp = tempfile::Builder::new()
        .prefix("tradelog-bench-server-")
        .tempdir_in(&base)
        .with_context(|| format!("create a temporary directory in {}", base.display()))?;
    println!(
        "\n== server: tradelog serve ({} shard(s), data in {}, chosen from {how}) over gRPC on loopback, \
         {} accounts, {} clients on {CONNECTIONS} connections, {:.1} s per pass ==",
        o.shards,
        tmp.path().display(),
        o.accounts,
        o.clients,
        o.duration.as_secs_f64()
    );
    let server = ServerProcess::start(&tmp.path().join("data"), o.shards)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()?;
    let target = Target {
        endpoints: vec![server.grpc.clone()],
        system: format!("tradelog over gRPC, {} shard(s)", o.shards),
        replicas: 1,
    };
    let rows = runtime.block_on(drive(&target, o))?;
    drop(runtime);
    server.stop()?;
    // The server's data directory must verify after a clean stop: every record checksummed
    // and chained, every snapshot reproduced by replay.
    let status = Process::new(std::env::current_exe()?)
        .arg("verify")
        .arg(tmp.path().join("data"))
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("tradelog verify failed on the benchmark's data directory");
    }
    println!("  after a clean stop: tradelog verify OK on the server's data directory");
    Ok(rows)
}

/// A free loopback port (bound then released; the cluster's nodes bind it right after).
fn free_port() -> Result<u16> {
    Ok(tradelog_server::ports::free_loopback_port()?)
}

/// Runs every pass against a replicated cluster of `nodes` `tradelog serve --node-id`
/// processes on loopback (every shard a Raft group with a replica on each), with the
/// clients' connections spread over all nodes; returns the transfer rows.
pub fn run_cluster(o: &Options, nodes: u32) -> Result<Vec<Row>> {
    if o.accounts < 2 {
        bail!("need at least 2 accounts");
    }
    let (base, how) = super::durable::base_dir(o.data_dir.as_deref())?;
    let tmp = tempfile::Builder::new()
        .prefix("tradelog-bench-cluster-")
        .tempdir_in(&base)
        .with_context(|| format!("create a temporary directory in {}", base.display()))?;
    println!(
        "\n== cluster: {nodes} tradelog serve --node-id processes ({} shard(s), each a Raft group \
         of {nodes} replicas, data in {}, chosen from {how}) over gRPC on loopback, {} accounts, \
         {} clients on {CONNECTIONS} connections spread over the nodes, {:.1} s per pass ==",
        o.shards,
        tmp.path().display(),
        o.accounts,
        o.clients,
        o.duration.as_secs_f64()
    );
    let mut ports = Vec::new();
    for _ in 0..nodes {
        ports.push(free_port()?);
    }
    let mut cluster = crate::cluster::LocalCluster::start(tmp.path(), o.shards, &ports, None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()?;
    runtime.block_on(cluster.wait_ready())?;
    let target = Target {
        endpoints: cluster.endpoints(),
        system: format!("tradelog over gRPC, {} shard(s)", o.shards),
        replicas: nodes,
    };
    let rows = runtime.block_on(drive(&target, o))?;
    let failover = runtime.block_on(failover(&mut cluster, &target.endpoints))?;
    println!(
        "  failover: the leader of shard 0 (node {}) killed with SIGKILL under a one-by-one \
         transfer load; the next transfer committed {:.2} s later ({} transfers before the \
         kill, {} after, the client retrying with the same id)",
        failover.leader,
        failover.elapsed.as_secs_f64(),
        failover.before,
        failover.after
    );
    drop(runtime);
    cluster.stop()?;
    Ok(rows)
}

/// What [`failover`] measured.
struct Failover {
    leader: u64,
    elapsed: Duration,
    before: u64,
    after: u64,
}

/// Sends transfers one at a time through a cluster client, SIGKILLs the leader of shard 0,
/// and measures the time from the kill until a transfer is committed again (each transfer
/// resent with its id until answered, as a client does across a failover).
async fn failover(
    cluster: &mut crate::cluster::LocalCluster,
    endpoints: &[String],
) -> Result<Failover> {
    let mut config = ClientConfig::cluster(endpoints.iter().cloned());
    config.request_timeout_ms = 30_000;
    let client = Client::new(config)?;
    let status = client.cluster_status().await?;
    let leader = status
        .shards
        .first()
        .and_then(|s| s.leader)
        .context("shard 0 has no leader")?;
    // Two loaded accounts of shard 0 (the transfer is proposed on the debit's shard).
    let placement = tradelog_domain::routing::Placement::new(status.shards.len() as u32);
    let mut on_shard_0 = (1..)
        .map(AccountId)
        .filter(|a| placement.account_shard(*a) == ShardId(0));
    let (debit, credit) = (
        on_shard_0.next().expect("an account on shard 0"),
        on_shard_0.next().expect("an account on shard 0"),
    );
    let mut id = 1u64 << 52;
    let send = |id: u64| {
        let client = client.clone();
        async move {
            let spec = TransferSpec {
                id: TransferId(id),
                debit,
                credit,
                asset: USD,
                amount: Amount(1),
                balancing: false,
            };
            let started = Instant::now();
            loop {
                match client.submit(Command::Transfer(spec.clone())).await {
                    Ok(_) => return Ok(()),
                    Err(e) if started.elapsed() < FAILOVER_WAIT => {
                        tracing::debug!(error = %e, "transfer {id} not answered yet");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => {
                        return Err(anyhow::anyhow!("no answer within {FAILOVER_WAIT:?}: {e}"))
                    }
                }
            }
        }
    };
    let mut before = 0;
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(500) {
        id += 1;
        send(id).await?;
        before += 1;
    }
    cluster.kill(leader)?;
    let killed = Instant::now();
    id += 1;
    send(id).await?;
    let elapsed = killed.elapsed();
    let mut after = 1;
    while killed.elapsed() < elapsed + Duration::from_millis(500) {
        id += 1;
        send(id).await?;
        after += 1;
    }
    Ok(Failover {
        leader,
        elapsed,
        before,
        after,
    })
}

/// Longest wait for a transfer to be answered during the failover measurement.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);
