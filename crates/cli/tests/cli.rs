//! Black-box tests of the `tradelog` binary.

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
fn demo_trades_across_shards_and_checks_invariants() {
    let (code, out, err) = tradelog(&["demo"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains("TRADE 2.00000000 BTC @ 30000.00 USD/BTC"),
        "{out}"
    );
    assert!(
        out.contains("TRADE 0.50000000 BTC @ 30010.00 USD/BTC"),
        "{out}"
    );
    assert!(
        out.contains("cross-shard transfer started: alice -> dave 500.00 USD"),
        "{out}"
    );
    assert!(out.contains("2 trades"), "{out}");
    assert!(out.contains("invariants: OK"), "{out}");
    // The market's shard splits while dave's bid is on its way: the new shard accepts it.
    assert!(
        out.contains("[3: 20] SPLIT: this shard gave the market and 1 account(s) to shard 4"),
        "{out}"
    );
    assert!(
        out.contains("[4:  1] order 1 accepted by the market"),
        "{out}"
    );
    assert!(
        out.contains("book BTC/USD (shard 4, split from shard 3)"),
        "{out}"
    );
    assert!(out.contains("over 5 shard(s)"), "{out}");
    // Final balances: alice paid 75,155.01 USD for 2.5 BTC, sent 500 and 250.
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["alice", "1", "24094.99", "0.00", "2.50000000", "0.00000000"]),
        "{out}"
    );
}

#[test]
fn demo_is_deterministic_and_independent_of_shard_count_for_balances() {
    let (_, a, _) = tradelog(&["demo"]);
    let (_, b, _) = tradelog(&["demo"]);
    assert_eq!(a, b, "same run, same output (state hashes included)");
    let (code, one, _) = tradelog(&["demo", "--shards", "1"]);
    assert_eq!(code, 0);
    let balances = |s: &str| -> Vec<String> {
        s.lines()
            .skip_while(|l| !l.starts_with("final balances"))
            .skip(2)
            .take_while(|l| !l.is_empty())
            .map(|l| {
                // Drop the shard column.
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{} {}", f[0], f[2..].join(" "))
            })
            .collect()
    };
    assert_eq!(balances(&a), balances(&one));
    assert_eq!(balances(&a).len(), 5);
}

/// `tradelog ... | head`: when the reader of stdout is gone, the CLI ends quietly with
/// status 141 (as a SIGPIPE would end it), not with a panic.
#[test]
fn a_closed_stdout_pipe_ends_the_cli_quietly() {
    // A pipe whose reader is gone before the demo starts: its first line fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .arg("demo")
        .stdout(writer)
        .output()
        .expect("run tradelog");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(Some(141), out.status.code(), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_arguments_are_refused_with_a_clear_error() {
    let (code, _, err) = tradelog(&["demo", "--shards", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--shards"), "{err}");
    let (code, _, err) = tradelog(&["nonsense"]);
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn bench_quick_runs_every_section() {
    let (code, out, err) = tradelog(&["bench", "--quick"]);
    assert_eq!(code, 0, "stderr: {err}");
    for section in [
        "== ledger",
        "== engine: order mix over 1 market",
        "== engine: order mix over 100 markets",
        "== matching only",
        "== memory",
    ] {
        assert!(
            out.contains(section.trim_end_matches('s')),
            "missing {section}: {out}"
        );
    }
    assert!(out.contains("batched/single"), "{out}");
}
