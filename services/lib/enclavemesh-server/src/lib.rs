//! The one way Enclave Mesh serves gRPC: the agent inside the enclave and the
//! kms-sidecar on the parent build their servers here, and the vsock-bridge in front of
//! them uses the same connection hardening.
//!
//! Why one builder: every one of these servers faces untrusted peers (the parent, for
//! the agent; the enclave and anything on the host that can reach a vsock port, for the
//! sidecar), so each needs the same defences, and a defence written into one server only
//! is a hole in the other. [`GrpcServer`] owns them all, in one visible stack:
//!
//! 1. **HTTP/2 preface deadline** per connection ([`enclavemesh_transport::handshake`]):
//!    hyper has no handshake timeout, so without it a peer that connects and sends
//!    nothing holds a task and a descriptor forever (slow-loris).
//! 2. **Limits**: concurrent requests per connection, concurrent HTTP/2 streams, and
//!    the resets a peer may provoke (h2's rapid-reset defence, which tonic disables by
//!    default).
//! 3. **Timeouts**: a per-request deadline and HTTP/2 keepalive (ping interval plus
//!    timeout), which close connections whose peer went away.
//! 4. **Tracing**: a server span per call, parented to the caller's `traceparent`.
//!
//! Message-size limits belong to each service (`max_decoding_message_size`), since
//! only the service knows its messages.
//!
//! ```no_run
//! # async fn f(listener: enclavemesh_transport::Listener) -> Result<(), enclavemesh_server::ServerError> {
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! enclavemesh_server::GrpcServer::new(enclavemesh_server::Hardening::default())
//!     .add_service(health)
//!     .serve(listener, enclavemesh_transport::shutdown_signal())
//!     .await
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use enclavemesh_transport::Listener;
use enclavemesh_transport::handshake::{self, HandshakeDeadline};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;

/// The defences every server gets; programs expose the ones an operator may tune as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    /// Time a new connection has to send the whole HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Deadline of one request (a handler still running then is cancelled).
    pub request_timeout: Duration,
    /// Requests one connection may have in flight; more wait for a slot.
    pub concurrency_per_connection: usize,
    /// HTTP/2 streams one connection may open at once.
    pub max_concurrent_streams: u32,
    /// Stream resets a peer may provoke on one connection before it is closed.
    pub max_local_error_resets: usize,
    /// HTTP/2 ping interval on an idle connection, and how long to wait for the answer.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            handshake_timeout: handshake::DEFAULT_HANDSHAKE_TIMEOUT,
            request_timeout: Duration::from_secs(10),
            concurrency_per_connection: 256,
            max_concurrent_streams: 256,
            max_local_error_resets: 1024,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

impl Hardening {
    /// `listener`'s connections, each under the preface deadline: what a server accepts
    /// from. The vsock-bridge uses this too, so a stalled client cannot hold one of its
    /// slots past the deadline either.
    pub fn incoming(
        &self,
        listener: Listener,
    ) -> impl tokio_stream::Stream<Item = std::io::Result<HandshakeDeadline>> + Send + 'static {
        handshake::with_deadline(listener.into_incoming(), self.handshake_timeout)
    }
}

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("gRPC server on {addr} failed: {source}")]
    Serve { addr: String, source: tonic::transport::Error },
}

/// A gRPC server under [`Hardening`], with the services a program adds.
pub struct GrpcServer {
    hardening: Hardening,
    routes: Routes,
}

impl GrpcServer {
    pub fn new(hardening: Hardening) -> Self {
        GrpcServer { hardening, routes: Routes::default() }
    }

    /// Adds one service (tonic generated server, health, reflection).
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes = self.routes.add_service(service);
        self
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight calls finish.
    pub async fn serve(self, listener: Listener, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let h = self.hardening;
        let addr = listener.local_addr().to_string();
        let incoming = h.incoming(listener);
        tonic::transport::Server::builder()
            .timeout(h.request_timeout)
            .concurrency_limit_per_connection(h.concurrency_per_connection)
            .max_concurrent_streams(h.max_concurrent_streams)
            .http2_max_local_error_reset_streams(Some(h.max_local_error_resets))
            .http2_keepalive_interval(Some(h.keepalive_interval))
            .http2_keepalive_timeout(Some(h.keepalive_timeout))
            .layer(enclavemesh_telemetry::GrpcTraceLayer::server())
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|source| ServerError::Serve { addr, source })
    }
}
