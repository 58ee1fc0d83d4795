//! W3C trace context (`traceparent` / `tracestate`) in and out of headers.
//!
//! The format is W3C Trace Context, the one `TraceContextPropagator` (which
//! [`crate::build`] installs as the global propagator, for libraries that use it) speaks;
//! [`crate::w3c`] reads and writes it here without the propagator's per-call
//! allocations, since every served and every outgoing call pays for it.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt;

use crate::context_layer::span_context;
use crate::w3c;

/// The OpenTelemetry context of the current `tracing` span — or, when that span is
/// not exported (filtered out, e.g. an SDK-internal span), the nearest exported
/// ancestor that was entered (the layer activates its context on enter). Without an
/// exporter every span has a context ([`crate::span_context`]).
pub fn current_context() -> Context {
    let cx = span_context(&tracing::Span::current());
    if cx.span().span_context().is_valid() { cx } else { Context::current() }
}

/// Writes the current span's context into `headers`.
pub fn inject_into(headers: &mut HeaderMap) {
    inject_context_into(&current_context(), headers);
}

/// Writes `cx` into `headers` (nothing if `cx` has no valid span context).
pub fn inject_context_into(cx: &Context, headers: &mut HeaderMap) {
    inject_context_with(cx, |name, value| {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    });
}

/// Calls `set(name, value)` for each trace-context header of `cx`.
fn inject_context_with(cx: &Context, mut set: impl FnMut(&'static str, &[u8])) {
    let span = cx.span();
    let sc = span.span_context();
    let Some(traceparent) = w3c::format(sc) else { return };
    set(w3c::TRACEPARENT, &traceparent);
    let state = sc.trace_state().header();
    if !state.is_empty() {
        set(w3c::TRACESTATE, state.as_bytes());
    }
}

/// Calls `set(name, value)` for each trace-context header of the current span — for
/// header types that are not an `http::HeaderMap` (e.g. aws-smithy's `Headers`).
pub fn inject_with(mut set: impl FnMut(&str, &str)) {
    inject_context_with(&current_context(), |name, value| {
        if let Ok(v) = std::str::from_utf8(value) {
            set(name, v);
        }
    });
}

/// The remote parent carried by `headers` (the current context if there is none or it
/// is malformed — a bad header never fails a request).
pub fn extract_from(headers: &HeaderMap) -> Context {
    let state = headers.get(w3c::TRACESTATE).and_then(|v| v.to_str().ok());
    match headers.get(w3c::TRACEPARENT).and_then(|v| w3c::parse(v.as_bytes(), state)) {
        Some(sc) => Context::current().with_remote_span_context(sc),
        None => Context::current(),
    }
}

/// A tonic interceptor that injects the current span's context into the request
/// metadata: `FooClient::with_interceptor(channel, enclavemesh_telemetry::inject_interceptor)`.
/// Prefer [`crate::GrpcTraceLayer::client`], which also records a client span.
#[allow(clippy::result_large_err)] // the signature tonic's Interceptor requires
pub fn inject_interceptor(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    inject_context_with(&current_context(), |name, value| {
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(value) {
            req.metadata_mut().insert(name, v);
        }
    });
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

    #[test]
    fn header_round_trip() {
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
