//! The integration tests of `tradelog-server`, one test binary for the crate: each
//! module is one file of `tests/` (one binary links and builds once, not once per file).

mod cluster;
mod openapi;
mod queries;
mod server;
