//! `tradelog bench`: the engine, in-process, single thread; and, on request
//! (`--only durable,server,cluster,postgres,etcd`), a durable node on disk, a real `tradelog serve`
//! driven over gRPC, PostgreSQL (the single-node baseline) and etcd (the replicated-write
//! baseline), side by side.
//!
//! Throughput passes run without per-command timing; latency passes time every command
//! with `Instant` into an HDR histogram (the timer itself costs ~20-40 ns, included in the
//! figures). Nothing here asserts a speed: it measures and prints.
//!
//! The default run (no `--only`) is the in-memory engine sections only; `durable` (a node
//! with its logs on disk, `bench_durable.rs`), `server` (`tradelog serve` over gRPC with
//! `tradelog-client`, `bench_server.rs`) and `postgres` (`scripts/bench-postgres.sh`,
//! `bench_pg.rs`) are opt-in and end with one table of the systems and their ratios;
//! `etcd` (`scripts/bench-etcd.sh`, `bench_etcd.rs`: a 3-member cluster on loopback) is
//! opt-in too and ends with the replicated-writes table, where tradelog's rows come from
//! the `server` section (`bench_server::drive` takes the endpoints of any running
//! deployment, one node or a cluster). `scaling` (`bench_scale.rs`) measures throughput as
//! shards (1, 2, 4, 8) and node processes (1, 3, 6) grow with 0, 10 and 50% cross-shard
//! commands, writes `scaling.csv` and the plot `scaling.svg`, and probes the end-to-end
//! latency of cross-shard transfers and orders.

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tradelog_domain::*;
use tradelog_engine::{Applied, Engine, Input, Placement};

/// Commands per batch in the batched passes (a Raft entry's worth).
const BATCH_LEN: usize = 1_024;
/// One-by-one and batched passes alternate this many times, so that both see the same
/// state sizes (tables and books grow during a run).
const ROUNDS: u64 = 10;
use tradelog_matching::{Book, MatchOutput};

#[path = "bench_durable.rs"]
mod durable;
#[path = "bench_etcd.rs"]
mod etcd;
#[path = "bench_pg.rs"]
mod pg;
#[path = "bench_scale.rs"]
mod scale;
#[path = "bench_server.rs"]
pub(crate) mod server;

/// Sections run when `--only` is not given.
const DEFAULT_SECTIONS: [&str; 4] = ["transfers", "orders", "book", "memory"];
/// Opt-in sections.
/// Node processes of the `cluster` section (every shard a Raft group of this many replicas).
const CLUSTER_NODES: u32 = 3;
const EXTRA_SECTIONS: [&str; 6] = [
    "durable", "server", "cluster", "postgres", "etcd", "scaling",
];

/// Options of `tradelog bench`.
#[derive(clap::Args)]
#[command(
    long_about = "Measures the engine in-process on one core (transfers/s, orders/s, latency \
        percentiles, memory per resting order) and, with --only durable,server,postgres, \
        the durable node in-process and a real server over gRPC against PostgreSQL in the \
        same run (closed and open loop, transfers, orders and a mix, one by one and \
        batched); with --only cluster, the same passes against a 3-node replicated cluster \
        (every shard a Raft group of 3 replicas, clients spread over the nodes); with --only \
        etcd, a 3-member etcd cluster on loopback as the replicated-write baseline (the same \
        transfers as read-check-write Txns); with --only scaling, throughput as shards and \
        node processes grow with a varied share of cross-shard commands (a table, \
        scaling.csv and the plot scaling.svg) and the end-to-end latency of cross-shard \
        transfers and orders.",
    after_help = "Examples:\n  tradelog bench --quick\n  tradelog bench --only transfers,orders\n  \
        tradelog bench --only durable,postgres\n  \
        tradelog bench --only server --shards 1 --duration-secs 5\n  \
        tradelog bench --only server,etcd --shards 1\n  \
        tradelog bench --only server,cluster,etcd --shards 1\n  \
        tradelog bench --only scaling --duration-secs 2 --durable-accounts 20000"
)]
pub struct Args {
    /// Accounts in the ledger benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
    /// Transfers in the throughput pass.
    #[arg(long, default_value_t = 5_000_000)]
    transfers: u64,
    /// Orders (mixed commands) in each order throughput pass.
    #[arg(long, default_value_t = 5_000_000)]
    orders: u64,
    /// Commands timed one by one in each latency pass.
    #[arg(long, default_value_t = 1_000_000)]
    latency_samples: u64,
    /// Resting orders for the memory measurement.
    #[arg(long, default_value_t = 1_000_000)]
    resting: u64,
    /// A small, fast run (for smoke tests): divides every size by 100 and shortens the
    /// durable passes to 2 s.
    #[arg(long)]
    quick: bool,
    /// Only run these sections (comma-separated: transfers,orders,book,memory; and the
    /// opt-in durable,server,cluster,postgres,etcd, which the default run leaves out).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// durable/server/cluster/postgres/etcd: accounts opened and funded before the transfers.
    #[arg(long, default_value_t = 100_000)]
    durable_accounts: u64,
    /// durable/server/cluster/postgres/etcd: concurrent clients in the closed-loop passes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    clients: u16,
    /// durable/server/cluster/postgres/etcd: transfers each client submits at once in the batched pass.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=8192))]
    batch: u16,
    /// durable/server/cluster/postgres/etcd: seconds per pass [default: 10, or 2 with --quick].
    #[arg(long)]
    duration_secs: Option<f64>,
    /// durable/server: shard counts to run, one node (or server) each.
    #[arg(long, value_delimiter = ',', default_value = "1,4", value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: Vec<u32>,
    /// durable/server/cluster/postgres/etcd: directory for the temporary data directories [default: $TMPDIR
    /// (or /tmp) unless it is in memory, else the target directory].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// durable: snapshot every this many log records (0 = never) [default: the node's].
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// postgres: the script to run [default: scripts/bench-postgres.sh].
    #[arg(long)]
    pg_script: Option<PathBuf>,
    /// etcd: the script that starts the cluster [default: scripts/bench-etcd.sh].
    #[arg(long)]
    etcd_script: Option<PathBuf>,
    /// scaling: shard counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8", value_parser = clap::value_parser!(u32).range(1..=64))]
    scale_shards: Vec<u32>,
    /// scaling: node processes to measure (1: one `tradelog serve`; 3 or more: a cluster,
    /// every shard a Raft group with a replica on every node).
    #[arg(long, value_delimiter = ',', default_value = "1,3,6", value_parser = clap::value_parser!(u32).range(1..=9))]
    scale_nodes: Vec<u32>,
    /// scaling: percentages of cross-shard transfers and orders.
    #[arg(long, value_delimiter = ',', default_value = "0,10,50")]
    cross_pct: Vec<u32>,
    /// scaling: commands per path in the end-to-end latency probe.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    probe_samples: u64,
    /// scaling: where scaling.csv and scaling.svg (the plot) are written.
    #[arg(long, default_value = "tradelog-bench-scaling")]
    scale_out: PathBuf,
}

/// How a row's requests were issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Closed loop, one transfer per request.
    Single,
    /// Closed loop, K transfers per request.
    Batched,
    /// Open loop at 50% of the measured one-by-one maximum.
    Open,
}

impl Mode {
    /// The table's name for it.
    fn label(self) -> &'static str {
        match self {
            Mode::Single => "one by one",
            Mode::Batched => "batched",
            Mode::Open => "open loop, 50% of max",
        }
    }
}

/// The helper script `name` of the baselines: `explicit` if given, else `scripts/NAME` of
/// this source tree or of the current directory.
fn find_script(explicit: Option<&Path>, name: &str) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts")
            .join(name),
        Path::new("scripts").join(name),
    ];
    candidates.into_iter().find(|p| p.is_file())
}

/// The `key=value` fields of a script's report line (`PG_RESULT ...`, `ETCD_READY ...`),
/// after its first word.
fn script_fields(line: &str) -> std::collections::BTreeMap<String, String> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One line of the durable comparison table.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    system: String,
    mode: Mode,
    /// What one request is.
    request: String,
    transfers_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    requests: u64,
    /// Rejected or failed transfers.
    failed: u64,
    /// Per fsync: (client transfers, log records) for tradelog; commits for PostgreSQL.
    per_fsync: Option<(f64, f64)>,
    /// For the replicated-writes table: how many copies of every write the system keeps
    /// (etcd: its members; tradelog over gRPC: 1 per `tradelog serve`, the replicas of each
    /// shard's Raft group for a cluster). None: not a row of that table.
    replicas: Option<u32>,
    note: String,
}

/// xorshift64*: a tiny deterministic generator (the benchmark must not depend on a
/// crate's RNG stream staying the same).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
}

const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);

fn op(t: u64) -> Meta {
    Meta {
        timestamp: Timestamp(1_000_000_000 + t),
        principal: Principal(1),
        authority: Authority::Operator,
    }
}

fn rate(n: u64, d: Duration) -> String {
    let r = n as f64 / d.as_secs_f64();
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn print_latency(label: &str, h: &Histogram<u64>) {
    println!(
        "  {label:<34} p50 {:>6} ns   p99 {:>6} ns   p999 {:>7} ns   max {:>9} ns   (n={})",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.len()
    );
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn catalog(e: &mut Engine, markets: u32, out: &mut Vec<EventRecord>) {
    for (id, code) in [(USD, "USD"), (BTC, "BTC")] {
        e.execute(
            op(0),
            &Command::CreateAsset(Asset {
                id,
                code: code.into(),
                scale: 2,
            }),
            out,
        );
    }
    for m in 1..=markets {
        let spec = bench_market(MarketId(m), AccountId(u64::MAX - 1));
        let o = e.execute(op(0), &Command::CreateMarket(spec), out);
        assert!(o.result.is_ok(), "{o:?}");
    }
}

/// The benchmark's markets: BTC/USD, unit lots and ticks, 1/2 bps fees, no collar.
fn bench_market(id: MarketId, fee_account: AccountId) -> MarketSpec {
    MarketSpec {
        id,
        base: BTC,
        quote: USD,
        lot_size: 1,
        tick_size: 1,
        min_qty: Qty(1),
        max_qty: Qty(1_000_000),
        maker_fee_bps: 1,
        taker_fee_bps: 2,
        fee_account,
        collar_bps: 0,
        shard: ShardId(0),
    }
}

fn funded_engine(accounts: u64, markets: u32, amount: u64) -> Engine {
    let mut e = Engine::new(ShardId(0), Placement::new(1));
    let mut out = Vec::new();
    catalog(&mut e, markets, &mut out);
    for a in 1..=accounts {
        let account = AccountId(a);
        e.execute(
            op(1),
            &Command::OpenAccount {
                account,
                owner: Principal(a),
            },
            &mut out,
        );
        for (n, asset) in [USD, BTC].into_iter().enumerate() {
            let id = TransferId(a * 2 + n as u64);
            let cmd = Command::Deposit {
                id,
                account,
                asset,
                amount: Amount(amount),
            };
            let o = e.execute(op(1), &cmd, &mut out);
            assert!(o.result.is_ok());
        }
        out.clear();
    }
    e
}

fn transfers(a: &Args) {
    println!(
        "\n== ledger: transfers between {} accounts (one shard, one core) ==",
        a.accounts
    );
    let t0 = Instant::now();
    let mut e = funded_engine(a.accounts, 0, 1 << 40);
    // Sized for the run, so that the throughput passes do not include the table's growth
    // (`table_growth` below measures that pause on its own).
    e.reserve_idempotency_keys((a.transfers + a.latency_samples) as usize);
    println!(
        "  setup: {} accounts opened and funded in {:.2?} (idempotency table sized for the run)",
        a.accounts,
        t0.elapsed()
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut gen = |i: u64| {
        let debit = 1 + rng.below(a.accounts);
        let mut credit = 1 + rng.below(a.accounts);
        if credit == debit {
            credit = debit % a.accounts + 1;
        }
        TransferSpec {
            id: TransferId(1 << 40 | i),
            debit: AccountId(debit),
            credit: AccountId(credit),
            asset: USD,
            amount: Amount(1 + (i & 1023)),
            balancing: false,
        }
    };
    let meta = op(10);
    let inputs: Vec<Input> = (0..a.transfers)
        .map(|i| Input::Command {
            meta,
            command: Command::Transfer(gen(i)),
        })
        .collect();
    let mut out = Vec::with_capacity(4096);
    // The same kind of transfers, alternately one by one and in batches (as a Raft entry
    // will carry them), so the two ways are compared in one run on the same state sizes.
    let half = inputs.len() / 2;
    let round = (half / ROUNDS as usize).max(1);
    let (mut single, mut batched, mut ok) = (Duration::ZERO, Duration::ZERO, 0u64);
    let mut results = Vec::with_capacity(BATCH_LEN);
    for chunk in inputs.chunks(2 * round) {
        let (one, many) = chunk.split_at(round.min(chunk.len()));
        let start = Instant::now();
        for input in one {
            ok +=
                matches!(e.apply(input, &mut out), Applied::Command(o) if o.result.is_ok()) as u64;
            if out.len() > 2048 {
                out.clear();
            }
        }
        single += start.elapsed();
        let start = Instant::now();
        for batch in many.chunks(BATCH_LEN) {
            e.apply_batch(batch, &mut out, &mut results);
            ok += results
                .iter()
                .filter(|r| matches!(r, Applied::Command(o) if o.result.is_ok()))
                .count() as u64;
            results.clear();
            out.clear();
        }
        batched += start.elapsed();
    }
    println!(
        "  throughput, one by one:        {} transfers in {:.2?} = {}",
        half,
        single,
        rate(half as u64, single)
    );
    println!(
        "  throughput, batches of {BATCH_LEN}:   {} transfers in {:.2?} = {}  (batched/single = {:.2}x; {} of {} accepted)",
        inputs.len() - half,
        batched,
        rate((inputs.len() - half) as u64, batched),
        (single.as_secs_f64() / half as f64) / (batched.as_secs_f64() / (inputs.len() - half) as f64),
        ok,
        inputs.len()
    );
    drop(inputs);
    let mut h = hist();
    for i in 0..a.latency_samples {
        let c = Command::Transfer(gen(a.transfers + i));
        let s = Instant::now();
        e.execute(meta, &c, &mut out);
        h.record(s.elapsed().as_nanos() as u64).ok();
        if out.len() > 2048 {
            out.clear();
        }
    }
    print_latency("latency per transfer", &h);
    e.validate().expect("invariants hold after the benchmark");
    snapshot_cost(&e);
    split_cost(&e);
    table_growth(a.transfers);
}

/// What splitting `e` in two costs (the accounts with odd ids move to a new shard): the
/// shard applies nothing else meanwhile, so this is its pause. Side by side with the
/// state copy a snapshot takes.
fn split_cost(e: &Engine) {
    let mut parent = e.clone();
    let t = Instant::now();
    let copy = e.clone();
    let clone = t.elapsed();
    drop(copy);
    let split = tradelog_engine::Split {
        parent: e.shard(),
        child: ShardId(e.placement().shard_count()),
        modulus: 2,
        residue: 1,
        markets: Vec::new(),
    };
    let t = Instant::now();
    let child = parent
        .split(e.clock(), split, &mut Vec::new())
        .expect("a valid split");
    let took = t.elapsed();
    println!(
        "  split of this state ({} of {} accounts move): {:.2?}, {:.1}x the state copy ({:.2?})",
        child.ledger().len(),
        e.ledger().len(),
        took,
        took.as_secs_f64() / clone.as_secs_f64().max(1e-9),
        clone
    );
}

/// The slowest transfer while an idempotency table that was not sized in advance grows
/// from empty to `n` ids (as in a server, which does not size it): a table grows by moving
/// its entries into a larger one within one insert, so this is the pause a growth adds to
/// one command (docs/design/0003).
fn table_growth(n: u64) {
    let mut e = funded_engine(2, 0, 1 << 40);
    let mut out = Vec::with_capacity(4096);
    let mut h = hist();
    let meta = op(10);
    for i in 0..n {
        let c = Command::Transfer(TransferSpec {
            id: TransferId(1 << 40 | i),
            debit: AccountId(1 + (i & 1)),
            credit: AccountId(2 - (i & 1)),
            asset: USD,
            amount: Amount(1),
            balancing: false,
        });
        let s = Instant::now();
        e.execute(meta, &c, &mut out);
        h.record(s.elapsed().as_nanos() as u64).ok();
        out.clear();
    }
    println!(
        "  idempotency table growing from empty to {n} ids (not sized): slowest transfer {:.2} ms, p999 {} ns",
        h.max() as f64 / 1e6,
        h.value_at_quantile(0.999)
    );
}

/// What one snapshot of `e` costs: on the snapshotter, copying the state; on its writer,
/// encoding, hashing, sealing and writing the file (with its fsync, in the temp dir); on restart,
/// reading the file and restoring the state.
fn snapshot_cost(e: &Engine) {
    let t = Instant::now();
    let copy = e.clone();
    let clone = t.elapsed();
    drop(copy);
    let t = Instant::now();
    let state = e.state_bytes();
    let encode = t.elapsed();
    let t = Instant::now();
    let hash = tradelog_codec::sha256(&state);
    let sealed = Engine::seal_state_bytes(&state);
    drop(state);
    let meta = tradelog_node::SnapshotMeta {
        shard: ShardId(0),
        index: 1,
        chain_hash: [0; 32],
        state_hash: hash,
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = tradelog_node::write_snapshot_file(dir.path(), &meta, &sealed)
        .expect("write the snapshot file");
    let write = t.elapsed();
    let t = Instant::now();
    let file = tradelog_node::read_snapshot_file(&path).expect("read the snapshot file");
    let restored = Engine::restore(&file.engine).expect("a fresh snapshot restores");
    let restore = t.elapsed();
    assert_eq!(restored.state_hash(), hash, "restore gives the same state");
    println!(
        "  snapshot of this state ({:.1} MB): copy {:.2?}; encode {:.2?}; hash, seal and write the file {:.2?}; read and restore {:.2?}",
        sealed.len() as f64 / 1e6,
        clone,
        encode,
        write,
        restore
    );
}

/// A realistic order mix over `markets` markets around a fixed mid: 40% passive limit
/// orders at 1..=50 ticks from the mid (many price levels), 45% cancels of a random order
/// placed earlier (each cancelled at most once; some have filled meanwhile and are
/// rejected, as in real flow), 10% marketable IOC limits, 5% market orders. The book
/// stays at a steady size instead of growing without bound.
struct OrderMix {
    rng: Rng,
    markets: u32,
    traders: u64,
    placed: Vec<(MarketId, OrderId)>,
}

enum Next {
    Place(NewOrder),
    Cancel(MarketId, OrderId),
}

const MID: u64 = 10_000;

impl OrderMix {
    fn new(markets: u32, traders: u64) -> Self {
        OrderMix {
            rng: Rng(0xD1B5_4A32_D192_ED03),
            markets,
            traders,
            placed: Vec::new(),
        }
    }

    fn next(&mut self) -> Next {
        let r = self.rng.below(100);
        let market = MarketId(1 + self.rng.below(self.markets as u64) as u32);
        if r < 45 && !self.placed.is_empty() {
            let i = self.rng.below(self.placed.len() as u64) as usize;
            let (m, o) = self.placed.swap_remove(i);
            return Next::Cancel(m, o);
        }
        let side = if self.rng.next() & 1 == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let away = 1 + self.rng.below(50);
        let (order_type, tif, price) = if r < 85 {
            let p = match side {
                Side::Buy => MID - away,
                Side::Sell => MID + away,
            };
            (OrderType::Limit, TimeInForce::Gtc, p)
        } else if r < 95 {
            let p = match side {
                Side::Buy => MID + 5,
                Side::Sell => MID - 5,
            };
            (OrderType::Limit, TimeInForce::Ioc, p)
        } else {
            let p = match side {
                Side::Buy => MID + 60,
                Side::Sell => 0,
            };
            (OrderType::Market, TimeInForce::Ioc, p)
        };
        Next::Place(NewOrder {
            account: AccountId(1 + self.rng.below(self.traders)),
            market,
            side,
            order_type,
            tif,
            price: Price(price),
            qty: Qty(1 + self.rng.below(10)),
            post_only: false,
            client_order_id: 0,
            stp: SelfTradePrevention::CancelResting,
        })
    }

    fn placed(&mut self, m: MarketId, o: OrderId) {
        self.placed.push((m, o));
    }
}

/// Runs `n` commands of the mix in batches of `batch` (1 = one by one). Only the time
/// spent inside the engine is counted (generating the mix is not). With `h`, every
/// command is timed (batch must be 1).
fn run_orders(
    e: &mut Engine,
    mix: &mut OrderMix,
    n: u64,
    batch: usize,
    mut h: Option<&mut Histogram<u64>>,
) -> (Duration, u64) {
    let mut out = Vec::with_capacity(8192);
    let meta = op(20);
    let mut trades = 0u64;
    let mut inside = Duration::ZERO;
    let mut inputs = Vec::with_capacity(batch);
    let mut results = Vec::with_capacity(batch);
    let mut done = 0u64;
    while done < n {
        let len = batch.min((n - done) as usize);
        inputs.clear();
        for _ in 0..len {
            let command = match mix.next() {
                Next::Place(o) => Command::PlaceOrder(o),
                Next::Cancel(market, order) => Command::CancelOrder { market, order },
            };
            inputs.push(Input::Command { meta, command });
        }
        results.clear();
        let start = Instant::now();
        if len == 1 {
            results.push(e.apply(&inputs[0], &mut out));
        } else {
            e.apply_batch(&inputs, &mut out, &mut results);
        }
        let el = start.elapsed();
        inside += el;
        if let Some(h) = h.as_deref_mut() {
            h.record(el.as_nanos() as u64).ok();
        }
        for (input, r) in inputs.iter().zip(&results) {
            if let (
                Input::Command {
                    command: Command::PlaceOrder(p),
                    ..
                },
                Applied::Command(o),
            ) = (input, r)
            {
                if let Ok(Accepted::Order(id)) = o.result {
                    mix.placed(p.market, id);
                }
            }
        }
        trades += out
            .iter()
            .filter(|r| matches!(r.event, Event::Trade { .. }))
            .count() as u64;
        out.clear();
        done += len as u64;
    }
    (inside, trades)
}

fn orders(a: &Args) {
    let traders = 10_000;
    for markets in [1u32, 100] {
        println!("\n== engine: order mix over {markets} market(s), {traders} traders (one shard: hold -> match -> settle) ==");
        let mut e = funded_engine(traders, markets, 1 << 50);
        let mut mix = OrderMix::new(markets, traders);
        // Warm the books up so that cancels and takers find orders.
        run_orders(&mut e, &mut mix, a.orders / 10, BATCH_LEN, None);
        // Alternate one-by-one and batched rounds so both see the same book sizes.
        let half = a.orders / 2;
        let (mut single, mut batched, mut t1, mut t2) = (Duration::ZERO, Duration::ZERO, 0, 0);
        for _ in 0..ROUNDS {
            let (d, t) = run_orders(&mut e, &mut mix, half / ROUNDS, 1, None);
            single += d;
            t1 += t;
            let (d, t) = run_orders(&mut e, &mut mix, half / ROUNDS, BATCH_LEN, None);
            batched += d;
            t2 += t;
        }
        let half = half / ROUNDS * ROUNDS;
        let resting: usize = e.books().values().map(|b| b.len()).sum();
        println!(
            "  throughput, one by one:        {half} commands in {single:.2?} = {}",
            rate(half, single)
        );
        println!(
            "  throughput, batches of {BATCH_LEN}:   {half} commands in {batched:.2?} = {}  (batched/single = {:.2}x)",
            rate(half, batched),
            single.as_secs_f64() / batched.as_secs_f64()
        );
        println!("  {} trades, {resting} orders resting at the end", t1 + t2);
        let mut h = hist();
        run_orders(&mut e, &mut mix, a.latency_samples, 1, Some(&mut h));
        print_latency("latency per command", &h);
        e.validate().expect("invariants hold after the benchmark");
    }
}

fn book_only(a: &Args) {
    println!("\n== matching only: one Book, same mix, no ledger, no messages ==");
    let spec = bench_market(MarketId(1), AccountId(9));
    let mut book = Book::new(spec.clone());
    let mut mix = OrderMix::new(1, 10_000);
    let mut mo = MatchOutput::default();
    let mut counter = 0u64;
    let mut run =
        |book: &mut Book, mix: &mut OrderMix, n: u64, mut h: Option<&mut Histogram<u64>>| {
            let start = Instant::now();
            let mut fills = 0u64;
            for _ in 0..n {
                let s = h.is_some().then(Instant::now);
                match mix.next() {
                    Next::Place(o) => {
                        counter += 1;
                        let id = OrderId::new(ShardId(0), counter);
                        let (_, hold) = spec.hold_for(o.side, o.qty, o.price).expect("valid");
                        let t = OrderTicket {
                            order: id,
                            account: o.account,
                            owner: Principal(o.account.0),
                            market: o.market,
                            side: o.side,
                            order_type: o.order_type,
                            tif: o.tif,
                            price: o.price,
                            qty: o.qty,
                            post_only: false,
                            stp: o.stp,
                            hold,
                            client_order_id: 0,
                        };
                        if book.place(&t, &mut mo).is_ok() {
                            fills += mo.events.len() as u64;
                            mix.placed(o.market, id);
                        }
                    }
                    Next::Cancel(_, id) => {
                        let _ = book.cancel(id, Principal::SYSTEM);
                    }
                }
                if let (Some(h), Some(s)) = (h.as_deref_mut(), s) {
                    h.record(s.elapsed().as_nanos() as u64).ok();
                }
            }
            (start.elapsed(), fills)
        };
    run(&mut book, &mut mix, a.orders / 10, None);
    let (el, fills) = run(&mut book, &mut mix, a.orders, None);
    println!(
        "  throughput: {} commands in {:.2?} = {}  ({} fills, {} resting)",
        a.orders,
        el,
        rate(a.orders, el),
        fills,
        book.len()
    );
    let mut h = hist();
    run(&mut book, &mut mix, a.latency_samples, Some(&mut h));
    print_latency("latency per command", &h);
    book.validate().expect("book invariants hold");
}

fn book_ticket(spec: &MarketSpec, id: u64, rng: &mut Rng) -> OrderTicket {
    let side = if id & 1 == 0 { Side::Buy } else { Side::Sell };
    let away = 1 + rng.below(5_000);
    let price = Price(match side {
        Side::Buy => MID * 10 - away,
        Side::Sell => MID * 10 + away,
    });
    let qty = Qty(1 + rng.below(100));
    let (_, hold) = spec.hold_for(side, qty, price).expect("valid");
    OrderTicket {
        order: OrderId::new(ShardId(0), id),
        account: AccountId(1 + rng.below(1_000)),
        owner: Principal(1),
        market: spec.id,
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price,
        qty,
        post_only: false,
        stp: SelfTradePrevention::CancelResting,
        hold,
        client_order_id: 0,
    }
}

/// Memory per resting order, as the growth of the process's resident set while the
/// orders are added (each structure measured on fresh memory: nothing is freed between
/// the two measurements, so the allocator cannot hand back recycled pages).
fn memory(a: &Args) {
    println!(
        "\n== memory per resting order ({} resting orders, non-crossing, 10,000 price levels) ==",
        a.resting
    );
    let spec = bench_market(MarketId(1), AccountId(9));
    let mut rng = Rng(42);
    let before = rss_bytes();
    let mut book = Book::new(spec.clone());
    let mut mo = MatchOutput::default();
    for i in 1..=a.resting {
        book.place(&book_ticket(&spec, i, &mut rng), &mut mo)
            .expect("non-crossing order rests");
    }
    let after = rss_bytes();
    println!(
        "  book alone (slab node 64 B + id index + levels): {:.1} MB = {} bytes/order",
        (after - before) as f64 / 1e6,
        (after - before) / (book.len() as u64).max(1)
    );

    let traders = 1_000u64;
    let mut e = funded_engine(traders, 1, 1 << 50);
    let mut out = Vec::new();
    let before = rss_bytes();
    for i in 1..=a.resting {
        let t = book_ticket(&spec, i, &mut rng);
        let cmd = Command::PlaceOrder(NewOrder {
            account: t.account,
            market: MarketId(1),
            side: t.side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: t.price,
            qty: t.qty,
            post_only: false,
            client_order_id: 0,
            stp: SelfTradePrevention::CancelResting,
        });
        let o = e.execute(op(30), &cmd, &mut out);
        debug_assert!(o.result.is_ok());
        out.clear();
    }
    let after = rss_bytes();
    let resting = e.books()[&MarketId(1)].len() as u64;
    println!(
        "  engine (book + the account's hold record per order): {:.1} MB = {} bytes/order",
        (after - before) as f64 / 1e6,
        (after - before) / resting.max(1)
    );
    drop(book);
}

fn fmt_latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} us")
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

/// The durable comparison: one table with both systems, then the ratios.
fn print_comparison(ours: &[Row], pg: Result<&[Row], &str>, a: &Args, duration: Duration) {
    println!(
        "\n== durable transfers: tradelog vs PostgreSQL, same machine, same run ({} accounts, {:.0} s per pass) ==",
        a.durable_accounts,
        duration.as_secs_f64()
    );
    println!("Every transfer moves 1 between two random accounts and is acknowledged only once it is on disk");
    println!("(tradelog: command log fdatasync; PostgreSQL: WAL fsync, synchronous_commit=on). Latency is per");
    println!("request (a request = 1 transfer, or K transfers in the batched rows) from the client's point of view;");
    println!("open-loop latency counts from each request's scheduled start (coordinated omission corrected).\n");
    println!("| system | mode | one request = | transfers/s | p50 | p99 | p999 | max | requests | failed | per fsync |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let pg_rows: &[Row] = pg.unwrap_or(&[]);
    for r in ours.iter().chain(pg_rows) {
        let per_fsync = match (r.system.starts_with("tradelog"), r.per_fsync) {
            (true, Some((t, rec))) => format!("{t:.1} transfers ({rec:.1} records)"),
            (false, Some((c, _))) => format!("{c:.1} commits"),
            (_, None) => "-".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {per_fsync} |",
            r.system,
            r.mode.label(),
            r.request,
            fmt_rate(r.transfers_per_s),
            fmt_latency(r.p50_us),
            fmt_latency(r.p99_us),
            fmt_latency(r.p999_us),
            fmt_latency(r.max_us),
            r.requests,
            r.failed,
        );
    }
    for r in pg_rows.iter().filter(|r| !r.note.is_empty()).take(1) {
        println!("\n  PostgreSQL: {}", r.note);
    }
    if let Err(why) = pg {
        println!("\n  PostgreSQL row skipped: {why}");
        return;
    }
    let find = |mode: Mode| pg_rows.iter().find(|r| r.mode == mode);
    println!("\nRatios (tradelog / PostgreSQL, throughput; higher is better for tradelog):");
    for r in ours {
        let (Some(single), Some(same)) = (find(Mode::Single), find(r.mode)) else {
            continue;
        };
        match r.mode {
            Mode::Single => println!(
                "  {:<18} one by one vs one by one:                 {:>6.2}x  ({} vs {})",
                r.system,
                r.transfers_per_s / same.transfers_per_s,
                fmt_rate(r.transfers_per_s),
                fmt_rate(same.transfers_per_s)
            ),
            Mode::Batched => {
                println!(
                    "  {:<18} batched vs PostgreSQL pipelined batches: {:>6.2}x  ({} vs {})",
                    r.system,
                    r.transfers_per_s / same.transfers_per_s,
                    fmt_rate(r.transfers_per_s),
                    fmt_rate(same.transfers_per_s)
                );
                println!(
                    "  {:<18} batched vs PostgreSQL one by one:        {:>6.2}x",
                    r.system,
                    r.transfers_per_s / single.transfers_per_s
                );
            }
            Mode::Open => println!(
                "  {:<18} open loop p99 latency, PostgreSQL / tradelog (each at 50% of its own max): {:.2}x  ({} vs {})",
                r.system,
                same.p99_us / r.p99_us,
                fmt_latency(same.p99_us),
                fmt_latency(r.p99_us)
            ),
        }
    }
}

/// The name of a row in the replicated-writes table: tradelog's say how many copies of
/// each write they keep ("tradelog, 1 node (over gRPC, 1 shard(s))", later "tradelog, 3
/// replicas (...)").
fn replicated_name(r: &Row) -> String {
    match (r.system.strip_prefix("tradelog"), r.replicas) {
        (Some(rest), Some(1)) => format!("tradelog, 1 node ({})", rest.trim_start()),
        (Some(rest), Some(n)) => format!("tradelog, {n} replicas ({})", rest.trim_start()),
        _ => r.system.clone(),
    }
}

/// The replicated-writes comparison: etcd's rows, tradelog's rows that carry a replica
/// count (today the `server` section's single node; a replicated cluster's rows join the
/// same way), then the ratios to etcd.
fn print_replicated(ours: &[Row], etcd: Result<&[Row], &str>, a: &Args, duration: Duration) {
    println!(
        "\n== replicated writes: etcd vs tradelog, same machine, same run ({} accounts, {:.0} s per pass) ==",
        a.durable_accounts,
        duration.as_secs_f64()
    );
    println!("A transfer moves 1 between two random accounts. etcd: a read Txn of both balances, then one Txn that");
    println!("compares both keys' mod_revision and puts both balances and a transfer record (retried on a failed");
    println!("compare), acknowledged once a majority of the 3 members has fsynced the Raft entry. tradelog: the");
    println!("Transfer command over gRPC, acknowledged once in the command log on disk (fdatasync). Latency is per");
    println!("request from the client's point of view; open-loop latency counts from each request's scheduled start.\n");
    println!("| system | copies of each write | mode | one request = | transfers/s | p50 | p99 | p999 | max | requests | failed | notes |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let etcd_rows: &[Row] = etcd.unwrap_or(&[]);
    let tradelog: Vec<&Row> = ours.iter().filter(|r| r.replicas.is_some()).collect();
    for r in etcd_rows.iter().chain(tradelog.iter().copied()) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            replicated_name(r),
            r.replicas.unwrap_or(1),
            r.mode.label(),
            r.request,
            fmt_rate(r.transfers_per_s),
            fmt_latency(r.p50_us),
            fmt_latency(r.p99_us),
            fmt_latency(r.p999_us),
            fmt_latency(r.max_us),
            r.requests,
            r.failed,
            if r.note.is_empty() { "-" } else { &r.note },
        );
    }
    if tradelog.is_empty() {
        println!(
            "\n  tradelog rows: not run (add server to --only: --only server,etcd --shards 1)"
        );
    }
    if !tradelog.iter().any(|r| r.replicas > Some(1)) {
        println!("  tradelog, 3 replicas: not run (add cluster to --only: --only server,cluster,etcd --shards 1).");
    }
    if let Err(why) = etcd {
        println!("\n  etcd rows skipped: {why}");
        return;
    }
    // The transfer rows of etcd (the blind-put rows are its write path's ceiling).
    let find = |mode: Mode| {
        etcd_rows
            .iter()
            .find(|r| r.mode == mode && r.request.contains("transfer"))
    };
    let ceiling = |mode: Mode| {
        etcd_rows
            .iter()
            .find(|r| r.mode == mode && r.request.contains("no check"))
    };
    if tradelog.is_empty() {
        return;
    }
    println!("\nRatios (tradelog / etcd, throughput; higher is better for tradelog):");
    for r in tradelog {
        let Some(same) = find(r.mode) else {
            continue;
        };
        let name = replicated_name(r);
        let how = if r.mode == Mode::Single {
            "one by one"
        } else {
            "batched"
        };
        match (r.mode, ceiling(r.mode)) {
            (Mode::Open, _) => println!(
                "  {name:<40} open loop p99 latency, etcd / tradelog (each at 50% of its own max): {:.2}x  ({} vs {})",
                same.p99_us / r.p99_us,
                fmt_latency(same.p99_us),
                fmt_latency(r.p99_us)
            ),
            (_, puts) => {
                println!(
                    "  {name:<40} {how} vs {how} Txns: {:>7.2}x  ({} vs {})",
                    r.transfers_per_s / same.transfers_per_s,
                    fmt_rate(r.transfers_per_s),
                    fmt_rate(same.transfers_per_s)
                );
                if let Some(puts) = puts {
                    println!(
                        "  {name:<40} {how} transfers vs etcd's {how} blind puts (its write ceiling): {:>7.2}x  ({} vs {})",
                        r.transfers_per_s / puts.transfers_per_s,
                        fmt_rate(r.transfers_per_s),
                        fmt_rate(puts.transfers_per_s)
                    );
                }
            }
        }
    }
}

pub fn run(mut a: Args) -> Result<()> {
    for s in &a.only {
        if !DEFAULT_SECTIONS.contains(&s.as_str()) && !EXTRA_SECTIONS.contains(&s.as_str()) {
            bail!(
                "unknown section {s:?} in --only (known: {}, {})",
                DEFAULT_SECTIONS.join(","),
                EXTRA_SECTIONS.join(",")
            );
        }
    }
    if a.quick {
        a.accounts /= 100;
        a.transfers /= 100;
        a.orders /= 100;
        a.latency_samples /= 100;
        a.resting /= 100;
        a.durable_accounts = (a.durable_accounts / 100).max(2);
    }
    let duration = Duration::from_secs_f64(
        a.duration_secs
            .unwrap_or(if a.quick { 2.0 } else { 10.0 })
            .clamp(0.05, 3600.0),
    );
    let want = |s: &str| {
        if a.only.is_empty() {
            DEFAULT_SECTIONS.contains(&s)
        } else {
            a.only.iter().any(|x| x == s)
        }
    };
    if DEFAULT_SECTIONS.iter().any(|s| want(s)) {
        println!("tradelog engine benchmark (single thread, in-process, release build expected)");
    } else {
        println!("tradelog durable benchmark (release build expected)");
    }
    if cfg!(debug_assertions) {
        println!("WARNING: debug build: figures are meaningless; use --release");
    }
    if want("transfers") {
        transfers(&a);
    }
    if want("orders") {
        orders(&a);
    }
    if want("book") {
        book_only(&a);
    }
    if want("memory") {
        memory(&a);
    }
    let noisy = want("durable")
        || want("postgres")
        || want("server")
        || want("etcd")
        || want("scaling")
        || want("cluster");
    if noisy {
        println!(
            "  machine: {} CPUs, load average {} at start (other work on the machine skews the figures; compare ratios)",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg()
        );
    }
    let mut ours = if want("durable") {
        durable::run(&durable::Options {
            accounts: a.durable_accounts,
            clients: a.clients.into(),
            batch: a.batch.into(),
            duration,
            shards: a.shards.clone(),
            data_dir: a.data_dir.clone(),
            snapshot_every: a.snapshot_every,
        })?
    } else {
        Vec::new()
    };
    if want("server") {
        for &shards in &a.shards {
            ours.extend(server::run(&server::Options {
                accounts: a.durable_accounts,
                clients: a.clients.into(),
                batch: a.batch.into(),
                duration,
                shards,
                data_dir: a.data_dir.clone(),
            })?);
        }
    }
    if want("cluster") {
        for &shards in &a.shards {
            ours.extend(server::run_cluster(
                &server::Options {
                    accounts: a.durable_accounts,
                    clients: a.clients.into(),
                    batch: a.batch.into(),
                    duration,
                    shards,
                    data_dir: a.data_dir.clone(),
                },
                CLUSTER_NODES,
            )?);
        }
    }
    if want("scaling") {
        scale::run(&scale::Options {
            accounts: a.durable_accounts,
            clients: a.clients.into(),
            batch: a.batch.into(),
            duration,
            shards: a.scale_shards.clone(),
            nodes: a.scale_nodes.clone(),
            cross_pct: a.cross_pct.clone(),
            probe_samples: if a.quick { 20 } else { a.probe_samples },
            data_dir: a.data_dir.clone(),
            out_dir: a.scale_out.clone(),
        })?;
    }
    if want("postgres") {
        let pg = pg::run(&pg::Options {
            accounts: a.durable_accounts,
            clients: a.clients.into(),
            batch: a.batch.into(),
            duration,
            base_dir: a.data_dir.clone(),
            script: a.pg_script.clone(),
        });
        if let Err(why) = &pg {
            println!("  PostgreSQL skipped: {why}");
        }
        print_comparison(&ours, pg.as_deref().map_err(String::as_str), &a, duration);
    } else if want("durable") || want("server") {
        print_comparison(
            &ours,
            Err("not run (add postgres to --only: --only durable,postgres)"),
            &a,
            duration,
        );
    }
    if want("etcd") {
        let etcd = etcd::run(&etcd::Options {
            accounts: a.durable_accounts,
            clients: a.clients.into(),
            batch: a.batch.into(),
            duration,
            base_dir: a.data_dir.clone(),
            script: a.etcd_script.clone(),
        });
        if let Err(why) = &etcd {
            println!("  etcd skipped: {why}");
        }
        print_replicated(&ours, etcd.as_deref().map_err(String::as_str), &a, duration);
    }
    if noisy {
        println!(
            "\n  machine: load average {} at the end (this benchmark's own threads count too)",
            loadavg()
        );
    }
    Ok(())
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
