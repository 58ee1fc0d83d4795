//! `vsock-bridge`: thin wrapper around [`vsock_bridge::run`].

use anyhow::Context;
use clap::Parser;
use vsock_bridge::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Held for the whole run: dropping it flushes and stops the exporter.
    let _telemetry = enclavemesh_telemetry::init("vsock-bridge");
    let bridge = config.bridge_config();
    bridge.validate()?;
    let listener = enclavemesh_transport::bind(&config.listen)
        .await
        .with_context(|| format!("vsock-bridge cannot start on {}", config.listen))?;
    tracing::info!(
        listen = %listener.local_addr(),
        target = %bridge.target,
        max_connections = bridge.max_connections,
        idle_timeout_secs = config.idle_timeout_secs,
        "vsock-bridge listening"
    );
    let stats = vsock_bridge::run(bridge, listener, enclavemesh_transport::shutdown_signal()).await?;
    tracing::info!(?stats, "vsock-bridge stopped");
    Ok(())
}
