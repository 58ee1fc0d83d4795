//! One traced gRPC call: which side it is on, its method, and how it ended.
//!
//! Shared by the trace layer ([`crate::grpc`]), which opens the call, and the response
//! body ([`crate::body`]), which usually sees its status (in the trailers) and ends it.

use std::time::Instant;

use http::HeaderMap;
use tonic::Code;

use crate::metrics;

/// Which side of the call a span describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
pub(crate) fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((svc, method)) if !svc.is_empty() && !method.is_empty() && !method.contains('/') => (svc, method),
        _ => ("unknown", trimmed),
    }
}

/// The `grpc-status` in a header block, if present (trailers-only responses carry
/// it in the headers).
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<i32>().ok()).map(Code::from_i32)
}

/// The state of one traced call; finishes the span exactly once.
#[derive(Debug)]
pub(crate) struct CallOutcome {
    side: Side,
    span: tracing::Span,
    /// The call's URI (a cheap clone of the request's): service and method are read
    /// from it only if a metric is recorded.
    uri: http::Uri,
    start: Instant,
    code: Option<Code>,
    done: bool,
}

impl CallOutcome {
    pub(crate) fn new(side: Side, span: tracing::Span, uri: http::Uri, start: Instant) -> Self {
        Self { side, span, uri, start, code: None, done: false }
    }

    pub(crate) fn set_code(&mut self, code: Code) {
        self.code.get_or_insert(code);
    }

    /// Closes the call with the code seen in the headers, if any, else `code`.
    pub(crate) fn finish_or(self, code: Code) {
        let code = self.code.unwrap_or(code);
        self.finish(code);
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
        if !metrics::installed() {
            return;
        }
        let elapsed = self.start.elapsed();
        let (service, method) = split_path(self.uri.path());
        match self.side {
            Side::Server => metrics::rpc(service, method, code as i32, elapsed),
            Side::Client => metrics::rpc_client(service, method, code as i32, elapsed),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(split_path("/grpc.health.v1.Health/Check"), ("grpc.health.v1.Health", "Check"));
        assert_eq!(split_path("/"), ("unknown", ""));
        assert_eq!(split_path("/a/b/c"), ("unknown", "a/b/c"));
    }
}
