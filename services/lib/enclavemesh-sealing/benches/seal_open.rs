//! Seal/open throughput, plus the raw AES-256-GCM backends it could use.
//!
//! Groups:
//! * `seal`, `open`: the public API end to end (subkey from the ring's cache, nonce
//!   from the OS, AAD encoding, AEAD, envelope construction, plaintext buffer), one
//!   workflow throughout: the steady state of an agent working a workflow's steps.
//!   The plaintext is sealed as given (`seal` does not pad; agents pad to buckets of
//!   at least 1 KiB first), so at size n exactly n bytes are encrypted, as in
//!   `openssl speed -bytes n`.
//! * `seal_uncached`, `open_uncached`: the same through a ring with the subkey cache
//!   off (capacity 0): every envelope pays the HKDF-SHA256 derivation and the key
//!   expansion, as every envelope did before the cache (and as a cache miss does).
//! * `open_excl_wipe`: `open` without the time the caller later spends wiping the
//!   returned plaintext (it is dropped outside the timed loop).
//! * `raw_encrypt/<impl>`: AES-256-GCM encryption alone with a fixed, pre-expanded
//!   key and a 13-byte AAD, in place: the same work `openssl speed -evp
//!   aes-256-gcm` measures, for a like-for-like comparison (see BENCH.md).
//!
//! Sizes: 256 B, 1 KiB, 16 KiB, 1 MiB, reported as bytes/s of plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use enclavemesh_sealing::{DEFAULT_SUBKEY_CACHE_CAPACITY, Expectation, KeyRing, Limits, SealHeader, Tsk, open, seal};

const SIZES: [usize; 4] = [256, 1024, 16 * 1024, 1024 * 1024];
const AAD: [u8; 13] = [7; 13];

fn ring() -> KeyRing {
    ring_with_cache(DEFAULT_SUBKEY_CACHE_CAPACITY)
}

fn ring_with_cache(capacity: usize) -> KeyRing {
    let mut ring = KeyRing::with_subkey_cache_capacity("arn:aws:kms:us-east-1:111122223333:key/bench", capacity);
    ring.insert(1, Tsk::from_bytes([0x42; 32])).expect("fresh ring");
    ring
}

fn header() -> SealHeader {
    SealHeader { workflow_id: "bench-workflow-0001".into(), step: 7, agent: "agent-a".into() }
}

fn api(c: &mut Criterion) {
    let ring = ring();
    let header = header();
    let expect = Expectation { workflow_id: header.workflow_id.clone(), step: header.step };
    let limits = Limits { max_ciphertext_bytes: 2 << 20 };

    let mut g = c.benchmark_group("seal");
    for &n in &SIZES {
        let pt = vec![0xA5u8; n];
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &pt, |b, pt| {
            b.iter(|| seal(&ring, &header, black_box(pt)).expect("seal"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("open");
    for &n in &SIZES {
        let env = seal(&ring, &header, &vec![0xA5u8; n]).expect("seal");
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &env, |b, env| {
            b.iter(|| open(&ring, black_box(env), &expect, &limits).expect("open"))
        });
    }
    g.finish();

    // Same as `open`, but the returned `Plaintext` is dropped (and so wiped: one
    // memset over its allocation plus an optimisation barrier) outside the timed region:
    // separates decryption speed from the cost of wiping the plaintext.
    let mut g = c.benchmark_group("open_excl_wipe");
    for &n in &SIZES {
        let env = seal(&ring, &header, &vec![0xA5u8; n]).expect("seal");
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &env, |b, env| {
            b.iter_with_large_drop(|| open(&ring, black_box(env), &expect, &limits).expect("open"))
        });
    }
    g.finish();

    let cold = ring_with_cache(0);
    let mut g = c.benchmark_group("seal_uncached");
    for &n in &SIZES[..3] {
        let pt = vec![0xA5u8; n];
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &pt, |b, pt| {
            b.iter(|| seal(&cold, &header, black_box(pt)).expect("seal"))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("open_uncached");
    for &n in &SIZES[..3] {
        let env = seal(&cold, &header, &vec![0xA5u8; n]).expect("seal");
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &env, |b, env| {
            b.iter(|| open(&cold, black_box(env), &expect, &limits).expect("open"))
        });
    }
    g.finish();
}

fn raw(c: &mut Criterion) {
    let key = [0x42u8; 32];
    let mut g = c.benchmark_group("raw_encrypt");
    for &n in &SIZES {
        g.throughput(Throughput::Bytes(n as u64));

        {
            use aes_gcm::aead::AeadInPlace;
            use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
            let cipher = Aes256Gcm::new(&key.into());
            let mut buf = vec![0xA5u8; n];
            let mut ctr = 0u64;
            g.bench_function(BenchmarkId::new("aes-gcm", n), |b| {
                b.iter(|| {
                    ctr += 1;
                    let mut nonce = [0u8; 12];
                    nonce[..8].copy_from_slice(&ctr.to_le_bytes());
                    cipher.encrypt_in_place_detached(&Nonce::from(nonce), &AAD, &mut buf).expect("encrypt")
                })
            });
        }

        {
            use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
            let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("key"));
            let mut buf = vec![0xA5u8; n];
            let mut ctr = 0u64;
            g.bench_function(BenchmarkId::new("ring", n), |b| {
                b.iter(|| {
                    ctr += 1;
                    let mut nonce = [0u8; 12];
                    nonce[..8].copy_from_slice(&ctr.to_le_bytes());
                    k.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut buf)
                        .expect("encrypt")
                })
            });
        }

        {
            use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
            let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("key"));
            let mut buf = vec![0xA5u8; n];
            let mut ctr = 0u64;
            g.bench_function(BenchmarkId::new("aws-lc-rs", n), |b| {
                b.iter(|| {
                    ctr += 1;
                    let mut nonce = [0u8; 12];
                    nonce[..8].copy_from_slice(&ctr.to_le_bytes());
                    k.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut buf)
                        .expect("encrypt")
                })
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    // Short runs: the build machine's 2 cores are shared.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = api, raw }
criterion_main!(benches);
