//! Typed failures of sealing and opening.
//!
//! Why so many open variants: an operator seeing "decryption failed" cannot tell a
//! rotation mistake from an attack. Each variant names what was wrong and what to
//! check, and maps to one [`Refusal`] of the shared vocabulary (its label names it in
//! metrics and logs; a server turns it into a gRPC status). None of them carries
//! plaintext or key bytes.

use crate::header::FORMAT_VERSION;
use enclavemesh_proto::Refusal;

/// Why state could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The ring holds no TSK yet, so there is nothing to seal under.
    #[error("key ring {key_id:?} holds no TSK version; load the TSK (KMS Decrypt with attestation) before sealing")]
    EmptyKeyRing {
        /// KMS key id of the empty ring.
        key_id: String,
    },
    /// The operating system's random number generator failed; no nonce, no seal.
    #[error("the OS random number generator failed while drawing a nonce: {0}")]
    Rng(String),
    /// AES-GCM refused the input (plaintext beyond the GCM limit of about 64 GiB).
    #[error("AES-256-GCM refused to encrypt {len} bytes of plaintext (beyond the GCM message limit)")]
    Encrypt {
        /// Plaintext length.
        len: usize,
    },
}

impl SealError {
    /// The refusal a server answers with: an empty ring is the operator's to fix (load
    /// the TSK); the others are faults inside the sealing agent.
    pub fn refusal(&self) -> Refusal {
        match self {
            SealError::EmptyKeyRing { .. } => Refusal::UnknownKeyVersion,
            SealError::Rng(_) | SealError::Encrypt { .. } => Refusal::Internal,
        }
    }
}

/// Why an envelope could not be opened.
///
/// Checks run in the order listed (cheapest and most specific first); only
/// [`OpenError::Tampered`] needs a decryption attempt. Note that `Replayed`,
/// `KeyIdMismatch` and `UnknownKeyVersion` report what the (not yet authenticated)
/// header *claims*; an attacker editing the header gets one of these refusals
/// instead of `Tampered`, never an opened envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The ciphertext is larger than the opener's limit.
    #[error(
        "sealed state of {len} bytes exceeds the limit of {limit} bytes; raise Limits::max_ciphertext_bytes if \
            state really is that large"
    )]
    TooLarge {
        /// Ciphertext length (with tag).
        len: usize,
        /// Limit in force.
        limit: usize,
    },
    /// The envelope was written in a format this build does not understand.
    #[error(
        "envelope format_version {0} is not supported (this build opens version {FORMAT_VERSION}); was it sealed by \
            a newer or older agent build?"
    )]
    UnsupportedFormat(u32),
    /// Nonce is not 12 bytes or the ciphertext cannot even hold a 16-byte tag.
    #[error(
        "envelope is truncated: nonce has {nonce_len} bytes (need 12), ciphertext has {ciphertext_len} bytes (need \
            at least the 16-byte tag); the envelope was cut or mis-copied"
    )]
    Truncated {
        /// Nonce length found.
        nonce_len: usize,
        /// Ciphertext length found.
        ciphertext_len: usize,
    },
    /// The envelope was sealed under another KMS key than this ring's.
    #[error(
        "envelope was sealed under KMS key {envelope:?} but this enclave holds key {ring:?}; check the agent's \
            --key-id and which TSK it loaded"
    )]
    KeyIdMismatch {
        /// Key id in the envelope header.
        envelope: String,
        /// Key id of the ring.
        ring: String,
    },
    /// The header names a different workflow or step than the opener expects: an
    /// authentic envelope used in the wrong place (replay / rollback).
    #[error(
        "envelope is for workflow {sealed_for_workflow:?} step {sealed_for_step}, but workflow \
            {expected_workflow:?} step {expected_step} was expected; refusing replayed or misrouted state"
    )]
    Replayed {
        /// Workflow id the header names.
        sealed_for_workflow: String,
        /// Step the header names.
        sealed_for_step: u64,
        /// Workflow id the opener expected.
        expected_workflow: String,
        /// Step the opener expected.
        expected_step: u64,
    },
    /// The TSK version the header names is not (or no longer) in the ring.
    #[error(
        "envelope was sealed with TSK version {version}, which this enclave does not hold (holds {held:?}); load \
            that version or re-seal before retiring it"
    )]
    UnknownKeyVersion {
        /// Version named by the header.
        version: u32,
        /// Versions the ring holds.
        held: Vec<u32>,
    },
    /// GCM authentication failed: ciphertext, nonce or a bound header field was
    /// changed, or the key is not the one it was sealed with.
    #[error(
        "envelope failed authentication: its ciphertext or header was modified, or it was sealed with a different \
            TSK of the same version"
    )]
    Tampered,
}

impl OpenError {
    /// The refusal a server answers with.
    ///
    /// Why these: size is a resource limit; malformed input is the caller's bug; a wrong
    /// workflow/step/key is a refusal of otherwise valid data; a missing key version is
    /// a state the operator must fix; failed authentication means the data is corrupt.
    pub fn refusal(&self) -> Refusal {
        match self {
            OpenError::TooLarge { .. } => Refusal::EnvelopeTooLarge,
            OpenError::UnsupportedFormat(_) => Refusal::UnsupportedFormat,
            OpenError::Truncated { .. } => Refusal::EnvelopeMalformed,
            OpenError::KeyIdMismatch { .. } => Refusal::KeyIdMismatch,
            OpenError::Replayed { .. } => Refusal::EnvelopeReplayed,
            OpenError::UnknownKeyVersion { .. } => Refusal::UnknownKeyVersion,
            OpenError::Tampered => Refusal::EnvelopeTampered,
        }
    }
}
