//! `tradelog bench --only scaling`: how throughput changes as shards and node processes
//! grow, with a varied share of cross-shard commands, and the end-to-end latency of a
//! cross-shard transfer and order next to their single-shard counterparts.
//!
//! Each deployment (one `tradelog serve`, or a cluster of `tradelog serve --node-id`
//! processes on loopback, every shard a Raft group with a replica on every node) is started
//! empty, loaded with funded accounts (account `a` lives on shard `a % shards`) and one
//! market per shard (market `s + 1` on shard `s`), then driven closed-loop for each
//! cross-shard share: transfers batched, orders batched and transfers one by one. A
//! cross-shard transfer debits an account on one shard and credits one on another; a
//! cross-shard order is placed by an account on one shard in a market on another (hold ->
//! match -> settle through the shards' logs). The results are printed as a table and written
//! as `scaling.csv` and `scaling.svg` (one panel per workload, commands/s against shards,
//! a line per node count and cross-shard share).
//!
//! The latency probe runs on its own small deployment per node count (2 shards, a few
//! accounts) with one command at a time: the answer's latency, and the time until a
//! subscriber to the node's event stream sees the workflow complete (the credit and the
//! finalized debit of a transfer; the settlement of an order on its account's shard).

use super::durable::Rng;
use super::server::{closed_loop_of, load, Pass, ServerProcess, Source};
use super::{fmt_latency, hist};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tradelog_client::{Client, ClientConfig, EventStream, Position};
use tradelog_domain::*;

/// Options of the scaling section.
pub struct Options {
    /// Accounts opened and funded in every deployment.
    pub accounts: u64,
    /// Concurrent clients in the closed-loop passes.
    pub clients: usize,
    /// Commands per request in the batched passes.
    pub batch: usize,
    /// Length of each pass.
    pub duration: Duration,
    /// Shard counts to run.
    pub shards: Vec<u32>,
    /// Node processes: 1 is one `tradelog serve`, more a replicated cluster.
    pub nodes: Vec<u32>,
    /// Percentages of cross-shard commands.
    pub cross_pct: Vec<u32>,
    /// Commands sent one at a time per path in the latency probe.
    pub probe_samples: u64,
    /// Where the temporary data directories go.
    pub data_dir: Option<PathBuf>,
    /// Where `scaling.csv` and `scaling.svg` are written.
    pub out_dir: PathBuf,
}

/// Connections the clients share in each deployment.
const CONNECTIONS: usize = 8;
const USD: AssetId = AssetId(1);
const MID_PRICE: u64 = 10_000;
const PRICE_SPREAD: u64 = 50;
/// Orders a client remembers as possibly resting (for cancels).
const RESTING_MAX: usize = 1_000;
/// Longest wait for a probe command's workflow to complete.
const PROBE_WAIT: Duration = Duration::from_secs(10);

/// The workloads of a deployment's passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    TransfersBatched,
    OrdersBatched,
    TransfersSingle,
}

impl Workload {
    const ALL: [Workload; 3] = [
        Workload::TransfersBatched,
        Workload::OrdersBatched,
        Workload::TransfersSingle,
    ];

    fn label(self) -> &'static str {
        match self {
            Workload::TransfersBatched => "transfers, batched",
            Workload::OrdersBatched => "orders, batched",
            Workload::TransfersSingle => "transfers, one by one",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Workload::TransfersBatched => "transfers_batched",
            Workload::OrdersBatched => "orders_batched",
            Workload::TransfersSingle => "transfers_single",
        }
    }
}

/// One measured point.
#[derive(Clone, Debug)]
struct Point {
    nodes: u32,
    shards: u32,
    cross_pct: u32,
    work: Workload,
    per_s: f64,
    p99_us: f64,
    failed: u64,
    commands: u64,
}

/// Commands of one client: transfers and an order mix, a share of them cross-shard.
struct Gen {
    rng: Rng,
    accounts: u64,
    shards: u64,
    cross_pct: u64,
    ids: Arc<AtomicU64>,
    resting: Vec<(MarketId, OrderId)>,
}

impl Gen {
    fn shard_of(&self, a: u64) -> u64 {
        a % self.shards
    }

    fn cross(&mut self) -> bool {
        self.shards > 1 && self.rng.below(100) < self.cross_pct
    }

    /// An account other than `not` on shard `shard` (accounts are spread by id).
    fn account_on(&mut self, shard: u64, not: u64) -> u64 {
        loop {
            let k = self.rng.below(self.accounts.div_ceil(self.shards));
            let a = k * self.shards + shard;
            if (1..=self.accounts).contains(&a) && a != not {
                return a;
            }
        }
    }

    /// A shard other than `s`.
    fn other_shard(&mut self, s: u64) -> u64 {
        (s + 1 + self.rng.below(self.shards - 1)) % self.shards
    }

    fn transfer(&mut self) -> Command {
        let debit = 1 + self.rng.below(self.accounts);
        let home = self.shard_of(debit);
        let to = if self.cross() {
            self.other_shard(home)
        } else {
            home
        };
        let credit = self.account_on(to, debit);
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
            let (market, order) = self.resting.swap_remove(k);
            return Command::CancelOrder { market, order };
        }
        let account = 1 + self.rng.below(self.accounts);
        let home = self.shard_of(account);
        let shard = if self.cross() {
            self.other_shard(home)
        } else {
            home
        };
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
            account: AccountId(account),
            market: market_of(shard as u32),
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

    fn answered(&mut self, command: &Command, result: &Result<Accepted, impl Sized>) {
        if let (Command::PlaceOrder(o), Ok(Accepted::Order(id))) = (command, result) {
            if o.tif == TimeInForce::Gtc && self.resting.len() < RESTING_MAX {
                self.resting.push((o.market, *id));
            }
        }
    }
}

/// The market of shard `s`.
fn market_of(s: u32) -> MarketId {
    MarketId(s + 1)
}

/// A running deployment: one server process or a local cluster; stopped when dropped.
enum Deployment {
    Single(ServerProcess),
    Cluster(crate::cluster::LocalCluster),
}

impl Deployment {
    fn start(dir: &Path, nodes: u32, shards: u32) -> Result<Deployment> {
        if nodes == 1 {
            return Ok(Deployment::Single(ServerProcess::start(
                &dir.join("data"),
                shards,
            )?));
        }
        let mut ports = Vec::new();
        for _ in 0..nodes {
            // gRPC on the port, HTTP on the next.
            ports.push(tradelog_server::ports::free_loopback_block(2)?);
        }
        Ok(Deployment::Cluster(crate::cluster::LocalCluster::start(
            dir, shards, &ports, None,
        )?))
    }

    async fn ready(&self) -> Result<()> {
        match self {
            Deployment::Single(_) => Ok(()),
            Deployment::Cluster(c) => c.wait_ready().await,
        }
    }

    fn endpoints(&self) -> Vec<String> {
        match self {
            Deployment::Single(s) => vec![s.grpc.clone()],
            Deployment::Cluster(c) => c.endpoints(),
        }
    }

    fn stop(self) -> Result<()> {
        match self {
            Deployment::Single(s) => s.stop(),
            Deployment::Cluster(mut c) => c.stop(),
        }
    }

    /// Clients routing every command to its shard's leader.
    async fn clients(&self) -> Result<Vec<Client>> {
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut c = ClientConfig::cluster(self.endpoints());
            c.request_timeout_ms = 60_000;
            conns.push(Client::connect(c).await?);
        }
        Ok(conns)
    }
}

/// Loads the accounts (see [`load`]) and markets 2..=shards on shards 1.. (market 1 on
/// shard 0 comes with [`load`]).
async fn load_all(client: &Client, accounts: u64, shards: u32) -> Result<()> {
    load(client, accounts).await?;
    for s in 1..shards {
        client
            .submit(Command::CreateMarket(MarketSpec {
                id: market_of(s),
                base: AssetId(2),
                quote: USD,
                lot_size: 1,
                tick_size: 1,
                min_qty: Qty(1),
                max_qty: Qty(1_000_000),
                maker_fee_bps: 1,
                taker_fee_bps: 2,
                fee_account: AccountId(accounts + 1),
                collar_bps: 0,
                shard: ShardId(s),
            }))
            .await?
            .into_receipt()?;
    }
    Ok(())
}

/// One client task's commands of one workload.
struct WorkSource {
    gen: Gen,
    work: Workload,
}

impl Source for WorkSource {
    fn next(&mut self) -> Command {
        match self.work {
            Workload::OrdersBatched => self.gen.order(),
            _ => self.gen.transfer(),
        }
    }

    fn answered(
        &mut self,
        command: &Command,
        result: &Result<Accepted, tradelog_client::Rejection>,
    ) {
        self.gen.answered(command, result);
    }
}

/// Closed loop ([`closed_loop_of`]): `clients` tasks each send a request of `batch`
/// commands (one for the one-by-one workload) and wait for its answer, again and again
/// for `duration`.
async fn closed_loop(
    conns: &[Client],
    o: &Options,
    shards: u32,
    cross_pct: u32,
    work: Workload,
    ids: &Arc<AtomicU64>,
    label: &str,
) -> Result<Pass> {
    let batch = match work {
        Workload::TransfersSingle => 1,
        _ => o.batch,
    };
    closed_loop_of(conns, o.clients, o.duration, batch, label, |c| WorkSource {
        gen: Gen {
            rng: Rng::new(0x5CA1E ^ ((c as u64 + 1) << 20) ^ u64::from(cross_pct)),
            accounts: o.accounts,
            shards: shards.into(),
            cross_pct: cross_pct.into(),
            ids: ids.clone(),
            resting: Vec::new(),
        },
        work,
    })
    .await
}

/// Runs the scaling section: every deployment, every share, every workload; then the
/// latency probe; prints the results and writes the CSV and the plot.
pub fn run(o: &Options) -> Result<()> {
    if o.accounts < 4 {
        bail!("need at least 4 accounts");
    }
    if o.shards.is_empty() || o.nodes.is_empty() || o.cross_pct.is_empty() {
        bail!("--scale-shards, --scale-nodes and --cross-pct each need at least one value");
    }
    if let Some(p) = o.cross_pct.iter().find(|p| **p > 100) {
        bail!("--cross-pct {p}: a share is at most 100");
    }
    if let Some(n) = o.nodes.iter().find(|n| **n == 0 || **n == 2) {
        bail!("--scale-nodes {n}: use 1 (one server) or 3 and more (a cluster that survives a node's loss)");
    }
    let (base, how) = super::durable::base_dir(o.data_dir.as_deref())?;
    println!(
        "\n== scaling: shards {:?} x node processes {:?} x cross-shard share {:?}%, {} accounts, \
         {} clients on {CONNECTIONS} connections routed to the shards' leaders, {:.1} s per pass \
         (data in {}, chosen from {how}) ==",
        o.shards,
        o.nodes,
        o.cross_pct,
        o.accounts,
        o.clients,
        o.duration.as_secs_f64(),
        base.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()?;
    let mut points = Vec::new();
    for &nodes in &o.nodes {
        for &shards in &o.shards {
            let tmp = tempfile::Builder::new()
                .prefix("tradelog-bench-scale-")
                .tempdir_in(&base)
                .with_context(|| format!("create a temporary directory in {}", base.display()))?;
            let d = Deployment::start(tmp.path(), nodes, shards)?;
            let measured = runtime.block_on(async {
                d.ready().await?;
                let conns = d.clients().await?;
                let t = Instant::now();
                load_all(&conns[0], o.accounts, shards).await?;
                println!(
                    "  {nodes} node(s), {shards} shard(s): loaded {} accounts and {shards} market(s) in {:.2} s",
                    o.accounts,
                    t.elapsed().as_secs_f64()
                );
                let ids = Arc::new(AtomicU64::new(1 << 40));
                let mut out = Vec::new();
                // One shard has no cross-shard commands: one share is enough.
                let shares: Vec<u32> = if shards == 1 { vec![0] } else { o.cross_pct.clone() };
                for &cross_pct in &shares {
                    for work in Workload::ALL {
                        let label = format!("{}n {}s {cross_pct}% {}", nodes, shards, work.label());
                        let p = closed_loop(&conns, o, shards, cross_pct, work, &ids, &label).await?;
                        let point = Point {
                            nodes,
                            shards,
                            cross_pct,
                            work,
                            per_s: p.rate(),
                            p99_us: p.hist.value_at_quantile(0.99) as f64 / 1e3,
                            failed: p.failed,
                            commands: p.commands,
                        };
                        println!(
                            "  {:>2} node(s) {:>2} shard(s) {:>3}% cross  {:<22} {:>10.0}/s  p99 per request {:>9}  ({} of {} rejected or failed)",
                            nodes,
                            shards,
                            cross_pct,
                            work.label(),
                            point.per_s,
                            fmt_latency(point.p99_us),
                            point.failed,
                            point.commands
                        );
                        out.push(point);
                    }
                }
                anyhow::Ok(out)
            });
            let stopped = d.stop();
            let measured = measured?;
            stopped?;
            points.extend(measured);
        }
    }
    // One shard has no cross-shard work: its point stands for every share.
    let mut all = Vec::new();
    for p in &points {
        if p.shards == 1 {
            for &c in &o.cross_pct {
                all.push(Point {
                    cross_pct: c,
                    ..p.clone()
                });
            }
        } else {
            all.push(p.clone());
        }
    }
    all.sort_by_key(|p| (p.nodes, p.shards, p.cross_pct, p.work));
    print_table(&all, o);
    std::fs::create_dir_all(&o.out_dir)
        .with_context(|| format!("creating {}", o.out_dir.display()))?;
    let csv = o.out_dir.join("scaling.csv");
    write_csv(&all, &csv)?;
    let svg = o.out_dir.join("scaling.svg");
    plot(&all, o, &svg)?;
    println!(
        "  wrote {} and {} (commands/s against shards, a line per node count and cross-shard share)",
        csv.display(),
        svg.display()
    );
    for &nodes in &o.nodes {
        let tmp = tempfile::Builder::new()
            .prefix("tradelog-bench-probe-")
            .tempdir_in(&base)
            .with_context(|| format!("create a temporary directory in {}", base.display()))?;
        let d = Deployment::start(tmp.path(), nodes, 2)?;
        let r = runtime.block_on(async {
            d.ready().await?;
            probe(&d, nodes, o.probe_samples).await
        });
        let stopped = d.stop();
        r?;
        stopped?;
    }
    drop(runtime);
    Ok(())
}

/// The throughput table: a row per node count, workload and share; a column per shard count.
fn print_table(points: &[Point], o: &Options) {
    let mut shards = o.shards.clone();
    shards.sort_unstable();
    shards.dedup();
    let header: Vec<String> = shards.iter().map(|s| format!("{s} shard(s)")).collect();
    println!(
        "\n  commands/s by shard count ({} clients; batched: {} commands per request)",
        o.clients, o.batch
    );
    println!(
        "  {:<6} {:<22} {:>6}  {}",
        "nodes",
        "workload",
        "cross",
        header
            .iter()
            .map(|h| format!("{h:>12}"))
            .collect::<String>()
    );
    let mut rows: BTreeMap<(u32, Workload, u32), BTreeMap<u32, f64>> = BTreeMap::new();
    for p in points {
        rows.entry((p.nodes, p.work, p.cross_pct))
            .or_default()
            .insert(p.shards, p.per_s);
    }
    for ((nodes, work, cross), by_shards) in rows {
        let cells: String = shards
            .iter()
            .map(|s| match by_shards.get(s) {
                Some(r) => format!("{:>12.0}", r),
                None => format!("{:>12}", "-"),
            })
            .collect();
        println!("  {:<6} {:<22} {:>5}%  {cells}", nodes, work.label(), cross);
    }
}

fn write_csv(points: &[Point], path: &Path) -> Result<()> {
    let mut s = String::from(
        "nodes,shards,cross_pct,workload,commands_per_s,p99_request_us,failed,commands\n",
    );
    for p in points {
        s.push_str(&format!(
            "{},{},{},{},{:.0},{:.0},{},{}\n",
            p.nodes,
            p.shards,
            p.cross_pct,
            p.work.key(),
            p.per_s,
            p.p99_us,
            p.failed,
            p.commands
        ));
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

/// One panel per workload: commands/s (thousands) against the shard count, a line per
/// node count and cross-shard share.
fn plot(points: &[Point], o: &Options, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1500, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let panels = root.split_evenly((1, Workload::ALL.len()));
    let mut shards = o.shards.clone();
    shards.sort_unstable();
    shards.dedup();
    let x_max = *shards.last().expect("at least one shard count");
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
    ];
    for (panel, work) in panels.iter().zip(Workload::ALL) {
        let mine: Vec<&Point> = points.iter().filter(|p| p.work == work).collect();
        let y_max = mine.iter().map(|p| p.per_s / 1e3).fold(1.0_f64, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(work.label(), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0u32..x_max + 1, 0f64..y_max)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("shards")
            .y_desc("thousand commands/s")
            .x_labels(x_max as usize + 2)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut lines: BTreeMap<(u32, u32), Vec<(u32, f64)>> = BTreeMap::new();
        for p in &mine {
            lines
                .entry((p.nodes, p.cross_pct))
                .or_default()
                .push((p.shards, p.per_s / 1e3));
        }
        for (k, ((nodes, cross), mut line)) in lines.into_iter().enumerate() {
            line.sort_by_key(|(s, _)| *s);
            let color = palette[k % palette.len()];
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(format!("{nodes} node(s), {cross}% cross"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    line.iter()
                        .map(|(x, y)| Circle::new((*x, *y), 3, color.filled())),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// When a subscriber saw each workflow's completion, by key.
#[derive(Default)]
struct Seen {
    at: Mutex<BTreeMap<(u8, u64), Instant>>,
    wake: tokio::sync::Notify,
}

const CREDITED: u8 = 0;
const POSTED: u8 = 1;
const SETTLED: u8 = 2;

impl Seen {
    async fn wait(&self, key: (u8, u64)) -> Result<Instant> {
        let deadline = Instant::now() + PROBE_WAIT;
        loop {
            let woken = self.wake.notified();
            if let Some(t) = self.at.lock().expect("not poisoned").get(&key) {
                return Ok(*t);
            }
            if tokio::time::timeout_at(deadline.into(), woken)
                .await
                .is_err()
            {
                bail!("the subscriber never saw {key:?} within {PROBE_WAIT:?}");
            }
        }
    }
}

/// Latencies of one path of the probe.
struct Probe {
    answer: hdrhistogram::Histogram<u64>,
    done: hdrhistogram::Histogram<u64>,
}

impl Probe {
    fn new() -> Probe {
        Probe {
            answer: hist(),
            done: hist(),
        }
    }

    fn print(&self, label: &str, done: &str) {
        let q = |h: &hdrhistogram::Histogram<u64>, q: f64| {
            fmt_latency(h.value_at_quantile(q) as f64 / 1e3)
        };
        println!(
            "  {label:<34} answer p50 {:>9} p99 {:>9}   {done:<26} p50 {:>9} p99 {:>9}   (n={})",
            q(&self.answer, 0.5),
            q(&self.answer, 0.99),
            q(&self.done, 0.5),
            q(&self.done, 0.99),
            self.answer.len()
        );
    }
}

/// The latency probe on a fresh 2-shard deployment: transfers and marketable orders one
/// at a time, within a shard and across shards, timed to the answer and to the moment a
/// subscriber (on node 1) sees the workflow complete.
async fn probe(d: &Deployment, nodes: u32, samples: u64) -> Result<()> {
    let conns = d.clients().await?;
    let c = &conns[0];
    // Accounts 1..=8 (odd on shard 1, even on shard 0), the fee account 9, markets 1
    // (shard 0) and 2 (shard 1).
    load_all(c, 8, 2).await?;
    let seen = Arc::new(Seen::default());
    let sub = Client::connect(ClientConfig::new(d.endpoints()[0].clone())).await?;
    let mut stream = sub.subscribe(EventStream::All, Position::default()).await?;
    let s = seen.clone();
    let listener = tokio::spawn(async move {
        while let Some(page) = stream.next().await {
            let Ok(page) = page else { break };
            let now = Instant::now();
            let mut at = s.at.lock().expect("not poisoned");
            for e in &page.events {
                let key = match &e.event {
                    Event::TransferCredited { id, .. } => (CREDITED, id.0),
                    Event::TransferPosted { id, .. } => (POSTED, id.0),
                    Event::Settled { order, .. } => (SETTLED, order.0),
                    _ => continue,
                };
                at.entry(key).or_insert(now);
            }
            drop(at);
            s.wake.notify_waiters();
        }
    });
    let (home0, home0b, home1) = (AccountId(2), AccountId(4), AccountId(3));
    let mut id = 1u64 << 50;
    let mut transfer = |to: AccountId| {
        id += 1;
        TransferSpec {
            id: TransferId(id),
            debit: home0,
            credit: to,
            asset: USD,
            amount: Amount(1),
            balancing: false,
        }
    };
    let (mut local_t, mut cross_t, mut credit_t) = (Probe::new(), Probe::new(), Probe::new());
    for k in 0..2 * samples {
        let cross = k % 2 == 1;
        let spec = transfer(if cross { home1 } else { home0b });
        let t = Instant::now();
        c.submit(Command::Transfer(spec.clone()))
            .await?
            .into_receipt()?;
        let answered = t.elapsed();
        let posted = seen.wait((POSTED, spec.id.0)).await?;
        let p = if cross { &mut cross_t } else { &mut local_t };
        p.answer.record(answered.as_nanos() as u64).ok();
        p.done.record((posted - t).as_nanos() as u64).ok();
        if cross {
            // The credit shows before the debit side is finalized.
            let credited = seen.wait((CREDITED, spec.id.0)).await?;
            credit_t.answer.record(answered.as_nanos() as u64).ok();
            credit_t.done.record((credited - t).as_nanos() as u64).ok();
        }
    }
    let (mut local_o, mut cross_o) = (Probe::new(), Probe::new());
    // Maker: account 5 (shard 1) rests a sell of 1 on market 2 (shard 1); the taker buys
    // it: account 7 (shard 1, same shard) or account 6 (shard 0, across).
    for k in 0..2 * samples {
        let cross = k % 2 == 1;
        let maker = order(AccountId(5), Side::Sell, TimeInForce::Gtc);
        c.submit(Command::PlaceOrder(maker)).await?.into_receipt()?;
        let taker = order(
            if cross { AccountId(6) } else { AccountId(7) },
            Side::Buy,
            TimeInForce::Ioc,
        );
        let t = Instant::now();
        let r = c.submit(Command::PlaceOrder(taker)).await?.into_receipt()?;
        let answered = t.elapsed();
        let Some(oid) = r.order_id() else {
            bail!("the taker order was not given an id: {r:?}");
        };
        let settled = seen.wait((SETTLED, oid.0)).await?;
        let p = if cross { &mut cross_o } else { &mut local_o };
        p.answer.record(answered.as_nanos() as u64).ok();
        p.done.record((settled - t).as_nanos() as u64).ok();
    }
    listener.abort();
    println!(
        "\n  end-to-end latency, one command at a time, {nodes} node process(es), 2 shards \
         (completion as seen by a subscriber on node 1):"
    );
    local_t.print("transfer within a shard", "posted");
    credit_t.print("transfer across shards", "credited");
    cross_t.print("transfer across shards", "debit finalized");
    local_o.print("marketable order within a shard", "settled");
    cross_o.print("marketable order across shards", "settled on its account");
    Ok(())
}

/// A one-lot order at the mid on market 2.
fn order(account: AccountId, side: Side, tif: TimeInForce) -> NewOrder {
    NewOrder {
        account,
        market: market_of(1),
        side,
        order_type: OrderType::Limit,
        tif,
        price: Price(MID_PRICE),
        qty: Qty(1),
        post_only: false,
        client_order_id: 0,
        stp: SelfTradePrevention::CancelResting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(shards: u64, cross_pct: u64) -> Gen {
        Gen {
            rng: Rng::new(7),
            accounts: 1_000,
            shards,
            cross_pct,
            ids: Arc::new(AtomicU64::new(1)),
            resting: Vec::new(),
        }
    }

    /// (cross-shard, total) over 10,000 transfers and 10,000 placed orders.
    fn shares(g: &mut Gen) -> ((u64, u64), (u64, u64)) {
        let (mut t, mut o) = ((0, 0), (0, 0));
        for _ in 0..10_000 {
            let Command::Transfer(x) = g.transfer() else {
                panic!("not a transfer")
            };
            assert_ne!(x.debit, x.credit);
            assert!((1..=1_000).contains(&x.credit.0), "{x:?}");
            t.0 += (x.debit.0 % g.shards != x.credit.0 % g.shards) as u64;
            t.1 += 1;
            if let Command::PlaceOrder(n) = g.order() {
                o.0 += (u64::from(n.market.0 - 1) != n.account.0 % g.shards) as u64;
                o.1 += 1;
                assert!(n.market.0 >= 1 && u64::from(n.market.0) <= g.shards);
            }
        }
        (t, o)
    }

    #[test]
    fn the_cross_shard_share_is_the_one_asked_for() {
        let ((t, _), (o, _)) = shares(&mut gen(4, 0));
        assert_eq!((t, o), (0, 0));
        let ((t, tn), (o, on)) = shares(&mut gen(4, 100));
        assert_eq!((t, o), (tn, on));
        let ((t, tn), (o, on)) = shares(&mut gen(8, 10));
        assert!((800..1_200).contains(&t), "{t} of {tn}");
        assert!((o * 100 / on).abs_diff(10) <= 2, "{o} of {on}");
        // One shard: nothing can cross, whatever the share.
        let ((t, _), (o, _)) = shares(&mut gen(1, 50));
        assert_eq!((t, o), (0, 0));
    }
}
