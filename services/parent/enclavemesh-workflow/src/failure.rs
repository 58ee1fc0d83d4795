//! How an agent call's outcome becomes a step failure.
//!
//! The agent says why it refused in the status details ([`Refusal`]); that kind is the
//! failure, named by its one label, which is also the Temporal failure type. Only a status
//! that carries no refusal (nothing answered, the connection broke, a deadline passed, a
//! foreign server) is classified here from its gRPC code. Transient kinds are retried by
//! Temporal with the activity retry policy; every other kind is a verdict on the input,
//! so it fails the run at once (retrying a tampered envelope only repeats the refusal).

use enclavemesh_proto::Refusal;
use tonic::Code;

/// Temporal failure types (labels) that must never be retried: every non-retryable
/// [`Refusal`]. The activities already mark such failures non-retryable; the retry
/// policy lists them too, as a second guard.
pub fn non_retryable_types() -> impl Iterator<Item = &'static str> {
    enclavemesh_proto::refusal::ALL.into_iter().filter(|r| !r.retryable()).map(Refusal::label)
}

/// A classified call failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub kind: Refusal,
    pub message: String,
}

impl CallFailure {
    pub fn new(kind: Refusal, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// Whether Temporal should try again.
    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }
}

/// Fix hint for an agent that cannot be reached at all (nothing listens at its address):
/// the enclave is not running, or the bridge/socket in front of it is gone.
pub const ENCLAVE_NOT_RUNNING_HINT: &str = "enclave not running? check nitro-cli describe-enclaves and start it \
     (systemctl start enclavemesh-enclave@16 / @17, i.e. nitro-cli run-enclave); in dev: scripts/dev.sh up";

/// Appends [`ENCLAVE_NOT_RUNNING_HINT`] when `message` says the connection itself failed.
pub fn with_enclave_hint(message: String) -> String {
    let m = message.to_ascii_lowercase();
    let unreachable = [
        "connection refused",
        "no such file",
        "cannot connect",
        "connection reset",
        "tcp connect error",
        "transport error",
    ];
    if unreachable.iter().any(|w| m.contains(w)) && !message.contains(ENCLAVE_NOT_RUNNING_HINT) {
        format!("{message} ({ENCLAVE_NOT_RUNNING_HINT})")
    } else {
        message
    }
}

/// The kind of a status that carries no refusal, from its code alone.
fn kind_without_refusal(code: Code) -> Refusal {
    match code {
        // Transport and transient server conditions.
        Code::Unavailable | Code::Unknown | Code::Aborted | Code::Cancelled => Refusal::AgentUnavailable,
        Code::DeadlineExceeded => Refusal::AgentTimeout,
        Code::Unimplemented => Refusal::AgentUnimplemented,
        // tonic's own decode limit (OUT_OF_RANGE) or a foreign server's size refusal.
        Code::OutOfRange | Code::ResourceExhausted => Refusal::EnvelopeTooLarge,
        _ => Refusal::AgentError,
    }
}

/// Classifies a gRPC status from an agent call.
pub fn classify_status(status: &tonic::Status) -> CallFailure {
    let shown = if status.message().is_empty() {
        format!("agent returned {:?}", status.code())
    } else {
        status.message().to_string()
    };
    let kind = Refusal::of(status).unwrap_or_else(|| kind_without_refusal(status.code()));
    let message = if kind == Refusal::AgentUnavailable { with_enclave_hint(shown) } else { shown };
    CallFailure::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn the_refusal_in_the_details_is_the_kind_whatever_the_message_says() {
        for kind in enclavemesh_proto::refusal::ALL {
            // A message that would fool any substring guess.
            let f = classify_status(&kind.status("EnvelopeReplayed AccessDenied replay overloaded"));
            assert_eq!(f.kind, kind);
            assert_eq!(f.retryable(), kind.retryable());
        }
    }

    #[test]
    fn statuses_without_a_refusal_are_classified_by_code() {
        let cases = [
            (Status::unavailable("connection refused"), Refusal::AgentUnavailable),
            (Status::unknown("transport error"), Refusal::AgentUnavailable),
            (Status::deadline_exceeded("slow"), Refusal::AgentTimeout),
            (Status::unimplemented("no"), Refusal::AgentUnimplemented),
            (Status::out_of_range("decoded message length too large"), Refusal::EnvelopeTooLarge),
            (Status::data_loss("foreign server"), Refusal::AgentError),
            (Status::permission_denied("foreign server"), Refusal::AgentError),
        ];
        for (status, expected) in cases {
            assert_eq!(classify_status(&status).kind, expected, "{status:?}");
        }
    }

    #[test]
    fn an_unreachable_agent_gets_the_enclave_hint() {
        let refused = classify_status(&Status::unavailable("tcp connect error: Connection refused (os error 111)"));
        assert!(refused.retryable());
        assert!(
            refused.message.contains("enclave not running") && refused.message.contains("nitro-cli"),
            "{refused:?}"
        );
        let kms = classify_status(&Refusal::KmsUnavailable.status("KMS Decrypt: throttled"));
        assert!(!kms.message.contains("enclave not running"));
    }

    #[test]
    fn non_retryable_types_are_the_verdicts() {
        let types: Vec<_> = non_retryable_types().collect();
        assert!(types.contains(&"envelope_tampered") && types.contains(&"wrong_role"));
        assert!(!types.contains(&"agent_unavailable") && !types.contains(&"kms_unavailable"));
    }
}
