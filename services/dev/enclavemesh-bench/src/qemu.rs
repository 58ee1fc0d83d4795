//! The real enclave image in QEMU's nitro-enclave machine next to process mode, in one
//! run: boot-to-ready (from `scripts/enclave-qemu.sh run` to the agent answering over
//! hybrid vsock, i.e. kernel, init, NSM attestation and the TSK released by KMS), and
//! one Process hop into the guest over hybrid vsock against the same hop into a
//! process-mode agent over a unix socket, in interleaved rounds. TCG or KVM, whichever
//! `scripts/enclave-qemu.sh` picked (reported).

use std::time::{Duration, Instant};

use enclavemesh_harness::enclave_qemu::{QemuEnclave, allow_only, build_eif};
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::{DevMesh, MeshOptions};
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::{ProcessRequest, SealedEnvelope};
use tonic::transport::Channel;

use crate::result;
use crate::stats::Samples;

#[derive(Debug, clap::Args)]
pub struct QemuArgs {
    /// Timed enclave boots.
    #[arg(long, default_value_t = 3)]
    boots: usize,
    /// Process calls per series.
    #[arg(long, default_value_t = 400)]
    iters: usize,
    /// Interleaved rounds the calls are split into.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
}

fn client(addr: &str) -> anyhow::Result<AgentServiceClient<Channel>> {
    Ok(AgentServiceClient::new(enclavemesh_transport::channel(&addr.parse()?)?))
}

async fn process(c: &mut AgentServiceClient<Channel>, state: &SealedEnvelope) -> anyhow::Result<Duration> {
    let req = ProcessRequest {
        workflow_id: "bench-qemu".into(),
        expected_step: 0,
        state: Some(state.clone()),
        ..Default::default()
    };
    let t = Instant::now();
    c.process(req).await?;
    Ok(t.elapsed())
}

pub fn run(args: QemuArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: QemuArgs) -> anyhow::Result<()> {
    let qemu_mode = vec![("KMS_EMULATOR_ATTESTATION_ROOT".to_string(), "qemu-unsigned".to_string())];
    let sim_pcr0 = random_pcr0();
    let mesh = DevMesh::start_with_env(MeshOptions { policy_pcr0s: vec![sim_pcr0.clone()] }, qemu_mode).await;
    let eif = tokio::task::block_in_place(|| build_eif(&mesh, &mesh.dir.path().join("eif"), None));
    // This emulator is in QEMU mode (unsigned documents only), so the process-mode agents
    // run against a second mesh below; each hop is measured on its own agents' envelopes.
    allow_only(&mesh, &eif.pcr0).await;

    // Boot-to-ready, `boots` times (the last enclave stays up for the hop).
    let mut boots = Vec::new();
    let mut mode = String::new();
    let mut last = None;
    for i in 0..args.boots.max(1) {
        drop(last.take()); // terminate the previous one first
        let cid = 20 + u32::try_from(i)?;
        let t = Instant::now();
        let e = tokio::task::block_in_place(|| QemuEnclave::boot(&mesh, &eif.path, cid, "agent-b", "interest"));
        e.wait_serving(Duration::from_secs(180)).await?;
        boots.push(t.elapsed());
        mode = e.accel();
        eprintln!("  boot {i}: {:.2} s", t.elapsed().as_secs_f64());
        last = Some(e);
    }
    let qemu_b = last.ok_or_else(|| anyhow::anyhow!("no enclave booted"))?;
    let s = Samples::new(boots);
    result("qemu_boot_p50_ms", format!("{:.0}", s.pct(50.0) / 1e3));
    result("qemu_boot_p99_ms", format!("{:.0}", s.pct(99.0) / 1e3));
    result("qemu_accel", mode);

    // The hop: a state for each side, then interleaved Process series.
    let process_mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![sim_pcr0.clone()] }).await;
    let (_pa, sock_a) = process_mesh.start_agent("agent-a", "ledger-init", Some(&sim_pcr0));
    let (_pb, sock_b) = process_mesh.start_agent("agent-b", "interest", Some(&sim_pcr0));
    let unix = |p: &std::path::Path| format!("unix://{}", p.display());
    let state_process = client(&unix(&sock_a))?
        .init(process_mesh.init_request("bench-qemu", 100_000, 500, "").await)
        .await?
        .into_inner()
        .state
        .ok_or_else(|| anyhow::anyhow!("no state"))?;
    // The guest's state comes from a second enclave playing agent A (the QEMU-mode
    // emulator releases this mesh's TSK only to the EIF's PCR0).
    let qa = tokio::task::block_in_place(|| QemuEnclave::boot(&mesh, &eif.path, 40, "agent-a", "ledger-init"));
    qa.wait_serving(Duration::from_secs(180)).await?;
    let state_qemu = client(&qa.agent_addr())?
        .init(mesh.init_request("bench-qemu", 100_000, 500, "").await)
        .await?
        .into_inner()
        .state
        .ok_or_else(|| anyhow::anyhow!("no state"))?;

    let mut on_unix = client(&unix(&sock_b))?;
    let mut on_hvsock = client(&qemu_b.agent_addr())?;
    for _ in 0..20 {
        process(&mut on_unix, &state_process).await?;
        process(&mut on_hvsock, &state_qemu).await?;
    }
    let (mut u, mut h) = (Vec::new(), Vec::new());
    let per_round = (args.iters / args.rounds.max(1)).max(1);
    for _ in 0..args.rounds.max(1) {
        for _ in 0..per_round {
            u.push(process(&mut on_unix, &state_process).await?);
        }
        for _ in 0..per_round {
            h.push(process(&mut on_hvsock, &state_qemu).await?);
        }
    }
    let (u, h) = (Samples::new(u), Samples::new(h));
    eprintln!("  hop p50: unix (process mode) {:.0} µs, hvsock (QEMU guest) {:.0} µs", u.pct(50.0), h.pct(50.0));
    result("qemu_hop_unix_p50_us", format!("{:.1}", u.pct(50.0)));
    result("qemu_hop_hvsock_p50_us", format!("{:.1}", h.pct(50.0)));
    result("qemu_hop_hvsock_p99_us", format!("{:.1}", h.pct(99.0)));
    drop(qa);
    drop(qemu_b);
    Ok(())
}
