//! The emulator's ciphertext blob format (what `CiphertextBlob` contains).
//!
//! Real KMS blobs are opaque and carry the key id so `Decrypt` can work without `KeyId`;
//! ours do the same in a documented, versioned layout:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "EMK\x01"  (emulator KMS blob, format version 1)
//! 4       1     key id length L (36 for a UUID)
//! 5       L     key id, ASCII (bare UUID, not an ARN)
//! 5+L     12    AES-GCM nonce (random)
//! 17+L    n+16  AES-256-GCM(key material, nonce, plaintext) with tag
//! ```
//!
//! AAD = bytes 0..5+L (magic, length, key id) followed by the canonical encryption
//! context: pairs sorted by key, each as u32-BE length + UTF-8 key, u32-BE length + value.
//! So a blob cannot be re-labelled to another key, and decrypting with a different
//! encryption context fails authentication (InvalidCiphertextException), as with KMS.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

pub const MAGIC: &[u8; 4] = b"EMK\x01";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Largest blob the emulator will look at (KMS: 6144 bytes).
pub const MAX_BLOB_LEN: usize = 6144;

/// Why a blob could not be opened (turned into InvalidCiphertextException messages).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error(
        "ciphertext blob is not an emulator blob (bad magic/version); it was not produced by this kms-emulator (a \
            real AWS KMS blob, or base64 decoded twice?)"
    )]
    NotOurs,
    #[error("ciphertext blob is truncated or malformed")]
    Truncated,
    #[error("ciphertext blob is {0} bytes, larger than the KMS limit of 6144")]
    TooLarge(usize),
    #[error(
        "ciphertext blob failed authentication: it was modified, or the EncryptionContext differs from the one used \
            to encrypt"
    )]
    Authentication,
}

/// Canonical AAD bytes of an encryption context.
fn context_aad(ctx: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in ctx {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Seals `plaintext` under `material` for `key_id`.
pub fn seal(key_id: &str, material: &[u8; 32], plaintext: &[u8], ctx: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = Vec::with_capacity(5 + key_id.len() + NONCE_LEN);
    header.extend_from_slice(MAGIC);
    // Key ids are UUIDs we generate (36 bytes), so this never truncates.
    header.push(key_id.len().min(255) as u8);
    header.extend_from_slice(&key_id.as_bytes()[..key_id.len().min(255)]);
    let mut aad = header.clone();
    aad.extend_from_slice(&context_aad(ctx));
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(material.into());
    // Encryption with a valid 32-byte key and in-range lengths cannot fail.
    let ct = cipher.encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: &aad }).unwrap_or_default();
    let mut out = header;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Reads the key id out of a blob without decrypting (Decrypt without KeyId).
pub fn key_id_of(blob: &[u8]) -> Result<String, BlobError> {
    if blob.len() > MAX_BLOB_LEN {
        return Err(BlobError::TooLarge(blob.len()));
    }
    if blob.len() < 5 || &blob[..4] != MAGIC {
        return Err(BlobError::NotOurs);
    }
    let l = blob[4] as usize;
    if blob.len() < 5 + l + NONCE_LEN + TAG_LEN {
        return Err(BlobError::Truncated);
    }
    String::from_utf8(blob[5..5 + l].to_vec()).map_err(|_| BlobError::Truncated)
}

/// Opens a blob with the material of the key named in it.
pub fn open(blob: &[u8], material: &[u8; 32], ctx: &BTreeMap<String, String>) -> Result<Zeroizing<Vec<u8>>, BlobError> {
    let key_id = key_id_of(blob)?;
    let header_len = 5 + key_id.len();
    let mut aad = blob[..header_len].to_vec();
    aad.extend_from_slice(&context_aad(ctx));
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&blob[header_len..header_len + NONCE_LEN]);
    let ct = &blob[header_len + NONCE_LEN..];
    let cipher = Aes256Gcm::new(material.into());
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| BlobError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let m = [7u8; 32];
        let mut ctx = BTreeMap::new();
        ctx.insert("purpose".to_string(), "tsk".to_string());
        let b = seal("1234abcd-12ab-34cd-56ef-1234567890ab", &m, b"hello", &ctx);
        assert_eq!(key_id_of(&b).unwrap(), "1234abcd-12ab-34cd-56ef-1234567890ab");
        assert_eq!(open(&b, &m, &ctx).unwrap().as_slice(), b"hello");
        assert_eq!(open(&b, &m, &BTreeMap::new()), Err(BlobError::Authentication));
        assert_eq!(open(&b, &[8u8; 32], &ctx), Err(BlobError::Authentication));
        for i in 0..b.len() {
            let mut t = b.clone();
            t[i] ^= 1;
            assert!(open(&t, &m, &ctx).is_err(), "byte {i}");
        }
        for cut in 0..b.len() {
            assert!(open(&b[..cut], &m, &ctx).is_err());
        }
    }
}
