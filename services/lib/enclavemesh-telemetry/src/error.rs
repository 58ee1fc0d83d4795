//! Why telemetry could not be set up.

/// Errors from [`crate::build`]. [`crate::init`] never fails: it logs the error and
/// carries on with logs only, because missing telemetry must not stop a service.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint string is neither a URL nor a transport address.
    #[error("invalid OTLP endpoint '{endpoint}': {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP {signal} exporter: {source}")]
    Exporter {
        signal: &'static str,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// Could not create the channel for a `unix://`/`vsock://`/`tcp://` endpoint.
    #[error("cannot create the OTLP channel: {0}")]
    Transport(#[from] enclavemesh_transport::TransportError),
    /// Export runs on the tokio runtime; `build` was called outside one.
    #[error("OTLP export needs a tokio runtime: call init/build from inside #[tokio::main]")]
    NoRuntime,
    /// A log/span filter string did not parse.
    #[error("invalid filter '{filter}': {reason}")]
    InvalidFilter { filter: String, reason: String },
    /// A global `tracing` subscriber is already installed in this process.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialised,
}
