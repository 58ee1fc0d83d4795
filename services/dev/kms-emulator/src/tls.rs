//! The emulator serves HTTPS, as KMS does: a certificate for `kms.<region>.amazonaws.com`
//! (and `localhost`, `127.0.0.1` for clients on the host) issued by the dev CA.
//!
//! Why TLS in a dev stand-in: the enclave's KMS client terminates TLS itself and trusts
//! only the roots its image carries (the dev root in dev mode, the web PKI in production),
//! so the emulator must present a certificate that chain-verifies for the KMS hostname,
//! exactly like KMS. A parent that answers with anything else fails the handshake.

use std::sync::Arc;

use enclavemesh_attestation::DevCa;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::EmulatorError;

/// The hostname KMS answers on in `region`.
pub fn kms_hostname(region: &str) -> String {
    format!("kms.{region}.amazonaws.com")
}

/// A rustls server config (ring, TLS 1.2 and 1.3, HTTP/1.1 and h2 by ALPN) with a fresh
/// certificate from `ca` for the KMS hostname of `region`, `localhost` and 127.0.0.1.
pub fn server_config(ca: &DevCa, region: &str) -> Result<Arc<rustls::ServerConfig>, EmulatorError> {
    let host = kms_hostname(region);
    let cert = ca
        .issue_tls_server(&[&host, "localhost"], &[std::net::IpAddr::from([127, 0, 0, 1])])
        .map_err(|e| EmulatorError::Tls(format!("issuing the emulator's certificate: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = cert.chain_der.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pkcs8_der));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| EmulatorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| EmulatorError::Tls(format!("the emulator's certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
