//! X.509 helpers shared by the verifier (chain checks) and the dev CA / simulator (issuance).
//!
//! Everything here is P-384 + ecdsa-with-SHA384, the only profile Nitro uses, so anything
//! else is rejected rather than half-supported.

use std::time::SystemTime;

use const_oid::db::rfc5912::ECDSA_WITH_SHA_384;
use der::{Decode, Encode, Header, Reader, SliceReader};
use p384::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey, signature::Verifier as _};
use p384::pkcs8::DecodePublicKey;
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use crate::error::NsmError;

/// Parse one DER certificate (no trailing bytes allowed).
pub(crate) fn parse(der_bytes: &[u8]) -> Result<Certificate, String> {
    Certificate::from_der(der_bytes).map_err(|e| format!("not a DER X.509 certificate: {e}"))
}

/// Subject as an RFC 4514 string, for messages.
pub(crate) fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

/// The exact `tbsCertificate` bytes as they appear in the certificate (what was signed).
/// Taken from the original encoding rather than re-encoded, so a verifier never depends on
/// the round-trip fidelity of the decoder.
fn tbs_bytes(cert_der: &[u8]) -> der::Result<&[u8]> {
    let mut reader = SliceReader::new(cert_der)?;
    let _outer = Header::decode(&mut reader)?;
    reader.tlv_bytes()
}

/// The certificate's subject public key as a P-384 ECDSA verifying key.
pub(crate) fn p384_key(cert: &Certificate) -> Result<VerifyingKey, String> {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("cannot re-encode subject public key of '{}': {e}", subject(cert)))?;
    VerifyingKey::from_public_key_der(&spki)
        .map_err(|e| format!("certificate '{}' does not carry a P-384 EC public key: {e}", subject(cert)))
}

/// Whether the certificate says it is a CA (basicConstraints cA = TRUE).
fn is_ca(cert: &Certificate) -> bool {
    cert.tbs_certificate.get::<BasicConstraints>().ok().flatten().map(|(_, bc)| bc.ca).unwrap_or(false)
}

/// Check that `child` (whose original DER is `child_der`) was issued and signed by `issuer`
/// with ecdsa-with-SHA384.
pub(crate) fn verify_issued_by(child: &Certificate, child_der: &[u8], issuer: &Certificate) -> Result<(), String> {
    let child_subject = subject(child);
    let issuer_subject = subject(issuer);
    if child.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(format!(
            "'{child_subject}' names issuer '{}' but the previous certificate is '{issuer_subject}'",
            child.tbs_certificate.issuer
        ));
    }
    if !is_ca(issuer) {
        return Err(format!(
            "'{issuer_subject}' is not a CA certificate (basicConstraints cA is not TRUE) but issued '{child_subject}'"
        ));
    }
    if child.signature_algorithm.oid != ECDSA_WITH_SHA_384 {
        return Err(format!(
            "'{child_subject}' is signed with algorithm {} instead of ecdsa-with-SHA384",
            child.signature_algorithm.oid
        ));
    }
    let key = p384_key(issuer)?;
    let sig_bytes = child
        .signature
        .as_bytes()
        .ok_or_else(|| format!("signature of '{child_subject}' is not a whole number of bytes"))?;
    let sig = Signature::from_der(sig_bytes)
        .map_err(|e| format!("signature of '{child_subject}' is not a DER ECDSA P-384 signature: {e}"))?;
    let tbs = tbs_bytes(child_der).map_err(|e| format!("cannot locate tbsCertificate of '{child_subject}': {e}"))?;
    key.verify(tbs, &sig)
        .map_err(|_| format!("signature of '{child_subject}' does not verify with the key of '{issuer_subject}'"))
}

/// RFC 3339 rendering of a point in time, for messages.
pub(crate) fn fmt_time(t: SystemTime) -> String {
    match der::DateTime::from_system_time(t) {
        Ok(dt) => dt.to_string(),
        Err(_) => format!("{t:?}"),
    }
}

/// `Err((not_before, not_after))` rendered as RFC 3339 when `now` is outside the validity period.
pub(crate) fn check_validity(cert: &Certificate, now: SystemTime) -> Result<(), (String, String)> {
    let validity = &cert.tbs_certificate.validity;
    let not_before = validity.not_before.to_system_time();
    let not_after = validity.not_after.to_system_time();
    if now < not_before || now > not_after {
        return Err((fmt_time(not_before), fmt_time(not_after)));
    }
    Ok(())
}

/// A random positive 16-byte serial number.
fn random_serial() -> Result<SerialNumber, NsmError> {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01; // positive, no leading zero octet
    SerialNumber::new(&bytes)
        .map_err(|e| NsmError::Crypto { context: "creating a serial number", reason: e.to_string() })
}

/// Validity from `not_before` to `not_after`.
pub(crate) fn validity(not_before: SystemTime, not_after: SystemTime) -> Result<Validity, NsmError> {
    let conv = |t: SystemTime| {
        Time::try_from(t)
            .map_err(|e| NsmError::Crypto { context: "encoding certificate validity", reason: e.to_string() })
    };
    Ok(Validity { not_before: conv(not_before)?, not_after: conv(not_after)? })
}

/// Parse an RFC 4514 name (constant strings of this crate).
pub(crate) fn name(s: &str) -> Result<Name, NsmError> {
    s.parse::<Name>()
        .map_err(|e| NsmError::Crypto { context: "parsing a certificate name", reason: format!("{s}: {e}") })
}

/// A TLS server leaf for `dns_names` and `ip_addrs` (subjectAltName, extendedKeyUsage
/// serverAuth), signed by `signer` as `issuer`, returning its DER.
pub(crate) fn issue_tls_server(
    issuer: Name,
    subject_key: &VerifyingKey,
    dns_names: &[&str],
    ip_addrs: &[std::net::IpAddr],
    validity: Validity,
    signer: &SigningKey,
) -> Result<Vec<u8>, NsmError> {
    use der::asn1::{Ia5String, OctetString};
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
    let crypto = |reason: String| NsmError::Crypto { context: "issuing a TLS certificate", reason };
    let mut alt: Vec<GeneralName> = Vec::new();
    for d in dns_names {
        alt.push(GeneralName::DnsName(Ia5String::new(d).map_err(|e| crypto(format!("{d}: {e}")))?));
    }
    for ip in ip_addrs {
        let bytes = match ip {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        alt.push(GeneralName::IpAddress(OctetString::new(bytes).map_err(|e| crypto(e.to_string()))?));
    }
    let subject = name(&format!("CN={}", dns_names.first().copied().unwrap_or("enclavemesh-dev-tls")))?;
    let spki = SubjectPublicKeyInfoOwned::from_key(*subject_key).map_err(|e| crypto(e.to_string()))?;
    let profile = Profile::Leaf { issuer, enable_key_agreement: false, enable_key_encipherment: false };
    let mut builder = CertificateBuilder::new(profile, random_serial()?, validity, subject, spki, signer)
        .map_err(|e| crypto(e.to_string()))?;
    builder.add_extension(&SubjectAltName(alt)).map_err(|e| crypto(e.to_string()))?;
    builder
        .add_extension(&ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_SERVER_AUTH]))
        .map_err(|e| crypto(e.to_string()))?;
    let cert = builder.build::<DerSignature>().map_err(|e| crypto(e.to_string()))?;
    cert.to_der().map_err(|e| crypto(e.to_string()))
}

/// Issue a certificate for `subject_key` signed by `signer`, returning its DER.
pub(crate) fn issue(
    profile: Profile,
    subject_name: Name,
    subject_key: &VerifyingKey,
    validity: Validity,
    signer: &SigningKey,
) -> Result<Vec<u8>, NsmError> {
    let crypto = |reason: String| NsmError::Crypto { context: "issuing a certificate", reason };
    let spki = SubjectPublicKeyInfoOwned::from_key(*subject_key).map_err(|e| crypto(e.to_string()))?;
    let builder = CertificateBuilder::new(profile, random_serial()?, validity, subject_name, spki, signer)
        .map_err(|e| crypto(e.to_string()))?;
    let cert = builder.build::<DerSignature>().map_err(|e| crypto(e.to_string()))?;
    cert.to_der().map_err(|e| crypto(e.to_string()))
}
