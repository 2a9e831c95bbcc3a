//! Crash tests on real processes: `crashload` is killed with SIGKILL at random moments
//! under load, many times; after every restart every acknowledged transfer is present,
//! nothing is half-applied (money is conserved), invariants hold. Then the files are
//! damaged on purpose: truncation is recovered as a torn tail, a flipped bit in an older
//! segment is refused with a precise error.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const FUNDS: u64 = 1_000_000_000;

struct Open {
    applied: u64,
    done: u64,
    sum: u64,
}

fn parse_open(line: &str) -> Open {
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
            .parse()
            .unwrap()
    };
    Open {
        applied: field("applied"),
        done: field("done"),
        sum: field("sum"),
    }
}

/// Runs crashload until it has printed `acks` ACK lines (or exits), kills it with SIGKILL,
/// returns (what it recovered on open, the highest acknowledged count).
fn run_and_kill(dir: &std::path::Path, acks: usize) -> (Open, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crashload"))
        .arg(dir)
        .arg("300")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crashload");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let open = parse_open(&lines.next().expect("OPEN line").unwrap());
    let mut acked = open.done;
    for _ in 0..acks {
        match lines.next() {
            Some(Ok(l)) => acked = l.strip_prefix("ACK ").unwrap().parse().unwrap(),
            _ => break,
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    (open, acked)
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_transfer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut acked = 0;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let cycles = 25;
    for cycle in 0..cycles {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let (open, now_acked) = run_and_kill(tmp.path(), (rng % 300) as usize);
        assert!(
            open.done >= acked,
            "cycle {cycle}: {acked} transfers were acknowledged, only {} recovered",
            open.done
        );
        assert_eq!(
            open.sum,
            if open.applied == 0 { 0 } else { FUNDS },
            "money not conserved"
        );
        acked = now_acked;
    }
    let (open, _) = run_and_kill(tmp.path(), 0);
    assert!(open.done >= acked);
    assert_eq!(open.sum, FUNDS);
    assert!(acked > 100, "the load made too little progress: {acked}");
}

fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn damaged_log_files_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    // Enough load for several segments (256 KiB each).
    let (_, acked) = run_and_kill(tmp.path(), 3_000);
    let segs = segments(tmp.path());
    assert!(segs.len() >= 3, "only {} segments", segs.len());

    // A flipped bit inside the first segment's records: refused, naming the file.
    let first = &segs[0];
    let mut bytes = std::fs::read(first).unwrap();
    bytes[64 + 100] ^= 0x10;
    std::fs::write(first, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crashload"))
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("segment-00000000000000000001.log"), "{err}");
    bytes[64 + 100] ^= 0x10;
    std::fs::write(first, &bytes).unwrap();

    // Cutting the last segment inside a record that was durable (and acknowledged) is
    // damage, not an interrupted write: the durable watermark says so, and the shard
    // refuses to open rather than silently dropping acknowledged transfers.
    let before = transfers_on_disk(tmp.path()).expect("intact log opens");
    assert!(before >= acked);
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    let data = std::fs::read(last).unwrap();
    let end = data.iter().rposition(|b| *b != 0).unwrap() as u64 + 1;
    assert!(end < len);
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(end - 7)
        .unwrap();
    let err = transfers_on_disk(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("acknowledged records lost"), "{err}");
    assert!(
        err.contains(last.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
    // Nothing was changed by the refusal: the log still ends where it was cut.
    assert_eq!(std::fs::metadata(last).unwrap().len(), end - 7);
    let out = Command::new(env!("CARGO_BIN_EXE_crashload"))
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Opens the shard in this process (recovering it) and counts the transfers it holds.
fn transfers_on_disk(dir: &std::path::Path) -> Result<u64, tradelog_node::NodeError> {
    let (shard, _) = tradelog_node::DurableShard::open(tradelog_node::ShardConfig {
        dir: dir.to_path_buf(),
        shard: tradelog_domain::ShardId(0),
        placement: tradelog_engine::Placement::new(1),
        snapshot_every_records: 0,
        snapshot_interval_min_ms: 0,
        log: tradelog_storage::FileLogConfig {
            segment_bytes_max: 256 << 10,
            record_bytes_max: 64 << 10,
            ..Default::default()
        },
        watermark_every_ms: 0,
    })?;
    shard.engine().validate().unwrap();
    let b = |a| {
        shard
            .engine()
            .ledger()
            .account(tradelog_domain::AccountId(a))
            .unwrap()
            .balance(tradelog_domain::AssetId(1))
            .available
            .0
    };
    assert_eq!(b(1) + b(2), FUNDS);
    Ok(b(2))
}
