//! The sidecar's whole configuration: one struct, from flags or environment.

use clap::Parser;
use enclavemesh_transport::Address;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kms-sidecar",
    about = "Forwards an enclave's KMS calls to AWS KMS (or the dev emulator).",
    long_about = "Runs on the parent instance. The enclave has no network, so it sends its KMS \
Decrypt/GenerateDataKey calls here over vsock; each call carries the enclave's attestation \
document as the KMS Recipient, so KMS answers with CiphertextForRecipient wrapped to a key only \
the enclave holds. This process never sees a plaintext key.\n\n\
Credentials and region come from the standard AWS chain (env, profile, IMDSv2). \
In dev mode point --kms-endpoint at the kms-emulator."
)]
pub struct Config {
    /// Transport address to serve KmsForwarder on: vsock://ANY:8000, unix:///path or tcp://host:port.
    #[arg(long, env = "KMS_SIDECAR_LISTEN", default_value = "vsock://ANY:8000")]
    pub listen: Address,

    /// KMS endpoint override, e.g. http://127.0.0.1:4599 for the dev emulator.
    /// Without it the SDK's normal endpoint resolution applies (AWS_ENDPOINT_URL_KMS is honoured).
    #[arg(long, env = "KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,

    /// AWS region (defaults to the SDK's region chain).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,

    /// Timeout for one KMS call, in milliseconds.
    #[arg(long, env = "KMS_SIDECAR_KMS_TIMEOUT_MS", default_value_t = 10_000)]
    pub kms_timeout_ms: u64,
}
