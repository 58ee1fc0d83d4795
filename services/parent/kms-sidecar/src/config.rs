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

    /// Role of the enclave at a vsock CID, handed to it at boot (GetAgentConfig):
    /// `CID=NAME:KIND`, e.g. `16=agent-a:ledger-init`; `*=NAME:KIND` for any caller no
    /// CID entry matches. Repeat the flag, or comma-separate in the env var. An enclave
    /// cannot take flags or environment, so this is how one image plays several agents.
    #[arg(long = "agent-role", env = "KMS_SIDECAR_AGENT_ROLES", value_delimiter = ',', value_name = "CID=NAME:KIND")]
    pub agent_roles: Vec<crate::agent_config::AgentRole>,

    /// Encrypted-TSK file (scripts/setup-kms.sh's encrypted-tsk.b64) handed to enclaves
    /// with their role. KMS ciphertext only: releasing it still takes an attestation.
    #[arg(long, env = "KMS_SIDECAR_AGENT_TSK_FILE")]
    pub agent_tsk_file: Option<std::path::PathBuf>,

    /// KMS key id/ARN handed to enclaves with their role (optional: KMS infers it).
    #[arg(long, env = "KMS_SIDECAR_AGENT_KEY_ID", default_value = "")]
    pub agent_key_id: String,
}

impl Config {
    /// What GetAgentConfig hands out.
    pub fn agent_directory(&self) -> crate::agent_config::AgentDirectory {
        crate::agent_config::AgentDirectory {
            roles: self.agent_roles.clone(),
            tsk_file: self.agent_tsk_file.clone(),
            key_id: self.agent_key_id.clone(),
        }
    }
}
