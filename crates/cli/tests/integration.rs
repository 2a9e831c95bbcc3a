//! The integration tests of `tradelog-cli`, one test binary for the crate: each
//! module is one file of `tests/` (one binary links and builds once, not once per file).

mod bench_durable;
mod bench_etcd;
mod cli;
mod client_cli;
mod cluster_kill;
mod cluster_partial;
mod cluster_up;
mod common;
mod serve;
