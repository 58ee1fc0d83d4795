//! Reading step results back out of a workflow's event history.
//!
//! Temporal records every activity result (an `ActivityTaskCompleted` event for a remote
//! step, a `core_local_activity` marker for a local one), so the history is the durable
//! record of each sealed step, readable even when no worker is running (queries need one) and after a
//! failed run (whose last good envelope lives only there).

use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use crate::types::StepOutput;

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("event {event_id}: payload encoding '{encoding}' is not json/plain")]
    Encoding { event_id: i64, encoding: String },
    #[error("event {event_id}: payload is not a step result: {source}")]
    Json { event_id: i64, source: serde_json::Error },
}

fn decode(event_id: i64, p: &Payload) -> Result<StepOutput, HistoryError> {
    let encoding = p.metadata.get("encoding").map(|e| String::from_utf8_lossy(e).into_owned()).unwrap_or_default();
    if encoding != "json/plain" {
        return Err(HistoryError::Encoding { event_id, encoding });
    }
    serde_json::from_slice(&p.data).map_err(|source| HistoryError::Json { event_id, source })
}

/// The marker name the Temporal core SDKs record a local activity's outcome under.
pub const LOCAL_ACTIVITY_MARKER: &str = "core_local_activity";

/// The result payload of a completed step, remote or local; `None` for any other event
/// (a failed local activity's marker has a failure and no result).
fn step_result(ev: &HistoryEvent) -> Option<&Payload> {
    match ev.attributes.as_ref()? {
        Attributes::ActivityTaskCompletedEventAttributes(a) => a.result.as_ref()?.payloads.first(),
        Attributes::MarkerRecordedEventAttributes(m) if m.marker_name == LOCAL_ACTIVITY_MARKER => {
            m.details.get("result")?.payloads.first()
        }
        _ => None,
    }
}

/// Every completed `InitState`/`ProcessState` result, in history order.
pub fn completed_steps(events: &[HistoryEvent]) -> Result<Vec<StepOutput>, HistoryError> {
    events.iter().filter_map(|ev| step_result(ev).map(|p| decode(ev.event_id, p))).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a panic is a failed test
    use super::*;
    use crate::types::{EnvelopeJson, StepSummaryJson};
    use std::collections::HashMap;
    use temporalio_common::protos::temporal::api::common::v1::Payloads;
    use temporalio_common::protos::temporal::api::history::v1::{
        ActivityTaskCompletedEventAttributes, MarkerRecordedEventAttributes,
    };

    fn output(step: u64) -> Payload {
        let out = StepOutput {
            envelope: EnvelopeJson {
                format_version: 1,
                key_id: "tsk".into(),
                key_version: 1,
                workflow_id: "wf".into(),
                step,
                agent: "agent-b".into(),
                nonce_b64: String::new(),
                ciphertext_b64: String::new(),
            },
            summary: StepSummaryJson {
                workflow_id: "wf".into(),
                step,
                agent: "agent-b".into(),
                key_version: 1,
                envelope_sha256: String::new(),
                ciphertext_len: 0,
            },
        };
        Payload {
            metadata: HashMap::from([("encoding".to_string(), b"json/plain".to_vec())]),
            data: serde_json::to_vec(&out).unwrap(),
            ..Default::default()
        }
    }

    fn event(event_id: i64, attributes: Attributes) -> HistoryEvent {
        HistoryEvent { event_id, attributes: Some(attributes), ..Default::default() }
    }

    fn marker(name: &str, result: Option<Payload>) -> Attributes {
        let mut details = HashMap::from([("data".to_string(), Payloads::default())]);
        if let Some(p) = result {
            details.insert("result".to_string(), Payloads { payloads: vec![p] });
        }
        Attributes::MarkerRecordedEventAttributes(MarkerRecordedEventAttributes {
            marker_name: name.to_string(),
            details,
            ..Default::default()
        })
    }

    #[test]
    fn steps_come_from_activity_results_and_local_activity_markers_in_order() {
        let events = vec![
            event(
                5,
                Attributes::ActivityTaskCompletedEventAttributes(ActivityTaskCompletedEventAttributes {
                    result: Some(Payloads { payloads: vec![output(0)] }),
                    ..Default::default()
                }),
            ),
            event(9, marker(LOCAL_ACTIVITY_MARKER, Some(output(1)))),
            // A failed local activity: a marker with no result.
            event(10, marker(LOCAL_ACTIVITY_MARKER, None)),
            // Another kind of marker, even with a "result" detail, is not a step.
            event(11, marker("core_patch", Some(output(7)))),
            event(12, marker(LOCAL_ACTIVITY_MARKER, Some(output(2)))),
        ];
        let steps: Vec<u64> = completed_steps(&events).unwrap().iter().map(|s| s.envelope.step).collect();
        assert_eq!(steps, vec![0, 1, 2]);
    }

    #[test]
    fn a_marker_whose_result_is_not_a_step_names_its_event() {
        let mut bad = output(1);
        bad.data = b"{\"not\":\"a step\"}".to_vec();
        let err = completed_steps(&[event(42, marker(LOCAL_ACTIVITY_MARKER, Some(bad)))]).unwrap_err();
        assert!(matches!(err, HistoryError::Json { event_id: 42, .. }), "{err}");
    }
}
