//! Sealed envelopes for agent state: the only form state takes outside an enclave.
//!
//! * [`Tsk`]: the 256-bit tenant secret key KMS releases to an attested enclave.
//! * [`KeyRing`]: TSKs by version for one KMS key id, so rotation keeps old state
//!   openable until its version is retired.
//! * [`seal`] / [`open`]: AES-256-GCM under a per-workflow HKDF-SHA256 subkey, with
//!   every header field bound into the AAD ([`SealHeader`], [`Expectation`],
//!   [`Limits`]); [`OpenError`] says precisely why an envelope was refused. The ring
//!   caches expanded subkeys (bounded, wiped on eviction; `subkey_cache` module docs
//!   give the nonce-safety argument).
//! * [`envelope_sha256`]: digest for history and audit records.
//! * [`padding`]: size buckets, so a ciphertext's length does not leak values.
//! * [`owner`]: the data owner's inputs (data-key AES-GCM) and results (HPKE to the
//!   owner's key).
//!
//! Key material wipes itself on drop and never appears in `Debug` output.

mod aad;
mod cipher;
mod digest;
mod envelope;
mod error;
mod header;
mod key;
mod keyring;
mod nonce;
pub mod owner;
pub mod padding;
mod plaintext;
mod subkey_cache;

pub use cipher::{NONCE_LEN, TAG_LEN};
pub use digest::envelope_sha256;
pub use enclavemesh_proto::v1::SealedEnvelope;
pub use envelope::{open, seal};
pub use error::{OpenError, SealError};
pub use header::{Expectation, FORMAT_VERSION, Limits, SealHeader};
pub use key::{KEY_LEN, KeyError, Tsk};
pub use keyring::{KeyRing, KeyRingError};
pub use plaintext::Plaintext;
pub use subkey_cache::DEFAULT_SUBKEY_CACHE_CAPACITY;
pub use zeroize::Zeroizing;

#[cfg(test)]
mod tests;
