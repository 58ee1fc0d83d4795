//! A deadline for the HTTP/2 connection preface on every accepted connection.
//!
//! Used by every server the project runs (through `enclavemesh-server`) and by the
//! vsock-bridge in front of them.
//!
//! Why this exists: hyper's HTTP/2 server has no handshake timeout, and its keepalive
//! pings start only once the handshake is done. A peer that connects and then sends
//! nothing — or half of the 24-byte preface — would hold a task and a file descriptor
//! forever (slow-loris); enough of them exhaust the enclave's descriptors and nobody
//! else gets served. Every real client (tonic, grpcurl, the vsock-bridge relaying one)
//! writes the whole preface immediately after connecting, so a few seconds is generous.
//! After the preface, hyper's keepalive (interval + timeout) bounds dead peers.

use crate::{Conn, ConnInfo};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_stream::{Stream, StreamExt};

/// Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
pub const PREFACE_LEN: usize = 24;

/// Time a new connection gets to deliver the whole preface.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that fails its reads with `TimedOut` if the preface has not fully
/// arrived within the deadline; afterwards it is a plain pass-through.
#[derive(Debug)]
pub struct HandshakeDeadline {
    inner: Conn,
    received: usize,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl HandshakeDeadline {
    pub fn new(inner: Conn, timeout: Duration) -> Self {
        HandshakeDeadline { inner, received: 0, deadline: Some(Box::pin(tokio::time::sleep(timeout))) }
    }
}

/// Wraps every connection of `incoming` in a [`HandshakeDeadline`].
pub fn with_deadline<S>(
    incoming: S,
    timeout: Duration,
) -> impl Stream<Item = io::Result<HandshakeDeadline>> + Send + 'static
where
    S: Stream<Item = io::Result<Conn>> + Send + 'static,
{
    incoming.map(move |r| r.map(|c| HandshakeDeadline::new(c, timeout)))
}

impl AsyncRead for HandshakeDeadline {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_none() {
            return res;
        }
        if let Poll::Ready(Ok(())) = &res {
            this.received += buf.filled().len() - before;
            if this.received >= PREFACE_LEN {
                this.deadline = None;
            }
            return res;
        }
        if res.is_pending()
            && let Some(d) = this.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            tracing::debug!(received = this.received, "peer did not send the HTTP/2 preface in time; closing");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP/2 connection preface not received in time",
            )));
        }
        res
    }
}

impl AsyncWrite for HandshakeDeadline {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for HandshakeDeadline {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Conn, tokio::net::UnixStream, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let addr: crate::Address = format!("unix://{}", dir.path().join("s").display()).parse().unwrap();
        let mut l = crate::bind(&addr).await.unwrap();
        let client = tokio::net::UnixStream::connect(dir.path().join("s")).await.unwrap();
        let server = l.accept().await.unwrap();
        (server, client, dir)
    }

    #[tokio::test]
    async fn stalled_preface_times_out() {
        let (server, mut client, _d) = pair().await;
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let mut g = HandshakeDeadline::new(server, Duration::from_millis(200));
        let mut buf = [0u8; 64];
        let n = g.read(&mut buf).await.unwrap();
        assert_eq!(n, 16);
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn full_preface_disarms_the_deadline() {
        let (server, mut client, _d) = pair().await;
        client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        let mut g = HandshakeDeadline::new(server, Duration::from_millis(100));
        let mut buf = [0u8; 64];
        assert_eq!(g.read(&mut buf).await.unwrap(), 24);
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.write_all(b"later").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 5);
    }
}
