//! A byte-recording forwarder, to inspect what really crosses a socket.
//!
//! Tests put it between two components (agent -> sidecar, sidecar -> KMS) and then
//! search the recorded bytes for secrets, or check what protocol they are
//! ([`tls_records`]).

use enclavemesh_transport::{Address, bind, dial};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One direction of one forwarded connection.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    /// Which connection (in accept order).
    pub connection: usize,
    /// `true` for what the dialling side sent, `false` for the answers.
    pub from_client: bool,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Default)]
pub struct Recording(Arc<Mutex<Vec<Stream>>>);

impl Recording {
    /// Every byte seen, both directions of every connection.
    pub fn bytes(&self) -> Vec<u8> {
        self.streams().into_iter().flat_map(|s| s.bytes).collect()
    }
    /// Each direction of each connection, separately.
    pub fn streams(&self) -> Vec<Stream> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    fn open(&self, connection: usize, from_client: bool) -> usize {
        let Ok(mut v) = self.0.lock() else { return usize::MAX };
        v.push(Stream { connection, from_client, bytes: Vec::new() });
        v.len() - 1
    }
    fn push(&self, stream: usize, b: &[u8]) {
        if let Ok(mut v) = self.0.lock()
            && let Some(s) = v.get_mut(stream)
        {
            s.bytes.extend_from_slice(b);
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
        let mut n = 0;
        while let Ok(client) = listener.accept().await {
            let target = target.clone();
            let r = r.clone();
            let (up, down) = (r.open(n, true), r.open(n, false));
            n += 1;
            tokio::spawn(async move {
                let Ok(server) = dial(&target).await else { return };
                let (cr, cw) = tokio::io::split(client);
                let (sr, sw) = tokio::io::split(server);
                tokio::join!(pump(cr, sw, r.clone(), up), pump(sr, cw, r, down));
            });
        }
    });
    (local, rec)
}

/// Copies `from` to `to` until EOF, recording every byte.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    rec: Recording,
    stream: usize,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        rec.push(stream, &buf[..n]);
    }
    let _ = to.shutdown().await;
}

/// One TLS record header: content type (22 handshake, 23 application data, 21 alert,
/// 20 change cipher spec) and payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsRecord {
    pub content_type: u8,
    pub len: usize,
}

/// Splits `bytes` into TLS records, or says where they stop being TLS. A record cut off
/// at the very end (still in flight when recorded) is allowed.
pub fn tls_records(bytes: &[u8]) -> Result<Vec<TlsRecord>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let (ty, major, len) =
            (bytes[at], bytes[at + 1], usize::from(u16::from_be_bytes([bytes[at + 3], bytes[at + 4]])));
        if !(20..=23).contains(&ty) || major != 3 || bytes[at + 2] > 4 || len > (1 << 14) + 256 {
            return Err(format!("not a TLS record header at byte {at}: {:02x?}", &bytes[at..at + 5]));
        }
        out.push(TlsRecord { content_type: ty, len });
        at += 5 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_http_is_not_tls_and_tls_records_split() {
        // Positive control for the tests that call parent-side traffic "only TLS".
        assert!(tls_records(b"POST / HTTP/1.1\r\nX-Amz-Target: TrentService.Decrypt\r\n\r\n").is_err());
        let mut two = vec![22, 3, 1, 0, 2, 1, 2];
        two.extend([23, 3, 3, 0, 1, 9, 23, 3]); // the last header is still in flight
        let r = tls_records(&two).unwrap();
        assert_eq!(r, vec![TlsRecord { content_type: 22, len: 2 }, TlsRecord { content_type: 23, len: 1 }]);
    }
}
