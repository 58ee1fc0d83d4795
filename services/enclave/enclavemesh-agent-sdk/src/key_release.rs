//! Key release: every TSK version, decrypted by KMS for this enclave alone.
//!
//! Each version is a KMS ciphertext made by `scripts/setup-kms.sh` with
//! GenerateDataKeyWithoutPlaintext under the pinned key and the encryption context
//! `{enclavemesh-purpose: tsk, enclavemesh-tsk-version: N}`; nobody ever held it in
//! clear. The agent asks KMS (over its own TLS, [`crate::kms`]) to decrypt it with that
//! same context, as Recipient; KMS checks the attestation against the key policy. The
//! agent is strict about what it boots with: a version whose context or key is not right
//! is refused, naming the version, the cause and the fix, and the agent serves nothing.

use std::time::Instant;

use enclavemesh_sealing::{KeyRing, Tsk};

use crate::identity::EnclaveIdentity;
use enclavemesh_proto::kms_context;

use crate::kms::{Kms, KmsCallError};
use crate::retry::{Retried, retry_transient};
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum KeyReleaseError {
    #[error(
        "KMS refused to release the TSK (version {version}) to this enclave (AccessDeniedException): {kms_message}\n\
         This enclave's PCR0 is {pcr0}{pcr8}.\n\
         Fix: allow it in the key policy with `scripts/setup-kms-policy.sh {pcr0}` \
         (or `--add {pcr0}` to keep the old PCR0 during a rollout); under a locked policy, which allows \
         images by PCR8, sign the image with a certificate the policy names."
    )]
    AccessDenied { version: u32, pcr0: String, pcr8: String, kms_message: String },
    #[error(
        "TSK version {version} refused: KMS would not decrypt it with the encryption context {{enclavemesh-purpose: \
         tsk, enclavemesh-tsk-version: {version}}} ({kms_code}). The line v{version} of the TSK file was not made by \
         scripts/setup-kms.sh for version {version} of key {key} (a parent that plants a ciphertext of its own \
         making, or renumbers one, looks exactly like this), or it was altered. Fix: make a fresh version with \
         scripts/setup-kms.sh --rotate and drop the bad line, or retire it (--retired-key-versions {version})."
    )]
    WrongContext { version: u32, key: String, kms_code: String },
    #[error(
        "TSK version {version} refused: it is not a ciphertext of the key this image pins ({pinned}): {detail}. A TSK \
         under any other key could be known to whoever controls that key, so this image takes none. Fix: make the \
         TSK file with scripts/setup-kms.sh against {pinned}, or build the image for the key you mean \
         (--kms-key-arn)."
    )]
    WrongKey { version: u32, pinned: String, detail: String },
    #[error("TSK version {version}: {source}")]
    Kms { version: u32, source: KmsCallError },
    #[error(
        "gave up after {secs}s: KMS stayed unreachable through the kms-sidecar at {sidecar} ({last}). Start the \
         sidecar (systemctl start enclavemesh-kms-sidecar, or scripts/dev.sh up), check its --connect-to/--allow and \
         the vsock CID/port, and that the parent can reach KMS"
    )]
    Unavailable { secs: u64, sidecar: enclavemesh_transport::Address, last: String },
    #[error("the TSK file lists no key versions")]
    NoVersions,
    #[error(
        "KMS released {len} bytes for TSK version {version}; a TSK is 32 bytes (AES-256). Was the key made with \
         scripts/setup-kms.sh?"
    )]
    BadTsk { version: u32, len: usize },
    #[error("TSK version {version} cannot join the key ring: {source}")]
    KeyRing { version: u32, source: enclavemesh_sealing::KeyRingError },
}

impl KeyReleaseError {
    fn from_kms(version: u32, e: KmsCallError, identity: &EnclaveIdentity, settings: &Settings) -> Self {
        match (&e, e.kms_code()) {
            (KmsCallError::Refused { message, .. }, Some("AccessDeniedException")) => KeyReleaseError::AccessDenied {
                version,
                pcr0: identity.pcr0_hex.clone(),
                pcr8: identity.pcr8_hex.as_ref().map(|p| format!(" and its PCR8 {p}")).unwrap_or_default(),
                kms_message: message.clone(),
            },
            (_, Some(code @ "InvalidCiphertextException")) => {
                KeyReleaseError::WrongContext { version, key: settings.tsk_key.arn.clone(), kms_code: code.to_string() }
            }
            // The pinned key is not at the KMS the tunnel reached, or the blob is not under it.
            (_, Some("IncorrectKeyException" | "NotFoundException")) | (KmsCallError::WrongKey { .. }, _) => {
                KeyReleaseError::WrongKey { version, pinned: settings.tsk_key.arn.clone(), detail: e.to_string() }
            }
            _ => KeyReleaseError::Kms { version, source: e },
        }
    }
}

/// Releases every TSK version into a key ring named by the pinned key's ARN.
pub async fn release_tsk(
    identity: &EnclaveIdentity,
    kms: &Kms,
    settings: &Settings,
) -> Result<KeyRing, KeyReleaseError> {
    let deadline = Instant::now() + settings.bootstrap_timeout;
    let mut ring = KeyRing::new(settings.tsk_key.arn.clone());
    for v in &settings.tsk_versions {
        let answer = retry_transient(deadline, || {
            kms.decrypt_for_enclave(&settings.tsk_key, &v.ciphertext_blob, kms_context::tsk(v.version), identity)
        })
        .await;
        let plain = match answer {
            Retried::Answer(p) => p,
            Retried::Refused(e) => return Err(KeyReleaseError::from_kms(v.version, e, identity, settings)),
            Retried::GaveUp { secs, last } => {
                return Err(KeyReleaseError::Unavailable {
                    secs,
                    sidecar: settings.sidecar.clone(),
                    last: last.to_string(),
                });
            }
        };
        let tsk =
            Tsk::from_slice(&plain).map_err(|_| KeyReleaseError::BadTsk { version: v.version, len: plain.len() })?;
        ring.insert(v.version, tsk).map_err(|source| KeyReleaseError::KeyRing { version: v.version, source })?;
        tracing::info!(version = v.version, "TSK version released to this enclave");
    }
    if ring.is_empty() {
        return Err(KeyReleaseError::NoVersions);
    }
    Ok(ring)
}
