//! The JSON shapes that cross Temporal: workflow input/output, activity input/output and
//! the progress query. Worker and CLI both use these, so there is exactly one definition.
//!
//! Everything here is safe to keep in Temporal history: state only ever appears as a
//! [`EnvelopeJson`] (ciphertext + authenticated header), never in clear.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use enclavemesh_proto::v1::{SealedEnvelope, StepSummary};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Temporal workflow type name.
pub const WORKFLOW_NAME: &str = "SecureStateLoop";
/// Activity type calling Agent A `Init`.
pub const INIT_STATE_ACTIVITY: &str = "InitState";
/// Activity type calling Agent B `Process`.
pub const PROCESS_STATE_ACTIVITY: &str = "ProcessState";
/// Name of the workflow query returning [`Progress`].
pub const PROGRESS_QUERY: &str = "progress";
/// Default task queue shared by worker and CLI.
pub const DEFAULT_TASK_QUEUE: &str = "enclavemesh";
/// Default Temporal namespace.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Default Temporal frontend address.
pub const DEFAULT_TEMPORAL_ADDRESS: &str = "http://127.0.0.1:7233";
/// Upper bound on B-steps in one run: each step adds ~6 history events and one envelope
/// payload, and Temporal caps a history at 50k events; longer loops need continue-as-new.
pub const MAX_STEPS: u32 = 1000;

fn default_steps() -> u32 {
    1
}

/// Input of `SecureStateLoop`: how many steps (public), and the data owner's input,
/// sealed on the owner's client for this workflow id. Temporal, the worker and the host
/// see only that ciphertext; balance, rate and note are inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowInput {
    /// Number of B-steps (`ProcessState` calls) after `InitState`.
    #[serde(default = "default_steps")]
    pub steps: u32,
    /// The encoded `enclavemesh.v1.SealedInput`, base64.
    pub sealed_input_b64: String,
    /// How each step's envelope is handed to the next agent call (public; absent means
    /// [`Handoff::Local`]).
    #[serde(default)]
    pub handoff: Handoff,
    /// The owner's manifest (encoded `enclavemesh.v1.Manifest`, base64; empty: none),
    /// passed to every agent call. Public: the agents take it only if its SHA-256 is the
    /// one the owner sealed in the input.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest_b64: String,
}

/// How `SecureStateLoop` hands sealed state from one agent call to the next.
///
/// Both keep every guarantee of the loop: each step's envelope is recorded in history (an
/// activity result, or a local-activity marker), a refused step fails the run with its
/// last good envelope in history, and a crash resumes from the last recorded step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handoff {
    /// Local activities: the worker running the workflow task calls the agents itself, so
    /// one workflow task carries many handoffs and Temporal sees one round trip per batch,
    /// not per step. The steps' results reach history as markers when the task completes
    /// (at the latest every few seconds, by the task heartbeat); a worker crash before that
    /// re-runs those steps from the last recorded envelope.
    #[default]
    Local,
    /// One Temporal activity per step: each result is durable the moment the step ends,
    /// and any worker polling the queue may run any step. For long steps, or when the
    /// agents are not all reachable from every worker.
    Remote,
}

impl Handoff {
    /// Every mode, for `--help` and parsing.
    pub const ALL: [Handoff; 2] = [Handoff::Local, Handoff::Remote];

    /// The name used on the command line and in the workflow input.
    pub fn as_str(self) -> &'static str {
        match self {
            Handoff::Local => "local",
            Handoff::Remote => "remote",
        }
    }
}

impl std::fmt::Display for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown handoff mode name.
#[derive(Debug, thiserror::Error)]
#[error("unknown handoff mode '{0}': use local (default) or remote")]
pub struct UnknownHandoff(String);

impl std::str::FromStr for Handoff {
    type Err = UnknownHandoff;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Handoff::ALL.into_iter().find(|h| h.as_str() == s).ok_or_else(|| UnknownHandoff(s.to_string()))
    }
}

/// A `SealedEnvelope` as JSON: the authenticated header in clear, nonce and ciphertext base64.
///
/// The conversion to and from the protobuf destructures every field, so adding a field to
/// `SealedEnvelope` breaks the build here instead of silently dropping it in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeJson {
    pub format_version: u32,
    pub key_id: String,
    pub key_version: u32,
    pub workflow_id: String,
    pub step: u64,
    pub agent: String,
    pub nonce_b64: String,
    pub ciphertext_b64: String,
}

/// Why JSON could not become a `SealedEnvelope`.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeJsonError {
    #[error("envelope field {field} is not valid base64: {source}")]
    Base64 { field: &'static str, source: base64::DecodeError },
}

impl From<SealedEnvelope> for EnvelopeJson {
    fn from(env: SealedEnvelope) -> Self {
        let SealedEnvelope { format_version, key_id, key_version, workflow_id, step, agent, nonce, ciphertext } = env;
        Self {
            format_version,
            key_id,
            key_version,
            workflow_id,
            step,
            agent,
            nonce_b64: B64.encode(nonce),
            ciphertext_b64: B64.encode(ciphertext),
        }
    }
}

impl TryFrom<&EnvelopeJson> for SealedEnvelope {
    type Error = EnvelopeJsonError;

    fn try_from(j: &EnvelopeJson) -> Result<Self, Self::Error> {
        let nonce =
            B64.decode(&j.nonce_b64).map_err(|source| EnvelopeJsonError::Base64 { field: "nonce_b64", source })?;
        let ciphertext = B64
            .decode(&j.ciphertext_b64)
            .map_err(|source| EnvelopeJsonError::Base64 { field: "ciphertext_b64", source })?;
        Ok(SealedEnvelope {
            format_version: j.format_version,
            key_id: j.key_id.clone(),
            key_version: j.key_version,
            workflow_id: j.workflow_id.clone(),
            step: j.step,
            agent: j.agent.clone(),
            nonce,
            ciphertext,
        })
    }
}

impl EnvelopeJson {
    /// SHA-256 (hex) of the protobuf encoding, the same digest agents put in `StepSummary`.
    pub fn sha256_hex(&self) -> Result<String, EnvelopeJsonError> {
        let env = SealedEnvelope::try_from(self)?;
        Ok(envelope_sha256_hex(&env))
    }
}

/// SHA-256 (hex) of an envelope's protobuf encoding.
pub fn envelope_sha256_hex(env: &SealedEnvelope) -> String {
    hex::encode(Sha256::digest(env.encode_to_vec()))
}

/// Non-secret facts about one step, as kept in history and shown by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSummaryJson {
    pub workflow_id: String,
    pub step: u64,
    pub agent: String,
    pub key_version: u32,
    /// Hex SHA-256 of the encoded output envelope.
    pub envelope_sha256: String,
    pub ciphertext_len: u32,
}

impl From<StepSummary> for StepSummaryJson {
    fn from(s: StepSummary) -> Self {
        let StepSummary { workflow_id, step, agent, key_version, envelope_sha256, ciphertext_len } = s;
        Self { workflow_id, step, agent, key_version, envelope_sha256: hex::encode(envelope_sha256), ciphertext_len }
    }
}

/// Input of the `InitState` activity: the owner's sealed input, passed through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitStateInput {
    pub workflow_id: String,
    /// The encoded `enclavemesh.v1.SealedInput`, base64.
    pub sealed_input_b64: String,
    /// As [`WorkflowInput::manifest_b64`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest_b64: String,
    /// The role (agent name) to call, from the run's [`crate::pipeline::Plan`]; empty:
    /// Agent A.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
}

/// Input of the `ProcessState` activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStateInput {
    pub workflow_id: String,
    /// Step the input envelope must be at (the previous step's number).
    pub expected_step: u64,
    pub envelope: EnvelopeJson,
    /// As [`WorkflowInput::manifest_b64`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest_b64: String,
    /// The role (agent name) to call; empty: Agent B.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
}

/// Result of either activity: the new sealed state and its summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutput {
    pub envelope: EnvelopeJson,
    pub summary: StepSummaryJson,
}

/// Result of `SecureStateLoop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowOutput {
    pub workflow_id: String,
    /// The last sealed state (step = `steps`).
    pub final_envelope: EnvelopeJson,
    /// One summary per step, step 0 (InitState) first.
    pub steps: Vec<StepSummaryJson>,
}

/// Answer of the `progress` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Total steps the run will perform including step 0 (`steps + 1`).
    pub total_steps: u64,
    /// Summaries of the steps completed so far, in order.
    pub completed: Vec<StepSummaryJson>,
    /// Set when a step failed: the typed failure the workflow ends with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<StepFailure>,
}

/// Details attached to the workflow failure (and kept in the progress query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// Failure kind, e.g. `EnvelopeTampered` (also the ApplicationFailure type).
    pub kind: String,
    /// The step that failed (0 = InitState).
    pub step: u64,
    /// `InitState` or `ProcessState`.
    pub activity: String,
    /// The agent's (or transport's) message.
    pub message: String,
    /// Last step that succeeded (its envelope stays in history), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_step: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_json_roundtrip_keeps_digest() {
        let env = SealedEnvelope {
            format_version: 1,
            key_id: "k".into(),
            key_version: 2,
            workflow_id: "wf".into(),
            step: 3,
            agent: "agent-b".into(),
            nonce: vec![1; 12],
            ciphertext: vec![9; 40],
        };
        let digest = envelope_sha256_hex(&env);
        let json = EnvelopeJson::from(env.clone());
        assert_eq!(SealedEnvelope::try_from(&json).unwrap(), env);
        assert_eq!(json.sha256_hex().unwrap(), digest);
    }

    #[test]
    fn workflow_input_defaults() {
        let input: WorkflowInput = serde_json::from_str(r#"{"sealed_input_b64":"AAAA"}"#).unwrap();
        assert_eq!(input.steps, 1);
        assert_eq!(input.sealed_input_b64, "AAAA");
        // An input written before handoff modes existed runs the default mode.
        assert_eq!(input.handoff, Handoff::Local);
    }

    #[test]
    fn handoff_modes_parse_from_json_and_the_command_line_and_nothing_else_does() {
        let input: WorkflowInput =
            serde_json::from_str(r#"{"sealed_input_b64":"AAAA","steps":3,"handoff":"remote"}"#).unwrap();
        assert_eq!(input.handoff, Handoff::Remote);
        assert!(serde_json::from_str::<WorkflowInput>(r#"{"sealed_input_b64":"","handoff":"eager"}"#).is_err());
        for h in Handoff::ALL {
            assert_eq!(h.as_str().parse::<Handoff>().unwrap(), h);
            assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{h}\""));
        }
        let err = "Local".parse::<Handoff>().unwrap_err().to_string();
        assert!(err.contains("local (default) or remote"), "{err}");
    }

    #[test]
    fn bad_base64_is_typed() {
        let mut json = EnvelopeJson::from(SealedEnvelope::default());
        json.ciphertext_b64 = "!!".into();
        assert!(matches!(
            SealedEnvelope::try_from(&json),
            Err(EnvelopeJsonError::Base64 { field: "ciphertext_b64", .. })
        ));
    }
}
