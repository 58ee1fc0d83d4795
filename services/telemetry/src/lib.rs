//! One place that decides how every program logs and traces.
//!
//! Programs call [`init`] once at start. Logs go to stderr (`RUST_LOG` filters,
//! default `info`); `ENCLAVEMESH_LOG_FORMAT=json` switches to JSON lines so tests and
//! operators can scan them mechanically.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber for `service`. Safe to call more than once (later
/// calls are no-ops), so tests that start several components in one process work.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("ENCLAVEMESH_LOG_FORMAT").is_ok_and(|v| v == "json");
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry.with(fmt::layer().json().with_writer(std::io::stderr)).try_init()
    } else {
        registry.with(fmt::layer().with_writer(std::io::stderr)).try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}
