//! tower layers that put every gRPC call in a span and carry W3C trace context
//! across the process (and enclave) boundary.
//!
//! Server: [`GrpcServerTraceLayer`] extracts `traceparent`/`tracestate`, opens a
//! `SERVER` span parented to the caller and records the gRPC status when the
//! response body ends (status lives in trailers). Client: [`GrpcClientTraceLayer`]
//! opens a `CLIENT` span under the current span and injects its context.
//!
//! Only the method path and status code are recorded — never messages.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::body::{CallOutcome, TracedBody};
use opentelemetry::trace::TraceContextExt;

use crate::propagation::{current_context, extract_from, inject_context_into};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Which side of the call a span describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
pub(crate) fn split_path(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((svc, method)) if !svc.is_empty() && !method.is_empty() && !method.contains('/') => {
            (svc.to_owned(), method.to_owned())
        }
        _ => ("unknown".to_owned(), trimmed.to_owned()),
    }
}

/// The `grpc-status` in a header block, if present (trailers-only responses carry
/// it in the headers).
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// Layer for `tonic::transport::Server::builder().layer(GrpcServerTraceLayer::new())`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcServerTraceLayer;

impl GrpcServerTraceLayer {
    /// A new server tracing layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for GrpcServerTraceLayer {
    type Service = GrpcServerTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerTrace { inner }
    }
}

/// Service produced by [`GrpcServerTraceLayer`].
#[derive(Debug, Clone)]
pub struct GrpcServerTrace<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcServerTrace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (service, method) = split_path(req.uri().path());
        let span = tracing::info_span!(
            target: "enclavemesh_telemetry::grpc",
            "grpc.server",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
        );
        // Parent = the caller's span (or a new root when there is no valid
        // traceparent), not whatever tracing span happens to be current here.
        let _ = span.set_parent(extract_from(req.headers()));
        let outcome = CallOutcome::new(Side::Server, span.clone(), service, method, Instant::now());
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                match fut.await {
                    Ok(resp) => Ok(wrap(resp, outcome)),
                    Err(e) => {
                        outcome.finish(Code::Internal);
                        Err(e.into())
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// Layer for clients: `tower::ServiceBuilder::new().layer(GrpcClientTraceLayer::new()).service(channel)`,
/// then `FooClient::new(that)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcClientTraceLayer;

impl GrpcClientTraceLayer {
    /// A new client tracing layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for GrpcClientTraceLayer {
    type Service = GrpcClientTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcClientTrace { inner }
    }
}

/// Service produced by [`GrpcClientTraceLayer`].
#[derive(Debug, Clone)]
pub struct GrpcClientTrace<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcClientTrace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let (service, method) = split_path(req.uri().path());
        let span = tracing::info_span!(
            target: "enclavemesh_telemetry::grpc",
            "grpc.client",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
        );
        let cx = span.context();
        // If this span is filtered out of export, still pass on the caller's context.
        let cx = if cx.span().span_context().is_valid() {
            cx
        } else {
            current_context()
        };
        inject_context_into(&cx, req.headers_mut());
        let outcome = CallOutcome::new(Side::Client, span.clone(), service, method, Instant::now());
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                match fut.await {
                    Ok(resp) => Ok(wrap(resp, outcome)),
                    Err(e) => {
                        // Connect/transport failures surface to tonic as UNAVAILABLE.
                        outcome.finish(Code::Unavailable);
                        Err(e.into())
                    }
                }
            }
            .instrument(span),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            split_path("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health".into(), "Check".into())
        );
        assert_eq!(split_path("/"), ("unknown".into(), "".into()));
        assert_eq!(split_path("/a/b/c"), ("unknown".into(), "a/b/c".into()));
    }
}
