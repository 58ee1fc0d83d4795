//! The worker and the CLI reach Temporal over TLS, mTLS and with an API key, through a
//! real TLS-terminating proxy: Debian's nginx (`grpc_pass`, `ssl_verify_client`) in front
//! of the dev server, which itself speaks only plain HTTP/2. The certificates come from a
//! test CA made here; a second CA makes a client certificate the proxy must refuse.
//!
//! Shown: a whole SecureStateLoop (real agents, real KMS emulator) runs with the worker on
//! mTLS and the CLI on TLS and on mTLS; a foreign client certificate, a missing one and
//! an untrusted server certificate each fail at once with a message naming the address
//! and the flag to check; the API key reaches the server (the proxy's access log shows
//! `Bearer KEY`) and appears in no log or output of ours.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::temporal::{Temporal, expected_balance};
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, bin_path, free_port, wait_for};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TASK_QUEUE: &str = "tls-it";

/// PEM files of the test PKI.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// Issued by another CA, which the proxy does not trust.
    foreign_cert: PathBuf,
    foreign_key: PathBuf,
    /// The other CA: a server check against it must fail.
    foreign_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn create(dir: &Path) -> Pki {
        let (ca_params, ca_key, ca_pem) = ca("enclavemesh test CA (temporal_tls)");
        let issuer = Issuer::new(ca_params, ca_key);
        let (server_cert, server_key) =
            leaf(&issuer, "temporal-proxy", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(&issuer, "enclavemesh-worker", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let (foreign_params, foreign_key, foreign_ca_pem) = ca("some other CA");
        let foreign = Issuer::new(foreign_params, foreign_key);
        let (foreign_cert, foreign_key) = leaf(&foreign, "intruder", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        Pki {
            ca: write("ca.pem", &ca_pem),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            foreign_cert: write("foreign-client.pem", &foreign_cert),
            foreign_key: write("foreign-client.key", &foreign_key),
            foreign_ca: write("foreign-ca.pem", &foreign_ca_pem),
        }
    }
}

/// nginx in the foreground (`daemon off`, one process), with its config, logs and temp
/// files in `dir`: one mTLS server block and one TLS-only block, both `grpc_pass` to the
/// dev server.
struct Proxy {
    _proc: Proc,
    mtls_port: u16,
    tls_port: u16,
    access_log: PathBuf,
}

fn nginx_bin() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
        panic!("nginx not found: scripts/test.sh installs Debian's nginx (as root: apt-get install -y nginx)")
    })
}

impl Proxy {
    fn start(dir: &Path, pki: &Pki, temporal_port: u16) -> Proxy {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let (mtls_port, tls_port) = (free_port(), free_port());
        let access_log = dir.join("access.log");
        let d = dir.display();
        let server = |port: u16, mtls: bool| {
            let verify = if mtls {
                format!("ssl_client_certificate {};\n        ssl_verify_client on;", pki.ca.display())
            } else {
                String::new()
            };
            format!(
                r#"
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {verify}
        location / {{
            grpc_pass grpc://127.0.0.1:{temporal_port};
        }}
    }}"#,
                cert = pki.server_cert.display(),
                key = pki.server_key.display(),
            )
        };
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    log_format grpc '$server_port "$request" $status verify=$ssl_client_verify '
                    'dn="$ssl_client_s_dn" authorization="$http_authorization"';
    access_log {access} grpc;
    client_max_body_size 64m;
    # Workers long-poll for up to ~70 s.
    grpc_read_timeout 300s;
    grpc_send_timeout 300s;
{mtls}
{tls}
}}
"#,
            access = access_log.display(),
            mtls = server(mtls_port, true),
            tls = server(tls_port, false),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(nginx_bin());
        cmd.arg("-p").arg(&dir).arg("-e").arg(dir.join("error.log")).arg("-c").arg(&conf_path);
        let mut proc = Proc::spawn("nginx", cmd, &dir);
        wait_for("nginx listening", Duration::from_secs(20), || {
            proc.assert_running();
            [mtls_port, tls_port].iter().all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        Proxy { _proc: proc, mtls_port, tls_port, access_log }
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }
}

/// Runs `enclavemesh --json --task-queue Q ARGS…` with `env`; (success, JSON lines, all output).
fn cli(args: &[String], env: &[(String, String)]) -> (bool, Vec<serde_json::Value>, String) {
    let mut cmd = Command::new(bin_path("enclavemesh"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.arg("--json").arg("--task-queue").arg(TASK_QUEUE).args(args).output().expect("enclavemesh runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.success(), lines, format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_worker_and_cli_reach_temporal_over_tls_mtls_and_api_key_through_nginx() {
    nginx_bin(); // before starting anything: a missing nginx says how to install it
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let temporal = Temporal::start(mesh.logs_dir());
    let pki = Pki::create(mesh.logs_dir());
    let proxy = Proxy::start(mesh.logs_dir(), &pki, temporal.port);
    let mtls = format!("https://127.0.0.1:{}", proxy.mtls_port);
    let tls = format!("https://127.0.0.1:{}", proxy.tls_port);
    let api_key = format!("em-test-api-key-{}", &random_pcr0()[..20]);
    let unix = |s: &Path| format!("unix://{}", s.display());

    // The worker: mTLS, with the API key from its environment (as a deployment would).
    let mut worker_cmd = Command::new(bin_path("enclavemesh-worker"));
    worker_cmd
        .args(["--temporal-address", &mtls, "--task-queue", TASK_QUEUE])
        .args(["--temporal-ca", &p(&pki.ca)])
        .args(["--temporal-client-cert", &p(&pki.client_cert), "--temporal-client-key", &p(&pki.client_key)])
        .args(["--agent-a", &unix(&sock_a), "--agent-b", &unix(&sock_b)])
        .env("TEMPORAL_API_KEY", &api_key)
        .env("RUST_LOG", "info");
    let mut worker = Proc::spawn("worker-mtls", worker_cmd, mesh.logs_dir());

    let owner_env = mesh.owner_env();
    let sock_b_addr = unix(&sock_b);
    let trigger = |wf: &str, conn: &[String], extra_env: &[(String, String)]| {
        let mut args = s(&["trigger", "--workflow-id", wf, "--steps", "2", "--initial-balance", "100000"]);
        args.extend(s(&["--rate-bps", "500", "--reveal-agent", &sock_b_addr]));
        args.extend_from_slice(conn);
        let mut env = owner_env.clone();
        env.extend_from_slice(extra_env);
        cli(&args, &env)
    };
    let want_balance = expected_balance(100_000, 500, 2).to_string();
    let assert_completed = |wf: &str, ok: bool, lines: &[serde_json::Value], all: &str| {
        assert!(ok, "trigger {wf} failed: {all}");
        let done = lines.iter().find(|v| v["event"] == "completed").unwrap_or_else(|| panic!("{all}"));
        assert_eq!(done["final_step"], 2, "{all}");
        let balance = lines.iter().find(|v| v["event"] == "revealed").unwrap_or_else(|| panic!("{all}"));
        assert_eq!(balance["value"], want_balance.as_str(), "{all}");
    };

    // 1. The CLI over TLS only (the proxy's second block), with the API key as a flag.
    let tls_conn = s(&["--temporal-address", &tls, "--temporal-ca", &p(&pki.ca), "--temporal-api-key", &api_key]);
    let (ok, lines, all_tls) = trigger("wf-tls", &tls_conn, &[]);
    assert_completed("wf-tls", ok, &lines, &all_tls);
    worker.assert_running();

    // 2. The CLI over mTLS, no API key; by host name (the certificate names localhost too).
    let mtls_conn = s(&[
        "--temporal-address",
        &format!("localhost:{}", proxy.mtls_port),
        "--temporal-ca",
        &p(&pki.ca),
        "--temporal-client-cert",
        &p(&pki.client_cert),
        "--temporal-client-key",
        &p(&pki.client_key),
    ]);
    let (ok, lines, all_mtls) = trigger("wf-mtls", &mtls_conn, &[]);
    assert_completed("wf-mtls", ok, &lines, &all_mtls);

    // The history is in the dev server behind the proxy: the proxy carried it all.
    let history = temporal.history_json("wf-mtls");
    assert!(
        ["WorkflowExecutionCompleted", "WORKFLOW_EXECUTION_COMPLETED"].iter().any(|m| history.contains(m)),
        "{history}"
    );
    let log = proxy.access_log();
    let mtls_lines: Vec<&str> = log.lines().filter(|l| l.starts_with(&proxy.mtls_port.to_string())).collect();
    assert!(
        mtls_lines.iter().any(|l| l.contains("PollWorkflowTaskQueue") && l.contains("verify=SUCCESS")),
        "the worker polls through the mTLS block with a verified certificate:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with(&proxy.tls_port.to_string()) && l.contains("StartWorkflowExecution")),
        "the TLS-only block carried the first start:\n{log}"
    );

    // 3. The API key reached the server: the proxy logged it, from the worker (mTLS block)
    // and from the CLI (TLS block)...
    let bearer = format!("authorization=\"Bearer {api_key}\"");
    assert!(
        mtls_lines.iter().any(|l| l.contains("PollWorkflowTaskQueue") && l.contains(&bearer)),
        "the worker's API key in the proxy's log:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with(&proxy.tls_port.to_string()) && l.contains(&bearer)),
        "the CLI's API key in the proxy's log:\n{log}"
    );
    // ...and the mTLS CLI, given none, sent none.
    assert!(
        mtls_lines.iter().any(|l| l.contains("StartWorkflowExecution") && l.contains("authorization=\"-\"")),
        "a start without a key:\n{log}"
    );

    // 4. Refusals: each at once, naming the address and what to check.
    let t0 = std::time::Instant::now();
    let foreign = s(&[
        "--temporal-address",
        &mtls,
        "--temporal-ca",
        &p(&pki.ca),
        "--temporal-client-cert",
        &p(&pki.foreign_cert),
        "--temporal-client-key",
        &p(&pki.foreign_key),
    ]);
    let (ok, _, all) = trigger("wf-foreign", &foreign, &[]);
    assert!(!ok, "a foreign client certificate must be refused: {all}");
    assert!(
        all.contains("refused this client's certificate")
            && all.contains(&mtls)
            && all.contains("--temporal-client-cert")
            && all.contains("--temporal-client-key"),
        "a clear message for a foreign client certificate: {all}"
    );
    eprintln!("refusal: {all}");
    assert!(t0.elapsed() < Duration::from_secs(30), "refused at once, not retried: {:?}", t0.elapsed());
    assert!(
        proxy.access_log().contains("verify=FAILED"),
        "the proxy checked the foreign certificate and failed it:\n{}",
        proxy.access_log()
    );

    let no_cert = s(&["--temporal-address", &mtls, "--temporal-ca", &p(&pki.ca)]);
    let (ok, _, all) = trigger("wf-no-cert", &no_cert, &[]);
    assert!(!ok, "{all}");
    assert!(
        all.contains("asks for a client certificate") && all.contains("--temporal-client-cert"),
        "a clear message without a client certificate: {all}"
    );
    eprintln!("refusal: {all}");

    let wrong_ca = s(&["--temporal-address", &tls, "--temporal-ca", &p(&pki.foreign_ca)]);
    let (ok, _, all) = trigger("wf-wrong-ca", &wrong_ca, &[]);
    assert!(!ok, "{all}");
    assert!(
        all.contains("server's certificate was not accepted") && all.contains("--temporal-ca") && all.contains(&tls),
        "a clear message for an untrusted server: {all}"
    );
    eprintln!("refusal: {all}");

    let half = s(&["--temporal-address", &mtls, "--temporal-client-key", &p(&pki.client_key)]);
    let (ok, _, all) = trigger("wf-half", &half, &[]);
    assert!(!ok && all.contains("--temporal-client-key") && all.contains("--temporal-client-cert"), "{all}");
    eprintln!("refusal: {all}");

    let not_pem = mesh.logs_dir().join("ca.der");
    std::fs::write(&not_pem, [0x30u8, 0x82, 0x01, 0x0a, 0x02, 0x82]).unwrap();
    let (ok, _, all) = trigger("wf-der", &s(&["--temporal-address", &tls, "--temporal-ca", &p(&not_pem)]), &[]);
    assert!(!ok && all.contains(&p(&not_pem)) && all.contains("PEM"), "{all}");
    eprintln!("refusal: {all}");

    // The worker refuses a foreign certificate too, and stops at once with the message.
    let mut bad_worker_cmd = Command::new(bin_path("enclavemesh-worker"));
    bad_worker_cmd
        .args(["--temporal-address", &mtls, "--task-queue", "tls-foreign"])
        .args(["--temporal-ca", &p(&pki.ca)])
        .args(["--temporal-client-cert", &p(&pki.foreign_cert), "--temporal-client-key", &p(&pki.foreign_key)])
        .args(["--agent-a", &unix(&sock_a), "--agent-b", &unix(&sock_b)]);
    let mut bad_worker = Proc::spawn("worker-foreign", bad_worker_cmd, mesh.logs_dir());
    let status = bad_worker.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let bad_log = bad_worker.logs();
    assert!(
        bad_log.contains("refused this client's certificate") && bad_log.contains("--temporal-client-cert"),
        "{bad_log}"
    );
    eprintln!("worker refusal: {}", bad_log.lines().last().unwrap_or_default());

    // 5. The API key is in no output or log of ours (only in the proxy's, above).
    worker.assert_running();
    for (what, text) in [
        ("worker log", worker.logs()),
        ("trigger over TLS output", all_tls),
        ("trigger over mTLS output", all_mtls),
        ("process logs", mesh.all_logs()),
    ] {
        assert!(!text.contains(&api_key), "the API key leaked into the {what}");
    }
}
