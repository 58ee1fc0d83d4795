//! `enclavemesh-worker`: hosts the `SecureStateLoop` workflow and the agent activities.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use enclavemesh_transport::Address;
use enclavemesh_worker::worker::{WorkerSettings, run_worker};
use enclavemesh_workflow::TemporalArgs;
use enclavemesh_workflow::types::DEFAULT_TASK_QUEUE;

/// Temporal worker for Enclave Mesh: runs SecureStateLoop (InitState on Agent A, then
/// ProcessState on Agent B per step; or, when the owner's manifest comes with the
/// workflow, its pipeline's roles), passing only sealed envelopes between agents.
#[derive(Debug, Parser)]
#[command(name = "enclavemesh-worker", version)]
struct Config {
    /// Temporal: address, namespace, and TLS / mTLS / API key for a production server.
    #[command(flatten)]
    temporal: TemporalArgs,
    /// Task queue to poll (workflows and activities).
    #[arg(long, env = "TEMPORAL_TASK_QUEUE", default_value = DEFAULT_TASK_QUEUE)]
    task_queue: String,
    /// Agent A (ledger-init) address: vsock://CID:PORT, unix:///path or tcp://host:port.
    /// Several (comma-separated or repeated) make a pool: calls are balanced over the
    /// healthy ones (power of two choices; grpc.health.v1 checks every 500 ms).
    #[arg(long, env = "AGENT_A_ADDR", default_value = "vsock://16:5000", value_delimiter = ',', num_args = 1..)]
    agent_a: Vec<Address>,
    /// Agent B (interest) address, or several for a pool (as --agent-a).
    #[arg(long, env = "AGENT_B_ADDR", default_value = "vsock://17:5000", value_delimiter = ',', num_args = 1..)]
    agent_b: Vec<Address>,
    /// More roles, by agent name, for a manifest's pipeline: NAME=ADDR[,ADDR...] (a pool
    /// when several), repeated or `;`-separated. --agent-a and --agent-b are the roles
    /// `agent-a` and `agent-b`.
    #[arg(long = "agent", env = "AGENT_ROLES", value_name = "NAME=ADDR[,ADDR...]", value_delimiter = ';', value_parser = parse_role)]
    roles: Vec<(String, Vec<Address>)>,
    /// Timeout of one agent RPC, in seconds (a timeout is retried by Temporal).
    #[arg(long, env = "AGENT_RPC_TIMEOUT_SECS", default_value_t = 10)]
    rpc_timeout_secs: u64,
    /// How long to keep retrying the initial Temporal connection, in seconds.
    #[arg(long, env = "TEMPORAL_CONNECT_RETRY_SECS", default_value_t = 120)]
    connect_retry_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Flags first: `--help` and flag errors print before anything logs.
    let cfg = Config::parse();
    let _telemetry = enclavemesh_telemetry::init("enclavemesh-worker");
    let temporal = cfg.temporal.resolve().context("enclavemesh-worker: Temporal connection settings")?;
    let settings = WorkerSettings {
        temporal,
        task_queue: cfg.task_queue,
        agent_a: cfg.agent_a,
        agent_b: cfg.agent_b,
        roles: cfg.roles,
        rpc_timeout: Duration::from_secs(cfg.rpc_timeout_secs.max(1)),
        connect_retry_for: Duration::from_secs(cfg.connect_retry_secs),
    };
    run_worker(settings, enclavemesh_transport::shutdown_signal()).await.context("enclavemesh-worker")
}

/// `NAME=ADDR[,ADDR...]`.
fn parse_role(s: &str) -> Result<(String, Vec<Address>), String> {
    let (name, addrs) = s.split_once('=').ok_or_else(|| format!("'{s}' is not NAME=ADDR[,ADDR...]"))?;
    if !enclavemesh_proto::limits::is_agent_name(name) {
        return Err(format!("'{name}' is not an agent name (1 to 64 of A-Z a-z 0-9 - _)"));
    }
    let addrs = addrs
        .split(',')
        .map(|a| a.trim().parse::<Address>().map_err(|e| format!("role {name}: address '{a}': {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_owned(), addrs))
}
