//! Black-box test of `tradelog bench --only durable`: a node on disk, a few short passes,
//! the comparison table; it needs no PostgreSQL (the postgres section is opt-in).

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

#[test]
fn bench_durable_prints_the_comparison_table_without_postgres() {
    let (code, out, err) = tradelog(&[
        "bench",
        "--quick",
        "--only",
        "durable",
        "--duration-secs",
        "0.3",
        "--clients",
        "8",
        "--batch",
        "10",
    ]);
    assert_eq!(code, 0, "stderr: {err}\nstdout: {out}");
    assert!(out.contains("== durable: tradelog node on disk"), "{out}");
    assert!(out.contains("fdatasync"), "{out}");
    assert!(out.contains("invariants: OK"), "{out}");
    assert!(
        out.contains("| system | mode | one request = | transfers/s |"),
        "{out}"
    );
    for row in [
        "| tradelog, 1 shard | one by one |",
        "| tradelog, 1 shard | batched | 10 transfers, 8 clients",
        "| tradelog, 1 shard | open loop, 50% of max |",
        "| tradelog, 4 shards | one by one |",
    ] {
        assert!(out.contains(row), "missing {row}: {out}");
    }
    assert!(out.contains("PostgreSQL row skipped: not run"), "{out}");
    assert!(!out.contains("== postgres"), "{out}");
    // The in-memory engine sections were not asked for.
    assert!(!out.contains("== ledger"), "{out}");
}

#[test]
fn bench_refuses_unknown_sections_and_keeps_durable_opt_in() {
    let (code, _, err) = tradelog(&["bench", "--quick", "--only", "nonsense"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("durable,server,cluster,postgres,etcd"),
        "{err}"
    );
    // The default run is the in-memory sections only: no disk, no PostgreSQL.
    let (code, out, err) = tradelog(&["bench", "--quick"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("== matching only"), "{out}");
    assert!(
        out.contains(
            "idempotency table growing from empty to 50000 ids (not sized): slowest transfer"
        ),
        "{out}"
    );
    assert!(!out.contains("durable"), "{out}");
    assert!(!out.contains("postgres"), "{out}");
}

/// `--only server`: a real `tradelog serve` process driven over gRPC by the client crate,
/// every pass answered (no failed transfer), the server stopped cleanly and its data
/// directory verified.
#[test]
fn bench_server_drives_a_real_server_over_grpc() {
    let (code, out, err) = tradelog(&[
        "bench",
        "--quick",
        "--only",
        "server",
        "--shards",
        "2",
        "--duration-secs",
        "0.3",
        "--clients",
        "8",
        "--batch",
        "10",
    ]);
    assert_eq!(code, 0, "stderr: {err}\nstdout: {out}");
    assert!(
        out.contains("== server: tradelog serve (2 shard(s)"),
        "{out}"
    );
    for line in [
        "transfers one by one, 8 clients:",
        "transfers open loop at",
        "    pacer lateness (included in the latencies): p50 ",
        "transfers batched, 8 clients x 10:",
        "orders one by one, 8 clients:",
        "orders batched, 8 clients x 10:",
        "mix one by one, 8 clients:",
        "mix batched, 8 clients x 10:",
        "after a clean stop: tradelog verify OK",
        "| tradelog over gRPC, 2 shard(s) | one by one | 1 transfer, 8 clients, closed loop |",
        "| tradelog over gRPC, 2 shard(s) | batched | 10 transfers, 8 clients, closed loop |",
        "| tradelog over gRPC, 2 shard(s) | open loop, 50% of max |",
    ] {
        assert!(out.contains(line), "missing {line}: {out}");
    }
    // Every transfer pass was fully answered and accepted: the rows' failed column is 0.
    let transfer_passes: Vec<_> = out
        .lines()
        .filter(|l| l.starts_with("  transfers ") && l.contains("failed);"))
        .collect();
    assert_eq!(transfer_passes.len(), 3, "{out}");
    for l in transfer_passes {
        assert!(l.contains(", 0 failed)"), "{l}");
    }
}

/// `--only scaling`: single-node deployments of 1 and 2 shards, every share and workload
/// measured with every transfer accepted, the CSV and the plot written, and the end-to-end
/// latency probe printed. (Clusters are left to the program: a 3-node cluster of debug
/// builds next to the rest of the suite took over a minute to start in CI.)
#[test]
fn bench_scaling_measures_every_point_and_writes_the_plot() {
    let out_dir = tempfile::tempdir().unwrap();
    let (code, out, err) = tradelog(&[
        "bench",
        "--only",
        "scaling",
        "--scale-shards",
        "1,2",
        "--scale-nodes",
        "1",
        "--cross-pct",
        "0,50",
        "--durable-accounts",
        "200",
        "--duration-secs",
        "0.2",
        "--clients",
        "4",
        "--batch",
        "10",
        "--probe-samples",
        "3",
        "--scale-out",
        out_dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "stderr: {err}\nstdout: {out}");
    let csv = std::fs::read_to_string(out_dir.path().join("scaling.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("nodes,shards,cross_pct,workload,commands_per_s,p99_request_us,failed,commands")
    );
    let mut points = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 8, "{l}");
        points.push(format!("{} {} {} {}", f[0], f[1], f[2], f[3]));
        let (rate, failed, commands): (f64, u64, u64) = (
            f[4].parse().unwrap(),
            f[6].parse().unwrap(),
            f[7].parse().unwrap(),
        );
        assert!(rate > 0.0 && commands > 0, "{l}");
        if f[3].starts_with("transfers") {
            assert_eq!(failed, 0, "a transfer failed: {l}");
        }
    }
    let mut want = Vec::new();
    for shards in [1, 2] {
        for cross in [0, 50] {
            for w in ["transfers_batched", "orders_batched", "transfers_single"] {
                want.push(format!("1 {shards} {cross} {w}"));
            }
        }
    }
    assert_eq!(points, want);
    let svg = std::fs::read_to_string(out_dir.path().join("scaling.svg")).unwrap();
    for title in [
        "transfers, batched",
        "orders, batched",
        "transfers, one by one",
    ] {
        assert!(svg.contains(title), "{title} missing from the plot");
    }
    assert!(svg.contains("1 node(s), 50% cross"), "legend missing");
    assert!(
        out.contains("end-to-end latency, one command at a time, 1 node process(es), 2 shards"),
        "{out}"
    );
    for path in [
        "transfer across shards             answer",
        "marketable order across shards     answer",
    ] {
        assert_eq!(
            out.matches(path).count(),
            if path.starts_with("transfer") { 2 } else { 1 },
            "{out}"
        );
    }
}
