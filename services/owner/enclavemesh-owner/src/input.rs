//! The workflow input, sealed on the owner's client for one workflow id.
//!
//! KMS `Encrypt` under the input key with the context
//! `{enclavemesh-purpose: workflow-input, enclavemesh-workflow-id: <id>}` (the owner's
//! principal is the only one the input key policy lets do that). Above the 4096 bytes
//! `Encrypt` takes, a data key from `GenerateDataKey` (same key, same context) seals it
//! with AES-256-GCM here, and only its KMS ciphertext travels. Either way the host can
//! neither read the input nor make one, and an input for workflow X does not open in Y.

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use enclavemesh_proto::kms_context;
use enclavemesh_proto::v1::{DataKeySealed, SealedInput, WorkflowInput, sealed_input};
use prost::Message;
use zeroize::Zeroizing;

use crate::OwnerError;

/// The most KMS `Encrypt` takes.
pub const MAX_KMS_PLAINTEXT: usize = 4096;

fn sdk_detail<E: ProvideErrorMetadata + std::fmt::Debug>(e: &aws_sdk_kms::error::SdkError<E>) -> String {
    match e.as_service_error() {
        Some(se) => format!("{}: {}", se.code().unwrap_or("error"), se.message().unwrap_or("")),
        None => format!("{e:?}").chars().take(300).collect(),
    }
}

/// Seals `input` for `workflow_id` under `input_key` (ARN, key id or alias).
pub async fn seal_input(
    kms: &aws_sdk_kms::Client,
    input_key: &str,
    workflow_id: &str,
    input: &WorkflowInput,
) -> Result<SealedInput, OwnerError> {
    seal_bytes(kms, input_key, workflow_id, &Zeroizing::new(input.encode_to_vec())).await
}

/// The workflow slot of a resource's encryption context, before its name (the agent SDK
/// opens `resource:NAME`, and no workflow id may start with it).
pub const RESOURCE_PREFIX: &str = "resource:";

/// Seals `bytes` as the resource `name` (`--resource NAME=FILE` of an agent): under the
/// input key, with `resource:NAME` in the workflow slot, so it opens only as that
/// resource, only in an attested enclave.
pub async fn seal_resource(
    kms: &aws_sdk_kms::Client,
    input_key: &str,
    name: &str,
    bytes: &[u8],
) -> Result<SealedInput, OwnerError> {
    seal_bytes(kms, input_key, &format!("{RESOURCE_PREFIX}{name}"), bytes).await
}

async fn seal_bytes(
    kms: &aws_sdk_kms::Client,
    input_key: &str,
    workflow_id: &str,
    plain: &[u8],
) -> Result<SealedInput, OwnerError> {
    let context = kms_context::input(workflow_id);
    let kms_error = |op, detail| OwnerError::Kms { op, workflow_id: workflow_id.to_string(), detail };
    let sealed = if plain.len() <= MAX_KMS_PLAINTEXT {
        let out = kms
            .encrypt()
            .key_id(input_key)
            .plaintext(Blob::new(plain))
            .set_encryption_context(Some(context))
            .send()
            .await
            .map_err(|e| kms_error("Encrypt", sdk_detail(&e)))?;
        let blob = out.ciphertext_blob().ok_or_else(|| kms_error("Encrypt", "no CiphertextBlob".into()))?;
        sealed_input::Sealed::KmsCiphertext(blob.as_ref().to_vec())
    } else {
        let out = kms
            .generate_data_key()
            .key_id(input_key)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context))
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", sdk_detail(&e)))?;
        let data_key = Zeroizing::new(
            out.plaintext()
                .map(|p| p.as_ref().to_vec())
                .ok_or_else(|| kms_error("GenerateDataKey", "no Plaintext".into()))?,
        );
        let encrypted_data_key = out
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| kms_error("GenerateDataKey", "no CiphertextBlob".into()))?;
        let (nonce, ciphertext) =
            enclavemesh_sealing::owner::seal_input(&data_key, workflow_id, plain).map_err(OwnerError::Seal)?;
        sealed_input::Sealed::DataKey(DataKeySealed { encrypted_data_key, nonce, ciphertext })
    };
    Ok(SealedInput { sealed: Some(sealed) })
}
