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
    assert!(err.contains("durable,postgres"), "{err}");
    // The default run is the in-memory sections only: no disk, no PostgreSQL.
    let (code, out, err) = tradelog(&["bench", "--quick"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("== matching only"), "{out}");
    assert!(!out.contains("durable"), "{out}");
    assert!(!out.contains("postgres"), "{out}");
}
