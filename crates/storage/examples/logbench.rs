//! Group commit benchmark of `FileLog`: appends N records of 100 bytes in groups of G with
//! one sync per group, for G = 1, 10, 100, 1000 (and G = N, the CPU ceiling), and prints
//! them side by side.
//!
//! ```text
//! cargo run --release -p tradelog-storage --example logbench -- [--records N] [--dir DIR]
//! ```
//!
//! `--dir` must be on the file system to measure (default: the system temporary directory;
//! a tmpfs there makes every sync free and the figures meaningless).

use std::path::PathBuf;
use std::time::{Duration, Instant};
use tradelog_storage::{FileLog, FileLogConfig, LogStore};

const PAYLOAD_BYTES: usize = 100;
const GROUPS: [usize; 4] = [1, 10, 100, 1000];

struct Row {
    group: usize,
    elapsed: Duration,
    records: usize,
    syncs: usize,
    sync_p50: Duration,
    sync_p99: Duration,
}

fn main() {
    let mut records = 20_000usize;
    let mut dir = std::env::temp_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => {
                records = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--records N")
            }
            "--dir" => dir = PathBuf::from(args.next().expect("--dir DIR")),
            _ => {
                eprintln!("usage: logbench [--records N] [--dir DIR]");
                std::process::exit(2);
            }
        }
    }
    let base = tempfile::Builder::new()
        .prefix("logbench-")
        .tempdir_in(&dir)
        .expect("temporary directory");
    println!(
        "logbench: {records} records of {PAYLOAD_BYTES} bytes per group size, one sync per group, in {}",
        base.path().display()
    );

    let mut rows: Vec<Row> = GROUPS
        .iter()
        .map(|&group| run(&base.path().join(format!("g{group}")), records, group))
        .collect();
    // The ceiling: every record in one group (encoding, SHA-256 and CRC cost).
    rows.push(run(&base.path().join("all"), records, records));

    let base_rate = rate(rows[0].records, rows[0].elapsed);
    println!();
    println!(
        "{:>6} {:>12} {:>10} {:>10} {:>11} {:>11} {:>9}",
        "group", "records/s", "syncs/s", "time s", "sync p50", "sync p99", "vs G=1"
    );
    for r in &rows {
        let rps = rate(r.records, r.elapsed);
        println!(
            "{:>6} {:>12.0} {:>10.0} {:>10.3} {:>9.0}us {:>9.0}us {:>8.1}x",
            r.group,
            rps,
            rate(r.syncs, r.elapsed),
            r.elapsed.as_secs_f64(),
            r.sync_p50.as_secs_f64() * 1e6,
            r.sync_p99.as_secs_f64() * 1e6,
            rps / base_rate
        );
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn run(dir: &std::path::Path, records: usize, group: usize) -> Row {
    let mut log = FileLog::open(dir, FileLogConfig::default()).expect("open");
    let payloads: Vec<Vec<u8>> = (0..group)
        .map(|i| (0..PAYLOAD_BYTES).map(|k| (i + k) as u8).collect())
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    let mut sync_times = Vec::with_capacity(records / group + 1);
    let mut written = 0;
    let start = Instant::now();
    while written < records {
        let n = group.min(records - written);
        log.append(&refs[..n]).expect("append");
        let t = Instant::now();
        let durable = log.sync().expect("sync");
        sync_times.push(t.elapsed());
        written += n;
        assert_eq!(durable, written as u64);
    }
    let elapsed = start.elapsed();
    log.close().expect("close");
    sync_times.sort();
    let pct = |p: f64| sync_times[((sync_times.len() - 1) as f64 * p) as usize];
    Row {
        group,
        elapsed,
        records,
        syncs: sync_times.len(),
        sync_p50: pct(0.50),
        sync_p99: pct(0.99),
    }
}
