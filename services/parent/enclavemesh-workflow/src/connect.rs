//! Connecting to the Temporal frontend, shared by the worker and the CLI.

use std::time::Duration;

use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};

/// Why a Temporal client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid Temporal address '{addr}': {source}")]
    Address { addr: String, source: url::ParseError },
    #[error("cannot connect to Temporal at {addr}: {source}")]
    Connect { addr: String, source: temporalio_client::errors::ClientConnectError },
    #[error("cannot create Temporal client: {0}")]
    Client(String),
}

/// Accepts `http://host:port`, `https://host:port` or a bare `host:port`.
pub fn temporal_url(addr: &str) -> Result<Url, ConnectError> {
    let with_scheme = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    Url::parse(&with_scheme).map_err(|source| ConnectError::Address { addr: addr.to_string(), source })
}

/// Connects once (bounded by a 10 s connect timeout) and binds `namespace`.
pub async fn connect(addr: &str, namespace: &str, identity: &str) -> Result<Client, ConnectError> {
    let url = temporal_url(addr)?;
    let opts =
        ConnectionOptions::new(url).identity(identity.to_string()).connect_timeout(Duration::from_secs(10)).build();
    let connection =
        Connection::connect(opts).await.map_err(|source| ConnectError::Connect { addr: addr.to_string(), source })?;
    Client::new(connection, ClientOptions::new(namespace.to_string()).build())
        .map_err(|e| ConnectError::Client(e.to_string()))
}

/// Connects, retrying for up to `retry_for` (backoff 200 ms → 5 s): a dev server that
/// was just started accepts TCP before its frontend is healthy ("Frontend is not
/// healthy yet"), and a worker may start before the server. The last error is returned.
pub async fn connect_with_retry(
    addr: &str,
    namespace: &str,
    identity: &str,
    retry_for: Duration,
) -> Result<Client, ConnectError> {
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut delay = Duration::from_millis(200);
    loop {
        match connect(addr, namespace, identity).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in = ?delay, "Temporal not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `pid@host`, the identity Temporal shows for this process.
pub fn default_identity(program: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{program}:{}@{host}", std::process::id())
}
