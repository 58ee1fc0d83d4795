//! A topology the host cannot bend. The owner writes a manifest (roles, who may hand
//! state to whom), seals its digest into the input, and the agents refuse, each with a
//! typed refusal, any route the manifest does not allow: past a role, back to an
//! earlier one, through an agent that is not one of its roles, or under a manifest the
//! host swapped in. Here the test is the hostile host, calling the agents itself; the
//! second test routes through a real worker and Temporal.

use std::path::Path;

use enclavemesh_harness::loopkit::{AgentBRoute, Loop, TASK_QUEUE};
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
    let (l, _) = Loop::start(AgentBRoute::Direct).await;
    // The owner allows agent-a -> agent-b once; the loop (the host's worker) hands
    // agent-b's state to agent-b again at step 2.
    let file = l.mesh.logs_dir().join("manifest.toml");
    std::fs::write(
        &file,
        r#"
handoffs = [["agent-a", "agent-b"]]
[[role]]
name = "agent-a"
kind = "ledger-init"
[[role]]
name = "agent-b"
kind = "interest"
[[pipeline]]
role = "agent-a"
[[pipeline]]
role = "agent-b"
"#,
    )
    .unwrap();
    let wf = "wf-off-manifest";
    let (ok, lines, all) = l.trigger(wf, 3, &["--manifest", file.to_str().unwrap(), "--no-reveal"]);
    assert!(!ok, "{all}");
    let failed = lines.iter().find(|v| v["event"] == "failed").unwrap_or_else(|| panic!("{all}"));
    assert_eq!(failed["failure"]["type"], "handoff_refused", "{all}");
    assert_eq!(failed["failure"]["non_retryable"], true, "{all}");
    // Nothing lost: step 1, the last the manifest allowed, is in history and opens for the owner.
    let sock = enclavemesh_harness::loopkit::unix(&l.sock_b);
    let args = ["reveal", "--agent", &sock, "--workflow-id", wf, "--field", "step", "--last-good"];
    let (ok, lines, all) = l.temporal.cli_with_env(TASK_QUEUE, &args, &l.mesh.owner_env());
    assert!(ok, "{all}");
    let step = lines.iter().find(|v| v["event"] == "revealed").and_then(|v| v["value"].as_str()).map(str::to_owned);
    assert_eq!(step.as_deref(), Some("1"), "{all}");
    // The same manifest with the handoff allowed runs to the end.
    let allowed = std::fs::read_to_string(&file).unwrap().replace(
        r#"handoffs = [["agent-a", "agent-b"]]"#,
        r#"handoffs = [["agent-a", "agent-b"], ["agent-b", "agent-b"]]"#,
    );
    std::fs::write(&file, allowed.replace("role = \"agent-b\"\n", "role = \"agent-b\"\nrepeat = 3\n")).unwrap();
    let (ok, _, all) = l.trigger("wf-on-manifest", 3, &["--manifest", file.to_str().unwrap(), "--no-reveal"]);
    assert!(ok, "{all}");
    l.assert_completed_exactly_once("wf-on-manifest", 3);
}
