//! The data owner's edges, attacked from the host: the host can neither make an input
//! (mint a state), nor read a result, nor learn values from sizes; re-running an older
//! step (a fork) gains it nothing readable, and is on the record.
//!
//! - `Init` opens only an input the owner sealed through KMS for that very workflow id:
//!   none, a blob of the host's, one sealed for another workflow or under another
//!   context are refused as `input_not_owner_sealed`, and the workflow fails for good;
//! - a re-run of an older step is processed (no trusted monotonic counter exists to
//!   stop it; the README's threat model says so), yields only ciphertext, opens for the
//!   owner to the same value as the original step, and shows twice in the audit trail;
//! - sealed states are padded to buckets: the values do not show in their sizes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::path::Path;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use enclavemesh_harness::kms::input_context;
use enclavemesh_harness::loopkit::{AgentBRoute, Loop};
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::{DevMesh, MeshOptions, bin_path};
use enclavemesh_proto::Refusal;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::*;
use prost::Message;
use tonic::transport::Channel;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn client(sock: &Path) -> AgentServiceClient<Channel> {
    let addr = format!("unix://{}", sock.display()).parse().unwrap();
    AgentServiceClient::new(enclavemesh_transport::channel(&addr).unwrap())
}

fn assert_refused(e: &tonic::Status, kind: Refusal, what: &str) {
    assert_eq!(Refusal::of(e), Some(kind), "{what}: {e:?}");
    assert_eq!(e.code(), kind.code(), "{what}: {e:?}");
}

fn kms_blob(sealed: SealedInput) -> Vec<u8> {
    match sealed.sealed {
        Some(sealed_input::Sealed::KmsCiphertext(b)) => b,
        other => panic!("a small input is one KMS ciphertext: {other:?}"),
    }
}

fn owner_input(mesh: &DevMesh, balance: i64) -> Vec<u8> {
    WorkflowInput {
        input: LedgerInput { initial_balance: balance, rate_bps: 100, secret_note: String::new() }.encode_to_vec(),
        owner_public_key: mesh.owner_key.public().to_vec(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn init_refuses_every_input_the_owner_did_not_seal_for_this_workflow() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let mut a = client(&sock_a);
    let wf = "wf-mint";
    let init = |input: Option<SealedInput>| {
        let mut a = a.clone();
        async move { a.init(InitRequest { workflow_id: wf.into(), input, ..Default::default() }).await }
    };
    let kms = |s: Vec<u8>| Some(SealedInput { sealed: Some(sealed_input::Sealed::KmsCiphertext(s)) });

    // Positive control: the owner's input for this workflow opens.
    init(Some(mesh.sealed_input(wf, 1_000, 100, "").await)).await.expect("the owner's input opens");

    // No input at all: the old "Init with any balance" mint.
    let e = init(None).await.unwrap_err();
    assert_refused(&e, Refusal::InputNotOwnerSealed, "no input");
    assert!(e.message().contains("enclavemesh trigger") || e.message().contains("owner"), "{e:?}");
    // Bytes of the host's own making.
    let e = init(kms(vec![0x5a; 200])).await.unwrap_err();
    assert_refused(&e, Refusal::InputNotOwnerSealed, "host-made bytes");
    let e = init(Some(SealedInput {
        sealed: Some(sealed_input::Sealed::DataKey(DataKeySealed {
            encrypted_data_key: vec![1; 184],
            nonce: vec![2; 12],
            ciphertext: vec![3; 64],
        })),
    }))
    .await
    .unwrap_err();
    assert_refused(&e, Refusal::InputNotOwnerSealed, "host-made data-key input");
    // The owner's input for another workflow, in both shapes (small: Encrypt; large:
    // a data key): copied from that workflow's history, it does not open here.
    let e = init(Some(mesh.sealed_input("wf-other", 1_000, 100, "").await)).await.unwrap_err();
    assert_refused(&e, Refusal::InputNotOwnerSealed, "input for another workflow");
    let big = "n".repeat(6000);
    let large = mesh.sealed_input("wf-other", 1_000, 100, &big).await;
    assert!(matches!(large.sealed, Some(sealed_input::Sealed::DataKey(_))), "over 4 KiB takes a data key");
    let e = init(Some(large)).await.unwrap_err();
    assert_refused(&e, Refusal::InputNotOwnerSealed, "large input for another workflow");
    init(Some(mesh.sealed_input(wf, 1_000, 100, &big).await)).await.expect("a large input opens in its workflow");
    // The owner's key, this workflow, but another context (one more pair).
    let owner = mesh.owner_kms().await;
    let mut other_context = input_context(wf);
    other_context.insert("extra".into(), "1".into());
    let blob = owner
        .encrypt()
        .key_id(&mesh.tsk.input_key_arn)
        .plaintext(Blob::new(owner_input(&mesh, 1_000)))
        .set_encryption_context(Some(other_context))
        .send()
        .await
        .expect("the owner may Encrypt with a context of its choosing")
        .ciphertext_blob()
        .unwrap()
        .as_ref()
        .to_vec();
    let e = init(kms(blob)).await.unwrap_err();
    assert_refused(&e, Refusal::InputNotOwnerSealed, "another encryption context");
    // Nor can the host make one: the input key lets only the owner Encrypt.
    let host = mesh.instance_kms().await;
    let r = host
        .encrypt()
        .key_id(&mesh.tsk.input_key_arn)
        .plaintext(Blob::new(owner_input(&mesh, 9_999_999)))
        .set_encryption_context(Some(input_context(wf)))
        .send()
        .await;
    assert_eq!(r.unwrap_err().code(), Some("AccessDeniedException"), "the host seals an input");
    let r = host
        .generate_data_key()
        .key_id(&mesh.tsk.input_key_arn)
        .key_spec(DataKeySpec::Aes256)
        .set_encryption_context(Some(input_context(wf)))
        .send()
        .await;
    assert_eq!(r.unwrap_err().code(), Some("AccessDeniedException"), "the host gets an input data key");
    // An owner input without an owner key to seal results to.
    let no_key = WorkflowInput {
        input: LedgerInput { initial_balance: 5, rate_bps: 1, ..Default::default() }.encode_to_vec(),
        ..Default::default()
    };
    let blob =
        kms_blob(enclavemesh_owner::seal_input(&owner, &mesh.tsk.input_key_arn, "wf-keyless", &no_key).await.unwrap());
    let e = a
        .init(InitRequest { workflow_id: "wf-keyless".into(), input: kms(blob), ..Default::default() })
        .await
        .unwrap_err();
    assert_refused(&e, Refusal::InvalidInput, "no owner public key");
    assert!(e.message().contains("owner"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_a_workflow_started_with_a_host_made_input_fails_non_retryably() {
    let (l, _) = Loop::start(AgentBRoute::Direct).await;
    // What a host can get: an owner's input from another workflow's history.
    let stolen = l.mesh.sealed_input_b64("wf-someone-else", 1_000, 100, "").await;
    let file = l.mesh.logs_dir().join("stolen.b64");
    std::fs::write(&file, stolen).unwrap();
    let wf = "wf-minted";
    let (ok, lines, all) = l.trigger(wf, 3, &["--sealed-input", file.to_str().unwrap(), "--no-reveal"]);
    assert!(!ok, "{all}");
    let failed = lines.iter().find(|v| v["event"] == "failed").unwrap_or_else(|| panic!("{all}"));
    assert_eq!(failed["failure"]["type"], "input_not_owner_sealed", "{all}");
    assert_eq!(failed["failure"]["non_retryable"], true, "{all}");
    // One attempt, no state: InitState ran once and nothing was sealed. In the default
    // (local) handoff that attempt is one local-activity marker carrying the failure; a
    // remote run would show one ActivityTaskFailed instead.
    let history = l.temporal.history_json(wf);
    assert!(!history.contains("ProcessState"), "no step after a refused Init");
    let attempts = history.matches("core_local_activity").count()
        + history.matches("ActivityTaskFailed").count()
        + history.matches("ACTIVITY_TASK_FAILED").count();
    assert_eq!(attempts, 1, "{history}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rerunning_an_older_step_forks_but_yields_only_ciphertext_and_is_on_the_record() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let wf = "wf-fork";
    let s0 = client(&sock_a).init(mesh.init_request(wf, 100_000, 500, "").await).await.unwrap().into_inner().state;
    let mut b = client(&sock_b);
    let step = |b: &mut AgentServiceClient<Channel>, state: Option<SealedEnvelope>, expected_step: u64| {
        let mut b = b.clone();
        async move {
            b.process(ProcessRequest { workflow_id: wf.into(), expected_step, state, ..Default::default() })
                .await
                .expect("Process")
                .into_inner()
                .state
                .unwrap()
        }
    };
    let s1 = step(&mut b, s0.clone(), 0).await;
    let s2 = step(&mut b, Some(s1.clone()), 1).await;
    assert_eq!(s2.step, 2);

    // The host presents step 0's envelope again, with its own step number: processed.
    let fork = step(&mut b, s0.clone(), 0).await;
    assert_eq!(fork.step, 1);
    assert_ne!(fork.ciphertext, s1.ciphertext, "a fresh envelope (new nonce)");
    // What the host holds is ciphertext: its Reveal is sealed to the owner key, and it
    // opens (for the owner only) to what the original step 1 already was.
    let reveal = |state: SealedEnvelope| {
        let mut b = b.clone();
        async move {
            b.reveal(RevealRequest {
                workflow_id: wf.into(),
                expected_step: state.step,
                state: Some(state),
                field: RevealField::Balance as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let (r_fork, r_orig) = (reveal(fork.clone()).await, reveal(s1).await);
    assert!(
        !B64.encode(r_fork.encode_to_vec()).contains("105000")
            && !r_fork.encode_to_vec().windows(6).any(|w| w == b"105000")
    );
    assert_eq!(mesh.open_reveal(wf, 1, &r_fork), "105000");
    assert_eq!(mesh.open_reveal(wf, 1, &r_fork), mesh.open_reveal(wf, 1, &r_orig), "same value as the original");
    let stranger = enclavemesh_owner::OwnerKey::generate();
    let sealed = r_fork.result.as_ref().unwrap();
    assert!(enclavemesh_owner::open_result(&stranger, wf, 1, RevealField::Balance.as_str_name(), sealed).is_err());
    // The fork cannot be merged back: step 2's envelope is not a continuation of it.
    let e = b
        .process(ProcessRequest { workflow_id: wf.into(), expected_step: 1, state: Some(s2), ..Default::default() })
        .await
        .unwrap_err();
    assert_refused(&e, Refusal::EnvelopeReplayed, "step 2 presented as step 1");

    // The audit trail shows step 0 processed twice (a record's step is the input's):
    // the owner, or an auditor, sees the fork.
    let out = std::process::Command::new(bin_path("enclavemesh"))
        .args(["audit", "fetch", "--agent", &format!("unix://{}", sock_b.display())])
        .output()
        .unwrap();
    let trail = String::from_utf8(out.stdout).unwrap();
    let processed_step_0 = trail
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == "process" && r["workflow_id"] == wf && r["step"] == 0 && r["outcome"] == "ok")
        .count();
    assert_eq!(processed_step_0, 2, "{trail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_state_sizes_do_not_show_the_balance_or_the_note() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let mut sizes = Vec::new();
    for (i, (balance, note)) in
        [(1_i64, String::new()), (9_000_000_000_000_i64, "a much longer secret note, ".repeat(12))].iter().enumerate()
    {
        let wf = format!("wf-size-{i}");
        let s0 = client(&sock_a).init(mesh.init_request(&wf, *balance, 500, note).await).await.unwrap().into_inner();
        let s0 = s0.state.unwrap();
        let s1 = client(&sock_b)
            .process(ProcessRequest {
                workflow_id: wf.clone(),
                expected_step: 0,
                state: Some(s0.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        sizes.push((s0.ciphertext.len(), s1.state.unwrap().ciphertext.len(), s1.summary.unwrap().ciphertext_len));
    }
    assert_eq!(sizes[0], sizes[1], "the sizes differ with the values: {sizes:?}");
    // Positive control: a note past the bucket shows in the size (by a whole bucket).
    let long = "x".repeat(3000);
    let s = client(&sock_a).init(mesh.init_request("wf-size-long", 1, 500, &long).await).await.unwrap().into_inner();
    let long_len = s.state.unwrap().ciphertext.len();
    assert!(long_len >= sizes[0].0 + 1024, "{long_len} vs {sizes:?}");
}
