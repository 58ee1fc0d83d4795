//! Binding any [`Address`] and accepting [`Conn`]s from it.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, UnixListener};
use tokio::time::Sleep;
use tokio_vsock::{VsockAddr, VsockListener};

use crate::address::hybrid_listen_path;
use crate::{Address, Conn, TransportError};

/// How long to pause accepting after the process ran out of file descriptors or
/// memory; without it tonic's accept loop (which skips errors) would spin at 100% CPU.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(100);

/// A bound listener on a TCP, unix, vsock or hybrid vsock address.
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    local: Address,
    backoff: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpListener),
    Unix { listener: UnixListener, _cleanup: UnixCleanup },
    Vsock(VsockListener),
}

/// Removes the socket file on drop, but only if it is still the one we created
/// (same device + inode), so a successor bound at the same path is never unlinked.
#[derive(Debug)]
struct UnixCleanup {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl Drop for UnixCleanup {
    fn drop(&mut self) {
        if let (Some(id), Ok(meta)) = (self.id, std::fs::symlink_metadata(&self.path))
            && (meta.dev(), meta.ino()) == id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `addr`.
///
/// For unix sockets the parent directory is created and a stale socket file (left by
/// a crashed server; nobody accepts on it) is replaced. A live socket or a path that
/// is not a socket is an error rather than silently taken over.
///
/// `hvsock://UDS:PORT` binds the unix socket `UDS_PORT` ([`Address::hybrid_listen_path`])
/// the same way: that is where vhost-device-vsock / Firecracker connect when the guest
/// dials host port `PORT`. [`Listener::local_addr`] still reports the `hvsock://` address.
pub async fn bind(addr: &Address) -> Result<Listener, TransportError> {
    let bind_err = |source| TransportError::Bind { addr: addr.clone(), source };
    let inner = match addr {
        Address::Tcp(host_port) => Inner::Tcp(TcpListener::bind(host_port.as_str()).await.map_err(bind_err)?),
        Address::Unix(path) => bind_unix(addr, path).await?,
        Address::HybridVsock { uds, port } => bind_unix(addr, &hybrid_listen_path(uds, *port)).await?,
        Address::Vsock { cid, port } => {
            Inner::Vsock(VsockListener::bind(VsockAddr::new(*cid, *port)).map_err(bind_err)?)
        }
    };
    let local = match &inner {
        Inner::Tcp(l) => l.local_addr().map(|a| Address::Tcp(a.to_string())).unwrap_or_else(|_| addr.clone()),
        Inner::Unix { .. } => addr.clone(),
        Inner::Vsock(l) => {
            l.local_addr().map(|a| Address::Vsock { cid: a.cid(), port: a.port() }).unwrap_or_else(|_| addr.clone())
        }
    };
    tracing::debug!(address = %local, "listening");
    Ok(Listener { inner, local, backoff: None })
}

/// Binds the unix socket at `path` for `addr` (`unix://path`, or `hvsock://` on `UDS_PORT`).
async fn bind_unix(addr: &Address, path: &Path) -> Result<Inner, TransportError> {
    prepare_unix_path(addr, path).await?;
    let listener = UnixListener::bind(path).map_err(|source| TransportError::Bind { addr: addr.clone(), source })?;
    let id = std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    Ok(Inner::Unix { listener, _cleanup: UnixCleanup { path: path.to_path_buf(), id } })
}

async fn prepare_unix_path(addr: &Address, path: &Path) -> Result<(), TransportError> {
    let path_err = |p: &Path, source| TransportError::SocketPath { addr: addr.clone(), path: p.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(|e| path_err(dir, e))?;
    }
    let meta = match tokio::fs::symlink_metadata(path).await {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(path_err(path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(TransportError::NotASocket { addr: addr.clone(), path: path.to_path_buf() });
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Err(TransportError::SocketInUse { addr: addr.clone() }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale unix socket");
            match tokio::fs::remove_file(path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(path_err(path, e)),
            }
        }
        Err(e) => Err(path_err(path, e)),
    }
}

impl Listener {
    /// The address actually bound: for `tcp://host:0` it carries the real port.
    pub fn local_addr(&self) -> Address {
        self.local.clone()
    }

    /// Accepts one connection (TCP connections get TCP_NODELAY).
    pub async fn accept(&mut self) -> io::Result<Conn> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Poll form of [`Listener::accept`].
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Conn>> {
        if let Some(sleep) = self.backoff.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            self.backoff = None;
        }
        let result = match &mut self.inner {
            Inner::Tcp(l) => ready!(l.poll_accept(cx)).map(|(s, _)| Conn::tcp(s)),
            Inner::Unix { listener: l, .. } => ready!(l.poll_accept(cx)).map(|(s, _)| Conn::unix(s)),
            Inner::Vsock(l) => ready!(l.poll_accept(cx)).map(|(s, _)| Conn::vsock(s)),
        };
        if let Err(e) = &result {
            if is_resource_exhaustion(e) {
                tracing::warn!(address = %self.local, error = %e, "accept failed; pausing before the next accept");
                self.backoff = Some(Box::pin(tokio::time::sleep(RESOURCE_BACKOFF)));
            } else {
                tracing::debug!(address = %self.local, error = %e, "accept failed");
            }
        }
        Poll::Ready(result)
    }

    /// Turns the listener into the stream tonic's `serve_with_incoming[_shutdown]` wants.
    ///
    /// Errors are per-connection (the stream keeps going); dropping the stream closes
    /// the listening socket.
    pub fn into_incoming(mut self) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
        futures::stream::poll_fn(move |cx| self.poll_accept(cx).map(Some))
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}
