//! `tradelog bench --only postgres`: runs `scripts/bench-postgres.sh` (a private PostgreSQL
//! cluster on 127.0.0.1, the same transfer workload through pgbench) and turns its
//! `PG_RESULT` lines into rows of the comparison table.
//!
//! Anything that goes wrong on the PostgreSQL side (not installable, does not start,
//! pgbench fails) is reported as a reason to skip these rows, never as a failure of the
//! benchmark.

use super::{find_script, script_fields, Mode, Row};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Settings passed to the script.
pub struct Options {
    /// Accounts in the `accounts` table.
    pub accounts: u64,
    /// pgbench clients.
    pub clients: usize,
    /// Transfer transactions per pipelined request in the batched mode.
    pub batch: usize,
    /// Length of each mode (pgbench wants whole seconds: rounded up).
    pub duration: Duration,
    /// Where the cluster's temporary directory goes (the script falls back to /tmp if the
    /// `postgres` user cannot use it).
    pub base_dir: Option<PathBuf>,
    /// The script (None: `scripts/bench-postgres.sh` of this source tree, or of the
    /// current directory).
    pub script: Option<PathBuf>,
}

fn row(f: &BTreeMap<String, String>) -> Option<Row> {
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<f64>().ok());
    let ms = |k: &str| num(k).map(|v| v * 1e3);
    let clients = f.get("clients").cloned().unwrap_or_default();
    let batch = num("batch").unwrap_or(1.0) as u64;
    let (mode, request) = match f.get("mode")?.as_str() {
        "single" => (
            Mode::Single,
            format!("1 transfer tx, {clients} clients, closed loop"),
        ),
        "batched" => (
            Mode::Batched,
            format!("{batch} transfer txs pipelined, {clients} clients, closed loop"),
        ),
        "open" => (
            Mode::Open,
            format!(
                "1 transfer tx, open loop at {:.0}/s",
                num("requests_per_s").unwrap_or(0.0)
            ),
        ),
        _ => return None,
    };
    let commits = num("commits_per_fsync");
    Some(Row {
        system: format!(
            "PostgreSQL {}",
            f.get("version").map(String::as_str).unwrap_or("?")
        ),
        mode,
        request,
        transfers_per_s: num("transfers_per_s")?,
        p50_us: ms("p50_ms")?,
        p99_us: ms("p99_ms")?,
        p999_us: ms("p999_ms")?,
        max_us: ms("max_ms").unwrap_or(0.0),
        requests: num("requests").unwrap_or(0.0) as u64,
        failed: num("failed").unwrap_or(0.0) as u64,
        per_fsync: commits.filter(|c| *c > 0.0).map(|c| (c, c)),
        replicas: None,
        note: match (num("fsync_avg_ms"), f.get("fs")) {
            (Some(t), Some(fs)) => format!("WAL fsync avg {:.0} us on {fs}", t * 1e3),
            _ => String::new(),
        },
    })
}

/// Runs the script; returns its rows, or why there are none.
pub fn run(o: &Options) -> Result<Vec<Row>, String> {
    println!(
        "\n== postgres: the same transfers through pgbench, fsync=on, synchronous_commit=on =="
    );
    let script = find_script(o.script.as_deref(), "bench-postgres.sh").ok_or_else(|| {
        "scripts/bench-postgres.sh not found (run from the repository or pass --pg-script)"
            .to_string()
    })?;
    let secs = o.duration.as_secs_f64().ceil().max(1.0) as u64;
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .args(["--accounts", &o.accounts.to_string()])
        .args(["--clients", &o.clients.to_string()])
        .args(["--batch", &o.batch.to_string()])
        .args(["--duration", &secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(b) = &o.base_dir {
        cmd.arg("--base-dir").arg(b);
    }
    println!("  running: bash {} ...", script.display());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run bash {}: {e}", script.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .inspect(|l| eprintln!("  pg! {l}"))
            .collect::<Vec<_>>()
    });
    let mut rows = Vec::new();
    let mut skip = None;
    let mut tail: Vec<String> = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        if line.starts_with("PG_RESULT ") {
            match row(&script_fields(&line)) {
                Some(r) => rows.push(r),
                None => tail.push(format!("unparsable: {line}")),
            }
        } else if let Some(reason) = line.strip_prefix("PG_SKIP reason=") {
            skip = Some(reason.trim_matches('"').to_string());
        } else {
            tail.push(line.clone());
            if tail.len() > 5 {
                tail.remove(0);
            }
        }
        println!("  pg | {line}");
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let errs = err_thread.join().unwrap_or_default();
    if !status.success() || rows.is_empty() {
        let why = skip
            .or_else(|| errs.last().cloned())
            .or_else(|| tail.last().cloned())
            .unwrap_or_else(|| format!("the script exited with {status}"));
        return Err(why);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_result_line() {
        let line = "PG_RESULT mode=batched clients=64 batch=100 duration_s=10 requests=500 \
                    requests_per_s=50.5 transfers_per_s=5050.0 avg_ms=1.5 p50_ms=1.2 \
                    p99_ms=3.5 p999_ms=9.0 max_ms=12.0 failed=0 commits_per_fsync=7.5 \
                    fsyncs=100 fsync_avg_ms=0.250 fs=ext4 version=15.18";
        let r = row(&script_fields(line)).expect("a row");
        assert_eq!(r.mode, Mode::Batched);
        assert_eq!(r.system, "PostgreSQL 15.18");
        assert_eq!(r.transfers_per_s, 5050.0);
        assert_eq!(r.p99_us, 3500.0);
        assert_eq!(r.per_fsync, Some((7.5, 7.5)));
        assert!(r.note.contains("250 us on ext4"), "{}", r.note);
        assert!(row(&script_fields("PG_RESULT mode=nonsense")).is_none());
    }
}
