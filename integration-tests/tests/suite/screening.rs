//! The second system on the agent SDK (`examples/screening-pipeline`): a loan
//! application goes intake -> screening (against a private list that reaches the
//! enclave only KMS-sealed) -> scoring, each role its own binary with its own PCR0 in
//! the key policy and pinned in the owner's manifest. Only the score leaves, sealed to
//! the owner's key. Here the host is hostile: it skips screening, swaps the list,
//! starts a binary that is in no role, and asks every agent for more than the score.

use std::path::{Path, PathBuf};
use std::process::Command;

use enclavemesh_harness::loopkit::{trigger_pipeline, unix};
use enclavemesh_harness::mesh::{apply_env, contains_secret};
use enclavemesh_harness::proc::{Proc, bin_path, measured_pcr0};
use enclavemesh_harness::temporal::{Temporal, history_haystack};
use enclavemesh_harness::{DevMesh, MeshOptions};
use enclavemesh_owner::manifest::{self, Compiled};
use enclavemesh_proto::Refusal;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::*;
use prost::Message;
use screening_pipeline::v1::Application;
use tonic::transport::Channel;

const PROGRAMS: [&str; 3] = ["intake-agent", "screening-agent", "scoring-agent"];

/// The private list: the second entry matches an applicant below by national id.
const LIST: &str = "# sanctions list, private to its owner\nname:Mallory Mole\nid:ZZ-9999\n";

/// intake -> screening -> scoring, each role pinned to its own binary's PCR0.
fn manifest_text(pcr0: &[String]) -> String {
    format!(
        r#"
handoffs = [["intake", "screening"], ["screening", "scoring"]]
[[role]]
name = "intake"
kind = "intake"
pcr0 = ["{}"]
[[role]]
name = "screening"
kind = "screening"
pcr0 = ["{}"]
[[role]]
name = "scoring"
kind = "scoring"
pcr0 = ["{}"]
[[pipeline]]
role = "intake"
[[pipeline]]
role = "screening"
[[pipeline]]
role = "scoring"
"#,
        pcr0[0], pcr0[1], pcr0[2]
    )
}

fn application(name: &str, national_id: &str) -> Application {
    Application {
        applicant_name: name.into(),
        national_id: national_id.into(),
        country: "gb".into(),
        annual_income: 6_000_000,
        requested_amount: 2_000_000,
        existing_debt: 500_000,
    }
}

/// `enclavemesh seal-resource` as the list's owner (the owner's principal and KMS).
fn seal_list(mesh: &DevMesh, name: &str, out: &Path) {
    let plain = mesh.logs_dir().join(format!("{name}.txt"));
    std::fs::write(&plain, LIST).unwrap();
    let mut cmd = Command::new(bin_path("enclavemesh"));
    apply_env(&mut cmd, &mesh.owner_env(), "enclavemesh");
    let o = cmd
        .args(["seal-resource", "--name", name, "--file", plain.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "seal-resource: {}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(plain).unwrap();
}

/// The three agents of the chain, each its own program; screening gets `list`.
struct Chain {
    _procs: Vec<Proc>,
    socks: Vec<PathBuf>,
}

fn start_chain(mesh: &DevMesh, list: Option<&Path>) -> Chain {
    let mut procs = Vec::new();
    let mut socks = Vec::new();
    for (program, role) in PROGRAMS.iter().zip(["intake", "screening", "scoring"]) {
        let resource = list.map(|l| format!("screening-list={}", l.display()));
        let extra: Vec<&str> = match (&resource, role) {
            (Some(r), "screening") => vec!["--resource", r.as_str()],
            _ => vec![],
        };
        let (p, sock) = mesh.start_program(program, role, role, role, &extra);
        procs.push(p);
        socks.push(sock);
    }
    Chain { _procs: procs, socks }
}

fn client(sock: &Path) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(enclavemesh_transport::channel(&unix(sock).parse().unwrap()).unwrap())
}

fn process(wf: &str, env: &SealedEnvelope, m: &Compiled) -> ProcessRequest {
    ProcessRequest {
        workflow_id: wf.into(),
        expected_step: env.step,
        state: Some(env.clone()),
        manifest: m.bytes.clone(),
    }
}

fn reveal(wf: &str, env: &SealedEnvelope, field: &str) -> RevealRequest {
    RevealRequest {
        workflow_id: wf.into(),
        expected_step: env.step,
        state: Some(env.clone()),
        field_name: field.into(),
        ..Default::default()
    }
}

fn refused<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, kind: Refusal, what: &str) -> String {
    let e = r.err().unwrap_or_else(|| panic!("{what}: accepted"));
    assert_eq!(Refusal::of(&e), Some(kind), "{what}: {e:?}");
    e.message().to_string()
}

fn pcr0s() -> Vec<String> {
    let pcr0: Vec<String> = PROGRAMS.iter().map(|p| measured_pcr0(p)).collect();
    assert!(pcr0[0] != pcr0[1] && pcr0[1] != pcr0[2] && pcr0[0] != pcr0[2], "each role its own measurement");
    pcr0
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_cannot_skip_screening_swap_the_list_or_get_more_than_the_score() {
    let pcr0 = pcr0s();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: pcr0.clone() }).await;
    let list = mesh.logs_dir().join("list.sealed");
    seal_list(&mesh, "screening-list", &list);
    // What the parent passes along is ciphertext.
    let sealed_file = std::fs::read(&list).unwrap();
    use base64::Engine;
    let sealed_bytes = base64::engine::general_purpose::STANDARD.decode(sealed_file.trim_ascii()).unwrap();
    for secret in [&b"Mallory"[..], b"MALLORY", b"ZZ-9999", b"ZZ9999"] {
        assert!(!contains_secret(&sealed_bytes, secret) && !contains_secret(&sealed_file, secret));
    }
    assert!(contains_secret(LIST.as_bytes(), b"Mallory"), "positive control");

    let chain = start_chain(&mesh, Some(&list));
    let (mut intake, mut screening, mut scoring) =
        (client(&chain.socks[0]), client(&chain.socks[1]), client(&chain.socks[2]));
    for (c, (kind, pcr)) in [&mut intake, &mut screening, &mut scoring]
        .into_iter()
        .zip(["intake", "screening", "scoring"].iter().zip(&pcr0))
    {
        let d = c.describe(DescribeRequest {}).await.unwrap().into_inner();
        assert_eq!((d.kind.as_str(), d.pcr0_hex.as_str()), (*kind, pcr.as_str()), "each role reports its own binary");
    }
    let m = manifest::compile(&manifest_text(&pcr0)).unwrap();
    let wf = "wf-loan-direct";
    let input = mesh.sealed_role_input(wf, &application("Eve Example", "zz 9999").encode_to_vec(), &m.sha256()).await;
    let init = InitRequest { workflow_id: wf.into(), input: Some(input.clone()), manifest: m.bytes.clone() };
    // Only the first role opens the owner's input.
    refused(scoring.init(init.clone()).await, Refusal::WrongRole, "Init on scoring");
    let s0 = intake.init(init).await.unwrap().into_inner().state.unwrap();

    // Past screening (intake -> scoring): refused by the manifest the owner sealed.
    refused(scoring.process(process(wf, &s0, &m)).await, Refusal::HandoffRefused, "intake -> scoring");
    let s1 = screening.process(process(wf, &s0, &m)).await.unwrap().into_inner().state.unwrap();
    // Back, or again: screening -> screening is not a handoff of the manifest.
    refused(screening.process(process(wf, &s1, &m)).await, Refusal::HandoffRefused, "screening -> screening");
    let s2 = scoring.process(process(wf, &s1, &m)).await.unwrap().into_inner().state.unwrap();

    // The owner opens the score: 0, since the applicant is on the private list (by id,
    // written differently: intake normalised it, screening matched it in the enclave).
    let r = scoring.reveal(reveal(wf, &s2, "score")).await.unwrap().into_inner();
    assert_eq!(mesh.open_reveal(wf, s2.step, &r), "0");
    // Nothing else leaves: not from scoring, not from the other roles.
    let m_listed = refused(scoring.reveal(reveal(wf, &s2, "listed")).await, Refusal::InvalidRequest, "listed");
    assert!(m_listed.contains("only 'score'"), "{m_listed}");
    refused(intake.reveal(reveal(wf, &s2, "score")).await, Refusal::InvalidRequest, "score from intake");
    refused(screening.reveal(reveal(wf, &s1, "score")).await, Refusal::InvalidRequest, "score from screening");
    refused(scoring.reveal(reveal(wf, &s2, "bad name!")).await, Refusal::InvalidRequest, "a malformed field name");
    // A state the manifest does not bind cannot stand in: the host's own manifest.
    let loose = manifest::compile(&manifest_text(&pcr0).replace(
        r#"handoffs = [["intake", "screening"], ["screening", "scoring"]]"#,
        r#"handoffs = [["intake", "screening"], ["screening", "scoring"], ["intake", "scoring"]]"#,
    ))
    .unwrap();
    refused(scoring.process(process(wf, &s0, &loose)).await, Refusal::ManifestMismatch, "a host-made manifest");

    // The host swaps the list: a resource sealed for another name does not open as
    // screening-list, and the agent does not serve.
    let other = mesh.logs_dir().join("other.sealed");
    seal_list(&mesh, "other-list", &other);
    let (mut cmd, _) =
        mesh.program_command("screening-agent", "screening-2", "screening", "screening", None, &mesh.sidecar_addr, 20);
    cmd.args(["--resource", &format!("screening-list={}", other.display())]);
    let mut swapped = Proc::spawn("screening-2", cmd, mesh.logs_dir());
    assert!(!swapped.wait_exit(std::time::Duration::from_secs(60)).success(), "{}", swapped.logs());
    assert!(swapped.logs().contains("resource 'screening-list' does not open"), "{}", swapped.logs());

    // A screening agent the host starts without its list refuses to screen, typed.
    let (_bare, bare_sock) = mesh.start_program("screening-agent", "screening-bare", "screening", "screening", &[]);
    let msg = refused(client(&bare_sock).process(process(wf, &s0, &m)).await, Refusal::InvalidInput, "no list");
    assert!(msg.contains("--resource screening-list=FILE"), "{msg}");

    // A fourth binary, in no role of the policy (the ledger's agent): KMS releases it
    // nothing, naming its own measurement.
    let ledger_pcr0 = measured_pcr0("enclave-agent");
    let (cmd, _) = mesh.agent_command("fourth", "interest", None);
    let mut fourth = Proc::spawn("fourth", cmd, mesh.logs_dir());
    assert!(!fourth.wait_exit(std::time::Duration::from_secs(60)).success(), "{}", fourth.logs());
    assert!(fourth.logs().contains("AccessDenied") && fourth.logs().contains(&ledger_pcr0), "{}", fourth.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_a_loan_application_is_screened_and_scored_through_temporal_and_only_the_score_leaves() {
    let pcr0 = pcr0s();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: pcr0.clone() }).await;
    let list = mesh.logs_dir().join("list.sealed");
    seal_list(&mesh, "screening-list", &list);
    let chain = start_chain(&mesh, Some(&list));
    let temporal = Temporal::start(mesh.logs_dir());
    let queue = "it-screening";
    let [i, s, c] = [0, 1, 2].map(|n| unix(&chain.socks[n]));
    let roles = vec![("AGENT_ROLES".to_string(), format!("intake={i};screening={s};scoring={c}"))];
    let _worker = temporal.start_worker_with_env(mesh.logs_dir(), queue, &i, &s, &roles);
    let manifest = mesh.logs_dir().join("screening.toml");
    std::fs::write(&manifest, manifest_text(&pcr0)).unwrap();

    // A clean applicant, and one on the list by name (written differently).
    for (wf, name, id, score) in
        [("wf-loan-clean", "Ada  Lovelace", "AB-1234", "775"), ("wf-loan-listed", "mallory mole", "QQ-1", "0")]
    {
        let input = mesh.logs_dir().join(format!("{wf}.bin"));
        std::fs::write(&input, application(name, id).encode_to_vec()).unwrap();
        let run = trigger_pipeline(&temporal, queue, &mesh, wf, &manifest, &input, &c, "score");
        assert_eq!(run.steps, 2, "screening and scoring, from the manifest");
        assert_eq!(run.revealed, score, "{wf}");

        // History holds ciphertext only (positive control: the scan finds what is there).
        let hay = history_haystack(&temporal.history_json(wf));
        let normalised = name.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase();
        for secret in [name, normalised.as_str(), id, "Mallory", "MALLORY", "6000000"] {
            assert!(!contains_secret(&hay, secret.as_bytes()), "'{secret}' in the history of {wf}");
        }
        assert!(contains_secret(&[&hay[..], name.as_bytes()].concat(), name.as_bytes()));
        std::fs::remove_file(input).unwrap();
    }

    // Nothing but the score, even to the owner: the CLI gets a typed refusal.
    let (ok, _, all) = temporal.cli_with_env(
        queue,
        &["reveal", "--agent", &c, "--workflow-id", "wf-loan-listed", "--field", "listed"],
        &mesh.owner_env(),
    );
    assert!(!ok && all.contains("invalid_request") && all.contains("only 'score'"), "{all}");
}
