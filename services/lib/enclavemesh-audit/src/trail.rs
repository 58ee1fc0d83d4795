//! The writer: what the agent holds. Records live in enclave memory (the enclave has
//! no disk); the parent gets them through the `AuditLog` RPC. `--audit-log PATH` also
//! appends each line to a local file (dev convenience: an enclave cannot write the
//! parent's disk in production).
//!
//! Why records are hash-chained but not signed one by one: a P-384 signature costs
//! about a millisecond of CPU, which on the `Process` path was 95% of a hop (see
//! BENCHMARKS.md). One signature over the chain's head authenticates every record
//! before it, so the agent signs heads instead, off the request path: on every
//! `AuditLog` fetch, and for the local file as a checkpoint line at most once per
//! interval ([`AuditTrail::checkpoint`], driven by the agent) and when the trail is
//! dropped. Recording a call is a SHA-256 and a push.
//!
//! Why records are held as fields, not as JSON lines: a record leaves the enclave only
//! when the parent fetches it, and many are evicted first, so the JSON line (and the
//! hex of its digests) is rendered at fetch time, outside the lock. Per call the trail
//! hashes the canonical fields straight into SHA-256, with no buffer. A fetched page
//! is byte for byte what rendering at call time gave: the same [`Record`] serialises it.

use crate::canonical::Hex32;
use crate::error::AuditError;
use crate::record::{Entry, Event, Fields, Head, HeadLine, Outcome, Record};
use crate::signer::{Signer, signing_key_binding};
use base64::Engine;
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Records kept in enclave memory besides record 0, by default. An unbounded trail
/// would exhaust the enclave; this cap alone does not bound memory (records vary in
/// size), [`DEFAULT_MAX_BYTES`] does.
pub const DEFAULT_MAX_RECORDS: usize = 50_000;

/// Bytes of records kept in enclave memory besides record 0, by default: 8 MiB (a call's
/// record takes ~250 bytes held, so [`DEFAULT_MAX_RECORDS`] binds first). Sized so an agent stays within its 32 MiB footprint
/// target (~11 MiB idle) with room for requests in flight; measured by the hop
/// benchmark's sustained-load row (BENCHMARKS.md).
pub const DEFAULT_MAX_BYTES: usize = 8 << 20;

/// A call's record as the trail holds it: its fields, rendered to a JSON line when
/// fetched ([`Held::record`]).
#[derive(Clone)]
struct Held {
    seq: u64,
    time_ms: u64,
    event: Event,
    workflow_id: Option<String>,
    step: Option<u64>,
    key_version: Option<u32>,
    input_key_version: Option<u32>,
    input_sha256: Option<[u8; 32]>,
    output_sha256: Option<[u8; 32]>,
    /// The refusal label on failure.
    error: Option<String>,
    detail: Option<String>,
    prev_hash: [u8; 32],
    hash: [u8; 32],
}

impl Held {
    /// SHA-256 of the canonical fields (as a verifier reads them back from the line).
    fn digest(&self, agent: &str) -> [u8; 32] {
        let input = self.input_sha256.as_ref().map(Hex32::of);
        let output = self.output_sha256.as_ref().map(Hex32::of);
        let prev = Hex32::of(&self.prev_hash);
        Fields {
            seq: self.seq,
            time_ms: self.time_ms,
            agent,
            event: self.event,
            workflow_id: self.workflow_id.as_deref(),
            step: self.step,
            key_version: self.key_version.map(u64::from),
            input_key_version: self.input_key_version.map(u64::from),
            input_sha256: input.as_ref().map(Hex32::as_str),
            output_sha256: output.as_ref().map(Hex32::as_str),
            outcome: if self.error.is_some() { Outcome::Error } else { Outcome::Ok },
            error: self.error.as_deref(),
            detail: self.detail.as_deref(),
            attestation_document: None,
            signing_key: None,
            prev_hash: prev.as_str(),
        }
        .digest()
    }

    /// The record, as its line carries it.
    fn record(&self, agent: &str) -> Record {
        Record {
            seq: self.seq,
            time_ms: self.time_ms,
            agent: agent.to_owned(),
            event: self.event,
            workflow_id: self.workflow_id.clone(),
            step: self.step,
            key_version: self.key_version.map(u64::from),
            input_key_version: self.input_key_version.map(u64::from),
            input_sha256: self.input_sha256.map(hex::encode),
            output_sha256: self.output_sha256.map(hex::encode),
            outcome: if self.error.is_some() { Outcome::Error } else { Outcome::Ok },
            error: self.error.clone(),
            detail: self.detail.clone(),
            attestation_document: None,
            signing_key: None,
            prev_hash: hex::encode(self.prev_hash),
            hash: hex::encode(self.hash),
        }
    }

    /// What holding it costs: the struct, its strings and the allocator's overhead per
    /// string (one header word, rounded up), so the budget tracks real memory.
    fn cost(&self) -> usize {
        let heap = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 16);
        std::mem::size_of::<Held>() + heap(&self.workflow_id) + heap(&self.error) + heap(&self.detail)
    }
}

struct State {
    /// Record 0 (bootstrap: signing key + attestation), kept for the whole boot: without
    /// it no record can be tied to an enclave image.
    boot: Option<String>,
    /// The newest records after record 0; the oldest are evicted beyond `max_records`.
    recent: VecDeque<Held>,
    /// Seq of `recent[0]`.
    recent_first: u64,
    /// [`Held::cost`] of everything in `recent`.
    recent_bytes: usize,
    /// Seq the next record gets (= records written this boot).
    next_seq: u64,
    max_records: usize,
    max_bytes: usize,
    /// `hash` of the last record (all zeros before the first: the genesis hash).
    prev_hash: [u8; 32],
    file: Option<std::fs::File>,
    /// Records of the local file covered by its last checkpoint line.
    file_signed_through: u64,
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
            state: Mutex::new(State {
                boot: None,
                recent: VecDeque::new(),
                recent_first: 1,
                recent_bytes: 0,
                next_seq: 0,
                max_records: DEFAULT_MAX_RECORDS,
                max_bytes: DEFAULT_MAX_BYTES,
                prev_hash: [0; 32],
                file,
                file_signed_through: 0,
            }),
        })
    }

    /// Keeps at most `n` (≥ 1) records after record 0 in memory; older ones are
    /// evicted, and a later fetch skips them (the verifier then reports them removed
    /// unless an earlier export holds them): fetch at least every `n` calls.
    pub fn with_max_records(self, n: usize) -> Self {
        self.lock().max_records = n.max(1);
        self
    }

    /// Keeps at most about `n` bytes of records after record 0 in memory (always at
    /// least the newest record); evicts like [`with_max_records`](Self::with_max_records),
    /// whichever limit is reached first.
    pub fn with_max_bytes(self, n: usize) -> Self {
        self.lock().max_bytes = n;
        self
    }

    /// Bytes the records after record 0 take in memory now (what `with_max_bytes` bounds).
    pub fn held_bytes(&self) -> usize {
        self.lock().recent_bytes
    }

    /// What the bootstrap attestation document's `user_data` must be.
    pub fn signing_key_binding(&self) -> [u8; 48] {
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
        if st.next_seq != 0 {
            return Err(AuditError::Io("bootstrap must be the first record of a trail".into()));
        }
        let mut r = Record {
            seq: 0,
            time_ms: now_ms(),
            agent: self.agent.clone(),
            event: Event::Bootstrap,
            workflow_id: None,
            step: None,
            key_version: None,
            input_key_version: None,
            input_sha256: None,
            output_sha256: None,
            outcome: Outcome::Ok,
            error: None,
            detail: Some(detail),
            attestation_document: Some(base64::engine::general_purpose::STANDARD.encode(attestation_document)),
            signing_key: Some(self.signing_key_hex()),
            prev_hash: hex::encode(st.prev_hash),
            hash: String::new(),
        };
        let digest = r.fields().digest();
        r.hash = hex::encode(digest);
        let line = r.to_line();
        append(&mut st, &line);
        st.boot = Some(line);
        st.prev_hash = digest;
        st.next_seq = 1;
        drop(st);
        // Sign record 0 into the local file at once: a boot that dies before its first
        // checkpoint still leaves a verifiable start.
        self.checkpoint();
        Ok(r)
    }

    /// Appends one call's record: a SHA-256 over its canonical fields and a push.
    pub fn record(&self, entry: Entry) {
        let mut st = self.lock();
        let mut held = Held {
            seq: st.next_seq,
            // Under the lock, so times never run backwards along the chain.
            time_ms: now_ms(),
            event: entry.event,
            workflow_id: entry.workflow_id,
            step: entry.step,
            key_version: entry.key_version,
            input_key_version: entry.input_key_version,
            input_sha256: entry.input_sha256,
            output_sha256: entry.output_sha256,
            error: entry.outcome.err(),
            detail: entry.detail,
            prev_hash: st.prev_hash,
            hash: [0; 32],
        };
        held.hash = held.digest(&self.agent);
        if st.file.is_some() {
            let line = held.record(&self.agent).to_line();
            append(&mut st, &line);
        }
        st.prev_hash = held.hash;
        st.next_seq += 1;
        st.recent_bytes += held.cost();
        st.recent.push_back(held);
        while st.recent.len() > 1 && (st.recent.len() > st.max_records || st.recent_bytes > st.max_bytes) {
            if let Some(old) = st.recent.pop_front() {
                st.recent_bytes -= old.cost();
            }
            st.recent_first += 1;
        }
    }

    /// Records from `from_seq` still in memory, at most `max`, and the signed head.
    /// Evicted records are skipped: the first record returned may be later than
    /// `from_seq` (compare its `seq`).
    pub fn fetch(&self, from_seq: u64, max: usize) -> Fetched {
        let (boot, held, head) = {
            let st = self.lock();
            let boot = if from_seq == 0 { st.boot.clone() } else { None };
            let skip = usize::try_from(from_seq.saturating_sub(st.recent_first)).unwrap_or(usize::MAX);
            let room = max.saturating_sub(usize::from(boot.is_some()));
            let held: Vec<Held> = st.recent.iter().skip(skip).take(room).cloned().collect();
            (boot, held, self.unsigned_head(&st))
        };
        // Rendered and signed after the lock is released: calls keep being recorded meanwhile.
        let records = boot.into_iter().chain(held.iter().map(|h| h.record(&self.agent).to_line())).collect();
        Fetched { records, head: self.signed(head) }
    }

    /// Seq of the oldest record after record 0 still held in memory.
    pub fn oldest_retained(&self) -> u64 {
        self.lock().recent_first
    }

    /// The signed head now.
    pub fn head(&self) -> Head {
        let h = self.unsigned_head(&self.lock());
        self.signed(h)
    }

    /// Signs the current head into the local file if records were appended since the
    /// last checkpoint; without a local file (or nothing new) it does nothing. The
    /// signature is computed outside the lock, so calls keep being recorded meanwhile;
    /// the checkpoint line then lands after records it does not cover, which the
    /// verifier allows (a head covers the records before its `next_seq`).
    pub fn checkpoint(&self) -> Option<Head> {
        let h = {
            let st = self.lock();
            if st.file.is_none() || st.next_seq == st.file_signed_through {
                return None;
            }
            self.unsigned_head(&st)
        };
        let h = self.signed(h);
        let mut st = self.lock();
        if h.next_seq > st.file_signed_through {
            st.file_signed_through = h.next_seq;
            let line = HeadLine { head: h.clone() }.to_line();
            append(&mut st, &line);
        }
        Some(h)
    }

    /// A P-384 signature: ~1 ms of CPU, so never while holding the lock.
    fn signed(&self, mut h: Head) -> Head {
        h.sig = self.signer.sign(&h.canonical_bytes());
        h
    }

    fn unsigned_head(&self, st: &State) -> Head {
        Head {
            agent: self.agent.clone(),
            next_seq: st.next_seq,
            hash: hex::encode(st.prev_hash),
            time_ms: now_ms(),
            sig: String::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written record (the
        // push is the last step), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A trail that goes away (agent shutdown) signs what it wrote to the local file.
impl Drop for AuditTrail {
    fn drop(&mut self) {
        self.checkpoint();
    }
}

fn append(st: &mut State, line: &str) {
    if let Some(f) = st.file.as_mut()
        && let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush())
    {
        tracing::warn!(error = %e, "cannot append to --audit-log (the in-enclave trail is unaffected)");
    }
}
