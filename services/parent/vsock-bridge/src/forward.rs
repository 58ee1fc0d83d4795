//! One client connection: dial the target, then copy both ways until both sides
//! close, an I/O error, or the idle timeout.
//!
//! Each connection is one `bridge connection` span (byte counts, duration, outcome). The
//! bridge copies opaque bytes, so it cannot see — or join — the gRPC calls inside; its
//! spans are roots of their own traces.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use enclavemesh_transport::handshake::HandshakeDeadline;
use enclavemesh_transport::{Conn, dial_timeout};
use tracing::Instrument;

use crate::BridgeConfig;
use crate::activity::{Activity, Side, Tracked};
use crate::stats::Counters;

pub(crate) async fn forward(id: u64, client: Conn, cfg: Arc<BridgeConfig>, counters: Arc<Counters>) {
    let span = tracing::info_span!(
        "bridge.connection",
        otel.name = "bridge connection",
        otel.kind = "internal",
        conn = id as i64,
        target = %cfg.target,
        bytes_to_target = tracing::field::Empty,
        bytes_to_client = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    forward_in(id, client, cfg, counters, &span).instrument(span.clone()).await;
}

async fn forward_in(id: u64, client: Conn, cfg: Arc<BridgeConfig>, counters: Arc<Counters>, span: &tracing::Span) {
    let started = Instant::now();
    let peer = client.peer_addr().map_or_else(|| "-".to_owned(), ToString::to_string);
    let target = match dial_timeout(&cfg.target, cfg.connect_timeout).await {
        Ok(t) => t,
        Err(e) => {
            Counters::inc(&counters.target_unavailable);
            // Dropping `client` closes it: the caller sees EOF at once instead of hanging.
            tracing::warn!(conn = id, %peer, error = %e, "target unavailable; closing client connection");
            span.record("outcome", "target unavailable");
            return;
        }
    };
    tracing::debug!(conn = id, %peer, target = %cfg.target, "connection forwarded");

    let activity = Activity::new();
    // A client that stalls before the HTTP/2 preface gets a read error at the deadline,
    // which ends the copy and frees its slot.
    let client = HandshakeDeadline::new(client, cfg.handshake_timeout);
    let mut a = Tracked::new(client, &activity, Side::Client);
    let mut b = Tracked::new(target, &activity, Side::Target);
    let outcome = tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, cfg.buffer_size, cfg.buffer_size) => match r {
            Ok(_) => "closed".to_owned(),
            Err(e) => format!("i/o error: {e}"),
        },
        () = activity.idle_exceeds(cfg.idle_timeout) => "idle timeout".to_owned(),
    };
    drop((a, b));

    let up = activity.from_client.load(Relaxed);
    let down = activity.from_target.load(Relaxed);
    // i64: OpenTelemetry has no unsigned ints (u64 would be exported as a string).
    span.record("bytes_to_target", i64::try_from(up).unwrap_or(i64::MAX));
    span.record("bytes_to_client", i64::try_from(down).unwrap_or(i64::MAX));
    span.record("outcome", outcome.as_str());
    counters.bytes_to_target.fetch_add(up, Relaxed);
    counters.bytes_to_client.fetch_add(down, Relaxed);
    if outcome == "idle timeout" {
        Counters::inc(&counters.idle_timeouts);
    } else {
        Counters::inc(&counters.finished);
    }
    tracing::info!(
        conn = id,
        %peer,
        bytes_to_target = up,
        bytes_to_client = down,
        duration_ms = started.elapsed().as_millis() as u64,
        outcome,
        "connection closed"
    );
}
