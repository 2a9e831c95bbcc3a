//! Build and test gate of the tradelog workspace.
//!
//! Run it as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! * `verify` is the one read-only gate: formatting check, clippy, tests and
//!   docs, stopping at the first failing step. It never modifies files.
//! * `fix` is the only command that rewrites files: `cargo fmt` and
//!   `cargo clippy --fix`.
//!
//! Std-only on purpose: the gate must build without fetching anything.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: cargo xtask <COMMAND>

Commands:
  verify    Read-only gate; stops at the first failing step:
              1. cargo fmt --all -- --check
              2. cargo clippy --workspace --all-targets --locked -- -D warnings
              3. cargo test --workspace --doc --locked (doctests)
              4. cargo nextest run --workspace --locked (no tests = failure)
                 (or `cargo test --workspace --all-targets --locked`
                 without cargo-nextest)
              5. RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps --locked
  fix       Rewrite files: cargo fmt --all, then
            cargo clippy --fix --allow-dirty --allow-staged --workspace --all-targets,
            then cargo fmt --all again (clippy's fixes may need reformatting)
  help      Print this text

CARGO_TARGET_DIR is passed through unchanged (left unset if it is unset).
";

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let command = args.next();
    let rest: Vec<OsString> = args.collect();

    let Some(command) = command else {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    };

    let run: fn(&Gate) -> Result<(), Failure> = match command.to_str() {
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("verify") => verify,
        Some("fix") => fix,
        _ => {
            eprintln!("xtask: unknown command `{}`\n", command.to_string_lossy());
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    if !rest.is_empty() {
        let rest: Vec<_> = rest.iter().map(|a| a.to_string_lossy()).collect();
        eprintln!(
            "xtask: `{}` takes no arguments (got: {})\n",
            command.to_string_lossy(),
            rest.join(" ")
        );
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }

    let gate = Gate::new();
    let started = Instant::now();
    match run(&gate) {
        Ok(()) => {
            eprintln!(
                "xtask: `{}` passed in {}",
                command.to_string_lossy(),
                Secs(started.elapsed())
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!(
                "\nxtask: `{}` FAILED at step `{}`: {} (after {})",
                command.to_string_lossy(),
                failure.step,
                failure.reason,
                Secs(started.elapsed())
            );
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask verify`: the read-only gate.
fn verify(gate: &Gate) -> Result<(), Failure> {
    let use_nextest = gate.has_nextest();
    let total = 5;
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };

    gate.step(
        next(),
        total,
        "fmt",
        gate.cargo(&["fmt", "--all", "--", "--check"]),
    )?;
    gate.step(
        next(),
        total,
        "clippy",
        gate.cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // Doctests first: the suite's closing summary line must be the main test run's, not
    // the doctests' (which may legitimately run none).
    gate.step(
        next(),
        total,
        "doctest",
        gate.cargo(&["test", "--workspace", "--doc", "--locked"]),
    )?;
    if use_nextest {
        let mut nextest = gate.cargo(&["nextest", "run", "--workspace", "--locked"]);
        // A workspace without tests is a failure of the gate, whatever the caller's
        // nextest configuration says.
        nextest.env("NEXTEST_NO_TESTS", "fail");
        gate.step(next(), total, "test (nextest)", nextest)?;
    } else {
        gate.step(
            next(),
            total,
            "test",
            gate.cargo(&["test", "--workspace", "--all-targets", "--locked"]),
        )?;
    }
    let mut doc = gate.cargo(&["doc", "--workspace", "--no-deps", "--locked"]);
    doc.env("RUSTDOCFLAGS", rustdocflags_deny_warnings());
    gate.step(next(), total, "doc", doc)?;
    Ok(())
}

/// `cargo xtask fix`: the only command that rewrites files.
fn fix(gate: &Gate) -> Result<(), Failure> {
    gate.step(1, 3, "fmt", gate.cargo(&["fmt", "--all"]))?;
    gate.step(
        2,
        3,
        "clippy --fix",
        gate.cargo(&[
            "clippy",
            "--fix",
            "--allow-dirty",
            "--allow-staged",
            "--workspace",
            "--all-targets",
        ]),
    )?;
    gate.step(
        3,
        3,
        "fmt (after clippy --fix)",
        gate.cargo(&["fmt", "--all"]),
    )?;
    Ok(())
}

/// `RUSTDOCFLAGS` for the doc step: the caller's flags plus `-D warnings`.
fn rustdocflags_deny_warnings() -> OsString {
    match env::var_os("RUSTDOCFLAGS") {
        Some(existing) if !existing.is_empty() => {
            let mut flags = existing;
            flags.push(" -D warnings");
            flags
        }
        _ => OsString::from("-D warnings"),
    }
}

struct Gate {
    cargo: OsString,
    root: PathBuf,
}

struct Failure {
    step: String,
    reason: String,
}

impl Gate {
    fn new() -> Self {
        // `cargo run` sets CARGO to the cargo binary that is running us, so the
        // steps use the same toolchain; fall back to PATH.
        let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        Gate {
            cargo,
            root: workspace_root(),
        }
    }

    /// A `cargo` command with the given arguments, run from the workspace root.
    fn cargo(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.args(args).current_dir(&self.root);
        cmd
    }

    /// Whether `cargo nextest --version` works.
    fn has_nextest(&self) -> bool {
        self.cargo(&["nextest", "--version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs one step, printing its name and duration; `Err` if it failed.
    fn step(&self, n: usize, total: usize, name: &str, mut cmd: Command) -> Result<(), Failure> {
        eprintln!("\n==> [{n}/{total}] {name}: {}", display(&cmd));
        let started = Instant::now();
        let result = cmd.stdin(Stdio::null()).status();
        let took = Secs(started.elapsed());
        let failure = |reason: String| Failure {
            step: name.to_owned(),
            reason,
        };
        match result {
            Ok(status) if status.success() => {
                eprintln!("<== [{n}/{total}] {name}: ok ({took})");
                Ok(())
            }
            Ok(status) => {
                eprintln!(
                    "<== [{n}/{total}] {name}: FAILED, {} ({took})",
                    Status(status)
                );
                Err(failure(format!("`{}` {}", display(&cmd), Status(status))))
            }
            Err(err) => {
                eprintln!("<== [{n}/{total}] {name}: FAILED to start ({took})");
                Err(failure(format!(
                    "could not run `{}`: {err}",
                    self.cargo.to_string_lossy()
                )))
            }
        }
    }
}

/// The workspace root: the parent of this package's directory.
fn workspace_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR at run time too; prefer it over the
    // compile-time value so a binary built in a shared target directory for
    // another checkout still works on this one.
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    );
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// `cargo fmt --all -- --check`, with `RUSTDOCFLAGS=...` etc. in front when set.
fn display(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            v.map(|v| format!("{}=\"{}\"", k.to_string_lossy(), v.to_string_lossy()))
        })
        .collect();
    parts.push("cargo".to_owned());
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}s", self.0.as_secs_f64())
    }
}

struct Status(ExitStatus);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.code() {
            Some(code) => write!(f, "exited with code {code}"),
            None => write!(f, "was terminated by a signal ({})", self.0),
        }
    }
}
