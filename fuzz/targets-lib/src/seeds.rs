//! Seed corpus: genuine inputs for each target, so fuzzing starts past the outer
//! parsers. Regenerate with
//! `cargo test --manifest-path fuzz/Cargo.toml -p enclavemesh-fuzz-targets -- --ignored write_seeds`.

use crate::{FUZZ_WORKFLOW, ring, seed_dev_dir};
use enclavemesh_attestation::{Nsm, SimulatedMeasurements, SimulatedNsm};
use enclavemesh_proto::v1::*;
use enclavemesh_sealing::SealHeader;
use prost::Message;
use std::path::Path;

fn sealed(workflow_id: &str, step: u64) -> SealedEnvelope {
    let state = StateFrame { workflow_id: workflow_id.into(), step, ..Default::default() };
    let header = SealHeader { workflow_id: workflow_id.into(), step, agent: "agent-fuzz".into() };
    enclavemesh_sealing::seal(ring(), &header, &state.encode_to_vec()).expect("seal")
}

/// Writes `corpus/<target>/seed-*` under `fuzz_dir`.
pub fn write_all(fuzz_dir: &Path) -> std::io::Result<()> {
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)
    };

    let env0 = sealed(FUZZ_WORKFLOW, 0);
    let env3 = sealed("wf-other", 3);
    write("envelope_open", "genuine-step0", &env0.encode_to_vec())?;
    write("envelope_open", "genuine-step3", &env3.encode_to_vec())?;
    let mut truncated = env0.clone();
    truncated.ciphertext.truncate(8);
    write("envelope_open", "truncated", &truncated.encode_to_vec())?;
    write("envelope_open", "empty", &[])?;

    let m = SimulatedMeasurements::from_pcr0([0x5a; 48]);
    let nsm = SimulatedNsm::new(&seed_dev_dir(), m).map_err(std::io::Error::other)?;
    let doc =
        |u: Option<&[u8]>, n: Option<&[u8]>, k: Option<&[u8]>| nsm.attestation(u, n, k).map_err(std::io::Error::other);
    write("attestation_verify", "bare", &doc(None, None, None)?)?;
    write("attestation_verify", "all-fields", &doc(Some(b"user data"), Some(b"nonce-1"), Some(&[0x30; 294]))?)?;
    let debug = SimulatedNsm::new(&seed_dev_dir(), m.with_debug_mode(true)).map_err(std::io::Error::other)?;
    write(
        "attestation_verify",
        "debug-mode",
        &debug.attestation(None, Some(b"n"), None).map_err(std::io::Error::other)?,
    )?;

    let tagged = |tag: u8, msg: Vec<u8>| [vec![tag], msg].concat();
    let input = SealedInput { sealed: Some(sealed_input::Sealed::KmsCiphertext(vec![1; 180])) };
    let init = InitRequest { workflow_id: FUZZ_WORKFLOW.into(), input: Some(input), ..Default::default() };
    write("agent_request_decode", "init", &tagged(0, init.encode_to_vec()))?;
    let process = ProcessRequest {
        workflow_id: FUZZ_WORKFLOW.into(),
        expected_step: 0,
        state: Some(env0.clone()),
        ..Default::default()
    };
    write("agent_request_decode", "process", &tagged(1, process.encode_to_vec()))?;
    let reveal = RevealRequest {
        workflow_id: "wf-other".into(),
        expected_step: 3,
        state: Some(env3),
        field: RevealField::Balance as i32,
        ..Default::default()
    };
    write("agent_request_decode", "reveal", &tagged(2, reveal.encode_to_vec()))?;
    let attest = AttestRequest { nonce: vec![9; 32], user_data: vec![] };
    write("agent_request_decode", "attest", &tagged(3, attest.encode_to_vec()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[ignore = "writes fuzz/corpus seeds; run explicitly"]
    fn write_seeds() {
        super::write_all(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap();
    }

    #[test]
    fn seeds_exercise_the_deep_paths() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
        for t in ["envelope_open", "attestation_verify", "agent_request_decode"] {
            for e in std::fs::read_dir(dir.join(t)).unwrap() {
                let data = std::fs::read(e.unwrap().path()).unwrap();
                crate::run(t, &data);
            }
        }
    }
}
