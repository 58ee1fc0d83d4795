//! The checker behind `enclavemesh audit verify`.
//!
//! A file may hold several boots (a local `--audit-log` is appended to across
//! restarts): each boot is a segment starting with its own bootstrap record 0, with
//! its own signing key. Per segment: every record's hash must match its contents;
//! seqs must run 0, 1, 2, … and each `prev_hash` must be the previous `hash`; every
//! `{"head": …}` line must be signed by the key the bootstrap record's attestation
//! binds and name the hash of the record before its `next_seq`; and every record
//! must be covered by such a head (the last line of `audit fetch` output; checkpoint
//! lines in a local file). A head fetched from the agent exposes a dropped tail.
//!
//! Limits: a whole boot (segment) dropped from a local file is not detectable
//! from the file alone; nor is a tail dropped together with the checkpoints after
//! it, unless checked against a head fetched from the agent.

use crate::error::AuditError;
use crate::record::{Event, GENESIS_HASH, Head, HeadLine, Record};
use crate::signer::{check, signing_key_binding};
use base64::Engine;
use enclavemesh_attestation::{AttestationDocument, Verifier};
use std::time::{Duration, UNIX_EPOCH};

/// One boot of one agent in a verified log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub agent: String,
    pub records: u64,
    pub last_hash: String,
    /// PCR0 from the bootstrap attestation document.
    pub pcr0: String,
    /// Whether the attestation document was verified against a trust anchor
    /// (only with [`verify_with`] and a verifier); otherwise only the key binding
    /// inside the (unverified) document was checked.
    pub attestation_verified: bool,
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub segments: Vec<Segment>,
    /// Signed heads checked (each authenticates every record before it).
    pub heads: u64,
}

/// Verifies without a trust anchor: chain, signed heads and the key binding inside
/// the bootstrap attestation document (whose own signature is not checked).
pub fn verify<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Summary, AuditError> {
    verify_with(lines, None)
}

enum Line {
    Record(usize, Box<Record>),
    Head(usize, HeadLine),
}

fn parse(lines: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Vec<Line>, AuditError> {
    let mut out = Vec::new();
    for (i, raw) in lines.into_iter().enumerate() {
        let line_no = i + 1;
        let raw = raw.as_ref().trim();
        if raw.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| AuditError::Malformed {
            line: line_no,
            seq: None,
            reason: format!("not JSON: {e}"),
        })?;
        if value.get("head").is_some() {
            let head = serde_json::from_value(value)
                .map_err(|e| AuditError::BadHead { reason: format!("line {line_no}: {e}") })?;
            out.push(Line::Head(line_no, head));
            continue;
        }
        let seq = value.get("seq").and_then(serde_json::Value::as_u64);
        let rec: Record = serde_json::from_value(value).map_err(|e| AuditError::Malformed {
            line: line_no,
            seq,
            reason: e.to_string(),
        })?;
        out.push(Line::Record(line_no, Box::new(rec)));
    }
    Ok(out)
}

/// Checks the bootstrap record: returns (signing key hex, PCR0 hex, verified?).
fn check_bootstrap(r: &Record, verifier: Option<&Verifier>) -> Result<(String, String, bool), AuditError> {
    let bad = |reason: String| AuditError::BadAttestation { seq: r.seq, reason };
    let key = r.signing_key.clone().ok_or_else(|| bad("no signing_key".into()))?;
    let doc_b64 = r.attestation_document.as_deref().ok_or_else(|| bad("no attestation_document".into()))?;
    let doc_bytes = base64::engine::general_purpose::STANDARD
        .decode(doc_b64)
        .map_err(|e| bad(format!("attestation_document is not base64: {e}")))?;
    let unverified = AttestationDocument::parse_unverified(&doc_bytes)
        .map_err(|e| bad(format!("attestation_document does not parse: {e}")))?;
    let doc = match verifier {
        None => unverified,
        // An archived document is checked as of its own timestamp.
        Some(v) => v
            .verify_at(&doc_bytes, UNIX_EPOCH + Duration::from_millis(unverified.timestamp_ms))
            .map_err(|e| bad(format!("attestation_document does not verify: {e}")))?,
    };
    let key_bytes = hex::decode(&key).map_err(|_| bad("signing_key is not hex".into()))?;
    if doc.user_data.as_deref() != Some(signing_key_binding(&key_bytes).as_slice()) {
        return Err(bad(
            "the attestation document's user_data does not bind this signing_key under the audit-key domain (a \
             document the enclave made for another purpose, e.g. a caller's Attest, cannot vouch for an audit key)"
                .into(),
        ));
    }
    Ok((key, doc.pcr_hex(0).unwrap_or_default(), verifier.is_some()))
}

/// One boot's lines: its records in file order and the heads that follow them.
#[derive(Default)]
struct Boot<'a> {
    records: Vec<(usize, &'a Record)>,
    heads: Vec<(usize, &'a Head)>,
}

/// Verifies `lines` (JSON lines: records and signed heads). With a verifier, each
/// bootstrap attestation document is also checked against its trust anchor (and
/// whatever PCRs it expects) as of the document's time.
pub fn verify_with<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    verifier: Option<&Verifier>,
) -> Result<Summary, AuditError> {
    let parsed = parse(lines)?;

    // Split into boots: a bootstrap record with seq 0 starts one; a head belongs to
    // the boot whose records precede it.
    let mut boots: Vec<Boot> = Vec::new();
    for l in &parsed {
        match l {
            Line::Record(n, r) => {
                if r.event == Event::Bootstrap && r.seq == 0 || boots.is_empty() {
                    boots.push(Boot::default());
                }
                if let Some(b) = boots.last_mut() {
                    b.records.push((*n, r.as_ref()));
                }
            }
            Line::Head(n, h) => match boots.last_mut() {
                Some(b) => b.heads.push((*n, &h.head)),
                None => return Err(AuditError::BadHead { reason: format!("line {n}: a head before any record") }),
            },
        }
    }
    if boots.is_empty() {
        return Err(AuditError::Empty);
    }

    let mut summary = Summary { records: 0, segments: Vec::new(), heads: 0 };
    for boot in &boots {
        let seg = &boot.records;
        let (first_line, first) = seg[0];
        if first.seq != 0 || first.event != Event::Bootstrap {
            // Integrity first: an edited record 0 should say "edited", not "removed".
            if first.compute_hash() != first.hash {
                return Err(AuditError::Edited { seq: first.seq, line: first_line, what: "hash" });
            }
            return Err(AuditError::Removed { seq: 0 });
        }
        let (key, pcr0, attested) = check_bootstrap(first, verifier)?;
        let mut hashes: Vec<&str> = Vec::with_capacity(seg.len());
        for (i, (line, r)) in seg.iter().enumerate() {
            let expected = hashes.len() as u64;
            if r.compute_hash() != r.hash {
                return Err(AuditError::Edited { seq: r.seq, line: *line, what: "hash" });
            }
            if r.seq > expected {
                let later = seg[i + 1..].iter().any(|(_, x)| x.seq == expected);
                return Err(if later {
                    AuditError::Reordered { seq: expected }
                } else {
                    AuditError::Removed { seq: expected }
                });
            }
            if r.seq < expected {
                return Err(AuditError::Reordered { seq: r.seq });
            }
            if r.prev_hash != hashes.last().copied().unwrap_or(GENESIS_HASH) {
                return Err(AuditError::BadChain { seq: r.seq });
            }
            hashes.push(&r.hash);
        }
        let records = hashes.len() as u64;

        // The chain alone can be recomputed by anyone: what authenticates a record is
        // a head signed by this boot's key that covers it.
        let mut covered = 0u64;
        for (line, h) in &boot.heads {
            if !check(&key, &h.canonical_bytes(), &h.sig) {
                return Err(AuditError::BadHead {
                    reason: format!(
                        "line {line}: not signed by this boot's key (forged, edited, or from another boot)"
                    ),
                });
            }
            if h.next_seq > records {
                return Err(AuditError::Truncated { last_seq: records.saturating_sub(1), head_seq: h.next_seq - 1 });
            }
            let named = match h.next_seq {
                0 => GENESIS_HASH,
                n => hashes[(n - 1) as usize],
            };
            if h.hash != named {
                return Err(AuditError::HeadMismatch { seq: h.next_seq.saturating_sub(1) });
            }
            covered = covered.max(h.next_seq);
        }
        if covered < records {
            return Err(AuditError::Unsigned { first_seq: covered, last_seq: records - 1 });
        }
        summary.records += records;
        summary.heads += boot.heads.len() as u64;
        summary.segments.push(Segment {
            agent: first.agent.clone(),
            records,
            last_hash: hashes.last().copied().unwrap_or(GENESIS_HASH).to_string(),
            pcr0,
            attestation_verified: attested,
        });
    }
    Ok(summary)
}
