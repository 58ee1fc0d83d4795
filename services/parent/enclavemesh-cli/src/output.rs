//! Everything the CLI prints, in two renderings: human text or one JSON object per line.
//!
//! Only non-secret facts are printed (ids, digests, sizes, key versions) — except the one
//! value `reveal` was explicitly asked for.

use enclavemesh_proto::Refusal;
use enclavemesh_workflow::types::{StepFailure, StepSummaryJson, WorkflowOutput};
use serde_json::json;
use temporalio_common::error::IncomingError;

/// A workflow (or reveal) failure as shown to the user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    /// ApplicationFailure type: a refusal label (e.g. `envelope_tampered`) or a workflow-level kind.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub non_retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StepFailure>,
}

impl Failure {
    pub fn from_incoming(err: &IncomingError) -> Self {
        match err {
            IncomingError::Application(app) => Self {
                kind: app.type_name().unwrap_or("application_failure").to_string(),
                message: app.to_string(),
                non_retryable: app.is_non_retryable(),
                details: app.details::<StepFailure>().ok().flatten(),
            },
            IncomingError::Timeout(t) => Self::typed("timeout", &t.to_string(), true),
            IncomingError::Cancelled(c) => Self::typed("cancelled", &c.to_string(), true),
            IncomingError::Terminated(t) => Self::typed("terminated", &t.to_string(), true),
            other => Self::typed("workflow_failed", &other.to_string(), true),
        }
    }

    pub fn other(err: &dyn std::fmt::Display) -> Self {
        Self::typed("workflow_not_completed", &err.to_string(), true)
    }

    pub fn typed(kind: &str, message: &str, non_retryable: bool) -> Self {
        Self { kind: kind.to_string(), message: message.to_string(), non_retryable, details: None }
    }

    /// What to do about the common operational failures (README "Troubleshooting").
    pub fn hint(&self) -> Option<&'static str> {
        let m = self.message.to_ascii_lowercase();
        if self.kind == "timeout"
            || self.kind == Refusal::AgentTimeout.label()
            || m.contains("timed out")
            || m.contains("timeout")
        {
            return Some(
                "workflow timeout: a step (agent call) or the workflow did not finish in time. Usually no worker polls \
                 this task queue, or an agent is down or stuck: check the worker (systemctl status enclavemesh-worker, \
                 or scripts/dev.sh status; same --task-queue), then the agents (scripts/trigger.sh --verify); \
                 completed steps stay in history: enclavemesh reveal --last-good",
            );
        }
        if self.kind == Refusal::AgentUnavailable.label() || m.contains("enclave not running") {
            return Some(
                "the agent could not be reached: enclave not running? nitro-cli describe-enclaves; \
                 systemctl start enclavemesh-enclave@16 / @17 (dev: scripts/dev.sh up)",
            );
        }
        None
    }
}

pub struct Out {
    json: bool,
}

impl Out {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    fn line(&self, v: serde_json::Value) {
        println!("{v}");
    }

    pub fn started(&self, workflow_id: &str, run_id: &str, task_queue: &str, steps: u32, ui: &str) {
        if self.json {
            self.line(json!({"event": "started", "workflow_id": workflow_id, "run_id": run_id,
                "task_queue": task_queue, "steps": steps, "ui_url": ui}));
        } else {
            println!("started SecureStateLoop  workflow_id={workflow_id}  run_id={run_id}  steps={steps}");
            println!("  ui: {ui}");
        }
    }

    pub fn step(&self, s: &StepSummaryJson, total: u64) {
        if self.json {
            self.line(json!({"event": "step", "total_steps": total, "summary": s}));
        } else {
            println!(
                "step {}/{}  agent={}  key_version={}  envelope_sha256={}  ciphertext_len={}",
                s.step,
                total.saturating_sub(1),
                s.agent,
                s.key_version,
                s.envelope_sha256,
                s.ciphertext_len
            );
        }
    }

    pub fn completed(&self, o: &WorkflowOutput, run_id: &str, ui: &str) -> anyhow::Result<()> {
        let sha = o.final_envelope.sha256_hex()?;
        let agents: Vec<String> = o.steps.iter().map(|s| format!("{}:{}", s.step, s.agent)).collect();
        if self.json {
            self.line(json!({"event": "completed", "status": "completed", "workflow_id": o.workflow_id,
                "run_id": run_id, "steps": o.steps.len().saturating_sub(1), "final_step": o.final_envelope.step,
                "final_envelope_sha256": sha, "key_version": o.final_envelope.key_version,
                "key_id": o.final_envelope.key_id, "summaries": o.steps, "ui_url": ui}));
        } else {
            println!("completed");
            println!("  workflow_id:           {}", o.workflow_id);
            println!("  run_id:                {run_id}");
            println!(
                "  steps:                 {} (final step {})",
                o.steps.len().saturating_sub(1),
                o.final_envelope.step
            );
            println!("  final envelope sha256: {sha}");
            println!("  key:                   {} v{}", o.final_envelope.key_id, o.final_envelope.key_version);
            println!("  agents:                {}", agents.join(" "));
            println!("  ui:                    {ui}");
        }
        Ok(())
    }

    pub fn failed(&self, workflow_id: &str, run_id: &str, f: &Failure, ui: &str) {
        let hint = f.hint();
        if self.json {
            self.line(json!({"event": "failed", "status": "failed", "workflow_id": workflow_id, "run_id": run_id,
                "failure": f, "hint": hint, "ui_url": ui}));
        } else {
            eprintln!("FAILED: {}: {}", f.kind, f.message);
            if let Some(h) = hint {
                eprintln!("  fix:             {h}");
            }
            if let Some(d) = &f.details {
                let last = d.last_good_step.map(|s| format!("step {s} (its envelope stays in history)"));
                eprintln!("  failed step:     {} ({})", d.step, d.activity);
                eprintln!("  last good:       {}", last.unwrap_or_else(|| "none".into()));
            }
            eprintln!("  non-retryable:   {}", f.non_retryable);
            eprintln!("  workflow_id:     {workflow_id}");
            if !run_id.is_empty() {
                eprintln!("  run_id:          {run_id}");
            }
            if !ui.is_empty() {
                eprintln!("  ui:              {ui}");
            }
        }
    }

    pub fn revealed(&self, workflow_id: &str, step: u64, field: &str, value: &str) {
        if self.json {
            self.line(
                json!({"event": "revealed", "workflow_id": workflow_id, "step": step, "field": field, "value": value}),
            );
        } else {
            println!("{value}");
        }
    }

    /// The trigger's last line: the final balance, opened here with the owner key.
    pub fn final_balance(&self, workflow_id: &str, step: u64, field: &str, value: &str) {
        if self.json {
            self.revealed(workflow_id, step, field, value);
        } else {
            let label = format!("final {}:", if field == "balance" { "balance" } else { field });
            println!("  {label:<22} {value} (sealed by the agent to the owner key, opened here)");
        }
    }

    pub fn keygen(&self, path: &str, public_key_b64: &str) {
        if self.json {
            self.line(json!({"event": "keygen", "path": path, "public_key": public_key_b64}));
        } else {
            println!("owner key written to {path} (keep it private: it opens every result)");
            println!("public key: {public_key_b64}");
        }
    }

    pub fn error(&self, msg: &str) {
        if self.json {
            self.line(json!({"event": "error", "message": msg}));
        } else {
            eprintln!("error: {msg}");
        }
    }
}
