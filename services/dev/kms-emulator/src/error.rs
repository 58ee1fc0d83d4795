//! KMS wire errors: the `__type` names real KMS uses, each with a message that names the
//! cause and the fix (the enclave agent shows these to people verbatim).

use axum::http::StatusCode;

/// The KMS exception types the emulator can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AccessDenied,
    Validation,
    InvalidCiphertext,
    Disabled,
    InvalidState,
    UnsupportedOperation,
    MalformedPolicyDocument,
    IncorrectKey,
    AlreadyExists,
    MissingAuthenticationToken,
    IncompleteSignature,
    UnrecognizedClient,
    InvalidSignature,
    InvalidKeyUsage,
    LimitExceeded,
    InvalidGrantId,
    Internal,
}

impl ErrorKind {
    /// The `__type` / `x-amzn-ErrorType` value (what SDKs turn into error codes).
    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NotFoundException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::Validation => "ValidationException",
            ErrorKind::InvalidCiphertext => "InvalidCiphertextException",
            ErrorKind::Disabled => "DisabledException",
            ErrorKind::InvalidState => "KMSInvalidStateException",
            ErrorKind::UnsupportedOperation => "UnsupportedOperationException",
            ErrorKind::MalformedPolicyDocument => "MalformedPolicyDocumentException",
            ErrorKind::IncorrectKey => "IncorrectKeyException",
            ErrorKind::AlreadyExists => "AlreadyExistsException",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorKind::IncompleteSignature => "IncompleteSignatureException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::InvalidSignature => "InvalidSignatureException",
            ErrorKind::InvalidKeyUsage => "InvalidKeyUsageException",
            ErrorKind::LimitExceeded => "LimitExceededException",
            ErrorKind::InvalidGrantId => "InvalidGrantIdException",
            ErrorKind::Internal => "KMSInternalException",
        }
    }

    /// HTTP status (KMS answers client errors with 400; auth with 403 like AWS's front end).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::MissingAuthenticationToken
            | ErrorKind::IncompleteSignature
            | ErrorKind::UnrecognizedClient
            | ErrorKind::InvalidSignature => StatusCode::FORBIDDEN,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// One failed KMS call: an exception type plus a human message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", kind.type_name())]
pub struct KmsError {
    pub kind: ErrorKind,
    pub message: String,
}

impl KmsError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AccessDenied, message)
    }
    pub fn invalid_ciphertext(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidCiphertext, message)
    }
    pub fn malformed_policy(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedPolicyDocument, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

/// Errors starting the emulator (not KMS wire errors).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot load state file {path}: {reason}; fix or move the file away to start empty")]
    StateLoad { path: String, reason: String },
    #[error("cannot write state file {path}: {reason}")]
    StateWrite { path: String, reason: String },
    #[error("cannot open audit log {path}: {reason}")]
    AuditLog { path: String, reason: String },
    #[error("attestation trust anchor: {0}")]
    TrustAnchor(String),
    #[error("identities file {path}: {reason}; fix it or move it away to create fresh dev credentials")]
    Identities { path: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}
