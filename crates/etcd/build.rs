//! Compiles this crate's subset of etcd's v3 API, `proto/etcd/{mvccpb,etcdserverpb}/*.proto`,
//! with protox (no `protoc` needed) and generates the prost messages and the tonic client of
//! the `etcdserverpb.KV` service (no server: etcd is the server).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("proto");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    let fds = protox::compile(["etcd/etcdserverpb/rpc.proto"], [&proto_root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
