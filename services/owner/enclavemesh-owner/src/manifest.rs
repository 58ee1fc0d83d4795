//! The workflow's manifest: the topology the owner fixes, written as TOML.
//!
//! Why the owner's: the host runs the worker that decides where state goes next. The
//! owner writes down which roles exist, which images may play each, and who may hand
//! state to whom; seals the manifest's SHA-256 into the input ([`Compiled::sha256`] goes
//! into `WorkflowInput.manifest_sha256`); and the enclaves refuse anything else. The
//! TOML is compiled here, on the client, into the `enclavemesh.v1.Manifest` bytes the
//! host passes along: the enclave reads only those bytes, never TOML.
//!
//! ```toml
//! # who may hand state to whom: [from, to]
//! handoffs = [["agent-a", "agent-b"], ["agent-b", "agent-b"]]
//!
//! [[role]]
//! name = "agent-a"          # the agent's name (its image's --role NAME)
//! kind = "ledger-init"
//! pcr0 = []                 # images allowed in this role (hex PCR0); empty: any the key policy allows
//!
//! [[role]]
//! name = "agent-b"
//! kind = "interest"
//!
//! [[pipeline]]
//! role = "agent-a"
//!
//! [[pipeline]]
//! role = "agent-b"
//! repeat = 3
//! ```

use std::collections::BTreeSet;

use enclavemesh_proto::v1::{Handoff, Manifest, ManifestRole, PipelineStage};
use prost::Message as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Why a manifest was refused; each names the line of thought to fix.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {path}: cannot read it: {reason}")]
    Read { path: String, reason: String },
    #[error("manifest is not valid TOML of the expected shape: {0}")]
    Toml(String),
    #[error("manifest: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    handoffs: Vec<(String, String)>,
    #[serde(default)]
    role: Vec<RoleToml>,
    #[serde(default)]
    pipeline: Vec<StageToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleToml {
    name: String,
    kind: String,
    #[serde(default)]
    pcr0: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageToml {
    role: String,
    #[serde(default = "one")]
    repeat: u32,
}

fn one() -> u32 {
    1
}

/// A checked manifest and the bytes the host passes to the agents.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub manifest: Manifest,
    /// The encoded `enclavemesh.v1.Manifest`.
    pub bytes: Vec<u8>,
}

impl Compiled {
    /// What the owner seals into the input (`WorkflowInput.manifest_sha256`).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.bytes).into()
    }
}

/// Reads and checks the manifest at `path`.
pub fn load(path: &std::path::Path) -> Result<Compiled, ManifestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ManifestError::Read { path: path.display().to_string(), reason: e.to_string() })?;
    compile(&text)
}

/// Parses and checks a manifest: roles named once, known kinds, PCR0s of 96 hex digits,
/// handoffs and pipeline stages between known roles, and a pipeline whose every step is
/// a handoff the manifest allows (a pipeline the agents would refuse is refused here).
pub fn compile(text: &str) -> Result<Compiled, ManifestError> {
    let file: File = toml::from_str(text).map_err(|e| ManifestError::Toml(e.to_string()))?;
    let bad = |m: String| Err(ManifestError::Invalid(m));
    if file.role.is_empty() {
        return bad("no [[role]]: name at least the roles of the pipeline".into());
    }
    let mut names = BTreeSet::new();
    for r in &file.role {
        if !enclavemesh_proto::limits::is_agent_name(&r.name) {
            return bad(format!("role name '{}' is not an agent name (1 to 64 of A-Z a-z 0-9 - _)", r.name));
        }
        if !names.insert(r.name.as_str()) {
            return bad(format!("role '{}' is named twice", r.name));
        }
        // Any kind an agent program serves (the ledger's ledger-init / interest, or an SDK
        // agent's own): the agent checks its kind against the manifest at every call.
        if !enclavemesh_proto::limits::is_agent_name(&r.kind) {
            return bad(format!("role '{}' has kind '{}'; a kind is 1 to 64 of A-Z a-z 0-9 - _", r.name, r.kind));
        }
        if let Some(p) = r.pcr0.iter().find(|p| p.len() != 96 || !p.bytes().all(|b| b.is_ascii_hexdigit())) {
            return bad(format!("role '{}': PCR0 '{p}' is not 96 hex digits (SHA-384)", r.name));
        }
    }
    let known = |n: &str, what: &str| {
        if names.contains(n) {
            Ok(())
        } else {
            Err(ManifestError::Invalid(format!("{what} names role '{n}', which no [[role]] defines")))
        }
    };
    for (from, to) in &file.handoffs {
        known(from, "a handoff")?;
        known(to, "a handoff")?;
    }
    if file.pipeline.is_empty() {
        return bad("no [[pipeline]]: give the roles in order".into());
    }
    let allowed = |from: &str, to: &str| file.handoffs.iter().any(|(f, t)| f == from && t == to);
    let mut prev: Option<&str> = None;
    for s in &file.pipeline {
        known(&s.role, "the pipeline")?;
        if s.repeat == 0 {
            return bad(format!("pipeline stage '{}' repeats 0 times; at least 1", s.role));
        }
        if let Some(p) = prev
            && !allowed(p, &s.role)
        {
            return bad(format!("the pipeline hands '{p}' to '{}', which no handoff allows", s.role));
        }
        if s.repeat > 1 && !allowed(&s.role, &s.role) {
            return bad(format!("stage '{}' repeats, so it needs the handoff [\"{0}\", \"{0}\"]", s.role));
        }
        prev = Some(&s.role);
    }
    let manifest = Manifest {
        roles: file
            .role
            .into_iter()
            .map(|r| ManifestRole {
                name: r.name,
                kind: r.kind,
                pcr0: r.pcr0.into_iter().map(|p| p.to_lowercase()).collect(),
            })
            .collect(),
        handoffs: file.handoffs.into_iter().map(|(from, to)| Handoff { from, to }).collect(),
        pipeline: file.pipeline.into_iter().map(|s| PipelineStage { role: s.role, repeat: s.repeat }).collect(),
    };
    let bytes = manifest.encode_to_vec();
    Ok(Compiled { manifest, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEDGER: &str = r#"
handoffs = [["agent-a", "agent-b"], ["agent-b", "agent-b"]]
[[role]]
name = "agent-a"
kind = "ledger-init"
[[role]]
name = "agent-b"
kind = "interest"
pcr0 = ["ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"]
[[pipeline]]
role = "agent-a"
[[pipeline]]
role = "agent-b"
repeat = 3
"#;

    #[test]
    fn a_ledger_manifest_compiles_the_same_every_time() {
        let a = compile(LEDGER).unwrap();
        let b = compile(LEDGER).unwrap();
        assert_eq!(a.bytes, b.bytes, "one manifest, one encoding, one digest");
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(a.manifest.roles.len(), 2);
        assert_eq!(a.manifest.roles[1].pcr0[0], "ab".repeat(48), "PCR0s stored lowercase");
        assert_eq!(a.manifest.pipeline[1].repeat, 3);
        let decoded = Manifest::decode(a.bytes.as_slice()).unwrap();
        assert_eq!(decoded, a.manifest);
        assert_ne!(compile(&LEDGER.replace("repeat = 3", "repeat = 4")).unwrap().sha256(), a.sha256());
    }

    #[test]
    fn a_manifest_the_agents_would_refuse_is_refused_here() {
        let cases = [
            (LEDGER.replace("kind = \"interest\"", "kind = \"sco ring\""), "kind"),
            (LEDGER.replace("name = \"agent-b\"", "name = \"agent-a\""), "named twice"),
            (LEDGER.replace("[\"agent-b\", \"agent-b\"]", "[\"agent-b\", \"agent-c\"]"), "agent-c"),
            (LEDGER.replace("[\"agent-b\", \"agent-b\"]", "[\"agent-a\", \"agent-a\"]"), "repeats"),
            (LEDGER.replace("[\"agent-a\", \"agent-b\"], ", ""), "no handoff allows"),
            (LEDGER.replace("ABAB", "XYXY"), "96 hex"),
            (LEDGER.replace("repeat = 3", "repeat = 0"), "0 times"),
            (LEDGER.replace("repeat = 3", "repeat = 3\nextra = 1"), "unknown field"),
            ("handoffs = []".to_string(), "no [[role]]"),
        ];
        for (text, needle) in cases {
            let e = compile(&text).err().unwrap_or_else(|| panic!("accepted: {needle}"));
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }
}
