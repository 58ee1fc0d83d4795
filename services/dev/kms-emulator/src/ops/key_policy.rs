//! The key policy: PutKeyPolicy (with KMS's lockout safety check), GetKeyPolicy and
//! ListKeyPolicies (served through `with_key`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Op, base_context, commit, lock};
use crate::audit::AuditRecord;
use crate::emulator::{Caller, Emulator};
use crate::error::KmsError;
use crate::policy::{Decision, Policy, RequestContext};
use crate::request::{opt_bool, opt_str, req_str};

pub(super) fn policy_name(req: &Value) -> Result<(), KmsError> {
    match opt_str(req, "PolicyName")? {
        None | Some("default") => Ok(()),
        Some(other) => Err(KmsError::not_found(format!(
            "policy name '{other}' does not exist; KMS keys have exactly one policy, named \"default\""
        ))),
    }
}

/// Real KMS refuses a policy that would stop the caller from changing it again, unless
/// the caller says, with `BypassPolicyLockoutSafetyCheck`, that this is the point (a
/// locked policy: `setup-kms-policy.sh --lock`).
pub(super) fn lockout_check(em: &Emulator, caller: &Caller, policy: &Policy, req: &Value) -> Result<(), KmsError> {
    if opt_bool(req, "BypassPolicyLockoutSafetyCheck")? {
        return Ok(());
    }
    let probe = format!("arn:aws:kms:{}:{}:key/*", em.cfg.region, em.cfg.account_id);
    match policy.evaluate(
        &caller.principal(),
        &Op::PutKeyPolicy.action(),
        &probe,
        &base_context(caller, &BTreeMap::new()),
    ) {
        Decision::Allow(_) => Ok(()),
        _ => Err(KmsError::malformed_policy(format!(
            "The new key policy will not allow you to update the key policy in the future (no statement allows \
             kms:PutKeyPolicy for {}). Add kms:PutKeyPolicy to a statement naming the admin role, or pass \
             BypassPolicyLockoutSafetyCheck=true to lock the policy on purpose",
            caller.principal_arn
        ))),
    }
}

/// The request's own condition keys for PutKeyPolicy / CreateKey.
pub(super) fn policy_change_context(caller: &Caller, req: &Value) -> Result<RequestContext, KmsError> {
    let mut ctx = base_context(caller, &BTreeMap::new());
    ctx.insert("kms:BypassPolicyLockoutSafetyCheck", opt_bool(req, "BypassPolicyLockoutSafetyCheck")?.to_string());
    Ok(ctx)
}

pub(super) fn put_key_policy(
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
    em.authorize(&store, &before, Op::PutKeyPolicy.name(), caller, &policy_change_context(caller, req)?, None)?;
    lockout_check(em, caller, &parsed, req)?;
    let mut after = before.clone();
    after.policy = text.to_string();
    store.keys.insert(id.clone(), after);
    commit(em, &mut store, |s| {
        s.keys.insert(id, before);
    })?;
    Ok(json!({}))
}
