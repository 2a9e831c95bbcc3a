//! `tradelog cluster up` and `cluster down` as a user runs them: three node processes on
//! loopback, the demo load through every node with the replicas' agreement checked, then
//! a clean stop from another command.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A base port with its node ports (BASE + 10k, +1 for k < 3) free now and claimed.
fn free_base() -> u16 {
    tradelog_server::ports::free_loopback_block(22).expect("22 free loopback ports")
}

/// `tradelog cluster up` that is stopped (SIGTERM: it stops its nodes, then exits) if the
/// test ends before `cluster down` did it, so a failed assertion leaves no node running.
struct StopOnDrop(Option<std::process::Child>);

impl StopOnDrop {
    fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("running")
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(mut c) = self.0.take() else { return };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `tradelog cluster up ARGS` started, its output read until it serves: the process, its
/// further stdout lines, its stderr (once it exits) and what it printed so far.
fn up_until_serving(
    args: &[&str],
) -> (
    StopOnDrop,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
    String,
) {
    let mut up = StopOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_tradelog"))
            .args(["cluster", "up"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // Its output, line by line, read to the end (so it never blocks on a full pipe).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = BufReader::new(up.child().stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let err = up.child().stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(err), &mut s);
        s
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.starts_with("Serving until Ctrl-C");
                seen.push(line);
                if done {
                    break;
                }
            }
            Err(e) => panic!("cluster up did not get to serving ({e}): {seen:#?}"),
        }
    }
    (up, rx, err, seen.join("\n"))
}

/// `tradelog cluster down --data-dir DATA` from another command: `up` then exits cleanly,
/// its last line saying it stopped the three nodes.
fn cluster_down(
    data: &std::path::Path,
    mut up: StopOnDrop,
    rx: &std::sync::mpsc::Receiver<String>,
    err: std::thread::JoinHandle<String>,
) {
    let down = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .args(["cluster", "down", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(down.status.success(), "{down:?}");
    let status = up.0.take().unwrap().wait().unwrap();
    let err = err.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        status.success(),
        "cluster up exits cleanly: {status}: {err}"
    );
    assert_eq!(rest, ["stopped 3 nodes"], "{err}");
}

#[test]
fn cluster_up_runs_the_demo_and_cluster_down_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster");
    let base = free_base().to_string();
    let (up, rx, err, text) = up_until_serving(&[
        "--shards",
        "2",
        "--base-port",
        &base,
        "--demo-secs",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        text.contains("tradelog cluster of 3 nodes, 2 shards"),
        "{text}"
    );
    assert!(text.contains("0 not answered"), "{text}");
    assert!(
        text.contains("demo: every node applied the same log on every shard"),
        "{text}"
    );
    // Every node answers; `admin status` through node 3 names a leader for both shards.
    let port3 = base.parse::<u16>().unwrap() + 20;
    let status = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .args(["--server", &format!("http://127.0.0.1:{port3}")])
        .args(["admin", "status", "--json"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["node"], 3);
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    for s in shards {
        assert!(s["leader"].is_u64(), "{s}");
        assert_eq!(s["voters"], serde_json::json!([1, 2, 3]), "{s}");
    }
    // The cluster map, created once by the metadata group from the shard groups: three
    // members, replication factor 3, nothing changed since.
    let m = &v["metadata"];
    assert_eq!(m["version"], 1, "{m}");
    assert_eq!(m["replication_factor"], 3, "{m}");
    assert_eq!(m["voters"], serde_json::json!([1, 2, 3]), "{m}");
    assert!(m["leader"].is_u64(), "{m}");
    let members: Vec<(u64, String, bool)> = m["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let url = n["url"].as_str().unwrap().to_string();
            (
                n["node"].as_u64().unwrap(),
                url,
                n["draining"].as_bool().unwrap(),
            )
        })
        .collect();
    let base_port = base.parse::<u16>().unwrap();
    let want: Vec<(u64, String, bool)> = (1..=3u16)
        .map(|n| {
            let url = format!("http://127.0.0.1:{}", base_port + 10 * (n - 1));
            (u64::from(n), url, false)
        })
        .collect();
    assert_eq!(members, want);
    let table = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .args(["--server", &format!("http://127.0.0.1:{port3}")])
        .args(["admin", "status"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("cluster map version 1 (replication factor 3)"),
        "{table}"
    );

    plans_against_the_live_cluster(port3);

    export_parquet_from_the_cluster(&base, &dir.path().join("export"));

    cluster_down(&data, up, &rx, err);
    // Every node wrote its data and stopped (no pid file left behind).
    for n in 1..=3 {
        let node = data.join(format!("node-{n}"));
        assert!(node.join("shard-0").is_dir() && node.join("shard-1").is_dir());
        assert!(node.join("meta").join("raft-meta").is_file(), "{node:?}");
        assert!(
            !node.join("serve.pid").exists(),
            "node {n} left its pid file"
        );
    }
}

/// `cluster up --replication-factor 2` on three nodes: each shard on two of them, the
/// demo load through every node with the holders' agreement checked, and the event
/// stream, read through nodes that hold only some shards, exported to Parquet exactly;
/// a factor above the node count is refused before any node starts.
#[test]
fn cluster_up_with_fewer_replicas_than_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster");
    let out = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .args(["cluster", "up", "--nodes", "2", "--replication-factor", "3"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("replication factor 3 needs 3 live nodes, there are 2"),
        "{err}"
    );
    assert!(!data.join("node-1").exists(), "no node started");

    let base = free_base().to_string();
    let (up, rx, err, text) = up_until_serving(&[
        "--shards",
        "2",
        "--replication-factor",
        "2",
        "--base-port",
        &base,
        "--demo-secs",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        text.contains("tradelog cluster of 3 nodes, 2 shards, 2 replicas each"),
        "{text}"
    );
    assert!(text.contains("0 not answered"), "{text}");
    assert!(
        text.contains("demo: every node applied the same log on every shard it holds"),
        "{text}"
    );
    // Each shard on two nodes, and some node without one of them.
    let held: Vec<Vec<u32>> = (1..=3)
        .map(|n| {
            (0..2)
                .filter(|s| data.join(format!("node-{n}/shard-{s}")).is_dir())
                .collect()
        })
        .collect();
    for s in 0..2 {
        assert_eq!(
            held.iter().filter(|h| h.contains(&s)).count(),
            2,
            "{held:?}"
        );
    }
    assert!(held.iter().any(|h| h.len() < 2), "{held:?}");
    export_parquet_from_the_cluster(&base, &dir.path().join("export"));

    cluster_down(&data, up, &rx, err);
}

/// `tradelog --server NODES ARGS --json` that must succeed: the parsed document.
fn tl_json(nodes: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .args(["--server", nodes, "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every event the cluster serves (through node 2), sorted by (shard, seq), and the
/// position after them.
fn cluster_events(base: u16) -> (Vec<tradelog_domain::EventRecord>, String) {
    let v = tl_json(
        &format!("http://127.0.0.1:{}", base + 10),
        &["events", "read"],
    );
    let mut events: Vec<tradelog_domain::EventRecord> =
        serde_json::from_value(v["events"].clone()).unwrap();
    events.sort_by_key(|e| (e.shard, e.seq));
    (events, v["position"].as_str().unwrap().to_owned())
}

/// `export parquet` against the cluster after the demo load: the Parquet holds exactly the
/// events the API serves; after one more command, a second run (through another node)
/// adds exactly the new ones.
fn export_parquet_from_the_cluster(base: &str, out: &std::path::Path) {
    let base: u16 = base.parse().unwrap();
    let all_nodes: Vec<String> = (0..3)
        .map(|k| format!("http://127.0.0.1:{}", base + 10 * k))
        .collect();
    let all_nodes = all_nodes.join(",");
    let dir = out.to_str().unwrap();
    let first = tl_json(&all_nodes, &["export", "parquet", "--out", dir]);
    let (api, position) = cluster_events(base);
    let (_, mut parquet) = tradelog_export::read_dir(out).unwrap();
    parquet.sort_by_key(|e| (e.shard, e.seq));
    assert_eq!(api.len(), parquet.len());
    assert!(
        api == parquet,
        "the export differs from the events the API serves"
    );
    assert_eq!(
        (&serde_json::json!(api.len()), &serde_json::json!(position)),
        (&first["events"], &first["position"])
    );

    tl_json(
        &all_nodes,
        &["account", "deposit", "1", "1", "777", "--id", "4242424242"],
    );
    let node3 = format!("http://127.0.0.1:{}", base + 20);
    let second = tl_json(&node3, &["export", "parquet", "--out", dir]);
    let (all, _) = cluster_events(base);
    let (manifest, mut parquet) = tradelog_export::read_dir(out).unwrap();
    parquet.sort_by_key(|e| (e.shard, e.seq));
    assert!(
        all == parquet,
        "the second export differs from the events the API serves"
    );
    assert_eq!(
        (
            &serde_json::json!(all.len() - api.len()),
            &serde_json::json!(position)
        ),
        (&second["events"], &second["from"])
    );
    assert!(second["events"].as_u64().unwrap() >= 2, "{second}");
    assert_eq!(3, manifest.files.len());
}

/// `tradelog admin plan` on the running 3-node, 2-shard cluster (every node a voter of
/// both shards): with 3 replicas no replica moves; with 2 replicas and node 3 draining,
/// node 3 hands over and leaves both shards; a 4th node joining takes exactly one replica;
/// layouts that cannot be placed and unknown nodes exit 2.
fn plans_against_the_live_cluster(port: u16) {
    let server = format!("http://127.0.0.1:{port}");
    let plan = |args: &[&str]| -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_tradelog"))
            .args(["--server", &server, "admin", "plan"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["admin", "plan"];
        all.extend_from_slice(args);
        tl_json(&server, &all)
    };
    let steps = |v: &serde_json::Value| -> Vec<(u64, String, u64)> {
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["shard"].as_u64().unwrap(),
                    s["step"].as_str().unwrap().to_owned(),
                    s["node"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let node = |v: &serde_json::Value, n: u64| -> serde_json::Value {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == n)
            .unwrap_or_else(|| panic!("node {n} in {v}"))
            .clone()
    };

    // Replication factor 3 on 3 nodes: at most leaderships move.
    let v = json(&["--replicas", "3"]);
    assert!(
        steps(&v).iter().all(|(_, s, _)| s == "transfer-leader"),
        "{v}"
    );
    for n in 1..=3 {
        assert_eq!(node(&v, n)["replicas_now"], 2, "{v}");
        assert_eq!(node(&v, n)["replicas_planned"], 2, "{v}");
        assert!(node(&v, n)["leads_planned"].as_u64().unwrap() <= 1, "{v}");
    }

    // 2 replicas, node 3 draining: each shard drops node 3 (after handing its leadership
    // over if it leads) and adds nothing.
    let v = json(&["--replicas", "2", "--draining", "3"]);
    let s = steps(&v);
    assert!(!s.iter().any(|(_, step, _)| step == "add-learner"), "{v}");
    for shard in 0..2u64 {
        let mine: Vec<&(u64, String, u64)> = s.iter().filter(|x| x.0 == shard).collect();
        let removed = mine
            .iter()
            .position(|x| x.1 == "remove")
            .unwrap_or_else(|| panic!("shard {shard} keeps node 3: {v}"));
        assert_eq!(mine[removed].2, 3, "{v}");
        assert_eq!(mine.iter().filter(|x| x.1 == "remove").count(), 1, "{v}");
        // Whoever leads afterwards is not node 3.
        assert!(
            mine.iter().all(|x| x.1 != "transfer-leader" || x.2 != 3),
            "{v}"
        );
    }
    assert_eq!(node(&v, 3)["state"], "draining");
    assert_eq!(node(&v, 3)["replicas_planned"], 0);
    assert_eq!(node(&v, 3)["leads_planned"], 0);
    assert_eq!(node(&v, 1)["replicas_planned"], 2);
    assert_eq!(node(&v, 2)["replicas_planned"], 2);

    // A 4th node joins with 3 replicas: 6 replicas over 4 nodes, so it takes exactly one.
    let v = json(&["--replicas", "3", "--join", "4"]);
    let s = steps(&v);
    let membership: Vec<&(u64, String, u64)> =
        s.iter().filter(|x| x.1 != "transfer-leader").collect();
    assert_eq!(membership.len(), 3, "{v}");
    let shard = membership[0].0;
    assert_eq!(
        membership
            .iter()
            .map(|x| (x.0, x.1.as_str()))
            .collect::<Vec<_>>(),
        [
            (shard, "add-learner"),
            (shard, "promote"),
            (shard, "remove")
        ],
        "{v}"
    );
    assert_eq!((membership[0].2, membership[1].2), (4, 4), "{v}");
    assert_eq!(node(&v, 4)["replicas_now"], 0);
    assert_eq!(node(&v, 4)["replicas_planned"], 1);
    // Without --replicas the factor is the one the shards have now (3).
    let d = json(&["--join", "4"]);
    assert_eq!(d["replicas"], 3, "{d}");
    assert_eq!(node(&d, 4)["replicas_planned"], 1, "{d}");

    // The table says it changed nothing and lists the steps.
    let (code, out, err) = plan(&["--replicas", "2", "--draining", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("a preview: nothing was changed"), "{out}");
    assert!(out.contains("draining") && out.contains("remove"), "{out}");

    // What cannot be placed exits 2 and says why.
    let (code, _, err) = plan(&["--replicas", "4"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs 4 live nodes, there are 3"), "{err}");
    let (code, _, err) = plan(&["--replicas", "2", "--down", "9"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("node 9 is not in the cluster"), "{err}");
}
