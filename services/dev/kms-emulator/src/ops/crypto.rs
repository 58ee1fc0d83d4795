//! Cryptographic operations: Encrypt, Decrypt, GenerateDataKey (with and without
//! plaintext) and GenerateRandom, with the Recipient (attested enclave) path.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Op, base_context, lock};
use crate::audit::AuditRecord;
use crate::blob;
use crate::emulator::{Caller, Emulator};
use crate::error::{ErrorKind, KmsError};
use crate::policy::RequestContext;
use crate::recipient::{self, VerifiedRecipient};
use crate::request::{encryption_context, opt_blob, opt_str, opt_u64, req_str};

/// KMS limit on Encrypt plaintext.
const MAX_ENCRYPT_PLAINTEXT: usize = 4096;
/// KMS limit on data keys / random bytes.
const MAX_RANDOM_BYTES: u64 = 1024;

fn check_symmetric_default(req: &Value) -> Result<(), KmsError> {
    match opt_str(req, "EncryptionAlgorithm")? {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(a) => Err(KmsError::validation(format!(
            "EncryptionAlgorithm {a} is not valid for a symmetric key; use SYMMETRIC_DEFAULT"
        ))),
    }
}

pub(super) fn encrypt(em: &Emulator, caller: &Caller, req: &Value, audit: &mut AuditRecord) -> Result<Value, KmsError> {
    check_symmetric_default(req)?;
    let plaintext = Zeroizing::new(opt_blob(req, "Plaintext")?.unwrap_or_default());
    if plaintext.is_empty() || plaintext.len() > MAX_ENCRYPT_PLAINTEXT {
        return Err(KmsError::validation(format!(
            "Plaintext is {} bytes; KMS Encrypt takes 1 to 4096 bytes (encrypt larger data locally under a data key \
                from GenerateDataKey)",
            plaintext.len()
        )));
    }
    let ctx_map = encryption_context(req)?;
    let store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = &store.keys[&id];
    audit.key_arn = Some(key.arn.clone());
    em.check_usable(key)?;
    em.authorize(key, Op::Encrypt, caller, &base_context(em, &ctx_map), None)?;
    let blob = blob::seal(&key.key_id, &key.material, &plaintext, &ctx_map);
    Ok(json!({
        "CiphertextBlob": B64.encode(blob),
        "KeyId": key.arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

/// Parses Recipient, records it in the audit event and adds its condition keys.
fn recipient_into(
    em: &Emulator,
    req: &Value,
    audit: &mut AuditRecord,
    ctx: &mut RequestContext,
) -> Result<Option<VerifiedRecipient>, KmsError> {
    match recipient::parse(req, &em.recipient)? {
        Some((r, alg)) => {
            audit.recipient = Some(r.audit(&alg));
            r.add_to_context(ctx);
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

/// How a secret leaves KMS: wrapped to the attested enclave's key when the request
/// carried a Recipient (`CiphertextForRecipient`, and never `Plaintext`), else in
/// plaintext. The one place Decrypt, GenerateDataKey and GenerateRandom decide it.
fn release(out: &mut Value, recipient: Option<&VerifiedRecipient>, secret: &[u8]) -> Result<(), KmsError> {
    match recipient {
        Some(r) => out["CiphertextForRecipient"] = json!(r.wrap(secret)?),
        None => out["Plaintext"] = json!(B64.encode(secret)),
    }
    Ok(())
}

pub(super) fn decrypt(em: &Emulator, caller: &Caller, req: &Value, audit: &mut AuditRecord) -> Result<Value, KmsError> {
    check_symmetric_default(req)?;
    let blob = opt_blob(req, "CiphertextBlob")?
        .filter(|b| !b.is_empty())
        .ok_or_else(|| KmsError::validation("CiphertextBlob is required"))?;
    let blob_key = blob::key_id_of(&blob).map_err(|e| KmsError::invalid_ciphertext(e.to_string()))?;
    let ctx_map = encryption_context(req)?;
    let mut ctx = base_context(em, &ctx_map);
    let recipient = recipient_into(em, req, audit, &mut ctx)?;
    let store = lock(em)?;
    let key = store.keys.get(&blob_key).ok_or_else(|| {
        KmsError::invalid_ciphertext(format!(
            "the ciphertext was encrypted under key {} which this emulator does not have (different --state-file, \
                or the key was created on another KMS)",
            em.key_arn(&blob_key)
        ))
    })?;
    audit.key_arn = Some(key.arn.clone());
    if let Some(given) = opt_str(req, "KeyId")? {
        let given_id = em.resolve(&store, given)?;
        if given_id != blob_key {
            return Err(KmsError::new(
                ErrorKind::IncorrectKey,
                format!(
                    "The key ID in the request ({given} -> {}) does not identify the KMS key that encrypted the \
                        ciphertext ({}). Pass that key, or omit KeyId",
                    em.key_arn(&given_id),
                    key.arn
                ),
            ));
        }
    }
    em.check_usable(key)?;
    em.authorize(key, Op::Decrypt, caller, &ctx, recipient.as_ref())?;
    let plaintext =
        blob::open(&blob, &key.material, &ctx_map).map_err(|e| KmsError::invalid_ciphertext(e.to_string()))?;
    let mut out = json!({ "KeyId": key.arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT" });
    release(&mut out, recipient.as_ref(), &plaintext)?;
    Ok(out)
}

fn data_key_len(req: &Value) -> Result<usize, KmsError> {
    let spec = opt_str(req, "KeySpec")?;
    let n = opt_u64(req, "NumberOfBytes")?;
    match (spec, n) {
        (Some(_), Some(_)) => Err(KmsError::validation("pass either KeySpec or NumberOfBytes, not both")),
        (None, None) => Err(KmsError::validation(
            "Please specify either number of bytes or key spec (KeySpec AES_256 for an AES-256 data key)",
        )),
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (Some(s), None) => Err(KmsError::validation(format!("KeySpec {s} is invalid; use AES_256 or AES_128"))),
        (None, Some(n)) if (1..=MAX_RANDOM_BYTES).contains(&n) => Ok(n as usize),
        (None, Some(n)) => Err(KmsError::validation(format!("NumberOfBytes {n} is out of range 1..1024"))),
    }
}

pub(super) fn generate_data_key(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
    with_plaintext: bool,
) -> Result<Value, KmsError> {
    let op = if with_plaintext { Op::GenerateDataKey } else { Op::GenerateDataKeyWithoutPlaintext };
    let len = data_key_len(req)?;
    let ctx_map = encryption_context(req)?;
    let mut ctx = base_context(em, &ctx_map);
    let recipient = if with_plaintext {
        recipient_into(em, req, audit, &mut ctx)?
    } else if req.get("Recipient").is_some_and(|v| !v.is_null()) {
        return Err(KmsError::validation(
            "GenerateDataKeyWithoutPlaintext does not take a Recipient (nothing is returned in plaintext)",
        ));
    } else {
        None
    };
    let store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = &store.keys[&id];
    audit.key_arn = Some(key.arn.clone());
    em.check_usable(key)?;
    em.authorize(key, op, caller, &ctx, recipient.as_ref())?;
    let mut data_key = Zeroizing::new(vec![0u8; len]);
    rand::rngs::OsRng.fill_bytes(&mut data_key);
    let blob = blob::seal(&key.key_id, &key.material, &data_key, &ctx_map);
    let mut out = json!({ "CiphertextBlob": B64.encode(blob), "KeyId": key.arn });
    if with_plaintext {
        release(&mut out, recipient.as_ref(), &data_key)?;
    }
    Ok(out)
}

/// GenerateRandom is not key-scoped: real KMS authorizes it with IAM policies only, and
/// the emulator has no IAM, so it is always allowed (a Recipient is still verified).
pub(super) fn generate_random(em: &Emulator, req: &Value, audit: &mut AuditRecord) -> Result<Value, KmsError> {
    let n =
        opt_u64(req, "NumberOfBytes")?.ok_or_else(|| KmsError::validation("NumberOfBytes is required (1..1024)"))?;
    if !(1..=MAX_RANDOM_BYTES).contains(&n) {
        return Err(KmsError::validation(format!("NumberOfBytes {n} is out of range 1..1024")));
    }
    let mut ctx = RequestContext::default();
    let recipient = recipient_into(em, req, audit, &mut ctx)?;
    let mut bytes = Zeroizing::new(vec![0u8; n as usize]);
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut out = json!({});
    release(&mut out, recipient.as_ref(), &bytes)?;
    Ok(out)
}
