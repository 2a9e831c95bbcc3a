//! Black-box test of `tradelog bench --only server,cluster,etcd`: a real 3-member etcd cluster on
//! loopback (started, and installed from the Debian package `etcd-server` if missing, by
//! `scripts/bench-etcd.sh`) driven with the transfer workload over gRPC, next to a real 3-node
//! tradelog cluster and a
//! `tradelog serve`, ending with the replicated-writes table. If etcd cannot be installed
//! or started the test fails and says why: it is never skipped.

use std::process::Command;

fn tradelog(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .args(args)
        .output()
        .expect("run tradelog");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The processes whose command line contains `needle` (other than this test's).
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("procfs").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

#[test]
fn bench_etcd_drives_a_three_member_cluster_and_prints_the_replicated_table() {
    let (code, out, err) = tradelog(&[
        "bench",
        "--quick",
        "--only",
        "server,cluster,etcd",
        "--shards",
        "1",
        "--duration-secs",
        "0.3",
        "--clients",
        "8",
        "--batch",
        "10",
    ]);
    assert_eq!(code, 0, "stderr: {err}\nstdout: {out}");
    if let Some(why) = out.lines().find_map(|l| l.strip_prefix("  etcd skipped: ")) {
        panic!(
            "etcd could not be run, so the replicated-write baseline was not measured: {why}\n\
             (scripts/bench-etcd.sh installs the Debian packages etcd-server and etcd-client with \
             apt-get when run as root; install them or run the test as root)\nstdout: {out}"
        );
    }
    assert!(out.contains("== etcd: 3 members on loopback"), "{out}");

    // The cluster: three members, every client URL on 127.0.0.1, one leader.
    let ready = out
        .lines()
        .find_map(|l| l.strip_prefix("  etcd | ETCD_READY "))
        .unwrap_or_else(|| panic!("no ETCD_READY line: {out}"));
    let field = |k: &str| {
        ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {ready}"))
    };
    let endpoints: Vec<&str> = field("endpoints").split(',').collect();
    assert_eq!(3, endpoints.len(), "{ready}");
    for e in &endpoints {
        assert!(e.starts_with("http://127.0.0.1:"), "{ready}");
    }
    assert!(endpoints.contains(&field("leader")), "{ready}");
    assert_eq!("3", field("members"));

    // Every pass ran and nothing was lost: all balances add up, one transfer record per
    // acknowledged transfer.
    for line in [
        "transfers one by one, 8 clients:",
        "transfers open loop at",
        "transfers batched, 8 clients x 10:",
        "blind puts one by one, 8 clients:",
        "blind puts batched, 8 clients x 10:",
        "check (linearizable reads): 1000 accounts, total balance 1000000000 (expected 1000000000),",
    ] {
        assert!(out.contains(line), "missing {line}: {out}");
    }
    let check = out
        .lines()
        .find(|l| l.contains("check (linearizable reads)"))
        .expect("checked above");
    // "..., N transfer records (N transfers acknowledged)"
    let (records, acked) = check
        .rsplit(", ")
        .next()
        .and_then(|p| p.split_once(" transfer records ("))
        .unwrap_or_else(|| panic!("{check}"));
    assert_eq!(
        format!("{records} transfers acknowledged)"),
        acked,
        "{check}"
    );
    assert_ne!("0", records, "{check}");

    // The table: etcd's rows and tradelog's single-node rows, then the ratios.
    assert!(
        out.contains("== replicated writes: etcd vs tradelog, same machine, same run"),
        "{out}"
    );
    assert!(
        out.contains("| system | copies of each write | mode | one request = | transfers/s |"),
        "{out}"
    );
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| ")).collect();
    for (system, rest) in [
        (
            "| etcd ",
            " 3 members | 3 | one by one | 1 transfer, 8 clients, closed loop |",
        ),
        (
            "| etcd ",
            " 3 members | 3 | open loop, 50% of max | 1 transfer, open loop at ",
        ),
        (
            "| etcd ",
            " 3 members | 3 | batched | 10 transfers in one Txn, 8 clients, closed loop |",
        ),
        (
            "| etcd ",
            " 3 members | 3 | batched | 10 puts (no check) in one Txn, 8 clients, closed loop |",
        ),
        (
            "| tradelog, 1 node (over gRPC, 1 shard(s)) |",
            " 1 | one by one | 1 transfer, 8 clients, closed loop |",
        ),
        (
            "| tradelog, 1 node (over gRPC, 1 shard(s)) |",
            " 1 | batched | 10 transfers, 8 clients, closed loop |",
        ),
        (
            "| tradelog, 1 node (over gRPC, 1 shard(s)) |",
            " 1 | open loop, 50% of max |",
        ),
        (
            "| tradelog, 3 replicas (over gRPC, 1 shard(s)) |",
            " 3 | one by one | 1 transfer, 8 clients, closed loop |",
        ),
        (
            "| tradelog, 3 replicas (over gRPC, 1 shard(s)) |",
            " 3 | batched | 10 transfers, 8 clients, closed loop |",
        ),
        (
            "| tradelog, 3 replicas (over gRPC, 1 shard(s)) |",
            " 3 | open loop, 50% of max |",
        ),
    ] {
        assert!(
            rows.iter()
                .any(|r| r.starts_with(system) && r.contains(rest)),
            "missing {system}...{rest}: {out}"
        );
    }
    assert!(out.contains("Ratios (tradelog / etcd"), "{out}");
    assert!(
        out.contains("tradelog, 3 replicas (over gRPC, 1 shard(s)) batched vs batched Txns:"),
        "{out}"
    );
    assert!(!out.contains("tradelog, 3 replicas: not run"), "{out}");
    // The cluster pass ends with a leader killed under load and the time until a write
    // committed again.
    let failover = out
        .lines()
        .find(|l| l.contains("failover: the leader of shard 0 (node "))
        .unwrap_or_else(|| panic!("no failover line: {out}"));
    let secs: f64 = failover
        .split("committed ")
        .nth(1)
        .and_then(|r| r.split(" s later").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failover time in {failover:?}"));
    assert!(secs > 0.0, "{failover}");

    // The script stopped its members and removed their directory.
    let dir = field("dir");
    assert!(
        out.contains(&format!("bench-etcd: stopped etcd and removed {dir}")),
        "{out}"
    );
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
    assert_eq!(Vec::<String>::new(), processes_naming(&format!("{dir}/")));
}
