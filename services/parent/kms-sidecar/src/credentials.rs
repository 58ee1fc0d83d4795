//! The parent instance role's temporary credentials, handed to the enclave.
//!
//! Why the enclave gets them: it signs its own KMS requests, so the sidecar never forms
//! (and could not alter) a request. The credentials are the parent's own, so handing
//! them to the enclave reveals nothing the parent does not have; what protects the key
//! is the key policy (only an attested enclave image gets the TSK, wrapped to its key).
//!
//! Where they come from: the standard AWS chain (environment, profile, and on EC2 the
//! instance role through IMDSv2), as any AWS program on the parent gets them.

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use enclavemesh_proto::Refusal;
use enclavemesh_proto::v1::CredentialsResponse;
use tonic::Status;

use crate::kms_error::environment_hint;

/// The credential chain of this host.
#[derive(Debug, Clone)]
pub struct CredentialSource {
    provider: Option<SharedCredentialsProvider>,
}

impl CredentialSource {
    /// The default chain for `region` (environment, profile, IMDSv2).
    pub async fn from_environment(region: &str) -> Self {
        let cfg = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        CredentialSource { provider: cfg.credentials_provider() }
    }

    /// Current credentials, or a refusal naming why there are none and the fix.
    pub async fn current(&self) -> Result<CredentialsResponse, Status> {
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| Refusal::KmsUnavailable.status("kms-sidecar has no AWS credential provider configured"))?;
        let creds = provider.provide_credentials().await.map_err(|e| {
            let chain = enclavemesh_transport::error_chain(&e);
            let hint = environment_hint(&chain).unwrap_or(
                "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (dev: source \
                 .dev/credentials/instance.env), or on EC2 attach the instance role and enable IMDSv2",
            );
            tracing::warn!(error = %chain, "no AWS credentials for the enclave");
            Refusal::KmsUnavailable.status(format!("kms-sidecar: {hint} ({chain})"))
        })?;
        let expires = creds
            .expiry()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(CredentialsResponse {
            access_key_id: creds.access_key_id().to_string(),
            secret_access_key: creds.secret_access_key().to_string(),
            session_token: creds.session_token().unwrap_or_default().to_string(),
            expires_unix_secs: expires,
        })
    }
}
