use clap::Parser;
use kms_sidecar::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = enclavemesh_telemetry::init("kms-sidecar");
    let cfg = Config::parse();
    let listener = enclavemesh_transport::bind(&cfg.listen).await?;
    tracing::info!(listen = %listener.local_addr(), kms_endpoint = ?cfg.kms_endpoint, "kms-sidecar serving \
        KmsForwarder");
    kms_sidecar::serve(&cfg, listener, enclavemesh_transport::shutdown_signal()).await?;
    tracing::info!("kms-sidecar stopped");
    Ok(())
}
