//! A dev mesh of real processes: kms-emulator, kms-sidecar, agents, bridge.

use crate::kms::{self, PolicyMode, Principals, TestTsk};
use crate::proc::{Proc, bin_path, free_port, wait_for};
use base64::Engine;
use enclavemesh_proto::v1::{InitRequest, LedgerInput, RevealResponse, SealedInput, WorkflowInput};
use prost::Message as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct MeshOptions {
    /// PCR0s the key policy allows.
    pub policy_pcr0s: Vec<String>,
}

/// A random 48-byte PCR value, hex.
pub fn random_pcr0() -> String {
    let mut b = [0u8; 48];
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).expect("urandom");
    hex::encode(b)
}

pub struct DevMesh {
    pub dir: tempfile::TempDir,
    /// `https://localhost:PORT`: the emulator serves TLS under the dev CA.
    pub kms_endpoint: String,
    /// The emulator's three principals (admin, instance role, data owner).
    pub principals: Principals,
    pub sidecar_addr: String,
    pub tsk: TestTsk,
    pub tsk_file: PathBuf,
    pub emulator: Proc,
    pub sidecar: Option<Proc>,
    /// Extra environment for every process this mesh starts (see [`DevMesh::start_with_env`]).
    pub env: Vec<(String, String)>,
    /// The data owner's key (also in `owner_key_file`): results are sealed to it.
    pub owner_key: enclavemesh_owner::OwnerKey,
    pub owner_key_file: PathBuf,
}

/// Sets `env` on `cmd`; when there is any, also `OTEL_SERVICE_NAME=service`, so each
/// process exports telemetry under its own name (agent-a, kms-sidecar, ...).
pub fn apply_env(cmd: &mut Command, env: &[(String, String)], service: &str) {
    for (k, v) in env {
        cmd.env(k, v);
    }
    if !env.is_empty() {
        cmd.env("OTEL_SERVICE_NAME", service);
    }
}

impl DevMesh {
    pub fn dev_dir(&self) -> PathBuf {
        self.dir.path().join("dev")
    }
    pub fn logs_dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn audit_log(&self) -> PathBuf {
        self.dev_dir().join("kms/audit.jsonl")
    }
    /// The dev CA root: what agents trust for TLS to KMS in dev (`--kms-trust`).
    pub fn kms_trust_root(&self) -> PathBuf {
        enclavemesh_attestation::DevCa::root_path(&self.dev_dir())
    }
    /// A KMS client signing as `creds`, trusting the dev CA.
    pub async fn kms_as(&self, creds: &kms::Creds) -> aws_sdk_kms::Client {
        kms::client(&self.kms_endpoint, &self.dev_dir(), creds).await
    }
    /// The key administrator's KMS client.
    pub async fn admin_kms(&self) -> aws_sdk_kms::Client {
        self.kms_as(&self.principals.admin).await
    }
    /// The data owner's KMS client.
    pub async fn owner_kms(&self) -> aws_sdk_kms::Client {
        self.kms_as(&self.principals.owner).await
    }
    /// The parent instance role's KMS client: what a hostile parent holds.
    pub async fn instance_kms(&self) -> aws_sdk_kms::Client {
        self.kms_as(&self.principals.instance).await
    }
    /// The data owner's input for `workflow_id`, sealed as `enclavemesh trigger` seals it
    /// (owner credentials, the input key, the workflow's context, the owner's public key).
    pub async fn sealed_input(&self, workflow_id: &str, balance: i64, rate_bps: u32, note: &str) -> SealedInput {
        self.sealed_input_bound(workflow_id, balance, rate_bps, note, &[]).await
    }
    /// [`Self::sealed_input`] bound to a manifest (its SHA-256; empty: none).
    pub async fn sealed_input_bound(
        &self,
        workflow_id: &str,
        balance: i64,
        rate_bps: u32,
        note: &str,
        manifest_sha256: &[u8],
    ) -> SealedInput {
        let ledger = LedgerInput { initial_balance: balance, rate_bps, secret_note: note.to_string() };
        self.sealed_role_input(workflow_id, &ledger.encode_to_vec(), manifest_sha256).await
    }
    /// The owner's sealed input for any first role: its encoded `Input` message, bound to
    /// the manifest with this digest (empty: none).
    pub async fn sealed_role_input(&self, workflow_id: &str, role_input: &[u8], manifest_sha256: &[u8]) -> SealedInput {
        let input = WorkflowInput {
            owner_public_key: self.owner_key.public().to_vec(),
            manifest_sha256: manifest_sha256.to_vec(),
            input: role_input.to_vec(),
        };
        enclavemesh_owner::seal_input(&self.owner_kms().await, &self.tsk.input_key_arn, workflow_id, &input)
            .await
            .expect("the owner seals the input")
    }
    /// [`Self::sealed_input`] as the workflow input carries it (base64 of the encoding).
    pub async fn sealed_input_b64(&self, workflow_id: &str, balance: i64, rate_bps: u32, note: &str) -> String {
        use prost::Message;
        base64::engine::general_purpose::STANDARD
            .encode(self.sealed_input(workflow_id, balance, rate_bps, note).await.encode_to_vec())
    }
    /// An Init for `workflow_id` with the owner's sealed input.
    pub async fn init_request(&self, workflow_id: &str, balance: i64, rate_bps: u32, note: &str) -> InitRequest {
        InitRequest {
            workflow_id: workflow_id.to_string(),
            input: Some(self.sealed_input(workflow_id, balance, rate_bps, note).await),
            manifest: Vec::new(),
        }
    }
    /// Opens a Reveal answer with the owner's key.
    pub fn open_reveal(&self, workflow_id: &str, step: u64, resp: &RevealResponse) -> String {
        let sealed = resp.result.as_ref().expect("a sealed result");
        let field = if resp.field_name.is_empty() { resp.field().as_str_name() } else { resp.field_name.as_str() };
        enclavemesh_owner::open_result(&self.owner_key, workflow_id, step, field, sealed)
            .expect("the owner opens the result")
            .to_string()
    }
    /// Environment for `enclavemesh` as the data owner: its key file, credentials, the
    /// input key and the emulator (HTTPS under the dev CA).
    pub fn owner_env(&self) -> Vec<(String, String)> {
        let mut env = self.principals.owner.env();
        env.extend([
            ("ENCLAVEMESH_OWNER_KEY".to_string(), self.owner_key_file.display().to_string()),
            ("ENCLAVEMESH_INPUT_KEY".to_string(), self.tsk.input_key_arn.clone()),
            ("ENCLAVEMESH_KMS_ENDPOINT".to_string(), self.kms_endpoint.clone()),
            (
                "ENCLAVEMESH_KMS_CA_BUNDLE".to_string(),
                enclavemesh_attestation::DevCa::root_pem_path(&self.dev_dir()).display().to_string(),
            ),
            ("AWS_REGION".to_string(), "us-east-1".to_string()),
            ("AWS_CONFIG_FILE".to_string(), "/dev/null".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE".to_string(), "/dev/null".to_string()),
        ]);
        env
    }
    /// `--connect-to` for the sidecar: the KMS hostname, to this mesh's emulator.
    pub fn connect_to(&self) -> String {
        format!("kms.us-east-1.amazonaws.com:443=127.0.0.1:{}", self.kms_port())
    }

    /// Starts the emulator, creates the TSK, writes the policy and starts the sidecar.
    pub async fn start(opts: MeshOptions) -> DevMesh {
        Self::start_with_env(opts, Vec::new()).await
    }

    /// Like [`Self::start`], with extra environment for every process the mesh starts
    /// (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`); each also gets `OTEL_SERVICE_NAME` = its name.
    pub async fn start_with_env(opts: MeshOptions, env: Vec<(String, String)>) -> DevMesh {
        Self::start_with_policy(PolicyMode::pcr0(&opts.policy_pcr0s), env).await
    }

    /// A mesh whose keys carry the shipped policies in `mode` (e.g. locked, by PCR8).
    pub async fn start_with_policy(mode: PolicyMode, env: Vec<(String, String)>) -> DevMesh {
        let dir = tempfile::Builder::new().prefix("enclavemesh-it").tempdir().expect("tempdir");
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(dev.join("kms")).expect("dev dir");
        let port = free_port();
        let kms_endpoint = format!("https://localhost:{port}");
        let emulator = spawn_emulator(dir.path(), port, &env);
        let principals = Principals::load(&dev);
        let admin = kms::client(&kms_endpoint, &dev, &principals.admin).await;
        let tsk = kms::create_keys(&admin, &principals, &mode).await.expect("create keys");
        let tsk_file = dev.join("encrypted-tsk.b64");
        std::fs::write(&tsk_file, format!("v1:{}\n", base64::engine::general_purpose::STANDARD.encode(&tsk.blob)))
            .expect("tsk file");

        let sidecar_addr = format!("unix://{}", dir.path().join("sidecar.sock").display());
        let owner_key = enclavemesh_owner::OwnerKey::generate();
        let owner_key_file = dir.path().join("owner.key");
        owner_key.save(&owner_key_file, false).expect("owner key file");
        let mut mesh = DevMesh {
            dir,
            kms_endpoint,
            principals,
            sidecar_addr,
            tsk,
            tsk_file,
            emulator,
            sidecar: None,
            env,
            owner_key,
            owner_key_file,
        };
        mesh.start_sidecar();
        mesh
    }

    /// Port of the emulator (from `kms_endpoint`).
    pub fn kms_port(&self) -> u16 {
        self.kms_endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).expect("kms_endpoint has a port")
    }

    /// Stops the emulator (SIGKILL, like a crash); [`Self::start_emulator`] brings it back.
    pub fn stop_emulator(&mut self) {
        self.emulator.kill();
    }

    /// (Re)starts the emulator on the same port with the same state file and audit log,
    /// so keys and policies survive, and waits until it listens.
    pub fn start_emulator(&mut self) {
        self.emulator = spawn_emulator(self.dir.path(), self.kms_port(), &self.env);
    }

    /// A kms-sidecar on `listen` with the instance role's credentials, tunnelling the KMS
    /// hostname as `connect_to` (`kms.us-east-1.amazonaws.com:443=HOST:PORT`) says.
    pub fn sidecar_command(&self, listen: &str, connect_to: &str) -> Command {
        let mut cmd = Command::new(bin_path("kms-sidecar"));
        cmd.arg("--listen")
            .arg(listen)
            .arg("--connect-to")
            .arg(connect_to)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE");
        for (k, v) in self.principals.instance.env() {
            cmd.env(k, v);
        }
        apply_env(&mut cmd, &self.env, "kms-sidecar");
        cmd
    }

    pub fn start_sidecar(&mut self) {
        let sock = self.dir.path().join("sidecar.sock");
        let cmd = self.sidecar_command(&self.sidecar_addr, &self.connect_to());
        let mut p = Proc::spawn("kms-sidecar", cmd, self.dir.path());
        wait_for("sidecar socket", Duration::from_secs(20), || {
            p.assert_running();
            sock.exists()
        });
        self.sidecar = Some(p);
    }

    /// A second sidecar whose relay to KMS passes a byte recorder: what a hostile parent
    /// sees of the enclave's KMS traffic. Returns the sidecar (serving on a unix socket
    /// in the logs dir, its address for `agent_command_via`) and the recording.
    pub async fn start_recorded_sidecar(&self) -> (Proc, String, crate::recorder::Recording) {
        let (rec_addr, rec) = crate::recorder::start(
            &"tcp://127.0.0.1:0".parse().expect("a tcp address"),
            format!("tcp://127.0.0.1:{}", self.kms_port()).parse().expect("a tcp address"),
        )
        .await;
        let sock = self.logs_dir().join("sidecar-recorded.sock");
        let addr = format!("unix://{}", sock.display());
        let via_recorder =
            format!("kms.us-east-1.amazonaws.com:443={}", rec_addr.to_string().trim_start_matches("tcp://"));
        let p = Proc::spawn("kms-sidecar-recorded", self.sidecar_command(&addr, &via_recorder), self.logs_dir());
        crate::wait_for_path(&sock, Duration::from_secs(20));
        (p, addr, rec)
    }

    /// Command line for an agent in simulated mode serving on a unix socket.
    pub fn agent_command(&self, name: &str, kind: &str, pcr0: Option<&str>) -> (Command, PathBuf) {
        self.agent_command_via(name, kind, pcr0, &self.sidecar_addr)
    }

    /// Like [`Self::agent_command`] with another sidecar address (e.g. a recorder).
    pub fn agent_command_via(&self, name: &str, kind: &str, pcr0: Option<&str>, sidecar: &str) -> (Command, PathBuf) {
        self.agent_command_with(name, kind, pcr0, sidecar, 20)
    }

    /// Like [`Self::agent_command_via`] with another `--bootstrap-timeout-secs`.
    pub fn agent_command_with(
        &self,
        name: &str,
        kind: &str,
        pcr0: Option<&str>,
        sidecar: &str,
        bootstrap_timeout_secs: u64,
    ) -> (Command, PathBuf) {
        self.program_command("enclave-agent", name, name, kind, pcr0, sidecar, bootstrap_timeout_secs)
    }

    /// Command line for an agent `program` built on the SDK (e.g. `screening-agent`), in
    /// simulated mode on the unix socket `<label>.sock`. Without `pcr0` it reports its
    /// own binary's.
    #[allow(clippy::too_many_arguments)]
    pub fn program_command(
        &self,
        program: &str,
        label: &str,
        name: &str,
        kind: &str,
        pcr0: Option<&str>,
        sidecar: &str,
        bootstrap_timeout_secs: u64,
    ) -> (Command, PathBuf) {
        let sock = self.dir.path().join(format!("{label}.sock"));
        let mut cmd = Command::new(bin_path(program));
        cmd.arg("--listen")
            .arg(format!("unix://{}", sock.display()))
            .arg("--name")
            .arg(name)
            .arg("--kind")
            .arg(kind)
            .arg("--sidecar")
            .arg(sidecar)
            .arg("--tsk-file")
            .arg(&self.tsk_file)
            .arg("--kms-key-arn")
            .arg(&self.tsk.key_arn)
            .arg("--input-key-arn")
            .arg(&self.tsk.input_key_arn)
            .arg("--kms-trust")
            .arg(self.kms_trust_root())
            .arg("--nsm")
            .arg("simulated")
            .arg("--dev-dir")
            .arg(self.dev_dir())
            .arg("--bootstrap-timeout-secs")
            .arg(bootstrap_timeout_secs.to_string());
        if let Some(p) = pcr0 {
            cmd.arg("--sim-pcr0").arg(p);
        }
        apply_env(&mut cmd, &self.env, name);
        (cmd, sock)
    }

    /// Starts an agent and waits until it serves.
    pub fn start_agent(&self, name: &str, kind: &str, pcr0: Option<&str>) -> (Proc, PathBuf) {
        let (cmd, sock) = self.agent_command(name, kind, pcr0);
        self.spawn_serving(name, cmd, sock)
    }

    /// Starts an SDK agent `program` (its own measurement) as `name` with `extra`
    /// arguments, on `<label>.sock`, and waits until it serves.
    pub fn start_program(&self, program: &str, label: &str, name: &str, kind: &str, extra: &[&str]) -> (Proc, PathBuf) {
        let (mut cmd, sock) = self.program_command(program, label, name, kind, None, &self.sidecar_addr, 20);
        cmd.args(extra);
        self.spawn_serving(label, cmd, sock)
    }

    fn spawn_serving(&self, name: &str, cmd: Command, sock: PathBuf) -> (Proc, PathBuf) {
        let mut p = Proc::spawn(name, cmd, self.dir.path());
        wait_for(&format!("{name} socket"), Duration::from_secs(60), || {
            p.assert_running();
            sock.exists()
        });
        (p, sock)
    }

    /// Starts a vsock-bridge from a free TCP port to `target`; returns it and the port.
    pub fn start_bridge(&self, target: &str) -> (Proc, u16) {
        let port = free_port();
        (self.start_bridge_on(target, port), port)
    }

    /// Starts a vsock-bridge on a given TCP port (e.g. to restart one on its old port).
    pub fn start_bridge_on(&self, target: &str, port: u16) -> Proc {
        let mut cmd = Command::new(bin_path("vsock-bridge"));
        cmd.arg("--listen").arg(format!("tcp://127.0.0.1:{port}")).arg("--target").arg(target);
        apply_env(&mut cmd, &self.env, "vsock-bridge");
        let mut p = Proc::spawn("vsock-bridge", cmd, self.dir.path());
        wait_for("bridge port", Duration::from_secs(20), || {
            p.assert_running();
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        p
    }

    /// All log files of this mesh, concatenated.
    pub fn all_logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

/// Starts the kms-emulator on `port` with its state in `dir/dev/kms` and waits until it listens.
fn spawn_emulator(dir: &Path, port: u16, env: &[(String, String)]) -> Proc {
    spawn_emulator_in("kms-emulator", &dir.join("dev"), dir, port, env, &[])
}

/// A kms-emulator on `port` whose dev CA, state, audit log and identities live in `dev`,
/// logging to `logs`, with `extra` arguments; waits until it listens.
pub fn spawn_emulator_in(
    name: &str,
    dev: &Path,
    logs: &Path,
    port: u16,
    env: &[(String, String)],
    extra: &[&str],
) -> Proc {
    let mut cmd = Command::new(bin_path("kms-emulator"));
    cmd.env("ENCLAVEMESH_DEV_DIR", dev)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--state-file")
        .arg(dev.join("kms/state.json"))
        .arg("--audit-log")
        .arg(dev.join("kms/audit.jsonl"))
        .args(extra);
    apply_env(&mut cmd, env, name);
    let mut emulator = Proc::spawn(name, cmd, logs);
    wait_for("kms-emulator port", Duration::from_secs(20), || {
        emulator.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    emulator
}

/// Renders `secret` in the encodings it could leak in (raw, hex, base64).
pub fn leak_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        b64.trim_end_matches('=').as_bytes().to_vec(),
    ]
}

/// Whether `haystack` contains any form of `secret`.
pub fn contains_secret(haystack: &[u8], secret: &[u8]) -> bool {
    leak_forms(secret)
        .iter()
        .any(|needle| !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle.as_slice()))
}

/// Whether `haystack` holds an RSA private key in DER, as PKCS#8 (`version 0` then the
/// rsaEncryption algorithm) or PKCS#1 (`version 0` then a 2048/3072/4096-bit modulus):
/// the enclave's attestation key never leaves it, so its shape is searched for, not its
/// value.
pub fn contains_rsa_private_key(haystack: &[u8]) -> bool {
    const PKCS8: &[u8] =
        &[0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const PKCS1: [&[u8]; 3] = [
        &[0x02, 0x01, 0x00, 0x02, 0x82, 0x01, 0x01, 0x00],
        &[0x02, 0x01, 0x00, 0x02, 0x82, 0x01, 0x81, 0x00],
        &[0x02, 0x01, 0x00, 0x02, 0x82, 0x02, 0x01, 0x00],
    ];
    std::iter::once(PKCS8).chain(PKCS1).any(|n| haystack.windows(n.len()).any(|w| w == n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;

    #[test]
    fn the_private_key_scan_finds_real_keys_in_noise() {
        // Positive control for the "no attestation private key on the parent" scans.
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        for der in [key.to_pkcs8_der().unwrap().as_bytes().to_vec(), key.to_pkcs1_der().unwrap().as_bytes().to_vec()] {
            let mut noise = vec![0x17, 0x03, 0x03, 0x40, 0x00];
            noise.extend(&der);
            noise.extend([0u8; 64]);
            assert!(contains_rsa_private_key(&noise));
        }
        let public = rsa::pkcs8::EncodePublicKey::to_public_key_der(&key.to_public_key()).unwrap();
        assert!(!contains_rsa_private_key(public.as_bytes()), "a public key is not a private key");
    }
}
