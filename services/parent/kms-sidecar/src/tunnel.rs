//! The Tunnel: an opaque byte pipe from the enclave to an allowlisted KMS endpoint.
//!
//! Why only bytes: the enclave terminates TLS to KMS itself, so whatever passes here is
//! TLS records the parent cannot read or forge. What the sidecar decides is *where* the
//! bytes may go: only to an endpoint on its allowlist (vsock-proxy's model), so a
//! compromised enclave image cannot use the parent as an open proxy, and bounded
//! (concurrent tunnels, frame size, idle time) so a peer cannot exhaust it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use enclavemesh_proto::Refusal;
use enclavemesh_proto::v1::{TunnelFrame, TunnelOpen, tunnel_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// Largest data frame either side sends.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// One allowed endpoint (`host:port`, as the enclave names it) and where to connect for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("'{s}': expected HOST:PORT"))?;
        let port = port.parse().map_err(|_| format!("'{s}': the port is not a number"))?;
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(format!("'{s}': expected HOST:PORT"));
        }
        Ok(Endpoint { host: host.to_ascii_lowercase(), port })
    }
}

/// Where tunnels may go, and how many may be open.
#[derive(Debug, Clone)]
pub struct TunnelSettings {
    /// Endpoint the enclave names → where the sidecar connects (itself, unless redirected
    /// with `--connect-to`, e.g. to the kms-emulator in dev).
    pub allow: HashMap<String, Endpoint>,
    pub max_tunnels: usize,
    pub connect_timeout: Duration,
    /// A tunnel with no byte in either direction this long is closed.
    pub idle_timeout: Duration,
}

/// Tunnels in flight, bounded.
#[derive(Debug, Clone)]
pub struct Tunnels {
    settings: Arc<TunnelSettings>,
    slots: Arc<Semaphore>,
}

pub type FrameStream = Pin<Box<dyn Stream<Item = Result<TunnelFrame, Status>> + Send>>;

impl Tunnels {
    pub fn new(settings: TunnelSettings) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_tunnels));
        Tunnels { settings: Arc::new(settings), slots }
    }

    /// Opens a tunnel for the client stream `incoming`: reads its open frame, checks the
    /// allowlist, connects, and returns the stream of frames from the endpoint while a
    /// task copies the client's frames to it.
    pub async fn open(&self, mut incoming: Streaming<TunnelFrame>) -> Result<FrameStream, Status> {
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
            Refusal::Overloaded.status(format!(
                "kms-sidecar: {} tunnels already open (--max-tunnels); try again",
                self.settings.max_tunnels
            ))
        })?;
        let first = tokio::time::timeout(self.settings.connect_timeout, incoming.message())
            .await
            .map_err(|_| Refusal::InvalidRequest.status("the tunnel's first frame (open) did not arrive in time"))??;
        let Some(TunnelFrame { frame: Some(tunnel_frame::Frame::Open(TunnelOpen { host, port })) }) = first else {
            return Err(Refusal::InvalidRequest.status("a tunnel must start with an open frame naming HOST and PORT"));
        };
        let asked = format!("{}:{port}", host.to_ascii_lowercase());
        let target = self.settings.allow.get(&asked).ok_or_else(|| {
            tracing::warn!(endpoint = %asked, "tunnel to an endpoint not on the allowlist refused");
            Refusal::InvalidRequest.status(format!(
                "kms-sidecar: {asked} is not on the tunnel allowlist ({}); the sidecar carries bytes only to KMS",
                self.allowlist()
            ))
        })?;
        let tcp = tokio::time::timeout(
            self.settings.connect_timeout,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| {
            Refusal::KmsUnavailable.status(format!("kms-sidecar: connecting to {target} for {asked} timed out"))
        })?
        .map_err(|e| {
            Refusal::KmsUnavailable.status(format!(
                "kms-sidecar: cannot reach {target} for {asked}: {e}. Is the KMS endpoint (the kms-emulator in dev) \
                     up, and is there a route to it from the parent?"
            ))
        })?;
        let _ = tcp.set_nodelay(true);
        tracing::info!(endpoint = %asked, connected_to = %target, "tunnel open");
        let (tx, rx) = mpsc::channel::<Result<TunnelFrame, Status>>(16);
        let idle = self.settings.idle_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let (up, down) = pump(incoming, tcp, tx, idle).await;
            tracing::info!(endpoint = %asked, bytes_to_kms = up, bytes_to_enclave = down, "tunnel closed");
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    fn allowlist(&self) -> String {
        let mut v: Vec<&str> = self.settings.allow.keys().map(String::as_str).collect();
        v.sort_unstable();
        v.join(", ")
    }
}

/// Copies client frames → `tcp` and `tcp` → frames on `tx` until both directions end,
/// an error, or `idle` without traffic. Returns the bytes moved each way.
async fn pump(
    mut incoming: Streaming<TunnelFrame>,
    tcp: TcpStream,
    tx: mpsc::Sender<Result<TunnelFrame, Status>>,
    idle: Duration,
) -> (u64, u64) {
    let (mut read_half, mut write_half) = tcp.into_split();
    let (mut up, mut down) = (0u64, 0u64);
    let mut client_open = true;
    let mut server_open = true;
    let mut buf = vec![0u8; MAX_FRAME_BYTES];
    while client_open || server_open {
        tokio::select! {
            msg = incoming.message(), if client_open => match msg {
                Ok(Some(TunnelFrame { frame: Some(tunnel_frame::Frame::Data(data)) })) => {
                    if data.len() > MAX_FRAME_BYTES || write_half.write_all(&data).await.is_err() {
                        break;
                    }
                    up += data.len() as u64;
                }
                // The enclave finished sending: half-close towards KMS.
                Ok(None) => {
                    client_open = false;
                    let _ = write_half.shutdown().await;
                }
                Ok(Some(_)) | Err(_) => break,
            },
            n = read_half.read(&mut buf), if server_open => match n {
                Ok(0) | Err(_) => server_open = false,
                Ok(n) => {
                    down += n as u64;
                    let frame = TunnelFrame { frame: Some(tunnel_frame::Frame::Data(buf[..n].to_vec())) };
                    if tx.send(Ok(frame)).await.is_err() {
                        break;
                    }
                }
            },
            () = tokio::time::sleep(idle) => break,
        }
    }
    (up, down)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e: Endpoint = "KMS.us-east-1.amazonaws.com:443".parse().unwrap();
        assert_eq!(e, Endpoint { host: "kms.us-east-1.amazonaws.com".into(), port: 443 });
        assert!("kms.us-east-1.amazonaws.com".parse::<Endpoint>().is_err());
        assert!("host:port".parse::<Endpoint>().is_err());
        assert!(":443".parse::<Endpoint>().is_err());
    }
}
