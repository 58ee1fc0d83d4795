//! Reading KMS JSON 1.1 request fields (PascalCase names, blobs as base64 strings) with
//! ValidationException messages that name the field.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use crate::error::KmsError;

/// Optional string field.
pub fn opt_str<'a>(req: &'a Value, field: &str) -> Result<Option<&'a str>, KmsError> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KmsError::validation(format!("{field} must be a string"))),
    }
}

/// Required string field.
pub fn req_str<'a>(req: &'a Value, field: &str) -> Result<&'a str, KmsError> {
    opt_str(req, field)?.filter(|s| !s.is_empty()).ok_or_else(|| {
        KmsError::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(field)
        ))
    })
}

/// Optional blob (base64 in JSON).
pub fn opt_blob(req: &Value, field: &str) -> Result<Option<Vec<u8>>, KmsError> {
    match opt_str(req, field)? {
        None => Ok(None),
        Some(s) => B64.decode(s).map(Some).map_err(|e| {
            KmsError::validation(format!(
                "{field} is not valid base64 ({e}); the JSON protocol carries blobs as standard base64 (the AWS \
                    CLI/SDK encode them for you)"
            ))
        }),
    }
}

/// Optional unsigned integer.
pub fn opt_u64(req: &Value, field: &str) -> Result<Option<u64>, KmsError> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_u64().map(Some).ok_or_else(|| KmsError::validation(format!("{field} must be a positive integer")))
        }
    }
}

/// Optional bool.
pub fn opt_bool(req: &Value, field: &str) -> Result<bool, KmsError> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(KmsError::validation(format!("{field} must be a boolean"))),
    }
}

/// `EncryptionContext`: a map of string to string (empty when absent).
pub fn encryption_context(req: &Value) -> Result<BTreeMap<String, String>, KmsError> {
    match req.get("EncryptionContext") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(KmsError::validation(format!("EncryptionContext value for '{k}' must be a string"))),
            })
            .collect(),
        Some(_) => Err(KmsError::validation("EncryptionContext must be a map of strings")),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The request parameters recorded in the audit log: an allow-list of non-secret fields,
/// renamed to CloudTrail's camelCase. Plaintext, blobs and attestation documents never
/// appear here.
pub fn audit_parameters(req: &Value) -> serde_json::Map<String, Value> {
    const SAFE: &[&str] = &[
        "KeyId",
        "KeySpec",
        "NumberOfBytes",
        "EncryptionContext",
        "EncryptionAlgorithm",
        "AliasName",
        "TargetKeyId",
        "PolicyName",
        "Description",
        "KeyUsage",
        "CustomerMasterKeySpec",
        "PendingWindowInDays",
        "BypassPolicyLockoutSafetyCheck",
        "Limit",
    ];
    let mut out = serde_json::Map::new();
    for f in SAFE {
        if let Some(v) = req.get(*f) {
            out.insert(lower_first(f), v.clone());
        }
    }
    if let Some(alg) = req.get("Recipient").and_then(|r| r.get("KeyEncryptionAlgorithm")) {
        out.insert("recipient".into(), serde_json::json!({ "keyEncryptionAlgorithm": alg }));
    }
    out
}
