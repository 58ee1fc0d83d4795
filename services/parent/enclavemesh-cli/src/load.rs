//! `enclavemesh load`: many SecureStateLoop runs at bounded concurrency, then a report.
//!
//! The question a load run answers is "does anything get lost under load?", so every
//! started run ends in exactly one bucket: **completed** (a result whose final envelope
//! is step S of this workflow and whose summaries are steps 0..=S once each),
//! **failed** (the workflow failed, typed — counted by failure type), or **lost**
//! (started, but no result within `--timeout-secs`, or a result that is not S steps of
//! this run). Runs that could not even be started are reported apart. Latency is from
//! start to result; memory is each agent's VmRSS/VmHWM from `/proc/PID/status` at the
//! end (`--agent-pid NAME=PID`), since the enclaves are the scarce resource.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use enclavemesh_workflow::SecureStateLoopRun;
use enclavemesh_workflow::TemporalArgs;
use enclavemesh_workflow::connect::{connect_to_with_retry, default_identity};
use enclavemesh_workflow::types::{Handoff, WorkflowInput, WorkflowOutput};
use serde::Serialize;
use serde_json::json;
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::output::Failure;

/// Exit code when any run failed, was lost or could not be started.
const EXIT_NOT_CLEAN: u8 = 2;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Number of SecureStateLoop runs to start.
    #[arg(long, env = "ENCLAVEMESH_LOAD_WORKFLOWS", default_value_t = 500)]
    workflows: u32,
    /// B-steps per run.
    #[arg(long, env = "ENCLAVEMESH_LOAD_STEPS", default_value_t = 3)]
    steps: u32,
    /// How state moves between agent calls (as `enclavemesh trigger --handoff`).
    #[arg(long, env = "ENCLAVEMESH_HANDOFF", default_value = "local")]
    handoff: Handoff,
    /// Runs in flight at once (started and not yet finished).
    #[arg(long, env = "ENCLAVEMESH_LOAD_CONCURRENCY", default_value_t = 50)]
    concurrency: usize,
    /// A run without a result this many seconds after its start counts as lost.
    #[arg(long, env = "ENCLAVEMESH_LOAD_TIMEOUT_SECS", default_value_t = 300)]
    timeout_secs: u64,
    /// Every run's input (each sealed by the owner for its own workflow id).
    #[command(flatten)]
    input: crate::owner::InputArgs,
    #[command(flatten)]
    owner: crate::owner::OwnerArgs,
    /// Report this process's memory at the end, as NAME=PID (repeatable), e.g. agent-a=1234.
    #[arg(
        long = "agent-pid",
        env = "ENCLAVEMESH_LOAD_AGENT_PIDS",
        value_delimiter = ',',
        value_parser = parse_agent_pid
    )]
    agent_pids: Vec<(String, u32)>,
    /// Workflow id prefix (default: load-<unix time>-<pid>); ids are <prefix>-<n>.
    #[arg(long)]
    id_prefix: Option<String>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5)]
    progress_secs: u64,
}

fn parse_agent_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.split_once('=').ok_or_else(|| format!("expected NAME=PID, got {s:?}"))?;
    let pid = pid.trim().parse().map_err(|e| format!("bad pid in {s:?}: {e}"))?;
    Ok((name.trim().to_string(), pid))
}

/// How one run ended.
#[derive(Debug)]
enum Outcome {
    Completed { latency: Duration },
    Failed { kind: String },
    Lost { workflow_id: String, reason: String },
    NotStarted { reason: String },
}

/// A completed result is only "completed" if it is exactly the run that was asked for.
fn check_output(out: &WorkflowOutput, workflow_id: &str, steps: u32) -> Result<(), String> {
    let fin = &out.final_envelope;
    if fin.workflow_id != workflow_id || fin.step != u64::from(steps) {
        return Err(format!(
            "final envelope is {} step {}, expected {workflow_id} step {steps}",
            fin.workflow_id, fin.step
        ));
    }
    let got: Vec<u64> = out.steps.iter().map(|s| s.step).collect();
    if got != (0..=u64::from(steps)).collect::<Vec<_>>() {
        return Err(format!("step summaries {got:?}, expected 0..={steps} once each"));
    }
    Ok(())
}

async fn one(
    client: Client,
    task_queue: String,
    workflow_id: String,
    input: WorkflowInput,
    timeout: Duration,
) -> Outcome {
    let steps = input.steps;
    let started = Instant::now();
    let opts = WorkflowStartOptions::new(task_queue, workflow_id.clone()).build();
    let handle = match client.start_workflow(SecureStateLoopRun, input, opts).await {
        Ok(h) => h,
        Err(e) => return Outcome::NotStarted { reason: e.to_string() },
    };
    let deadline = tokio::time::Instant::from_std(started + timeout);
    let lost = |reason: String| Outcome::Lost { workflow_id: workflow_id.clone(), reason };
    loop {
        let result =
            match tokio::time::timeout_at(deadline, handle.get_result(WorkflowGetResultOptions::default())).await {
                Ok(r) => r,
                Err(_) => return lost(format!("no result within {timeout:?}")),
            };
        return match result {
            Ok(out) => match check_output(&out, &workflow_id, steps) {
                Ok(()) => Outcome::Completed { latency: started.elapsed() },
                Err(reason) => lost(reason),
            },
            Err(WorkflowGetResultError::Failed(e)) => Outcome::Failed { kind: Failure::from_incoming(&e).kind },
            Err(WorkflowGetResultError::Cancelled { .. }) => Outcome::Failed { kind: "Cancelled".into() },
            Err(WorkflowGetResultError::Terminated { .. }) => Outcome::Failed { kind: "Terminated".into() },
            Err(WorkflowGetResultError::TimedOut) => Outcome::Failed { kind: "TimedOut".into() },
            Err(WorkflowGetResultError::ContinuedAsNew) => lost("continued as new (SecureStateLoop never does)".into()),
            Err(WorkflowGetResultError::NotFound(s)) => lost(format!("started but not found: {}", s.message())),
            Err(WorkflowGetResultError::PayloadConversion(e)) => lost(format!("result does not decode: {e}")),
            // Transport trouble while waiting says nothing about the run: ask again.
            Err(e) => {
                tracing::debug!(workflow_id, error = %e, "waiting for result; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
    }
}

/// Nearest-rank percentile of sorted latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    enclavemesh_telemetry::process_stats::percentile(sorted, p).unwrap_or(Duration::ZERO)
}

#[derive(Debug, Serialize)]
struct AgentMemory {
    name: String,
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_rss_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_hwm_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// VmRSS (resident now) and VmHWM (peak resident) of a process, in kB.
fn agent_memory(name: &str, pid: u32) -> AgentMemory {
    use enclavemesh_telemetry::process_stats::status_kib;
    let (vm_rss_kb, vm_hwm_kb) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
    let error = vm_rss_kb.is_none().then(|| format!("cannot read VmRSS from /proc/{pid}/status (process gone?)"));
    AgentMemory { name: name.to_string(), pid, vm_rss_kb, vm_hwm_kb, error }
}

/// Runs the load and prints the report; the exit code says whether it was clean.
pub async fn run(temporal: &TemporalArgs, task_queue: &str, args: &LoadArgs, json_out: bool) -> anyhow::Result<u8> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let owner_key = Arc::new(args.owner.key()?);
    let settings = temporal.resolve()?;
    let client =
        connect_to_with_retry(&settings, &default_identity("enclavemesh-load"), Duration::from_secs(5)).await?;
    let prefix = args.id_prefix.clone().unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("load-{}-{}", now.as_secs(), std::process::id())
    });
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let done = Arc::new(AtomicU64::new(0));
    let total = u64::from(args.workflows);

    let progress = (args.progress_secs > 0).then(|| {
        let done = done.clone();
        let every = Duration::from_secs(args.progress_secs);
        tokio::spawn(async move {
            let t0 = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                eprintln!("load: {}/{total} finished after {:.0?}", done.load(Ordering::Relaxed), t0.elapsed());
            }
        })
    });

    let manifest = Arc::new(args.input.run_manifest()?);
    let steps = manifest.steps.unwrap_or(args.steps);
    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(args.concurrency));
    let mut set = JoinSet::new();
    for i in 0..args.workflows {
        let permit = sem.clone().acquire_owned().await.context("load semaphore closed")?;
        let (client, tq, wf, done) = (client.clone(), task_queue.to_string(), format!("{prefix}-{i:05}"), done.clone());
        let (owner, input_args, key, handoff, manifest) =
            (args.owner.clone(), args.input.clone(), owner_key.clone(), args.handoff, manifest.clone());
        set.spawn(async move {
            // Sealed per run (it opens for its own workflow id only), before the clock starts.
            let outcome = match owner.seal(&key, &wf, &input_args, &manifest.sha256).await {
                Ok(sealed_input_b64) => {
                    let input = WorkflowInput { steps, sealed_input_b64, handoff, manifest_b64: manifest.b64.clone() };
                    one(client, tq, wf, input, timeout).await
                }
                Err(e) => Outcome::NotStarted { reason: format!("sealing the input: {e:#}") },
            };
            done.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            outcome
        });
    }
    let mut outcomes = Vec::with_capacity(args.workflows as usize);
    while let Some(r) = set.join_next().await {
        outcomes.push(r.unwrap_or_else(|e| Outcome::NotStarted { reason: format!("load task panicked: {e}") }));
    }
    let wall = t0.elapsed();
    if let Some(p) = progress {
        p.abort();
    }

    let mut latencies = Vec::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut lost = Vec::new();
    let mut not_started = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Completed { latency } => latencies.push(latency),
            Outcome::Failed { kind } => *failures.entry(kind).or_default() += 1,
            Outcome::Lost { workflow_id, reason } => lost.push(json!({"workflow_id": workflow_id, "reason": reason})),
            Outcome::NotStarted { reason } => not_started.push(reason),
        }
    }
    latencies.sort();
    let failed: u64 = failures.values().sum();
    let completed = latencies.len() as u64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let secs = wall.as_secs_f64().max(1e-9);
    let mean =
        if latencies.is_empty() { Duration::ZERO } else { latencies.iter().sum::<Duration>() / latencies.len() as u32 };
    let agents: Vec<AgentMemory> = args.agent_pids.iter().map(|(n, p)| agent_memory(n, *p)).collect();
    let report = json!({
        "event": "load",
        "workflows": args.workflows,
        "steps": steps,
        "concurrency": args.concurrency,
        "started": total - not_started.len() as u64,
        "completed": completed,
        "failed": failed,
        "lost": lost.len(),
        "not_started": not_started.len(),
        "failures_by_type": failures,
        "lost_runs": lost.iter().take(20).collect::<Vec<_>>(),
        "not_started_reasons": not_started.iter().take(5).collect::<Vec<_>>(),
        "latency_ms": {"p50": ms(percentile(&latencies, 50.0)), "p99": ms(percentile(&latencies, 99.0)),
                        "max": ms(latencies.last().copied().unwrap_or_default()), "mean": ms(mean)},
        "wall_secs": secs,
        "throughput_workflows_per_sec": completed as f64 / secs,
        "throughput_steps_per_sec": (completed * (u64::from(steps) + 1)) as f64 / secs,
        "agents": agents,
        "id_prefix": prefix,
    });
    if json_out {
        println!("{report}");
    } else {
        print_human(&report);
    }
    let clean = lost.is_empty() && failed == 0 && not_started.is_empty();
    Ok(if clean { 0 } else { EXIT_NOT_CLEAN })
}

fn print_human(r: &serde_json::Value) {
    println!(
        "load: {} workflows x {} steps, concurrency {}  (ids {}-*)",
        r["workflows"],
        r["steps"],
        r["concurrency"],
        r["id_prefix"].as_str().unwrap_or("")
    );
    println!(
        "  completed {}  failed {}  lost {}  not started {}",
        r["completed"], r["failed"], r["lost"], r["not_started"]
    );
    if r["failed"].as_u64().unwrap_or(0) > 0 {
        println!("  failures by type: {}", r["failures_by_type"]);
    }
    for l in r["lost_runs"].as_array().into_iter().flatten() {
        println!("  LOST {}: {}", l["workflow_id"].as_str().unwrap_or(""), l["reason"].as_str().unwrap_or(""));
    }
    for reason in r["not_started_reasons"].as_array().into_iter().flatten() {
        println!("  not started: {}", reason.as_str().unwrap_or(""));
    }
    let lat = &r["latency_ms"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    println!(
        "  latency ms: p50 {:.0}  p99 {:.0}  max {:.0}  mean {:.0}",
        f(&lat["p50"]),
        f(&lat["p99"]),
        f(&lat["max"]),
        f(&lat["mean"])
    );
    println!(
        "  wall {:.1}s  throughput {:.1} workflows/s, {:.1} agent steps/s",
        f(&r["wall_secs"]),
        f(&r["throughput_workflows_per_sec"]),
        f(&r["throughput_steps_per_sec"])
    );
    for a in r["agents"].as_array().into_iter().flatten() {
        match a["error"].as_str() {
            Some(e) => println!("  {} (pid {}): {e}", a["name"].as_str().unwrap_or(""), a["pid"]),
            None => println!(
                "  {} (pid {}): VmRSS {} kB, peak VmHWM {} kB",
                a["name"].as_str().unwrap_or(""),
                a["pid"],
                a["vm_rss_kb"],
                a["vm_hwm_kb"]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_pid_parses() {
        assert_eq!(parse_agent_pid("agent-a=12").unwrap(), ("agent-a".to_string(), 12));
        assert!(parse_agent_pid("agent-a").is_err());
        assert!(parse_agent_pid("a=x").is_err());
    }

    #[test]
    fn own_memory_is_readable() {
        let m = agent_memory("me", std::process::id());
        assert!(m.vm_rss_kb.unwrap_or(0) > 0, "{m:?}");
    }
}
