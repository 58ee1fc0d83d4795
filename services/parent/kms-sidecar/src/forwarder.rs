//! The KmsForwarder gRPC service: agent configuration, credentials, and tunnels.

use enclavemesh_proto::v1::kms_forwarder_server::KmsForwarder;
use enclavemesh_proto::v1::{
    AgentConfigRequest, AgentConfigResponse, CredentialsRequest, CredentialsResponse, TunnelFrame,
};
use tonic::{Request, Response, Status, Streaming};

use crate::agent_config::AgentDirectory;
use crate::credentials::CredentialSource;
use crate::tunnel::{FrameStream, Tunnels};

/// Holds no key material and forms no KMS request: it hands out what the parent has
/// (role, TSK ciphertext, its credentials) and carries bytes.
pub struct Forwarder {
    pub agents: AgentDirectory,
    pub credentials: CredentialSource,
    pub tunnels: Tunnels,
}

/// The caller's address (its vsock CID in production), never anything it claims.
fn peer<T>(request: &Request<T>) -> Option<enclavemesh_transport::Address> {
    request.extensions().get::<enclavemesh_transport::ConnInfo>().and_then(|i| i.peer.clone())
}

#[tonic::async_trait]
impl KmsForwarder for Forwarder {
    async fn get_agent_config(
        &self,
        request: Request<AgentConfigRequest>,
    ) -> Result<Response<AgentConfigResponse>, Status> {
        self.agents.config_for(peer(&request).as_ref()).map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(op = "GetCredentials", outcome))]
    async fn get_credentials(
        &self,
        _request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let result = self.credentials.current().await;
        tracing::Span::current().record("outcome", if result.is_ok() { "ok" } else { "error" });
        result.map(Response::new)
    }

    type TunnelStream = FrameStream;

    #[tracing::instrument(skip_all, fields(op = "Tunnel"))]
    async fn tunnel(&self, request: Request<Streaming<TunnelFrame>>) -> Result<Response<FrameStream>, Status> {
        let result = self.tunnels.open(request.into_inner()).await;
        enclavemesh_telemetry::metrics::kms_call("Tunnel", if result.is_ok() { "ok" } else { "refused" });
        result.map(Response::new)
    }
}
