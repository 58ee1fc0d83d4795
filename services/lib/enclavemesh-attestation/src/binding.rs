//! What an attestation document's `user_data` vouches for, by domain.
//!
//! Why domains: the enclave signs documents for several purposes (its audit key, its
//! KMS Recipient key, a caller's `Attest`). If a caller's bytes went into `user_data`
//! as they are, a host could have the enclave attest `SHA(audit label || host key)` and
//! present the host's key as the enclave's audit key. Every binding is
//! `SHA-384(label || 0x00 || bytes)` under its own label, and a verifier recomputes it
//! for the one domain it expects, so a document made for one purpose never passes for
//! another.

use sha2::{Digest, Sha384};

/// The purposes a document's `user_data` can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Bytes a caller of `AgentService.Attest` chose: vouches only that the enclave saw them.
    Caller,
    /// The enclave's per-boot audit signing key (SEC1 public key).
    AuditKey,
    /// The enclave's ephemeral KMS Recipient key (SPKI DER), as in the document's `public_key`.
    KmsRecipient,
}

impl Domain {
    /// The domain's label, hashed in front of the bytes.
    pub fn label(self) -> &'static [u8] {
        match self {
            Domain::Caller => b"enclavemesh/v1/attest/caller",
            Domain::AuditKey => b"enclavemesh/v1/attest/audit-signing-key",
            Domain::KmsRecipient => b"enclavemesh/v1/attest/kms-recipient-key",
        }
    }
}

/// The `user_data` binding `bytes` under `domain`: `SHA-384(label || 0x00 || bytes)`.
pub fn user_data(domain: Domain, bytes: &[u8]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(domain.label());
    h.update([0u8]);
    h.update(bytes);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_bind_differently_in_every_domain() {
        let key = b"some public key";
        let all = [Domain::Caller, Domain::AuditKey, Domain::KmsRecipient].map(|d| user_data(d, key));
        assert_ne!(all[0], all[1]);
        assert_ne!(all[1], all[2]);
        assert_ne!(all[0], all[2]);
        // A caller cannot reach the audit domain by choosing its bytes: its own input
        // would have to be a SHA-384 preimage.
        assert_ne!(user_data(Domain::Caller, &user_data(Domain::AuditKey, key)), all[1]);
    }
}
