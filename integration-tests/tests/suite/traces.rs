//! Traces across the enclave boundary: one SecureStateLoop run is one trace, from the
//! trigger through the worker, both agents and KMS — and no secret is in anything
//! exported. The kms-sidecar only tunnels the enclave's TLS to KMS, so it cannot join a
//! KMS request's trace (the traceparent is inside the TLS); its own gRPC calls (the
//! agents' GetCredentials) are traced.
//!
//! Every process exports OTLP to an in-process receiver. The emulator, sidecar, worker
//! and CLI use the standard `http://` exporter; the agents export the way an enclave
//! does: to a socket (`unix://` here, `vsock://3:4317` in production) where a plain
//! `vsock-bridge` relays the bytes to the collector.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use enclavemesh_harness::mesh::{contains_secret, random_pcr0};
use enclavemesh_harness::temporal::{Temporal, expected_balance, history_haystack};
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, bin_path, recorder, wait_for};
use enclavemesh_telemetry::testing::{OtlpReceiver, ReceivedSpan};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

fn unix(p: &Path) -> String {
    format!("unix://{}", p.display())
}

fn env(endpoint: &str) -> Vec<(String, String)> {
    vec![("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), endpoint.to_string())]
}

/// Starts an agent with its own OTLP endpoint (the relay socket) and waits until it serves.
fn start_agent(
    mesh: &DevMesh,
    name: &str,
    kind: &str,
    pcr0: &str,
    otlp: &str,
    sidecar: &str,
) -> (Proc, std::path::PathBuf) {
    let (mut cmd, sock) = mesh.agent_command_via(name, kind, Some(pcr0), sidecar);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp);
    let mut p = Proc::spawn(name, cmd, mesh.logs_dir());
    wait_for(&format!("{name} socket"), Duration::from_secs(60), || {
        p.assert_running();
        sock.exists()
    });
    (p, sock)
}

fn describe(spans: &[&ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "  {:<20} {:<45} kind={:?} id={} parent={}\n",
                s.service_name().unwrap_or_default(),
                s.name(),
                s.kind(),
                s.span_id(),
                s.parent_span_id()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_one_trace_per_run_across_worker_agents_and_kms_without_secrets() {
    let receiver = OtlpReceiver::start(&"tcp://127.0.0.1:0".parse().unwrap()).await.expect("receiver");
    let endpoint = receiver.endpoint();
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start_with_env(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }, env(&endpoint)).await;

    // The enclave relay path: agents export to a socket; a vsock-bridge copies the bytes
    // to the collector (here the receiver's TCP port).
    let relay_sock = mesh.logs_dir().join("otlp.sock");
    let relay_target = format!("tcp://{}", receiver.address().to_string().trim_start_matches("tcp://"));
    let mut relay_cmd = std::process::Command::new(bin_path("vsock-bridge"));
    relay_cmd.arg("--listen").arg(unix(&relay_sock)).arg("--target").arg(&relay_target);
    enclavemesh_harness::mesh::apply_env(&mut relay_cmd, &env(&endpoint), "otlp-relay");
    let mut relay = Proc::spawn("otlp-relay", relay_cmd, mesh.logs_dir());
    wait_for("relay socket", Duration::from_secs(20), || {
        relay.assert_running();
        relay_sock.exists()
    });

    // Every parent-side link the run's data crosses is recorded: the worker's calls to
    // both agents, and the sidecar's relay to KMS (a second sidecar, behind a recorder,
    // serves the agents).
    let (sidecar2, sidecar2_addr, kms_rec) = mesh.start_recorded_sidecar().await;

    let relay_endpoint = unix(&relay_sock);
    let (mut a, sock_a) = start_agent(&mesh, "agent-a", "ledger-init", &pcr0, &relay_endpoint, &sidecar2_addr);
    let (mut b, sock_b) = start_agent(&mesh, "agent-b", "interest", &pcr0, &relay_endpoint, &sidecar2_addr);
    let rec_sock = |n: &str| format!("unix://{}", mesh.logs_dir().join(n).display()).parse().unwrap();
    let (rec_a_addr, rec_a) = recorder::start(&rec_sock("rec-a.sock"), unix(&sock_a).parse().unwrap()).await;
    let (rec_b_addr, rec_b) = recorder::start(&rec_sock("rec-b.sock"), unix(&sock_b).parse().unwrap()).await;
    let temporal = Temporal::start(mesh.logs_dir());
    let mut worker = temporal.start_worker_with_env(
        mesh.logs_dir(),
        "traces",
        &rec_a_addr.to_string(),
        &rec_b_addr.to_string(),
        &env(&endpoint),
    );

    // The data owner's input: a distinctive balance, rate and note. A marker planted on
    // purpose in the (non-secret) workflow id is the scans' positive control.
    let marker = format!("PLAINTEXT-MARKER-{}", &random_pcr0()[..24]);
    let planted = format!("PLANTED{}", &random_pcr0()[..20]);
    let wf = format!("wf-traced-{planted}");
    let wf = wf.as_str();
    let (balance, rate) = (7_391_046_215_i64, 487_u32);
    let mut cli_env = env(&endpoint);
    cli_env.extend(mesh.owner_env());
    let (balance_s, rate_s, sock_b_s) = (balance.to_string(), rate.to_string(), unix(&sock_b));
    let args = [
        "trigger",
        "--workflow-id",
        wf,
        "--steps",
        "2",
        "--initial-balance",
        &balance_s,
        "--rate-bps",
        &rate_s,
        "--note",
        &marker,
        "--reveal-agent",
        &sock_b_s,
    ];
    let (ok, lines, cli_out) = tokio::task::block_in_place(|| temporal.cli_with_env("traces", &args, &cli_env));
    assert!(ok, "trigger failed: {cli_out}");
    assert!(lines.iter().any(|v| v["event"] == "completed"), "{cli_out}");
    // The trigger opened the final balance on the client, with the owner key.
    let revealed = lines.iter().find(|v| v["event"] == "revealed").unwrap_or_else(|| panic!("{cli_out}"));
    assert_eq!(revealed["value"], expected_balance(balance, rate, 2).to_string(), "{cli_out}");

    // Wait for the whole trace: the trigger span (exported when the CLI exits), the
    // Decrypt of the input reaching the emulator, and the last Process on agent B.
    let trigger_of = |spans: &[ReceivedSpan]| -> Option<String> {
        spans
            .iter()
            .find(|s| s.name() == "trigger SecureStateLoop" && s.attr_str("workflow.id").as_deref() == Some(wf))
            .map(ReceivedSpan::trace_id)
    };
    let spans = receiver
        .wait_for_spans(Duration::from_secs(60), |spans| {
            let Some(t) = trigger_of(spans) else { return false };
            let in_trace: Vec<_> = spans.iter().filter(|s| s.trace_id() == t).collect();
            let services: BTreeSet<_> = in_trace.iter().filter_map(|s| s.service_name()).collect();
            let processes = in_trace
                .iter()
                .filter(|s| s.service_name().as_deref() == Some("agent-b") && s.kind() == SpanKind::Server)
                .count();
            services.len() >= 5 && processes >= 2
        })
        .await;
    let trace_id = trigger_of(&spans).unwrap_or_else(|| panic!("no trigger span among {} spans", spans.len()));
    let trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id() == trace_id).collect();
    let by_id: HashMap<String, &ReceivedSpan> = trace.iter().map(|s| (s.span_id(), *s)).collect();
    let shape = describe(&trace);
    println!("trace {trace_id}:\n{shape}");

    // One trace id across every program.
    let services: BTreeSet<String> = trace.iter().filter_map(|s| s.service_name()).collect();
    for svc in ["enclavemesh", "enclavemesh-worker", "agent-a", "agent-b", "kms-emulator"] {
        assert!(services.contains(svc), "{svc} missing from trace {trace_id}:\n{shape}");
    }
    let parent = |s: &ReceivedSpan| by_id.get(&s.parent_span_id()).copied();
    let of = |svc: &str, kind: SpanKind| -> Vec<&ReceivedSpan> {
        trace.iter().copied().filter(|s| s.service_name().as_deref() == Some(svc) && s.kind() == kind).collect()
    };

    // trigger → activity spans (one per step: InitState + 2 x ProcessState).
    let trigger = trace.iter().find(|s| s.name() == "trigger SecureStateLoop").unwrap();
    assert!(trigger.parent_span_id().is_empty(), "the trigger span is the root");
    let activities: Vec<_> = trace.iter().filter(|s| s.name().starts_with("activity ")).collect();
    assert_eq!(activities.len(), 3, "one activity span per step:\n{shape}");
    for act in &activities {
        assert_eq!(act.parent_span_id(), trigger.span_id(), "{} is a child of the trigger:\n{shape}", act.name());
        assert_eq!(act.attr_str("workflow.id").as_deref(), Some(wf));
        assert_eq!(act.attr_str("outcome").as_deref(), Some("ok"));
        assert!(act.attr_int("key_version").is_some() && act.attr_int("out_bytes").is_some(), "{:?}", act.attr_keys());
    }
    let steps: BTreeSet<i64> = activities.iter().filter_map(|s| s.attr_int("step")).collect();
    assert_eq!(steps, BTreeSet::from([0, 1, 2]));

    // worker client span → agent server span (traceparent in gRPC metadata over the transport).
    for (agent, method, n) in [("agent-a", "Init", 1), ("agent-b", "Process", 2)] {
        let servers: Vec<_> = of(agent, SpanKind::Server)
            .into_iter()
            .filter(|s| s.name().ends_with(&format!("AgentService/{method}")))
            .collect();
        assert_eq!(servers.len(), n, "{agent} {method} server spans:\n{shape}");
        for srv in servers {
            let client =
                parent(srv).unwrap_or_else(|| panic!("{agent} server span has no parent in the trace:\n{shape}"));
            assert_eq!(client.service_name().as_deref(), Some("enclavemesh-worker"));
            assert_eq!(client.kind(), SpanKind::Client);
            assert_eq!(client.name(), srv.name());
            assert!(
                parent(client).is_some_and(|a| a.name().starts_with("activity ")),
                "client span under its activity:\n{shape}"
            );
        }
    }
    // The agents' handler spans carry key version, sizes and outcome.
    let handlers: Vec<_> = trace
        .iter()
        .filter(|s| s.service_name().as_deref() == Some("agent-b") && s.attr_str("rpc").as_deref() == Some("Process"))
        .collect();
    assert_eq!(handlers.len(), 2, "{shape}");
    for h in handlers {
        assert_eq!(h.attr_str("outcome").as_deref(), Some("ok"));
        for k in ["key_version", "in_bytes", "out_bytes", "in_key_version"] {
            assert!(h.attr_int(k).is_some(), "{k} missing: {:?}", h.attr_keys());
        }
    }

    // agent A's KMS client span → emulator server span (the input's Decrypt). The
    // traceparent rides inside the enclave's TLS: the sidecar in between carries bytes
    // it cannot read, so it has no span in this request's path.
    let emulator_spans = of("kms-emulator", SpanKind::Server);
    assert!(!emulator_spans.is_empty(), "{shape}");
    for em in &emulator_spans {
        let kms_client = parent(em).unwrap_or_else(|| panic!("emulator span without parent:\n{shape}"));
        assert_eq!(kms_client.service_name().as_deref(), Some("agent-a"));
        assert_eq!(kms_client.kind(), SpanKind::Client);
        assert_eq!(kms_client.name(), "KMS/Decrypt");
        assert!(parent(kms_client).is_some_and(|p| p.name() == "init"), "under the Init handler:\n{shape}");
        assert_eq!(em.name(), "KMS/Decrypt");
        assert_eq!(em.attr_str("eventName").as_deref(), Some("Decrypt"));
        assert_eq!(em.attr_str("outcome").as_deref(), Some("ok"));
        let input_key = &mesh.tsk.input_key_arn;
        assert!(em.attr_str("keyId").is_some_and(|k| input_key.ends_with(&k)), "{:?}", em.span.attributes);
        for k in em.attr_keys() {
            assert!(
                // Its own three, plus the source location tracing-opentelemetry adds to every span.
                ["eventName", "keyId", "outcome", "target"].contains(&k.as_str())
                    || k.starts_with("code.")
                    || k.starts_with("thread."),
                "unexpected emulator span attribute {k}"
            );
        }
    }

    // The sidecar's own hop is traced where it has one: the agents' bootstrap calls
    // (GetCredentials) join the sidecar's server spans, whatever trace they are in.
    let all: HashMap<String, &ReceivedSpan> = spans.iter().map(|s| (s.span_id(), s)).collect();
    let creds: Vec<_> = spans
        .iter()
        .filter(|s| s.service_name().as_deref() == Some("kms-sidecar") && s.kind() == SpanKind::Server)
        .filter(|s| s.name().ends_with("KmsForwarder/GetCredentials"))
        .collect();
    assert!(!creds.is_empty(), "no sidecar GetCredentials span among {} spans", spans.len());
    for srv in creds {
        let client = all.get(&srv.parent_span_id()).unwrap_or_else(|| panic!("sidecar span without its client"));
        assert!(matches!(client.service_name().as_deref(), Some("agent-a" | "agent-b")), "{:?}", client.service_name());
        assert_eq!(client.kind(), SpanKind::Client);
    }

    // Metrics: flushed when the processes stop gracefully.
    worker.terminate();
    a.terminate();
    b.terminate();
    for s in mesh.sidecar.iter().chain(std::iter::once(&sidecar2)) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(s.pid().to_string()).status();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let want = ["rpc.server.duration", "rpc.client.duration", "enclavemesh.kms.calls"];
    while !want.iter().all(|m| receiver.metric_names().iter().any(|n| n == m)) && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names = receiver.metric_names();
    for m in want {
        assert!(names.iter().any(|n| n == m), "metric {m} not exported; got {names:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // No secret anywhere in what was exported (every span, event, resource, metric of
    // every process, not just this trace) or logged.
    let mut exported = Vec::new();
    for req in receiver.trace_requests() {
        exported.extend(req.encode_to_vec());
    }
    for req in receiver.metric_requests() {
        exported.extend(req.encode_to_vec());
    }
    let logs = mesh.all_logs();
    let history = history_haystack(&temporal.history_json(wf));
    let mut database = Vec::new();
    for entry in std::fs::read_dir(&temporal.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("temporal.db")) {
            database.extend(std::fs::read(&path).unwrap());
        }
    }
    let worker_agent = [rec_a.bytes(), rec_b.bytes()].concat();
    let kms_traffic = kms_rec.bytes();
    let audit = std::fs::read(mesh.audit_log()).unwrap();

    // What the data owner put in, and every state it leads to.
    let mut secrets: Vec<(String, Vec<u8>)> = vec![("the note".into(), marker.clone().into_bytes())];
    for step in 0..=2 {
        let b = expected_balance(balance, rate, step).to_string();
        secrets.push((format!("the balance after step {step} ({b})"), b.into_bytes()));
    }
    for form in [
        format!("rate_bps\":{rate}"),
        format!("rateBps\":{rate}"),
        format!("rate_bps={rate}"),
        format!("rate_bps: {rate}"),
    ] {
        secrets.push((format!("the rate ({form})"), form.into_bytes()));
    }
    secrets.push(("the TSK".into(), mesh.tsk.plaintext.to_vec()));
    let places: [(&str, &[u8], bool); 7] = [
        ("decoded history", &history, true),
        ("the Temporal database file", &database, true),
        ("process logs", logs.as_bytes(), true),
        ("exported spans and metrics", &exported, true),
        ("worker<->agent traffic", &worker_agent, true),
        ("sidecar<->KMS traffic", &kms_traffic, false),
        ("the KMS audit log", &audit, false),
    ];
    for (place, bytes, holds_workflow_id) in places {
        assert!(bytes.len() > 1000, "{place} was recorded ({} bytes)", bytes.len());
        // Positive control: the scan finds what was planted where it is expected.
        if holds_workflow_id {
            assert!(contains_secret(bytes, planted.as_bytes()), "positive control: the planted marker is in {place}");
        }
        for (what, secret) in &secrets {
            assert!(!contains_secret(bytes, secret), "{what} found in {place}");
        }
    }
    // The KMS link is TLS the enclave ends: only the server name is readable there.
    assert!(contains_secret(&kms_traffic, b"kms.us-east-1.amazonaws.com"), "positive control: the SNI is readable");
    assert!(!contains_secret(&kms_traffic, planted.as_bytes()), "the encryption context crossed the parent in clear");
    assert!(!contains_secret(cli_out.as_bytes(), marker.as_bytes()), "the note in the trigger's output");
    // Exporting worked everywhere: no exporter errors in any log.
    let errors = exporter_errors(&logs);
    assert!(errors.is_empty(), "exporter errors:\n{}", errors.join("\n"));
    drop(relay);
}

/// Log lines that report an OpenTelemetry/OTLP export problem.
fn exporter_errors(logs: &str) -> Vec<String> {
    logs.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            (l.contains("otlp") || l.contains("opentelemetry") || l.contains("export"))
                && (l.contains("error") || l.contains("warn") || l.contains("fail"))
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_without_otlp_every_program_runs_and_logs_no_exporter_error() {
    // Explicitly unset (empty = unset) for every process, whatever the test environment has.
    let off = vec![("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), String::new())];
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start_with_env(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }, off.clone()).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let (_bridge, _port) = mesh.start_bridge(&unix(&sock_b));
    let temporal = Temporal::start(mesh.logs_dir());
    let _worker = temporal.start_worker_with_env(mesh.logs_dir(), "untraced", &unix(&sock_a), &unix(&sock_b), &off);
    let mut with_logs = off.clone();
    with_logs.push(("RUST_LOG".into(), "info".into()));
    with_logs.extend(mesh.owner_env());
    let sock_b_s = unix(&sock_b);
    let args = ["trigger", "--workflow-id", "wf-untraced", "--steps", "1", "--reveal-agent", &sock_b_s];
    let (ok, lines, out) = tokio::task::block_in_place(|| temporal.cli_with_env("untraced", &args, &with_logs));
    assert!(ok, "trigger failed: {out}");
    assert!(lines.iter().any(|v| v["event"] == "completed"), "{out}");
    // Give the batch processors' would-be export interval (5 s) a chance to misbehave.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let logs = format!("{}{out}", mesh.all_logs());
    let errors = exporter_errors(&logs);
    assert!(errors.is_empty(), "exporter errors with OTLP unset:\n{}", errors.join("\n"));
    assert!(!logs.to_ascii_lowercase().contains("otlp"), "nothing mentions OTLP when it is off:\n{logs}");
}
