//! The data owner's side of the boundary, in the enclave and on the owner's client:
//!
//! * inputs larger than KMS `Encrypt` takes are sealed on the owner's client with
//!   AES-256-GCM under a KMS data key ([`seal_input`] / [`open_input`]); the AAD binds
//!   the workflow id, as the KMS encryption context does for the data key;
//! * results leave the enclave sealed to the owner's X25519 key with HPKE (RFC 9180,
//!   base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM), the workflow
//!   id, step and field bound as AAD ([`seal_result`] / [`open_result`]).
//!
//! Why HPKE from `hpke` 0.12: it sits on the same RustCrypto generation as the rest of
//! the workspace (no second copy of aes-gcm/hkdf/sha2), is pure Rust (the enclave build
//! is static musl), runs the RFC 9180 test vectors, and has no advisories; `hpke-rs`
//! had three in 2026 and pulls three rand_core generations, rustls' HPKE needs
//! aws-lc-rs (C), and ring has none.

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use enclavemesh_proto::v1::SealedResult;

use crate::cipher::{self, NONCE_LEN};
use crate::key::{KEY_LEN, SubKey};
use crate::plaintext::Plaintext;

type Kem = X25519HkdfSha256;

/// X25519 key length (public and secret).
pub const OWNER_KEY_LEN: usize = 32;
/// HPKE `info` of every result: what the key schedule is for.
const RESULT_INFO: &[u8] = b"enclavemesh/v1/reveal";
const INPUT_AAD_LABEL: &[u8] = b"enclavemesh/v1/input";

/// Why an owner-side seal or open failed. None carries key or plaintext bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("the owner public key is {0} bytes; an X25519 key is 32")]
    BadPublicKey(usize),
    #[error("the owner secret key is not a 32-byte X25519 key")]
    BadSecretKey,
    #[error("a data key is {0} bytes; AES-256 takes 32")]
    BadDataKey(usize),
    #[error("the nonce is {0} bytes; AES-GCM takes 12")]
    BadNonce(usize),
    #[error(
        "the sealed value does not open: sealed to another owner key, for another workflow, step or field, or altered"
    )]
    DoesNotOpen,
    #[error("sealing failed: {0}")]
    Seal(String),
}

/// The data owner's X25519 key pair. The secret is wiped on drop and never printed.
pub struct OwnerKeyPair {
    secret: Zeroizing<[u8; OWNER_KEY_LEN]>,
    public: [u8; OWNER_KEY_LEN],
}

impl std::fmt::Debug for OwnerKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerKeyPair").field("public", &hex_short(&self.public)).finish_non_exhaustive()
    }
}

fn hex_short(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect::<String>() + "…"
}

impl OwnerKeyPair {
    /// A fresh key pair from the OS random number generator.
    pub fn generate() -> Self {
        let (sk, pk) = Kem::gen_keypair(&mut rand::rngs::OsRng);
        let mut secret = Zeroizing::new([0u8; OWNER_KEY_LEN]);
        sk.write_exact(secret.as_mut_slice());
        let mut public = [0u8; OWNER_KEY_LEN];
        pk.write_exact(&mut public);
        OwnerKeyPair { secret, public }
    }

    /// The pair of a stored secret key.
    pub fn from_secret(secret: &[u8]) -> Result<Self, OwnerError> {
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|_| OwnerError::BadSecretKey)?;
        let pk = Kem::sk_to_pk(&sk);
        let mut s = Zeroizing::new([0u8; OWNER_KEY_LEN]);
        s.copy_from_slice(secret);
        let mut public = [0u8; OWNER_KEY_LEN];
        pk.write_exact(&mut public);
        Ok(OwnerKeyPair { secret: s, public })
    }

    pub fn public(&self) -> &[u8; OWNER_KEY_LEN] {
        &self.public
    }

    /// The secret bytes, for storing in the owner's key file (and nowhere else).
    pub fn secret(&self) -> &[u8; OWNER_KEY_LEN] {
        &self.secret
    }
}

/// The AAD of a result: the workflow, the step and the field, length-prefixed.
fn result_aad(workflow_id: &str, step: u64, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(24 + workflow_id.len() + field.len());
    aad.extend_from_slice(&(workflow_id.len() as u64).to_be_bytes());
    aad.extend_from_slice(workflow_id.as_bytes());
    aad.extend_from_slice(&step.to_be_bytes());
    aad.extend_from_slice(&(field.len() as u64).to_be_bytes());
    aad.extend_from_slice(field.as_bytes());
    aad
}

/// Seals `plaintext` (one field of one state) to the owner's public key.
pub fn seal_result(
    owner_public_key: &[u8],
    workflow_id: &str,
    step: u64,
    field: &str,
    plaintext: &[u8],
) -> Result<SealedResult, OwnerError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(owner_public_key)
        .map_err(|_| OwnerError::BadPublicKey(owner_public_key.len()))?;
    let aad = result_aad(workflow_id, step, field);
    let (enc, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &pk,
        RESULT_INFO,
        plaintext,
        &aad,
        &mut rand::rngs::OsRng,
    )
    .map_err(|e| OwnerError::Seal(e.to_string()))?;
    Ok(SealedResult { encapsulated_key: enc.to_bytes().to_vec(), ciphertext })
}

/// Opens a result with the owner's key, for the workflow, step and field it claims.
pub fn open_result(
    owner: &OwnerKeyPair,
    workflow_id: &str,
    step: u64,
    field: &str,
    sealed: &SealedResult,
) -> Result<Zeroizing<Vec<u8>>, OwnerError> {
    let sk =
        <Kem as hpke::Kem>::PrivateKey::from_bytes(owner.secret.as_slice()).map_err(|_| OwnerError::BadSecretKey)?;
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.encapsulated_key).map_err(|_| OwnerError::DoesNotOpen)?;
    let aad = result_aad(workflow_id, step, field);
    hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk,
        &enc,
        RESULT_INFO,
        &sealed.ciphertext,
        &aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| OwnerError::DoesNotOpen)
}

fn input_aad(workflow_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(INPUT_AAD_LABEL.len() + 8 + workflow_id.len());
    aad.extend_from_slice(INPUT_AAD_LABEL);
    aad.extend_from_slice(&(workflow_id.len() as u64).to_be_bytes());
    aad.extend_from_slice(workflow_id.as_bytes());
    aad
}

fn data_key(bytes: &[u8]) -> Result<SubKey, OwnerError> {
    let k: [u8; KEY_LEN] = bytes.try_into().map_err(|_| OwnerError::BadDataKey(bytes.len()))?;
    Ok(SubKey(k))
}

/// Seals an encoded input for `workflow_id` under a (KMS) data key: (nonce, ciphertext||tag).
pub fn seal_input(
    data_key_bytes: &[u8],
    workflow_id: &str,
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), OwnerError> {
    let key = data_key(data_key_bytes)?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut nonce).map_err(|e| OwnerError::Seal(e.to_string()))?;
    let ct = cipher::encrypt(&key, &nonce, &input_aad(workflow_id), plaintext)
        .map_err(|()| OwnerError::Seal("AES-256-GCM refused the input".into()))?;
    Ok((nonce.to_vec(), ct))
}

/// Opens an input sealed by [`seal_input`] for `workflow_id`.
pub fn open_input(
    data_key_bytes: &[u8],
    workflow_id: &str,
    nonce: &[u8],
    sealed: &[u8],
) -> Result<Plaintext, OwnerError> {
    let key = data_key(data_key_bytes)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OwnerError::BadNonce(nonce.len()))?;
    cipher::decrypt(&key, &nonce, &input_aad(workflow_id), sealed).map_err(|()| OwnerError::DoesNotOpen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_opens_only_with_its_key_workflow_step_and_field() {
        let owner = OwnerKeyPair::generate();
        let other = OwnerKeyPair::generate();
        let sealed = seal_result(owner.public(), "wf-1", 3, "balance", b"10512").unwrap();
        assert_eq!(sealed.encapsulated_key.len(), 32);
        assert!(!sealed.ciphertext.windows(5).any(|w| w == b"10512"));
        assert_eq!(open_result(&owner, "wf-1", 3, "balance", &sealed).unwrap().as_slice(), b"10512");
        for (k, wf, step, field) in [
            (&other, "wf-1", 3, "balance"),
            (&owner, "wf-2", 3, "balance"),
            (&owner, "wf-1", 2, "balance"),
            (&owner, "wf-1", 3, "step"),
        ] {
            assert_eq!(open_result(k, wf, step, field, &sealed).unwrap_err(), OwnerError::DoesNotOpen);
        }
        let again = OwnerKeyPair::from_secret(owner.secret()).unwrap();
        assert_eq!(again.public(), owner.public());
        assert_eq!(seal_result(&[1; 5], "w", 0, "f", b"x").unwrap_err(), OwnerError::BadPublicKey(5));
    }

    #[test]
    fn an_input_opens_only_for_its_workflow_and_key() {
        let key = [7u8; 32];
        let (nonce, ct) = seal_input(&key, "wf-1", b"the input").unwrap();
        assert_eq!(open_input(&key, "wf-1", &nonce, &ct).unwrap().as_slice(), b"the input");
        assert_eq!(open_input(&key, "wf-2", &nonce, &ct).unwrap_err(), OwnerError::DoesNotOpen);
        assert_eq!(open_input(&[8u8; 32], "wf-1", &nonce, &ct).unwrap_err(), OwnerError::DoesNotOpen);
        assert_eq!(open_input(&key[..5], "wf-1", &nonce, &ct).unwrap_err(), OwnerError::BadDataKey(5));
    }
}
