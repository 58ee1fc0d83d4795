//! How an agent call's outcome becomes a Temporal failure.
//!
//! Transport trouble is retried by Temporal (with the activity retry policy); a refusal by
//! the enclave (tampered, replayed, unknown key, ...) is deterministic, so retrying would
//! only repeat it: those become non-retryable `ApplicationFailure`s whose *type* names the
//! kind, so callers (and the workflow failure) can match on it.

use temporalio_sdk::ApplicationFailure;
use tonic::Code;

/// Failure kinds (`ApplicationFailure` types) produced by the activities.
pub mod kind {
    pub const ENVELOPE_TAMPERED: &str = "EnvelopeTampered";
    pub const ENVELOPE_REPLAYED: &str = "EnvelopeReplayed";
    pub const ACCESS_DENIED: &str = "AccessDenied";
    pub const INVALID_ENVELOPE: &str = "InvalidEnvelope";
    pub const UNKNOWN_KEY_VERSION: &str = "UnknownKeyVersion";
    pub const ENVELOPE_TOO_LARGE: &str = "EnvelopeTooLarge";
    pub const AGENT_UNIMPLEMENTED: &str = "AgentUnimplemented";
    pub const AGENT_ERROR: &str = "AgentError";
    pub const INVALID_AGENT_RESPONSE: &str = "InvalidAgentResponse";
    pub const INVALID_INPUT: &str = "InvalidInput";
    /// Retryable kinds (only seen as the last attempt's failure).
    pub const AGENT_UNAVAILABLE: &str = "AgentUnavailable";
    pub const AGENT_OVERLOADED: &str = "AgentOverloaded";
    pub const AGENT_TIMEOUT: &str = "AgentTimeout";

    /// Kinds that must never be retried; also listed in the retry policy as a second guard.
    pub const NON_RETRYABLE: &[&str] = &[
        ENVELOPE_TAMPERED,
        ENVELOPE_REPLAYED,
        ACCESS_DENIED,
        INVALID_ENVELOPE,
        UNKNOWN_KEY_VERSION,
        ENVELOPE_TOO_LARGE,
        AGENT_UNIMPLEMENTED,
        AGENT_ERROR,
        INVALID_AGENT_RESPONSE,
        INVALID_INPUT,
    ];
}

/// A classified call failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub kind: &'static str,
    pub retryable: bool,
    pub message: String,
}

impl CallFailure {
    pub fn non_retryable(kind: &'static str, message: impl Into<String>) -> Self {
        Self { kind, retryable: false, message: message.into() }
    }

    pub fn retryable(kind: &'static str, message: impl Into<String>) -> Self {
        Self { kind, retryable: true, message: message.into() }
    }

    /// The Temporal failure for this outcome. The message is the agent's gRPC message.
    pub fn into_application_failure(self) -> ApplicationFailure {
        ApplicationFailure::builder(self.message).type_name(self.kind.to_string()).non_retryable(!self.retryable).build()
    }
}

/// Known kind names an agent may put in its message; when present they win over the
/// per-code default (PERMISSION_DENIED covers both replay and access refusals).
const NAMED_KINDS: &[&str] = &[
    kind::ENVELOPE_TAMPERED,
    kind::ENVELOPE_REPLAYED,
    kind::ACCESS_DENIED,
    kind::INVALID_ENVELOPE,
    kind::UNKNOWN_KEY_VERSION,
    kind::ENVELOPE_TOO_LARGE,
];

fn named_kind(message: &str) -> Option<&'static str> {
    NAMED_KINDS.iter().copied().find(|k| message.contains(k))
}

/// Words that mark a RESOURCE_EXHAUSTED as load shedding (retry) rather than a size refusal.
fn looks_like_overload(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["overload", "concurren", "rate limit", "too many", "try again", "busy", "capacity"].iter().any(|w| m.contains(w))
}

/// Fix hint for an agent that cannot be reached at all (nothing listens at its address):
/// the enclave is not running, or the bridge/socket in front of it is gone.
pub const ENCLAVE_NOT_RUNNING_HINT: &str = "enclave not running? check nitro-cli describe-enclaves and start it \
     (systemctl start enclavemesh-enclave@16 / @17, i.e. nitro-cli run-enclave); in dev: scripts/dev.sh up";

/// Appends [`ENCLAVE_NOT_RUNNING_HINT`] when `message` says the connection itself failed.
pub fn with_enclave_hint(message: String) -> String {
    let m = message.to_ascii_lowercase();
    let unreachable = ["connection refused", "no such file", "cannot connect", "connection reset", "tcp connect error", "transport error"];
    if unreachable.iter().any(|w| m.contains(w)) && !message.contains(ENCLAVE_NOT_RUNNING_HINT) {
        format!("{message} ({ENCLAVE_NOT_RUNNING_HINT})")
    } else {
        message
    }
}

/// Classifies a gRPC status from an agent call.
pub fn classify_status(status: &tonic::Status) -> CallFailure {
    let message = status.message().to_string();
    let shown = if message.is_empty() { format!("agent returned {:?}", status.code()) } else { message.clone() };
    match status.code() {
        // Transport and transient server conditions: let Temporal back off and retry.
        Code::Unavailable | Code::Unknown | Code::Aborted | Code::Cancelled | Code::Internal => {
            CallFailure::retryable(kind::AGENT_UNAVAILABLE, with_enclave_hint(shown))
        }
        Code::DeadlineExceeded => CallFailure::retryable(kind::AGENT_TIMEOUT, shown),
        Code::ResourceExhausted if named_kind(&message).is_none() && looks_like_overload(&message) => {
            CallFailure::retryable(kind::AGENT_OVERLOADED, shown)
        }
        code => {
            let default = match code {
                Code::DataLoss => kind::ENVELOPE_TAMPERED,
                Code::PermissionDenied if message.to_ascii_lowercase().contains("replay") => kind::ENVELOPE_REPLAYED,
                Code::PermissionDenied | Code::Unauthenticated => kind::ACCESS_DENIED,
                Code::InvalidArgument => kind::INVALID_ENVELOPE,
                Code::FailedPrecondition => kind::UNKNOWN_KEY_VERSION,
                // RESOURCE_EXHAUSTED from the agent, OUT_OF_RANGE from tonic's size limit.
                Code::ResourceExhausted | Code::OutOfRange => kind::ENVELOPE_TOO_LARGE,
                Code::Unimplemented => kind::AGENT_UNIMPLEMENTED,
                _ => kind::AGENT_ERROR,
            };
            CallFailure::non_retryable(named_kind(&message).unwrap_or(default), shown)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn refusals_are_typed_and_final() {
        let cases = [
            (Status::data_loss("envelope authentication failed"), kind::ENVELOPE_TAMPERED),
            (Status::permission_denied("EnvelopeReplayed: step 2 != 3"), kind::ENVELOPE_REPLAYED),
            (Status::permission_denied("replayed envelope"), kind::ENVELOPE_REPLAYED),
            (Status::permission_denied("AccessDenied by KMS"), kind::ACCESS_DENIED),
            (Status::permission_denied("workflow mismatch"), kind::ACCESS_DENIED),
            (Status::invalid_argument("bad"), kind::INVALID_ENVELOPE),
            (Status::failed_precondition("key version 9"), kind::UNKNOWN_KEY_VERSION),
            (Status::resource_exhausted("envelope of 9 MiB"), kind::ENVELOPE_TOO_LARGE),
            (Status::unimplemented("no"), kind::AGENT_UNIMPLEMENTED),
        ];
        for (status, expected) in cases {
            let f = classify_status(&status);
            assert_eq!(f.kind, expected, "{status:?}");
            assert!(!f.retryable);
            assert_eq!(f.message, status.message());
        }
    }

    #[test]
    fn transport_trouble_is_retryable() {
        for status in [
            Status::unavailable("connection refused"),
            Status::deadline_exceeded("slow"),
            Status::unknown("transport error"),
            Status::resource_exhausted("agent overloaded, try again"),
        ] {
            assert!(classify_status(&status).retryable, "{status:?}");
        }
        let refused = classify_status(&Status::unavailable("tcp connect error: Connection refused (os error 111)"));
        assert!(refused.message.contains("enclave not running") && refused.message.contains("nitro-cli"), "{refused:?}");
        assert!(!classify_status(&Status::unavailable("KMS Decrypt: throttled")).message.contains("enclave not running"));
    }

    #[test]
    fn application_failure_carries_type_and_message() {
        let af = classify_status(&Status::data_loss("tag mismatch")).into_application_failure();
        assert_eq!(af.type_name(), Some(kind::ENVELOPE_TAMPERED));
        assert!(af.is_non_retryable());
        assert_eq!(af.to_string(), "tag mismatch");
    }
}
