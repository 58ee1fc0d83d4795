//! Fuzz entry functions: one per cargo-fuzz target in `fuzz/fuzz_targets/`, and the
//! same functions replayed by the stable test `integration-tests/tests/suite/fuzz_replay.rs`
//! (so CI fuzzes a little even where libFuzzer/nightly is unavailable).
//!
//! Each entry takes arbitrary bytes the way the enclave boundary does and checks
//! that the result is a typed error or a value satisfying the boundary's invariants.
//! Any panic (including the `assert!`s below) is a finding.
//!
//! Fixed material: a key ring (`key_id = "fuzz-key"`, versions 1 and 2 with constant
//! TSKs) and a fuzz-only dev CA in `fuzz/seed-dev/dev-ca/`, so seeds in
//! `fuzz/corpus/` (made by [`seeds::write_all`]) are genuine envelopes and documents
//! and the fuzzer starts deep inside the parsers.

use enclavemesh_attestation::{AttestationDocument, TrustAnchor, Verifier, VerifyError};
use enclavemesh_proto::v1::{AttestRequest, InitRequest, ProcessRequest, RevealRequest, SealedEnvelope, StateFrame};
use enclavemesh_proto::{DEFAULT_MAX_MESSAGE_BYTES, DecodeError, decode_bounded};
use enclavemesh_sealing::{Expectation, KeyRing, Limits, OpenError, Tsk};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

pub mod seeds;

/// Key id of the fixed fuzz key ring.
pub const FUZZ_KEY_ID: &str = "fuzz-key";
/// Workflow the fixed expectation names.
pub const FUZZ_WORKFLOW: &str = "wf-fuzz";

/// Directory holding the fuzz-only dev CA (`dev-ca/` inside), committed so seeds
/// and verifier agree; created on first use if missing.
pub fn seed_dev_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../seed-dev")
}
/// Same limits as the agent (enclave-agent service.rs).
const MAX_WORKFLOW_ID_BYTES: usize = 256;
const MAX_ATTEST_FIELD_BYTES: usize = 512;

/// The fixed key ring (versions 1 and 2).
pub fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let mut r = KeyRing::new(FUZZ_KEY_ID);
        r.insert(1, Tsk::from_bytes([0x11; 32])).expect("v1");
        r.insert(2, Tsk::from_bytes([0x22; 32])).expect("v2");
        r
    })
}

fn anchor() -> TrustAnchor {
    static ROOT: OnceLock<TrustAnchor> = OnceLock::new();
    ROOT.get_or_init(|| {
        enclavemesh_attestation::DevCa::load_or_create(&seed_dev_dir()).expect("fuzz dev CA").trust_anchor()
    })
    .clone()
}

/// `envelope_open`: bytes → `SealedEnvelope` (bounded decode) → `open`, against a
/// fixed expectation, against the envelope's own header (so the fuzzer reaches the
/// key lookup and GCM), and under a tight size limit.
pub fn envelope_open(data: &[u8]) {
    let env: SealedEnvelope = match decode_bounded(data, DEFAULT_MAX_MESSAGE_BYTES) {
        Ok(e) => e,
        Err(e) => return check_decode_error(data, e),
    };
    let ring = ring();
    let limits = Limits::default();
    for expect in [
        Expectation { workflow_id: FUZZ_WORKFLOW.into(), step: 0 },
        Expectation { workflow_id: env.workflow_id.clone(), step: env.step },
    ] {
        let r = enclavemesh_sealing::open(ring, &env, &expect, &limits);
        check(&env, &expect, &limits, &r);
        if let Ok(plain) = r {
            // Authentic state: the agent decodes it bounded next.
            let _ = decode_bounded::<StateFrame>(&plain, limits.max_ciphertext_bytes);
            // And any single-bit change of the ciphertext must not open.
            if !env.ciphertext.is_empty() {
                let mut flipped = env.clone();
                let i = data.len() % flipped.ciphertext.len();
                flipped.ciphertext[i] ^= 0x01;
                assert!(enclavemesh_sealing::open(ring, &flipped, &expect, &limits).is_err());
            }
        }
    }
    let tight = Limits { max_ciphertext_bytes: 64 };
    let expect = Expectation { workflow_id: env.workflow_id.clone(), step: env.step };
    let r = enclavemesh_sealing::open(ring, &env, &expect, &tight);
    check(&env, &expect, &tight, &r);
}

fn check<T>(env: &SealedEnvelope, expect: &Expectation, limits: &Limits, r: &Result<T, OpenError>) {
    match r {
        Ok(_) => {
            // Only an envelope for exactly this workflow/step, this key, within the
            // limit can open.
            assert_eq!(env.workflow_id, expect.workflow_id);
            assert_eq!(env.step, expect.step);
            assert_eq!(env.key_id, FUZZ_KEY_ID);
            assert!(env.ciphertext.len() <= limits.max_ciphertext_bytes);
        }
        Err(e) => {
            // Size is checked first, before anything else is looked at.
            if env.ciphertext.len() > limits.max_ciphertext_bytes {
                assert!(matches!(e, OpenError::TooLarge { .. }), "{e:?}");
            }
            let _ = (e.refusal().label(), e.to_string());
        }
    }
}

fn check_decode_error(data: &[u8], e: DecodeError) {
    if let DecodeError::TooLarge { len, limit } = e {
        assert!(len > limit && len == data.len());
    }
    let _ = e.to_string();
}

/// `attestation_verify`: `parse_unverified`, then the verifier pinned to the fuzz
/// root — at the document's own timestamp (so seeds stay "fresh" forever and the
/// fuzzer reaches chain and signature checks), with nonce and PCR expectations, and
/// at the real current time.
pub fn attestation_verify(data: &[u8]) {
    let parsed = AttestationDocument::parse_unverified(data);
    if data.len() > enclavemesh_attestation::MAX_DOCUMENT_BYTES {
        assert!(matches!(parsed, Err(VerifyError::TooLarge { .. })), "{parsed:?}");
    }
    let now = Verifier::new(anchor()).verify(data);
    let Ok(doc) = parsed else {
        // What does not parse cannot verify.
        assert!(now.is_err());
        return;
    };
    let _ = (doc.pcr_hex(0), doc.is_debug_mode());
    let at = UNIX_EPOCH + Duration::from_millis(doc.timestamp_ms);
    let v = Verifier::new(anchor()).verify_at(data, at);
    if let Ok(verified) = &v {
        // The verified view is the parsed one, and never a debug-mode enclave.
        assert_eq!(verified, &doc);
        assert!(!verified.is_debug_mode());
        // A wrong nonce or PCR0 expectation must turn success into a refusal.
        let e = Verifier::new(anchor())
            .expect_nonce(b"fuzz-nonce-never-in-a-seed".to_vec())
            .verify_at(data, at)
            .unwrap_err();
        assert_eq!(e, VerifyError::NonceMismatch);
        let e = Verifier::new(anchor()).expect_pcr(0, vec![0xee; 48]).verify_at(data, at).unwrap_err();
        assert!(matches!(e, VerifyError::PcrMismatch { index: 0, .. }), "{e:?}");
        if let Some(n) = &verified.nonce {
            Verifier::new(anchor()).expect_nonce(n.clone()).verify_at(data, at).expect("own nonce");
        }
    }
    if let Err(e) = &v {
        let _ = (e.kind(), e.to_string());
    }
    // Not the AWS root: a dev-CA document must never verify against production.
    assert!(Verifier::new(TrustAnchor::AwsNitroRootG1).verify_at(data, at).is_err());
}

/// `agent_request_decode`: first byte picks the request type (Init, Process,
/// Reveal, Attest), the rest is decoded bounded like the gRPC layer does, then
/// checked like AgentService does before any logic runs: workflow id, field sizes,
/// and for Process/Reveal the envelope opened against the request's expectation and
/// the sealed `StateFrame` decoded bounded and matched against the header.
pub fn agent_request_decode(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            if let Ok(r) = decode_bounded::<InitRequest>(body, DEFAULT_MAX_MESSAGE_BYTES) {
                let _ = workflow_id_ok(&r.workflow_id);
            }
        }
        1 => {
            if let Ok(r) = decode_bounded::<ProcessRequest>(body, DEFAULT_MAX_MESSAGE_BYTES) {
                open_like_the_agent(&r.workflow_id, r.expected_step, r.state.as_ref());
            }
        }
        2 => {
            if let Ok(r) = decode_bounded::<RevealRequest>(body, DEFAULT_MAX_MESSAGE_BYTES) {
                open_like_the_agent(&r.workflow_id, r.expected_step, r.state.as_ref());
            }
        }
        _ => {
            if let Ok(r) = decode_bounded::<AttestRequest>(body, DEFAULT_MAX_MESSAGE_BYTES) {
                let _ = r.nonce.len() <= MAX_ATTEST_FIELD_BYTES && r.user_data.len() <= MAX_ATTEST_FIELD_BYTES;
            }
        }
    }
}

fn workflow_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_WORKFLOW_ID_BYTES
}

fn open_like_the_agent(workflow_id: &str, step: u64, env: Option<&SealedEnvelope>) {
    if !workflow_id_ok(workflow_id) {
        return;
    }
    let Some(env) = env else { return };
    let limits = Limits::default();
    let expect = Expectation { workflow_id: workflow_id.to_string(), step };
    let r = enclavemesh_sealing::open(ring(), env, &expect, &limits);
    check(env, &expect, &limits, &r);
    if let Ok(plain) = r
        && let Ok(state) = decode_bounded::<StateFrame>(&plain, limits.max_ciphertext_bytes)
    {
        let _ = state.workflow_id == workflow_id && state.step == step;
    }
}

/// Target names, as in `fuzz/Cargo.toml` and `fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 3] = ["envelope_open", "attestation_verify", "agent_request_decode"];

/// Runs the entry function of `target` on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "envelope_open" => envelope_open(data),
        "attestation_verify" => attestation_verify(data),
        "agent_request_decode" => agent_request_decode(data),
        other => panic!("unknown fuzz target {other}"),
    }
}
