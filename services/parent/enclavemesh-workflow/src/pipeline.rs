//! Which role each step of a run goes to: the owner's manifest's pipeline, or the ledger's
//! fixed one.
//!
//! Why in the shared crate: the workflow walks the plan (deterministically, from its
//! input alone), and the CLI derives `steps` from the same plan, so the two cannot
//! disagree. The plan is only routing: the agents check every handoff against the
//! owner's sealed manifest themselves, so a host that edits it gains nothing but refusals.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use enclavemesh_proto::limits::MAX_MANIFEST_BYTES;
use enclavemesh_proto::v1::Manifest;

use crate::types::{MAX_STEPS, WorkflowInput};

/// The role of Init and of each Process step, without a manifest.
pub const DEFAULT_INIT_ROLE: &str = "agent-a";
pub const DEFAULT_STEP_ROLE: &str = "agent-b";

/// The roles of a run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Who runs Init.
    pub init: String,
    /// Who runs Process step 1, 2, …
    pub steps: Vec<String>,
}

/// The plan of `input`: the manifest's pipeline (its first stage runs Init, the rest,
/// each `repeat` times, the steps), which must have `input.steps` steps; else Agent A
/// then Agent B `input.steps` times.
pub fn plan(input: &WorkflowInput) -> Result<Plan, String> {
    if input.manifest_b64.trim().is_empty() {
        return Ok(Plan {
            init: DEFAULT_INIT_ROLE.to_owned(),
            steps: vec![DEFAULT_STEP_ROLE.to_owned(); input.steps as usize],
        });
    }
    let bytes = B64.decode(input.manifest_b64.trim()).map_err(|e| format!("manifest_b64 is not base64: {e}"))?;
    let m: Manifest = enclavemesh_proto::decode_bounded(&bytes, MAX_MANIFEST_BYTES)
        .map_err(|e| format!("manifest_b64 is not a Manifest: {e}"))?;
    let plan = of_manifest(&m)?;
    if plan.steps.len() != input.steps as usize {
        return Err(format!(
            "the manifest's pipeline has {} steps after Init, the workflow input says {} (the CLI sets steps from \
             the manifest)",
            plan.steps.len(),
            input.steps
        ));
    }
    Ok(plan)
}

/// The pipeline of `m`, expanded.
pub fn of_manifest(m: &Manifest) -> Result<Plan, String> {
    let (first, rest) = m.pipeline.split_first().ok_or("the manifest's pipeline is empty")?;
    let mut steps = vec![first.role.clone(); first.repeat.max(1) as usize - 1];
    for stage in rest {
        if steps.len() + stage.repeat as usize > MAX_STEPS as usize {
            return Err(format!("the manifest's pipeline has more than {MAX_STEPS} steps"));
        }
        steps.extend(std::iter::repeat_n(stage.role.clone(), stage.repeat.max(1) as usize));
    }
    Ok(Plan { init: first.role.clone(), steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Handoff;
    use enclavemesh_proto::v1::PipelineStage;
    use prost::Message as _;

    fn input(steps: u32, m: Option<&Manifest>) -> WorkflowInput {
        WorkflowInput {
            steps,
            sealed_input_b64: String::new(),
            handoff: Handoff::Local,
            manifest_b64: m.map(|m| B64.encode(m.encode_to_vec())).unwrap_or_default(),
        }
    }

    fn stage(role: &str, repeat: u32) -> PipelineStage {
        PipelineStage { role: role.into(), repeat }
    }

    #[test]
    fn a_pipeline_expands_its_repeats_and_must_match_the_steps() {
        let m = Manifest {
            pipeline: vec![stage("intake", 1), stage("screening", 1), stage("scoring", 3)],
            ..Default::default()
        };
        let p = plan(&input(4, Some(&m))).unwrap();
        assert_eq!(p.init, "intake");
        assert_eq!(p.steps, ["screening", "scoring", "scoring", "scoring"]);
        assert!(plan(&input(3, Some(&m))).unwrap_err().contains("4 steps"));
        // A first stage that repeats: Init, then Process on the same role.
        let m = Manifest { pipeline: vec![stage("a", 2), stage("b", 1)], ..Default::default() };
        assert_eq!(of_manifest(&m).unwrap().steps, ["a", "b"]);
        assert!(of_manifest(&Manifest::default()).is_err());
    }

    #[test]
    fn without_a_manifest_the_ledger_runs_a_then_b() {
        let p = plan(&input(2, None)).unwrap();
        assert_eq!((p.init.as_str(), p.steps.as_slice()), ("agent-a", &["agent-b".to_string(), "agent-b".into()][..]));
        let mut bad = input(1, None);
        bad.manifest_b64 = "%%%".into();
        assert!(plan(&bad).is_err());
    }
}
