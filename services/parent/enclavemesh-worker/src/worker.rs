//! Running the Temporal worker that hosts `SecureStateLoop` and its activities.

use std::future::Future;
use std::time::Duration;

use enclavemesh_transport::Address;
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::activities::{ActivitiesError, AgentActivities};
use crate::workflow::SecureStateLoop;
use enclavemesh_workflow::TemporalSettings;
use enclavemesh_workflow::connect::{ConnectError, connect_to_with_retry, default_identity};
use enclavemesh_workflow::pipeline::{DEFAULT_INIT_ROLE, DEFAULT_STEP_ROLE};

/// Everything the worker needs; the binary fills it from flags/env, tests directly.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Where Temporal is, the namespace, and TLS / mTLS / API key (checked once).
    pub temporal: TemporalSettings,
    pub task_queue: String,
    /// Agent A's enclaves (a pool when more than one, [`crate::pool`]).
    pub agent_a: Vec<Address>,
    /// Agent B's enclaves.
    pub agent_b: Vec<Address>,
    /// More roles by agent name, each a pool (a manifest's pipeline names them).
    pub roles: Vec<(String, Vec<Address>)>,
    /// Bound on one agent RPC.
    pub rpc_timeout: Duration,
    /// How long to keep retrying the first Temporal connection (the server may still be starting).
    pub connect_retry_for: Duration,
}

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Activities(#[from] ActivitiesError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("temporal runtime: {0}")]
    Runtime(String),
    #[error("worker setup: {0}")]
    Setup(String),
    #[error("worker failed: {0}")]
    Run(String),
}

/// Connects, registers `SecureStateLoop` + `InitState`/`ProcessState`, polls until
/// `shutdown` resolves, then drains in-flight tasks and returns.
pub async fn run_worker(settings: WorkerSettings, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let mut roles = vec![
        (DEFAULT_INIT_ROLE.to_owned(), settings.agent_a.clone()),
        (DEFAULT_STEP_ROLE.to_owned(), settings.agent_b.clone()),
    ];
    roles.extend(settings.roles.iter().cloned());
    let activities = AgentActivities::new(&roles, settings.rpc_timeout)?;
    let runtime =
        Runtime::from_current_tokio(RuntimeOptions::default()).map_err(|e| WorkerError::Runtime(e.to_string()))?;
    tokio::pin!(shutdown);
    let identity = default_identity("enclavemesh-worker");
    let connect = connect_to_with_retry(&settings.temporal, &identity, settings.connect_retry_for);
    let client = tokio::select! {
        c = connect => c?,
        () = &mut shutdown => return Ok(()),
    };
    let options = WorkerOptions::new(settings.task_queue.clone())
        .register_workflow::<SecureStateLoop>()
        .map_err(|e| WorkerError::Setup(e.to_string()))?
        .register_activities(activities)
        // Carries the trigger's trace context from the workflow to its activities.
        .workflow_interceptor(crate::trace_context::workflow_interceptor())
        .graceful_shutdown_period(Duration::from_secs(10))
        .build();
    let mut worker = Worker::new(&runtime, client, options).map_err(|e| WorkerError::Setup(e.to_string()))?;
    let stop = worker.shutdown_handle();
    tracing::info!(
        temporal = %settings.temporal.address,
        temporal.security = %settings.temporal.security(),
        namespace = %settings.temporal.namespace,
        task_queue = %settings.task_queue,
        agent_a = %join(&settings.agent_a),
        agent_b = %join(&settings.agent_b),
        "worker polling"
    );
    let run = worker.run();
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => return r.map_err(|e| WorkerError::Run(e.to_string())),
        () = &mut shutdown => {}
    }
    tracing::info!("shutting down worker: finishing in-flight tasks");
    stop();
    run.await.map_err(|e| WorkerError::Run(e.to_string()))?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Addresses as the flag takes them.
fn join(addrs: &[Address]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}
