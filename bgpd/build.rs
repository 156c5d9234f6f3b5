//! Compiles the GoBGP-compatible API protos (v3 `apipb`, v4 `api`) into Rust with tonic + prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_protos(
        &["proto/gobgp_v3.proto", "proto/gobgp_v4.proto"],
        &["proto"],
    )?;
    Ok(())
}
