//! AgentService: the only door into the enclave.
//!
//! Every handler follows the same shape: check the request (sizes, ids), open the
//! input envelope against the expected workflow and step, run the agent logic on
//! [`PlainState`] (wiped on drop), seal the output. Only envelopes and non-secret
//! summaries leave; `Reveal` is the deliberate, named exception.

use crate::enclave::EnclaveIdentity;
use crate::logic::{AgentLogic, InitParams, PlainState};
use crate::status;
use enclavemesh_proto::v1::agent_service_server::AgentService;
use enclavemesh_proto::v1::kms_forwarder_client::KmsForwarderClient;
use enclavemesh_proto::v1::*;
use enclavemesh_sealing::{Expectation, KeyRing, Limits, SealHeader};
use std::sync::Arc;
use tonic::transport::Channel;
use tracing::field::Empty;
use tonic::{Request, Response, Status};

/// Largest workflow id accepted.
pub const MAX_WORKFLOW_ID_BYTES: usize = 256;
/// Largest nonce / user_data accepted by Attest (the NSM takes up to 1024).
pub const MAX_ATTEST_FIELD_BYTES: usize = 512;
/// Largest KMS-encrypted note accepted by Init (KMS blobs are at most 6144 bytes).
pub const MAX_NOTE_BLOB_BYTES: usize = 6144;

/// The sidecar client: every call gets a client span and carries `traceparent`.
pub type SidecarClient = KmsForwarderClient<enclavemesh_telemetry::GrpcClientTrace<Channel>>;

pub struct Agent {
    pub name: String,
    pub mode: &'static str,
    pub ring: Arc<KeyRing>,
    pub identity: Arc<EnclaveIdentity>,
    pub logic: Box<dyn AgentLogic>,
    pub limits: Limits,
    pub sidecar: SidecarClient,
    pub sidecar_addr: String,
    /// Tamper-evident record of every call, written by [`crate::audited::Audited`].
    pub audit: Arc<enclavemesh_audit::AuditTrail>,
}

fn check_workflow_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("workflow_id is required"));
    }
    if id.len() > MAX_WORKFLOW_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "workflow_id is {} bytes; the limit is {MAX_WORKFLOW_ID_BYTES}",
            id.len()
        )));
    }
    Ok(())
}

impl Agent {
    fn open(&self, workflow_id: &str, expected_step: u64, env: Option<&SealedEnvelope>) -> Result<PlainState, Status> {
        check_workflow_id(workflow_id)?;
        let env = env.ok_or_else(|| Status::invalid_argument("state envelope is missing"))?;
        let expect = Expectation { workflow_id: workflow_id.to_string(), step: expected_step };
        let plain = enclavemesh_sealing::open(&self.ring, env, &expect, &self.limits).map_err(|e| {
            tracing::warn!(kind = e.kind(), "envelope refused");
            tracing::Span::current().record("open_failure", e.kind());
            enclavemesh_telemetry::metrics::open_failure(e.kind());
            status::open_error(&e)
        })?;
        let state: AgentState = enclavemesh_proto::decode_bounded(&plain, self.limits.max_ciphertext_bytes)
            .map_err(|e| status::decode_error("sealed state", e))?;
        let state = PlainState(state);
        // The AAD already binds these; checking the inner copy too catches a
        // state sealed by a buggy agent under the wrong header.
        if state.0.workflow_id != workflow_id || state.0.step != expected_step {
            return Err(Status::data_loss("sealed state disagrees with its envelope header"));
        }
        Ok(state)
    }

    fn seal(&self, state: &PlainState) -> Result<(SealedEnvelope, StepSummary), Status> {
        let header = SealHeader { workflow_id: state.0.workflow_id.clone(), step: state.0.step, agent: self.name.clone() };
        let plain = state.encode();
        let env = enclavemesh_sealing::seal(&self.ring, &header, &plain)
            .map_err(|e| Status::internal(format!("sealing failed: {e}")))?;
        let summary = StepSummary {
            workflow_id: env.workflow_id.clone(),
            step: env.step,
            agent: env.agent.clone(),
            key_version: env.key_version,
            envelope_sha256: enclavemesh_sealing::envelope_sha256(&env).to_vec(),
            ciphertext_len: env.ciphertext.len() as u32,
        };
        Ok((env, summary))
    }

    /// Reveal's body: opens the envelope and returns the one named field.
    fn reveal_inner(&self, req: RevealRequest) -> Result<Response<RevealResponse>, Status> {
        let state = self.open(&req.workflow_id, req.expected_step, req.state.as_ref())?;
        let s = &state.0;
        let value = match req.field.as_str() {
            "balance" => s.balance.to_string(),
            "step" => s.step.to_string(),
            "rate_bps" => s.rate_bps.to_string(),
            "history_digest" => hex::encode(&s.history_digest),
            "secret_note" => s.secret_note.clone(),
            "history" => s
                .history
                .iter()
                .map(|r| format!("{}:{}:{}->{}", r.step, r.agent, r.balance_before, r.balance_after))
                .collect::<Vec<_>>()
                .join(","),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown field {other:?}; one of balance, step, rate_bps, history_digest, secret_note, history"
                )));
            }
        };
        tracing::info!("field revealed on explicit request");
        Ok(Response::new(RevealResponse { field: req.field, value }))
    }

    /// Decrypts the caller's KMS-encrypted note through the sidecar, as Recipient.
    async fn decrypt_note(&self, blob: &[u8]) -> Result<String, Status> {
        if blob.is_empty() {
            return Ok(String::new());
        }
        if blob.len() > MAX_NOTE_BLOB_BYTES {
            return Err(Status::invalid_argument(format!(
                "kms_encrypted_note is {} bytes; KMS ciphertexts are at most {MAX_NOTE_BLOB_BYTES}",
                blob.len()
            )));
        }
        let doc = self
            .identity
            .attest_for_kms()
            .map_err(|e| Status::unavailable(format!("attestation failed: {e}")))?;
        let resp = self
            .sidecar
            .clone()
            .decrypt(ForwardDecryptRequest {
                ciphertext_blob: blob.to_vec(),
                key_id: String::new(),
                attestation_document: doc,
            })
            .await
            .map_err(|s| Status::new(s.code(), format!("decrypting kms_encrypted_note via the kms-sidecar at {}: {}", self.sidecar_addr, s.message())))?;
        let plain = self
            .identity
            .key
            .unwrap(&resp.into_inner().ciphertext_for_recipient)
            .map_err(|e| Status::internal(format!("cannot open KMS's answer for the note: {e}")))?;
        String::from_utf8(plain.to_vec()).map_err(|_| Status::invalid_argument("kms_encrypted_note is not UTF-8 text"))
    }
}

/// Records on the current handler span how the call ended: `outcome` (`ok` / `error`)
/// and, for errors, `error.kind` (the gRPC code in snake case). Codes and kinds only:
/// status messages stay out of the span.
fn finish<T>(result: Result<T, Status>) -> Result<T, Status> {
    let span = tracing::Span::current();
    match &result {
        Ok(_) => {
            span.record("outcome", "ok");
        }
        Err(s) => {
            span.record("outcome", "error");
            span.record("error.kind", code_kind(s.code()));
        }
    }
    result
}

fn code_kind(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// Non-secret facts about a sealed result, recorded on the handler span.
fn record_sealed(summary: &StepSummary) {
    let span = tracing::Span::current();
    // i64: OpenTelemetry has no unsigned ints (tracing-opentelemetry would stringify u64).
    span.record("key_version", i64::from(summary.key_version));
    span.record("out_bytes", i64::from(summary.ciphertext_len));
}

// Per-call success lines are `debug`: at `info` the formatted line cost ~50 µs of a
// ~200 µs hop (BENCHMARKS.md). The handler span (exported over OTLP) and the audit
// record carry the same facts; refusals still log at `warn`.
#[tonic::async_trait]
impl AgentService for Agent {
    #[tracing::instrument(skip_all, fields(rpc = "Init", agent = %self.name, workflow_id = %request.get_ref().workflow_id,
        step = 0_i64, note_bytes = request.get_ref().kms_encrypted_note.len() as i64, key_version = Empty, out_bytes = Empty,
        outcome = Empty, error.kind = Empty))]
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        finish(async {
            let req = request.into_inner();
            check_workflow_id(&req.workflow_id)?;
            let note = self.decrypt_note(&req.kms_encrypted_note).await?;
            let state = self.logic.init(&self.name, InitParams::from_request(&req, note)).map_err(status::logic_error)?;
            let (env, summary) = self.seal(&state)?;
            record_sealed(&summary);
            tracing::debug!(step = summary.step, key_version = summary.key_version, bytes = summary.ciphertext_len, "state created and sealed");
            Ok(Response::new(InitResponse { state: Some(env), summary: Some(summary) }))
        }
        .await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "Process", agent = %self.name, workflow_id = %request.get_ref().workflow_id,
        step = request.get_ref().expected_step as i64,
        in_key_version = request.get_ref().state.as_ref().map(|e| i64::from(e.key_version)),
        in_bytes = request.get_ref().state.as_ref().map(|e| e.ciphertext.len() as i64),
        key_version = Empty, out_bytes = Empty, open_failure = Empty, outcome = Empty, error.kind = Empty))]
    async fn process(&self, request: Request<ProcessRequest>) -> Result<Response<ProcessResponse>, Status> {
        finish(async {
            let req = request.into_inner();
            let state = self.open(&req.workflow_id, req.expected_step, req.state.as_ref())?;
            let state = self.logic.process(&self.name, state).map_err(status::logic_error)?;
            let (env, summary) = self.seal(&state)?;
            record_sealed(&summary);
            tracing::debug!(out_step = summary.step, key_version = summary.key_version, bytes = summary.ciphertext_len, "state processed and sealed");
            Ok(Response::new(ProcessResponse { state: Some(env), summary: Some(summary) }))
        }
        .await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "Attest", agent = %self.name))]
    async fn attest(&self, request: Request<AttestRequest>) -> Result<Response<AttestResponse>, Status> {
        let req = request.into_inner();
        for (what, v) in [("nonce", &req.nonce), ("user_data", &req.user_data)] {
            if v.len() > MAX_ATTEST_FIELD_BYTES {
                return Err(Status::invalid_argument(format!(
                    "{what} is {} bytes; the limit is {MAX_ATTEST_FIELD_BYTES}",
                    v.len()
                )));
            }
        }
        let opt = |v: &Vec<u8>| if v.is_empty() { None } else { Some(v.clone()) };
        let (nonce, user_data) = (opt(&req.nonce), opt(&req.user_data));
        let doc = self
            .identity
            .nsm
            .attestation(user_data.as_deref(), nonce.as_deref(), Some(self.identity.key.public_key_der()))
            .map_err(|e| Status::unavailable(format!("NSM attestation failed: {e}")))?;
        Ok(Response::new(AttestResponse { attestation_document: doc }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Reveal", agent = %self.name, workflow_id = %request.get_ref().workflow_id,
        field = %request.get_ref().field, step = request.get_ref().expected_step as i64, open_failure = Empty, outcome = Empty,
        error.kind = Empty))]
    async fn reveal(&self, request: Request<RevealRequest>) -> Result<Response<RevealResponse>, Status> {
        finish(self.reveal_inner(request.into_inner()))
    }

    async fn audit_log(&self, request: Request<AuditLogRequest>) -> Result<Response<AuditLogResponse>, Status> {
        Ok(Response::new(crate::audited::audit_log_page(&self.audit, request.get_ref())))
    }

    async fn describe(&self, _request: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(DescribeResponse {
            agent: self.name.clone(),
            mode: self.mode.to_string(),
            key_id: self.ring.key_id().to_string(),
            key_versions: self.ring.versions(),
            pcr0_hex: self.identity.pcr0_hex.clone(),
        }))
    }
}
