//! Helpers shared by the black-box tests that drive the real `tradelog` binary.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `tradelog ARGS` against `server`: (exit code, stdout, stderr).
pub fn tl(server: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tradelog"))
        .args(args)
        .env("TRADELOG_SERVER", server)
        .env_remove("TRADELOG_PRINCIPAL")
        .env_remove("TRADELOG_AUTHORITY")
        .output()
        .expect("run tradelog");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tradelog ARGS` that must succeed: its stdout.
pub fn ok(server: &str, args: &[&str]) -> String {
    let (code, out, err) = tl(server, args);
    assert_eq!(code, 0, "tradelog {args:?}\nstdout: {out}\nstderr: {err}");
    out
}

/// `... --json` that must succeed: the parsed document.
pub fn json(server: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(server, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// How long [`Tail::until`] waits for a line.
const TAIL_WAIT: Duration = Duration::from_secs(60);

/// A running `tradelog events tail`: its stdout lines arrive on a channel.
pub struct Tail {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Tail {
    /// `tradelog events tail ARGS` against `server`.
    pub fn start(server: &str, args: &[&str]) -> Tail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tradelog"))
            .args(["events", "tail"])
            .args(args)
            .env("TRADELOG_SERVER", server)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tradelog events tail");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Tail {
            child,
            lines,
            seen: vec![],
        }
    }

    /// Reads lines until one contains `needle`; returns everything read so far.
    pub fn until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TAIL_WAIT;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "events tail never printed {needle:?} (exited: {:?}); it printed:\n{}",
                    self.child.try_wait(),
                    self.seen.join("\n")
                ),
            }
        }
        self.seen.join("\n") + "\n"
    }

    /// Stops it with SIGINT (Ctrl-C), as a user does: it must exit 0.
    #[allow(dead_code)]
    pub fn interrupt(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "events tail: {status}");
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
