//! The parent's kms-sidecar, as the agent sees it.
//!
//! The sidecar runs on the untrusted parent. Nothing it answers is believed without a
//! check: its agent configuration is validated ([`crate::settings`]); its tunnel carries
//! TLS the enclave terminates ([`crate::kms`]); the credentials it hands out only decide
//! which principal KMS sees.

use enclavemesh_proto::v1::kms_forwarder_client::KmsForwarderClient;
use enclavemesh_transport::{Address, TransportError};
use tonic::transport::Channel;

/// The sidecar client: every call gets a client span and carries `traceparent`.
pub type SidecarClient = KmsForwarderClient<enclavemesh_telemetry::GrpcTrace<Channel>>;

/// A lazy channel to the sidecar (nothing is dialled until the first call).
pub fn client(addr: &Address) -> Result<SidecarClient, TransportError> {
    Ok(KmsForwarderClient::new(enclavemesh_telemetry::traced_channel(addr)?))
}
