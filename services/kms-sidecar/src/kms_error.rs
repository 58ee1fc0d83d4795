//! Turning KMS/SDK failures into gRPC statuses a person can act on.
//!
//! The field's most common complaint about enclave tooling is an opaque
//! "non-200 from KMS: 400". Here every failure keeps KMS's own error type and
//! message, and transport failures say which endpoint could not be reached.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use tonic::{Code, Status};

/// Maps a KMS SDK error to a status whose message names the KMS error type, its message
/// and the endpoint; the code tells the caller whether retrying can help.
pub fn to_status<E, R>(op: &str, endpoint: &str, err: SdkError<E, R>) -> Status
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let kind = e.code().unwrap_or("UnknownKmsError");
            let msg = e.message().unwrap_or("no message");
            let code = match kind {
                "AccessDeniedException" => Code::PermissionDenied,
                "NotFoundException" => Code::NotFound,
                "InvalidCiphertextException" | "IncorrectKeyException" | "ValidationException"
                | "InvalidKeyUsageException" => Code::InvalidArgument,
                "DisabledException" | "KMSInvalidStateException" => Code::FailedPrecondition,
                "KMSInternalException" | "DependencyTimeoutException" | "KeyUnavailableException" => {
                    Code::Unavailable
                }
                "ThrottlingException" | "LimitExceededException" => Code::ResourceExhausted,
                _ => Code::Unknown,
            };
            Status::new(code, format!("KMS {op} failed: {kind}: {msg}"))
        }
        SdkError::TimeoutError(_) => Status::deadline_exceeded(format!(
            "KMS {op} timed out talking to {endpoint}; check network reachability of KMS from the parent"
        )),
        SdkError::DispatchFailure(df) => {
            let detail = if df.is_io() {
                "connection failed"
            } else if df.is_timeout() {
                "timed out"
            } else {
                "dispatch failed"
            };
            Status::unavailable(format!(
                "KMS {op}: cannot reach {endpoint} ({detail}: {}). Is the KMS endpoint (or kms-emulator in dev) running, \
                 and are credentials available (IMDSv2 on EC2)?",
                source_chain(&err)
            ))
        }
        _ => Status::unavailable(format!("KMS {op} failed talking to {endpoint}: {}", source_chain(&err))),
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}
