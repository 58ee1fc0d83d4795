//! A `Reveal` result, opened on the owner's client with the owner's key, for the
//! workflow, step and field it was sealed for.

use enclavemesh_proto::v1::SealedResult;
use zeroize::Zeroizing;

use crate::{OwnerError, OwnerKey};

/// The value of `field` at `step` of `workflow_id`, as text. `field` is the name the
/// result is bound to: the ledger's `RevealField::as_str_name()`, or a role's own name.
pub fn open_result(
    key: &OwnerKey,
    workflow_id: &str,
    step: u64,
    field: &str,
    sealed: &SealedResult,
) -> Result<Zeroizing<String>, OwnerError> {
    let bytes = enclavemesh_sealing::owner::open_result(&key.0, workflow_id, step, field, sealed)
        .map_err(OwnerError::Result)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| OwnerError::NotText)?;
    Ok(Zeroizing::new(text.to_string()))
}
