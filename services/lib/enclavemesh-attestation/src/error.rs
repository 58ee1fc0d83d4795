//! Typed errors. Every message names the offending values and says what to do, because these
//! errors surface in operator logs and in KMS-style `AccessDenied` replies, where an opaque
//! "attestation failed" is the single most common pain point with Nitro Enclaves.

use thiserror::Error;

/// Errors from an [`crate::Nsm`] implementation or from the dev CA.
#[derive(Debug, Error)]
pub enum NsmError {
    /// `/dev/nsm` does not exist: the process is not inside a Nitro Enclave.
    #[error("/dev/nsm not found: not running inside a Nitro Enclave (use --nsm simulated for dev mode)")]
    NotInEnclave,
    /// `/dev/nsm` exists but could not be opened.
    #[error("cannot open /dev/nsm: {0} (is the nitro_enclaves NSM driver loaded and the process allowed to open it?)")]
    Open(#[source] std::io::Error),
    /// A request field exceeds what the NSM accepts.
    #[error("{field} is {len} bytes but the NSM accepts at most {limit}; send a digest or a shorter value instead")]
    InputTooLarge { field: &'static str, len: usize, limit: usize },
    /// The NSM (real or simulated) refused or failed a request.
    #[error("NSM request {request} failed: {reason}")]
    Request { request: &'static str, reason: String },
    /// A certificate file (an image signing certificate, a trust root) that cannot be read
    /// or is not X.509.
    #[error("cannot use {what} {path}: {reason}; give a PEM or DER X.509 certificate")]
    Certificate { what: &'static str, path: String, reason: String },
    /// Filesystem trouble under the dev directory (dev CA, measurements).
    #[error("{what} ({path}): {source}; check that the dev directory exists and is writable (ENCLAVEMESH_DEV_DIR)")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The persisted dev CA is unreadable or inconsistent.
    #[error(
        "dev CA at {path} is unusable: {reason}; delete that directory to have it regenerated (every party must \
            then trust the new root)"
    )]
    DevCa { path: String, reason: String },
    /// A simulated measurement given on the command line is unusable.
    #[error("invalid simulated measurement: {0}")]
    InvalidMeasurement(String),
    /// Building a certificate, signing or encoding failed (should not happen with valid inputs).
    #[error("crypto/encoding failure while {context}: {reason}")]
    Crypto { context: &'static str, reason: String },
}

/// Why an attestation document was rejected. [`VerifyError::kind`] gives a stable short name
/// for metrics, audit logs and wire errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Input larger than [`crate::MAX_DOCUMENT_BYTES`]; refused before any parsing.
    #[error(
        "attestation document is {len} bytes, limit is {limit}; a real NSM document is ~4-8 KiB, so this is not one \
            (sent base64 twice, or the wrong field?)"
    )]
    TooLarge { len: usize, limit: usize },
    /// Not a COSE_Sign1 / not the Nitro payload layout.
    #[error(
        "attestation document is malformed: {0}; send the raw COSE_Sign1 bytes returned by the NSM (decode base64 \
            first)"
    )]
    Malformed(String),
    /// A required payload field is absent.
    #[error(
        "attestation document lacks required field `{0}`; it was not produced by a Nitro NSM (or a compatible \
            simulator)"
    )]
    MissingField(&'static str),
    /// The COSE signature does not verify with the leaf certificate's key.
    #[error(
        "attestation document signature (ES384) does not verify with the key in its leaf certificate; the document \
            was altered or forged"
    )]
    BadSignature,
    /// Certificate chain does not lead to the pinned root.
    #[error("certificate chain not trusted: {0}")]
    UntrustedChain(String),
    /// A certificate of the chain is outside its validity period at verification time.
    #[error(
        "certificate '{subject}' is valid from {not_before} to {not_after}, not at {at}; fetch a fresh attestation \
            document, and check the verifier's clock"
    )]
    CertificateNotValidAt { subject: String, not_before: String, not_after: String, at: String },
    /// Document older than the verifier's `max_age`.
    #[error(
        "attestation document is {age_ms} ms old, max age is {max_ms} ms; request a fresh document right before use \
            (documents are single-use proofs, not credentials)"
    )]
    Stale { age_ms: u64, max_ms: u64 },
    /// Document timestamp is further in the future than the allowed clock skew.
    #[error(
        "attestation document timestamp is {ahead_ms} ms in the future (allowed skew {max_skew_ms} ms); fix the \
            clock of the verifier or of the enclave host (NTP)"
    )]
    FromFuture { ahead_ms: u64, max_skew_ms: u64 },
    /// Document nonce differs from the expected one (absent counts as different).
    #[error(
        "attestation document nonce does not match the nonce this verifier issued; possible replay: request a new \
            document with the current nonce"
    )]
    NonceMismatch,
    /// A PCR differs from the expected measurement.
    #[error(
        "PCR{index} mismatch: expected {expected_hex}, document has {actual_hex}; the enclave image differs from \
            the one allowed (rebuild reproducibly, or update the expected PCR{index})"
    )]
    PcrMismatch { index: u16, expected_hex: String, actual_hex: String },
    /// All-zero PCR0: a debug-mode enclave, whose memory the parent can read.
    #[error(
        "attestation document comes from a debug-mode enclave (PCR0 is all zeros), whose memory the parent instance \
            can read; refused. Run without --debug-mode, or allow debug explicitly in dev only"
    )]
    DebugMode,
    /// The trust anchor file could not be used.
    #[error(
        "trust anchor {path} is unusable: {reason}; pass a DER or PEM X.509 certificate (e.g. .dev/dev-ca/root.der \
            or the AWS Nitro root G1)"
    )]
    BadTrustAnchor { path: String, reason: String },
}

impl VerifyError {
    /// Stable snake_case name of the error kind (for metrics, audit events and wire errors).
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::TooLarge { .. } => "too_large",
            VerifyError::Malformed(_) => "malformed",
            VerifyError::MissingField(_) => "missing_field",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::UntrustedChain(_) => "untrusted_chain",
            VerifyError::CertificateNotValidAt { .. } => "certificate_not_valid_at",
            VerifyError::Stale { .. } => "stale",
            VerifyError::FromFuture { .. } => "from_future",
            VerifyError::NonceMismatch => "nonce_mismatch",
            VerifyError::PcrMismatch { .. } => "pcr_mismatch",
            VerifyError::DebugMode => "debug_mode",
            VerifyError::BadTrustAnchor { .. } => "bad_trust_anchor",
        }
    }
}
