//! Tamper-evident audit trail of what an agent did, with no plaintext in it.
//!
//! Every agent call (bootstrap, Init, Process, Reveal) becomes one [`Record`]: a JSON
//! line naming the workflow, step, key version, SHA-256 digests of the input and
//! output envelopes and the outcome, never state. Records are chained
//! (`prev_hash` = previous record's `hash`, `hash` = SHA-256 over a canonical
//! encoding of every other field), and the chain's end is signed as a [`Head`] with
//! an ECDSA P-384 key that exists only inside the enclave, made fresh at boot. One
//! head authenticates every record before it, so signing stays off the request
//! path: the agent signs a head on each `AuditLog` fetch and, for a local file, as
//! periodic checkpoint lines.
//!
//! Why a signature and not an HMAC under a TSK-derived key: an HMAC can only be
//! checked by someone holding the TSK, i.e. another enclave; the parent and an
//! operator could not verify anything. Instead record 0 of every boot (the
//! `bootstrap` record) carries the signing public key *and* an NSM attestation
//! document whose `user_data` binds that key ([`signing_key_binding`]). Anyone can
//! then check that the log was written by an enclave with a given PCR0, and the
//! parent, lacking the private key, cannot edit, drop, reorder or re-chain records
//! without the chain (or a signed head) breaking. A dropped *tail* is only visible
//! against the agent's current [`Head`], which `AuditLog` returns.
//!
//! * [`AuditTrail`]: the writer the agent holds (in memory, optional local file).
//! * [`verify`] / [`verify_with`]: the checker (`enclavemesh audit verify`).

mod canonical;
mod error;
mod record;
mod signer;
mod trail;
mod verify;

pub use error::AuditError;
pub use record::{Entry, Event, Head, HeadLine, Outcome, Record};
pub use signer::signing_key_binding;
pub use trail::{AuditTrail, DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORDS, Fetched};
pub use verify::{Segment, Summary, verify, verify_with};

#[cfg(test)]
mod tests;
