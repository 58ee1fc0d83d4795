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
                let (mut cr, mut cw) = tokio::io::split(client);
                let (mut sr, mut sw) = tokio::io::split(server);
                let r1 = r.clone();
                let up = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        r1.push(&buf[..n]);
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        r.push(&buf[..n]);
                    }
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (local, rec)
}
