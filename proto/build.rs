//! Compiles `proto/sweep.proto` with protox (pure Rust: no `protoc` needed) and
//! generates the prost messages and tonic services from the descriptors.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/sweep.proto");
    let descriptors = protox::compile(["sweep.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
