//! Domain types of tradelog: identifiers, money newtypes, catalog entries (assets, markets),
//! the commands a shard accepts, the events it emits, the messages shards exchange, and the
//! stable [`RejectCode`]s of every business rejection, and the [`routing`] of a command to
//! its shard (shared by the engine and the client, which sends a command to its shard's
//! leader).
//!
//! Owns: the vocabulary every other crate speaks, plus the integer money arithmetic that
//! must agree bit for bit between shards (notional, fees, holds).
//!
//! Must never depend on: any other tradelog crate, I/O, clocks, randomness, threads, floats.
//! Everything here is plain data and pure functions.

#![forbid(unsafe_code)]

pub mod audit;
mod command;
mod event;
pub mod jobs;
mod limits;
mod market;
mod message;
mod money;
mod reject;
pub mod routing;

pub use command::*;
pub use event::*;
pub use limits::*;
pub use market::*;
pub use message::*;
pub use money::*;
pub use reject::*;
