//! SecureStateLoop through a real Temporal dev server, real worker, real agents.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use base64::Engine;
use enclavemesh_harness::mesh::{contains_secret, random_pcr0};
use enclavemesh_harness::temporal::{Temporal, expected_balance, history_haystack};
use enclavemesh_harness::{DevMesh, MeshOptions, Proc};
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use enclavemesh_proto::v1::*;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

struct Loop {
    mesh: DevMesh,
    temporal: Temporal,
    _a: Proc,
    _b: Proc,
    sock_b: PathBuf,
    _worker: Proc,
}

fn unix(p: &Path) -> String {
    format!("unix://{}", p.display())
}

async fn start_loop(worker_b: Option<String>) -> Loop {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let temporal = Temporal::start(mesh.logs_dir());
    let b_addr = worker_b.unwrap_or_else(|| unix(&sock_b));
    let worker = temporal.start_worker(mesh.logs_dir(), "it", &unix(&sock_a), &b_addr);
    Loop { mesh, temporal, _a: a, _b: b, sock_b, _worker: worker }
}

fn reveal(l: &Loop, wf: &str, field: &str, last_good: bool) -> String {
    let sock = unix(&l.sock_b);
    let mut args = vec!["reveal", "--agent", &sock, "--workflow-id", wf, "--field", field];
    if last_good {
        args.push("--last-good");
    }
    let (ok, lines, all) = l.temporal.cli_with_env("it", &args, &l.mesh.owner_env());
    assert!(ok, "reveal failed: {all}");
    lines
        .iter()
        .find(|v| v["event"] == "revealed")
        .map(|v| v["value"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no reveal in {all}"))
}

fn trigger(l: &Loop, wf: &str, steps: u32, extra: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
    let steps = steps.to_string();
    let sock = unix(&l.sock_b);
    let mut args = vec!["trigger", "--workflow-id", wf, "--steps", &steps, "--reveal-agent", &sock];
    if !extra.contains(&"--sealed-input") {
        args.extend_from_slice(&["--initial-balance", "100000", "--rate-bps", "500"]);
    }
    args.extend_from_slice(extra);
    l.temporal.cli_with_env("it", &args, &l.mesh.owner_env())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_loop_completes_for_1_and_5_steps_and_history_holds_only_ciphertext() {
    let l = start_loop(None).await;
    let marker = format!("PLAINTEXT-MARKER-{}", &random_pcr0()[..24]);

    for (wf, steps) in [("wf-one", 1u32), ("wf-five", 5)] {
        // The owner seals the input (here in-process, as `enclavemesh seal-input` does).
        let sealed = l.mesh.sealed_input(wf, 100_000, 500, &marker).await;
        let sealed_bytes = prost::Message::encode_to_vec(&sealed);
        let sealed_file = l.mesh.dir.path().join(format!("{wf}.sealed"));
        std::fs::write(&sealed_file, base64::engine::general_purpose::STANDARD.encode(&sealed_bytes)).unwrap();
        let sealed_arg = sealed_file.display().to_string();
        let (ok, lines, all) = trigger(&l, wf, steps, &["--sealed-input", &sealed_arg]);
        assert!(ok, "trigger failed: {all}");
        let done = lines.iter().find(|v| v["event"] == "completed").unwrap_or_else(|| panic!("{all}"));
        assert_eq!(done["final_step"], u64::from(steps));
        let step_lines = lines.iter().filter(|v| v["event"] == "step").count();
        assert_eq!(step_lines, steps as usize + 1, "one progress line per step: {all}");
        let agents: Vec<_> =
            done["summaries"].as_array().unwrap().iter().map(|s| s["agent"].as_str().unwrap().to_string()).collect();
        assert_eq!(agents[0], "agent-a");
        assert!(agents[1..].iter().all(|a| a == "agent-b"));

        // The result opens (through the explicit Reveal call) to the expected state.
        assert_eq!(reveal(&l, wf, "balance", false), expected_balance(100_000, 500, steps).to_string());
        assert_eq!(reveal(&l, wf, "step", false), steps.to_string());
        assert_eq!(reveal(&l, wf, "secret_note", false), marker, "positive control: the marker is in the state");

        // ...while Temporal's history, the CLI output and the logs never saw it.
        let history = history_haystack(&l.temporal.history_json(wf));
        let text = String::from_utf8_lossy(&history);
        assert!(text.contains("ciphertext_b64"), "history holds the sealed envelopes");
        assert!(
            contains_secret(&history, &sealed_bytes),
            "positive control: decoded history shows the (encrypted) workflow input"
        );
        for (what, bytes) in [("history", history.as_slice()), ("trigger output", all.as_bytes())] {
            assert!(!contains_secret(bytes, marker.as_bytes()), "marker found in {what}");
            assert!(!contains_secret(bytes, &l.mesh.tsk.plaintext), "TSK found in {what}");
        }
    }
    let logs = l.mesh.all_logs();
    assert!(!contains_secret(logs.as_bytes(), marker.as_bytes()), "marker found in process logs");
    assert!(!contains_secret(logs.as_bytes(), &l.mesh.tsk.plaintext), "TSK found in process logs");
}

/// A compromised parent: forwards to the real Agent B but flips a ciphertext bit in the
/// envelope of the Process request for `tamper_step`.
struct TamperingProxy {
    inner: AgentServiceClient<Channel>,
    tamper_step: u64,
}

#[tonic::async_trait]
impl AgentService for TamperingProxy {
    async fn init(&self, r: tonic::Request<InitRequest>) -> Result<tonic::Response<InitResponse>, tonic::Status> {
        self.inner.clone().init(r.into_inner()).await
    }
    async fn process(
        &self,
        r: tonic::Request<ProcessRequest>,
    ) -> Result<tonic::Response<ProcessResponse>, tonic::Status> {
        let mut req = r.into_inner();
        if req.expected_step == self.tamper_step
            && let Some(s) = req.state.as_mut()
            && let Some(b) = s.ciphertext.get_mut(0)
        {
            *b ^= 0x01;
        }
        self.inner.clone().process(req).await
    }
    async fn attest(&self, r: tonic::Request<AttestRequest>) -> Result<tonic::Response<AttestResponse>, tonic::Status> {
        self.inner.clone().attest(r.into_inner()).await
    }
    async fn reveal(&self, r: tonic::Request<RevealRequest>) -> Result<tonic::Response<RevealResponse>, tonic::Status> {
        self.inner.clone().reveal(r.into_inner()).await
    }
    async fn describe(
        &self,
        r: tonic::Request<DescribeRequest>,
    ) -> Result<tonic::Response<DescribeResponse>, tonic::Status> {
        self.inner.clone().describe(r.into_inner()).await
    }
    async fn audit_log(
        &self,
        r: tonic::Request<AuditLogRequest>,
    ) -> Result<tonic::Response<AuditLogResponse>, tonic::Status> {
        self.inner.clone().audit_log(r.into_inner()).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_envelope_fails_the_workflow_typed_and_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let proxy_sock = dir.path().join("tamper.sock");
    let proxy_addr = unix(&proxy_sock);
    let l = start_loop(Some(proxy_addr.clone())).await;
    let inner = AgentServiceClient::new(enclavemesh_transport::channel(&unix(&l.sock_b).parse().unwrap()).unwrap());
    let listener = enclavemesh_transport::bind(&proxy_addr.parse().unwrap()).await.unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(TamperingProxy { inner, tamper_step: 3 }))
            .serve_with_incoming(listener.into_incoming()),
    );

    let wf = "wf-tamper";
    let (ok, lines, all) = trigger(&l, wf, 5, &[]);
    assert!(!ok, "workflow must fail: {all}");
    let failed = lines.iter().find(|v| v["event"] == "failed").unwrap_or_else(|| panic!("{all}"));
    let failure = failed["failure"].to_string();
    assert!(failure.contains("envelope_tampered"), "typed failure: {failure}");
    assert!(failure.to_lowercase().contains("tamper"), "readable: {failure}");
    let steps_done = lines.iter().filter(|v| v["event"] == "step").count();
    assert_eq!(steps_done, 4, "steps 0..=3 completed before the failure: {all}");

    // Nothing lost: the last good envelope (step 3) is in history and still opens.
    assert_eq!(reveal(&l, wf, "step", true), "3");
    assert_eq!(reveal(&l, wf, "balance", true), expected_balance(100_000, 500, 3).to_string());
}
