//! The KmsForwarder gRPC service: one KMS call per request, Recipient always set.

use crate::agent_config::AgentDirectory;
use crate::kms_error::to_status;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyEncryptionMechanism, RecipientInfo};
use enclavemesh_proto::Refusal;
use enclavemesh_proto::v1::kms_forwarder_server::KmsForwarder;
use enclavemesh_proto::v1::{
    AgentConfigRequest, AgentConfigResponse, ForwardDecryptRequest, ForwardDecryptResponse,
    ForwardGenerateDataKeyRequest, ForwardGenerateDataKeyResponse,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// Largest attestation document accepted (real ones are ~4.5 KiB).
pub const MAX_ATTESTATION_DOC_BYTES: usize = 16 * 1024;
/// KMS ciphertext blobs are at most 6144 bytes.
pub const MAX_CIPHERTEXT_BLOB_BYTES: usize = 6144;

/// Forwards to KMS. Holds only a KMS client: there is no key material here, and a
/// response carrying `Plaintext` is refused rather than passed on.
pub struct Forwarder {
    kms: aws_sdk_kms::Client,
    endpoint: String,
    agents: AgentDirectory,
}

impl Forwarder {
    pub fn new(kms: aws_sdk_kms::Client, endpoint: String) -> Self {
        Self { kms, endpoint, agents: AgentDirectory::default() }
    }

    /// Roles and TSK file handed to enclaves at boot.
    pub fn with_agents(mut self, agents: AgentDirectory) -> Self {
        self.agents = agents;
        self
    }
}

fn recipient(doc: Vec<u8>) -> Result<RecipientInfo, Status> {
    if doc.is_empty() {
        return Err(Refusal::InvalidRequest.status(
            "attestation_document is empty: the sidecar only forwards calls that carry a Recipient, \
             so KMS never returns a plaintext key to the parent",
        ));
    }
    if doc.len() > MAX_ATTESTATION_DOC_BYTES {
        return Err(Refusal::InvalidRequest
            .status(format!("attestation_document of {} bytes exceeds {MAX_ATTESTATION_DOC_BYTES}", doc.len())));
    }
    Ok(RecipientInfo::builder()
        .attestation_document(Blob::new(doc))
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .build())
}

/// Adds the current (KMS client) span's `traceparent` to the outgoing KMS HTTP request,
/// before SigV4 signing, so a KMS emulator (or a tracing proxy) joins the trace.
fn inject_traceparent(req: &mut aws_sdk_kms::config::http::HttpRequest) {
    enclavemesh_telemetry::inject_with(|k, v| {
        req.headers_mut().insert(k.to_owned(), v.to_owned());
    });
}

/// Short, non-secret outcome of a KMS call for the `enclavemesh.kms.calls` metric and
/// the span: `ok`, or the refusal's label.
fn outcome<T>(r: &Result<T, Status>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(s) => Refusal::of(s).unwrap_or(Refusal::KmsBadResponse).label(),
    }
}

/// Records a finished KMS call: the metric and the handler span's `outcome`.
fn record_kms<T>(op: &str, r: &Result<T, Status>) {
    let o = outcome(r);
    enclavemesh_telemetry::metrics::kms_call(op, o);
    tracing::Span::current().record("outcome", o);
}

fn plaintext_leak(op: &str) -> Status {
    tracing::error!(op, "KMS returned Plaintext to a Recipient call; dropping it");
    Refusal::KmsBadResponse
        .status(format!("KMS {op} returned a Plaintext field despite the Recipient; refusing to forward it"))
}

#[tonic::async_trait]
impl KmsForwarder for Forwarder {
    async fn get_agent_config(
        &self,
        request: Request<AgentConfigRequest>,
    ) -> Result<Response<AgentConfigResponse>, Status> {
        let peer = request.extensions().get::<enclavemesh_transport::ConnInfo>().and_then(|i| i.peer.clone());
        self.agents.config_for(peer.as_ref()).map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(op = "Decrypt", blob_len, doc_len, outcome))]
    async fn decrypt(
        &self,
        request: Request<ForwardDecryptRequest>,
    ) -> Result<Response<ForwardDecryptResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::Span::current();
        span.record("blob_len", req.ciphertext_blob.len());
        span.record("doc_len", req.attestation_document.len());
        if req.ciphertext_blob.is_empty() || req.ciphertext_blob.len() > MAX_CIPHERTEXT_BLOB_BYTES {
            return Err(Refusal::InvalidRequest.status(format!(
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
        let out = call
            .customize()
            .mutate_request(inject_traceparent)
            .send()
            .instrument(enclavemesh_telemetry::kms_span("Decrypt"))
            .await
            .map_err(|e| {
                let status = to_status("Decrypt", &self.endpoint, e);
                tracing::warn!(code = ?status.code(), message = status.message(), "KMS Decrypt refused");
                status
            });
        record_kms("Decrypt", &out);
        let out = out?;
        if out.plaintext().is_some() {
            return Err(plaintext_leak("Decrypt"));
        }
        let cfr = out
            .ciphertext_for_recipient()
            .ok_or_else(|| Refusal::KmsBadResponse.status("KMS Decrypt answered without CiphertextForRecipient"))?;
        tracing::info!(key_id = out.key_id().unwrap_or(""), "KMS Decrypt forwarded");
        Ok(Response::new(ForwardDecryptResponse {
            key_id: out.key_id().unwrap_or_default().to_string(),
            ciphertext_for_recipient: cfr.as_ref().to_vec(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "GenerateDataKey", doc_len, outcome))]
    async fn generate_data_key(
        &self,
        request: Request<ForwardGenerateDataKeyRequest>,
    ) -> Result<Response<ForwardGenerateDataKeyResponse>, Status> {
        let req = request.into_inner();
        tracing::Span::current().record("doc_len", req.attestation_document.len());
        if req.key_id.is_empty() {
            return Err(Refusal::InvalidRequest.status("key_id is required for GenerateDataKey"));
        }
        let n = if req.number_of_bytes == 0 { 32 } else { req.number_of_bytes };
        if n > 1024 {
            return Err(Refusal::InvalidRequest.status(format!("number_of_bytes must be 1..=1024, got {n}")));
        }
        let out = self
            .kms
            .generate_data_key()
            .key_id(req.key_id)
            .number_of_bytes(n as i32)
            .recipient(recipient(req.attestation_document)?)
            .customize()
            .mutate_request(inject_traceparent)
            .send()
            .instrument(enclavemesh_telemetry::kms_span("GenerateDataKey"))
            .await
            .map_err(|e| to_status("GenerateDataKey", &self.endpoint, e));
        record_kms("GenerateDataKey", &out);
        let out = out?;
        if out.plaintext().is_some() {
            return Err(plaintext_leak("GenerateDataKey"));
        }
        let cfr = out.ciphertext_for_recipient().ok_or_else(|| {
            Refusal::KmsBadResponse.status("KMS GenerateDataKey answered without CiphertextForRecipient")
        })?;
        Ok(Response::new(ForwardGenerateDataKeyResponse {
            key_id: out.key_id().unwrap_or_default().to_string(),
            ciphertext_blob: out.ciphertext_blob().map(|b| b.as_ref().to_vec()).unwrap_or_default(),
            ciphertext_for_recipient: cfr.as_ref().to_vec(),
        }))
    }
}
