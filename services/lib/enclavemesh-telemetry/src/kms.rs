//! Tracing KMS calls made with aws-sdk-kms (HTTP, not gRPC).

/// A `CLIENT` span for one KMS operation (`op` e.g. `"Decrypt"`). Attributes are the
/// operation name only; record the outcome with [`crate::metrics::kms_call`].
///
/// Instrument the SDK call with it and add the trace context to the request so a
/// KMS emulator (or a proxy) can join the trace:
///
/// ```ignore
/// use tracing::Instrument;
/// let out = kms.decrypt()
///     .ciphertext_blob(blob)
///     .customize()
///     .mutate_request(|req| enclavemesh_telemetry::inject_with(|k, v| {
///         req.headers_mut().insert(k.to_owned(), v.to_owned());
///     }))
///     .send()
///     .instrument(enclavemesh_telemetry::kms_span("Decrypt"))
///     .await;
/// ```
pub fn kms_span(op: &str) -> tracing::Span {
    tracing::info_span!(
        target: "enclavemesh_telemetry::kms",
        "kms",
        otel.name = %format_args!("KMS/{op}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "aws-api",
        rpc.service = "KMS",
        rpc.method = %op,
    )
}
