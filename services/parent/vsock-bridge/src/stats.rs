//! Counters the bridge keeps (and logs) — counts and byte totals, never payload.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Totals over one [`crate::run`], returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Client connections accepted.
    pub accepted: u64,
    /// Connections whose copy ended normally (both sides closed) or with an I/O error.
    pub finished: u64,
    /// Connections closed because the target could not be dialed in time.
    pub target_unavailable: u64,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: u64,
    /// Connections still running when the shutdown grace period ran out.
    pub aborted_at_shutdown: u64,
    /// Bytes copied client -> target.
    pub bytes_to_target: u64,
    /// Bytes copied target -> client.
    pub bytes_to_client: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub finished: AtomicU64,
    pub target_unavailable: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub bytes_to_target: AtomicU64,
    pub bytes_to_client: AtomicU64,
}

impl Counters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, aborted_at_shutdown: u64) -> BridgeStats {
        BridgeStats {
            accepted: self.accepted.load(Relaxed),
            finished: self.finished.load(Relaxed),
            target_unavailable: self.target_unavailable.load(Relaxed),
            idle_timeouts: self.idle_timeouts.load(Relaxed),
            aborted_at_shutdown,
            bytes_to_target: self.bytes_to_target.load(Relaxed),
            bytes_to_client: self.bytes_to_client.load(Relaxed),
        }
    }
}
