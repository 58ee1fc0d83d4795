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
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}
