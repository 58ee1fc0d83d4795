//! Response-body wrapper that ends a call's span when the body is done.
//!
//! A gRPC status usually arrives in the trailers after the last message, so the
//! span (and the duration metric) can only be finished there — or on drop, when
//! the peer went away mid-stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tonic::Code;

use crate::call::{CallOutcome, grpc_status};

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
        Self { inner, outcome: Some(outcome) }
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

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
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
                if let Some(o) = this.outcome.take() {
                    // End of body without trailers: status was in the headers
                    // (trailers-only) or the peer did not send one.
                    o.finish_or(Code::Unknown);
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
