#!/usr/bin/env bash
# The tradelog test command: the read-only gate `cargo xtask verify`
# (fmt check, clippy -D warnings, tests, docs). Works from any directory.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"

die() {
    echo "test.sh: error: $*" >&2
    exit 1
}

# (a) Toolchain pieces: cargo, rustfmt, clippy.
command -v cargo >/dev/null 2>&1 \
    || die "cargo not found on PATH; install Rust from https://rustup.rs"
cargo --version >/dev/null 2>&1 || die "\`cargo --version\` failed"

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "test.sh: rustfmt and/or clippy missing; running \`rustup component add rustfmt clippy\`" >&2
    command -v rustup >/dev/null 2>&1 \
        || die "rustfmt/clippy are missing and rustup is not available to install them"
    # Run from the repo root so a rust-toolchain file there, if any, picks the toolchain.
    (cd "$repo_root" && rustup component add rustfmt clippy) \
        || die "\`rustup component add rustfmt clippy\` failed; install rustfmt and clippy for this toolchain"
    (cd "$repo_root" && cargo fmt --version >/dev/null 2>&1) \
        || die "\`cargo fmt\` still does not work after installing rustfmt"
    (cd "$repo_root" && cargo clippy --version >/dev/null 2>&1) \
        || die "\`cargo clippy\` still does not work after installing clippy"
fi

# (b) A target directory outside the checkout, so CI on a fresh clone reuses artifacts.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tradelog-target}"

# (b2) No incremental compilation: a fresh clone's build cannot reuse another checkout's
# incremental state anyway, and it cost 23 GB of the cache (debug/incremental), which
# filled the disk mid-run on 2026-11-27. Full builds of the workspace crates share the
# cache with developers' `CARGO_INCREMENTAL=0` builds instead.
export CARGO_INCREMENTAL=0

# (c) No colour escapes in CI logs. PROPTEST_CASES is left to the tests.
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_TERM_COLOR=never
fi

# (d) A temp directory of this run's own: every test's temp files go under it (tests use
# TMPDIR), and it is removed at the end whatever happened, so a test killed for hanging
# (nextest ends it after 5 minutes, .config/nextest.toml) leaves nothing behind.
run_tmp="$(mktemp -d "${TMPDIR:-/tmp}/tradelog-test.XXXXXX")" \
    || die "cannot create a temp directory under ${TMPDIR:-/tmp}"
trap 'rm -rf "$run_tmp"' EXIT
export TMPDIR="$run_tmp"

# (e) The gate.
cd "$repo_root"
cargo xtask verify
