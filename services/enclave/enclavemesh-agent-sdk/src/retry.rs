//! One retry policy for everything the agent asks of the outside while it boots (the
//! sidecar's agent configuration, KMS through the tunnel): transient trouble backs off
//! 100 ms → 5 s until a deadline; a verdict is final at once.

use std::future::Future;
use std::time::{Duration, Instant};

/// An error that may go away if the same call is made again.
pub trait Transient: std::fmt::Display {
    fn transient(&self) -> bool;
}

impl Transient for tonic::Status {
    fn transient(&self) -> bool {
        use tonic::Code;
        matches!(
            self.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Unknown
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::Cancelled
        )
    }
}

/// How a retried call ended.
#[derive(Debug)]
pub enum Retried<T, E> {
    Answer(T),
    /// A final answer that is no answer: for the caller to explain.
    Refused(E),
    /// Still transient at the deadline.
    GaveUp {
        secs: u64,
        last: E,
    },
}

/// Calls until it answers, refuses for good, or `deadline` passes. The last attempt is
/// made at the deadline, so the whole `--bootstrap-timeout-secs` is waited.
pub async fn retry_transient<T, E, Fut>(deadline: Instant, mut call: impl FnMut() -> Fut) -> Retried<T, E>
where
    E: Transient,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match call().await {
            Ok(answer) => return Retried::Answer(answer),
            Err(e) if e.transient() && Instant::now() < deadline => {
                let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "sidecar/KMS not ready; retrying");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) if e.transient() => return Retried::GaveUp { secs: started.elapsed().as_secs(), last: e },
            Err(e) => return Retried::Refused(e),
        }
    }
}
