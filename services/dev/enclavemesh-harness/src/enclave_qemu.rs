//! The real enclave image in tests: EIFs built by `enclave-image/build.sh --eif` and
//! booted by `scripts/enclave-qemu.sh` in QEMU's emulated `nitro-enclave` machine, with
//! the parent side (sidecar, worker, bridge) on hybrid vsock.
//!
//! Why through the scripts: they are what an operator runs, so the tests exercise the
//! same build and the same boot. `scripts/test.sh` sets the runtime up first
//! (`scripts/enclave-qemu.sh setup`, cached outside the checkout).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::mesh::DevMesh;
use crate::proc::{Proc, repo_root, wait_for};

/// An EIF and its measurements.
pub struct Eif {
    pub path: PathBuf,
    pub pcr0: String,
    pub sha256: String,
}

/// Builds the docker-free EIF for `mesh` (its key ARNs, its dev CA as KMS trust) into
/// `out_dir`, one image for both ledger roles (`--any-role`: the sidecar assigns them);
/// `agent_bin` replaces the agent (e.g. a copy with one byte changed).
pub fn build_eif(mesh: &DevMesh, out_dir: &Path, agent_bin: Option<&Path>) -> Eif {
    let mut cmd = Command::new(repo_root().join("enclave-image/build.sh"));
    cmd.args(["--eif", "--any-role", "--kms-key-arn", &mesh.tsk.key_arn, "--input-key-arn", &mesh.tsk.input_key_arn])
        .arg("--kms-trust")
        .arg(mesh.dev_dir().join("dev-ca/root.der"))
        .arg("--out-dir")
        .arg(out_dir);
    if let Some(bin) = agent_bin {
        cmd.arg("--agent-bin").arg(bin);
    }
    let out = cmd.output().expect("enclave-image/build.sh runs");
    assert!(
        out.status.success(),
        "enclave-image/build.sh --eif failed (run scripts/enclave-qemu.sh setup first):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcr0 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let path = out_dir.join("enclave.eif");
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&path).expect("the EIF")))
    };
    Eif { path, pcr0, sha256 }
}

/// Puts the shipped key policies allowing exactly the image with `pcr0`.
pub async fn allow_only(mesh: &DevMesh, pcr0: &str) {
    let admin = mesh.admin_kms().await;
    let mode = crate::kms::PolicyMode::pcr0(&[pcr0.to_string()]);
    crate::kms::put_policies(&admin, &mesh.principals, &mesh.tsk.key_id, &mesh.tsk.input_key_arn, &mode)
        .await
        .expect("the admin puts the key policies");
}

/// The statically linked agent the EIF build uses (after one `build_eif`).
pub fn musl_agent() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("enclave-musl/x86_64-unknown-linux-musl/release/enclave-agent")
}

/// One enclave booted in QEMU, with the kms-sidecar it reaches at the host's CID 2
/// port 8000 (a unix socket next to the hybrid vsock socket). Terminated on drop.
pub struct QemuEnclave {
    pub cid: u32,
    pub name: String,
    run_dir: PathBuf,
    pub sidecar: Proc,
}

impl QemuEnclave {
    /// Boots `eif` as `cid`; its sidecar hands it `name:kind` and the mesh's TSK file.
    pub fn boot(mesh: &DevMesh, eif: &Path, cid: u32, name: &str, kind: &str) -> QemuEnclave {
        let run_dir = mesh.dir.path().join("qemu");
        std::fs::create_dir_all(&run_dir).expect("qemu run dir");
        let listen = format!("unix://{}/cid{cid}.vsock_8000", run_dir.display());
        let mut cmd = mesh.sidecar_command(&listen, &mesh.connect_to());
        cmd.arg("--agent-role").arg(format!("*={name}:{kind}")).arg("--agent-tsk-file").arg(&mesh.tsk_file);
        let sidecar = Proc::spawn(&format!("kms-sidecar-{name}"), cmd, mesh.logs_dir());
        crate::wait_for_path(&run_dir.join(format!("cid{cid}.vsock_8000")), Duration::from_secs(20));
        let out = Command::new(repo_root().join("scripts/enclave-qemu.sh"))
            .args(["run", "--cid", &cid.to_string(), "--name", name, "--memory", "512", "--cpus", "1", "--eif"])
            .arg(eif)
            .env("ENCLAVEMESH_QEMU_RUN", &run_dir)
            .output()
            .expect("scripts/enclave-qemu.sh runs");
        assert!(out.status.success(), "enclave-qemu.sh run failed: {}", String::from_utf8_lossy(&out.stderr));
        QemuEnclave { cid, name: name.to_string(), run_dir, sidecar }
    }

    /// The agent's gRPC address from the parent: hybrid vsock, port 5000.
    pub fn agent_addr(&self) -> String {
        format!("hvsock://{}/cid{}.vsock:5000", self.run_dir.display(), self.cid)
    }

    /// What the guest printed (kernel, init, agent).
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.run_dir.join(format!("cid{}.console.log", self.cid))).unwrap_or_default()
    }

    /// `kvm` or `tcg`, as `enclave-qemu.sh run` chose.
    pub fn accel(&self) -> String {
        std::fs::read_to_string(self.run_dir.join(format!("cid{}.json", self.cid)))
            .ok()
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
            .and_then(|v| v["Accel"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }

    /// Whether QEMU still runs.
    pub fn running(&self) -> bool {
        std::fs::read_to_string(self.run_dir.join(format!("cid{}.qemu.pid", self.cid)))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    /// Waits until the agent answers Describe over hybrid vsock (polled every 20 ms, so a
    /// boot is timed closely); returns the PCR0 it attests. Fails if QEMU stops first.
    pub async fn wait_serving(&self, timeout: Duration) -> anyhow::Result<String> {
        use enclavemesh_proto::v1::DescribeRequest;
        use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
        let addr = self.agent_addr().parse()?;
        let started = std::time::Instant::now();
        loop {
            let mut client = AgentServiceClient::new(enclavemesh_transport::channel(&addr)?);
            let call = tokio::time::timeout(Duration::from_secs(5), client.describe(DescribeRequest {}));
            if let Ok(Ok(d)) = call.await {
                return Ok(d.into_inner().pcr0_hex);
            }
            anyhow::ensure!(self.running(), "{} stopped before serving:\n{}", self.name, self.console());
            anyhow::ensure!(
                started.elapsed() < timeout,
                "{} did not serve within {timeout:?}:\n{}",
                self.name,
                self.console()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the console shows `needle` (or QEMU exits, or `timeout`).
    pub fn wait_console(&self, needle: &str, timeout: Duration) {
        wait_for(&format!("{} console: {needle}", self.name), timeout, || {
            let c = self.console();
            assert!(c.contains(needle) || self.running(), "{} stopped before '{needle}':\n{c}", self.name);
            c.contains(needle)
        });
    }
}

impl Drop for QemuEnclave {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/enclave-qemu.sh"))
            .args(["terminate", "--cid", &self.cid.to_string()])
            .env("ENCLAVEMESH_QEMU_RUN", &self.run_dir)
            .output();
    }
}
