//! One connected byte stream, whatever the transport underneath.
//!
//! Servers (tonic, the bridge) and clients handle `Conn` only, so switching an
//! address between vsock, unix and TCP never changes their code.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_vsock::VsockStream;

use crate::Address;

/// A connected stream over TCP, a unix socket or vsock.
///
/// An `hvsock://` connection is a unix socket whose `CONNECT` handshake is already
/// done: [`Conn::kind`] says `"unix"`, and when dialed its peer is the `hvsock://` address.
#[derive(Debug)]
pub struct Conn {
    inner: Inner,
    peer: Option<Address>,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpStream),
    Unix(UnixStream),
    Vsock(VsockStream),
}

/// What tonic puts in request extensions for each connection (`req.extensions().get::<ConnInfo>()`).
///
/// For vsock the peer CID is what an enclave service uses to tell the parent from other VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The remote end, when the transport names it (unnamed unix clients do not).
    pub peer: Option<Address>,
}

impl Conn {
    pub(crate) fn tcp(stream: TcpStream) -> Self {
        // Small gRPC frames and ping-pong traffic must not wait for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let peer = stream.peer_addr().ok().map(|a| Address::Tcp(a.to_string()));
        Self { inner: Inner::Tcp(stream), peer }
    }

    pub(crate) fn unix(stream: UnixStream) -> Self {
        let peer = stream.peer_addr().ok().and_then(|a| a.as_pathname().map(|p| Address::Unix(p.to_path_buf())));
        Self { inner: Inner::Unix(stream), peer }
    }

    pub(crate) fn vsock(stream: VsockStream) -> Self {
        let peer = stream.peer_addr().ok().map(|a| Address::Vsock { cid: a.cid(), port: a.port() });
        Self { inner: Inner::Vsock(stream), peer }
    }

    /// Replaces the recorded peer (a dialed hybrid vsock stream names the `hvsock://`
    /// address, not the emulator's unix socket).
    pub(crate) fn with_peer(mut self, peer: Address) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The remote end, if the transport names it.
    pub fn peer_addr(&self) -> Option<&Address> {
        self.peer.as_ref()
    }

    /// `"tcp"`, `"unix"` or `"vsock"` — for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self.inner {
            Inner::Tcp(_) => "tcp",
            Inner::Unix(_) => "unix",
            Inner::Vsock(_) => "vsock",
        }
    }
}

impl From<TcpStream> for Conn {
    fn from(s: TcpStream) -> Self {
        Conn::tcp(s)
    }
}
impl From<UnixStream> for Conn {
    fn from(s: UnixStream) -> Self {
        Conn::unix(s)
    }
}
impl From<VsockStream> for Conn {
    fn from(s: VsockStream) -> Self {
        Conn::vsock(s)
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().inner {
            Inner::Tcp($s) => $e,
            Inner::Unix($s) => $e,
            Inner::Vsock($s) => $e,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Tcp(s) => s.is_write_vectored(),
            Inner::Unix(s) => s.is_write_vectored(),
            Inner::Vsock(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo { peer: self.peer.clone() }
    }
}
