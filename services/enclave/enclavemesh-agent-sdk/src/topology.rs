//! The owner's topology, enforced in the enclave.
//!
//! Why here: the worker, which decides where state goes next, runs on the host. A host
//! that routes state past a role (intake straight to scoring) or back to an earlier one
//! must get a refusal from the enclave, not trust. The data owner writes a manifest
//! (roles, their measurements, who may hand state to whom) and seals its SHA-256 into
//! the workflow's input; the first agent binds that digest into the state. From then on
//! the host passes the manifest's bytes with every call, and they count only if their
//! digest is the bound one. The sealer of the incoming state is the AAD-bound agent name
//! of its envelope, authenticated by the open: the host cannot relabel it.

use enclavemesh_proto::Refusal;
use enclavemesh_proto::limits::MAX_MANIFEST_BYTES;
use enclavemesh_proto::v1::Manifest;
use sha2::{Digest, Sha256};
use tonic::Status;

/// A manifest whose digest is the one the owner sealed.
pub struct Topology(Manifest);

impl Topology {
    /// The manifest bound by `sealed_digest` (the owner's, from the input or the state),
    /// read from `bytes` (the host's copy); `None` when the workflow is bound to none.
    pub fn bound(sealed_digest: &[u8], bytes: &[u8]) -> Result<Option<Topology>, Status> {
        if sealed_digest.is_empty() {
            return Ok(None);
        }
        let mismatch = |m: String| Refusal::ManifestMismatch.status(m);
        if bytes.is_empty() {
            return Err(mismatch(
                "this workflow's owner bound it to a manifest, and the call carries none: pass the manifest the \
                 workflow was started with (enclavemesh trigger --manifest)"
                    .into(),
            ));
        }
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if digest.as_slice() != sealed_digest {
            return Err(mismatch(format!(
                "the manifest passed (SHA-256 {}) is not the one the owner sealed ({}): a host cannot change the \
                 workflow's topology",
                hex::encode(digest),
                hex::encode(sealed_digest)
            )));
        }
        let manifest: Manifest = enclavemesh_proto::decode_bounded(bytes, MAX_MANIFEST_BYTES)
            .map_err(|e| mismatch(format!("the owner's manifest does not decode: {e}")))?;
        Ok(Some(Topology(manifest)))
    }

    /// This agent (name, kind, measurement) must be one of the manifest's roles.
    pub fn check_self(&self, name: &str, kind: &str, pcr0_hex: &str) -> Result<(), Status> {
        let role = self.0.roles.iter().find(|r| r.name == name).ok_or_else(|| {
            Refusal::WrongRole.status(format!("agent '{name}' is not a role of this workflow's manifest"))
        })?;
        if role.kind != kind {
            return Err(Refusal::WrongRole
                .status(format!("the manifest's role '{name}' is a {} agent; this one is {kind}", role.kind)));
        }
        if !role.pcr0.is_empty() && !role.pcr0.iter().any(|p| p.eq_ignore_ascii_case(pcr0_hex)) {
            return Err(Refusal::WrongRole.status(format!(
                "this enclave's image (PCR0 {pcr0_hex}) is not one the manifest allows for role '{name}'"
            )));
        }
        Ok(())
    }

    /// Init: this agent must be the pipeline's first role.
    pub fn check_first(&self, name: &str) -> Result<(), Status> {
        match self.0.pipeline.first() {
            Some(stage) if stage.role == name => Ok(()),
            Some(stage) => Err(Refusal::WrongRole.status(format!(
                "the manifest's pipeline starts with '{}', not '{name}': Init goes to the first role",
                stage.role
            ))),
            None => Err(Refusal::ManifestMismatch.status("the owner's manifest has an empty pipeline")),
        }
    }

    /// `from` (the incoming state's sealer) must be allowed to hand state to `to` (this agent).
    pub fn check_handoff(&self, from: &str, to: &str) -> Result<(), Status> {
        if self.0.handoffs.iter().any(|h| h.from == from && h.to == to) {
            return Ok(());
        }
        Err(Refusal::HandoffRefused.status(format!(
            "this state was sealed by '{from}', and the owner's manifest does not let '{from}' hand state to \
             '{to}': the host routed it off the workflow's topology"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclavemesh_proto::v1::{Handoff, ManifestRole, PipelineStage};
    use prost::Message as _;

    fn manifest() -> Manifest {
        let role = |name: &str, kind: &str, pcr0: &[&str]| ManifestRole {
            name: name.into(),
            kind: kind.into(),
            pcr0: pcr0.iter().map(|p| p.to_string()).collect(),
        };
        let handoff = |from: &str, to: &str| Handoff { from: from.into(), to: to.into() };
        Manifest {
            roles: vec![role("a", "ledger-init", &[]), role("b", "interest", &["AB"]), role("c", "interest", &[])],
            handoffs: vec![handoff("a", "b"), handoff("b", "c"), handoff("c", "c")],
            pipeline: vec![
                PipelineStage { role: "a".into(), repeat: 1 },
                PipelineStage { role: "b".into(), repeat: 1 },
            ],
        }
    }

    fn bound() -> Topology {
        let bytes = manifest().encode_to_vec();
        Topology::bound(&Sha256::digest(&bytes), &bytes).unwrap().unwrap()
    }

    #[test]
    fn only_the_sealed_manifest_counts() {
        let bytes = manifest().encode_to_vec();
        let digest = Sha256::digest(&bytes);
        assert!(Topology::bound(&[], b"anything").unwrap().is_none(), "no digest: no manifest");
        assert!(Topology::bound(&digest, &bytes).unwrap().is_some());
        let mut other = manifest();
        other.handoffs.push(Handoff { from: "a".into(), to: "c".into() });
        for (bytes, what) in [(other.encode_to_vec(), "another manifest"), (Vec::new(), "none")] {
            let e = Topology::bound(&digest, &bytes).err().unwrap();
            assert_eq!(Refusal::of(&e), Some(Refusal::ManifestMismatch), "{what}");
        }
        // Garbage whose digest the "owner" sealed still does not decode into a manifest.
        let junk = vec![0xff; 8];
        let e = Topology::bound(&Sha256::digest(&junk), &junk).err().unwrap();
        assert_eq!(Refusal::of(&e), Some(Refusal::ManifestMismatch));
    }

    #[test]
    fn handoffs_follow_the_manifest() {
        let t = bound();
        assert!(t.check_handoff("a", "b").is_ok());
        assert!(t.check_handoff("c", "c").is_ok());
        // Past a role, back to an earlier one, from a stranger.
        for (from, to) in [("a", "c"), ("c", "b"), ("b", "b"), ("x", "b")] {
            let e = t.check_handoff(from, to).err().unwrap();
            assert_eq!(Refusal::of(&e), Some(Refusal::HandoffRefused), "{from} -> {to}");
        }
    }

    #[test]
    fn an_agent_acts_only_in_a_role_it_is() {
        let t = bound();
        assert!(t.check_self("a", "ledger-init", "00").is_ok(), "no PCR0 list: any allowed image");
        assert!(t.check_self("b", "interest", "ab").is_ok(), "PCR0 compared case-insensitively");
        for (name, kind, pcr0) in [("d", "interest", "ab"), ("b", "ledger-init", "ab"), ("b", "interest", "cd")] {
            let e = t.check_self(name, kind, pcr0).err().unwrap();
            assert_eq!(Refusal::of(&e), Some(Refusal::WrongRole), "{name}/{kind}/{pcr0}");
        }
        assert!(t.check_first("a").is_ok());
        assert_eq!(Refusal::of(&t.check_first("b").err().unwrap()), Some(Refusal::WrongRole));
    }
}
