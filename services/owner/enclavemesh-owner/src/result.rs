//! A `Reveal` result, opened on the owner's client with the owner's key, for the
//! workflow, step and field it was sealed for.

use enclavemesh_proto::v1::{RevealField, SealedResult};
use zeroize::Zeroizing;

use crate::{OwnerError, OwnerKey};

/// The value of `field` at `step` of `workflow_id`, as text.
pub fn open_result(
    key: &OwnerKey,
    workflow_id: &str,
    step: u64,
    field: RevealField,
    sealed: &SealedResult,
) -> Result<Zeroizing<String>, OwnerError> {
    let bytes = enclavemesh_sealing::owner::open_result(&key.0, workflow_id, step, field.as_str_name(), sealed)
        .map_err(OwnerError::Result)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| OwnerError::NotText)?;
    Ok(Zeroizing::new(text.to_string()))
}
