//! An in-process OTLP/gRPC receiver for tests (feature `test-receiver`).
//!
//! It implements the collector's `TraceService` and `MetricsService`, listens on any
//! transport address (`tcp://127.0.0.1:0`, `unix:///tmp/x.sock`, vsock) and keeps
//! every export request, so a test can assert on whole traces: which services took
//! part, trace ids, parent/child links, attributes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use enclavemesh_transport::{Address, TransportError};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Store {
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    changed: Notify,
}

#[derive(Clone)]
struct Sink(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        lock(&self.0.traces).push(request.into_inner());
        self.0.changed.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        lock(&self.0.metrics).push(request.into_inner());
        self.0.changed.notify_waiters();
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    address: Address,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver").field("address", &self.address).finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Binds `addr` (e.g. `tcp://127.0.0.1:0`) and starts serving.
    pub async fn start(addr: &Address) -> Result<Self, TransportError> {
        let listener = enclavemesh_transport::bind(addr).await?;
        let address = listener.local_addr();
        let store = Arc::new(Store::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let sink = Sink(store.clone());
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(sink.clone()))
                .add_service(MetricsServiceServer::new(sink))
                .serve_with_incoming_shutdown(listener.into_incoming(), async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self { address, store, stop: Some(stop), task: Some(task) })
    }

    /// The bound address (TCP port resolved).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` / `TelemetryConfig::endpoint`:
    /// `http://host:port` for TCP (the standard exporter path), the transport
    /// syntax for unix and vsock (the relay path).
    pub fn endpoint(&self) -> String {
        match &self.address {
            Address::Tcp(host_port) => format!("http://{host_port}"),
            other => other.to_string(),
        }
    }

    /// Every trace export request received so far.
    pub fn trace_requests(&self) -> Vec<ExportTraceServiceRequest> {
        lock(&self.store.traces).clone()
    }

    /// Every metrics export request received so far.
    pub fn metric_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        lock(&self.store.metrics).clone()
    }

    /// All received spans, flattened, each with its resource's `service.name`.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for req in lock(&self.store.traces).iter() {
            for rs in &req.resource_spans {
                let resource = rs.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push(ReceivedSpan { resource: resource.clone(), span: span.clone() });
                    }
                }
            }
        }
        out
    }

    /// Names of all metrics received so far (with duplicates removed).
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.store.metrics)
            .iter()
            .flat_map(|r| r.resource_metrics.iter())
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter())
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Waits until `done(spans)` holds or `timeout` passes; returns the spans either
    /// way, so the caller's assertions print what did arrive.
    pub async fn wait_for_spans(&self, timeout: Duration, done: impl Fn(&[ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.store.changed.notified();
            let spans = self.spans();
            if done(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One exported span plus its resource attributes.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Attributes of the resource that exported it (`service.name`, ...).
    pub resource: Vec<KeyValue>,
    /// The span as received.
    pub span: Span,
}

impl ReceivedSpan {
    /// Span name.
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// `service.name` of the exporting resource.
    pub fn service_name(&self) -> Option<String> {
        find_str(&self.resource, "service.name")
    }

    /// Trace id as 32 hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// Span id as 16 hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Parent span id as 16 hex digits (empty for a root span).
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// Span kind.
    pub fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    /// A string attribute.
    pub fn attr_str(&self, key: &str) -> Option<String> {
        find_str(&self.span.attributes, key)
    }

    /// An integer attribute.
    pub fn attr_int(&self, key: &str) -> Option<i64> {
        find(&self.span.attributes, key).and_then(|v| match v {
            Value::IntValue(i) => Some(*i),
            _ => None,
        })
    }

    /// Every attribute key (to assert that nothing unexpected is recorded).
    pub fn attr_keys(&self) -> Vec<String> {
        self.span.attributes.iter().map(|kv| kv.key.clone()).collect()
    }
}

fn find<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    kvs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v: &AnyValue| v.value.as_ref())
}

fn find_str(kvs: &[KeyValue], key: &str) -> Option<String> {
    find(kvs, key).and_then(|v| match v {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
