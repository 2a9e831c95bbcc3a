//! Tests of the wire API: round trips, validation errors, fuzzing, and the published
//! schema itself (reject codes, documentation, one RPC per command).

mod descriptor;
mod fuzz;
mod roundtrip;
mod strategies;
mod validation;
