//! Compiles `proto/tradelog/v1/*.proto` (at the repository root) with protox, a pure-Rust
//! protobuf compiler (no `protoc` binary needed), then generates the prost messages and
//! the tonic client and server from the resulting `FileDescriptorSet`. The encoded set is
//! written next to the generated code for gRPC reflection.

use prost::Message;
use std::path::PathBuf;

/// The .proto files of the published API, relative to the `proto/` include root.
const PROTOS: &[&str] = &[
    "tradelog/v1/audit.proto",
    "tradelog/v1/common.proto",
    "tradelog/v1/commands.proto",
    "tradelog/v1/events.proto",
    "tradelog/v1/queries.proto",
    "tradelog/v1/tradelog.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let proto_root = manifest_dir.join("..").join("..").join("proto");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    // `compile` keeps source info (comments become rustdoc) and includes the imports.
    let fds = protox::compile(PROTOS, [&proto_root])?;
    std::fs::write(out_dir.join("tradelog_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
