//! The parent side without enclaves: a real Temporal dev server, two fake agents on
//! unix sockets and the real worker in-process. What the worker and CLI tests drive.

use std::sync::Arc;
use std::time::Duration;

use enclavemesh_transport::Address;
use temporalio_client::Client;

use crate::fake_agent::{FakeAgent, serve_fake};
use crate::in_process_worker::{WorkerThread, settings};
use crate::temporal::Temporal;

pub struct FakeStack {
    pub server: Temporal,
    pub agent_a: Arc<FakeAgent>,
    pub agent_b: Arc<FakeAgent>,
    pub addr_b: Address,
    pub worker: WorkerThread,
    pub task_queue: String,
    /// Holds the dev server's db file and the agents' sockets; removed on drop.
    pub dir: tempfile::TempDir,
}

impl FakeStack {
    /// Starts it all, the worker polling `task_queue`. Call from a multi-thread runtime.
    pub fn start(task_queue: &str) -> FakeStack {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Temporal::start(dir.path());
        let agent_a = FakeAgent::new("fake-a");
        let agent_b = FakeAgent::new("fake-b");
        let addr_a = serve_fake(agent_a.clone(), dir.path().join("a.sock"));
        let addr_b = serve_fake(agent_b.clone(), dir.path().join("b.sock"));
        let worker = WorkerThread::spawn(settings(&server.address, task_queue, addr_a, addr_b.clone()));
        FakeStack { server, agent_a, agent_b, addr_b, worker, task_queue: task_queue.to_string(), dir }
    }

    /// A Temporal client of the stack's server (waits for its frontend to be healthy).
    pub async fn client(&self) -> Client {
        enclavemesh_workflow::connect::connect_with_retry(
            &self.server.address,
            "default",
            "test",
            Duration::from_secs(30),
        )
        .await
        .expect("Temporal client")
    }
}
