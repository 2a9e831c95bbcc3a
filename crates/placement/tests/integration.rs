//! The integration tests of `tradelog-placement`, one test binary for the crate: each
//! module is one file of `tests/` (one binary links and builds once, not once per file).

mod map;
mod properties;
