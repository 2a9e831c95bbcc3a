//! `tradelog cluster up`: a local multi-process cluster on loopback for development and
//! demos. Starts N `tradelog serve --node-id i --members ...` processes (this binary), waits
//! until every shard has a leader, prints where to reach every node, optionally runs a
//! demo trading load through every node and checks that the replicas agree, and stops the
//! nodes with SIGTERM on Ctrl-C (or SIGTERM) or when one of them dies.
//! `tradelog cluster down` stops a cluster started in the background from its pid files.

use crate::bench::server::{load, Gen, Work};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tradelog_client::{Client, ClientConfig};

/// Most nodes `cluster up` starts.
pub const NODES_MAX: u64 = 9;
/// How long `cluster up` waits for the nodes to start and elect leaders.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The role a node's status gives a shard it holds no replica of (`ROLE_NOT_HELD` of the
/// cluster crate, which this crate reaches only through the API).
const NOT_HELD: &str = "NotHeld";
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Accounts the demo opens and funds.
const DEMO_ACCOUNTS: u64 = 200;
/// Concurrent demo clients (spread over the nodes).
const DEMO_CLIENTS: usize = 12;

/// `tradelog cluster` subcommands.
#[derive(Subcommand)]
pub enum Cmd {
    /// Starts a local cluster of NODES processes on loopback and serves until Ctrl-C.
    #[command(
        after_help = "Node i listens for gRPC on 127.0.0.1:(BASE_PORT + 10*(i-1)) and \
        for HTTP on the next port, so node 1 is at the CLI's default address. Data and logs \
        go to DATA_DIR/node-i. Restarting with the same DATA_DIR resumes the same cluster.\n\n\
        Examples:\n  tradelog cluster up\n  tradelog cluster up --nodes 5 --shards 8\n  \
        tradelog cluster up --demo-secs 10 --exit-after-demo"
    )]
    Up(UpArgs),
    /// Stops the nodes of a cluster started by `cluster up` (SIGTERM, from its pid files).
    #[command(
        after_help = "For a `cluster up` running elsewhere (another terminal, a \
        script); in its own terminal, Ctrl-C does the same.\n\nExamples:\n  \
        tradelog cluster down\n  tradelog cluster down --data-dir /tmp/my-cluster"
    )]
    Down(DownArgs),
}

/// Options of `tradelog cluster up`.
#[derive(clap::Args)]
pub struct UpArgs {
    /// Number of node processes (every shard gets a replica on each).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=NODES_MAX))]
    nodes: u64,
    /// Number of shards (Raft groups).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// Replicas per shard, at most --nodes (default: one on every node). Below the node
    /// count, each shard lives on that many nodes, placed evenly, and a node opens only
    /// its own shards (commands and reads through any node still reach every shard).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=tradelog_placement::REPLICATION_FACTOR_MAX as u64))]
    replication_factor: Option<u64>,
    /// Where the nodes keep their data and logs (DATA_DIR/node-i).
    #[arg(long, default_value = "./tradelog-cluster")]
    data_dir: PathBuf,
    /// gRPC port of node 1; node i uses BASE_PORT + 10*(i-1), its HTTP port the next one.
    #[arg(long, default_value_t = 7700)]
    base_port: u16,
    /// Once up: create a market and funded accounts, run a trading load (transfers and
    /// orders) through every node for this many seconds, and check that every replica
    /// applied the same log.
    #[arg(long)]
    demo_secs: Option<u64>,
    /// Stop the cluster after the demo instead of serving until Ctrl-C.
    #[arg(long, requires = "demo_secs")]
    exit_after_demo: bool,
}

/// Options of `tradelog cluster down`.
#[derive(clap::Args)]
pub struct DownArgs {
    /// The data directory the cluster was started with.
    #[arg(long, default_value = "./tradelog-cluster")]
    data_dir: PathBuf,
}

pub fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Up(a) => up(a),
        Cmd::Down(a) => down(a),
    }
}

struct Member {
    id: u64,
    grpc: String,
    http: String,
    dir: PathBuf,
    child: Option<Child>,
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("serve.pid")
}

/// `tradelog serve --node-id` processes of one cluster on loopback, started by this process
/// (used by `cluster up` and by `tradelog bench --only cluster`). Dropping it stops them.
pub(crate) struct LocalCluster {
    members: Vec<Member>,
}

impl LocalCluster {
    /// Starts node `i + 1` on `ports[i]` (gRPC; HTTP on the next port) with its data and log
    /// in `data_dir/node-{i + 1}`, all with `shards` shards and the same member list, each
    /// shard on `rf` of them (`None`: on every node).
    pub(crate) fn start(
        data_dir: &Path,
        shards: u32,
        ports: &[u16],
        rf: Option<u64>,
    ) -> Result<LocalCluster> {
        let exe = std::env::current_exe().context("finding the tradelog binary")?;
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(k, port)| Member {
                id: k as u64 + 1,
                grpc: format!("127.0.0.1:{port}"),
                http: format!("127.0.0.1:{}", u32::from(*port) + 1),
                dir: data_dir.join(format!("node-{}", k + 1)),
                child: None,
            })
            .collect();
        let list = members
            .iter()
            .map(|m| format!("{}=http://{}", m.id, m.grpc))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            std::fs::create_dir_all(&m.dir)
                .with_context(|| format!("creating {}", m.dir.display()))?;
            let log = std::fs::File::create(m.dir.join("serve.log"))?;
            let mut command = Process::new(&exe);
            command
                .args(["serve", "--node-id", &m.id.to_string(), "--members", &list])
                .args(["--grpc-addr", &m.grpc, "--http-addr", &m.http])
                .args(["--shards", &shards.to_string()]);
            if let Some(rf) = rf {
                command.args(["--replication-factor", &rf.to_string()]);
            }
            let child = command
                .arg("--data-dir")
                .arg(&m.dir)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .with_context(|| format!("starting node {}", m.id))?;
            std::fs::write(pid_file(&m.dir), format!("{}\n", child.id()))?;
            m.child = Some(child);
        }
        Ok(LocalCluster { members })
    }

    /// The gRPC endpoints (`http://host:port`), node 1 first.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{}", m.grpc))
            .collect()
    }

    /// Waits until every node answers and every shard has a leader, as the nodes holding
    /// it see it (a node that holds no replica of a shard may not know its leader yet).
    pub(crate) async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match self.leaderless().await {
                Ok(none) if none.is_empty() => return Ok(()),
                Ok(none) => last = format!("shards without a leader: {none:?}"),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let logs: Vec<String> = self
            .members
            .iter()
            .map(|m| m.dir.join("serve.log").display().to_string())
            .collect();
        bail!(
            "not ready within {} s: {last} (logs: {})",
            START_TIMEOUT.as_secs(),
            logs.join(", ")
        )
    }

    /// The shards no node holding them names a leader for (an error if a node does not
    /// answer).
    async fn leaderless(&self) -> Result<Vec<u32>> {
        let mut led = std::collections::BTreeSet::new();
        let mut shards = 0;
        for m in &self.members {
            let c = Client::connect(ClientConfig::new(format!("http://{}", m.grpc)))
                .await
                .with_context(|| format!("node {}", m.id))?;
            let s = c
                .cluster_status()
                .await
                .with_context(|| format!("node {}", m.id))?;
            shards = s.shards.len();
            for r in s.shards.iter().filter(|r| r.role != NOT_HELD) {
                if r.leader.is_some() {
                    led.insert(r.shard.0);
                }
            }
        }
        Ok((0..shards as u32).filter(|s| !led.contains(s)).collect())
    }

    /// Serves until SIGINT/SIGTERM; an error if a node exits on its own meanwhile.
    async fn wait(&mut self) -> Result<()> {
        wait(&mut self.members).await
    }

    /// SIGKILLs node `id` (a crash: nothing is flushed or handed over) and reaps it.
    pub(crate) fn kill(&mut self, id: u64) -> Result<()> {
        let m = self
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .with_context(|| format!("no node {id} in this cluster"))?;
        let mut c = m
            .child
            .take()
            .with_context(|| format!("node {id} is not running"))?;
        c.kill().with_context(|| format!("killing node {id}"))?;
        c.wait().with_context(|| format!("reaping node {id}"))?;
        let _ = std::fs::remove_file(pid_file(&m.dir));
        Ok(())
    }

    /// SIGTERM to every node, then waits (killing what does not stop in time); an error
    /// names the nodes that did not exit cleanly.
    pub(crate) fn stop(&mut self) -> Result<()> {
        stop(&mut self.members)
    }

    fn print(&self) {
        println!("  NODE  gRPC                    HTTP                    DATA AND LOG");
        for m in &self.members {
            println!(
                "  {:<4}  {:<22}  {:<22}  {}",
                m.id,
                format!("http://{}", m.grpc),
                format!("http://{}", m.http),
                m.dir.display()
            );
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = stop(&mut self.members);
    }
}

fn up(a: UpArgs) -> Result<()> {
    if let Some(rf) = a.replication_factor {
        if rf > a.nodes {
            // A usage error (exit status 2): a shard never has two replicas on one node.
            return Err(tradelog_placement::PlacementError::NotEnoughNodes {
                rf: rf as usize,
                live: a.nodes as usize,
            }
            .into());
        }
    }
    let mut ports = Vec::new();
    for id in 1..=a.nodes {
        let port = u32::from(a.base_port) + 10 * (id as u32 - 1);
        if port + 1 > u32::from(u16::MAX) {
            bail!(
                "--base-port {} leaves no room for {} nodes",
                a.base_port,
                a.nodes
            );
        }
        ports.push(port as u16);
    }
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("creating {}", a.data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut cluster = LocalCluster::start(&a.data_dir, a.shards, &ports, a.replication_factor)?;
    std::fs::write(
        up_pid_file(&a.data_dir),
        format!("{}\n", std::process::id()),
    )?;
    let result = (|| -> Result<()> {
        runtime.block_on(cluster.wait_ready())?;
        match a.replication_factor {
            Some(rf) if rf < a.nodes => println!(
                "tradelog cluster of {} nodes, {} shards, {rf} replicas each (every shard a \
                 Raft group on {rf} of the nodes, placed evenly):",
                a.nodes, a.shards
            ),
            _ => println!(
                "tradelog cluster of {} nodes, {} shards (every shard a Raft group with a \
                 replica on each node):",
                a.nodes, a.shards
            ),
        }
        cluster.print();
        let endpoints = cluster.endpoints();
        println!(
            "Try: tradelog --server {} admin status   (any node takes any command)",
            endpoints[0]
        );
        if let Some(secs) = a.demo_secs {
            runtime.block_on(demo(&endpoints, Duration::from_secs(secs)))?;
            if a.exit_after_demo {
                return Ok(());
            }
        }
        println!("Serving until Ctrl-C (or SIGTERM); then every node stops cleanly.");
        runtime.block_on(cluster.wait())
    })();
    let stopped = cluster.stop();
    let _ = std::fs::remove_file(up_pid_file(&a.data_dir));
    result?;
    stopped
}

/// Serves until SIGINT/SIGTERM or until a node exits on its own.
async fn wait(members: &mut [Member]) -> Result<()> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    loop {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        for m in members.iter_mut() {
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    m.child = None;
                    bail!(
                        "node {} exited on its own ({status}); see {}",
                        m.id,
                        m.dir.join("serve.log").display()
                    );
                }
            }
        }
    }
}

/// SIGTERM to every node still running, then waits (killing what does not stop in time).
fn stop(members: &mut [Member]) -> Result<()> {
    for m in members.iter() {
        if let Some(c) = &m.child {
            terminate(c.id());
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut failed = Vec::new();
    let mut stopped = 0;
    for m in members.iter_mut() {
        let Some(mut c) = m.child.take() else {
            continue;
        };
        stopped += 1;
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        failed.push(format!("node {} exited with {status}", m.id));
                    }
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    failed.push(format!("node {} did not stop in time; killed", m.id));
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(pid_file(&m.dir));
    }
    if failed.is_empty() {
        if stopped > 0 {
            println!("stopped {stopped} nodes");
        }
        Ok(())
    } else {
        bail!("{}", failed.join("; "))
    }
}

#[cfg(unix)]
fn terminate(pid: u32) {
    // Only processes this command started (their pids come from `spawn` or its pid files).
    let _ = Process::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

#[cfg(not(unix))]
fn terminate(_pid: u32) {}

/// The file where `cluster up` keeps its own pid (for `cluster down`).
fn up_pid_file(dir: &Path) -> PathBuf {
    dir.join("cluster-up.pid")
}

/// True while process `pid` runs (an exited process its parent has not reaped yet, a
/// zombie, counts as stopped).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: `pid (comm) S ...`.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn down(a: DownArgs) -> Result<()> {
    // A running `cluster up` stops its nodes itself (and then exits cleanly).
    if let Ok(text) = std::fs::read_to_string(up_pid_file(&a.data_dir)) {
        let pid: u32 = text.trim().parse().context("cluster-up.pid is damaged")?;
        if alive(pid) {
            terminate(pid);
            let deadline = Instant::now() + STOP_TIMEOUT + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if alive(pid) {
                bail!("`cluster up` (pid {pid}) did not stop in time");
            }
            println!("stopped the cluster (`cluster up`, pid {pid})");
            return Ok(());
        }
        let _ = std::fs::remove_file(up_pid_file(&a.data_dir));
    }
    // Otherwise, nodes left behind: SIGTERM to each from its pid file.
    let mut stopped = 0;
    let entries = std::fs::read_dir(&a.data_dir)
        .with_context(|| format!("reading {}", a.data_dir.display()))?;
    for e in entries.flatten() {
        let path = pid_file(&e.path());
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let pid: u32 = text
            .trim()
            .parse()
            .with_context(|| format!("{} is damaged", path.display()))?;
        // A stale file (the process is gone) is just removed.
        if alive(pid) {
            terminate(pid);
            stopped += 1;
        }
        let _ = std::fs::remove_file(&path);
    }
    println!("sent SIGTERM to {stopped} nodes");
    Ok(())
}

/// The demo: catalog and funded accounts through node 1, then transfers and orders from
/// [`DEMO_CLIENTS`] clients spread over every node for `duration`, then a check that every
/// node reports the same applied index for every shard.
async fn demo(endpoints: &[String], duration: Duration) -> Result<()> {
    let mut clients = Vec::new();
    for e in endpoints {
        clients.push(Client::connect(ClientConfig::new(e.clone())).await?);
    }
    let catalog = clients[0].catalog().await?;
    if catalog.markets.is_empty() {
        println!(
            "demo: loading a BTC/USD market and {DEMO_ACCOUNTS} funded accounts through node 1"
        );
        load(&clients[0], DEMO_ACCOUNTS).await?;
    } else {
        println!("demo: the market and accounts are there from an earlier run");
    }
    println!(
        "demo: {DEMO_CLIENTS} clients send transfers and orders through all {} nodes for {} s",
        endpoints.len(),
        duration.as_secs()
    );
    let ids = Arc::new(AtomicU64::new(1 << 40));
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..DEMO_CLIENTS {
        let client = clients[c % clients.len()].clone();
        let (ids, acked, refused) = (ids.clone(), acked.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut gen = Gen::new(7 + c as u64, DEMO_ACCOUNTS, ids);
            while Instant::now() < end {
                let command = gen.next(Work::Mix);
                match client.submit(command.clone()).await {
                    Ok(a) => {
                        gen.answered(&command, &a.result);
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let acked = acked.load(Ordering::Relaxed);
    println!(
        "demo: {acked} commands committed on a majority and answered ({:.0}/s), {} not answered",
        acked as f64 / duration.as_secs_f64().max(1e-9),
        refused.load(Ordering::Relaxed)
    );
    // Every node applies the same log of every shard it holds: wait until, per shard, the
    // applied indexes of its holders meet.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut views: std::collections::BTreeMap<u32, Vec<Option<u64>>> = Default::default();
        for c in &clients {
            let s = c.cluster_status().await?;
            for r in s.shards.iter().filter(|r| r.role != NOT_HELD) {
                views.entry(r.shard.0).or_default().push(r.applied);
            }
        }
        if views.values().all(|v| v.iter().all(|a| *a == v[0])) {
            println!(
                "demo: every node applied the same log on every shard it holds (applied \
                 index per shard: {:?})",
                views
                    .values()
                    .map(|v| v[0].unwrap_or(0))
                    .collect::<Vec<_>>()
            );
            break;
        }
        if Instant::now() > deadline {
            bail!("the nodes did not converge: {views:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = clients[clients.len() - 1]
        .balances(tradelog_domain::AccountId(1))
        .await?;
    let shown: Vec<String> = b
        .balances
        .iter()
        .map(|x| {
            format!(
                "asset {} available {} held {}",
                x.asset, x.available, x.held
            )
        })
        .collect();
    println!(
        "demo: account 1 read (linearizable) through node {}: {}",
        clients.len(),
        shown.join("; ")
    );
    Ok(())
}
