//! The integration tests of `tradelog-client`, one test binary for the crate: each
//! module is one file of `tests/` (one binary links and builds once, not once per file).

mod client;
mod cluster_membership;
mod cluster_partial;
mod stale_reads;
