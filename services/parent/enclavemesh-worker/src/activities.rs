//! The two activities: thin gRPC clients of the enclave agents.
//!
//! They hold no state of their own; the sealed envelope travels in the activity input and
//! result, so Temporal history is the only place state lives between steps (and it is
//! always ciphertext). Errors are classified by [`crate::failure`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use enclavemesh_proto::DEFAULT_MAX_MESSAGE_BYTES;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::{InitRequest, ProcessRequest, SealedEnvelope, SealedInput, StepSummary};

/// Largest sealed input passed to Init (the agent's own limit is 64 KiB of ciphertext).
const MAX_SEALED_INPUT_BYTES: usize = 80 * 1024;
use enclavemesh_transport::Address;

use crate::pool::PoolService;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument as _;
use tracing::field::Empty;

use enclavemesh_proto::Refusal;
use enclavemesh_workflow::failure::{CallFailure, classify_status};
use enclavemesh_workflow::pipeline::{DEFAULT_INIT_ROLE, DEFAULT_STEP_ROLE};
use enclavemesh_workflow::types::{
    EnvelopeJson, INIT_STATE_ACTIVITY, InitStateInput, PROCESS_STATE_ACTIVITY, ProcessStateInput, StepOutput,
    StepSummaryJson, envelope_sha256_hex,
};

/// Default bound on one agent RPC (connect + call).
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the activities could not be constructed.
pub type ActivitiesError = crate::pool::PoolError;

/// An agent client over a role's pool; each call gets a client span carrying `traceparent`.
type AgentClient = AgentServiceClient<PoolService>;

/// Agent clients used by `InitState` and `ProcessState`: one pool per role (agent
/// name). Agent A and Agent B are the roles `agent-a` and `agent-b`.
pub struct AgentActivities {
    roles: BTreeMap<String, AgentClient>,
    rpc_timeout: Duration,
}

impl AgentActivities {
    /// One client per named role, each over a pool of one or more enclaves
    /// ([`crate::pool`]; a later entry for the same name replaces an earlier one). Lazy
    /// channels: nothing is dialed until the first activity runs, so the worker starts
    /// even while the enclaves are still booting (activities then retry).
    pub fn new(roles: &[(String, Vec<Address>)], rpc_timeout: Duration) -> Result<Self, ActivitiesError> {
        let mut clients = BTreeMap::new();
        for (name, addrs) in roles {
            let client = AgentServiceClient::new(PoolService::new(name, addrs)?)
                .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
                .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES);
            clients.insert(name.clone(), client);
        }
        Ok(Self { roles: clients, rpc_timeout })
    }

    /// The pool of `role`; empty: `default`.
    fn client(&self, role: &str, default: &str) -> Result<AgentClient, CallFailure> {
        let role = or(role, default);
        self.roles.get(role).cloned().ok_or_else(|| {
            CallFailure::new(
                Refusal::AgentUnavailable,
                format!(
                    "this worker has no address for role '{role}': give it --agent {role}=ADDR (the manifest's pipeline \
                     names it)"
                ),
            )
        })
    }

    async fn call<T, F>(&self, fut: F) -> Result<T, CallFailure>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        // The grpc-timeout header bounds the server; this bounds connecting as well.
        match tokio::time::timeout(self.rpc_timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(classify_status(&status)),
            Err(_) => Err(CallFailure::new(
                Refusal::AgentTimeout,
                format!("agent call did not finish within {:?}", self.rpc_timeout),
            )),
        }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.rpc_timeout);
        req
    }
}

/// `role`, or `default` when empty.
fn or<'a>(role: &'a str, default: &'a str) -> &'a str {
    if role.is_empty() { default } else { role }
}

/// The owner's manifest as the workflow input carries it (base64; empty: none). The
/// agents check it against the digest the owner sealed; here only its encoding.
fn manifest_bytes(b64: &str) -> Result<Vec<u8>, CallFailure> {
    B64.decode(b64.trim())
        .map_err(|e| CallFailure::new(Refusal::ManifestMismatch, format!("manifest_b64 is not base64: {e}")))
}

/// Checks an agent's answer against what was asked, so a confused or malicious parent
/// cannot slip a different workflow's or step's envelope into history.
fn check_output(
    state: Option<SealedEnvelope>,
    summary: Option<StepSummary>,
    workflow_id: &str,
    step: u64,
) -> Result<StepOutput, CallFailure> {
    let bad = |m: String| CallFailure::new(Refusal::InvalidAgentResponse, m);
    let env = state.ok_or_else(|| bad("agent response has no state envelope".into()))?;
    if env.workflow_id != workflow_id || env.step != step {
        return Err(bad(format!(
            "agent returned an envelope for workflow '{}' step {}, expected '{}' step {}",
            env.workflow_id, env.step, workflow_id, step
        )));
    }
    let digest = envelope_sha256_hex(&env);
    let summary = match summary {
        Some(s) => {
            let s = StepSummaryJson::from(s);
            if s.envelope_sha256 != digest {
                return Err(bad(format!(
                    "summary digest {} does not match the returned envelope ({digest})",
                    s.envelope_sha256
                )));
            }
            s
        }
        // Tolerate a summary-less agent: the facts are all derivable from the envelope.
        None => StepSummaryJson {
            workflow_id: env.workflow_id.clone(),
            step: env.step,
            agent: env.agent.clone(),
            key_version: env.key_version,
            envelope_sha256: digest,
            ciphertext_len: u32::try_from(env.ciphertext.len()).unwrap_or(u32::MAX),
        },
    };
    Ok(StepOutput { envelope: EnvelopeJson::from(env), summary })
}

/// The span of one activity attempt, parented to the trigger's trace context from the
/// activity's Temporal header (see [`crate::trace_context`]). Ids, step, agent, sizes and
/// outcome only: never envelope bytes or the note.
fn activity_span(
    activity: &'static str,
    ctx: &ActivityContext,
    workflow_id: &str,
    step: u64,
    agent: &str,
) -> tracing::Span {
    let span = tracing::info_span!(
        "activity",
        otel.name = %format_args!("activity {activity}"),
        otel.kind = "internal",
        temporal.activity = activity,
        // i64 throughout: OpenTelemetry has no unsigned ints.
        temporal.attempt = i64::from(ctx.info().attempt),
        workflow.id = %workflow_id,
        step = step as i64,
        agent = %agent,
        in_bytes = Empty,
        key_version = Empty,
        out_bytes = Empty,
        outcome = Empty,
        error.kind = Empty,
    );
    let parent = enclavemesh_workflow::trace_header::parent_from(ctx.headers());
    {
        use opentelemetry::trace::TraceContextExt as _;
        if parent.span().span_context().is_valid() {
            enclavemesh_telemetry::set_parent(&span, parent);
        }
    }
    span
}

/// Records the attempt's outcome on its span.
fn record_outcome(span: &tracing::Span, result: &Result<StepOutput, CallFailure>) {
    match result {
        Ok(out) => {
            span.record("outcome", "ok");
            span.record("key_version", i64::from(out.summary.key_version));
            span.record("out_bytes", i64::from(out.summary.ciphertext_len));
        }
        Err(f) => {
            span.record("outcome", "error");
            span.record("error.kind", f.kind.label());
        }
    }
}

fn fail(activity: &'static str, ctx: &ActivityContext, f: CallFailure) -> ActivityError {
    let info = ctx.info();
    tracing::warn!(
        activity,
        attempt = info.attempt,
        kind = f.kind.label(),
        retryable = f.retryable(),
        message = %f.message,
        "agent call failed"
    );
    ActivityError::application(application_failure(f))
}

#[activities]
impl AgentActivities {
    /// Agent A `Init`: creates step 0 sealed.
    #[activity(name = INIT_STATE_ACTIVITY)]
    pub async fn init_state(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: InitStateInput,
    ) -> Result<StepOutput, ActivityError> {
        let span = activity_span(INIT_STATE_ACTIVITY, &ctx, &input.workflow_id, 0, or(&input.role, DEFAULT_INIT_ROLE));
        let run = async {
            // Passed through as it came: the worker cannot open it, only check its shape.
            let bytes = B64.decode(input.sealed_input_b64.trim()).map_err(|e| {
                CallFailure::new(Refusal::InputNotOwnerSealed, format!("sealed_input_b64 is not base64: {e}"))
            })?;
            let sealed: SealedInput =
                enclavemesh_proto::decode_bounded(&bytes, MAX_SEALED_INPUT_BYTES).map_err(|e| {
                    CallFailure::new(
                        Refusal::InputNotOwnerSealed,
                        format!("sealed_input_b64 is not a SealedInput: {e}"),
                    )
                })?;
            let manifest = manifest_bytes(&input.manifest_b64)?;
            let req =
                self.request(InitRequest { workflow_id: input.workflow_id.clone(), input: Some(sealed), manifest });
            let mut agent = self.client(&input.role, DEFAULT_INIT_ROLE)?;
            let resp = self.call(agent.init(req)).await?;
            check_output(resp.state, resp.summary, &input.workflow_id, 0)
        };
        let result = run.instrument(span.clone()).await;
        record_outcome(&span, &result);
        let _entered = span.enter();
        match result {
            Ok(out) => {
                log_step(INIT_STATE_ACTIVITY, &out);
                Ok(out)
            }
            Err(f) => Err(fail(INIT_STATE_ACTIVITY, &ctx, f)),
        }
    }

    /// Agent B `Process`: opens step `expected_step`, returns step `expected_step + 1` sealed.
    #[activity(name = PROCESS_STATE_ACTIVITY)]
    pub async fn process_state(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ProcessStateInput,
    ) -> Result<StepOutput, ActivityError> {
        let span = activity_span(
            PROCESS_STATE_ACTIVITY,
            &ctx,
            &input.workflow_id,
            input.expected_step + 1,
            or(&input.role, DEFAULT_STEP_ROLE),
        );
        let run = async {
            let state = SealedEnvelope::try_from(&input.envelope)
                .map_err(|e| CallFailure::new(Refusal::EnvelopeMalformed, e.to_string()))?;
            tracing::Span::current().record("in_bytes", state.ciphertext.len() as i64);
            let req = self.request(ProcessRequest {
                workflow_id: input.workflow_id.clone(),
                expected_step: input.expected_step,
                state: Some(state),
                manifest: manifest_bytes(&input.manifest_b64)?,
            });
            let mut agent = self.client(&input.role, DEFAULT_STEP_ROLE)?;
            let resp = self.call(agent.process(req)).await?;
            check_output(resp.state, resp.summary, &input.workflow_id, input.expected_step + 1)
        };
        let result = run.instrument(span.clone()).await;
        record_outcome(&span, &result);
        let _entered = span.enter();
        match result {
            Ok(out) => {
                log_step(PROCESS_STATE_ACTIVITY, &out);
                Ok(out)
            }
            Err(f) => Err(fail(PROCESS_STATE_ACTIVITY, &ctx, f)),
        }
    }
}

/// The Temporal failure for a call failure: its type is the refusal's label, so the
/// workflow (and whoever started it) can match on it; non-retryable unless transient.
pub fn application_failure(f: CallFailure) -> ApplicationFailure {
    let retryable = f.retryable();
    ApplicationFailure::builder(f.message).type_name(f.kind.label().to_string()).non_retryable(!retryable).build()
}

/// Sizes and digests only: never envelope bytes.
fn log_step(activity: &'static str, out: &StepOutput) {
    let s = &out.summary;
    tracing::info!(
        activity,
        workflow_id = %s.workflow_id,
        step = s.step,
        agent = %s.agent,
        key_version = s.key_version,
        envelope_sha256 = %s.envelope_sha256,
        ciphertext_len = s.ciphertext_len,
        "step sealed"
    );
}
