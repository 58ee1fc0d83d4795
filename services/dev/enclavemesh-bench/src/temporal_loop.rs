//! The whole loop through Temporal: `SecureStateLoop` on real agents against the very
//! same workflow and activities on plaintext pass-through agents.
//!
//! One Temporal dev server, two release `enclavemesh-worker` processes on two task
//! queues: `bench-secure` talks to real agents (simulated NSM, AES-GCM sealing, hash
//! chain), `bench-plain` to two `fake-agent` processes (worker testkit fake: no crypto).
//! Workflow, activities, worker binary, gRPC transport and Temporal are identical, so the
//! ratio isolates what the enclave side adds. Runs alternate between the two so load
//! drift on the shared machine hits both alike.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::temporal::Temporal;
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, wait_for_path};
use enclavemesh_workflow::SecureStateLoopRun;
use enclavemesh_workflow::types::WorkflowInput;
use futures::StreamExt as _;
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};

use crate::result;
use crate::rss::RssSampler;
use crate::stats::Samples;

#[derive(Debug, clap::Args)]
pub struct LoopArgs {
    /// Sequential runs per workflow kind for latency.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Workflows in flight at once for throughput.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Workflows per kind in the throughput phase.
    #[arg(long, default_value_t = 300)]
    total: usize,
    /// ProcessState steps per run (after InitState).
    #[arg(long, default_value_t = 1)]
    steps: u32,
    /// Untimed runs per kind first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
}

const SECURE: &str = "bench-secure";
const PLAIN: &str = "bench-plain";

/// The input for run `id`: sealed by the data owner for the secure agents (made before
/// the run's clock starts, as an owner does on its own machine); opaque for the fakes.
async fn input_for(mesh: &DevMesh, queue: &str, id: &str) -> String {
    if queue == SECURE {
        mesh.sealed_input_b64(id, 100_000, 250, "").await
    } else {
        enclavemesh_harness::fake_agent::opaque_sealed_input_b64()
    }
}

async fn run_one(client: &Client, queue: &str, id: String, steps: u32, sealed: String) -> anyhow::Result<Duration> {
    let input = WorkflowInput { steps, sealed_input_b64: sealed };
    let t = Instant::now();
    let handle = client
        .start_workflow(SecureStateLoopRun, input, WorkflowStartOptions::new(queue.to_string(), id.clone()).build())
        .await
        .map_err(|e| anyhow!("start {id}: {e}"))?;
    let out = handle.get_result(WorkflowGetResultOptions::default()).await.map_err(|e| anyhow!("{id}: {e}"))?;
    let elapsed = t.elapsed();
    anyhow::ensure!(out.steps.len() == steps as usize + 1, "{id}: {} steps completed", out.steps.len());
    Ok(elapsed)
}

/// One run, its input sealed first (untimed).
async fn seq(client: &Client, mesh: &DevMesh, queue: &str, id: String, steps: u32) -> anyhow::Result<Duration> {
    let sealed = input_for(mesh, queue, &id).await;
    run_one(client, queue, id, steps, sealed).await
}

fn spawn_fake(dir: &std::path::Path, name: &str) -> anyhow::Result<(Proc, String)> {
    let sock = dir.join(format!("fake-{name}.sock"));
    let addr = format!("unix://{}", sock.display());
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("fake-agent").arg("--listen").arg(&addr).arg("--name").arg(name);
    let p = Proc::spawn(&format!("fake-{name}"), cmd, dir);
    wait_for_path(&sock, Duration::from_secs(10));
    Ok((p, addr))
}

pub fn run(args: LoopArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let pcr0 = random_pcr0();
    let mesh = rt.block_on(DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }));
    let dir = mesh.logs_dir().to_path_buf();
    eprintln!("loop: mesh in {}", dir.display());
    let temporal = Temporal::start(&dir);
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (agent_b, sock_b) = mesh.start_agent("agent-b", "interest", Some(&pcr0));
    let (_fa, fake_a) = spawn_fake(&dir, "agent-a")?;
    let (_fb, fake_b) = spawn_fake(&dir, "agent-b")?;
    let (ua, ub) = (format!("unix://{}", sock_a.display()), format!("unix://{}", sock_b.display()));
    let _ws = temporal.start_worker(&dir, SECURE, &ua, &ub);
    let _wp = temporal.start_worker(&dir, PLAIN, &fake_a, &fake_b);

    rt.block_on(async {
        let client = {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match enclavemesh_workflow::connect::connect(&temporal.address, "default", "enclavemesh-bench").await {
                    Ok(c) => break c,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("loop: temporal not ready ({e})");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(anyhow!("{e}")),
                }
            }
        };
        let pid = std::process::id();
        for i in 0..args.warmup {
            seq(&client, &mesh, SECURE, format!("warm-s-{pid}-{i}"), args.steps).await?;
            seq(&client, &mesh, PLAIN, format!("warm-p-{pid}-{i}"), args.steps).await?;
        }
        eprintln!("loop: warm; {} sequential runs per kind, steps={}", args.runs, args.steps);

        let (mut sec, mut pla) = (Vec::new(), Vec::new());
        for i in 0..args.runs {
            // Alternate which kind goes first.
            if i % 2 == 0 {
                sec.push(seq(&client, &mesh, SECURE, format!("lat-s-{pid}-{i}"), args.steps).await?);
                pla.push(seq(&client, &mesh, PLAIN, format!("lat-p-{pid}-{i}"), args.steps).await?);
            } else {
                pla.push(seq(&client, &mesh, PLAIN, format!("lat-p-{pid}-{i}"), args.steps).await?);
                sec.push(seq(&client, &mesh, SECURE, format!("lat-s-{pid}-{i}"), args.steps).await?);
            }
        }
        let (sec, pla) = (Samples::new(sec), Samples::new(pla));
        for (k, s) in [("loop_secure", &sec), ("loop_plain", &pla)] {
            eprintln!("  {k}: n={} p50={:.2}ms p99={:.2}ms", s.len(), s.pct(50.0) / 1e3, s.pct(99.0) / 1e3);
            result(&format!("{k}_p50_ms"), format!("{:.2}", s.pct(50.0) / 1e3));
            result(&format!("{k}_p99_ms"), format!("{:.2}", s.pct(99.0) / 1e3));
        }
        result("loop_runs", args.runs);
        result("loop_steps", args.steps);

        // Throughput: `total` workflows per kind, `concurrency` in flight; two rounds each,
        // alternating, summed.
        let sampler = RssSampler::start(agent_b.pid());
        let mut wall = [Duration::ZERO; 2];
        for round in 0..2 {
            for (k, queue) in [SECURE, PLAIN].into_iter().enumerate() {
                let n = args.total / 2;
                let mut runs = Vec::with_capacity(n);
                for i in 0..n {
                    let id = format!("tp-{queue}-{pid}-{round}-{i}");
                    let sealed = input_for(&mesh, queue, &id).await;
                    runs.push((id, sealed));
                }
                let t = Instant::now();
                let outs: Vec<anyhow::Result<Duration>> = futures::stream::iter(runs)
                    .map(|(id, sealed)| run_one(&client, queue, id, args.steps, sealed))
                    .buffer_unordered(args.concurrency)
                    .collect()
                    .await;
                wall[k] += t.elapsed();
                for o in outs {
                    o?;
                }
            }
        }
        let peak = sampler.finish();
        let per = |w: Duration| (args.total / 2 * 2) as f64 / w.as_secs_f64();
        eprintln!(
            "  throughput: secure {:.1} wf/s, plain {:.1} wf/s at {} in flight",
            per(wall[0]),
            per(wall[1]),
            args.concurrency
        );
        result("loop_secure_wps", format!("{:.1}", per(wall[0])));
        result("loop_plain_wps", format!("{:.1}", per(wall[1])));
        result("loop_concurrency", args.concurrency);
        result("agent_rss_loop_kib", peak);
        anyhow::Ok(())
    })?;
    drop(temporal);
    Ok(())
}
