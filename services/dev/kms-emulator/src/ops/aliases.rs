//! Aliases: CreateAlias, DeleteAlias, ListAliases.

use serde_json::{Value, json};

use super::{Op, authorize_plain, commit, lock, now_secs};
use crate::audit::AuditRecord;
use crate::emulator::{Caller, Emulator};
use crate::error::{ErrorKind, KmsError};
use crate::request::{opt_str, req_str};
use crate::state::Alias;

pub(super) fn create_alias(
    em: &Emulator,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    let name = req_str(req, "AliasName")?;
    let valid = name.len() <= 256
        && name.starts_with("alias/")
        && name.len() > "alias/".len()
        && name["alias/".len()..].chars().all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c));
    if !valid {
        return Err(KmsError::validation(format!(
            "AliasName '{name}' is invalid: it must look like alias/NAME (letters, digits, / _ -)"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::validation("alias/aws/ is reserved for AWS managed keys; choose another name"));
    }
    let target = req_str(req, "TargetKeyId")?;
    if target.starts_with("alias/") || target.contains(":alias/") {
        return Err(KmsError::validation("TargetKeyId must be a key id or key ARN, not an alias"));
    }
    let mut store = lock(em)?;
    let id = em.resolve(&store, target)?;
    let key = store.keys[&id].clone();
    audit.key_arn = Some(key.arn.clone());
    authorize_plain(em, &store, &key, Op::CreateAlias, caller)?;
    if let Some(existing) = store.aliases.get(name) {
        return Err(KmsError::new(
            ErrorKind::AlreadyExists,
            format!(
                "An alias with the name {} already exists (it points to key {}). Delete it first (aws kms \
                    delete-alias --alias-name {name}) or use another name",
                em.alias_arn(name),
                existing.target_key_id
            ),
        ));
    }
    store.aliases.insert(name.to_string(), Alias { target_key_id: id, created: now_secs() });
    commit(em, &mut store, |s| {
        s.aliases.remove(name);
    })?;
    Ok(json!({}))
}

pub(super) fn delete_alias(
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
    authorize_plain(em, &store, &key, Op::DeleteAlias, caller)?;
    let removed = store.aliases.remove(name);
    commit(em, &mut store, |s| {
        if let Some(a) = removed {
            s.aliases.insert(name.to_string(), a);
        }
    })?;
    Ok(json!({}))
}

pub(super) fn list_aliases(em: &Emulator, caller: &Caller, req: &Value) -> Result<Value, KmsError> {
    em.authorize_unscoped(Op::ListAliases, caller)?;
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
