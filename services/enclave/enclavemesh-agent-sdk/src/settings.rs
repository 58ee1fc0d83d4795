//! Everything the agent runs with, resolved once at start.
//!
//! Most of it comes from flags or environment ([`Config`]). In an enclave, nitro-cli
//! passes neither, so the parts the parent decides (name, kind, key id and the encrypted
//! TSK file) come from the kms-sidecar instead (`--config-from-sidecar`, set by the
//! enclave image). The parent is untrusted, so what it hands out is checked here, once:
//! a short name, a kind this agent knows, and a TSK file that parses. What the parent must
//! not decide (which KMS key, which TLS roots) is the image's own configuration, never
//! the sidecar's. After this stage nothing reads [`Config`] again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use enclavemesh_proto::limits::is_agent_name;
use enclavemesh_proto::v1::{AgentConfigRequest, AgentConfigResponse};
use enclavemesh_server::Hardening;
use enclavemesh_transport::Address;
use tonic::Code;

use crate::config::{Config, ImageRole, NsmKind};
use crate::kms::pin::KeyPin;
use crate::kms::tls::KmsTrust;
use crate::retry::{Retried, retry_transient};
use crate::sidecar::SidecarClient;
use crate::tsk_file::{self, EncryptedTsk, TskFileError};

/// Why the agent could not settle what it runs with.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "--kms-key-arn (AGENT_KMS_KEY_ARN) is required: the KMS key the TSK comes from, part of the image's \
         measured configuration (enclave-image/build.sh bakes it in; scripts/setup-kms.sh records it)"
    )]
    NoKmsKey,
    #[error(
        "--tsk-file (AGENT_TSK_FILE) is required: the encrypted TSK written by scripts/setup-kms.sh \
         (in an enclave, use --config-from-sidecar)"
    )]
    NoTskFile,
    #[error(transparent)]
    TskFile(#[from] TskFileError),
    #[error(
        "the kms-sidecar at {sidecar} gave no agent configuration ({code:?}: {message}). This agent runs with \
         --config-from-sidecar (the enclave image sets it): give the sidecar --agent-role CID=NAME:KIND and \
         --agent-tsk-file"
    )]
    NoAgentConfig { sidecar: Address, code: Code, message: String },
    #[error(
        "gave up after {secs}s waiting for the kms-sidecar at {sidecar} to give this agent its configuration \
         ({last}). Start it (systemctl start enclavemesh-kms-sidecar, or scripts/dev.sh up) and check the vsock \
         CID/port"
    )]
    SidecarUnavailable { secs: u64, sidecar: Address, last: String },
    #[error(
        "the kms-sidecar at {sidecar} gave an unusable agent configuration: {reason}. Fix the sidecar's \
         --agent-role CID=NAME:KIND"
    )]
    BadAgentConfig { sidecar: Address, reason: String },
    #[error(
        "the kms-sidecar at {sidecar} assigns this enclave the role {assigned}, but its image was built as {image} \
         (enclave-image/build.sh --role; the role is measured, so the parent cannot change it). Fix the sidecar's \
         --agent-role for this CID to {image}, or run the image built for {assigned} there"
    )]
    RoleMismatch { sidecar: Address, assigned: String, image: String },
    #[error(
        "AGENT_IMAGE_ROLE (--image-role) is unusable: {0}. It is baked in by enclave-image/build.sh --role NAME:KIND; \
         rebuild the image with a valid role"
    )]
    BadImageRole(String),
    #[error(
        "this program serves the kinds {serves:?}, not '{kind}'. Pass --kind (AGENT_KIND) as one of them, or run \
         the program built for '{kind}'"
    )]
    UnknownKind { kind: String, serves: Vec<String> },
}

/// How the agent attests.
#[derive(Debug, Clone)]
pub struct NsmSettings {
    pub kind: NsmKind,
    /// Dev state directory holding the dev CA (simulated NSM only).
    pub dev_dir: PathBuf,
    pub sim_pcr0: Option<String>,
    /// A built image's measurements (nitro-cli JSON) the simulated NSM reports.
    pub sim_measurements: Option<PathBuf>,
    /// The simulated image's signing certificate (PCR8), if it is signed.
    pub sim_signing_cert: Option<PathBuf>,
    pub sim_debug_mode: bool,
}

/// The audit trail's bounds and its optional local copy.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub log: Option<PathBuf>,
    pub checkpoint_every: Duration,
    pub max_records: usize,
    pub max_bytes: usize,
}

/// The agent's settings, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Name bound into every envelope this agent seals.
    pub name: String,
    /// The role this agent runs (one of the program's kinds).
    pub kind: String,
    /// KMS-sealed resources to open at boot.
    pub resources: Vec<crate::resource::ResourceArg>,
    /// The KMS key the TSK comes from (measured: from the image's configuration).
    pub tsk_key: KeyPin,
    /// The KMS key the data owner's inputs come from, if this agent opens any.
    pub input_key: Option<KeyPin>,
    /// The roots TLS to KMS must chain to.
    pub kms_trust: KmsTrust,
    /// The TSK versions to release, retired ones already removed.
    pub tsk_versions: Vec<EncryptedTsk>,
    pub retired_key_versions: Vec<u32>,
    pub listen: Address,
    pub sidecar: Address,
    pub nsm: NsmSettings,
    pub audit: AuditSettings,
    /// How long key release may wait for a sidecar/KMS that is not up yet.
    pub bootstrap_timeout: Duration,
    pub max_message_bytes: usize,
    pub max_state_bytes: usize,
    /// Smallest padding bucket of a sealed state.
    pub pad_floor: usize,
    pub hardening: Hardening,
}

/// The role and TSK file, from flags or from the parent.
struct Role {
    name: String,
    kind: String,
    tsk_versions: Vec<EncryptedTsk>,
}

impl Settings {
    /// Resolves `cfg`, asking the sidecar for the role when `--config-from-sidecar`.
    /// `kinds`: the kinds this program serves (its first is the default).
    pub async fn resolve(cfg: Config, sidecar: &SidecarClient, kinds: &[String]) -> Result<Settings, SettingsError> {
        let bootstrap_timeout = Duration::from_secs(cfg.bootstrap_timeout_secs);
        let image_role =
            ImageRole::parse(cfg.image_role.as_deref().unwrap_or_default()).map_err(SettingsError::BadImageRole)?;
        let role = if cfg.config_from_sidecar {
            let given = fetch_agent_config(sidecar, &cfg.sidecar, Instant::now() + bootstrap_timeout).await?;
            let role = role_from_parent(given, &cfg.sidecar)?;
            let role = with_image_role(role, image_role.as_ref(), &cfg.sidecar)?;
            tracing::info!(agent = %role.name, kind = ?role.kind, image_role = image_role.is_some(),
                "agent configuration from the kms-sidecar");
            role
        } else {
            let path = cfg.tsk_file.as_deref().ok_or(SettingsError::NoTskFile)?;
            let (name, kind) = match image_role {
                Some(r) => (r.name, r.kind),
                None => (cfg.name, cfg.kind.or_else(|| kinds.first().cloned()).unwrap_or_default()),
            };
            Role { name, kind, tsk_versions: tsk_file::read(path)? }
        };
        if !kinds.contains(&role.kind) {
            return Err(SettingsError::UnknownKind { kind: role.kind, serves: kinds.to_vec() });
        }
        let tsk_versions = tsk_file::without_retired(role.tsk_versions, &cfg.retired_key_versions)?;
        Ok(Settings {
            name: role.name,
            kind: role.kind,
            resources: cfg.resources,
            tsk_key: cfg.kms_key_arn.ok_or(SettingsError::NoKmsKey)?,
            input_key: cfg.input_key_arn,
            kms_trust: cfg.kms_trust,
            tsk_versions,
            retired_key_versions: cfg.retired_key_versions,
            listen: cfg.listen,
            sidecar: cfg.sidecar,
            nsm: NsmSettings {
                kind: cfg.nsm,
                dev_dir: cfg.dev_dir,
                sim_pcr0: cfg.sim_pcr0,
                sim_measurements: cfg.sim_measurements,
                sim_signing_cert: cfg.sim_signing_cert,
                sim_debug_mode: cfg.sim_debug_mode,
            },
            audit: AuditSettings {
                log: cfg.audit_log,
                checkpoint_every: Duration::from_millis(cfg.audit_checkpoint_ms),
                max_records: cfg.audit_max_records,
                max_bytes: cfg.audit_max_bytes,
            },
            bootstrap_timeout,
            max_message_bytes: cfg.max_message_bytes,
            max_state_bytes: cfg.max_state_bytes,
            pad_floor: cfg.state_pad_floor_bytes.max(64),
            hardening: Hardening {
                request_timeout: Duration::from_millis(cfg.request_timeout_ms),
                ..Hardening::default()
            },
        })
    }
}

/// The role the parent hands out, checked: a short name and a kind this agent knows.
fn role_from_parent(given: AgentConfigResponse, sidecar: &Address) -> Result<Role, SettingsError> {
    let bad = |reason: String| SettingsError::BadAgentConfig { sidecar: sidecar.clone(), reason };
    if !is_agent_name(&given.name) {
        return Err(bad(format!(
            "agent name of {} bytes (1 to {} of A-Z a-z 0-9 - _)",
            given.name.len(),
            enclavemesh_proto::limits::MAX_AGENT_NAME_BYTES
        )));
    }
    let kind = if !given.kind_name.is_empty() {
        if !is_agent_name(&given.kind_name) {
            return Err(bad(format!("kind_name of {} bytes (1 to 64 of A-Z a-z 0-9 - _)", given.kind_name.len())));
        }
        given.kind_name.clone()
    } else {
        match given.kind() {
            enclavemesh_proto::v1::AgentKind::LedgerInit => "ledger-init".to_string(),
            enclavemesh_proto::v1::AgentKind::Interest => "interest".to_string(),
            enclavemesh_proto::v1::AgentKind::Unspecified => {
                return Err(bad(format!("kind {} and no kind_name", given.kind)));
            }
        }
    };
    let tsk_versions = tsk_file::parse(&given.tsk_file, "the TSK file from the kms-sidecar")?;
    Ok(Role { name: given.name, kind, tsk_versions })
}

/// The role an image was built with wins over the parent's: the parent's must then be the
/// same (a differing one is an operator's mistake or an attempt, refused either way).
fn with_image_role(from_parent: Role, image: Option<&ImageRole>, sidecar: &Address) -> Result<Role, SettingsError> {
    let Some(image) = image else { return Ok(from_parent) };
    if from_parent.name != image.name || from_parent.kind != image.kind {
        let assigned = ImageRole { name: from_parent.name, kind: from_parent.kind };
        return Err(SettingsError::RoleMismatch {
            sidecar: sidecar.clone(),
            assigned: assigned.to_string(),
            image: image.to_string(),
        });
    }
    Ok(from_parent)
}

/// The agent's role and encrypted-TSK file from the parent, retried while the sidecar
/// is not up yet.
async fn fetch_agent_config(
    client: &SidecarClient,
    addr: &Address,
    deadline: Instant,
) -> Result<AgentConfigResponse, SettingsError> {
    let answer = retry_transient(deadline, || {
        let mut client = client.clone();
        async move { client.get_agent_config(AgentConfigRequest {}).await.map(tonic::Response::into_inner) }
    })
    .await;
    match answer {
        Retried::Answer(config) => Ok(config),
        Retried::Refused(status) => Err(SettingsError::NoAgentConfig {
            sidecar: addr.clone(),
            code: status.code(),
            message: status.message().to_string(),
        }),
        Retried::GaveUp { secs, last } => Err(SettingsError::SidecarUnavailable {
            secs,
            sidecar: addr.clone(),
            last: format!("{:?}: {}", last.code(), last.message()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(name: &str, kind: i32) -> AgentConfigResponse {
        AgentConfigResponse { name: name.into(), kind, tsk_file: "AQID\n".into(), kind_name: String::new() }
    }

    #[test]
    fn the_parent_role_is_checked() {
        use enclavemesh_proto::v1::AgentKind as Wire;
        let addr: Address = "unix:///s".parse().unwrap();
        let role = role_from_parent(given("agent-b", Wire::Interest as i32), &addr).unwrap();
        assert_eq!((role.name.as_str(), role.kind.as_str(), role.tsk_versions.len()), ("agent-b", "interest", 1));
        let named = AgentConfigResponse { kind_name: "screening".into(), ..given("s", 0) };
        assert_eq!(role_from_parent(named, &addr).unwrap().kind, "screening");
        let bad_name = AgentConfigResponse { kind_name: "a b".into(), ..given("s", 0) };
        assert!(matches!(role_from_parent(bad_name, &addr), Err(SettingsError::BadAgentConfig { .. })));
        let interest = Wire::Interest as i32;
        for (name, kind) in [("", interest), (&"x".repeat(65), interest), ("a b", interest), ("a", 0), ("a", 99)] {
            let e = role_from_parent(given(name, kind), &addr).err().unwrap();
            assert!(matches!(e, SettingsError::BadAgentConfig { .. }), "{e}");
        }
        let no_tsk = AgentConfigResponse { tsk_file: String::new(), ..given("a", interest) };
        assert!(matches!(role_from_parent(no_tsk, &addr), Err(SettingsError::TskFile(_))));
    }

    #[test]
    fn an_image_role_is_not_the_parents_to_change() {
        use enclavemesh_proto::v1::AgentKind as Wire;
        let addr: Address = "unix:///s".parse().unwrap();
        let image = ImageRole { name: "agent-b".into(), kind: "interest".into() };
        let parent = |name: &str, kind: Wire| role_from_parent(given(name, kind as i32), &addr).unwrap();
        // The same role: accepted, the image's.
        let r = with_image_role(parent("agent-b", Wire::Interest), Some(&image), &addr).unwrap();
        assert_eq!((r.name.as_str(), r.kind.as_str()), ("agent-b", "interest"));
        // Another kind or another name from the parent: refused, naming both.
        for (name, kind) in [("agent-b", Wire::LedgerInit), ("agent-a", Wire::Interest)] {
            let e = with_image_role(parent(name, kind), Some(&image), &addr).err().unwrap();
            assert!(matches!(e, SettingsError::RoleMismatch { .. }), "{e}");
            let m = e.to_string();
            assert!(m.contains("agent-b:interest") && m.contains("build.sh --role"), "{m}");
        }
        // No image role: the parent's, as before.
        let r = with_image_role(parent("agent-a", Wire::LedgerInit), None, &addr).unwrap();
        assert_eq!(r.kind, "ledger-init");
    }
}
