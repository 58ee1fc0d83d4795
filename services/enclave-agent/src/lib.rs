//! Enclave Mesh agent: bootstrap (attest, key release) then serve AgentService.

pub mod audited;
pub mod bootstrap;
pub mod config;
pub mod enclave;
pub mod handshake;
pub mod logic;
pub mod service;
pub mod status;
pub mod tsk_file;

use anyhow::Context;
use config::Config;
use enclavemesh_proto::v1::agent_service_server::AgentServiceServer;
use enclavemesh_proto::v1::kms_forwarder_client::KmsForwarderClient;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Starts the enclave identity, releases the TSK, and serves until `shutdown`.
pub async fn run(mut cfg: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let mut sidecar = sidecar_client(&cfg.sidecar)?;
    let versions = if cfg.config_from_sidecar {
        let deadline = std::time::Instant::now() + Duration::from_secs(cfg.bootstrap_timeout_secs);
        let given = bootstrap::fetch_agent_config(&mut sidecar, &cfg.sidecar.to_string(), deadline).await?;
        let bad = |reason: String| bootstrap::BootstrapError::BadAgentConfig { sidecar: cfg.sidecar.to_string(), reason };
        // The parent is untrusted: take only a short name and a kind this agent knows.
        if given.name.is_empty() || given.name.len() > 64 {
            return Err(bad(format!("agent name of {} bytes (1 to 64)", given.name.len())).into());
        }
        cfg.kind = <config::AgentKind as clap::ValueEnum>::from_str(&given.kind, false)
            .map_err(|_| bad(format!("kind '{}' (this agent knows ledger-init and interest)", given.kind.chars().take(32).collect::<String>().escape_debug())))?;
        cfg.name = given.name;
        cfg.key_id = given.key_id;
        tracing::info!(agent = %cfg.name, kind = ?cfg.kind, "agent configuration from the kms-sidecar");
        tsk_file::parse(&given.tsk_file, "the TSK file from the kms-sidecar")?
    } else {
        let tsk_path = cfg.tsk_file.clone().context(
            "--tsk-file (AGENT_TSK_FILE) is required: the encrypted TSK written by scripts/setup-kms.sh \
             (in an enclave, use --config-from-sidecar)",
        )?;
        tsk_file::read(&tsk_path)?
    };
    let versions = tsk_file::without_retired(versions, &cfg.retired_key_versions)?;
    let identity = Arc::new(enclave::EnclaveIdentity::create(&cfg)?);
    tracing::info!(agent = %cfg.name, nsm = identity.nsm.kind(), pcr0 = %identity.pcr0_hex, "enclave identity ready");

    let ring = bootstrap::release_tsk(
        &identity,
        &mut sidecar,
        &cfg.sidecar.to_string(),
        &cfg.key_id,
        &versions,
        Duration::from_secs(cfg.bootstrap_timeout_secs),
    )
    .await?;
    tracing::info!(versions = ?ring.versions(), "key ring ready");
    let audit = Arc::new(audited::boot_trail(&cfg, &identity, &ring)?);
    let checkpoints = cfg
        .audit_log
        .is_some()
        .then(|| audited::spawn_checkpoints(&audit, Duration::from_millis(cfg.audit_checkpoint_ms)));
    let trail = Arc::clone(&audit);

    let agent = service::Agent {
        name: cfg.name.clone(),
        mode: identity.nsm.kind(),
        ring: Arc::new(ring),
        identity,
        logic: logic::for_kind(cfg.kind),
        limits: enclavemesh_sealing::Limits { max_ciphertext_bytes: cfg.max_state_bytes },
        sidecar,
        sidecar_addr: cfg.sidecar.to_string(),
        audit,
    };

    let listener = enclavemesh_transport::bind(&cfg.listen).await?;
    tracing::info!(listen = %listener.local_addr(), kind = ?cfg.kind, "serving AgentService");
    let served = serve(agent, &cfg, listener, shutdown).await;
    if let Some(task) = checkpoints {
        task.abort();
    }
    trail.checkpoint();
    served
}

/// The sidecar client: a lazy channel wrapped in a client span per call, which also
/// carries the W3C trace context (so sidecar and KMS spans join the caller's trace).
pub fn sidecar_client(addr: &enclavemesh_transport::Address) -> anyhow::Result<service::SidecarClient> {
    let channel = enclavemesh_transport::channel(addr)?;
    let channel = tower::ServiceBuilder::new()
        .layer(enclavemesh_telemetry::GrpcClientTraceLayer::new())
        .service(channel);
    Ok(KmsForwarderClient::new(channel))
}

/// Services the agent serves, and so the only ones reflection lists: the shared proto
/// file also describes `KmsForwarder`, which `grpcurl list` would otherwise show as if
/// the agent answered it.
pub const SERVED_SERVICES: [&str; 4] = [
    enclavemesh_proto::v1::agent_service_server::SERVICE_NAME,
    tonic_health::pb::health_server::SERVICE_NAME,
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Reflection over the contracts, advertising [`SERVED_SERVICES`] only.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    SERVED_SERVICES.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(enclavemesh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |b, name| b.with_service_name(*name),
    )
}

/// The server stack, in one visible place: per-request timeout and per-connection
/// concurrency limit (tower layers applied by tonic's builder), a server span per call
/// parented to the caller's `traceparent`, message-size limits enforced before
/// decoding, then AgentService + health + reflection.
pub async fn serve(
    agent: service::Agent,
    cfg: &Config,
    listener: enclavemesh_transport::Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AgentServiceServer<service::Agent>>()
        .await;
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let agent_service = AgentServiceServer::new(audited::Audited(agent))
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);

    tonic::transport::Server::builder()
        .timeout(Duration::from_millis(cfg.request_timeout_ms))
        .concurrency_limit_per_connection(256)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(enclavemesh_telemetry::GrpcServerTraceLayer::new())
        .add_service(agent_service)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            handshake::with_deadline(listener.into_incoming(), handshake::DEFAULT_HANDSHAKE_TIMEOUT),
            shutdown,
        )
        .await?;
    Ok(())
}

/// nitro-cli's `build-enclave` JSON shape, with simulated measurements of `binary`.
pub fn measurements_json(binary: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let pcr0 = enclavemesh_attestation::measure_file(binary)
        .with_context(|| format!("cannot read {}", binary.display()))?;
    let m = enclavemesh_attestation::SimulatedMeasurements::from_pcr0(pcr0);
    Ok(serde_json::json!({
        "Measurements": {
            "HashAlgorithm": "Sha384 { ... }",
            "PCR0": hex::encode(m.pcr0),
            "PCR1": hex::encode(m.pcr1),
            "PCR2": hex::encode(m.pcr2),
        }
    }))
}
