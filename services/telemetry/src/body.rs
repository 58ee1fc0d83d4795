//! Response-body wrapper that ends a call's span when the body is done.
//!
//! A gRPC status usually arrives in the trailers after the last message, so the
//! span (and the duration metric) can only be finished there — or on drop, when
//! the peer went away mid-stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tonic::Code;

use crate::grpc::{Side, grpc_status};
use crate::metrics;

/// The state of one traced call; finishes the span exactly once.
#[derive(Debug)]
pub(crate) struct CallOutcome {
    side: Side,
    span: tracing::Span,
    service: String,
    method: String,
    start: Instant,
    code: Option<Code>,
    done: bool,
}

impl CallOutcome {
    pub(crate) fn new(
        side: Side,
        span: tracing::Span,
        service: String,
        method: String,
        start: Instant,
    ) -> Self {
        Self {
            side,
            span,
            service,
            method,
            start,
            code: None,
            done: false,
        }
    }

    pub(crate) fn set_code(&mut self, code: Code) {
        self.code.get_or_insert(code);
    }

    /// Records `code` (unless one was seen already) and closes the call.
    pub(crate) fn finish(mut self, code: Code) {
        self.set_code(code);
        self.complete();
    }

    fn complete(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        // Body ended or was dropped without a status: for a server the client went
        // away, for a client the stream broke.
        let code = self.code.unwrap_or(Code::Cancelled);
        self.span.record("rpc.grpc.status_code", code as i64);
        if is_error(self.side, code) {
            self.span.record("otel.status_code", "error");
        }
        let elapsed = self.start.elapsed();
        match self.side {
            Side::Server => metrics::rpc(&self.service, &self.method, code as i32, elapsed),
            Side::Client => metrics::rpc_client(&self.service, &self.method, code as i32, elapsed),
        }
    }
}

impl Drop for CallOutcome {
    fn drop(&mut self) {
        self.complete();
    }
}

/// OpenTelemetry gRPC conventions: a client span is an error for every non-OK code;
/// a server span only for codes that mean the server failed (not the caller).
fn is_error(side: Side, code: Code) -> bool {
    match side {
        Side::Client => code != Code::Ok,
        Side::Server => matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ),
    }
}

pin_project_lite::pin_project! {
    /// A response body that reports the gRPC status of its call when it ends.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        outcome: Option<CallOutcome>,
    }
}

impl<B> TracedBody<B> {
    pub(crate) fn new(inner: B, outcome: CallOutcome) -> Self {
        Self {
            inner,
            outcome: Some(outcome),
        }
    }
}

impl<B> std::fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBody").finish_non_exhaustive()
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(o) = this.outcome.take()
                {
                    o.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(o) = this.outcome.take() {
                    o.finish(Code::Unavailable);
                }
            }
            Poll::Ready(None) => {
                if let Some(mut o) = this.outcome.take() {
                    // End of body without trailers: status was in the headers
                    // (trailers-only) or the peer did not send one.
                    let code = o.code.unwrap_or(Code::Unknown);
                    o.set_code(code);
                    o.complete();
                }
            }
            Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
