//! The trusted side end to end: emulator -> sidecar -> agents -> bridge, real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use base64::Engine;
use enclavemesh_harness::mesh::{contains_rsa_private_key, contains_secret, random_pcr0};
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, recorder, venv_bin};
use enclavemesh_proto::Refusal;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::*;
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

async fn init(mesh: &DevMesh, c: &mut AgentServiceClient<Channel>, wf: &str) -> SealedEnvelope {
    c.init(mesh.init_request(wf, 100_000, 500, "").await).await.unwrap().into_inner().state.unwrap()
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

    // Init takes the data owner's sealed input (KMS ciphertext, as JSON bytes: base64).
    let sealed = mesh.sealed_input("wf-grpcurl", 100_000, 500, "a note").await;
    let Some(sealed_input::Sealed::KmsCiphertext(blob)) = sealed.sealed else { panic!("a small input is one Encrypt") };
    let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    let req = serde_json::json!({"workflow_id": "wf-grpcurl", "input": {"kms_ciphertext": b64}}).to_string();
    let (ok, init_out) = grpcurl(port_a, &["-d", &req, "enclavemesh.v1.AgentService/Init"]);
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

    // Reveal through the bridge: anyone who reaches it gets the balance sealed to the
    // owner key bound in the state, never the value.
    let req = serde_json::json!({
        "workflow_id": "wf-grpcurl", "expected_step": "1", "state": processed["state"], "field": "REVEAL_FIELD_BALANCE"
    })
    .to_string();
    let (ok, reveal) = grpcurl(port_b, &["-d", &req, "enclavemesh.v1.AgentService/Reveal"]);
    assert!(ok, "Reveal failed: {reveal}");
    assert!(!reveal.contains("105000"), "Reveal answered in clear: {reveal}");
    let reveal: serde_json::Value = serde_json::from_str(&reveal).expect("Reveal JSON");
    assert_eq!(reveal["field"], "REVEAL_FIELD_BALANCE");
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
    let result = SealedResult {
        encapsulated_key: b64(&reveal["result"]["encapsulatedKey"]),
        ciphertext: b64(&reveal["result"]["ciphertext"]),
    };
    assert!(!contains_secret(&result.ciphertext, b"105000"));
    // The owner's key opens it, on the client; another key, or another binding, does not.
    let open = |key: &enclavemesh_owner::OwnerKey, wf: &str, step: u64, field: RevealField| {
        enclavemesh_owner::open_result(key, wf, step, field.as_str_name(), &result).map(|v| v.to_string())
    };
    assert_eq!(open(&mesh.owner_key, "wf-grpcurl", 1, RevealField::Balance).unwrap(), "105000");
    let stranger = enclavemesh_owner::OwnerKey::generate();
    assert!(open(&stranger, "wf-grpcurl", 1, RevealField::Balance).is_err(), "a different key opens the result");
    assert!(open(&mesh.owner_key, "wf-other", 1, RevealField::Balance).is_err(), "bound to the workflow");
    assert!(open(&mesh.owner_key, "wf-grpcurl", 0, RevealField::Balance).is_err(), "bound to the step");
    assert!(open(&mesh.owner_key, "wf-grpcurl", 1, RevealField::RateBps).is_err(), "bound to the field");

    // A refusal shows its kind, decoded from the status details through reflection.
    let req = serde_json::json!({"workflow_id": "wf-grpcurl", "expected_step": "7", "state": state}).to_string();
    let (ok, refused) = grpcurl(port_b, &["-d", &req, "enclavemesh.v1.AgentService/Process"]);
    assert!(!ok, "a replayed envelope must be refused: {refused}");
    assert!(refused.contains("PermissionDenied") && refused.contains("REFUSAL_ENVELOPE_REPLAYED"), "{refused}");
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
    let good = init(&mesh, &mut a, "wf-bad").await;

    let call = |env: SealedEnvelope, wf: &str, step: u64| {
        let mut bc = bc.clone();
        let wf = wf.to_string();
        async move {
            bc.process(ProcessRequest { workflow_id: wf, expected_step: step, state: Some(env), ..Default::default() })
                .await
                .map(|r| r.into_inner())
        }
    };

    let mut tampered = good.clone();
    tampered.ciphertext[3] ^= 1;
    let e = call(tampered, "wf-bad", 0).await.unwrap_err();
    assert_refused(&e, Refusal::EnvelopeTampered);

    let mut header_edit = good.clone();
    header_edit.agent = "mallory".into();
    let e = call(header_edit, "wf-bad", 0).await.unwrap_err();
    assert_refused(&e, Refusal::EnvelopeTampered);

    let mut truncated = good.clone();
    truncated.ciphertext.truncate(5);
    let e = call(truncated, "wf-bad", 0).await.unwrap_err();
    assert_refused(&e, Refusal::EnvelopeMalformed);

    let e = call(good.clone(), "wf-other", 0).await.unwrap_err();
    assert_refused(&e, Refusal::EnvelopeReplayed);
    assert!(e.message().contains("wf-bad") && e.message().contains("wf-other"), "{e:?}");

    let e = call(good.clone(), "wf-bad", 3).await.unwrap_err();
    assert_refused(&e, Refusal::EnvelopeReplayed);

    let mut oversized = good.clone();
    oversized.ciphertext = vec![0u8; 2 * 1024 * 1024];
    let e = call(oversized, "wf-bad", 0).await.unwrap_err();
    assert_refused(&e, Refusal::EnvelopeTooLarge);

    let mut huge = good.clone();
    huge.ciphertext = vec![0u8; 8 * 1024 * 1024];
    let e = call(huge, "wf-bad", 0).await.unwrap_err();
    assert!(matches!(e.code(), Code::ResourceExhausted | Code::OutOfRange), "{e:?}");

    let e = call(SealedEnvelope::default(), "wf-bad", 0).await.unwrap_err();
    assert_refused(&e, Refusal::UnsupportedFormat);
    let e = call(good.clone(), "", 0).await.unwrap_err();
    assert_refused(&e, Refusal::InvalidRequest);
    assert!(e.message().contains("workflow_id is required"), "{e:?}");

    // Wrong role and bad input are told apart from envelope trouble.
    let e = bc.clone().init(mesh.init_request("wf-role", 1, 1, "").await).await.unwrap_err();
    assert_refused(&e, Refusal::WrongRole);
    let e = a.init(mesh.init_request("wf-neg", -5, 1, "").await).await.unwrap_err();
    assert_refused(&e, Refusal::InvalidInput);
    let mut no_id = mesh.init_request("wf-x", 1, 1, "").await;
    no_id.workflow_id = String::new();
    let e = a.init(no_id).await.unwrap_err();
    assert_refused(&e, Refusal::InvalidRequest);

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
    let (_sidecar2, sidecar2_addr, kms_rec) = mesh.start_recorded_sidecar().await;
    let (agent_rec_addr, agent_rec) = recorder::start(
        &format!("unix://{}", mesh.logs_dir().join("rec.sock").display()).parse().unwrap(),
        sidecar2_addr.parse().unwrap(),
    )
    .await;

    let (cmd, sock) = mesh.agent_command_via("agent-a", "ledger-init", Some(&pcr0), &agent_rec_addr.to_string());
    let mut a_proc = Proc::spawn("agent-a", cmd, mesh.logs_dir());
    enclavemesh_harness::proc::wait_for("agent-a", Duration::from_secs(60), || {
        a_proc.assert_running();
        sock.exists()
    });

    let marker = format!("MARKER-{}", random_pcr0());
    let mut a = client(&sock);
    let env = a
        .init(mesh.init_request("wf-leak", 5, 1, &marker).await)
        .await
        .expect("Init with the owner's sealed input")
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

    // What the parent relays to KMS is TLS the enclave terminates: every byte of every
    // connection, both ways, is a TLS record, and the requests are application data.
    let streams = kms_rec.streams();
    assert!(streams.iter().any(|s| !s.bytes.is_empty()), "the recorder saw the KMS connections");
    for s in &streams {
        let records = recorder::tls_records(&s.bytes).unwrap_or_else(|e| panic!("parent-side KMS traffic: {e}"));
        if s.from_client && !s.bytes.is_empty() {
            assert_eq!(records.first().map(|r| r.content_type), Some(22), "starts with a ClientHello");
            assert!(records.iter().any(|r| r.content_type == 23), "requests travel as application data");
        }
    }
    // Positive control: the same recorder on the plaintext gRPC link to the sidecar reads
    // what crosses it (the instance role's access key id in GetCredentials).
    let agent_side = agent_rec.bytes();
    let access_key = mesh.principals.instance.access_key_id.as_bytes();
    assert!(contains_secret(&agent_side, access_key), "positive control: the credentials are readable");
    let everything = kms_rec.bytes();
    for visible in [&b"POST"[..], b"X-Amz-Target", b"TrentService.Decrypt", b"AttestationDocument", b"Recipient"] {
        assert!(!contains_secret(&everything, visible), "{} readable on the parent", String::from_utf8_lossy(visible));
    }

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
        assert!(!contains_rsa_private_key(&bytes), "an RSA private key (the attestation key?) in {what}");
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
    enclavemesh_harness::proc::wait_for("agent to retry the missing sidecar", Duration::from_secs(30), || {
        agent.assert_running();
        agent.logs().contains("retrying")
    });
    assert!(!sock.exists(), "agent must not serve before it has the TSK");
    mesh.start_sidecar();
    enclavemesh_harness::proc::wait_for("late agent", Duration::from_secs(30), || {
        agent.assert_running();
        sock.exists()
    });
    assert!(agent.logs().contains("TSK version released"), "{}", agent.logs());
}

/// `e` carries `kind` in its details, and the gRPC code that goes with it.
fn assert_refused(e: &tonic::Status, kind: Refusal) {
    assert_eq!(Refusal::of(e), Some(kind), "{e:?}");
    assert_eq!(e.code(), kind.code(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_input_key_refuses_the_input_as_kms_key_unusable_not_as_an_envelope_problem() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let mut a = client(&sock_a);
    let note = mesh.init_request("wf-disabled", 1, 1, "a private note").await;
    let init = |a: &mut AgentServiceClient<Channel>, req: InitRequest| {
        let mut a = a.clone();
        async move { a.init(req).await }
    };

    // The agent holds its TSK already; only the input's Decrypt meets the disabled key.
    let admin = mesh.admin_kms().await;
    admin.disable_key().key_id(&mesh.tsk.input_key_arn).send().await.unwrap();
    let e = init(&mut a, note.clone()).await.unwrap_err();
    assert_refused(&e, Refusal::KmsKeyUnusable);
    assert!(e.message().contains("DisabledException"), "{e:?}");
    admin.enable_key().key_id(&mesh.tsk.input_key_arn).send().await.unwrap();
    init(&mut a, note).await.expect("Init with the input once the key is enabled again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulated_agent_reports_a_built_images_measurements_and_refuses_a_bad_file() {
    // Dev mode measures the real image: the simulated NSM reports build/enclave.eif.json's PCRs.
    let (pcr0, pcr1, pcr2) = (random_pcr0(), random_pcr0(), random_pcr0());
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let json = serde_json::json!({"Measurements": {
        "HashAlgorithm": "Sha384 { ... }", "PCR0": pcr0, "PCR1": pcr1, "PCR2": pcr2}});
    let file = mesh.logs_dir().join("enclave.eif.json");
    std::fs::write(&file, json.to_string()).unwrap();
    let (mut cmd, sock) = mesh.agent_command("agent-eif", "interest", None);
    cmd.arg("--sim-measurements").arg(&file);
    let mut agent = Proc::spawn("agent-eif", cmd, mesh.logs_dir());
    enclavemesh_harness::proc::wait_for("agent-eif", Duration::from_secs(60), || {
        agent.assert_running();
        sock.exists()
    });
    let d = client(&sock).describe(DescribeRequest {}).await.unwrap().into_inner();
    assert_eq!(d.pcr0_hex, pcr0, "the agent attests the built image's PCR0");
    let doc = client(&sock)
        .attest(AttestRequest { nonce: vec![1; 16], user_data: vec![] })
        .await
        .unwrap()
        .into_inner()
        .attestation_document;
    let doc = enclavemesh_attestation::AttestationDocument::parse_unverified(&doc).unwrap();
    assert_eq!((doc.pcr_hex(1), doc.pcr_hex(2)), (Some(pcr1), Some(pcr2)));

    // A file that is not nitro-cli's shape stops the agent, naming the flag and the fix.
    std::fs::write(&file, r#"{"Measurements": {"PCR0": "abc"}}"#).unwrap();
    let (mut cmd, _) = mesh.agent_command("agent-bad", "interest", None);
    cmd.arg("--sim-measurements").arg(&file);
    let mut bad = Proc::spawn("agent-bad", cmd, mesh.logs_dir());
    assert!(!bad.wait_exit(Duration::from_secs(30)).success());
    let log = bad.logs();
    assert!(log.contains("--sim-measurements") && log.contains("enclave-image/build.sh"), "{log}");
}
