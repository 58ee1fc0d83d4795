//! The key release, attacked from the parent: every way a hostile host could hand the
//! enclave a TSK it knows, or get one out of KMS, and what stops it.
//!
//! - a sidecar that sends the enclave's KMS tunnel to a KMS of its own, or answers it
//!   itself: TLS ends in the enclave, so the answer does not verify;
//! - a TSK the parent makes itself: the key policy refuses every plaintext-returning
//!   call that has no attested Recipient, to every principal;
//! - a TSK under the parent's own key in its own account (authentic TLS, a KMS that
//!   cooperates): the enclave takes TSKs from its pinned key only;
//! - a blob the data owner made, planted as a TSK version: not under the pinned key;
//! - a locked policy: images by PCR8, and nobody may change it, admins included.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::time::Duration;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeyPairSpec, DataKeySpec, GrantOperation};
use base64::Engine;
use enclavemesh_harness::kms::{PolicyMode, input_context, tsk_context};
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::rogue::RogueKms;
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, wait_for};
use enclavemesh_proto::v1::kms_forwarder_server::{KmsForwarder, KmsForwarderServer};
use enclavemesh_proto::v1::{
    AgentConfigRequest, AgentConfigResponse, CredentialsRequest, CredentialsResponse, TunnelFrame, tunnel_frame,
};
use tokio_stream::Stream;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Runs an agent that must not get a key: it exits non-zero within the bootstrap window
/// and never serves. Returns its log.
fn assert_agent_gets_no_key(mesh: &DevMesh, name: &str, cmd: Command, sock: &Path) -> String {
    let mut agent = Proc::spawn(name, cmd, mesh.logs_dir());
    let status = agent.wait_exit(Duration::from_secs(60));
    let log = agent.logs();
    assert!(!status.success(), "{name} must exit non-zero: {log}");
    assert!(!sock.exists(), "{name} served without a key it can trust: {log}");
    assert!(!log.contains("serving AgentService"), "{log}");
    log
}

/// The AWS error type of a failed SDK call (`AccessDeniedException`, ...).
fn kms_code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.code().unwrap_or("?").to_string(),
    }
}

fn write_tsk_file(path: &Path, lines: &[(u32, &[u8])]) -> PathBuf {
    let text: String = lines.iter().map(|(v, blob)| format!("v{v}:{}\n", B64.encode(blob))).collect();
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// Replaces the value of `--flag` in an agent command line.
fn with_arg(cmd: Command, flag: &str, value: &str) -> Command {
    let mut args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let i = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} not in {args:?}"));
    args[i + 1] = value.to_string();
    let mut out = Command::new(cmd.get_program());
    out.args(args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => out.env(k, v),
            None => out.env_remove(k),
        };
    }
    out
}

// ------------------------------------------------------------- the tunnel's far end

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_that_tunnels_to_a_kms_of_its_own_leaves_the_agent_without_a_key() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    // A KMS the parent runs, with a certificate from a CA of its own.
    let rogue = RogueKms::start(&mesh, "rogue-kms", "999988887777", false);
    let sock = mesh.logs_dir().join("hostile-sidecar.sock");
    let listen = format!("unix://{}", sock.display());
    let mut sidecar =
        Proc::spawn("hostile-sidecar", mesh.sidecar_command(&listen, &rogue.connect_to()), mesh.logs_dir());
    wait_for("hostile sidecar", Duration::from_secs(20), || {
        sidecar.assert_running();
        sock.exists()
    });

    let (cmd, agent_sock) = mesh.agent_command_with("agent-hostile", "interest", Some(&pcr0), &listen, 10);
    let log = assert_agent_gets_no_key(&mesh, "agent-hostile", cmd, &agent_sock);
    assert!(log.contains("TLS to KMS (kms.us-east-1.amazonaws.com) failed"), "names TLS as the cause: {log}");
    // (Its CA even has the dev CA's names: only the signature tells them apart.)
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert!(log.contains("--connect-to"), "names where to look: {log}");
    // It gave up at once: a KMS that is not KMS does not become KMS on retry.
    assert!(!log.contains("retrying"), "{log}");
}

/// A KmsForwarder that answers the enclave's key release itself: any credentials, and a
/// tunnel whose "KMS" replies at once with a Decrypt answer of the parent's making.
struct AnsweringSidecar;

type FrameStream = Pin<Box<dyn Stream<Item = Result<TunnelFrame, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl KmsForwarder for AnsweringSidecar {
    async fn get_agent_config(
        &self,
        _: tonic::Request<AgentConfigRequest>,
    ) -> Result<tonic::Response<AgentConfigResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("the agent has its configuration on its command line"))
    }
    async fn get_credentials(
        &self,
        _: tonic::Request<CredentialsRequest>,
    ) -> Result<tonic::Response<CredentialsResponse>, tonic::Status> {
        Ok(tonic::Response::new(CredentialsResponse {
            access_key_id: "ASIAPARENTPARENTPARE".into(),
            secret_access_key: "parent-made".into(),
            session_token: "parent".into(),
            expires_unix_secs: 0,
        }))
    }
    type TunnelStream = FrameStream;
    async fn tunnel(
        &self,
        _: tonic::Request<tonic::Streaming<TunnelFrame>>,
    ) -> Result<tonic::Response<FrameStream>, tonic::Status> {
        let forged = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: 90\r\n\r\n\
             {{\"KeyId\":\"parent\",\"CiphertextForRecipient\":\"{}\"}}",
            B64.encode([7u8; 32])
        );
        let frame = TunnelFrame { frame: Some(tunnel_frame::Frame::Data(forged.into_bytes())) };
        let stream = tokio_stream::iter(vec![Ok(frame)]).chain(tokio_stream::pending());
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

use tokio_stream::StreamExt as _;

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_that_answers_the_key_release_itself_leaves_the_agent_without_a_key() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let sock = mesh.logs_dir().join("answering-sidecar.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KmsForwarderServer::new(AnsweringSidecar))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let listen = format!("unix://{}", sock.display());
    let (cmd, agent_sock) = mesh.agent_command_with("agent-answered", "interest", Some(&pcr0), &listen, 10);
    let log = tokio::task::block_in_place(|| assert_agent_gets_no_key(&mesh, "agent-answered", cmd, &agent_sock));
    assert!(log.contains("TLS to KMS (kms.us-east-1.amazonaws.com) failed"), "{log}");
    assert!(log.contains("hostile parent looks exactly like this"), "{log}");
}

// ------------------------------------------------------------- TSKs the parent makes

#[tokio::test(flavor = "multi_thread")]
async fn no_principal_can_make_a_tsk_it_knows_and_a_planted_input_blob_is_refused() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let tsk_key = &mesh.tsk.key_arn;
    let clients =
        [("admin", mesh.admin_kms().await), ("instance", mesh.instance_kms().await), ("owner", mesh.owner_kms().await)];

    // Positive control: on a key with KMS's default policy, the admin does get a
    // plaintext data key: the refusals below are the shipped policy's doing.
    let admin = &clients[0].1;
    let fresh = admin.create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string();
    let gdk = admin.generate_data_key().key_id(&fresh).key_spec(DataKeySpec::Aes256).send().await.unwrap();
    assert_eq!(gdk.plaintext().map(|p| p.as_ref().len()), Some(32), "positive control");

    for (who, kms) in &clients {
        let mut gdk = kms.generate_data_key().key_id(tsk_key).key_spec(DataKeySpec::Aes256);
        let mut enc = kms.encrypt().key_id(tsk_key).plaintext(Blob::new([1u8; 32]));
        for (k, v) in tsk_context(9) {
            gdk = gdk.encryption_context(&k, v.clone());
            enc = enc.encryption_context(k, v);
        }
        assert_eq!(kms_code(gdk.send().await), "AccessDeniedException", "{who}: GenerateDataKey, no Recipient");
        assert_eq!(kms_code(enc.send().await), "AccessDeniedException", "{who}: Encrypt a TSK of its choosing");
        let pair = kms.generate_data_key_pair().key_id(tsk_key).key_pair_spec(DataKeyPairSpec::EccNistP384);
        assert_eq!(kms_code(pair.send().await), "AccessDeniedException", "{who}: GenerateDataKeyPair");
    }
    // The owner may seal inputs under the input key, but never with a TSK's context.
    let owner = &clients[2].1;
    let mut as_tsk = owner.encrypt().key_id(&mesh.tsk.input_key_arn).plaintext(Blob::new([2u8; 32]));
    for (k, v) in tsk_context(2) {
        as_tsk = as_tsk.encryption_context(k, v);
    }
    assert_eq!(kms_code(as_tsk.send().await), "AccessDeniedException", "owner: an input dressed as a TSK");

    // What a parent can get its hands on, an input the owner sealed, planted as v2:
    // KMS will not open it as a TSK of the pinned key, and the agent stops, naming v2.
    let input = match mesh.sealed_input("wf-any", 1, 1, "").await.sealed {
        Some(enclavemesh_proto::v1::sealed_input::Sealed::KmsCiphertext(blob)) => blob,
        other => panic!("a small input is a KMS ciphertext: {other:?}"),
    };
    let planted = write_tsk_file(&mesh.logs_dir().join("planted.b64"), &[(1, &mesh.tsk.blob), (2, &input)]);
    let (cmd, sock) = mesh.agent_command("agent-planted", "interest", Some(&pcr0));
    let cmd = with_arg(cmd, "--tsk-file", planted.to_str().unwrap());
    let log = tokio::task::block_in_place(|| assert_agent_gets_no_key(&mesh, "agent-planted", cmd, &sock));
    assert!(log.contains("TSK version 2 refused"), "names the version: {log}");
    assert!(log.contains(tsk_key.as_str()), "names the pinned key: {log}");
    assert!(log.contains("Fix:"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tsk_under_the_parents_own_key_in_its_own_account_is_refused_by_the_pinned_agent() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    // The parent's own KMS: authentic TLS (the same CA as the real one), its own account,
    // a key whose policy lets anyone do anything, and a TSK whose plaintext it keeps.
    let rogue = RogueKms::start(&mesh, "parent-account-kms", "999988887777", true);
    let kms = rogue.client(&rogue.admin).await;
    let key = kms.create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string();
    assert!(key.contains(":999988887777:"), "{key}");
    let open = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}"#;
    kms.put_key_policy().key_id(&key).policy_name("default").policy(open).send().await.unwrap();
    let mut gdk = kms.generate_data_key().key_id(&key).key_spec(DataKeySpec::Aes256);
    for (k, v) in tsk_context(1) {
        gdk = gdk.encryption_context(k, v);
    }
    let gdk = gdk.send().await.unwrap();
    assert_eq!(gdk.plaintext().map(|p| p.as_ref().len()), Some(32), "the parent knows this TSK");
    let blob = gdk.ciphertext_blob().unwrap().as_ref().to_vec();
    let tsk_file = write_tsk_file(&mesh.logs_dir().join("parent-tsk.b64"), &[(1, &blob)]);

    // Its sidecar tunnels the enclave to that KMS with credentials valid there.
    let sock = mesh.logs_dir().join("parent-sidecar.sock");
    let listen = format!("unix://{}", sock.display());
    let mut cmd = mesh.sidecar_command(&listen, &rogue.connect_to());
    for (k, v) in rogue.instance.env() {
        cmd.env(k, v);
    }
    let mut sidecar = Proc::spawn("parent-sidecar", cmd, mesh.logs_dir());
    wait_for("parent's sidecar", Duration::from_secs(20), || {
        sidecar.assert_running();
        sock.exists()
    });

    let (cmd, agent_sock) = mesh.agent_command_with("agent-pinned", "interest", Some(&pcr0), &listen, 10);
    let cmd = with_arg(cmd, "--tsk-file", tsk_file.to_str().unwrap());
    let log = tokio::task::block_in_place(|| assert_agent_gets_no_key(&mesh, "agent-pinned", cmd, &agent_sock));
    assert!(!log.contains("TLS to KMS"), "TLS was authentic; the pin is what refused: {log}");
    assert!(log.contains("TSK version 1 refused: it is not a ciphertext of the key this image pins"), "{log}");
    assert!(log.contains(&mesh.tsk.key_arn), "names the pinned key: {log}");
    // The parent's KMS was asked (TLS held) and answered for the pinned key only.
    let audit = std::fs::read_to_string(rogue.dev.join("kms/audit.jsonl")).unwrap_or_default();
    assert!(audit.lines().any(|l| l.contains("\"Decrypt\"")), "the enclave did reach the parent's KMS: {audit}");
}

// ------------------------------------------------------------- the shipped policy

#[tokio::test(flavor = "multi_thread")]
async fn the_instance_role_gets_access_denied_for_everything_but_an_attested_release() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let kms = mesh.instance_kms().await;
    let tsk_key = mesh.tsk.key_arn.clone();
    let mut decrypt = kms.decrypt().key_id(&tsk_key).ciphertext_blob(Blob::new(mesh.tsk.blob.clone()));
    let mut reencrypt =
        kms.re_encrypt().destination_key_id(&mesh.tsk.input_key_arn).ciphertext_blob(Blob::new(mesh.tsk.blob.clone()));
    for (k, v) in tsk_context(1) {
        decrypt = decrypt.encryption_context(&k, v.clone());
        reencrypt = reencrypt.source_encryption_context(k, v);
    }
    for (k, v) in input_context("wf-any") {
        reencrypt = reencrypt.destination_encryption_context(k, v);
    }
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}"#;
    let attempts: Vec<(&str, String)> = vec![
        ("Encrypt", kms_code(kms.encrypt().key_id(&tsk_key).plaintext(Blob::new([0u8; 32])).send().await)),
        (
            "GenerateDataKey without a Recipient",
            kms_code(kms.generate_data_key().key_id(&tsk_key).key_spec(DataKeySpec::Aes256).send().await),
        ),
        ("Decrypt without a Recipient", kms_code(decrypt.send().await)),
        ("ReEncrypt", kms_code(reencrypt.send().await)),
        (
            "CreateGrant",
            kms_code(
                kms.create_grant()
                    .key_id(&tsk_key)
                    .grantee_principal(mesh.principals.instance.role_arn())
                    .operations(GrantOperation::Decrypt)
                    .send()
                    .await,
            ),
        ),
        (
            "PutKeyPolicy",
            kms_code(kms.put_key_policy().key_id(&tsk_key).policy_name("default").policy(policy).send().await),
        ),
    ];
    for (what, code) in attempts {
        assert_eq!(code, "AccessDeniedException", "instance role: {what}");
    }
    // ...while the release it exists for still works: an attested agent boots.
    let _ = mesh.start_agent("agent-ok", "interest", Some(&pcr0));
}

// ------------------------------------------------------------- the locked policy

/// An image signing certificate (DER) and the PCR8 a simulated enclave signed with it reports.
fn signing_cert(dir: &Path, name: &str) -> (PathBuf, String) {
    let ca = enclavemesh_attestation::DevCa::load_or_create(&dir.join(name)).unwrap();
    let cert = ca.issue_tls_server(&[&format!("{name}.signer.enclavemesh")], &[]).unwrap().chain_der.remove(0);
    let path = dir.join(format!("{name}.der"));
    std::fs::write(&path, &cert).unwrap();
    (path, hex::encode(enclavemesh_attestation::pcr8_of_signing_certificate(&cert)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_policy_releases_by_pcr8_to_new_images_and_nobody_can_change_it() {
    let scratch = tempfile::tempdir().unwrap();
    let (cert, pcr8) = signing_cert(scratch.path(), "release-signer");
    let (other_cert, _) = signing_cert(scratch.path(), "someone-else");
    let mesh = DevMesh::start_with_policy(PolicyMode::locked_pcr8(std::slice::from_ref(&pcr8)), Vec::new()).await;

    // Two different images (PCR0s) signed with the allowed certificate both get the key:
    // a new signed image rolls out without a policy change.
    for (name, pcr0) in [("agent-v1", random_pcr0()), ("agent-v2", random_pcr0())] {
        let (mut cmd, sock) = mesh.agent_command(name, "interest", Some(&pcr0));
        cmd.arg("--sim-signing-cert").arg(&cert);
        let mut p = Proc::spawn(name, cmd, mesh.logs_dir());
        wait_for(name, Duration::from_secs(60), || {
            p.assert_running();
            sock.exists()
        });
    }
    // The same image signed by anyone else, or unsigned, gets nothing.
    let pcr0 = random_pcr0();
    for (name, signer) in [("agent-other-signer", Some(&other_cert)), ("agent-unsigned", None)] {
        let (mut cmd, sock) = mesh.agent_command_with(name, "interest", Some(&pcr0), &mesh.sidecar_addr, 10);
        if let Some(c) = signer {
            cmd.arg("--sim-signing-cert").arg(c);
        }
        let log = tokio::task::block_in_place(|| assert_agent_gets_no_key(&mesh, name, cmd, &sock));
        assert!(log.contains("AccessDeniedException"), "{log}");
    }

    // Nobody may change the policy: not the instance role, not the admin.
    let current = mesh.admin_kms().await.get_key_policy().key_id(&mesh.tsk.key_arn).send().await.unwrap();
    let current = current.policy().unwrap().to_string();
    for (who, kms) in [("admin", mesh.admin_kms().await), ("instance", mesh.instance_kms().await)] {
        let put = kms
            .put_key_policy()
            .key_id(&mesh.tsk.key_arn)
            .policy_name("default")
            .policy(&current)
            .bypass_policy_lockout_safety_check(true)
            .send()
            .await;
        assert_eq!(kms_code(put), "AccessDeniedException", "{who}: PutKeyPolicy on a locked key");
    }
    // Rotation needs no policy change: the admin still makes new versions nobody sees.
    let mut v2 = mesh.admin_kms().await.generate_data_key_without_plaintext().key_id(&mesh.tsk.key_arn);
    v2 = v2.key_spec(DataKeySpec::Aes256);
    for (k, v) in tsk_context(2) {
        v2 = v2.encryption_context(k, v);
    }
    assert!(v2.send().await.is_ok(), "a locked key still takes new TSK versions");
}
