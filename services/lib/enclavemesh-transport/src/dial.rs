//! Connecting to any [`Address`]: raw streams and lazy tonic channels.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};
use tokio_vsock::{VsockAddr, VsockStream};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{Address, Conn, TransportError};

/// Connect timeout used by [`channel`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 PING interval used by [`channel`]: finds dead peers (e.g. a restarted enclave) early.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a PING may go unanswered before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The authority tonic sends; the real destination comes from the connector.
const DUMMY_URI: &str = "http://enclavemesh.local";

/// Opens a raw byte stream to `addr` (TCP streams get TCP_NODELAY).
pub async fn dial(addr: &Address) -> Result<Conn, TransportError> {
    let err = |source| TransportError::Connect { addr: addr.clone(), source };
    match addr {
        Address::Tcp(host_port) => TcpStream::connect(host_port.as_str()).await.map(Conn::tcp).map_err(err),
        Address::Unix(path) => UnixStream::connect(path).await.map(Conn::unix).map_err(err),
        Address::Vsock { cid, port } => {
            VsockStream::connect(VsockAddr::new(*cid, *port)).await.map(Conn::vsock).map_err(err)
        }
    }
}

/// [`dial`] bounded by `timeout`.
pub async fn dial_timeout(addr: &Address, timeout: Duration) -> Result<Conn, TransportError> {
    match tokio::time::timeout(timeout, dial(addr)).await {
        Ok(r) => r,
        Err(_) => Err(TransportError::ConnectTimeout { addr: addr.clone(), timeout }),
    }
}

/// A lazy gRPC channel to `addr`: nothing is dialed until the first call, and tonic
/// re-dials through [`Connector`] after the peer restarts.
///
/// Connect timeout 5 s, HTTP/2 keepalive PINGs every 30 s (also while idle).
pub fn channel(addr: &Address) -> Result<Channel, TransportError> {
    let endpoint = Endpoint::from_static(DUMMY_URI)
        .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_with_connector_lazy(Connector::new(addr.clone())))
}

/// tower `Service<Uri>` that ignores the URI and dials a fixed [`Address`]; use it
/// with your own `Endpoint` when [`channel`]'s settings do not fit.
#[derive(Debug, Clone)]
pub struct Connector {
    addr: Address,
}

impl Connector {
    pub fn new(addr: Address) -> Self {
        Self { addr }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.addr.clone();
        Box::pin(async move { dial(&addr).await.map(TokioIo::new) })
    }
}
