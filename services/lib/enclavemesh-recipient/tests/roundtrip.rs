//! Behaviour of wrap/unwrap as the enclave agent and the KMS emulator use it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use cms::content_info::ContentInfo;
use cms::enveloped_data::{EnvelopedData, RecipientIdentifier, RecipientInfo};
use const_oid::db::{rfc5911, rfc5912};
use der::{Decode, Encode};
use enclavemesh_recipient::{EphemeralKeyPair, MAX_CMS_LEN, MAX_PLAINTEXT_LEN, RecipientError, wrap_for_recipient};
use std::sync::OnceLock;

/// RSA key generation is the slow part; share two keys across tests.
fn keys() -> &'static (EphemeralKeyPair, EphemeralKeyPair) {
    static KEYS: OnceLock<(EphemeralKeyPair, EphemeralKeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| (EphemeralKeyPair::generate().unwrap(), EphemeralKeyPair::generate().unwrap()))
}

#[test]
fn round_trip_various_sizes() {
    let (kp, _) = keys();
    for len in [0usize, 1, 15, 16, 17, 32, 1024, MAX_PLAINTEXT_LEN] {
        let pt: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let der = wrap_for_recipient(kp.public_key_der(), &pt).unwrap();
        assert_eq!(kp.unwrap(&der).unwrap().as_slice(), pt.as_slice(), "len {len}");
    }
}

#[test]
fn each_wrap_is_fresh() {
    let (kp, _) = keys();
    let a = wrap_for_recipient(kp.public_key_der(), b"same").unwrap();
    let b = wrap_for_recipient(kp.public_key_der(), b"same").unwrap();
    assert_ne!(a, b, "CEK/IV/OAEP seed must be random per call");
}

#[test]
fn wrong_key_is_wrong_recipient() {
    let (a, b) = keys();
    let der = wrap_for_recipient(a.public_key_der(), b"secret").unwrap();
    assert!(matches!(b.unwrap(&der), Err(RecipientError::WrongRecipient)));
}

#[test]
fn structure_has_expected_oids() {
    let (kp, _) = keys();
    let der = wrap_for_recipient(kp.public_key_der(), b"secret").unwrap();
    let ci = ContentInfo::from_der(&der).unwrap();
    assert_eq!(ci.content_type, rfc5911::ID_ENVELOPED_DATA);
    let ed: EnvelopedData = ci.content.decode_as().unwrap();
    assert_eq!(ed.recip_infos.0.len(), 1);
    let RecipientInfo::Ktri(ktri) = ed.recip_infos.0.get(0).unwrap() else { panic!("expected KeyTransRecipientInfo") };
    assert_eq!(ktri.key_enc_alg.oid, rfc5912::ID_RSAES_OAEP);
    let RecipientIdentifier::SubjectKeyIdentifier(ski) = &ktri.rid else { panic!("expected subjectKeyIdentifier rid") };
    assert_eq!(ski.0.as_bytes(), kp.subject_key_identifier());
    let params = ktri.key_enc_alg.parameters.as_ref().unwrap().to_der().unwrap();
    let params = rsa::pkcs1::RsaOaepParams::from_der(&params).unwrap();
    assert_eq!(params.hash.oid, rfc5912::ID_SHA_256);
    assert_eq!(params.mask_gen.oid, rfc5912::ID_MGF_1);
    assert_eq!(params.mask_gen.parameters.unwrap().oid, rfc5912::ID_SHA_256);
    assert_eq!(ktri.enc_key.as_bytes().len(), 256, "RSA-2048 ciphertext");
    assert_eq!(ed.encrypted_content.content_type, rfc5911::ID_DATA);
    assert_eq!(ed.encrypted_content.content_enc_alg.oid, rfc5911::ID_AES_256_CBC);
    let iv: der::asn1::OctetString =
        ed.encrypted_content.content_enc_alg.parameters.as_ref().unwrap().decode_as().unwrap();
    assert_eq!(iv.as_bytes().len(), 16);
}

#[test]
fn public_key_is_spki_rsa_2048() {
    let (kp, _) = keys();
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let pk = rsa::RsaPublicKey::from_public_key_der(kp.public_key_der()).unwrap();
    assert_eq!(pk.size(), 256);
}

#[test]
fn tampering_anywhere_is_an_error_not_a_panic() {
    let (kp, _) = keys();
    let pt = b"0123456789abcdef0123456789abcdef";
    let der = wrap_for_recipient(kp.public_key_der(), pt).unwrap();
    let ski = kp.subject_key_identifier();
    let ski_at = der.windows(ski.len()).position(|w| w == ski).unwrap();
    for i in 0..der.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = der.clone();
            t[i] ^= bit;
            // Must never panic. CMS EnvelopedData with AES-CBC has no integrity protection
            // (same as real KMS output): flips in the IV / first ciphertext block still
            // "decrypt" to altered plaintext. Consumers must treat the unwrapped key as
            // unauthenticated until it successfully opens AEAD data.
            let r = kp.unwrap(&t);
            if (ski_at..ski_at + ski.len()).contains(&i) {
                assert!(matches!(r, Err(RecipientError::WrongRecipient)), "byte {i}");
            }
        }
    }
}

#[test]
fn encrypted_key_tamper_is_decrypt_failed() {
    let (kp, _) = keys();
    let der = wrap_for_recipient(kp.public_key_der(), b"secret").unwrap();
    let ci = ContentInfo::from_der(&der).unwrap();
    let mut ed: EnvelopedData = ci.content.decode_as().unwrap();
    let RecipientInfo::Ktri(mut ktri) = ed.recip_infos.0.get(0).unwrap().clone() else { panic!() };
    let mut ek = ktri.enc_key.as_bytes().to_vec();
    ek[100] ^= 1;
    ktri.enc_key = der::asn1::OctetString::new(ek).unwrap();
    let mut set = der::asn1::SetOfVec::new();
    set.insert(RecipientInfo::Ktri(ktri)).unwrap();
    ed.recip_infos = cms::enveloped_data::RecipientInfos(set);
    let ci = ContentInfo { content_type: ci.content_type, content: der::Any::encode_from(&ed).unwrap() };
    assert!(matches!(kp.unwrap(&ci.to_der().unwrap()), Err(RecipientError::DecryptFailed)));
}

#[test]
fn garbage_and_truncation_are_errors() {
    let (kp, _) = keys();
    assert!(matches!(kp.unwrap(b""), Err(RecipientError::Malformed(_))));
    assert!(matches!(kp.unwrap(b"not der at all"), Err(RecipientError::Malformed(_))));
    let der = wrap_for_recipient(kp.public_key_der(), b"secret").unwrap();
    for cut in 0..der.len() {
        assert!(kp.unwrap(&der[..cut]).is_err(), "truncated at {cut}");
    }
    let mut long = der.clone();
    long.push(0);
    assert!(kp.unwrap(&long).is_err(), "trailing data must be rejected");
}

#[test]
fn size_bounds() {
    let (kp, _) = keys();
    let big = vec![0u8; MAX_CMS_LEN + 1];
    assert!(matches!(kp.unwrap(&big), Err(RecipientError::TooLarge { .. })));
    let pt = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(wrap_for_recipient(kp.public_key_der(), &pt), Err(RecipientError::TooLarge { .. })));
}

#[test]
fn wrap_rejects_bad_spki() {
    assert!(wrap_for_recipient(b"junk", b"x").is_err());
    // An EC key is not an RSA recipient.
    let ec_spki = hex_decode(
        "3076301006072a8648ce3d020106052b8104002203620004\
         000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
         000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    );
    assert!(matches!(wrap_for_recipient(&ec_spki, b"x"), Err(RecipientError::UnsupportedAlgorithm(_))));
}

#[test]
fn non_enveloped_content_type_is_unsupported() {
    let ci = ContentInfo {
        content_type: rfc5911::ID_DATA,
        content: der::Any::encode_from(&der::asn1::OctetString::new(vec![1, 2, 3]).unwrap()).unwrap(),
    };
    let (kp, _) = keys();
    assert!(matches!(
        kp.unwrap(&ci.to_der().unwrap()),
        Err(RecipientError::UnsupportedAlgorithm(oid)) if oid == rfc5911::ID_DATA
    ));
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}
