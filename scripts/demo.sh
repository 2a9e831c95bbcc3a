#!/usr/bin/env bash
# The tradelog main job (for now): build release and run `tradelog demo`,
# passing on any arguments. Works from any directory.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$script_dir/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tradelog-target}"
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_TERM_COLOR=never
fi

cargo build --release --locked --bin tradelog
exec cargo run --release --locked --bin tradelog -- demo "$@"
