//! What a program wants from telemetry, separated from the process environment so
//! [`crate::build`] can be tested without touching global env vars.

use std::fmt;

use enclavemesh_transport::Address;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::TelemetryError;

/// Standard OTLP endpoint variable (all signals).
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Standard service name variable; overrides the name the program passes to `init`.
pub const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Standard `key=value,key=value` extra resource attributes.
pub const ENV_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// Standard kill switch: `true` disables export even if an endpoint is set.
pub const ENV_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// Which `tracing` spans become OpenTelemetry spans (EnvFilter syntax).
pub const ENV_OTEL_FILTER: &str = "ENCLAVEMESH_OTEL_FILTER";
/// `json` switches stderr logs to JSON lines.
pub const ENV_LOG_FORMAT: &str = "ENCLAVEMESH_LOG_FORMAT";

/// Spans exported by default: everything at `info` and above except the transport
/// stack underneath the exporter itself (h2/hyper/tonic/tower spans would otherwise
/// describe the export of spans, feeding back into the next batch) and the
/// OpenTelemetry SDK's own diagnostics.
pub const DEFAULT_OTEL_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,\
     opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,aws_smithy_runtime=off,\
     aws_smithy_runtime_api=off,aws_config=off";

/// Telemetry settings for one program.
pub struct TelemetryConfig {
    /// `service.name` resource attribute.
    pub service_name: String,
    /// OTLP gRPC endpoint; `None` means no exporter at all (spans still get ids so
    /// incoming `traceparent` is passed on to downstream calls).
    ///
    /// `http://host:4317` / `https://host:4317` use the standard tonic exporter;
    /// `unix:///path`, `vsock://CID:PORT` and `tcp://host:port` dial through
    /// `enclavemesh_transport` (the enclave relay path).
    pub endpoint: Option<String>,
    /// Extra resource attributes (e.g. from `OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
    /// Log filter (EnvFilter syntax); `None`: `RUST_LOG`, else `info`.
    pub log_filter: Option<String>,
    /// Filter for spans that are exported; `None`: [`DEFAULT_OTEL_FILTER`].
    pub otel_filter: Option<String>,
    /// JSON log lines instead of the human format.
    pub json_logs: bool,
    /// Where logs go; `None`: stderr. Tests capture logs with this.
    pub log_writer: Option<BoxMakeWriter>,
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("service_name", &self.service_name)
            .field("endpoint", &self.endpoint)
            .field("resource_attributes", &self.resource_attributes)
            .field("log_filter", &self.log_filter)
            .field("otel_filter", &self.otel_filter)
            .field("json_logs", &self.json_logs)
            .field("log_writer", &self.log_writer.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl TelemetryConfig {
    /// Logs only, no export: the starting point for tests and programmatic setups.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            endpoint: None,
            resource_attributes: Vec::new(),
            log_filter: None,
            otel_filter: None,
            json_logs: false,
            log_writer: None,
        }
    }

    /// Sets the OTLP endpoint (see [`TelemetryConfig::endpoint`]).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The standard OpenTelemetry environment: [`ENV_ENDPOINT`], [`ENV_SERVICE_NAME`]
    /// (default `default_service`), [`ENV_RESOURCE_ATTRIBUTES`], [`ENV_SDK_DISABLED`],
    /// plus [`ENV_OTEL_FILTER`] and [`ENV_LOG_FORMAT`].
    pub fn from_env(default_service: &str) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let disabled = var(ENV_SDK_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        Self {
            service_name: var(ENV_SERVICE_NAME).unwrap_or_else(|| default_service.to_owned()),
            endpoint: if disabled { None } else { var(ENV_ENDPOINT) },
            resource_attributes: var(ENV_RESOURCE_ATTRIBUTES)
                .map(|s| parse_resource_attributes(&s))
                .unwrap_or_default(),
            log_filter: None,
            otel_filter: var(ENV_OTEL_FILTER),
            json_logs: var(ENV_LOG_FORMAT).is_some_and(|v| v == "json"),
            log_writer: None,
        }
    }
}

/// Parses `k=v,k2=v2` (the `OTEL_RESOURCE_ATTRIBUTES` syntax); malformed pairs are skipped.
pub fn parse_resource_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty()).then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Where the exporter sends OTLP, decided from the endpoint string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// `http://` or `https://`: the exporter builds its own tonic channel.
    Url(String),
    /// `unix://`, `vsock://`, `tcp://`: dialled by `enclavemesh_transport`, so an
    /// enclave can export over vsock to a parent-side byte relay.
    Transport(Address),
}

impl ExportTarget {
    /// Classifies an endpoint string.
    pub fn parse(endpoint: &str) -> Result<Self, TelemetryError> {
        let e = endpoint.trim();
        let lower = e.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Self::Url(e.to_owned()));
        }
        if lower.starts_with("unix:") || lower.starts_with("vsock://") || lower.starts_with("tcp://") {
            return e.parse::<Address>().map(Self::Transport).map_err(|source| TelemetryError::InvalidEndpoint {
                endpoint: e.to_owned(),
                reason: source.to_string(),
            });
        }
        Err(TelemetryError::InvalidEndpoint {
            endpoint: e.to_owned(),
            reason: "expected http://, https://, unix:///path, vsock://CID:PORT or tcp://host:port".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_endpoints() {
        assert_eq!(
            ExportTarget::parse("http://collector:4317").unwrap(),
            ExportTarget::Url("http://collector:4317".into())
        );
        assert_eq!(
            ExportTarget::parse("HTTPS://collector:4317").unwrap(),
            ExportTarget::Url("HTTPS://collector:4317".into())
        );
        assert_eq!(
            ExportTarget::parse("vsock://3:4317").unwrap(),
            ExportTarget::Transport(Address::Vsock { cid: 3, port: 4317 })
        );
        assert_eq!(
            ExportTarget::parse("unix:///run/otlp.sock").unwrap(),
            ExportTarget::Transport(Address::Unix("/run/otlp.sock".into()))
        );
        assert!(matches!(
            ExportTarget::parse("tcp://127.0.0.1:4317").unwrap(),
            ExportTarget::Transport(Address::Tcp(_))
        ));
        for bad in ["collector:4317", "vsock://x:1", "ftp://a", ""] {
            assert!(ExportTarget::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn parses_resource_attributes() {
        assert_eq!(
            parse_resource_attributes("deployment.environment=dev, host.name = h1,bad,=x"),
            vec![("deployment.environment".to_owned(), "dev".to_owned()), ("host.name".to_owned(), "h1".to_owned())]
        );
    }
}
