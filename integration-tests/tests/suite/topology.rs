//! A topology the host cannot bend. The owner writes a manifest (roles, who may hand
//! state to whom), seals its digest into the input, and the agents refuse, each with a
//! typed refusal, any route the manifest does not allow: past a role, back to an
//! earlier one, through an agent that is not one of its roles, or under a manifest the
//! host swapped in. Here the test is the hostile host, calling the agents itself; the
//! second test routes through a real worker and Temporal.

use std::path::Path;

use enclavemesh_harness::loopkit::unix;
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::{DevMesh, MeshOptions};
use enclavemesh_owner::manifest::{self, Compiled};
use enclavemesh_proto::Refusal;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::*;
use tonic::transport::Channel;

/// intake (agent-a) -> screening (agent-b) -> scoring (agent-c, repeated).
const CHAIN: &str = r#"
handoffs = [["agent-a", "agent-b"], ["agent-b", "agent-c"], ["agent-c", "agent-c"]]
[[role]]
name = "agent-a"
kind = "ledger-init"
[[role]]
name = "agent-b"
kind = "interest"
[[role]]
name = "agent-c"
kind = "interest"
[[pipeline]]
role = "agent-a"
[[pipeline]]
role = "agent-b"
[[pipeline]]
role = "agent-c"
repeat = 3
"#;

fn client(sock: &Path) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(
        enclavemesh_transport::channel(&format!("unix://{}", sock.display()).parse().unwrap()).unwrap(),
    )
}

fn assert_refused(r: Result<tonic::Response<ProcessResponse>, tonic::Status>, kind: Refusal, what: &str) {
    let e = r.err().unwrap_or_else(|| panic!("{what}: accepted"));
    assert_eq!(Refusal::of(&e), Some(kind), "{what}: {e:?}");
    assert_eq!(e.code(), kind.code(), "{what}: {e:?}");
}

fn process(wf: &str, state: &SealedEnvelope, m: &Compiled) -> ProcessRequest {
    ProcessRequest {
        workflow_id: wf.into(),
        expected_step: state.step,
        state: Some(state.clone()),
        manifest: m.bytes.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_refuse_every_route_the_owners_manifest_does_not_allow() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let (_c, sock_c) = mesh.start_agent("agent-c", "interest", Some(&pcr0));
    let (_d, sock_d) = mesh.start_agent("agent-d", "interest", Some(&pcr0));
    let (mut a, mut b, mut c, mut d) = (client(&sock_a), client(&sock_b), client(&sock_c), client(&sock_d));
    let m = manifest::compile(CHAIN).unwrap();
    let wf = "wf-topology";
    let input = mesh.sealed_input_bound(wf, 100_000, 500, "", &m.sha256()).await;
    let init = |manifest: Vec<u8>| InitRequest { workflow_id: wf.into(), input: Some(input.clone()), manifest };

    // Init needs the very manifest the owner sealed.
    let e = a.init(init(Vec::new())).await.unwrap_err();
    assert_eq!(Refusal::of(&e), Some(Refusal::ManifestMismatch), "no manifest: {e:?}");
    // The host's own manifest (letting intake hand straight to scoring), encoded as the owner's would be.
    let mut host_made = m.manifest.clone();
    host_made.handoffs.push(Handoff { from: "agent-a".into(), to: "agent-c".into() });
    let e = a.init(init(prost::Message::encode_to_vec(&host_made))).await.unwrap_err();
    assert_eq!(Refusal::of(&e), Some(Refusal::ManifestMismatch), "a host's manifest: {e:?}");
    assert!(e.message().contains("not the one the owner sealed"), "{e:?}");
    let s0 = a.init(init(m.bytes.clone())).await.unwrap().into_inner().state.unwrap();
    assert_eq!(s0.agent, "agent-a");

    // Past a role: intake straight to scoring.
    assert_refused(c.process(process(wf, &s0, &m)).await, Refusal::HandoffRefused, "agent-a -> agent-c");
    // An agent that is not a role of the manifest.
    assert_refused(d.process(process(wf, &s0, &m)).await, Refusal::WrongRole, "agent-d");
    // The route the owner allows.
    let s1 = b.process(process(wf, &s0, &m)).await.unwrap().into_inner().state.unwrap();
    assert_eq!(s1.agent, "agent-b");
    // Screening again (a step the owner did not allow), or under a swapped manifest that would allow it.
    assert_refused(b.process(process(wf, &s1, &m)).await, Refusal::HandoffRefused, "agent-b -> agent-b");
    let looser = manifest::compile(
        &CHAIN.replace(r#"["agent-c", "agent-c"]"#, r#"["agent-c", "agent-c"], ["agent-b", "agent-b"]"#),
    )
    .unwrap();
    assert_refused(b.process(process(wf, &s1, &looser)).await, Refusal::ManifestMismatch, "looser manifest");
    let mut none = process(wf, &s1, &m);
    none.manifest.clear();
    assert_refused(b.process(none).await, Refusal::ManifestMismatch, "manifest dropped");
    // On to scoring, which may repeat; then back to an earlier role.
    let s2 = c.process(process(wf, &s1, &m)).await.unwrap().into_inner().state.unwrap();
    let s3 = c.process(process(wf, &s2, &m)).await.unwrap().into_inner().state.unwrap();
    assert_eq!((s2.agent.as_str(), s3.step), ("agent-c", 3));
    assert_refused(b.process(process(wf, &s3, &m)).await, Refusal::HandoffRefused, "agent-c -> agent-b");

    // Every refusal is in the refusing agent's audit trail, by kind.
    let log = b.audit_log(AuditLogRequest { from_seq: 0, max_records: 0 }).await.unwrap().into_inner();
    let refused = |kind: &str| log.records.iter().filter(|r| r.contains(&format!("\"error\":\"{kind}\""))).count();
    assert_eq!(refused("handoff_refused"), 2, "{:#?}", log.records);
    assert_eq!(refused("manifest_mismatch"), 2, "{:#?}", log.records);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_a_host_routing_off_the_manifest_fails_the_workflow_with_its_last_good_state() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let temporal = enclavemesh_harness::temporal::Temporal::start(mesh.logs_dir());
    let queue = "it-misroute";
    // The host's worker sends scoring (agent-c) to screening's enclave (agent-b): at step 2
    // agent-b gets a state agent-b sealed, a handoff back to the same role.
    let roles = vec![("AGENT_ROLES".to_string(), format!("agent-c={}", unix(&sock_b)))];
    let _worker = temporal.start_worker_with_env(mesh.logs_dir(), queue, &unix(&sock_a), &unix(&sock_b), &roles);
    let file = mesh.logs_dir().join("chain.toml");
    std::fs::write(&file, CHAIN).unwrap();
    let wf = "wf-misrouted";
    let args = ["trigger", "--workflow-id", wf, "--manifest", file.to_str().unwrap(), "--no-reveal"];
    let (ok, lines, all) = temporal.cli_with_env(queue, &args, &mesh.owner_env());
    assert!(!ok, "{all}");
    let failed = lines.iter().find(|v| v["event"] == "failed").unwrap_or_else(|| panic!("{all}"));
    assert_eq!(failed["failure"]["type"], "handoff_refused", "{all}");
    assert_eq!(failed["failure"]["non_retryable"], true, "{all}");
    // Nothing lost: step 1, the last the manifest allowed, is in history and opens for the owner.
    let sock = unix(&sock_b);
    let args = ["reveal", "--agent", &sock, "--workflow-id", wf, "--field", "step", "--last-good"];
    let (ok, lines, all) = temporal.cli_with_env(queue, &args, &mesh.owner_env());
    assert!(ok, "{all}");
    let step = lines.iter().find(|v| v["event"] == "revealed").and_then(|v| v["value"].as_str()).map(str::to_owned);
    assert_eq!(step.as_deref(), Some("1"), "{all}");
}

/// The worker runs the pipeline the manifest describes: intake (agent-a) seals the
/// owner's input, screening (agent-b) runs once, scoring (agent-c) three times, each
/// role its own image (its own PCR0, all three in the key policy and the manifest),
/// through a real Temporal. History holds only ciphertext, and the owner's key opens the
/// result. A fourth image, in neither, gets no key.
#[tokio::test(flavor = "multi_thread")]
async fn slow_a_three_role_pipeline_runs_end_to_end_as_the_manifest_says() {
    let (pcr_a, pcr_b, pcr_c) = (random_pcr0(), random_pcr0(), random_pcr0());
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr_a.clone(), pcr_b.clone(), pcr_c.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr_a));
    let (_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr_b));
    let (_c, sock_c) = mesh.start_agent("agent-c", "interest", Some(&pcr_c));
    // A fourth binary, in no role of the policy: KMS releases it nothing, naming its PCR0.
    let pcr_d = random_pcr0();
    let (cmd, _) = mesh.agent_command("agent-d", "interest", Some(&pcr_d));
    let mut d = enclavemesh_harness::proc::Proc::spawn("agent-d", cmd, mesh.logs_dir());
    assert!(!d.wait_exit(std::time::Duration::from_secs(60)).success(), "{}", d.logs());
    assert!(d.logs().contains("AccessDenied") && d.logs().contains(&pcr_d), "{}", d.logs());
    let temporal = enclavemesh_harness::temporal::Temporal::start(mesh.logs_dir());
    let queue = "it-pipeline";
    let roles = vec![("AGENT_ROLES".to_string(), format!("agent-c={}", unix(&sock_c)))];
    let _worker = temporal.start_worker_with_env(mesh.logs_dir(), queue, &unix(&sock_a), &unix(&sock_b), &roles);
    // Each role pinned to its own image.
    let pinned = CHAIN
        .replace("kind = \"ledger-init\"\n", &format!("kind = \"ledger-init\"\npcr0 = [\"{pcr_a}\"]\n"))
        .replacen("kind = \"interest\"\n", &format!("kind = \"interest\"\npcr0 = [\"{pcr_b}\"]\n"), 1)
        .replacen(
            "name = \"agent-c\"\nkind = \"interest\"\n",
            &format!("name = \"agent-c\"\nkind = \"interest\"\npcr0 = [\"{pcr_c}\"]\n"),
            1,
        );
    assert_eq!(manifest::compile(&pinned).unwrap().manifest.roles.iter().filter(|r| r.pcr0.len() == 1).count(), 3);
    let file = mesh.logs_dir().join("chain.toml");
    std::fs::write(&file, pinned).unwrap();

    let (wf, note) = ("wf-pipeline", "pipeline-note-7d1f3a");
    let args = [
        "trigger",
        "--workflow-id",
        wf,
        "--manifest",
        file.to_str().unwrap(),
        "--initial-balance",
        "731157",
        "--rate-bps",
        "500",
        "--note",
        note,
        "--no-reveal",
    ];
    let (ok, lines, all) = temporal.cli_with_env(queue, &args, &mesh.owner_env());
    assert!(ok, "{all}");
    let started = lines.iter().find(|v| v["event"] == "started").unwrap_or_else(|| panic!("{all}"));
    assert_eq!(started["steps"], 4, "the steps come from the manifest's pipeline: {all}");

    // Through the owner's key: Init by intake, then screening once and scoring three times.
    let by = enclavemesh_harness::loopkit::assert_history_exactly_once_by(
        &enclavemesh_harness::loopkit::reveal_through(&temporal, queue, &mesh, &sock_c, wf, "history"),
        731_157,
        500,
        4,
        &["agent-b", "agent-c"],
    );
    assert_eq!(by, ["agent-b", "agent-c", "agent-c", "agent-c"]);
    let balance = enclavemesh_harness::loopkit::reveal_through(&temporal, queue, &mesh, &sock_c, wf, "balance");
    assert_eq!(balance, enclavemesh_harness::temporal::expected_balance(731_157, 500, 4).to_string());

    // History: ciphertext only (the positive control: the same scan finds the note's bytes
    // when they are there).
    let hay = enclavemesh_harness::temporal::history_haystack(&temporal.history_json(wf));
    assert!(!enclavemesh_harness::mesh::contains_secret(&hay, note.as_bytes()), "the note in history");
    assert!(!enclavemesh_harness::mesh::contains_secret(&hay, b"731157"), "the balance in history");
    assert!(enclavemesh_harness::mesh::contains_secret(&[&hay[..], note.as_bytes()].concat(), note.as_bytes()));
    assert!(hay.windows(7).any(|w| w == b"agent-c"), "the envelopes name their sealers");
}
