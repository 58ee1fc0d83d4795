//! The credentials the enclave signs its KMS requests with: the parent instance role's,
//! from the kms-sidecar (`GetCredentials`), refreshed before they expire.
//!
//! They are the parent's own, so nothing secret flows to the enclave here; what a hostile
//! parent could do with this channel is hand out other credentials, which changes only
//! which principal KMS sees, and the key policy, not the parent, decides what that
//! principal may receive (never a plaintext key).

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use enclavemesh_proto::v1::CredentialsRequest;

use crate::sidecar::SidecarClient;

#[derive(Clone)]
pub struct SidecarCredentials {
    pub client: SidecarClient,
}

impl std::fmt::Debug for SidecarCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SidecarCredentials")
    }
}

impl SidecarCredentials {
    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let resp = self
            .client
            .clone()
            .get_credentials(CredentialsRequest {})
            .await
            .map_err(|s| CredentialsError::provider_error(format!("kms-sidecar GetCredentials: {}", s.message())))?
            .into_inner();
        if resp.access_key_id.is_empty() || resp.secret_access_key.is_empty() {
            return Err(CredentialsError::invalid_configuration("the kms-sidecar handed out empty credentials"));
        }
        let expiry = u64::try_from(resp.expires_unix_secs)
            .ok()
            .filter(|s| *s > 0)
            .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        let token = (!resp.session_token.is_empty()).then_some(resp.session_token);
        Ok(Credentials::new(resp.access_key_id, resp.secret_access_key, token, expiry, "kms-sidecar"))
    }
}

impl ProvideCredentials for SidecarCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.fetch())
    }
}
