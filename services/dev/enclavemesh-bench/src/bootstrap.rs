//! Agent bootstrap: from starting the agent process to its serving socket, which it
//! opens only once the key ring is ready (identity, every TSK version released by KMS,
//! audit trail). Measured on the real release binaries, simulated NSM, one TSK version,
//! against a running kms-emulator and kms-sidecar, with the agent's p50/p99 over runs.

use std::time::{Duration, Instant};

use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::{DevMesh, MeshOptions, Proc};

use crate::result;
use crate::stats::Samples;

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// Timed agent starts.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Untimed starts first (page cache, emulator warm-up).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Prefix of the RESULT keys.
    #[arg(long, default_value = "bootstrap")]
    key: String,
}

pub fn run(args: BootstrapArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let pcr0 = random_pcr0();
    let mesh = rt.block_on(DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }));
    let mut samples = Vec::with_capacity(args.runs);
    for i in 0..args.warmup + args.runs {
        let (cmd, sock) = mesh.agent_command(&format!("boot-{i}"), "interest", Some(&pcr0));
        let t = Instant::now();
        let mut agent = Proc::spawn(&format!("boot-{i}"), cmd, mesh.logs_dir());
        while !sock.exists() {
            agent.assert_running();
            anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "agent {i} did not serve within 60 s");
            std::thread::sleep(Duration::from_micros(200));
        }
        let took = t.elapsed();
        agent.kill();
        if i >= args.warmup {
            samples.push(took);
        }
    }
    let s = Samples::new(samples);
    eprintln!("  {}: n={} p50={:.1}ms p99={:.1}ms", args.key, s.len(), s.pct(50.0) / 1e3, s.pct(99.0) / 1e3);
    result(&format!("{}_p50_ms", args.key), format!("{:.1}", s.pct(50.0) / 1e3));
    result(&format!("{}_p99_ms", args.key), format!("{:.1}", s.pct(99.0) / 1e3));
    Ok(())
}
