//! Carries the trigger's trace context from a workflow to its activities.
//!
//! [`workflow_interceptor`] (registered on the worker) copies the `_tracer-data` header
//! (see [`enclavemesh_workflow::trace_header`]) from the workflow execution onto every
//! activity it schedules, local or not. It only copies a value the workflow was started with, so it
//! is deterministic and replays identically.

use std::sync::Mutex;

use enclavemesh_workflow::trace_header::TRACE_HEADER_KEY;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_sdk::workflow_interceptors::{
    CancellableWorkflowOutboundFuture, ExecuteWorkflowInput, ExecuteWorkflowResult, ScheduleActivityInput,
    ScheduleActivityResult, ScheduleLocalActivityInput, WorkflowInterceptor, WorkflowInterceptorConstructor,
    WorkflowInterceptorContext, WorkflowInterceptorFuture, WorkflowNext,
};

/// Copies the workflow's trace header onto each activity it schedules.
#[derive(Default)]
struct PropagateTraceHeader {
    header: Mutex<Option<Payload>>,
}

impl WorkflowInterceptor for PropagateTraceHeader {
    fn execute<'a>(
        &'a self,
        _ctx: WorkflowInterceptorContext,
        input: ExecuteWorkflowInput,
        next: WorkflowNext<'a, ExecuteWorkflowInput, WorkflowInterceptorFuture<'a, ExecuteWorkflowResult>>,
    ) -> WorkflowInterceptorFuture<'a, ExecuteWorkflowResult> {
        if let Ok(mut h) = self.header.lock() {
            *h = input.headers().get(TRACE_HEADER_KEY).cloned();
        }
        next.run(input)
    }

    fn schedule_activity(
        &self,
        _ctx: WorkflowInterceptorContext,
        mut input: ScheduleActivityInput,
        next: WorkflowNext<'static, ScheduleActivityInput, CancellableWorkflowOutboundFuture<ScheduleActivityResult>>,
    ) -> CancellableWorkflowOutboundFuture<ScheduleActivityResult> {
        self.propagate(input.headers_mut());
        next.run(input)
    }

    fn schedule_local_activity(
        &self,
        _ctx: WorkflowInterceptorContext,
        mut input: ScheduleLocalActivityInput,
        next: WorkflowNext<
            'static,
            ScheduleLocalActivityInput,
            CancellableWorkflowOutboundFuture<ScheduleActivityResult>,
        >,
    ) -> CancellableWorkflowOutboundFuture<ScheduleActivityResult> {
        self.propagate(input.headers_mut());
        next.run(input)
    }
}

impl PropagateTraceHeader {
    fn propagate(&self, headers: &mut std::collections::HashMap<String, Payload>) {
        let header = self.header.lock().ok().and_then(|h| h.clone());
        if let Some(p) = header {
            headers.entry(TRACE_HEADER_KEY.to_string()).or_insert(p);
        }
    }
}

/// Register with `WorkerOptions::workflow_interceptor`.
pub fn workflow_interceptor() -> WorkflowInterceptorConstructor {
    WorkflowInterceptorConstructor::new(|_ctx| PropagateTraceHeader::default())
}
