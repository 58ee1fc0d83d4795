//! Without an endpoint: no exporter, nothing sent, nothing logged above INFO — but
//! spans still carry ids so trace context is passed on: a server span joins its
//! caller's trace (`traceparent`), and a call without one starts a trace of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enclavemesh_telemetry::testing::OtlpReceiver;
use enclavemesh_telemetry::{
    GrpcTraceLayer, TelemetryConfig, build, current_context, inject_into, metrics, span_context,
};
use enclavemesh_transport::Address;
use opentelemetry::trace::{TraceContextExt, TraceId};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_endpoint_exports_nothing_and_logs_no_error() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let receiver = rt.block_on(OtlpReceiver::start(&"tcp://127.0.0.1:0".parse().unwrap())).unwrap();
    // A receiver is reachable through the standard env var: `build` must not fall
    // back to it (nor must the SDK) when the config says "no endpoint".
    // SAFETY: set before any other thread of this test reads the environment.
    #[allow(unsafe_code)] // std::env::set_var is unsafe in edition 2024; this test needs the variable set
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
    };

    let logs = Captured::default();
    let writer = logs.clone();
    let mut config = TelemetryConfig::new("quiet-svc");
    config.log_filter = Some("trace,h2=off,hyper=off,hyper_util=off,tower=off".into());
    config.log_writer = Some(BoxMakeWriter::new(move || writer.clone()));

    rt.block_on(async {
        let guard = build(config).expect("build without endpoint");
        assert!(!guard.is_exporting());
        // A second initialisation is a quiet no-op.
        let again = enclavemesh_telemetry::init("other");
        assert!(!again.is_exporting());
        drop(again);

        let dir = tempfile::tempdir().unwrap();
        let addr: Address = format!("unix://{}/health.sock", dir.path().display()).parse().unwrap();
        let listener = enclavemesh_transport::bind(&addr).await.unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Inside the server span (the trace layer enters it around the inner call): the
        // trace id the server's work, and any call it makes downstream, carries.
        let seen = Arc::new(Mutex::new(Vec::<TraceId>::new()));
        let spy = {
            let seen = seen.clone();
            tower::util::MapRequestLayer::new(move |req: http::Request<tonic::body::Body>| {
                let id = current_context().span().span_context().trace_id();
                seen.lock().unwrap().push(id);
                req
            })
        };
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(GrpcTraceLayer::server())
                .layer(spy)
                .add_service(health)
                .serve_with_incoming_shutdown(listener.into_incoming(), async {
                    let _ = stopped.await;
                }),
        );
        let channel = enclavemesh_transport::channel(&addr).unwrap();
        let mut client =
            HealthClient::new(tower::ServiceBuilder::new().layer(GrpcTraceLayer::client()).service(channel));
        let root = tracing::info_span!("quiet.root");
        client
            .check(HealthCheckRequest { service: String::new() })
            .instrument(root.clone())
            .await
            .expect("health check");
        // Context still propagates with no exporter.
        let mut headers = http::HeaderMap::new();
        root.in_scope(|| inject_into(&mut headers));
        assert!(headers.contains_key("traceparent"), "traceparent injected without an exporter");
        // ... and the server's span joined the caller's trace.
        let root_trace = span_context(&root).span().span_context().trace_id();
        assert_ne!(root_trace, TraceId::INVALID);
        assert_eq!(seen.lock().unwrap().as_slice(), &[root_trace], "server span in the client's trace");

        // A caller's own traceparent (another process): the server span takes its trace id.
        let mut plain = HealthClient::new(enclavemesh_transport::channel(&addr).unwrap());
        let mut req = tonic::Request::new(HealthCheckRequest { service: String::new() });
        req.metadata_mut()
            .insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        plain.check(req).await.expect("health check with a traceparent");
        // Without one: a new trace of its own, not the (unrelated) current span's.
        plain
            .check(HealthCheckRequest { service: String::new() })
            .instrument(tracing::info_span!("unrelated"))
            .await
            .expect("health check without a traceparent");
        let ids = seen.lock().unwrap().clone();
        assert_eq!(ids[1], TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_ne!(ids[2], TraceId::INVALID);
        assert!(!ids[..2].contains(&ids[2]), "a call without traceparent starts its own trace: {ids:?}");
        metrics::kms_call("Decrypt", "ok");
        drop(root);

        guard.flush().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(receiver.trace_requests().is_empty(), "nothing exported");
        assert!(receiver.metric_requests().is_empty(), "no metrics exported");
        let _ = stop.send(());
        let _ = server.await;
        guard.shutdown().await;
    });
    drop(receiver);
    drop(rt);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("telemetry initialised"), "logs were captured: {text}");
    // No warnings/errors, and no sign of an exporter (the SDK logs its exporter and
    // processor activity with names like "BatchSpanProcessor.ExportError").
    for bad in ["ERROR", "WARN", "Export", "Processor", "TonicChannel"] {
        assert!(!text.contains(bad), "unexpected '{bad}' in logs:\n{text}");
    }
}
