//! Behaviour tests of the public API: each one fails if the property it names breaks.

use std::collections::HashSet;

use prost::Message;

use crate::*;
use enclavemesh_proto::Refusal;

const KEY_ID: &str = "arn:aws:kms:us-east-1:111122223333:key/test";

fn ring_v1() -> KeyRing {
    let mut ring = KeyRing::new(KEY_ID);
    ring.insert(1, Tsk::from_bytes([0x11; 32])).unwrap();
    ring
}

fn header() -> SealHeader {
    SealHeader { workflow_id: "wf-1".into(), step: 3, agent: "agent-a".into() }
}

fn expect() -> Expectation {
    Expectation { workflow_id: "wf-1".into(), step: 3 }
}

fn open_default(ring: &KeyRing, env: &SealedEnvelope) -> Result<Plaintext, OpenError> {
    open(ring, env, &expect(), &Limits::default())
}

#[test]
fn round_trip() {
    let ring = ring_v1();
    for len in [0usize, 1, 15, 16, 17, 1000, 70_000] {
        let pt: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let env = seal(&ring, &header(), &pt).unwrap();
        assert_eq!(env.format_version, 1);
        assert_eq!(env.key_id, KEY_ID);
        assert_eq!(env.key_version, 1);
        assert_eq!(env.workflow_id, "wf-1");
        assert_eq!(env.step, 3);
        assert_eq!(env.agent, "agent-a");
        assert_eq!(env.nonce.len(), 12);
        assert_eq!(env.ciphertext.len(), len + 16);
        if len >= 16 {
            assert_ne!(&env.ciphertext[..len], &pt[..], "ciphertext must not be the plaintext");
        }
        assert_eq!(open_default(&ring, &env).unwrap().as_slice(), pt.as_slice());
    }
}

#[test]
fn survives_protobuf_round_trip() {
    let ring = ring_v1();
    let env = seal(&ring, &header(), b"state").unwrap();
    let decoded: SealedEnvelope = enclavemesh_proto::decode_bounded(&env.encode_to_vec(), 1 << 20).unwrap();
    assert_eq!(open_default(&ring, &decoded).unwrap().as_slice(), b"state");
}

#[test]
fn flipped_ciphertext_or_tag_bit_is_tampered() {
    let ring = ring_v1();
    let env = seal(&ring, &header(), b"balance=100").unwrap();
    for i in 0..env.ciphertext.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = env.clone();
            bad.ciphertext[i] ^= bit;
            assert_eq!(open_default(&ring, &bad).unwrap_err(), OpenError::Tampered, "byte {i}");
        }
    }
}

#[test]
fn edited_nonce_is_tampered() {
    let ring = ring_v1();
    let env = seal(&ring, &header(), b"x").unwrap();
    let mut bad = env.clone();
    bad.nonce[11] ^= 1;
    assert_eq!(open_default(&ring, &bad).unwrap_err(), OpenError::Tampered);
}

#[test]
fn edited_agent_is_tampered() {
    let ring = ring_v1();
    let mut env = seal(&ring, &header(), b"x").unwrap();
    env.agent = "agent-b".into();
    assert_eq!(open_default(&ring, &env).unwrap_err(), OpenError::Tampered);
}

#[test]
fn edited_workflow_or_step_is_refused_either_way() {
    let ring = ring_v1();
    let env = seal(&ring, &header(), b"x").unwrap();

    // Opener expects the original: the edited header is refused as misrouted.
    let mut wf = env.clone();
    wf.workflow_id = "wf-2".into();
    assert!(matches!(open_default(&ring, &wf).unwrap_err(), OpenError::Replayed { .. }));
    // Opener expects what the edited header claims: authentication catches it
    // (AAD and subkey both bind the workflow id).
    let e = Expectation { workflow_id: "wf-2".into(), step: 3 };
    assert_eq!(open(&ring, &wf, &e, &Limits::default()).unwrap_err(), OpenError::Tampered);

    let mut st = env.clone();
    st.step = 4;
    assert!(matches!(open_default(&ring, &st).unwrap_err(), OpenError::Replayed { .. }));
    let e = Expectation { workflow_id: "wf-1".into(), step: 4 };
    assert_eq!(open(&ring, &st, &e, &Limits::default()).unwrap_err(), OpenError::Tampered);
}

#[test]
fn edited_key_version_is_refused() {
    let mut ring = ring_v1();
    ring.insert(2, Tsk::from_bytes([0x22; 32])).unwrap();
    let env = seal(&ring, &header(), b"x").unwrap();
    assert_eq!(env.key_version, 2);
    // Held version, wrong key: authentication fails.
    let mut bad = env.clone();
    bad.key_version = 1;
    assert_eq!(open_default(&ring, &bad).unwrap_err(), OpenError::Tampered);
    // Unheld version.
    bad.key_version = 7;
    assert_eq!(open_default(&ring, &bad).unwrap_err(), OpenError::UnknownKeyVersion { version: 7, held: vec![1, 2] });
}

#[test]
fn edited_key_id_is_refused() {
    let ring = ring_v1();
    let mut env = seal(&ring, &header(), b"x").unwrap();
    env.key_id = "other-key".into();
    assert_eq!(
        open_default(&ring, &env).unwrap_err(),
        OpenError::KeyIdMismatch { envelope: "other-key".into(), ring: KEY_ID.into() }
    );
    // Same TSK bytes under a ring that claims the edited key id: AAD catches it.
    let mut other = KeyRing::new("other-key");
    other.insert(1, Tsk::from_bytes([0x11; 32])).unwrap();
    assert_eq!(open_default(&other, &env).unwrap_err(), OpenError::Tampered);
}

#[test]
fn edited_format_version_is_unsupported() {
    let ring = ring_v1();
    let mut env = seal(&ring, &header(), b"x").unwrap();
    for v in [0, 2, u32::MAX] {
        env.format_version = v;
        assert_eq!(open_default(&ring, &env).unwrap_err(), OpenError::UnsupportedFormat(v));
    }
}

#[test]
fn truncated_nonce_or_ciphertext() {
    let ring = ring_v1();
    let env = seal(&ring, &header(), b"x").unwrap();
    let mut short_nonce = env.clone();
    short_nonce.nonce.truncate(11);
    assert_eq!(
        open_default(&ring, &short_nonce).unwrap_err(),
        OpenError::Truncated { nonce_len: 11, ciphertext_len: 17 }
    );
    let mut long_nonce = env.clone();
    long_nonce.nonce.push(0);
    assert!(matches!(open_default(&ring, &long_nonce).unwrap_err(), OpenError::Truncated { nonce_len: 13, .. }));
    let mut short_ct = env.clone();
    short_ct.ciphertext.truncate(15);
    assert_eq!(open_default(&ring, &short_ct).unwrap_err(), OpenError::Truncated { nonce_len: 12, ciphertext_len: 15 });
    // Exactly a tag (empty plaintext) but cut by one byte of real ciphertext: tampered.
    let mut cut = env.clone();
    cut.ciphertext.remove(0);
    assert_eq!(open_default(&ring, &cut).unwrap_err(), OpenError::Tampered);
}

#[test]
fn wrong_workflow_or_step_is_replayed() {
    let ring = ring_v1();
    let env = seal(&ring, &header(), b"x").unwrap();
    let e = Expectation { workflow_id: "wf-other".into(), step: 3 };
    assert_eq!(
        open(&ring, &env, &e, &Limits::default()).unwrap_err(),
        OpenError::Replayed {
            sealed_for_workflow: "wf-1".into(),
            sealed_for_step: 3,
            expected_workflow: "wf-other".into(),
            expected_step: 3,
        }
    );
    let e = Expectation { workflow_id: "wf-1".into(), step: 4 };
    assert!(matches!(
        open(&ring, &env, &e, &Limits::default()).unwrap_err(),
        OpenError::Replayed { sealed_for_step: 3, expected_step: 4, .. }
    ));
}

#[test]
fn oversize_is_refused_before_anything_else() {
    let ring = ring_v1();
    let env = seal(&ring, &header(), &[0u8; 100]).unwrap();
    let limits = Limits { max_ciphertext_bytes: 115 };
    assert_eq!(open(&ring, &env, &expect(), &limits).unwrap_err(), OpenError::TooLarge { len: 116, limit: 115 });
    // Exactly at the limit is fine.
    let limits = Limits { max_ciphertext_bytes: 116 };
    assert!(open(&ring, &env, &expect(), &limits).is_ok());
    // Size is checked first, even when every other check would also fail.
    let junk = SealedEnvelope { format_version: 9, ciphertext: vec![0; 2 << 20], ..Default::default() };
    assert!(matches!(open_default(&ring, &junk).unwrap_err(), OpenError::TooLarge { limit: 1048576, .. }));
    assert_eq!(Limits::default().max_ciphertext_bytes, 1 << 20);
}

#[test]
fn rotation_keeps_old_envelopes_until_retired() {
    let mut ring = ring_v1();
    let old = seal(&ring, &header(), b"v1 state").unwrap();
    assert_eq!(old.key_version, 1);

    ring.insert(2, Tsk::from_bytes([0x22; 32])).unwrap();
    let new = seal(&ring, &header(), b"v2 state").unwrap();
    assert_eq!(new.key_version, 2, "new seals use the newest version");
    assert_eq!(open_default(&ring, &old).unwrap().as_slice(), b"v1 state");
    assert_eq!(open_default(&ring, &new).unwrap().as_slice(), b"v2 state");

    assert!(ring.retire(1));
    assert_eq!(open_default(&ring, &old).unwrap_err(), OpenError::UnknownKeyVersion { version: 1, held: vec![2] });
    assert_eq!(open_default(&ring, &new).unwrap().as_slice(), b"v2 state");
}

#[test]
fn empty_ring_cannot_seal_or_open() {
    let ring = KeyRing::new(KEY_ID);
    let err = seal(&ring, &header(), b"x").unwrap_err();
    assert!(matches!(err, SealError::EmptyKeyRing { .. }));
    assert_eq!(err.refusal(), Refusal::UnknownKeyVersion);
    let env = seal(&ring_v1(), &header(), b"x").unwrap();
    assert_eq!(open_default(&ring, &env).unwrap_err(), OpenError::UnknownKeyVersion { version: 1, held: vec![] });
}

#[test]
fn different_tsk_same_version_is_tampered() {
    let env = seal(&ring_v1(), &header(), b"x").unwrap();
    let mut other = KeyRing::new(KEY_ID);
    other.insert(1, Tsk::from_bytes([0x99; 32])).unwrap();
    assert_eq!(open_default(&other, &env).unwrap_err(), OpenError::Tampered);
}

#[test]
fn workflows_use_different_subkeys() {
    // Same TSK, same nonce, same plaintext: ciphertexts of two workflows differ
    // only if their keys differ (the AAD does not affect the ciphertext body).
    let ring = ring_v1();
    let tsk = ring.get(1).unwrap();
    let nonce = [5u8; 12];
    let a = crate::cipher::encrypt(&tsk.derive_subkey("wf-a"), &nonce, b"", b"same plaintext").unwrap();
    let b = crate::cipher::encrypt(&tsk.derive_subkey("wf-b"), &nonce, b"", b"same plaintext").unwrap();
    assert_ne!(a[..14], b[..14]);
    let a2 = crate::cipher::encrypt(&tsk.derive_subkey("wf-a"), &nonce, b"", b"same plaintext").unwrap();
    assert_eq!(a, a2);
}

#[test]
fn nonces_differ_between_seals() {
    let ring = ring_v1();
    let mut nonces = HashSet::new();
    let mut cts = HashSet::new();
    for _ in 0..64 {
        let env = seal(&ring, &header(), b"same plaintext").unwrap();
        assert!(nonces.insert(env.nonce.clone()), "nonce repeated");
        assert!(cts.insert(env.ciphertext.clone()), "ciphertext repeated");
    }
}

#[test]
fn every_open_error_has_its_own_refusal_and_a_message() {
    let cases = [
        (OpenError::TooLarge { len: 2, limit: 1 }, Refusal::EnvelopeTooLarge),
        (OpenError::Truncated { nonce_len: 0, ciphertext_len: 0 }, Refusal::EnvelopeMalformed),
        (OpenError::UnsupportedFormat(2), Refusal::UnsupportedFormat),
        (
            OpenError::Replayed {
                sealed_for_workflow: "a".into(),
                sealed_for_step: 1,
                expected_workflow: "b".into(),
                expected_step: 2,
            },
            Refusal::EnvelopeReplayed,
        ),
        (OpenError::KeyIdMismatch { envelope: "a".into(), ring: "b".into() }, Refusal::KeyIdMismatch),
        (OpenError::UnknownKeyVersion { version: 3, held: vec![1] }, Refusal::UnknownKeyVersion),
        (OpenError::Tampered, Refusal::EnvelopeTampered),
    ];
    let mut kinds = HashSet::new();
    for (err, refusal) in cases {
        assert_eq!(err.refusal(), refusal);
        assert!(kinds.insert(refusal));
        let msg = err.to_string();
        assert!(msg.len() > 30, "message too terse: {msg}");
    }
}

#[test]
fn envelope_digest_is_sha256_of_encoding() {
    use sha2::{Digest, Sha256};
    let env = seal(&ring_v1(), &header(), b"x").unwrap();
    let expect: [u8; 32] = Sha256::digest(env.encode_to_vec()).into();
    assert_eq!(envelope_sha256(&env), expect);
    let mut other = env.clone();
    other.step += 1;
    assert_ne!(envelope_sha256(&env), envelope_sha256(&other));
    // Known answer for the empty envelope (empty encoding).
    assert_eq!(
        envelope_sha256(&SealedEnvelope::default()),
        [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae,
            0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55
        ]
    );
}

/// Cross-check against an independent computation of the format: derive the
/// subkey and AAD by hand and decrypt with `aes-gcm` directly. Pins the wire
/// format so a backend swap cannot silently change it.
#[test]
fn format_matches_independent_computation() {
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
    use hkdf::Hkdf;
    use sha2::Sha256;

    let ring = ring_v1();
    let env = seal(&ring, &header(), b"ledger").unwrap();

    let mut info = b"enclavemesh/v1/seal/workflow-subkey".to_vec();
    info.extend_from_slice(&4u64.to_be_bytes());
    info.extend_from_slice(b"wf-1");
    let mut k = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"enclavemesh/v1/seal"), &[0x11; 32]).expand(&info, &mut k).unwrap();

    let lp = |b: &[u8]| [(b.len() as u64).to_be_bytes().as_slice(), b].concat();
    let aad = [
        lp(b"enclavemesh/v1/seal/aad"),
        1u32.to_be_bytes().to_vec(),
        lp(KEY_ID.as_bytes()),
        1u32.to_be_bytes().to_vec(),
        lp(b"wf-1"),
        3u64.to_be_bytes().to_vec(),
        lp(b"agent-a"),
    ]
    .concat();
    let nonce: [u8; 12] = env.nonce.as_slice().try_into().unwrap();
    let pt =
        Aes256Gcm::new(&k.into()).decrypt(&Nonce::from(nonce), Payload { msg: &env.ciphertext, aad: &aad }).unwrap();
    assert_eq!(pt, b"ledger");
}

/// The reverse direction: an envelope built by hand with the independent
/// `aes-gcm` crate opens through the API, so either implementation can read the
/// other's envelopes.
#[test]
fn independent_envelope_opens() {
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

    let ring = ring_v1();
    let subkey = ring.get(1).unwrap().derive_subkey("wf-1");
    let aad = crate::aad::AadFields {
        format_version: 1,
        key_id: KEY_ID,
        key_version: 1,
        workflow_id: "wf-1",
        step: 3,
        agent: "agent-x",
    }
    .encode();
    let nonce = [9u8; 12];
    let ciphertext = Aes256Gcm::new(&subkey.0.into())
        .encrypt(&Nonce::from(nonce), Payload { msg: b"from elsewhere", aad: aad.as_slice() })
        .unwrap();
    let env = SealedEnvelope {
        format_version: 1,
        key_id: KEY_ID.into(),
        key_version: 1,
        workflow_id: "wf-1".into(),
        step: 3,
        agent: "agent-x".into(),
        nonce: nonce.to_vec(),
        ciphertext,
    };
    assert_eq!(open_default(&ring, &env).unwrap().as_slice(), b"from elsewhere");
}

/// The ring's cache of expanded per-workflow subkeys (`subkey_cache`).
mod subkey_cache {
    use std::sync::Arc;

    use super::*;
    use crate::cipher::{self, wipe_probe};
    use crate::subkey_cache::{Purpose, SubkeyCache};

    fn ring_with(capacity: usize) -> KeyRing {
        let mut ring = KeyRing::with_subkey_cache_capacity(KEY_ID, capacity);
        ring.insert(1, Tsk::from_bytes([0x11; 32])).unwrap();
        ring
    }

    fn hdr(wf: &str, step: u64) -> SealHeader {
        SealHeader { workflow_id: wf.into(), step, agent: "agent-a".into() }
    }

    fn open_as(ring: &KeyRing, env: &SealedEnvelope) -> Result<Plaintext, OpenError> {
        open(ring, env, &Expectation { workflow_id: env.workflow_id.clone(), step: env.step }, &Limits::default())
    }

    fn cached(ring: &KeyRing, version: u32, wf: &str) -> Option<Arc<cipher::ExpandedKey>> {
        ring.subkey_cache().peek(version, wf).map(|(k, _)| k)
    }

    #[test]
    fn default_ring_caches_and_the_bound_is_respected_lru_first() {
        assert_eq!(KeyRing::new(KEY_ID).subkey_cache().capacity(), DEFAULT_SUBKEY_CACHE_CAPACITY);
        let ring = ring_with(3);
        for wf in ["wf-0", "wf-1", "wf-2"] {
            seal(&ring, &hdr(wf, 0), b"s").unwrap();
        }
        assert_eq!(ring.subkey_cache().len(), 3);
        // Opening counts as use: wf-0 becomes the most recent, wf-1 the least.
        open_as(&ring, &seal(&ring, &hdr("wf-0", 1), b"s").unwrap()).unwrap();
        for (i, wf) in ["wf-3", "wf-4", "wf-5", "wf-6"].into_iter().enumerate() {
            seal(&ring, &hdr(wf, 0), b"s").unwrap();
            assert_eq!(ring.subkey_cache().len(), 3, "after {wf}");
            if i == 0 {
                assert!(cached(&ring, 1, "wf-1").is_none(), "least recently used goes first");
                assert!(cached(&ring, 1, "wf-0").is_some());
                assert!(cached(&ring, 1, "wf-2").is_some());
            }
        }
        // Many workflows through a small cache: still bounded, everything still opens.
        for i in 0..50 {
            let env = seal(&ring, &hdr(&format!("many-{i}"), 0), b"s").unwrap();
            assert_eq!(open_as(&ring, &env).unwrap().as_slice(), b"s");
            assert!(ring.subkey_cache().len() <= 3);
        }
    }

    #[test]
    fn eviction_retirement_and_drop_wipe_the_expanded_keys() {
        let mut ring = ring_with(1);
        seal(&ring, &hdr("wf-a", 0), b"s").unwrap();
        let a = Arc::downgrade(&cached(&ring, 1, "wf-a").unwrap());

        // Evicting wf-a (capacity 1) drops the cache's reference: the key schedule is
        // gone and its bytes were zero when it was freed.
        let before = wipe_probe::wiped();
        seal(&ring, &hdr("wf-b", 0), b"s").unwrap();
        assert!(a.upgrade().is_none(), "evicted key is still alive");
        assert_eq!(wipe_probe::wiped(), before + 1);

        // A key in use while it is evicted lives (and works) until that use ends.
        let in_use = ring.subkey(1, "wf-b", Purpose::Seal).unwrap().unwrap();
        let b = Arc::downgrade(&in_use);
        seal(&ring, &hdr("wf-c", 0), b"s").unwrap();
        assert!(b.upgrade().is_some());
        let ct = cipher::encrypt_with(&in_use, &[1; 12], b"", b"still usable").unwrap();
        assert_eq!(cipher::decrypt_with(&in_use, &[1; 12], b"", &ct).unwrap().as_slice(), b"still usable");
        let before = wipe_probe::wiped();
        drop(in_use);
        assert!(b.upgrade().is_none());
        assert_eq!(wipe_probe::wiped(), before + 1);

        // Retiring a version purges its subkeys.
        let c = Arc::downgrade(&cached(&ring, 1, "wf-c").unwrap());
        let before = wipe_probe::wiped();
        assert!(ring.retire(1));
        assert!(c.upgrade().is_none());
        assert_eq!(ring.subkey_cache().len(), 0);
        assert_eq!(wipe_probe::wiped(), before + 1);

        // Dropping the ring wipes whatever it still caches.
        let ring = ring_with(8);
        for wf in ["x", "y", "z"] {
            seal(&ring, &hdr(wf, 0), b"s").unwrap();
        }
        let before = wipe_probe::wiped();
        drop(ring);
        assert_eq!(wipe_probe::wiped(), before + 3);
    }

    #[test]
    fn workflows_and_versions_never_share_a_subkey() {
        let mut ring = ring_with(16);
        ring.insert(2, Tsk::from_bytes([0x22; 32])).unwrap();
        // Ids that differ by one byte, a prefix, a trailing NUL, or only by version.
        let ids: [(u32, &str); 6] = [(1, "wf"), (1, "wf-"), (1, "wf-a"), (1, "wf-a\0"), (1, "wf-b"), (2, "wf-a")];
        let keys: Vec<_> = ids.iter().map(|(v, wf)| ring.subkey(*v, wf, Purpose::Open).unwrap().unwrap()).collect();
        assert_eq!(ring.subkey_cache().len(), ids.len());
        let nonce = [5u8; 12];
        let cts: Vec<_> =
            keys.iter().map(|k| cipher::encrypt_with(k, &nonce, b"", b"same plaintext").unwrap()).collect();
        for i in 0..ids.len() {
            // The cached key is exactly the HKDF subkey of that version and workflow.
            let tsk = ring.get(ids[i].0).unwrap();
            let fresh = cipher::encrypt(&tsk.derive_subkey(ids[i].1), &nonce, b"", b"same plaintext").unwrap();
            assert_eq!(cts[i], fresh, "{:?}", ids[i]);
            for j in 0..i {
                assert!(!Arc::ptr_eq(&keys[i], &keys[j]), "{:?} and {:?} share an entry", ids[i], ids[j]);
                assert_ne!(cts[i], cts[j], "{:?} and {:?} share a key", ids[i], ids[j]);
            }
        }
        // And the same (version, workflow) again is the same entry.
        assert!(Arc::ptr_eq(&keys[2], &ring.subkey(1, "wf-a", Purpose::Seal).unwrap().unwrap()));
        // A workflow's envelope (sealed under the newest version, 2) does not open
        // under another workflow's or another version's key even with the header
        // check out of the way (decrypting directly under the other cached key).
        let env = seal(&ring, &hdr("wf-a", 0), b"for a").unwrap();
        assert_eq!(env.key_version, 2);
        let aad = crate::aad::AadFields::of_envelope(&env).encode();
        let nonce: [u8; 12] = env.nonce.as_slice().try_into().unwrap();
        for other in [0, 1, 2, 3, 4] {
            assert!(cipher::decrypt_with(&keys[other], &nonce, aad.as_slice(), &env.ciphertext).is_err(), "{other}");
        }
        assert_eq!(
            cipher::decrypt_with(&keys[5], &nonce, aad.as_slice(), &env.ciphertext).unwrap().as_slice(),
            b"for a"
        );
    }

    #[test]
    fn cached_and_uncached_rings_open_each_others_envelopes() {
        let warm = ring_with(DEFAULT_SUBKEY_CACHE_CAPACITY);
        let cold = ring_with(0);
        for step in 0..5u64 {
            for wf in ["wf-1", "wf-2"] {
                let pt = format!("{wf} at {step}");
                let from_cache = seal(&warm, &hdr(wf, step), pt.as_bytes()).unwrap();
                let uncached = seal(&cold, &hdr(wf, step), pt.as_bytes()).unwrap();
                // Each side's envelope opens on the other, and on a brand-new ring.
                assert_eq!(open_as(&cold, &from_cache).unwrap().as_slice(), pt.as_bytes());
                assert_eq!(open_as(&warm, &uncached).unwrap().as_slice(), pt.as_bytes());
                assert_eq!(open_as(&ring_with(4), &from_cache).unwrap().as_slice(), pt.as_bytes());
                assert_eq!(open_as(&ring_with(4), &uncached).unwrap().as_slice(), pt.as_bytes());
            }
        }
        assert_eq!(warm.subkey_cache().len(), 2);
        assert_eq!(cold.subkey_cache().len(), 0, "capacity 0 caches nothing");
        // A clone keeps the keys and starts with an empty cache of the same size.
        let clone = warm.clone();
        assert_eq!(clone.subkey_cache().len(), 0);
        assert_eq!(clone.subkey_cache().capacity(), DEFAULT_SUBKEY_CACHE_CAPACITY);
        let env = seal(&warm, &hdr("wf-1", 9), b"c").unwrap();
        assert_eq!(open_as(&clone, &env).unwrap().as_slice(), b"c");
    }

    #[test]
    fn use_counter_rotates_the_instance_and_opens_do_not_count() {
        let mut ring = ring_with(4);
        ring.set_subkey_cache_for_test(SubkeyCache::with_limits(4, 3));
        let mut envs = Vec::new();
        for step in 0..3 {
            envs.push(seal(&ring, &hdr("wf", step), b"s").unwrap());
        }
        let (first, seals) = ring.subkey_cache().peek(1, "wf").unwrap();
        assert_eq!(seals, 3);
        for env in &envs {
            open_as(&ring, env).unwrap();
        }
        assert_eq!(ring.subkey_cache().peek(1, "wf").unwrap().1, 3, "opening consumes no nonces");

        // The fourth seal finds the instance used up: it is evicted and a new one
        // (same key, fresh expansion) takes over with a fresh count.
        let weak = Arc::downgrade(&first);
        drop(first);
        let before = wipe_probe::wiped();
        envs.push(seal(&ring, &hdr("wf", 3), b"s").unwrap());
        let (second, seals) = ring.subkey_cache().peek(1, "wf").unwrap();
        assert_eq!(seals, 1);
        assert!(weak.upgrade().is_none(), "the used-up instance was not released");
        assert_eq!(wipe_probe::wiped(), before + 1);
        drop(second);
        // Envelopes from both instances open anywhere.
        for env in &envs {
            open_as(&ring, env).unwrap();
            open_as(&ring_with(0), env).unwrap();
        }
        // Default bound: far below the 2^32 random-nonce limit per key.
        const { assert!(crate::subkey_cache::MAX_SEALS_PER_INSTANCE <= 1 << 20) };
    }

    #[test]
    fn a_version_number_reused_after_retirement_never_reaches_the_old_subkey() {
        let mut ring = ring_with(8);
        seal(&ring, &hdr("wf", 0), b"old").unwrap();
        assert!(ring.retire(1));
        ring.insert(1, Tsk::from_bytes([0x77; 32])).unwrap();
        let env = seal(&ring, &hdr("wf", 1), b"new").unwrap();
        let mut new_only = KeyRing::with_subkey_cache_capacity(KEY_ID, 0);
        new_only.insert(1, Tsk::from_bytes([0x77; 32])).unwrap();
        assert_eq!(open_as(&new_only, &env).unwrap().as_slice(), b"new");
        assert_eq!(open_as(&ring_with(0), &env).unwrap_err(), OpenError::Tampered);
    }

    #[test]
    fn concurrent_seals_and_opens_through_a_small_cache() {
        let ring = ring_with(2);
        std::thread::scope(|s| {
            for t in 0..4 {
                let ring = &ring;
                s.spawn(move || {
                    for i in 0..200u64 {
                        let wf = format!("wf-{}", (i + t) % 5);
                        let env = seal(ring, &hdr(&wf, i), &i.to_be_bytes()).unwrap();
                        assert_eq!(open_as(ring, &env).unwrap().as_slice(), i.to_be_bytes());
                    }
                });
            }
        });
        assert!(ring.subkey_cache().len() <= 2);
    }
}

/// Random byte strings and random structured envelopes: opening never panics
/// and never succeeds.
mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let ring = ring_v1();
            if let Ok(env) = enclavemesh_proto::decode_bounded::<SealedEnvelope>(&bytes, 1 << 20) {
                let e = Expectation { workflow_id: env.workflow_id.clone(), step: env.step };
                prop_assert!(open(&ring, &env, &e, &Limits::default()).is_err());
            }
        }

        #[test]
        fn arbitrary_fields(
            format_version in prop_oneof![Just(1u32), any::<u32>()],
            key_id in prop_oneof![Just(KEY_ID.to_string()), ".{0,8}"],
            key_version in prop_oneof![Just(1u32), any::<u32>()],
            workflow_id in ".{0,8}",
            step in any::<u64>(),
            agent in ".{0,8}",
            nonce in proptest::collection::vec(any::<u8>(), 0..16),
            ciphertext in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let ring = ring_v1();
            let env =
                SealedEnvelope { format_version, key_id, key_version, workflow_id, step, agent, nonce, ciphertext };
            let e = Expectation { workflow_id: env.workflow_id.clone(), step: env.step };
            let limits = Limits { max_ciphertext_bytes: 48 };
            let err = open(&ring, &env, &e, &limits).unwrap_err();
            prop_assert!(err.refusal() != Refusal::Unspecified);
        }

        #[test]
        fn mutated_genuine_envelope(idx in any::<prop::sample::Index>(), bit in 0u8..8) {
            let ring = ring_v1();
            let env = seal(&ring, &header(), b"some agent state").unwrap();
            let mut bytes = env.encode_to_vec();
            let i = idx.index(bytes.len());
            bytes[i] ^= 1 << bit;
            if let Ok(m) = enclavemesh_proto::decode_bounded::<SealedEnvelope>(&bytes, 1 << 20) {
                prop_assert!(open_default(&ring, &m).is_err());
            }
        }
    }
}

/// The agent shares one ring across tasks (`Arc<KeyRing>`), the fuzz targets in a
/// `static`: the cache inside must keep it `Send + Sync`.
#[test]
fn key_ring_stays_send_and_sync() {
    fn shareable<T: Send + Sync + Clone + std::fmt::Debug>() {}
    shareable::<KeyRing>();
}
