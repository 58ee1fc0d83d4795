//! Key release: get the TSK versions from KMS through the parent's sidecar.
//!
//! For each encrypted TSK version the agent sends the KMS ciphertext blob plus a
//! fresh attestation document; KMS (after checking the document's PCR0 against the
//! key policy) answers with CiphertextForRecipient, which only our ephemeral RSA key
//! opens. Transient failures (sidecar restarting, KMS unreachable) are retried with
//! backoff; a refusal is final and explained.

use std::time::Instant;

use enclavemesh_proto::v1::ForwardDecryptRequest;
use enclavemesh_sealing::{KeyRing, Tsk};
use enclavemesh_transport::Address;
use tonic::Code;
use zeroize::Zeroizing;

use crate::identity::EnclaveIdentity;
use crate::settings::Settings;
use crate::sidecar::{Retried, SidecarClient, retry_transient};
use crate::tsk_file::EncryptedTsk;

#[derive(Debug, thiserror::Error)]
pub enum KeyReleaseError {
    #[error(
        "KMS refused to release the TSK (version {version}) to this enclave: {kms_message}\n\
         This enclave's PCR0 is {pcr0}.\n\
         Fix: allow it in the key policy with `scripts/setup-kms-policy.sh {pcr0}` \
         (or `--add {pcr0}` to keep the old PCR0 during a rollout)."
    )]
    AccessDenied { version: u32, pcr0: String, kms_message: String },
    #[error(
        "KMS rejected the TSK request (version {version}): {code:?}: {message}. Check --tsk-file (written by \
         scripts/setup-kms.sh) and --key-id"
    )]
    Rejected { version: u32, code: Code, message: String },
    #[error(
        "gave up after {secs}s: the kms-sidecar at {sidecar} stayed unavailable ({last}). Start it (systemctl start \
         enclavemesh-kms-sidecar, or scripts/dev.sh up) and check the vsock CID/port"
    )]
    SidecarUnavailable { secs: u64, sidecar: Address, last: String },
    #[error("the TSK file lists no key versions")]
    NoVersions,
    #[error("attestation failed: {0}")]
    Attest(#[from] enclavemesh_attestation::NsmError),
    #[error("cannot open KMS's CiphertextForRecipient: {0}")]
    Unwrap(#[from] enclavemesh_recipient::RecipientError),
    #[error(
        "KMS released {len} bytes for TSK version {version}; a TSK is 32 bytes (AES-256). Was the key made with \
         scripts/setup-kms.sh?"
    )]
    BadTsk { version: u32, len: usize },
    #[error("TSK version {version} cannot join the key ring: {source}")]
    KeyRing { version: u32, source: enclavemesh_sealing::KeyRingError },
}

/// Asks KMS (via the sidecar) to decrypt `blob` to us; returns the key id KMS reports
/// and the plaintext in zeroizing memory. Retries transient errors until `deadline`.
async fn decrypt_for_enclave(
    identity: &EnclaveIdentity,
    client: &SidecarClient,
    settings: &Settings,
    tsk: &EncryptedTsk,
    deadline: Instant,
) -> Result<(String, Zeroizing<Vec<u8>>), KeyReleaseError> {
    let answer = retry_transient(deadline, || {
        let mut client = client.clone();
        // A fresh document per attempt: KMS checks its freshness.
        let req = identity.attest_for_kms().map(|doc| ForwardDecryptRequest {
            ciphertext_blob: tsk.ciphertext_blob.clone(),
            key_id: settings.key_id.clone(),
            attestation_document: doc,
        });
        async move {
            let req = req?;
            Ok::<_, KeyReleaseError>(client.decrypt(req).await.map(tonic::Response::into_inner))
        }
    })
    .await?;
    match answer {
        Retried::Answer(resp) => Ok((resp.key_id, identity.key.unwrap(&resp.ciphertext_for_recipient)?)),
        Retried::Refused(status) if status.code() == Code::PermissionDenied => Err(KeyReleaseError::AccessDenied {
            version: tsk.version,
            pcr0: identity.pcr0_hex.clone(),
            kms_message: status.message().to_string(),
        }),
        Retried::Refused(status) => Err(KeyReleaseError::Rejected {
            version: tsk.version,
            code: status.code(),
            message: status.message().to_string(),
        }),
        Retried::GaveUp { secs, last } => Err(KeyReleaseError::SidecarUnavailable {
            secs,
            sidecar: settings.sidecar.clone(),
            last: format!("{:?}: {}", last.code(), last.message()),
        }),
    }
}

/// Releases every TSK version into a key ring named by the KMS key id (the ARN KMS
/// reports, unless the operator pinned `--key-id`).
pub async fn release_tsk(
    identity: &EnclaveIdentity,
    client: &SidecarClient,
    settings: &Settings,
) -> Result<KeyRing, KeyReleaseError> {
    let deadline = Instant::now() + settings.bootstrap_timeout;
    let mut ring: Option<KeyRing> = None;
    for v in &settings.tsk_versions {
        let (kms_key_id, plain) = decrypt_for_enclave(identity, client, settings, v, deadline).await?;
        let ring = ring.get_or_insert_with(|| {
            KeyRing::new(if settings.key_id.is_empty() { kms_key_id } else { settings.key_id.clone() })
        });
        let tsk =
            Tsk::from_slice(&plain).map_err(|_| KeyReleaseError::BadTsk { version: v.version, len: plain.len() })?;
        ring.insert(v.version, tsk).map_err(|source| KeyReleaseError::KeyRing { version: v.version, source })?;
        tracing::info!(version = v.version, "TSK version released to this enclave");
    }
    ring.ok_or(KeyReleaseError::NoVersions)
}
