//! End-to-end against a real Temporal dev server (`temporal server start-dev` from the
//! repo's `.venv`), the real worker (in-process) and a fake `AgentService` on unix sockets.
//!
//! The fake only stands in for the enclave agents: "sealing" is opaque bytes with a
//! counter. Its behaviour is chosen by the workflow id, so one server/worker/agent pair
//! runs all scenarios concurrently:
//! - `...-tamper3-...`: `Process` for step 3 answers DATA_LOSS (tampered envelope);
//! - `...-flaky-...`: every `Process` call answers UNAVAILABLE for its first 2 attempts.
//!
//! Needs `.venv/bin/temporal` (scripts/test.sh installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use enclavemesh_harness::fake_agent::FakeAgent;
use enclavemesh_harness::fake_stack::FakeStack;
use enclavemesh_worker::SecureStateLoop;
use enclavemesh_workflow::history::completed_steps;
use enclavemesh_workflow::types::{Handoff, WorkflowInput, WorkflowOutput};
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{
    Client, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_common::HasWorkflowDefinition;
use temporalio_common::error::IncomingError;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

const TASK_QUEUE: &str = "enclavemesh-test";

// ---------------------------------------------------------------- fake agent

// ---------------------------------------------------------------- scenarios

async fn start(
    client: &Client,
    id: &str,
    steps: u32,
    handoff: Handoff,
) -> temporalio_client::WorkflowHandle<Client, <SecureStateLoop as HasWorkflowDefinition>::Run> {
    let input = WorkflowInput {
        steps,
        sealed_input_b64: enclavemesh_harness::fake_agent::opaque_sealed_input_b64(),
        handoff,
        manifest_b64: String::new(),
    };
    client
        .start_workflow(SecureStateLoop::run, input, WorkflowStartOptions::new(TASK_QUEUE, id).build())
        .await
        .expect("start workflow")
}

fn check_success(out: &WorkflowOutput, id: &str, steps: u64) {
    assert_eq!(out.workflow_id, id);
    assert_eq!(out.steps.len() as u64, steps + 1);
    for (i, s) in out.steps.iter().enumerate() {
        assert_eq!(s.step, i as u64);
        assert_eq!(s.workflow_id, id);
        assert_eq!(s.agent, if i == 0 { "fake-a" } else { "fake-b" });
        assert_eq!(s.key_version, 1);
    }
    assert_eq!(out.final_envelope.step, steps);
    assert_eq!(out.final_envelope.workflow_id, id);
    let last = out.steps.last().unwrap();
    assert_eq!(last.envelope_sha256, out.final_envelope.sha256_hex().unwrap());
    assert_eq!(last.ciphertext_len as usize, base64_decode(&out.final_envelope.ciphertext_b64).len());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

async fn scenario_success(client: Client, id: String, steps: u32, handoff: Handoff) -> Duration {
    let t = Instant::now();
    let h = start(&client, &id, steps, handoff).await;
    let out = h.get_result(WorkflowGetResultOptions::default()).await.expect("workflow result");
    check_success(&out, &id, u64::from(steps));
    // The progress query answers from the (completed) workflow's state.
    let p = h.query(SecureStateLoop::progress, (), WorkflowQueryOptions::default()).await.expect("progress query");
    assert_eq!(p.total_steps, u64::from(steps) + 1);
    assert_eq!(p.completed, out.steps);
    assert!(p.failure.is_none());
    // Every step's envelope is in history, in the mode's own kind of event.
    let events = h.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await.unwrap();
    let recorded: Vec<u64> = completed_steps(&events).unwrap().iter().map(|s| s.envelope.step).collect();
    assert_eq!(recorded, (0..=u64::from(steps)).collect::<Vec<_>>());
    let (remote, local) = step_events(&events);
    match handoff {
        Handoff::Remote => assert_eq!((remote, local), (steps as usize + 1, 0)),
        Handoff::Local => assert_eq!((remote, local), (0, steps as usize + 1)),
    }
    t.elapsed()
}

/// (remote activity results, local activity markers) in a history.
fn step_events(events: &[temporalio_common::protos::temporal::api::history::v1::HistoryEvent]) -> (usize, usize) {
    let remote = events
        .iter()
        .filter(|e| matches!(e.attributes, Some(Attributes::ActivityTaskCompletedEventAttributes(_))))
        .count();
    let local = events
        .iter()
        .filter(|e| {
            matches!(&e.attributes, Some(Attributes::MarkerRecordedEventAttributes(m))
            if m.marker_name == enclavemesh_workflow::history::LOCAL_ACTIVITY_MARKER)
        })
        .count();
    (remote, local)
}

async fn scenario_tamper(client: Client, id: String, agent_b: Arc<FakeAgent>, handoff: Handoff) -> Duration {
    let t = Instant::now();
    let h = start(&client, &id, 5, handoff).await;
    let err = h.get_result(WorkflowGetResultOptions::default()).await.expect_err("must fail");
    let WorkflowGetResultError::Failed(failure) = err else { panic!("unexpected error {err:?}") };
    let IncomingError::Application(app) = *failure else { panic!("not an application failure: {failure:?}") };
    assert_eq!(app.type_name(), Some("envelope_tampered"));
    assert!(app.is_non_retryable());
    assert!(app.to_string().contains("envelope authentication failed (fake tamper)"), "{app}");
    let details: enclavemesh_workflow::types::StepFailure = app.details().unwrap().expect("failure details");
    assert_eq!((details.step, details.last_good_step, details.activity.as_str()), (3, Some(2), "ProcessState"));
    // Non-retryable: exactly one attempt at step 3.
    assert_eq!(agent_b.calls(&id, 2), 1);
    // Step 2's sealed result is durable in history, step 3 never completed.
    let events = h.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await.unwrap();
    let steps: Vec<u64> = completed_steps(&events).unwrap().iter().map(|s| s.envelope.step).collect();
    assert_eq!(steps, vec![0, 1, 2]);
    let p = h.query(SecureStateLoop::progress, (), WorkflowQueryOptions::default()).await.unwrap();
    assert_eq!(p.failure.map(|f| f.kind), Some("envelope_tampered".into()));
    t.elapsed()
}

async fn scenario_flaky(client: Client, id: String, agent_b: Arc<FakeAgent>, handoff: Handoff) -> Duration {
    let t = Instant::now();
    let h = start(&client, &id, 1, handoff).await;
    let out = h.get_result(WorkflowGetResultOptions::default()).await.expect("retried to success");
    check_success(&out, &id, 1);
    // Two UNAVAILABLE answers, then success on the third attempt.
    assert_eq!(agent_b.calls(&id, 0), 3);
    // Backoff 200 ms then 400 ms (the server fires retry timers with ~1 s granularity).
    assert!(t.elapsed() >= Duration::from_millis(600), "{:?}", t.elapsed());
    let events = h.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await.unwrap();
    if handoff == Handoff::Local {
        // Retried inside the worker: history holds the two results as markers, no
        // activity task, and no failed attempt.
        assert_eq!(step_events(&events), (0, 2));
        assert!(
            !events.iter().any(|e| matches!(e.attributes, Some(Attributes::ActivityTaskScheduledEventAttributes(_))))
        );
        return t.elapsed();
    }
    // The retry policy recorded in history is the one the workflow asked for.
    let policy = events
        .iter()
        .find_map(|e| match &e.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => a.retry_policy.clone(),
            _ => None,
        })
        .expect("scheduled activity with a retry policy");
    let initial = policy.initial_interval.unwrap();
    assert_eq!((initial.seconds, initial.nanos), (0, 200_000_000));
    assert_eq!(policy.backoff_coefficient, 2.0);
    assert_eq!(policy.maximum_interval.unwrap().seconds, 5);
    assert_eq!(policy.maximum_attempts, 0);
    assert!(policy.non_retryable_error_types.contains(&"envelope_tampered".to_string()));
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_state_loop_against_real_temporal() {
    let _telemetry = enclavemesh_telemetry::init("worker-e2e");
    let t0 = Instant::now();
    let stack = FakeStack::start(TASK_QUEUE);
    let client = stack.client().await;
    let agent_b = stack.agent_b.clone();
    let run = format!("{}", std::process::id());
    for handoff in Handoff::ALL {
        let (d1, d5, dt, df) = tokio::join!(
            scenario_success(client.clone(), format!("wf-ok1-{handoff}-{run}"), 1, handoff),
            scenario_success(client.clone(), format!("wf-ok5-{handoff}-{run}"), 5, handoff),
            scenario_tamper(client.clone(), format!("wf-tamper3-{handoff}-{run}"), agent_b.clone(), handoff),
            scenario_flaky(client.clone(), format!("wf-flaky-{handoff}-{run}"), agent_b.clone(), handoff),
        );
        eprintln!("{handoff}: steps=1: {d1:?}, steps=5: {d5:?}, tamper at 3: {dt:?}, unavailable x2 then ok: {df:?}");
    }

    tokio::time::timeout(Duration::from_secs(30), stack.worker.stop()).await.expect("worker stops").unwrap();
    eprintln!("total incl. server start: {:?}", t0.elapsed());
}
