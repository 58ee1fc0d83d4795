//! Reading step results back out of a workflow's event history.
//!
//! Temporal records every activity result, so the history is the durable record of each
//! sealed step, readable even when no worker is running (queries need one) and after a
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

/// Every completed `InitState`/`ProcessState` result, in history order.
pub fn completed_steps(events: &[HistoryEvent]) -> Result<Vec<StepOutput>, HistoryError> {
    let mut out = Vec::new();
    for ev in events {
        if let Some(Attributes::ActivityTaskCompletedEventAttributes(a)) = &ev.attributes
            && let Some(p) = a.result.as_ref().and_then(|r| r.payloads.first())
        {
            out.push(decode(ev.event_id, p)?);
        }
    }
    Ok(out)
}
