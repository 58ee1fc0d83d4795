//! What W3C trace-context propagation costs a served call when no exporter is
//! configured (the agent's default): the real pipeline (`enclavemesh_telemetry::build`,
//! no endpoint, logs at `info`), a server span like the trace layer's, and per call
//! either nothing more (baseline) or the propagation itself: extract the caller's
//! `traceparent`, link the span to it, and inject the span's context into an outgoing
//! call's headers. The difference per call is the figure; the injected header is
//! checked to carry the caller's trace id, so the figure is of propagation that works.
//!
//! Runs in its own process (`hop` spawns it): it installs this process's global
//! subscriber.

use std::hint::black_box;
use std::time::{Duration, Instant};

use enclavemesh_telemetry::{TelemetryConfig, build, extract_from, inject_into, set_parent};
use http::{HeaderMap, HeaderValue};

use crate::result;

/// The caller's trace id in the benchmark's `traceparent`.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn server_span() -> tracing::Span {
    tracing::info_span!(
        target: "enclavemesh_telemetry::grpc",
        "grpc.server",
        otel.name = "enclavemesh.v1.AgentService/Process",
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = "enclavemesh.v1.AgentService",
        rpc.method = "Process",
    )
}

/// One call without propagation: the span alone.
fn bare_call() {
    let span = server_span();
    let _e = span.enter();
    black_box(&span);
}

/// One call with propagation: extract, link, inject into `out` (an outgoing call's
/// headers: a map that exists anyway, so it is reused rather than allocated here).
fn traced_call(incoming: &HeaderMap, out: &mut HeaderMap) {
    let span = server_span();
    set_parent(&span, extract_from(incoming));
    let _e = span.enter();
    out.clear();
    inject_into(out);
}

/// `n` runs of `f`, best (least disturbed) of `rounds` batches, in ns per run.
fn ns_per_call(rounds: usize, n: usize, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(t.elapsed());
    }
    best.as_secs_f64() * 1e9 / n as f64
}

pub fn run(iters: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _guard = rt.enter();
    let mut config = TelemetryConfig::new("trace-cost");
    config.log_filter = Some("info".into());
    // Logs go nowhere: the figure is of propagation, not of writing log lines.
    config.log_writer = Some(tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::sink));
    let guard = build(config)?;
    anyhow::ensure!(!guard.is_exporting(), "trace-cost measures the no-exporter path");

    let mut incoming = HeaderMap::new();
    incoming.insert("traceparent", HeaderValue::from_str(&format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))?);
    let mut out = HeaderMap::new();
    traced_call(&incoming, &mut out);
    let sent = out.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default();
    anyhow::ensure!(
        sent.split('-').nth(1) == Some(TRACE_ID),
        "the outgoing traceparent {sent:?} does not carry the caller's trace id {TRACE_ID}"
    );

    let rounds = 10;
    let n = iters.div_ceil(rounds).max(1);
    // Warm-up, then the two series interleaved so drifting machine load hits both.
    ns_per_call(1, n, bare_call);
    ns_per_call(1, n, || traced_call(&incoming, black_box(&mut out)));
    let (mut span_ns, mut traced_ns) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        span_ns = span_ns.min(ns_per_call(1, n, bare_call));
        traced_ns = traced_ns.min(ns_per_call(1, n, || traced_call(&incoming, black_box(&mut out))));
    }
    result("trace_span_us", format!("{:.2}", span_ns / 1000.0));
    result("trace_ctx_cost_us", format!("{:.2}", (traced_ns - span_ns).max(0.0) / 1000.0));
    eprintln!(
        "trace-cost: server span alone {:.2} us, with extract+link+inject {:.2} us (no exporter)",
        span_ns / 1000.0,
        traced_ns / 1000.0
    );
    Ok(())
}
