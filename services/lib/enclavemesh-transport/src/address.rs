//! The one address syntax shared by every Enclave Mesh server and client.
//!
//! Every program takes its listen and peer addresses as strings in this syntax, so
//! the same binary runs inside a Nitro enclave (vsock), on a developer laptop (unix
//! sockets) and in CI (TCP) with only a flag changed.
//!
//! `hvsock://` exists for VMs whose vsock device is emulated in user space —
//! QEMU's `nitro-enclave` machine with `vhost-device-vsock` in hybrid mode, or
//! Firecracker. There the host has no AF_VSOCK at all: the VM's vsock is a unix
//! socket `UDS` on the host, reached with a one-line `CONNECT <port>` handshake, and
//! a guest dialing the host's port `P` lands on the unix socket `UDS_P`. Naming that
//! as one address keeps the enclave-facing programs unchanged between a real Nitro
//! parent (`vsock://16:5000`) and a QEMU-emulated one (`hvsock:///run/vm/vsock.sock:5000`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// `VMADDR_CID_ANY`: listen on every CID this machine has.
pub const VSOCK_CID_ANY: u32 = u32::MAX;
/// `VMADDR_CID_HOST` (2): the hypervisor host.
pub const VSOCK_CID_HOST: u32 = 2;
/// The CID of the parent EC2 instance as seen from inside a Nitro enclave (3).
pub const VSOCK_CID_PARENT: u32 = 3;

/// The forms [`Address::from_str`] accepts, repeated verbatim in every parse error.
pub const ACCEPTED_FORMS: &str = "vsock://CID:PORT (CID a number, ANY, HOST=2 or PARENT=3), \
     unix:///absolute/path, unix:relative/path, tcp://host:port, \
     hvsock:///absolute/uds/path:PORT or hvsock:relative/uds/path:PORT (QEMU/Firecracker hybrid vsock)";

/// Where to listen or connect.
///
/// `Display` prints the canonical form, which parses back to the same value
/// (`vsock://HOST:5` displays as `vsock://2:5`; `ANY` is kept as `ANY`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// AF_VSOCK: `vsock://CID:PORT`.
    Vsock { cid: u32, port: u32 },
    /// AF_UNIX stream socket at this path (absolute or relative to the working dir).
    Unix(PathBuf),
    /// TCP, `host:port` (host may be a name, an IPv4 address or a bracketed IPv6 address).
    Tcp(String),
    /// Hybrid vsock (QEMU `vhost-device-vsock` in hybrid mode, Firecracker):
    /// `hvsock:///abs/uds:PORT` or `hvsock:relative/uds:PORT`.
    ///
    /// `uds` is the VM's vsock unix socket on the host (vhost-device-vsock's
    /// `uds-path=`). Dialing connects to `uds` and sends `CONNECT <port>` to reach
    /// the guest's vsock port `port`; listening binds the unix socket `uds_port`
    /// ([`Address::hybrid_listen_path`]), where the emulator delivers guest
    /// connections to host port `port`.
    HybridVsock { uds: PathBuf, port: u32 },
}

/// Why an address string was rejected; the message names the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address '{input}': {reason}; accepted forms: {ACCEPTED_FORMS}")]
pub struct AddressParseError {
    input: String,
    reason: String,
}

impl AddressParseError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        Self { input: input.to_owned(), reason: reason.into() }
    }

    /// The rejected input.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl Address {
    /// True for `vsock://` addresses only — real AF_VSOCK (useful to pick defaults or
    /// warn in dev mode). False for `hvsock://`, which is a unix socket on this side
    /// and carries no peer CID; see [`Address::is_hybrid_vsock`].
    pub fn is_vsock(&self) -> bool {
        matches!(self, Address::Vsock { .. })
    }

    /// True for `hvsock://` (hybrid vsock through a unix socket) addresses.
    pub fn is_hybrid_vsock(&self) -> bool {
        matches!(self, Address::HybridVsock { .. })
    }

    /// For `hvsock://UDS:PORT`, the unix socket a listener binds: `UDS_PORT` (the uds
    /// path, an underscore, the decimal port), which is where vhost-device-vsock and
    /// Firecracker connect when the guest dials host port `PORT`. `None` otherwise.
    ///
    /// ```
    /// use enclavemesh_transport::Address;
    /// let addr: Address = "hvsock:///run/vm/vsock.sock:7000".parse()?;
    /// assert_eq!(addr.hybrid_listen_path(), Some("/run/vm/vsock.sock_7000".into()));
    /// assert_eq!(addr.to_string(), "hvsock:///run/vm/vsock.sock:7000");
    /// assert!(!addr.is_vsock() && addr.is_hybrid_vsock());
    /// # Ok::<(), enclavemesh_transport::AddressParseError>(())
    /// ```
    pub fn hybrid_listen_path(&self) -> Option<PathBuf> {
        let Address::HybridVsock { uds, port } = self else { return None };
        Some(hybrid_listen_path(uds, *port))
    }
}

/// `UDS_PORT`: the vhost-device-vsock / Firecracker naming for host port `port`.
pub(crate) fn hybrid_listen_path(uds: &Path, port: u32) -> PathBuf {
    let mut path = uds.as_os_str().to_owned();
    path.push(format!("_{port}"));
    PathBuf::from(path)
}

impl FromStr for Address {
    type Err = AddressParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let err = |reason: &str| AddressParseError::new(input, reason);
        if let Some(rest) = strip_scheme(s, "vsock://") {
            let (cid, port) = rest.rsplit_once(':').ok_or_else(|| err("vsock address needs CID:PORT"))?;
            let cid =
                parse_cid(cid).ok_or_else(|| err("vsock CID must be a number (0..4294967295) or ANY, HOST, PARENT"))?;
            let port = port.parse::<u32>().map_err(|_| err("vsock PORT must be a number (0..4294967295)"))?;
            Ok(Address::Vsock { cid, port })
        } else if let Some(rest) = strip_scheme(s, "unix://") {
            if !rest.starts_with('/') {
                return Err(err("unix:// must be followed by an absolute path (unix:///run/x.sock); \
                     use unix:relative/path for a relative one"));
            }
            Ok(Address::Unix(PathBuf::from(rest)))
        } else if let Some(rest) = strip_scheme(s, "unix:") {
            if rest.is_empty() {
                return Err(err("unix socket path is empty"));
            }
            Ok(Address::Unix(PathBuf::from(rest)))
        } else if let Some(rest) = strip_scheme(s, "hvsock://") {
            if !rest.starts_with('/') {
                return Err(err("hvsock:// must be followed by an absolute path (hvsock:///run/vm/vsock.sock:5000); \
                     use hvsock:relative/path:PORT for a relative one"));
            }
            parse_hybrid(rest).map_err(err)
        } else if let Some(rest) = strip_scheme(s, "hvsock:") {
            parse_hybrid(rest).map_err(err)
        } else if let Some(rest) = strip_scheme(s, "tcp://") {
            validate_host_port(rest).map_err(|r| err(&r))?;
            Ok(Address::Tcp(rest.to_owned()))
        } else {
            Err(err("unknown or missing scheme"))
        }
    }
}

impl TryFrom<&str> for Address {
    type Error = AddressParseError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Vsock { cid: VSOCK_CID_ANY, port } => write!(f, "vsock://ANY:{port}"),
            Address::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Address::Unix(path) if path.is_absolute() => write!(f, "unix://{}", path.display()),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tcp(host_port) => write!(f, "tcp://{host_port}"),
            Address::HybridVsock { uds, port } if uds.is_absolute() => write!(f, "hvsock://{}:{port}", uds.display()),
            Address::HybridVsock { uds, port } => write!(f, "hvsock:{}:{port}", uds.display()),
        }
    }
}

/// Case-insensitive scheme match (`TCP://` is as good as `tcp://`).
fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    let head = s.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then(|| &s[scheme.len()..])
}

/// `UDS:PORT`, split on the last ':' so the path may contain colons.
fn parse_hybrid(rest: &str) -> Result<Address, &'static str> {
    let (uds, port) = rest.rsplit_once(':').ok_or("hvsock address needs UDS_PATH:PORT")?;
    if uds.is_empty() {
        return Err("hvsock unix socket path is empty");
    }
    if uds.ends_with('/') {
        return Err("hvsock path must name the VM's vsock unix socket (uds-path=), not a directory");
    }
    let port = port.parse::<u32>().map_err(|_| "hvsock PORT must be a number (0..4294967295)")?;
    Ok(Address::HybridVsock { uds: PathBuf::from(uds), port })
}

fn parse_cid(s: &str) -> Option<u32> {
    match s.to_ascii_uppercase().as_str() {
        "ANY" => Some(VSOCK_CID_ANY),
        "HOST" => Some(VSOCK_CID_HOST),
        "PARENT" => Some(VSOCK_CID_PARENT),
        _ => s.parse().ok(),
    }
}

fn validate_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| "tcp address needs host:port".to_owned())?;
    if host.is_empty() {
        return Err("tcp host is empty".into());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| "unterminated '[' in IPv6 host".to_owned())?;
        inner.parse::<std::net::Ipv6Addr>().map_err(|_| format!("'{inner}' is not an IPv6 address"))?;
    } else if host.contains(':') {
        return Err("IPv6 hosts must be bracketed: tcp://[::1]:port".into());
    } else if host.contains(['/', '?', '#', '@', ' ']) {
        return Err("tcp host must be a bare name or IP (no path, user or query)".into());
    }
    port.parse::<u16>().map_err(|_| format!("tcp port '{port}' must be a number 0..65535"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(p("vsock://16:5000"), Address::Vsock { cid: 16, port: 5000 });
        assert_eq!(p("vsock://ANY:5000"), Address::Vsock { cid: u32::MAX, port: 5000 });
        assert_eq!(p("vsock://any:1"), Address::Vsock { cid: u32::MAX, port: 1 });
        assert_eq!(p("vsock://HOST:8000"), Address::Vsock { cid: 2, port: 8000 });
        assert_eq!(p("vsock://PARENT:8000"), Address::Vsock { cid: 3, port: 8000 });
        assert_eq!(p("vsock://4294967295:4294967295"), Address::Vsock { cid: u32::MAX, port: u32::MAX });
        assert_eq!(p("unix:///run/agent.sock"), Address::Unix("/run/agent.sock".into()));
        assert_eq!(p("unix:/run/agent.sock"), Address::Unix("/run/agent.sock".into()));
        assert_eq!(p("unix:.dev/agent.sock"), Address::Unix(".dev/agent.sock".into()));
        assert_eq!(p("tcp://127.0.0.1:5005"), Address::Tcp("127.0.0.1:5005".into()));
        assert_eq!(p("tcp://localhost:0"), Address::Tcp("localhost:0".into()));
        assert_eq!(p("tcp://[::1]:443"), Address::Tcp("[::1]:443".into()));
        assert_eq!(p("TCP://h:1"), Address::Tcp("h:1".into()));
        assert_eq!(p("  tcp://h:1 "), Address::Tcp("h:1".into()));
        let hv = |uds: &str, port| Address::HybridVsock { uds: uds.into(), port };
        assert_eq!(p("hvsock:///run/vm/vsock.sock:5000"), hv("/run/vm/vsock.sock", 5000));
        assert_eq!(p("hvsock:/run/vm/vsock.sock:5000"), hv("/run/vm/vsock.sock", 5000));
        assert_eq!(p("hvsock:.dev/vsock.sock:0"), hv(".dev/vsock.sock", 0));
        assert_eq!(p("hvsock:v.sock:4294967295"), hv("v.sock", u32::MAX));
        assert_eq!(p("hvsock:///a:b/v.sock:7"), hv("/a:b/v.sock", 7), "split on the last ':'");
        assert_eq!(p("HVSOCK:///v.sock:1"), hv("/v.sock", 1));
    }

    #[test]
    fn hybrid_vsock_is_not_vsock_and_listens_on_uds_underscore_port() {
        let a = p("hvsock:///run/vm/vsock.sock:7000");
        assert!(a.is_hybrid_vsock() && !a.is_vsock());
        assert_eq!(a.hybrid_listen_path(), Some(PathBuf::from("/run/vm/vsock.sock_7000")));
        assert_eq!(p("hvsock:rel.sock:1").hybrid_listen_path(), Some(PathBuf::from("rel.sock_1")));
        assert!(p("vsock://3:5").is_vsock() && !p("vsock://3:5").is_hybrid_vsock());
        assert_eq!(p("unix:///run/x.sock").hybrid_listen_path(), None);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "vsock://16:5000",
            "vsock://ANY:5000",
            "vsock://HOST:1",
            "vsock://PARENT:8000",
            "unix:///run/agent.sock",
            "unix:/abs",
            "unix:rel/agent.sock",
            "tcp://127.0.0.1:5005",
            "tcp://[::1]:1",
            "tcp://example.com:443",
            "hvsock:///run/vm/vsock.sock:5000",
            "hvsock:/abs:1",
            "hvsock:rel/v.sock:4294967295",
            "hvsock:///a:b:7",
            "hvsock:a:b:7",
        ] {
            let a = p(s);
            let shown = a.to_string();
            assert_eq!(p(&shown), a, "{s} -> {shown}");
        }
        assert_eq!(p("vsock://ANY:5000").to_string(), "vsock://ANY:5000");
        assert_eq!(p("vsock://HOST:7").to_string(), "vsock://2:7");
        assert_eq!(p("unix:/abs").to_string(), "unix:///abs");
        assert_eq!(p("unix:rel").to_string(), "unix:rel");
        assert_eq!(p("tcp://h:1").to_string(), "tcp://h:1");
        assert_eq!(p("hvsock:/abs:1").to_string(), "hvsock:///abs:1");
        assert_eq!(p("HVSOCK:///abs:1").to_string(), "hvsock:///abs:1");
        assert_eq!(p("hvsock:rel:2").to_string(), "hvsock:rel:2");
    }

    #[test]
    fn rejects_bad_forms_naming_the_accepted_ones() {
        for s in [
            "",
            "127.0.0.1:5005",
            "http://x:1",
            "vsock://",
            "vsock://5000",
            "vsock://abc:1",
            "vsock://-1:1",
            "vsock://3:port",
            "vsock://3:4294967296",
            "vsock://4294967296:1",
            "unix:",
            "unix://",
            "unix://relative/x.sock",
            "tcp://",
            "tcp://host",
            "tcp://:80",
            "tcp://host:99999",
            "tcp://host:http",
            "tcp://::1:80",
            "tcp://[::1:80",
            "tcp://[zz]:80",
            "tcp://host:80/path",
            "tcp://user@host:80",
            "hvsock:",
            "hvsock://",
            "hvsock:///",
            "hvsock:///run/vm/vsock.sock",
            "hvsock://relative/v.sock:5000",
            "hvsock::5000",
            "hvsock:///:5000",
            "hvsock:///run/vm/:5000",
            "hvsock:///v.sock:",
            "hvsock:///v.sock:port",
            "hvsock:///v.sock:-1",
            "hvsock:///v.sock:4294967296",
            "hvsock:v.sock",
        ] {
            let e = s.parse::<Address>().expect_err(s);
            let msg = e.to_string();
            assert!(msg.contains(ACCEPTED_FORMS), "{msg}");
            assert!(msg.contains(&format!("'{s}'")), "{msg}");
        }
    }
}
