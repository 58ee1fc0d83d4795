//! Sealing state into, and opening it from, a [`SealedEnvelope`].

use enclavemesh_proto::v1::SealedEnvelope;

use crate::aad::AadFields;
use crate::cipher::{self, NONCE_LEN, TAG_LEN};
use crate::error::{OpenError, SealError};
use crate::header::{Expectation, FORMAT_VERSION, Limits, SealHeader};
use crate::keyring::KeyRing;
use crate::nonce;
use crate::plaintext::Plaintext;
use crate::subkey_cache::Purpose;

/// Encrypts `plaintext` under the ring's newest TSK version.
///
/// A fresh random nonce comes from the OS for every call (the OS's bytes, fetched
/// a few hundred at a time: see [`crate::nonce`]). Random (not counter)
/// nonces are safe here because each workflow has its own subkey, so the number of
/// seals per key stays many orders of magnitude below the 2^32 GCM guidance, and
/// they need no persisted counter state inside an enclave that can restart. The
/// subkey usually comes expanded from the ring's cache; it is the same key either
/// way (see [`crate::subkey_cache`] for the full argument).
///
/// Cost beyond the AEAD itself: 12 bytes from the nonce pool, an AAD on the stack, one allocation of
/// exactly `plaintext.len() + 16` bytes that the plaintext is copied into and
/// encrypted in place, and the envelope's header fields.
pub fn seal(ring: &KeyRing, header: &SealHeader, plaintext: &[u8]) -> Result<SealedEnvelope, SealError> {
    let version = ring.newest_version().ok_or_else(|| SealError::EmptyKeyRing { key_id: ring.key_id().to_owned() })?;

    let nonce: [u8; NONCE_LEN] = nonce::random_nonce().map_err(SealError::Rng)?;

    let aad = AadFields {
        format_version: FORMAT_VERSION,
        key_id: ring.key_id(),
        key_version: version,
        workflow_id: &header.workflow_id,
        step: header.step,
        agent: &header.agent,
    }
    .encode();

    let encrypt_failed = || SealError::Encrypt { len: plaintext.len() };
    let key = ring
        .subkey(version, &header.workflow_id, Purpose::Seal)
        .ok_or_else(|| SealError::EmptyKeyRing { key_id: ring.key_id().to_owned() })?
        .map_err(|()| encrypt_failed())?;
    let ciphertext = cipher::encrypt_with(&key, &nonce, aad.as_slice(), plaintext).map_err(|()| encrypt_failed())?;
    drop(key);

    Ok(SealedEnvelope {
        format_version: FORMAT_VERSION,
        key_id: ring.key_id().to_owned(),
        key_version: version,
        workflow_id: header.workflow_id.clone(),
        step: header.step,
        agent: header.agent.clone(),
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

/// Checks and decrypts `env`, returning the plaintext in a buffer that wipes itself.
///
/// Order of checks: size (before any allocation), format, shape, key id,
/// workflow/step expectation, key version, then GCM authentication. See
/// [`OpenError`] for what each failure means.
pub fn open(
    ring: &KeyRing,
    env: &SealedEnvelope,
    expect: &Expectation,
    limits: &Limits,
) -> Result<Plaintext, OpenError> {
    if env.ciphertext.len() > limits.max_ciphertext_bytes {
        return Err(OpenError::TooLarge { len: env.ciphertext.len(), limit: limits.max_ciphertext_bytes });
    }
    if env.format_version != FORMAT_VERSION {
        return Err(OpenError::UnsupportedFormat(env.format_version));
    }
    let nonce: &[u8; NONCE_LEN] = match (env.nonce.as_slice().try_into(), env.ciphertext.len() >= TAG_LEN) {
        (Ok(n), true) => n,
        _ => {
            return Err(OpenError::Truncated { nonce_len: env.nonce.len(), ciphertext_len: env.ciphertext.len() });
        }
    };
    if env.key_id != ring.key_id() {
        return Err(OpenError::KeyIdMismatch { envelope: env.key_id.clone(), ring: ring.key_id().to_owned() });
    }
    if env.workflow_id != expect.workflow_id || env.step != expect.step {
        return Err(OpenError::Replayed {
            sealed_for_workflow: env.workflow_id.clone(),
            sealed_for_step: env.step,
            expected_workflow: expect.workflow_id.clone(),
            expected_step: expect.step,
        });
    }
    let aad = AadFields::of_envelope(env).encode();
    let key = ring
        .subkey(env.key_version, &env.workflow_id, Purpose::Open)
        .ok_or_else(|| OpenError::UnknownKeyVersion { version: env.key_version, held: ring.versions() })?
        .map_err(|()| OpenError::Tampered)?;
    cipher::decrypt_with(&key, nonce, aad.as_slice(), &env.ciphertext).map_err(|()| OpenError::Tampered)
}
