//! The traced-call scenario shared by the export tests (one test binary per
//! scenario: a process has exactly one global subscriber).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use enclavemesh_telemetry::testing::{OtlpReceiver, ReceivedSpan};
use enclavemesh_telemetry::{GrpcTraceLayer, TelemetryConfig, build, metrics};
use enclavemesh_transport::Address;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument;

pub const SERVICE: &str = "telemetry-test-svc";

/// Starts a tonic health server behind the server layer, calls it twice (OK and
/// NOT_FOUND) through the client layer inside a root span, flushes, and checks that
/// `receiver` got one connected trace with the right resource, kinds and codes.
pub async fn traced_health_calls(receiver: &OtlpReceiver) {
    let mut config = TelemetryConfig::new(SERVICE).with_endpoint(receiver.endpoint());
    config.log_filter = Some("warn".into());
    let guard = build(config).expect("build telemetry");
    assert!(guard.is_exporting());

    let dir = tempfile::tempdir().unwrap();
    let addr: Address = format!("unix://{}/health.sock", dir.path().display()).parse().unwrap();
    let listener = enclavemesh_transport::bind(&addr).await.unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(GrpcTraceLayer::server())
            .add_service(health)
            .serve_with_incoming_shutdown(listener.into_incoming(), async {
                let _ = stopped.await;
            }),
    );

    let channel = enclavemesh_transport::channel(&addr).unwrap();
    let traced = tower::ServiceBuilder::new().layer(GrpcTraceLayer::client()).service(channel);
    let mut client = HealthClient::new(traced);

    let root = tracing::info_span!("test.root");
    let ok = client
        .check(HealthCheckRequest { service: String::new() })
        .instrument(root.clone())
        .await
        .expect("health check");
    assert_eq!(ok.into_inner().status, 1, "SERVING");
    let missing = client
        .check(HealthCheckRequest { service: "no.such.Service".into() })
        .instrument(root.clone())
        .await
        .expect_err("unknown service");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    metrics::kms_call("Decrypt", "ok");
    metrics::open_failure("replay");
    drop(root);

    guard.flush().await;
    let spans = receiver.wait_for_spans(Duration::from_secs(10), |s| s.len() >= 5).await;
    let dump = || {
        spans
            .iter()
            .map(|s| format!("{} {:?} {}<-{}", s.name(), s.kind(), s.span_id(), s.parent_span_id()))
            .collect::<Vec<_>>()
    };
    assert_eq!(spans.len(), 5, "spans: {:?}", dump());

    let root = one(&spans, |s| s.name() == "test.root");
    assert_eq!(root.parent_span_id(), "", "root has no parent");
    for s in &spans {
        assert_eq!(s.service_name().as_deref(), Some(SERVICE), "service.name of {}", s.name());
        assert_eq!(s.trace_id(), root.trace_id(), "{} is in another trace", s.name());
        assert_ne!(s.trace_id(), "0".repeat(32));
    }
    for (code, client_error) in [(0, false), (5, true)] {
        let client = one(&spans, |s| s.kind() == SpanKind::Client && s.attr_int("rpc.grpc.status_code") == Some(code));
        let server = one(&spans, |s| s.kind() == SpanKind::Server && s.attr_int("rpc.grpc.status_code") == Some(code));
        assert_eq!(client.parent_span_id(), root.span_id(), "client span under the root");
        assert_eq!(
            server.parent_span_id(),
            client.span_id(),
            "server span under the client span (traceparent crossed the wire)"
        );
        for s in [client, server] {
            assert_eq!(s.name(), "grpc.health.v1.Health/Check");
            assert_eq!(s.attr_str("rpc.system").as_deref(), Some("grpc"));
            assert_eq!(s.attr_str("rpc.service").as_deref(), Some("grpc.health.v1.Health"));
            assert_eq!(s.attr_str("rpc.method").as_deref(), Some("Check"));
            let keys: BTreeSet<String> = s
                .attr_keys()
                .into_iter()
                .filter(|k| !k.starts_with("code.") && !k.starts_with("thread.") && k != "target" && k != "level")
                .collect();
            let expected: BTreeSet<String> = ["rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code"]
                .into_iter()
                .map(String::from)
                .collect();
            assert_eq!(keys, expected, "attributes of {}: only names and codes", s.name());
        }
        let status = client.span.status.clone().unwrap_or_default().code;
        assert_eq!(status == 2, client_error, "client span status for code {code}");
        // NOT_FOUND is the caller's problem, not a server error.
        assert_ne!(server.span.status.clone().unwrap_or_default().code, 2);
    }

    // Metrics go through the same pipeline.
    guard.flush().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let wanted =
        [metrics::RPC_SERVER_DURATION, metrics::RPC_CLIENT_DURATION, metrics::KMS_CALLS, metrics::OPEN_FAILURES];
    loop {
        let names = receiver.metric_names();
        if wanted.iter().all(|w| names.iter().any(|n| n == w)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "metrics received: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resource_ok = receiver.metric_requests().iter().flat_map(|r| r.resource_metrics.iter()).all(|rm| {
        rm.resource.as_ref().is_some_and(|r| {
            r.attributes.iter().any(|kv| {
                kv.key == "service.name"
                    && matches!(&kv.value.as_ref().and_then(|v| v.value.clone()),
                        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) if s == SERVICE)
            })
        })
    });
    assert!(resource_ok, "metrics carry service.name");

    let _ = stop.send(());
    let _ = server.await;
    guard.shutdown().await;
}

fn one(spans: &[ReceivedSpan], pred: impl Fn(&ReceivedSpan) -> bool) -> &ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| pred(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one matching span among {:?}",
        spans.iter().map(|s| s.name()).collect::<Vec<_>>()
    );
    found[0]
}
