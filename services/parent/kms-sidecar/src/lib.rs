//! KMS-forwarding sidecar for the parent instance.
//!
//! The same code runs in production (real KMS, credentials from IMDSv2) and in dev
//! (the kms-emulator via endpoint override): only configuration differs.

pub mod agent_config;
pub mod config;
pub mod forwarder;
pub mod kms_error;

pub use config::Config;
use enclavemesh_proto::v1::kms_forwarder_server::KmsForwarderServer;
use enclavemesh_server::{GrpcServer, Hardening};
use std::future::Future;
use std::time::Duration;

/// Builds the KMS client from the standard AWS chain plus the config's overrides.
pub async fn kms_client(cfg: &Config) -> aws_sdk_kms::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(Duration::from_millis(cfg.kms_timeout_ms))
            .connect_timeout(Duration::from_secs(3))
            .build(),
    );
    if let Some(region) = &cfg.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &cfg.kms_endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    aws_sdk_kms::Client::new(&loader.load().await)
}

/// Serves KmsForwarder on `listener` until `shutdown` resolves, on the one hardened
/// server (`enclavemesh-server`): the enclave, and anything on the host that reaches
/// the sidecar's port, gets the same preface deadline and limits as the agent's callers.
pub async fn serve(
    cfg: &Config,
    listener: enclavemesh_transport::Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), enclavemesh_server::ServerError> {
    let client = kms_client(cfg).await;
    let endpoint = cfg.kms_endpoint.clone().unwrap_or_else(|| "the AWS KMS regional endpoint".to_string());
    let service =
        KmsForwarderServer::new(forwarder::Forwarder::new(client, endpoint).with_agents(cfg.agent_directory()))
            .max_decoding_message_size(64 * 1024);
    let hardening =
        Hardening { request_timeout: Duration::from_millis(cfg.kms_timeout_ms + 2_000), ..Hardening::default() };
    GrpcServer::new(hardening).add_service(service).serve(listener, shutdown).await
}
