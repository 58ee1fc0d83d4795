//! A byte stream to KMS through the parent's `KmsForwarder.Tunnel`.
//!
//! The parent carries these bytes; TLS runs on top of them inside the enclave
//! ([`super::http`]), so what the parent sees and sends is TLS records. A parent that
//! drops or delays them can only make a KMS call fail or time out.

use std::io;

use enclavemesh_proto::v1::{TunnelFrame, TunnelOpen, tunnel_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::sidecar::SidecarClient;

/// Largest data frame sent (the sidecar takes up to 64 KiB).
const FRAME_BYTES: usize = 16 * 1024;

/// Why a tunnel could not be opened: the sidecar's own status (kept for the refusal kind
/// and message), wrapped as the `io::Error` the HTTP stack expects of a dialer.
#[derive(Debug, thiserror::Error)]
#[error("the kms-sidecar refused the tunnel to {endpoint}: {status}")]
pub struct TunnelRefused {
    pub endpoint: String,
    pub status: tonic::Status,
}

/// Opens a tunnel to `host:port` and returns its enclave end.
pub async fn dial(client: &SidecarClient, host: &str, port: u16) -> io::Result<DuplexStream> {
    let (tx, rx) = mpsc::channel::<TunnelFrame>(16);
    let open = TunnelFrame {
        frame: Some(tunnel_frame::Frame::Open(TunnelOpen { host: host.to_string(), port: u32::from(port) })),
    };
    tx.send(open).await.map_err(|_| io::Error::other("tunnel request stream closed before it opened"))?;
    let incoming = client
        .clone()
        .tunnel(ReceiverStream::new(rx))
        .await
        .map_err(|status| io::Error::other(TunnelRefused { endpoint: format!("{host}:{port}"), status }))?
        .into_inner();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(pump(theirs, tx, incoming));
    Ok(ours)
}

/// Copies between the duplex end and the gRPC streams until both directions end.
async fn pump(theirs: DuplexStream, tx: mpsc::Sender<TunnelFrame>, mut incoming: tonic::Streaming<TunnelFrame>) {
    let (mut read, mut write) = tokio::io::split(theirs);
    let up = async move {
        let mut buf = vec![0u8; FRAME_BYTES];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = TunnelFrame { frame: Some(tunnel_frame::Frame::Data(buf[..n].to_vec())) };
                    if tx.send(frame).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping `tx` ends the request stream: the sidecar half-closes towards KMS.
    };
    let down = async move {
        while let Ok(Some(frame)) = incoming.message().await {
            match frame.frame {
                Some(tunnel_frame::Frame::Data(data)) => {
                    if write.write_all(&data).await.is_err() {
                        break;
                    }
                }
                // The sidecar sends only data; anything else ends the tunnel.
                _ => break,
            }
        }
        let _ = write.shutdown().await;
    };
    tokio::join!(up, down);
}
