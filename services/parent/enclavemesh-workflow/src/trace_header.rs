//! One trace per workflow run: the trigger's W3C trace context travels through Temporal
//! in workflow and activity **headers**, the SDK's own propagation channel.
//!
//! * The CLI puts its `trigger SecureStateLoop` span into the start request's header
//!   ([`start_header`]).
//! * The worker's workflow interceptor copies that header from the
//!   workflow execution onto every activity it schedules. It only copies a value the
//!   workflow was started with, so it is deterministic and replays identically.
//! * Each activity parents its span to the header ([`parent_from`]); its gRPC client
//!   span (and everything downstream: agent, sidecar, KMS) nests under that.
//!
//! The header key and format are the cross-SDK ones (`_tracer-data`, a JSON map
//! `{"traceparent": "00-…"}`) used by Temporal's OpenTelemetry interceptors, so other
//! SDKs' tracing joins the same trace. The SDK's own `OpenTelemetryPlugin` is not used:
//! it is experimental and built on another `opentelemetry` major version than this
//! workspace's exporter. Only trace ids travel here: never payload, never keys.

use std::collections::HashMap;

use temporalio_common::protos::temporal::api::common::v1::{Header, Payload};

/// Temporal header holding the trace context (the cross-SDK key).
pub const TRACE_HEADER_KEY: &str = "_tracer-data";

/// Largest header payload accepted (a traceparent + tracestate is far below this).
const MAX_CARRIER_BYTES: usize = 1024;

/// The current span's trace context as a Temporal header for a workflow start, or
/// `None` when there is no valid span (telemetry off and no incoming context).
pub fn start_header() -> Option<Header> {
    let payload = current_payload()?;
    let mut fields = HashMap::new();
    fields.insert(TRACE_HEADER_KEY.to_string(), payload);
    Some(Header { fields })
}

fn current_payload() -> Option<Payload> {
    let mut carrier = HashMap::<String, String>::new();
    enclavemesh_telemetry::inject_with(|k, v| {
        carrier.insert(k.to_owned(), v.to_owned());
    });
    if !carrier.contains_key("traceparent") {
        return None;
    }
    let data = serde_json::to_vec(&carrier).ok()?;
    let mut metadata = HashMap::new();
    metadata.insert("encoding".to_string(), b"json/plain".to_vec());
    Some(Payload { metadata, data, ..Default::default() })
}

/// The remote parent carried by Temporal headers (an empty context when absent or
/// malformed: a bad header never fails an activity).
pub fn parent_from(headers: &HashMap<String, Payload>) -> opentelemetry::Context {
    let mut map = http::HeaderMap::new();
    if let Some(p) = headers.get(TRACE_HEADER_KEY).filter(|p| p.data.len() <= MAX_CARRIER_BYTES)
        && let Ok(carrier) = serde_json::from_slice::<HashMap<String, String>>(&p.data)
    {
        for (k, v) in carrier {
            if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(&v))
            {
                map.insert(name, value);
            }
        }
    }
    enclavemesh_telemetry::extract_from(&map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_or_missing_header_gives_an_empty_parent() {
        use opentelemetry::trace::TraceContextExt as _;
        let mut h = HashMap::new();
        assert!(!parent_from(&h).span().span_context().is_valid());
        h.insert(TRACE_HEADER_KEY.to_string(), Payload { data: b"not json".to_vec(), ..Default::default() });
        assert!(!parent_from(&h).span().span_context().is_valid());
    }
}
