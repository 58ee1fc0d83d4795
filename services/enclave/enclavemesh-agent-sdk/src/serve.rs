//! What the agent serves: AgentService (behind the audit layer), gRPC health and server
//! reflection, on the one hardened server (`enclavemesh-server`).

use std::future::Future;

use enclavemesh_proto::v1::agent_service_server::AgentServiceServer;
use enclavemesh_server::{GrpcServer, ServerError};
use enclavemesh_transport::Listener;

use crate::audit::Audited;
use crate::role::Role;
use crate::settings::Settings;

/// Services the agent serves, and so the only ones reflection lists: the shared proto
/// file also describes `KmsForwarder`, which `grpcurl list` would otherwise show as if
/// the agent answered it.
pub const SERVED_SERVICES: [&str; 4] = [
    enclavemesh_proto::v1::agent_service_server::SERVICE_NAME,
    tonic_health::pb::health_server::SERVICE_NAME,
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Why the agent could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Reflection over the contracts, advertising [`SERVED_SERVICES`] only. The refusal
/// details' types (google.rpc.Status) are registered too, so grpcurl can print them.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    SERVED_SERVICES.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(enclavemesh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |b, name| b.with_service_name(*name),
    )
}

/// Serves `service` with health and reflection on `listener` until `shutdown`.
pub async fn serve<R: Role>(
    service: Audited<R>,
    settings: &Settings,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<AgentServiceServer<Audited<R>>>().await;
    let agent_service = AgentServiceServer::new(service)
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(settings.max_message_bytes);
    GrpcServer::new(settings.hardening)
        .add_service(agent_service)
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .serve(listener, shutdown)
        .await?;
    Ok(())
}
