//! Key release: get the TSK versions from KMS through the parent's sidecar.
//!
//! For each encrypted TSK version the agent sends the KMS ciphertext blob plus a
//! fresh attestation document; KMS (after checking the document's PCR0 against the
//! key policy) answers with CiphertextForRecipient, which only our ephemeral RSA key
//! opens. Transient failures (sidecar restarting, KMS unreachable) are retried with
//! backoff; a refusal is final and explained.

use crate::enclave::EnclaveIdentity;
use crate::tsk_file::EncryptedTsk;
use enclavemesh_proto::v1::{AgentConfigRequest, AgentConfigResponse, ForwardDecryptRequest};
use crate::service::SidecarClient;
use enclavemesh_sealing::{KeyRing, Tsk};
use std::future::Future;
use std::time::{Duration, Instant};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "KMS refused to release the TSK (version {version}) to this enclave: {kms_message}\n\
         This enclave's PCR0 is {pcr0}.\n\
         Fix: allow it in the key policy with `scripts/setup-kms-policy.sh {pcr0}` \
         (or `--add {pcr0}` to keep the old PCR0 during a rollout)."
    )]
    AccessDenied { version: u32, pcr0: String, kms_message: String },
    #[error("KMS rejected the TSK request (version {version}): {code:?}: {message}. Check --tsk-file (written by scripts/setup-kms.sh) and --key-id")]
    Rejected { version: u32, code: Code, message: String },
    #[error("gave up after {secs}s: the kms-sidecar at {sidecar} stayed unavailable ({last}). Start it (systemctl start enclavemesh-kms-sidecar, or scripts/dev.sh up) and check the vsock CID/port")]
    SidecarUnavailable { secs: u64, sidecar: String, last: String },
    #[error("the kms-sidecar at {sidecar} gave no agent configuration ({code:?}: {message}). This agent runs with --config-from-sidecar (the enclave image sets it): give the sidecar --agent-role CID=NAME:KIND and --agent-tsk-file")]
    NoAgentConfig { sidecar: String, code: Code, message: String },
    #[error("the kms-sidecar at {sidecar} gave an unusable agent configuration: {reason}. Fix the sidecar's --agent-role CID=NAME:KIND")]
    BadAgentConfig { sidecar: String, reason: String },
    #[error("the TSK file lists no key versions")]
    NoVersions,
    #[error("attestation failed: {0}")]
    Attest(#[from] enclavemesh_attestation::NsmError),
    #[error("cannot open KMS's CiphertextForRecipient: {0}")]
    Unwrap(#[from] enclavemesh_recipient::RecipientError),
    #[error("KMS released {len} bytes for TSK version {version}; a TSK is 32 bytes (AES-256). Was the key made with scripts/setup-kms.sh?")]
    BadTsk { version: u32, len: usize },
}

/// Whether a sidecar/KMS status is worth retrying.
pub fn is_transient(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::ResourceExhausted | Code::Aborted | Code::Cancelled)
}

/// Calls the sidecar until it answers, refuses for good, or `deadline` passes.
/// Transient statuses (sidecar restarting, KMS unreachable) back off 100 ms → 5 s;
/// the last attempt is made at the deadline, so the agent waits the whole
/// --bootstrap-timeout-secs. `Ok(Err(status))` is a final (non-transient) refusal
/// for the caller to explain; `Err` is a local failure or giving up.
pub async fn retry_transient<T, Fut>(
    sidecar: &str,
    deadline: Instant,
    mut call: impl FnMut() -> Fut,
) -> Result<Result<T, Status>, BootstrapError>
where
    Fut: Future<Output = Result<Result<T, Status>, BootstrapError>>,
{
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match call().await? {
            Err(status) if is_transient(status.code()) && Instant::now() < deadline => {
                let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tracing::warn!(code = ?status.code(), message = status.message(), retry_in_ms = wait.as_millis() as u64, "sidecar/KMS not ready; retrying");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(status) if is_transient(status.code()) => {
                return Err(BootstrapError::SidecarUnavailable {
                    secs: started.elapsed().as_secs(),
                    sidecar: sidecar.to_string(),
                    last: format!("{:?}: {}", status.code(), status.message()),
                });
            }
            done => return Ok(done),
        }
    }
}

/// The agent's role and encrypted-TSK file from the parent (`--config-from-sidecar`):
/// an enclave takes no flags or environment, so this is how it learns them.
pub async fn fetch_agent_config(
    client: &mut SidecarClient,
    sidecar: &str,
    deadline: Instant,
) -> Result<AgentConfigResponse, BootstrapError> {
    let answer = retry_transient(sidecar, deadline, || {
        let mut client = client.clone();
        async move { Ok(client.get_agent_config(AgentConfigRequest {}).await.map(tonic::Response::into_inner)) }
    })
    .await?;
    answer.map_err(|status| BootstrapError::NoAgentConfig {
        sidecar: sidecar.to_string(),
        code: status.code(),
        message: status.message().to_string(),
    })
}

/// Asks KMS (via the sidecar) to decrypt `blob` to us; returns the plaintext held in
/// zeroizing memory. Retries transient errors until `deadline`.
pub async fn decrypt_for_enclave(
    identity: &EnclaveIdentity,
    client: &mut SidecarClient,
    sidecar: &str,
    key_id: &str,
    blob: &[u8],
    version: u32,
    deadline: Instant,
) -> Result<(String, zeroize::Zeroizing<Vec<u8>>), BootstrapError> {
    let answer = retry_transient(sidecar, deadline, || {
        let mut client = client.clone();
        // A fresh document per attempt: KMS checks its freshness.
        let doc = identity.attest_for_kms();
        let req = doc.map(|doc| ForwardDecryptRequest {
            ciphertext_blob: blob.to_vec(),
            key_id: key_id.to_string(),
            attestation_document: doc,
        });
        async move { Ok(client.decrypt(req?).await.map(tonic::Response::into_inner)) }
    })
    .await?;
    match answer {
        Ok(resp) => Ok((resp.key_id, identity.key.unwrap(&resp.ciphertext_for_recipient)?)),
        Err(status) if status.code() == Code::PermissionDenied => Err(BootstrapError::AccessDenied {
            version,
            pcr0: identity.pcr0_hex.clone(),
            kms_message: status.message().to_string(),
        }),
        Err(status) => Err(BootstrapError::Rejected { version, code: status.code(), message: status.message().to_string() }),
    }
}

/// Releases every TSK version into a key ring named by the KMS key id (the ARN KMS
/// reports, unless the operator pinned `--key-id`).
pub async fn release_tsk(
    identity: &EnclaveIdentity,
    client: &mut SidecarClient,
    sidecar: &str,
    key_id: &str,
    versions: &[EncryptedTsk],
    timeout: Duration,
) -> Result<KeyRing, BootstrapError> {
    let deadline = Instant::now() + timeout;
    let mut ring: Option<KeyRing> = None;
    for v in versions {
        let (kms_key_id, plain) =
            decrypt_for_enclave(identity, client, sidecar, key_id, &v.ciphertext_blob, v.version, deadline).await?;
        let ring = ring.get_or_insert_with(|| {
            KeyRing::new(if key_id.is_empty() { kms_key_id } else { key_id.to_string() })
        });
        let tsk = Tsk::from_slice(&plain).map_err(|_| BootstrapError::BadTsk { version: v.version, len: plain.len() })?;
        ring.insert(v.version, tsk).map_err(|e| BootstrapError::Rejected { version: v.version, code: Code::Internal, message: e.to_string() })?;
        tracing::info!(version = v.version, "TSK version released to this enclave");
    }
    ring.ok_or(BootstrapError::NoVersions)
}
