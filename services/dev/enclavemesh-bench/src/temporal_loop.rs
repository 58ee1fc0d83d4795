//! The whole loop through Temporal, three ways on one dev server, interleaved:
//!
//! - `local`: `SecureStateLoop` on real agents with local-activity handoffs (the default
//!   mode: one workflow task carries many handoffs, each result a marker in history);
//! - `remote`: the same workflow on the same agents with one Temporal activity per step
//!   (the design before issue 17, the baseline its targets are ratios of);
//! - `plain`: local handoffs to two plaintext pass-through `fake-agent` processes (no
//!   crypto), which isolates what the enclave side adds.
//!
//! One release `enclavemesh-worker` per kind, on its own task queue. Runs alternate
//! between the kinds so load drift on the shared machine hits all alike. Temporal's own
//! CPU per workflow comes from /proc/PID/stat (utime + stime, all threads) across each
//! throughput phase.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::temporal::Temporal;
use enclavemesh_harness::{DevMesh, MeshOptions, Proc, wait_for_path};
use enclavemesh_workflow::SecureStateLoopRun;
use enclavemesh_workflow::types::{Handoff, WorkflowInput};
use futures::StreamExt as _;
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};

use crate::result;
use crate::rss::RssSampler;
use crate::stats::Samples;

#[derive(Debug, clap::Args)]
pub struct LoopArgs {
    /// Sequential runs per kind for latency.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Workflows in flight at once for throughput.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Workflows per kind in the throughput phase (two rounds of half each).
    #[arg(long, default_value_t = 100)]
    total: usize,
    /// ProcessState steps per run (after InitState).
    #[arg(long, default_value_t = 20)]
    steps: u32,
    /// Untimed runs per kind first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
}

/// One way of running the loop: its name in the results, task queue and handoff mode.
#[derive(Debug, Clone, Copy)]
struct Kind {
    name: &'static str,
    queue: &'static str,
    handoff: Handoff,
}

const LOCAL: Kind = Kind { name: "local", queue: "bench-local", handoff: Handoff::Local };
const REMOTE: Kind = Kind { name: "remote", queue: "bench-remote", handoff: Handoff::Remote };
const PLAIN: Kind = Kind { name: "plain", queue: "bench-plain", handoff: Handoff::Local };
const KINDS: [Kind; 3] = [LOCAL, REMOTE, PLAIN];

/// The input for run `id`: sealed by the data owner for the secure agents (made before
/// the run's clock starts, as an owner does on its own machine); opaque for the fakes.
async fn input_for(mesh: &DevMesh, kind: Kind, id: &str) -> String {
    if kind.queue == PLAIN.queue {
        enclavemesh_harness::fake_agent::opaque_sealed_input_b64()
    } else {
        mesh.sealed_input_b64(id, 100_000, 250, "").await
    }
}

/// CPU time of `pid` so far (user + system, every thread, exited ones included), from
/// /proc/PID/stat in clock ticks (100 Hz on Linux).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised command name: field 3 (state) first, utime is 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

async fn run_one(client: &Client, kind: Kind, id: String, steps: u32, sealed: String) -> anyhow::Result<Duration> {
    let (queue, handoff) = (kind.queue, kind.handoff);
    let input = WorkflowInput { steps, sealed_input_b64: sealed, handoff, manifest_b64: String::new() };
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
async fn seq(client: &Client, mesh: &DevMesh, kind: Kind, id: String, steps: u32) -> anyhow::Result<Duration> {
    let sealed = input_for(mesh, kind, &id).await;
    run_one(client, kind, id, steps, sealed).await
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
    let _wl = temporal.start_worker(&dir, LOCAL.queue, &ua, &ub);
    let _wr = temporal.start_worker(&dir, REMOTE.queue, &ua, &ub);
    let _wp = temporal.start_worker(&dir, PLAIN.queue, &fake_a, &fake_b);

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
            for kind in KINDS {
                seq(&client, &mesh, kind, format!("warm-{}-{pid}-{i}", kind.name), args.steps).await?;
            }
        }
        eprintln!("loop: warm; {} sequential runs per kind, steps={}", args.runs, args.steps);

        let mut lat: [Vec<Duration>; 3] = Default::default();
        for i in 0..args.runs {
            // Rotate which kind goes first.
            for j in 0..KINDS.len() {
                let k = (i + j) % KINDS.len();
                let kind = KINDS[k];
                lat[k].push(seq(&client, &mesh, kind, format!("lat-{}-{pid}-{i}", kind.name), args.steps).await?);
            }
        }
        for (kind, l) in KINDS.iter().zip(lat) {
            let s = Samples::new(l);
            let k = format!("loop_{}", kind.name);
            eprintln!("  {k}: n={} p50={:.2}ms p99={:.2}ms", s.len(), s.pct(50.0) / 1e3, s.pct(99.0) / 1e3);
            result(&format!("{k}_p50_ms"), format!("{:.2}", s.pct(50.0) / 1e3));
            result(&format!("{k}_p99_ms"), format!("{:.2}", s.pct(99.0) / 1e3));
        }
        result("loop_runs", args.runs);
        result("loop_steps", args.steps);

        // Throughput: `total` workflows per kind, `concurrency` in flight; two rounds each,
        // alternating, summed. Temporal's CPU is read around each phase.
        let sampler = RssSampler::start(agent_b.pid());
        let mut wall = [Duration::ZERO; 3];
        let mut server_cpu = [Duration::ZERO; 3];
        let n = args.total / 2;
        for round in 0..2 {
            for (k, kind) in KINDS.into_iter().enumerate() {
                let mut runs = Vec::with_capacity(n);
                for i in 0..n {
                    let id = format!("tp-{}-{pid}-{round}-{i}", kind.name);
                    let sealed = input_for(&mesh, kind, &id).await;
                    runs.push((id, sealed));
                }
                let (t, cpu0) = (Instant::now(), process_cpu(temporal.pid()));
                let outs: Vec<anyhow::Result<Duration>> = futures::stream::iter(runs)
                    .map(|(id, sealed)| run_one(&client, kind, id, args.steps, sealed))
                    .buffer_unordered(args.concurrency)
                    .collect()
                    .await;
                wall[k] += t.elapsed();
                server_cpu[k] += process_cpu(temporal.pid()).saturating_sub(cpu0);
                for o in outs {
                    o?;
                }
            }
        }
        let peak = sampler.finish();
        let workflows = (n * 2) as f64;
        for (k, kind) in KINDS.iter().enumerate() {
            let wps = workflows / wall[k].as_secs_f64();
            let cpu_ms = server_cpu[k].as_secs_f64() * 1e3 / workflows;
            eprintln!(
                "  {}: {wps:.1} wf/s at {} in flight, Temporal CPU {cpu_ms:.1} ms per workflow",
                kind.name, args.concurrency
            );
            result(&format!("loop_{}_wps", kind.name), format!("{wps:.1}"));
            result(&format!("loop_{}_temporal_cpu_ms", kind.name), format!("{cpu_ms:.1}"));
        }
        result("loop_concurrency", args.concurrency);
        result("agent_rss_loop_kib", peak);
        anyhow::Ok(())
    })?;
    drop(temporal);
    Ok(())
}
