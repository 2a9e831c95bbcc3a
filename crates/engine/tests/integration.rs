//! The integration tests of `tradelog-engine`, one test binary for the crate: each
//! module is one file of `tests/` (one binary links and builds once, not once per file).

mod common;
mod cross_shard;
mod determinism;
