//! KMS `CiphertextForRecipient` format: CMS (RFC 5652) `EnvelopedData` to an enclave's
//! ephemeral RSA key.
//!
//! When a request carries a `Recipient` attestation document, AWS KMS does not return the
//! plaintext; it returns a CMS `ContentInfo` holding `EnvelopedData` that only the holder of
//! the private half of the attestation document's `public_key` can open. This crate is both
//! ends of that exchange:
//!
//! * [`EphemeralKeyPair`] lives inside the enclave: its SPKI DER goes into the NSM
//!   attestation request, and [`EphemeralKeyPair::unwrap`] opens what KMS sends back.
//! * [`wrap_for_recipient`] is what the KMS emulator uses to produce `CiphertextForRecipient`.
//!
//! Wire profile (matches what real KMS emits for `RSAES_OAEP_SHA_256`):
//!
//! * exactly one `KeyTransRecipientInfo`, version 2, `rid` = `subjectKeyIdentifier`
//!   (RFC 7093 method 1: leftmost 160 bits of SHA-256 over the `subjectPublicKey` bits;
//!   see [`subject_key_identifier`]),
//! * key encryption `id-RSAES-OAEP` with explicit parameters hash = SHA-256,
//!   MGF = MGF1(SHA-256), label empty,
//! * content encryption `aes256-CBC` with a random 16-byte IV (PKCS#7 padding),
//!   content type `id-data`.
//!
//! `openssl cms -decrypt -inform DER -inkey key.pem` opens these messages (tested).

mod algorithms;
mod error;
mod keypair;
mod wrap;

pub use algorithms::{MAX_CMS_LEN, MAX_PLAINTEXT_LEN, subject_key_identifier};
pub use error::RecipientError;
pub use keypair::EphemeralKeyPair;
pub use wrap::wrap_for_recipient;
pub use zeroize::Zeroizing;
