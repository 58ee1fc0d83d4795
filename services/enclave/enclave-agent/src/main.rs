use clap::Parser;
use enclave_agent::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Measure { binary, signing_cert }) => {
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe()?,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&enclave_agent::measurements_json(&binary, signing_cert.as_deref())?)?
            );
            Ok(())
        }
        None => {
            let _telemetry = enclavemesh_telemetry::init("enclave-agent");
            let result = enclave_agent::run(cli.serve, enclavemesh_transport::shutdown_signal()).await;
            if let Err(e) = &result {
                tracing::error!("{e}");
            }
            Ok(result?)
        }
    }
}
