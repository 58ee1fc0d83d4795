//! Typed failures of sealing and opening.
//!
//! Why so many open variants: an operator seeing "decryption failed" cannot tell a
//! rotation mistake from an attack. Each variant names what was wrong and what to
//! check, maps to a gRPC status code a client can branch on, and has a stable short
//! name for metrics labels. None of them carries plaintext or key bytes.

use crate::envelope::FORMAT_VERSION;

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
    /// Stable short name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            SealError::EmptyKeyRing { .. } => "empty_key_ring",
            SealError::Rng(_) => "rng",
            SealError::Encrypt { .. } => "encrypt",
        }
    }

    /// gRPC status code for a server to answer with.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            SealError::EmptyKeyRing { .. } => tonic::Code::FailedPrecondition,
            SealError::Rng(_) => tonic::Code::Internal,
            SealError::Encrypt { .. } => tonic::Code::ResourceExhausted,
        }
    }
}

impl From<SealError> for tonic::Status {
    fn from(e: SealError) -> Self {
        tonic::Status::new(e.grpc_code(), e.to_string())
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
    #[error("sealed state of {len} bytes exceeds the limit of {limit} bytes; raise Limits::max_ciphertext_bytes if state really is that large")]
    TooLarge {
        /// Ciphertext length (with tag).
        len: usize,
        /// Limit in force.
        limit: usize,
    },
    /// The envelope was written in a format this build does not understand.
    #[error("envelope format_version {0} is not supported (this build opens version {FORMAT_VERSION}); was it sealed by a newer or older agent build?")]
    UnsupportedFormat(u32),
    /// Nonce is not 12 bytes or the ciphertext cannot even hold a 16-byte tag.
    #[error("envelope is truncated: nonce has {nonce_len} bytes (need 12), ciphertext has {ciphertext_len} bytes (need at least the 16-byte tag); the envelope was cut or mis-copied")]
    Truncated {
        /// Nonce length found.
        nonce_len: usize,
        /// Ciphertext length found.
        ciphertext_len: usize,
    },
    /// The envelope was sealed under another KMS key than this ring's.
    #[error("envelope was sealed under KMS key {envelope:?} but this enclave holds key {ring:?}; check the agent's --key-id and which TSK it loaded")]
    KeyIdMismatch {
        /// Key id in the envelope header.
        envelope: String,
        /// Key id of the ring.
        ring: String,
    },
    /// The header names a different workflow or step than the opener expects: an
    /// authentic envelope used in the wrong place (replay / rollback).
    #[error("envelope is for workflow {sealed_for_workflow:?} step {sealed_for_step}, but workflow {expected_workflow:?} step {expected_step} was expected; refusing replayed or misrouted state")]
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
    #[error("envelope was sealed with TSK version {version}, which this enclave does not hold (holds {held:?}); load that version or re-seal before retiring it")]
    UnknownKeyVersion {
        /// Version named by the header.
        version: u32,
        /// Versions the ring holds.
        held: Vec<u32>,
    },
    /// GCM authentication failed: ciphertext, nonce or a bound header field was
    /// changed, or the key is not the one it was sealed with.
    #[error("envelope failed authentication: its ciphertext or header was modified, or it was sealed with a different TSK of the same version")]
    Tampered,
}

impl OpenError {
    /// Stable short name for metrics labels (never changes once released).
    pub fn kind(&self) -> &'static str {
        match self {
            OpenError::TooLarge { .. } => "too_large",
            OpenError::UnsupportedFormat(_) => "unsupported_format",
            OpenError::Truncated { .. } => "truncated",
            OpenError::KeyIdMismatch { .. } => "key_id_mismatch",
            OpenError::Replayed { .. } => "replayed",
            OpenError::UnknownKeyVersion { .. } => "unknown_key_version",
            OpenError::Tampered => "tampered",
        }
    }

    /// gRPC status code for a server to answer with.
    ///
    /// Why these: size is a resource limit; malformed input is the caller's bug;
    /// a wrong workflow/step/key is a refusal of otherwise valid data; a missing
    /// key version is a state the operator must fix; failed authentication means
    /// the data is corrupt.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            OpenError::TooLarge { .. } => tonic::Code::ResourceExhausted,
            OpenError::Truncated { .. } | OpenError::UnsupportedFormat(_) => tonic::Code::InvalidArgument,
            OpenError::Replayed { .. } | OpenError::KeyIdMismatch { .. } => tonic::Code::PermissionDenied,
            OpenError::UnknownKeyVersion { .. } => tonic::Code::FailedPrecondition,
            OpenError::Tampered => tonic::Code::DataLoss,
        }
    }
}

impl From<OpenError> for tonic::Status {
    fn from(e: OpenError) -> Self {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}
