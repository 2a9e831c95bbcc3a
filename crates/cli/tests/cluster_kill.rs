//! Fault injection on real processes: three `tradelog serve --node-id` processes on
//! loopback under a transfer load sent through every node.
//!
//! 1. The leader of every shard is killed with SIGKILL (one node at a time, under a load of
//!    transfers and orders):
//!    the survivors elect new leaders and go on answering (the time until shard 0 took a
//!    write again is printed); the killed node is restarted from its data directory and
//!    catches up, and every node then reports the same applied index and state hash for
//!    every shard.
//!    Then every shard's leadership is moved to one node, which is killed: the leaders on
//!    both sides of the messages in flight between the shards change at once. The
//!    solvency audit (`tradelog audit solvency`) passes under the load right after.
//! 2. A majority (two of three) is killed: a command through the survivor answers with a
//!    clear error, not a hang; the two are restarted and the cluster serves again.
//! 3. (A second test, on four nodes holding each shard three times.) A shard move whose
//!    shard leader is killed mid-move, with the node it moves to down: a new leader goes
//!    on with it, and it completes once both nodes are back.
//! 4. (A third test.) A shard split whose parent's leader is killed once the map has
//!    recorded the split: the split finishes and the three shards converge.
//!
//! Transfers move money between accounts on both shards; orders are placed on a market of
//! shard 1 by buyers on shard 1 and sellers on shard 0 (so every fill settles across
//! shards). The load comes from two kinds of clients: some talk to one node at a time and switch to
//! the next node themselves when a call fails (the node forwards to the leader); one is a
//! cluster client (`ClientConfig::cluster`) that routes each transfer to its shard's
//! leader and fails over by itself, and must never surface an error to its caller.
//!
//! Throughout, every acknowledged command must survive: at the end each one is sent again
//! with the same idempotency key (transfer id, client order id) and must come back as a
//! duplicate with the original answer (never applied anew). Commands sent but not answered
//! when the load stopped are resent until answered. Then every transfer account's balance
//! must be exactly what the transfers say (each applied once), and the traders' and the
//! fee account's balances must add up, per asset, to exactly what was deposited (no fill
//! settled twice or lost), once the fills' cross-shard settlements are through. Every node
//! serves the same event stream for each transfer account, with each debit once and each
//! client's transfers in the order it sent them (per-account event order). Finally the
//! audits pass: solvency with nothing in flight, replay verification of every shard, and
//! statements whose closing totals are the deposits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tradelog_client::{Client, ClientConfig, ClientError, ClusterStatus};
use tradelog_domain::*;

const SHARDS: u32 = 2;
const ACCOUNTS: u64 = 20;
const WAIT: Duration = Duration::from_secs(60);
const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);
const MARKET: MarketId = MarketId(1);
/// Collects the market's fees (shard 0).
const FEES: AccountId = AccountId(100);
/// Traders: odd ids (shard 1, the market's) buy, even ids (shard 0) sell.
const TRADERS: std::ops::RangeInclusive<u64> = 101..=106;
/// Each trader's deposit of each asset.
const TRADER_FUNDS: u64 = 1_000_000_000_000;

fn free_port() -> u16 {
    tradelog_server::ports::free_loopback_port().unwrap()
}

struct NodeProc {
    id: u64,
    grpc: String,
    dir: PathBuf,
    child: Option<Child>,
    /// `--replication-factor` (`None`: every node holds every shard).
    rf: Option<u64>,
}

impl NodeProc {
    fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    fn start(&mut self, members: &str) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .unwrap();
        let child = Process::new(env!("CARGO_BIN_EXE_tradelog"))
            .args([
                "serve",
                "--node-id",
                &self.id.to_string(),
                "--members",
                members,
            ])
            .args(["--grpc-addr", &self.grpc, "--http-addr", "127.0.0.1:0"])
            .args(["--shards", &SHARDS.to_string()])
            .args(
                self.rf
                    .iter()
                    .flat_map(|rf| ["--replication-factor".to_string(), rf.to_string()]),
            )
            .arg("--data-dir")
            .arg(&self.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        // SIGKILL to the process this test started.
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client of the node at `url` only (it forwards commands to the leaders).
async fn client(url: &str) -> Client {
    let mut c = ClientConfig::new(url.to_string());
    c.request_timeout_ms = 30_000;
    c.route_to_leaders = false;
    Client::new(c).unwrap()
}

/// A client of the whole cluster: commands go to their shard's leader; failures are
/// retried (same id) on other nodes for up to about 20 s.
fn cluster_client(urls: &[String]) -> Client {
    let mut c = ClientConfig::cluster(urls.iter().cloned());
    c.request_timeout_ms = 30_000;
    c.retry.attempts_max = 40;
    c.retry.backoff_ms_max = 500;
    Client::new(c).unwrap()
}

/// What the load sent and what was answered.
#[derive(Default)]
struct Ledger {
    /// Every command sent, answered or not, by its idempotency key.
    sent: BTreeMap<u64, Command>,
    /// Commands answered, and the answer.
    acked: BTreeMap<u64, Result<Accepted, i32>>,
    /// Errors the cluster client returned to its caller.
    cluster_client_errors: Vec<String>,
    /// Per load task (by its first id): the command it is retrying and the last error it
    /// got, while it has no answer (for the report when the load stalls).
    retrying: BTreeMap<u64, String>,
}

/// Why the load gets no answers: what each load task is retrying and why, each node's
/// view of the shards, and the end of each node's log.
async fn stall_report(urls: &[String], nodes: &[NodeProc], ledger: &Mutex<Ledger>) -> String {
    let mut out = String::from("\nload tasks retrying:");
    for (task, why) in &ledger.lock().unwrap().retrying {
        out += &format!("\n  task {}: {why}", task >> 32);
    }
    for (u, n) in urls.iter().zip(nodes) {
        out += &format!("\nnode {} ({u}):", n.id);
        match status(u).await {
            None => out += " no status",
            Some(st) => {
                for r in &st.shards {
                    out += &format!(
                        "\n  shard {}: {} leader {:?} term {} log {:?} committed {:?} \
                         applied {:?} voters {:?}",
                        r.shard,
                        r.role,
                        r.leader,
                        r.term,
                        r.last_log_index,
                        r.committed,
                        r.applied,
                        r.voters
                    );
                }
                out += &format!("\n  map version {}", st.metadata.version);
            }
        }
        let log = std::fs::read_to_string(n.dir.with_extension("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        out += &format!("\n  log ({} lines), last 40:", lines.len());
        for l in &lines[lines.len().saturating_sub(40)..] {
            out += &format!("\n    {l}");
        }
    }
    out
}

async fn status(url: &str) -> Option<ClusterStatus> {
    client(url).await.cluster_status().await.ok()
}

/// Waits until every node in `urls` answers with a leader for every shard and the same
/// applied index and state hash for every shard.
async fn converged(urls: &[String]) -> Vec<(Option<u64>, String)> {
    let deadline = Instant::now() + WAIT;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let mut views = Vec::new();
        for u in urls {
            match status(u).await {
                Some(s) if s.shards.iter().all(|r| r.leader.is_some()) => views.push(
                    s.shards
                        .iter()
                        .map(|r| (r.applied, r.state_hash.clone()))
                        .collect::<Vec<_>>(),
                ),
                _ => break,
            }
        }
        if views.len() == urls.len() && views.iter().all(|v| *v == views[0]) {
            return views.swap_remove(0);
        }
        last = views;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Where the replicas part: each node's events of the shard that differs, compared.
    let mut why = String::new();
    if last.len() == urls.len() {
        for s in 0..last[0].len() {
            if last.iter().all(|v| v[s] == last[0][s]) {
                continue;
            }
            let mut streams = Vec::new();
            for u in urls {
                let c = client(u).await;
                let all = all_events(&c).await;
                streams.push(
                    all.into_iter()
                        .filter(|e| e.shard.0 == s as u32)
                        .collect::<Vec<_>>(),
                );
            }
            for (k, st) in streams.iter().enumerate().skip(1) {
                if let Some(i) =
                    (0..st.len().max(streams[0].len())).find(|i| streams[0].get(*i) != st.get(*i))
                {
                    let around = |v: &[EventRecord]| {
                        v.iter()
                            .skip(i.saturating_sub(12))
                            .take(24)
                            .map(|e| format!("\n    {e:?}"))
                            .collect::<String>()
                    };
                    why += &format!(
                        "\nshard {s}: node 1 and node {} part at event {i} (of {} and {}):\n  node 1:{}\n  node {}:{}",
                        k + 1,
                        streams[0].len(),
                        st.len(),
                        around(&streams[0]),
                        k + 1,
                        around(st)
                    );
                }
            }
        }
    }
    panic!("nodes did not converge: {last:?}{why}");
}

/// Every event of every shard the node at `c` serves, page by page to the end.
async fn all_events(c: &Client) -> Vec<EventRecord> {
    let mut after = tradelog_client::Position::default();
    let mut out = Vec::new();
    loop {
        let Ok(page) = c
            .read_events(tradelog_client::EventStream::All, &after, 500)
            .await
        else {
            return out;
        };
        let moved = page.position != after;
        out.extend(page.events);
        after = page.position;
        if !moved {
            return out;
        }
    }
}

/// Starts nodes 1 to `n` of a new cluster (`rf`: its replication factor): the processes,
/// the `--members` list they were given, and their URLs.
fn start_nodes(root: &Path, n: u64, rf: Option<u64>) -> (Vec<NodeProc>, String, Vec<String>) {
    let mut nodes: Vec<NodeProc> = (1..=n)
        .map(|id| NodeProc {
            id,
            grpc: format!("127.0.0.1:{}", free_port()),
            dir: data(root, id),
            child: None,
            rf,
        })
        .collect();
    let members = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.url()))
        .collect::<Vec<_>>()
        .join(",");
    for n in &mut nodes {
        n.start(&members);
    }
    let urls = nodes.iter().map(|n| n.url()).collect();
    (nodes, members, urls)
}

fn data(root: &Path, id: u64) -> PathBuf {
    root.join(format!("node-{id}"))
}

fn transfer(id: u64) -> TransferSpec {
    let debit = 1 + id % ACCOUNTS;
    TransferSpec {
        id: TransferId(id),
        debit: AccountId(debit),
        credit: AccountId(1 + (debit + 7) % ACCOUNTS),
        asset: USD,
        amount: Amount(1),
        balancing: false,
    }
}

/// What a load sends.
#[derive(Clone, Copy, Debug)]
enum Work {
    Transfers,
    Orders,
}

/// Limit orders around a price of 100,000: buyers and sellers alternate, prices 100,000 to 100,004,
/// one to three lots, so many cross and many rest.
fn order(id: u64) -> NewOrder {
    let account = *TRADERS.start() + id % 6;
    NewOrder {
        account: AccountId(account),
        market: MARKET,
        side: if account % 2 == 1 {
            Side::Buy
        } else {
            Side::Sell
        },
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(100_000 + (id / 6 * 7) % 5),
        qty: Qty(1_000 * (1 + id % 3)),
        post_only: false,
        client_order_id: id,
        stp: SelfTradePrevention::CancelResting,
    }
}

impl Work {
    fn command(self, id: u64) -> Command {
        match self {
            Work::Transfers => Command::Transfer(transfer(id)),
            Work::Orders => Command::PlaceOrder(order(id)),
        }
    }
}

fn answer(a: &tradelog_client::Answer) -> Result<Accepted, i32> {
    a.result.clone().map_err(|r| r.number)
}

/// Waits while `pause` is set (between two transfers).
async fn paused(pause: &AtomicBool, stop: &AtomicBool) {
    while pause.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends commands with fresh ids through the nodes in turn until `stop`; one that gets no
/// answer is retried with the same id through the next node until it is answered.
async fn load(
    work: Work,
    urls: Vec<String>,
    first_id: u64,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let clients: Vec<Client> = {
        let mut v = Vec::new();
        for u in &urls {
            v.push(client(u).await);
        }
        v
    };
    let mut id = first_id;
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        paused(&pause, &stop).await;
        id += 1;
        let command = work.command(id);
        ledger.lock().unwrap().sent.insert(id, command.clone());
        // Until answered (a killed node's clients fail over to the next node).
        loop {
            turn += 1;
            let c = &clients[turn % clients.len()];
            match c.submit(command.clone()).await {
                Ok(a) => {
                    let mut l = ledger.lock().unwrap();
                    l.acked.insert(id, answer(&a));
                    l.retrying.remove(&first_id);
                    break;
                }
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(e) => {
                    ledger
                        .lock()
                        .unwrap()
                        .retrying
                        .insert(first_id, format!("{work:?} {id}: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
            }
        }
    }
}

/// The same through one cluster client, which fails over by itself: an error it returns
/// is recorded (the test fails on it) and the transfer is sent again, same id.
async fn cluster_load(
    work: Work,
    client: Client,
    first_id: u64,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut id = first_id;
    while !stop.load(Ordering::Relaxed) {
        paused(&pause, &stop).await;
        id += 1;
        let command = work.command(id);
        ledger.lock().unwrap().sent.insert(id, command.clone());
        loop {
            match client.submit(command.clone()).await {
                Ok(a) => {
                    let mut l = ledger.lock().unwrap();
                    l.acked.insert(id, answer(&a));
                    l.retrying.remove(&first_id);
                    break;
                }
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(e) => {
                    let mut l = ledger.lock().unwrap();
                    let e = format!("{work:?} {id}: {e}");
                    l.retrying.insert(first_id, e.clone());
                    l.cluster_client_errors.push(e);
                }
            }
        }
    }
}

/// How long until a write to shard `shard` through `url` succeeds.
async fn time_to_write(url: &str, shard: u32) -> Duration {
    let c = client(url).await;
    let started = Instant::now();
    let mut n = 0u64;
    loop {
        n += 1;
        // An account id on `shard`: the placement is `id % shards`.
        let account = (1_000 + n) * SHARDS as u64 + shard as u64;
        let r = c
            .submit(Command::OpenAccount {
                account: AccountId(account),
                owner: Principal(1),
            })
            .await;
        if r.is_ok() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < WAIT,
            "shard {shard} never took a write: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_leader_kills_and_a_lost_majority() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, members, urls) = start_nodes(root.path(), 3, None);
    converged(&urls).await;

    // Catalog and funded accounts.
    setup(&client(&urls[0]).await).await;

    let Load {
        ledger,
        stop,
        pause,
        tasks: loads,
        routed,
    } = Load::start(&urls).await;

    // 1. Kill the leader of each shard in turn, under load; restart it.
    for shard in 0..SHARDS {
        let s = status(&urls[0]).await.expect("node 1 answers");
        let leader = s.shards[shard as usize].leader.expect("a leader");
        let k = (leader - 1) as usize;
        nodes[k].kill9();
        let survivor = &urls[(k + 1) % nodes.len()];
        let failover = time_to_write(survivor, shard).await;
        println!("shard {shard}: leader node {leader} killed; a write committed again after {failover:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        nodes[k].start(&members);
        // The restarted node catches up: with the load paused, every node reaches the
        // same applied index and state hash.
        pause.store(true, Ordering::Relaxed);
        converged(&urls).await;
        pause.store(false, Ordering::Relaxed);
    }
    // 1b. Both ends at once: every shard's leadership moved to one node, which is then
    // killed while the shards' messages to each other (transfer credits and results,
    // order holds and settlements) are in flight, so both sides' leaders change together.
    let both = 2;
    lead_every_shard(&urls, both).await;
    nodes[(both - 1) as usize].kill9();
    for shard in 0..SHARDS {
        let failover = time_to_write(&urls[0], shard).await;
        println!("shard {shard}: both leaders (node {both}) killed; a write committed again after {failover:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[(both - 1) as usize].start(&members);
    // The solvency audit under load (the binary, as an operator runs it): a consistent cut
    // is found while messages are in flight, and money is conserved there.
    let out = tradelog(&urls, &["audit", "solvency"]).await;
    println!(
        "solvency audit under load: {}",
        out.lines().next().unwrap_or("")
    );
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    let before = converged(&urls).await;
    {
        let l = ledger.lock().unwrap();
        assert!(!l.acked.is_empty(), "the load got answers");
        assert_eq!(
            l.cluster_client_errors,
            Vec::<String>::new(),
            "the cluster client failed over without surfacing an error"
        );
    }
    assert!(
        routed.retries() > 0,
        "the cluster client met the killed leaders and retried"
    );
    println!(
        "cluster client: {} retries, knows {:?}",
        routed.retries(),
        routed.nodes()
    );

    // 2. Kill a majority: the survivor says so instead of hanging.
    nodes[0].kill9();
    nodes[1].kill9();
    let survivor = client(&urls[2]).await;
    let started = Instant::now();
    let r = survivor
        .submit(Command::OpenAccount {
            account: AccountId(999_999),
            owner: Principal(1),
        })
        .await;
    match r {
        Err(ClientError::Unavailable { message: m, .. }) => {
            println!("majority lost: answered after {:?}: {m}", started.elapsed())
        }
        other => panic!("expected `unavailable` without a majority, got {other:?}"),
    }
    nodes[0].start(&members);
    nodes[1].start(&members);
    let after = converged(&urls).await;
    assert!(
        after.iter().zip(&before).all(|(a, b)| a.0 >= b.0),
        "no node went back: {before:?} -> {after:?}"
    );

    let mut readers = Vec::new();
    for u in &urls {
        readers.push(client(u).await);
    }
    all_acknowledged_present(&urls, &ledger, &readers).await;
}

/// A shard move whose leader is killed mid-move, on four nodes holding two shards at
/// three replicas each (one node without each shard): the node the shard moves to is
/// down, so the move stops with it a learner that cannot catch up; the shard's leader,
/// which the move leaves out, is then killed with SIGKILL. A new leader goes on with the
/// move (the reconciler is level-triggered: any leader finishes what the map asks), and
/// once the killed node and the new replica are back, the move completes under load
/// with nothing acknowledged lost and every check of the first test passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_move_finishes_after_its_leader_is_killed_mid_move() {
    const MOVED: usize = 1;
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, members, urls) = start_nodes(root.path(), 4, Some(3));
    converged_partial(&urls).await;
    setup(&cluster_client(&urls)).await;
    let Load {
        ledger,
        stop,
        pause: _,
        tasks: loads,
        routed,
    } = Load::start(&urls).await;

    // Who holds the shard, who leads it, and the node without it.
    let s = status(&urls[0]).await.expect("node 1 answers");
    let voters = s.shards[MOVED].voters.clone();
    assert_eq!(voters.len(), 3, "{:?}", s.shards[MOVED]);
    let outside = (1..=4u64).find(|n| !voters.contains(n)).unwrap();
    let leader = leader_of(&urls, MOVED, None).await;
    let target: Vec<u64> = voters
        .iter()
        .copied()
        .filter(|n| *n != leader)
        .chain([outside])
        .collect();
    let asked = *target.iter().find(|n| **n != outside).unwrap();
    println!(
        "shard {MOVED}: voters {voters:?}, leader {leader}; moving to {target:?} with node {outside} down"
    );
    // The new replica's node is down (it holds a replica of the other shard, whose other
    // two replicas keep serving it).
    nodes[(outside - 1) as usize].kill9();
    let args: Vec<String> = ["admin", "move-shard", &MOVED.to_string()]
        .into_iter()
        .map(String::from)
        .chain(target.iter().map(|n| n.to_string()))
        .collect();
    let via = vec![urls[(asked - 1) as usize].clone()];
    let mover = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tradelog(&via, &args).await
    });
    // Mid-move: the shard's leader added the new node as a learner it cannot reach.
    status_until(
        &urls[(leader - 1) as usize],
        "the new node a learner",
        |st| st.shards[MOVED].learners.contains(&outside),
    )
    .await;
    nodes[(leader - 1) as usize].kill9();
    let next = leader_of(&urls, MOVED, Some(leader)).await;
    println!("shard {MOVED}: leader node {leader} killed mid-move; node {next} leads it now");
    assert!(!mover.is_finished(), "the move waits for the learner");
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[(leader - 1) as usize].start(&members);
    nodes[(outside - 1) as usize].start(&members);
    let out = tokio::time::timeout(Duration::from_secs(120), mover)
        .await
        .expect("the move finishes")
        .unwrap();
    println!("move-shard answered: {}", out.lines().next().unwrap_or(""));
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    // The shard lives exactly where it was asked to, on every node's view.
    let views = converged_partial(&urls).await;
    let mut want = target.clone();
    want.sort();
    for u in &urls {
        let st = status(u).await.unwrap();
        let mut v = st.shards[MOVED].voters.clone();
        v.sort();
        assert_eq!(v, want, "{u}: {:?}", st.shards[MOVED]);
        assert!(
            st.shards[MOVED].learners.is_empty(),
            "{:?}",
            st.shards[MOVED]
        );
    }
    println!("converged: {views:?}");
    cluster_client_clean(&ledger, &routed);
    // Readers route (a node lacks a shard): each enters the cluster at another node.
    let readers: Vec<Client> = urls
        .iter()
        .map(|u| cluster_client(std::slice::from_ref(u)))
        .collect();
    all_acknowledged_present(&urls, &ledger, &readers).await;
}

/// A shard split under load whose parent's leader is killed mid-split: shard 1 gives its
/// accounts with `id % 4 == 1` (transfer accounts 1, 5, ..., 17 and traders 101 and 105)
/// and the market (with its book) to a new shard 2, through `tradelog admin split-shard`
/// sent to a node that does not lead shard 1; once the map records the split, shard 1's
/// leader is killed with SIGKILL and restarted. The split finishes, every node ends with
/// the same three shards, and nothing acknowledged is lost: every check of the first test
/// passes (balances exact, fills settled once, per-account event streams the same on
/// every node and in order, the audits).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_under_load_finishes_after_the_parents_leader_is_killed() {
    const PARENT: usize = 1;
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, members, urls) = start_nodes(root.path(), 3, None);
    converged(&urls).await;
    setup(&client(&urls[0]).await).await;
    let Load {
        ledger,
        stop,
        pause: _,
        tasks: loads,
        routed,
    } = Load::start(&urls).await;
    let leader = leader_of(&urls, PARENT, None).await;
    let asked = (1..=3u64).find(|n| *n != leader).unwrap();
    let via = vec![urls[(asked - 1) as usize].clone()];
    let splitter = tokio::spawn(async move {
        let args = [
            "admin",
            "split-shard",
            "1",
            "--accounts",
            "4:1",
            "--markets",
            "1",
        ];
        tradelog(&via, &args).await
    });
    // Mid-split: the map has recorded it (the parent may or may not have applied it).
    status_until(&urls[(asked - 1) as usize], "the split in the map", |st| {
        !st.metadata.splits.is_empty()
    })
    .await;
    nodes[(leader - 1) as usize].kill9();
    println!("shard {PARENT}: leader node {leader} killed mid-split (asked node {asked})");
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[(leader - 1) as usize].start(&members);
    let out = tokio::time::timeout(Duration::from_secs(120), splitter)
        .await
        .expect("the split finishes")
        .unwrap();
    println!("split-shard answered: {}", out.lines().next().unwrap_or(""));
    // More load on the three shards before it stops.
    let acked = ledger.lock().unwrap().acked.len();
    let deadline = Instant::now() + WAIT;
    while ledger.lock().unwrap().acked.len() < acked + 100 {
        if Instant::now() > deadline {
            let why = stall_report(&urls, &nodes, &ledger).await;
            panic!("no answers after the split:{why}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    let views = converged(&urls).await;
    assert_eq!(views.len(), 3, "{views:?}");
    for u in &urls {
        let st = status(u).await.unwrap();
        let splits: Vec<(u32, u32, u64, u64)> = st
            .metadata
            .splits
            .iter()
            .map(|s| (s.parent.0, s.child.0, s.modulus, s.residue))
            .collect();
        assert_eq!(splits, vec![(1, 2, 4, 1)], "{u}");
    }
    println!("converged: {views:?}");
    cluster_client_clean(&ledger, &routed);
    let mut readers = Vec::new();
    for u in &urls {
        readers.push(client(u).await);
    }
    all_acknowledged_present(&urls, &ledger, &readers).await;
}

/// The leader of `shard` as a node holding it reports it, once there is one other than
/// `not` (a node just killed, which the others may still name for a while).
async fn leader_of(urls: &[String], shard: usize, not: Option<u64>) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        for u in urls {
            if let Some(st) = status(u).await {
                let row = &st.shards[shard];
                if row.role != "NotHeld" {
                    if let Some(l) = row.leader.filter(|l| Some(*l) != not) {
                        return l;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "shard {shard} has no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// As [`converged`] on a cluster whose nodes hold only some shards: every node answers,
/// every shard has a leader as its holders see it, and the holders of each shard report
/// the same applied index and state hash. Per shard: that index and hash.
async fn converged_partial(urls: &[String]) -> Vec<(Option<u64>, String)> {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut per_shard: BTreeMap<usize, Vec<(Option<u64>, String)>> = BTreeMap::new();
        let mut answered = 0;
        let mut leaderless = false;
        for u in urls {
            let Some(st) = status(u).await else { break };
            answered += 1;
            for (k, r) in st.shards.iter().enumerate() {
                if r.role != "NotHeld" {
                    leaderless |= r.leader.is_none();
                    per_shard
                        .entry(k)
                        .or_default()
                        .push((r.applied, r.state_hash.clone()));
                }
            }
        }
        let agreed = per_shard.len() == SHARDS as usize
            && per_shard.values().all(|v| v.iter().all(|x| *x == v[0]));
        if answered == urls.len() && !leaderless && agreed {
            return per_shard
                .into_values()
                .map(|mut v| v.swap_remove(0))
                .collect();
        }
        last = format!("{answered} answered, leaderless {leaderless}: {per_shard:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nodes did not converge: {last}");
}

/// The catalog (USD, BTC, the market on shard 1) and the funded accounts.
async fn setup(c: &Client) {
    c.create_asset(Asset {
        id: USD,
        code: "USD".into(),
        scale: 2,
    })
    .await
    .unwrap();
    for a in 1..=ACCOUNTS {
        c.open_account(AccountId(a), Principal(a)).await.unwrap();
        c.deposit(TransferId(a), AccountId(a), USD, Amount(1_000_000))
            .await
            .unwrap();
    }
    c.create_asset(Asset {
        id: BTC,
        code: "BTC".into(),
        scale: 8,
    })
    .await
    .unwrap();
    c.open_account(FEES, Principal(FEES.0)).await.unwrap();
    c.create_market(MarketSpec {
        id: MARKET,
        base: BTC,
        quote: USD,
        lot_size: 1_000,
        tick_size: 1,
        min_qty: Qty(1_000),
        max_qty: Qty(1_000_000),
        maker_fee_bps: 5,
        taker_fee_bps: 10,
        fee_account: FEES,
        collar_bps: 0,
        shard: ShardId(1),
    })
    .await
    .unwrap();
    for t in TRADERS {
        c.open_account(AccountId(t), Principal(t)).await.unwrap();
        for (k, asset) in [USD, BTC].into_iter().enumerate() {
            let id = TransferId(1_000 + 10 * t + k as u64);
            c.deposit(id, AccountId(t), asset, Amount(TRADER_FUNDS))
                .await
                .unwrap();
        }
    }
}

/// The load: four clients that each talk to one node at a time (three sending transfers,
/// one orders) and the same four through one cluster client.
struct Load {
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    routed: Client,
}

impl Load {
    /// Starts it and returns once 50 commands were answered (so what follows happens
    /// under load).
    async fn start(urls: &[String]) -> Load {
        let urls = urls.to_vec();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        // Ids: (task + 1) << 32 upwards, so each task's ids are its own.
        let works = [
            Work::Transfers,
            Work::Transfers,
            Work::Transfers,
            Work::Orders,
        ];
        let mut loads: Vec<_> = works
            .iter()
            .enumerate()
            .map(|(k, w)| {
                tokio::spawn(load(
                    *w,
                    urls.clone(),
                    (k as u64 + 1) << 32,
                    stop.clone(),
                    pause.clone(),
                    ledger.clone(),
                ))
            })
            .collect();
        let routed = cluster_client(&urls);
        for (k, w) in works.iter().enumerate() {
            loads.push(tokio::spawn(cluster_load(
                *w,
                routed.clone(),
                (k as u64 + 5) << 32,
                stop.clone(),
                pause.clone(),
                ledger.clone(),
            )));
        }
        let deadline = Instant::now() + WAIT;
        while ledger.lock().unwrap().acked.len() < 50 {
            assert!(Instant::now() < deadline, "the load got no answers");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Load {
            ledger,
            stop,
            pause,
            tasks: loads,
            routed,
        }
    }
}

/// With the load stopped: every acknowledged command is present once, the unanswered
/// ones are resent until answered, balances are exact, fills settled once, every reader
/// (one per node) serves the same per-account event streams in each client's order, and
/// the audits pass.
async fn all_acknowledged_present(urls: &[String], ledger: &Mutex<Ledger>, readers: &[Client]) {
    // Every acknowledged command is there: a repeat is answered as a duplicate, with the
    // original answer.
    let c = &readers[1 % readers.len()];
    let (sent, acked) = {
        let l = ledger.lock().unwrap();
        (l.sent.clone(), l.acked.clone())
    };
    for (id, original) in &acked {
        let a = c
            .submit(sent[id].clone())
            .await
            .unwrap_or_else(|e| panic!("repeat of command {id}: {e}"));
        assert!(
            a.duplicate,
            "command {id} was acknowledged but is not recorded: {:?}",
            sent[id]
        );
        assert_eq!(*original, answer(&a), "command {id}: {:?}", sent[id]);
        if matches!(sent[id], Command::Transfer(_)) {
            assert!(a.result.is_ok(), "transfer {id}: {:?}", a.result);
        }
    }
    // The ones never answered are sent again until answered: each is then applied once.
    for (id, command) in sent.range(..).filter(|(id, _)| !acked.contains_key(id)) {
        let a = c
            .submit(command.clone())
            .await
            .unwrap_or_else(|e| panic!("resend of command {id}: {e}"));
        if matches!(command, Command::Transfer(_)) {
            assert!(a.result.is_ok(), "transfer {id}: {:?}", a.result);
        }
    }
    let orders = sent
        .values()
        .filter(|c| matches!(c, Command::PlaceOrder(_)))
        .count();
    let orders_accepted = acked
        .iter()
        .filter(|(id, a)| matches!(sent[id], Command::PlaceOrder(_)) && a.is_ok())
        .count();
    assert!(orders_accepted > 0, "no order was accepted");
    // Exactly once: every balance is the deposit plus what the transfers moved.
    let mut expected: BTreeMap<u64, i128> = (1..=ACCOUNTS).map(|a| (a, 1_000_000)).collect();
    for spec in sent.values().filter_map(|c| match c {
        Command::Transfer(t) => Some(t),
        _ => None,
    }) {
        *expected.get_mut(&spec.debit.0).unwrap() -= spec.amount.0 as i128;
        *expected.get_mut(&spec.credit.0).unwrap() += spec.amount.0 as i128;
    }
    // (Cross-shard transfers finish through messages between the shards: wait for them.)
    let deadline = Instant::now() + WAIT;
    loop {
        let mut got = BTreeMap::new();
        for a in expected.keys() {
            let b = c.balances(AccountId(*a)).await.unwrap().of(USD);
            got.insert(*a, (b.available.0 as i128, b.held.0));
        }
        let want: BTreeMap<u64, (i128, u64)> =
            expected.iter().map(|(a, v)| (*a, (*v, 0))).collect();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "balances (available, held) after {} transfers: got {got:?}, want {want:?}",
            sent.len() - orders
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No fill settled twice or lost: the traders and the fee account hold, per asset,
    // exactly what was deposited (available plus held for resting orders), once the
    // settlements between the shards are through; and fills happened (fees were paid).
    let deadline = Instant::now() + WAIT;
    loop {
        let mut total: BTreeMap<AssetId, u64> = BTreeMap::new();
        let mut fees = 0;
        for a in TRADERS.chain([FEES.0]) {
            let b = c.balances(AccountId(a)).await.unwrap();
            for asset in [USD, BTC] {
                let x = b.of(asset);
                *total.entry(asset).or_default() += x.available.0 + x.held.0;
                if a == FEES.0 && asset == USD {
                    fees = x.available.0;
                }
            }
        }
        let deposited = TRADER_FUNDS * TRADERS.count() as u64;
        let want = BTreeMap::from([(USD, deposited), (BTC, deposited)]);
        if total == want && fees > 0 {
            println!(
                "orders: {orders} sent, {orders_accepted} acknowledged as accepted; fees {fees}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traders' totals per asset {total:?}, deposited {want:?}, fees {fees}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Per-account event order: every node serves the same stream for each transfer
    // account (regenerated from its own log where older than its memory), each transfer's
    // debit-side events appear once, and the transfers one client sent one after another
    // (ids `(client + 1) << 32` upwards, the next sent only once the previous was
    // answered) appear in the order they were sent.
    for a in 1..=ACCOUNTS {
        let mut streams = Vec::new();
        for r in readers {
            streams.push(account_stream(r, AccountId(a)).await);
        }
        for (k, s) in streams.iter().enumerate().skip(1) {
            assert_eq!(
                &streams[0],
                s,
                "account {a}: node {} serves another stream",
                k + 1
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut first_seen = Vec::new();
        for e in &streams[0] {
            let (kind, id) = match e.event {
                Event::TransferInitiated { id, debit, .. } if debit.0 == a => ("initiated", id.0),
                Event::TransferPosted { id, debit, .. } if debit.0 == a => ("posted", id.0),
                _ => continue,
            };
            assert!(
                seen.insert((kind, id)),
                "account {a}: transfer {id} {kind} twice"
            );
            if !first_seen.contains(&id) {
                first_seen.push(id);
            }
        }
        let debited = sent
            .values()
            .filter(|c| matches!(c, Command::Transfer(t) if t.debit.0 == a))
            .count();
        assert_eq!(
            first_seen.len(),
            debited,
            "account {a}: debits in its stream"
        );
        for client in 1..=8u64 {
            let mine: Vec<u64> = first_seen
                .iter()
                .copied()
                .filter(|id| id >> 32 == client)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "account {a}: client {client}'s transfers out of order: {mine:?}"
            );
        }
    }
    // The audits, once quiet: solvency at a cut with nothing in flight, every shard's
    // replay equal to its live state, and statements whose totals are the deposits.
    let v: serde_json::Value =
        serde_json::from_str(&tradelog(urls, &["audit", "solvency", "--json"]).await).unwrap();
    for (asset, l) in v["solvency"]["assets"].as_object().unwrap() {
        assert_eq!(
            l["in_flight_sent"],
            serde_json::Value::from(0),
            "{asset}: {l}"
        );
        assert_eq!(l["balances"], l["deposited"], "{asset}: {l}");
    }
    tradelog(urls, &["audit", "verify"]).await;
    let v: serde_json::Value = serde_json::from_str(
        &tradelog(urls, &["audit", "statements", "--totals-only", "--json"]).await,
    )
    .unwrap();
    let deposited = (ACCOUNTS * 1_000_000 + TRADER_FUNDS * TRADERS.count() as u64) as u128;
    assert_eq!(
        v["totals"]["1"]["closing"].as_u64().map(u128::from),
        Some(deposited),
        "{v}"
    );
    println!(
        "{} acknowledged commands all present; {} commands in all, each applied once; every \
         account's event stream the same on every node and in each client's order",
        acked.len(),
        sent.len()
    );
}

/// Waits until the status of the node at `url` satisfies `f`, polling every 5 ms.
async fn status_until(url: &str, what: &str, f: impl Fn(&ClusterStatus) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !status(url).await.is_some_and(|st| f(&st)) {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The cluster client failed over without surfacing an error to its caller; prints how
/// often it retried.
fn cluster_client_clean(ledger: &Mutex<Ledger>, routed: &Client) {
    assert_eq!(
        ledger.lock().unwrap().cluster_client_errors,
        Vec::<String>::new(),
        "the cluster client failed over without surfacing an error"
    );
    println!("cluster client: {} retries", routed.retries());
}

/// Moves every shard's leadership to node `to` and returns once that node reports leading
/// them all (the leader balancer may hand one away meanwhile: then it asks again).
async fn lead_every_shard(urls: &[String], to: u64) {
    let url = &urls[(to - 1) as usize];
    let admin = client(url).await;
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = status(url).await {
            if s.shards.iter().all(|x| x.leader == Some(to)) {
                return;
            }
            for (shard, x) in s.shards.iter().enumerate() {
                if x.leader != Some(to) {
                    let change = tradelog_client::ClusterChange::TransferLeader {
                        shard: shard as u32,
                        to,
                    };
                    let _ = admin.change_cluster(&change).await;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {to} did not come to lead every shard"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the `tradelog` binary against the cluster; it must succeed: its stdout.
async fn tradelog(urls: &[String], args: &[&str]) -> String {
    let servers = urls.join(",");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Process::new(env!("CARGO_BIN_EXE_tradelog"))
            .args(&args)
            .env("TRADELOG_SERVER", &servers)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "tradelog {args:?}: {}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        stdout
    })
    .await
    .unwrap()
}

/// Every event of an account's stream, page by page to the end.
async fn account_stream(c: &Client, account: AccountId) -> Vec<EventRecord> {
    let mut after = tradelog_client::Position::default();
    let mut out = Vec::new();
    loop {
        let page = c
            .read_events(tradelog_client::EventStream::Account(account), &after, 500)
            .await
            .unwrap_or_else(|e| panic!("reading account {account}'s events: {e}"));
        let moved = page.position != after;
        out.extend(page.events);
        after = page.position;
        if !moved {
            return out;
        }
    }
}
