//! The real worker on a thread of its own, for tests that drive it in-process.

use std::time::Duration;

use enclavemesh_transport::Address;
use enclavemesh_worker::worker::{WorkerError, WorkerSettings, run_worker};

/// The worker on its own runtime thread (the SDK worker future is not `Send`).
pub struct WorkerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<Result<(), WorkerError>>>,
}

impl WorkerThread {
    pub fn spawn(settings: WorkerSettings) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let join = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("worker runtime");
            rt.block_on(run_worker(settings, async {
                let _ = rx.await;
            }))
        });
        Self { stop: Some(tx), join: Some(join) }
    }

    /// Graceful shutdown; returns the worker's result.
    pub async fn stop(mut self) -> Result<(), WorkerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let join = self.join.take().expect("joined once");
        tokio::task::spawn_blocking(move || join.join().expect("worker thread panicked")).await.expect("join")
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Settings for a worker talking to the Temporal server at `temporal_address` and two agents.
pub fn settings(temporal_address: &str, task_queue: &str, agent_a: Address, agent_b: Address) -> WorkerSettings {
    WorkerSettings {
        temporal: enclavemesh_workflow::TemporalSettings::plain(temporal_address, "default")
            .expect("a plain Temporal address"),
        task_queue: task_queue.into(),
        agent_a: vec![agent_a],
        agent_b: vec![agent_b],
        roles: Vec::new(),
        rpc_timeout: Duration::from_secs(10),
        connect_retry_for: Duration::from_secs(30),
    }
}
