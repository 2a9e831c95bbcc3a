//! Three servers in one process forming a replicated cluster over loopback gRPC (every
//! shard a Raft group with a replica on each): commands submitted through every node are
//! committed and applied on every replica with equal state hashes and every invariant;
//! the leader of shard 0 is stopped, the other two go on taking commands; it is restarted
//! from its data directory and catches up to the same state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tradelog_domain::*;
use tradelog_engine::cluster::validate_quiescent;
use tradelog_engine::Input;
use tradelog_node::{CommandReply, ShardHost, SubmitError};
use tradelog_server::{ClusterSettings, RunningServer, Server, ServerConfig};

const SHARDS: u32 = 2;
const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    tradelog_server::ports::free_loopback_port().unwrap()
}

fn raft() -> tradelog_raft::openraft::Config {
    let mut c = tradelog_raft::raft_config("test").unwrap();
    c.heartbeat_interval = 50;
    c.election_timeout_min = 300;
    c.election_timeout_max = 600;
    c
}

struct Member {
    id: u64,
    grpc: u16,
    dir: std::path::PathBuf,
}

/// Nodes 1 to `n`, each with a free gRPC port and a data directory under `root`.
fn members(root: &std::path::Path, n: u64) -> Vec<Member> {
    (1..=n)
        .map(|id| Member {
            id,
            grpc: free_port(),
            dir: root.join(format!("node-{id}")),
        })
        .collect()
}

/// The member list (id and gRPC URL) of `members`.
fn urls(members: &[Member]) -> BTreeMap<u64, String> {
    members
        .iter()
        .map(|m| (m.id, format!("http://127.0.0.1:{}", m.grpc)))
        .collect()
}

async fn start(m: &Member, members: &BTreeMap<u64, String>) -> RunningServer {
    start_balancing(m, members, tradelog_server::LEADER_BALANCE_INTERVAL_MS).await
}

async fn start_balancing(
    m: &Member,
    members: &BTreeMap<u64, String>,
    leader_balance_interval_ms: u64,
) -> RunningServer {
    Server::start(ServerConfig {
        data_dir: m.dir.clone(),
        shards: SHARDS,
        grpc_addr: format!("127.0.0.1:{}", m.grpc).parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        cluster: Some(ClusterSettings {
            node_id: m.id,
            initial_members: members.clone(),
            raft: Some(raft()),
            leader_balance_interval_ms,
            replication_factor: None,
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("server starts")
}

/// Submits `command` through `node` and waits for the answer.
async fn submit(node: &dyn ShardHost, command: Command) -> Result<CommandReply, SubmitError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let meta = Meta {
        timestamp: tradelog_node::runtime::now(),
        principal: Principal(1),
        authority: Authority::Operator,
    };
    node.submit(
        meta,
        command,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.await.unwrap_or(Err(SubmitError::Stopped))
}

/// The commands of `batches`; from the third batch on (the accounts are open and funded
/// by then) each batch also moves money between accounts on different shards, so that
/// every run depends on cross-shard messages.
fn commands(batches: Vec<Vec<Input>>) -> Vec<Vec<Command>> {
    batches
        .into_iter()
        .enumerate()
        .map(|(k, b)| {
            let mut out: Vec<Command> = b
                .into_iter()
                .filter_map(|i| match i {
                    Input::Command { command, .. } => Some(command),
                    _ => None,
                })
                .collect();
            if k >= 2 {
                let debit = 1 + k as u64 % 10;
                out.push(Command::Transfer(TransferSpec {
                    id: TransferId(900_000 + k as u64),
                    debit: AccountId(debit),
                    // The next account: the other parity, so the other shard.
                    credit: AccountId(1 + debit % 10),
                    asset: AssetId(1),
                    amount: Amount(1),
                    balancing: false,
                }));
            }
            out
        })
        .collect()
}

/// Runs `batches` round robin over `nodes`; every command must be answered. A batch that
/// opens accounts or creates the catalog goes in order (a deposit needs its account);
/// the others' commands are sent concurrently. Returns how many were accepted.
async fn run(nodes: &[&RunningServer], batches: &[Vec<Command>]) -> usize {
    let mut accepted = 0;
    for batch in batches {
        let setup = batch.iter().any(|c| {
            matches!(
                c,
                Command::OpenAccount { .. } | Command::CreateAsset(_) | Command::CreateMarket(_)
            )
        });
        let mut replies = Vec::new();
        if setup {
            for (k, c) in batch.iter().enumerate() {
                replies.push(submit(nodes[k % nodes.len()].node(), c.clone()).await);
            }
        } else {
            let pending = batch
                .iter()
                .enumerate()
                .map(|(k, c)| submit(nodes[k % nodes.len()].node(), c.clone()));
            replies = futures_util::future::join_all(pending).await;
        }
        for r in replies {
            let reply = r.expect("every command is answered once committed");
            accepted += usize::from(reply.outcome.result.is_ok());
        }
    }
    accepted
}

/// Waits until every node has applied the same log index on every shard, then returns
/// each shard's state hash, checking that every node has the same.
async fn converged(nodes: &[&RunningServer]) -> Vec<[u8; 32]> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut views = Vec::new();
        for n in nodes {
            let c = n.cluster().expect("a cluster node");
            let mut per_shard = Vec::new();
            for s in 0..SHARDS {
                per_shard.push(c.state_hash(ShardId(s)).await.unwrap());
            }
            views.push(per_shard);
        }
        if views.iter().all(|v| *v == views[0]) {
            return views[0].iter().map(|(_, h)| *h).collect();
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn check_invariants(node: &RunningServer) {
    assert!(node.node().wait_quiescent(WAIT), "messages still in flight");
    let engines = node.node().engines().unwrap();
    for e in &engines {
        e.validate().unwrap();
    }
    validate_quiescent(&engines).unwrap();
    // Cross-shard messages were delivered (and acknowledged: the outboxes are empty).
    assert!(
        engines.iter().any(|e| (0..SHARDS)
            .map(ShardId)
            .any(|s| s != e.shard() && e.inbox_applied(s) > 0)),
        "no cross-shard message was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_agree_and_survive_a_leader_stop() {
    let root = tempfile::tempdir().unwrap();
    let members = members(root.path(), 3);
    let urls = urls(&members);
    let mut servers = Vec::new();
    for m in &members {
        servers.push(Some(start(m, &urls).await));
    }
    for s in servers.iter().flatten() {
        assert!(s.cluster().unwrap().wait_for_leaders(WAIT).await);
    }
    let all = commands(tradelog_engine::testing::workload(30, 8));
    let (first, rest) = all.split_at(all.len() / 2);

    // Through every node.
    let accepted = {
        let nodes: Vec<&RunningServer> = servers.iter().flatten().collect();
        let accepted = run(&nodes, first).await;
        let hashes = converged(&nodes).await;
        check_invariants(nodes[0]);
        assert_eq!(hashes.len(), SHARDS as usize);
        accepted
    };
    assert!(
        accepted > first.len() / 2,
        "{accepted} of {} accepted",
        first.len()
    );

    // Stop the leader of shard 0; the other two take the rest.
    let leader = servers[0]
        .as_ref()
        .unwrap()
        .cluster()
        .unwrap()
        .status()
        .await
        .shards[0]
        .leader
        .expect("shard 0 has a leader");
    let stopped = (leader - 1) as usize;
    servers[stopped].take().unwrap().shutdown().await.unwrap();
    {
        let nodes: Vec<&RunningServer> = servers.iter().flatten().collect();
        assert_eq!(nodes.len(), 2);
        run(&nodes, rest).await;
        let status = nodes[0].cluster().unwrap().status().await;
        assert!(
            status.shards[0].leader.is_some_and(|l| l != leader),
            "shard 0 has a new leader: {status:?}"
        );
        converged(&nodes).await;
        check_invariants(nodes[0]);
    }

    // The stopped node comes back from its data directory and catches up.
    servers[stopped] = Some(start(&members[stopped], &urls).await);
    let nodes: Vec<&RunningServer> = servers.iter().flatten().collect();
    let hashes = converged(&nodes).await;
    check_invariants(nodes[stopped]);
    // Its own copy of every shard is what the others have.
    let engines = nodes[stopped].node().engines().unwrap();
    let mine: Vec<[u8; 32]> = engines.iter().map(|e| e.state_hash()).collect();
    assert_eq!(hashes, mine);

    shutdown_all(servers.into_iter().flatten()).await;
}

/// Waits until `f` holds for `node`'s view of the cluster.
async fn eventually(
    node: &RunningServer,
    what: &str,
    f: impl Fn(&tradelog_cluster::ClusterStatus) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = node.cluster().unwrap().status().await;
        if f(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joins_leadership_moves_and_a_node_leaves() {
    let root = tempfile::tempdir().unwrap();
    let members = members(root.path(), 4);
    let urls = urls(&members[..3]);
    let mut servers: Vec<Option<RunningServer>> = Vec::new();
    for m in &members[..3] {
        servers.push(Some(start(m, &urls).await));
    }
    // Node 4 starts empty, with no member list: it waits to be added.
    servers.push(Some(start(&members[3], &BTreeMap::new()).await));
    for s in servers[..3].iter().flatten() {
        assert!(s.cluster().unwrap().wait_for_leaders(WAIT).await);
    }
    let all = commands(tradelog_engine::testing::workload(24, 6));
    let (a, rest) = all.split_at(all.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    {
        let nodes: Vec<&RunningServer> = servers[..3].iter().flatten().collect();
        run(&nodes, a).await;
    }

    // Add node 4 through node 2 (not necessarily any shard's leader): it catches up and
    // becomes a voter of every group.
    let url4 = format!("http://127.0.0.1:{}", members[3].grpc);
    servers[1]
        .as_ref()
        .unwrap()
        .cluster()
        .unwrap()
        .add_node(4, &url4)
        .await
        .unwrap();
    let four: Vec<&RunningServer> = servers.iter().flatten().collect();
    eventually(four[0], "node 4 votes in every group", |s| {
        s.shards.iter().all(|r| r.voters == vec![1, 2, 3, 4])
    })
    .await;
    run(&four, b).await;
    converged(&four).await;

    // Hand shard 1 to node 4, then spread leaders evenly (shard s led by voter s mod 4).
    four[2]
        .cluster()
        .unwrap()
        .transfer_leader(ShardId(1), 4)
        .await
        .unwrap();
    eventually(four[0], "node 4 leads shard 1", |s| {
        s.shards[1].leader == Some(4)
    })
    .await;
    four[0].cluster().unwrap().balance_leaders().await.unwrap();
    eventually(four[3], "leaders spread", |s| {
        s.shards
            .iter()
            .all(|r| r.leader == Some(r.voters[r.shard.0 as usize % r.voters.len()]))
    })
    .await;

    // Remove node 1 through node 3, stop it; the other three go on.
    four[2].cluster().unwrap().remove_node(1).await.unwrap();
    eventually(four[3], "node 1 left every group", |s| {
        s.shards.iter().all(|r| r.voters == vec![2, 3, 4])
    })
    .await;
    drop(four);
    servers[0].take().unwrap().shutdown().await.unwrap();
    let three: Vec<&RunningServer> = servers.iter().flatten().collect();
    run(&three, c).await;
    converged(&three).await;
    check_invariants(three[0]);
    drop(three);
    shutdown_all(servers.into_iter().flatten()).await;
}

/// Shuts `servers` down together (one at a time, a node waits out its grace period for
/// the replication streams its running peers keep open). As
/// `tradelog_server::testing::shutdown_all`, which this crate's own tests do not get
/// (feature `testing`).
async fn shutdown_all(servers: impl IntoIterator<Item = RunningServer>) {
    let stops: Vec<_> = servers
        .into_iter()
        .map(|s| tokio::spawn(s.shutdown()))
        .collect();
    for s in stops {
        s.await.unwrap().unwrap();
    }
}

/// Waits until every node in `nodes` holds exactly the shards `want` names for it.
async fn hosted_as(nodes: &[&RunningServer], want: impl Fn(u64) -> Vec<u32>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got: Vec<(u64, Vec<u32>)> = nodes
            .iter()
            .map(|n| {
                let c = n.cluster().unwrap();
                (c.id(), c.hosted().iter().map(|s| s.0).collect())
            })
            .collect();
        if got.iter().all(|(id, h)| *h == want(*id)) {
            return;
        }
        assert!(Instant::now() < deadline, "hosted shards: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cluster formed with every node holding every shard spreads its shards when its
/// replication factor goes down (each node keeps its share; the replicas it gives up are
/// archived), a node added afterwards receives its fair share rather than every shard,
/// and raising the factor back to the node count puts every shard on every node again;
/// commands go on throughout and every replica ends with the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_replication_factor_changes_where_shards_live() {
    let root = tempfile::tempdir().unwrap();
    let members = members(root.path(), 4);
    let urls = urls(&members[..3]);
    let mut servers: Vec<RunningServer> = Vec::new();
    for m in &members[..3] {
        servers.push(start(m, &urls).await);
    }
    servers.push(start(&members[3], &BTreeMap::new()).await);
    for s in &servers[..3] {
        assert!(s.cluster().unwrap().wait_for_leaders(WAIT).await);
    }
    let all = commands(tradelog_engine::testing::workload(24, 6));
    let (a, rest) = all.split_at(all.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let three: Vec<&RunningServer> = servers[..3].iter().collect();
    run(&three, a).await;
    let admin = servers[1].cluster().unwrap();

    // More replicas than nodes: refused, nothing changes.
    let e = admin.set_replication_factor(4).await.unwrap_err();
    assert!(e.to_string().contains("needs as many nodes"), "{e}");
    assert_eq!(admin.map().replication_factor, 3);

    // Two replicas of each of the two shards on three nodes: loads 2, 1, 1, and every
    // node holds exactly what the map places on it.
    admin.set_replication_factor(2).await.unwrap();
    let map = admin.map();
    assert_eq!(map.replication_factor, 2);
    assert!(map.shards.values().all(|set| set.len() == 2), "{map:?}");
    let placed = |map: &tradelog_placement::ClusterMap, id: u64| -> Vec<u32> {
        map.shards
            .iter()
            .filter(|(_, set)| set.contains(&id))
            .map(|(s, _)| s.0)
            .collect()
    };
    let mut loads: Vec<usize> = (1..=3).map(|id| placed(&map, id).len()).collect();
    loads.sort();
    assert_eq!(loads, vec![1, 1, 2], "{map:?}");
    hosted_as(&three, |id| placed(&map, id)).await;
    run(&three, b).await;

    // Node 4 joins: its fair share (one shard), not every shard.
    let url4 = format!("http://127.0.0.1:{}", members[3].grpc);
    admin.add_node(4, &url4).await.unwrap();
    let map = admin.map();
    assert!(map.shards.values().all(|set| set.len() == 2), "{map:?}");
    assert_eq!(placed(&map, 4).len(), 1, "{map:?}");
    let four: Vec<&RunningServer> = servers.iter().collect();
    hosted_as(&four, |id| placed(&map, id)).await;

    // Back to every node holding every shard.
    admin.set_replication_factor(4).await.unwrap();
    hosted_as(&four, |_| vec![0, 1]).await;
    run(&four, c).await;
    converged(&four).await;
    check_invariants(four[0]);
    drop((three, four));
    shutdown_all(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaders_spread_over_the_nodes_by_themselves() {
    let root = tempfile::tempdir().unwrap();
    let members = members(root.path(), 3);
    let urls = urls(&members);
    let mut servers = Vec::new();
    for m in &members {
        servers.push(start_balancing(m, &urls, 200).await);
    }
    for s in &servers {
        assert!(s.cluster().unwrap().wait_for_leaders(WAIT).await);
    }
    let one = servers[0].cluster().unwrap();
    // Node 1 takes every leadership; its balancer then hands some away (it may start
    // doing so before the second transfer lands: then it has handed over already).
    one.transfer_leader(ShardId(0), 1).await.unwrap();
    eventually(&servers[1], "node 1 leads shard 0", |s| {
        s.shards[0].leader == Some(1) || one.leader_handovers() > 0
    })
    .await;
    one.transfer_leader(ShardId(1), 1).await.unwrap();
    eventually(&servers[2], "leaders spread by node 1's balancer", |s| {
        let on_one = s.shards.iter().filter(|r| r.leader == Some(1)).count();
        one.leader_handovers() > 0 && on_one == 1 && s.shards.iter().all(|r| r.leader.is_some())
    })
    .await;
    // Balanced now (no node leads two shards more than another): nothing else moves.
    let moved = one.leader_handovers();
    assert_eq!(1, moved);
    shutdown_all(servers).await;
}

/// Every event of every shard through `server`'s `ReadEvents`, from position 0.
async fn read_all_events(server: &RunningServer) -> Vec<EventRecord> {
    use tradelog_api::proto as pb;
    let mut c =
        pb::tradelog_client::TradelogClient::connect(format!("http://{}", server.grpc_addr()))
            .await
            .unwrap();
    let mut after: Option<pb::Position> = None;
    let mut out = Vec::new();
    loop {
        let r = c
            .read_events(pb::ReadEventsRequest {
                stream: Some(pb::EventStream {
                    stream: Some(pb::event_stream::Stream::All(pb::event_stream::All {})),
                }),
                after: after.clone(),
                limit: 0,
                shards: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        if r.events.is_empty() && r.position == after {
            return out;
        }
        out.extend(
            r.events
                .into_iter()
                .map(|e| EventRecord::try_from(e).expect("well-formed event")),
        );
        after = r.position;
    }
}

/// `account`'s balances (asset: available, held) through `server`'s `GetBalances` as of
/// `point`, and the log index answered.
async fn balances_as_of(
    server: &RunningServer,
    account: u64,
    point: tradelog_api::proto::as_of::Point,
) -> (BTreeMap<u32, (u64, u64)>, u64) {
    use tradelog_api::proto as pb;
    let mut c =
        pb::tradelog_client::TradelogClient::connect(format!("http://{}", server.grpc_addr()))
            .await
            .unwrap();
    let r = c
        .get_balances(pb::GetBalancesRequest {
            account_id: account,
            as_of: Some(pb::AsOf { point: Some(point) }),
            stale: false,
        })
        .await
        .unwrap()
        .into_inner();
    let b = r
        .balances
        .iter()
        .map(|b| (b.asset_id, (b.available, b.held)))
        .collect();
    (b, r.log_index)
}

/// A replicated node regenerates history from its replicas' Raft logs: with an event
/// index of 4 events per shard, `ReadEvents` from position 0 returns every event the
/// replicas published, and balances as of an old log index and an old time are the past
/// ones, on the leader and on the followers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_regenerates_history_from_its_raft_log() {
    use tradelog_api::proto::as_of::Point;
    let root = tempfile::tempdir().unwrap();
    let members = members(root.path(), 3);
    let urls = urls(&members);
    let mut servers = Vec::new();
    for m in &members {
        let mut config = ServerConfig {
            data_dir: m.dir.clone(),
            shards: SHARDS,
            grpc_addr: format!("127.0.0.1:{}", m.grpc).parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            cluster: Some(ClusterSettings {
                node_id: m.id,
                initial_members: urls.clone(),
                raft: Some(raft()),
                leader_balance_interval_ms: tradelog_server::LEADER_BALANCE_INTERVAL_MS,
                replication_factor: None,
            }),
            ..ServerConfig::default()
        };
        config.events_retained_max = 4;
        servers.push(Server::start(config).await.expect("server starts"));
    }
    for s in &servers {
        assert!(s.cluster().unwrap().wait_for_leaders(WAIT).await);
    }
    // What every node's replicas publish, from the start.
    let feeds: Vec<_> = servers.iter().map(|s| s.node().subscribe()).collect();

    const USD: u32 = 1;
    let (a, b) = (AccountId(1), AccountId(2));
    let mut commands = vec![Command::CreateAsset(Asset {
        id: AssetId(USD),
        code: "USD".into(),
        scale: 2,
    })];
    for account in [a, b] {
        commands.push(Command::OpenAccount {
            account,
            owner: Principal(account.0),
        });
    }
    for k in 0..12u64 {
        for account in [a, b] {
            commands.push(Command::Deposit {
                id: TransferId(100 + 2 * k + account.0),
                account,
                asset: AssetId(USD),
                amount: Amount(1_000 + k),
            });
        }
        commands.push(Command::Transfer(TransferSpec {
            id: TransferId(500 + k),
            debit: b,
            credit: a,
            asset: AssetId(USD),
            amount: Amount(1),
            balancing: false,
        }));
    }
    // The setup one by one, then the rest many at a time (several commands per Raft
    // entry, so log indexes fall in the middle of entries).
    let rest = commands.split_off(3);
    for (k, c) in commands.into_iter().enumerate() {
        let reply = submit(servers[k % 3].node(), c).await.expect("answered");
        assert!(reply.outcome.result.is_ok(), "{reply:?}");
    }
    for (k, chunk) in rest.chunks(12).enumerate() {
        let pending = chunk
            .iter()
            .map(|c| submit(servers[k % 3].node(), c.clone()));
        for reply in futures_util::future::join_all(pending).await {
            let reply = reply.expect("answered");
            assert!(reply.outcome.result.is_ok(), "{reply:?}");
        }
    }
    let nodes: Vec<&RunningServer> = servers.iter().collect();
    converged(&nodes).await;
    for n in &nodes {
        assert!(n.node().wait_quiescent(WAIT), "messages still in flight");
    }
    converged(&nodes).await;

    let by_shard_seq = |mut v: Vec<EventRecord>| {
        v.sort_by_key(|e| (e.shard, e.seq));
        v
    };
    let mut published = Vec::new();
    for (k, feed) in feeds.iter().enumerate() {
        let mine: Vec<EventRecord> = feed.try_iter().flat_map(|b| b.to_vec()).collect();
        let mine = by_shard_seq(mine);
        if k == 0 {
            published = mine;
        } else {
            assert_eq!(published, mine, "node {} published the same events", k + 1);
        }
    }
    assert!(published.len() > 40, "{} events", published.len());
    for shard in 0..SHARDS {
        let first = published.iter().find(|e| e.shard == ShardId(shard));
        assert_eq!(
            Some(1),
            first.map(|e| e.seq),
            "shard {shard} from its first event"
        );
    }

    // Account a's first two balances (the first deposits), as the replicas published them.
    let balance_points: Vec<(u64, Timestamp, u64)> = published
        .iter()
        .filter_map(|e| match e.event {
            Event::Balance {
                account,
                asset: AssetId(USD),
                available,
                ..
            } if account == a => Some((e.input, e.timestamp, available.0)),
            _ => None,
        })
        .collect();
    let (first, second) = (balance_points[0], balance_points[1]);
    assert!(first.0 < second.0 && first.1 < second.1);
    let shard_of_a = published
        .iter()
        .find(|e| matches!(e.event, Event::Balance { account, .. } if account == a))
        .unwrap()
        .shard;
    let leader = nodes[0].cluster().unwrap().status().await.shards[shard_of_a.0 as usize]
        .leader
        .expect("a leader");

    for (k, server) in servers.iter().enumerate() {
        let role = if k as u64 + 1 == leader {
            "leader"
        } else {
            "follower"
        };
        // Every event, though the index holds only the last 4 of each shard.
        let read = by_shard_seq(read_all_events(server).await);
        assert_eq!(
            published,
            read,
            "ReadEvents from 0 on node {} ({role})",
            k + 1
        );
        // Balances as of an old log index and an old time.
        assert_eq!(
            (BTreeMap::from([(USD, (first.2, 0))]), first.0),
            balances_as_of(server, a.0, Point::LogIndex(first.0)).await,
            "as of index {} on node {} ({role})",
            first.0,
            k + 1
        );
        assert_eq!(
            (BTreeMap::from([(USD, (second.2, 0))]), second.0),
            balances_as_of(server, a.0, Point::LogIndex(second.0)).await,
            "as of index {} on node {} ({role})",
            second.0,
            k + 1
        );
        let (at_time, index) = balances_as_of(server, a.0, Point::TimeNs(first.1 .0)).await;
        assert_eq!(
            BTreeMap::from([(USD, (first.2, 0))]),
            at_time,
            "as of time {} on node {} ({role})",
            first.1 .0,
            k + 1
        );
        assert!(first.0 <= index && index < second.0, "{index}");
        let (before, _) = balances_as_of(server, a.0, Point::TimeNs(first.1 .0 - 1)).await;
        assert!(
            before.is_empty() || before == BTreeMap::from([(USD, (0, 0))]),
            "{before:?}"
        );
    }
    shutdown_all(servers).await;
}

/// Commands queued at a node are applied in the order they were queued, also when they
/// span several Raft entries and the node forwards them to a leader elsewhere: every
/// account is opened, then funded, by commands queued one right after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_queued_at_a_node_keep_their_order() {
    let root = tempfile::tempdir().unwrap();
    let members = members(root.path(), 3);
    let urls = urls(&members);
    let mut servers = Vec::new();
    for m in &members {
        servers.push(start(m, &urls).await);
    }
    for s in &servers {
        assert!(s.cluster().unwrap().wait_for_leaders(WAIT).await);
    }
    let asset = Command::CreateAsset(Asset {
        id: AssetId(1),
        code: "USD".into(),
        scale: 2,
    });
    assert!(submit(servers[0].node(), asset)
        .await
        .unwrap()
        .outcome
        .result
        .is_ok());
    // Through a node that leads neither shard if there is one (forwarded batches), else
    // through every node in turn.
    let status = servers[0].cluster().unwrap().status().await;
    let leaders: Vec<u64> = status.shards.iter().filter_map(|s| s.leader).collect();
    let via: Vec<usize> = match (1..=3u64).find(|n| !leaders.contains(n)) {
        Some(n) => vec![(n - 1) as usize],
        None => vec![0, 1, 2],
    };
    for (round, node) in via.into_iter().enumerate() {
        let host = servers[node].node();
        let mut replies = Vec::new();
        for k in 0..3_000u64 {
            let account = AccountId(1 + round as u64 * 10_000 + k);
            for command in [
                Command::OpenAccount {
                    account,
                    owner: Principal(1),
                },
                Command::Deposit {
                    id: TransferId(account.0),
                    account,
                    asset: AssetId(1),
                    amount: Amount(100),
                },
            ] {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let meta = Meta {
                    timestamp: tradelog_node::runtime::now(),
                    principal: Principal(1),
                    authority: Authority::Operator,
                };
                host.submit(
                    meta,
                    command.clone(),
                    Box::new(move |r| {
                        let _ = tx.send(r);
                    }),
                );
                replies.push((command, rx));
            }
        }
        for (command, rx) in replies {
            let reply = rx.await.expect("answered").expect("committed");
            assert!(
                reply.outcome.result.is_ok(),
                "{command:?} through node {}: {:?}",
                node + 1,
                reply.outcome
            );
        }
    }
    shutdown_all(servers).await;
}
