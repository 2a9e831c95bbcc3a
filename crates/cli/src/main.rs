//! `tradelog`: the command-line tool.
//!
//! Owns: argument parsing and output (aligned tables for people, `--json` for scripts):
//! the in-process demo, the benchmarks, the server (`serve`), offline verification and
//! replay of a data directory (`verify`, `replay`), distributed audits (`audit`, through
//! `tradelog-audit`), and the client commands (`account`, `asset`, `market`, `order`,
//! `book`, `trades`, `candles`, `catalog`, `events`, `export`) that talk to a
//! server through the `tradelog-client` crate. One module per command group.
//!
//! Must never contain business logic: everything it shows comes from the engine's events
//! and state, through the client or the node crate.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// mimalloc instead of the system allocator: the server's request path allocates and frees
// per request on every tokio worker (docs/design/0003, the allocator row).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// `println!` and `print!` for the whole crate (they shadow the standard ones): the same
// output, but a closed stdout pipe (`tradelog events read --json | head`) ends the process
// quietly, with status 141 as a SIGPIPE would, instead of a panic.
macro_rules! println {
    () => {
        $crate::output::write_stdout(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*), true)
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*), false)
    };
}

mod account;
mod admin;
mod asset;
mod audit;
mod bench;
mod book;
mod cluster;
mod demo;
mod events;
mod export;
mod market;
mod order;
mod output;
mod remote;
mod replay;
mod serve;
mod verify;

/// tradelog: an event-sourced, sharded trading core (ledger + matching engine).
#[derive(Parser)]
#[command(
    name = "tradelog",
    version,
    about = "tradelog: an event-sourced, sharded trading core (ledger + matching engine).",
    long_about = None,
    after_help = "A first session (the server keeps its data in ./tradelog-data):\n  \
        tradelog serve &\n  \
        tradelog asset create 1 USD 2\n  \
        tradelog account open 7 --owner 7\n  \
        tradelog account deposit 7 USD 12345 --id 1\n  \
        tradelog account balances 7\n  \
        tradelog events tail --stream account:7     # Ctrl-C to stop\n\n\
        Amounts, prices and quantities are integers in minor units (USD scale 2: 12345 = \
        123.45 USD).\n\
        Exit status: 0 done; 1 rejected by the engine (the code is printed) or not found; \
        2 bad usage or a malformed request; 3 server unreachable, stopping or overloaded \
        (retry; retries with the same ids are safe); 4 an audit (`tradelog audit`) found a \
        fault; 141 the reader of stdout went away (`tradelog ... | head`)."
)]
struct Cli {
    #[command(flatten)]
    global: remote::Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the server: every shard embedded, durable logs in --data-dir, gRPC and HTTP.
    Serve(serve::Args),
    /// Accounts and money: open, deposit, withdraw, transfer, balances, orders, statement.
    #[command(subcommand)]
    Account(account::Cmd),
    /// Assets of the catalog: create.
    #[command(subcommand)]
    Asset(asset::Cmd),
    /// Markets: create, halt, resume.
    #[command(subcommand)]
    Market(market::Cmd),
    /// Orders: place, cancel, amend, get.
    #[command(subcommand)]
    Order(order::Cmd),
    /// Shows a market's order book: aggregated price levels, best prices in the middle.
    Book(book::BookArgs),
    /// Lists a market's trades (fills), oldest first, over a time range.
    Trades(book::TradesArgs),
    /// OHLCV candles of a market's trades: open, high, low, close, volume per interval.
    Candles(book::CandlesArgs),
    /// Lists every asset and market.
    Catalog(asset::CatalogArgs),
    /// Events: read a stream's history, or tail it live.
    #[command(subcommand)]
    Events(events::Cmd),
    /// Export: the event history as Parquet files for DuckDB, Spark, Trino, DataFusion.
    #[command(subcommand)]
    Export(export::Cmd),
    /// Rebuilds each shard of a stopped node offline from its log: events and state hash.
    Replay(replay::Args),
    /// Checks a stopped node's data directory offline: checksums, hash chain, snapshots.
    Verify(verify::Args),
    /// Runs a short trading session on in-process shards and checks every invariant.
    Demo(demo::Args),
    /// Measures the engine in-process, and the durable node against PostgreSQL.
    Bench(bench::Args),
    /// The replicated cluster: status (leaders, terms, indexes, lag) and membership changes.
    #[command(subcommand)]
    Admin(admin::Cmd),
    /// Distributed audits of every shard: solvency at a consistent cut, trial balance, replay.
    #[command(subcommand)]
    Audit(audit::Cmd),
    /// A local multi-process cluster on loopback for development and demos.
    #[command(subcommand)]
    Cluster(cluster::Cmd),
}

fn main() -> ExitCode {
    let Cli { global, command } = Cli::parse();
    let result = match command {
        Cmd::Serve(a) => serve::run(a),
        Cmd::Admin(c) => admin::run(c, &global),
        Cmd::Audit(c) => audit::run(c, &global),
        Cmd::Cluster(c) => cluster::run(c),
        Cmd::Account(c) => account::run(c, &global),
        Cmd::Asset(c) => asset::run(c, &global),
        Cmd::Market(c) => market::run(c, &global),
        Cmd::Order(c) => order::run(c, &global),
        Cmd::Book(a) => book::book(a, &global),
        Cmd::Trades(a) => book::trades(a, &global),
        Cmd::Candles(a) => book::candles(a, &global),
        Cmd::Catalog(a) => asset::catalog(a, &global),
        Cmd::Events(c) => events::run(c, &global),
        Cmd::Export(c) => export::run(c, &global),
        Cmd::Replay(a) => replay::run(a, &global),
        Cmd::Verify(a) => verify::run(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Bench(a) => bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(remote::report_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command a user can run has a one-line about and examples in its after-help;
    /// groups have a one-line about.
    #[test]
    fn every_command_teaches_with_an_about_line_and_examples() {
        fn walk(c: &clap::Command, path: &str, leaves: &mut Vec<String>) {
            for s in c.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", s.get_name());
                let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
                assert!(
                    !about.is_empty() && !about.contains('\n'),
                    "`{path}` needs a one-line about, has {about:?}"
                );
                if s.has_subcommands() {
                    walk(s, &path, leaves);
                } else {
                    let after = s
                        .get_after_help()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    assert!(
                        after.contains("Examples:\n  tradelog"),
                        "`{path}` needs examples in its after_help"
                    );
                    leaves.push(path);
                }
            }
        }
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut leaves = vec![];
        walk(&cli, "tradelog", &mut leaves);
        assert_eq!(
            leaves,
            [
                "tradelog serve",
                "tradelog account open",
                "tradelog account deposit",
                "tradelog account withdraw",
                "tradelog account transfer",
                "tradelog account balances",
                "tradelog account orders",
                "tradelog account statement",
                "tradelog account history",
                "tradelog asset create",
                "tradelog market create",
                "tradelog market halt",
                "tradelog market resume",
                "tradelog order place",
                "tradelog order cancel",
                "tradelog order amend",
                "tradelog order get",
                "tradelog book",
                "tradelog trades",
                "tradelog candles",
                "tradelog catalog",
                "tradelog events read",
                "tradelog events tail",
                "tradelog export parquet",
                "tradelog replay",
                "tradelog verify",
                "tradelog demo",
                "tradelog bench",
                "tradelog admin status",
                "tradelog admin add-node",
                "tradelog admin remove-node",
                "tradelog admin transfer-leader",
                "tradelog admin move-shard",
                "tradelog admin set-replication-factor",
                "tradelog admin split-shard",
                "tradelog admin balance-leaders",
                "tradelog admin plan",
                "tradelog audit solvency",
                "tradelog audit trial-balance",
                "tradelog audit verify",
                "tradelog audit statements",
                "tradelog audit vwap",
                "tradelog audit ohlcv",
                "tradelog cluster up",
                "tradelog cluster down",
            ]
        );
    }

    #[test]
    fn streams_parse_or_say_what_is_expected() {
        use tradelog_client::EventStream;
        use tradelog_domain as d;
        assert_eq!(events::parse_stream("all"), Ok(EventStream::All));
        assert_eq!(
            events::parse_stream("account:7"),
            Ok(EventStream::Account(d::AccountId(7)))
        );
        assert_eq!(
            events::parse_stream("market:1"),
            Ok(EventStream::Market(d::MarketId(1)))
        );
        assert_eq!(
            events::parse_stream("order:281474976710657"),
            Ok(EventStream::Order(d::OrderId(281_474_976_710_657)))
        );
        for bad in [
            "",
            "account",
            "account:0",
            "market:99999999999",
            "trade:1",
            "all:1",
        ] {
            assert_eq!(
                events::parse_stream(bad),
                Err(format!(
                    "{bad:?}: expected all, account:ID, market:ID or order:ID (ID non-zero)"
                ))
            );
        }
    }
}
