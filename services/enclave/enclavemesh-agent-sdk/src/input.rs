//! The data owner's input: sealed on the owner's client, opened here and nowhere else.
//!
//! Why Init insists on it: an Init the host could call with numbers of its own would
//! mint authentic state. The input must be a KMS ciphertext of the pinned input key
//! with this workflow's encryption context (or AES-GCM under a data key that is one),
//! which only the owner's principal may make (the input key policy) and only an
//! attested enclave may open. Anything else is `input_not_owner_sealed`.

use enclavemesh_proto::v1::{SealedInput, WorkflowInput, sealed_input};
use enclavemesh_proto::{Refusal, kms_context};
use tonic::Status;
use zeroize::Zeroizing;

use crate::identity::EnclaveIdentity;
use crate::kms::pin::KeyPin;
use crate::kms::{Kms, KmsCallError};

/// KMS ciphertexts are at most 6144 bytes.
const MAX_KMS_BLOB_BYTES: usize = 6144;
/// Largest data-key-sealed input accepted.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

fn not_owner_sealed(why: impl std::fmt::Display) -> Status {
    Refusal::InputNotOwnerSealed.status(format!(
        "the input was not sealed by the data owner for this workflow: {why}. Seal it on the owner's client \
         (enclavemesh trigger, or enclavemesh seal-input --workflow-id <the same id>)"
    ))
}

/// What a KMS refusal of the input means.
fn kms_refusal(e: KmsCallError) -> Status {
    match e.refusal() {
        // Not a ciphertext of the input key, or made for another workflow or purpose.
        Refusal::KmsInvalidCiphertext => not_owner_sealed(e),
        other => other.status(format!("opening the owner's input: {e}")),
    }
}

async fn kms_open(
    kms: &Kms,
    key: &KeyPin,
    identity: &EnclaveIdentity,
    workflow_id: &str,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Status> {
    if blob.is_empty() || blob.len() > MAX_KMS_BLOB_BYTES {
        return Err(not_owner_sealed(format!(
            "a KMS ciphertext is 1..={MAX_KMS_BLOB_BYTES} bytes, got {}",
            blob.len()
        )));
    }
    kms.decrypt_for_enclave(key, blob, kms_context::input(workflow_id), identity).await.map_err(kms_refusal)
}

/// Opens `sealed` for `workflow_id` through KMS, as this enclave alone can.
/// Opens a SealedInput made by the owner's principal for `context_id` (a workflow id,
/// or a resource's `resource:NAME`): the plaintext, wiped on drop.
pub async fn open_sealed(
    kms: &Kms,
    key: &KeyPin,
    identity: &EnclaveIdentity,
    context_id: &str,
    sealed: Option<&SealedInput>,
) -> Result<Zeroizing<Vec<u8>>, Status> {
    let sealed = sealed.and_then(|s| s.sealed.as_ref()).ok_or_else(|| not_owner_sealed("no sealed input was given"))?;
    Ok(match sealed {
        sealed_input::Sealed::KmsCiphertext(blob) => kms_open(kms, key, identity, context_id, blob).await?,
        sealed_input::Sealed::DataKey(d) => {
            if d.ciphertext.len() > MAX_INPUT_BYTES {
                return Err(Refusal::EnvelopeTooLarge.status(format!(
                    "the sealed input is {} bytes; the limit is {MAX_INPUT_BYTES}",
                    d.ciphertext.len()
                )));
            }
            let data_key = kms_open(kms, key, identity, context_id, &d.encrypted_data_key).await?;
            let opened = enclavemesh_sealing::owner::open_input(&data_key, context_id, &d.nonce, &d.ciphertext)
                .map_err(not_owner_sealed)?;
            Zeroizing::new(opened.to_vec())
        }
    })
}

/// Opens the owner's input for `workflow_id` (Init).
pub async fn open(
    kms: &Kms,
    key: Option<&KeyPin>,
    identity: &EnclaveIdentity,
    workflow_id: &str,
    sealed: Option<&SealedInput>,
) -> Result<Zeroizing<WorkflowInput>, Status> {
    let key = key.ok_or_else(|| {
        Refusal::WrongRole
            .status("this agent has no --input-key-arn, so it opens no owner inputs: send Init to the first role")
    })?;
    let plain = open_sealed(kms, key, identity, workflow_id, sealed).await?;
    let input: WorkflowInput = enclavemesh_proto::decode_bounded(&plain, MAX_INPUT_BYTES)
        .map_err(|e| Refusal::InvalidInput.status(format!("the owner's input is not a WorkflowInput: {e}")))?;
    // Wiped on drop (WorkflowInput derives Zeroize: enclavemesh-proto's build.rs).
    let input = Zeroizing::new(input);
    if input.owner_public_key.len() != enclavemesh_sealing::owner::OWNER_KEY_LEN {
        return Err(Refusal::InvalidInput.status(format!(
            "the owner's input carries a {}-byte owner key; results are sealed to a 32-byte X25519 key \
             (enclavemesh keygen)",
            input.owner_public_key.len()
        )));
    }
    Ok(input)
}
