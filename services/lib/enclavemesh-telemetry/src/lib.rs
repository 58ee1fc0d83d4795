//! One place that decides how every program logs, traces and exports metrics.
//!
//! Programs call [`init`] once at the start of `main` and keep the guard:
//!
//! ```no_run
//! # async fn main_body() {
//! let _telemetry = enclavemesh_telemetry::init("kms-sidecar");
//! # }
//! ```
//!
//! * Logs go to stderr (`RUST_LOG` filters, default `info`; `ENCLAVEMESH_LOG_FORMAT=json`
//!   for JSON lines) — unchanged from before OpenTelemetry.
//! * `OTEL_EXPORTER_OTLP_ENDPOINT` set ⇒ spans (batch processor on the tokio runtime)
//!   and metrics are exported over OTLP/gRPC. `http(s)://` uses the standard exporter;
//!   `unix:///path`, `vsock://CID:PORT`, `tcp://host:port` dial through
//!   `enclavemesh_transport`, which is how an enclave (no network) exports via a
//!   parent-side `vsock-bridge`. Unset ⇒ no exporter, no connection, no retries.
//! * W3C trace context is propagated by [`GrpcTraceLayer`] (tonic servers and
//!   clients; [`traced_channel`]) and [`inject_into`] / [`extract_from`] (anything
//!   else with HTTP headers), exporter or not: link a span to a caller with
//!   [`set_parent`] and read its context with [`span_context`] (not
//!   `tracing-opentelemetry`'s span extension, which only works while exporting).
//!
//! Nothing here ever takes payload bytes: span attributes are ids, names, sizes and codes.

mod body;
mod call;
mod config;
mod context_layer;
mod error;
mod grpc;
mod kms;
pub mod metrics;
mod pipeline;
pub mod process_stats;
mod propagation;
#[cfg(feature = "test-receiver")]
pub mod testing;
mod w3c;

pub use body::TracedBody;
pub use config::{
    DEFAULT_OTEL_FILTER, ENV_ENDPOINT, ENV_LOG_FORMAT, ENV_OTEL_FILTER, ENV_RESOURCE_ATTRIBUTES, ENV_SDK_DISABLED,
    ENV_SERVICE_NAME, ExportTarget, TelemetryConfig, parse_resource_attributes,
};
pub use context_layer::{set_parent, span_context};
pub use error::TelemetryError;
pub use grpc::{GrpcTrace, GrpcTraceFuture, GrpcTraceLayer, traced_channel};
pub use kms::kms_span;
pub use pipeline::{TelemetryGuard, build};
pub use propagation::{
    current_context, extract_from, inject_context_into, inject_interceptor, inject_into, inject_with,
};

/// Sets up logging and (if `OTEL_EXPORTER_OTLP_ENDPOINT` is set) OTLP export for
/// `service` from the standard environment; see [`TelemetryConfig::from_env`].
///
/// Never fails: a bad endpoint is reported on stderr and the program continues with
/// logs only. Safe to call more than once (later calls return an inert guard), so
/// tests that start several components in one process work. Call it from inside the
/// tokio runtime (`#[tokio::main]`) and keep the guard until `main` returns.
pub fn init(service: &str) -> TelemetryGuard {
    let config = TelemetryConfig::from_env(service);
    let json_logs = config.json_logs;
    match build(config) {
        Ok(guard) => guard,
        Err(TelemetryError::AlreadyInitialised) => TelemetryGuard::default(),
        Err(e) => {
            // Telemetry must never stop a service: fall back to logs only and say why.
            let mut fallback = TelemetryConfig::new(service);
            fallback.json_logs = json_logs;
            let guard = build(fallback).unwrap_or_default();
            tracing::warn!(error = %e, "OpenTelemetry export disabled");
            guard
        }
    }
}
