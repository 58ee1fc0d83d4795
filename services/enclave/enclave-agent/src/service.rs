//! The agent's calls: the only door into the enclave.
//!
//! Every handler follows the same shape: check the request (sizes, ids), open the
//! input envelope against the expected workflow and step, run the agent logic on
//! [`PlainState`] (wiped on drop), seal the output. Only envelopes and non-secret
//! summaries leave; `Reveal` is the deliberate, named exception. The audit layer
//! ([`crate::audit::Audited`]) serves these handlers and records each outcome.

use std::sync::Arc;

use enclavemesh_proto::Refusal;
use enclavemesh_proto::limits::MAX_WORKFLOW_ID_BYTES;
use enclavemesh_proto::v1::*;
use enclavemesh_sealing::{Expectation, KeyRing, Limits, SealHeader};
use tonic::Status;
use tracing::field::Empty;

use crate::identity::EnclaveIdentity;
use crate::kms::Kms;
use crate::kms::pin::KeyPin;
use crate::logic::{AgentLogic, InitParams, PlainState};
use crate::refusal::{self, finish};

/// Largest nonce / user_data accepted by Attest (the NSM takes up to 1024).
const MAX_ATTEST_FIELD_BYTES: usize = 512;
/// Largest KMS-encrypted note accepted by Init (KMS blobs are at most 6144 bytes).
const MAX_NOTE_BLOB_BYTES: usize = 6144;

/// The agent: its identity, key ring and logic (built once, in `crate::run`).
pub(crate) struct Agent {
    pub(crate) name: String,
    pub(crate) ring: Arc<KeyRing>,
    pub(crate) identity: Arc<EnclaveIdentity>,
    pub(crate) logic: Box<dyn AgentLogic>,
    pub(crate) limits: Limits,
    pub(crate) kms: Arc<Kms>,
    /// The key the data owner's inputs (the note) are sealed under, if this agent opens any.
    pub(crate) input_key: Option<KeyPin>,
}

fn check_workflow_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(Refusal::InvalidRequest.status("workflow_id is required"));
    }
    if id.len() > MAX_WORKFLOW_ID_BYTES {
        return Err(Refusal::InvalidRequest
            .status(format!("workflow_id is {} bytes; the limit is {MAX_WORKFLOW_ID_BYTES}", id.len())));
    }
    Ok(())
}

/// Non-secret facts about a sealed result, recorded on the handler span.
fn record_sealed(summary: &StepSummary) {
    let span = tracing::Span::current();
    // i64: OpenTelemetry has no unsigned ints (tracing-opentelemetry would stringify u64).
    span.record("key_version", i64::from(summary.key_version));
    span.record("out_bytes", i64::from(summary.ciphertext_len));
}

impl Agent {
    fn open(&self, workflow_id: &str, expected_step: u64, env: Option<&SealedEnvelope>) -> Result<PlainState, Status> {
        check_workflow_id(workflow_id)?;
        let env = env.ok_or_else(|| Refusal::InvalidRequest.status("state envelope is missing"))?;
        let expect = Expectation { workflow_id: workflow_id.to_string(), step: expected_step };
        let plain = enclavemesh_sealing::open(&self.ring, env, &expect, &self.limits).map_err(|e| {
            let kind = e.refusal().label();
            tracing::warn!(kind, "envelope refused");
            tracing::Span::current().record("open_failure", kind);
            enclavemesh_telemetry::metrics::open_failure(kind);
            refusal::open_error(&e)
        })?;
        let state: AgentState = enclavemesh_proto::decode_bounded(&plain, self.limits.max_ciphertext_bytes)
            .map_err(|e| refusal::decode_error("sealed state", e))?;
        let state = PlainState(state);
        // The AAD already binds these; checking the inner copy too catches a
        // state sealed by a buggy agent under the wrong header.
        if state.0.workflow_id != workflow_id || state.0.step != expected_step {
            return Err(Refusal::EnvelopeMalformed.status("sealed state disagrees with its envelope header"));
        }
        Ok(state)
    }

    fn seal(&self, state: &PlainState) -> Result<(SealedEnvelope, StepSummary), Status> {
        let header =
            SealHeader { workflow_id: state.0.workflow_id.clone(), step: state.0.step, agent: self.name.clone() };
        let plain = state.encode();
        let env = enclavemesh_sealing::seal(&self.ring, &header, &plain).map_err(|e| refusal::seal_error(&e))?;
        let summary = StepSummary {
            workflow_id: env.workflow_id.clone(),
            step: env.step,
            agent: env.agent.clone(),
            key_version: env.key_version,
            envelope_sha256: enclavemesh_sealing::envelope_sha256(&env).to_vec(),
            ciphertext_len: u32::try_from(env.ciphertext.len()).unwrap_or(u32::MAX),
        };
        Ok((env, summary))
    }

    /// Decrypts the data owner's KMS-encrypted note: KMS (over the enclave's own TLS)
    /// releases it to this enclave alone, under the pinned input key and its context.
    async fn decrypt_note(&self, blob: &[u8]) -> Result<String, Status> {
        if blob.is_empty() {
            return Ok(String::new());
        }
        if blob.len() > MAX_NOTE_BLOB_BYTES {
            return Err(Refusal::InvalidRequest.status(format!(
                "kms_encrypted_note is {} bytes; KMS ciphertexts are at most {MAX_NOTE_BLOB_BYTES}",
                blob.len()
            )));
        }
        let key = self.input_key.as_ref().ok_or_else(|| {
            Refusal::WrongRole.status("this agent has no --input-key-arn, so it opens no owner inputs (notes)")
        })?;
        let plain = self
            .kms
            .decrypt_for_enclave(key, blob, crate::kms::input_context(), &self.identity)
            .await
            .map_err(|e| e.refusal().status(format!("decrypting kms_encrypted_note: {e}")))?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| Refusal::InvalidInput.status("kms_encrypted_note is not UTF-8 text"))
    }

    // Per-call success lines are `debug`: at `info` the formatted line cost ~50 µs of a
    // ~200 µs hop (BENCHMARKS.md). The handler span (exported over OTLP) and the audit
    // record carry the same facts; refusals still log at `warn`.

    #[tracing::instrument(skip_all, fields(rpc = "Init", agent = %self.name, workflow_id = %req.workflow_id,
        step = 0_i64, note_bytes = req.kms_encrypted_note.len() as i64, key_version = Empty, out_bytes = Empty,
        outcome = Empty, error.kind = Empty))]
    pub async fn init(&self, req: InitRequest) -> Result<InitResponse, Status> {
        finish(
            async {
                check_workflow_id(&req.workflow_id)?;
                let note = self.decrypt_note(&req.kms_encrypted_note).await?;
                let state =
                    self.logic.init(&self.name, InitParams::from_request(&req, note)).map_err(refusal::logic_error)?;
                let (env, summary) = self.seal(&state)?;
                record_sealed(&summary);
                tracing::debug!(
                    key_version = summary.key_version,
                    bytes = summary.ciphertext_len,
                    "state created and sealed"
                );
                Ok(InitResponse { state: Some(env), summary: Some(summary) })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "Process", agent = %self.name, workflow_id = %req.workflow_id,
        step = req.expected_step as i64,
        in_key_version = req.state.as_ref().map(|e| i64::from(e.key_version)),
        in_bytes = req.state.as_ref().map(|e| e.ciphertext.len() as i64),
        key_version = Empty, out_bytes = Empty, open_failure = Empty, outcome = Empty, error.kind = Empty))]
    pub async fn process(&self, req: ProcessRequest) -> Result<ProcessResponse, Status> {
        finish((|| {
            let state = self.open(&req.workflow_id, req.expected_step, req.state.as_ref())?;
            let state = self.logic.process(&self.name, state).map_err(refusal::logic_error)?;
            let (env, summary) = self.seal(&state)?;
            record_sealed(&summary);
            tracing::debug!(out_step = summary.step, key_version = summary.key_version, "state processed and sealed");
            Ok(ProcessResponse { state: Some(env), summary: Some(summary) })
        })())
    }

    #[tracing::instrument(skip_all, fields(rpc = "Attest", agent = %self.name))]
    pub fn attest(&self, req: AttestRequest) -> Result<AttestResponse, Status> {
        for (what, v) in [("nonce", &req.nonce), ("user_data", &req.user_data)] {
            if v.len() > MAX_ATTEST_FIELD_BYTES {
                return Err(Refusal::InvalidRequest
                    .status(format!("{what} is {} bytes; the limit is {MAX_ATTEST_FIELD_BYTES}", v.len())));
            }
        }
        let opt = |v: &Vec<u8>| if v.is_empty() { None } else { Some(v.clone()) };
        let (nonce, user_data) = (opt(&req.nonce), opt(&req.user_data));
        let doc = self
            .identity
            .nsm
            .attestation(user_data.as_deref(), nonce.as_deref(), Some(self.identity.key.public_key_der()))
            .map_err(|e| Refusal::AttestationUnavailable.status(format!("NSM attestation failed: {e}")))?;
        Ok(AttestResponse { attestation_document: doc })
    }

    /// Opens the envelope and returns the one named field.
    #[tracing::instrument(skip_all, fields(rpc = "Reveal", agent = %self.name, workflow_id = %req.workflow_id,
        field = %req.field, step = req.expected_step as i64, open_failure = Empty, outcome = Empty,
        error.kind = Empty))]
    pub fn reveal(&self, req: RevealRequest) -> Result<RevealResponse, Status> {
        finish((|| {
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
                    return Err(Refusal::InvalidRequest.status(format!(
                        "unknown field {other:?}; one of balance, step, rate_bps, history_digest, secret_note, history"
                    )));
                }
            };
            tracing::info!("field revealed on explicit request");
            Ok(RevealResponse { field: req.field.clone(), value })
        })())
    }

    pub fn describe(&self) -> DescribeResponse {
        DescribeResponse {
            agent: self.name.clone(),
            mode: self.identity.nsm.kind().to_string(),
            key_id: self.ring.key_id().to_string(),
            key_versions: self.ring.versions(),
            pcr0_hex: self.identity.pcr0_hex.clone(),
        }
    }
}
