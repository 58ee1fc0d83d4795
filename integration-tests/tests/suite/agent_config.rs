//! The production boot path: an enclave gets no flags or environment from nitro-cli,
//! so with `--config-from-sidecar` (set in the enclave image) the agent takes its
//! name, kind and encrypted TSK file from the kms-sidecar's GetAgentConfig, and the
//! sidecar refuses, naming the flag to add, a caller it has no role for.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, wait_for};
use enclavemesh_proto::v1::DescribeRequest;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use std::time::Duration;

fn env(roles: &str, tsk: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("KMS_SIDECAR_AGENT_ROLES".into(), roles.into()),
        ("KMS_SIDECAR_AGENT_TSK_FILE".into(), tsk.display().to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_takes_role_and_tsk_from_the_sidecar() {
    let pcr0 = random_pcr0();
    let parent = tempfile::tempdir().unwrap();
    let served_tsk = parent.path().join("encrypted-tsk.b64");
    let mesh = DevMesh::start_with_env(
        MeshOptions { policy_pcr0s: vec![pcr0.clone()] },
        env("17=agent-b:interest,*=agent-from-sidecar:ledger-init", &served_tsk),
    )
    .await;
    // The sidecar reads the file per call: put the real one in place after start.
    std::fs::copy(&mesh.tsk_file, &served_tsk).unwrap();

    // Flags that would say otherwise (name, kind, the harness's TSK file, moved away) are ignored.
    let (mut cmd, sock) = mesh.agent_command("flag-name", "interest", Some(&pcr0));
    cmd.arg("--config-from-sidecar");
    std::fs::rename(&mesh.tsk_file, parent.path().join("moved-away.b64")).unwrap();
    let mut agent = Proc::spawn("agent-cfg", cmd, mesh.logs_dir());
    wait_for("agent socket", Duration::from_secs(60), || {
        agent.assert_running();
        sock.exists()
    });
    let channel = enclavemesh_transport::channel(&format!("unix://{}", sock.display()).parse().unwrap()).unwrap();
    let mut client = AgentServiceClient::new(channel);
    let d = client.describe(DescribeRequest {}).await.unwrap().into_inner();
    assert_eq!(d.agent, "agent-from-sidecar");
    assert_eq!(d.key_versions, [1], "the TSK released from the sidecar's file");
    // ledger-init logic (from the sidecar), not interest (from the flag): Init works.
    let init = client.init(mesh.init_request("wf-cfg", 10, 100, "").await).await.unwrap().into_inner();
    assert_eq!(init.state.unwrap().agent, "agent-from-sidecar");
    assert!(agent.logs().contains("agent configuration from the kms-sidecar"), "{}", agent.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn caller_without_a_role_is_refused_naming_the_flag() {
    let pcr0 = random_pcr0();
    let parent = tempfile::tempdir().unwrap();
    let served_tsk = parent.path().join("encrypted-tsk.b64");
    // Roles only for vsock CIDs: a caller over unix matches none.
    let mesh = DevMesh::start_with_env(
        MeshOptions { policy_pcr0s: vec![pcr0.clone()] },
        env("16=agent-a:ledger-init", &served_tsk),
    )
    .await;
    let (mut cmd, _sock) = mesh.agent_command("agent-x", "interest", Some(&pcr0));
    cmd.arg("--config-from-sidecar");
    let mut agent = Proc::spawn("agent-x", cmd, mesh.logs_dir());
    assert!(!agent.wait_exit(Duration::from_secs(60)).success());
    let log = agent.logs();
    assert!(log.contains("no agent role") && log.contains("--agent-role *=NAME:KIND"), "{log}");
    assert!(log.contains("NotFound"), "{log}");
}

/// An image built for a role (`build.sh --role`, here its measured variable) is that
/// role whatever the parent says: a sidecar assigning another role is refused at boot,
/// naming both, and the matching assignment serves as the image's role.
#[tokio::test(flavor = "multi_thread")]
async fn a_role_built_into_the_image_is_not_the_parents_to_change() {
    let pcr0 = random_pcr0();
    let parent = tempfile::tempdir().unwrap();
    let served_tsk = parent.path().join("encrypted-tsk.b64");
    let mesh = DevMesh::start_with_env(
        MeshOptions { policy_pcr0s: vec![pcr0.clone()] },
        env("*=agent-a:ledger-init", &served_tsk),
    )
    .await;
    std::fs::copy(&mesh.tsk_file, &served_tsk).unwrap();

    // The parent says ledger-init; the image was built as interest: refused.
    let (mut cmd, _) = mesh.agent_command("agent-img", "interest", Some(&pcr0));
    cmd.arg("--config-from-sidecar").env("AGENT_IMAGE_ROLE", "agent-b:interest");
    let mut refused = Proc::spawn("agent-img-refused", cmd, mesh.logs_dir());
    assert!(!refused.wait_exit(Duration::from_secs(60)).success(), "a role the image was not built as");
    let log = refused.logs();
    assert!(log.contains("assigns this enclave the role agent-a:ledger-init"), "{log}");
    assert!(log.contains("built as agent-b:interest") && log.contains("build.sh --role"), "{log}");

    // The image built as the role the parent assigns: serves, as that role.
    let (mut cmd, sock) = mesh.agent_command("flag-name", "interest", Some(&pcr0));
    cmd.arg("--config-from-sidecar").env("AGENT_IMAGE_ROLE", "agent-a:ledger-init");
    let mut agent = Proc::spawn("agent-img", cmd, mesh.logs_dir());
    wait_for("agent socket", Duration::from_secs(60), || {
        agent.assert_running();
        sock.exists()
    });
    let channel = enclavemesh_transport::channel(&format!("unix://{}", sock.display()).parse().unwrap()).unwrap();
    let d = AgentServiceClient::new(channel).describe(DescribeRequest {}).await.unwrap().into_inner();
    assert_eq!(d.agent, "agent-a");
}
