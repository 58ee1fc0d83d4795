//! The emulator through the real aws-sdk-kms client, over HTTP on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use crate::common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Env, client, code};

#[tokio::test]
async fn key_lifecycle_crypto_policy_restart_and_audit() {
    let env = Env::new();
    let emu = env.start().await;
    let kms = client(&emu.endpoint_url()).await;
    let mut calls: Vec<(&str, Option<&str>)> = Vec::new();

    // CreateKey
    let created = kms.create_key().description("tsk wrapping key").send().await.unwrap();
    calls.push(("CreateKey", None));
    let md = created.key_metadata().unwrap();
    let key_id = md.key_id().to_string();
    let arn = md.arn().unwrap().to_string();
    assert_eq!(arn, format!("arn:aws:kms:us-east-1:111122223333:key/{key_id}"));
    assert_eq!(md.key_state().unwrap().as_str(), "Enabled");
    assert_eq!(md.description(), Some("tsk wrapping key"));
    assert!(md.creation_date().is_some());

    // CreateAlias + resolution by id, ARN, alias, alias ARN
    kms.create_alias().alias_name("alias/enclavemesh-tsk").target_key_id(&key_id).send().await.unwrap();
    calls.push(("CreateAlias", None));
    for r in [
        key_id.clone(),
        arn.clone(),
        "alias/enclavemesh-tsk".to_string(),
        "arn:aws:kms:us-east-1:111122223333:alias/enclavemesh-tsk".to_string(),
    ] {
        let d = kms.describe_key().key_id(&r).send().await.unwrap();
        calls.push(("DescribeKey", None));
        assert_eq!(d.key_metadata().unwrap().key_id(), key_id, "{r}");
    }
    let e = kms.create_alias().alias_name("alias/enclavemesh-tsk").target_key_id(&key_id).send().await.unwrap_err();
    calls.push(("CreateAlias", Some("AlreadyExistsException")));
    assert_eq!(code(e).0, "AlreadyExistsException");

    let keys = kms.list_keys().send().await.unwrap();
    calls.push(("ListKeys", None));
    assert_eq!(keys.keys().len(), 1);
    let aliases = kms.list_aliases().send().await.unwrap();
    calls.push(("ListAliases", None));
    assert_eq!(aliases.aliases()[0].alias_name(), Some("alias/enclavemesh-tsk"));
    assert_eq!(aliases.aliases()[0].target_key_id(), Some(key_id.as_str()));

    // Encrypt / Decrypt with EncryptionContext
    let secret = b"PLAINTEXT-SECRET-0123456789";
    let ct = kms
        .encrypt()
        .key_id("alias/enclavemesh-tsk")
        .plaintext(Blob::new(secret.to_vec()))
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    calls.push(("Encrypt", None));
    assert_eq!(ct.key_id(), Some(arn.as_str()));
    let blob = ct.ciphertext_blob().unwrap().as_ref().to_vec();
    let pt = kms
        .decrypt()
        .ciphertext_blob(Blob::new(blob.clone()))
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    calls.push(("Decrypt", None));
    assert_eq!(pt.plaintext().unwrap().as_ref(), secret);
    assert_eq!(pt.key_id(), Some(arn.as_str()));

    // Context mismatch / missing -> InvalidCiphertext
    for ctx in [Some(("purpose", "other")), None] {
        let mut req = kms.decrypt().ciphertext_blob(Blob::new(blob.clone()));
        if let Some((k, v)) = ctx {
            req = req.encryption_context(k, v);
        }
        let (c, m) = code(req.send().await.unwrap_err());
        calls.push(("Decrypt", Some("InvalidCiphertextException")));
        assert_eq!(c, "InvalidCiphertextException", "{m}");
        assert!(m.contains("EncryptionContext"), "{m}");
    }
    // Tampered blob
    let mut tampered = blob.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let (c, _) = code(
        kms.decrypt()
            .ciphertext_blob(Blob::new(tampered))
            .encryption_context("purpose", "test")
            .send()
            .await
            .unwrap_err(),
    );
    calls.push(("Decrypt", Some("InvalidCiphertextException")));
    assert_eq!(c, "InvalidCiphertextException");
    let (c, m) = code(kms.decrypt().ciphertext_blob(Blob::new(b"garbage".to_vec())).send().await.unwrap_err());
    calls.push(("Decrypt", Some("InvalidCiphertextException")));
    assert_eq!(c, "InvalidCiphertextException");
    assert!(m.contains("not produced by this kms-emulator"), "{m}");

    // NotFound
    let (c, m) = code(kms.describe_key().key_id("alias/nope").send().await.unwrap_err());
    calls.push(("DescribeKey", Some("NotFoundException")));
    assert_eq!(c, "NotFoundException");
    assert!(m.contains("alias/nope"), "{m}");
    let (c, _) = code(
        kms.encrypt()
            .key_id("00000000-0000-0000-0000-000000000000")
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .unwrap_err(),
    );
    calls.push(("Encrypt", Some("NotFoundException")));
    assert_eq!(c, "NotFoundException");

    // GenerateDataKeyWithoutPlaintext then Decrypt
    let gdk =
        kms.generate_data_key_without_plaintext().key_id(&key_id).key_spec(DataKeySpec::Aes256).send().await.unwrap();
    calls.push(("GenerateDataKeyWithoutPlaintext", None));
    let tsk_blob = gdk.ciphertext_blob().unwrap().as_ref().to_vec();
    let tsk = kms.decrypt().ciphertext_blob(Blob::new(tsk_blob.clone())).send().await.unwrap();
    calls.push(("Decrypt", None));
    let tsk_plain = tsk.plaintext().unwrap().as_ref().to_vec();
    assert_eq!(tsk_plain.len(), 32);

    // GenerateDataKey (plaintext + blob agree)
    let dk = kms.generate_data_key().key_id(&key_id).number_of_bytes(24).send().await.unwrap();
    calls.push(("GenerateDataKey", None));
    let dk_plain = dk.plaintext().unwrap().as_ref().to_vec();
    assert_eq!(dk_plain.len(), 24);
    let back = kms.decrypt().key_id(&arn).ciphertext_blob(dk.ciphertext_blob().unwrap().clone()).send().await.unwrap();
    calls.push(("Decrypt", None));
    assert_eq!(back.plaintext().unwrap().as_ref(), dk_plain.as_slice());

    // IncorrectKey
    let other = kms.create_key().send().await.unwrap().key_metadata().unwrap().key_id().to_string();
    calls.push(("CreateKey", None));
    let (c, _) =
        code(kms.decrypt().key_id(&other).ciphertext_blob(Blob::new(tsk_blob.clone())).send().await.unwrap_err());
    calls.push(("Decrypt", Some("IncorrectKeyException")));
    assert_eq!(c, "IncorrectKeyException");

    // GenerateRandom
    let rnd = kms.generate_random().number_of_bytes(16).send().await.unwrap();
    calls.push(("GenerateRandom", None));
    let rnd_plain = rnd.plaintext().unwrap().as_ref().to_vec();
    assert_eq!(rnd_plain.len(), 16);

    // Key policy get / put / malformed / lockout
    let p = kms.get_key_policy().key_id(&key_id).policy_name("default").send().await.unwrap();
    calls.push(("GetKeyPolicy", None));
    assert!(p.policy().unwrap().contains("kms:*"));
    let deny_decrypt = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
        {"Sid":"NoDecrypt","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#;
    kms.put_key_policy().key_id(&key_id).policy_name("default").policy(deny_decrypt).send().await.unwrap();
    calls.push(("PutKeyPolicy", None));
    let p = kms.get_key_policy().key_id(&key_id).policy_name("default").send().await.unwrap();
    calls.push(("GetKeyPolicy", None));
    assert_eq!(p.policy(), Some(deny_decrypt));
    let (c, m) = code(kms.decrypt().ciphertext_blob(Blob::new(tsk_blob.clone())).send().await.unwrap_err());
    calls.push(("Decrypt", Some("AccessDeniedException")));
    assert_eq!(c, "AccessDeniedException");
    assert!(m.contains("NoDecrypt"), "{m}");
    let (c, _) =
        code(kms.put_key_policy().key_id(&key_id).policy_name("default").policy("{not json").send().await.unwrap_err());
    calls.push(("PutKeyPolicy", Some("MalformedPolicyDocumentException")));
    assert_eq!(c, "MalformedPolicyDocumentException");
    let lockout = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#;
    let (c, m) =
        code(kms.put_key_policy().key_id(&key_id).policy_name("default").policy(lockout).send().await.unwrap_err());
    calls.push(("PutKeyPolicy", Some("MalformedPolicyDocumentException")));
    assert_eq!(c, "MalformedPolicyDocumentException");
    assert!(m.contains("PutKeyPolicy"), "{m}");

    // Disabled key
    kms.disable_key().key_id(&other).send().await.unwrap();
    calls.push(("DisableKey", None));
    let (c, _) = code(kms.encrypt().key_id(&other).plaintext(Blob::new(b"x".to_vec())).send().await.unwrap_err());
    calls.push(("Encrypt", Some("DisabledException")));
    assert_eq!(c, "DisabledException");

    // Restart on the same state file: keys, aliases, policy and blobs survive.
    emu.shutdown().await;
    let emu2 = env.start().await;
    let kms2 = client(&emu2.endpoint_url()).await;
    let d = kms2.describe_key().key_id("alias/enclavemesh-tsk").send().await.unwrap();
    calls.push(("DescribeKey", None));
    assert_eq!(d.key_metadata().unwrap().key_id(), key_id);
    let p = kms2.get_key_policy().key_id(&key_id).policy_name("default").send().await.unwrap();
    calls.push(("GetKeyPolicy", None));
    assert_eq!(p.policy(), Some(deny_decrypt));
    // Allow decrypt again and open a blob made before the restart.
    kms2.put_key_policy()
        .key_id(&key_id)
        .policy_name("default")
        .policy(kms_emulator::policy::default_policy("111122223333"))
        .send()
        .await
        .unwrap();
    calls.push(("PutKeyPolicy", None));
    let pt = kms2
        .decrypt()
        .ciphertext_blob(Blob::new(blob.clone()))
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    calls.push(("Decrypt", None));
    assert_eq!(pt.plaintext().unwrap().as_ref(), secret);
    emu2.shutdown().await;

    // Audit: one event per call, right names and outcomes, no secrets.
    let events = env.audit_events();
    assert_eq!(events.len(), calls.len(), "{events:#?}");
    for (ev, (name, err)) in events.iter().zip(&calls) {
        assert_eq!(ev["eventName"], *name, "{ev}");
        assert_eq!(ev["eventSource"], "kms.amazonaws.com");
        assert_eq!(ev["eventVersion"], "1.08");
        assert_eq!(ev["awsRegion"], "us-east-1");
        assert_eq!(ev["userIdentity"]["accessKeyId"], "AKIDTESTKEY");
        assert_eq!(ev["sourceIPAddress"], "127.0.0.1");
        assert!(ev["responseElements"].is_null());
        assert!(uuid_like(ev["eventID"].as_str().unwrap()));
        match err {
            Some(c) => assert_eq!(ev["errorCode"], *c, "{ev}"),
            None => assert!(ev.get("errorCode").is_none(), "{ev}"),
        }
    }
    let dec = events.iter().find(|e| e["eventName"] == "Decrypt" && e.get("errorCode").is_none()).unwrap();
    assert_eq!(dec["resources"][0]["ARN"], arn);
    assert_eq!(dec["resources"][0]["type"], "AWS::KMS::Key");
    assert_eq!(dec["requestParameters"]["encryptionContext"]["purpose"], "test");
    let text = std::fs::read_to_string(env.audit_log()).unwrap();
    for secret in [secret.to_vec(), tsk_plain, dk_plain, rnd_plain, blob, tsk_blob] {
        assert_no_trace(&text, &secret);
    }
    // The state file is the HSM: private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.state_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "state file must not be group/world readable");
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

/// Fails if `secret` appears raw, as base64 (any alignment), or as hex.
pub fn assert_no_trace(text: &str, secret: &[u8]) {
    if let Ok(s) = std::str::from_utf8(secret) {
        assert!(!text.contains(s), "raw secret in audit log");
    }
    assert!(!text.contains(&hex::encode(secret)), "hex secret in audit log");
    for shift in 0..3 {
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(secret);
        let enc = B64.encode(&padded);
        // Skip the chars that depend on the unknown prefix/suffix.
        let core = &enc[(shift * 4).div_ceil(3) + 1..enc.len().saturating_sub(4)];
        if core.len() >= 8 {
            assert!(!text.contains(core), "base64 secret in audit log");
        }
    }
}
