//! Connecting to the Temporal frontend, shared by the worker and the CLI.
//!
//! Plain, TLS, mTLS and API key, as [`TemporalSettings`] says. A failure is classified
//! so that its message names the address, what failed (the server's certificate, this
//! client's certificate, the API key, plain vs TLS) and which flag to check; a failure
//! that retrying cannot fix (a refused certificate or key) is returned at once instead of
//! being retried for the whole connect window.

use std::error::Error as _;
use std::time::Duration;

use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, errors::ClientConnectError,
};

use crate::temporal_settings::TemporalSettings;

/// Why a Temporal client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Settings(#[from] crate::temporal_settings::SettingsError),
    #[error(
        "TLS to Temporal at {addr} failed: the server's certificate was not accepted ({detail}); check --temporal-ca \
         (the CA that issued the server's certificate; without it the system's roots are used) and \
         --temporal-server-name (the name the certificate carries)"
    )]
    ServerCertificate { addr: String, detail: String },
    #[error(
        "mTLS to Temporal at {addr} failed: the server (or a TLS proxy in front of it) refused this client's \
         certificate ({detail}); check --temporal-client-cert and --temporal-client-key (a certificate the server's \
         client CA issued, and its key)"
    )]
    ClientCertificateRefused { addr: String, detail: String },
    #[error(
        "TLS to Temporal at {addr} failed: the server asks for a client certificate ({detail}); give \
         --temporal-client-cert and --temporal-client-key"
    )]
    ClientCertificateRequired { addr: String, detail: String },
    #[error(
        "TLS to Temporal at {addr} failed: the server did not answer TLS ({detail}); is it a plain (dev) server? \
         Then use http://HOST:PORT and no TLS flags"
    )]
    NotTls { addr: String, detail: String },
    #[error(
        "Temporal at {addr} refused the call as unauthenticated ({detail}); check --temporal-api-key \
         (TEMPORAL_API_KEY), or the client certificate for mTLS, and --namespace"
    )]
    Unauthenticated { addr: String, detail: String },
    #[error(
        "TLS to Temporal at {addr} failed ({detail}); check --temporal-ca, --temporal-server-name, \
         --temporal-client-cert and --temporal-client-key"
    )]
    Tls { addr: String, detail: String },
    #[error("cannot connect to Temporal at {addr} ({security}): {detail}")]
    Connect { addr: String, security: String, detail: String },
    #[error("cannot create Temporal client: {0}")]
    Client(String),
}

impl ConnectError {
    /// Whether retrying cannot help: the settings, a certificate or a key are wrong.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, ConnectError::Connect { .. } | ConnectError::Client(_))
    }
}

/// Accepts `http://host:port`, `https://host:port` or a bare `host:port`.
pub fn temporal_url(addr: &str) -> Result<temporalio_client::Url, ConnectError> {
    Ok(TemporalSettings::plain(addr, "default")?.url)
}

fn connection_options(settings: &TemporalSettings, identity: &str) -> ConnectionOptions {
    let tls = settings.tls.as_ref().map(|t| {
        TlsOptions::builder()
            .maybe_server_root_ca_cert(t.ca_pem().map(<[u8]>::to_vec))
            .maybe_domain(t.server_name().map(str::to_string))
            .maybe_client_tls_options(t.client().map(|c| {
                ClientTlsOptions::builder()
                    .client_cert(c.cert_pem.clone())
                    .client_private_key(c.key_pem.to_vec())
                    .build()
            }))
            .build()
    });
    ConnectionOptions::new(settings.url.clone())
        .identity(identity.to_string())
        .connect_timeout(Duration::from_secs(10))
        .maybe_tls_options(tls)
        .maybe_api_key(settings.api_key.as_ref().map(|k| k.expose().to_string()))
        .build()
}

/// Connects once (bounded by a 10 s connect timeout) and binds the namespace.
pub async fn connect_to(settings: &TemporalSettings, identity: &str) -> Result<Client, ConnectError> {
    let opts = connection_options(settings, identity);
    let connection = Connection::connect(opts).await.map_err(|e| classify(settings, &e))?;
    Client::new(connection, ClientOptions::new(settings.namespace.clone()).build())
        .map_err(|e| ConnectError::Client(e.to_string()))
}

/// A plain connection to `addr` (tests, benchmarks, the dev server).
pub async fn connect(addr: &str, namespace: &str, identity: &str) -> Result<Client, ConnectError> {
    connect_to(&TemporalSettings::plain(addr, namespace)?, identity).await
}

/// Connects, retrying for up to `retry_for` (backoff 200 ms → 5 s): a dev server that
/// was just started accepts TCP before its frontend is healthy ("Frontend is not
/// healthy yet"), and a worker may start before the server. The last error is returned;
/// a permanent one ([`ConnectError::is_permanent`]) at once.
pub async fn connect_to_with_retry(
    settings: &TemporalSettings,
    identity: &str,
    retry_for: Duration,
) -> Result<Client, ConnectError> {
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut delay = Duration::from_millis(200);
    loop {
        match connect_to(settings, identity).await {
            Ok(c) => return Ok(c),
            Err(e) if !e.is_permanent() && tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in = ?delay, "Temporal not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`connect_to_with_retry`] with a plain connection to `addr`.
pub async fn connect_with_retry(
    addr: &str,
    namespace: &str,
    identity: &str,
    retry_for: Duration,
) -> Result<Client, ConnectError> {
    connect_to_with_retry(&TemporalSettings::plain(addr, namespace)?, identity, retry_for).await
}

/// Everything the error says: its `Debug` (tonic's transport error shows its cause only
/// there) and each source's `Display`.
fn error_text(e: &ClientConnectError) -> String {
    let mut text = format!("{e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(" | ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The most telling line of the cause, short enough for a message.
fn detail_of(e: &ClientConnectError) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if let ClientConnectError::SystemInfoCallError(status) = e {
        last = format!("{:?}: {}", status.code(), status.message());
    }
    last.chars().take(300).collect()
}

/// Maps the rustls/hyper/tonic error to what the operator should check.
fn classify(settings: &TemporalSettings, e: &ClientConnectError) -> ConnectError {
    let addr = settings.address.clone();
    let text = error_text(e).to_ascii_lowercase();
    let detail = detail_of(e);
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let tls = settings.tls.as_ref();
    let mutual = tls.is_some_and(|t| t.mutual());

    if let ClientConnectError::SystemInfoCallError(status) = e {
        match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                return ConnectError::Unauthenticated { addr, detail };
            }
            // A TLS proxy that checks client certificates after the handshake (nginx
            // `ssl_verify_client`) answers the gRPC call with an HTTP 400 page.
            _ if tls.is_some() && is_http_400(status.message()) => {
                let detail = "it answered HTTP 400 Bad Request instead of gRPC".to_string();
                return if mutual {
                    ConnectError::ClientCertificateRefused { addr, detail }
                } else {
                    ConnectError::ClientCertificateRequired { addr, detail }
                };
            }
            _ => {}
        }
    }
    if tls.is_some() {
        if has(&["certificaterequired", "certificate required", "no required ssl certificate"]) {
            return if mutual {
                ConnectError::ClientCertificateRefused { addr, detail }
            } else {
                ConnectError::ClientCertificateRequired { addr, detail }
            };
        }
        // Alerts the server sends about our certificate.
        if has(&[
            "alert: badcertificate",
            "alert: unknownca",
            "alert: certificateunknown",
            "alert: certificaterevoked",
            "alert: certificateexpired",
            "alert: unsupportedcertificate",
            "alert: accessdenied",
            "alert: decrypterror",
        ]) {
            return ConnectError::ClientCertificateRefused { addr, detail };
        }
        // Our check of the server's certificate.
        if has(&[
            "invalid peer certificate",
            "invalidcertificate",
            "unknownissuer",
            "notvalidforname",
            "bad server name",
        ]) {
            return ConnectError::ServerCertificate { addr, detail };
        }
        if has(&["corrupt message", "invalidcontenttype", "wrong version number", "invalid content type"]) {
            return ConnectError::NotTls { addr, detail };
        }
        if has(&["tls", "handshake", "alert", "certificate", "rustls", "private key", "pem"]) {
            return ConnectError::Tls { addr, detail };
        }
    }
    ConnectError::Connect { addr, security: settings.security(), detail }
}

/// tonic's words for a non-gRPC HTTP 400 answer (with or without a body).
fn is_http_400(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("status: 400 bad request") || m.contains("http status code 400")
}

/// `pid@host`, the identity Temporal shows for this process.
pub fn default_identity(program: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{program}:{}@{host}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temporal_settings::TemporalArgs;

    fn settings(mtls: bool) -> TemporalSettings {
        let dir = std::env::temp_dir().join(format!("em-connect-{}-{mtls}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut a = TemporalArgs::plain("https://temporal.example:7233", "default");
        if mtls {
            // Syntactically PEM is all `resolve` checks; no handshake happens here.
            let cert = dir.join("c.pem");
            std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").unwrap();
            let key = dir.join("k.pem");
            std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n").unwrap();
            a.temporal_client_cert = Some(cert);
            a.temporal_client_key = Some(key);
        }
        a.resolve().unwrap()
    }

    fn status(code: tonic::Code, msg: &str) -> ClientConnectError {
        ClientConnectError::SystemInfoCallError(tonic::Status::new(code, msg))
    }

    #[test]
    fn a_proxy_refusing_the_client_certificate_is_named_and_not_retried() {
        let msg = "protocol error: received message with invalid compression flag: 60 (valid flags are 0 and 1) while \
                   receiving response with status: 400 Bad Request";
        let e = classify(&settings(true), &status(tonic::Code::Internal, msg));
        assert!(matches!(e, ConnectError::ClientCertificateRefused { .. }), "{e}");
        assert!(e.is_permanent());
        let text = e.to_string();
        assert!(text.contains("https://temporal.example:7233") && text.contains("--temporal-client-cert"), "{text}");
        let e = classify(&settings(false), &status(tonic::Code::Internal, msg));
        assert!(matches!(e, ConnectError::ClientCertificateRequired { .. }), "{e}");
    }

    #[test]
    fn unauthenticated_names_the_api_key_and_other_failures_are_retried() {
        let e = classify(&settings(false), &status(tonic::Code::Unauthenticated, "Request unauthorized."));
        assert!(e.to_string().contains("--temporal-api-key") && e.is_permanent(), "{e}");
        let e = classify(&settings(false), &status(tonic::Code::Unavailable, "Frontend is not healthy yet"));
        assert!(matches!(e, ConnectError::Connect { .. }) && !e.is_permanent(), "{e}");
        assert!(e.to_string().contains("(tls)"), "{e}");
    }
}
