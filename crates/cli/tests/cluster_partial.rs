//! A cluster formed with fewer replicas than nodes, as a user runs it: three
//! `tradelog serve --node-id I --members ... --replication-factor 2` processes with three
//! shards, driven by the real `tradelog` binary given one node at a time. Each node opens
//! only its two shards; commands through any node reach every shard, balances read
//! through any node are exact (the client re-routes reads of a shard the node does not
//! hold), `admin status` shows the shard a node does not hold, `admin move-shard` moves one
//! (bad arguments refused), `events read` merges every shard's events from the nodes
//! holding them, `events tail` follows the stream across the move, `admin
//! set-replication-factor 3` puts every shard on every node, `admin split-shard` makes a
//! fourth shard of part of one (bad arguments refused) whose accounts are then read and
//! paid through every node, and every node stops cleanly on SIGTERM.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{json, ok, tl, Tail};

const NODES: u64 = 3;
const SHARDS: u32 = 3;
const WAIT: Duration = Duration::from_secs(60);

struct Node {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Available + held of (account, asset 1) read through `server`.
fn usd(server: &str, account: u64) -> u64 {
    let b = json(server, &["account", "balances", &account.to_string()]);
    b["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["asset"] == 1)
        .map(|x| x["available"].as_u64().unwrap() + x["held"].as_u64().unwrap())
        .unwrap_or(0)
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that each shard's events (JSON records) are numbered 1, 2, 3, ... (none
/// missing, none twice, in order); returns how many each shard has.
fn contiguous(events: &[Value], what: &str) -> BTreeMap<u64, u64> {
    let mut per: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for e in events {
        let shard = e["shard"].as_u64().unwrap_or_else(|| panic!("{what}: {e}"));
        per.entry(shard)
            .or_default()
            .push(e["seq"].as_u64().unwrap());
    }
    per.into_iter()
        .map(|(s, v)| {
            let n = v.len() as u64;
            assert!(v.iter().copied().eq(1..=n), "{what}: shard {s}: {v:?}");
            (s, n)
        })
        .collect()
}

#[test]
fn serve_with_a_replication_factor_below_the_node_count() {
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..NODES)
        .map(|_| tradelog_server::ports::free_loopback_port().unwrap())
        .collect();
    let members = ports
        .iter()
        .enumerate()
        .map(|(k, p)| format!("{}=http://127.0.0.1:{p}", k + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Node> = Vec::new();
    for (k, port) in ports.iter().enumerate() {
        let dir = root.path().join(format!("node-{}", k + 1));
        let log = std::fs::File::create(root.path().join(format!("node-{}.log", k + 1))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tradelog"))
            .args(["serve", "--node-id", &(k + 1).to_string()])
            .args(["--members", &members, "--replication-factor", "2"])
            // Leaders move only by command here (`admin balance-leaders` below).
            .args(["--leader-balance-interval-ms", "0"])
            .args(["--shards", &SHARDS.to_string()])
            .args(["--grpc-addr", &format!("127.0.0.1:{port}")])
            .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        nodes.push(Node {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        });
    }
    let first = nodes[0].url.clone();
    // The first command waits for the shards' first leaders (it is idempotent).
    eventually("the cluster to take a command", || {
        tl(&first, &["asset", "create", "1", "USD", "2"]).0 == 0
    });

    // Each node opened two of the three shards, and every shard is on two nodes.
    let mut holders = vec![0; SHARDS as usize];
    for n in &nodes {
        let held: BTreeSet<u32> = (0..SHARDS)
            .filter(|s| n.dir.join(format!("shard-{s}")).is_dir())
            .collect();
        assert_eq!(held.len(), 2, "{}: {held:?}", n.dir.display());
        for s in held {
            holders[s as usize] += 1;
        }
    }
    assert_eq!(holders, vec![2; SHARDS as usize]);

    // Accounts 1, 2, 3 live on shards 1, 2, 0; each gets 1000 through a different node.
    for a in 1..=3u64 {
        let via = &nodes[a as usize - 1].url;
        ok(via, &["account", "open", &a.to_string(), "--owner", "1"]);
        ok(
            via,
            &[
                "account",
                "deposit",
                &a.to_string(),
                "USD",
                "1000",
                "--id",
                &a.to_string(),
            ],
        );
    }
    // Cross-shard transfers, each through a node that may not hold either account.
    for (id, from, to, amount, k) in [(11, 1, 2, 100, 2), (12, 2, 3, 30, 0), (13, 3, 1, 7, 1)] {
        ok(
            &nodes[k].url,
            &[
                "account",
                "transfer",
                &from.to_string(),
                &to.to_string(),
                "USD",
                &amount.to_string(),
                "--id",
                &id.to_string(),
            ],
        );
    }
    let want = [
        (1, 1000 - 100 + 7),
        (2, 1000 + 100 - 30),
        (3, 1000 + 30 - 7),
    ];
    for n in &nodes {
        eventually("exact balances through every node", || {
            want.iter().all(|(a, w)| usd(&n.url, *a) == *w)
        });
    }

    // The status of a node lists every shard; the one it does not hold as NotHeld, with
    // the two nodes the map places it on.
    for n in &nodes {
        let st = json(&n.url, &["admin", "status"]);
        let shards = st["shards"].as_array().unwrap();
        assert_eq!(shards.len(), SHARDS as usize, "{st}");
        let not_held: Vec<&Value> = shards.iter().filter(|s| s["role"] == "NotHeld").collect();
        assert_eq!(not_held.len(), 1, "{st}");
        assert_eq!(not_held[0]["voters"].as_array().unwrap().len(), 2, "{st}");
    }

    // The event stream merges every shard: node 1 holds two of them, so the CLI reads
    // the third from a node holding it and merges the parts; every shard's events come
    // once each, in order.
    let read = json(&first, &["events", "read"]);
    let per_shard = contiguous(read["events"].as_array().unwrap(), "events read");
    assert_eq!(per_shard.len(), SHARDS as usize, "{read}");
    // `events tail` follows the stream, from the beginning, across the move below.
    let mut tail = Tail::start(&first, &["--json"]);

    // A shard moved by command: onto node 1, off the holder that is not kept.
    let held = |n: &Node, s: u32| n.dir.join(format!("shard-{s}")).is_dir();
    let moved = (0..SHARDS).find(|s| !held(&nodes[0], *s)).unwrap();
    let holders: Vec<usize> = (0..NODES as usize)
        .filter(|k| held(&nodes[*k], moved))
        .collect();
    let (kept, dropped) = (holders[0], holders[1]);
    let (code, _, err) = tl(
        &first,
        &["admin", "move-shard", &moved.to_string(), "1", "1"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("distinct"), "{err}");
    let (code, _, err) = tl(&first, &["admin", "move-shard", "7", "1", "2"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");
    ok(
        &first,
        &[
            "admin",
            "move-shard",
            &moved.to_string(),
            "1",
            &(kept + 1).to_string(),
        ],
    );
    assert!(held(&nodes[0], moved) && held(&nodes[kept], moved));
    eventually("the dropped replica archived", || {
        !held(&nodes[dropped], moved)
            && std::fs::read_dir(nodes[dropped].dir.join("archive"))
                .map(|d| d.count() == 1)
                .unwrap_or(false)
    });
    for n in &nodes {
        eventually("exact balances after the move", || {
            want.iter().all(|(a, w)| usd(&n.url, *a) == *w)
        });
    }
    // The tail saw every event so far and follows a transfer made after the move.
    ok(
        &first,
        &["account", "transfer", "1", "2", "USD", "1", "--id", "14"],
    );
    let printed = tail.until(r#""TransferPosted":{"id":14,"#);
    let events: Vec<Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let followed = contiguous(&events, "events tail");
    // At least what `events read` saw on every shard, and more on account 1's shard 1.
    for (s, n) in &per_shard {
        assert!(followed[s] >= *n, "shard {s}: {followed:?} {per_shard:?}");
    }
    assert!(followed[&1] > per_shard[&1], "{followed:?} {per_shard:?}");
    tail.interrupt();
    // Node 1 now holds it, and sees exactly node 1 and the kept holder vote.
    let mut want_voters = vec![1, kept as u64 + 1];
    want_voters.sort();
    eventually("node 1 voting in the moved shard", || {
        let st = json(&first, &["admin", "status"]);
        let row = &st["shards"].as_array().unwrap()[moved as usize];
        let mut voters: Vec<u64> = row["voters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        voters.sort();
        row["role"] != "NotHeld" && voters == want_voters
    });

    // `admin balance-leaders` through node 1: every shard node 1 holds ends up led by the
    // map's preferred leader (what the automatic balancer, off here, also aims for).
    ok(&first, &["admin", "balance-leaders"]);
    eventually("node 1's shards led by their preferred leaders", || {
        let st = json(&first, &["admin", "status"]);
        let rows = st["shards"].as_array().unwrap();
        let targets: BTreeMap<tradelog_domain::ShardId, BTreeSet<u64>> = rows
            .iter()
            .enumerate()
            .map(|(s, r)| {
                let voters = r["voters"].as_array().unwrap();
                (
                    tradelog_domain::ShardId(s as u32),
                    voters.iter().map(|v| v.as_u64().unwrap()).collect(),
                )
            })
            .collect();
        let preferred = tradelog_placement::preferred_leaders(&targets);
        rows.iter().enumerate().all(|(s, r)| {
            r["role"] == "NotHeld"
                || r["leader"].as_u64() == Some(preferred[&tradelog_domain::ShardId(s as u32)])
        })
    });

    // `admin set-replication-factor`: 4 replicas on 3 nodes is refused; 3 puts every
    // shard on every node (each data directory then holds all three).
    let (code, _, err) = tl(&first, &["admin", "set-replication-factor", "4"]);
    assert_ne!(code, 0);
    assert!(err.contains("needs as many nodes"), "{err}");
    let (code, _, err) = tl(&first, &["admin", "set-replication-factor", "0"]);
    assert_eq!(code, 2, "{err}");
    ok(&first, &["admin", "set-replication-factor", "3"]);
    for n in &nodes {
        eventually("every shard on every node", || {
            (0..SHARDS).all(|s| n.dir.join(format!("shard-{s}")).is_dir())
        });
    }
    let st = json(&first, &["admin", "status"]);
    assert_eq!(st["metadata"]["replication_factor"], 3, "{st}");
    assert!(
        st["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["voters"].as_array().unwrap().len() == 3),
        "{st}"
    );

    // `admin split-shard`: shard 1's odd ids (account 1) become shard 3, on every node
    // (shard 1 is on all three now), each from the state its replica wrote.
    let (code, _, err) = tl(&first, &["admin", "split-shard", "1"]);
    assert_eq!(code, 2, "neither accounts nor markets: {err}");
    let (code, _, err) = tl(&first, &["admin", "split-shard", "1", "--accounts", "1:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("MOD must be 2 to"), "{err}");
    let (code, _, err) = tl(&first, &["admin", "split-shard", "9", "--accounts", "2:1"]);
    assert_ne!(code, 0);
    assert!(err.contains("shard 9 does not exist"), "{err}");
    let (code, _, err) = tl(&first, &["admin", "split-shard", "1", "--markets", "5"]);
    assert_ne!(code, 0);
    assert!(err.contains("market 5 does not exist"), "{err}");
    ok(
        &nodes[1].url,
        &["admin", "split-shard", "1", "--accounts", "2:1"],
    );
    let st = json(&first, &["admin", "status"]);
    assert_eq!(st["shards"].as_array().unwrap().len(), 4, "{st}");
    let split = &st["metadata"]["splits"][0];
    assert_eq!(
        (&split["parent"], &split["child"], &split["modulus"]),
        (&Value::from(1), &Value::from(3), &Value::from(2)),
        "{st}"
    );
    for n in &nodes {
        assert!(n.dir.join("shard-3").join("split-start.bin").is_file());
    }
    // The same command again (an operator's retry, through another node) makes no
    // second shard.
    ok(
        &nodes[2].url,
        &["admin", "split-shard", "1", "--accounts", "2:1"],
    );
    let again = json(&first, &["admin", "status"]);
    assert_eq!(again["shards"].as_array().unwrap().len(), 4, "{again}");
    assert_eq!(
        again["metadata"]["splits"].as_array().unwrap().len(),
        1,
        "{again}"
    );
    assert_eq!(
        again["metadata"]["version"], st["metadata"]["version"],
        "{again}"
    );
    // Account 1 lives on shard 3 now: read, and paid from and to, through every node.
    let want = [(1, 906), (2, 1071), (3, 1023)];
    for n in &nodes {
        eventually("exact balances after the split", || {
            want.iter().all(|(a, w)| usd(&n.url, *a) == *w)
        });
    }
    ok(
        &nodes[2].url,
        &["account", "transfer", "1", "3", "USD", "6", "--id", "15"],
    );
    ok(
        &nodes[0].url,
        &["account", "transfer", "2", "1", "USD", "2", "--id", "16"],
    );
    let want = [(1, 902), (2, 1069), (3, 1029)];
    for n in &nodes {
        eventually("exact balances after transfers on the new shard", || {
            want.iter().all(|(a, w)| usd(&n.url, *a) == *w)
        });
    }
    // Once the transfers settled (nothing in flight), the solvency audit sums the four shards (the moved balances count on shard 3).
    let (code, out, err) = tl(&first, &["audit", "solvency"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("shard 3 @"), "{out}");
    assert!(
        out.contains("3000       3000") && out.contains(" ok"),
        "{out}"
    );

    // SIGTERM: every node stops cleanly.
    for n in &mut nodes {
        let pid = n.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    }
    for n in &mut nodes {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = n.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{} did not stop", n.url);
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "{}: {status}", n.url);
    }
}
