//! The real enclave image, end to end: agents A and B boot from the docker-free EIF in
//! QEMU's emulated nitro-enclave machine (TCG here), attest with QEMU's NSM, and get the
//! TSK from KMS by the PCR0 `enclave-image/build.sh --eif` computed. The parent side
//! (sidecars, worker, bridge, CLI) reaches them over hybrid vsock. The KMS emulator
//! runs in the explicit `qemu-unsigned` test mode (QEMU's documents are not signed).
//!
//! Needs `scripts/enclave-qemu.sh setup` (scripts/test.sh runs it; cached outside the
//! checkout). Prints how long each part took.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::process::Command;
use std::time::{Duration, Instant};

use enclavemesh_harness::enclave_qemu::{QemuEnclave, allow_only, build_eif, musl_agent};
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::temporal::{Temporal, expected_balance};
use enclavemesh_harness::{DevMesh, MeshOptions, bin_path, venv_bin, wait_for};

fn lap(what: &str, t: &mut Instant) {
    eprintln!("[qemu e2e] {what}: {:.1} s", t.elapsed().as_secs_f64());
    *t = Instant::now();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_the_real_enclave_image_in_qemu_runs_the_loop_and_kms_refuses_a_changed_image() {
    let mut t = Instant::now();
    let qemu_mode = vec![("KMS_EMULATOR_ATTESTATION_ROOT".to_string(), "qemu-unsigned".to_string())];
    let mesh = DevMesh::start_with_env(MeshOptions { policy_pcr0s: vec![random_pcr0()] }, qemu_mode).await;
    let eif_dir = mesh.dir.path().join("eif");

    // The image, twice: the same inputs give the same bytes and PCR0.
    let eif = tokio::task::block_in_place(|| build_eif(&mesh, &eif_dir.join("a"), None));
    let again = tokio::task::block_in_place(|| build_eif(&mesh, &eif_dir.join("b"), None));
    assert_eq!((eif.sha256.as_str(), eif.pcr0.as_str()), (again.sha256.as_str(), again.pcr0.as_str()), "reproducible");
    assert_eq!(eif.pcr0.len(), 96);
    lap("two EIF builds", &mut t);

    // KMS releases the TSK to exactly this image.
    allow_only(&mesh, &eif.pcr0).await;

    let a = tokio::task::block_in_place(|| QemuEnclave::boot(&mesh, &eif.path, 16, "agent-a", "ledger-init"));
    let b = tokio::task::block_in_place(|| QemuEnclave::boot(&mesh, &eif.path, 17, "agent-b", "interest"));
    assert_eq!(a.wait_serving(Duration::from_secs(180)).await.unwrap(), eif.pcr0, "agent A attests the built PCR0");
    assert_eq!(b.wait_serving(Duration::from_secs(180)).await.unwrap(), eif.pcr0, "agent B attests the built PCR0");
    assert!(a.console().contains("TSK version released"), "{}", a.console());
    lap("two enclaves booted, attested and holding the TSK", &mut t);

    // A SecureStateLoop of 3 steps through a real Temporal, the worker on hybrid vsock.
    let temporal = Temporal::start(mesh.logs_dir());
    let _worker = temporal.start_worker(mesh.logs_dir(), "qemu", &a.agent_addr(), &b.agent_addr());
    let b_addr = b.agent_addr();
    let args = [
        "trigger",
        "--workflow-id",
        "wf-qemu",
        "--steps",
        "3",
        "--initial-balance",
        "100000",
        "--rate-bps",
        "500",
        "--reveal-agent",
        &b_addr,
    ];
    let (ok, lines, out) = tokio::task::block_in_place(|| temporal.cli_with_env("qemu", &args, &mesh.owner_env()));
    assert!(ok, "trigger failed: {out}");
    let revealed = lines.iter().find(|v| v["event"] == "revealed").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(revealed["value"], expected_balance(100_000, 500, 3).to_string(), "{out}");
    lap("3-step loop through Temporal", &mut t);

    // grpcurl through the bridge (TCP -> hybrid vsock -> the guest).
    let (_bridge, port) = mesh.start_bridge(&b.agent_addr());
    let list = Command::new(venv_bin("grpcurl"))
        .args(["-plaintext", "-max-time", "30", &format!("127.0.0.1:{port}"), "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && text.contains("enclavemesh.v1.AgentService"), "{text}");

    // verify: PCR0 equals the build, in the explicit QEMU mode, which says so.
    let measurements = eif_dir.join("a/enclave.eif.json");
    let v = Command::new(bin_path("enclavemesh"))
        .args(["verify", "--agent", &a.agent_addr(), "--trust-anchor", "qemu-unsigned", "--measurements"])
        .arg(&measurements)
        .env("ENCLAVEMESH_DEV_DIR", mesh.dev_dir())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&v.stdout);
    assert!(v.status.success(), "{report}");
    assert!(report.contains(&format!("PASS  pcr0             agent={} build={}", eif.pcr0, eif.pcr0)), "{report}");
    assert!(report.contains("WARN  trust-anchor     qemu-unsigned"), "the mode says so: {report}");
    lap("bridge + grpcurl + verify", &mut t);

    // One changed byte in the image: another PCR0, and KMS refuses it by name.
    let changed = mesh.dir.path().join("enclave-agent.changed");
    let mut bytes = std::fs::read(musl_agent()).unwrap();
    bytes.push(0); // trailing data: the ELF still runs, the image differs by one byte
    std::fs::write(&changed, bytes).unwrap();
    std::fs::set_permissions(&changed, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let other = tokio::task::block_in_place(|| build_eif(&mesh, &eif_dir.join("c"), Some(&changed)));
    assert_ne!(other.pcr0, eif.pcr0);
    let c = tokio::task::block_in_place(|| QemuEnclave::boot(&mesh, &other.path, 18, "agent-c", "interest"));
    c.wait_console("KMS refused to release the TSK", Duration::from_secs(180));
    wait_for("agent-c's whole refusal", Duration::from_secs(30), || c.console().contains("setup-kms-policy.sh"));
    let console = c.console();
    assert!(console.contains(&other.pcr0) && console.contains(&eif.pcr0), "names both PCR0s: {console}");
    assert!(!console.contains("serving AgentService"), "{console}");
    lap("changed image refused", &mut t);
}
