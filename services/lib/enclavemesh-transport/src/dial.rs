//! Connecting to any [`Address`]: raw streams and lazy tonic channels.
//!
//! `hvsock://UDS:PORT` needs one exchange before the stream is usable: the emulator
//! (vhost-device-vsock in hybrid mode, Firecracker) multiplexes every guest port
//! over the single unix socket `UDS`, so the host writes `CONNECT <port>\n` and the
//! emulator answers `OK <hostport>\n` once the guest accepted. The reply is read one
//! byte at a time up to the newline, so none of the guest's first bytes (which may
//! follow in the same segment) are swallowed; it happens once per connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Longest hybrid vsock reply accepted before its newline (`OK 4294967295` is 13 bytes).
const HYBRID_REPLY_MAX: usize = 64;

/// Opens a raw byte stream to `addr` (TCP streams get TCP_NODELAY).
///
/// For `hvsock://` this includes the `CONNECT` handshake, which has no deadline of
/// its own here: bound the call (or use [`dial_timeout`]) if the emulator may stall.
pub async fn dial(addr: &Address) -> Result<Conn, TransportError> {
    dial_within(addr, None).await
}

/// [`dial`] bounded by `timeout` (for `hvsock://`, connect and handshake together).
pub async fn dial_timeout(addr: &Address, timeout: Duration) -> Result<Conn, TransportError> {
    dial_within(addr, Some(timeout)).await
}

async fn dial_within(addr: &Address, timeout: Option<Duration>) -> Result<Conn, TransportError> {
    let started = Instant::now();
    let conn = match timeout {
        None => connect(addr).await?,
        Some(timeout) => match tokio::time::timeout(timeout, connect(addr)).await {
            Ok(r) => r?,
            Err(_) => return Err(TransportError::ConnectTimeout { addr: addr.clone(), timeout }),
        },
    };
    let Address::HybridVsock { port, .. } = addr else { return Ok(conn) };
    let limit = timeout.map(|total| (total, total.saturating_sub(started.elapsed())));
    hybrid_handshake(addr, conn, *port, limit).await
}

/// The transport-level connect; for `hvsock://` only the unix socket, not the handshake.
async fn connect(addr: &Address) -> Result<Conn, TransportError> {
    let err = |source| TransportError::Connect { addr: addr.clone(), source };
    match addr {
        Address::Tcp(host_port) => TcpStream::connect(host_port.as_str()).await.map(Conn::tcp).map_err(err),
        Address::Unix(path) | Address::HybridVsock { uds: path, .. } => {
            UnixStream::connect(path).await.map(Conn::unix).map_err(err)
        }
        Address::Vsock { cid, port } => {
            VsockStream::connect(VsockAddr::new(*cid, *port)).await.map(Conn::vsock).map_err(err)
        }
    }
}

/// Sends `CONNECT <port>\n` and requires an `OK ...\n` reply; `limit` is (the caller's
/// whole timeout, for the message; what is left of it).
async fn hybrid_handshake(
    addr: &Address,
    mut conn: Conn,
    port: u32,
    limit: Option<(Duration, Duration)>,
) -> Result<Conn, TransportError> {
    let exchange = async {
        let request = format!("CONNECT {port}\n");
        conn.write_all(request.as_bytes()).await.map_err(|e| format!("sending 'CONNECT {port}' failed: {e}"))?;
        read_reply_line(&mut conn).await
    };
    let reply = match limit {
        None => exchange.await,
        Some((total, left)) => tokio::time::timeout(left, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no reply to 'CONNECT {port}' within {total:?}"))),
    };
    match reply {
        Ok(line) if line.starts_with(b"OK ") => Ok(conn.with_peer(addr.clone())),
        Ok(line) => Err(format!("expected 'OK <port>' but the peer answered {:?}", String::from_utf8_lossy(&line))),
        Err(reason) => Err(reason),
    }
    .map_err(|reason| TransportError::HybridHandshake { addr: addr.clone(), reason })
}

/// One reply line without its `\n`, read byte by byte so nothing after it is consumed.
async fn read_reply_line(conn: &mut Conn) -> Result<Vec<u8>, String> {
    let mut line = Vec::with_capacity(16);
    loop {
        let mut byte = [0u8; 1];
        match conn.read(&mut byte).await {
            Ok(0) if line.is_empty() => return Err("the peer closed the connection without answering".into()),
            Ok(0) => {
                return Err(format!(
                    "the peer closed the connection after an incomplete answer {:?}",
                    String::from_utf8_lossy(&line)
                ));
            }
            Ok(_) if byte[0] == b'\n' => return Ok(line),
            Ok(_) if line.len() >= HYBRID_REPLY_MAX => {
                return Err(format!(
                    "the peer answered more than {HYBRID_REPLY_MAX} bytes without a newline, starting {:?} \
                     (not a hybrid vsock socket?)",
                    String::from_utf8_lossy(&line)
                ));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the reply to 'CONNECT' failed: {e}")),
        }
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
