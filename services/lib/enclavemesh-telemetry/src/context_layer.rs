//! Trace context without an exporter: ids for every span, and nothing else.
//!
//! Why: with no OTLP endpoint, nothing is exported, yet an incoming `traceparent` must
//! still flow on to downstream calls (a KMS call made while serving a traced request
//! joins the caller's trace). `tracing-opentelemetry` would do that by building a full
//! OpenTelemetry span per `tracing` span (attribute lists, timestamps, events, an SDK
//! span at close) only to drop it: about half of the tracing cost of a served call.
//! [`ContextLayer`] keeps what propagation needs, one [`SpanContext`] per span in the
//! span's extensions: the trace id and flags of its parent (a remote parent set with
//! [`set_parent`], or the enclosing span), and a fresh span id.
//!
//! [`set_parent`] and [`span_context`] work with either layer, so callers do not care
//! whether the process exports.

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::span::{Attributes, Id};
use tracing::{Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The span context of one span, kept in its registry extensions.
#[derive(Debug, Clone)]
struct SpanCx(SpanContext);

/// The no-exporter layer: gives every span it sees a [`SpanContext`]; see the module
/// docs. Install it under the same filter as the exporting layer: unfiltered, it would
/// make every `trace`-level span of h2, hyper and tower exist (dozens per call).
#[derive(Debug, Default)]
pub(crate) struct ContextLayer {
    ids: RandomIdGenerator,
}

impl<S> Layer<S> for ContextLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = if attrs.is_root() {
            None
        } else if let Some(p) = attrs.parent() {
            ctx.span(p)
        } else {
            ctx.lookup_current()
        };
        let inherited = parent.and_then(|p| p.extensions().get::<SpanCx>().map(|c| c.0.clone()));
        let sc = match inherited {
            Some(p) => child_of(&p, self.ids.new_span_id()),
            None => root(&self.ids, self.ids.new_span_id()),
        };
        span.extensions_mut().insert(SpanCx(sc));
    }
}

/// A local child of `parent` with span id `span_id`.
fn child_of(parent: &SpanContext, span_id: opentelemetry::trace::SpanId) -> SpanContext {
    SpanContext::new(parent.trace_id(), span_id, parent.trace_flags(), false, parent.trace_state().clone())
}

/// The first span of a new trace (sampled, as the SDK's default `ParentBased(AlwaysOn)` does).
fn root(ids: &RandomIdGenerator, span_id: opentelemetry::trace::SpanId) -> SpanContext {
    SpanContext::new(ids.new_trace_id(), span_id, TraceFlags::SAMPLED, false, TraceState::default())
}

/// Runs `f` on `span`'s own [`SpanCx`] if the process runs the [`ContextLayer`] and
/// the span passed its filter.
fn with_span_cx<T>(span: &Span, f: impl FnOnce(&mut SpanCx) -> T) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        let mut ext = data.extensions_mut();
        ext.get_mut::<SpanCx>().map(f)
    })
    .flatten()
}

/// The [`SpanCx`] of `span` or, when `span` has none (filtered out, like a transport
/// or SDK span), of its nearest ancestor that has one: what the exporting layer gets
/// from the context it activates on enter.
fn nearest_span_cx(span: &Span) -> Option<SpanContext> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        data.scope().find_map(|s| s.extensions().get::<SpanCx>().map(|c| c.0.clone()))
    })
    .flatten()
}

/// Makes `cx` (typically a caller's context from [`crate::extract_from`]) the parent of
/// `span`. An invalid `cx` (no or a malformed `traceparent`) makes `span` the root of a
/// new trace, not a child of whatever span happens to be current.
pub fn set_parent(span: &Span, cx: Context) {
    let remote = cx.span().span_context().clone();
    let linked = with_span_cx(span, |own| {
        let ids = RandomIdGenerator::default();
        own.0 = if remote.is_valid() { child_of(&remote, own.0.span_id()) } else { root(&ids, own.0.span_id()) };
    });
    if linked.is_none() {
        // Exporting: tracing-opentelemetry owns the span's context. It only fails when
        // the span is not traced at all (disabled, or filtered out of export).
        let _ = span.set_parent(cx);
    }
}

/// The OpenTelemetry context of `span` (without an exporter: of its nearest traced
/// ancestor, if `span` is filtered out): what [`crate::inject_context_into`] writes into
/// headers. Empty (invalid) when nothing is traced.
pub fn span_context(span: &Span) -> Context {
    match nearest_span_cx(span) {
        Some(sc) => Context::new().with_remote_span_context(sc),
        None => span.context(),
    }
}

/// Whether `span` carries a context from the [`ContextLayer`] (tests).
#[cfg(test)]
fn has_span_cx(span: &Span) -> bool {
    with_span_cx(span, |_| ()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceId};
    use tracing_subscriber::prelude::*;

    fn remote(trace: &str) -> Context {
        let sc = SpanContext::new(
            TraceId::from_hex(trace).unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        Context::new().with_remote_span_context(sc)
    }

    #[test]
    fn spans_get_ids_inherit_the_trace_and_take_a_remote_parent() {
        // Another layer (like the log layer) keeps spans the context layer filters out alive.
        struct SeesEverything;
        impl<S: Subscriber> Layer<S> for SeesEverything {}
        let subscriber = tracing_subscriber::registry()
            .with(SeesEverything)
            .with(ContextLayer::default().with_filter(tracing_subscriber::filter::LevelFilter::INFO));
        tracing::subscriber::with_default(subscriber, || {
            let server = tracing::info_span!("server");
            assert!(has_span_cx(&server));
            let before = span_context(&server).span().span_context().clone();
            assert!(before.is_valid());

            // The caller's traceparent: same trace, our own span id kept.
            set_parent(&server, remote("4bf92f3577b34da6a3ce929d0e0e4736"));
            let linked = span_context(&server).span().span_context().clone();
            assert_eq!(linked.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
            assert_eq!(linked.span_id(), before.span_id());
            assert!(linked.is_sampled());

            // A child (contextual and explicit) joins the trace with a span id of its own.
            let child = server.in_scope(|| tracing::info_span!("handler"));
            let explicit = tracing::info_span!(parent: &server, "explicit");
            for c in [&child, &explicit] {
                let sc = span_context(c).span().span_context().clone();
                assert_eq!(sc.trace_id(), linked.trace_id());
                assert_ne!(sc.span_id(), linked.span_id());
            }

            // A span the layer does not see (filtered out) injects its nearest traced ancestor's.
            let hidden = server.in_scope(|| tracing::debug_span!("transport"));
            assert!(!has_span_cx(&hidden));
            assert_eq!(span_context(&hidden).span().span_context().span_id(), linked.span_id());

            // No (or a malformed) traceparent: a new root, not the current span's trace.
            let other = server.in_scope(|| tracing::info_span!("other"));
            set_parent(&other, Context::new());
            let sc = span_context(&other).span().span_context().clone();
            assert!(sc.is_valid());
            assert_ne!(sc.trace_id(), linked.trace_id());
        });
    }

    #[test]
    fn without_the_layer_nothing_is_invented() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("plain");
            set_parent(&span, remote("4bf92f3577b34da6a3ce929d0e0e4736"));
            assert!(!span_context(&span).span().span_context().is_valid());
        });
    }
}
