//! The one place that calls the AES-256-GCM implementation.
//!
//! Why isolated: the envelope format (12-byte nonce, ciphertext || 16-byte tag,
//! AAD from [`crate::aad`]) is fixed; which library computes it is a performance
//! and audit choice that should touch nothing else. A test decrypts with the
//! independent RustCrypto `aes-gcm` crate to pin the format across backends.
//!
//! Why `ring` and not RustCrypto `aes-gcm`: on this project's machines ring's
//! AES-GCM (BoringSSL's stitched AES-NI/VAES + carry-less-multiply assembly) runs
//! about 3-5x faster than `aes-gcm` 0.10 (which computes AES and GHASH in separate
//! passes) and at or above OpenSSL's own speed; see BENCH.md for the figures. ring
//! builds with only a C compiler (its assembly ships pre-generated) and is already
//! in the dependency graph through rustls.

use std::mem::MaybeUninit;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroize;

use crate::key::SubKey;
use crate::plaintext::{Plaintext, wipe_vec};

/// GCM nonce length (96 bits, the only size GCM handles without extra hashing).
pub const NONCE_LEN: usize = 12;
/// GCM tag length (128 bits, full-length tags only).
pub const TAG_LEN: usize = 16;

/// An expanded AES-256-GCM key (AES round keys + GHASH table) that is wiped when
/// dropped.
///
/// Why: ring does not zeroize its key schedule, and the round keys are as
/// sensitive as the subkey they were expanded from. ring keys are plain inline
/// data (no heap, no `Drop`), so overwriting the bytes after running any drop glue
/// removes them. Copies the compiler may have made while moving the value during
/// construction are beyond reach here, as with any Rust cryptography library.
///
/// This is one of the few places the workspace allows `unsafe`: wiping memory that a
/// safe type still owns needs a slot the compiler does not treat as a live value.
///
/// [`crate::subkey_cache`] keeps these (behind an `Arc`) so that a workflow's
/// envelopes reuse one expansion; the wipe then happens when the cache evicts the
/// entry and the last envelope using it is done.
pub(crate) struct ExpandedKey(MaybeUninit<LessSafeKey>);

impl ExpandedKey {
    pub(crate) fn new(key: &SubKey) -> Result<Self, ()> {
        let unbound = UnboundKey::new(&AES_256_GCM, &key.0).map_err(|_| ())?;
        Ok(ExpandedKey(MaybeUninit::new(LessSafeKey::new(unbound))))
    }

    #[allow(unsafe_code)] // reading the slot `new` initialised (see the type's docs)
    fn get(&self) -> &LessSafeKey {
        // SAFETY: `new` is the only constructor and always initialises the slot;
        // it stays initialised until `drop`.
        unsafe { self.0.assume_init_ref() }
    }
}

impl Drop for ExpandedKey {
    #[allow(unsafe_code)] // dropping the key in place before zeroing its bytes
    fn drop(&mut self) {
        // SAFETY: initialised since `new` (see `get`), and dropped exactly once here;
        // afterwards the slot is only overwritten, never read as a `LessSafeKey`.
        unsafe { self.0.assume_init_drop() };
        // `MaybeUninit<T>` may hold any bytes, so writing zeros over it is sound.
        self.0.zeroize();
        #[cfg(test)]
        wipe_probe::record(&self.0);
    }
}

/// Encrypts `plaintext` and returns `ciphertext || tag` (expanding `key` for this
/// one call).
pub(crate) fn encrypt(key: &SubKey, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ()> {
    encrypt_with(&ExpandedKey::new(key)?, nonce, aad, plaintext)
}

/// Encrypts `plaintext` under an already expanded key and returns `ciphertext || tag`.
///
/// One allocation of exactly `plaintext.len() + TAG_LEN` bytes, one copy of the
/// plaintext into it, encryption in place, the tag appended into the reserved room.
pub(crate) fn encrypt_with(
    key: &ExpandedKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, ()> {
    // Reserve room for the tag up front so appending it does not reallocate.
    let mut buf = Vec::with_capacity(plaintext.len().checked_add(TAG_LEN).ok_or(())?);
    buf.extend_from_slice(plaintext);
    match key.get().seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), &mut buf) {
        Ok(tag) => {
            buf.extend_from_slice(tag.as_ref());
            Ok(buf)
        }
        Err(_) => {
            // The buffer may still hold plaintext: wipe before dropping.
            wipe_vec(&mut buf);
            Err(())
        }
    }
}

/// Authenticates and decrypts `ciphertext || tag` into a self-wiping buffer.
///
/// Input shorter than a tag fails like a wrong tag. On failure the buffer (which
/// may hold unauthenticated plaintext) is wiped on drop.
pub(crate) fn decrypt(key: &SubKey, nonce: &[u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Result<Plaintext, ()> {
    decrypt_with(&ExpandedKey::new(key)?, nonce, aad, sealed)
}

/// [`decrypt`] under an already expanded key.
pub(crate) fn decrypt_with(
    key: &ExpandedKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Plaintext, ()> {
    // Defensive even though `open` checks the length first: never panic on input.
    let pt_len = sealed.len().checked_sub(TAG_LEN).ok_or(())?;
    // Exact capacity: a later reallocation would leave an unwiped plaintext copy.
    // The tag stays in the spare capacity after truncation; it is not secret, and
    // `Plaintext` wipes the whole capacity anyway.
    let mut out = Plaintext::with_capacity(sealed.len());
    let buf = out.vec_mut();
    buf.extend_from_slice(sealed);
    let opened =
        key.get().open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf).map_err(|_| ())?.len();
    debug_assert_eq!(opened, pt_len);
    buf.truncate(pt_len);
    Ok(out)
}

/// Test-only observation of [`ExpandedKey`]'s wipe: counts, per thread, the drops
/// after which every byte of the key slot read back as zero.
#[cfg(test)]
pub(crate) mod wipe_probe {
    use std::cell::Cell;
    use std::mem::MaybeUninit;

    use ring::aead::LessSafeKey;

    thread_local! {
        static WIPED: Cell<usize> = const { Cell::new(0) };
    }

    #[allow(unsafe_code)] // reading back the bytes `drop` just zeroed
    pub(super) fn record(slot: &MaybeUninit<LessSafeKey>) {
        // SAFETY: `zeroize` has just written every byte of the slot, so all
        // `size_of::<LessSafeKey>()` bytes are initialised `u8`s.
        let bytes =
            unsafe { std::slice::from_raw_parts(slot.as_ptr().cast::<u8>(), std::mem::size_of::<LessSafeKey>()) };
        if bytes.iter().all(|&b| b == 0) {
            WIPED.with(|w| w.set(w.get() + 1));
        }
    }

    /// Expanded keys dropped (and verified all-zero) on this thread so far.
    pub(crate) fn wiped() -> usize {
        WIPED.with(Cell::get)
    }
}
