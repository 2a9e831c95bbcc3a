//! The integration tests of `tradelog-storage`, one test binary for the crate: each
//! module is one file of `tests/` (one binary links and builds once, not once per file).

mod common;
mod conformance;
mod file_log;
mod garbage;
mod model;
