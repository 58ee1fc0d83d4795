//! The accept loop: connection limit, spawning forwarders, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use enclavemesh_transport::Listener;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::forward::forward;
use crate::stats::Counters;
use crate::{BridgeConfig, BridgeError, BridgeStats};

/// At most one "limit reached" warning this often, so a saturated bridge does not flood logs.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Accepts on `listener` and forwards each connection to `cfg.target` until
/// `shutdown` resolves; then stops accepting (the listening socket is closed at once),
/// lets in-flight connections finish for up to `cfg.shutdown_grace`, aborts the rest
/// and returns the totals.
///
/// At `cfg.max_connections` concurrent connections the bridge stops accepting, so
/// further clients wait in the kernel backlog rather than being accepted and dropped.
pub async fn run(
    cfg: BridgeConfig,
    mut listener: Listener,
    shutdown: impl Future<Output = ()>,
) -> Result<BridgeStats, BridgeError> {
    cfg.validate()?;
    let cfg = Arc::new(cfg);
    let counters = Arc::new(Counters::default());
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    let mut shutdown = std::pin::pin!(shutdown);
    let local = listener.local_addr();
    let mut last_limit_warning: Option<Instant> = None;

    loop {
        while let Some(done) = tasks.try_join_next() {
            log_join(done);
        }
        if slots.available_permits() == 0 && last_limit_warning.is_none_or(|t| t.elapsed() >= LIMIT_WARNING_EVERY) {
            last_limit_warning = Some(Instant::now());
            tracing::warn!(
                max_connections = cfg.max_connections,
                "connection limit reached; new clients wait until a slot frees"
            );
        }
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // semaphore closed: never happens, but stop rather than spin
            },
        };
        let conn = tokio::select! {
            biased;
            () = &mut shutdown => break,
            c = listener.accept() => c,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                // Per-connection failure (client reset before accept, fd exhaustion: the
                // listener itself backs off); keep serving.
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        next_id += 1;
        Counters::inc(&counters.accepted);
        let active = cfg.max_connections - slots.available_permits();
        tracing::debug!(conn = next_id, active, "connection accepted");
        let (cfg, counters) = (cfg.clone(), counters.clone());
        tasks.spawn(async move {
            forward(next_id, conn, cfg, counters).await;
            drop(permit);
        });
    }

    drop(listener);
    let in_flight = tasks.len();
    tracing::info!(
        listen = %local,
        in_flight,
        grace_secs = cfg.shutdown_grace.as_secs_f64(),
        "stopped accepting; draining connections"
    );
    let drained = tokio::time::timeout(cfg.shutdown_grace, async {
        while let Some(done) = tasks.join_next().await {
            log_join(done);
        }
    })
    .await;
    let aborted = if drained.is_err() {
        let n = tasks.len() as u64;
        tracing::warn!(aborted = n, "shutdown grace period over; closing remaining connections");
        tasks.shutdown().await;
        n
    } else {
        0
    };
    let stats = counters.snapshot(aborted);
    tracing::info!(
        accepted = stats.accepted,
        target_unavailable = stats.target_unavailable,
        idle_timeouts = stats.idle_timeouts,
        bytes_to_target = counters.bytes_to_target.load(Relaxed),
        bytes_to_client = counters.bytes_to_client.load(Relaxed),
        "bridge stopped"
    );
    Ok(stats)
}

fn log_join(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r
        && e.is_panic()
    {
        tracing::error!(error = %e, "connection task panicked");
    }
}
