//! HTTP front end speaking the AWS JSON 1.1 protocol: `POST /` with
//! `X-Amz-Target: TrentService.<Op>`, JSON bodies, errors as
//! `{"__type": "...Exception", "message": "..."}` plus `x-amzn-ErrorType`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::field::Empty;

use crate::audit::AuditRecord;
use crate::emulator::{Caller, Emulator, EmulatorConfig};
use crate::error::{EmulatorError, ErrorKind, KmsError};
use crate::op::Op;
use crate::ops::dispatch;
use crate::request::audit_parameters;
use crate::sigv4;

/// Request bodies larger than this are refused with 413 before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const JSON_11: &str = "application/x-amz-json-1.1";

/// Builds the router for an emulator (tests can mount it themselves).
pub fn router(em: Arc<Emulator>) -> Router {
    Router::new().route("/", post(handle)).route("/healthz", get(|| async { "ok" })).with_state(em)
}

/// A running emulator started with [`spawn`].
pub struct RunningEmulator {
    addr: SocketAddr,
    tls: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningEmulator {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// `https://localhost:PORT` (or `http://127.0.0.1:PORT` without TLS), for `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        if self.tls { format!("https://localhost:{}", self.addr.port()) } else { format!("http://{}", self.addr) }
    }
    /// Graceful shutdown: stops accepting, lets in-flight requests finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Binds `listen` (use port 0 in tests) and serves in a background task.
pub async fn spawn(listen: SocketAddr, cfg: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    let em = Arc::new(Emulator::new(cfg)?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| EmulatorError::Listen { addr: listen.to_string(), reason: e.to_string() })?;
    let addr =
        listener.local_addr().map_err(|e| EmulatorError::Listen { addr: listen.to_string(), reason: e.to_string() })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tls = em.cfg.tls.is_some();
    let task = tokio::spawn(serve_on(listener, em, async {
        let _ = rx.await;
    }));
    Ok(RunningEmulator { addr, tls, shutdown: Some(tx), task })
}

/// Time in-flight connections get to finish after the shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves on an already-bound listener until `shutdown` resolves: HTTPS with the
/// config's certificate, or plain HTTP without one (in-process tests only).
pub async fn serve_on(
    listener: TcpListener,
    em: Arc<Emulator>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = em.cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let app = router(em);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            // Each request learns its peer, as axum's `into_make_service_with_connect_info` does.
            let svc = tower::ServiceExt::map_request(app, move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let served = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await,
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    connections.shutdown().await;
    Ok(())
}

/// Creates the emulator state for [`serve_on`].
pub fn build(cfg: EmulatorConfig) -> Result<Arc<Emulator>, EmulatorError> {
    Ok(Arc::new(Emulator::new(cfg)?))
}

fn error_response(err: &KmsError, request_id: &str, status: Option<StatusCode>) -> Response {
    let body = json!({ "__type": err.kind.type_name(), "message": err.message }).to_string();
    let mut resp = (status.unwrap_or(err.kind.status()), body).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(JSON_11));
    if let Ok(v) = HeaderValue::from_str(&format!("{}:", err.kind.type_name())) {
        h.insert("x-amzn-errortype", v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn ok_response(body: Value, request_id: &str) -> Response {
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(JSON_11));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// A `SERVER` span for one KMS operation, parented to the caller's W3C `traceparent`
/// header (the kms-sidecar sends it). Its only attributes are the CloudTrail
/// `eventName`, the `keyId` (key ARN) and the `outcome` (`ok` or the error type) — never
/// request or response bodies. It is deliberately not entered: log lines of the
/// request (which carry error messages) stay out of exported spans.
fn operation_span(headers: &HeaderMap, event_name: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "kms.operation",
        otel.name = %format_args!("KMS/{event_name}"),
        otel.kind = "server",
        eventName = %event_name,
        keyId = Empty,
        outcome = Empty,
    );
    enclavemesh_telemetry::set_parent(&span, enclavemesh_telemetry::extract_from(headers));
    span
}

async fn handle(
    State(em): State<Arc<Emulator>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let op_name = target.strip_prefix("TrentService.").unwrap_or(target).to_string();
    let op = op_name.parse::<Op>();
    let mut audit = AuditRecord {
        event_name: if op_name.is_empty() { "Unknown".into() } else { op_name.clone() },
        source_ip: peer.ip().to_string(),
        user_agent: headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string),
        request_id: request_id.clone(),
        read_only: op.as_ref().is_ok_and(|op| op.read_only()),
        ..Default::default()
    };
    let span = operation_span(&headers, &audit.event_name);

    let result: Result<Value, (KmsError, Option<StatusCode>)> = async {
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
            (
                KmsError::validation(format!(
                    "request body exceeds the {MAX_BODY_BYTES}-byte limit; KMS requests are small (plaintext <= 4 \
                        KiB, attestation document <= 16 KiB)"
                )),
                Some(StatusCode::PAYLOAD_TOO_LARGE),
            )
        })?;
        if !target.starts_with("TrentService.") {
            return Err((
                KmsError::new(
                    ErrorKind::UnsupportedOperation,
                    format!(
                        "X-Amz-Target '{target}' is not a KMS operation; expected TrentService.<Operation> (e.g. \
                            TrentService.Decrypt)"
                    ),
                ),
                None,
            ));
        }
        let identity = sigv4::authenticate(
            &em.cfg.identities,
            &em.cfg.region,
            &method,
            &uri,
            &headers,
            &bytes,
            std::time::SystemTime::now(),
        )
        .map_err(|e| (e, None))?;
        audit.access_key_id = Some(identity.access_key_id.clone());
        audit.principal_arn = Some(identity.principal.clone());
        let caller = Caller {
            access_key_id: identity.access_key_id.clone(),
            principal_arn: identity.principal.clone(),
            account: identity.account().to_string(),
            identity_policy: identity.policy().map_err(|e| (e, None))?,
        };
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !ct.starts_with("application/x-amz-json-1.") && !ct.starts_with("application/json") {
            return Err((KmsError::validation(format!("Content-Type '{ct}' is not supported; send {JSON_11}")), None));
        }
        let req: Value = if bytes.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| (KmsError::validation(format!("request body is not valid JSON: {e}")), None))?
        };
        if !req.is_object() {
            return Err((KmsError::validation("request body must be a JSON object"), None));
        }
        audit.request_parameters = audit_parameters(&req);
        let op = op.map_err(|e| (e, None))?;
        dispatch(&em, op, &caller, &req, &mut audit).map_err(|e| (e, None))
    }
    .await;

    span.record("keyId", audit.key_arn.as_deref().unwrap_or(""));
    match &result {
        Ok(_) => span.record("outcome", "ok"),
        Err((err, _)) => span.record("outcome", err.kind.type_name()),
    };
    drop(span);
    match result {
        Ok(body) => {
            tracing::info!(op = %audit.event_name, request_id = %request_id, key = ?audit.key_arn, "ok");
            em.audit.write(&audit);
            ok_response(body, &request_id)
        }
        Err((err, status)) => {
            let error = err.kind.type_name();
            tracing::info!(op = %audit.event_name, request_id = %request_id, error, message = %err.message, "error");
            audit.error = Some((err.kind.type_name().to_string(), err.message.clone()));
            em.audit.write(&audit);
            error_response(&err, &request_id, status)
        }
    }
}
