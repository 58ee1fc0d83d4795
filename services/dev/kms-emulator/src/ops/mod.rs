//! The KMS operations, dispatched by a typed [`Op`]: one file per family. Each
//! operation takes the parsed JSON request and returns the JSON response (or a KMS
//! error), filling in the audit record as it learns the key and recipient.

mod aliases;
mod crypto;
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

/// Runs `op`.
pub fn dispatch(
    em: &Emulator,
    op: Op,
    caller: &Caller,
    req: &Value,
    audit: &mut AuditRecord,
) -> Result<Value, KmsError> {
    match op {
        Op::CreateKey => keys::create_key(em, req, audit),
        Op::DescribeKey => {
            with_key(em, op, caller, req, audit, |em, k| Ok(json!({ "KeyMetadata": keys::metadata(em, k) })))
        }
        Op::ListKeys => keys::list_keys(em),
        Op::EnableKey | Op::DisableKey | Op::ScheduleKeyDeletion | Op::CancelKeyDeletion => {
            keys::change_state(em, op, caller, req, audit)
        }
        Op::CreateAlias => aliases::create_alias(em, caller, req, audit),
        Op::DeleteAlias => aliases::delete_alias(em, caller, req, audit),
        Op::ListAliases => aliases::list_aliases(em, req),
        Op::Encrypt => crypto::encrypt(em, caller, req, audit),
        Op::Decrypt => crypto::decrypt(em, caller, req, audit),
        Op::GenerateDataKey => crypto::generate_data_key(em, caller, req, audit, true),
        Op::GenerateDataKeyWithoutPlaintext => crypto::generate_data_key(em, caller, req, audit, false),
        Op::GenerateRandom => crypto::generate_random(em, req, audit),
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

fn base_context(em: &Emulator, ctx_map: &BTreeMap<String, String>) -> RequestContext {
    let mut ctx = RequestContext::default();
    ctx.insert("kms:CallerAccount", em.cfg.account_id.clone());
    for (k, v) in ctx_map {
        ctx.insert(&format!("kms:EncryptionContext:{k}"), v.clone());
    }
    ctx
}

/// Authorizes `op` on `key` for `caller` with no request-specific condition keys
/// (the management operations).
fn authorize_plain(em: &Emulator, key: &Key, op: Op, caller: &Caller) -> Result<(), KmsError> {
    em.authorize(key, op, caller, &base_context(em, &BTreeMap::new()), None)
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
    authorize_plain(em, key, op, caller)?;
    f(em, key)
}

/// Persists `store` after a change; if that fails, `undo` restores the change first, so
/// memory and the state file never disagree.
fn commit(em: &Emulator, store: &mut Store, undo: impl FnOnce(&mut Store)) -> Result<(), KmsError> {
    em.persist(store).inspect_err(|_| undo(store))
}
