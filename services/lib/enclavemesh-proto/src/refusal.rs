//! The refusal vocabulary on the wire: [`Refusal`] in, and out of, a gRPC status.
//!
//! Why details and not text: a kind parsed out of a message string breaks the first time
//! someone rewords the message, and a client that guesses from the gRPC code alone cannot
//! tell a replay from an access refusal (both PERMISSION_DENIED). The kind travels as a
//! `RefusalDetail` inside the standard `google.rpc.Status` details, so it survives any
//! byte-level proxy (the vsock-bridge) and grpcurl shows it.

use prost::Message as _;
use tonic::Code;

pub use crate::v1::Refusal;
use crate::v1::RefusalDetail;

/// Type URL of the detail, as `google.protobuf.Any` names it.
pub const REFUSAL_DETAIL_TYPE_URL: &str = "type.googleapis.com/enclavemesh.v1.RefusalDetail";

/// Every kind a caller can see, in declaration order (without `Unspecified`).
pub const ALL: [Refusal; 27] = [
    Refusal::EnvelopeTampered,
    Refusal::EnvelopeMalformed,
    Refusal::UnsupportedFormat,
    Refusal::EnvelopeReplayed,
    Refusal::KeyIdMismatch,
    Refusal::UnknownKeyVersion,
    Refusal::EnvelopeTooLarge,
    Refusal::InvalidRequest,
    Refusal::InvalidInput,
    Refusal::WrongRole,
    Refusal::InputNotOwnerSealed,
    Refusal::NoOwnerKey,
    Refusal::HandoffRefused,
    Refusal::ManifestMismatch,
    Refusal::KmsAccessDenied,
    Refusal::KmsKeyUnusable,
    Refusal::KmsInvalidCiphertext,
    Refusal::KmsUnavailable,
    Refusal::KmsBadResponse,
    Refusal::AttestationUnavailable,
    Refusal::Overloaded,
    Refusal::Internal,
    Refusal::AgentUnavailable,
    Refusal::AgentTimeout,
    Refusal::AgentUnimplemented,
    Refusal::InvalidAgentResponse,
    Refusal::AgentError,
];

impl Refusal {
    /// The one snake_case label of this kind: in logs, span attributes (`error.kind`),
    /// metric labels, audit records and as the Temporal failure type.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Unspecified => "unspecified",
            Refusal::EnvelopeTampered => "envelope_tampered",
            Refusal::EnvelopeMalformed => "envelope_malformed",
            Refusal::UnsupportedFormat => "unsupported_format",
            Refusal::EnvelopeReplayed => "envelope_replayed",
            Refusal::KeyIdMismatch => "key_id_mismatch",
            Refusal::UnknownKeyVersion => "unknown_key_version",
            Refusal::EnvelopeTooLarge => "envelope_too_large",
            Refusal::InvalidRequest => "invalid_request",
            Refusal::InvalidInput => "invalid_input",
            Refusal::WrongRole => "wrong_role",
            Refusal::InputNotOwnerSealed => "input_not_owner_sealed",
            Refusal::NoOwnerKey => "no_owner_key",
            Refusal::HandoffRefused => "handoff_refused",
            Refusal::ManifestMismatch => "manifest_mismatch",
            Refusal::KmsAccessDenied => "kms_access_denied",
            Refusal::KmsKeyUnusable => "kms_key_unusable",
            Refusal::KmsInvalidCiphertext => "kms_invalid_ciphertext",
            Refusal::KmsUnavailable => "kms_unavailable",
            Refusal::KmsBadResponse => "kms_bad_response",
            Refusal::AttestationUnavailable => "attestation_unavailable",
            Refusal::Overloaded => "overloaded",
            Refusal::Internal => "internal",
            Refusal::AgentUnavailable => "agent_unavailable",
            Refusal::AgentTimeout => "agent_timeout",
            Refusal::AgentUnimplemented => "agent_unimplemented",
            Refusal::InvalidAgentResponse => "invalid_agent_response",
            Refusal::AgentError => "agent_error",
        }
    }

    /// The kind with this label, if any.
    pub fn from_label(label: &str) -> Option<Refusal> {
        ALL.into_iter().find(|r| r.label() == label)
    }

    /// The gRPC code a status of this kind carries: what a client that knows nothing of
    /// refusals can still branch on.
    pub fn code(self) -> Code {
        match self {
            Refusal::EnvelopeTampered => Code::DataLoss,
            Refusal::EnvelopeMalformed
            | Refusal::UnsupportedFormat
            | Refusal::InvalidRequest
            | Refusal::InvalidInput
            | Refusal::KmsInvalidCiphertext => Code::InvalidArgument,
            Refusal::EnvelopeReplayed
            | Refusal::KeyIdMismatch
            | Refusal::KmsAccessDenied
            | Refusal::InputNotOwnerSealed
            | Refusal::HandoffRefused
            | Refusal::ManifestMismatch => Code::PermissionDenied,
            Refusal::UnknownKeyVersion | Refusal::WrongRole | Refusal::KmsKeyUnusable | Refusal::NoOwnerKey => {
                Code::FailedPrecondition
            }
            Refusal::EnvelopeTooLarge | Refusal::Overloaded => Code::ResourceExhausted,
            Refusal::KmsUnavailable | Refusal::AttestationUnavailable | Refusal::AgentUnavailable => Code::Unavailable,
            Refusal::KmsBadResponse | Refusal::Internal | Refusal::InvalidAgentResponse => Code::Internal,
            Refusal::AgentTimeout => Code::DeadlineExceeded,
            Refusal::AgentUnimplemented => Code::Unimplemented,
            Refusal::Unspecified | Refusal::AgentError => Code::Unknown,
        }
    }

    /// Whether trying the same call again may succeed. Everything else is a verdict on
    /// the input: retrying would only repeat it (and a tampered envelope stays tampered).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Refusal::KmsUnavailable
                | Refusal::AttestationUnavailable
                | Refusal::Overloaded
                | Refusal::Internal
                | Refusal::AgentUnavailable
                | Refusal::AgentTimeout
        )
    }

    /// A status of this kind: its gRPC code, `message` for people, the kind in the details.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        let message = message.into();
        let detail = prost_types::Any {
            type_url: REFUSAL_DETAIL_TYPE_URL.to_string(),
            value: RefusalDetail { kind: self as i32 }.encode_to_vec(),
        };
        let rpc = tonic_types::Status { code: self.code() as i32, message: message.clone(), details: vec![detail] };
        tonic::Status::with_details(self.code(), message, rpc.encode_to_vec().into())
    }

    /// The kind a status carries in its details; `None` when it carries none (a
    /// transport failure, a foreign server) or something unreadable.
    pub fn of(status: &tonic::Status) -> Option<Refusal> {
        let details = status.details();
        if details.is_empty() || details.len() > MAX_DETAILS_BYTES {
            return None;
        }
        let rpc = tonic_types::Status::decode(details).ok()?;
        rpc.details
            .iter()
            .filter(|any| any.type_url == REFUSAL_DETAIL_TYPE_URL)
            .find_map(|any| RefusalDetail::decode(any.value.as_slice()).ok())
            .and_then(|d| Refusal::try_from(d.kind).ok())
            .filter(|r| *r != Refusal::Unspecified)
    }

    /// The same kind with a new message: for a program that passes on a refusal it
    /// received (adding where it came from) without changing what it means.
    pub fn restatus(status: &tonic::Status, message: impl Into<String>) -> tonic::Status {
        match Refusal::of(status) {
            Some(kind) => kind.status(message),
            None => tonic::Status::new(status.code(), message),
        }
    }
}

/// Details above this are not ours (one refusal encodes to well under 100 bytes).
const MAX_DETAILS_BYTES: usize = 4096;

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_proto_names_in_snake_case_and_unique() {
        for r in ALL {
            let proto = r.as_str_name().strip_prefix("REFUSAL_").unwrap().to_ascii_lowercase();
            assert_eq!(r.label(), proto);
            assert_eq!(Refusal::from_label(r.label()), Some(r));
        }
        let n = (0..100).filter_map(|i| Refusal::try_from(i).ok()).filter(|r| *r != Refusal::Unspecified).count();
        assert_eq!(n, ALL.len(), "ALL lists every kind the proto declares");
    }

    #[test]
    fn every_kind_survives_a_status_round_trip() {
        for r in ALL {
            let s = r.status(format!("refused: {r}"));
            assert_eq!(s.code(), r.code());
            assert_eq!(Refusal::of(&s), Some(r));
            // Through the wire form too: the trailers a proxy copies byte for byte.
            let headers = s.into_http::<()>().headers().clone();
            let back = tonic::Status::from_header_map(&headers).unwrap();
            assert_eq!(Refusal::of(&back), Some(r));
            assert_eq!(back.message(), format!("refused: {r}"));
        }
    }

    #[test]
    fn statuses_without_a_refusal_say_so() {
        assert_eq!(Refusal::of(&tonic::Status::data_loss("x")), None);
        assert_eq!(Refusal::of(&tonic::Status::with_details(Code::Internal, "x", vec![1, 2, 3].into())), None);
        let foreign = tonic_types::Status {
            code: 5,
            message: String::new(),
            details: vec![prost_types::Any { type_url: "type.googleapis.com/other.Thing".into(), value: vec![8, 1] }],
        };
        let s = tonic::Status::with_details(Code::NotFound, "x", foreign.encode_to_vec().into());
        assert_eq!(Refusal::of(&s), None);
    }

    #[test]
    fn restatus_keeps_the_kind_and_replaces_the_message() {
        let s = Refusal::restatus(&Refusal::KmsAccessDenied.status("KMS said no"), "decrypting the note: KMS said no");
        assert_eq!(
            (Refusal::of(&s), s.message()),
            (Some(Refusal::KmsAccessDenied), "decrypting the note: KMS said no")
        );
        let plain = Refusal::restatus(&tonic::Status::unavailable("down"), "sidecar: down");
        assert_eq!((Refusal::of(&plain), plain.code()), (None, Code::Unavailable));
    }

    #[test]
    fn only_transient_kinds_are_retryable() {
        let retryable: Vec<_> = ALL.into_iter().filter(|r| r.retryable()).map(Refusal::label).collect();
        assert_eq!(
            retryable,
            [
                "kms_unavailable",
                "attestation_unavailable",
                "overloaded",
                "internal",
                "agent_unavailable",
                "agent_timeout"
            ]
        );
    }
}
