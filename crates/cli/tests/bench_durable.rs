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
