//! The agent's calls: the only door into the enclave.
//!
//! Every handler follows the same shape: check the request (sizes, ids), open the
//! input (the owner's sealed input, or an envelope against the expected workflow and
//! step), run the agent logic on [`PlainState`] (wiped on drop), seal the output.
//! Only envelopes, non-secret summaries and results sealed to the data owner leave.
//! The audit layer ([`crate::audit::Audited`]) serves these handlers and records each
//! outcome.

use std::sync::Arc;

use enclavemesh_attestation::binding::{self, Domain};
use enclavemesh_proto::Refusal;
use enclavemesh_proto::limits::MAX_WORKFLOW_ID_BYTES;
use enclavemesh_proto::v1::*;
use enclavemesh_sealing::{Expectation, KeyRing, Limits, SealHeader};
use tonic::Status;
use tracing::field::Empty;
use zeroize::Zeroizing;

use crate::identity::EnclaveIdentity;
use crate::kms::Kms;
use crate::kms::pin::KeyPin;
use crate::logic::{AgentLogic, InitParams, PlainState};
use crate::refusal::{self, finish};
use crate::topology::Topology;

/// Largest nonce / user_data accepted by Attest (the NSM takes up to 1024).
const MAX_ATTEST_FIELD_BYTES: usize = 512;

/// The agent: its identity, key ring and logic (built once, in `crate::run`).
pub(crate) struct Agent {
    pub(crate) name: String,
    pub(crate) ring: Arc<KeyRing>,
    pub(crate) identity: Arc<EnclaveIdentity>,
    pub(crate) logic: Box<dyn AgentLogic>,
    pub(crate) limits: Limits,
    pub(crate) kms: Arc<Kms>,
    /// The key the data owner's inputs are sealed under, if this agent opens any.
    pub(crate) input_key: Option<KeyPin>,
    /// Sealed states are padded to buckets of at least this many bytes.
    pub(crate) pad_floor: usize,
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
            // Its own fields: at `info` log lines carry no span context (enclavemesh-telemetry).
            tracing::warn!(kind, workflow_id, step = expected_step, "envelope refused");
            tracing::Span::current().record("open_failure", kind);
            enclavemesh_telemetry::metrics::open_failure(kind);
            refusal::open_error(&e)
        })?;
        let unpadded = enclavemesh_sealing::padding::unpad(&plain)
            .map_err(|e| Refusal::EnvelopeMalformed.status(format!("sealed state: {e}")))?;
        let state: AgentState = enclavemesh_proto::decode_bounded(unpadded, self.limits.max_ciphertext_bytes)
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
        let plain = enclavemesh_sealing::padding::pad(&state.encode(), self.pad_floor)
            .map_err(|e| Refusal::Internal.status(format!("padding the state: {e}")))?;
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

    // Per-call success lines are `debug`: at `info` the formatted line cost ~50 µs of a
    // ~200 µs hop (BENCHMARKS.md). The handler span (exported over OTLP) and the audit
    // record carry the same facts; refusals still log at `warn`.

    #[tracing::instrument(skip_all, fields(rpc = "Init", agent = %self.name, workflow_id = %req.workflow_id,
        step = 0_i64, key_version = Empty, out_bytes = Empty, outcome = Empty, error.kind = Empty))]
    pub async fn init(&self, req: InitRequest) -> Result<InitResponse, Status> {
        finish(
            async {
                check_workflow_id(&req.workflow_id)?;
                // Only Init-running agents open inputs: refuse early, without a KMS call.
                if !self.logic.runs_init() {
                    return Err(refusal::logic_error(self.logic.init_refused()));
                }
                let input = crate::input::open(
                    &self.kms,
                    self.input_key.as_ref(),
                    &self.identity,
                    &req.workflow_id,
                    req.input.as_ref(),
                )
                .await?;
                // The owner's manifest, if the input binds one: this agent must be its first role.
                if let Some(t) = Topology::bound(&input.0.manifest_sha256, &req.manifest)? {
                    t.check_self(&self.name, self.logic.kind(), &self.identity.pcr0_hex)?;
                    t.check_first(&self.name)?;
                }
                let mut state = self
                    .logic
                    .init(&self.name, InitParams::from_input(&req.workflow_id, &input.0))
                    .map_err(refusal::logic_error)?;
                state.0.manifest_sha256 = input.0.manifest_sha256.clone();
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
            // The state's manifest, if bound: this agent is one of its roles, and the state's
            // sealer (AAD-bound, so authenticated by the open) may hand to it.
            if let Some(t) = Topology::bound(&state.0.manifest_sha256, &req.manifest)? {
                t.check_self(&self.name, self.logic.kind(), &self.identity.pcr0_hex)?;
                let sealer = req.state.as_ref().map(|e| e.agent.as_str()).unwrap_or_default();
                t.check_handoff(sealer, &self.name)?;
            }
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
        let nonce = (!req.nonce.is_empty()).then_some(req.nonce.as_slice());
        // The caller's bytes only ever enter under the caller's domain: a document made
        // here never vouches for anything the enclave binds (its audit or KMS key).
        let user_data = (!req.user_data.is_empty()).then(|| binding::user_data(Domain::Caller, &req.user_data));
        let doc = self
            .identity
            .nsm
            .attestation(user_data.as_ref().map(|u| u.as_slice()), nonce, Some(self.identity.key.public_key_der()))
            .map_err(|e| Refusal::AttestationUnavailable.status(format!("NSM attestation failed: {e}")))?;
        Ok(AttestResponse { attestation_document: doc })
    }

    /// Opens the envelope and returns the one named field, sealed to the owner's key
    /// bound in the state: whoever calls Reveal (the bridge is open to anything on the
    /// host) gets only ciphertext.
    #[tracing::instrument(skip_all, fields(rpc = "Reveal", agent = %self.name, workflow_id = %req.workflow_id,
        field = %req.field().as_str_name(), step = req.expected_step as i64, open_failure = Empty, outcome = Empty,
        error.kind = Empty))]
    pub fn reveal(&self, req: RevealRequest) -> Result<RevealResponse, Status> {
        finish((|| {
            // The field's proto name is what the result's AAD binds.
            let field = req.field();
            if field == RevealField::Unspecified {
                return Err(Refusal::InvalidRequest.status(format!(
                    "field {} is not one Reveal returns; one of REVEAL_FIELD_BALANCE, _STEP, _RATE_BPS, \
                     _HISTORY_DIGEST, _SECRET_NOTE, _HISTORY",
                    req.field
                )));
            }
            let state = self.open(&req.workflow_id, req.expected_step, req.state.as_ref())?;
            let s = &state.0;
            if s.owner_public_key.is_empty() {
                return Err(Refusal::NoOwnerKey.status("this state carries no owner key to seal a result to"));
            }
            let value = Zeroizing::new(match field {
                RevealField::Balance => s.balance.to_string(),
                RevealField::Step => s.step.to_string(),
                RevealField::RateBps => s.rate_bps.to_string(),
                RevealField::HistoryDigest => hex::encode(&s.history_digest),
                RevealField::SecretNote => s.secret_note.clone(),
                RevealField::History | RevealField::Unspecified => s
                    .history
                    .iter()
                    .map(|r| format!("{}:{}:{}->{}", r.step, r.agent, r.balance_before, r.balance_after))
                    .collect::<Vec<_>>()
                    .join(","),
            });
            let result = enclavemesh_sealing::owner::seal_result(
                &s.owner_public_key,
                &s.workflow_id,
                s.step,
                field.as_str_name(),
                value.as_bytes(),
            )
            .map_err(|e| Refusal::Internal.status(format!("sealing the result to the owner: {e}")))?;
            tracing::info!(workflow_id = %req.workflow_id, field = field.as_str_name(), step = s.step,
                "field revealed to the owner's key on explicit request");
            Ok(RevealResponse { field: req.field, result: Some(result) })
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
