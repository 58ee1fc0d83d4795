//! tower layers that put every gRPC call in a span and carry W3C trace context
//! across the process (and enclave) boundary.
//!
//! One layer, [`GrpcTraceLayer`], and one service, [`GrpcTrace`], for both sides. Server
//! side: extracts `traceparent`/`tracestate`, opens a `SERVER` span parented to the
//! caller and records the gRPC status when the response body ends (status lives in
//! trailers). Client side: opens a `CLIENT` span under the current span and injects its
//! context.
//!
//! Only the method path and status code are recorded — never messages.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use opentelemetry::trace::TraceContextExt;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

use crate::body::TracedBody;
use crate::call::{CallOutcome, Side, grpc_status, split_path};
use crate::context_layer::{set_parent, span_context};
use crate::propagation::{current_context, extract_from, inject_context_into};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The layer: `GrpcTraceLayer::server()` for `Server::builder().layer(..)` (what
/// `enclavemesh-server` does), `GrpcTraceLayer::client()` around a channel (see
/// [`traced_channel`]).
#[derive(Debug, Clone, Copy)]
pub struct GrpcTraceLayer {
    side: Side,
}

impl GrpcTraceLayer {
    /// Server side: spans parented to the caller's `traceparent`.
    pub fn server() -> Self {
        Self { side: Side::Server }
    }

    /// Client side: spans under the current span, whose context is injected.
    pub fn client() -> Self {
        Self { side: Side::Client }
    }
}

impl<S> Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace { inner, side: self.side }
    }
}

/// A lazy channel to `addr` whose every call gets a client span and carries
/// `traceparent`: how every program calls another over gRPC.
pub fn traced_channel(
    addr: &enclavemesh_transport::Address,
) -> Result<GrpcTrace<tonic::transport::Channel>, enclavemesh_transport::TransportError> {
    Ok(GrpcTraceLayer::client().layer(enclavemesh_transport::channel(addr)?))
}

/// A traced gRPC service, on the server or the client side.
#[derive(Debug, Clone)]
pub struct GrpcTrace<S> {
    inner: S,
    side: Side,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcTrace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = BoxError;
    type Future = GrpcTraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Borrowed from the URI: no per-call copies of the names.
        let (service, method) = split_path(req.uri().path());
        let span = match self.side {
            Side::Server => tracing::info_span!(
                target: "enclavemesh_telemetry::grpc",
                "grpc.server",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = Empty,
            ),
            Side::Client => tracing::info_span!(
                target: "enclavemesh_telemetry::grpc",
                "grpc.client",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "client",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = Empty,
            ),
        };
        match self.side {
            // Parent = the caller's span (or a new root when there is no valid
            // traceparent), not whatever tracing span happens to be current here.
            // Exporter or not: without one the span still gets the caller's trace id.
            Side::Server => set_parent(&span, extract_from(req.headers())),
            Side::Client => {
                let cx = span_context(&span);
                // If this span is filtered out of export, still pass on the caller's context.
                let cx = if cx.span().span_context().is_valid() { cx } else { current_context() };
                inject_context_into(&cx, req.headers_mut());
            }
        }
        // A call that fails before any response: on a server the service failed; on a
        // client the connection did (tonic surfaces that as UNAVAILABLE).
        let failed = match self.side {
            Side::Server => Code::Internal,
            Side::Client => Code::Unavailable,
        };
        let outcome = CallOutcome::new(self.side, span.clone(), req.uri().clone(), Instant::now());
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        GrpcTraceFuture { inner: fut.instrument(span), outcome: Some(outcome), failed }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`GrpcTrace`]: the inner call inside the call's span;
    /// its response body ends the span (a plain struct, not a boxed future: no
    /// allocation per call).
    pub struct GrpcTraceFuture<F> {
        #[pin]
        inner: tracing::instrument::Instrumented<F>,
        outcome: Option<CallOutcome>,
        failed: Code,
    }
}

impl<F> std::fmt::Debug for GrpcTraceFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTraceFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for GrpcTraceFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: http_body::Body,
{
    type Output = Result<Response<TracedBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(outcome) = this.outcome.take() else {
            return Poll::Ready(Err("GrpcTraceFuture polled after completion".into()));
        };
        Poll::Ready(match result {
            Ok(resp) => Ok(wrap(resp, outcome)),
            Err(e) => {
                outcome.finish(*this.failed);
                Err(e.into())
            }
        })
    }
}

fn wrap<B>(resp: Response<B>, mut outcome: CallOutcome) -> Response<TracedBody<B>> {
    if let Some(code) = grpc_status(resp.headers()) {
        outcome.set_code(code);
    } else if !resp.status().is_success() {
        // Not a gRPC response at all (proxy error page, 404 from a non-gRPC server).
        outcome.set_code(Code::Unknown);
    }
    resp.map(|b| TracedBody::new(b, outcome))
}
