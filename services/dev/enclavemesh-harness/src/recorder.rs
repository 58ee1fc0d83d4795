//! A byte-recording forwarder, to inspect what really crosses a socket.
//!
//! Tests put it between two components (agent -> sidecar, sidecar -> KMS) and then
//! search the recorded bytes for secrets.

use enclavemesh_transport::{Address, bind, dial};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Default)]
pub struct Recording(Arc<Mutex<Vec<u8>>>);

impl Recording {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    fn push(&self, b: &[u8]) {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
    }
}

/// Listens on `listen`, forwards every connection to `target`, records both directions.
pub async fn start(listen: &Address, target: Address) -> (Address, Recording) {
    let mut listener = bind(listen).await.expect("recorder bind");
    let local = listener.local_addr();
    let rec = Recording::default();
    let r = rec.clone();
    tokio::spawn(async move {
        while let Ok(client) = listener.accept().await {
            let target = target.clone();
            let r = r.clone();
            tokio::spawn(async move {
                let Ok(server) = dial(&target).await else { return };
                let (cr, cw) = tokio::io::split(client);
                let (sr, sw) = tokio::io::split(server);
                tokio::join!(pump(cr, sw, r.clone()), pump(sr, cw, r));
            });
        }
    });
    (local, rec)
}

/// Copies `from` to `to` until EOF, recording every byte.
async fn pump(mut from: impl tokio::io::AsyncRead + Unpin, mut to: impl tokio::io::AsyncWrite + Unpin, rec: Recording) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        rec.push(&buf[..n]);
    }
    let _ = to.shutdown().await;
}
