//! Recipient (Nitro attestation) flow: a SimulatedNsm document with an EphemeralKeyPair.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use crate::common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyEncryptionMechanism, RecipientInfo};
use common::{Env, client, code};
use enclavemesh_attestation::{Nsm, SimulatedMeasurements, SimulatedNsm};
use enclavemesh_recipient::EphemeralKeyPair;

const PCR0_GOOD: [u8; 48] = [0xab; 48];
const PCR0_OTHER: [u8; 48] = [0xcd; 48];

fn recipient(doc: Vec<u8>) -> RecipientInfo {
    RecipientInfo::builder()
        .attestation_document(Blob::new(doc))
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .build()
}

fn pcr0_policy(pcr0s: &[String]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Create*", "kms:Describe*", "kms:List*", "kms:Put*", "kms:Get*",
                        "kms:Encrypt", "kms:GenerateDataKeyWithoutPlaintext"],
             "Resource": "*"},
            {"Sid": "Enclave", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": pcr0s}}}
        ]
    })
    .to_string()
}

#[tokio::test]
async fn recipient_flow() {
    let env = Env::new();
    let emu = env.start().await;
    let kms = client(&emu.endpoint_url()).await;
    let key_id = kms.create_key().send().await.unwrap().key_metadata().unwrap().key_id().to_string();
    let blob = kms
        .generate_data_key_without_plaintext()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    // Under the default (allow-all) policy a plain Decrypt gives the reference TSK.
    let reference = kms.decrypt().ciphertext_blob(blob.clone()).send().await.unwrap();
    let reference = reference.plaintext().unwrap().as_ref().to_vec();

    let good_hex = hex::encode(PCR0_GOOD);
    let other_hex = hex::encode(PCR0_OTHER);
    kms.put_key_policy()
        .key_id(&key_id)
        .policy_name("default")
        .policy(pcr0_policy(&[good_hex.to_uppercase()]))
        .send()
        .await
        .unwrap();

    let kp = EphemeralKeyPair::generate().unwrap();
    let nsm = SimulatedNsm::new(&env.dev_dir(), SimulatedMeasurements::from_pcr0(PCR0_GOOD)).unwrap();
    let doc = nsm.attestation(None, None, Some(kp.public_key_der())).unwrap();

    // Allowed PCR0: CiphertextForRecipient, no Plaintext; unwraps to the reference TSK.
    let out = kms.decrypt().ciphertext_blob(blob.clone()).recipient(recipient(doc.clone())).send().await.unwrap();
    assert!(out.plaintext().is_none(), "Plaintext must be absent with a Recipient");
    let cfr = out.ciphertext_for_recipient().expect("CiphertextForRecipient").as_ref().to_vec();
    assert_eq!(kp.unwrap(&cfr).unwrap().as_slice(), reference.as_slice());

    // GenerateDataKey with Recipient: blob + CiphertextForRecipient, both the same key.
    let gdk = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .recipient(recipient(doc.clone()))
        .send()
        .await
        .unwrap();
    assert!(gdk.plaintext().is_none());
    let dk = kp.unwrap(gdk.ciphertext_for_recipient().unwrap().as_ref()).unwrap();
    let again = kms
        .decrypt()
        .ciphertext_blob(gdk.ciphertext_blob().unwrap().clone())
        .recipient(recipient(doc.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(kp.unwrap(again.ciphertext_for_recipient().unwrap().as_ref()).unwrap().as_slice(), dk.as_slice());

    // GenerateRandom with Recipient.
    let rnd = kms.generate_random().number_of_bytes(32).recipient(recipient(doc.clone())).send().await.unwrap();
    assert!(rnd.plaintext().is_none());
    assert_eq!(kp.unwrap(rnd.ciphertext_for_recipient().unwrap().as_ref()).unwrap().len(), 32);

    // Decrypt WITHOUT Recipient under the PCR0-only policy: denied (the parent can't get the TSK).
    let (c, m) = code(kms.decrypt().ciphertext_blob(blob.clone()).send().await.unwrap_err());
    assert_eq!(c, "AccessDeniedException");
    assert!(m.contains("Recipient") && m.contains(&good_hex), "{m}");
    let (c, _) = code(kms.generate_data_key().key_id(&key_id).key_spec(DataKeySpec::Aes256).send().await.unwrap_err());
    assert_eq!(c, "AccessDeniedException");

    // A different enclave image (other PCR0): denied, naming both PCR0s and the fix.
    let nsm_other = SimulatedNsm::new(&env.dev_dir(), SimulatedMeasurements::from_pcr0(PCR0_OTHER)).unwrap();
    let doc_other = nsm_other.attestation(None, None, Some(kp.public_key_der())).unwrap();
    let (c, m) =
        code(kms.decrypt().ciphertext_blob(blob.clone()).recipient(recipient(doc_other)).send().await.unwrap_err());
    assert_eq!(c, "AccessDeniedException");
    assert!(m.contains(&other_hex), "names the document's PCR0: {m}");
    assert!(m.contains(&good_hex), "names the allowed PCR0: {m}");
    assert!(m.contains("scripts/setup-kms-policy.sh"), "{m}");
    assert!(m.contains(&key_id), "{m}");

    // Debug-mode document refused.
    let nsm_dbg =
        SimulatedNsm::new(&env.dev_dir(), SimulatedMeasurements::from_pcr0(PCR0_GOOD).with_debug_mode(true)).unwrap();
    let doc_dbg = nsm_dbg.attestation(None, None, Some(kp.public_key_der())).unwrap();
    let (c, m) =
        code(kms.decrypt().ciphertext_blob(blob.clone()).recipient(recipient(doc_dbg)).send().await.unwrap_err());
    assert_eq!(c, "AccessDeniedException");
    assert!(m.contains("debug"), "{m}");

    // Document from a foreign CA refused.
    let foreign = tempfile::tempdir().unwrap();
    let nsm_foreign = SimulatedNsm::new(foreign.path(), SimulatedMeasurements::from_pcr0(PCR0_GOOD)).unwrap();
    let doc_foreign = nsm_foreign.attestation(None, None, Some(kp.public_key_der())).unwrap();
    let (c, m) =
        code(kms.decrypt().ciphertext_blob(blob.clone()).recipient(recipient(doc_foreign)).send().await.unwrap_err());
    assert_eq!(c, "AccessDeniedException");
    assert!(m.contains("untrusted_chain") || m.contains("chain"), "{m}");

    // Garbage document: ValidationException.
    let (c, _) = code(
        kms.decrypt().ciphertext_blob(blob.clone()).recipient(recipient(b"junk".to_vec())).send().await.unwrap_err(),
    );
    assert_eq!(c, "ValidationException");

    // Document without public_key: ValidationException.
    let doc_nopk = nsm.attestation(None, None, None).unwrap();
    let (c, m) =
        code(kms.decrypt().ciphertext_blob(blob.clone()).recipient(recipient(doc_nopk)).send().await.unwrap_err());
    assert_eq!(c, "ValidationException");
    assert!(m.contains("public_key"), "{m}");

    // A CiphertextForRecipient wrapped to one key cannot be opened by another.
    let kp2 = EphemeralKeyPair::generate().unwrap();
    assert!(kp2.unwrap(&cfr).is_err());

    emu.shutdown().await;

    // Audit: recipient details present, no secrets.
    let events = env.audit_events();
    let ok_recipient = events
        .iter()
        .find(|e| e["eventName"] == "Decrypt" && e.get("errorCode").is_none() && e.get("additionalEventData").is_some())
        .expect("a successful Recipient Decrypt event");
    let r = &ok_recipient["additionalEventData"]["recipient"];
    assert_eq!(r["attestationDocumentEnclavePCR0"], good_hex);
    assert_eq!(r["attestationDocumentEnclaveImageDigest"], good_hex);
    assert_eq!(r["attestationDocumentModuleId"], nsm.module_id());
    assert_eq!(ok_recipient["requestParameters"]["recipient"]["keyEncryptionAlgorithm"], "RSAES_OAEP_SHA_256");
    let denied = events.iter().filter(|e| e["errorCode"] == "AccessDeniedException").count();
    assert!(denied >= 4, "{denied}");
    let text = std::fs::read_to_string(env.audit_log()).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for s in [reference.clone(), dk.to_vec(), cfr.clone(), blob.as_ref().to_vec()] {
        assert!(!text.contains(&hex::encode(&s)));
        assert!(!text.contains(&b64.encode(&s)[..40.min(b64.encode(&s).len())]));
    }
    assert!(!text.contains(&b64.encode(&doc)[..60]), "attestation document must not be logged");
}

#[tokio::test]
async fn debug_documents_accepted_only_when_allowed() {
    let env = Env::new();
    let mut cfg = env.config();
    cfg.allow_debug_attestation = true;
    let emu = kms_emulator::spawn("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap();
    let kms = client(&emu.endpoint_url()).await;
    let kp = EphemeralKeyPair::generate().unwrap();
    let nsm =
        SimulatedNsm::new(&env.dev_dir(), SimulatedMeasurements::from_pcr0(PCR0_GOOD).with_debug_mode(true)).unwrap();
    let doc = nsm.attestation(None, None, Some(kp.public_key_der())).unwrap();
    let rnd = kms.generate_random().number_of_bytes(8).recipient(recipient(doc)).send().await.unwrap();
    assert_eq!(kp.unwrap(rnd.ciphertext_for_recipient().unwrap().as_ref()).unwrap().len(), 8);
    emu.shutdown().await;
}
