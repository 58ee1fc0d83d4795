//! Trust anchors: the one root certificate a verifier pins, compared byte-for-byte with
//! `cabundle[0]` of every document.

use std::path::Path;

use crate::certs;
use crate::error::VerifyError;

/// The AWS Nitro Enclaves Root G1 certificate (DER), as published by AWS.
/// SHA-256 fingerprint 641A0321A3E244EFE456463195D606317ED7CDCC3C1756E09893F3C68F79BB5B
/// (checked by a unit test against the PEM shipped alongside).
pub const AWS_NITRO_ROOT_G1_DER: &[u8] = include_bytes!("certs/aws_nitro_enclaves_root_g1.der");

/// The same certificate in PEM, for tools that want to write it out.
pub const AWS_NITRO_ROOT_G1_PEM: &str = include_str!("certs/aws_nitro_enclaves_root_g1.pem");

/// Largest trust-anchor file accepted (a root certificate is well under 4 KiB).
const MAX_ANCHOR_FILE_BYTES: u64 = 64 * 1024;

/// The root the verifier pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustAnchor {
    /// Production: the AWS Nitro Enclaves Root G1 embedded in this crate.
    AwsNitroRootG1,
    /// Any other root given as DER (e.g. the dev CA root from `DevCa::root_der`).
    Der(Vec<u8>),
    /// TESTS ONLY: QEMU's emulated `nitro-enclave` machine, whose NSM does not sign. Its
    /// documents are accepted without signature or chain (nothing vouches for them: anyone
    /// can write one), while the PCRs, nonce, freshness and debug mode are still checked.
    /// Never a default: chosen only by the keyword `qemu-unsigned`, and it is the only
    /// anchor of its verifier, so it never stands beside the production root.
    QemuUnsigned,
}

/// The keyword that selects [`TrustAnchor::QemuUnsigned`] wherever an anchor is chosen.
pub const QEMU_UNSIGNED_KEYWORD: &str = "qemu-unsigned";

impl TrustAnchor {
    /// Load a root certificate from a DER or PEM (`-----BEGIN CERTIFICATE-----`) file.
    pub fn from_file(path: &Path) -> Result<Self, VerifyError> {
        let bad = |reason: String| VerifyError::BadTrustAnchor { path: path.display().to_string(), reason };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        if meta.len() > MAX_ANCHOR_FILE_BYTES {
            return Err(bad(format!("file is {} bytes, larger than any root certificate", meta.len())));
        }
        let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        Self::from_bytes(&bytes).map_err(bad)
    }

    /// A trust-anchor argument: `aws` (or `aws-nitro-root-g1`), `qemu-unsigned`, or the
    /// path of a root certificate file.
    pub fn from_arg(arg: &str) -> Result<Self, VerifyError> {
        match arg {
            "aws" | "aws-nitro-root-g1" => Ok(TrustAnchor::AwsNitroRootG1),
            QEMU_UNSIGNED_KEYWORD => Ok(TrustAnchor::QemuUnsigned),
            path => Self::from_file(Path::new(path)),
        }
    }

    /// Whether documents are accepted unsigned (QEMU test mode): callers say so in their output.
    pub fn is_unsigned(&self) -> bool {
        matches!(self, TrustAnchor::QemuUnsigned)
    }

    /// Parse a root certificate given as DER or PEM bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let trimmed = bytes.trim_ascii_start();
        let der_bytes = if trimmed.starts_with(b"-----BEGIN") {
            let (label, der_bytes) = der::pem::decode_vec(trimmed).map_err(|e| format!("invalid PEM: {e}"))?;
            if label != "CERTIFICATE" {
                return Err(format!("PEM label is '{label}', expected 'CERTIFICATE'"));
            }
            der_bytes
        } else {
            bytes.to_vec()
        };
        certs::parse(&der_bytes)?;
        if der_bytes == AWS_NITRO_ROOT_G1_DER {
            return Ok(TrustAnchor::AwsNitroRootG1);
        }
        Ok(TrustAnchor::Der(der_bytes))
    }

    /// DER bytes of the pinned root (empty for [`TrustAnchor::QemuUnsigned`], which has none).
    pub fn der(&self) -> &[u8] {
        match self {
            TrustAnchor::AwsNitroRootG1 => AWS_NITRO_ROOT_G1_DER,
            TrustAnchor::Der(d) => d,
            TrustAnchor::QemuUnsigned => &[],
        }
    }

    /// Short description for logs: the subject and SHA-256 fingerprint.
    pub fn describe(&self) -> String {
        use sha2::Digest;
        if self.is_unsigned() {
            return "NONE: qemu-unsigned test mode (QEMU's nitro-enclave machine; documents are not signed, \
                    so anyone can forge one)"
                .to_string();
        }
        let fp = hex::encode_upper(sha2::Sha256::digest(self.der()));
        match certs::parse(self.der()) {
            Ok(c) => format!("'{}' (sha256 {fp})", certs::subject(&c)),
            Err(_) => format!("<unparsable certificate> (sha256 {fp})"),
        }
    }
}
