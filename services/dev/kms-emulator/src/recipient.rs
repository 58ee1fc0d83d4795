//! The `Recipient` parameter: verify the enclave's attestation document, expose its
//! measurements as policy condition keys, and wrap the response for its public key.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use enclavemesh_attestation::{AttestationDocument, TrustAnchor, Verifier, VerifyError};
use serde_json::{Value, json};

use crate::error::{ErrorKind, KmsError};
use crate::policy::RequestContext;

/// The only key-encryption algorithm KMS offers for recipients.
pub const RSAES_OAEP_SHA_256: &str = "RSAES_OAEP_SHA_256";

/// Condition key for the enclave image measurement.
pub const PCR0_KEY: &str = "kms:RecipientAttestation:PCR0";
/// Same value as PCR0 (the image SHA-384), under its other KMS name.
pub const IMAGE_SHA384_KEY: &str = "kms:RecipientAttestation:ImageSha384";

/// A verified `Recipient`.
#[derive(Debug)]
pub struct VerifiedRecipient {
    pub doc: AttestationDocument,
    pub pcr0_hex: String,
    pub public_key: Vec<u8>,
    /// Accepted in the qemu-unsigned test mode (no signature to check): the audit says so.
    pub unsigned: bool,
}

impl VerifiedRecipient {
    /// Adds `kms:RecipientAttestation:*` keys (PCR0, ImageSha384, PCR1..PCR8 present).
    pub fn add_to_context(&self, ctx: &mut RequestContext) {
        ctx.insert(PCR0_KEY, self.pcr0_hex.clone());
        ctx.insert(IMAGE_SHA384_KEY, self.pcr0_hex.clone());
        for i in 1..=8u16 {
            if let Some(h) = self.doc.pcr_hex(i) {
                ctx.insert(&format!("kms:RecipientAttestation:PCR{i}"), h);
            }
        }
    }

    /// `additionalEventData.recipient` as CloudTrail writes it.
    pub fn audit(&self, alg: &str) -> Value {
        let mut v = json!({
            "attestationDocumentModuleId": self.doc.module_id,
            "attestationDocumentEnclaveImageDigest": self.pcr0_hex,
            "attestationDocumentEnclavePCR0": self.pcr0_hex,
            "keyEncryptionAlgorithm": alg,
        });
        if self.unsigned {
            v["attestationTrust"] = json!("qemu-unsigned: NOT signed, accepted in the emulator's QEMU test mode");
        }
        for i in 1..=8u16 {
            if let Some(h) = self.doc.pcr_hex(i) {
                v[format!("attestationDocumentEnclavePCR{i}")] = json!(h);
            }
        }
        v
    }

    /// `CiphertextForRecipient` (base64) for `plaintext`.
    pub fn wrap(&self, plaintext: &[u8]) -> Result<String, KmsError> {
        enclavemesh_recipient::wrap_for_recipient(&self.public_key, plaintext).map(|der| B64.encode(der)).map_err(|e| {
            KmsError::validation(format!(
                "cannot encrypt to the attestation document's public_key: {e}; it must be an RSA (2048-4096) \
                        SubjectPublicKeyInfo DER, e.g. EphemeralKeyPair::public_key_der()"
            ))
        })
    }
}

/// Verification settings taken from the emulator config.
#[derive(Debug, Clone)]
pub struct RecipientPolicy {
    pub anchor: TrustAnchor,
    pub allow_debug: bool,
    pub max_age: Duration,
}

/// Reads and verifies `req.Recipient` if present. Returns the algorithm too.
pub fn parse(req: &Value, settings: &RecipientPolicy) -> Result<Option<(VerifiedRecipient, String)>, KmsError> {
    let Some(r) = req.get("Recipient").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let alg = match r.get("KeyEncryptionAlgorithm") {
        None | Some(Value::Null) => RSAES_OAEP_SHA_256.to_string(),
        Some(Value::String(s)) if s == RSAES_OAEP_SHA_256 => s.clone(),
        Some(other) => {
            return Err(KmsError::validation(format!(
                "Recipient.KeyEncryptionAlgorithm {other} is not supported; the only valid value is \
                    {RSAES_OAEP_SHA_256}"
            )));
        }
    };
    let doc_b64 = r.get("AttestationDocument").and_then(Value::as_str).ok_or_else(|| {
        KmsError::validation(
            "Recipient.AttestationDocument is missing: pass the NSM attestation document (base64 in JSON) whose \
                public_key the response should be encrypted to",
        )
    })?;
    let doc_bytes = B64
        .decode(doc_b64)
        .map_err(|e| KmsError::validation(format!("Recipient.AttestationDocument is not valid base64 ({e})")))?;
    let doc = Verifier::new(settings.anchor.clone())
        .max_age(settings.max_age)
        .allow_debug(settings.allow_debug)
        .verify(&doc_bytes)
        .map_err(verify_error)?;
    let pcr0_hex = doc.pcr_hex(0).ok_or_else(|| {
        KmsError::validation("the attestation document has no PCR0; it was not produced by a Nitro NSM")
    })?;
    let public_key = doc.public_key.clone().ok_or_else(|| {
        KmsError::validation(
            "the attestation document has no public_key, so KMS cannot encrypt CiphertextForRecipient to the \
                enclave; request the document from the NSM with public_key = the RSA SPKI DER of the enclave's \
                ephemeral key (EphemeralKeyPair::public_key_der())",
        )
    })?;
    Ok(Some((VerifiedRecipient { doc, pcr0_hex, public_key, unsigned: settings.anchor.is_unsigned() }, alg)))
}

/// Structural problems are ValidationException; trust failures are AccessDeniedException.
fn verify_error(e: VerifyError) -> KmsError {
    let kind = match e {
        VerifyError::TooLarge { .. } | VerifyError::Malformed(_) | VerifyError::MissingField(_) => {
            ErrorKind::Validation
        }
        _ => ErrorKind::AccessDenied,
    };
    KmsError::new(kind, format!("Recipient.AttestationDocument was rejected ({}): {e}", e.kind()))
}
