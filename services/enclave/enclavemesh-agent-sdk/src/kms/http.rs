//! HTTPS to KMS over tunnels: the HTTP client aws-sdk-kms sends its requests through.
//!
//! Every connection is a fresh tunnel ([`super::tunnel`]) with TLS on top, for the one
//! hostname this enclave's pinned key lives at; the hyper-util client keeps a small pool
//! of them, sets `Host`, and speaks HTTP/1.1. The SDK's own HTTPS stack (another TLS
//! library, the system's root store, TCP sockets) is not compiled in at all.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http::Uri;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::sidecar::SidecarClient;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// TLS over one tunnel, as a hyper-util connection (HTTP/1.1, not proxied).
pub struct KmsTls(TlsStream<DuplexStream>);

impl Connection for KmsTls {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for KmsTls {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for KmsTls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Dial + TLS handshake did not finish in time.
#[derive(Debug, thiserror::Error)]
#[error("opening a tunnel and the TLS handshake with KMS did not finish within {0:?}")]
struct ConnectTimedOut(Duration);

/// Makes connections: tunnel, then TLS for the fixed server name.
#[derive(Clone)]
struct TunnelTlsConnector {
    sidecar: SidecarClient,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    host: Arc<str>,
    connect_timeout: Option<Duration>,
}

impl tower::Service<Uri> for TunnelTlsConnector {
    type Response = TokioIo<KmsTls>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // Only ever our own endpoint: Host, SNI and the signed host are one name.
            if uri.scheme_str() != Some("https")
                || uri.host() != Some(&*this.host)
                || !matches!(uri.port_u16(), None | Some(443))
            {
                return Err(BoxError::from(format!(
                    "refusing to connect to {uri}: only https://{} is allowed",
                    this.host
                )));
            }
            let handshake = async {
                let stream = super::tunnel::dial(&this.sidecar, &this.host, 443).await?;
                this.tls.connect(this.server_name.clone(), stream).await
            };
            let tls = match this.connect_timeout {
                Some(limit) => tokio::time::timeout(limit, handshake).await.map_err(|_| ConnectTimedOut(limit))??,
                None => handshake.await?,
            };
            Ok::<_, BoxError>(TokioIo::new(KmsTls(tls)))
        })
    }
}

struct TunnelHttpConnector {
    client: LegacyClient<TunnelTlsConnector, SdkBody>,
    read_timeout: Option<Duration>,
}

impl fmt::Debug for TunnelHttpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelHttpConnector").field("read_timeout", &self.read_timeout).finish()
    }
}

fn connector_error(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cur {
        if e.is::<ConnectTimedOut>() {
            return ConnectorError::timeout(err.into());
        }
        cur = e.source();
    }
    // The tunnel refused, TLS failed, the connection broke: io (the error chain says which).
    ConnectorError::io(err.into())
}

impl HttpConnector for TunnelHttpConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let fut = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let result = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, fut).await {
                    Ok(r) => r,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => fut.await,
            };
            let response = result.map_err(connector_error)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// (connect timeout, read timeout): the settings a pooled client is made for.
type TimeoutKey = (Option<Duration>, Option<Duration>);

/// The SDK's HTTP client: pooled HTTPS-over-tunnel connections to `kms.<region>.amazonaws.com`.
#[derive(Clone)]
pub struct TunnelHttpClient {
    base: TunnelTlsConnector,
    /// `http_connector` runs once per attempt: one pooled client per timeout setting.
    connectors: Arc<Mutex<HashMap<TimeoutKey, SharedHttpConnector>>>,
}

impl fmt::Debug for TunnelHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelHttpClient").field("host", &self.base.host).finish()
    }
}

impl TunnelHttpClient {
    /// For `host` (from the enclave's pinned key, never from the parent).
    pub fn new(sidecar: SidecarClient, tls: Arc<ClientConfig>, host: &str) -> Result<Self, BoxError> {
        let server_name = ServerName::try_from(host.to_string())?;
        Ok(TunnelHttpClient {
            base: TunnelTlsConnector {
                sidecar,
                tls: TlsConnector::from(tls),
                server_name,
                host: Arc::from(host),
                connect_timeout: None,
            },
            connectors: Arc::default(),
        })
    }

    fn build(&self, connect_timeout: Option<Duration>, read_timeout: Option<Duration>) -> TunnelHttpConnector {
        let mut connector = self.base.clone();
        connector.connect_timeout = connect_timeout;
        let mut builder = LegacyClient::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new()).pool_idle_timeout(Duration::from_secs(20)).pool_max_idle_per_host(4);
        TunnelHttpConnector { client: builder.build(connector), read_timeout }
    }
}

impl HttpClient for TunnelHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _components: &RuntimeComponents) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut cache = self.connectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.entry(key).or_insert_with(|| SharedHttpConnector::new(self.build(key.0, key.1))).clone()
    }
}
