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
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let members: Vec<Member> = (1..=3)
        .map(|id| Member {
            id,
            grpc: free_port(),
            dir: root.path().join(format!("node-{id}")),
        })
        .collect();
    let urls: BTreeMap<u64, String> = members
        .iter()
        .map(|m| (m.id, format!("http://127.0.0.1:{}", m.grpc)))
        .collect();
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

    for s in servers.into_iter().flatten() {
        s.shutdown().await.unwrap();
    }
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
    let members: Vec<Member> = (1..=4)
        .map(|id| Member {
            id,
            grpc: free_port(),
            dir: root.path().join(format!("node-{id}")),
        })
        .collect();
    let urls: BTreeMap<u64, String> = members[..3]
        .iter()
        .map(|m| (m.id, format!("http://127.0.0.1:{}", m.grpc)))
        .collect();
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
    for s in servers.into_iter().flatten() {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaders_spread_over_the_nodes_by_themselves() {
    let root = tempfile::tempdir().unwrap();
    let members: Vec<Member> = (1..=3)
        .map(|id| Member {
            id,
            grpc: free_port(),
            dir: root.path().join(format!("node-{id}")),
        })
        .collect();
    let urls: BTreeMap<u64, String> = members
        .iter()
        .map(|m| (m.id, format!("http://127.0.0.1:{}", m.grpc)))
        .collect();
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
    for s in servers {
        s.shutdown().await.unwrap();
    }
}
