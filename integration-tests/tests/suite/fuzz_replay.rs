//! The cargo-fuzz targets on stable Rust, bounded: every file of
//! `fuzz/corpus/<target>/` (seeds plus whatever fuzzing runs added), then a few
//! thousand deterministic mutations of them (bit flips, truncations, splices,
//! random bytes) through the same entry functions (`fuzz/targets-lib`).
//! CI gets this even where nightly/cargo-fuzz is unavailable; `scripts/fuzz.sh`
//! runs the coverage-guided fuzzer. `FUZZ_REPLAY_ITERS` (default 3000 per target, 1000 for
//! attestation_verify)
//! and `FUZZ_REPLAY_SEED` change the run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use enclavemesh_fuzz_targets::{TARGETS, run};
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let inputs: Vec<_> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!inputs.is_empty(), "no seeds in {}", dir.display());
    inputs
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)];
            }
            2 => d.truncate(rng.below(d.len() + 1)),
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(d.len() + 1);
                let from = rng.below(other.len() + 1);
                d.splice(at..at, other[from..].iter().copied().take(64));
            }
            4 => {
                let n = rng.below(32);
                let at = rng.below(d.len() + 1);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                d.splice(at..at, junk);
            }
            _ => d = (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
        }
    }
    d
}

/// Attestation verification (P-384 chain + signature) is ~20x slower per input than
/// the others; fewer iterations keep each replay to a few seconds in CI.
fn default_iters(target: &str) -> usize {
    if target == "attestation_verify" { 1000 } else { 3000 }
}

fn replay(target: &str) {
    let seeds = corpus(target);
    for s in &seeds {
        run(target, s);
    }
    let iters: usize =
        std::env::var("FUZZ_REPLAY_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_iters(target));
    let seed: u64 = std::env::var("FUZZ_REPLAY_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_f022);
    let mut rng = Rng(seed | 1);
    for i in 0..iters {
        let input = mutate(&mut rng, &seeds);
        let r = std::panic::catch_unwind(|| run(target, &input));
        if r.is_err() {
            let out = std::env::temp_dir().join(format!("fuzz-replay-{target}-{i}"));
            let _ = std::fs::write(&out, &input);
            panic!("{target}: input #{i} panicked; saved to {} (copy it into fuzz/corpus/{target}/)", out.display());
        }
    }
}

#[test]
fn fuzz_replay_envelope_open() {
    replay("envelope_open");
}

#[test]
fn fuzz_replay_attestation_verify() {
    replay("attestation_verify");
}

#[test]
fn fuzz_replay_agent_request_decode() {
    replay("agent_request_decode");
}

#[test]
fn every_target_has_a_replay() {
    assert_eq!(TARGETS, ["envelope_open", "attestation_verify", "agent_request_decode"]);
}

/// Regenerates the seed files (genuine envelopes, documents from the fuzz-only dev
/// CA in fuzz/seed-dev, requests): `cargo test -p integration-tests --test
/// fuzz_replay -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/corpus/*/seed-*"]
fn write_fuzz_seeds() {
    enclavemesh_fuzz_targets::seeds::write_all(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")).unwrap();
}
