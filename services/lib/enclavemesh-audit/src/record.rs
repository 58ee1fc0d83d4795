//! The record: one JSON line per agent call, with no plaintext state in it.

use crate::canonical::{Canonical, Sink};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain label of a record's hash.
pub(crate) const RECORD_DOMAIN: &[u8] = b"enclavemesh/v1/audit/record";
/// Domain label of a head's signed bytes.
pub(crate) const HEAD_DOMAIN: &[u8] = b"enclavemesh/v1/audit/head";
/// `prev_hash` of the first record of a boot.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the agent was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// Key release at start: record 0, carries the signing key and attestation.
    Bootstrap,
    Init,
    Process,
    Reveal,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Bootstrap => "bootstrap",
            Event::Init => "init",
            Event::Process => "process",
            Event::Reveal => "reveal",
        }
    }
}

/// How the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Error,
}

/// One audit record. `deny_unknown_fields`: a field added by someone else is not
/// covered by the hash, so it is refused rather than silently trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// 0 for the bootstrap record of a boot, then +1 per record.
    pub seq: u64,
    /// Milliseconds since the Unix epoch (the enclave's clock).
    pub time_ms: u64,
    pub agent: String,
    pub event: Event,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// Init: 0 (the state created); Process/Reveal: the input's expected step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// TSK version the output was sealed under (Reveal: of the input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u64>,
    /// TSK version the input envelope claims (Process/Reveal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_key_version: Option<u64>,
    /// Hex SHA-256 of the encoded input envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
    /// Hex SHA-256 of the encoded output envelope (= StepSummary.envelope_sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
    pub outcome: Outcome,
    /// Refusal label on failure, e.g. `envelope_tampered`; never a message with data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Non-secret detail: bootstrap `key_versions=1,2 retired=`, Reveal `field=balance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Bootstrap only: base64 NSM attestation document whose user_data binds `signing_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_document: Option<String>,
    /// Bootstrap only: hex SEC1 P-384 public key that signs this boot's heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// `hash` of the previous record of this boot ([`GENESIS_HASH`] for seq 0).
    pub prev_hash: String,
    /// Hex SHA-256 of [`Record::canonical_bytes`]. Authenticated by the first signed
    /// [`Head`] at or after this record (the head names the chain's last hash).
    pub hash: String,
}

/// A record's fields as the canonical encoding reads them, borrowed: one layout for
/// the writer (which hashes its held fields per call) and the verifier (which reads
/// them back from JSON).
pub(crate) struct Fields<'a> {
    pub seq: u64,
    pub time_ms: u64,
    pub agent: &'a str,
    pub event: Event,
    pub workflow_id: Option<&'a str>,
    pub step: Option<u64>,
    pub key_version: Option<u64>,
    pub input_key_version: Option<u64>,
    pub input_sha256: Option<&'a str>,
    pub output_sha256: Option<&'a str>,
    pub outcome: Outcome,
    pub error: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub attestation_document: Option<&'a str>,
    pub signing_key: Option<&'a str>,
    pub prev_hash: &'a str,
}

impl Fields<'_> {
    /// Every field except `hash`, in a fixed order, into `sink`.
    pub(crate) fn encode<S: Sink>(&self, sink: S) -> S {
        let mut c = Canonical::into_sink(sink, RECORD_DOMAIN);
        c.u64(self.seq)
            .u64(self.time_ms)
            .str(self.agent)
            .str(self.event.as_str())
            .opt_str(self.workflow_id)
            .opt_u64(self.step)
            .opt_u64(self.key_version)
            .opt_u64(self.input_key_version)
            .opt_str(self.input_sha256)
            .opt_str(self.output_sha256)
            .str(match self.outcome {
                Outcome::Ok => "ok",
                Outcome::Error => "error",
            })
            .opt_str(self.error)
            .opt_str(self.detail)
            .opt_str(self.attestation_document)
            .opt_str(self.signing_key)
            .str(self.prev_hash);
        c.finish()
    }

    /// SHA-256 of the canonical bytes.
    pub(crate) fn digest(&self) -> [u8; 32] {
        self.encode(Sha256::new()).finalize().into()
    }
}

impl Record {
    pub(crate) fn fields(&self) -> Fields<'_> {
        Fields {
            seq: self.seq,
            time_ms: self.time_ms,
            agent: &self.agent,
            event: self.event,
            workflow_id: self.workflow_id.as_deref(),
            step: self.step,
            key_version: self.key_version,
            input_key_version: self.input_key_version,
            input_sha256: self.input_sha256.as_deref(),
            output_sha256: self.output_sha256.as_deref(),
            outcome: self.outcome,
            error: self.error.as_deref(),
            detail: self.detail.as_deref(),
            attestation_document: self.attestation_document.as_deref(),
            signing_key: self.signing_key.as_deref(),
            prev_hash: &self.prev_hash,
        }
    }

    /// Every field except `hash`, in a fixed order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        self.fields().encode(Vec::with_capacity(256))
    }

    /// Hex SHA-256 of the canonical bytes: what `hash` must be.
    pub fn compute_hash(&self) -> String {
        hex::encode(self.fields().digest())
    }

    /// The JSON line.
    pub fn to_line(&self) -> String {
        // A struct of strings and integers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What the agent reports about one call; [`crate::AuditTrail::record`] adds
/// seq, time, agent and chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub event: Event,
    pub workflow_id: Option<String>,
    pub step: Option<u64>,
    pub key_version: Option<u32>,
    pub input_key_version: Option<u32>,
    pub input_sha256: Option<[u8; 32]>,
    pub output_sha256: Option<[u8; 32]>,
    /// `Err(kind)` on failure.
    pub outcome: Result<(), String>,
    pub detail: Option<String>,
}

impl Entry {
    pub fn new(event: Event) -> Self {
        Entry {
            event,
            workflow_id: None,
            step: None,
            key_version: None,
            input_key_version: None,
            input_sha256: None,
            output_sha256: None,
            outcome: Ok(()),
            detail: None,
        }
    }
}

/// The end of the log at some moment, signed by the boot's key. It authenticates
/// every record before `next_seq` (editing any of them changes the chain's last
/// hash) and, fetched from the agent, shows whether records at the tail were dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub agent: String,
    /// Seq the next record will get (= number of records of this boot).
    pub next_seq: u64,
    /// `hash` of the last record ([`GENESIS_HASH`] if none).
    pub hash: String,
    pub time_ms: u64,
    /// Hex P-384 signature over [`Head::canonical_bytes`].
    pub sig: String,
}

impl Head {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut c = Canonical::new(HEAD_DOMAIN);
        c.str(&self.agent).u64(self.next_seq).str(&self.hash).u64(self.time_ms);
        c.finish()
    }
}

/// A head as a log line, `{"head": {...}}`: the last line of a fetched log, and the
/// checkpoint lines of a local `--audit-log` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadLine {
    pub head: Head,
}

impl HeadLine {
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
