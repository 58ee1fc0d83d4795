//! Compiles `proto/screening.proto` with protox (no system protoc), deriving `Zeroize`
//! on every message: the agent SDK wipes a role's input and state on drop.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/screening.proto");
    let fds = protox::compile(["proto/screening.proto"], ["proto"])?;
    prost_build::Config::new().message_attribute(".", "#[derive(zeroize::Zeroize)]").compile_fds(fds)?;
    Ok(())
}
