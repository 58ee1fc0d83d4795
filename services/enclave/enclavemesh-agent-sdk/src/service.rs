//! The agent's calls: the only door into the enclave.
//!
//! Every handler follows the same shape: check the request (sizes, ids), open the
//! input (the owner's sealed input, or an envelope against the expected workflow and
//! step), run the role on its plaintext (in [`Plain`], wiped on drop), seal the output.
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

use crate::frame::Frame;
use crate::identity::EnclaveIdentity;
use crate::kms::Kms;
use crate::kms::pin::KeyPin;
use crate::refusal::{self, finish};
use crate::role::{Context, Plain, Role};
use crate::topology::Topology;

/// Largest nonce / user_data accepted by Attest (the NSM takes up to 1024).
const MAX_ATTEST_FIELD_BYTES: usize = 512;

/// The agent: its identity, key ring and role (built once, in `crate::run`).
pub(crate) struct Agent<R: Role> {
    pub(crate) name: String,
    pub(crate) ring: Arc<KeyRing>,
    pub(crate) identity: Arc<EnclaveIdentity>,
    pub(crate) role: R,
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
    // Resources are sealed under the input key with this prefix in the workflow slot:
    // no workflow may take one for its input.
    if id.starts_with(crate::resource::WORKFLOW_ID_PREFIX) {
        return Err(Refusal::InvalidRequest.status(format!(
            "workflow ids starting with '{}' name sealed resources, not workflows",
            crate::resource::WORKFLOW_ID_PREFIX
        )));
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

/// The field a Reveal asks for, as the result's AAD binds it: `field_name`, else the
/// ledger's `field` by its proto name. A name is 1 to 64 of A-Z a-z 0-9 - _ (it goes
/// into the audit record and the span).
pub(crate) fn field_name(req: &RevealRequest) -> Result<String, Status> {
    if !req.field_name.is_empty() {
        if !enclavemesh_proto::limits::is_agent_name(&req.field_name) {
            return Err(Refusal::InvalidRequest.status(format!(
                "field_name of {} bytes is not a field name (1 to 64 of A-Z a-z 0-9 - _)",
                req.field_name.len()
            )));
        }
        return Ok(req.field_name.clone());
    }
    match req.field() {
        RevealField::Unspecified => Err(Refusal::InvalidRequest.status(format!(
            "Reveal names no field (field {}, field_name empty): name one this role discloses, e.g. \
             REVEAL_FIELD_BALANCE for the ledger",
            req.field
        ))),
        f => Ok(f.as_str_name().to_string()),
    }
}

impl<R: Role> Agent<R> {
    fn open(
        &self,
        workflow_id: &str,
        expected_step: u64,
        env: Option<&SealedEnvelope>,
    ) -> Result<Frame<R::State>, Status> {
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
        let frame = Frame::decode(unpadded, self.limits.max_ciphertext_bytes)
            .map_err(|e| refusal::decode_error("sealed state", e))?;
        // The AAD already binds these; checking the inner copy too catches a
        // state sealed by a buggy agent under the wrong header.
        if frame.workflow_id != workflow_id || frame.step != expected_step {
            return Err(Refusal::EnvelopeMalformed.status("sealed state disagrees with its envelope header"));
        }
        Ok(frame)
    }

    fn seal(&self, frame: &Frame<R::State>) -> Result<(SealedEnvelope, StepSummary), Status> {
        let header = SealHeader { workflow_id: frame.workflow_id.clone(), step: frame.step, agent: self.name.clone() };
        let plain = enclavemesh_sealing::padding::pad(&frame.encode(), self.pad_floor)
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
                // Only the first role opens inputs: refuse early, without a KMS call.
                if !self.role.starts() {
                    return Err(Refusal::WrongRole.status(format!(
                        "a {} agent does not run Init; send Init to the pipeline's first role",
                        self.role.kind()
                    )));
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
                if let Some(t) = Topology::bound(&input.manifest_sha256, &req.manifest)? {
                    t.check_self(&self.name, self.role.kind(), &self.identity.pcr0_hex)?;
                    t.check_first(&self.name)?;
                }
                let role_input: Plain<R::Input> = Plain::new(
                    enclavemesh_proto::decode_bounded(&input.input, crate::input::MAX_INPUT_BYTES).map_err(|e| {
                        Refusal::InvalidInput.status(format!(
                            "the owner's input is not this role's Input message ({}): {e}",
                            std::any::type_name::<R::Input>()
                        ))
                    })?,
                );
                let ctx = Context { workflow_id: &req.workflow_id, step: 0, agent: &self.name };
                let state = Plain::new(self.role.init(&ctx, &role_input).map_err(refusal::role_error)?);
                let state = Frame {
                    workflow_id: req.workflow_id.clone(),
                    step: 0,
                    owner_public_key: input.owner_public_key.clone(),
                    manifest_sha256: input.manifest_sha256.clone(),
                    state,
                };
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
            let mut state = self.open(&req.workflow_id, req.expected_step, req.state.as_ref())?;
            // The state's manifest, if bound: this agent is one of its roles, and the state's
            // sealer (AAD-bound, so authenticated by the open) may hand to it.
            if let Some(t) = Topology::bound(&state.manifest_sha256, &req.manifest)? {
                t.check_self(&self.name, self.role.kind(), &self.identity.pcr0_hex)?;
                let sealer = req.state.as_ref().map(|e| e.agent.as_str()).unwrap_or_default();
                t.check_handoff(sealer, &self.name)?;
            }
            let step =
                state.step.checked_add(1).ok_or_else(|| Refusal::InvalidInput.status("step counter overflow"))?;
            let ctx = Context { workflow_id: &req.workflow_id, step, agent: &self.name };
            self.role.step(&ctx, &mut state.state).map_err(refusal::role_error)?;
            state.step = step;
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
    /// host) gets only ciphertext. `field` is [`field_name`] of `req`, read once by the
    /// audit layer.
    #[tracing::instrument(skip_all, fields(rpc = "Reveal", agent = %self.name, workflow_id = %req.workflow_id,
        field = field.as_deref().unwrap_or_default(), step = req.expected_step as i64, open_failure = Empty,
        outcome = Empty, error.kind = Empty))]
    pub fn reveal(&self, req: RevealRequest, field: Result<String, Status>) -> Result<RevealResponse, Status> {
        finish((|| {
            // The field's name is what the result's AAD binds.
            let field = field?;
            let state = self.open(&req.workflow_id, req.expected_step, req.state.as_ref())?;
            if state.owner_public_key.is_empty() {
                return Err(Refusal::NoOwnerKey.status("this state carries no owner key to seal a result to"));
            }
            let ctx = Context { workflow_id: &state.workflow_id, step: state.step, agent: &self.name };
            let value = self.role.disclose(&ctx, &state.state, &field).map_err(refusal::role_error)?;
            let result = enclavemesh_sealing::owner::seal_result(
                &state.owner_public_key,
                &state.workflow_id,
                state.step,
                &field,
                &value,
            )
            .map_err(|e| Refusal::Internal.status(format!("sealing the result to the owner: {e}")))?;
            tracing::info!(workflow_id = %req.workflow_id, field = %field, step = state.step,
                "field revealed to the owner's key on explicit request");
            Ok(RevealResponse { field: req.field, field_name: field, result: Some(result) })
        })())
    }

    pub fn describe(&self) -> DescribeResponse {
        DescribeResponse {
            agent: self.name.clone(),
            mode: self.identity.nsm.kind().to_string(),
            key_id: self.ring.key_id().to_string(),
            key_versions: self.ring.versions(),
            pcr0_hex: self.identity.pcr0_hex.clone(),
            kind: self.role.kind().to_string(),
        }
    }
}
