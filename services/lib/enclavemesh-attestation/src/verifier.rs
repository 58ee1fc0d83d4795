//! The one attestation-document verifier used by every party (KMS emulator, agents, tools),
//! so dev mode and production share the exact same checks; only the pinned root differs.
//!
//! Order of checks: size bound, COSE/CBOR decoding, chain to the pinned root (byte-equal
//! `cabundle[0]`, each certificate signed by the previous, validity at `now`), ES384 signature
//! by the leaf key, freshness, nonce, debug-mode refusal, expected PCRs.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p384::ecdsa::{Signature, signature::Verifier as _};

use crate::anchor::TrustAnchor;
use crate::certs;
use crate::document::{AttestationDocument, decode_cose, decode_qemu_unsigned};
use crate::error::VerifyError;

/// Default maximum document age.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// Default tolerance for a document timestamp ahead of the verifier's clock.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Verifies Nitro attestation documents against one pinned root. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier {
    anchor: TrustAnchor,
    max_age: Duration,
    max_clock_skew: Duration,
    allow_debug: bool,
    nonce: Option<Vec<u8>>,
    pcrs: BTreeMap<u16, Vec<u8>>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Verifier {
    /// A verifier pinning `anchor`; max age 5 minutes, 30 s future skew, debug enclaves refused.
    pub fn new(anchor: TrustAnchor) -> Self {
        Verifier {
            anchor,
            max_age: DEFAULT_MAX_AGE,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            allow_debug: false,
            nonce: None,
            pcrs: BTreeMap::new(),
        }
    }

    /// Maximum age of a document (now - timestamp).
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }

    /// How far a document timestamp may be ahead of the verifier's clock.
    pub fn max_clock_skew(mut self, d: Duration) -> Self {
        self.max_clock_skew = d;
        self
    }

    /// Accept debug-mode enclaves (all-zero PCRs). Dev only: their memory is readable by the parent.
    pub fn allow_debug(mut self, yes: bool) -> Self {
        self.allow_debug = yes;
        self
    }

    /// Require the document's nonce to equal `n`.
    pub fn expect_nonce(mut self, n: Vec<u8>) -> Self {
        self.nonce = Some(n);
        self
    }

    /// Require PCR `index` to equal `value` (may be called for several indexes).
    pub fn expect_pcr(mut self, index: u16, value: Vec<u8>) -> Self {
        self.pcrs.insert(index, value);
        self
    }

    /// The pinned root.
    pub fn anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// Verify at the current system time.
    pub fn verify(&self, cose: &[u8]) -> Result<AttestationDocument, VerifyError> {
        self.verify_at(cose, SystemTime::now())
    }

    /// Verify as if the current time were `now` (tests, re-checking archived documents).
    pub fn verify_at(&self, cose: &[u8], now: SystemTime) -> Result<AttestationDocument, VerifyError> {
        let doc = if self.anchor.is_unsigned() {
            // QEMU test mode: exactly QEMU's unsigned shape, nothing to verify a signature with.
            decode_qemu_unsigned(cose)?
        } else {
            let decoded = decode_cose(cose)?;
            let doc = decoded.document;
            let leaf = self.check_chain(&doc, now)?;
            // Signature: raw r||s over the Sig_structure, by the leaf certificate's key.
            let key = certs::p384_key(&leaf).map_err(VerifyError::UntrustedChain)?;
            let sig = Signature::from_slice(&decoded.signature).map_err(|_| VerifyError::BadSignature)?;
            key.verify(&decoded.to_be_signed, &sig).map_err(|_| VerifyError::BadSignature)?;
            doc
        };

        self.check_time(&doc, now)?;

        if let Some(expected) = &self.nonce
            && doc.nonce.as_deref() != Some(expected.as_slice())
        {
            return Err(VerifyError::NonceMismatch);
        }

        if !self.allow_debug && doc.is_debug_mode() {
            return Err(VerifyError::DebugMode);
        }

        for (index, expected) in &self.pcrs {
            let actual = doc.pcr(*index);
            if actual != Some(expected.as_slice()) {
                return Err(VerifyError::PcrMismatch {
                    index: *index,
                    expected_hex: hex::encode(expected),
                    actual_hex: actual.map_or_else(|| "<absent>".to_owned(), hex::encode),
                });
            }
        }
        Ok(doc)
    }

    /// Chain: cabundle[0] is the pinned root (byte-equal), each next certificate is signed by
    /// the previous, the leaf by the last; all valid at `now`. Returns the parsed leaf.
    fn check_chain(&self, doc: &AttestationDocument, now: SystemTime) -> Result<x509_cert::Certificate, VerifyError> {
        let untrusted = VerifyError::UntrustedChain;
        let root_der = doc.cabundle.first().ok_or(VerifyError::MissingField("cabundle[0]"))?;
        if root_der.as_slice() != self.anchor.der() {
            let got = TrustAnchor::Der(root_der.clone()).describe();
            return Err(untrusted(format!(
                "cabundle[0] is {got}, not the pinned root {}; the document comes from another CA \
                 (a dev/simulated NSM verified against the AWS root, the reverse, or a forgery) - \
                 configure the matching trust anchor",
                self.anchor.describe()
            )));
        }
        let mut chain = Vec::with_capacity(doc.cabundle.len() + 1);
        for (i, der_bytes) in doc.cabundle.iter().enumerate() {
            let cert = certs::parse(der_bytes).map_err(|e| untrusted(format!("cabundle[{i}]: {e}")))?;
            chain.push((cert, der_bytes.as_slice()));
        }
        let leaf = certs::parse(&doc.certificate).map_err(|e| untrusted(format!("leaf certificate: {e}")))?;
        chain.push((leaf, doc.certificate.as_slice()));

        for pair in chain.windows(2) {
            let (issuer, _) = &pair[0];
            let (child, child_der) = &pair[1];
            certs::verify_issued_by(child, child_der, issuer).map_err(untrusted)?;
        }
        for (cert, _) in &chain {
            certs::check_validity(cert, now).map_err(|(not_before, not_after)| VerifyError::CertificateNotValidAt {
                subject: certs::subject(cert),
                not_before,
                not_after,
                at: certs::fmt_time(now),
            })?;
        }
        chain.pop().map(|(leaf, _)| leaf).ok_or(VerifyError::MissingField("certificate"))
    }

    fn check_time(&self, doc: &AttestationDocument, now: SystemTime) -> Result<(), VerifyError> {
        let now_ms = millis(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        let ts = doc.timestamp_ms;
        if ts > now_ms {
            let ahead_ms = ts - now_ms;
            let max_skew_ms = millis(self.max_clock_skew);
            if ahead_ms > max_skew_ms {
                return Err(VerifyError::FromFuture { ahead_ms, max_skew_ms });
            }
            return Ok(());
        }
        let age_ms = now_ms - ts;
        let max_ms = millis(self.max_age);
        if age_ms > max_ms {
            return Err(VerifyError::Stale { age_ms, max_ms });
        }
        Ok(())
    }
}
