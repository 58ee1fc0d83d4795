//! Load through the real mesh: `enclavemesh load` runs many SecureStateLoops at once and
//! none may be lost. CI runs 100; the documented default (500) is for `scripts/load.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use enclavemesh_harness::loopkit::{AgentBRoute, Loop, TASK_QUEUE, assert_load_complete, load_args};

#[tokio::test(flavor = "multi_thread")]
async fn slow_load_100_workflows_none_lost() {
    let (l, _) = Loop::start(AgentBRoute::Direct).await;
    // LOAD_WORKFLOWS=500 runs the documented default through the same harness by hand.
    let n: u32 = std::env::var("LOAD_WORKFLOWS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let steps = 3u32;
    let pid_a = format!("agent-a={}", l.a.pid());
    let pid_b = format!("agent-b={}", l.b.pid());
    let args = load_args("it-load", n, steps, 25, 240, &["--agent-pid", &pid_a, "--agent-pid", &pid_b]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = assert_load_complete(&l.temporal.cli_with_env(TASK_QUEUE, &args, &l.mesh.owner_env()), n);
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
