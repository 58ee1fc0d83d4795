//! The audit layer: every Init/Process/Reveal leaves a hash-chained record, covered
//! by heads the agent signs off the request path.
//!
//! [`Audited`] is the served `AgentService`: it runs each [`Agent`] handler and records
//! how it ended, in one place whatever path the handler returned by (including
//! refusals, which are what an audit is for), and it answers `AuditLog` itself. Records
//! hold digests, ids, key versions and refusal labels only — never state, notes or
//! revealed values. [`boot_trail`] writes record 0 with an NSM attestation document
//! binding the trail's signing key, so a verifier can tie the log to this enclave image.

use std::sync::Arc;
use std::time::Duration;

use enclavemesh_audit::{AuditError, AuditTrail, Entry, Event, HeadLine};
use enclavemesh_proto::Refusal;
use enclavemesh_proto::limits::MAX_WORKFLOW_ID_BYTES;
use enclavemesh_proto::v1::agent_service_server::AgentService;
use enclavemesh_proto::v1::*;
use enclavemesh_sealing::{KeyRing, envelope_sha256};
use tonic::{Request, Response, Status};

use crate::identity::EnclaveIdentity;
use crate::role::Role;
use crate::service::{Agent, field_name};
use crate::settings::Settings;

/// Records per AuditLog page by default, and at most (each record is well under
/// 1 KiB except the bootstrap record's ~5 KiB, so a page stays far below 4 MiB).
const AUDIT_PAGE_DEFAULT: usize = 1000;
const AUDIT_PAGE_MAX: usize = 2000;

/// Why the trail could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootTrailError {
    #[error("cannot start the audit trail: {0}")]
    Trail(#[from] AuditError),
    #[error("cannot attest the audit trail's signing key: {0}")]
    Attest(#[from] enclavemesh_attestation::NsmError),
}

/// Starts this boot's trail: a fresh signing key and record 0 carrying an
/// attestation document whose user_data binds it, plus the key versions released.
pub fn boot_trail(
    settings: &Settings,
    identity: &EnclaveIdentity,
    ring: &KeyRing,
) -> Result<AuditTrail, BootTrailError> {
    let trail = AuditTrail::new(&settings.name, settings.audit.log.as_deref())?
        .with_max_records(settings.audit.max_records)
        .with_max_bytes(settings.audit.max_bytes);
    let doc =
        identity.nsm.attestation(Some(&trail.signing_key_binding()), None, Some(identity.key.public_key_der()))?;
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    trail.bootstrap(
        &doc,
        format!(
            "key_id={} key_versions={} retired={}",
            ring.key_id(),
            join(&ring.versions()),
            join(&settings.retired_key_versions)
        ),
    )?;
    Ok(trail)
}

/// Signs the local `--audit-log`'s new records at most once per `every`. A P-384
/// signature costs about a millisecond of CPU: too much for every call, nothing
/// once a second. Holds only a weak reference, so it never keeps a trail alive.
pub fn spawn_checkpoints(trail: &Arc<AuditTrail>, every: Duration) -> tokio::task::JoinHandle<()> {
    let trail = Arc::downgrade(trail);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(t) = trail.upgrade() else { break };
            // Off the runtime's worker threads: it is CPU work.
            if tokio::task::spawn_blocking(move || t.checkpoint()).await.is_err() {
                break;
            }
        }
    })
}

/// The served AgentService: the agent plus its audit trail.
pub struct Audited<R: Role> {
    agent: Agent<R>,
    trail: Arc<AuditTrail>,
}

impl<R: Role> Audited<R> {
    pub fn new(agent: Agent<R>, trail: Arc<AuditTrail>) -> Self {
        Audited { agent, trail }
    }

    /// Records how a call ended: the output envelope (its digest and key version), or
    /// the refusal's label.
    fn record<T>(&self, mut entry: Entry, result: &Result<T, Status>, output: impl FnOnce(&T) -> Option<Output>) {
        match result {
            Ok(r) => {
                if let Some(out) = output(r) {
                    entry.output_sha256 = Some(out.sha256);
                    entry.key_version = Some(out.key_version);
                }
            }
            Err(s) => entry.outcome = Err(Refusal::of(s).unwrap_or(Refusal::AgentError).label().to_string()),
        }
        self.trail.record(entry);
    }
}

/// What the trail records of a call's output envelope.
struct Output {
    sha256: [u8; 32],
    key_version: u32,
}

/// The output of an Init or Process: the summary's digest when it carries one (the
/// handler hashed the envelope it sealed already: hashing it again here would encode
/// and hash the whole envelope a second time), else the envelope's.
fn output(state: Option<&SealedEnvelope>, summary: Option<&StepSummary>) -> Option<Output> {
    let env = state?;
    let sha256 = summary
        .and_then(|s| <[u8; 32]>::try_from(s.envelope_sha256.as_slice()).ok())
        .unwrap_or_else(|| envelope_sha256(env));
    Some(Output { sha256, key_version: env.key_version })
}

/// A workflow id worth recording (the handler refuses longer ones; don't let a
/// refused request bloat the trail).
fn wf(id: &str) -> Option<String> {
    if id.is_empty() {
        return None;
    }
    // At most that many bytes, so at most that many chars: the whole id, one copy.
    if id.len() <= MAX_WORKFLOW_ID_BYTES {
        return Some(id.to_owned());
    }
    Some(id.chars().take(MAX_WORKFLOW_ID_BYTES).collect())
}

fn input(entry: &mut Entry, env: Option<&SealedEnvelope>) {
    if let Some(env) = env {
        entry.input_sha256 = Some(envelope_sha256(env));
        entry.input_key_version = Some(env.key_version);
    }
}

#[tonic::async_trait]
impl<R: Role> AgentService for Audited<R> {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let e = Entry { workflow_id: wf(&request.get_ref().workflow_id), step: Some(0), ..Entry::new(Event::Init) };
        let result = self.agent.init(request.into_inner()).await;
        self.record(e, &result, |r| output(r.state.as_ref(), r.summary.as_ref()));
        result.map(Response::new)
    }

    async fn process(&self, request: Request<ProcessRequest>) -> Result<Response<ProcessResponse>, Status> {
        let req = request.into_inner();
        let mut e =
            Entry { workflow_id: wf(&req.workflow_id), step: Some(req.expected_step), ..Entry::new(Event::Process) };
        input(&mut e, req.state.as_ref());
        let result = self.agent.process(req).await;
        self.record(e, &result, |r| output(r.state.as_ref(), r.summary.as_ref()));
        result.map(Response::new)
    }

    async fn attest(&self, request: Request<AttestRequest>) -> Result<Response<AttestResponse>, Status> {
        self.agent.attest(request.into_inner()).map(Response::new)
    }

    async fn reveal(&self, request: Request<RevealRequest>) -> Result<Response<RevealResponse>, Status> {
        let req = request.into_inner();
        let field = field_name(&req);
        let mut e = Entry {
            workflow_id: wf(&req.workflow_id),
            step: Some(req.expected_step),
            detail: Some(format!("field={}", field.as_deref().unwrap_or_default())),
            ..Entry::new(Event::Reveal)
        };
        input(&mut e, req.state.as_ref());
        e.key_version = e.input_key_version;
        let result = self.agent.reveal(req, field);
        self.record(e, &result, |_| None);
        result.map(Response::new)
    }

    async fn describe(&self, _request: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(self.agent.describe()))
    }

    async fn audit_log(&self, request: Request<AuditLogRequest>) -> Result<Response<AuditLogResponse>, Status> {
        let req = request.get_ref();
        let max = match req.max_records as usize {
            0 => AUDIT_PAGE_DEFAULT,
            n => n.min(AUDIT_PAGE_MAX),
        };
        let page = self.trail.fetch(req.from_seq, max);
        Ok(Response::new(AuditLogResponse {
            records: page.records,
            next_seq: page.head.next_seq,
            head: HeadLine { head: page.head }.to_line(),
        }))
    }
}
