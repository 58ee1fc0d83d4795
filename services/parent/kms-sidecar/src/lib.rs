//! The parent's side of an enclave's KMS access: a Tunnel that carries bytes to an
//! allowlisted KMS endpoint, this host's AWS credentials, and each enclave's role.
//!
//! The same code runs in production (real KMS, credentials from IMDSv2) and in dev
//! (`--connect-to` the kms-emulator): only configuration differs.

pub mod agent_config;
pub mod config;
mod credentials;
mod forwarder;
pub mod kms_error;
mod tunnel;

pub use config::Config;
use enclavemesh_proto::v1::kms_forwarder_server::KmsForwarderServer;
use enclavemesh_server::{GrpcServer, Hardening};
use std::future::Future;

/// Why the sidecar could not serve.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Serve(#[from] enclavemesh_server::ServerError),
}

/// Serves KmsForwarder on `listener` until `shutdown` resolves, on the one hardened
/// server (`enclavemesh-server`): the enclave, and anything on the host that reaches
/// the sidecar's port, gets the same preface deadline and limits as the agent's callers.
pub async fn serve(
    cfg: &Config,
    listener: enclavemesh_transport::Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SidecarError> {
    let tunnels = tunnel::Tunnels::new(cfg.tunnel_settings().map_err(SidecarError::Config)?);
    let forwarder = forwarder::Forwarder {
        agents: cfg.agent_directory(),
        credentials: credentials::CredentialSource::from_environment(&cfg.region).await,
        tunnels,
    };
    let service = KmsForwarderServer::new(forwarder).max_decoding_message_size(tunnel::MAX_FRAME_BYTES + 1024);
    // A tunnel lives as long as its TLS connection: no per-request deadline for streams,
    // which the idle timeout bounds instead.
    let hardening = Hardening { request_timeout: std::time::Duration::from_secs(24 * 3600), ..Hardening::default() };
    GrpcServer::new(hardening).add_service(service).serve(listener, shutdown).await?;
    Ok(())
}
