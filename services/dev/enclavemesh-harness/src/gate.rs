//! A parent-side proxy in front of an agent that can hold one step's `Process` call.
//!
//! Fault tests must hit a loop while it runs. Waiting for history to show a few steps
//! works when each step is a Temporal activity (~50 ms apart), but a local-activity loop
//! of 40 steps ends in well under a second and records its steps only when its workflow
//! task completes. The gate makes "mid-loop" exact in both modes: the test says which step
//! to hold, waits until the worker's call for it has arrived, injects its fault (kill the
//! agent, the worker, Temporal, a bridge), then releases the call.
//!
//! The gate sits where a hostile or broken parent sits (between the worker and the
//! agent), forwards every RPC unchanged, and answers with whatever the agent answered,
//! or UNAVAILABLE when the agent cannot be reached.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use enclavemesh_proto::v1::*;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Hold the first Process call for this `expected_step`.
    Armed(u64),
    /// A call for this step is being held.
    Holding(u64),
    Released,
}

/// Control of a running gate; the proxy itself runs on the caller's tokio runtime.
#[derive(Clone)]
pub struct Gate {
    phase: Arc<watch::Sender<Phase>>,
    /// Init and Process calls forwarded to the agent.
    forwarded: Arc<Mutex<u64>>,
}

struct Proxy {
    upstream: AgentServiceClient<Channel>,
    gate: Gate,
}

impl Gate {
    /// Serves the proxy on the unix socket `path`, forwarding to `upstream`; returns the
    /// control handle and the address to give the worker.
    pub fn start(path: &Path, upstream: &str) -> (Gate, String) {
        let addr = upstream.parse().unwrap_or_else(|e| panic!("gate upstream {upstream}: {e}"));
        let channel = enclavemesh_transport::channel(&addr).unwrap_or_else(|e| panic!("gate upstream {upstream}: {e}"));
        let (tx, _rx) = watch::channel(Phase::Open);
        let gate = Gate { phase: Arc::new(tx), forwarded: Arc::new(Mutex::new(0)) };
        let proxy = Proxy { upstream: AgentServiceClient::new(channel), gate: gate.clone() };
        let listener = UnixListener::bind(path).unwrap_or_else(|e| panic!("gate socket {}: {e}", path.display()));
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(proxy))
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await;
            if let Err(e) = served {
                eprintln!("gate stopped: {e}");
            }
        });
        (gate, format!("unix://{}", path.display()))
    }

    /// Holds the first `Process` call whose `expected_step` is `step` (the call that makes
    /// step `step + 1`) until [`Self::release`].
    pub fn hold(&self, step: u64) {
        self.phase.send_replace(Phase::Armed(step));
    }

    /// Waits (blocking this thread) until the held call has arrived.
    pub fn wait_held(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            match *self.phase.borrow() {
                Phase::Holding(_) => return,
                Phase::Armed(step) if Instant::now() >= deadline => {
                    panic!("no Process call for step {step} reached the gate within {timeout:?}")
                }
                Phase::Armed(_) => {}
                other => panic!("wait_held without hold (gate is {other:?})"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the held call (and every later one) through.
    pub fn release(&self) {
        self.phase.send_replace(Phase::Released);
    }

    /// Calls forwarded to the agent so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.lock().map(|n| *n).unwrap_or(0)
    }

    /// Holds the call if it is the armed step; returns once it may go on.
    async fn pass(&self, expected_step: u64) {
        let mut held = false;
        self.phase.send_if_modified(|p| match *p {
            Phase::Armed(step) if step == expected_step => {
                *p = Phase::Holding(step);
                held = true;
                true
            }
            _ => false,
        });
        if held {
            let mut rx = self.phase.subscribe();
            let _ = rx.wait_for(|p| *p == Phase::Released).await;
        }
    }

    fn count(&self) {
        if let Ok(mut n) = self.forwarded.lock() {
            *n += 1;
        }
    }
}

#[tonic::async_trait]
impl AgentService for Proxy {
    async fn init(&self, r: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        self.gate.count();
        self.upstream.clone().init(r.into_inner()).await
    }
    async fn process(&self, r: Request<ProcessRequest>) -> Result<Response<ProcessResponse>, Status> {
        let req = r.into_inner();
        self.gate.pass(req.expected_step).await;
        self.gate.count();
        self.upstream.clone().process(req).await
    }
    async fn attest(&self, r: Request<AttestRequest>) -> Result<Response<AttestResponse>, Status> {
        self.upstream.clone().attest(r.into_inner()).await
    }
    async fn reveal(&self, r: Request<RevealRequest>) -> Result<Response<RevealResponse>, Status> {
        self.upstream.clone().reveal(r.into_inner()).await
    }
    async fn describe(&self, r: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        self.upstream.clone().describe(r.into_inner()).await
    }
    async fn audit_log(&self, r: Request<AuditLogRequest>) -> Result<Response<AuditLogResponse>, Status> {
        self.upstream.clone().audit_log(r.into_inner()).await
    }
}
