//! Helpers shared by the black-box tests that drive the real `tradelog` binary.

use serde_json::Value;
use std::process::Command;

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
