//! `kms-emulator` binary: flags -> config, serve until Ctrl-C / SIGTERM.

use anyhow::Context;
use clap::Parser;
use kms_emulator::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Keep the guard alive for the whole run (it flushes telemetry on drop).
    let _telemetry = enclavemesh_telemetry::init("kms-emulator");
    let cfg = Config::parse();
    let listen = cfg.listen;
    let em_cfg = cfg.into_emulator_config().context("kms-emulator configuration")?;
    tracing::info!(
        %listen,
        state_file = ?em_cfg.state_file,
        audit_log = ?em_cfg.audit_log,
        attestation_root = %em_cfg.trust_anchor.describe(),
        region = %em_cfg.region,
        account_id = %em_cfg.account_id,
        allow_debug_attestation = em_cfg.allow_debug_attestation,
        "kms-emulator starting"
    );
    if em_cfg.trust_anchor.is_unsigned() {
        tracing::warn!(
            "attestation trust: qemu-unsigned TEST MODE: Recipient documents from QEMU's nitro-enclave machine are \
             accepted WITHOUT signature or chain (anyone can forge one); PCRs, nonce, freshness and debug mode are \
             still checked. Never use this outside tests."
        );
    }
    let em = kms_emulator::build(em_cfg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (port in use? pass --listen)"))?;
    tracing::info!(addr = %listener.local_addr()?, "kms-emulator listening");
    kms_emulator::serve_on(listener, em, enclavemesh_transport::shutdown_signal()).await?;
    tracing::info!("kms-emulator stopped");
    Ok(())
}
