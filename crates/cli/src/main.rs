//! `tradelog`: the command-line tool.
//!
//! Owns: argument parsing and human-readable output. Today it runs an in-process demo of a
//! sharded exchange and the engine benchmark; the server, client and cluster commands come
//! with the durable node.
//!
//! Must never contain business logic: everything it shows comes from the engine's events
//! and state.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod demo;

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
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Demo(a) => demo::run(a),
        Cmd::Bench(a) => bench::run(a),
    }
}
