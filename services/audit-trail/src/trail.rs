//! The writer: what the agent holds. Records live in enclave memory (the enclave has
//! no disk); the parent gets them through the `AuditLog` RPC. `--audit-log PATH` also
//! appends each line to a local file (dev convenience: an enclave cannot write the
//! parent's disk in production).

use crate::error::AuditError;
use crate::record::{Entry, Event, GENESIS_HASH, Head, Outcome, Record};
use crate::signer::{Signer, signing_key_binding};
use base64::Engine;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Domain label of a record signature; the signed message is label || hash bytes.
pub(crate) const RECORD_SIG_DOMAIN: &[u8] = b"enclavemesh/v1/audit/record-sig";

pub(crate) fn record_sig_msg(hash_hex: &str) -> Vec<u8> {
    [RECORD_SIG_DOMAIN, hash_hex.as_bytes()].concat()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

struct State {
    lines: Vec<String>,
    prev_hash: String,
    file: Option<std::fs::File>,
}

/// Records of one boot, chained and signed with this boot's key.
pub struct AuditTrail {
    agent: String,
    signer: Signer,
    state: Mutex<State>,
}

/// A page of the log plus the signed head at the time of the fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub records: Vec<String>,
    pub head: Head,
}

impl AuditTrail {
    /// A fresh trail with a new signing key; `local_file` (if any) is appended to.
    pub fn new(agent: &str, local_file: Option<&Path>) -> Result<Self, AuditError> {
        let file = match local_file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| AuditError::Io(format!("cannot open --audit-log {}: {e}", p.display())))?,
            ),
            None => None,
        };
        Ok(AuditTrail {
            agent: agent.to_string(),
            signer: Signer::generate(),
            state: Mutex::new(State { lines: Vec::new(), prev_hash: GENESIS_HASH.to_string(), file }),
        })
    }

    /// What the bootstrap attestation document's `user_data` must be.
    pub fn signing_key_binding(&self) -> [u8; 32] {
        signing_key_binding(self.signer.public_sec1())
    }

    /// Hex SEC1 public key of this boot's signing key.
    pub fn signing_key_hex(&self) -> String {
        hex::encode(self.signer.public_sec1())
    }

    /// Record 0: the attestation document binding the signing key, and a
    /// non-secret description of the key release (e.g. `key_versions=1,2`).
    pub fn bootstrap(&self, attestation_document: &[u8], detail: String) -> Result<Record, AuditError> {
        let mut st = self.lock();
        if !st.lines.is_empty() {
            return Err(AuditError::Io("bootstrap must be the first record of a trail".into()));
        }
        let mut r = self.draft(&st, Entry { detail: Some(detail), ..Entry::new(Event::Bootstrap) });
        r.attestation_document = Some(base64::engine::general_purpose::STANDARD.encode(attestation_document));
        r.signing_key = Some(self.signing_key_hex());
        Ok(self.commit(&mut st, r))
    }

    /// Appends one call's record.
    pub fn record(&self, entry: Entry) -> Record {
        let mut st = self.lock();
        let r = self.draft(&st, entry);
        self.commit(&mut st, r)
    }

    /// Records from `from_seq`, at most `max`, and the signed head.
    pub fn fetch(&self, from_seq: u64, max: usize) -> Fetched {
        let st = self.lock();
        let start = usize::try_from(from_seq).unwrap_or(usize::MAX).min(st.lines.len());
        let records = st.lines[start..].iter().take(max).cloned().collect();
        Fetched { records, head: self.head_locked(&st) }
    }

    /// The signed head now.
    pub fn head(&self) -> Head {
        self.head_locked(&self.lock())
    }

    fn head_locked(&self, st: &State) -> Head {
        let mut h = Head {
            agent: self.agent.clone(),
            next_seq: st.lines.len() as u64,
            hash: st.prev_hash.clone(),
            time_ms: now_ms(),
            sig: String::new(),
        };
        h.sig = self.signer.sign(&h.canonical_bytes());
        h
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written record (the
        // push is the last step), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn draft(&self, st: &State, e: Entry) -> Record {
        let (outcome, error) = match e.outcome {
            Ok(()) => (Outcome::Ok, None),
            Err(kind) => (Outcome::Error, Some(kind)),
        };
        Record {
            seq: st.lines.len() as u64,
            time_ms: now_ms(),
            agent: self.agent.clone(),
            event: e.event,
            workflow_id: e.workflow_id,
            step: e.step,
            key_version: e.key_version.map(u64::from),
            input_key_version: e.input_key_version.map(u64::from),
            input_sha256: e.input_sha256.map(hex::encode),
            output_sha256: e.output_sha256.map(hex::encode),
            outcome,
            error,
            detail: e.detail,
            attestation_document: None,
            signing_key: None,
            prev_hash: st.prev_hash.clone(),
            hash: String::new(),
            sig: String::new(),
        }
    }

    fn commit(&self, st: &mut State, mut r: Record) -> Record {
        r.hash = r.compute_hash();
        r.sig = self.signer.sign(&record_sig_msg(&r.hash));
        let line = r.to_line();
        if let Some(f) = st.file.as_mut()
            && let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush())
        {
            tracing::warn!(error = %e, "cannot append to --audit-log (the in-enclave trail is unaffected)");
        }
        st.prev_hash = r.hash.clone();
        st.lines.push(line);
        r
    }
}
