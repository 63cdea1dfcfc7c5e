//! Generates the gRPC baseline's client and server from `proto/echo.proto`
//! with the protoc shipped in `protoc-bin-vendored`: the build needs no
//! system protobuf compiler.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/echo.proto"],
        &["proto"],
    )?;
    Ok(())
}
