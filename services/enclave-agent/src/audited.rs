//! The audit layer: every Init/Process/Reveal leaves a hash-chained record, covered
//! by heads the agent signs off the request path.
//!
//! [`Audited`] wraps the [`Agent`] as the served `AgentService`, so each handler's
//! outcome is recorded in one place whatever path it returned by (including
//! refusals, which are what an audit is for). Records hold digests, ids, key
//! versions and error kinds only — never state, notes or revealed values.
//! [`boot_trail`] writes record 0 with an NSM attestation document binding the
//! trail's signing key, so a verifier can tie the log to this enclave image.

use crate::config::Config;
use crate::enclave::EnclaveIdentity;
use crate::service::{Agent, MAX_WORKFLOW_ID_BYTES};
use enclavemesh_audit::{AuditTrail, Entry, Event, HeadLine};
use enclavemesh_proto::v1::agent_service_server::AgentService;
use enclavemesh_proto::v1::*;
use enclavemesh_sealing::{KeyRing, envelope_sha256};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Records per AuditLog page by default, and at most (each record is well under
/// 1 KiB except the bootstrap record's ~5 KiB, so a page stays far below 4 MiB).
pub const AUDIT_PAGE_DEFAULT: usize = 1000;
pub const AUDIT_PAGE_MAX: usize = 2000;

/// Starts this boot's trail: a fresh signing key and record 0 carrying an
/// attestation document whose user_data binds it, plus the key versions released.
pub fn boot_trail(cfg: &Config, identity: &EnclaveIdentity, ring: &KeyRing) -> anyhow::Result<AuditTrail> {
    let trail = AuditTrail::new(&cfg.name, cfg.audit_log.as_deref())?
        .with_max_records(cfg.audit_max_records)
        .with_max_bytes(cfg.audit_max_bytes);
    let doc = identity.nsm.attestation(
        Some(&trail.signing_key_binding()),
        None,
        Some(identity.key.public_key_der()),
    )?;
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    trail.bootstrap(
        &doc,
        format!(
            "key_id={} key_versions={} retired={}",
            ring.key_id(),
            join(&ring.versions()),
            join(&cfg.retired_key_versions)
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

/// One AuditLog page.
pub fn audit_log_page(trail: &AuditTrail, req: &AuditLogRequest) -> AuditLogResponse {
    let max = match req.max_records as usize {
        0 => AUDIT_PAGE_DEFAULT,
        n => n.min(AUDIT_PAGE_MAX),
    };
    let page = trail.fetch(req.from_seq, max);
    AuditLogResponse { records: page.records, next_seq: page.head.next_seq, head: HeadLine { head: page.head }.to_line() }
}

/// The served AgentService: the agent plus its audit trail.
pub struct Audited(pub Agent);

/// A workflow id worth recording (the handler refuses longer ones; don't let a
/// refused request bloat the trail).
fn wf(id: &str) -> Option<String> {
    (!id.is_empty()).then(|| id.chars().take(MAX_WORKFLOW_ID_BYTES).collect())
}

/// gRPC code plus, for envelope refusals, the sealing error kind
/// (e.g. `FailedPrecondition/unknown_key_version`). Never the message text.
fn error_kind(s: &Status) -> String {
    let kind = s
        .message()
        .strip_prefix("cannot open envelope (")
        .and_then(|m| m.split_once(')'))
        .map(|(k, _)| k)
        .filter(|k| k.len() <= 32 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    match kind {
        Some(k) => format!("{:?}/{k}", s.code()),
        None => format!("{:?}", s.code()),
    }
}

fn input(entry: &mut Entry, env: Option<&SealedEnvelope>) {
    if let Some(env) = env {
        entry.input_sha256 = Some(envelope_sha256(env));
        entry.input_key_version = Some(env.key_version);
    }
}

fn output(entry: &mut Entry, env: Option<&SealedEnvelope>) {
    if let Some(env) = env {
        entry.output_sha256 = Some(envelope_sha256(env));
        entry.key_version = Some(env.key_version);
    }
}

#[tonic::async_trait]
impl AgentService for Audited {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let mut e = Entry { workflow_id: wf(&request.get_ref().workflow_id), step: Some(0), ..Entry::new(Event::Init) };
        let result = self.0.init(request).await;
        match &result {
            Ok(r) => output(&mut e, r.get_ref().state.as_ref()),
            Err(s) => e.outcome = Err(error_kind(s)),
        }
        self.0.audit.record(e);
        result
    }

    async fn process(&self, request: Request<ProcessRequest>) -> Result<Response<ProcessResponse>, Status> {
        let req = request.get_ref();
        let mut e = Entry { workflow_id: wf(&req.workflow_id), step: Some(req.expected_step), ..Entry::new(Event::Process) };
        input(&mut e, req.state.as_ref());
        let result = self.0.process(request).await;
        match &result {
            Ok(r) => output(&mut e, r.get_ref().state.as_ref()),
            Err(s) => e.outcome = Err(error_kind(s)),
        }
        self.0.audit.record(e);
        result
    }

    async fn attest(&self, request: Request<AttestRequest>) -> Result<Response<AttestResponse>, Status> {
        self.0.attest(request).await
    }

    async fn reveal(&self, request: Request<RevealRequest>) -> Result<Response<RevealResponse>, Status> {
        let req = request.get_ref();
        let mut e = Entry {
            workflow_id: wf(&req.workflow_id),
            step: Some(req.expected_step),
            detail: Some(format!("field={}", req.field.chars().take(32).collect::<String>())),
            ..Entry::new(Event::Reveal)
        };
        input(&mut e, req.state.as_ref());
        e.key_version = e.input_key_version;
        let result = self.0.reveal(request).await;
        if let Err(s) = &result {
            e.outcome = Err(error_kind(s));
        }
        self.0.audit.record(e);
        result
    }

    async fn describe(&self, request: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        self.0.describe(request).await
    }

    async fn audit_log(&self, request: Request<AuditLogRequest>) -> Result<Response<AuditLogResponse>, Status> {
        self.0.audit_log(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kind_is_code_and_open_kind_only() {
        let s = Status::failed_precondition("cannot open envelope (unknown_key_version): version 1 is not held; secret");
        assert_eq!(error_kind(&s), "FailedPrecondition/unknown_key_version");
        assert_eq!(error_kind(&Status::invalid_argument("workflow_id is required")), "InvalidArgument");
        assert_eq!(error_kind(&Status::data_loss("cannot open envelope (Weird Stuff) x")), "DataLoss");
    }
}
