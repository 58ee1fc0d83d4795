//! KMS, called by the enclave itself.
//!
//! The enclave runs aws-sdk-kms: it signs its own requests (with the parent role's
//! credentials, [`credentials`]), and its HTTPS runs over the parent's tunnel with TLS
//! that starts and ends here ([`http`], [`tls`]), for the endpoint of the key its image
//! pins ([`pin`]). Every Decrypt names that key, carries the encryption context the
//! ciphertext was made with, and asks for the answer as `CiphertextForRecipient` to this
//! enclave's attested key; the answer's key id is checked against the pin.
//!
//! What a hostile parent can do here: refuse or delay the tunnel (the agent waits, then
//! exits naming the cause), send it elsewhere (TLS fails: nothing is released), or hand
//! out a TSK ciphertext of its own making (KMS refuses it for the encryption context, or
//! the key pin refuses it). It never sees a plaintext key, because none is ever returned
//! outside TLS, and none is returned in plaintext at all.

pub mod credentials;
pub mod http;
pub mod pin;
pub mod tls;
pub mod tunnel;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Region, StalledStreamProtectionConfig};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyEncryptionMechanism, RecipientInfo};
use enclavemesh_proto::Refusal;
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::identity::EnclaveIdentity;
use crate::retry::Transient;
use crate::sidecar::SidecarClient;
use pin::KeyPin;
use tls::KmsTrust;

/// Why a KMS call on the enclave's behalf failed.
#[derive(Debug, thiserror::Error)]
pub enum KmsCallError {
    #[error(
        "TLS to KMS ({host}) failed: {reason}. This image trusts {trust}, and an answer that does not verify is not \
         KMS's: the parent's kms-sidecar sends the tunnel somewhere other than KMS (check its --allow/--connect-to; a \
         hostile parent looks exactly like this), or in dev the kms-emulator's certificate is from another dev CA \
         than this agent's --kms-trust"
    )]
    Tls { host: String, reason: String, trust: String },
    #[error("KMS {op} refused: {code}: {message}")]
    Refused { op: &'static str, code: String, message: String },
    #[error("KMS {op} answered for key {got}, but this image trusts only key {pinned}")]
    WrongKey { op: &'static str, got: String, pinned: String },
    #[error("KMS {op} could not be reached: {detail}")]
    Unavailable { op: &'static str, detail: String, transient: bool },
    #[error("KMS {op} answered unusably: {detail}")]
    BadResponse { op: &'static str, detail: String },
    #[error("attestation failed: {0}")]
    Attest(#[from] enclavemesh_attestation::NsmError),
    #[error("cannot open KMS's CiphertextForRecipient: {0}")]
    Unwrap(#[from] enclavemesh_recipient::RecipientError),
}

impl Transient for KmsCallError {
    fn transient(&self) -> bool {
        match self {
            KmsCallError::Unavailable { transient, .. } => *transient,
            KmsCallError::Refused { code, .. } => refusal_for(code).retryable(),
            _ => false,
        }
    }
}

impl KmsCallError {
    /// The refusal an Init answers with when this happens while opening its input.
    pub fn refusal(&self) -> Refusal {
        match self {
            KmsCallError::Tls { .. } | KmsCallError::BadResponse { .. } | KmsCallError::Unwrap(_) => {
                Refusal::KmsBadResponse
            }
            KmsCallError::Refused { code, .. } => refusal_for(code),
            KmsCallError::WrongKey { .. } => Refusal::KmsInvalidCiphertext,
            KmsCallError::Unavailable { .. } => Refusal::KmsUnavailable,
            KmsCallError::Attest(_) => Refusal::AttestationUnavailable,
        }
    }

    /// The KMS error type (`AccessDeniedException`, ...) when KMS refused.
    pub fn kms_code(&self) -> Option<&str> {
        match self {
            KmsCallError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The refusal for a KMS error type.
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

/// The enclave's KMS client: one endpoint (the pinned key's region), one trust anchor.
pub struct Kms {
    client: aws_sdk_kms::Client,
    host: String,
    trust: KmsTrust,
}

#[derive(Debug, thiserror::Error)]
pub enum KmsSetupError {
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error("KMS endpoint {host}: {reason}")]
    Endpoint { host: String, reason: String },
}

impl Kms {
    /// A client for the region of `pin`, through `sidecar`'s tunnel, trusting `trust`.
    pub fn new(sidecar: &SidecarClient, pin: &KeyPin, trust: &KmsTrust) -> Result<Kms, KmsSetupError> {
        let host = pin.endpoint_host();
        let tls = tls::client_config(trust)?;
        let http = http::TunnelHttpClient::new(sidecar.clone(), tls, &host)
            .map_err(|e| KmsSetupError::Endpoint { host: host.clone(), reason: e.to_string() })?;
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::v2026_01_12())
            .region(Region::new(pin.region.clone()))
            .endpoint_url(format!("https://{host}"))
            .credentials_provider(credentials::SidecarCredentials { client: sidecar.clone() })
            .http_client(http)
            // Retries are the agent's (crate::retry), with its own deadline.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        Ok(Kms { client: aws_sdk_kms::Client::from_conf(conf), host, trust: trust.clone() })
    }

    /// Decrypts `blob` under the pinned key with `context`, released to this enclave
    /// alone: the plaintext arrives as `CiphertextForRecipient` to the enclave's
    /// ephemeral key and is opened here, in memory that is wiped when dropped.
    pub async fn decrypt_for_enclave(
        &self,
        pin: &KeyPin,
        blob: &[u8],
        context: HashMap<String, String>,
        identity: &EnclaveIdentity,
    ) -> Result<Zeroizing<Vec<u8>>, KmsCallError> {
        const OP: &str = "Decrypt";
        // A fresh document per attempt: KMS checks its freshness.
        let doc = identity.attest_for_kms()?;
        let recipient = RecipientInfo::builder()
            .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
            .attestation_document(Blob::new(doc))
            .build();
        let out = self
            .client
            .decrypt()
            .key_id(&pin.arn)
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(Some(context))
            .recipient(recipient)
            .customize()
            .mutate_request(|req| {
                // The KMS span's context rides along, signed with the request.
                enclavemesh_telemetry::inject_with(|k, v| {
                    req.headers_mut().insert(k.to_owned(), v.to_owned());
                });
            })
            .send()
            .instrument(enclavemesh_telemetry::kms_span(OP))
            .await
            .map_err(|e| self.classify(OP, e))?;
        enclavemesh_telemetry::metrics::kms_call(OP, "ok");
        if out.key_id() != Some(pin.arn.as_str()) {
            return Err(KmsCallError::WrongKey {
                op: OP,
                got: out.key_id().unwrap_or("(none)").to_string(),
                pinned: pin.arn.clone(),
            });
        }
        if out.plaintext().is_some() {
            return Err(KmsCallError::BadResponse { op: OP, detail: "a Plaintext field despite the Recipient".into() });
        }
        let cfr = out
            .ciphertext_for_recipient()
            .ok_or_else(|| KmsCallError::BadResponse { op: OP, detail: "no CiphertextForRecipient".into() })?;
        Ok(identity.key.unwrap(cfr.as_ref())?)
    }

    /// Names what went wrong, from the SDK's error and its source chain.
    fn classify<E, R>(&self, op: &'static str, err: SdkError<E, R>) -> KmsCallError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let e = match &err {
            SdkError::ServiceError(se) => KmsCallError::Refused {
                op,
                code: se.err().code().unwrap_or("UnknownKmsError").to_string(),
                message: se.err().message().unwrap_or("no message").to_string(),
            },
            _ => {
                let chain = enclavemesh_transport::error_chain(&err);
                if let Some(reason) = tls::tls_failure(&err) {
                    KmsCallError::Tls { host: self.host.clone(), reason, trust: self.trust.to_string() }
                } else {
                    // A tunnel the sidecar refuses for its allowlist will not open on retry.
                    let not_allowed = find_tunnel_refusal(&err).is_some_and(|r| r == Refusal::InvalidRequest);
                    KmsCallError::Unavailable { op, detail: chain, transient: !not_allowed }
                }
            }
        };
        let outcome = match &e {
            KmsCallError::Refused { code, .. } => refusal_for(code).label(),
            other => other.refusal().label(),
        };
        enclavemesh_telemetry::metrics::kms_call(op, outcome);
        e
    }
}

/// The sidecar's refusal of a tunnel, if that is what an error chain holds.
fn find_tunnel_refusal(err: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<tunnel::TunnelRefused>() {
            return Some(Refusal::of(&t.status).unwrap_or(Refusal::KmsUnavailable));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<tunnel::TunnelRefused>())
        {
            return Some(Refusal::of(&t.status).unwrap_or(Refusal::KmsUnavailable));
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_error_types_become_refusals() {
        assert_eq!(refusal_for("AccessDeniedException"), Refusal::KmsAccessDenied);
        assert_eq!(refusal_for("DisabledException"), Refusal::KmsKeyUnusable);
        assert_eq!(refusal_for("InvalidCiphertextException"), Refusal::KmsInvalidCiphertext);
        assert_eq!(refusal_for("ThrottlingException"), Refusal::KmsUnavailable);
        assert!(refusal_for("ThrottlingException").retryable() && !refusal_for("DisabledException").retryable());
        assert_eq!(refusal_for("SomethingNew"), Refusal::KmsBadResponse);
    }
}
