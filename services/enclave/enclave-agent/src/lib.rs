//! Enclave Mesh agent: the program inside the enclave.
//!
//! [`run`] reads top to bottom as the agent's life: settings resolved once, then its
//! identity (NSM and ephemeral key), its key ring (the TSK released by KMS), its audit
//! trail, and then it serves until shutdown. Everything but [`config`], [`run`] and
//! [`measurements_json`] is private to the crate.

mod audit;
pub mod config;
mod identity;
mod input;
mod key_release;
mod kms;
mod logic;
mod refusal;
mod retry;
mod serve;
mod service;
mod settings;
mod sidecar;
mod topology;
mod tsk_file;

use std::future::Future;
use std::sync::Arc;

use config::Config;
use settings::Settings;

/// Why the agent stopped: each stage's own error, which says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("bad --sidecar address: {0}")]
    Sidecar(enclavemesh_transport::TransportError),
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Kms(#[from] kms::KmsSetupError),
    #[error(transparent)]
    KeyRelease(#[from] key_release::KeyReleaseError),
    #[error(transparent)]
    Audit(#[from] audit::BootTrailError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: enclavemesh_transport::Address, source: enclavemesh_transport::TransportError },
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
    #[error("cannot measure {path}: {source}")]
    Measure { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    SigningCert(#[from] enclavemesh_attestation::NsmError),
}

/// Starts the agent and serves until `shutdown` resolves.
pub async fn run(mut config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<(), AgentError> {
    // Settings, resolved once (in an enclave, partly from the parent's sidecar).
    if let (Some(cid), enclavemesh_transport::Address::Vsock { cid: enclavemesh_transport::VSOCK_CID_PARENT, port }) =
        (config.parent_cid, &config.sidecar)
    {
        config.sidecar = enclavemesh_transport::Address::Vsock { cid, port: *port };
    }
    let sidecar = sidecar::client(&config.sidecar).map_err(AgentError::Sidecar)?;
    let settings = Settings::resolve(config, &sidecar).await?;

    // Identity: the NSM and a fresh ephemeral key.
    let identity = Arc::new(identity::EnclaveIdentity::create(&settings.nsm)?);
    tracing::info!(agent = %settings.name, nsm = identity.nsm.kind(), pcr0 = %identity.pcr0_hex, "enclave identity \
        ready");

    // Key ring: every TSK version, released by KMS (over this enclave's own TLS, through
    // the parent's tunnel) to this enclave's attestation.
    let kms = Arc::new(kms::Kms::new(&sidecar, &settings.tsk_key, &settings.kms_trust)?);
    let ring = Arc::new(key_release::release_tsk(&identity, &kms, &settings).await?);
    tracing::info!(versions = ?ring.versions(), "key ring ready");

    // Audit trail: record 0 binds its signing key to this enclave's attestation.
    let trail = Arc::new(audit::boot_trail(&settings, &identity, &ring)?);
    let checkpoints =
        settings.audit.log.is_some().then(|| audit::spawn_checkpoints(&trail, settings.audit.checkpoint_every));

    // Serve.
    let agent = service::Agent {
        name: settings.name.clone(),
        ring,
        identity,
        logic: logic::for_kind(settings.kind),
        limits: enclavemesh_sealing::Limits { max_ciphertext_bytes: settings.max_state_bytes },
        kms,
        input_key: settings.input_key.clone(),
        pad_floor: settings.pad_floor,
    };
    let listener = enclavemesh_transport::bind(&settings.listen)
        .await
        .map_err(|source| AgentError::Listen { addr: settings.listen.clone(), source })?;
    tracing::info!(listen = %listener.local_addr(), kind = ?settings.kind, "serving AgentService");
    let served = serve::serve(audit::Audited::new(agent, Arc::clone(&trail)), &settings, listener, shutdown).await;
    if let Some(task) = checkpoints {
        task.abort();
    }
    trail.checkpoint();
    Ok(served?)
}

/// nitro-cli's `build-enclave` JSON shape, with simulated measurements of `binary`
/// (and PCR8, when the image is signed with `signing_cert`).
pub fn measurements_json(
    binary: &std::path::Path,
    signing_cert: Option<&std::path::Path>,
) -> Result<serde_json::Value, AgentError> {
    let pcr0 = enclavemesh_attestation::measure_file(binary)
        .map_err(|source| AgentError::Measure { path: binary.to_path_buf(), source })?;
    let mut m = enclavemesh_attestation::SimulatedMeasurements::from_pcr0(pcr0);
    if let Some(cert) = signing_cert {
        m = m.signed_with(&enclavemesh_attestation::read_signing_certificate(cert)?);
    }
    let mut pcrs = serde_json::json!({
        "HashAlgorithm": "Sha384 { ... }",
        "PCR0": hex::encode(m.pcr0),
        "PCR1": hex::encode(m.pcr1),
        "PCR2": hex::encode(m.pcr2),
    });
    if let (Some(pcr8), Some(map)) = (m.pcr8, pcrs.as_object_mut()) {
        map.insert("PCR8".into(), hex::encode(pcr8).into());
    }
    Ok(serde_json::json!({ "Measurements": pcrs }))
}
