//! Fault injection on real processes: three `tradelog serve --node-id` processes on
//! loopback under a transfer load sent through every node.
//!
//! 1. The leader of every shard is killed with SIGKILL (one node at a time, under load):
//!    the survivors elect new leaders and go on answering (the time until shard 0 took a
//!    write again is printed); the killed node is restarted from its data directory and
//!    catches up, and every node then reports the same applied index and state hash for
//!    every shard.
//! 2. A majority (two of three) is killed: a command through the survivor answers with a
//!    clear error, not a hang; the two are restarted and the cluster serves again.
//!
//! Throughout, every acknowledged transfer must survive: at the end each one is sent again
//! with the same id and must come back as a duplicate of the original (never applied anew).

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct NodeProc {
    id: u64,
    grpc: String,
    dir: PathBuf,
    child: Option<Child>,
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

async fn client(url: &str) -> Client {
    let mut c = ClientConfig::new(url.to_string());
    c.request_timeout_ms = 30_000;
    Client::new(c).unwrap()
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
    panic!("nodes did not converge: {last:?}");
}

fn data(root: &Path, id: u64) -> PathBuf {
    root.join(format!("node-{id}"))
}

/// Sends transfers with fresh ids through the nodes in turn until `stop`; a transfer that
/// gets no answer is retried with the same id through the next node until it is answered.
/// Records every acknowledged (accepted or rejected) transfer.
async fn load(
    urls: Vec<String>,
    first_id: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<u64, TransferSpec>>>,
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
        id += 1;
        let debit = 1 + id % ACCOUNTS;
        let spec = TransferSpec {
            id: TransferId(id),
            debit: AccountId(debit),
            credit: AccountId(1 + (debit + 7) % ACCOUNTS),
            asset: USD,
            amount: Amount(1),
            balancing: false,
        };
        // Until answered (a killed node's clients fail over to the next node).
        loop {
            turn += 1;
            let c = &clients[turn % clients.len()];
            match c.submit(Command::Transfer(spec.clone())).await {
                Ok(_) => {
                    acked.lock().unwrap().insert(id, spec.clone());
                    break;
                }
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
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
    let mut nodes: Vec<NodeProc> = (1..=3)
        .map(|id| NodeProc {
            id,
            grpc: format!("127.0.0.1:{}", free_port()),
            dir: data(root.path(), id),
            child: None,
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
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    converged(&urls).await;

    // Catalog and funded accounts.
    let c = client(&urls[0]).await;
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

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4u64)
        .map(|k| {
            tokio::spawn(load(
                urls.clone(),
                (k + 1) << 32,
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    // The kills happen under load: wait until the load is being answered.
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < 50 {
        assert!(Instant::now() < deadline, "the load got no answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

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
        converged(&urls).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    let before = converged(&urls).await;
    let n_acked = acked.lock().unwrap().len();
    assert!(n_acked > 0, "the load got answers");

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

    // Every acknowledged transfer is there: a repeat is answered as a duplicate.
    let c = client(&urls[1]).await;
    let acked = acked.lock().unwrap().clone();
    for (id, spec) in &acked {
        let a = c
            .submit(Command::Transfer(spec.clone()))
            .await
            .unwrap_or_else(|e| panic!("repeat of transfer {id}: {e}"));
        assert!(
            a.duplicate,
            "transfer {id} was acknowledged but is not recorded"
        );
    }
    println!("{} acknowledged transfers all present", acked.len());
}
