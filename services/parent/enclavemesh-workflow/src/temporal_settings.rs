//! How the worker and the CLI reach Temporal: one set of flags (flattened into both
//! programs), checked once into [`TemporalSettings`].
//!
//! A dev server takes plain HTTP/2 (the default, `http://127.0.0.1:7233`). A production
//! Temporal takes TLS: with the system's roots or a given CA, optionally with a client
//! certificate (mTLS), and/or an API key sent as `authorization: Bearer <key>` (Temporal
//! Cloud). Everything is read and checked here, before any connection: a client key
//! without its certificate, a CA file that is not PEM, an API key on a plain connection,
//! each is an error naming the flag and the file, not a handshake failure later.
//!
//! The client key and the API key are secrets of the host (see the README's threat
//! model): they are zeroized on drop and never appear in `Debug`, logs or errors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use temporalio_client::Url;
use zeroize::Zeroizing;

use crate::types::{DEFAULT_NAMESPACE, DEFAULT_TEMPORAL_ADDRESS};

/// The flags every program that talks to Temporal takes (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct TemporalArgs {
    /// Temporal frontend gRPC address: `http://host:port` (plain, the dev server),
    /// `https://host:port` (TLS) or `host:port` (plain, or TLS when a TLS flag or an API
    /// key is given).
    #[arg(long, global = true, env = "TEMPORAL_ADDRESS", default_value = DEFAULT_TEMPORAL_ADDRESS)]
    pub temporal_address: String,
    /// Temporal namespace (Temporal Cloud: `NAME.ACCOUNT`).
    #[arg(long, global = true, env = "TEMPORAL_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Connect with TLS, checking the server against the system's root certificates
    /// (Temporal Cloud). Implied by an `https://` address and by every flag below.
    #[arg(long, global = true, env = "TEMPORAL_TLS")]
    pub temporal_tls: bool,
    /// Check the server's certificate against this CA (PEM) instead of the system's roots:
    /// a self-hosted Temporal, or a TLS proxy in front of one.
    #[arg(long, global = true, env = "TEMPORAL_TLS_CA", value_name = "FILE")]
    pub temporal_ca: Option<PathBuf>,
    /// The name the server's certificate must carry (and the SNI sent), when it is not the
    /// address's host: e.g. connecting by IP to a server whose certificate names a host.
    #[arg(long, global = true, env = "TEMPORAL_TLS_SERVER_NAME", value_name = "NAME")]
    pub temporal_server_name: Option<String>,
    /// mTLS: this client's certificate chain (PEM), with --temporal-client-key. Temporal
    /// Cloud namespaces with certificate auth, or a server with `requireClientAuth`.
    #[arg(long, global = true, env = "TEMPORAL_TLS_CLIENT_CERT", value_name = "FILE")]
    pub temporal_client_cert: Option<PathBuf>,
    /// mTLS: the private key (PEM: PKCS#8, PKCS#1 or SEC1) of --temporal-client-cert.
    /// Whoever holds it can act as this worker/client on Temporal.
    #[arg(long, global = true, env = "TEMPORAL_TLS_CLIENT_KEY", value_name = "FILE")]
    pub temporal_client_key: Option<PathBuf>,
    /// API key (Temporal Cloud), sent as `authorization: Bearer KEY` on every call; implies
    /// TLS. Prefer the environment variable to the flag (a flag shows in `ps`). Never logged.
    #[arg(long, global = true, env = "TEMPORAL_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub temporal_api_key: Option<ApiKey>,
}

impl TemporalArgs {
    /// Plain settings for `address` (tests, benchmarks): no TLS, no key.
    pub fn plain(address: &str, namespace: &str) -> TemporalArgs {
        TemporalArgs {
            temporal_address: address.to_string(),
            namespace: namespace.to_string(),
            temporal_tls: false,
            temporal_ca: None,
            temporal_server_name: None,
            temporal_client_cert: None,
            temporal_client_key: None,
            temporal_api_key: None,
        }
    }

    /// Checks the flags together and reads the files they name.
    pub fn resolve(&self) -> Result<TemporalSettings, SettingsError> {
        let address = self.temporal_address.trim().to_string();
        let client = match (&self.temporal_client_cert, &self.temporal_client_key) {
            (Some(cert), Some(key)) => Some(ClientIdentity::read(cert, key)?),
            (None, None) => None,
            (Some(cert), None) => return Err(SettingsError::ClientCertWithoutKey { cert: cert.clone() }),
            (None, Some(key)) => return Err(SettingsError::ClientKeyWithoutCert { key: key.clone() }),
        };
        let ca = self.temporal_ca.as_deref().map(read_ca).transpose()?;
        if let Some(key) = &self.temporal_api_key {
            key.check()?;
        }
        let scheme = Scheme::of(&address);
        let tls_flags = self.temporal_tls || ca.is_some() || self.temporal_server_name.is_some() || client.is_some();
        if scheme == Scheme::Http && tls_flags {
            return Err(SettingsError::TlsOnHttp { address });
        }
        if scheme == Scheme::Http && self.temporal_api_key.is_some() {
            return Err(SettingsError::ApiKeyOnHttp { address });
        }
        let tls = tls_flags || scheme == Scheme::Https || self.temporal_api_key.is_some();
        let url = url_for(&address, tls)?;
        let server_name = match &self.temporal_server_name {
            Some(n) if n.trim().is_empty() => return Err(SettingsError::EmptyServerName),
            Some(n) => Some(n.trim().to_string()),
            None => None,
        };
        Ok(TemporalSettings {
            address,
            url,
            namespace: self.namespace.clone(),
            tls: tls.then_some(TlsSettings { ca, server_name, client }),
            api_key: self.temporal_api_key.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
    None,
}

impl Scheme {
    fn of(address: &str) -> Scheme {
        let lower = address.to_ascii_lowercase();
        if lower.starts_with("http://") {
            Scheme::Http
        } else if lower.starts_with("https://") {
            Scheme::Https
        } else {
            Scheme::None
        }
    }
}

/// Accepts `http://host:port`, `https://host:port` or a bare `host:port` (then `https`
/// when `tls`, else `http`).
fn url_for(address: &str, tls: bool) -> Result<Url, SettingsError> {
    let with_scheme = if address.contains("://") {
        address.to_string()
    } else if tls {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| SettingsError::Address { address: address.to_string(), reason: e.to_string() })?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        _ => Err(SettingsError::Address {
            address: address.to_string(),
            reason: "expected http://HOST:PORT, https://HOST:PORT or HOST:PORT".into(),
        }),
    }
}

fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, SettingsError> {
    std::fs::read(path).map_err(|source| SettingsError::Read { flag, path: path.to_path_buf(), source })
}

/// The CA bundle, checked to hold at least one PEM certificate.
fn read_ca(path: &Path) -> Result<CaFile, SettingsError> {
    let pem = read_file("--temporal-ca", path)?;
    check_certs("--temporal-ca", path, &pem)?;
    Ok(CaFile { path: path.to_path_buf(), pem })
}

fn check_certs(flag: &'static str, path: &Path, pem: &[u8]) -> Result<(), SettingsError> {
    let mut n = 0usize;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| SettingsError::NotPem {
            flag,
            path: path.to_path_buf(),
            what: "certificate",
            reason: e.to_string(),
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(SettingsError::NotPem {
            flag,
            path: path.to_path_buf(),
            what: "certificate",
            reason: "no `-----BEGIN CERTIFICATE-----` block found".into(),
        });
    }
    Ok(())
}

/// Why the Temporal flags do not make a usable connection setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid --temporal-address '{address}': {reason}")]
    Address { address: String, reason: String },
    #[error(
        "--temporal-client-cert {} is given without --temporal-client-key: mTLS needs both, the certificate and its \
         private key",
        cert.display()
    )]
    ClientCertWithoutKey { cert: PathBuf },
    #[error(
        "--temporal-client-key {} is given without --temporal-client-cert: mTLS needs both, the certificate and its \
         private key",
        key.display()
    )]
    ClientKeyWithoutCert { key: PathBuf },
    #[error("cannot read {flag} {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {} is not a PEM {what} file ({reason})", path.display())]
    NotPem { flag: &'static str, path: PathBuf, what: &'static str, reason: String },
    #[error(
        "--temporal-address '{address}' says http:// (plain) but a TLS flag (--temporal-tls, --temporal-ca, \
         --temporal-server-name, --temporal-client-cert) is given: use https://HOST:PORT or HOST:PORT"
    )]
    TlsOnHttp { address: String },
    #[error(
        "--temporal-api-key needs TLS (the key would travel in clear), but --temporal-address '{address}' says \
         http://: use https://HOST:PORT or HOST:PORT"
    )]
    ApiKeyOnHttp { address: String },
    #[error("--temporal-server-name is empty")]
    EmptyServerName,
    #[error(transparent)]
    ApiKey(#[from] ApiKeyError),
}

/// A Temporal API key: zeroized on drop, never shown by `Debug` or `Display`.
#[derive(Clone)]
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why an API key was not accepted (the key itself is never echoed).
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("--temporal-api-key (TEMPORAL_API_KEY) is empty")]
    Empty,
    #[error(
        "--temporal-api-key (TEMPORAL_API_KEY) holds a character that cannot be sent in an HTTP header (a control \
         character or non-ASCII): check the key was copied whole"
    )]
    NotHeaderSafe,
}

impl ApiKey {
    fn check(&self) -> Result<(), ApiKeyError> {
        if self.0.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        // The client drops a header it cannot encode, silently: refuse such a key here.
        if !self.0.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(ApiKeyError::NotHeaderSafe);
        }
        Ok(())
    }
}

/// Never fails: a parse error would make clap echo the value. [`TemporalArgs::resolve`]
/// checks the key instead.
impl FromStr for ApiKey {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ApiKey(Zeroizing::new(s.trim().to_string())))
    }
}

#[derive(Clone)]
struct CaFile {
    path: PathBuf,
    pem: Vec<u8>,
}

/// The mTLS client certificate chain and key, read and checked.
#[derive(Clone)]
pub(crate) struct ClientIdentity {
    pub(crate) cert_path: PathBuf,
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Zeroizing<Vec<u8>>,
}

impl ClientIdentity {
    fn read(cert: &Path, key: &Path) -> Result<ClientIdentity, SettingsError> {
        let cert_pem = read_file("--temporal-client-cert", cert)?;
        check_certs("--temporal-client-cert", cert, &cert_pem)?;
        let key_pem = Zeroizing::new(read_file("--temporal-client-key", key)?);
        // The parse error may quote a line of the key: only its kind is reported.
        if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
            return Err(SettingsError::NotPem {
                flag: "--temporal-client-key",
                path: key.to_path_buf(),
                what: "private key",
                reason: "expected a `-----BEGIN PRIVATE KEY-----` (PKCS#8), `RSA PRIVATE KEY` or `EC PRIVATE KEY` \
                         block"
                    .into(),
            });
        }
        Ok(ClientIdentity { cert_path: cert.to_path_buf(), cert_pem, key_pem })
    }
}

/// TLS settings, when the connection uses TLS.
#[derive(Clone)]
pub struct TlsSettings {
    ca: Option<CaFile>,
    server_name: Option<String>,
    client: Option<ClientIdentity>,
}

impl TlsSettings {
    pub(crate) fn ca_pem(&self) -> Option<&[u8]> {
        self.ca.as_ref().map(|c| c.pem.as_slice())
    }
    pub(crate) fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }
    pub(crate) fn client(&self) -> Option<&ClientIdentity> {
        self.client.as_ref()
    }
    /// Whether a client certificate is sent (mTLS).
    pub fn mutual(&self) -> bool {
        self.client.is_some()
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field(
                "ca",
                &self.ca.as_ref().map(|c| c.path.display().to_string()).unwrap_or_else(|| "system roots".into()),
            )
            .field("server_name", &self.server_name)
            .field("client_cert", &self.client.as_ref().map(|c| c.cert_path.display().to_string()))
            .finish_non_exhaustive()
    }
}

/// A checked Temporal connection setting: where, which namespace, TLS, API key.
#[derive(Clone)]
pub struct TemporalSettings {
    /// The address as given (for messages).
    pub address: String,
    pub(crate) url: Url,
    pub namespace: String,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) api_key: Option<ApiKey>,
}

impl TemporalSettings {
    /// A plain (no TLS, no key) setting for `address`.
    pub fn plain(address: &str, namespace: &str) -> Result<TemporalSettings, SettingsError> {
        TemporalArgs::plain(address, namespace).resolve()
    }

    pub fn tls(&self) -> Option<&TlsSettings> {
        self.tls.as_ref()
    }

    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// How the connection is secured, for a log line: `plain`, `tls`, `mtls`, with `+api-key`.
    pub fn security(&self) -> String {
        let base = match &self.tls {
            None => "plain",
            Some(t) if t.mutual() => "mtls",
            Some(_) => "tls",
        };
        if self.api_key.is_some() { format!("{base}+api-key") } else { base.to_string() }
    }
}

impl fmt::Debug for TemporalSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporalSettings")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("tls", &self.tls)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(addr: &str) -> TemporalArgs {
        TemporalArgs::plain(addr, "default")
    }

    #[test]
    fn plain_is_the_default() {
        let s = args(DEFAULT_TEMPORAL_ADDRESS).resolve().unwrap();
        assert!(s.tls.is_none());
        assert_eq!(s.url.scheme(), "http");
        let s = args("127.0.0.1:7233").resolve().unwrap();
        assert_eq!(s.url.as_str(), "http://127.0.0.1:7233/");
    }

    #[test]
    fn https_implies_tls_and_flags_make_a_bare_address_https() {
        let s = args("https://temporal.example:7233").resolve().unwrap();
        assert!(s.tls.is_some());
        let mut a = args("ns.acct.tmprl.cloud:7233");
        a.temporal_tls = true;
        let s = a.resolve().unwrap();
        assert_eq!(s.url.as_str(), "https://ns.acct.tmprl.cloud:7233/");
        let mut a = args("ns.acct.tmprl.cloud:7233");
        a.temporal_api_key = Some("k".parse().unwrap());
        let s = a.resolve().unwrap();
        assert!(s.tls.is_some());
        assert_eq!(s.security(), "tls+api-key");
    }

    #[test]
    fn tls_or_key_on_http_is_refused() {
        let mut a = args("http://127.0.0.1:7233");
        a.temporal_tls = true;
        assert!(matches!(a.resolve(), Err(SettingsError::TlsOnHttp { .. })));
        let mut a = args("http://127.0.0.1:7233");
        a.temporal_api_key = Some("k".parse().unwrap());
        let e = a.resolve().unwrap_err().to_string();
        assert!(e.contains("--temporal-api-key") && !e.contains(" k "), "{e}");
    }

    #[test]
    fn half_an_identity_names_both_flags() {
        let mut a = args("https://h:1");
        a.temporal_client_key = Some("/k.pem".into());
        let e = a.resolve().unwrap_err().to_string();
        assert!(e.contains("--temporal-client-key") && e.contains("--temporal-client-cert"), "{e}");
        let mut a = args("https://h:1");
        a.temporal_client_cert = Some("/c.pem".into());
        let e = a.resolve().unwrap_err().to_string();
        assert!(e.contains("--temporal-client-key") && e.contains("--temporal-client-cert"), "{e}");
    }

    #[test]
    fn a_ca_that_is_not_pem_names_the_file() {
        let dir = std::env::temp_dir().join(format!("em-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.der");
        std::fs::write(&ca, [0x30, 0x82, 0x01, 0x00, 0x01]).unwrap();
        let mut a = args("https://h:1");
        a.temporal_ca = Some(ca.clone());
        let e = a.resolve().unwrap_err().to_string();
        assert!(e.contains("--temporal-ca") && e.contains(&ca.display().to_string()) && e.contains("PEM"), "{e}");
        let missing = dir.join("missing.pem");
        a.temporal_ca = Some(missing.clone());
        let e = a.resolve().unwrap_err().to_string();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_api_key_never_shows() {
        let mut a = args("https://h:1");
        a.temporal_api_key = Some("sekrit-key-123".parse().unwrap());
        let s = a.resolve().unwrap();
        assert!(!format!("{a:?}{s:?}").contains("sekrit"));
        a.temporal_api_key = Some("".parse().unwrap());
        assert!(matches!(a.resolve(), Err(SettingsError::ApiKey(ApiKeyError::Empty))));
        a.temporal_api_key = Some("bad\u{7}key".parse().unwrap());
        let e = a.resolve().unwrap_err().to_string();
        assert!(e.contains("--temporal-api-key") && !e.contains("bad"), "{e}");
    }
}
