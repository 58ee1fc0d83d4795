//! The data owner's side of the CLI: the owner key, the input sealed on this machine,
//! results opened on this machine. `trigger` is the owner's client: it may run off the
//! host, and nothing it sends (to Temporal) or receives (from Reveal) is plaintext.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use enclavemesh_owner::OwnerKey;
use enclavemesh_owner::kms::KmsTarget;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::{RevealField, RevealRequest, SealedEnvelope, SealedInput, WorkflowInput};
use enclavemesh_transport::Address;
use enclavemesh_workflow::failure::{CallFailure, classify_status};
use prost::Message as _;
use zeroize::Zeroizing;

/// The most an input (`--input-file`) or a resource (`seal-resource`) may hold: under the
/// 64 KiB the agent opens (`enclavemesh-agent-sdk` input.rs), with room for the frame.
const MAX_SEALED_PLAINTEXT: usize = 60 * 1024;

/// Where the owner's key and KMS are.
#[derive(Debug, Clone, Args)]
pub struct OwnerArgs {
    /// The owner's key file (`enclavemesh keygen --out FILE`): its public key goes into
    /// the sealed input, and results are sealed to it.
    #[arg(long, env = "ENCLAVEMESH_OWNER_KEY")]
    pub owner_key: Option<PathBuf>,
    /// The input KMS key (ARN, id or alias) the input is sealed under.
    #[arg(long, env = "ENCLAVEMESH_INPUT_KEY", default_value = "alias/enclavemesh-input")]
    pub input_key: String,
    /// KMS endpoint (dev: https://localhost:4599, the kms-emulator); default the region's.
    #[arg(long, env = "ENCLAVEMESH_KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,
    /// PEM roots to trust for KMS instead of the system's (dev: .dev/dev-ca/root.pem).
    #[arg(long, env = "ENCLAVEMESH_KMS_CA_BUNDLE")]
    pub kms_ca_bundle: Option<PathBuf>,
    /// KMS region (default: AWS_REGION / the profile's, else us-east-1).
    #[arg(long, env = "ENCLAVEMESH_KMS_REGION")]
    pub kms_region: Option<String>,
}

/// What goes into a sealed input.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Starting balance in minor units (cents). Sealed: never visible to the host.
    #[arg(long, env = "ENCLAVEMESH_INITIAL_BALANCE", default_value_t = 100_000, allow_negative_numbers = true)]
    pub initial_balance: i64,
    /// Interest per step in basis points (0..=10000). Sealed.
    #[arg(long, env = "ENCLAVEMESH_RATE_BPS", default_value_t = 250)]
    pub rate_bps: u32,
    /// A private note carried in the state. Sealed.
    #[arg(long, default_value = "")]
    pub note: String,
    /// The first role's Input message, encoded (binary protobuf), for agents other than
    /// the ledger; replaces --initial-balance/--rate-bps/--note. E.g. `protoc
    /// --encode=PKG.Input input.proto < input.txt > input.bin`. Sealed.
    #[arg(long, env = "ENCLAVEMESH_INPUT_FILE")]
    pub input_file: Option<std::path::PathBuf>,
    /// The workflow's manifest (TOML: roles, their images, who may hand state to whom,
    /// the pipeline; see the README's "Manifests"). Its SHA-256 is sealed in the input,
    /// so the agents refuse any other topology the host tries.
    #[arg(long, env = "ENCLAVEMESH_MANIFEST")]
    pub manifest: Option<std::path::PathBuf>,
}

/// A run's manifest, read and compiled once: the digest sealed into every input and the
/// bytes the workflow input carries come from the same read of the file. Empty: none.
#[derive(Debug, Clone, Default)]
pub struct RunManifest {
    /// What the owner seals (`WorkflowInput.manifest_sha256`).
    pub sha256: Vec<u8>,
    /// The encoded manifest, base64, for the workflow input.
    pub b64: String,
    /// The pipeline's steps after Init.
    pub steps: Option<u32>,
}

impl InputArgs {
    /// The first role's encoded Input: `--input-file`, else the ledger's from the flags.
    pub fn role_input(&self) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        match self.input_file.as_deref() {
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("reading --input-file {}", path.display()))?;
                if bytes.len() > MAX_SEALED_PLAINTEXT {
                    bail!("--input-file {} is {} bytes; an input is at most 60 KiB", path.display(), bytes.len());
                }
                Ok(Zeroizing::new(bytes))
            }
            None => {
                let ledger = Zeroizing::new(enclavemesh_proto::v1::LedgerInput {
                    initial_balance: self.initial_balance,
                    rate_bps: self.rate_bps,
                    secret_note: self.note.clone(),
                });
                Ok(Zeroizing::new(ledger.encode_to_vec()))
            }
        }
    }

    /// The `--manifest` file, compiled (empty without one).
    pub fn run_manifest(&self) -> anyhow::Result<RunManifest> {
        let Some(path) = self.manifest.as_deref() else { return Ok(RunManifest::default()) };
        let m = enclavemesh_owner::manifest::load(path)?;
        let plan = enclavemesh_workflow::pipeline::of_manifest(&m.manifest).map_err(anyhow::Error::msg)?;
        Ok(RunManifest {
            sha256: m.sha256().to_vec(),
            b64: B64.encode(&m.bytes),
            steps: Some(u32::try_from(plan.steps.len()).unwrap_or(u32::MAX)),
        })
    }
}

/// A field to reveal: one of the ledger's (balance, step, rate-bps, history-digest,
/// secret-note, history), or any other name a role discloses (e.g. `score`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Ledger(RevealField),
    Named(String),
}

impl std::str::FromStr for Field {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ledger = match s {
            "balance" => Some(RevealField::Balance),
            "step" => Some(RevealField::Step),
            "rate-bps" | "rate_bps" => Some(RevealField::RateBps),
            "history-digest" | "history_digest" => Some(RevealField::HistoryDigest),
            "secret-note" | "secret_note" => Some(RevealField::SecretNote),
            "history" => Some(RevealField::History),
            _ => None,
        };
        match ledger {
            Some(f) => Ok(Field::Ledger(f)),
            None if enclavemesh_proto::limits::is_agent_name(s) => Ok(Field::Named(s.to_string())),
            None => Err(format!("'{s}' is not a field name (1 to 64 of A-Z a-z 0-9 - _)")),
        }
    }
}

impl Field {
    /// The request's `field` and `field_name`.
    fn request(&self) -> (i32, String) {
        match self {
            Field::Ledger(f) => (*f as i32, String::new()),
            Field::Named(n) => (RevealField::Unspecified as i32, n.clone()),
        }
    }
    /// The name the result's AAD binds.
    fn bound(&self) -> &str {
        match self {
            Field::Ledger(f) => f.as_str_name(),
            Field::Named(n) => n,
        }
    }
    /// The name as printed.
    pub fn name(&self) -> &str {
        match self {
            Field::Ledger(RevealField::Balance) => "balance",
            Field::Ledger(RevealField::Step) => "step",
            Field::Ledger(RevealField::RateBps) => "rate_bps",
            Field::Ledger(RevealField::HistoryDigest) => "history_digest",
            Field::Ledger(RevealField::SecretNote) => "secret_note",
            Field::Ledger(RevealField::History) => "history",
            Field::Ledger(RevealField::Unspecified) => "unspecified",
            Field::Named(n) => n,
        }
    }
}

impl OwnerArgs {
    pub fn key(&self) -> anyhow::Result<OwnerKey> {
        let path = self.owner_key.as_deref().context(
            "no owner key: pass --owner-key FILE (or ENCLAVEMESH_OWNER_KEY); make one with `enclavemesh keygen --out FILE`",
        )?;
        Ok(OwnerKey::load(path)?)
    }

    async fn kms(&self) -> anyhow::Result<aws_sdk_kms::Client> {
        let target = KmsTarget {
            endpoint: self.kms_endpoint.clone(),
            ca_bundle: self.kms_ca_bundle.clone(),
            region: self.kms_region.clone(),
        };
        Ok(enclavemesh_owner::kms::client(&target, None).await?)
    }

    /// Seals `input` for `workflow_id`, bound to the manifest with this digest (empty:
    /// none), with this owner's key and KMS: base64 of the SealedInput.
    pub async fn seal(
        &self,
        key: &OwnerKey,
        workflow_id: &str,
        input: &InputArgs,
        manifest_sha256: &[u8],
    ) -> anyhow::Result<String> {
        let role_input = input.role_input()?;
        let plain = Zeroizing::new(WorkflowInput {
            owner_public_key: key.public().to_vec(),
            manifest_sha256: manifest_sha256.to_vec(),
            input: role_input.to_vec(),
        });
        let kms = self.kms().await?;
        let sealed = enclavemesh_owner::seal_input(&kms, &self.input_key, workflow_id, &plain).await;
        Ok(B64.encode(sealed?.encode_to_vec()))
    }
}

impl OwnerArgs {
    /// Seals the file at `path` as the resource `name`: base64 of the SealedInput.
    pub async fn seal_resource(&self, name: &str, path: &Path) -> anyhow::Result<String> {
        if !enclavemesh_proto::limits::is_agent_name(name) {
            bail!("--name '{name}' is not a resource name (1 to 64 of A-Z a-z 0-9 - _)");
        }
        let bytes = Zeroizing::new(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
        if bytes.len() > MAX_SEALED_PLAINTEXT {
            bail!("{} is {} bytes; a resource is at most 60 KiB", path.display(), bytes.len());
        }
        let kms = self.kms().await?;
        let sealed = enclavemesh_owner::seal_resource(&kms, &self.input_key, name, &bytes).await?;
        Ok(B64.encode(sealed.encode_to_vec()))
    }
}

/// A sealed input made elsewhere (`enclavemesh seal-input`), checked for shape.
pub fn read_sealed_input(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the sealed input {}", path.display()))?;
    let b64 = text.trim().to_string();
    let bytes = B64.decode(b64.as_bytes()).with_context(|| format!("{} is not base64", path.display()))?;
    let sealed: SealedInput = enclavemesh_proto::decode_bounded(&bytes, 80 * 1024)
        .with_context(|| format!("{} is not a sealed input (enclavemesh seal-input)", path.display()))?;
    if sealed.sealed.is_none() {
        bail!("{} holds an empty sealed input", path.display());
    }
    Ok(b64)
}

/// Calls Reveal on `agent` and opens the result with the owner's key: the value, or the
/// agent's refusal.
pub async fn reveal(
    agent: &Address,
    key: &OwnerKey,
    workflow_id: &str,
    state: SealedEnvelope,
    field: &Field,
    timeout: Duration,
) -> anyhow::Result<Result<Zeroizing<String>, CallFailure>> {
    let step = state.step;
    let mut client = AgentServiceClient::new(enclavemesh_transport::channel(agent)?);
    let (wire_field, field_name) = field.request();
    let mut req = tonic::Request::new(RevealRequest {
        workflow_id: workflow_id.to_string(),
        expected_step: step,
        state: Some(state),
        field: wire_field,
        field_name,
    });
    req.set_timeout(timeout);
    let resp = match tokio::time::timeout(timeout, client.reveal(req)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => return Ok(Err(classify_status(&status))),
        Err(_) => bail!("Reveal on {agent} did not answer within {timeout:?}"),
    };
    let sealed = resp.result.context("the agent's Reveal answer holds no sealed result")?;
    Ok(Ok(enclavemesh_owner::open_result(key, workflow_id, step, field.bound(), &sealed)?))
}
