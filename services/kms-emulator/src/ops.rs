//! The KMS operations. Each takes the parsed JSON request and returns the JSON response
//! (or a KMS error), filling in the audit record as it learns the key and recipient.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::audit::AuditRecord;
use crate::blob;
use crate::emulator::{Caller, Emulator};
use crate::error::{ErrorKind, KmsError};
use crate::policy::{Decision, Policy, RequestContext, default_policy};
use crate::recipient::{self, VerifiedRecipient};
use crate::request::{encryption_context, opt_blob, opt_bool, opt_str, opt_u64, req_str};
use crate::state::{Alias, Key, KeyState, Store};

/// Operations served, for UnsupportedOperation messages and `readOnly` in the audit log.
pub const OPERATIONS: &[(&str, bool)] = &[
    ("CreateKey", false),
    ("DescribeKey", true),
    ("ListKeys", true),
    ("EnableKey", false),
    ("DisableKey", false),
    ("ScheduleKeyDeletion", false),
    ("CancelKeyDeletion", false),
    ("CreateAlias", false),
    ("DeleteAlias", false),
    ("ListAliases", true),
    ("Encrypt", true),
    ("Decrypt", true),
    ("GenerateDataKey", true),
    ("GenerateDataKeyWithoutPlaintext", true),
    ("GenerateRandom", true),
    ("PutKeyPolicy", false),
    ("GetKeyPolicy", true),
    ("ListKeyPolicies", true),
];

/// KMS limit on Encrypt plaintext.
const MAX_ENCRYPT_PLAINTEXT: usize = 4096;
/// KMS limit on data keys / random bytes.
const MAX_RANDOM_BYTES: u64 = 1024;

pub fn dispatch(
    em: &Emulator,
    op: &str,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    match op {
        "CreateKey" => create_key(em, caller, req, audit),
        "DescribeKey" => with_key(em, caller, req, audit, "DescribeKey", |em, k| {
            Ok(json!({ "KeyMetadata": metadata(em, k) }))
        }),
        "ListKeys" => list_keys(em),
        "EnableKey" | "DisableKey" | "ScheduleKeyDeletion" | "CancelKeyDeletion" => {
            key_state_op(em, op, caller, req, audit)
        }
        "CreateAlias" => create_alias(em, caller, req, audit),
        "DeleteAlias" => delete_alias(em, caller, req, audit),
        "ListAliases" => list_aliases(em, req),
        "Encrypt" => encrypt(em, caller, req, audit),
        "Decrypt" => decrypt(em, caller, req, audit),
        "GenerateDataKey" => generate_data_key(em, caller, req, audit, true),
        "GenerateDataKeyWithoutPlaintext" => generate_data_key(em, caller, req, audit, false),
        "GenerateRandom" => generate_random(em, req, audit),
        "PutKeyPolicy" => put_key_policy(em, caller, req, audit),
        "GetKeyPolicy" => with_key(em, caller, req, audit, "GetKeyPolicy", |_, k| {
            policy_name(req)?;
            Ok(json!({ "Policy": k.policy, "PolicyName": "default" }))
        }),
        "ListKeyPolicies" => with_key(em, caller, req, audit, "ListKeyPolicies", |_, _| {
            Ok(json!({ "PolicyNames": ["default"], "Truncated": false }))
        }),
        other => Err(KmsError::new(
            ErrorKind::UnsupportedOperation,
            format!(
                "operation {other} is not implemented by the kms-emulator; supported: {}",
                OPERATIONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn lock(em: &Emulator) -> Result<std::sync::MutexGuard<'_, Store>, KmsError> {
    em.store
        .lock()
        .map_err(|_| KmsError::internal("state lock poisoned; restart the emulator"))
}

fn now_secs() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64 / 1000.0).floor()
}

fn metadata(em: &Emulator, k: &Key) -> Value {
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

fn base_context(em: &Emulator, ctx_map: &BTreeMap<String, String>) -> RequestContext {
    let mut ctx = RequestContext::default();
    ctx.insert("kms:CallerAccount", em.cfg.account_id.clone());
    for (k, v) in ctx_map {
        ctx.insert(&format!("kms:EncryptionContext:{k}"), v.clone());
    }
    ctx
}

/// The common shape: resolve KeyId, record it, authorize `action` with no extra context.
fn with_key(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
    action: &str,
    f: impl FnOnce(&Emulator, &Key) -> Result<Value, KmsError>,
) -> Result<Value, KmsError> {
    let store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = &store.keys[&id];
    audit.key_arn = Some(key.arn.clone());
    em.authorize(
        key,
        action,
        caller,
        &base_context(em, &BTreeMap::new()),
        None,
    )?;
    f(em, key)
}

fn policy_name(req: &Value) -> Result<(), KmsError> {
    match opt_str(req, "PolicyName")? {
        None | Some("default") => Ok(()),
        Some(other) => Err(KmsError::not_found(format!(
            "policy name '{other}' does not exist; KMS keys have exactly one policy, named \"default\""
        ))),
    }
}

/// Real KMS refuses a policy that would stop the caller from changing it again.
fn lockout_check(em: &Emulator, policy: &Policy, req: &Value) -> Result<(), KmsError> {
    if opt_bool(req, "BypassPolicyLockoutSafetyCheck")? {
        return Ok(());
    }
    let probe = format!("arn:aws:kms:{}:{}:key/*", em.cfg.region, em.cfg.account_id);
    match policy.evaluate(
        "kms:PutKeyPolicy",
        &probe,
        &base_context(em, &BTreeMap::new()),
    ) {
        Decision::Allow => Ok(()),
        _ => Err(KmsError::malformed_policy(
            "The new key policy will not allow you to update the key policy in the future (no statement allows kms:PutKeyPolicy for the caller). Add kms:PutKeyPolicy (or kms:Put* / kms:*) to an admin statement, or pass BypassPolicyLockoutSafetyCheck=true",
        )),
    }
}

fn create_key(
    em: &Emulator,
    _caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
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
            lockout_check(em, &Policy::parse(p)?, req)?;
            p.to_string()
        }
        None => default_policy(&em.cfg.account_id),
    };
    let description = opt_str(req, "Description")?.unwrap_or_default().to_string();
    if description.len() > 8192 {
        return Err(KmsError::validation(
            "Description is longer than 8192 characters",
        ));
    }
    let mut tags = Vec::new();
    if let Some(Value::Array(ts)) = req.get("Tags") {
        for t in ts {
            let k = t.get("TagKey").and_then(Value::as_str);
            let v = t.get("TagValue").and_then(Value::as_str);
            match (k, v) {
                (Some(k), Some(v)) => tags.push((k.to_string(), v.to_string())),
                _ => {
                    return Err(KmsError::validation(
                        "each Tag needs string TagKey and TagValue",
                    ));
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
    if let Err(e) = em.persist(&store) {
        store.keys.remove(&key_id);
        return Err(e);
    }
    Ok(out)
}

fn list_keys(em: &Emulator) -> Result<Value, KmsError> {
    let store = lock(em)?;
    let keys: Vec<Value> = store
        .keys
        .values()
        .map(|k| json!({ "KeyId": k.key_id, "KeyArn": k.arn }))
        .collect();
    Ok(json!({ "Keys": keys, "Truncated": false }))
}

fn key_state_op(
    em: &Emulator,
    op: &str,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    let mut store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let before = store.keys[&id].clone();
    audit.key_arn = Some(before.arn.clone());
    em.authorize(
        &before,
        op,
        caller,
        &base_context(em, &BTreeMap::new()),
        None,
    )?;
    let mut after = before.clone();
    let mut out = json!({});
    match op {
        "EnableKey" | "DisableKey" => {
            if before.state == KeyState::PendingDeletion {
                em.check_usable(&before)?;
            }
            after.state = if op == "EnableKey" {
                KeyState::Enabled
            } else {
                KeyState::Disabled
            };
        }
        "ScheduleKeyDeletion" => {
            let days = opt_u64(req, "PendingWindowInDays")?.unwrap_or(30);
            if !(7..=30).contains(&days) {
                return Err(KmsError::validation(
                    "PendingWindowInDays must be between 7 and 30",
                ));
            }
            after.state = KeyState::PendingDeletion;
            let when = now_secs() + (days * 86400) as f64;
            after.deletion_date = Some(when);
            out = json!({ "KeyId": before.arn, "DeletionDate": when, "KeyState": "PendingDeletion", "PendingWindowInDays": days });
        }
        _ => {
            if before.state != KeyState::PendingDeletion {
                return Err(KmsError::new(
                    ErrorKind::InvalidState,
                    format!(
                        "{} is not pending deletion ({})",
                        before.arn,
                        before.state.as_str()
                    ),
                ));
            }
            after.state = KeyState::Disabled;
            after.deletion_date = None;
            out = json!({ "KeyId": before.arn });
        }
    }
    store.keys.insert(id.clone(), after);
    if let Err(e) = em.persist(&store) {
        store.keys.insert(id, before);
        return Err(e);
    }
    Ok(out)
}

fn create_alias(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    let name = req_str(req, "AliasName")?;
    let valid = name.len() <= 256
        && name.starts_with("alias/")
        && name.len() > "alias/".len()
        && name["alias/".len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c));
    if !valid {
        return Err(KmsError::validation(format!(
            "AliasName '{name}' is invalid: it must look like alias/NAME (letters, digits, / _ -)"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::validation(
            "alias/aws/ is reserved for AWS managed keys; choose another name",
        ));
    }
    let target = req_str(req, "TargetKeyId")?;
    if target.starts_with("alias/") || target.contains(":alias/") {
        return Err(KmsError::validation(
            "TargetKeyId must be a key id or key ARN, not an alias",
        ));
    }
    let mut store = lock(em)?;
    let id = em.resolve(&store, target)?;
    let key = store.keys[&id].clone();
    audit.key_arn = Some(key.arn.clone());
    em.authorize(
        &key,
        "CreateAlias",
        caller,
        &base_context(em, &BTreeMap::new()),
        None,
    )?;
    if let Some(existing) = store.aliases.get(name) {
        return Err(KmsError::new(
            ErrorKind::AlreadyExists,
            format!(
                "An alias with the name {} already exists (it points to key {}). Delete it first (aws kms delete-alias --alias-name {name}) or use another name",
                em.alias_arn(name),
                existing.target_key_id
            ),
        ));
    }
    store.aliases.insert(
        name.to_string(),
        Alias {
            target_key_id: id,
            created: now_secs(),
        },
    );
    if let Err(e) = em.persist(&store) {
        store.aliases.remove(name);
        return Err(e);
    }
    Ok(json!({}))
}

fn delete_alias(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    let name = req_str(req, "AliasName")?;
    let mut store = lock(em)?;
    let id = em.resolve(&store, name)?;
    let key = store.keys[&id].clone();
    audit.key_arn = Some(key.arn.clone());
    em.authorize(
        &key,
        "DeleteAlias",
        caller,
        &base_context(em, &BTreeMap::new()),
        None,
    )?;
    let removed = store.aliases.remove(name);
    if let Err(e) = em.persist(&store) {
        if let Some(a) = removed {
            store.aliases.insert(name.to_string(), a);
        }
        return Err(e);
    }
    Ok(json!({}))
}

fn list_aliases(em: &Emulator, req: &Value) -> Result<Value, KmsError> {
    let store = lock(em)?;
    let filter = match opt_str(req, "KeyId")? {
        Some(k) => Some(em.resolve(&store, k)?),
        None => None,
    };
    let aliases: Vec<Value> = store
        .aliases
        .iter()
        .filter(|(_, a)| filter.as_ref().is_none_or(|f| *f == a.target_key_id))
        .map(|(name, a)| {
            json!({
                "AliasName": name,
                "AliasArn": em.alias_arn(name),
                "TargetKeyId": a.target_key_id,
                "CreationDate": a.created,
                "LastUpdatedDate": a.created,
            })
        })
        .collect();
    Ok(json!({ "Aliases": aliases, "Truncated": false }))
}

fn put_key_policy(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    policy_name(req)?;
    let text = req_str(req, "Policy")?;
    let parsed = Policy::parse(text)?;
    let mut store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let before = store.keys[&id].clone();
    audit.key_arn = Some(before.arn.clone());
    em.authorize(
        &before,
        "PutKeyPolicy",
        caller,
        &base_context(em, &BTreeMap::new()),
        None,
    )?;
    lockout_check(em, &parsed, req)?;
    let mut after = before.clone();
    after.policy = text.to_string();
    store.keys.insert(id.clone(), after);
    if let Err(e) = em.persist(&store) {
        store.keys.insert(id, before);
        return Err(e);
    }
    Ok(json!({}))
}

fn check_symmetric_default(req: &Value) -> Result<(), KmsError> {
    match opt_str(req, "EncryptionAlgorithm")? {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(a) => Err(KmsError::validation(format!(
            "EncryptionAlgorithm {a} is not valid for a symmetric key; use SYMMETRIC_DEFAULT"
        ))),
    }
}

fn encrypt(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    check_symmetric_default(req)?;
    let plaintext = Zeroizing::new(opt_blob(req, "Plaintext")?.unwrap_or_default());
    if plaintext.is_empty() || plaintext.len() > MAX_ENCRYPT_PLAINTEXT {
        return Err(KmsError::validation(format!(
            "Plaintext is {} bytes; KMS Encrypt takes 1 to 4096 bytes (encrypt larger data locally under a data key from GenerateDataKey)",
            plaintext.len()
        )));
    }
    let ctx_map = encryption_context(req)?;
    let store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = &store.keys[&id];
    audit.key_arn = Some(key.arn.clone());
    em.check_usable(key)?;
    em.authorize(key, "Encrypt", caller, &base_context(em, &ctx_map), None)?;
    let blob = blob::seal(&key.key_id, &key.material, &plaintext, &ctx_map);
    Ok(json!({
        "CiphertextBlob": B64.encode(blob),
        "KeyId": key.arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

/// Parses Recipient, records it in the audit event and adds its condition keys.
fn recipient_into(
    em: &Emulator,
    req: &Value,
    audit: &mut AuditRecord,
    ctx: &mut RequestContext,
) -> Result<Option<VerifiedRecipient>, KmsError> {
    match recipient::parse(req, &em.recipient)? {
        Some((r, alg)) => {
            audit.recipient = Some(r.audit(&alg));
            r.add_to_context(ctx);
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

/// How a secret leaves KMS: wrapped to the attested enclave's key when the request
/// carried a Recipient (`CiphertextForRecipient`, and never `Plaintext`), else in
/// plaintext. The one place Decrypt, GenerateDataKey and GenerateRandom decide it.
fn release(
    out: &mut Value,
    recipient: Option<&VerifiedRecipient>,
    secret: &[u8],
) -> Result<(), KmsError> {
    match recipient {
        Some(r) => out["CiphertextForRecipient"] = json!(r.wrap(secret)?),
        None => out["Plaintext"] = json!(B64.encode(secret)),
    }
    Ok(())
}

fn decrypt(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    check_symmetric_default(req)?;
    let blob = opt_blob(req, "CiphertextBlob")?
        .filter(|b| !b.is_empty())
        .ok_or_else(|| KmsError::validation("CiphertextBlob is required"))?;
    let blob_key =
        blob::key_id_of(&blob).map_err(|e| KmsError::invalid_ciphertext(e.to_string()))?;
    let ctx_map = encryption_context(req)?;
    let mut ctx = base_context(em, &ctx_map);
    let recipient = recipient_into(em, req, audit, &mut ctx)?;
    let store = lock(em)?;
    let key = store.keys.get(&blob_key).ok_or_else(|| {
        KmsError::invalid_ciphertext(format!(
            "the ciphertext was encrypted under key {} which this emulator does not have (different --state-file, or the key was created on another KMS)",
            em.key_arn(&blob_key)
        ))
    })?;
    audit.key_arn = Some(key.arn.clone());
    if let Some(given) = opt_str(req, "KeyId")? {
        let given_id = em.resolve(&store, given)?;
        if given_id != blob_key {
            return Err(KmsError::new(
                ErrorKind::IncorrectKey,
                format!(
                    "The key ID in the request ({given} -> {}) does not identify the KMS key that encrypted the ciphertext ({}). Pass that key, or omit KeyId",
                    em.key_arn(&given_id),
                    key.arn
                ),
            ));
        }
    }
    em.check_usable(key)?;
    em.authorize(key, "Decrypt", caller, &ctx, recipient.as_ref())?;
    let plaintext = blob::open(&blob, &key.material, &ctx_map)
        .map_err(|e| KmsError::invalid_ciphertext(e.to_string()))?;
    let mut out = json!({ "KeyId": key.arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT" });
    release(&mut out, recipient.as_ref(), &plaintext)?;
    Ok(out)
}

fn data_key_len(req: &Value) -> Result<usize, KmsError> {
    let spec = opt_str(req, "KeySpec")?;
    let n = opt_u64(req, "NumberOfBytes")?;
    match (spec, n) {
        (Some(_), Some(_)) => Err(KmsError::validation(
            "pass either KeySpec or NumberOfBytes, not both",
        )),
        (None, None) => Err(KmsError::validation(
            "Please specify either number of bytes or key spec (KeySpec AES_256 for an AES-256 data key)",
        )),
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (Some(s), None) => Err(KmsError::validation(format!(
            "KeySpec {s} is invalid; use AES_256 or AES_128"
        ))),
        (None, Some(n)) if (1..=MAX_RANDOM_BYTES).contains(&n) => Ok(n as usize),
        (None, Some(n)) => Err(KmsError::validation(format!(
            "NumberOfBytes {n} is out of range 1..1024"
        ))),
    }
}

fn generate_data_key(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
    with_plaintext: bool,
) -> Result<Value, KmsError> {
    let op = if with_plaintext {
        "GenerateDataKey"
    } else {
        "GenerateDataKeyWithoutPlaintext"
    };
    let len = data_key_len(req)?;
    let ctx_map = encryption_context(req)?;
    let mut ctx = base_context(em, &ctx_map);
    let recipient = if with_plaintext {
        recipient_into(em, req, audit, &mut ctx)?
    } else if req.get("Recipient").is_some_and(|v| !v.is_null()) {
        return Err(KmsError::validation(
            "GenerateDataKeyWithoutPlaintext does not take a Recipient (nothing is returned in plaintext)",
        ));
    } else {
        None
    };
    let store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = &store.keys[&id];
    audit.key_arn = Some(key.arn.clone());
    em.check_usable(key)?;
    em.authorize(key, op, caller, &ctx, recipient.as_ref())?;
    let mut data_key = Zeroizing::new(vec![0u8; len]);
    rand::rngs::OsRng.fill_bytes(&mut data_key);
    let blob = blob::seal(&key.key_id, &key.material, &data_key, &ctx_map);
    let mut out = json!({ "CiphertextBlob": B64.encode(blob), "KeyId": key.arn });
    if with_plaintext {
        release(&mut out, recipient.as_ref(), &data_key)?;
    }
    Ok(out)
}

/// GenerateRandom is not key-scoped: real KMS authorizes it with IAM policies only, and
/// the emulator has no IAM, so it is always allowed (a Recipient is still verified).
fn generate_random(em: &Emulator, req: &Value, audit: &mut AuditRecord) -> Result<Value, KmsError> {
    let n = opt_u64(req, "NumberOfBytes")?
        .ok_or_else(|| KmsError::validation("NumberOfBytes is required (1..1024)"))?;
    if !(1..=MAX_RANDOM_BYTES).contains(&n) {
        return Err(KmsError::validation(format!(
            "NumberOfBytes {n} is out of range 1..1024"
        )));
    }
    let mut ctx = RequestContext::default();
    let recipient = recipient_into(em, req, audit, &mut ctx)?;
    let mut bytes = Zeroizing::new(vec![0u8; n as usize]);
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut out = json!({});
    release(&mut out, recipient.as_ref(), &bytes)?;
    Ok(out)
}
