//! The plaintext reference agent: the worker testkit's fake `AgentService` (opaque
//! bytes + a counter, no cryptography, no attestation) served as its own process on a
//! transport address, like a real agent. Same gRPC stack and message shapes, so the
//! difference to a real agent is exactly the enclave-side work.

use enclavemesh_harness::fake_agent::{FakeAgent, Svc};
use enclavemesh_proto::v1::agent_service_server::AgentServiceServer;
use enclavemesh_transport::Address;

pub fn serve(listen: &Address, name: String) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        // The fake wants a 'static name; one per process.
        let name: &'static str = Box::leak(name.into_boxed_str());
        let listener = enclavemesh_transport::bind(listen).await?;
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(Svc(FakeAgent::new(name))))
            .serve_with_incoming(listener.into_incoming())
            .await?;
        Ok(())
    })
}
