//! Fault tests with real processes: a dependency goes away (sidecar, KMS emulator,
//! Temporal, bridge) and comes back. In each, the agent either recovers or stops with a
//! clear error, and a workflow caught in the middle completes with every step exactly
//! once (checked through Reveal `history`) — it is never lost and never doubled.
//! (An agent killed mid-step is in secure_state_loop.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use enclavemesh_harness::loopkit::{self, AgentBRoute, Loop, unix};
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, free_port, venv_bin, wait_for};
use enclavemesh_proto::v1::DescribeRequest;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use std::process::Command;
use std::time::{Duration, Instant};

/// `grpcurl -plaintext 127.0.0.1:PORT VERB…` (e.g. `list`).
fn grpcurl(port: u16, verb: &[&str]) -> (bool, String) {
    let out = Command::new(venv_bin("grpcurl"))
        .args(["-plaintext", "-max-time", "10"])
        .arg(format!("127.0.0.1:{port}"))
        .args(verb)
        .output()
        .expect("grpcurl runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn grpcurl_call(port: u16, method: &str) -> (bool, String) {
    let out = Command::new(venv_bin("grpcurl"))
        .args(["-plaintext", "-max-time", "10", "-d", "{}"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(method)
        .output()
        .expect("grpcurl runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

// ---------------------------------------------------------------- sidecar down

#[tokio::test(flavor = "multi_thread")]
async fn agent_gives_up_with_a_clear_error_after_bootstrap_timeout_when_the_sidecar_stays_down() {
    let pcr0 = random_pcr0();
    let mut mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    if let Some(mut s) = mesh.sidecar.take() {
        s.kill();
    }
    let _ = std::fs::remove_file(mesh.logs_dir().join("sidecar.sock"));
    let timeout = 4;
    let sidecar = mesh.sidecar_addr.clone();
    let (cmd, sock) = mesh.agent_command_with("agent-alone", "interest", Some(&pcr0), &sidecar, timeout);
    let started = Instant::now();
    let mut agent = Proc::spawn("agent-alone", cmd, mesh.logs_dir());
    let status = agent.wait_exit(Duration::from_secs(timeout + 20));
    let took = started.elapsed();
    let log = agent.logs();
    assert!(!status.success(), "must exit non-zero: {log}");
    assert!(!sock.exists(), "never served without the TSK");
    // It backs off for the whole window, not less, and not much more.
    assert!(
        took >= Duration::from_secs(timeout),
        "gave up after {took:?}, before --bootstrap-timeout-secs {timeout}: {log}"
    );
    assert!(took < Duration::from_secs(timeout + 10), "took {took:?}: {log}");
    assert!(log.contains("retrying"), "backs off first: {log}");
    // The error names what was unreachable, for how long, and how to fix it.
    let secs: u64 = log
        .split("gave up after ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'gave up after Ns': {log}"));
    assert!(secs >= timeout, "reports the whole window: {log}");
    assert!(log.contains("stayed unreachable") && log.contains(&sidecar), "{log}");
    assert!(log.contains("cannot connect to") && log.contains("sidecar.sock"), "last cause shown: {log}");
    assert!(log.contains("Start the sidecar"), "fix shown: {log}");
}

// ---------------------------------------------------------------- KMS down

#[tokio::test(flavor = "multi_thread")]
async fn agent_bootstrap_retries_while_the_kms_emulator_is_down_and_serves_when_it_returns() {
    let pcr0 = random_pcr0();
    let mut mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    mesh.stop_emulator();
    let (cmd, sock) = mesh.agent_command("agent-b", "interest", Some(&pcr0));
    let mut agent = Proc::spawn("agent-b", cmd, mesh.logs_dir());
    wait_for("agent to retry", Duration::from_secs(15), || {
        agent.assert_running();
        agent.logs().contains("retrying")
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.assert_running();
    assert!(!sock.exists(), "must not serve before it has the TSK");
    // The sidecar refuses the tunnel with UNAVAILABLE (retried), naming where it could not reach.
    let log = agent.logs();
    assert!(log.contains("currently unavailable"), "{log}");
    let target = format!("cannot reach 127.0.0.1:{}", mesh.kms_port());
    assert!(log.contains(&target) && log.contains("kms.us-east-1.amazonaws.com:443"), "{log}");

    mesh.start_emulator();
    wait_for("agent to serve once KMS is back", Duration::from_secs(30), || {
        agent.assert_running();
        sock.exists()
    });
    let mut c = AgentServiceClient::new(enclavemesh_transport::channel(&unix(&sock).parse().unwrap()).unwrap());
    let d = c.describe(DescribeRequest {}).await.expect("describe").into_inner();
    assert_eq!(d.key_versions, vec![1], "{d:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_init_with_a_kms_note_while_the_emulator_is_down_retries_and_completes_when_it_returns() {
    let (mut l, _) = Loop::start(AgentBRoute::Direct).await;
    let marker = format!("NOTE-{}", &random_pcr0()[..16]);

    let wf = "wf-kms-down";
    let steps = 3;
    // The owner seals on its own machine while KMS is up; then the enclaves' KMS goes down.
    let sealed = l.mesh.logs_dir().join("sealed-input.b64");
    let sealed_b64 = l.mesh.sealed_input_b64(wf, loopkit::INITIAL_BALANCE, loopkit::RATE_BPS, &marker).await;
    std::fs::write(&sealed, sealed_b64).unwrap();
    l.mesh.stop_emulator();
    let (ok, _, all) = l.trigger(wf, steps, &["--no-wait", "--sealed-input", sealed.to_str().unwrap()]);
    assert!(ok, "{all}");
    // InitState fails retryably (kms_unavailable from the sidecar, through the agent)...
    let worker_log = || std::fs::read_to_string(&l.worker.log).unwrap_or_default();
    wait_for("a retried InitState", Duration::from_secs(60), || worker_log().contains("kms_unavailable"));
    let wl = worker_log();
    assert!(wl.contains("owner's input") && wl.contains("cannot reach"), "the reason reaches the worker: {wl}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // ...and the workflow waits rather than failing.
    assert!(!l.closed(wf), "workflow must not close while KMS is down:\n{}", l.temporal.history_json(wf));

    l.mesh.start_emulator();
    l.assert_completed_exactly_once(wf, steps);
    assert_eq!(l.reveal(wf, "secret_note"), marker, "the note made it in once KMS was back");
    l.worker.assert_running();
}

// ---------------------------------------------------------------- Temporal restarted

#[tokio::test(flavor = "multi_thread")]
async fn slow_temporal_restarted_mid_workflow_worker_reconnects_and_no_step_is_lost_or_doubled() {
    let (mut l, _) = Loop::start(AgentBRoute::Direct).await;
    let wf = "wf-temporal-restart";
    let steps = 40;
    l.start_held_at(wf, steps, 3);
    assert!(!l.closed(wf), "the restart must hit a running workflow");
    l.temporal.stop();
    // Step 4 completes in the worker while Temporal is down: its result cannot be
    // recorded, so it must be made again (exactly once in the final state).
    l.gate.release();
    // A real outage, not just a blip: the worker's polls and completions fail meanwhile.
    // (FAULTS_TEMPORAL_OUTAGE_SECS=120 checks a long one by hand.)
    let outage = std::env::var("FAULTS_TEMPORAL_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    tokio::time::sleep(Duration::from_secs(outage)).await;
    l.worker.assert_running();
    l.temporal.start_again();
    l.assert_completed_exactly_once(wf, steps);
    l.worker.assert_running();

    // The same worker keeps serving new runs after the outage.
    let (ok, lines, all) = l.trigger("wf-after-restart", 2, &[]);
    assert!(ok, "{all}");
    assert!(lines.iter().any(|v| v["event"] == "completed"), "{all}");
    l.assert_completed_exactly_once("wf-after-restart", 2);
}

// ---------------------------------------------------------------- bridge restarted

#[tokio::test(flavor = "multi_thread")]
async fn slow_bridge_restarted_mid_workflow_clients_recover_and_no_step_is_lost_or_doubled() {
    let port = free_port();
    let (mut l, bridge) = Loop::start(AgentBRoute::Bridge(port)).await;
    let mut bridge = bridge.expect("bridge");
    let (ok, list) = grpcurl(port, &["list"]);
    assert!(ok && list.contains("enclavemesh.v1.AgentService"), "{list}");

    // A long-lived gRPC client through the bridge, like an ops tool would keep.
    let addr = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    let mut client = AgentServiceClient::new(enclavemesh_transport::channel(&addr).unwrap());
    client.describe(DescribeRequest {}).await.expect("describe through the bridge");

    let wf = "wf-bridge-restart";
    let steps = 30;
    l.start_held_at(wf, steps, 3);
    assert!(!l.closed(wf), "the restart must hit a running workflow");
    bridge.kill();
    // The held call now meets a dead bridge: UNAVAILABLE, retried until it is back.
    l.gate.release();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // While it is down, callers get a clear transport error, not a hang.
    let (ok, down) = grpcurl(port, &["list"]);
    assert!(!ok, "{down}");
    let e = client.describe(DescribeRequest {}).await.expect_err("bridge is down");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");

    let _bridge2 = l.mesh.start_bridge_on(&unix(&l.sock_b), port);
    l.assert_completed_exactly_once(wf, steps);
    // grpcurl and the old client both work again (the client reconnects on its own).
    let (ok, list) = grpcurl(port, &["list"]);
    assert!(ok && list.contains("enclavemesh.v1.AgentService"), "{list}");
    let (ok, health) = grpcurl_call(port, "grpc.health.v1.Health/Check");
    assert!(ok && health.contains("SERVING"), "{health}");
    let start = Instant::now();
    loop {
        match client.describe(DescribeRequest {}).await {
            Ok(d) => {
                assert_eq!(d.into_inner().agent, "agent-b");
                break;
            }
            Err(e) => assert!(start.elapsed() < Duration::from_secs(10), "client did not recover: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    l.worker.assert_running();
}

// ---------------------------------------------------------------- Agent B and the worker killed

#[tokio::test(flavor = "multi_thread")]
async fn slow_agent_b_killed_mid_loop_is_retried_and_no_step_is_lost_or_doubled() {
    let (mut l, _) = Loop::start(AgentBRoute::Direct).await;
    let wf = "wf-kill-b";
    let steps = 6;
    l.start_held_at(wf, steps, 2);
    l.b.kill();
    // The held call (step 3) meets a dead agent: UNAVAILABLE, retried with backoff.
    l.gate.release();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!l.closed(wf), "the loop must wait for Agent B, not fail");
    let _ = std::fs::remove_file(&l.sock_b);
    let (b2, _) = l.mesh.start_agent("agent-b", "interest", Some(&l.pcr0));
    l.b = b2;
    l.assert_completed_exactly_once(wf, steps);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_worker_killed_mid_loop_another_worker_finishes_and_no_step_is_lost_or_doubled() {
    let (mut l, _) = Loop::start(AgentBRoute::Direct).await;
    let wf = "wf-kill-worker";
    let steps = 8;
    l.start_held_at(wf, steps, 4);
    let before = l.gate.forwarded();
    // The worker dies while Agent B holds step 5's request; Agent B then answers a dead
    // caller: it made step 5, and nobody recorded it.
    l.crash_and_replace_worker();
    l.gate.release();
    l.assert_completed_exactly_once(wf, steps);
    // The new worker made the unrecorded steps again (at least step 5), from the last
    // envelope history holds: the final state still has each step once.
    assert!(l.gate.forwarded() > before, "the replacement worker called the agents");
    l.worker.assert_running();
}
