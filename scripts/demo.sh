#!/usr/bin/env bash
# The tradelog main job: build release and run `tradelog cluster up --demo-secs 10`
# (3 nodes by default), passing on any arguments. Works from any directory.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$script_dir/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tradelog-target}"
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_TERM_COLOR=never
fi

cargo build --release --locked --bin tradelog
# A 3-node replicated cluster on loopback with a demo load; serves until Ctrl-C.
exec "$CARGO_TARGET_DIR/release/tradelog" cluster up --demo-secs 10 "$@"
