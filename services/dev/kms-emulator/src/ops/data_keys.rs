//! Data keys and randomness: GenerateDataKey (with and without plaintext),
//! GenerateDataKeyPair (with and without the private key in plaintext), GenerateRandom.
//! Each secret leaves through [`super::crypto::release`]: wrapped to an attested enclave
//! when the request carries a Recipient, else in plaintext.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::crypto::{recipient_into, release};
use super::{Op, base_context, lock};
use crate::audit::AuditRecord;
use crate::blob;
use crate::emulator::{Caller, Emulator};
use crate::error::KmsError;
use crate::request::{encryption_context, opt_str, opt_u64, req_str};

/// KMS limit on data keys / random bytes.
const MAX_RANDOM_BYTES: u64 = 1024;

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

/// What every key-generating operation checks first: the request's context and
/// Recipient (only the plaintext-returning variants take one), the key, its state, and
/// the policy. Returns the locked store, the key id, the context and the Recipient.
struct Authorized<'a> {
    store: std::sync::MutexGuard<'a, crate::state::Store>,
    key_id: String,
    context: std::collections::BTreeMap<String, String>,
    recipient: Option<crate::recipient::VerifiedRecipient>,
}

fn authorize_generation<'a>(
    em: &'a Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
    op: Op,
    with_plaintext: bool,
) -> Result<Authorized<'a>, KmsError> {
    let context = encryption_context(req)?;
    let mut ctx = base_context(caller, &context);
    let recipient = if with_plaintext {
        recipient_into(em, req, audit, &mut ctx)?
    } else if req.get("Recipient").is_some_and(|v| !v.is_null()) {
        return Err(KmsError::validation(format!(
            "{} does not take a Recipient (nothing is returned in plaintext)",
            op.name()
        )));
    } else {
        None
    };
    let store = lock(em)?;
    let key_id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = &store.keys[&key_id];
    audit.key_arn = Some(key.arn.clone());
    em.check_usable(key)?;
    em.authorize(&store, key, op.name(), caller, &ctx, recipient.as_ref())?;
    Ok(Authorized { store, key_id, context, recipient })
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
    let Authorized { store, key_id, context, recipient } =
        authorize_generation(em, caller, req, audit, op, with_plaintext)?;
    let key = &store.keys[&key_id];
    let mut data_key = Zeroizing::new(vec![0u8; len]);
    rand::rngs::OsRng.fill_bytes(&mut data_key);
    let blob = blob::seal(&key.key_id, &key.material, &data_key, &context);
    let mut out = json!({ "CiphertextBlob": B64.encode(blob), "KeyId": key.arn });
    if with_plaintext {
        release(&mut out, recipient.as_ref(), &data_key)?;
    }
    Ok(out)
}

/// A fresh asymmetric key pair of `spec`: (public key SPKI DER, private key PKCS#8 DER).
fn key_pair(spec: &str) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), KmsError> {
    use p384::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    let encoding = |e: String| KmsError::internal(format!("encoding a {spec} key pair: {e}"));
    match spec {
        "ECC_NIST_P384" => {
            let sk = p384::SecretKey::random(&mut rand::rngs::OsRng);
            let public = sk.public_key().to_public_key_der().map_err(|e| encoding(e.to_string()))?.into_vec();
            let private = sk.to_pkcs8_der().map_err(|e| encoding(e.to_string()))?.as_bytes().to_vec();
            Ok((public, Zeroizing::new(private)))
        }
        "RSA_2048" => {
            let sk = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| encoding(e.to_string()))?;
            let public = sk.to_public_key().to_public_key_der().map_err(|e| encoding(e.to_string()))?.into_vec();
            let private = sk.to_pkcs8_der().map_err(|e| encoding(e.to_string()))?.as_bytes().to_vec();
            Ok((public, Zeroizing::new(private)))
        }
        other => Err(KmsError::validation(format!(
            "KeyPairSpec {other} is not supported by the kms-emulator; use RSA_2048 or ECC_NIST_P384"
        ))),
    }
}

/// GenerateDataKeyPair: a key pair whose private key is returned encrypted under the KMS
/// key, and (with plaintext) also in plaintext, or wrapped to an attested enclave.
pub(super) fn generate_data_key_pair(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
    with_plaintext: bool,
) -> Result<Value, KmsError> {
    let op = if with_plaintext { Op::GenerateDataKeyPair } else { Op::GenerateDataKeyPairWithoutPlaintext };
    let spec = req_str(req, "KeyPairSpec")?;
    let Authorized { store, key_id, context, recipient } =
        authorize_generation(em, caller, req, audit, op, with_plaintext)?;
    let key = &store.keys[&key_id];
    let (public, private) = key_pair(spec)?;
    let blob = blob::seal(&key.key_id, &key.material, &private, &context);
    let mut out = json!({
        "PrivateKeyCiphertextBlob": B64.encode(blob),
        "PublicKey": B64.encode(public),
        "KeyId": key.arn,
        "KeyPairSpec": spec,
    });
    if with_plaintext {
        release(&mut out, recipient.as_ref(), &private)?;
        if let Some(p) = out.as_object_mut().and_then(|o| o.remove("Plaintext")) {
            out["PrivateKeyPlaintext"] = p;
        }
    }
    Ok(out)
}

/// GenerateRandom is not key-scoped: real KMS authorizes it with the caller's identity
/// (IAM) policy only. A Recipient is still verified, and wraps the bytes.
pub(super) fn generate_random(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    em.authorize_unscoped(Op::GenerateRandom, caller)?;
    let n =
        opt_u64(req, "NumberOfBytes")?.ok_or_else(|| KmsError::validation("NumberOfBytes is required (1..1024)"))?;
    if !(1..=MAX_RANDOM_BYTES).contains(&n) {
        return Err(KmsError::validation(format!("NumberOfBytes {n} is out of range 1..1024")));
    }
    let mut ctx = base_context(caller, &std::collections::BTreeMap::new());
    let recipient = recipient_into(em, req, audit, &mut ctx)?;
    let mut bytes = Zeroizing::new(vec![0u8; n as usize]);
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut out = json!({});
    release(&mut out, recipient.as_ref(), &bytes)?;
    Ok(out)
}
