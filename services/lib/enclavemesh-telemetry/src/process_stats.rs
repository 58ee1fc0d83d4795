//! Footprint and latency figures about processes: what `enclavemesh load` reports and
//! what the benchmarks measure, computed one way for both.

use std::time::Duration;

/// A field of `/proc/PID/status` in KiB (`VmRSS`: resident now, `VmHWM`: peak resident),
/// if the process exists and the field is there (Linux).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time `pid` has used so far (all its threads, user + system), from
/// `/proc/PID/task/*/schedstat` (nanoseconds, unlike the 10 ms ticks of `/proc/PID/stat`).
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_nanos(ns)
}

/// Nearest-rank percentile (`p` in 0..=100) of ascending `sorted` values; `None` when empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v[..1], 99.0), Some(1));
        assert_eq!(percentile::<u64>(&[], 50.0), None);
    }

    #[test]
    fn own_footprint_is_readable() {
        let me = std::process::id();
        assert!(status_kib(me, "VmRSS").is_some_and(|k| k > 0));
        assert!(status_kib(me, "VmHWM").is_some());
        assert_eq!(status_kib(me, "VmNope"), None);
        // "VmRSS" must not match a longer field name that starts with it.
        assert_eq!(status_kib(me, "Vm"), None);
        assert_eq!(status_kib(u32::MAX, "VmRSS"), None);
    }
}
