//! The checker behind `enclavemesh audit verify`.
//!
//! A file may hold several boots (a local `--audit-log` is appended to across
//! restarts): each boot is a segment starting with its own bootstrap record 0 and
//! signed by its own key. Per segment: every record's hash must match its contents
//! and be signed by the key the bootstrap record's attestation binds; seqs must run
//! 0, 1, 2, … and each `prev_hash` must be the previous `hash`. A trailing
//! `{"head": …}` line (written by `audit fetch`) must be signed by the last
//! segment's key and name its last record, which exposes a dropped tail.
//!
//! Limits: a whole boot (segment) dropped from a local file is not detectable
//! from the file alone; a tail is detectable only with a head from the agent.

use crate::error::AuditError;
use crate::record::{Event, GENESIS_HASH, HeadLine, Record};
use crate::signer::{check, signing_key_binding};
use crate::trail::record_sig_msg;
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
    /// Whether a signed head was present and matched (tail truncation excluded).
    pub head_checked: bool,
}

/// Verifies without a trust anchor: chain, signatures and the key binding inside
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
        return Err(bad("the attestation document's user_data does not bind this signing_key".into()));
    }
    Ok((key, doc.pcr_hex(0).unwrap_or_default(), verifier.is_some()))
}

/// Verifies `lines` (JSON lines: records, optionally a final head line). With a
/// verifier, each bootstrap attestation document is also checked against its trust
/// anchor (and whatever PCRs it expects) as of the document's time.
pub fn verify_with<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    verifier: Option<&Verifier>,
) -> Result<Summary, AuditError> {
    let parsed = parse(lines)?;
    let head = match parsed.iter().position(|l| matches!(l, Line::Head(..))) {
        Some(i) if i + 1 != parsed.len() => {
            let Line::Head(line, _) = &parsed[i] else { unreachable!() };
            return Err(AuditError::BadHead { reason: format!("line {line}: the head must be the last line") });
        }
        Some(i) => match &parsed[i] {
            Line::Head(_, h) => Some(h.head.clone()),
            Line::Record(..) => None,
        },
        None => None,
    };
    let records: Vec<(usize, &Record)> = parsed
        .iter()
        .filter_map(|l| match l {
            Line::Record(n, r) => Some((*n, r.as_ref())),
            Line::Head(..) => None,
        })
        .collect();
    if records.is_empty() {
        return Err(AuditError::Empty);
    }

    // Split into boots: a bootstrap record with seq 0 starts one.
    let mut segments: Vec<Vec<(usize, &Record)>> = Vec::new();
    for (n, r) in records {
        if r.event == Event::Bootstrap && r.seq == 0 || segments.is_empty() {
            segments.push(Vec::new());
        }
        if let Some(s) = segments.last_mut() {
            s.push((n, r));
        }
    }

    let mut summary = Summary { records: 0, segments: Vec::new(), head_checked: false };
    let mut last_key = String::new();
    for seg in &segments {
        let (first_line, first) = seg[0];
        if first.seq != 0 || first.event != Event::Bootstrap {
            // Integrity first: an edited record 0 should say "edited", not "removed".
            if first.compute_hash() != first.hash {
                return Err(AuditError::Edited { seq: first.seq, line: first_line, what: "hash" });
            }
            return Err(AuditError::Removed { seq: 0 });
        }
        let (key, pcr0, attested) = check_bootstrap(first, verifier)?;
        let mut expected = 0u64;
        let mut prev = GENESIS_HASH.to_string();
        for (i, (line, r)) in seg.iter().enumerate() {
            if r.compute_hash() != r.hash {
                return Err(AuditError::Edited { seq: r.seq, line: *line, what: "hash" });
            }
            if !check(&key, &record_sig_msg(&r.hash), &r.sig) {
                return Err(AuditError::Edited { seq: r.seq, line: *line, what: "signature" });
            }
            if r.seq > expected {
                let later = seg[i + 1..].iter().any(|(_, x)| x.seq == expected);
                return Err(if later { AuditError::Reordered { seq: expected } } else { AuditError::Removed { seq: expected } });
            }
            if r.seq < expected {
                return Err(AuditError::Reordered { seq: r.seq });
            }
            if r.prev_hash != prev {
                return Err(AuditError::BadChain { seq: r.seq });
            }
            prev = r.hash.clone();
            expected += 1;
        }
        summary.records += expected;
        summary.segments.push(Segment {
            agent: first.agent.clone(),
            records: expected,
            last_hash: prev,
            pcr0,
            attestation_verified: attested,
        });
        last_key = key;
    }

    if let Some(h) = head {
        let last = summary.segments.last().ok_or(AuditError::Empty)?;
        if !check(&last_key, &h.canonical_bytes(), &h.sig) {
            return Err(AuditError::BadHead {
                reason: "the head is not signed by the last boot's key (forged, or from another boot)".into(),
            });
        }
        if h.next_seq > last.records {
            return Err(AuditError::Truncated { last_seq: last.records.saturating_sub(1), head_seq: h.next_seq - 1 });
        }
        if h.next_seq < last.records {
            return Err(AuditError::BadHead {
                reason: format!("the head (next seq {}) is older than the log ({} records): a stale head", h.next_seq, last.records),
            });
        }
        if h.hash != last.last_hash {
            return Err(AuditError::HeadMismatch { seq: h.next_seq.saturating_sub(1) });
        }
        summary.head_checked = true;
    }
    Ok(summary)
}
