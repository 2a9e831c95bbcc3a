//! Splitting a shard of a running cluster (in this process, over loopback;
//! docs/design/0014): the child's group starts on the parent's three voters from the
//! state each wrote, serves the moved accounts and the moved market (a cross-shard fill
//! through it), the parent's replicas agree, and a fourth node that joins afterwards gets
//! the child as a snapshot (its leader purged its log first).

use openraft::async_runtime::watch::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tradelog_cluster::ClusterNode;
use tradelog_domain::*;
use tradelog_node::ShardHost;

use crate::common::{bind, start, start_served, Served, WAIT};

/// Submits `command` through `node` and waits for its outcome (retrying while the
/// target shard cannot take it yet).
async fn submit(node: &ClusterNode, command: Command) -> Outcome {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let meta = Meta {
            timestamp: tradelog_node::runtime::now(),
            principal: Principal(1),
            authority: Authority::Operator,
        };
        ShardHost::submit(
            node,
            meta,
            command.clone(),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        match rx.await.unwrap() {
            Ok(r) => return r.outcome,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("retrying {command:?}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{command:?}: {e}"),
        }
    }
}

async fn accepted(node: &ClusterNode, command: Command) {
    let outcome = submit(node, command.clone()).await;
    assert!(outcome.result.is_ok(), "{command:?}: {outcome:?}");
}

/// Account `a`'s balance of `asset` on `shard`, as `node`'s replica has it now.
async fn balance(node: &ClusterNode, shard: ShardId, a: u64, asset: u32) -> Option<(u64, u64)> {
    node.group(shard)
        .unwrap()
        .read_local(move |e| {
            e.ledger().account(AccountId(a)).map(|acc| {
                let b = acc.balance(AssetId(asset));
                (b.available.0, b.held.0)
            })
        })
        .await
        .unwrap()
}

/// Waits until `check` holds on `node`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every node opens its replica of `shard`, and they reach the same applied index and
/// state hash.
async fn replicas_agree(nodes: &[&Arc<ClusterNode>], shard: ShardId) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut seen = BTreeSet::new();
        let mut closed = Vec::new();
        for n in nodes {
            match n.state_hash(shard).await {
                Ok(h) => {
                    seen.insert(h);
                }
                // A split's child opens once the node's replica of the parent applied the
                // split.
                Err(e) => closed.push(format!("{e}")),
            }
        }
        if seen.len() == 1 && closed.is_empty() {
            for n in nodes {
                n.group(shard)
                    .unwrap()
                    .read_local(|e| e.validate().expect("invariants"))
                    .await
                    .unwrap();
            }
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "shard {shard}'s replicas differ: {seen:?}; not open: {closed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `node`'s history of `shard` (what the server reads older events and past states
/// from) replays to the live replica's state; with `start` (the state hash the split gave
/// the child), it starts from that state and regenerates every event the shard made,
/// numbered 1, 2, ... with none missing.
async fn history_matches(node: &ClusterNode, shard: ShardId, start: Option<[u8; 32]>) {
    let (applied, hash, next_seq) = node
        .group(shard)
        .unwrap()
        .read_local(|e| (e.inputs_applied(), e.state_hash(), e.next_event_seq()))
        .await
        .unwrap();
    let history = node
        .history(tradelog_node::HistoryLimits::default())
        .unwrap();
    let h = history.shard(shard).expect("a history of the shard");
    assert_eq!(
        h.state_at(applied, applied, |e| e.state_hash()).unwrap(),
        hash
    );
    let Some(start) = start else { return };
    assert_eq!(h.state_at(0, applied, |e| e.state_hash()).unwrap(), start);
    let mut events = h.events_after_seq(0, applied).unwrap();
    let mut seqs = Vec::new();
    while let Some(e) = events.next_event().unwrap() {
        assert_eq!(e.shard, shard);
        seqs.push(e.seq);
    }
    assert!(next_seq > 1, "the child made events");
    assert_eq!(seqs, (1..next_seq).collect::<Vec<u64>>());
}

fn open(a: u64) -> Command {
    Command::OpenAccount {
        account: AccountId(a),
        owner: Principal(a),
    }
}

fn deposit(id: u64, a: u64, asset: u32, amount: u64) -> Command {
    Command::Deposit {
        id: TransferId(id),
        account: AccountId(a),
        asset: AssetId(asset),
        amount: Amount(amount),
    }
}

fn transfer(id: u64, from: u64, to: u64, amount: u64) -> Command {
    Command::Transfer(TransferSpec {
        id: TransferId(id),
        debit: AccountId(from),
        credit: AccountId(to),
        asset: AssetId(1),
        amount: Amount(amount),
        balancing: false,
    })
}

fn order(account: u64, side: Side, price: u64) -> Command {
    Command::PlaceOrder(NewOrder {
        account: AccountId(account),
        market: MarketId(1),
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price: Price(price),
        qty: Qty(2),
        post_only: false,
        client_order_id: 0,
        stp: SelfTradePrevention::CancelResting,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_shard_runs_on_the_parents_replicas_and_a_new_node_gets_it_as_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bound = Vec::new();
    for _ in 0..4 {
        bound.push(bind().await);
    }
    let addrs: Vec<String> = bound.iter().map(|(_, a)| a.clone()).collect();
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, addrs[id as usize - 1].clone()))
        .collect();
    let mut nodes = BTreeMap::new();
    for (k, (l, _)) in bound.into_iter().enumerate() {
        let id = k as u64 + 1;
        let m = if id <= 3 {
            members.clone()
        } else {
            BTreeMap::new()
        };
        nodes.insert(id, start(id, l, tmp.path(), &m).await);
    }
    for id in 1..=3 {
        assert!(
            nodes[&id].wait_for_map(1, WAIT).await,
            "node {id} has no map"
        );
    }
    let n1 = nodes[&1].clone();
    for asset in [
        Asset {
            id: AssetId(1),
            code: "USD".into(),
            scale: 2,
        },
        Asset {
            id: AssetId(2),
            code: "BTC".into(),
            scale: 8,
        },
    ] {
        accepted(&n1, Command::CreateAsset(asset)).await;
    }
    accepted(
        &n1,
        Command::CreateMarket(MarketSpec {
            id: MarketId(1),
            base: AssetId(2),
            quote: AssetId(1),
            lot_size: 1,
            tick_size: 1,
            min_qty: Qty(1),
            max_qty: Qty(1_000),
            maker_fee_bps: 0,
            taker_fee_bps: 0,
            fee_account: AccountId(99),
            collar_bps: 0,
            shard: ShardId(1),
        }),
    )
    .await;
    for a in (1..=12).chain([99]) {
        accepted(&n1, open(a)).await;
        accepted(&n1, deposit(a * 10 + 1, a, 1, 100_000)).await;
        accepted(&n1, deposit(a * 10 + 2, a, 2, 100)).await;
    }
    // Account 3 (shard 1, stays there) offers 2 at 100 on market 1 (shard 1, moves).
    accepted(&n1, order(3, Side::Sell, 100)).await;

    // Shard 1's accounts with id % 4 == 1 (1, 5, 9) and market 1 become shard 2.
    let done = n1
        .split_shard(ShardId(1), 4, 1, vec![MarketId(1)])
        .await
        .unwrap();
    assert_eq!(done.split.child, ShardId(2));
    assert_eq!(done.accounts, 3);
    let map = n1.map();
    assert_eq!(map.splits, vec![done.split.clone()]);
    assert_eq!(
        map.replicas(ShardId(2)),
        Some(&BTreeSet::from([1u64, 2, 3]))
    );
    assert_eq!(n1.shard_count(), 3);
    assert_eq!(n1.placement().account_shard(AccountId(5)), ShardId(2));
    let voters3: Vec<&Arc<ClusterNode>> = (1..=3).map(|id| &nodes[&id]).collect();
    for n in &voters3 {
        eventually("the child opened everywhere", || async {
            n.hosted().contains(&ShardId(2))
        })
        .await;
    }
    // Refusals change nothing: a market that does not exist, one elsewhere, a bad rule.
    let refused = [
        n1.split_shard(ShardId(0), 2, 0, vec![MarketId(7)]).await,
        n1.split_shard(ShardId(0), 2, 0, vec![MarketId(1)]).await,
        n1.split_shard(ShardId(0), 1, 0, vec![]).await,
    ];
    for r in refused {
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("does not exist")
                || e.contains("lives on shard 2")
                || e.contains("split rule"),
            "{e}"
        );
    }
    assert_eq!(n1.map().version, done.map_version);
    assert!(!done.repeat);
    // The same split again (a retried command, through another node) makes no second
    // shard: it answers with the child the first one made.
    let again = nodes[&2]
        .split_shard(ShardId(1), 4, 1, vec![MarketId(1)])
        .await
        .unwrap();
    assert_eq!(
        (&again.split, again.accounts, again.repeat),
        (&done.split, 0, true)
    );
    assert_eq!(n1.map().version, done.map_version);
    assert_eq!(n1.shard_count(), 3);

    // The moved accounts trade on the child, through any node.
    let n2 = nodes[&2].clone();
    accepted(&n2, transfer(1_001, 5, 9, 700)).await;
    // Cross-shard: child to shard 0, and shard 0 to the child.
    accepted(&n2, transfer(1_002, 1, 2, 300)).await;
    accepted(&n2, transfer(1_003, 4, 5, 50)).await;
    // Account 2 (shard 0) buys on the moved market: held on 0, matched on the child
    // against account 3's order (shard 1), settled on 0 and 1.
    accepted(&n2, order(2, Side::Buy, 100)).await;
    let n3 = nodes[&3].clone();
    eventually("account 2 got its BTC", || async {
        balance(&n3, ShardId(0), 2, 2).await == Some((102, 0))
    })
    .await;
    eventually("account 3 got paid", || async {
        balance(&n3, ShardId(1), 3, 1).await == Some((100_200, 0))
    })
    .await;
    eventually("the transfers settled", || async {
        balance(&n3, ShardId(0), 2, 1).await == Some((100_000 + 300 - 200, 0))
            && balance(&n3, ShardId(2), 5, 1).await == Some((100_000 - 700 + 50, 0))
            && balance(&n3, ShardId(2), 9, 1).await == Some((100_700, 0))
            && balance(&n3, ShardId(2), 1, 1).await == Some((99_700, 0))
            && balance(&n3, ShardId(0), 4, 1).await == Some((99_950, 0))
    })
    .await;
    // The parent no longer has the moved accounts.
    assert_eq!(balance(&n3, ShardId(1), 5, 1).await, None);
    for s in 0..3 {
        replicas_agree(&voters3, ShardId(s)).await;
    }
    // Every voter's history of the child starts from the state the split gave it and
    // regenerates all of the child's events from its log.
    for (k, n) in voters3.iter().enumerate() {
        let dir = tmp.path().join(format!("node-{}/shard-2", k + 1));
        let (start, _) = tradelog_raft::read_split_start(&dir, ShardId(2))
            .unwrap()
            .expect("a start file");
        history_matches(n, ShardId(2), Some(start.state_hash)).await;
    }

    // Node 4 joins: every shard, the child too, gets a replica there. The parent's log
    // is purged first, so node 4 gets the parent as a snapshot past the split and never
    // applies it: it has no start for the child, whose leader purges its log before it
    // adds node 4, so node 4 starts the child from a snapshot too.
    let leader_of = |s: u32| {
        let n = nodes[&1].group(ShardId(s)).unwrap();
        let l = n.raft().metrics().borrow_watched().current_leader.unwrap();
        nodes[&l].group(ShardId(s)).unwrap()
    };
    let parent = leader_of(1);
    parent.raft().trigger().snapshot().await.unwrap();
    let m = parent
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some(), "a snapshot")
        .await
        .unwrap();
    let upto = m.snapshot.unwrap().index;
    parent.raft().trigger().purge_log(upto).await.unwrap();
    parent
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some(), "purged")
        .await
        .unwrap();
    n1.add_node(4, &addrs[3]).await.unwrap();
    let n4 = nodes[&4].clone();
    assert_eq!(
        n4.hosted(),
        BTreeSet::from([ShardId(0), ShardId(1), ShardId(2)])
    );
    let start_file = tmp
        .path()
        .join("node-4/shard-2")
        .join(tradelog_raft::SPLIT_START_FILE);
    assert!(!start_file.exists(), "node 4 never applied the split");
    let child = leader_of(2);
    assert!(
        child.raft().metrics().borrow_watched().purged.is_some(),
        "the child's leader purged its log before adding a learner"
    );
    accepted(&n4, transfer(1_004, 9, 5, 1)).await;
    let all: Vec<&Arc<ClusterNode>> = nodes.values().collect();
    for s in 0..3 {
        replicas_agree(&all, ShardId(s)).await;
    }
    assert_eq!(balance(&n4, ShardId(2), 5, 1).await, Some((99_351, 0)));
    // Node 4's history of the child starts from the snapshot it was sent.
    history_matches(&n4, ShardId(2), None).await;
    history_matches(&n1, ShardId(2), None).await;
    for n in nodes.values() {
        n.shutdown().await;
    }
}

/// Starts three members holding every shard, with an asset and accounts 1..=8 funded.
async fn three_funded(root: &std::path::Path) -> Vec<Arc<ClusterNode>> {
    // The servers run until the test ends.
    three_funded_served(root).await.0
}

/// As [`three_funded`], with the nodes' servers (to stop one and start its node again)
/// and the members.
async fn three_funded_served(
    root: &std::path::Path,
) -> (Vec<Arc<ClusterNode>>, Vec<Served>, BTreeMap<u64, String>) {
    let mut bound = Vec::new();
    for _ in 0..3 {
        bound.push(bind().await);
    }
    let members: BTreeMap<u64, String> = bound
        .iter()
        .enumerate()
        .map(|(k, (_, a))| (k as u64 + 1, a.clone()))
        .collect();
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for (k, (l, _)) in bound.into_iter().enumerate() {
        let (n, s) = start_served(k as u64 + 1, l, root, &members).await;
        nodes.push(n);
        servers.push(s);
    }
    for n in &nodes {
        assert!(n.wait_for_map(1, WAIT).await);
    }
    let usd = Asset {
        id: AssetId(1),
        code: "USD".into(),
        scale: 2,
    };
    accepted(&nodes[0], Command::CreateAsset(usd)).await;
    for a in 1..=8 {
        accepted(&nodes[0], open(a)).await;
        accepted(&nodes[0], deposit(a * 10 + 1, a, 1, 1_000)).await;
    }
    (nodes, servers, members)
}

/// A voter of the parent that was down during the split and then received the parent's
/// state as a snapshot past it never applied the split, so it wrote no start file for the
/// child, of which it is a voter. It copies the start file from another node: its replica
/// of the child opens and agrees with the others (without it, the child's leader sends
/// it the child's log from the first entry, which it cannot apply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_replica_sent_a_snapshot_past_the_split_copies_the_childs_start_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, mut servers, members) = three_funded_served(tmp.path()).await;
    let all: Vec<&Arc<ClusterNode>> = nodes.iter().collect();
    replicas_agree(&all, ShardId(0)).await;

    // Node 3 goes down; nodes 1 and 2 split shard 0 and go on.
    nodes[2].shutdown().await;
    servers[2].stop().await;
    let done = nodes[0]
        .split_shard(ShardId(0), 4, 2, vec![])
        .await
        .unwrap();
    assert_eq!(done.split.child, ShardId(2));
    accepted(&nodes[0], transfer(3_001, 2, 6, 5)).await;
    accepted(&nodes[0], transfer(3_002, 4, 8, 3)).await;

    // The parent's leader snapshots past the split and purges its log: node 3 can only
    // be sent the parent's state as a snapshot.
    let leader = nodes[..2]
        .iter()
        .find(|n| n.group(ShardId(0)).is_some_and(|g| g.is_leader()))
        .expect("shard 0 has a leader on node 1 or 2")
        .group(ShardId(0))
        .unwrap();
    let raft = leader.raft();
    let applied = raft.metrics().borrow_watched().last_applied.unwrap().index;
    raft.trigger().snapshot().await.unwrap();
    let snap = raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= applied),
            "a snapshot past the split",
        )
        .await
        .unwrap()
        .snapshot
        .unwrap()
        .index;
    raft.trigger().purge_log(snap).await.unwrap();
    raft.wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= snap),
            "the log purged",
        )
        .await
        .unwrap();

    // Node 3 comes back on its address, from its directory.
    let addr = members[&3].clone();
    let listener = tokio::net::TcpListener::bind(addr.trim_start_matches("http://"))
        .await
        .unwrap();
    let (n3, s3) = start_served(3, listener, tmp.path(), &members).await;
    nodes[2] = n3;
    servers[2] = s3;
    let all: Vec<&Arc<ClusterNode>> = nodes.iter().collect();
    replicas_agree(&all, ShardId(0)).await;
    // Its replica of the parent was sent the snapshot (openraft reports it once the
    // install is through).
    nodes[2]
        .group(ShardId(0))
        .unwrap()
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= snap),
            "node 3 was sent the parent's snapshot",
        )
        .await
        .unwrap();
    replicas_agree(&all, ShardId(2)).await;
    let start = tmp
        .path()
        .join("node-3")
        .join("shard-2")
        .join(tradelog_raft::SPLIT_START_FILE);
    let copied = std::fs::read(&start).unwrap();
    let original = std::fs::read(
        tmp.path()
            .join("node-1")
            .join("shard-2")
            .join(tradelog_raft::SPLIT_START_FILE),
    )
    .unwrap();
    assert_eq!(original, copied);
    assert_eq!(
        balance(nodes[2].as_ref(), ShardId(2), 6, 1).await,
        Some((1_005, 0))
    );
    for n in &nodes {
        n.shutdown().await;
    }
    for s in &mut servers {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_opens_only_once_its_parents_replica_applied_the_split() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = three_funded(tmp.path()).await;
    // The map records the split; the parent has not applied it yet.
    let record = tradelog_placement::MapCommand::SplitShard {
        parent: ShardId(0),
        modulus: 4,
        residue: 2,
        markets: vec![],
    };
    let answer = nodes[0].propose_map(record).await.unwrap();
    assert_eq!(answer.rejected, None);
    for n in &nodes {
        assert!(n.wait_for_map(answer.version, WAIT).await);
    }
    // Several reconciler passes later, no node opened the child: without the parent's
    // split applied there is no state to start it from.
    tokio::time::sleep(Duration::from_millis(
        10 * tradelog_cluster::RECONCILE_INTERVAL_MS,
    ))
    .await;
    for (k, n) in nodes.iter().enumerate() {
        assert!(
            !n.hosted().contains(&ShardId(2)),
            "node {} opened it",
            k + 1
        );
    }
    // Commands for the moved accounts wait for the child (retried until it runs).
    let n = nodes[1].clone();
    let waiting = tokio::spawn(async move { submit(&n, transfer(2_001, 2, 6, 5)).await });
    // The parent applies it: every node opens the child from its start.
    let split = nodes[0].map().splits[0].clone();
    let input = tradelog_engine::Input::Split {
        timestamp: tradelog_node::runtime::now(),
        split,
    };
    let answer = nodes[0]
        .group(ShardId(0))
        .unwrap()
        .propose(tradelog_raft::Batch::new(vec![input]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        answer.results,
        vec![tradelog_engine::Applied::Split(Ok(2))],
        "accounts 2 and 6"
    );
    let outcome = waiting.await.unwrap();
    assert!(outcome.result.is_ok(), "{outcome:?}");
    let all: Vec<&Arc<ClusterNode>> = nodes.iter().collect();
    for n in &all {
        eventually("the child opened", || async {
            n.hosted().contains(&ShardId(2))
        })
        .await;
    }
    replicas_agree(&all, ShardId(2)).await;
    replicas_agree(&all, ShardId(0)).await;
    assert_eq!(
        balance(nodes[2].as_ref(), ShardId(2), 6, 1).await,
        Some((1_005, 0))
    );
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_parent_refuses_as_moved_goes_again_once_the_map_moves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = three_funded(tmp.path()).await;
    // The parent applies a split the map has not recorded: every node's map lags the
    // parent, as a node's map may for a moment after a split (here for as long as the
    // test wants).
    let split = tradelog_domain::routing::Split {
        parent: ShardId(0),
        child: ShardId(2),
        modulus: 4,
        residue: 2,
        markets: vec![],
    };
    let input = tradelog_engine::Input::Split {
        timestamp: tradelog_node::runtime::now(),
        split: split.clone(),
    };
    let answer = nodes[0]
        .group(ShardId(0))
        .unwrap()
        .propose(tradelog_raft::Batch::new(vec![input]).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.results, vec![tradelog_engine::Applied::Split(Ok(2))]);
    // Routed to the parent, refused there as moved; the map never moves it, so after
    // the wait the caller gets the refusal.
    let asked = std::time::Instant::now();
    let outcome = submit(&nodes[1], transfer(2_001, 2, 6, 5)).await;
    assert_eq!(outcome, Outcome::rejected(RejectCode::WrongShard));
    assert!(
        asked.elapsed() >= Duration::from_millis(tradelog_cluster::WRONG_SHARD_WAIT_MS),
        "refused after {:?}",
        asked.elapsed()
    );
    // Again; this time the map records the split while the command waits: it goes to
    // the child and is applied there, once.
    let n = nodes[1].clone();
    let waiting = tokio::spawn(async move { submit(&n, transfer(2_002, 2, 6, 7)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "answered before the map moved it");
    let record = tradelog_placement::MapCommand::SplitShard {
        parent: split.parent,
        modulus: split.modulus,
        residue: split.residue,
        markets: vec![],
    };
    assert_eq!(nodes[0].propose_map(record).await.unwrap().rejected, None);
    let outcome = waiting.await.unwrap();
    assert!(outcome.result.is_ok(), "{outcome:?}");
    let all: Vec<&Arc<ClusterNode>> = nodes.iter().collect();
    replicas_agree(&all, ShardId(2)).await;
    assert_eq!(
        (
            balance(nodes[2].as_ref(), ShardId(2), 2, 1).await,
            balance(nodes[2].as_ref(), ShardId(2), 6, 1).await
        ),
        (Some((993, 0)), Some((1_007, 0)))
    );
    for n in &nodes {
        n.shutdown().await;
    }
}
