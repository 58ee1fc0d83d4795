//! Typed transport errors whose messages tell an operator what to do next.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::Address;

/// Everything binding, dialing or building a channel can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The address string did not parse.
    #[error(transparent)]
    InvalidAddress(#[from] crate::AddressParseError),

    /// `bind`/`listen` failed.
    #[error("cannot listen on {addr}: {source}{hint}", hint = bind_hint(addr, source))]
    Bind {
        addr: Address,
        #[source]
        source: io::Error,
    },

    /// A live server already owns the unix socket path; we refuse to steal it.
    #[error("cannot listen on {addr}: another process is already listening on this socket")]
    SocketInUse { addr: Address },

    /// The unix socket path exists but is not a socket; we never delete other files.
    #[error("cannot listen on {addr}: {} exists and is not a socket; refusing to remove it", path.display())]
    NotASocket { addr: Address, path: PathBuf },

    /// Preparing the unix socket path (parent dir, stale socket) failed.
    #[error("cannot prepare {} for {addr}: {source}", path.display())]
    SocketPath {
        addr: Address,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `connect` failed.
    #[error("cannot connect to {addr}: {source}{hint}", hint = connect_hint(addr, source))]
    Connect {
        addr: Address,
        #[source]
        source: io::Error,
    },

    /// `connect` did not finish in time.
    #[error("cannot connect to {addr}: no answer within {timeout:?} — is the server running and reachable?")]
    ConnectTimeout { addr: Address, timeout: Duration },

    /// The unix socket of an `hvsock://` address accepted the connection, but the
    /// `CONNECT <port>` handshake did not end in `OK ...`: `reason` says what the peer
    /// answered (or that it closed, stalled or failed).
    #[error("cannot connect to {addr}: hybrid vsock handshake failed: {reason}{hint}", hint = hybrid_hint(addr))]
    HybridHandshake { addr: Address, reason: String },
}

impl TransportError {
    /// The underlying I/O error kind, if there is one (lets callers branch without parsing text).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            TransportError::Bind { source, .. }
            | TransportError::SocketPath { source, .. }
            | TransportError::Connect { source, .. } => Some(source.kind()),
            TransportError::ConnectTimeout { .. } => Some(io::ErrorKind::TimedOut),
            TransportError::SocketInUse { .. } => Some(io::ErrorKind::AddrInUse),
            _ => None,
        }
    }
}

impl From<TransportError> for io::Error {
    fn from(e: TransportError) -> Self {
        io::Error::new(e.io_kind().unwrap_or(io::ErrorKind::Other), e)
    }
}

/// True when the kernel says it has no usable AF_VSOCK (no vsock modules / no transport).
pub(crate) fn is_vsock_unsupported(e: &io::Error) -> bool {
    // Linux errno values; avoids a libc dependency for two constants.
    const EAFNOSUPPORT: i32 = 97;
    const ENODEV: i32 = 19;
    matches!(e.raw_os_error(), Some(EAFNOSUPPORT | ENODEV))
}

const NO_VSOCK: &str = " — this kernel has no usable AF_VSOCK (not in a Nitro enclave/VM, or vsock modules \
    not loaded); use unix:// or tcp:// addresses for local development";

fn bind_hint(addr: &Address, e: &io::Error) -> &'static str {
    match (addr, e.kind()) {
        (Address::HybridVsock { .. }, io::ErrorKind::InvalidInput) => {
            " — hvsock://UDS:PORT listens on the unix socket UDS_PORT, which must fit in 107 bytes; \
             use a shorter uds-path"
        }
        (Address::Vsock { .. }, _) if is_vsock_unsupported(e) => NO_VSOCK,
        (Address::Vsock { .. }, io::ErrorKind::AddrNotAvailable) => {
            " — this machine does not own that CID; listen on vsock://ANY:PORT"
        }
        (_, io::ErrorKind::AddrInUse) => " — another process already uses this address",
        (_, io::ErrorKind::PermissionDenied) => " — check permissions (ports < 1024 need privileges)",
        _ => "",
    }
}

fn connect_hint(addr: &Address, e: &io::Error) -> &'static str {
    match (addr, e.kind()) {
        (Address::Vsock { .. }, _) if is_vsock_unsupported(e) => NO_VSOCK,
        (Address::Vsock { .. }, io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused) => {
            " — is the server running in that enclave/VM on that port?"
        }
        (Address::HybridVsock { .. }, io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            " — is vhost-device-vsock (QEMU) or Firecracker running with this socket as its uds-path?"
        }
        (_, io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => " — is the server running?",
        (_, io::ErrorKind::PermissionDenied) => " — check the socket's permissions",
        _ => "",
    }
}

/// What to check when an `hvsock://` handshake fails: the emulator and the guest.
fn hybrid_hint(addr: &Address) -> String {
    match addr {
        Address::HybridVsock { uds, port } => format!(
            " — check that vhost-device-vsock (QEMU) or Firecracker is running with uds-path={} \
             and that the guest is listening on vsock port {port}",
            uds.display()
        ),
        _ => String::new(),
    }
}

/// An error and all its sources, `outer: inner: innermost`. tonic, hyper and the AWS
/// SDK keep the actionable part (connection refused, TLS, DNS) in the sources, which
/// `Display` alone drops.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}
