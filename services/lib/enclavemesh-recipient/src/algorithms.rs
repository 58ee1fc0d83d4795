//! The algorithm profile (OIDs, OAEP parameters, recipient identifier) shared by wrap and
//! unwrap, so both sides cannot drift apart.

use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5911, rfc5912};
use der::{Any, Decode, Encode};
use rsa::pkcs1::RsaOaepParams;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoRef};

use crate::RecipientError;

/// Largest plaintext we wrap. KMS itself never returns more than 4 KiB (Decrypt) or
/// 1 KiB (GenerateRandom / data keys); the slack is for tests and future use.
pub const MAX_PLAINTEXT_LEN: usize = 16 * 1024;

/// Largest CMS message we parse: bounds memory/CPU on hostile input.
pub const MAX_CMS_LEN: usize = 64 * 1024;

pub(crate) const OID_ENVELOPED_DATA: ObjectIdentifier = rfc5911::ID_ENVELOPED_DATA;
pub(crate) const OID_DATA: ObjectIdentifier = rfc5911::ID_DATA;
pub(crate) const OID_AES_256_CBC: ObjectIdentifier = rfc5911::ID_AES_256_CBC;
pub(crate) const OID_RSAES_OAEP: ObjectIdentifier = rfc5912::ID_RSAES_OAEP;
pub(crate) const OID_RSA_ENCRYPTION: ObjectIdentifier = rfc5912::RSA_ENCRYPTION;
pub(crate) const OID_SHA_256: ObjectIdentifier = rfc5912::ID_SHA_256;
pub(crate) const OID_MGF_1: ObjectIdentifier = rfc5912::ID_MGF_1;

/// AES-256 key length.
pub(crate) const CEK_LEN: usize = 32;
/// AES block / CBC IV length.
pub(crate) const IV_LEN: usize = 16;

/// `AlgorithmIdentifier` for id-RSAES-OAEP with SHA-256 / MGF1-SHA-256 / empty label.
pub(crate) fn oaep_sha256_algorithm() -> Result<AlgorithmIdentifierOwned, RecipientError> {
    let params = RsaOaepParams::new::<Sha256>().to_der()?;
    Ok(AlgorithmIdentifierOwned { oid: OID_RSAES_OAEP, parameters: Some(Any::from_der(&params)?) })
}

/// Accepts only RSAES-OAEP whose hash and MGF1 hash are SHA-256 and whose label is empty
/// (the only `KeyEncryptionAlgorithm` KMS offers for recipients).
pub(crate) fn check_oaep_sha256(alg: &AlgorithmIdentifierOwned) -> Result<(), RecipientError> {
    if alg.oid != OID_RSAES_OAEP {
        return Err(RecipientError::UnsupportedAlgorithm(alg.oid));
    }
    let params = alg.parameters.as_ref().ok_or(RecipientError::UnsupportedAlgorithm(alg.oid))?.to_der()?;
    let params = RsaOaepParams::from_der(&params)?;
    if params.hash.oid != OID_SHA_256 {
        return Err(RecipientError::UnsupportedAlgorithm(params.hash.oid));
    }
    if params.mask_gen.oid != OID_MGF_1 {
        return Err(RecipientError::UnsupportedAlgorithm(params.mask_gen.oid));
    }
    match params.mask_gen.parameters {
        Some(inner) if inner.oid == OID_SHA_256 => {}
        Some(inner) => return Err(RecipientError::UnsupportedAlgorithm(inner.oid)),
        None => return Err(RecipientError::UnsupportedAlgorithm(params.mask_gen.oid)),
    }
    let label = params.p_source.parameters.map(|p| p.value().len()).unwrap_or(0);
    if label != 0 {
        return Err(RecipientError::UnsupportedAlgorithm(params.p_source.oid));
    }
    Ok(())
}

/// Subject key identifier of an RSA SubjectPublicKeyInfo: RFC 7093 §2 method 1, the
/// leftmost 160 bits of SHA-256 over the `subjectPublicKey` BIT STRING contents.
///
/// Used as the CMS `rid`, so the enclave can tell "addressed to another key" apart from
/// "corrupted" before spending an RSA decryption.
pub fn subject_key_identifier(spki_der: &[u8]) -> Result<Vec<u8>, RecipientError> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der)?;
    if spki.algorithm.oid != OID_RSA_ENCRYPTION {
        return Err(RecipientError::UnsupportedAlgorithm(spki.algorithm.oid));
    }
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    Ok(digest[..20].to_vec())
}
