//! Compiles the gRPC contract with protox, a pure-Rust protobuf compiler, so
//! building secretd needs no system `protoc`.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/secretd/v1/broker.proto", "proto/secretd/v1/admin.proto", "proto/secretd/v1/access.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // The descriptor set also feeds gRPC server reflection.
    std::fs::write(out_dir.join("secretd_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure().bytes(".secretd.v1").compile_fds(descriptors)?;
    Ok(())
}
