//! Audit trail on real agents: every Init/Process/Reveal (and the bootstrap) is
//! recorded without plaintext; `enclavemesh audit fetch` exports it, `audit verify`
//! accepts it intact and names the record when one is removed, edited or cut off.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use enclavemesh_harness::mesh::{contains_secret, random_pcr0};
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, bin_path, wait_for};
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tonic::transport::Channel;

fn unix(p: &Path) -> String {
    format!("unix://{}", p.display())
}

async fn client(sock: &Path) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(enclavemesh_transport::channel(&unix(sock).parse().unwrap()).unwrap())
}

/// Runs `enclavemesh ARGS…`; returns (exit code, stdout).
fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin_path("enclavemesh")).args(args).output().expect("enclavemesh runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `enclavemesh --json audit verify FILE` → (exit code, JSON result).
fn verify(file: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let f = file.display().to_string();
    let mut args = vec!["--json", "audit", "verify", f.as_str()];
    args.extend_from_slice(extra);
    let (code, out) = cli(&args);
    let v = out.lines().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| panic!("no JSON in {out}"));
    (code, v)
}

fn start_agent_with(mesh: &DevMesh, name: &str, kind: &str, pcr0: &str, extra: &[&str]) -> (Proc, PathBuf) {
    let (mut cmd, sock) = mesh.agent_command(name, kind, Some(pcr0));
    cmd.args(extra);
    let mut p = Proc::spawn(name, cmd, mesh.logs_dir());
    wait_for(&format!("{name} socket"), Duration::from_secs(60), || {
        p.assert_running();
        sock.exists()
    });
    (p, sock)
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_log_is_complete_plaintext_free_and_tamper_evident() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let local_b = mesh.logs_dir().join("agent-b.audit.jsonl");
    let local_b_s = local_b.display().to_string();
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (_b, sock_b) = start_agent_with(
        &mesh,
        "agent-b",
        "interest",
        &pcr0,
        &["--audit-log", &local_b_s, "--audit-checkpoint-ms", "100"],
    );

    let marker = format!("PLAINTEXT-MARKER-{}", &random_pcr0()[..24]);
    let balance: i64 = 7_316_492_851;

    // Init on A, three Process steps on B, one tampered Process (refused), one Reveal.
    let wf = "wf-audit";
    let init =
        client(&sock_a).await.init(mesh.init_request(wf, balance, 300, &marker).await).await.unwrap().into_inner();
    let init_digest = hex::encode(&init.summary.as_ref().unwrap().envelope_sha256);
    let mut env = init.state.unwrap();
    let mut b = client(&sock_b).await;
    let mut digests = Vec::new();
    for step in 0..3u64 {
        let r = b
            .process(ProcessRequest {
                workflow_id: wf.into(),
                expected_step: step,
                state: Some(env),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        digests.push(hex::encode(&r.summary.unwrap().envelope_sha256));
        env = r.state.unwrap();
    }
    let mut forged = env.clone();
    forged.ciphertext[0] ^= 1;
    let err = b
        .process(ProcessRequest { workflow_id: wf.into(), expected_step: 3, state: Some(forged), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss);
    let revealed = b
        .reveal(RevealRequest {
            workflow_id: wf.into(),
            expected_step: 3,
            state: Some(env),
            field: RevealField::SecretNote as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mesh.open_reveal(wf, 3, &revealed), marker, "positive control: the marker is in the state");

    // Fetch both agents' trails through the RPC, as the parent would.
    let dir = mesh.logs_dir();
    let mut files = Vec::new();
    for (name, sock) in [("a", &sock_a), ("b", &sock_b)] {
        let (code, out) = cli(&["audit", "fetch", "--agent", &unix(sock)]);
        assert_eq!(code, 0, "{out}");
        let f = dir.join(format!("audit-{name}.jsonl"));
        std::fs::write(&f, &out).unwrap();
        files.push((f, out));
    }
    let (file_a, log_a) = &files[0];
    let (file_b, log_b) = &files[1];

    // Intact: verifies, tail checked against the signed head, attestation against the dev root.
    let root = mesh.dev_dir().join("dev-ca/root.der").display().to_string();
    for f in [file_a, file_b] {
        let (code, v) = verify(f, &["--attestation-root", &root, "--expect-pcr0", &pcr0]);
        assert_eq!(code, 0, "{v}");
        assert_eq!(v["signed_heads"], 1);
        assert_eq!(v["boots"][0]["attestation_verified"], true);
        assert_eq!(v["boots"][0]["pcr0"], pcr0.as_str());
    }
    let (_, v) = verify(file_b, &[]);
    assert_eq!(v["records"], 6, "bootstrap + 3 Process + refused Process + Reveal: {log_b}");

    // The records say what happened, with the digests the callers saw.
    let recs = |log: &str| {
        log.lines()
            .filter(|l| !l.starts_with("{\"head\""))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let ra = recs(log_a);
    assert_eq!(ra[0]["event"], "bootstrap");
    assert_eq!(ra[1]["event"], "init");
    assert_eq!(ra[1]["output_sha256"], init_digest.as_str());
    assert_eq!(ra[1]["key_version"], 1);
    let rb = recs(log_b);
    let events: Vec<_> = rb.iter().map(|r| r["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(events, ["bootstrap", "process", "process", "process", "process", "reveal"]);
    assert_eq!(rb[1]["input_sha256"], init_digest.as_str());
    for i in 0..3 {
        assert_eq!(rb[i + 1]["output_sha256"], digests[i].as_str());
        assert_eq!(rb[i + 1]["outcome"], "ok");
    }
    assert_eq!(rb[4]["outcome"], "error");
    assert_eq!(rb[4]["error"], "envelope_tampered");
    assert_eq!(rb[5]["detail"], "field=REVEAL_FIELD_SECRET_NOTE");

    // No plaintext: neither the note, nor the balance, nor the TSK.
    for log in [log_a, log_b] {
        assert!(!contains_secret(log.as_bytes(), marker.as_bytes()), "marker in audit log");
        assert!(!log.contains(&balance.to_string()), "balance in audit log");
        assert!(!contains_secret(log.as_bytes(), &mesh.tsk.plaintext), "TSK in audit log");
    }

    // The local --audit-log copy holds the same records, and verifies once the agent's
    // next checkpoint (every 100 ms here) has signed the newest of them.
    let mut last = serde_json::Value::Null;
    wait_for("local audit log signed by a checkpoint", Duration::from_secs(20), || {
        let (code, v) = verify(&local_b, &[]);
        last = v;
        code == 0
    });
    assert_eq!(last["records"], 6, "{last}");
    let local = std::fs::read_to_string(&local_b).unwrap();
    let not_head = |l: &&str| !l.starts_with("{\"head\"");
    let fetched_records: Vec<&str> = log_b.lines().filter(not_head).collect();
    assert_eq!(local.lines().filter(not_head).collect::<Vec<_>>(), fetched_records);
    assert!(local.lines().filter(|l| !not_head(l)).count() >= 2, "checkpoint lines in {local}");

    let lines: Vec<&str> = log_b.lines().collect();
    let write = |name: &str, ls: &[String]| {
        let p = dir.join(name);
        std::fs::write(&p, ls.join("\n") + "\n").unwrap();
        p
    };
    let owned: Vec<String> = lines.iter().map(|s| s.to_string()).collect();

    // Removed record → names its seq.
    let mut removed = owned.clone();
    removed.remove(2);
    let (code, v) = verify(&write("removed.jsonl", &removed), &[]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["seq"], 2, "{v}");
    assert!(v["error"].as_str().unwrap().contains("removed"), "{v}");

    // Edited field (the refused call made to look successful) → names its seq.
    let mut edited = owned.clone();
    edited[4] = edited[4].replace("\"outcome\":\"error\"", "\"outcome\":\"ok\"");
    assert_ne!(edited[4], owned[4]);
    let (code, v) = verify(&write("edited.jsonl", &edited), &[]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["seq"], 4, "{v}");
    assert!(v["error"].as_str().unwrap().contains("edited"), "{v}");

    // Tail cut off (the head line kept) → detected against the signed head.
    let mut cut = owned.clone();
    cut.remove(cut.len() - 2);
    let (code, v) = verify(&write("cut.jsonl", &cut), &[]);
    assert_eq!(code, 2, "{v}");
    assert!(v["error"].as_str().unwrap().contains("tail"), "{v}");

    // And a human-readable failure line without --json.
    let (code, out) = cli(&["audit", "verify", &dir.join("removed.jsonl").display().to_string()]);
    assert_eq!(code, 2);
    assert!(out.contains("FAILED: record seq 2 was removed"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bounded_trail_evicts_the_oldest_and_fetch_and_verify_say_so() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = start_agent_with(&mesh, "agent-a", "ledger-init", &pcr0, &["--audit-max-records", "2"]);
    let mut a = client(&sock_a).await;
    for i in 0..4 {
        a.init(mesh.init_request(&format!("wf-evict-{i}"), 1, 1, "").await).await.unwrap();
    }
    // Records 0 (bootstrap), 1..=4 (Init): the agent keeps record 0 and the newest 2.
    let (code, out) = cli(&["audit", "fetch", "--agent", &unix(&sock_a)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records seq 1..=2 are no longer in the agent's memory"), "{out}");
    let seqs: Vec<u64> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [0, 3, 4]);
    let file = mesh.logs_dir().join("evicted.jsonl");
    std::fs::write(&file, out.lines().filter(|l| l.starts_with('{')).collect::<Vec<_>>().join("\n")).unwrap();
    let (code, v) = verify(&file, &[]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["seq"], 1, "{v}");
}

/// The host's forgery: a trail of its own, signed with its own P-384 key and bound
/// through the agent's `Attest`, so that a genuine document "vouches" for it. Attest
/// puts a caller's bytes into the document only under the caller's domain, so the
/// document cannot bind an audit key, and `audit verify` names record 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_trail_whose_key_was_bound_through_attest_is_rejected_naming_record_0() {
    use enclavemesh_audit::{AuditTrail, Entry, Event, HeadLine};
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let root = mesh.dev_dir().join("dev-ca/root.der").display().to_string();
    let dir = mesh.logs_dir();
    let strict = ["--attestation-root", root.as_str(), "--expect-pcr0", pcr0.as_str()];

    // Positive control: the agent's own trail verifies with the same checks.
    let (code, out) = cli(&["audit", "fetch", "--agent", &unix(&sock_b)]);
    assert_eq!(code, 0, "{out}");
    let genuine = dir.join("genuine.jsonl");
    std::fs::write(&genuine, &out).unwrap();
    let (code, v) = verify(&genuine, &strict);
    assert_eq!(code, 0, "{v}");

    // The forged trail binds the host's key the way the agent binds its own (the
    // audit-key binding) or as raw key bytes: neither is what the document carries.
    let sock = sock_b.clone();
    let forged = |bind_raw: bool| {
        let sock = sock.clone();
        async move {
            let trail = AuditTrail::new("agent-b", None).unwrap();
            let user_data = if bind_raw {
                hex::decode(trail.signing_key_hex()).unwrap()
            } else {
                trail.signing_key_binding().to_vec()
            };
            let doc = client(&sock)
                .await
                .attest(AttestRequest { nonce: vec![7; 32], user_data })
                .await
                .expect("Attest answers any caller")
                .into_inner()
                .attestation_document;
            trail.bootstrap(&doc, "key_versions=1".into()).unwrap();
            trail.record(Entry { workflow_id: Some("wf-forged".into()), step: Some(1), ..Entry::new(Event::Process) });
            let fetched = trail.fetch(0, 100);
            let mut lines = fetched.records;
            lines.push(HeadLine { head: fetched.head }.to_line());
            lines.join("\n") + "\n"
        }
    };
    for (name, raw) in [("forged-binding.jsonl", false), ("forged-raw.jsonl", true)] {
        let f = dir.join(name);
        std::fs::write(&f, forged(raw).await).unwrap();
        let (code, v) = verify(&f, &strict);
        assert_eq!(code, 2, "{name}: {v}");
        assert_eq!(v["seq"], 0, "{name}: names record 0: {v}");
        assert!(v["error"].as_str().unwrap().contains("audit-key domain"), "{name}: {v}");
    }
}
