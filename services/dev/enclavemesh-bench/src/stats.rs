//! Percentiles of latency samples.

use std::time::Duration;

/// Sorted samples in microseconds.
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Self {
        v.sort();
        Samples(v.into_iter().map(|d| d.as_secs_f64() * 1e6).collect())
    }
    /// Nearest-rank percentile, `p` in 0..=100.
    pub fn pct(&self, p: f64) -> f64 {
        enclavemesh_telemetry::process_stats::percentile(&self.0, p).unwrap_or(f64::NAN)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}
