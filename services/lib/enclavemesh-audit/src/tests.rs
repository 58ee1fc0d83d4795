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
fn intact_log_verifies_against_its_head() {
    let f = fixture();
    let (t, lines) = log(&f, 5);
    let s = run(&with_head(&t, &lines)).unwrap();
    assert_eq!(s.records, 6);
    assert_eq!(s.heads, 1);
    assert_eq!(s.segments[0].pcr0, hex::encode([7u8; 48]));
    // Against the dev CA the attestation verifies too.
    let v = Verifier::new(f.nsm.dev_ca().trust_anchor());
    let s = verify_with(with_head(&t, &lines).iter().map(String::as_str), Some(&v)).unwrap();
    assert!(s.segments[0].attestation_verified);
    // Without a signed head nothing authenticates the records: anyone can build a chain.
    assert_eq!(run(&lines).unwrap_err(), AuditError::Unsigned { first_seq: 0, last_seq: 5 });
}

#[test]
fn removed_record_is_named() {
    let f = fixture();
    let (t, lines) = log(&f, 5);
    let mut removed = with_head(&t, &lines);
    removed.remove(3);
    assert_eq!(run(&removed).unwrap_err(), AuditError::Removed { seq: 3 });
    let mut removed = with_head(&t, &lines);
    removed.remove(0);
    assert_eq!(run(&removed).unwrap_err(), AuditError::Removed { seq: 0 });
}

#[test]
fn edited_field_is_named() {
    let f = fixture();
    let (t, lines) = log(&f, 5);
    let lines = with_head(&t, &lines);
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("\"outcome\":\"ok\"", "\"outcome\":\"error\"");
    assert_ne!(edited[2], lines[2]);
    assert!(matches!(run(&edited).unwrap_err(), AuditError::Edited { seq: 2, what: "hash", .. }));

    // Edited and re-hashed (the parent can compute SHA-256): the next link breaks.
    let rehash = |i: usize, lines: &[String]| {
        let mut r: Record = serde_json::from_str(&lines[i]).unwrap();
        r.step = Some(99);
        r.hash = r.compute_hash();
        let mut v = lines.to_vec();
        v[i] = r.to_line();
        v
    };
    assert_eq!(run(&rehash(4, &lines)).unwrap_err(), AuditError::BadChain { seq: 5 });
    // The last record re-hashed: the chain is consistent, the signed head is not.
    assert_eq!(run(&rehash(5, &lines)).unwrap_err(), AuditError::HeadMismatch { seq: 5 });

    // A field the writer never wrote is refused, not ignored.
    let mut extra = lines.clone();
    extra[1] = extra[1].replacen('{', "{\"balance\":5,", 1);
    assert!(matches!(run(&extra).unwrap_err(), AuditError::Malformed { seq: Some(1), line: 2, .. }));
}

#[test]
fn reordered_and_duplicated_records_are_detected() {
    let f = fixture();
    let (t, lines) = log(&f, 5);
    let lines = with_head(&t, &lines);
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    assert_eq!(run(&swapped).unwrap_err(), AuditError::Reordered { seq: 2 });
    let mut dup = lines.clone();
    dup.insert(3, lines[2].clone());
    assert_eq!(run(&dup).unwrap_err(), AuditError::Reordered { seq: 2 });
}

#[test]
fn rechained_log_from_another_boot_is_detected() {
    let f = fixture();
    let (ta, a) = log(&f, 3);
    let (tb, b) = log(&f, 3);
    // A record spliced in from another boot does not link.
    let mut spliced = with_head(&ta, &a);
    spliced[2] = b[2].clone();
    assert_eq!(run(&spliced).unwrap_err(), AuditError::BadChain { seq: 2 });
    // A whole chain rebuilt by someone else (consistent hashes) cannot carry this boot's head…
    let mut forged = a.clone();
    let mut prev = serde_json::from_str::<Record>(&a[0]).unwrap().hash;
    for line in forged.iter_mut().skip(1) {
        let mut r: Record = serde_json::from_str(line).unwrap();
        r.detail = Some("rewritten".into());
        r.prev_hash = prev;
        r.hash = r.compute_hash();
        prev = r.hash.clone();
        *line = r.to_line();
    }
    assert_eq!(run(&with_head(&ta, &forged)).unwrap_err(), AuditError::HeadMismatch { seq: 3 });
    // …nor another boot's head.
    let mut other_head = a.clone();
    other_head.push(HeadLine { head: tb.head() }.to_line());
    assert!(matches!(run(&other_head).unwrap_err(), AuditError::BadHead { .. }));
}

#[test]
fn truncated_tail_is_detected_against_the_head() {
    let f = fixture();
    let (t, lines) = log(&f, 5);
    let head = HeadLine { head: t.head() }.to_line();
    let mut cut = lines[..4].to_vec();
    cut.push(head.clone());
    assert_eq!(run(&cut).unwrap_err(), AuditError::Truncated { last_seq: 3, head_seq: 5 });

    // A forged head (edited after signing) is refused.
    let mut h: HeadLine = serde_json::from_str(&head).unwrap();
    h.head.next_seq = 4;
    let mut forged = lines[..4].to_vec();
    forged.push(h.to_line());
    assert!(matches!(run(&forged).unwrap_err(), AuditError::BadHead { .. }));

    // A head is a signed statement about the chain: where it sits in the file does not matter.
    let mut moved = lines.clone();
    moved.insert(1, head);
    assert_eq!(run(&moved).unwrap().heads, 1);
}

#[test]
fn an_older_head_covers_only_the_records_before_it() {
    let f = fixture();
    let (t, lines) = log(&f, 2);
    let old_head = HeadLine { head: t.head() }.to_line();
    t.record(Entry::new(Event::Reveal));
    let all = t.fetch(0, usize::MAX).records;
    let mut v = all.clone();
    v.push(old_head.clone());
    assert_eq!(run(&v).unwrap_err(), AuditError::Unsigned { first_seq: 3, last_seq: 3 });
    v.push(HeadLine { head: t.head() }.to_line());
    assert_eq!(run(&v).unwrap().heads, 2);
    assert_eq!(lines.len(), 3);
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
        t.record(Entry {
            workflow_id: Some("wf".into()),
            step: Some(0),
            key_version: Some(2),
            ..Entry::new(Event::Init)
        });
        t.record(Entry { outcome: Err("DATA_LOSS/tampered".into()), ..Entry::new(Event::Process) });
        // Dropping the trail (agent shutdown) signs what it wrote.
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let s = verify(text.lines()).unwrap();
    assert_eq!(s.segments.len(), 2);
    assert_eq!(s.records, 6);
    assert_eq!(s.heads, 4, "a checkpoint after each bootstrap record and one at each drop");
    assert!(text.contains("\"error\":\"DATA_LOSS/tampered\""));

    // The last checkpoint dropped: the last boot's records after record 0 are unsigned.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    assert_eq!(verify(lines).unwrap_err(), AuditError::Unsigned { first_seq: 1, last_seq: 2 });
}

#[test]
fn checkpoints_only_with_a_file_and_new_records() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let t = booted(&f, "agent-a", Some(&path));
    assert!(t.checkpoint().is_none(), "record 0 was signed at bootstrap");
    t.record(Entry::new(Event::Init));
    let h = t.checkpoint().unwrap();
    assert_eq!(h.next_seq, 2);
    assert!(t.checkpoint().is_none());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("{\"head\"")).count(), 2);
    assert_eq!(verify(text.lines()).unwrap().records, 2);
    let (mem, _) = log(&f, 1);
    assert!(mem.checkpoint().is_none(), "no local file: heads are signed at fetch");
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

#[test]
fn memory_is_bounded_and_evicted_records_show_as_removed() {
    let f = fixture();
    let t = booted(&f, "agent-b", None).with_max_records(3);
    for step in 0..6 {
        t.record(Entry { step: Some(step), ..Entry::new(Event::Process) });
    }
    assert_eq!(t.oldest_retained(), 4);
    let seqs = |v: &[String]| v.iter().map(|l| serde_json::from_str::<Record>(l).unwrap().seq).collect::<Vec<_>>();
    let all = t.fetch(0, usize::MAX);
    assert_eq!(seqs(&all.records), [0, 4, 5, 6], "record 0 is kept for the whole boot");
    assert_eq!(all.head.next_seq, 7);
    assert_eq!(seqs(&t.fetch(2, 10).records), [4, 5, 6]);
    assert_eq!(seqs(&t.fetch(5, 10).records), [5, 6]);
    assert_eq!(seqs(&t.fetch(0, 2).records), [0, 4]);
    let mut lines = all.records.clone();
    lines.push(HeadLine { head: all.head }.to_line());
    assert_eq!(run(&lines).unwrap_err(), AuditError::Removed { seq: 1 });
}

#[test]
fn memory_budget_in_bytes_evicts_oldest_and_keeps_the_newest() {
    let f = fixture();
    let one = {
        let t = booted(&f, "agent-b", None);
        t.record(Entry { step: Some(0), ..Entry::new(Event::Process) });
        t.held_bytes()
    };
    assert!(one > 200, "a record costs its line plus overhead: {one}");
    // Room for three records of this size (same agent name and fields).
    let t = booted(&f, "agent-b", None).with_max_bytes(3 * one + one / 2);
    for step in 0..10 {
        t.record(Entry { step: Some(step), ..Entry::new(Event::Process) });
        assert!(t.held_bytes() <= 3 * one + one / 2 + 8, "over budget after step {step}: {}", t.held_bytes());
    }
    assert_eq!(t.oldest_retained(), 8, "records 1..=7 evicted, 8..=10 kept");
    let seqs: Vec<u64> =
        t.fetch(0, usize::MAX).records.iter().map(|l| serde_json::from_str::<Record>(l).unwrap().seq).collect();
    assert_eq!(seqs, [0, 8, 9, 10]);

    // A budget smaller than one record still keeps the newest one (and record 0).
    let t = booted(&f, "agent-b", None).with_max_bytes(1);
    for step in 0..3 {
        t.record(Entry { step: Some(step), ..Entry::new(Event::Process) });
    }
    assert_eq!(t.oldest_retained(), 3);
    assert_eq!(t.fetch(0, usize::MAX).records.len(), 2);
}
