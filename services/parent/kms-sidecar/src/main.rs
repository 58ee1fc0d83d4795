use clap::Parser;
use kms_sidecar::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = enclavemesh_telemetry::init("kms-sidecar");
    let cfg = Config::parse();
    let listener = enclavemesh_transport::bind(&cfg.listen).await?;
    tracing::info!(
        listen = %listener.local_addr(),
        region = %cfg.region,
        allow = ?cfg.allow,
        connect_to = ?cfg.connect_to,
        "kms-sidecar serving KmsForwarder (tunnel, credentials, agent config)"
    );
    kms_sidecar::serve(&cfg, listener, enclavemesh_transport::shutdown_signal()).await?;
    tracing::info!("kms-sidecar stopped");
    Ok(())
}
