//! The workflow as a client sees it: its type name, input, output and query.
//!
//! Why by hand: the worker defines `SecureStateLoop` with the SDK's macros, which need
//! the whole worker SDK (`temporalio-sdk`, its core and workflow crates). A client that
//! only starts and watches runs needs the names and the JSON types, nothing more, so the
//! CLI links `temporalio-client` alone. The worker's tests assert that its macro-made
//! definitions carry these same names.

use temporalio_common::{HasWorkflowDefinition, QueryDefinition, WorkflowDefinition};

use crate::types::{PROGRESS_QUERY, Progress, WORKFLOW_NAME, WorkflowInput, WorkflowOutput};

/// `SecureStateLoop`: input [`WorkflowInput`], result [`WorkflowOutput`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SecureStateLoopRun;

impl WorkflowDefinition for SecureStateLoopRun {
    type Input = WorkflowInput;
    type Output = WorkflowOutput;
    fn name(&self) -> &str {
        WORKFLOW_NAME
    }
}

impl HasWorkflowDefinition for SecureStateLoopRun {
    type Run = Self;
}

/// The `progress` query: step summaries so far, and the failure if one happened.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressQuery;

impl QueryDefinition for ProgressQuery {
    type Workflow = SecureStateLoopRun;
    type Input = ();
    type Output = Progress;
    fn name(&self) -> &str {
        PROGRESS_QUERY
    }
}
