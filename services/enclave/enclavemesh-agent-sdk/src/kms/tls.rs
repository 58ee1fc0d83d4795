//! TLS to KMS, inside the enclave: which roots the image trusts, and for which name.
//!
//! Why here: KMS's `CiphertextForRecipient` is a CMS envelope to the enclave's own public
//! key, which anyone can build around a key of their choosing; it is not authenticated.
//! What makes an answer KMS's is TLS to KMS, verified against roots the parent cannot
//! change (compiled into the image, so covered by PCR0) for the hostname of the key the
//! image pins, never one the parent names.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Which roots a TLS session to KMS must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsTrust {
    /// The public web PKI (Mozilla's roots, compiled into this binary): production.
    WebPki,
    /// One root certificate (DER or PEM file): dev mode's dev CA, which the
    /// kms-emulator's certificate chains to.
    Root(std::path::PathBuf),
}

impl std::str::FromStr for KmsTrust {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "webpki" => Ok(KmsTrust::WebPki),
            "" => Err("expected webpki or the path of a root certificate".into()),
            path => Ok(KmsTrust::Root(path.into())),
        }
    }
}

impl std::fmt::Display for KmsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KmsTrust::WebPki => f.write_str("the web PKI roots compiled into this image"),
            KmsTrust::Root(p) => write!(f, "the root certificate {}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the KMS trust root {path}: {reason}")]
    Root { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn root_store(trust: &KmsTrust) -> Result<RootCertStore, TlsSetupError> {
    match trust {
        KmsTrust::WebPki => Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
        KmsTrust::Root(path) => {
            let bad = |reason: String| TlsSetupError::Root { path: path.display().to_string(), reason };
            let der = enclavemesh_attestation::read_certificate(path, "the KMS trust root")
                .map_err(|e| bad(e.to_string()))?;
            let mut store = RootCertStore::empty();
            store.add(CertificateDer::from(der)).map_err(|e| bad(e.to_string()))?;
            Ok(store)
        }
    }
}

/// A client config: ring (never a process default), TLS 1.2/1.3, the chosen roots, no
/// ALPN (HTTP/1.1, as KMS's JSON protocol needs nothing more).
pub fn client_config(trust: &KmsTrust) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(trust)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The rustls error in an error's source chain, if TLS is what failed.
pub fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r.to_string());
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_parses_and_a_missing_root_is_named() {
        assert_eq!("webpki".parse::<KmsTrust>().unwrap(), KmsTrust::WebPki);
        assert_eq!("/x/root.der".parse::<KmsTrust>().unwrap(), KmsTrust::Root("/x/root.der".into()));
        assert!(client_config(&KmsTrust::WebPki).is_ok());
        let e = client_config(&KmsTrust::Root("/nonexistent/root.der".into())).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/root.der"), "{e}");
    }
}
