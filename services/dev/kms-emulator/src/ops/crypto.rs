//! Operations on ciphertext: Encrypt, Decrypt, ReEncrypt, and DeriveSharedSecret (which a
//! symmetric key refuses), with the Recipient (attested enclave) path and the one place a
//! secret leaves KMS ([`release`]).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Op, base_context, lock};
use crate::audit::AuditRecord;
use crate::blob;
use crate::emulator::{Caller, Emulator};
use crate::error::{ErrorKind, KmsError};
use crate::policy::RequestContext;
use crate::recipient::{self, VerifiedRecipient};
use crate::request::{encryption_context, opt_blob, opt_str, req_str};
use crate::state::{Key, Store};

/// KMS limit on Encrypt plaintext.
const MAX_ENCRYPT_PLAINTEXT: usize = 4096;

pub(super) fn check_symmetric_default(req: &Value) -> Result<(), KmsError> {
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
    em.authorize(&store, key, Op::Encrypt.name(), caller, &base_context(caller, &ctx_map), None)?;
    let blob = blob::seal(&key.key_id, &key.material, &plaintext, &ctx_map);
    Ok(json!({
        "CiphertextBlob": B64.encode(blob),
        "KeyId": key.arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

/// Parses Recipient, records it in the audit event and adds its condition keys.
pub(super) fn recipient_into(
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
pub(super) fn release(out: &mut Value, recipient: Option<&VerifiedRecipient>, secret: &[u8]) -> Result<(), KmsError> {
    match recipient {
        Some(r) => out["CiphertextForRecipient"] = json!(r.wrap(secret)?),
        None => out["Plaintext"] = json!(B64.encode(secret)),
    }
    Ok(())
}

/// The key a ciphertext names, checked against the request's optional `KeyId` (KMS's
/// IncorrectKeyException when they differ).
fn blob_key<'s>(em: &Emulator, store: &'s Store, blob: &[u8], given: Option<&str>) -> Result<&'s Key, KmsError> {
    let blob_key = blob::key_id_of(blob).map_err(|e| KmsError::invalid_ciphertext(e.to_string()))?;
    let key = store.keys.get(&blob_key).ok_or_else(|| {
        KmsError::invalid_ciphertext(format!(
            "the ciphertext was encrypted under key {} which this emulator does not have (different --state-file, \
             or the key was created on another KMS)",
            em.key_arn(&blob_key)
        ))
    })?;
    if let Some(given) = given {
        let given_id = em.resolve(store, given)?;
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
    Ok(key)
}

pub(super) fn decrypt(em: &Emulator, caller: &Caller, req: &Value, audit: &mut AuditRecord) -> Result<Value, KmsError> {
    check_symmetric_default(req)?;
    let blob = opt_blob(req, "CiphertextBlob")?
        .filter(|b| !b.is_empty())
        .ok_or_else(|| KmsError::validation("CiphertextBlob is required"))?;
    let ctx_map = encryption_context(req)?;
    let mut ctx = base_context(caller, &ctx_map);
    let recipient = recipient_into(em, req, audit, &mut ctx)?;
    let store = lock(em)?;
    let key = blob_key(em, &store, &blob, opt_str(req, "KeyId")?)?;
    audit.key_arn = Some(key.arn.clone());
    em.check_usable(key)?;
    em.authorize(&store, key, Op::Decrypt.name(), caller, &ctx, recipient.as_ref())?;
    let plaintext =
        blob::open(&blob, &key.material, &ctx_map).map_err(|e| KmsError::invalid_ciphertext(e.to_string()))?;
    let mut out = json!({ "KeyId": key.arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT" });
    release(&mut out, recipient.as_ref(), &plaintext)?;
    Ok(out)
}

/// ReEncrypt: decrypts under the source key and encrypts under the destination without
/// returning the plaintext, so it needs `kms:ReEncryptFrom` on the source (it releases
/// the plaintext to KMS as Decrypt would) and `kms:ReEncryptTo` on the destination.
pub(super) fn re_encrypt(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    for field in ["SourceEncryptionAlgorithm", "DestinationEncryptionAlgorithm"] {
        if let Some(a) = opt_str(req, field)?
            && a != "SYMMETRIC_DEFAULT"
        {
            return Err(KmsError::validation(format!("{field} {a} is not valid for a symmetric key")));
        }
    }
    let blob = opt_blob(req, "CiphertextBlob")?
        .filter(|b| !b.is_empty())
        .ok_or_else(|| KmsError::validation("CiphertextBlob is required"))?;
    let source_ctx = context_field(req, "SourceEncryptionContext")?;
    let dest_ctx = context_field(req, "DestinationEncryptionContext")?;
    let store = lock(em)?;
    let source = blob_key(em, &store, &blob, opt_str(req, "SourceKeyId")?)?;
    let dest_id = em.resolve(&store, req_str(req, "DestinationKeyId")?)?;
    let dest = &store.keys[&dest_id];
    audit.key_arn = Some(source.arn.clone());
    em.check_usable(source)?;
    em.check_usable(dest)?;
    em.authorize(&store, source, "ReEncryptFrom", caller, &base_context(caller, &source_ctx), None)?;
    em.authorize(&store, dest, "ReEncryptTo", caller, &base_context(caller, &dest_ctx), None)?;
    let plaintext =
        blob::open(&blob, &source.material, &source_ctx).map_err(|e| KmsError::invalid_ciphertext(e.to_string()))?;
    let out = blob::seal(&dest.key_id, &dest.material, &plaintext, &dest_ctx);
    Ok(json!({
        "CiphertextBlob": B64.encode(out),
        "SourceKeyId": source.arn,
        "KeyId": dest.arn,
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

/// An encryption context under another field name (ReEncrypt's source and destination).
fn context_field(req: &Value, field: &str) -> Result<BTreeMap<String, String>, KmsError> {
    let mut wrapped = serde_json::Map::new();
    if let Some(v) = req.get(field) {
        wrapped.insert("EncryptionContext".into(), v.clone());
    }
    encryption_context(&Value::Object(wrapped))
}

/// DeriveSharedSecret needs an asymmetric key agreement key (ECC_NIST_*, KeyUsage
/// KEY_AGREEMENT); the emulator's keys are all SYMMETRIC_DEFAULT, so it answers what KMS
/// answers for such a key, after checking the caller may ask at all.
pub(super) fn derive_shared_secret(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    let mut ctx = base_context(caller, &BTreeMap::new());
    let recipient = recipient_into(em, req, audit, &mut ctx)?;
    let store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = &store.keys[&id];
    audit.key_arn = Some(key.arn.clone());
    em.authorize(&store, key, Op::DeriveSharedSecret.name(), caller, &ctx, recipient.as_ref())?;
    Err(KmsError::new(
        ErrorKind::InvalidKeyUsage,
        format!(
            "{} key usage is ENCRYPT_DECRYPT which is not valid for DeriveSharedSecret (it needs an ECC key with \
             KeyUsage KEY_AGREEMENT; the kms-emulator has only SYMMETRIC_DEFAULT keys)",
            key.arn
        ),
    ))
}
