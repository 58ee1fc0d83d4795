//! Turning KMS/SDK failures into gRPC statuses a person can act on.
//!
//! The field's most common complaint about enclave tooling is an opaque
//! "non-200 from KMS: 400". Here every failure keeps KMS's own error type and
//! message, and transport failures say which endpoint could not be reached.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use enclavemesh_proto::Refusal;
use tonic::Status;

/// The refusal for a KMS error type (`AccessDeniedException`, ...).
pub fn refusal_for(kms_error_type: &str) -> Refusal {
    match kms_error_type {
        "AccessDeniedException" => Refusal::KmsAccessDenied,
        "InvalidCiphertextException"
        | "IncorrectKeyException"
        | "ValidationException"
        | "InvalidKeyUsageException"
        | "NotFoundException" => Refusal::KmsInvalidCiphertext,
        "DisabledException" | "KMSInvalidStateException" | "KeyUnavailableException" => Refusal::KmsKeyUnusable,
        "KMSInternalException" | "DependencyTimeoutException" | "ThrottlingException" | "LimitExceededException" => {
            Refusal::KmsUnavailable
        }
        _ => Refusal::KmsBadResponse,
    }
}

/// Maps a KMS SDK error to a refusal whose message names the KMS error type, its message
/// and the endpoint; the kind tells the caller whether retrying can help.
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
            refusal_for(kind).status(format!("KMS {op} failed: {kind}: {msg}"))
        }
        SdkError::TimeoutError(_) => Refusal::KmsUnavailable.status(format!(
            "KMS {op} timed out talking to {endpoint}; check network reachability of KMS from the parent"
        )),
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
            if let Some(hint) = environment_hint(&enclavemesh_transport::error_chain(&err)) =>
        {
            Refusal::KmsUnavailable
                .status(format!("KMS {op} via {endpoint}: {hint} ({})", enclavemesh_transport::error_chain(&err)))
        }
        SdkError::DispatchFailure(df) => {
            let detail = if df.is_io() {
                "connection failed"
            } else if df.is_timeout() {
                "timed out"
            } else {
                "dispatch failed"
            };
            Refusal::KmsUnavailable.status(format!(
                "KMS {op}: cannot reach {endpoint} ({detail}: {}). Is the KMS endpoint (or kms-emulator in dev) \
                 running, \
                 and are credentials available (IMDSv2 on EC2)?",
                enclavemesh_transport::error_chain(&err)
            ))
        }
        _ => Refusal::KmsUnavailable
            .status(format!("KMS {op} failed talking to {endpoint}: {}", enclavemesh_transport::error_chain(&err))),
    }
}

/// The two parent-host misconfigurations that show up as a "dispatch failure": no usable
/// credentials (on EC2: the instance role through IMDSv2) and no CA bundle for TLS. Both
/// are otherwise easy to misread as "KMS is down". `None` when neither matches.
pub fn environment_hint(chain: &str) -> Option<&'static str> {
    let c = chain.to_ascii_lowercase();
    let tls = [
        "certificate",
        "unknownissuer",
        "unknown issuer",
        "no native root",
        "ca bundle",
        "root store",
        "tls handshake",
    ];
    if tls.iter().any(|w| c.contains(w)) {
        return Some(
            "TLS to KMS failed: the CA bundle is missing or unreadable on this host (no trusted root certificates). \
             Fix: install the CA certificates (dnf/yum install ca-certificates, or apt-get install ca-certificates; \
             update-ca-trust / update-ca-certificates), or point SSL_CERT_FILE at a PEM bundle; in a container, \
             copy /etc/ssl/certs into the image",
        );
    }
    let imds = ["imds", "169.254.169.254", "instance metadata", "ec2 metadata"];
    if imds.iter().any(|w| c.contains(w)) {
        return Some(
            "no AWS credentials: fetching the instance role from IMDSv2 (169.254.169.254) failed or timed out. \
             Fix: attach the instance profile role (aws ec2 describe-instances \
             --query 'Reservations[].Instances[].IamInstanceProfile'), \
             enable IMDSv2 (aws ec2 modify-instance-metadata-options --http-endpoint enabled --http-tokens required), \
             and in a container raise the hop limit (--http-put-response-hop-limit 2)",
        );
    }
    let creds = ["credential", "no credentials", "credentialsnotloaded"];
    if creds.iter().any(|w| c.contains(w)) {
        return Some(
            "no AWS credentials were found (env, profile, or the instance role through IMDSv2). \
             Fix: on EC2 attach the instance profile role and enable IMDSv2 (hop limit 2 in a container); \
             in dev start the sidecar with --kms-endpoint and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        );
    }
    None
}

#[cfg(test)]
mod hint_tests {
    use super::{environment_hint, refusal_for};
    use enclavemesh_proto::Refusal;

    #[test]
    fn kms_error_types_become_refusals() {
        assert_eq!(refusal_for("AccessDeniedException"), Refusal::KmsAccessDenied);
        assert_eq!(refusal_for("DisabledException"), Refusal::KmsKeyUnusable);
        assert_eq!(refusal_for("InvalidCiphertextException"), Refusal::KmsInvalidCiphertext);
        assert_eq!(refusal_for("ThrottlingException"), Refusal::KmsUnavailable);
        assert!(refusal_for("ThrottlingException").retryable() && !refusal_for("DisabledException").retryable());
        assert_eq!(refusal_for("SomethingNew"), Refusal::KmsBadResponse);
    }

    #[test]
    fn tls_imds_and_credentials_are_told_apart() {
        let tls = environment_hint("dispatch failure: io error: invalid peer certificate: UnknownIssuer").unwrap();
        assert!(tls.contains("CA bundle") && tls.contains("ca-certificates") && tls.contains("SSL_CERT_FILE"));
        let imds =
            environment_hint("failed to load credentials: error loading credentials from IMDS: timeout").unwrap();
        assert!(imds.contains("IMDSv2") && imds.contains("hop-limit"));
        let creds =
            environment_hint("an error occurred while loading credentials: the credential provider was not enabled")
                .unwrap();
        assert!(creds.contains("instance profile"));
        assert!(environment_hint("io error: Connection refused (os error 111)").is_none());
    }
}
