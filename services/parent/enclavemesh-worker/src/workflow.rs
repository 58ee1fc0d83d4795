//! `SecureStateLoop`: Agent A seals an initial state, then Agent B advances it `steps` times;
//! or, when the owner's manifest comes with the input, its pipeline: the first role
//! seals the initial state and each later stage advances it, `repeat` times each
//! ([`enclavemesh_workflow::pipeline`]).
//!
//! The workflow itself never sees plaintext: it passes each activity's sealed envelope to
//! the next activity. Temporal records every activity result, so each step's envelope is
//! durable in history; after a crash the workflow replays and continues from the last
//! completed step. A refused step ends the run with a typed, non-retryable failure while
//! the previous step's envelope stays in history.
//!
//! The steps run as local activities by default ([`Handoff::Local`]): a Temporal round
//! trip per step costs ~50 ms on a dev server, the agent hop well under a millisecond, so
//! batching many handoffs into one workflow task is where a loop's time goes. The same
//! activities, retry policy and failure mapping serve both modes.

use std::time::Duration;

use temporalio_common::ActivityDefinition;
use temporalio_common::RetryPolicy;
use temporalio_common::data_converters::TemporalDeserializable;
use temporalio_common::error::{ActivityExecutionError, IncomingError};
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityCloseTimeouts, ActivityOptions, ApplicationFailure, LocalActivityOptions, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};

use crate::activities::AgentActivities;
use enclavemesh_proto::Refusal;
use enclavemesh_workflow::failure::non_retryable_types;
use enclavemesh_workflow::types::{
    Handoff, INIT_STATE_ACTIVITY, InitStateInput, MAX_STEPS, PROCESS_STATE_ACTIVITY, ProcessStateInput, Progress,
    StepFailure, StepOutput, WorkflowInput, WorkflowOutput,
};

/// Retry: 200 ms, x2, capped at 5 s, unlimited attempts bounded by [`SCHEDULE_TO_CLOSE`].
pub const RETRY_INITIAL_INTERVAL: Duration = Duration::from_millis(200);
pub const RETRY_BACKOFF: f64 = 2.0;
pub const RETRY_MAX_INTERVAL: Duration = Duration::from_secs(5);
/// Total time one step may take including all retries (an enclave restart fits easily).
pub const SCHEDULE_TO_CLOSE: Duration = Duration::from_secs(5 * 60);
/// One attempt: the RPC timeout (10 s) plus margin.
pub const START_TO_CLOSE: Duration = Duration::from_secs(30);

/// The retry policy of every step, in both handoff modes.
fn retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(RETRY_INITIAL_INTERVAL)
        .backoff_coefficient(RETRY_BACKOFF)
        .maximum_interval(RETRY_MAX_INTERVAL)
        .maximum_attempts(0)
        .non_retryable_error_types(non_retryable_types())
        .build()
}

/// Options shared by both activities, run as Temporal activities ([`Handoff::Remote`]).
pub fn activity_options() -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: SCHEDULE_TO_CLOSE,
        start_to_close: START_TO_CLOSE,
    })
    .retry_policy(retry_policy())
    .build()
}

/// The same bounds for a step run as a local activity ([`Handoff::Local`]).
pub fn local_activity_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .retry_policy(retry_policy())
        .schedule_to_close_timeout(SCHEDULE_TO_CLOSE)
        .start_to_close_timeout(START_TO_CLOSE)
        .build()
}

/// Runs one step in the chosen mode.
async fn run_step<AD>(
    ctx: &WorkflowContext<SecureStateLoop>,
    handoff: Handoff,
    activity: AD,
    input: AD::Input,
) -> Result<AD::Output, ActivityExecutionError>
where
    AD: ActivityDefinition,
    AD::Output: TemporalDeserializable,
{
    match handoff {
        Handoff::Local => ctx.execute_local_activity(activity, input, local_activity_options()).await,
        Handoff::Remote => ctx.execute_activity(activity, input, activity_options()).await,
    }
}

/// Workflow state: what the `progress` query reports.
#[workflow]
#[derive(Default)]
pub struct SecureStateLoop {
    progress: Progress,
}

#[workflow_methods]
impl SecureStateLoop {
    /// Runs InitState then `steps` x ProcessState; returns the last envelope + all summaries.
    #[run(name = "SecureStateLoop")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: WorkflowInput) -> WorkflowResult<WorkflowOutput> {
        if input.steps > MAX_STEPS {
            return Err(ApplicationFailure::builder(format!("steps must be <= {MAX_STEPS} (got {})", input.steps))
                .type_name(Refusal::InvalidRequest.label().to_string())
                .non_retryable(true)
                .build()
                .into());
        }
        // Who runs each step: the owner's manifest's pipeline, or Agent A then Agent B.
        let plan = enclavemesh_workflow::pipeline::plan(&input).map_err(|m| {
            ApplicationFailure::builder(m)
                .type_name(Refusal::InvalidRequest.label().to_string())
                .non_retryable(true)
                .build()
        })?;
        let workflow_id = ctx.workflow_id().to_string();
        ctx.state_mut(|s| s.progress.total_steps = plan.steps.len() as u64 + 1);
        let handoff = input.handoff;

        let init = InitStateInput {
            workflow_id: workflow_id.clone(),
            sealed_input_b64: input.sealed_input_b64.clone(),
            manifest_b64: input.manifest_b64.clone(),
            role: plan.init.clone(),
        };
        let mut last = match run_step(ctx, handoff, AgentActivities::init_state, init).await {
            Ok(out) => out,
            Err(e) => return Err(step_failed(ctx, e, 0, INIT_STATE_ACTIVITY, None)),
        };
        record(ctx, &last);

        for (step, role) in (1u64..).zip(&plan.steps) {
            let req = ProcessStateInput {
                workflow_id: workflow_id.clone(),
                expected_step: step - 1,
                envelope: last.envelope.clone(),
                manifest_b64: input.manifest_b64.clone(),
                role: role.clone(),
            };
            last = match run_step(ctx, handoff, AgentActivities::process_state, req).await {
                Ok(out) => out,
                Err(e) => return Err(step_failed(ctx, e, step, PROCESS_STATE_ACTIVITY, Some(step - 1))),
            };
            record(ctx, &last);
        }

        let steps = ctx.state(|s| s.progress.completed.clone());
        Ok(WorkflowOutput { workflow_id, final_envelope: last.envelope, steps })
    }

    /// Step summaries so far (and the failure, if one happened).
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Progress {
        self.progress.clone()
    }
}

fn record(ctx: &WorkflowContext<SecureStateLoop>, out: &StepOutput) {
    let summary = out.summary.clone();
    ctx.state_mut(|s| s.progress.completed.push(summary));
}

/// Turns a failed activity into the workflow's failure, typed like the step's own failure
/// (e.g. `EnvelopeTampered`), with the activity failure as its cause.
fn step_failed(
    ctx: &WorkflowContext<SecureStateLoop>,
    err: ActivityExecutionError,
    step: u64,
    activity: &'static str,
    last_good_step: Option<u64>,
) -> WorkflowTermination {
    let afe = match err {
        ActivityExecutionError::Failed(afe) => afe,
        // Cancellation and payload conversion keep the SDK's own handling.
        other => return other.into(),
    };
    let (kind, message) = match afe.cause() {
        Some(IncomingError::Application(app)) => {
            (app.type_name().unwrap_or(Refusal::AgentError.label()).to_string(), app.to_string())
        }
        Some(IncomingError::Timeout(t)) => {
            let last = t.cause().map(|c| format!("; last attempt: {c}")).unwrap_or_default();
            ("step_timed_out".to_string(), format!("{activity} gave up after its retry window ({t}){last}"))
        }
        Some(other) => ("step_failed".to_string(), other.to_string()),
        // A local activity's failure arrives unwrapped: the application or timeout failure
        // is the top-level failure itself, with no ActivityFailure around it.
        None => match afe.failure().failure_info.as_ref() {
            Some(FailureInfo::ApplicationFailureInfo(app)) => {
                let kind = if app.r#type.is_empty() { Refusal::AgentError.label() } else { app.r#type.as_str() };
                (kind.to_string(), afe.failure().message.clone())
            }
            Some(FailureInfo::TimeoutFailureInfo(_)) => (
                "step_timed_out".to_string(),
                format!("{activity} gave up after its retry window ({})", afe.failure().message),
            ),
            _ => ("step_failed".to_string(), afe.to_string()),
        },
    };
    let failure = StepFailure {
        kind: kind.clone(),
        step,
        activity: activity.to_string(),
        message: message.clone(),
        last_good_step,
    };
    ctx.state_mut(|s| s.progress.failure = Some(failure.clone()));
    ApplicationFailure::builder(message)
        .type_name(kind)
        .non_retryable(true)
        .details(failure)
        .cause(Box::new(IncomingError::Activity(afe)))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclavemesh_workflow::types::{INIT_STATE_ACTIVITY, PROGRESS_QUERY, WORKFLOW_NAME};
    use temporalio_common::{QueryDefinition, WorkflowDefinition};

    #[test]
    fn registered_names_match_the_shared_constants() {
        assert_eq!(SecureStateLoop::run.name(), WORKFLOW_NAME);
        assert_eq!(AgentActivities::init_state.name(), INIT_STATE_ACTIVITY);
        assert_eq!(AgentActivities::process_state.name(), PROCESS_STATE_ACTIVITY);
        assert_eq!(SecureStateLoop::progress.name(), PROGRESS_QUERY);
        // The client-side definitions the CLI uses name the same workflow and query.
        assert_eq!(enclavemesh_workflow::SecureStateLoopRun.name(), WORKFLOW_NAME);
        assert_eq!(enclavemesh_workflow::ProgressQuery.name(), PROGRESS_QUERY);
    }
}
