//! Membership changes under load, through the public API only: five servers in this
//! process (three founding members, two started empty), a transfer load from cluster
//! clients (`ClientConfig::cluster`, which route to the leaders and fail over), and while
//! it runs: node 4 is added; node 1's replicas are moved to node 5 (add 5, remove 1, stop
//! 1); node 2 is removed and stopped. Afterwards the remaining replicas agree, every
//! acknowledged transfer is recorded (a repeat is a duplicate) and every balance is
//! exactly what the transfers sent say: none lost, none applied twice. The status clients
//! route by (`routing_only`) then lists nodes 3 to 5 and the leaders, without state hashes,
//! and the cluster map (the metadata group's state) names exactly nodes 3 to 5.
//!
//! The same on a cluster whose nodes hold only some shards (docs/design/0013, step 3):
//! three founders place four shards with two replicas each; under the load, node 4 joins
//! and receives its share (the reconcilers move replicas to it), a shard is moved by
//! command (bad moves refused, typed), then node 1 leaves and its replicas move to the
//! others. After each change every node holds exactly the
//! shards the map places on it, every group's voters are its target, and at the end no
//! transfer is lost or applied twice.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tradelog_api::proto as pb;
use tradelog_api::proto::tradelog_client::TradelogClient;
use tradelog_client::{Client, ClientConfig, ClusterChange, ClusterStatus, EventStream};
use tradelog_domain::*;
use tradelog_server::RunningServer;

const SHARDS: u32 = 2;
const ACCOUNTS: u64 = 16;
const FUNDS: u64 = 1_000_000;
const USD: AssetId = AssetId(1);
const WAIT: Duration = Duration::from_secs(90);

use tradelog_server::testing::{free_port, loopback_url as url};

async fn start(
    id: u64,
    port: u16,
    dir: std::path::PathBuf,
    members: &BTreeMap<u64, String>,
) -> RunningServer {
    tradelog_server::testing::start_cluster_node(id, port, dir, members, SHARDS).await
}

fn client(urls: &[String]) -> Client {
    let mut c = ClientConfig::cluster(urls.iter().cloned());
    c.request_timeout_ms = 60_000;
    c.retry.attempts_max = 40;
    c.retry.backoff_ms_max = 500;
    Client::new(c).unwrap()
}

fn transfer(id: u64) -> TransferSpec {
    let debit = 1 + id % ACCOUNTS;
    TransferSpec {
        id: TransferId(id),
        debit: AccountId(debit),
        // Half the time the other shard (accounts live on id % SHARDS).
        credit: AccountId(1 + (debit + id % 3) % ACCOUNTS),
        asset: USD,
        amount: Amount(1 + id % 5),
        balancing: false,
    }
}

#[derive(Default)]
struct Ledger {
    sent: BTreeMap<u64, TransferSpec>,
    acked: BTreeMap<u64, TransferSpec>,
    errors: Vec<String>,
}

/// Transfers with fresh ids until `stop`; a failed one is sent again with the same id.
async fn load(c: Client, first_id: u64, stop: Arc<AtomicBool>, ledger: Arc<Mutex<Ledger>>) {
    let mut id = first_id;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let spec = transfer(id);
        ledger.lock().unwrap().sent.insert(id, spec.clone());
        loop {
            match c.submit(Command::Transfer(spec.clone())).await {
                Ok(a) => {
                    assert!(a.result.is_ok(), "transfer {id}: {:?}", a.result);
                    ledger.lock().unwrap().acked.insert(id, spec.clone());
                    break;
                }
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(e) => ledger
                    .lock()
                    .unwrap()
                    .errors
                    .push(format!("transfer {id}: {e}")),
            }
        }
    }
}

/// What an event follower saw.
#[derive(Default)]
struct Followed {
    events: Vec<EventRecord>,
    position: tradelog_client::Position,
    /// Why each subscription ended (a node stopped, or another reason).
    ends: Vec<String>,
    /// Times a subscription went on by itself after its node stopped holding a shard.
    resumed: u64,
}

/// Follows the all stream through a routed client from the beginning, subscribing again
/// from its position whenever a subscription ends, until `stop` and it has reached
/// `target` (set by the test once the load has stopped).
async fn follow(
    c: Client,
    stop: Arc<AtomicBool>,
    target: Arc<Mutex<Option<tradelog_client::Position>>>,
    seen: Arc<Mutex<Followed>>,
) {
    use tokio_stream::StreamExt;
    let reached = |seen: &Followed| {
        let target = target.lock().unwrap();
        target
            .as_ref()
            .is_some_and(|t| t.0.iter().all(|(s, q)| seen.position.get(*s) >= *q))
    };
    while !(stop.load(Ordering::Relaxed) && reached(&seen.lock().unwrap())) {
        let (after, resumed_before) = {
            let seen = seen.lock().unwrap();
            (seen.position.clone(), seen.resumed)
        };
        let mut sub = match c.subscribe(EventStream::All, after).await {
            Ok(sub) => sub,
            Err(e) => {
                seen.lock()
                    .unwrap()
                    .ends
                    .push(format!("other: subscribe: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
            let mut seen = seen.lock().unwrap();
            seen.resumed = resumed_before + sub.resumed();
            match next {
                // Quiet: look at `stop` and the target again.
                Err(_) if stop.load(Ordering::Relaxed) && reached(&seen) => break,
                Err(_) => continue,
                Ok(Some(Ok(page))) => {
                    seen.events.extend(page.events);
                    seen.position = page.position;
                }
                Ok(Some(Err(e))) => {
                    use tradelog_client::ClientError as E;
                    let why = match e {
                        E::WrongNode { .. } => "wrong node".to_string(),
                        E::Unavailable { .. } => "unavailable".to_string(),
                        e => format!("other: {e}"),
                    };
                    seen.ends.push(why);
                    break;
                }
                Ok(None) => {
                    seen.ends.push("ended".into());
                    break;
                }
            }
        }
    }
}

/// Asserts that each shard's events in `events` are numbered 1, 2, 3, ... (none missing,
/// none twice, in order); returns them per shard.
fn contiguous(events: &[EventRecord], what: &str) -> BTreeMap<ShardId, u64> {
    let mut per: BTreeMap<ShardId, Vec<u64>> = BTreeMap::new();
    for e in events {
        per.entry(e.shard).or_default().push(e.seq);
    }
    per.into_iter()
        .map(|(s, v)| {
            let n = v.len() as u64;
            assert!(v.iter().copied().eq(1..=n), "{what}: shard {s}: {v:?}");
            (s, n)
        })
        .collect()
}

/// Six loads of transfers through one routing client that knows `nodes` to begin with.
#[allow(clippy::type_complexity)]
fn start_load(
    nodes: &BTreeMap<u64, String>,
) -> (
    Client,
    Arc<Mutex<Ledger>>,
    Arc<AtomicBool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let routed = client(&nodes.values().cloned().collect::<Vec<_>>());
    let loads = (0..6u64)
        .map(|k| {
            tokio::spawn(load(
                routed.clone(),
                (k + 1) << 32,
                stop.clone(),
                ledger.clone(),
            ))
        })
        .collect();
    (routed, ledger, stop, loads)
}

/// Waits until `node`'s view of the cluster satisfies `f`.
async fn eventually(c: &Client, what: &str, f: impl Fn(&ClusterStatus) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = c.cluster_status().await;
        if let Ok(s) = &s {
            if f(s) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the load has `n` more answers than now.
async fn progress(ledger: &Mutex<Ledger>, n: usize) {
    let target = ledger.lock().unwrap().acked.len() + n;
    let deadline = Instant::now() + WAIT;
    while ledger.lock().unwrap().acked.len() < target {
        assert!(Instant::now() < deadline, "the load stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until, for every one of `shards` shards, the servers in `nodes` that hold it
/// report the same applied index and state hash (at least one holds it).
async fn converged_held(nodes: &[&RunningServer], shards: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut views = BTreeMap::new();
        for n in nodes {
            let c = n.cluster().expect("a cluster node");
            for s in c.hosted() {
                if let Ok(h) = c.state_hash(s).await {
                    views.entry(s).or_insert_with(Vec::new).push(h);
                }
            }
        }
        let agree =
            views.len() == shards as usize && views.values().all(|v| v.iter().all(|h| *h == v[0]));
        if agree {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every one of `shards` shards has a leader and the leaderships per node (of
/// the nodes in `servers`) are within one of each other; returns them.
async fn leaders_even(servers: &BTreeMap<u64, RunningServer>, shards: u32) -> BTreeMap<u64, usize> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut leader: BTreeMap<ShardId, u64> = BTreeMap::new();
        for s in servers.values() {
            let c = s.cluster().unwrap();
            for shard in c.hosted() {
                if let Some(g) = c.group(shard) {
                    if let Some(l) = g.raft().current_leader().await {
                        leader.insert(shard, l);
                    }
                }
            }
        }
        let mut led: BTreeMap<u64, usize> = servers.keys().map(|n| (*n, 0)).collect();
        for l in leader.values() {
            if let Some(n) = led.get_mut(l) {
                *n += 1;
            }
        }
        let spread = led.values().max().unwrap() - led.values().min().unwrap();
        if leader.len() == shards as usize && spread <= 1 {
            return led;
        }
        assert!(Instant::now() < deadline, "leaders: {leader:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that every server holds exactly the shards the cluster map places on it, that
/// each shard's voters (as a holder sees them) are its target, and, when `balanced`, that
/// replicas per node are within one of each other; returns the replicas per node.
async fn placed_as_mapped(
    servers: &BTreeMap<u64, RunningServer>,
    rf: usize,
    balanced: bool,
) -> BTreeMap<u64, usize> {
    let deadline = Instant::now() + WAIT;
    loop {
        let map = servers.values().next().unwrap().cluster().unwrap().map();
        let mut wrong = Vec::new();
        let mut load = BTreeMap::new();
        for (id, s) in servers {
            let c = s.cluster().unwrap();
            if c.map() != map {
                wrong.push(format!("node {id} is at map version {}", c.map().version));
            }
            if c.hosted() != map.shards_of(*id) {
                wrong.push(format!("node {id} holds {:?}", c.hosted()));
            }
            load.insert(*id, c.hosted().len());
            for shard in c.hosted() {
                let voters: BTreeSet<u64> = c.group(shard).unwrap().raft().voter_ids().collect();
                if Some(&voters) != map.replicas(shard) || voters.len() != rf {
                    wrong.push(format!("node {id} sees {shard}'s voters as {voters:?}"));
                }
            }
        }
        let (lo, hi) = (load.values().min().unwrap(), load.values().max().unwrap());
        if wrong.is_empty() && map.is_settled() && (hi - lo <= 1 || !balanced) {
            return load;
        }
        assert!(
            Instant::now() < deadline,
            "placement: {wrong:?}, loads {load:?}, map {map:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every acknowledged transfer is recorded (a repeat is a duplicate); the unanswered ones
/// are sent again until answered; then every balance is exactly what was sent.
async fn nothing_lost(c: &Client, ledger: &Mutex<Ledger>) -> (usize, usize) {
    let (sent, acked) = {
        let l = ledger.lock().unwrap();
        (l.sent.clone(), l.acked.clone())
    };
    for (id, spec) in &acked {
        let a = c.submit(Command::Transfer(spec.clone())).await.unwrap();
        assert!(
            a.duplicate,
            "transfer {id} was acknowledged but is not recorded"
        );
    }
    for (id, spec) in sent.iter().filter(|(id, _)| !acked.contains_key(id)) {
        let a = c.submit(Command::Transfer(spec.clone())).await.unwrap();
        assert!(a.result.is_ok(), "transfer {id}: {:?}", a.result);
    }
    let mut want: BTreeMap<u64, (u64, u64)> = (1..=ACCOUNTS).map(|a| (a, (FUNDS, 0))).collect();
    for t in sent.values() {
        want.get_mut(&t.debit.0).unwrap().0 -= t.amount.0;
        want.get_mut(&t.credit.0).unwrap().0 += t.amount.0;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let mut got = BTreeMap::new();
        for a in 1..=ACCOUNTS {
            let b = c.balances(AccountId(a)).await.unwrap().of(USD);
            got.insert(a, (b.available.0, b.held.0));
        }
        if got == want {
            return (sent.len(), acked.len());
        }
        assert!(
            Instant::now() < deadline,
            "balances (available, held) after {} transfers: got {got:?}, want {want:?}",
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens the accounts and funds them.
async fn fund(setup: &Client) {
    setup
        .create_asset(Asset {
            id: USD,
            code: "USD".into(),
            scale: 2,
        })
        .await
        .unwrap();
    for a in 1..=ACCOUNTS {
        setup
            .open_account(AccountId(a), Principal(a))
            .await
            .unwrap();
        setup
            .deposit(TransferId(a), AccountId(a), USD, Amount(FUNDS))
            .await
            .unwrap();
    }
}

/// Waits until every server in `nodes` reports the same applied index and state hash for
/// every shard.
async fn converged(nodes: &[&RunningServer]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut views = Vec::new();
        for n in nodes {
            let c = n.cluster().expect("a cluster node");
            let mut v = Vec::new();
            for s in 0..SHARDS {
                v.push(c.state_hash(ShardId(s)).await.unwrap());
            }
            views.push(v);
        }
        if views.iter().all(|v| *v == views[0]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_under_load_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let founders: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, url(ports[id as usize - 1])))
        .collect();
    let mut servers: BTreeMap<u64, RunningServer> = BTreeMap::new();
    for id in 1..=5u64 {
        // Nodes 4 and 5 start empty, with no member list: they wait to be added.
        let members = if id <= 3 {
            founders.clone()
        } else {
            BTreeMap::new()
        };
        let dir = root.path().join(format!("node-{id}"));
        servers.insert(id, start(id, ports[id as usize - 1], dir, &members).await);
    }
    // Operators' client: talks to node 3 (never removed).
    let admin = {
        let mut c = ClientConfig::new(url(ports[2]));
        c.request_timeout_ms = 120_000;
        c.route_to_leaders = false;
        Client::new(c).unwrap()
    };
    eventually(&admin, "every shard has a leader", |s| {
        s.shards.iter().all(|r| r.leader.is_some())
    })
    .await;

    fund(&client(&[url(ports[0])])).await;

    // The load: clients that know only the founding members to begin with.
    let (routed, ledger, stop, loads) = start_load(&founders);
    progress(&ledger, 100).await;

    // 1. Add node 4: learner, catches up, then voter of every group.
    admin
        .change_cluster(&ClusterChange::AddNode {
            node: 4,
            url: url(ports[3]),
        })
        .await
        .unwrap();
    eventually(&admin, "node 4 votes in every group", |s| {
        s.shards.iter().all(|r| r.voters == vec![1, 2, 3, 4])
    })
    .await;
    progress(&ledger, 100).await;

    // 2. Move node 1's replicas to node 5: add 5, remove 1, stop 1.
    admin
        .change_cluster(&ClusterChange::AddNode {
            node: 5,
            url: url(ports[4]),
        })
        .await
        .unwrap();
    admin
        .change_cluster(&ClusterChange::RemoveNode { node: 1 })
        .await
        .unwrap();
    eventually(&admin, "node 1's replicas moved to node 5", |s| {
        s.shards.iter().all(|r| r.voters == vec![2, 3, 4, 5])
    })
    .await;
    servers.remove(&1).unwrap().shutdown().await.unwrap();
    progress(&ledger, 100).await;

    // 3. Remove node 2 and stop it.
    admin
        .change_cluster(&ClusterChange::RemoveNode { node: 2 })
        .await
        .unwrap();
    eventually(&admin, "node 2 left every group", |s| {
        s.shards.iter().all(|r| r.voters == vec![3, 4, 5])
    })
    .await;
    servers.remove(&2).unwrap().shutdown().await.unwrap();
    progress(&ledger, 100).await;

    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    {
        let l = ledger.lock().unwrap();
        assert_eq!(
            l.errors,
            Vec::<String>::new(),
            "the cluster clients never surfaced an error"
        );
    }
    // The load's client learned the new nodes and now talks to them only.
    let learned: Vec<Option<u64>> = routed.nodes().into_iter().map(|(_, id)| id).collect();
    assert!(
        learned.contains(&Some(4)) && learned.contains(&Some(5)),
        "the client learned nodes 4 and 5: {:?}",
        routed.nodes()
    );

    let rest: Vec<&RunningServer> = servers.values().collect();
    converged(&rest).await;

    // Every acknowledged transfer is recorded; the unanswered ones are sent again until
    // answered; then every balance is exact.
    let c = client(&[url(ports[2]), url(ports[3]), url(ports[4])]);
    let (sent, acked) = nothing_lost(&c, &ledger).await;
    converged(&rest).await;

    // The status clients route by lists the members' URLs and the leaders, without the
    // state hashes the full status computes.
    let raw = TradelogClient::connect(url(ports[2])).await.unwrap();
    let status = |routing_only| {
        let mut raw = raw.clone();
        async move {
            raw.get_cluster_status(pb::GetClusterStatusRequest { routing_only })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let (full, routing) = (status(false).await, status(true).await);
    let members: Vec<(u64, String)> = (3..=5)
        .map(|id| (id, url(ports[id as usize - 1])))
        .collect();
    for s in [&full, &routing] {
        let nodes: Vec<(u64, String)> = s.nodes.iter().map(|n| (n.node, n.url.clone())).collect();
        assert_eq!(nodes, members);
        assert!(s.shards.iter().all(|r| r.leader.is_some()), "{s:?}");
    }
    assert!(
        full.shards.iter().all(|r| r.state_hash.len() == 64),
        "{full:?}"
    );
    // The cluster map recorded every change: nodes 3 to 5, none draining, and the
    // metadata group, led, no longer has nodes 1 and 2.
    let want: Vec<(u64, String, bool)> = members
        .iter()
        .map(|(n, u)| (*n, u.clone(), false))
        .collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let s = status(true).await;
        let m = s.metadata.clone().expect("the status carries the metadata");
        let nodes: Vec<(u64, String, bool)> = m
            .nodes
            .iter()
            .map(|n| (n.node, n.url.clone(), n.draining))
            .collect();
        let replicas: Vec<u64> = m.voters.iter().chain(&m.learners).copied().collect();
        if nodes == want && m.leader.is_some() && !replicas.contains(&1) && !replicas.contains(&2) {
            assert!(m.version >= 1 && m.replication_factor >= 1, "{m:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the cluster map: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        routing.shards.iter().all(|r| r.state_hash.is_empty()),
        "{routing:?}"
    );
    println!(
        "{sent} transfers sent during the changes ({acked} acknowledged), each applied once; \
         the load's client retried {} times",
        routed.retries()
    );
    tradelog_server::testing::shutdown_all(servers.into_values()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partial_cluster_rebalances_under_load_and_loses_nothing() {
    const PARTIAL_SHARDS: u32 = 4;
    const RF: usize = 2;
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let founders: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, url(ports[id as usize - 1])))
        .collect();
    let dir = |id: u64| root.path().join(format!("node-{id}"));
    let mut servers: BTreeMap<u64, RunningServer> = BTreeMap::new();
    for id in 1..=3u64 {
        let s = tradelog_server::testing::start_cluster_node_rf(
            id,
            ports[id as usize - 1],
            dir(id),
            &founders,
            PARTIAL_SHARDS,
            Some(RF),
        )
        .await;
        servers.insert(id, s);
    }
    let joiner = tradelog_server::testing::start_cluster_node_rf(
        4,
        ports[3],
        dir(4),
        &BTreeMap::new(),
        PARTIAL_SHARDS,
        None,
    )
    .await;
    assert!(
        joiner.cluster().unwrap().hosted().is_empty(),
        "a node waiting to be added opens no replica"
    );
    for s in servers.values() {
        assert!(s.cluster().unwrap().wait_for_leaders(WAIT).await);
    }
    // 8 replicas on 3 nodes.
    let formed = placed_as_mapped(&servers, RF, true).await;
    assert_eq!(formed.values().sum::<usize>(), 8, "{formed:?}");
    fund(&client(&[url(ports[0])])).await;

    let (routed, ledger, stop, loads) = start_load(&founders);
    // An event follower through the whole rebalance: its subscriptions end when a node
    // stops holding a shard it reads there, and it subscribes again from its position.
    let target = Arc::new(Mutex::new(None));
    let followed = Arc::new(Mutex::new(Followed::default()));
    let follower = tokio::spawn(follow(
        client(&founders.values().cloned().collect::<Vec<_>>()),
        stop.clone(),
        target.clone(),
        followed.clone(),
    ));
    progress(&ledger, 100).await;

    let admin = {
        let mut c = ClientConfig::new(url(ports[2]));
        c.request_timeout_ms = 300_000;
        c.route_to_leaders = false;
        Client::new(c).unwrap()
    };
    // 1. Node 4 joins and takes its share: two replicas each.
    admin
        .change_cluster(&ClusterChange::AddNode {
            node: 4,
            url: url(ports[3]),
        })
        .await
        .unwrap();
    servers.insert(4, joiner);
    let load_4 = placed_as_mapped(&servers, RF, true).await;
    assert_eq!(load_4, (1..=4).map(|n| (n, 2)).collect(), "{load_4:?}");
    // ... and its share of leaders: the balancer hands leaderships to the map's preferred
    // nodes (four shards on four nodes: one each).
    let led_4 = leaders_even(&servers, PARTIAL_SHARDS).await;
    assert_eq!(led_4, (1..=4).map(|n| (n, 1)).collect(), "{led_4:?}");
    progress(&ledger, 100).await;

    // 2. Shard 0 moved by command to two nodes, at least one of them new to it.
    let map = servers[&2].cluster().unwrap().map();
    let before = map.replicas(ShardId(0)).unwrap().clone();
    let outside = (1..=4).find(|n| !before.contains(n)).unwrap();
    let to = vec![*before.iter().next().unwrap(), outside];
    admin
        .change_cluster(&ClusterChange::MoveShard {
            shard: 0,
            nodes: to.clone(),
        })
        .await
        .unwrap();
    placed_as_mapped(&servers, RF, false).await;
    let map = servers[&2].cluster().unwrap().map();
    assert_eq!(
        map.replicas(ShardId(0)).unwrap(),
        &to.iter().copied().collect::<BTreeSet<u64>>()
    );
    // Bad moves are refused, typed, and change nothing.
    let invalid = [
        ClusterChange::MoveShard {
            shard: 0,
            nodes: vec![],
        },
        ClusterChange::MoveShard {
            shard: 0,
            nodes: vec![2, 2],
        },
        ClusterChange::MoveShard {
            shard: 9,
            nodes: vec![2],
        },
    ];
    for bad in invalid {
        match admin.change_cluster(&bad).await {
            Err(tradelog_client::ClientError::InvalidArgument(_)) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // A node that is not a member: the map refuses it.
    let unknown = ClusterChange::MoveShard {
        shard: 0,
        nodes: vec![2, 77],
    };
    match admin.change_cluster(&unknown).await {
        Err(tradelog_client::ClientError::Status { code, message }) => {
            assert_eq!(code, "FailedPrecondition", "{message}");
            assert!(message.contains("77"), "{message}");
        }
        other => panic!("{unknown:?}: {other:?}"),
    }
    assert_eq!(servers[&2].cluster().unwrap().map(), map);
    progress(&ledger, 100).await;

    // 3. Node 1 leaves: its replicas move to the other three (balanced again by the
    // placement policy), its own are archived.
    admin
        .change_cluster(&ClusterChange::RemoveNode { node: 1 })
        .await
        .unwrap();
    let one = servers.remove(&1).unwrap();
    let deadline = Instant::now() + WAIT;
    while !one.cluster().unwrap().hosted().is_empty() {
        assert!(Instant::now() < deadline, "node 1 keeps its replicas");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    one.shutdown().await.unwrap();
    for s in 0..PARTIAL_SHARDS {
        assert!(!dir(1).join(format!("shard-{s}")).exists());
    }
    let archived = std::fs::read_dir(dir(1).join(tradelog_cluster::ARCHIVE_DIR))
        .unwrap()
        .count();
    // Every replica node 1 held was closed once (one when node 4 took its share, maybe
    // one by the move, the rest when it left; a draining node never gains one), plus
    // one if the move gave it a replica.
    let gained = usize::from(to.contains(&1) && !before.contains(&1));
    assert_eq!(archived, formed[&1] + gained, "replicas node 1 closed");
    let load_3 = placed_as_mapped(&servers, RF, true).await;
    assert_eq!(load_3.values().sum::<usize>(), 8, "{load_3:?}");
    leaders_even(&servers, PARTIAL_SHARDS).await;
    progress(&ledger, 100).await;

    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    assert_eq!(
        ledger.lock().unwrap().errors,
        Vec::<String>::new(),
        "the cluster clients never surfaced an error"
    );
    let rest: Vec<&RunningServer> = servers.values().collect();
    converged_held(&rest, PARTIAL_SHARDS).await;
    let c = client(&[url(ports[1]), url(ports[2]), url(ports[3])]);
    let (sent, acked) = nothing_lost(&c, &ledger).await;
    converged_held(&rest, PARTIAL_SHARDS).await;
    // Every event of every shard, read in pages merged from the nodes holding them; the
    // follower saw the same, each once and in order, across every move.
    let mut events = Vec::new();
    let mut after = tradelog_client::Position::default();
    loop {
        let page = c
            .read_events(EventStream::All, &after, 1_000)
            .await
            .unwrap();
        if page.events.is_empty() && page.position == after {
            break;
        }
        events.extend(page.events);
        after = page.position;
    }
    let read = contiguous(&events, "the all stream after the moves");
    assert_eq!(read.len(), PARTIAL_SHARDS as usize, "{read:?}");
    *target.lock().unwrap() = Some(after.clone());
    tokio::time::timeout(WAIT, follower)
        .await
        .expect("the follower reaches the end")
        .unwrap();
    let seen = std::mem::take(&mut *followed.lock().unwrap());
    let followed_read = contiguous(&seen.events, "the follower");
    assert_eq!(read, followed_read, "the follower's events");
    assert!(
        seen.ends.iter().all(|e| !e.starts_with("other")),
        "a subscription ended for another reason: {:?}",
        seen.ends
    );
    // A shard moved off the node serving a part: the subscription went on by itself.
    assert!(
        !seen.ends.iter().any(|e| e == "wrong node"),
        "a subscription ended when a shard moved: {:?}",
        seen.ends
    );
    assert!(
        seen.resumed > 0,
        "no subscription had to follow a moved shard"
    );
    println!(
        "{sent} transfers sent while replicas moved ({acked} acknowledged), each applied \
         once; the load's client retried {} times; {} events followed over {} \
         subscriptions ({:?}), which went on by themselves {} times after a shard moved",
        routed.retries(),
        seen.events.len(),
        seen.ends.len() + 1,
        seen.ends,
        seen.resumed
    );
    tradelog_server::testing::shutdown_all(servers.into_values()).await;
}
