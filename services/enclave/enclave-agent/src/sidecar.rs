//! The parent's kms-sidecar, as the agent sees it: a client and one retry policy.
//!
//! The sidecar runs on the untrusted parent. Nothing it answers is believed without a
//! check: its agent configuration is validated ([`crate::settings`]), and its KMS answers
//! are wrapped to this enclave's own key ([`crate::key_release`]).

use std::future::Future;
use std::time::{Duration, Instant};

use enclavemesh_proto::v1::kms_forwarder_client::KmsForwarderClient;
use enclavemesh_transport::{Address, TransportError};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The sidecar client: every call gets a client span and carries `traceparent` (so
/// sidecar and KMS spans join the caller's trace).
pub type SidecarClient = KmsForwarderClient<enclavemesh_telemetry::GrpcTrace<Channel>>;

/// A lazy channel to the sidecar (nothing is dialled until the first call).
pub fn client(addr: &Address) -> Result<SidecarClient, TransportError> {
    Ok(KmsForwarderClient::new(enclavemesh_telemetry::traced_channel(addr)?))
}

/// Whether a sidecar/KMS status is worth retrying.
pub fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
    )
}

/// How a retried call ended: an answer, a final refusal for the caller to explain, or
/// the sidecar stayed unavailable until the deadline.
#[derive(Debug)]
pub enum Retried<T> {
    Answer(T),
    Refused(Status),
    GaveUp { secs: u64, last: Status },
}

/// Calls the sidecar until it answers, refuses for good, or `deadline` passes.
/// Transient statuses (sidecar restarting, KMS unreachable) back off 100 ms → 5 s; the
/// last attempt is made at the deadline, so the agent waits the whole
/// `--bootstrap-timeout-secs`. `Err` is the caller's own local failure (e.g. the NSM),
/// which is never retried here.
pub async fn retry_transient<T, E, Fut>(deadline: Instant, mut call: impl FnMut() -> Fut) -> Result<Retried<T>, E>
where
    Fut: Future<Output = Result<Result<T, Status>, E>>,
{
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match call().await? {
            Ok(answer) => return Ok(Retried::Answer(answer)),
            Err(status) if is_transient(status.code()) && Instant::now() < deadline => {
                let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tracing::warn!(
                    code = ?status.code(),
                    message = status.message(),
                    retry_in_ms = wait.as_millis() as u64,
                    "sidecar/KMS not ready; retrying"
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(status) if is_transient(status.code()) => {
                return Ok(Retried::GaveUp { secs: started.elapsed().as_secs(), last: status });
            }
            Err(status) => return Ok(Retried::Refused(status)),
        }
    }
}
