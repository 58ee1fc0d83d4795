//! The trusted side end to end: emulator -> sidecar -> agents -> bridge, real processes.

use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::*;
use integration_tests::mesh::{contains_secret, random_pcr0};
use integration_tests::{DevMesh, MeshOptions, Proc, bin_path, kms, recorder, venv_bin};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

fn client(sock: &Path) -> AgentServiceClient<Channel> {
    let addr = format!("unix://{}", sock.display()).parse().unwrap();
    AgentServiceClient::new(enclavemesh_transport::channel(&addr).unwrap())
        .max_encoding_message_size(64 * 1024 * 1024)
        .max_decoding_message_size(64 * 1024 * 1024)
}

async fn init(c: &mut AgentServiceClient<Channel>, wf: &str) -> SealedEnvelope {
    c.init(InitRequest { workflow_id: wf.into(), initial_balance: 100_000, rate_bps: 500, kms_encrypted_note: vec![] })
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap()
}

fn grpcurl(port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new(venv_bin("grpcurl"))
        .arg("-plaintext")
        .arg("-max-time")
        .arg("20")
        .args(args.iter().take(args.len().saturating_sub(1)))
        .arg(format!("127.0.0.1:{port}"))
        .args(args.last())
        .output()
        .expect("grpcurl runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_through_bridge_lists_and_runs_init_then_process() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let (_bridge_a, port_a) = mesh.start_bridge(&format!("unix://{}", sock_a.display()));
    let (_bridge_b, port_b) = mesh.start_bridge(&format!("unix://{}", sock_b.display()));

    let (ok, list) = grpcurl(port_a, &["list"]);
    assert!(ok, "grpcurl list failed: {list}");
    assert!(list.contains("enclavemesh.v1.AgentService"), "{list}");
    assert!(list.contains("grpc.health.v1.Health"), "{list}");
    // The shared proto also describes the sidecar's KmsForwarder; the agent must not list it.
    assert!(!list.contains("KmsForwarder"), "agent reflection lists a service it does not serve: {list}");

    let (ok, health) = grpcurl(port_b, &["grpc.health.v1.Health/Check"]);
    assert!(ok && health.contains("SERVING"), "{health}");

    let (ok, init_out) = grpcurl(
        port_a,
        &["-d", r#"{"workflow_id":"wf-grpcurl","initial_balance":"100000","rate_bps":500}"#, "enclavemesh.v1.AgentService/Init"],
    );
    assert!(ok, "Init failed: {init_out}");
    let init: serde_json::Value = serde_json::from_str(&init_out).expect("Init JSON");
    let state = init["state"].clone();
    assert_eq!(state["workflowId"], "wf-grpcurl");
    assert_eq!(state["agent"], "agent-a");

    let req = serde_json::json!({"workflow_id": "wf-grpcurl", "expected_step": "0", "state": state}).to_string();
    let (ok, proc_out) = grpcurl(port_b, &["-d", &req, "enclavemesh.v1.AgentService/Process"]);
    assert!(ok, "Process failed: {proc_out}");
    let processed: serde_json::Value = serde_json::from_str(&proc_out).expect("Process JSON");
    assert_eq!(processed["summary"]["step"], "1");
    assert_eq!(processed["state"]["agent"], "agent-b");

    // The explicit plaintext exit: the balance after one 5% step.
    let req = serde_json::json!({"workflow_id": "wf-grpcurl", "expected_step": "1", "state": processed["state"], "field": "balance"}).to_string();
    let (ok, reveal) = grpcurl(port_b, &["-d", &req, "enclavemesh.v1.AgentService/Reveal"]);
    assert!(ok, "Reveal failed: {reveal}");
    assert!(reveal.contains("\"105000\""), "{reveal}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pcr0_not_in_policy_is_refused_naming_both_values_and_the_fix() {
    let allowed = random_pcr0();
    let other = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![allowed.clone()] }).await;
    let (cmd, _sock) = mesh.agent_command("agent-x", "interest", Some(&other));
    let mut agent = Proc::spawn("agent-x", cmd, mesh.logs_dir());
    let status = agent.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = agent.logs();
    assert!(log.contains(&other), "own PCR0 missing from: {log}");
    assert!(log.contains(&allowed), "allowed PCR0 missing from: {log}");
    assert!(log.contains("scripts/setup-kms-policy.sh"), "fix missing from: {log}");
    assert!(log.contains("AccessDenied"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_mode_enclave_gets_no_key() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone(), "0".repeat(96)] }).await;
    let (mut cmd, _sock) = mesh.agent_command("agent-debug", "interest", Some(&pcr0));
    cmd.arg("--sim-debug-mode");
    let mut agent = Proc::spawn("agent-debug", cmd, mesh.logs_dir());
    let status = agent.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = agent.logs();
    assert!(log.to_lowercase().contains("debug"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_envelopes_get_distinct_typed_errors_and_the_agent_stays_up() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (mut b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let mut a = client(&sock_a);
    let mut bc = client(&sock_b);
    let good = init(&mut a, "wf-bad").await;

    let call = |env: SealedEnvelope, wf: &str, step: u64| {
        let mut bc = bc.clone();
        let wf = wf.to_string();
        async move {
            bc.process(ProcessRequest { workflow_id: wf, expected_step: step, state: Some(env) }).await.map(|r| r.into_inner())
        }
    };

    let mut tampered = good.clone();
    tampered.ciphertext[3] ^= 1;
    let e = call(tampered, "wf-bad", 0).await.unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");

    let mut header_edit = good.clone();
    header_edit.agent = "mallory".into();
    let e = call(header_edit, "wf-bad", 0).await.unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");

    let mut truncated = good.clone();
    truncated.ciphertext.truncate(5);
    let e = call(truncated, "wf-bad", 0).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    let e = call(good.clone(), "wf-other", 0).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("wf-bad") && e.message().contains("wf-other"), "{e:?}");

    let e = call(good.clone(), "wf-bad", 3).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    let mut oversized = good.clone();
    oversized.ciphertext = vec![0u8; 2 * 1024 * 1024];
    let e = call(oversized, "wf-bad", 0).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    let mut huge = good.clone();
    huge.ciphertext = vec![0u8; 8 * 1024 * 1024];
    let e = call(huge, "wf-bad", 0).await.unwrap_err();
    assert!(matches!(e.code(), Code::ResourceExhausted | Code::OutOfRange), "{e:?}");

    let e = call(SealedEnvelope::default(), "wf-bad", 0).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Still serving, and the good envelope still processes.
    b.assert_running();
    let ok = call(good, "wf-bad", 0).await.expect("good envelope processes");
    assert_eq!(ok.summary.unwrap().step, 1);
    let _ = bc.describe(DescribeRequest {}).await.expect("describe");
}

#[tokio::test(flavor = "multi_thread")]
async fn tsk_and_note_never_cross_the_sidecar_or_reach_the_audit_log() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;

    // sidecar2 talks to the emulator through a recorder; the agent talks to sidecar2 through another.
    let kms_port = mesh.kms_endpoint.rsplit(':').next().unwrap().to_string();
    let (kms_rec_addr, kms_rec) = recorder::start(
        &"tcp://127.0.0.1:0".parse().unwrap(),
        format!("tcp://127.0.0.1:{kms_port}").parse().unwrap(),
    )
    .await;
    let sidecar2_sock = mesh.logs_dir().join("sidecar2.sock");
    let mut cmd = Command::new(bin_path("kms-sidecar"));
    cmd.arg("--listen")
        .arg(format!("unix://{}", sidecar2_sock.display()))
        .arg("--kms-endpoint")
        .arg(format!("http://{}", kms_rec_addr.to_string().trim_start_matches("tcp://")))
        .env("AWS_ACCESS_KEY_ID", "devkey")
        .env("AWS_SECRET_ACCESS_KEY", "devsecret")
        .env("AWS_REGION", "us-east-1");
    let _sidecar2 = Proc::spawn("kms-sidecar2", cmd, mesh.logs_dir());
    integration_tests::wait_for_path(&sidecar2_sock, Duration::from_secs(20));
    let (agent_rec_addr, agent_rec) = recorder::start(
        &format!("unix://{}", mesh.logs_dir().join("rec.sock").display()).parse().unwrap(),
        format!("unix://{}", sidecar2_sock.display()).parse().unwrap(),
    )
    .await;

    let (cmd, sock) = mesh.agent_command_via("agent-a", "ledger-init", Some(&pcr0), &agent_rec_addr.to_string());
    let mut a_proc = Proc::spawn("agent-a", cmd, mesh.logs_dir());
    integration_tests::proc::wait_for("agent-a", Duration::from_secs(60), || {
        a_proc.assert_running();
        sock.exists()
    });

    let marker = format!("MARKER-{}", random_pcr0());
    let kmsc = kms::client(&mesh.kms_endpoint).await;
    let note_blob = kms::encrypt(&kmsc, &mesh.tsk.key_id, marker.as_bytes()).await.unwrap();
    let mut a = client(&sock);
    let env = a
        .init(InitRequest { workflow_id: "wf-leak".into(), initial_balance: 5, rate_bps: 1, kms_encrypted_note: note_blob })
        .await
        .expect("Init with a KMS-encrypted note")
        .into_inner()
        .state
        .unwrap();

    // Positive control: the TSK we look for is the one that sealed the state, and the
    // marker is inside it — so the scans below are not vacuous.
    let mut ring = enclavemesh_sealing::KeyRing::new(env.key_id.clone());
    ring.insert(env.key_version, enclavemesh_sealing::Tsk::from_slice(&mesh.tsk.plaintext).unwrap()).unwrap();
    let expect = enclavemesh_sealing::Expectation { workflow_id: "wf-leak".into(), step: 0 };
    let plain = enclavemesh_sealing::open(&ring, &env, &expect, &enclavemesh_sealing::Limits::default()).unwrap();
    assert!(contains_secret(&plain, marker.as_bytes()));
    assert!(!agent_rec.bytes().is_empty() && !kms_rec.bytes().is_empty(), "recorders saw traffic");

    let audit = std::fs::read(mesh.audit_log()).unwrap();
    assert!(!audit.is_empty());
    let env_bytes = prost::Message::encode_to_vec(&env);
    for (what, bytes) in [
        ("agent<->sidecar traffic", agent_rec.bytes()),
        ("sidecar<->KMS traffic", kms_rec.bytes()),
        ("emulator audit log", audit),
        ("process logs", mesh.all_logs().into_bytes()),
        ("the sealed envelope", env_bytes),
    ] {
        assert!(!contains_secret(&bytes, &mesh.tsk.plaintext), "TSK found in {what}");
        assert!(!contains_secret(&bytes, marker.as_bytes()), "note marker found in {what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_waits_for_a_late_sidecar_then_serves() {
    let pcr0 = random_pcr0();
    let mut mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    if let Some(mut s) = mesh.sidecar.take() {
        s.kill();
    }
    let sidecar_sock = mesh.logs_dir().join("sidecar.sock");
    let _ = std::fs::remove_file(&sidecar_sock);
    let (cmd, sock) = mesh.agent_command("agent-late", "interest", Some(&pcr0));
    let mut agent = Proc::spawn("agent-late", cmd, mesh.logs_dir());
    // Wait for the agent to actually hit the missing sidecar (under load, process start
    // and RSA key generation can take seconds), then bring the sidecar up.
    integration_tests::proc::wait_for("agent to retry the missing sidecar", Duration::from_secs(30), || {
        agent.assert_running();
        agent.logs().contains("retrying")
    });
    assert!(!sock.exists(), "agent must not serve before it has the TSK");
    mesh.start_sidecar();
    integration_tests::proc::wait_for("late agent", Duration::from_secs(30), || {
        agent.assert_running();
        sock.exists()
    });
    assert!(agent.logs().contains("TSK version released"), "{}", agent.logs());
}
