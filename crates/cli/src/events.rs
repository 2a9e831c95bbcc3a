//! `tradelog events read|tail`: a stream's events, read to the end or followed live.

use crate::output;
use crate::remote::{self, Global};
use anyhow::{anyhow, Result};
use serde_json::json;
use tokio_stream::StreamExt;
use tradelog_client::{
    format_position, parse_position, Client, ClientError, EventStream, Position,
};
use tradelog_domain as d;

const STREAM_HELP: &str = "Streams: all (every event), account:ID (balances, transfers, its \
    orders' holds and settlements, rejections of its commands), market:ID (orders, trades, \
    halts), order:ID (one order's life on its account's and its market's shard).\n\
    Positions: SHARD:SEQ,... = the last event consumed per shard (printed by `events read`; \
    unlisted shards: from their start). The whole history is readable: the server keeps \
    recent events in memory and regenerates older ones from the logs.\n\
    On a cluster whose nodes hold only some shards, each shard is read from a node holding \
    it and the parts are merged; `tail` follows a shard that moves to other nodes.";

/// Events: read a stream's history, or follow it live.
#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Prints a stream's events after a position, to the end of the stream so far, then
    /// the position to continue from.
    #[command(after_help = format!("{STREAM_HELP}\n\nExamples:\n  \
        tradelog events read\n  \
        tradelog events read --stream account:7 --limit 20\n  \
        tradelog events read --stream market:1 --after 0:40,1:12 --json"))]
    Read {
        /// Which events: all, account:ID, market:ID or order:ID.
        #[arg(long, default_value = "all", value_parser = parse_stream)]
        stream: EventStream,
        /// Start after this position (SHARD:SEQ,...; default: the beginning).
        #[arg(long, value_parser = parse_after)]
        after: Option<Position>,
        /// Print at most this many events.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Prints a stream's events after a position, then follows it live (no gap, no
    /// duplicate across the switch) until Ctrl-C.
    #[command(after_help = format!("{STREAM_HELP}\n\nWith --json: one event per line.\n\n\
        Examples:\n  tradelog events tail\n  tradelog events tail --stream market:1\n  \
        tradelog events tail --stream order:281474976710657 --json\n  \
        tradelog events tail --after 0:40,1:12   # resume where a read stopped"))]
    Tail {
        /// Which events: all, account:ID, market:ID or order:ID.
        #[arg(long, default_value = "all", value_parser = parse_stream)]
        stream: EventStream,
        /// Start after this position (SHARD:SEQ,...; default: the beginning).
        #[arg(long, value_parser = parse_after)]
        after: Option<Position>,
    },
}

/// `all`, `account:ID`, `market:ID` or `order:ID`.
pub fn parse_stream(s: &str) -> Result<EventStream, String> {
    let bad = || format!("{s:?}: expected all, account:ID, market:ID or order:ID (ID non-zero)");
    if s == "all" {
        return Ok(EventStream::All);
    }
    let (kind, id) = s.split_once(':').ok_or_else(bad)?;
    let id: u64 = id.parse().map_err(|_| bad())?;
    if id == 0 {
        return Err(bad());
    }
    match kind {
        "account" => Ok(EventStream::Account(d::AccountId(id))),
        "market" => Ok(EventStream::Market(d::MarketId(
            u32::try_from(id).map_err(|_| bad())?,
        ))),
        "order" => Ok(EventStream::Order(d::OrderId(id))),
        _ => Err(bad()),
    }
}

pub fn parse_after(s: &str) -> Result<Position, String> {
    parse_position(s)
}

/// Reads `stream` after `after` to the end of the stream so far (or `max` events),
/// page by page; returns the events and the position after them.
pub async fn read_to_end(
    c: &Client,
    stream: EventStream,
    mut after: Position,
    max: Option<usize>,
) -> Result<(Vec<d::EventRecord>, Position)> {
    let mut out = Vec::new();
    loop {
        let room = max.map(|m| m - out.len()).unwrap_or(usize::MAX);
        if room == 0 {
            return Ok((out, after));
        }
        let limit = room.min(tradelog_api::READ_EVENTS_LIMIT_MAX as usize) as u32;
        let page = c.read_events(stream, &after, limit).await?;
        // An empty page that did not move is the end.
        if page.events.is_empty() && same_position(&page.position, &after) {
            return Ok((out, after));
        }
        out.extend(page.events);
        after = page.position;
    }
}

/// Equal positions (a shard not listed is at 0).
pub(crate) fn same_position(a: &Position, b: &Position) -> bool {
    a.0.keys().chain(b.0.keys()).all(|s| a.get(*s) == b.get(*s))
}

pub fn run(cmd: Cmd, g: &Global) -> Result<()> {
    remote::run(g, |ctx| async move {
        match cmd {
            Cmd::Read {
                stream,
                after,
                limit,
            } => {
                let after = after.unwrap_or_default();
                let (events, position) = read_to_end(&ctx.client, stream, after, limit).await?;
                if ctx.json {
                    output::json(&json!({
                        "events": events,
                        "position": format_position(&position),
                    }));
                } else {
                    for e in &events {
                        println!("{}", output::event_line(e));
                    }
                    println!(
                        "({} events; position {}: continue with --after {})",
                        events.len(),
                        format_position(&position),
                        format_position(&position)
                    );
                }
                Ok(())
            }
            Cmd::Tail { stream, after } => {
                let mut sub = ctx
                    .client
                    .subscribe(stream, after.unwrap_or_default())
                    .await?;
                let mut resumed = 0;
                let ctrl_c = tokio::signal::ctrl_c();
                tokio::pin!(ctrl_c);
                loop {
                    tokio::select! {
                        _ = &mut ctrl_c => {
                            eprintln!(
                                "stopped at position {} (resume with --after {})",
                                format_position(sub.position()),
                                format_position(sub.position())
                            );
                            return Ok(());
                        }
                        page = sub.next() => match page {
                            Some(Ok(page)) => {
                                // A shard moved off the node serving it (a cluster whose
                                // nodes hold only some shards): the subscription went on
                                // by itself from its position, where the shard is now.
                                if sub.resumed() > resumed {
                                    resumed = sub.resumed();
                                    eprintln!(
                                        "(a shard moved; following on from {})",
                                        sub.endpoint()
                                    );
                                }
                                for e in &page.events {
                                    if ctx.json {
                                        output::json_line(e);
                                    } else {
                                        println!("{}", output::event_line(e));
                                    }
                                }
                            }
                            Some(Err(e)) => return Err(e.into()),
                            None => {
                                return Err(anyhow!(ClientError::Unavailable {
                                    endpoint: ctx.client.endpoint().to_owned(),
                                    message: format!(
                                        "the server ended the event stream (shutting down?); \
                                         resume with --after {}",
                                        format_position(sub.position())
                                    ),
                                }))
                            }
                        }
                    }
                }
            }
        }
    })
}
