//! A whole SecureStateLoop mesh (emulator, sidecar, two agents, Temporal, worker) for
//! fault and load tests, plus the checks every such test makes: the run's step
//! history (Reveal `history`, `step:agent:before->after,…`) holds steps 1..=N exactly
//! once each, chained, and the balance is [`expected_balance`].
//!
//! The worker reaches Agent B through a [`Gate`], so a test can stop the loop at an exact
//! step before it injects a fault.

use crate::gate::Gate;
use crate::mesh::random_pcr0;
use crate::proc::Proc;
use crate::temporal::{Temporal, expected_balance};
use crate::{DevMesh, MeshOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Balance and rate every loop test triggers with.
pub const INITIAL_BALANCE: i64 = 100_000;
pub const RATE_BPS: u32 = 500;
/// Task queue of the loop's worker.
pub const TASK_QUEUE: &str = "it";

pub fn unix(p: &Path) -> String {
    format!("unix://{}", p.display())
}

pub struct Loop {
    pub mesh: DevMesh,
    pub temporal: Temporal,
    pub a: Proc,
    pub b: Proc,
    pub sock_a: PathBuf,
    pub sock_b: PathBuf,
    pub pcr0: String,
    pub worker: Proc,
    /// Between the worker and Agent B (or the bridge in front of it).
    pub gate: Gate,
    /// The worker's Agent B address: the gate's socket.
    worker_b: String,
    workers_started: u32,
}

/// What the worker should dial for Agent B.
pub enum AgentBRoute {
    /// Agent B's unix socket.
    Direct,
    /// A vsock-bridge on this TCP port in front of Agent B (started here, before the worker).
    Bridge(u16),
}

impl Loop {
    /// Starts everything; `route` decides how the worker reaches Agent B. With a bridge
    /// the bridge process is returned too.
    pub async fn start(route: AgentBRoute) -> (Loop, Option<Proc>) {
        let pcr0 = random_pcr0();
        let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
        let (a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
        let (b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
        let temporal = Temporal::start(mesh.logs_dir());
        let (b_addr, bridge) = match route {
            AgentBRoute::Direct => (unix(&sock_b), None),
            AgentBRoute::Bridge(port) => {
                let bridge = mesh.start_bridge_on(&unix(&sock_b), port);
                (format!("tcp://127.0.0.1:{port}"), Some(bridge))
            }
        };
        let (gate, worker_b) = Gate::start(&mesh.logs_dir().join("gate-b.sock"), &b_addr);
        let worker = temporal.start_worker(mesh.logs_dir(), TASK_QUEUE, &unix(&sock_a), &worker_b);
        (Loop { mesh, temporal, a, b, sock_a, sock_b, pcr0, worker, gate, worker_b, workers_started: 1 }, bridge)
    }

    /// Kills the worker (SIGKILL, as a crash) and starts a new one on the same queue.
    pub fn crash_and_replace_worker(&mut self) {
        self.worker.kill();
        self.workers_started += 1;
        self.worker = self.temporal.start_worker_named(
            &format!("worker-{TASK_QUEUE}-{}", self.workers_started),
            self.mesh.logs_dir(),
            TASK_QUEUE,
            &unix(&self.sock_a),
            &self.worker_b,
        );
    }

    /// `enclavemesh trigger` with the standard balance/rate; `extra` e.g. `--no-wait`.
    pub fn trigger(&self, wf: &str, steps: u32, extra: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
        let steps = steps.to_string();
        let balance = INITIAL_BALANCE.to_string();
        let rate = RATE_BPS.to_string();
        let sock = unix(&self.sock_b);
        let mut args = vec![
            "trigger",
            "--workflow-id",
            wf,
            "--steps",
            &steps,
            "--initial-balance",
            &balance,
            "--rate-bps",
            &rate,
            "--reveal-agent",
            &sock,
        ];
        args.extend_from_slice(extra);
        self.temporal.cli_with_env(TASK_QUEUE, &args, &self.mesh.owner_env())
    }

    /// `enclavemesh reveal` through Agent B (waits for the workflow's result), opened
    /// with the owner key.
    pub fn reveal(&self, wf: &str, field: &str) -> String {
        reveal_through(&self.temporal, TASK_QUEUE, &self.mesh, &self.sock_b, wf, field)
    }

    /// Starts `wf` (`steps` steps, not waiting for it) with the gate holding the Process
    /// call for `hold_step`, and returns once that call has arrived: the loop is then
    /// certainly running, with steps 1..=`hold_step` done.
    pub fn start_held_at(&self, wf: &str, steps: u32, hold_step: u64) {
        self.gate.hold(hold_step);
        let (ok, _, all) = self.trigger(wf, steps, &["--no-wait"]);
        assert!(ok, "{all}");
        self.gate.wait_held(Duration::from_secs(60));
    }

    /// Whether history shows the workflow closed (completed, failed, terminated...).
    pub fn closed(&self, wf: &str) -> bool {
        let h = self.temporal.history_json(wf);
        [
            "WorkflowExecutionCompleted",
            "WORKFLOW_EXECUTION_COMPLETED",
            "WorkflowExecutionFailed",
            "WORKFLOW_EXECUTION_FAILED",
        ]
        .iter()
        .any(|m| h.contains(m))
    }

    /// The run completed with every step exactly once: Reveal `step`, `balance` and
    /// `history` agree with `steps` interest steps from [`INITIAL_BALANCE`].
    pub fn assert_completed_exactly_once(&self, wf: &str, steps: u32) {
        assert_eq!(self.reveal(wf, "step"), steps.to_string(), "final step of {wf}");
        assert_eq!(
            self.reveal(wf, "balance"),
            expected_balance(INITIAL_BALANCE, RATE_BPS, steps).to_string(),
            "balance of {wf}"
        );
        assert_history_exactly_once(&self.reveal(wf, "history"), INITIAL_BALANCE, RATE_BPS, steps);
    }
}

/// `enclavemesh reveal` of `wf`'s result through the agent at `agent_sock` (waits for the
/// workflow to end), opened with the owner key.
pub fn reveal_through(
    temporal: &Temporal,
    queue: &str,
    mesh: &DevMesh,
    agent_sock: &Path,
    wf: &str,
    field: &str,
) -> String {
    let sock = unix(agent_sock);
    let args = ["reveal", "--agent", &sock, "--workflow-id", wf, "--field", field];
    let (ok, lines, all) = temporal.cli_with_env(queue, &args, &mesh.owner_env());
    assert!(ok, "reveal {field} of {wf} failed: {all}");
    lines
        .iter()
        .find(|v| v["event"] == "revealed")
        .and_then(|v| v["value"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no reveal in {all}"))
}

/// `enclavemesh load` arguments: `n` runs of `steps` steps from [`INITIAL_BALANCE`] at
/// [`RATE_BPS`], `concurrency` in flight, ids `PREFIX-NNNNN`, no progress lines; `extra`
/// appended (e.g. `--handoff remote`).
pub fn load_args(prefix: &str, n: u32, steps: u32, concurrency: u32, timeout_secs: u32, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "load",
        "--workflows",
        &n.to_string(),
        "--steps",
        &steps.to_string(),
        "--concurrency",
        &concurrency.to_string(),
        "--timeout-secs",
        &timeout_secs.to_string(),
        "--initial-balance",
        &INITIAL_BALANCE.to_string(),
        "--rate-bps",
        &RATE_BPS.to_string(),
        "--id-prefix",
        prefix,
        "--progress-secs",
        "0",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// The report of an `enclavemesh load` run (its CLI result), checked: every one of `n`
/// runs started and completed, none failed or was lost, and the CLI exited 0.
pub fn assert_load_complete(result: &(bool, Vec<serde_json::Value>, String), n: u32) -> serde_json::Value {
    let (ok, lines, all) = result;
    let r = lines.iter().find(|v| v["event"] == "load").unwrap_or_else(|| panic!("no load report: {all}")).clone();
    eprintln!("load report: {r}");
    assert_eq!(r["lost"], 0, "nothing lost: {r}");
    assert_eq!(r["failed"], 0, "no workflow failed: {r}");
    assert_eq!(r["not_started"], 0, "{r}");
    assert_eq!(r["completed"], u64::from(n), "{r}");
    assert!(*ok, "a clean run exits 0: {all}");
    r
}

/// Runs `enclavemesh load ARGS` on `queue` and, while it runs, waits until the agent at
/// `sock` has recorded at least `calls` calls, then injects `fault` (given that count),
/// asserting the load still ran before and after it. Returns the CLI's result and what
/// `fault` returned. Call it from a multi-thread tokio test.
pub fn load_with_fault<T>(
    temporal: &Temporal,
    queue: &str,
    args: &[String],
    env: &[(String, String)],
    sock: &Path,
    calls: u64,
    fault: impl FnOnce(u64) -> T,
) -> ((bool, Vec<serde_json::Value>, String), T) {
    let rt = tokio::runtime::Handle::current();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let load = s.spawn(|| temporal.cli_with_env(queue, &args, env));
            let started = std::time::Instant::now();
            let served = loop {
                let served = rt.block_on(calls_served(sock));
                assert!(
                    !load.is_finished(),
                    "the load ended before {} served {calls} calls ({served})",
                    sock.display()
                );
                if served >= calls {
                    break served;
                }
                assert!(started.elapsed() < Duration::from_secs(240), "{} served only {served} calls", sock.display());
                std::thread::sleep(Duration::from_millis(20));
            };
            let injected = fault(served);
            assert!(!load.is_finished(), "the fault came under load");
            (load.join().unwrap_or_else(|_| panic!("the load thread panicked")), injected)
        })
    })
}

/// Calls the agent at `sock` has recorded this boot (its audit trail's length, less the
/// bootstrap record): Init, Process and Reveal calls; 0 when it cannot be reached.
pub async fn calls_served(sock: &Path) -> u64 {
    let Ok(addr) = unix(sock).parse() else { return 0 };
    let Ok(channel) = enclavemesh_transport::channel(&addr) else { return 0 };
    let mut client = enclavemesh_proto::v1::agent_service_client::AgentServiceClient::new(channel);
    let req = enclavemesh_proto::v1::AuditLogRequest { from_seq: u64::MAX, max_records: 1 };
    match client.audit_log(req).await {
        Ok(r) => r.into_inner().next_seq.saturating_sub(1),
        Err(_) => 0,
    }
}

/// Checks a Reveal `history` value: records for steps 1..=`steps` exactly once, in
/// order, each starting from the previous balance and applying one interest step.
pub fn assert_history_exactly_once(history: &str, initial: i64, bps: u32, steps: u32) {
    assert_history_exactly_once_by(history, initial, bps, steps, &["agent-b"]);
}

/// Like [`assert_history_exactly_once`] with steps run by any of `agents` (a pool);
/// returns the agent of each step, in order.
pub fn assert_history_exactly_once_by(
    history: &str,
    initial: i64,
    bps: u32,
    steps: u32,
    agents: &[&str],
) -> Vec<String> {
    let records: Vec<(u64, String, i64, i64)> = history
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let mut it = r.splitn(3, ':');
            let step =
                it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad record {r:?} in {history}"));
            let agent = it.next().unwrap_or_else(|| panic!("bad record {r:?}")).to_string();
            let (before, after) = it
                .next()
                .and_then(|ba| ba.split_once("->"))
                .and_then(|(b, a)| Some((b.parse().ok()?, a.parse().ok()?)))
                .unwrap_or_else(|| panic!("bad record {r:?} in {history}"));
            (step, agent, before, after)
        })
        .collect();
    let got: Vec<u64> = records.iter().map(|r| r.0).collect();
    let want: Vec<u64> = (1..=u64::from(steps)).collect();
    assert_eq!(got, want, "each step exactly once, in order: {history}");
    let mut balance = initial;
    for (step, agent, before, after) in &records {
        assert_eq!(*before, balance, "step {step} starts from the previous balance: {history}");
        let next = expected_balance(balance, bps, 1);
        assert_eq!(*after, next, "step {step} applies one interest step: {history}");
        assert!(agents.contains(&agent.as_str()), "step {step} by one of {agents:?}: {history}");
        balance = next;
    }
    assert_eq!(balance, expected_balance(initial, bps, steps));
    records.into_iter().map(|r| r.1).collect()
}

/// What `enclavemesh trigger` reported for a run of an SDK pipeline.
pub struct PipelineRun {
    /// Process steps after Init (from the manifest).
    pub steps: u64,
    /// The disclosed field's value, opened with the owner's key.
    pub revealed: String,
}

/// `enclavemesh trigger --manifest MANIFEST --input-file INPUT --reveal-agent AGENT
/// --reveal-field FIELD` as the data owner, for workflow `wf`; asserts it completed.
#[allow(clippy::too_many_arguments)]
pub fn trigger_pipeline(
    temporal: &Temporal,
    queue: &str,
    mesh: &DevMesh,
    wf: &str,
    manifest: &Path,
    input: &Path,
    reveal_agent: &str,
    field: &str,
) -> PipelineRun {
    let args = [
        "trigger",
        "--workflow-id",
        wf,
        "--manifest",
        &manifest.display().to_string(),
        "--input-file",
        &input.display().to_string(),
        "--reveal-agent",
        reveal_agent,
        "--reveal-field",
        field,
    ];
    let (ok, lines, all) = temporal.cli_with_env(queue, &args, &mesh.owner_env());
    assert!(ok, "trigger {wf}: {all}");
    let event = |name: &str| lines.iter().find(|v| v["event"] == name).unwrap_or_else(|| panic!("no {name} in {all}"));
    let revealed = event("revealed");
    assert_eq!(revealed["field"], field, "{all}");
    PipelineRun {
        steps: event("started")["steps"].as_u64().unwrap_or_else(|| panic!("{all}")),
        revealed: revealed["value"].as_str().unwrap_or_else(|| panic!("{all}")).to_string(),
    }
}
