//! W3C trace context (`traceparent` / `tracestate`) in and out of headers.
//!
//! All functions use the global propagator that [`crate::build`] installs
//! (`TraceContextPropagator`); before that they do nothing.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, global};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The OpenTelemetry context of the current `tracing` span — or, when that span is
/// not exported (filtered out, e.g. an SDK-internal span), the nearest exported
/// ancestor that was entered (the layer activates its context on enter).
pub fn current_context() -> Context {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() { cx } else { Context::current() }
}

/// Writes the current span's context into `headers`.
pub fn inject_into(headers: &mut HeaderMap) {
    inject_context_into(&current_context(), headers);
}

/// Writes `cx` into `headers`.
pub fn inject_context_into(cx: &Context, headers: &mut HeaderMap) {
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut HeaderInjector(headers)));
}

/// Calls `set(name, value)` for each trace-context header of the current span — for
/// header types that are not an `http::HeaderMap` (e.g. aws-smithy's `Headers`).
pub fn inject_with(mut set: impl FnMut(&str, &str)) {
    let cx = current_context();
    let mut pairs = std::collections::HashMap::<String, String>::new();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut pairs));
    for (k, v) in &pairs {
        set(k, v);
    }
}

/// The remote parent carried by `headers` (an empty context if there is none or it
/// is malformed — a bad header never fails a request).
pub fn extract_from(headers: &HeaderMap) -> Context {
    global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// A tonic interceptor that injects the current span's context into the request
/// metadata: `FooClient::with_interceptor(channel, enclavemesh_telemetry::inject_interceptor)`.
/// Prefer [`crate::GrpcTraceLayer::client`], which also records a client span.
#[allow(clippy::result_large_err)] // the signature tonic's Interceptor requires
pub fn inject_interceptor(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let cx = current_context();
    let mut pairs = std::collections::HashMap::<String, String>::new();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut pairs));
    for (k, v) in pairs {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
            tonic::metadata::MetadataValue::try_from(v.as_str()),
        ) {
            req.metadata_mut().insert(key, value);
        }
    }
    Ok(req)
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(val)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, val);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    #[test]
    fn header_round_trip() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(sc.clone());
        let mut headers = HeaderMap::new();
        inject_context_into(&cx, &mut headers);
        assert_eq!(headers["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let back = extract_from(&headers);
        assert_eq!(back.span().span_context().trace_id(), sc.trace_id());
        assert_eq!(back.span().span_context().span_id(), sc.span_id());
        assert!(back.span().span_context().is_remote());

        let mut garbage = HeaderMap::new();
        garbage.insert("traceparent", HeaderValue::from_static("zz-not-a-traceparent"));
        assert!(!extract_from(&garbage).span().span_context().is_valid());
    }
}
