//! A fake `AgentService` for tests of the parent side (worker, CLI, bench).
//!
//! The fake stands in for the enclave agents only — "sealing" is opaque bytes with a counter, no cryptography. Its
//! behaviour is selected by the workflow id so one fake serves many scenarios at once:
//! - contains `-tamper3-`: `Process` of step 3 answers DATA_LOSS (tampered envelope);
//! - contains `-flaky-`: every `Process` answers UNAVAILABLE for its first 2 attempts;
//! - contains `-refuse-LABEL-`: every `Process` refuses with the [`Refusal`] of that label
//!   (see [`refusing_workflow_id`]).
//!
//! It opens no inputs (a sealed input is passed through unread), and `Reveal` answers the
//! envelope's step sealed to [`fake_owner_key`], so owner-side code is exercised for real.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use enclavemesh_proto::Refusal;
use enclavemesh_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use enclavemesh_proto::v1::*;
use enclavemesh_transport::Address;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use enclavemesh_workflow::types::envelope_sha256_hex;

/// The owner key fake agents seal `Reveal` results to (fixed: tests open them with it).
pub fn fake_owner_key() -> enclavemesh_sealing::owner::OwnerKeyPair {
    enclavemesh_sealing::owner::OwnerKeyPair::from_secret(&[0x42; 32]).expect("a 32-byte X25519 key")
}

#[derive(Default)]
pub struct FakeAgent {
    pub name: &'static str,
    counter: Mutex<u64>,
    /// Process calls per (workflow_id, expected_step).
    calls: Mutex<HashMap<(String, u64), u32>>,
}

impl FakeAgent {
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self { name, ..Default::default() })
    }

    /// Number of `Process` calls seen for (workflow, expected_step).
    pub fn calls(&self, wf: &str, expected_step: u64) -> u32 {
        self.calls.lock().expect("fake agent").get(&(wf.to_string(), expected_step)).copied().unwrap_or(0)
    }

    fn seal(&self, workflow_id: &str, step: u64) -> (SealedEnvelope, StepSummary) {
        let n = {
            let mut c = self.counter.lock().expect("fake agent");
            *c += 1;
            *c
        };
        let env = SealedEnvelope {
            format_version: 1,
            key_id: "fake-key".into(),
            key_version: 1,
            workflow_id: workflow_id.into(),
            step,
            agent: self.name.into(),
            nonce: n.to_be_bytes()[..].repeat(2)[..12].to_vec(),
            ciphertext: format!("sealed:{}:{step}:{n}", self.name).into_bytes(),
        };
        let summary = StepSummary {
            workflow_id: workflow_id.into(),
            step,
            agent: self.name.into(),
            key_version: 1,
            envelope_sha256: hex::decode(envelope_sha256_hex(&env)).expect("fake agent"),
            ciphertext_len: env.ciphertext.len() as u32,
        };
        (env, summary)
    }
}

/// A workflow id that makes the fake refuse every `Process` with `kind`.
pub fn refusing_workflow_id(kind: Refusal, run: &str) -> String {
    format!("wf-refuse-{}-{run}", kind.label())
}

/// The refusal a `-refuse-LABEL-` workflow id asks for.
fn refusal_in(workflow_id: &str) -> Option<Refusal> {
    let rest = workflow_id.split("-refuse-").nth(1)?;
    let label = rest.split('-').next()?;
    Refusal::from_label(label)
}

/// tonic service wrapper (the trait is foreign, so it needs a local type).
pub struct Svc(pub Arc<FakeAgent>);

#[tonic::async_trait]
impl AgentService for Svc {
    async fn init(&self, req: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let r = req.into_inner();
        let (state, summary) = self.0.seal(&r.workflow_id, 0);
        Ok(Response::new(InitResponse { state: Some(state), summary: Some(summary) }))
    }

    async fn process(&self, req: Request<ProcessRequest>) -> Result<Response<ProcessResponse>, Status> {
        let r = req.into_inner();
        let attempt = {
            let mut calls = self.0.calls.lock().expect("fake agent");
            let c = calls.entry((r.workflow_id.clone(), r.expected_step)).or_default();
            *c += 1;
            *c
        };
        let state = r.state.ok_or_else(|| Refusal::InvalidRequest.status("missing state"))?;
        if r.workflow_id.contains("-flaky-") && attempt <= 2 {
            return Err(Status::unavailable(format!("fake agent restarting (attempt {attempt})")));
        }
        if let Some(kind) = refusal_in(&r.workflow_id) {
            return Err(kind.status(format!("refused on purpose as {kind}")));
        }
        if r.workflow_id.contains("-tamper3-") && r.expected_step == 2 {
            return Err(Refusal::EnvelopeTampered.status("envelope authentication failed (fake tamper)"));
        }
        if !state.ciphertext.starts_with(b"sealed:") {
            return Err(Refusal::EnvelopeTampered.status("envelope authentication failed"));
        }
        if state.workflow_id != r.workflow_id || state.step != r.expected_step {
            return Err(Refusal::EnvelopeReplayed.status("workflow/step mismatch"));
        }
        let (state, summary) = self.0.seal(&r.workflow_id, r.expected_step + 1);
        Ok(Response::new(ProcessResponse { state: Some(state), summary: Some(summary) }))
    }

    async fn attest(&self, _: Request<AttestRequest>) -> Result<Response<AttestResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn reveal(&self, req: Request<RevealRequest>) -> Result<Response<RevealResponse>, Status> {
        let r = req.into_inner();
        let field = r.field();
        let state = r.state.ok_or_else(|| Refusal::InvalidRequest.status("missing state"))?;
        let result = enclavemesh_sealing::owner::seal_result(
            fake_owner_key().public(),
            &r.workflow_id,
            state.step,
            field.as_str_name(),
            state.step.to_string().as_bytes(),
        )
        .map_err(|e| Refusal::Internal.status(e.to_string()))?;
        Ok(Response::new(RevealResponse {
            field: r.field,
            field_name: field.as_str_name().to_string(),
            result: Some(result),
        }))
    }

    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(DescribeResponse { agent: self.0.name.into(), mode: "fake".into(), ..Default::default() }))
    }

    async fn audit_log(&self, _: Request<AuditLogRequest>) -> Result<Response<AuditLogResponse>, Status> {
        Err(Status::unimplemented("the fake agent keeps no audit trail"))
    }
}

/// Serves `agent` on a unix socket at `path` (tokio task); returns its address.
pub fn serve_fake(agent: Arc<FakeAgent>, path: PathBuf) -> Address {
    let listener = UnixListener::bind(&path).expect("fake agent");
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(Svc(agent)))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await
            .expect("fake agent");
    });
    format!("unix://{}", path.display()).parse().expect("fake agent")
}

/// A sealed input for workflows run on fake agents: they never open it, so any KMS-shaped
/// bytes do (the worker checks only that it is a `SealedInput`).
pub fn opaque_sealed_input_b64() -> String {
    use base64::Engine;
    use prost::Message;
    let sealed = SealedInput { sealed: Some(sealed_input::Sealed::KmsCiphertext(vec![0xa5; 64])) };
    base64::engine::general_purpose::STANDARD.encode(sealed.encode_to_vec())
}
