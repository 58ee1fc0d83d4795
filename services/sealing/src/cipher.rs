//! The one place that calls the AES-256-GCM implementation.
//!
//! Why isolated: the envelope format (12-byte nonce, ciphertext || 16-byte tag,
//! AAD from [`crate::aad`]) is fixed; which library computes it is a performance
//! and audit choice (see BENCH.md) that should touch nothing else.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use zeroize::Zeroizing;

use crate::key::SubKey;

/// GCM nonce length (96 bits, the only size GCM handles without extra hashing).
pub const NONCE_LEN: usize = 12;
/// GCM tag length (128 bits, full-length tags only).
pub const TAG_LEN: usize = 16;

/// Encrypts `plaintext` and returns `ciphertext || tag`.
pub(crate) fn encrypt(
    key: &SubKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, ()> {
    let cipher = Aes256Gcm::new((&key.0).into());
    // Reserve room for the tag up front so pushing it does not reallocate.
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    match cipher.encrypt_in_place_detached(&Nonce::from(*nonce), aad, &mut buf) {
        Ok(tag) => {
            buf.extend_from_slice(&tag);
            Ok(buf)
        }
        Err(_) => {
            // The buffer still holds plaintext: wipe before dropping.
            zeroize::Zeroize::zeroize(&mut buf);
            Err(())
        }
    }
}

/// Authenticates and decrypts `ciphertext || tag` into a self-wiping buffer.
///
/// Input shorter than a tag fails like a wrong tag. On failure the (unauthenticated)
/// buffer is wiped on drop, so no half-decrypted bytes linger.
pub(crate) fn decrypt(
    key: &SubKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ()> {
    // Defensive even though `open` checks the length first: never panic on input.
    let ct_len = sealed.len().checked_sub(TAG_LEN).ok_or(())?;
    let (ct, tag) = sealed.split_at(ct_len);
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| ())?;
    let cipher = Aes256Gcm::new((&key.0).into());
    // Exact capacity: a later reallocation would leave an unwiped plaintext copy.
    let mut buf = Zeroizing::new(Vec::with_capacity(ct.len()));
    buf.extend_from_slice(ct);
    cipher
        .decrypt_in_place_detached(&Nonce::from(*nonce), aad, &mut buf, &Tag::from(tag))
        .map_err(|_| ())?;
    Ok(buf)
}
