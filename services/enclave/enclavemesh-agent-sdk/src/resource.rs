//! KMS-sealed resources: private data a role needs that is not the owner's per-workflow
//! input (a screening list, a model, a rate table).
//!
//! Why this way: the data's owner seals it on their own client exactly as a workflow
//! input (`enclavemesh seal-resource`: the input key, its policy, the owner's principal),
//! with `resource:NAME` in the workflow slot of the encryption context. The parent passes
//! the file along and cannot read it; the agent opens it at boot, through KMS, with its
//! own attestation, and hands the plaintext to [`Role::load`]. A resource named X does
//! not open as Y, and no workflow id may start with the prefix, so a resource never
//! passes for a workflow's input.

use std::path::{Path, PathBuf};

use base64::Engine;
use enclavemesh_proto::v1::SealedInput;

use crate::identity::EnclaveIdentity;
use crate::kms::Kms;
use crate::kms::pin::KeyPin;
use crate::role::Role;

/// What stands in the workflow slot of a resource's encryption context, before its name.
pub const WORKFLOW_ID_PREFIX: &str = "resource:";

/// The most a sealed resource file may hold (base64 text).
const MAX_RESOURCE_FILE_BYTES: u64 = 128 * 1024;

/// `--resource NAME=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceArg {
    pub name: String,
    pub file: PathBuf,
}

impl std::str::FromStr for ResourceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, file) = s.split_once('=').ok_or_else(|| format!("'{s}' is not NAME=FILE"))?;
        if !enclavemesh_proto::limits::is_agent_name(name) {
            return Err(format!("resource name '{name}' is not 1 to 64 of A-Z a-z 0-9 - _"));
        }
        if file.is_empty() {
            return Err(format!("resource '{name}' names no file"));
        }
        Ok(ResourceArg { name: name.to_string(), file: PathBuf::from(file) })
    }
}

/// Why a resource could not be loaded: the agent does not serve without it.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("resource '{name}' needs --input-key-arn (AGENT_INPUT_KEY_ARN): resources are sealed under the input key")]
    NoInputKey { name: String },
    #[error("cannot read resource '{name}' from {file}: {reason}. Make it with `enclavemesh seal-resource`")]
    File { name: String, file: PathBuf, reason: String },
    #[error(
        "resource '{name}' does not open: {reason}. It must be sealed by the data owner for this name \
         (`enclavemesh seal-resource --name {name}`), under the input key this image pins"
    )]
    Open { name: String, reason: String },
    #[error("the role refused resource '{name}': {reason}")]
    Refused { name: String, reason: String },
}

fn read(name: &str, file: &Path) -> Result<SealedInput, ResourceError> {
    let bad = |reason: String| ResourceError::File { name: name.to_string(), file: file.to_path_buf(), reason };
    let len = std::fs::metadata(file).map_err(|e| bad(e.to_string()))?.len();
    if len > MAX_RESOURCE_FILE_BYTES {
        return Err(bad(format!("{len} bytes; the limit is {MAX_RESOURCE_FILE_BYTES}")));
    }
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim().as_bytes())
        .map_err(|e| bad(format!("not base64: {e}")))?;
    enclavemesh_proto::decode_bounded(&bytes, MAX_RESOURCE_FILE_BYTES as usize)
        .map_err(|e| bad(format!("not a sealed resource: {e}")))
}

/// Opens every resource and gives it to the role, in order.
pub async fn load_all<R: Role>(
    role: &mut R,
    resources: &[ResourceArg],
    kms: &Kms,
    key: Option<&KeyPin>,
    identity: &EnclaveIdentity,
) -> Result<(), ResourceError> {
    for r in resources {
        let key = key.ok_or_else(|| ResourceError::NoInputKey { name: r.name.clone() })?;
        let sealed = read(&r.name, &r.file)?;
        let context_id = format!("{WORKFLOW_ID_PREFIX}{}", r.name);
        let plain = crate::input::open_sealed(kms, key, identity, &context_id, Some(&sealed))
            .await
            .map_err(|s| ResourceError::Open { name: r.name.clone(), reason: s.message().to_string() })?;
        let len = plain.len();
        role.load(&r.name, plain)
            .map_err(|e| ResourceError::Refused { name: r.name.clone(), reason: e.to_string() })?;
        tracing::info!(resource = %r.name, bytes = len, "sealed resource opened and loaded");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_is_name_equals_file() {
        let r: ResourceArg = "screening-list=/etc/list.sealed".parse().unwrap();
        assert_eq!((r.name.as_str(), r.file.to_str()), ("screening-list", Some("/etc/list.sealed")));
        for bad in ["list", "=f", "a b=f", "list="] {
            assert!(bad.parse::<ResourceArg>().is_err(), "{bad}");
        }
    }
}
