//! The bare tonic reference for the hop: a plain `tonic::transport::Server` with no
//! layers, whose `Process` answers with the state it was sent (step + 1) and a summary,
//! so its request and response are the agent's sizes. No crypto, no decoding bounds, no
//! tracing, no audit: what is left is tonic and h2 moving the same bytes. Comparing the
//! agent's `Process` with this one, in the same rounds, is "Process against bare tonic
//! unary" for the very messages a hop carries.

use enclavemesh_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use enclavemesh_proto::v1::*;
use enclavemesh_transport::Address;
use tonic::{Request, Response, Status};

struct Mirror;

#[tonic::async_trait]
impl AgentService for Mirror {
    async fn init(&self, _: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        Err(Status::unimplemented("mirror: Process and Describe only"))
    }
    async fn process(&self, req: Request<ProcessRequest>) -> Result<Response<ProcessResponse>, Status> {
        let r = req.into_inner();
        let mut state = r.state.ok_or_else(|| Status::invalid_argument("missing state"))?;
        state.step = r.expected_step + 1;
        let summary = StepSummary {
            workflow_id: r.workflow_id,
            step: state.step,
            agent: state.agent.clone(),
            key_version: state.key_version,
            envelope_sha256: vec![0x5a; 32],
            ciphertext_len: u32::try_from(state.ciphertext.len()).unwrap_or(u32::MAX),
        };
        Ok(Response::new(ProcessResponse { state: Some(state), summary: Some(summary) }))
    }
    async fn attest(&self, _: Request<AttestRequest>) -> Result<Response<AttestResponse>, Status> {
        Err(Status::unimplemented("mirror"))
    }
    async fn reveal(&self, _: Request<RevealRequest>) -> Result<Response<RevealResponse>, Status> {
        Err(Status::unimplemented("mirror"))
    }
    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(DescribeResponse::default()))
    }
    async fn audit_log(&self, _: Request<AuditLogRequest>) -> Result<Response<AuditLogResponse>, Status> {
        Err(Status::unimplemented("mirror"))
    }
}

/// Serves the mirror on `listen` until killed (multi-thread runtime, like the agent).
pub fn serve(listen: &Address) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = enclavemesh_transport::bind(listen).await?;
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(Mirror))
            .serve_with_incoming(listener.into_incoming())
            .await?;
        Ok(())
    })
}
