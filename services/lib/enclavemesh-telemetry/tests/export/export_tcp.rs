//! OTLP over plain TCP (`http://host:port`, the standard exporter path).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use crate::common;

use enclavemesh_telemetry::testing::OtlpReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_connected_trace_over_http_endpoint() {
    let receiver = OtlpReceiver::start(&"tcp://127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert!(receiver.endpoint().starts_with("http://127.0.0.1:"));
    common::traced_health_calls(&receiver).await;
}
