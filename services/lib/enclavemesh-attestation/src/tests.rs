//! Unit tests: each one exercises a way a document can be wrong and checks the typed error.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use sha2::{Digest, Sha256, Sha384};

use crate::document::{decode_cose, sign_document};
use crate::*;

const PCR0: [u8; 48] = [0xab; 48];

fn sim_with(dir: &Path, m: SimulatedMeasurements) -> SimulatedNsm {
    SimulatedNsm::new(dir, m).unwrap()
}

fn sim() -> (tempfile::TempDir, SimulatedNsm) {
    let dir = tempfile::tempdir().unwrap();
    let nsm = sim_with(dir.path(), SimulatedMeasurements::from_pcr0(PCR0));
    (dir, nsm)
}

fn verifier_for(nsm: &SimulatedNsm) -> Verifier {
    Verifier::new(TrustAnchor::Der(nsm.dev_ca().root_der().to_vec()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn simulated_document_verifies_and_round_trips_every_field() {
    let (_dir, nsm) = sim();
    let before = SystemTime::now();
    let public_key = vec![0x30; 300];
    let cose = nsm.attestation(Some(b"user data"), Some(b"nonce-123"), Some(&public_key)).unwrap();

    // Envelope shape exactly as the NSM emits it.
    assert_eq!(cose[0], 0x84, "untagged 4-element array");
    assert_eq!(&cose[1..6], &[0x44, 0xa1, 0x01, 0x38, 0x22], "protected header = {{1: -35}}");
    assert_eq!(decode_cose(&cose).unwrap().signature.len(), 96, "raw r||s signature");

    let doc =
        verifier_for(&nsm).expect_nonce(b"nonce-123".to_vec()).expect_pcr(0, PCR0.to_vec()).verify(&cose).unwrap();
    assert!(doc.module_id.starts_with("i-sim-enc"));
    assert_eq!(doc.module_id, nsm.module_id());
    assert_eq!(doc.digest, "SHA384");
    let before_ms = before.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(doc.timestamp_ms >= before_ms && doc.timestamp_ms < before_ms + 10_000);
    assert_eq!(doc.pcrs.len(), 16);
    assert_eq!(doc.pcr(0), Some(&PCR0[..]));
    assert_eq!(doc.pcr(1).unwrap(), &Sha384::digest(b"enclavemesh simulated PCR1: kernel and boot ramfs")[..]);
    assert_eq!(doc.pcr(2).unwrap().len(), 48);
    assert_ne!(doc.pcr(1), doc.pcr(2));
    for i in 3..16 {
        assert_eq!(doc.pcr(i), Some(&[0u8; 48][..]), "PCR{i}");
    }
    assert_eq!(doc.pcr_hex(0).unwrap(), "ab".repeat(48));
    assert!(!doc.is_debug_mode());
    assert_eq!(doc.cabundle.len(), 2);
    assert_eq!(doc.cabundle[0], nsm.dev_ca().root_der());
    assert_eq!(doc.cabundle[1], nsm.dev_ca().intermediate_der());
    let leaf = crate::certs::parse(&doc.certificate).unwrap();
    assert!(crate::certs::subject(&leaf).contains(nsm.module_id()));
    assert_eq!(doc.public_key.as_deref(), Some(&public_key[..]));
    assert_eq!(doc.user_data.as_deref(), Some(&b"user data"[..]));
    assert_eq!(doc.nonce.as_deref(), Some(&b"nonce-123"[..]));
    assert_eq!(AttestationDocument::parse_unverified(&cose).unwrap(), doc);

    // Tag 18 is accepted too.
    let mut tagged = vec![0xd2];
    tagged.extend_from_slice(&cose);
    assert_eq!(verifier_for(&nsm).verify(&tagged).unwrap(), doc);
}

#[test]
fn absent_optional_fields_are_null_and_round_trip_as_none() {
    let (_dir, nsm) = sim();
    let cose = nsm.attestation(None, None, None).unwrap();
    let doc = verifier_for(&nsm).verify(&cose).unwrap();
    assert_eq!((doc.public_key, doc.user_data, doc.nonce), (None, None, None));
}

#[test]
fn wrong_root_is_untrusted_chain() {
    let (_dir, nsm) = sim();
    let cose = nsm.attestation(None, None, None).unwrap();
    let err = Verifier::new(TrustAnchor::AwsNitroRootG1).verify(&cose).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedChain(_)), "{err}");
    assert!(err.to_string().contains("aws.nitro-enclaves"), "names the pinned root: {err}");
    assert_eq!(err.kind(), "untrusted_chain");

    let (_dir2, other) = sim();
    let err = verifier_for(&other).verify(&cose).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedChain(_)), "{err}");
}

#[test]
fn flipped_payload_or_signature_byte_is_bad_signature() {
    let (_dir, nsm) = sim();
    let cose = nsm.attestation(Some(b"hello"), None, None).unwrap();
    let verifier = verifier_for(&nsm);

    let mut tampered = cose.clone();
    let at = find(&tampered, &PCR0).unwrap();
    tampered[at + 5] ^= 0x01;
    assert_eq!(verifier.verify(&tampered).unwrap_err(), VerifyError::BadSignature);

    let mut tampered = cose.clone();
    let at = find(&tampered, b"hello").unwrap();
    tampered[at] = b'j';
    assert_eq!(verifier.verify(&tampered).unwrap_err(), VerifyError::BadSignature);

    let mut tampered = cose.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    assert_eq!(verifier.verify(&tampered).unwrap_err(), VerifyError::BadSignature);
}

#[test]
fn document_older_than_max_age_is_stale() {
    let (_dir, nsm) = sim();
    let cose = nsm.attestation(None, None, None).unwrap();
    let later = SystemTime::now() + Duration::from_secs(6 * 60);
    match verifier_for(&nsm).verify_at(&cose, later).unwrap_err() {
        VerifyError::Stale { age_ms, max_ms } => {
            assert!((360_000..370_000).contains(&age_ms), "{age_ms}");
            assert_eq!(max_ms, 300_000);
        }
        other => panic!("expected Stale, got {other}"),
    }
    verifier_for(&nsm).max_age(Duration::from_secs(10 * 60)).verify_at(&cose, later).unwrap();
}

#[test]
fn document_from_the_future_is_refused() {
    let (_dir, nsm) = sim();
    nsm.attestation(None, None, None).unwrap(); // issues the leaf now
    let now = SystemTime::now();
    let cose = nsm.attestation_at(None, None, None, now + Duration::from_secs(120)).unwrap();
    match verifier_for(&nsm).verify_at(&cose, now).unwrap_err() {
        VerifyError::FromFuture { ahead_ms, max_skew_ms } => {
            assert!((119_000..121_000).contains(&ahead_ms), "{ahead_ms}");
            assert_eq!(max_skew_ms, 30_000);
        }
        other => panic!("expected FromFuture, got {other}"),
    }
    // Within the skew it passes.
    let cose = nsm.attestation_at(None, None, None, now + Duration::from_secs(10)).unwrap();
    verifier_for(&nsm).verify_at(&cose, now).unwrap();
}

#[test]
fn expired_leaf_certificate_is_not_valid_at() {
    let (_dir, nsm) = sim();
    let cose = nsm.attestation(None, None, None).unwrap();
    let later = SystemTime::now() + Duration::from_secs(4 * 3600);
    let err = verifier_for(&nsm).max_age(Duration::from_secs(24 * 3600)).verify_at(&cose, later).unwrap_err();
    match &err {
        VerifyError::CertificateNotValidAt { subject, not_before, not_after, at } => {
            assert!(subject.contains(nsm.module_id()), "{subject}");
            assert!(not_before < not_after && not_after < at, "{not_before} {not_after} {at}");
        }
        other => panic!("expected CertificateNotValidAt, got {other}"),
    }
    assert_eq!(err.kind(), "certificate_not_valid_at");
}

#[test]
fn wrong_or_missing_nonce_is_refused() {
    let (_dir, nsm) = sim();
    let cose = nsm.attestation(None, Some(b"n1"), None).unwrap();
    assert_eq!(verifier_for(&nsm).expect_nonce(b"n2".to_vec()).verify(&cose).unwrap_err(), VerifyError::NonceMismatch);
    let cose = nsm.attestation(None, None, None).unwrap();
    assert_eq!(verifier_for(&nsm).expect_nonce(b"n1".to_vec()).verify(&cose).unwrap_err(), VerifyError::NonceMismatch);
}

#[test]
fn wrong_expected_pcr0_names_both_values() {
    let (_dir, nsm) = sim();
    let cose = nsm.attestation(None, None, None).unwrap();
    let err = verifier_for(&nsm).expect_pcr(0, vec![0x11; 48]).verify(&cose).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VerifyError::PcrMismatch { index: 0, .. }), "{err}");
    assert!(text.contains(&"11".repeat(48)), "{text}");
    assert!(text.contains(&"ab".repeat(48)), "{text}");
    // An expected PCR the document lacks.
    let err = verifier_for(&nsm).expect_pcr(20, vec![0; 48]).verify(&cose).unwrap_err();
    assert!(err.to_string().contains("<absent>"), "{err}");
}

#[test]
fn debug_mode_refused_by_default_and_allowed_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let nsm = sim_with(dir.path(), SimulatedMeasurements::from_pcr0(PCR0).with_debug_mode(true));
    assert_eq!(nsm.describe_pcr(0).unwrap(), vec![0; 48]);
    let cose = nsm.attestation(None, None, None).unwrap();
    assert_eq!(verifier_for(&nsm).verify(&cose).unwrap_err(), VerifyError::DebugMode);
    let doc = verifier_for(&nsm).allow_debug(true).verify(&cose).unwrap();
    assert!(doc.is_debug_mode());
    assert!(doc.pcrs.values().all(|v| v.iter().all(|b| *b == 0)));
}

#[test]
fn garbage_truncated_and_huge_inputs_give_typed_errors() {
    let (_dir, nsm) = sim();
    let cose = nsm.attestation(Some(&[7; 100]), Some(&[8; 32]), None).unwrap();
    let v = verifier_for(&nsm);

    assert!(matches!(v.verify(b"").unwrap_err(), VerifyError::Malformed(_)));
    assert!(matches!(v.verify(b"not cbor at all \xff\xff").unwrap_err(), VerifyError::Malformed(_)));
    assert!(matches!(v.verify(&[0xa0]).unwrap_err(), VerifyError::Malformed(_)));
    // Claimed lengths far beyond the input must not allocate or panic.
    assert!(matches!(
        v.verify(&[0x84, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap_err(),
        VerifyError::Malformed(_)
    ));
    assert!(matches!(
        v.verify(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap_err(),
        VerifyError::Malformed(_)
    ));
    // Deep nesting must not overflow the stack.
    assert!(matches!(v.verify(&[0x81; 10_000]).unwrap_err(), VerifyError::Malformed(_)));

    let huge = vec![0u8; MAX_DOCUMENT_BYTES + 1];
    assert_eq!(
        v.verify(&huge).unwrap_err(),
        VerifyError::TooLarge { len: MAX_DOCUMENT_BYTES + 1, limit: MAX_DOCUMENT_BYTES }
    );
    assert_eq!(AttestationDocument::parse_unverified(&huge).unwrap_err().kind(), "too_large");

    for len in 0..cose.len() {
        let err = v.verify(&cose[..len]).unwrap_err();
        assert!(matches!(err, VerifyError::Malformed(_) | VerifyError::MissingField(_)), "prefix {len}: {err}");
    }

    // Deterministic single-byte mutations anywhere: always an error, never a panic.
    let mut state: u64 = 0x9e3779b97f4a7c15;
    // (200 only: ECDSA verification is ~20 ms per signature in unoptimised test builds.)
    for _ in 0..200 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let pos = (state >> 33) as usize % cose.len();
        let bit = 1u8 << ((state >> 20) % 8);
        let mut m = cose.clone();
        m[pos] ^= bit;
        assert!(v.verify(&m).is_err(), "mutation at {pos} accepted");
    }
}

#[test]
fn payload_missing_a_field_is_missing_field() {
    let (_dir, nsm) = sim();
    let cose = nsm.attestation(None, None, None).unwrap();
    let mut doc = decode_cose(&cose).unwrap().document;
    doc.module_id = String::new();
    let forged = sign_document(&doc, &nsm.leaf_key()).unwrap();
    assert!(matches!(verifier_for(&nsm).verify(&forged).unwrap_err(), VerifyError::Malformed(_)));
}

#[test]
fn forged_chain_with_same_subject_names_is_untrusted() {
    let (_dir_a, genuine) = sim();
    let (_dir_b, forger) = sim();
    assert_eq!(
        crate::certs::parse(genuine.dev_ca().root_der()).unwrap().tbs_certificate.subject,
        crate::certs::parse(forger.dev_ca().root_der()).unwrap().tbs_certificate.subject
    );
    let verifier = verifier_for(&genuine);

    // 1. A document entirely from the forger's CA.
    let forged = forger.attestation(None, None, None).unwrap();
    assert!(matches!(verifier.verify(&forged).unwrap_err(), VerifyError::UntrustedChain(_)));

    // 2. The forger puts the genuine root first (byte-equal), keeps its own intermediate.
    let mut doc = decode_cose(&forged).unwrap().document;
    doc.cabundle[0] = genuine.dev_ca().root_der().to_vec();
    let forger_key = forger.leaf_key();
    let forged = sign_document(&doc, &forger_key).unwrap();
    let err = verifier.verify(&forged).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedChain(_)), "{err}");
    assert!(err.to_string().contains("does not verify"), "{err}");

    // 3. Genuine root and intermediate, but a leaf the forger issued with its own intermediate key.
    doc.cabundle = vec![genuine.dev_ca().root_der().to_vec(), genuine.dev_ca().intermediate_der().to_vec()];
    let forged = sign_document(&doc, &forger_key).unwrap();
    let err = verifier.verify(&forged).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedChain(_)), "{err}");
}

#[test]
fn dev_ca_created_concurrently_is_one_ca() {
    let dir = tempfile::tempdir().unwrap();
    let dev_dir = Arc::new(dir.path().join("nested").join(".dev"));
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (dev_dir, barrier) = (dev_dir.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                DevCa::load_or_create(&dev_dir).unwrap().root_der().to_vec()
            })
        })
        .collect();
    let roots: Vec<Vec<u8>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "all threads see the same root");
    assert_eq!(std::fs::read(DevCa::root_path(&dev_dir)).unwrap(), roots[0]);
    let leftovers: Vec<_> = std::fs::read_dir(&*dev_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("dev-ca")], "no temporary directories left");
    assert_eq!(DevCa::load_or_create(&dev_dir).unwrap().root_der(), roots[0]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dev_dir.join("dev-ca/intermediate.key.der")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "private key not readable by others");
}

#[test]
fn corrupted_dev_ca_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    DevCa::load_or_create(dir.path()).unwrap();
    std::fs::write(dir.path().join("dev-ca/intermediate.key.der"), b"junk").unwrap();
    let err = DevCa::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, NsmError::DevCa { .. }), "{err}");
    assert!(err.to_string().contains("delete that directory"), "{err}");
}

#[test]
fn aws_root_fingerprint_and_pem_match() {
    assert_eq!(
        hex::encode_upper(Sha256::digest(AWS_NITRO_ROOT_G1_DER)),
        "641A0321A3E244EFE456463195D606317ED7CDCC3C1756E09893F3C68F79BB5B"
    );
    assert_eq!(TrustAnchor::from_bytes(AWS_NITRO_ROOT_G1_PEM.as_bytes()).unwrap(), TrustAnchor::AwsNitroRootG1);
    assert_eq!(TrustAnchor::AwsNitroRootG1.der(), AWS_NITRO_ROOT_G1_DER);
    let cert = crate::certs::parse(AWS_NITRO_ROOT_G1_DER).unwrap();
    assert!(crate::certs::subject(&cert).contains("CN=aws.nitro-enclaves"));
}

#[test]
fn trust_anchor_from_der_and_pem_files() {
    let (dir, nsm) = sim();
    let root = nsm.dev_ca().root_der().to_vec();
    let der_path = DevCa::root_path(dir.path());
    assert_eq!(TrustAnchor::from_file(&der_path).unwrap(), TrustAnchor::Der(root.clone()));
    let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &root).unwrap();
    let pem_path = dir.path().join("root.pem");
    std::fs::write(&pem_path, format!("\n{pem}")).unwrap();
    assert_eq!(TrustAnchor::from_file(&pem_path).unwrap(), TrustAnchor::Der(root));
    let bad_path = dir.path().join("bad.pem");
    std::fs::write(&bad_path, b"hello").unwrap();
    let err = TrustAnchor::from_file(&bad_path).unwrap_err();
    assert_eq!(err.kind(), "bad_trust_anchor");
    assert!(err.to_string().contains("bad.pem"), "{err}");
    assert_eq!(TrustAnchor::from_file(&dir.path().join("missing")).unwrap_err().kind(), "bad_trust_anchor");
}

#[test]
fn nitro_nsm_outside_an_enclave_says_what_to_do() {
    if Path::new(NSM_DEVICE).exists() {
        return; // running inside a real enclave
    }
    let err = NitroNsm::open().unwrap_err();
    assert_eq!(
        err.to_string(),
        "/dev/nsm not found: not running inside a Nitro Enclave (use --nsm simulated for dev mode)"
    );
}

#[test]
fn oversized_request_fields_are_refused_with_the_field_named() {
    let (_dir, nsm) = sim();
    nsm.attestation(Some(&[0; MAX_FIELD_BYTES]), Some(&[0; MAX_FIELD_BYTES]), Some(&[0; MAX_FIELD_BYTES])).unwrap();
    let err = nsm.attestation(None, Some(&[0; MAX_FIELD_BYTES + 1]), None).unwrap_err();
    assert!(matches!(err, NsmError::InputTooLarge { field: "nonce", len: 1025, limit: 1024 }), "{err}");
}

#[test]
fn maximal_document_fits_the_size_bound() {
    let (_dir, nsm) = sim();
    let big = vec![0xff; MAX_FIELD_BYTES];
    let cose = nsm.attestation(Some(&big), Some(&big), Some(&big)).unwrap();
    assert!(cose.len() < MAX_DOCUMENT_BYTES, "{}", cose.len());
    verifier_for(&nsm).verify(&cose).unwrap();
}

#[test]
fn describe_pcr_and_measurements() {
    let (_dir, nsm) = sim();
    assert_eq!(nsm.kind(), "simulated");
    assert_eq!(nsm.describe_pcr(0).unwrap(), PCR0.to_vec());
    assert_eq!(nsm.describe_pcr(31).unwrap(), vec![0; 48]);
    assert!(nsm.describe_pcr(32).is_err());

    let m = SimulatedMeasurements::from_pcr0_hex(&"AB".repeat(48)).unwrap();
    assert_eq!(m, SimulatedMeasurements::from_pcr0(PCR0));
    assert!(SimulatedMeasurements::from_pcr0_hex("abc").is_err());
    assert!(SimulatedMeasurements::from_pcr0_hex(&"ab".repeat(47)).is_err());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bin");
    std::fs::write(&file, b"agent binary").unwrap();
    let expected: [u8; 48] = Sha384::digest(b"agent binary").into();
    assert_eq!(measure_file(&file).unwrap(), expected);
    assert_eq!(SimulatedMeasurements::from_binary(&file).unwrap().pcr0, expected);
    assert!(measure_file(&dir.path().join("nope")).is_err());
}

/// A real attestation document from an AWS Nitro Enclave (eu-west-1, 2025-09-09), taken from a
/// public open-source verifier's test fixtures. Proves format fidelity against real hardware.
const REAL_SAMPLE_B64: &str = include_str!("../tests/data/nitro_sample_eu_west_1_2025-09-09.b64");
const REAL_SAMPLE_PCR0: &str =
    "94b74422daddb8f503fcd69df064c7cde5d053001b9cd153c75ec34484283496a37e89c7287a00f467759a6863362b60";

fn real_sample() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(REAL_SAMPLE_B64.trim()).unwrap()
}

#[test]
fn real_nitro_document_verifies_against_the_aws_root() {
    let cose = real_sample();
    let doc = AttestationDocument::parse_unverified(&cose).unwrap();
    assert_eq!(doc.timestamp_ms, 1_757_440_781_958);
    assert_eq!(doc.pcrs.len(), 16);
    assert_eq!(doc.pcr_hex(0).unwrap(), REAL_SAMPLE_PCR0);
    assert_eq!(doc.cabundle[0], AWS_NITRO_ROOT_G1_DER);
    assert!(doc.module_id.starts_with("i-"));
    assert!(doc.public_key.is_some() && doc.user_data.is_none() && doc.nonce.is_none());

    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(doc.timestamp_ms);
    let verified = Verifier::new(TrustAnchor::AwsNitroRootG1)
        .expect_pcr(0, hex::decode(REAL_SAMPLE_PCR0).unwrap())
        .verify_at(&cose, at)
        .unwrap();
    assert_eq!(verified, doc);

    // Same document against the dev root, today, or altered: refused.
    let (_dir, nsm) = sim();
    assert_eq!(verifier_for(&nsm).verify_at(&cose, at).unwrap_err().kind(), "untrusted_chain");
    let now = SystemTime::UNIX_EPOCH + Duration::from_millis(doc.timestamp_ms) + Duration::from_secs(30 * 24 * 3600);
    assert_eq!(
        Verifier::new(TrustAnchor::AwsNitroRootG1).verify_at(&cose, now).unwrap_err().kind(),
        "certificate_not_valid_at"
    );
    let mut tampered = cose.clone();
    let pos = find(&tampered, &hex::decode(REAL_SAMPLE_PCR0).unwrap()).unwrap();
    tampered[pos] ^= 1;
    assert_eq!(
        Verifier::new(TrustAnchor::AwsNitroRootG1).verify_at(&tampered, at).unwrap_err(),
        VerifyError::BadSignature
    );
}

#[test]
fn every_error_kind_is_distinct_and_display_names_values() {
    let errors = [
        VerifyError::TooLarge { len: 20000, limit: 16384 },
        VerifyError::Malformed("x".into()),
        VerifyError::MissingField("pcrs"),
        VerifyError::BadSignature,
        VerifyError::UntrustedChain("y".into()),
        VerifyError::CertificateNotValidAt {
            subject: "CN=a".into(),
            not_before: "b".into(),
            not_after: "c".into(),
            at: "d".into(),
        },
        VerifyError::Stale { age_ms: 400000, max_ms: 300000 },
        VerifyError::FromFuture { ahead_ms: 99000, max_skew_ms: 30000 },
        VerifyError::NonceMismatch,
        VerifyError::PcrMismatch { index: 0, expected_hex: "aa".into(), actual_hex: "bb".into() },
        VerifyError::DebugMode,
        VerifyError::BadTrustAnchor { path: "/p".into(), reason: "r".into() },
    ];
    let kinds: std::collections::BTreeSet<_> = errors.iter().map(VerifyError::kind).collect();
    assert_eq!(kinds.len(), errors.len());
    assert!(errors[0].to_string().contains("20000") && errors[0].to_string().contains("16384"));
    assert!(errors[6].to_string().contains("400000") && errors[6].to_string().contains("300000"));
    assert!(errors[7].to_string().contains("99000"));
}

#[test]
fn a_signed_simulated_image_reports_pcr8_of_its_certificate_and_the_file_forms_agree() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(dir.path()).unwrap();
    let cert = ca.issue_tls_server(&["signer.example"], &[]).unwrap().chain_der[0].clone();
    let nsm = sim_with(dir.path(), SimulatedMeasurements::from_pcr0(PCR0).signed_with(&cert));
    let doc = verifier_for(&nsm).verify(&nsm.attestation(None, None, None).unwrap()).unwrap();
    // SHA384(0^48 || SHA384(cert DER)), as the hypervisor extends PCR8.
    let mut ext = vec![0u8; 48];
    ext.extend(Sha384::digest(&cert));
    assert_eq!(doc.pcr(8), Some(&Sha384::digest(&ext)[..]));
    assert_eq!(doc.pcr(0), Some(&PCR0[..]), "signing does not change PCR0");
    let (_d, unsigned) = sim();
    let plain = verifier_for(&unsigned).verify(&unsigned.attestation(None, None, None).unwrap()).unwrap();
    assert_eq!(plain.pcr(8), Some(&[0u8; 48][..]), "an unsigned image has a zero PCR8");

    // PEM and DER files read to the same certificate; anything else is refused.
    let der_path = dir.path().join("cert.der");
    std::fs::write(&der_path, &cert).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&cert);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem_path = dir.path().join("cert.pem");
    std::fs::write(
        &pem_path,
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n")),
    )
    .unwrap();
    assert_eq!(read_signing_certificate(&der_path).unwrap(), cert);
    assert_eq!(read_signing_certificate(&pem_path).unwrap(), cert);
    std::fs::write(&der_path, b"not a certificate").unwrap();
    let e = read_signing_certificate(&der_path).unwrap_err().to_string();
    assert!(e.contains("not an X.509 certificate") && e.contains("cert.der"), "{e}");
}

// ------------------------------------------------- QEMU's unsigned documents (test mode)

/// A document shaped exactly as QEMU's virtio-nsm emits it: protected header {1: -1},
/// empty unprotected header, 64 zero bytes as signature, certificate and cabundle[0].
fn qemu_document(pcr0: [u8; 48], nonce: Option<&[u8]>, timestamp_ms: u64, signature_byte: u8) -> Vec<u8> {
    let doc = AttestationDocument {
        module_id: "i-qemu-agent".into(),
        digest: "SHA384".into(),
        timestamp_ms,
        pcrs: (0..16u16).map(|i| (i, if i == 0 { pcr0.to_vec() } else { vec![0; 48] })).collect(),
        certificate: vec![0; 64],
        cabundle: vec![vec![0; 64]],
        public_key: Some(vec![0x30; 300]),
        user_data: None,
        nonce: nonce.map(<[u8]>::to_vec),
    };
    let payload = crate::document::encode_payload(&doc).unwrap();
    let cose = ciborium::Value::Array(vec![
        ciborium::Value::Bytes(vec![0xa1, 0x01, 0x20]),
        ciborium::Value::Map(vec![]),
        ciborium::Value::Bytes(payload),
        ciborium::Value::Bytes(vec![signature_byte; 64]),
    ]);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&cose, &mut out).unwrap();
    out
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[test]
fn qemu_mode_accepts_qemus_unsigned_shape_and_still_checks_pcrs_nonce_age_and_debug() {
    let v = Verifier::new(TrustAnchor::QemuUnsigned).expect_nonce(b"n-1".to_vec()).expect_pcr(0, PCR0.to_vec());
    let doc = v.verify(&qemu_document(PCR0, Some(b"n-1"), now_ms(), 0)).expect("QEMU's shape in QEMU mode");
    assert_eq!(doc.pcr(0), Some(PCR0.as_slice()));
    assert!(matches!(
        v.verify(&qemu_document([0xcd; 48], Some(b"n-1"), now_ms(), 0)),
        Err(VerifyError::PcrMismatch { index: 0, .. })
    ));
    assert!(matches!(v.verify(&qemu_document(PCR0, Some(b"n-2"), now_ms(), 0)), Err(VerifyError::NonceMismatch)));
    assert!(matches!(
        v.verify(&qemu_document(PCR0, Some(b"n-1"), now_ms() - 3_600_000, 0)),
        Err(VerifyError::Stale { .. })
    ));
    let any = Verifier::new(TrustAnchor::QemuUnsigned);
    assert!(matches!(any.verify(&qemu_document([0; 48], None, now_ms(), 0)), Err(VerifyError::DebugMode)));
    // Only the exact shape: a signature that is not all zeros is not QEMU's.
    let e = any.verify(&qemu_document(PCR0, None, now_ms(), 1)).unwrap_err();
    assert!(e.to_string().contains("64 zero bytes"), "{e}");
}

#[test]
fn qemu_documents_are_refused_by_every_other_anchor_and_qemu_mode_refuses_signed_ones() {
    let cose = qemu_document(PCR0, None, now_ms(), 0);
    let (_dir, nsm) = sim();
    for v in [Verifier::new(TrustAnchor::AwsNitroRootG1), verifier_for(&nsm)] {
        let e = v.verify(&cose).unwrap_err();
        assert!(matches!(e, VerifyError::Malformed(_)), "{e:?}");
        assert!(e.to_string().contains("qemu-unsigned"), "names the explicit mode: {e}");
    }
    // The QEMU mode is not a superset: a signed (dev CA) document is not QEMU's shape.
    let signed = nsm.attestation(None, None, None).unwrap();
    assert!(Verifier::new(TrustAnchor::QemuUnsigned).verify(&signed).is_err());
    // Unverified parsing (display only) reads both.
    assert_eq!(AttestationDocument::parse_unverified(&cose).unwrap().module_id, "i-qemu-agent");
    assert_eq!(TrustAnchor::from_arg("qemu-unsigned").unwrap(), TrustAnchor::QemuUnsigned);
    assert_eq!(TrustAnchor::from_arg("aws").unwrap(), TrustAnchor::AwsNitroRootG1);
    assert!(TrustAnchor::QemuUnsigned.describe().contains("qemu-unsigned"));
}
