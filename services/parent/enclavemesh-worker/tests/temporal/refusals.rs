//! Every refusal kind, sent by an agent through a real worker on a real Temporal dev
//! server, comes out as the Temporal failure type named by its label: the run fails at
//! once for a verdict (non-retryable), and Temporal keeps retrying a transient kind.
//!
//! The agent is the harness's fake (`-refuse-LABEL-` workflow ids): what is under test
//! is the path from the status details to the workflow failure, not the agent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::time::{Duration, Instant};

use enclavemesh_harness::fake_agent::{FakeAgent, refusing_workflow_id};
use enclavemesh_harness::fake_stack::FakeStack;
use enclavemesh_proto::Refusal;
use enclavemesh_workflow::SecureStateLoopRun;
use enclavemesh_workflow::types::{Handoff, StepFailure, WorkflowInput};
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowGetResultOptions, WorkflowHandle, WorkflowStartOptions,
    WorkflowTerminateOptions,
};
use temporalio_common::error::IncomingError;
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;

const TASK_QUEUE: &str = "enclavemesh-refusals";

async fn start(client: &Client, id: &str, handoff: Handoff) -> WorkflowHandle<Client, SecureStateLoopRun> {
    let input = WorkflowInput {
        steps: 2,
        sealed_input_b64: enclavemesh_harness::fake_agent::opaque_sealed_input_b64(),
        handoff,
        manifest_b64: String::new(),
    };
    client.start_workflow(SecureStateLoopRun, input, WorkflowStartOptions::new(TASK_QUEUE, id).build()).await.unwrap()
}

/// A verdict: the run fails with the label as its type, non-retryable, after one attempt.
async fn verdict(client: Client, kind: Refusal, run: String, agent_b: std::sync::Arc<FakeAgent>, handoff: Handoff) {
    let id = refusing_workflow_id(kind, &format!("{handoff}-{run}"));
    let h = start(&client, &id, handoff).await;
    let err = h.get_result(WorkflowGetResultOptions::default()).await.expect_err("a refused step fails the run");
    let WorkflowGetResultError::Failed(failure) = err else { panic!("{kind}: unexpected error {err:?}") };
    let IncomingError::Application(app) = *failure else { panic!("{kind}: not an application failure: {failure:?}") };
    assert_eq!(app.type_name(), Some(kind.label()), "{kind}: {app}");
    assert!(app.is_non_retryable(), "{kind}");
    assert!(app.to_string().contains(&format!("refused on purpose as {kind}")), "{kind}: {app}");
    let details: StepFailure = app.details().unwrap().expect("failure details");
    assert_eq!((details.kind.as_str(), details.step, details.last_good_step), (kind.label(), 1, Some(0)));
    assert_eq!(agent_b.calls(&id, 0), 1, "{kind}: a verdict is not retried");
}

/// Transient: the run stays open while the step is retried. A remote activity's last
/// failure (as Temporal records it for the next retry) has the label as its type; a local
/// activity retries inside the worker, so the agent's call count shows it.
async fn transient(client: Client, kind: Refusal, run: String, agent_b: std::sync::Arc<FakeAgent>, handoff: Handoff) {
    let id = refusing_workflow_id(kind, &format!("{handoff}-{run}"));
    let h = start(&client, &id, handoff).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    match handoff {
        Handoff::Local => local_retries(&h, &agent_b, &id, kind, deadline).await,
        Handoff::Remote => remote_retries(&h, kind, deadline).await,
    }
    assert!(agent_b.calls(&id, 0) >= 2, "{kind}: a transient refusal is retried");
    h.terminate(WorkflowTerminateOptions::builder().reason("test done".to_string()).build()).await.unwrap();
}

/// Local: three attempts reached the agent, and the run is still open.
async fn local_retries(
    h: &WorkflowHandle<Client, SecureStateLoopRun>,
    agent_b: &FakeAgent,
    id: &str,
    kind: Refusal,
    deadline: Instant,
) {
    while agent_b.calls(id, 0) < 3 {
        assert!(Instant::now() < deadline, "{kind}: not retried 3 times within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = h.describe(WorkflowDescribeOptions::default()).await.unwrap();
    let status = d.raw_description.workflow_execution_info.map(|i| i.status);
    assert_eq!(status, Some(WorkflowExecutionStatus::Running as i32), "{kind}: the run waits");
}

/// Remote: Temporal records the label as the pending activity's last failure type.
async fn remote_retries(h: &WorkflowHandle<Client, SecureStateLoopRun>, kind: Refusal, deadline: Instant) {
    loop {
        let d = h.describe(WorkflowDescribeOptions::default()).await.unwrap();
        let seen = d.raw_description.pending_activities.iter().find_map(|a| {
            let f = a.last_failure.as_ref()?;
            match f.failure_info.as_ref()? {
                FailureInfo::ApplicationFailureInfo(info) => Some((info.r#type.clone(), info.non_retryable, a.attempt)),
                _ => None,
            }
        });
        // `attempt` is the next attempt's number: 3 means two refused attempts so far.
        if let Some((ty, non_retryable, attempt)) = &seen
            && *attempt >= 3
        {
            assert_eq!(ty, kind.label(), "{kind}");
            assert!(!*non_retryable, "{kind}");
            break;
        }
        assert!(Instant::now() < deadline, "{kind}: no retried failure of that type within 60 s: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_kind_becomes_its_temporal_failure_type() {
    let stack = FakeStack::start(TASK_QUEUE);
    let client = stack.client().await;
    let run = std::process::id().to_string();

    let mut tasks = tokio::task::JoinSet::new();
    for handoff in Handoff::ALL {
        for kind in enclavemesh_proto::refusal::ALL {
            let (client, run, agent_b) = (client.clone(), run.clone(), stack.agent_b.clone());
            if kind.retryable() {
                tasks.spawn(transient(client, kind, run, agent_b, handoff));
            } else {
                tasks.spawn(verdict(client, kind, run, agent_b, handoff));
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    stack.worker.stop().await.unwrap();
}
