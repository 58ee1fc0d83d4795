//! The `enclavemesh` binary against a real Temporal dev server, the real worker and the
//! fake agents from `enclavemesh_harness::fake_agent`. Needs `.venv/bin/temporal`
//! (scripts/test.sh installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::time::{Duration, Instant};

use enclavemesh_harness::fake_agent::{fake_owner_key, opaque_sealed_input_b64};
use enclavemesh_harness::fake_stack::FakeStack;
use serde_json::Value;

const TASK_QUEUE: &str = "enclavemesh-cli-test";

async fn cli(server: &str, args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_enclavemesh"))
        .args(["--temporal-address", server, "--task-queue", TASK_QUEUE, "--ui-url", "http://127.0.0.1:9999"])
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.code().unwrap_or(-1), lines, stdout + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_and_reveal_through_the_cli() {
    let t0 = Instant::now();
    let stack = FakeStack::start(TASK_QUEUE);
    let (server, addr_b) = (&stack.server, &stack.addr_b);
    let pid = std::process::id();
    // The owner's side: a key file (the fakes seal to this key) and an input sealed
    // elsewhere (the fakes never open it), so no KMS is needed here.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("owner.key");
    enclavemesh_owner::OwnerKey(fake_owner_key()).save(&key_file, false).unwrap();
    let key_file = key_file.display().to_string();
    let sealed_file = dir.path().join("input.sealed");
    std::fs::write(&sealed_file, opaque_sealed_input_b64()).unwrap();
    let sealed_file = sealed_file.display().to_string();
    let agent = addr_b.to_string();
    let trigger = |steps: &'static str, id: String| {
        let (server, key_file, sealed_file, agent) =
            (server.address.clone(), key_file.clone(), sealed_file.clone(), agent.clone());
        async move {
            let args = [
                "--json",
                "trigger",
                "--steps",
                steps,
                "--workflow-id",
                &id,
                "--sealed-input",
                &sealed_file,
                "--owner-key",
                &key_file,
                "--reveal-agent",
                &agent,
            ];
            cli(&server, &args).await
        }
    };

    // Success: progress lines for steps 0..=3, then the completed summary.
    let ok_id = format!("cli-ok-{pid}");
    let (code, lines, text) = trigger("3", ok_id.clone()).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(lines[0]["event"], "started");
    assert_eq!(lines[0]["ui_url"], format!("http://127.0.0.1:9999/namespaces/default/workflows/{ok_id}"));
    let steps: Vec<u64> =
        lines.iter().filter(|l| l["event"] == "step").map(|l| l["summary"]["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 1, 2, 3], "{text}");
    let done = lines.iter().find(|l| l["event"] == "completed").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(done["steps"], 3);
    assert_eq!(done["final_envelope_sha256"], done["summaries"][3]["envelope_sha256"]);

    // The trigger revealed the final balance, sealed by the agent to the owner key and
    // opened here (the fake answers every field with the step).
    let revealed = lines.last().unwrap();
    assert_eq!((revealed["event"].as_str(), revealed["value"].as_str()), (Some("revealed"), Some("3")), "{text}");

    // Reveal: the agent seals the field to the owner key; the CLI opens it with that key.
    let reveal = |field: &'static str, id: String, extra: &'static [&'static str], key: String| {
        let (server, agent) = (server.address.clone(), agent.clone());
        async move {
            let mut args = vec![
                "--json",
                "reveal",
                "--agent",
                &agent,
                "--field",
                field,
                "--workflow-id",
                &id,
                "--owner-key",
                &key,
            ];
            args.extend_from_slice(extra);
            cli(&server, &args).await
        }
    };
    let (code, lines, text) = reveal("step", ok_id.clone(), &[], key_file.clone()).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!((lines[0]["field"].as_str(), lines[0]["value"].as_str()), (Some("step"), Some("3")));
    // Another owner's key does not open it.
    let other_key = dir.path().join("other.key");
    enclavemesh_owner::OwnerKey::generate().save(&other_key, false).unwrap();
    let (code, _, text) = reveal("step", ok_id.clone(), &[], other_key.display().to_string()).await;
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("owner key"), "{text}");

    // Typed failure: exit 2, EnvelopeTampered, steps 0..=2 still reported.
    let bad_id = format!("cli-tamper3-{pid}");
    let (code, lines, text) = trigger("5", bad_id.clone()).await;
    assert_eq!(code, 2, "{text}");
    let failed = lines.iter().find(|l| l["event"] == "failed").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(failed["failure"]["type"], "envelope_tampered", "{text}");
    assert_eq!(failed["failure"]["non_retryable"], true);
    assert_eq!(failed["failure"]["details"]["last_good_step"], 2);
    assert_eq!(lines.iter().filter(|l| l["event"] == "step").count(), 3, "{text}");

    // Human output of the same failure names the kind; reveal needs --last-good for it.
    let (code, _, text) = cli(
        &server.address,
        &["reveal", "--agent", &agent, "--field", "step", "--workflow-id", &bad_id, "--owner-key", &key_file],
    )
    .await;
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("--last-good"), "{text}");
    let (code, _, text) = cli(
        &server.address,
        &[
            "reveal",
            "--agent",
            &agent,
            "--field",
            "step",
            "--workflow-id",
            &bad_id,
            "--owner-key",
            &key_file,
            "--last-good",
        ],
    )
    .await;
    assert_eq!((code, text.trim()), (0, "2"));

    // --no-wait returns right after the start.
    let (code, lines, text) = cli(
        &server.address,
        &[
            "--json",
            "trigger",
            "--no-wait",
            "--sealed-input",
            &sealed_file,
            "--workflow-id",
            &format!("cli-nowait-{pid}"),
        ],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["workflow_id"], format!("cli-nowait-{pid}"));

    tokio::time::timeout(Duration::from_secs(30), stack.worker.stop()).await.unwrap().unwrap();
    eprintln!("cli e2e total: {:?}", t0.elapsed());
}
