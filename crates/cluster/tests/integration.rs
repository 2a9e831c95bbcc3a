//! The integration tests of `tradelog-cluster`, one test binary for the crate: each
//! module is one file of `tests/` (one binary links and builds once, not once per file).

mod common;
mod history;
mod metadata;
mod split;
