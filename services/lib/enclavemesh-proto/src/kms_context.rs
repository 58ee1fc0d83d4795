//! KMS encryption contexts: part of the contract between whoever makes a ciphertext
//! and the enclave that opens it.
//!
//! Why they matter: KMS authenticates the context with the ciphertext, so a blob made
//! for one purpose (an owner's input for workflow X) cannot be opened as another (a TSK
//! version, or an input for workflow Y). The key policies also condition on them.

use std::collections::HashMap;

/// What a ciphertext is for.
pub const PURPOSE: &str = "enclavemesh-purpose";
/// Which TSK version a ciphertext is.
pub const TSK_VERSION: &str = "enclavemesh-tsk-version";
/// Which workflow an owner's input is for.
pub const WORKFLOW_ID: &str = "enclavemesh-workflow-id";
/// `PURPOSE` of a TSK version (made by `scripts/setup-kms.sh`).
pub const PURPOSE_TSK: &str = "tsk";
/// `PURPOSE` of a data owner's workflow input.
pub const PURPOSE_INPUT: &str = "workflow-input";

/// The context of TSK version `version`.
pub fn tsk(version: u32) -> HashMap<String, String> {
    HashMap::from([(PURPOSE.into(), PURPOSE_TSK.into()), (TSK_VERSION.into(), version.to_string())])
}

/// The context of the owner's input for `workflow_id`.
pub fn input(workflow_id: &str) -> HashMap<String, String> {
    HashMap::from([(PURPOSE.into(), PURPOSE_INPUT.into()), (WORKFLOW_ID.into(), workflow_id.into())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_name_purpose_and_what_they_bind() {
        assert_eq!(tsk(3)[TSK_VERSION], "3");
        assert_eq!(tsk(3)[PURPOSE], PURPOSE_TSK);
        assert_eq!(input("wf")[WORKFLOW_ID], "wf");
        assert_ne!(input("wf-1"), input("wf-2"));
        assert_ne!(tsk(1).get(PURPOSE), input("wf").get(PURPOSE));
    }
}
