//! Typed errors: callers (the enclave agent) turn these into user-facing messages, so each
//! variant says what was wrong with the input rather than just "failed".

use const_oid::ObjectIdentifier;

/// Everything that can go wrong wrapping or unwrapping a `CiphertextForRecipient`.
#[derive(Debug, thiserror::Error)]
pub enum RecipientError {
    /// The input is not the DER structure we expect (not CMS, not EnvelopedData, bad field).
    #[error("malformed CMS / key input: {0}")]
    Malformed(String),
    /// A well-formed message uses an algorithm outside the KMS profile
    /// (RSAES-OAEP-SHA-256 / AES-256-CBC / id-data).
    #[error("unsupported algorithm {0} (expected RSAES-OAEP with SHA-256/MGF1-SHA-256 and AES-256-CBC)")]
    UnsupportedAlgorithm(ObjectIdentifier),
    /// The message is addressed to a different public key than ours.
    #[error(
        "message is addressed to a different recipient key (subjectKeyIdentifier mismatch): it was wrapped for \
            another attestation public key"
    )]
    WrongRecipient,
    /// RSA-OAEP or AES-CBC decryption failed (tampered data or wrong key).
    #[error("decryption failed: ciphertext was tampered with or was not produced for this key")]
    DecryptFailed,
    /// Input exceeds the size bound.
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Actual length.
        len: usize,
        /// Accepted maximum.
        max: usize,
    },
    /// Key generation or encryption failed inside the RSA implementation.
    #[error("RSA operation failed: {0}")]
    Crypto(String),
}

impl From<der::Error> for RecipientError {
    fn from(e: der::Error) -> Self {
        RecipientError::Malformed(e.to_string())
    }
}
