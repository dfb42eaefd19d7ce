//! Compiles `proto/sweep.proto` with protox (pure Rust: no `protoc` needed), generates
//! the prost messages and tonic services from the descriptors, and writes the encoded
//! descriptors to `$OUT_DIR/gradsweep_descriptor.bin` for server reflection.

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/sweep.proto");
    let descriptors = protox::compile(["sweep.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("gradsweep_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
