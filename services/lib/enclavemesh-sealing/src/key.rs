//! Key material: the TSK and the per-workflow subkeys derived from it.
//!
//! Why a subkey per workflow: every workflow's state is encrypted under its own
//! AES key, so the number of random 96-bit nonces used under any single key stays
//! far below the GCM birthday bound even when one TSK serves many workflows, and an
//! envelope can never decrypt under another workflow's key even if the header check
//! were skipped.
//!
//! Both types wipe their bytes on drop and print no key bytes in `Debug`.

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a TSK and of every derived subkey (AES-256).
pub const KEY_LEN: usize = 32;

/// HKDF salt: a fixed domain label, so keys derived here can never coincide with
/// keys some other protocol derives from the same TSK with a different label.
pub(crate) const HKDF_SALT: &[u8] = b"enclavemesh/v1/seal";

/// Prefix of the HKDF `info`; the length-prefixed workflow id follows it.
pub(crate) const HKDF_INFO_LABEL: &[u8] = b"enclavemesh/v1/seal/workflow-subkey";

/// Why bytes could not become a [`Tsk`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The plaintext data key from KMS must be exactly 32 bytes (AES-256); anything
    /// else means the wrong KMS key spec (`AES_256`) or a corrupted blob.
    #[error("a TSK must be exactly {KEY_LEN} bytes (AES-256), got {len}; check the KMS data key spec is AES_256")]
    WrongLength {
        /// Length that was supplied.
        len: usize,
    },
}

/// Tenant secret key: the 256-bit plaintext data key that KMS releases to an
/// attested enclave. Never leaves the enclave; only subkeys derived from it touch
/// data.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Tsk([u8; KEY_LEN]);

impl Tsk {
    /// Takes ownership of 32 key bytes.
    ///
    /// The array passed in is moved, but a caller's other copies are the caller's
    /// to wipe (prefer [`Tsk::from_zeroizing_vec`] when the bytes come from a KMS
    /// response).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Tsk(bytes)
    }

    /// Copies the key out of a `Zeroizing` buffer (which wipes itself when dropped),
    /// refusing anything but 32 bytes.
    pub fn from_zeroizing_vec(bytes: Zeroizing<Vec<u8>>) -> Result<Self, KeyError> {
        Self::from_slice(&bytes)
    }

    /// Copies the key out of a slice, refusing anything but 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| KeyError::WrongLength { len: bytes.len() })?;
        Ok(Tsk(arr))
    }

    /// Derives the AES-256-GCM key for one workflow:
    /// `HKDF-SHA256(salt = "enclavemesh/v1/seal", ikm = TSK,
    ///  info = "enclavemesh/v1/seal/workflow-subkey" || u64be(len(workflow_id)) || workflow_id)`.
    ///
    /// The length prefix keeps the info unambiguous should the label ever be
    /// extended with more fields.
    pub(crate) fn derive_subkey(&self, workflow_id: &str) -> SubKey {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.0);
        let mut out = SubKey([0u8; KEY_LEN]);
        let len = (workflow_id.len() as u64).to_be_bytes();
        // `expand_multi_info` avoids building (and having to wipe) a joined buffer.
        // Expanding 32 bytes from SHA-256 cannot fail (limit is 255 * 32).
        if hk.expand_multi_info(&[HKDF_INFO_LABEL, &len, workflow_id.as_bytes()], &mut out.0).is_err() {
            unreachable!("HKDF-SHA256 can always expand 32 bytes");
        }
        out
    }

    /// Constant-time equality, so comparing a reloaded key with a held one leaks
    /// nothing about either through timing.
    pub(crate) fn ct_eq(&self, other: &Tsk) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for Tsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tsk(<redacted>)")
    }
}

/// Per-workflow AES-256-GCM key derived from a [`Tsk`]; wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct SubKey(pub(crate) [u8; KEY_LEN]);

impl std::fmt::Debug for SubKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_length_is_refused() {
        assert_eq!(Tsk::from_slice(&[0; 31]).unwrap_err(), KeyError::WrongLength { len: 31 });
        assert_eq!(
            Tsk::from_zeroizing_vec(Zeroizing::new(vec![0; 33])).unwrap_err(),
            KeyError::WrongLength { len: 33 }
        );
        assert!(Tsk::from_zeroizing_vec(Zeroizing::new(vec![0; 32])).is_ok());
    }

    #[test]
    fn debug_prints_no_key_bytes() {
        let tsk = Tsk::from_bytes([0xAB; 32]);
        let s = format!("{tsk:?} {:?}", tsk.derive_subkey("wf"));
        assert!(!s.to_lowercase().contains("ab"), "{s}");
        assert!(!s.contains("171"), "{s}");
        assert!(s.contains("redacted"));
    }

    #[test]
    fn subkeys_differ_per_workflow_and_per_tsk() {
        let tsk = Tsk::from_bytes([1; 32]);
        let a = tsk.derive_subkey("wf-a");
        let b = tsk.derive_subkey("wf-b");
        assert_ne!(a.0, b.0);
        assert_ne!(a.0, [1; 32], "subkey must not be the TSK itself");
        // Deterministic: the same workflow gets the same key again.
        assert_eq!(a.0, tsk.derive_subkey("wf-a").0);
        let other = Tsk::from_bytes([2; 32]);
        assert_ne!(a.0, other.derive_subkey("wf-a").0);
        // Empty id and a prefix of another id still give distinct keys.
        assert_ne!(tsk.derive_subkey("").0, tsk.derive_subkey("w").0);
    }

    #[test]
    fn subkey_matches_hkdf_spec() {
        // Recompute with a plain joined info buffer to pin the derivation layout.
        let tsk = Tsk::from_bytes([7; 32]);
        let wf = "workflow-123";
        let mut info = HKDF_INFO_LABEL.to_vec();
        info.extend_from_slice(&(wf.len() as u64).to_be_bytes());
        info.extend_from_slice(wf.as_bytes());
        let mut expect = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"enclavemesh/v1/seal"), &[7; 32]).expand(&info, &mut expect).unwrap();
        assert_eq!(tsk.derive_subkey(wf).0, expect);
    }

    #[test]
    fn ct_eq_compares_bytes() {
        assert!(Tsk::from_bytes([3; 32]).ct_eq(&Tsk::from_bytes([3; 32])));
        assert!(!Tsk::from_bytes([3; 32]).ct_eq(&Tsk::from_bytes([4; 32])));
    }
}
