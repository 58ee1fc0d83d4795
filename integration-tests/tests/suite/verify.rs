//! `enclavemesh verify` / `scripts/trigger.sh --verify [--deep]`, the PCR0 rollout with the
//! real `scripts/setup-kms-policy.sh`, and the locally provokable troubleshooting messages
//! (README "Troubleshooting"): each failure prints its cause and its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use enclavemesh_attestation::{Nsm, SimulatedMeasurements, SimulatedNsm};
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, bin_path, free_port, repo_root, venv_bin, wait_for};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// nitro-cli `build-enclave` output shape, as enclave-image/build.sh writes it.
fn write_measurements(dir: &Path, pcr0: &str) -> PathBuf {
    let p = dir.join(format!("enclave-{}.eif.json", &pcr0[..8]));
    let json = serde_json::json!({"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": pcr0,
        "PCR1": "1".repeat(96), "PCR2": "2".repeat(96)}});
    std::fs::write(&p, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    p
}

struct Run {
    ok: bool,
    code: Option<i32>,
    out: String,
}

fn run(mut cmd: Command, what: &str) -> Run {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    println!("--- {what} (exit {:?})\n{out}", o.status.code());
    Run { ok: o.status.success(), code: o.status.code(), out }
}

fn verify_cmd(dev_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin_path("enclavemesh"));
    cmd.arg("verify").args(args).env("ENCLAVEMESH_DEV_DIR", dev_dir).env_remove("ENCLAVEMESH_TRUST_ANCHOR");
    cmd
}

fn line<'a>(out: &'a str, status: &str, check: &str) -> Option<&'a str> {
    out.lines().find(|l| l.starts_with(status) && l.split_whitespace().nth(1) == Some(check))
}

/// A mesh whose policy allows `policy`, one agent with `agent_pcr0` behind a bridge.
async fn mesh_with_agent(policy: Vec<String>, agent_pcr0: &str) -> (DevMesh, Proc, Proc, u16) {
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: policy }).await;
    let (agent, sock) = mesh.start_agent("agent-a", "ledger-init", Some(agent_pcr0));
    let (bridge, port) = mesh.start_bridge(&format!("unix://{}", sock.display()));
    (mesh, agent, bridge, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_deep_passes_when_the_agent_runs_the_built_image() {
    let pcr0 = random_pcr0();
    let (mesh, _agent, _bridge, port) = mesh_with_agent(vec![pcr0.clone()], &pcr0).await;
    let m = write_measurements(mesh.logs_dir(), &pcr0);
    let agent = format!("tcp://127.0.0.1:{port}");
    let m_s = m.display().to_string();
    let audit = mesh.audit_log().display().to_string();

    let r = run(
        verify_cmd(&mesh.dev_dir(), &["--agent", &agent, "--measurements", &m_s, "--deep", "--audit-log", &audit]),
        "enclavemesh verify --deep",
    );
    assert!(r.ok, "{}", r.out);
    for check in ["attest", "signature+chain", "freshness", "nonce", "debug-mode", "pcr0", "kms-decrypt"] {
        assert!(line(&r.out, "PASS", check).is_some(), "no PASS {check}: {}", r.out);
    }
    let pcr = line(&r.out, "PASS", "pcr0").unwrap();
    assert!(pcr.contains(&format!("agent={pcr0}")) && pcr.contains(&format!("build={pcr0}")), "{pcr}");
    assert!(line(&r.out, "PASS", "signature+chain").unwrap().contains("sha256"), "{}", r.out);
    assert!(line(&r.out, "PASS", "kms-decrypt").unwrap().contains(&format!("kms={pcr0}")), "{}", r.out);

    // The same through the operator's entry point.
    let mut cmd = Command::new(repo_root().join("scripts/trigger.sh"));
    cmd.args(["--verify", "--deep", "--agent", &agent, "--measurements", &m_s])
        .env("ENCLAVEMESH_BIN", bin_path("enclavemesh"))
        .env("ENCLAVEMESH_DEV_DIR", mesh.dev_dir());
    let r = run(cmd, "scripts/trigger.sh --verify --deep");
    assert!(r.ok, "{}", r.out);
    assert!(r.out.contains("OK    all checks passed"), "{}", r.out);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_fails_naming_pcr0_when_the_agent_is_not_the_built_image() {
    let built = random_pcr0();
    let running = random_pcr0();
    // The policy allows both (so the agent bootstraps), but the build says `built`.
    let (mesh, _agent, _bridge, port) = mesh_with_agent(vec![built.clone(), running.clone()], &running).await;
    let m = write_measurements(mesh.logs_dir(), &built);
    let agent = format!("tcp://127.0.0.1:{port}");
    let audit = mesh.audit_log().display().to_string();
    let m_s = m.display().to_string();

    let r = run(
        verify_cmd(&mesh.dev_dir(), &["--agent", &agent, "--measurements", &m_s, "--deep", "--audit-log", &audit]),
        "enclavemesh verify --deep (other PCR0)",
    );
    assert!(!r.ok);
    assert_eq!(r.code, Some(4), "{}", r.out);
    let fail = line(&r.out, "FAIL", "pcr0").unwrap_or_else(|| panic!("no FAIL pcr0: {}", r.out));
    assert!(fail.contains(&format!("agent={running}")) && fail.contains(&format!("build={built}")), "{fail}");
    let kms = line(&r.out, "FAIL", "kms-decrypt").unwrap_or_else(|| panic!("no FAIL kms-decrypt: {}", r.out));
    assert!(kms.contains(&running) && kms.contains(&format!("build={built}")), "{kms}");
    // The document itself is genuine: only the measurement is wrong.
    assert!(line(&r.out, "PASS", "signature+chain").is_some(), "{}", r.out);
    assert!(r.out.contains("FAILED checks: pcr0, kms-decrypt"), "{}", r.out);

    let mut cmd = Command::new(repo_root().join("scripts/trigger.sh"));
    cmd.args(["--verify", "--agent", &agent, "--measurements", &m_s])
        .env("ENCLAVEMESH_BIN", bin_path("enclavemesh"))
        .env("ENCLAVEMESH_DEV_DIR", mesh.dev_dir());
    let r = run(cmd, "scripts/trigger.sh --verify (other PCR0)");
    assert!(!r.ok && r.out.contains("FAILED checks: pcr0"), "{}", r.out);
}

/// A debug-mode enclave never gets the TSK (KMS refuses it, see trusted_side.rs), so its
/// refusal by `verify` is tested on a saved all-zero-PCR document.
#[test]
fn verify_refuses_a_debug_mode_document() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    let pcr0 = random_pcr0();
    let m = SimulatedMeasurements::from_pcr0_hex(&pcr0).unwrap().with_debug_mode(true);
    let nsm = SimulatedNsm::new(&dev, m).unwrap();
    let doc = nsm.attestation(None, Some(b"nonce"), None).unwrap();
    let doc_path = dir.path().join("debug.cose");
    std::fs::write(&doc_path, doc).unwrap();
    let meas = write_measurements(dir.path(), &pcr0);

    let r = run(
        verify_cmd(
            &dev,
            &["--document", &doc_path.display().to_string(), "--measurements", &meas.display().to_string()],
        ),
        "enclavemesh verify --document (debug mode)",
    );
    assert_eq!(r.code, Some(4), "{}", r.out);
    let fail = line(&r.out, "FAIL", "debug-mode").unwrap_or_else(|| panic!("no FAIL debug-mode: {}", r.out));
    assert!(fail.contains(&"0".repeat(96)) && fail.contains("debug-mode enclave"), "{fail}");
    assert!(line(&r.out, "PASS", "signature+chain").is_some(), "{}", r.out);
    assert!(line(&r.out, "SKIP", "nonce").is_some(), "{}", r.out);
    assert!(r.out.contains("FAILED checks: debug-mode, pcr0"), "{}", r.out);

    // Pinning the AWS root instead: the dev document is not trusted, and says why.
    let r = run(
        verify_cmd(
            &dev,
            &[
                "--document",
                &doc_path.display().to_string(),
                "--measurements",
                &meas.display().to_string(),
                "--trust-anchor",
                "aws",
            ],
        ),
        "enclavemesh verify --trust-anchor aws (dev document)",
    );
    let fail = line(&r.out, "FAIL", "signature+chain").unwrap_or_else(|| panic!("{}", r.out));
    assert!(fail.contains("AWS Nitro") || fail.contains("aws.nitro-enclaves"), "{fail}");
}

fn run_policy_script(mesh: &DevMesh, args: &[&str]) -> Run {
    let mut cmd = Command::new(repo_root().join("scripts/setup-kms-policy.sh"));
    cmd.args(["--target", "dev", "--endpoint", &mesh.kms_endpoint, "--key-id", &mesh.tsk.key_arn])
        .args(["--input-key-id", &mesh.tsk.input_key_arn])
        .args(args)
        .env("KMS_ENDPOINT", &mesh.kms_endpoint)
        .env("ENCLAVEMESH_DEV_DIR", mesh.dev_dir())
        .env(
            "PATH",
            format!("{}:{}", venv_bin("aws").parent().unwrap().display(), std::env::var("PATH").unwrap_or_default()),
        );
    run(cmd, &format!("setup-kms-policy.sh {}", args.join(" ")))
}

fn assert_refused(mesh: &DevMesh, name: &str, pcr0: &str) {
    let (cmd, _sock) = mesh.agent_command(name, "interest", Some(pcr0));
    let mut agent = Proc::spawn(name, cmd, mesh.logs_dir());
    let status = agent.wait_exit(Duration::from_secs(60));
    let log = agent.logs();
    assert!(!status.success(), "{name} must be refused: {log}");
    assert!(log.contains("AccessDenied") && log.contains(pcr0), "{log}");
    assert!(log.contains("scripts/setup-kms-policy.sh"), "fix missing: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pcr0_rollout_add_new_then_remove_old_with_the_policy_script() {
    let old = random_pcr0();
    let new = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![old.clone()] }).await;
    // Start from a policy written by the script itself (the shape operators have).
    let r = run_policy_script(&mesh, &[&old]);
    assert!(r.ok, "{}", r.out);

    let (_old1, _) = mesh.start_agent("agent-old-1", "interest", Some(&old));
    assert_refused(&mesh, "agent-new-early", &new);

    // Phase 1: allow the new image too; old and new both bootstrap.
    let r = run_policy_script(&mesh, &["--add", &new]);
    assert!(r.ok && r.out.contains(&new), "{}", r.out);
    let (_old2, _) = mesh.start_agent("agent-old-2", "interest", Some(&old));
    let (_new1, _) = mesh.start_agent("agent-new-1", "interest", Some(&new));

    // Phase 2: retire the old image; a freshly started old agent is refused, new still works.
    let r = run_policy_script(&mesh, &["--remove", &old]);
    assert!(r.ok, "{}", r.out);
    assert_refused(&mesh, "agent-old-3", &old);
    let (_new2, _) = mesh.start_agent("agent-new-2", "interest", Some(&new));

    // The last PCR0 cannot be removed (no enclave could decrypt any more).
    let r = run_policy_script(&mesh, &["--remove", &new]);
    assert!(!r.ok && r.out.contains("refusing to remove the last allowed PCR0"), "{}", r.out);
}

// ------------------------------------------------------------ troubleshooting messages

#[tokio::test(flavor = "multi_thread")]
async fn wrong_tsk_file_path_names_the_path_and_the_fix() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let missing = mesh.logs_dir().join("no-such-dir/encrypted-tsk.b64");
    let (cmd, _) = mesh.agent_command("agent-nofile", "interest", Some(&pcr0));
    // The mesh's agent command line, with --tsk-file pointing nowhere.
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut fixed = Command::new(cmd.get_program());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--tsk-file" {
            it.next();
            fixed.arg("--tsk-file").arg(&missing);
        } else {
            fixed.arg(a);
        }
    }
    let mut agent = Proc::spawn("agent-nofile", fixed, mesh.logs_dir());
    let status = agent.wait_exit(Duration::from_secs(30));
    let log = agent.logs();
    assert!(!status.success());
    assert!(log.contains("cannot read TSK file") && log.contains(&missing.display().to_string()), "{log}");
    assert!(log.contains("scripts/setup-kms.sh") && log.contains("--tsk-file"), "{log}");
}

#[test]
fn enclave_not_running_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    // Directly: nothing listens at the agent address.
    let r = run(verify_cmd(dir.path(), &["--agent", "unix:///nonexistent/agent.sock"]), "verify, no agent");
    assert!(!r.ok);
    let fail = line(&r.out, "FAIL", "attest").unwrap_or_else(|| panic!("{}", r.out));
    assert!(fail.contains("enclave not running") && fail.contains("nitro-cli run-enclave"), "{fail}");
    assert!(fail.contains("systemctl start enclavemesh-enclave@16"), "{fail}");

    // Through a bridge whose enclave is gone (the production shape: bridge up, enclave down).
    let port = free_port();
    let mut cmd = Command::new(bin_path("vsock-bridge"));
    cmd.args(["--listen", &format!("tcp://127.0.0.1:{port}"), "--target", "unix:///nonexistent/agent.sock"]);
    let mut bridge = Proc::spawn("vsock-bridge", cmd, dir.path());
    wait_for("bridge", Duration::from_secs(20), || {
        bridge.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let r = run(
        verify_cmd(dir.path(), &["--agent", &format!("tcp://127.0.0.1:{port}"), "--rpc-timeout-secs", "5"]),
        "verify, bridge up, enclave down",
    );
    assert!(!r.ok);
    let fail = line(&r.out, "FAIL", "attest").unwrap_or_else(|| panic!("{}", r.out));
    assert!(fail.contains("enclave not running"), "{fail}");
}

/// A genuine document with `pcr0` plus its measurements file, for the CloudTrail tests.
fn document_with(dir: &Path, pcr0: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dev = dir.join("dev");
    let nsm = SimulatedNsm::new(&dev, SimulatedMeasurements::from_pcr0_hex(pcr0).unwrap()).unwrap();
    let doc = dir.join("doc.cose");
    std::fs::write(&doc, nsm.attestation(None, None, None).unwrap()).unwrap();
    (dev, doc, write_measurements(dir, pcr0))
}

#[test]
fn cloudtrail_lookup_events_are_parsed_and_judged() {
    let fixtures = repo_root().join("integration-tests/fixtures");
    let fixture = fixtures.join("cloudtrail-lookup-events-decrypt.json");
    let pcr0 =
        std::fs::read_to_string(fixtures.join("cloudtrail-lookup-events-decrypt.pcr0")).unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (dev, doc, meas) = document_with(dir.path(), &pcr0);
    let (doc, meas) = (doc.display().to_string(), meas.display().to_string());

    let r = run(
        verify_cmd(
            &dev,
            &[
                "--document",
                &doc,
                "--measurements",
                &meas,
                "--deep",
                "--cloudtrail-file",
                &fixture.display().to_string(),
            ],
        ),
        "verify --deep --cloudtrail-file fixture",
    );
    assert!(r.ok, "{}", r.out);
    let pass = line(&r.out, "PASS", "kms-decrypt").unwrap_or_else(|| panic!("{}", r.out));
    assert!(pass.contains(&format!("kms={pcr0}")) && pass.contains("1 successful"), "{pass}");
    // The old image's events are reported, including the refused one.
    let others: Vec<&str> = r.out.lines().filter(|l| l.starts_with("INFO") && l.contains("other PCR0")).collect();
    assert_eq!(others.len(), 2, "{}", r.out);
    assert!(others.iter().any(|l| l.contains("outcome=AccessDenied")), "{}", r.out);

    // No events yet: CloudTrail's delivery delay, and re-run.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"Events": []}"#).unwrap();
    let r = run(
        verify_cmd(
            &dev,
            &["--document", &doc, "--measurements", &meas, "--deep", "--cloudtrail-file", &empty.display().to_string()],
        ),
        "verify --deep, no CloudTrail events yet",
    );
    assert!(!r.ok);
    let fail = line(&r.out, "FAIL", "kms-decrypt").unwrap_or_else(|| panic!("{}", r.out));
    assert!(fail.contains("5-15 minutes") && fail.contains("re-run"), "{fail}");

    // LookupEvents refused: the missing IAM permission is named.
    let fake_aws = dir.path().join("aws");
    std::fs::write(
        &fake_aws,
        "#!/bin/sh\necho 'An error occurred (AccessDeniedException) when calling the LookupEvents operation: User: \
            arn:aws:sts::111122223333:assumed-role/parent/i-1 is not authorized to perform: cloudtrail:LookupEvents \
            because no identity-based policy allows the cloudtrail:LookupEvents action' >&2\nexit 254\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake_aws, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = run(
        verify_cmd(
            &dev,
            &[
                "--document",
                &doc,
                "--measurements",
                &meas,
                "--deep",
                "--events-source",
                "aws",
                "--aws-cli",
                &fake_aws.display().to_string(),
            ],
        ),
        "verify --deep, LookupEvents AccessDenied",
    );
    assert!(!r.ok);
    let fail = line(&r.out, "FAIL", "kms-decrypt").unwrap_or_else(|| panic!("{}", r.out));
    assert!(fail.contains("AccessDenied") && fail.contains("permission cloudtrail:LookupEvents"), "{fail}");
}

/// The parent's two host misconfigurations reach the agent's exit message: no credentials
/// for the sidecar to hand out (IMDS unreachable), and a tunnel that reaches something
/// whose certificate the image does not trust.
#[tokio::test(flavor = "multi_thread")]
async fn sidecar_imds_and_tls_ca_failures_name_the_cause_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(d.join("k.pem"))
        .arg("-out")
        .arg(d.join("c.pem"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("openssl not available: skipping");
        return;
    }
    // A TLS endpoint whose certificate no CA bundle vouches for.
    let port = free_port();
    let server = "import \
        ssl,socket,sys\nctx=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\nctx.load_cert_chain(sys.argv[2],sys.argv[3])\ns=socket.socket()\ns.bind(('127.0.0.1',int(sys.argv[1])))\ns.listen(8)\nwhile True:\n  c,_=s.accept()\n  try:\n    ctx.wrap_socket(c,server_side=True).close()\n  except Exception:\n    pass\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", server, &port.to_string()]).arg(d.join("c.pem")).arg(d.join("k.pem"));
    let mut tls = Proc::spawn("tls-server", cmd, d);
    wait_for("tls server", Duration::from_secs(10), || {
        tls.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::fs::write(d.join("tsk.b64"), "v1:AAAA").unwrap();

    let cases = [
        ("imds", false, &["IMDSv2", "Fix:", "gave up after"][..]),
        (
            "tls",
            true,
            &["TLS to KMS (kms.us-east-1.amazonaws.com) failed", "invalid peer certificate", "--connect-to"][..],
        ),
    ];
    for (case, with_creds, expect) in cases {
        let sock = d.join(format!("sidecar-{case}.sock"));
        let mut cmd = Command::new(bin_path("kms-sidecar"));
        cmd.arg("--listen")
            .arg(format!("unix://{}", sock.display()))
            .arg("--connect-to")
            .arg(format!("kms.us-east-1.amazonaws.com:443=127.0.0.1:{port}"))
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            // IMDS on an unroutable address: the credential chain fails fast and locally.
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9");
        if with_creds {
            cmd.env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00").env("AWS_SECRET_ACCESS_KEY", "example");
        } else {
            cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env_remove("AWS_SESSION_TOKEN");
        }
        let mut sidecar = Proc::spawn(&format!("sidecar-{case}"), cmd, d);
        wait_for("sidecar socket", Duration::from_secs(20), || {
            sidecar.assert_running();
            sock.exists()
        });
        // An image as built for production: the web PKI roots, a real-looking key ARN.
        let key = "arn:aws:kms:us-east-1:111122223333:key/0b5b4c2e-1111-4222-8333-444455556666";
        let mut cmd = Command::new(bin_path("enclave-agent"));
        cmd.arg("--listen")
            .arg(format!("unix://{}", d.join(format!("agent-{case}.sock")).display()))
            .args(["--name", "agent", "--kind", "interest", "--nsm", "simulated", "--bootstrap-timeout-secs", "3"])
            .args(["--kms-key-arn", key, "--input-key-arn", key, "--kms-trust", "webpki"])
            .arg("--sidecar")
            .arg(format!("unix://{}", sock.display()))
            .arg("--tsk-file")
            .arg(d.join("tsk.b64"))
            .arg("--dev-dir")
            .arg(d.join("dev"));
        let mut agent = Proc::spawn(&format!("agent-{case}"), cmd, d);
        let status = agent.wait_exit(Duration::from_secs(60));
        let log = agent.logs();
        assert!(!status.success(), "{log}");
        let last = log.lines().rev().find(|l| l.contains("ERROR")).unwrap_or_else(|| panic!("{log}"));
        println!("--- {case}: {last}");
        for e in expect {
            assert!(last.contains(e), "{case}: {e} missing from {last}");
        }
    }
}
