//! The published wire API of tradelog: the protobuf messages and the gRPC service of
//! `proto/tradelog/v1/*.proto` (generated with prost and tonic), and the exact, validated
//! conversions between them and the domain types of `tradelog-domain`. REST/JSON will
//! mirror the same messages.
//!
//! Owns: the wire format (field numbers, names, units, enum numbers) and every conversion
//! across it. [`RejectCode`](proto::RejectCode) numbers are the domain's stable codes,
//! unchanged (a test checks both directions, number and name).
//!
//! Must never depend on: the engine, the ledger, the matching engine, storage, Raft, or
//! the network runtime beyond the generated tonic client and server traits (no I/O, no
//! clocks, no tokio here). A server builds on it; it builds on nothing but the domain.
//!
//! # Conversions
//!
//! * Domain to wire is total: `impl From<domain::X> for proto::X` for everything a server
//!   sends (events, event records, outcomes, catalog entries) and for commands (what a
//!   Rust client sends).
//! * Wire to domain is checked: `impl TryFrom<proto::X> for domain::X` returns an
//!   [`ApiError`] naming the offending field path (`commands[2].place_order.side`) and a
//!   typed [`Reason`]. It never panics, whatever the input.
//!
//! # What is validated here, and what is not
//!
//! A request is rejected here (gRPC `INVALID_ARGUMENT`, nothing recorded) when it is not
//! a well-formed command:
//!
//! * a required message field or oneof is unset, or an enum is `*_UNSPECIFIED` (except
//!   `stp`, which defaults to cancel-resting): [`Reason::Missing`];
//! * an enum holds a number the API does not define: [`Reason::UnknownEnumValue`];
//! * an account, transfer, order, asset or market id of a command or query is zero (zero
//!   is never a valid id; the owner principal may be 0, the system): [`Reason::Zero`];
//! * an asset code is empty or longer than [`ASSET_CODE_LEN_MAX`](tradelog_domain::ASSET_CODE_LEN_MAX)
//!   bytes, a linked batch or a command batch is empty or longer than
//!   [`LINKED_BATCH_LEN_MAX`](tradelog_domain::LINKED_BATCH_LEN_MAX) /
//!   [`COMMAND_BATCH_LEN_MAX`]: [`Reason::Empty`], [`Reason::TooLong`], [`Reason::TooMany`];
//! * a number the domain type cannot hold (asset scale above 255) or above a query limit,
//!   a shard at or above [`SHARD_COUNT_MAX`](tradelog_domain::SHARD_COUNT_MAX):
//!   [`Reason::TooLarge`]; a shard listed twice in a position: [`Reason::Duplicate`]; a
//!   time range that ends before it starts: [`Reason::InvalidRange`].
//!
//! Business rules stay with the engine, which answers them with a stable
//! [`RejectCode`](tradelog_domain::RejectCode) and records the rejection, identically for
//! every interface (gRPC, REST, FIX) and on replay: zero or too large amounts, prices off
//! the tick, quantities off the lot, fee and collar limits, asset code characters and
//! scale limit, pending timeouts, debit == credit, ownership.
//!
//! Events are server output: their conversion checks the shape only (required oneofs,
//! known enum values) and takes ids as recorded.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
mod convert;
mod error;
mod events;
pub mod query;

pub use convert::{reject_code_name, reject_code_to_wire};
pub use error::{ApiError, Reason};

/// The generated messages, enums and gRPC client/server of package `tradelog.v1`
/// (documentation comes from the .proto comments; units are in every field's doc).
// Generated code: its lints are prost's and tonic's to fix, not ours (it is lint-clean
// today; the allow keeps a toolchain or codegen upgrade from breaking the gate).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/tradelog.v1.rs"));
}

/// The encoded `google.protobuf.FileDescriptorSet` of every .proto file of the API
/// (comments included), for gRPC server reflection and schema tooling.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tradelog_descriptor.bin"));

/// Largest number of commands in one `CommandBatch`: the same as the largest linked
/// batch, so one batch request is never longer than the longest single command.
pub const COMMAND_BATCH_LEN_MAX: usize = tradelog_domain::LINKED_BATCH_LEN_MAX;
/// Events per `ReadEvents` page when the request says 0.
pub const READ_EVENTS_LIMIT_DEFAULT: u32 = 1_000;
/// Largest `ReadEventsRequest.limit`.
pub const READ_EVENTS_LIMIT_MAX: u32 = 10_000;
/// Points per `GetBalanceHistory` page when the request says 0.
pub const BALANCE_HISTORY_LIMIT_DEFAULT: u32 = 1_000;
/// Largest `GetBalanceHistoryRequest.limit`.
pub const BALANCE_HISTORY_LIMIT_MAX: u32 = 10_000;
/// Price levels per side of `GetBook` when the request says 0.
pub const BOOK_DEPTH_DEFAULT: u32 = 20;
/// Largest `GetBookRequest.depth`.
pub const BOOK_DEPTH_MAX: u32 = 1_000;
/// Trades per `GetTrades` page when the request says 0.
pub const TRADES_LIMIT_DEFAULT: u32 = 1_000;
/// Largest `GetTradesRequest.limit`.
pub const TRADES_LIMIT_MAX: u32 = 10_000;
/// Longest candle of `GetCandles`, in seconds (one day); the shortest is one second.
pub const CANDLE_INTERVAL_S_MAX: u32 = 86_400;
/// Most intervals one `GetCandles` range may span.
pub const CANDLES_MAX: u64 = 10_000;
/// Entries per `GetStatement` page when the request says 0.
pub const STATEMENT_LIMIT_DEFAULT: u32 = 1_000;
/// Largest `GetStatementRequest.limit`.
pub const STATEMENT_LIMIT_MAX: u32 = 10_000;

#[cfg(test)]
mod tests;
