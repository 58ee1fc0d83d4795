//! Key lifecycle: CreateKey, DescribeKey (metadata), ListKeys, and the state changes
//! EnableKey, DisableKey, ScheduleKeyDeletion and CancelKeyDeletion.

use rand::RngCore;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Op, authorize_plain, commit, key_policy, lock, now_secs};
use crate::audit::AuditRecord;
use crate::emulator::{Caller, Emulator};
use crate::error::{ErrorKind, KmsError};
use crate::policy::{Policy, default_policy};
use crate::request::{opt_str, opt_u64, req_str};
use crate::state::{Key, KeyState};

pub(super) fn metadata(em: &Emulator, k: &Key) -> Value {
    let mut m = json!({
        "AWSAccountId": em.cfg.account_id,
        "KeyId": k.key_id,
        "Arn": k.arn,
        "CreationDate": k.created,
        "Enabled": k.state == KeyState::Enabled,
        "Description": k.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": k.state.as_str(),
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
    });
    if let Some(d) = k.deletion_date {
        m["DeletionDate"] = json!(d);
    }
    m
}

pub(super) fn create_key(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    em.authorize_unscoped(Op::CreateKey, caller)?;
    for field in ["KeySpec", "CustomerMasterKeySpec"] {
        if let Some(s) = opt_str(req, field)?
            && s != "SYMMETRIC_DEFAULT"
        {
            return Err(KmsError::validation(format!(
                "{field} {s} is not supported by the kms-emulator; only SYMMETRIC_DEFAULT (AES-256-GCM) keys"
            )));
        }
    }
    if let Some(u) = opt_str(req, "KeyUsage")?
        && u != "ENCRYPT_DECRYPT"
    {
        return Err(KmsError::validation(format!(
            "KeyUsage {u} is not valid for a SYMMETRIC_DEFAULT key; use ENCRYPT_DECRYPT"
        )));
    }
    if let Some(o) = opt_str(req, "Origin")?
        && o != "AWS_KMS"
    {
        return Err(KmsError::new(
            ErrorKind::UnsupportedOperation,
            format!("Origin {o} is not supported by the kms-emulator; only AWS_KMS"),
        ));
    }
    let policy = match opt_str(req, "Policy")? {
        Some(p) => {
            key_policy::lockout_check(em, caller, &Policy::parse(p)?, req)?;
            p.to_string()
        }
        None => default_policy(&em.cfg.account_id),
    };
    let description = opt_str(req, "Description")?.unwrap_or_default().to_string();
    if description.len() > 8192 {
        return Err(KmsError::validation("Description is longer than 8192 characters"));
    }
    let mut tags = Vec::new();
    if let Some(Value::Array(ts)) = req.get("Tags") {
        for t in ts {
            let k = t.get("TagKey").and_then(Value::as_str);
            let v = t.get("TagValue").and_then(Value::as_str);
            match (k, v) {
                (Some(k), Some(v)) => tags.push((k.to_string(), v.to_string())),
                _ => {
                    return Err(KmsError::validation("each Tag needs string TagKey and TagValue"));
                }
            }
        }
    }
    let key_id = uuid::Uuid::new_v4().to_string();
    let mut material = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(material.as_mut());
    let key = Key {
        arn: em.key_arn(&key_id),
        key_id: key_id.clone(),
        material,
        policy,
        description,
        created: now_secs(),
        state: KeyState::Enabled,
        deletion_date: None,
        tags,
    };
    audit.key_arn = Some(key.arn.clone());
    let out = json!({ "KeyMetadata": metadata(em, &key) });
    let mut store = lock(em)?;
    store.keys.insert(key_id.clone(), key);
    commit(em, &mut store, |s| {
        s.keys.remove(&key_id);
    })?;
    Ok(out)
}

pub(super) fn list_keys(em: &Emulator, caller: &Caller) -> Result<Value, KmsError> {
    em.authorize_unscoped(Op::ListKeys, caller)?;
    let store = lock(em)?;
    let keys: Vec<Value> = store.keys.values().map(|k| json!({ "KeyId": k.key_id, "KeyArn": k.arn })).collect();
    Ok(json!({ "Keys": keys, "Truncated": false }))
}

pub(super) fn change_state(
    em: &Emulator,
    op: Op,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    let mut store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let before = store.keys[&id].clone();
    audit.key_arn = Some(before.arn.clone());
    authorize_plain(em, &store, &before, op, caller)?;
    let mut after = before.clone();
    let mut out = json!({});
    match op {
        Op::EnableKey | Op::DisableKey => {
            if before.state == KeyState::PendingDeletion {
                em.check_usable(&before)?;
            }
            after.state = if op == Op::EnableKey { KeyState::Enabled } else { KeyState::Disabled };
        }
        Op::ScheduleKeyDeletion => {
            let days = opt_u64(req, "PendingWindowInDays")?.unwrap_or(30);
            if !(7..=30).contains(&days) {
                return Err(KmsError::validation("PendingWindowInDays must be between 7 and 30"));
            }
            after.state = KeyState::PendingDeletion;
            let when = now_secs() + (days * 86400) as f64;
            after.deletion_date = Some(when);
            out = json!({
                "KeyId": before.arn, "DeletionDate": when, "KeyState": "PendingDeletion", "PendingWindowInDays": days
            });
        }
        _ => {
            if before.state != KeyState::PendingDeletion {
                return Err(KmsError::new(
                    ErrorKind::InvalidState,
                    format!("{} is not pending deletion ({})", before.arn, before.state.as_str()),
                ));
            }
            after.state = KeyState::Disabled;
            after.deletion_date = None;
            out = json!({ "KeyId": before.arn });
        }
    }
    store.keys.insert(id.clone(), after);
    commit(em, &mut store, |s| {
        s.keys.insert(id, before);
    })?;
    Ok(out)
}
