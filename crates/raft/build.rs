//! Compiles the internal node-to-node transport, `proto/tradelog/raft/v1/raft.proto` (in
//! this crate), with protox (no `protoc` needed) and generates the prost messages and the
//! tonic client and server.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("proto");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    let fds = protox::compile(["tradelog/raft/v1/raft.proto"], [&proto_root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
