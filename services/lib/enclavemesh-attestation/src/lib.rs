//! Nitro Enclaves attestation for Enclave Mesh.
//!
//! - [`Nsm`]: the NSM abstraction, with [`NitroNsm`] (real `/dev/nsm`) and [`SimulatedNsm`]
//!   (dev mode, documents in the exact real format, chained to a local [`DevCa`]).
//! - [`Verifier`]: the single verifier used everywhere; production pins
//!   [`TrustAnchor::AwsNitroRootG1`], dev mode pins the dev root. Same checks otherwise.
//!
//! Document format (as the real NSM): untagged COSE_Sign1 (tag 18 accepted), protected header
//! `{1: -35}` (ES384), payload CBOR map `module_id, digest="SHA384", timestamp (ms), pcrs
//! {u16: bstr}, certificate (DER leaf), cabundle [DER, root first], public_key?, user_data?,
//! nonce?`; signature raw r||s (96 bytes) over `["Signature1", protected, b"", payload]`.

mod anchor;
pub mod binding;
mod certs;
mod dev_ca;
mod document;
mod error;
mod nitro;
mod nsm;
mod simulated;
mod verifier;

#[cfg(test)]
mod tests;

pub use anchor::{AWS_NITRO_ROOT_G1_DER, AWS_NITRO_ROOT_G1_PEM, TrustAnchor};
pub use dev_ca::{DEV_CA_DIR, DEV_INTERMEDIATE_SUBJECT, DEV_ROOT_SUBJECT, DevCa, TlsServerCert};
pub use document::{AttestationDocument, MAX_PCRS};
pub use error::{NsmError, VerifyError};
pub use nitro::{NSM_DEVICE, NitroNsm};
pub use nsm::Nsm;
pub use simulated::{
    SimulatedMeasurements, SimulatedNsm, measure_file, pcr8_of_signing_certificate, read_certificate,
    read_signing_certificate,
};
pub use verifier::{DEFAULT_MAX_AGE, DEFAULT_MAX_CLOCK_SKEW, Verifier};

/// Largest `user_data`, `nonce` or `public_key` the NSM accepts (each).
pub const MAX_FIELD_BYTES: usize = 1024;

/// Largest attestation document accepted before any parsing. A real document with all three
/// optional fields at their maximum is about 8 KiB.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
