//! Compiles `proto/enclavemesh/v1/*.proto` with protox (pure Rust), so no system
//! `protoc` is needed on a fresh machine, and writes the descriptor set that server
//! reflection serves.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../proto");
    let dir = root.join("enclavemesh/v1");
    println!("cargo:rerun-if-changed={}", dir.display());
    // Every contract in the directory, in a fixed order (the descriptor set is reproducible).
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|x| x == "proto"));
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("enclavemesh_descriptor.bin"), fds.encode_to_vec())?;
    // Plaintext inputs and the ledger example's state are wiped on drop (the agent SDK
    // requires `Zeroize` of a role's Input and State).
    let mut build = tonic_prost_build::configure().build_server(true).build_client(true);
    for m in ["WorkflowInput", "LedgerInput", "LedgerState", "StepRecord"] {
        build = build.message_attribute(format!(".enclavemesh.v1.{m}"), "#[derive(zeroize::Zeroize)]");
    }
    build.compile_fds(fds)?;
    Ok(())
}
