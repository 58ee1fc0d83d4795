//! Writer → verifier round trips and every kind of tampering, on real signatures and
//! a real (simulated-NSM) attestation document.

use crate::*;
use enclavemesh_attestation::{Nsm, SimulatedMeasurements, SimulatedNsm, Verifier};

struct Fixture {
    _dir: tempfile::TempDir,
    nsm: SimulatedNsm,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let nsm = SimulatedNsm::new(dir.path(), SimulatedMeasurements::from_pcr0([7; 48])).unwrap();
    Fixture { _dir: dir, nsm }
}

fn booted(f: &Fixture, agent: &str, file: Option<&std::path::Path>) -> AuditTrail {
    let t = AuditTrail::new(agent, file).unwrap();
    let doc = f.nsm.attestation(Some(&t.signing_key_binding()), None, None).unwrap();
    t.bootstrap(&doc, "key_versions=1".into()).unwrap();
    t
}

/// A boot with `n` Process records after the bootstrap record.
fn log(f: &Fixture, n: u64) -> (AuditTrail, Vec<String>) {
    let t = booted(f, "agent-b", None);
    for step in 0..n {
        t.record(Entry {
            workflow_id: Some("wf-1".into()),
            step: Some(step),
            key_version: Some(1),
            input_key_version: Some(1),
            input_sha256: Some([step as u8; 32]),
            output_sha256: Some([step as u8 + 1; 32]),
            ..Entry::new(Event::Process)
        });
    }
    let lines = t.fetch(0, usize::MAX).records;
    (t, lines)
}

fn with_head(t: &AuditTrail, lines: &[String]) -> Vec<String> {
    let mut v = lines.to_vec();
    v.push(HeadLine { head: t.head() }.to_line());
    v
}

fn run(lines: &[String]) -> Result<Summary, AuditError> {
    verify(lines.iter().map(String::as_str))
}

#[test]
fn intact_log_verifies_with_and_without_head() {
    let f = fixture();
    let (t, lines) = log(&f, 5);
    let s = run(&lines).unwrap();
    assert_eq!(s.records, 6);
    assert!(!s.head_checked);
    assert_eq!(s.segments[0].pcr0, hex::encode([7u8; 48]));
    let s = run(&with_head(&t, &lines)).unwrap();
    assert!(s.head_checked);
    // Against the dev CA the attestation verifies too.
    let v = Verifier::new(f.nsm.dev_ca().trust_anchor());
    let s = verify_with(lines.iter().map(String::as_str), Some(&v)).unwrap();
    assert!(s.segments[0].attestation_verified);
}

#[test]
fn removed_record_is_named() {
    let f = fixture();
    let (_, mut lines) = log(&f, 5);
    lines.remove(3);
    assert_eq!(run(&lines).unwrap_err(), AuditError::Removed { seq: 3 });
    let (_, mut lines) = log(&f, 5);
    lines.remove(0);
    assert_eq!(run(&lines).unwrap_err(), AuditError::Removed { seq: 0 });
}

#[test]
fn edited_field_is_named() {
    let f = fixture();
    let (_, lines) = log(&f, 5);
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("\"outcome\":\"ok\"", "\"outcome\":\"error\"");
    assert_ne!(edited[2], lines[2]);
    assert!(matches!(run(&edited).unwrap_err(), AuditError::Edited { seq: 2, what: "hash", .. }));

    // Edited and re-hashed (the parent can compute SHA-256): the signature gives it away.
    let mut r: Record = serde_json::from_str(&lines[4]).unwrap();
    r.step = Some(99);
    r.hash = r.compute_hash();
    let mut rehashed = lines.clone();
    rehashed[4] = r.to_line();
    assert!(matches!(run(&rehashed).unwrap_err(), AuditError::Edited { seq: 4, what: "signature", .. }));

    // A field the writer never wrote is refused, not ignored.
    let mut extra = lines.clone();
    extra[1] = extra[1].replacen('{', "{\"balance\":5,", 1);
    assert!(matches!(run(&extra).unwrap_err(), AuditError::Malformed { seq: Some(1), line: 2, .. }));
}

#[test]
fn reordered_and_duplicated_records_are_detected() {
    let f = fixture();
    let (_, mut lines) = log(&f, 5);
    lines.swap(2, 3);
    assert_eq!(run(&lines).unwrap_err(), AuditError::Reordered { seq: 2 });
    let (_, mut lines) = log(&f, 5);
    let dup = lines[2].clone();
    lines.insert(3, dup);
    assert_eq!(run(&lines).unwrap_err(), AuditError::Reordered { seq: 2 });
}

#[test]
fn rechained_log_from_another_boot_is_detected() {
    // A record spliced in from another boot (another key) fails its signature.
    let f = fixture();
    let (_, a) = log(&f, 3);
    let (_, b) = log(&f, 3);
    let mut spliced = a.clone();
    spliced[2] = b[2].clone();
    assert!(matches!(run(&spliced).unwrap_err(), AuditError::Edited { seq: 2, what: "signature", .. }));
}

#[test]
fn truncated_tail_is_detected_only_against_the_head() {
    let f = fixture();
    let (t, lines) = log(&f, 5);
    let head = HeadLine { head: t.head() }.to_line();
    let mut cut = lines[..4].to_vec();
    assert!(run(&cut).is_ok(), "without a head a dropped tail is invisible (documented limit)");
    cut.push(head.clone());
    assert_eq!(run(&cut).unwrap_err(), AuditError::Truncated { last_seq: 3, head_seq: 5 });

    // A forged head (re-signed by someone else / edited) is refused.
    let mut h: HeadLine = serde_json::from_str(&head).unwrap();
    h.head.next_seq = 4;
    let mut forged = lines[..4].to_vec();
    forged.push(h.to_line());
    assert!(matches!(run(&forged).unwrap_err(), AuditError::BadHead { .. }));

    // Head not last.
    let mut misplaced = lines.clone();
    misplaced.insert(1, head);
    assert!(matches!(run(&misplaced).unwrap_err(), AuditError::BadHead { .. }));
}

#[test]
fn bootstrap_must_bind_the_signing_key() {
    let f = fixture();
    let t = AuditTrail::new("agent-a", None).unwrap();
    let doc = f.nsm.attestation(Some(&[0u8; 32]), None, None).unwrap();
    t.bootstrap(&doc, String::new()).unwrap();
    let lines = t.fetch(0, 10).records;
    assert!(matches!(run(&lines).unwrap_err(), AuditError::BadAttestation { seq: 0, .. }));
    assert!(t.bootstrap(&doc, String::new()).is_err(), "only one bootstrap per trail");
}

#[test]
fn local_file_holds_several_boots_and_verifies() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    for _ in 0..2 {
        let t = booted(&f, "agent-a", Some(&path));
        t.record(Entry { workflow_id: Some("wf".into()), step: Some(0), key_version: Some(2), ..Entry::new(Event::Init) });
        t.record(Entry { outcome: Err("DATA_LOSS/tampered".into()), ..Entry::new(Event::Process) });
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let s = verify(text.lines()).unwrap();
    assert_eq!(s.segments.len(), 2);
    assert_eq!(s.records, 6);
    assert!(text.contains("\"error\":\"DATA_LOSS/tampered\""));
}

#[test]
fn fetch_pages_and_head() {
    let f = fixture();
    let (t, all) = log(&f, 4);
    let page = t.fetch(2, 2);
    assert_eq!(page.records, all[2..4].to_vec());
    assert_eq!(page.head.next_seq, 5);
    assert!(t.fetch(99, 10).records.is_empty());
    assert!(!AuditError::Removed { seq: 3 }.to_string().is_empty());
    assert_eq!(AuditError::Removed { seq: 3 }.seq(), Some(3));
}
