//! Command-line / environment configuration of the `kms-emulator` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use enclavemesh_attestation::{DevCa, TrustAnchor};

use crate::emulator::EmulatorConfig;
use crate::error::EmulatorError;

/// Development AWS KMS: speaks the KMS JSON 1.1 protocol (aws CLI, aws-sdk-kms with an
/// endpoint override), keeps keys in a state file, writes CloudTrail-shaped audit events
/// and supports Recipient (Nitro attestation) on Decrypt / GenerateDataKey / GenerateRandom
/// with kms:RecipientAttestation:PCR0 / ImageSha384 key-policy conditions.
#[derive(Debug, Clone, Parser)]
#[command(name = "kms-emulator", version)]
pub struct Config {
    /// Address to listen on (HTTPS, with a certificate for kms.<region>.amazonaws.com,
    /// localhost and 127.0.0.1 from the dev CA).
    #[arg(long, env = "KMS_EMULATOR_LISTEN", default_value = "127.0.0.1:4599")]
    pub listen: SocketAddr,

    /// Key store (JSON; holds key material, keep it private). Default:
    /// $ENCLAVEMESH_DEV_DIR/kms/state.json.
    #[arg(long, env = "KMS_EMULATOR_STATE_FILE")]
    pub state_file: Option<PathBuf>,

    /// CloudTrail-shaped audit log (JSON lines). Default: $ENCLAVEMESH_DEV_DIR/kms/audit.jsonl.
    #[arg(long, env = "KMS_EMULATOR_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,

    /// Root certificate (DER or PEM) attestation documents must chain to, or the word
    /// `aws-nitro-root-g1` for the real AWS Nitro Enclaves root, or `qemu-unsigned` (TESTS
    /// ONLY: QEMU's nitro-enclave machine, whose documents are not signed; PCRs, nonce,
    /// freshness and debug mode are still checked). Default: the dev CA root
    /// $ENCLAVEMESH_DEV_DIR/dev-ca/root.der (created if missing, like the simulated NSM does).
    #[arg(long, env = "KMS_EMULATOR_ATTESTATION_ROOT")]
    pub attestation_root: Option<String>,

    /// Region used in ARNs.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,

    /// Account id used in ARNs and the default key policy.
    #[arg(long, env = "KMS_EMULATOR_ACCOUNT_ID", default_value = "111122223333")]
    pub account_id: String,

    /// Accept attestation documents from debug-mode enclaves (all-zero PCRs). Never
    /// do this outside local experiments: a debug enclave's memory is readable by the parent.
    #[arg(long, env = "KMS_EMULATOR_ALLOW_DEBUG_ATTESTATION")]
    pub allow_debug_attestation: bool,

    /// Oldest attestation document accepted, in seconds.
    #[arg(long, env = "KMS_EMULATOR_MAX_ATTESTATION_AGE_SECS", default_value_t = 300)]
    pub max_attestation_age_secs: u64,

    /// Access keys and their principals (JSON). Default:
    /// $ENCLAVEMESH_DEV_DIR/kms/identities.json, created at first start with the three
    /// dev principals (admin, instance, owner), whose credentials are written to
    /// $ENCLAVEMESH_DEV_DIR/credentials/<name>.env.
    #[arg(long, env = "KMS_EMULATOR_IDENTITIES")]
    pub identities: Option<PathBuf>,

    /// Dev-mode directory (dev CA, default state, audit and identities paths).
    #[arg(long, env = "ENCLAVEMESH_DEV_DIR", default_value = ".dev")]
    pub dev_dir: PathBuf,
}

impl Config {
    /// Resolves defaults and loads the trust anchor.
    pub fn into_emulator_config(self) -> Result<EmulatorConfig, EmulatorError> {
        let dev_ca = DevCa::load_or_create(&self.dev_dir)
            .map_err(|e| EmulatorError::TrustAnchor(format!("loading or creating the dev CA: {e}")))?;
        let tls = Some(crate::tls::server_config(&dev_ca, &self.region)?);
        let identities = crate::identity::Identities::load_or_create(
            &self.identities.unwrap_or_else(|| self.dev_dir.join("kms/identities.json")),
            &self.account_id,
            &self.dev_dir.join("credentials"),
        )?;
        let trust_anchor = match self.attestation_root.as_deref() {
            Some(arg) => TrustAnchor::from_arg(arg).map_err(|e| EmulatorError::TrustAnchor(e.to_string()))?,
            None => dev_ca.trust_anchor(),
        };
        Ok(EmulatorConfig {
            state_file: Some(self.state_file.unwrap_or_else(|| self.dev_dir.join("kms/state.json"))),
            audit_log: Some(self.audit_log.unwrap_or_else(|| self.dev_dir.join("kms/audit.jsonl"))),
            trust_anchor,
            region: self.region,
            account_id: self.account_id,
            allow_debug_attestation: self.allow_debug_attestation,
            max_attestation_age: Duration::from_secs(self.max_attestation_age_secs),
            identities,
            tls,
        })
    }
}
