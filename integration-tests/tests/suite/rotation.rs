//! TSK rotation end to end: a SecureStateLoop in flight across a rotation completes,
//! new envelopes carry the new key version, old ones open until their version is
//! retired, then are refused with FAILED_PRECONDITION (unknown_key_version).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use base64::Engine;
use enclavemesh_harness::gate::Gate;
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::temporal::{Temporal, expected_balance};
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, kms, wait_for};
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;

fn unix(p: &Path) -> String {
    format!("unix://{}", p.display())
}

async fn client(sock: &Path) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(enclavemesh_transport::channel(&unix(sock).parse().unwrap()).unwrap())
}

async fn key_versions(sock: &Path) -> Vec<u32> {
    client(sock).await.describe(DescribeRequest {}).await.unwrap().into_inner().key_versions
}

/// Starts an agent with extra flags (e.g. --retired-key-versions) and waits for its socket.
fn start_agent_with(mesh: &DevMesh, name: &str, kind: &str, pcr0: &str, extra: &[&str]) -> (Proc, PathBuf) {
    let (mut cmd, sock) = mesh.agent_command(name, kind, Some(pcr0));
    cmd.args(extra);
    let _ = std::fs::remove_file(&sock);
    let mut p = Proc::spawn(name, cmd, mesh.logs_dir());
    wait_for(&format!("{name} socket"), Duration::from_secs(60), || {
        p.assert_running();
        sock.exists()
    });
    (p, sock)
}

/// `scripts/setup-kms.sh --rotate`, through aws-sdk-kms: the admin makes a new data key
/// under the same KMS key without plaintext, with version N's encryption context, appended
/// to the TSK file as `v<N>:<base64>`.
async fn rotate(mesh: &DevMesh, version: u32) {
    let mut call = mesh
        .admin_kms()
        .await
        .generate_data_key_without_plaintext()
        .key_id(&mesh.tsk.key_id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256);
    for (k, v) in kms::tsk_context(version) {
        call = call.encryption_context(k, v);
    }
    let out = call.send().await.expect("GenerateDataKeyWithoutPlaintext");
    let blob = out.ciphertext_blob().expect("blob").as_ref().to_vec();
    let mut text = std::fs::read_to_string(&mesh.tsk_file).unwrap();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("v{version}:{}\n", base64::engine::general_purpose::STANDARD.encode(blob)));
    std::fs::write(&mesh.tsk_file, text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_workflow_in_flight_survives_rotation_and_retired_version_is_refused() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (mut a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (mut b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    assert_eq!(key_versions(&sock_b).await, vec![1]);

    // An envelope sealed under v1, kept aside for after the rotation.
    let old = client(&sock_a)
        .await
        .init(mesh.init_request("wf-probe", 1000, 100, "").await)
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert_eq!(old.key_version, 1);

    // A long workflow, started under v1 and watched by the CLI in the background.
    let temporal = std::sync::Arc::new(Temporal::start(mesh.logs_dir()));
    // The worker reaches B through a gate that holds step 3's call: the loop is then
    // certainly in flight (a local-activity loop of 30 steps would otherwise be over
    // before the rotation starts).
    let (gate, gate_b) = Gate::start(&mesh.logs_dir().join("gate-b.sock"), &unix(&sock_b));
    gate.hold(2);
    let _worker = temporal.start_worker(mesh.logs_dir(), "rot", &unix(&sock_a), &gate_b);
    let wf = "wf-rotation";
    let steps: u32 = 30;
    let t = temporal.clone();
    let owner_env = mesh.owner_env();
    let watcher = std::thread::spawn(move || {
        let s = steps.to_string();
        let args = [
            "trigger",
            "--workflow-id",
            wf,
            "--steps",
            &s,
            "--initial-balance",
            "100000",
            "--rate-bps",
            "500",
            "--no-reveal",
        ];
        t.cli_with_env("rot", &args, &owner_env)
    });

    // Once Agent B has sealed steps 1 and 2 under v1 and step 3's call waits at the
    // gate, stop B.
    gate.wait_held(Duration::from_secs(90));
    temporal.assert_running();
    b.kill();

    // Rotate, then restart the agents one at a time; each picks up [1, 2].
    rotate(&mesh, 2).await;
    a.terminate();
    let (a2, _) = start_agent_with(&mesh, "agent-a", "ledger-init", &pcr0, &[]);
    a = a2;
    assert_eq!(key_versions(&sock_a).await, vec![1, 2]);
    let (b2, _) = start_agent_with(&mesh, "agent-b", "interest", &pcr0, &[]);
    b = b2;
    assert_eq!(key_versions(&sock_b).await, vec![1, 2]);
    gate.release();

    // The in-flight workflow completes; later steps are sealed under v2.
    let (ok, lines, all) = watcher.join().unwrap();
    assert!(ok, "workflow across the rotation failed: {all}");
    let done = lines.iter().find(|v| v["event"] == "completed").unwrap_or_else(|| panic!("{all}"));
    assert_eq!(done["final_step"], u64::from(steps));
    let versions: Vec<u64> =
        done["summaries"].as_array().unwrap().iter().map(|s| s["key_version"].as_u64().unwrap()).collect();
    assert_eq!(versions.len(), steps as usize + 1, "{all}");
    assert_eq!(versions[0], 1, "Init sealed before the rotation: {versions:?}");
    assert_eq!(*versions.last().unwrap(), 2, "after the rotation new envelopes use v2: {versions:?}");
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "never back to v1: {versions:?}");
    let sock_b_s = unix(&sock_b);
    let (ok, lines, all) = temporal.cli_with_env(
        "rot",
        &["reveal", "--agent", &sock_b_s, "--workflow-id", wf, "--field", "balance"],
        &mesh.owner_env(),
    );
    assert!(ok, "{all}");
    let value = lines.iter().find(|v| v["event"] == "revealed").map(|v| v["value"].as_str().unwrap().to_string());
    assert_eq!(value, Some(expected_balance(100_000, 500, steps).to_string()));

    // The envelope sealed under v1 still opens on an agent holding [1, 2]; the result is v2.
    let processed = client(&sock_b)
        .await
        .process(ProcessRequest {
            workflow_id: "wf-probe".into(),
            expected_step: 0,
            state: Some(old.clone()),
            ..Default::default()
        })
        .await
        .expect("v1 envelope opens while v1 is active")
        .into_inner();
    let new = processed.state.unwrap();
    assert_eq!(new.key_version, 2);

    // Retire v1 on B: the v1 envelope is refused, precisely; v2 ones still open.
    b.terminate();
    let (b3, _) = start_agent_with(&mesh, "agent-b", "interest", &pcr0, &["--retired-key-versions", "1"]);
    b = b3;
    assert_eq!(key_versions(&sock_b).await, vec![2]);
    let err = client(&sock_b)
        .await
        .process(ProcessRequest {
            workflow_id: "wf-probe".into(),
            expected_step: 0,
            state: Some(old),
            ..Default::default()
        })
        .await
        .expect_err("v1 is retired");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(enclavemesh_proto::Refusal::of(&err), Some(enclavemesh_proto::Refusal::UnknownKeyVersion), "{err:?}");
    let again = client(&sock_b)
        .await
        .process(ProcessRequest {
            workflow_id: "wf-probe".into(),
            expected_step: 1,
            state: Some(new),
            ..Default::default()
        })
        .await
        .expect("v2 envelope opens after v1 is retired")
        .into_inner();
    assert_eq!(again.summary.unwrap().key_version, 2);

    // Retiring every version is refused at start, with a message that says so.
    let (mut cmd, _) = mesh.agent_command("agent-c", "interest", Some(&pcr0));
    cmd.args(["--retired-key-versions", "1,2"]);
    let mut c = Proc::spawn("agent-c", cmd, mesh.logs_dir());
    assert!(!c.wait_exit(Duration::from_secs(30)).success());
    assert!(c.logs().contains("retires every version"), "{}", c.logs());
    drop((a, b));
}
