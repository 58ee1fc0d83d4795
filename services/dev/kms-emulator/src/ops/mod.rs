//! The KMS operations, dispatched by a typed [`Op`]: one file per family. Each
//! operation takes the parsed JSON request and returns the JSON response (or a KMS
//! error), filling in the audit record as it learns the key and recipient.

mod aliases;
mod crypto;
mod data_keys;
mod grants;
mod key_policy;
mod keys;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::audit::AuditRecord;
use crate::emulator::{Caller, Emulator};
use crate::error::KmsError;
use crate::op::Op;
use crate::policy::RequestContext;
use crate::request::req_str;
use crate::state::{Key, Store};

/// Runs `op` for `caller`.
pub fn dispatch(
    em: &Emulator,
    op: Op,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    match op {
        Op::CreateKey => keys::create_key(em, caller, req, audit),
        Op::DescribeKey => {
            with_key(em, op, caller, req, audit, |em, k| Ok(json!({ "KeyMetadata": keys::metadata(em, k) })))
        }
        Op::ListKeys => keys::list_keys(em, caller),
        Op::EnableKey | Op::DisableKey | Op::ScheduleKeyDeletion | Op::CancelKeyDeletion => {
            keys::change_state(em, op, caller, req, audit)
        }
        Op::CreateAlias => aliases::create_alias(em, caller, req, audit),
        Op::DeleteAlias => aliases::delete_alias(em, caller, req, audit),
        Op::ListAliases => aliases::list_aliases(em, caller, req),
        Op::Encrypt => crypto::encrypt(em, caller, req, audit),
        Op::Decrypt => crypto::decrypt(em, caller, req, audit),
        Op::ReEncrypt => crypto::re_encrypt(em, caller, req, audit),
        Op::DeriveSharedSecret => crypto::derive_shared_secret(em, caller, req, audit),
        Op::GenerateDataKey => data_keys::generate_data_key(em, caller, req, audit, true),
        Op::GenerateDataKeyWithoutPlaintext => data_keys::generate_data_key(em, caller, req, audit, false),
        Op::GenerateDataKeyPair => data_keys::generate_data_key_pair(em, caller, req, audit, true),
        Op::GenerateDataKeyPairWithoutPlaintext => data_keys::generate_data_key_pair(em, caller, req, audit, false),
        Op::GenerateRandom => data_keys::generate_random(em, caller, req, audit),
        Op::CreateGrant => grants::create_grant(em, caller, req, audit),
        Op::ListGrants => grants::list_grants(em, caller, req, audit),
        Op::RevokeGrant => grants::revoke_grant(em, caller, req, audit),
        Op::PutKeyPolicy => key_policy::put_key_policy(em, caller, req, audit),
        Op::GetKeyPolicy => with_key(em, op, caller, req, audit, |_, k| {
            key_policy::policy_name(req)?;
            Ok(json!({ "Policy": k.policy, "PolicyName": "default" }))
        }),
        Op::ListKeyPolicies => {
            with_key(em, op, caller, req, audit, |_, _| Ok(json!({ "PolicyNames": ["default"], "Truncated": false })))
        }
    }
}

fn lock(em: &Emulator) -> Result<std::sync::MutexGuard<'_, Store>, KmsError> {
    em.store.lock().map_err(|_| KmsError::internal("state lock poisoned; restart the emulator"))
}

fn now_secs() -> f64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (d.as_millis() as f64 / 1000.0).floor()
}

/// The condition keys every request carries: who calls (`aws:PrincipalArn`,
/// `kms:CallerAccount`) and its encryption context (`kms:EncryptionContext:<k>`,
/// `kms:EncryptionContextKeys`).
fn base_context(caller: &Caller, ctx_map: &BTreeMap<String, String>) -> RequestContext {
    let mut ctx = RequestContext::default();
    ctx.insert("aws:PrincipalArn", caller.principal().iam_arn());
    ctx.insert("kms:CallerAccount", caller.account.clone());
    for (k, v) in ctx_map {
        ctx.insert(&format!("kms:EncryptionContext:{k}"), v.clone());
    }
    ctx.insert_all("kms:EncryptionContextKeys", ctx_map.keys().cloned().collect());
    ctx
}

/// Authorizes `op` on `key` for `caller` with no request-specific condition keys
/// (the management operations).
fn authorize_plain(em: &Emulator, store: &Store, key: &Key, op: Op, caller: &Caller) -> Result<(), KmsError> {
    em.authorize(store, key, op.name(), caller, &base_context(caller, &BTreeMap::new()), None)
}

/// The common shape: resolve KeyId, record it, authorize `op`, run `f`.
fn with_key(
    em: &Emulator,
    op: Op,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
    f: impl FnOnce(&Emulator, &Key) -> Result<Value, KmsError>,
) -> Result<Value, KmsError> {
    let store = lock(em)?;
    let id = em.resolve(&store, req_str(req, "KeyId")?)?;
    let key = &store.keys[&id];
    audit.key_arn = Some(key.arn.clone());
    authorize_plain(em, &store, key, op, caller)?;
    f(em, key)
}

/// Persists `store` after a change; if that fails, `undo` restores the change first, so
/// memory and the state file never disagree.
fn commit(em: &Emulator, store: &mut Store, undo: impl FnOnce(&mut Store)) -> Result<(), KmsError> {
    em.persist(store).inspect_err(|_| undo(store))
}
