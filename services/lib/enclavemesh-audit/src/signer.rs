//! The per-boot signing key: P-384 ECDSA, made inside the enclave and never exported.
//!
//! Its public key is bound into the bootstrap attestation document's `user_data` under
//! the audit-key domain ([`enclavemesh_attestation::binding::Domain::AuditKey`]), so a
//! verifier can tie every signature to an attested enclave image (PCR0), and a document
//! the enclave made for anything else (a caller's `Attest`) never passes.

use p384::ecdsa::signature::{Signer as _, Verifier as _};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};

use enclavemesh_attestation::binding::{self, Domain};

/// The `user_data` an attestation document must carry for `signing_key_sec1`.
pub fn signing_key_binding(signing_key_sec1: &[u8]) -> [u8; 48] {
    binding::user_data(Domain::AuditKey, signing_key_sec1)
}

pub(crate) struct Signer {
    key: SigningKey,
    public_sec1: Vec<u8>,
}

impl Signer {
    pub(crate) fn generate() -> Self {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let public_sec1 = VerifyingKey::from(&key).to_encoded_point(false).as_bytes().to_vec();
        Signer { key, public_sec1 }
    }

    pub(crate) fn public_sec1(&self) -> &[u8] {
        &self.public_sec1
    }

    /// Hex r||s over `msg` (ECDSA P-384 with SHA-384).
    pub(crate) fn sign(&self, msg: &[u8]) -> String {
        let sig: Signature = self.key.sign(msg);
        hex::encode(sig.to_bytes())
    }
}

/// Whether `sig_hex` is a valid signature over `msg` by `public_hex` (SEC1).
pub(crate) fn check(public_hex: &str, msg: &[u8], sig_hex: &str) -> bool {
    let (Ok(pk), Ok(sig)) = (hex::decode(public_hex), hex::decode(sig_hex)) else {
        return false;
    };
    let (Ok(vk), Ok(sig)) = (VerifyingKey::from_sec1_bytes(&pk), Signature::from_slice(&sig)) else {
        return false;
    };
    vk.verify(msg, &sig).is_ok()
}
