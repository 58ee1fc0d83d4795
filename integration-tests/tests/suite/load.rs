//! Load through the real mesh: `enclavemesh load` runs many SecureStateLoops at once and
//! none may be lost. CI runs 100; the documented default (500) is for `scripts/load.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use enclavemesh_harness::loopkit::{AgentBRoute, INITIAL_BALANCE, Loop, RATE_BPS, TASK_QUEUE};

#[tokio::test(flavor = "multi_thread")]
async fn slow_load_100_workflows_none_lost() {
    let (l, _) = Loop::start(AgentBRoute::Direct).await;
    // LOAD_WORKFLOWS=500 runs the documented default through the same harness by hand.
    let n: u32 = std::env::var("LOAD_WORKFLOWS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let steps = 3u32;
    let pid_a = format!("agent-a={}", l.a.pid());
    let pid_b = format!("agent-b={}", l.b.pid());
    let (n_s, steps_s, bal, rate) =
        (n.to_string(), steps.to_string(), INITIAL_BALANCE.to_string(), RATE_BPS.to_string());
    let args = [
        "load",
        "--workflows",
        &n_s,
        "--steps",
        &steps_s,
        "--concurrency",
        "25",
        "--timeout-secs",
        "240",
        "--initial-balance",
        &bal,
        "--rate-bps",
        &rate,
        "--id-prefix",
        "it-load",
        "--progress-secs",
        "0",
        "--agent-pid",
        &pid_a,
        "--agent-pid",
        &pid_b,
    ];
    let (ok, lines, all) = l.temporal.cli_with_env(TASK_QUEUE, &args, &l.mesh.owner_env());
    let r = lines.iter().find(|v| v["event"] == "load").unwrap_or_else(|| panic!("no load report: {all}"));
    eprintln!("load report: {r}");
    assert_eq!(r["lost"], 0, "nothing lost: {r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["not_started"], 0, "{r}");
    assert_eq!(r["completed"], u64::from(n), "{r}");
    assert!(ok, "clean run exits 0: {all}");
    let p50 = r["latency_ms"]["p50"].as_f64().unwrap();
    let p99 = r["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p50 > 0.0 && p99 >= p50, "{r}");
    assert!(r["throughput_workflows_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    let agents = r["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2, "{r}");
    for a in agents {
        assert!(a["vm_rss_kb"].as_u64().unwrap_or(0) > 0, "memory of {a}");
    }
    // The CLI's "completed" is backed by the sealed state itself: spot-check runs.
    for i in [0, n / 2, n.saturating_sub(1)] {
        l.assert_completed_exactly_once(&format!("it-load-{i:05}"), steps);
    }
}
