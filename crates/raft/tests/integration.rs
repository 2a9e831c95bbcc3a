//! The integration tests of `tradelog-raft`, one test binary for the crate: each
//! module is one file of `tests/` (one binary links and builds once, not once per file).

mod cluster;
mod common;
mod log_store;
mod metadata;
mod openraft_suite;
mod simulation;
mod state_machine;
