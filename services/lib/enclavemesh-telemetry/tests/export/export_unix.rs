//! OTLP over a unix socket (`unix:///path`, the enclave relay path: the same code
//! dials `vsock://3:4317` inside an enclave).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use crate::common;

use enclavemesh_telemetry::testing::OtlpReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_connected_trace_over_unix_transport() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix://{}/otlp.sock", dir.path().display()).parse().unwrap();
    let receiver = OtlpReceiver::start(&addr).await.unwrap();
    assert!(receiver.endpoint().starts_with("unix:///"));
    common::traced_health_calls(&receiver).await;
}
