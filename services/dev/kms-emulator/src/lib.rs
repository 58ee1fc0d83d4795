//! `kms-emulator`: a development AWS KMS.
//!
//! Speaks the KMS JSON 1.1 protocol, so the AWS CLI and `aws-sdk-kms` work against it
//! with an endpoint override. It is the HSM: key material lives in the state file and
//! ciphertext blobs use the format in [`blob`]. Key policies are evaluated (see
//! [`policy`] for the supported subset), including `kms:RecipientAttestation:PCR0` /
//! `ImageSha384` conditions on requests that carry a Nitro attestation document as
//! `Recipient`; such responses carry `CiphertextForRecipient` (CMS EnvelopedData from
//! `enclavemesh-recipient`) and never `Plaintext`. Every call is audited as a
//! CloudTrail-shaped JSON line.
//!
//! In-process use (tests): `kms_emulator::spawn("127.0.0.1:0".parse()?, EmulatorConfig::new(anchor))`.

mod audit;
pub mod blob;
mod config;
mod emulator;
mod error;
pub mod identity;
mod op;
mod ops;
pub mod policy;
mod recipient;
mod request;
mod server;
mod sigv4;
mod state;
pub mod tls;

pub use config::Config;
pub use emulator::{Emulator, EmulatorConfig};
pub use error::{EmulatorError, ErrorKind, KmsError};
pub use identity::{Identities, Identity};
pub use op::Op;
pub use server::{MAX_BODY_BYTES, RunningEmulator, build, router, serve_on, spawn};
