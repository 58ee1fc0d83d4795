//! Grants: CreateGrant, ListGrants, RevokeGrant. A grant lets its grantee run the listed
//! operations on the key, within its encryption-context constraints, without any key
//! policy statement naming it: which is why the shipped policy denies CreateGrant (a
//! Decrypt grant would skip the attestation condition).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Op, base_context, commit, lock, now_secs};
use crate::audit::AuditRecord;
use crate::emulator::{Caller, Emulator};
use crate::error::{ErrorKind, KmsError};
use crate::request::{opt_str, req_str};
use crate::state::Grant;

/// Operations a grant may name (KMS's list for symmetric keys).
const GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateMac",
    "VerifyMac",
];

fn string_map(v: Option<&Value>, what: &str) -> Result<Option<BTreeMap<String, String>>, KmsError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| KmsError::validation(format!("{what} values must be strings")))
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(KmsError::validation(format!("{what} must be an object of strings"))),
    }
}

pub(super) fn create_grant(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    let grantee = req_str(req, "GranteePrincipal")?.to_string();
    let operations: Vec<String> = match req.get("Operations") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| KmsError::validation("Operations must be strings")))
            .collect::<Result<_, _>>()?,
        _ => return Err(KmsError::validation("Operations is required (a non-empty list)")),
    };
    if let Some(bad) = operations.iter().find(|o| !GRANT_OPERATIONS.contains(&o.as_str())) {
        return Err(KmsError::validation(format!(
            "grant operation {bad} is not one of {}",
            GRANT_OPERATIONS.join(", ")
        )));
    }
    let constraints = req.get("Constraints");
    let context_subset =
        string_map(constraints.and_then(|c| c.get("EncryptionContextSubset")), "EncryptionContextSubset")?
            .unwrap_or_default();
    let context_equals =
        string_map(constraints.and_then(|c| c.get("EncryptionContextEquals")), "EncryptionContextEquals")?;
    let mut ctx = base_context(caller, &BTreeMap::new());
    ctx.insert_all("kms:GrantOperations", operations.clone());
    ctx.insert("kms:GranteePrincipal", grantee.clone());
    ctx.insert("kms:GrantIsForAWSResource", "false");
    let mut store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = store.keys[&id].clone();
    audit.key_arn = Some(key.arn.clone());
    em.authorize(&store, &key, Op::CreateGrant.name(), caller, &ctx, None)?;
    let grant_id = uuid::Uuid::new_v4().simple().to_string();
    store.grants.push(Grant {
        grant_id: grant_id.clone(),
        key_id: key.key_id.clone(),
        grantee_principal: grantee,
        retiring_principal: opt_str(req, "RetiringPrincipal")?.map(str::to_string),
        operations,
        context_subset,
        context_equals,
        name: opt_str(req, "Name")?.map(str::to_string),
        issuing_account: caller.account.clone(),
        created: now_secs(),
    });
    commit(em, &mut store, |s| s.grants.retain(|g| g.grant_id != grant_id))?;
    Ok(json!({ "GrantId": grant_id, "GrantToken": format!("grant-token-{grant_id}") }))
}

pub(super) fn list_grants(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    let store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = &store.keys[&id];
    audit.key_arn = Some(key.arn.clone());
    em.authorize(&store, key, Op::ListGrants.name(), caller, &base_context(caller, &BTreeMap::new()), None)?;
    let grants: Vec<Value> = store
        .grants
        .iter()
        .filter(|g| g.key_id == key.key_id)
        .map(|g| {
            json!({
                "KeyId": key.arn,
                "GrantId": g.grant_id,
                "Name": g.name,
                "CreationDate": g.created,
                "GranteePrincipal": g.grantee_principal,
                "RetiringPrincipal": g.retiring_principal,
                "IssuingAccount": format!("arn:aws:iam::{}:root", g.issuing_account),
                "Operations": g.operations,
                "Constraints": {
                    "EncryptionContextSubset": g.context_subset,
                    "EncryptionContextEquals": g.context_equals,
                },
            })
        })
        .collect();
    Ok(json!({ "Grants": grants, "Truncated": false }))
}

pub(super) fn revoke_grant(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    let grant_id = req_str(req, "GrantId")?.to_string();
    let mut store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = store.keys[&id].clone();
    audit.key_arn = Some(key.arn.clone());
    em.authorize(&store, &key, Op::RevokeGrant.name(), caller, &base_context(caller, &BTreeMap::new()), None)?;
    let Some(pos) = store.grants.iter().position(|g| g.grant_id == grant_id && g.key_id == key.key_id) else {
        return Err(KmsError::new(
            ErrorKind::InvalidGrantId,
            format!("grant {grant_id} does not exist on {}", key.arn),
        ));
    };
    let removed = store.grants.remove(pos);
    commit(em, &mut store, |s| s.grants.insert(pos, removed))?;
    Ok(json!({}))
}
