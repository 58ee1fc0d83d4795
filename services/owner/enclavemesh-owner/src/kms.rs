//! A KMS client for the data owner: its own credentials (the standard chain:
//! environment, profile, SSO, ...), its own region, and optionally an endpoint and a
//! trust bundle (dev: the kms-emulator at https://localhost:4599 under the dev CA).

use std::path::PathBuf;

use aws_config::BehaviorVersion;
use aws_sdk_kms::config::{Credentials, Region};

use crate::OwnerError;

/// Where the owner's KMS is.
#[derive(Debug, Clone, Default)]
pub struct KmsTarget {
    /// Endpoint override (dev: the kms-emulator); `None` = the region's KMS.
    pub endpoint: Option<String>,
    /// PEM bundle of roots to trust instead of the system's (dev: `.dev/dev-ca/root.pem`).
    pub ca_bundle: Option<PathBuf>,
    /// Region; `None` = the standard chain's (`AWS_REGION`, profile).
    pub region: Option<String>,
}

/// A client for `target`, signing with `credentials` or, when `None`, the standard chain's.
pub async fn client(target: &KmsTarget, credentials: Option<Credentials>) -> Result<aws_sdk_kms::Client, OwnerError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &target.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(c) = credentials {
        loader = loader.credentials_provider(c);
    }
    let shared = loader.load().await;
    let mut conf = aws_sdk_kms::config::Builder::from(&shared);
    if shared.region().is_none() {
        conf = conf.region(Region::new("us-east-1"));
    }
    if let Some(e) = &target.endpoint {
        conf = conf.endpoint_url(e);
    }
    if let Some(path) = &target.ca_bundle {
        use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
        let bad = |reason: String| OwnerError::CaBundle { path: path.display().to_string(), reason };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        if !pem.starts_with(b"-----BEGIN") {
            return Err(bad("not a PEM bundle (dev: .dev/dev-ca/root.pem)".into()));
        }
        let tls_context = TlsContext::builder()
            .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls_context)
            .build_https();
        conf = conf.http_client(http);
    }
    Ok(aws_sdk_kms::Client::from_conf(conf.build()))
}
