//! `enclavemesh`: the data owner's client (seal an input, start and watch a
//! `SecureStateLoop` run, open a result) and the operator's checks (verify, audit).
//!
//! All JSON shapes, names and defaults come from `enclavemesh_workflow::types`, the same
//! definitions the worker registers, so CLI and worker cannot drift apart.

mod audit;
mod cloudtrail;
mod load;
mod output;
mod owner;
mod verify;

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use enclavemesh_proto::v1::SealedEnvelope;
use enclavemesh_transport::Address;
use enclavemesh_workflow::TemporalArgs;
use enclavemesh_workflow::connect::{connect_to_with_retry, default_identity};
use enclavemesh_workflow::history::completed_steps;
use enclavemesh_workflow::types::{
    DEFAULT_TASK_QUEUE, EnvelopeJson, Handoff, Progress, StepSummaryJson, WorkflowInput, WorkflowOutput,
};
use enclavemesh_workflow::{ProgressQuery, SecureStateLoopRun};
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{
    Client, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHandle, WorkflowQueryOptions,
    WorkflowStartOptions,
};
use tracing::Instrument as _;

use crate::output::{Failure, Out};

/// Exit code when the workflow (or the reveal call) failed with a typed failure.
const EXIT_FAILED: u8 = 2;
/// Exit code when the workflow was cancelled, terminated or timed out.
const EXIT_ABNORMAL: u8 = 3;

/// Enclave Mesh command line: trigger SecureStateLoop runs on Temporal and reveal results.
#[derive(Debug, Parser)]
#[command(name = "enclavemesh", version)]
struct Config {
    /// Temporal: address, namespace, and TLS / mTLS / API key for a production server.
    #[command(flatten)]
    temporal: TemporalArgs,
    /// Task queue the worker polls.
    #[arg(long, global = true, env = "TEMPORAL_TASK_QUEUE", default_value = DEFAULT_TASK_QUEUE)]
    task_queue: String,
    /// Temporal Web UI base URL (for the printed workflow link).
    #[arg(long, global = true, env = "TEMPORAL_UI_URL", default_value = "http://127.0.0.1:8233")]
    ui_url: String,
    /// Machine-readable output: one JSON object per line (progress lines, then a result).
    #[arg(long, global = true, env = "ENCLAVEMESH_JSON")]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Seal the input on this machine, start a SecureStateLoop run, print each step as it
    /// completes, then the result and the final balance, opened with the owner key.
    Trigger(TriggerArgs),
    /// Have an agent seal ONE field of a workflow's final state to the owner key, and open
    /// it here with that key.
    Reveal(RevealArgs),
    /// Make the data owner's key pair (X25519): a key file, mode 0600; prints its public key.
    Keygen(KeygenArgs),
    /// Seal a workflow input for one workflow id (for an owner who is not the one who
    /// triggers: `trigger --sealed-input FILE --workflow-id ID`). Prints it base64.
    SealInput(SealInputArgs),
    /// Seal private data an agent needs at boot (e.g. a screening list) under the input
    /// key, as the resource NAME: give the file to the agent as `--resource NAME=FILE`.
    /// It opens only in an attested enclave, and only as NAME.
    SealResource(SealResourceArgs),
    /// Fetch an agent's tamper-evident audit trail (`audit fetch --agent ADDR > FILE`) or
    /// check one (`audit verify FILE`): names the first removed, edited or reordered record.
    Audit(audit::AuditArgs),
    /// Run N SecureStateLoops at bounded concurrency; report completed/failed/lost (lost must
    /// be 0), latency p50/p99, throughput and the agents' memory (--agent-pid NAME=PID).
    Load(load::LoadArgs),
    /// Check the running agent is the enclave image that was built: attestation (signature,
    /// chain, nonce, no debug mode), PCR0 == build/enclave.eif.json; --deep also checks KMS's
    /// Decrypt record (emulator audit log or CloudTrail). One PASS/FAIL line per check.
    Verify(verify::VerifyArgs),
}

#[derive(Debug, Args)]
struct TriggerArgs {
    /// Number of ProcessState steps after InitState.
    #[arg(long, env = "ENCLAVEMESH_STEPS", default_value_t = 1)]
    steps: u32,
    /// How state moves between the agent calls: `local` batches the steps into one
    /// workflow task (local activities; each result is still recorded in history), `remote`
    /// runs one Temporal activity per step (each step durable as it ends; any worker may
    /// run it). See the README's "Handoff modes".
    #[arg(long, env = "ENCLAVEMESH_HANDOFF", default_value = "local")]
    handoff: Handoff,
    #[command(flatten)]
    input: owner::InputArgs,
    #[command(flatten)]
    owner: owner::OwnerArgs,
    /// An input sealed elsewhere (`enclavemesh seal-input`, for this --workflow-id):
    /// then the balance, rate and note flags are not used, and no KMS call is made here.
    #[arg(long)]
    sealed_input: Option<std::path::PathBuf>,
    /// Workflow id (default: a generated unique id; required with --sealed-input).
    #[arg(long, env = "ENCLAVEMESH_WORKFLOW_ID")]
    workflow_id: Option<String>,
    /// Agent the final balance is revealed through (sealed to the owner key, opened here).
    #[arg(long, env = "ENCLAVEMESH_REVEAL_AGENT", default_value = "tcp://127.0.0.1:5005")]
    reveal_agent: Address,
    /// The field revealed at the end (the ledger's balance by default; e.g. score).
    #[arg(long, default_value = "balance")]
    reveal_field: owner::Field,
    /// Do not reveal the final balance.
    #[arg(long)]
    no_reveal: bool,
    /// Only start the workflow; do not wait for it.
    #[arg(long)]
    no_wait: bool,
    /// Progress polling interval in milliseconds.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
}

#[derive(Debug, Args)]
struct RevealArgs {
    /// Agent address holding the key (vsock://CID:PORT, unix:///path, tcp://host:port).
    #[arg(long, env = "ENCLAVEMESH_REVEAL_AGENT")]
    agent: Address,
    /// Field to reveal: the ledger's balance, step, rate-bps, history-digest, secret-note
    /// or history, or any name the final role discloses (e.g. score).
    #[arg(long)]
    field: owner::Field,
    /// The owner's key file the result is opened with.
    #[arg(long, env = "ENCLAVEMESH_OWNER_KEY")]
    owner_key: std::path::PathBuf,
    /// Workflow whose envelope to open (waits for it to finish).
    #[arg(long)]
    workflow_id: String,
    /// For a failed run: use the last step that succeeded (from history) instead of the result.
    #[arg(long)]
    last_good: bool,
    /// Timeout of the Reveal RPC in seconds.
    #[arg(long, default_value_t = 10)]
    rpc_timeout_secs: u64,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where to write the key file (mode 0600).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Replace an existing key file (results sealed to the old key become unreadable).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct SealInputArgs {
    /// The workflow the input is for: it opens in no other.
    #[arg(long)]
    workflow_id: String,
    #[command(flatten)]
    input: owner::InputArgs,
    #[command(flatten)]
    owner: owner::OwnerArgs,
    /// Write it here instead of stdout.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct SealResourceArgs {
    /// The resource's name, as the agent's `--resource NAME=FILE` names it.
    #[arg(long)]
    name: String,
    /// The plaintext to seal (at most 60 KiB).
    #[arg(long)]
    file: std::path::PathBuf,
    #[command(flatten)]
    owner: owner::OwnerArgs,
    /// Write it here instead of stdout.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = Config::parse();
    // Quiet by default: stdout is for results; RUST_LOG turns logs (stderr) on.
    let telemetry = telemetry();
    let out = Out::new(cfg.json);
    let result = match &cfg.command {
        Command::Trigger(args) => trigger(&cfg, args, &out).instrument(trigger_span(args)).await,
        Command::Reveal(args) => reveal(&cfg, args, &out).await,
        Command::Keygen(args) => keygen(args, &out),
        Command::SealInput(args) => seal_input(args).await,
        Command::SealResource(args) => seal_resource(args).await,
        Command::Audit(args) => audit::run(args, cfg.json).await,
        Command::Load(args) => load::run(&cfg.temporal, &cfg.task_queue, args, cfg.json).await,
        Command::Verify(args) => verify::run(args).await,
    };
    // The trigger span has ended; export it (and wait) before exiting.
    if let Some(t) = telemetry {
        t.shutdown().await;
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            out.error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Logs (stderr) when `RUST_LOG` is set; OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set (then stderr shows warnings only unless `RUST_LOG` says otherwise). Neither:
/// nothing is installed and stdout/stderr stay clean.
fn telemetry() -> Option<enclavemesh_telemetry::TelemetryGuard> {
    let rust_log = std::env::var_os("RUST_LOG").is_some();
    let otlp = std::env::var(enclavemesh_telemetry::ENV_ENDPOINT).is_ok_and(|v| !v.trim().is_empty());
    if !rust_log && !otlp {
        return None;
    }
    if rust_log {
        return Some(enclavemesh_telemetry::init("enclavemesh"));
    }
    let mut config = enclavemesh_telemetry::TelemetryConfig::from_env("enclavemesh");
    config.log_filter = Some("warn".into());
    match enclavemesh_telemetry::build(config) {
        Ok(guard) => Some(guard),
        Err(e) => {
            eprintln!("enclavemesh: OpenTelemetry export disabled: {e}");
            None
        }
    }
}

/// Root span of one workflow run: its context goes into the workflow start header, so
/// the worker's activity spans, the agents, the sidecar and KMS all join this trace.
fn trigger_span(args: &TriggerArgs) -> tracing::Span {
    tracing::info_span!(
        "trigger",
        otel.name = "trigger SecureStateLoop",
        otel.kind = "client",
        workflow.id = tracing::field::Empty,
        steps = args.steps,
        outcome = tracing::field::Empty,
    )
}

type LoopHandle = WorkflowHandle<Client, SecureStateLoopRun>;

fn generated_workflow_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("secure-state-loop-{}-{:x}{:05x}", now.as_secs(), now.subsec_nanos(), std::process::id() & 0xfffff)
}

fn ui_link(cfg: &Config, workflow_id: &str) -> String {
    format!("{}/namespaces/{}/workflows/{}", cfg.ui_url.trim_end_matches('/'), cfg.temporal.namespace, workflow_id)
}

/// A few seconds of retries cover a server that is still starting; a server that is
/// down still fails fast enough to read the error.
const CONNECT_RETRY_FOR: Duration = Duration::from_secs(5);

async fn client(cfg: &Config) -> anyhow::Result<Client> {
    let settings = cfg.temporal.resolve()?;
    Ok(connect_to_with_retry(&settings, &default_identity("enclavemesh-cli"), CONNECT_RETRY_FOR).await?)
}

async fn trigger(cfg: &Config, args: &TriggerArgs, out: &Out) -> anyhow::Result<u8> {
    // With a manifest, its pipeline decides the steps (and --steps is not used).
    let manifest = args.input.run_manifest()?;
    let steps = manifest.steps.unwrap_or(args.steps);
    // The owner's part first, on this machine: nothing reaches Temporal unsealed.
    let (workflow_id, sealed_input_b64, key) = match &args.sealed_input {
        Some(path) => {
            let id = args.workflow_id.clone().context(
                "--sealed-input needs --workflow-id: a sealed input opens only for the workflow it was sealed for",
            )?;
            let key = if args.no_reveal {
                None
            } else {
                args.owner.owner_key.as_ref().map(|_| args.owner.key()).transpose()?
            };
            (id, owner::read_sealed_input(path)?, key)
        }
        None => {
            let id = args.workflow_id.clone().unwrap_or_else(generated_workflow_id);
            let key = args.owner.key()?;
            let sealed = args.owner.seal(&key, &id, &args.input, &manifest.sha256).await?;
            (id, sealed, Some(key))
        }
    };
    let client = client(cfg).await?;
    let input = WorkflowInput { steps, sealed_input_b64, handoff: args.handoff, manifest_b64: manifest.b64 };
    tracing::Span::current().record("workflow.id", workflow_id.as_str());
    let options = WorkflowStartOptions::new(cfg.task_queue.clone(), workflow_id.clone())
        .maybe_header(enclavemesh_workflow::trace_header::start_header())
        .build();
    let handle: LoopHandle = client
        .start_workflow(SecureStateLoopRun, input, options)
        .await
        .with_context(|| format!("starting workflow {workflow_id}"))?;
    let run_id = handle.run_id().unwrap_or_default().to_string();
    let link = ui_link(cfg, &workflow_id);
    out.started(&workflow_id, &run_id, &cfg.task_queue, steps, &link);
    if args.no_wait {
        return Ok(0);
    }

    // Long-poll the result while polling progress; each step is printed once.
    let mut printed = 0usize;
    let total = u64::from(steps) + 1;
    let result = handle.get_result(WorkflowGetResultOptions::default());
    tokio::pin!(result);
    let mut tick = tokio::time::interval(Duration::from_millis(args.poll_ms.max(50)));
    let outcome = loop {
        tokio::select! {
            r = &mut result => break r,
            _ = tick.tick() => {
                if let Some(steps) = progress(&handle).await {
                    for s in steps.iter().skip(printed) {
                        out.step(s, total);
                    }
                    printed = printed.max(steps.len());
                }
            }
        }
    };

    let span = tracing::Span::current();
    match outcome {
        Ok(output) => {
            span.record("outcome", "completed");
            for s in output.steps.iter().skip(printed) {
                out.step(s, total);
            }
            out.completed(&output, &run_id, &link)?;
            if let (Some(key), false) = (&key, args.no_reveal) {
                reveal_balance(args, key, &workflow_id, &output, out).await;
            }
            Ok(0)
        }
        Err(WorkflowGetResultError::Failed(err)) => {
            span.record("outcome", "failed");
            // Print any steps that completed before the failure.
            if let Some(steps) = progress(&handle).await {
                for s in steps.iter().skip(printed) {
                    out.step(s, total);
                }
            }
            out.failed(&workflow_id, &run_id, &Failure::from_incoming(&err), &link);
            Ok(EXIT_FAILED)
        }
        Err(e) => {
            span.record("outcome", "abnormal");
            out.failed(&workflow_id, &run_id, &Failure::other(&e), &link);
            Ok(EXIT_ABNORMAL)
        }
    }
}

/// Completed step summaries: the `progress` query (needs a live worker), falling back to
/// the activity results recorded in history.
async fn progress(handle: &LoopHandle) -> Option<Vec<StepSummaryJson>> {
    let query = handle.query(ProgressQuery, (), WorkflowQueryOptions::default());
    if let Ok(Ok(p)) = tokio::time::timeout(Duration::from_secs(2), query).await {
        let p: Progress = p;
        return Some(p.completed);
    }
    let events = handle.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await.ok()?;
    Some(completed_steps(&events).ok()?.into_iter().map(|s| s.summary).collect())
}

/// The final balance, sealed by the agent to the owner key and opened here. A failure
/// here does not undo the run: it is reported, with the command that retries it.
async fn reveal_balance(
    args: &TriggerArgs,
    key: &enclavemesh_owner::OwnerKey,
    workflow_id: &str,
    o: &WorkflowOutput,
    out: &Out,
) {
    let field = &args.reveal_field;
    let opened = match SealedEnvelope::try_from(&o.final_envelope) {
        Ok(state) => owner::reveal(&args.reveal_agent, key, workflow_id, state, field, Duration::from_secs(10)).await,
        Err(e) => Err(e.into()),
    };
    match opened {
        Ok(Ok(value)) => out.final_balance(workflow_id, o.final_envelope.step, field.name(), &value),
        Ok(Err(f)) => out.error(&format!(
            "the {} was not revealed ({}: {}); retry: enclavemesh reveal --agent ADDR --field {} --workflow-id {workflow_id}",
            field.name(),
            f.kind.label(),
            f.message,
            field.name()
        )),
        Err(e) => out.error(&format!(
            "the {} was not revealed through {} ({e:#}); retry: enclavemesh reveal --agent ADDR --field {} \
             --workflow-id {workflow_id}",
            field.name(),
            args.reveal_agent,
            field.name()
        )),
    }
}

async fn reveal(cfg: &Config, args: &RevealArgs, out: &Out) -> anyhow::Result<u8> {
    let key = enclavemesh_owner::OwnerKey::load(&args.owner_key)?;
    let client = client(cfg).await?;
    let handle: LoopHandle = client.get_workflow_handle::<SecureStateLoopRun>(args.workflow_id.clone());
    let envelope: EnvelopeJson = match handle.get_result(WorkflowGetResultOptions::default()).await {
        Ok(WorkflowOutput { final_envelope, .. }) => final_envelope,
        Err(e) if args.last_good => {
            tracing::info!(error = %e, "workflow did not complete; using the last good step from history");
            let events = handle
                .fetch_history(WorkflowFetchHistoryOptions::default())
                .into_events()
                .await
                .context("fetching workflow history")?;
            match completed_steps(&events)?.pop() {
                Some(s) => s.envelope,
                None => bail!("workflow {} has no completed step to reveal", args.workflow_id),
            }
        }
        Err(e) => {
            bail!("workflow {} has no result to reveal ({e}); use --last-good for a failed run", args.workflow_id)
        }
    };
    let state = SealedEnvelope::try_from(&envelope)?;
    let timeout = Duration::from_secs(args.rpc_timeout_secs.max(1));
    match owner::reveal(&args.agent, &key, &args.workflow_id, state, &args.field, timeout).await? {
        Ok(value) => {
            out.revealed(&args.workflow_id, envelope.step, args.field.name(), &value);
            Ok(0)
        }
        Err(f) => {
            out.failed(&args.workflow_id, "", &Failure::typed(f.kind.label(), &f.message, !f.retryable()), "");
            Ok(EXIT_FAILED)
        }
    }
}

fn keygen(args: &KeygenArgs, out: &Out) -> anyhow::Result<u8> {
    let key = enclavemesh_owner::OwnerKey::generate();
    key.save(&args.out, args.force)?;
    use base64::Engine as _;
    out.keygen(&args.out.display().to_string(), &base64::engine::general_purpose::STANDARD.encode(key.public()));
    Ok(0)
}

async fn seal_input(args: &SealInputArgs) -> anyhow::Result<u8> {
    let key = args.owner.key()?;
    let manifest = args.input.run_manifest()?;
    let sealed = args.owner.seal(&key, &args.workflow_id, &args.input, &manifest.sha256).await?;
    write_sealed(args.out.as_deref(), &sealed)
}

async fn seal_resource(args: &SealResourceArgs) -> anyhow::Result<u8> {
    let sealed = args.owner.seal_resource(&args.name, &args.file).await?;
    write_sealed(args.out.as_deref(), &sealed)
}

fn write_sealed(out: Option<&std::path::Path>, sealed: &str) -> anyhow::Result<u8> {
    match out {
        Some(path) => {
            std::fs::write(path, format!("{sealed}\n")).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{sealed}"),
    }
    Ok(0)
}
