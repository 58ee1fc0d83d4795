//! Counters and histograms every service records, exported through the same OTLP
//! pipeline as traces.
//!
//! The helpers are no-ops until [`crate::build`] installed a meter provider (no
//! endpoint ⇒ nothing is recorded). Attributes are names, codes and outcomes only:
//! no helper accepts payload bytes.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;

/// `rpc.server.duration` (ms): one per served gRPC call.
pub const RPC_SERVER_DURATION: &str = "rpc.server.duration";
/// `rpc.client.duration` (ms): one per gRPC call made through [`crate::GrpcTraceLayer::client`].
pub const RPC_CLIENT_DURATION: &str = "rpc.client.duration";
/// `enclavemesh.kms.calls`: KMS operations by outcome.
pub const KMS_CALLS: &str = "enclavemesh.kms.calls";
/// `enclavemesh.envelope.open_failures`: sealed envelopes that could not be opened.
pub const OPEN_FAILURES: &str = "enclavemesh.envelope.open_failures";

struct Instruments {
    rpc_server: Histogram<f64>,
    rpc_client: Histogram<f64>,
    kms_calls: Counter<u64>,
    open_failures: Counter<u64>,
}

static INSTRUMENTS: RwLock<Option<Arc<Instruments>>> = RwLock::new(None);
/// Mirrors `INSTRUMENTS.is_some()` without taking the lock (the no-exporter fast path).
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn install(provider: &SdkMeterProvider) {
    let meter = provider.meter("enclavemesh");
    let inst = Instruments {
        rpc_server: meter
            .f64_histogram(RPC_SERVER_DURATION)
            .with_unit("ms")
            .with_description("Duration of served gRPC calls")
            .build(),
        rpc_client: meter
            .f64_histogram(RPC_CLIENT_DURATION)
            .with_unit("ms")
            .with_description("Duration of outgoing gRPC calls")
            .build(),
        kms_calls: meter.u64_counter(KMS_CALLS).with_description("KMS operations by operation and outcome").build(),
        open_failures: meter
            .u64_counter(OPEN_FAILURES)
            .with_description("Sealed envelopes that failed to open, by failure kind")
            .build(),
    };
    if let Ok(mut g) = INSTRUMENTS.write() {
        *g = Some(Arc::new(inst));
        INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) fn uninstall() {
    if let Ok(mut g) = INSTRUMENTS.write() {
        *g = None;
        INSTALLED.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether a meter provider is installed (an exporter runs): callers can skip
/// preparing attributes when nothing would be recorded.
pub(crate) fn installed() -> bool {
    INSTALLED.load(std::sync::atomic::Ordering::Relaxed)
}

fn with<F: FnOnce(&Instruments)>(f: F) {
    if !installed() {
        return;
    }
    let inst = INSTRUMENTS.read().ok().and_then(|g| g.clone());
    if let Some(i) = inst {
        f(&i);
    }
}

fn rpc_attrs(service: &str, method: &str, code: i32) -> [KeyValue; 4] {
    [
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service.to_owned()),
        KeyValue::new("rpc.method", method.to_owned()),
        KeyValue::new("rpc.grpc.status_code", i64::from(code)),
    ]
}

/// Records one served gRPC call (`code` = `tonic::Code as i32`). The server layer
/// calls this for you; use it only for calls that bypass the layer.
pub fn rpc(service: &str, method: &str, code: i32, duration: Duration) {
    with(|i| i.rpc_server.record(ms(duration), &rpc_attrs(service, method, code)));
}

/// Records one outgoing gRPC call (the client layer calls this for you).
pub fn rpc_client(service: &str, method: &str, code: i32, duration: Duration) {
    with(|i| i.rpc_client.record(ms(duration), &rpc_attrs(service, method, code)));
}

/// Counts one KMS operation: `op` e.g. `Decrypt`, `outcome` e.g. `ok`,
/// `access_denied`, `unavailable` (a short error class, never an error message).
pub fn kms_call(op: &str, outcome: &str) {
    with(|i| {
        i.kms_calls
            .add(1, &[KeyValue::new("kms.operation", op.to_owned()), KeyValue::new("outcome", outcome.to_owned())])
    });
}

/// Counts one envelope that could not be opened, by kind (e.g. `authentication`,
/// `replay`, `truncated`, `unknown_key_version`).
pub fn open_failure(kind: &str) {
    with(|i| i.open_failures.add(1, &[KeyValue::new("kind", kind.to_owned())]));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
