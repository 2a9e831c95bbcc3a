//! `tradelog`: the command-line tool.
//!
//! Owns: argument parsing and human-readable output: the in-process demo, the benchmarks,
//! the server (`serve`) and offline verification of a data directory (`verify`). Client
//! commands (accounts, orders, events tail) come next.
//!
//! Must never contain business logic: everything it shows comes from the engine's events
//! and state.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod serve;
mod verify;

/// tradelog: an event-sourced, sharded trading core (ledger + matching engine).
#[derive(Parser)]
#[command(name = "tradelog", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a short trading session on an in-process cluster of shards and prints every
    /// event, the trades, the book and the final balances, then checks every invariant.
    Demo(demo::Args),
    /// Measures the engine in-process on one core: transfers/s, orders/s, latency
    /// percentiles, memory per resting order.
    Bench(bench::Args),
    /// Serves the gRPC and HTTP APIs over a durable node with every shard embedded, until
    /// SIGINT or SIGTERM (development preview: no authentication).
    Serve(serve::Args),
    /// Checks a stopped node's data directory offline, read only: every log record's
    /// checksum and the hash chain, then replays each shard's whole history and checks
    /// that it reproduces every snapshot's state hash. Reports the first bad record
    /// precisely and exits 1 if anything is wrong.
    Verify(verify::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Demo(a) => demo::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Serve(a) => serve::run(a),
        Cmd::Verify(a) => verify::run(a),
    }
}
