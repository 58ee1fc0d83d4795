//! The KmsForwarder gRPC service: one KMS call per request, Recipient always set.

use crate::kms_error::to_status;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyEncryptionMechanism, RecipientInfo};
use enclavemesh_proto::v1::kms_forwarder_server::KmsForwarder;
use enclavemesh_proto::v1::{
    ForwardDecryptRequest, ForwardDecryptResponse, ForwardGenerateDataKeyRequest,
    ForwardGenerateDataKeyResponse,
};
use tonic::{Request, Response, Status};

/// Largest attestation document accepted (real ones are ~4.5 KiB).
pub const MAX_ATTESTATION_DOC_BYTES: usize = 16 * 1024;
/// KMS ciphertext blobs are at most 6144 bytes.
pub const MAX_CIPHERTEXT_BLOB_BYTES: usize = 6144;

/// Forwards to KMS. Holds only a KMS client: there is no key material here, and a
/// response carrying `Plaintext` is refused rather than passed on.
pub struct Forwarder {
    kms: aws_sdk_kms::Client,
    endpoint: String,
}

impl Forwarder {
    pub fn new(kms: aws_sdk_kms::Client, endpoint: String) -> Self {
        Self { kms, endpoint }
    }
}

fn recipient(doc: Vec<u8>) -> Result<RecipientInfo, Status> {
    if doc.is_empty() {
        return Err(Status::invalid_argument(
            "attestation_document is empty: the sidecar only forwards calls that carry a Recipient, \
             so KMS never returns a plaintext key to the parent",
        ));
    }
    if doc.len() > MAX_ATTESTATION_DOC_BYTES {
        return Err(Status::invalid_argument(format!(
            "attestation_document of {} bytes exceeds {MAX_ATTESTATION_DOC_BYTES}",
            doc.len()
        )));
    }
    Ok(RecipientInfo::builder()
        .attestation_document(Blob::new(doc))
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .build())
}

fn plaintext_leak(op: &str) -> Status {
    tracing::error!(op, "KMS returned Plaintext to a Recipient call; dropping it");
    Status::internal(format!(
        "KMS {op} returned a Plaintext field despite the Recipient; refusing to forward it"
    ))
}

#[tonic::async_trait]
impl KmsForwarder for Forwarder {
    #[tracing::instrument(skip_all, fields(op = "Decrypt", blob_len, doc_len))]
    async fn decrypt(
        &self,
        request: Request<ForwardDecryptRequest>,
    ) -> Result<Response<ForwardDecryptResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::Span::current();
        span.record("blob_len", req.ciphertext_blob.len());
        span.record("doc_len", req.attestation_document.len());
        if req.ciphertext_blob.is_empty() || req.ciphertext_blob.len() > MAX_CIPHERTEXT_BLOB_BYTES {
            return Err(Status::invalid_argument(format!(
                "ciphertext_blob must be 1..={MAX_CIPHERTEXT_BLOB_BYTES} bytes, got {}",
                req.ciphertext_blob.len()
            )));
        }
        let mut call = self
            .kms
            .decrypt()
            .ciphertext_blob(Blob::new(req.ciphertext_blob))
            .recipient(recipient(req.attestation_document)?);
        if !req.key_id.is_empty() {
            call = call.key_id(req.key_id);
        }
        let out = call.send().await.map_err(|e| {
            let status = to_status("Decrypt", &self.endpoint, e);
            tracing::warn!(code = ?status.code(), message = status.message(), "KMS Decrypt refused");
            status
        })?;
        if out.plaintext().is_some() {
            return Err(plaintext_leak("Decrypt"));
        }
        let cfr = out.ciphertext_for_recipient().ok_or_else(|| {
            Status::internal("KMS Decrypt answered without CiphertextForRecipient")
        })?;
        tracing::info!(key_id = out.key_id().unwrap_or(""), "KMS Decrypt forwarded");
        Ok(Response::new(ForwardDecryptResponse {
            key_id: out.key_id().unwrap_or_default().to_string(),
            ciphertext_for_recipient: cfr.as_ref().to_vec(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "GenerateDataKey", doc_len))]
    async fn generate_data_key(
        &self,
        request: Request<ForwardGenerateDataKeyRequest>,
    ) -> Result<Response<ForwardGenerateDataKeyResponse>, Status> {
        let req = request.into_inner();
        tracing::Span::current().record("doc_len", req.attestation_document.len());
        if req.key_id.is_empty() {
            return Err(Status::invalid_argument("key_id is required for GenerateDataKey"));
        }
        let n = if req.number_of_bytes == 0 { 32 } else { req.number_of_bytes };
        if n > 1024 {
            return Err(Status::invalid_argument(format!(
                "number_of_bytes must be 1..=1024, got {n}"
            )));
        }
        let out = self
            .kms
            .generate_data_key()
            .key_id(req.key_id)
            .number_of_bytes(n as i32)
            .recipient(recipient(req.attestation_document)?)
            .send()
            .await
            .map_err(|e| to_status("GenerateDataKey", &self.endpoint, e))?;
        if out.plaintext().is_some() {
            return Err(plaintext_leak("GenerateDataKey"));
        }
        let cfr = out.ciphertext_for_recipient().ok_or_else(|| {
            Status::internal("KMS GenerateDataKey answered without CiphertextForRecipient")
        })?;
        Ok(Response::new(ForwardGenerateDataKeyResponse {
            key_id: out.key_id().unwrap_or_default().to_string(),
            ciphertext_blob: out.ciphertext_blob().map(|b| b.as_ref().to_vec()).unwrap_or_default(),
            ciphertext_for_recipient: cfr.as_ref().to_vec(),
        }))
    }
}
