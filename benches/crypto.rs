//! Criterion benchmarks of the crypto hot paths: the HMAC response (fresh key vs
//! pre-keyed, raw MAC vs hex), RSA-OAEP-SHA256 decrypt and encrypt at 2048/3072/4096 bits
//! on every RSA backend side by side, and key generation. `Throughput::Elements(1)`
//! everywhere, so criterion prints operations per second next to the time per call.
//!
//! `cargo bench --bench crypto` (all), `cargo bench --bench crypto -- hmac` (a filter).
//! Whole-machine throughput on N threads is `keyclaim-harness crypto-bench`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use keyclaim_harness::crypto::{
    RESPONSE_HEX_LEN, ResponseKey, RsaBackend, RsaPrivateKey, RsaPublicKey, generate_key_pair,
    generate_key_pair_with,
};

const SECRET: &[u8] = b"kc_bench_secret_0123456789";
/// A KeyClaim challenge is 64 lowercase hex characters.
const CHALLENGE: &[u8; 64] = b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn hmac(c: &mut Criterion) {
    let mut group = c.benchmark_group("hmac-sha256");
    group.throughput(Throughput::Elements(1));
    group.bench_function("fresh-key/mac", |b| {
        b.iter(|| ResponseKey::new(black_box(SECRET)).mac(black_box(CHALLENGE)))
    });
    group.bench_function("fresh-key/hex", |b| {
        let mut out = [0u8; RESPONSE_HEX_LEN];
        b.iter(|| {
            let key = ResponseKey::new(black_box(SECRET));
            black_box(key.response_hex_into(black_box(CHALLENGE), &mut out));
        })
    });
    let key = ResponseKey::new(SECRET);
    group.bench_function("pre-keyed/mac", |b| {
        b.iter(|| key.mac(black_box(CHALLENGE)))
    });
    group.bench_function("pre-keyed/hex", |b| {
        let mut out = [0u8; RESPONSE_HEX_LEN];
        b.iter(|| black_box(key.response_hex_into(black_box(CHALLENGE), &mut out)).len())
    });
    // The allocating String form, for the cost of the allocation next to the line above.
    let challenge = std::str::from_utf8(CHALLENGE).expect("the challenge is ASCII");
    group.bench_function("pre-keyed/hex-string", |b| {
        b.iter(|| key.response_hex(black_box(challenge)))
    });
    group.finish();
}

fn rsa_oaep(c: &mut Criterion) {
    for bits in [2048, 3072, 4096] {
        // One key per size, loaded into every backend, so they are compared on the same key.
        let pair = generate_key_pair(bits).expect("benchmark key generation");
        let mut group = c.benchmark_group(format!("rsa{bits}-oaep"));
        group.throughput(Throughput::Elements(1));
        // Flat sampling: the same iteration count in every sample, so the slow paths
        // (pure-Rust 4096-bit decrypt) need 20 calls, not the 210 of linear sampling.
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(20);
        for &backend in RsaBackend::ALL {
            let public = RsaPublicKey::from_pem_with(&pair.public_spki_pem, backend)
                .expect("benchmark public key");
            let private = RsaPrivateKey::from_pem_with(&pair.private_pkcs8_pem, backend)
                .expect("benchmark private key");
            let ciphertext = public.encrypt_oaep_sha256(CHALLENGE).expect("encrypt");
            group.bench_function(BenchmarkId::new("decrypt", backend), |b| {
                b.iter(|| {
                    private
                        .decrypt_oaep_sha256(black_box(&ciphertext))
                        .expect("decrypt")
                })
            });
            group.bench_function(BenchmarkId::new("encrypt", backend), |b| {
                b.iter(|| {
                    public
                        .encrypt_oaep_sha256(black_box(CHALLENGE))
                        .expect("encrypt")
                })
            });
        }
        group.finish();
    }
}

fn keygen(c: &mut Criterion) {
    let mut group = c.benchmark_group("rsa-keygen");
    group.throughput(Throughput::Elements(1));
    // Key generation takes tens to hundreds of milliseconds and varies a lot (prime
    // search), so the smallest sample criterion allows, flat, and 2048 bits only.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    for &backend in RsaBackend::ALL {
        group.bench_function(BenchmarkId::new("2048", backend), |b| {
            b.iter(|| generate_key_pair_with(2048, backend).expect("keygen"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hmac, rsa_oaep, keygen
}
criterion_main!(benches);
