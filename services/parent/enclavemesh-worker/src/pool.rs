//! A role's enclaves as one client: tower's power-of-two-choices balancer over the
//! members whose health checks pass.
//!
//! Why a pool: a role may run in several enclaves (on this host or, through a bridge,
//! on others), and every allowed enclave of a role can open the role's state, so any
//! of them may take any call. The worker should spread calls over them and stop
//! sending to one that died, without a workflow noticing.
//!
//! How: each member is a traced channel behind a [`HealthGated`] gate and tower's
//! pending-requests load. [`tower::balance::p2c::Balance`] sends each call to the less
//! loaded of two random *ready* members; a gate keeps its member out of that set
//! (`poll_ready` stays pending, so the balancer never drops it) while it is down. A
//! member goes down when a call to it fails below gRPC (connection refused or reset),
//! and comes back when `grpc.health.v1` says it serves again; a checker task per member
//! polls that. A [`tower::buffer::Buffer`] makes the balancer shareable by every
//! activity. A pool of one address is the plain channel: with nowhere else to send a
//! call, failing fast (UNAVAILABLE, retried by Temporal) beats waiting for a member to
//! come back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use enclavemesh_telemetry::{GrpcTrace, TracedBody};
use enclavemesh_transport::Address;
use futures::task::AtomicWaker;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service};

type Boxed = BoxCloneSyncService<http::Request<Body>, http::Response<TracedBody<Body>>, BoxError>;

/// The gRPC service a pool's client sends through: one channel or the balancer.
#[derive(Clone)]
pub struct PoolService(Boxed);

/// A call that failed below gRPC (tonic turns it into a status, UNAVAILABLE for a
/// connection that failed). A named type rather than a boxed error: the activities'
/// futures must be provably `Send`, which rustc cannot show through a boxed error here.
#[derive(Debug)]
pub struct PoolCallError(BoxError);

impl std::fmt::Display for PoolCallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for PoolCallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl Service<http::Request<Body>> for PoolService {
    type Response = http::Response<TracedBody<Body>>;
    type Error = PoolCallError;
    type Future =
        futures::future::MapErr<<Boxed as Service<http::Request<Body>>>::Future, fn(BoxError) -> PoolCallError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PoolCallError>> {
        self.0.poll_ready(cx).map_err(PoolCallError)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        use futures::TryFutureExt as _;
        self.0.call(req).map_err(PoolCallError as fn(BoxError) -> PoolCallError)
    }
}

/// Calls queued for the balancer before callers wait (one per activity in flight).
const BUFFER: usize = 1024;
/// How often a member's health is checked, and how long one check may take.
const CHECK_EVERY: Duration = Duration::from_millis(500);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{role} has no address: give at least one (ADDR[,ADDR...])")]
    Empty { role: String },
    #[error("cannot create a channel to {role} at {addr}: {source}")]
    Channel { role: String, addr: Address, source: enclavemesh_transport::TransportError },
}

/// One member's health, shared by its gate and its checker.
#[derive(Debug)]
struct Health {
    role: String,
    addr: Address,
    up: AtomicBool,
    waker: AtomicWaker,
}

impl Health {
    fn new(role: &str, addr: &Address) -> Arc<Self> {
        // Up until shown otherwise: enclaves may still be booting when the worker starts,
        // and the first failed call takes the member out.
        Arc::new(Health {
            role: role.to_owned(),
            addr: addr.clone(),
            up: AtomicBool::new(true),
            waker: AtomicWaker::new(),
        })
    }

    fn set(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            if up {
                tracing::info!(role = %self.role, member = %self.addr, "agent pool member serves again");
            } else {
                tracing::warn!(role = %self.role, member = %self.addr, "agent pool member unreachable; calls go to the others");
            }
            if up {
                self.waker.wake();
            }
        }
    }

    /// Whether calls may go to it now.
    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

/// A member that is not ready while it is down.
#[derive(Clone)]
struct HealthGated<S> {
    inner: S,
    health: Arc<Health>,
}

impl<S, Req> Service<Req> for HealthGated<S>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if !self.health.is_up() {
            // Register first, then look again: a checker that marked it up in between has
            // either been seen or will wake this task.
            self.health.waker.register(cx.waker());
            if !self.health.is_up() {
                return Poll::Pending;
            }
        }
        // Never an error: the balancer would drop the member for good.
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(_)) => {
                self.health.set(false);
                self.health.waker.register(cx.waker());
                Poll::Pending
            }
            other => other.map_err(Into::into),
        }
    }

    fn call(&mut self, req: Req) -> <Self as Service<Req>>::Future {
        let health = self.health.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            // An error here is below gRPC (a gRPC refusal is a response): the member is
            // unreachable until its health check says otherwise.
            fut.await.map_err(|e| {
                health.set(false);
                e.into()
            })
        })
    }
}

impl PoolService {
    /// The service of `role`'s enclaves at `addrs`; channels are lazy (nothing is dialed
    /// yet). Must run inside a tokio runtime when there is more than one address
    /// (checkers and the buffer's worker are spawned).
    pub fn new(role: &str, addrs: &[Address]) -> Result<Self, PoolError> {
        let failed = |addr: &Address| {
            let (role, addr) = (role.to_owned(), addr.clone());
            move |source| PoolError::Channel { role, addr, source }
        };
        match addrs {
            [] => Err(PoolError::Empty { role: role.to_owned() }),
            [one] => Ok(PoolService(BoxCloneSyncService::new(
                enclavemesh_telemetry::traced_channel(one).map_err(failed(one))?,
            ))),
            many => {
                let mut gated = Vec::with_capacity(many.len());
                for addr in many {
                    let traced: GrpcTrace<Channel> =
                        enclavemesh_telemetry::traced_channel(addr).map_err(failed(addr))?;
                    // Health checks on a channel of their own, untraced: a span every
                    // 500 ms per member would be noise.
                    let plain = enclavemesh_transport::channel(addr).map_err(failed(addr))?;
                    let health = Health::new(role, addr);
                    spawn_checker(plain, health.clone());
                    gated.push(PendingRequests::new(
                        HealthGated { inner: traced, health },
                        CompleteOnResponse::default(),
                    ));
                }
                let balance = Balance::new(ServiceList::new(gated));
                Ok(PoolService(BoxCloneSyncService::new(Buffer::new(balance, BUFFER))))
            }
        }
    }
}

/// Polls `grpc.health.v1` on one member: up when it answers SERVING for AgentService
/// (or has no health service but answers at all), down when it cannot be reached or
/// says it does not serve.
fn spawn_checker(channel: Channel, health: Arc<Health>) {
    let service = enclavemesh_proto::v1::agent_service_server::SERVICE_NAME;
    tokio::spawn(async move {
        let mut client = HealthClient::new(channel);
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Nobody holds the pool any more: stop.
            if Arc::strong_count(&health) == 1 {
                break;
            }
            let req = tonic_health::pb::HealthCheckRequest { service: service.to_owned() };
            let up = match tokio::time::timeout(CHECK_TIMEOUT, client.check(req)).await {
                Ok(Ok(r)) => r.into_inner().status() == ServingStatus::Serving,
                Ok(Err(s)) => s.code() == tonic::Code::Unimplemented,
                Err(_) => false,
            };
            health.set(up);
        }
    });
}
