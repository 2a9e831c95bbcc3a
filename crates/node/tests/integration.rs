//! The integration tests of `tradelog-node`, one test binary for the crate: each
//! module is one file of `tests/` (one binary links and builds once, not once per file).

mod crash;
mod history;
mod node;
mod recovery;
