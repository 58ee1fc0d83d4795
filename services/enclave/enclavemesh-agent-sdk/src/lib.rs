//! The Enclave Mesh agent SDK: everything an agent is, except what it does.
//!
//! A user writes one [`Role`] over their own prost messages (an `Input` the data owner
//! seals, a `State` handed from role to role, `init` / `step` / `disclose`), and their
//! `main` is one call to [`serve`]. Attestation, key release, sealing with AAD and
//! padding, the audit trail, the manifest's topology checks, telemetry, the transports,
//! health, reflection and bounded decoding are all here. The role never sees a key, an
//! envelope or a socket, and its plaintext is wiped on drop ([`Plain`]).
//!
//! ```no_run
//! use enclavemesh_agent_sdk::{Context, Role, RoleError, Zeroizing};
//!
//! /// A role over prost's well-known types: the owner seals a number, each step adds one.
//! struct Counter;
//!
//! impl Role for Counter {
//!     type Input = u64; // prost implements Message for scalars (a one-field wrapper)
//!     type State = u64;
//!     fn kind(&self) -> &str { "counter" }
//!     fn starts(&self) -> bool { true }
//!     fn init(&self, _: &Context<'_>, input: &u64) -> Result<u64, RoleError> { Ok(*input) }
//!     fn step(&self, _: &Context<'_>, n: &mut u64) -> Result<(), RoleError> {
//!         *n = n.checked_add(1).ok_or_else(|| RoleError::InvalidInput("overflow".into()))?;
//!         Ok(())
//!     }
//!     fn disclose(&self, _: &Context<'_>, n: &u64, field: &str) -> Result<Zeroizing<Vec<u8>>, RoleError> {
//!         match field {
//!             "count" => Ok(Zeroizing::new(n.to_string().into_bytes())),
//!             other => Err(RoleError::NotDisclosed(format!("'{other}' is not disclosed; ask for 'count'"))),
//!         }
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     enclavemesh_agent_sdk::serve(Counter)
//! }
//! ```
//!
//! [`run`] reads top to bottom as the agent's life: settings resolved once, then its
//! identity (NSM and ephemeral key), its key ring (the TSK released by KMS), its sealed
//! resources, its audit trail, and then it serves until shutdown.

mod audit;
pub mod config;
mod frame;
mod identity;
mod input;
mod key_release;
mod kms;
mod refusal;
mod resource;
mod retry;
mod role;
mod serve;
mod service;
mod settings;
mod sidecar;
mod topology;
mod tsk_file;

use std::future::Future;
use std::sync::Arc;

use config::{Cli, Command, Config};
use settings::Settings;

pub use resource::WORKFLOW_ID_PREFIX as RESOURCE_PREFIX;
pub use role::{Context, Plain, Role, RoleError};
pub use zeroize::{Zeroize, Zeroizing};

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
    #[error(transparent)]
    Resource(#[from] resource::ResourceError),
}

/// Serves `role`: the whole of a single-role agent's `main`. Parses the agent's flags
/// (`--help` lists them), starts telemetry, and serves until SIGTERM or Ctrl-C; the
/// `measure` subcommand prints this binary's simulated measurements instead.
pub fn serve<R: Role>(role: R) -> std::process::ExitCode {
    let kind = role.kind().to_string();
    serve_kinds(&[kind.as_str()], move |_| role)
}

/// Serves one of several roles built into one program (the ledger's `ledger-init` and
/// `interest`), chosen by `--kind`, the image's measured role, or the parent's
/// assignment; the first of `kinds` is the default. `make` is called once, with one of
/// `kinds`.
pub fn serve_kinds<R: Role>(kinds: &[&str], make: impl FnOnce(&str) -> R + Send + 'static) -> std::process::ExitCode {
    let program = std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "enclave-agent".into());
    let cli = match Cli::parse_for(&program, kinds) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_string()).collect();
    let result: Result<(), AgentError> = runtime.block_on(async move {
        match cli.command {
            Some(Command::Measure { binary, signing_cert }) => {
                let binary = match binary {
                    Some(b) => b,
                    None => std::env::current_exe()
                        .map_err(|source| AgentError::Measure { path: program.clone().into(), source })?,
                };
                let json = measurements_json(&binary, signing_cert.as_deref())?;
                println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
                Ok(())
            }
            None => {
                let _telemetry = enclavemesh_telemetry::init(&program);
                let result = run(cli.serve, &kinds, make, enclavemesh_transport::shutdown_signal()).await;
                if let Err(e) = &result {
                    tracing::error!("{e}");
                }
                result
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Starts the agent and serves until `shutdown` resolves: the role is `make(kind)` for
/// the kind resolved from `config` (one of `kinds`).
pub async fn run<R: Role>(
    mut config: Config,
    kinds: &[String],
    make: impl FnOnce(&str) -> R,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    // Settings, resolved once (in an enclave, partly from the parent's sidecar).
    if let (Some(cid), enclavemesh_transport::Address::Vsock { cid: enclavemesh_transport::VSOCK_CID_PARENT, port }) =
        (config.parent_cid, &config.sidecar)
    {
        config.sidecar = enclavemesh_transport::Address::Vsock { cid, port: *port };
    }
    let sidecar = sidecar::client(&config.sidecar).map_err(AgentError::Sidecar)?;
    let settings = Settings::resolve(config, &sidecar, kinds).await?;

    // Identity: the NSM and a fresh ephemeral key.
    let identity = Arc::new(identity::EnclaveIdentity::create(&settings.nsm)?);
    tracing::info!(agent = %settings.name, nsm = identity.nsm.kind(), pcr0 = %identity.pcr0_hex, "enclave identity \
        ready");

    // Key ring: every TSK version, released by KMS (over this enclave's own TLS, through
    // the parent's tunnel) to this enclave's attestation.
    let kms = Arc::new(kms::Kms::new(&sidecar, &settings.tsk_key, &settings.kms_trust)?);
    let ring = Arc::new(key_release::release_tsk(&identity, &kms, &settings).await?);
    tracing::info!(versions = ?ring.versions(), "key ring ready");

    // The role, and the sealed resources it was started with (opened here, through KMS).
    let mut role = make(&settings.kind);
    resource::load_all(&mut role, &settings.resources, &kms, settings.input_key.as_ref(), &identity).await?;

    // Audit trail: record 0 binds its signing key to this enclave's attestation.
    let trail = Arc::new(audit::boot_trail(&settings, &identity, &ring)?);
    let checkpoints =
        settings.audit.log.is_some().then(|| audit::spawn_checkpoints(&trail, settings.audit.checkpoint_every));

    // Serve.
    let agent = service::Agent {
        name: settings.name.clone(),
        ring,
        identity,
        role,
        limits: enclavemesh_sealing::Limits { max_ciphertext_bytes: settings.max_state_bytes },
        kms,
        input_key: settings.input_key.clone(),
        pad_floor: settings.pad_floor,
    };
    let listener = enclavemesh_transport::bind(&settings.listen)
        .await
        .map_err(|source| AgentError::Listen { addr: settings.listen.clone(), source })?;
    tracing::info!(listen = %listener.local_addr(), kind = %settings.kind, "serving AgentService");
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
