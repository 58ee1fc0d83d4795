//! The data owner's side of Enclave Mesh.
//!
//! The owner is a principal of its own, distinct from the host that runs the mesh: it
//! may run anywhere, and it is the only one that can make a workflow's input and read
//! its results. This crate is what its client (`enclavemesh trigger`, `seal-input`,
//! `reveal`, `keygen`) is built from:
//!
//! * [`key`]: the owner's X25519 key file, which results are sealed to;
//! * [`kms`]: a KMS client with the owner's own credentials;
//! * [`input`]: the workflow input, sealed on the client for one workflow id (KMS
//!   `Encrypt`, or a data key with AES-256-GCM above KMS's 4 KiB);
//! * [`result`]: a `Reveal` result, opened on the client;
//! * [`manifest`]: the workflow's topology, written as TOML and compiled here.

pub mod input;
pub mod key;
pub mod kms;
pub mod manifest;
pub mod result;

pub use input::{RESOURCE_PREFIX, seal_input, seal_resource};
pub use key::OwnerKey;
pub use result::open_result;

/// Why an owner-side step failed; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("owner key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error(
        "KMS {op} for the input of workflow {workflow_id} failed: {detail}. Check the owner's credentials (the data \
         owner's role may Encrypt and GenerateDataKey under the input key, with the workflow-input context) and \
         --input-key / --kms-endpoint"
    )]
    Kms { op: &'static str, workflow_id: String, detail: String },
    #[error("KMS trust bundle {path}: {reason}")]
    CaBundle { path: String, reason: String },
    #[error("the result does not open with this owner key: {0}")]
    Result(enclavemesh_sealing::owner::OwnerError),
    #[error("sealing the input failed: {0}")]
    Seal(enclavemesh_sealing::owner::OwnerError),
    #[error("the opened result is not UTF-8 text")]
    NotText,
}
