//! What `keyclaim-harness crypto-bench` measures: how many HMAC responses and RSA-OAEP operations per
//! second this machine does, on 1..N threads, per RSA backend, and how well that scales.
//!
//! Each measurement runs for a fixed window and stops by itself. Scaling is real parallel
//! work: every rayon thread of a pool of `t` runs its own loop for the whole window (no
//! shared work queue, no locks), and the figure is the sum of the threads' own rates.
//! The criterion benches (`benches/crypto.rs`) give per-call latency with statistics;
//! this command gives whole-machine throughput, and `benches/openssl_compare.sh` sets it
//! beside `openssl speed`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::crypto::{
    CryptoError, GeneratedKeyPair, RESPONSE_HEX_LEN, ResponseKey, RsaBackend, RsaPrivateKey,
    RsaPublicKey, generate_key_pair,
};

/// One measured operation. The names are the ones scripts match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum BenchPath {
    /// The KeyClaim response: pre-keyed HMAC-SHA256 of a 64-character challenge, as hex.
    #[value(name = "hmac-sha256")]
    HmacSha256,
    #[value(name = "rsa2048-oaep-decrypt")]
    Rsa2048Decrypt,
    #[value(name = "rsa2048-oaep-encrypt")]
    Rsa2048Encrypt,
    #[value(name = "rsa3072-oaep-decrypt")]
    Rsa3072Decrypt,
    #[value(name = "rsa3072-oaep-encrypt")]
    Rsa3072Encrypt,
    #[value(name = "rsa4096-oaep-decrypt")]
    Rsa4096Decrypt,
    #[value(name = "rsa4096-oaep-encrypt")]
    Rsa4096Encrypt,
}

impl BenchPath {
    pub fn name(self) -> &'static str {
        match self {
            BenchPath::HmacSha256 => "hmac-sha256",
            BenchPath::Rsa2048Decrypt => "rsa2048-oaep-decrypt",
            BenchPath::Rsa2048Encrypt => "rsa2048-oaep-encrypt",
            BenchPath::Rsa3072Decrypt => "rsa3072-oaep-decrypt",
            BenchPath::Rsa3072Encrypt => "rsa3072-oaep-encrypt",
            BenchPath::Rsa4096Decrypt => "rsa4096-oaep-decrypt",
            BenchPath::Rsa4096Encrypt => "rsa4096-oaep-encrypt",
        }
    }

    /// The RSA modulus size, or `None` for HMAC.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            BenchPath::HmacSha256 => None,
            BenchPath::Rsa2048Decrypt | BenchPath::Rsa2048Encrypt => Some(2048),
            BenchPath::Rsa3072Decrypt | BenchPath::Rsa3072Encrypt => Some(3072),
            BenchPath::Rsa4096Decrypt | BenchPath::Rsa4096Encrypt => Some(4096),
        }
    }

    fn decrypts(self) -> bool {
        matches!(
            self,
            BenchPath::Rsa2048Decrypt | BenchPath::Rsa3072Decrypt | BenchPath::Rsa4096Decrypt
        )
    }
}

/// The `backend` reported for HMAC, which has one implementation.
pub const HMAC_BACKEND: &str = "rustcrypto";

/// One (path, backend, thread count) result; serialised as one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub path: &'static str,
    pub backend: &'static str,
    pub threads: usize,
    /// Operations per second, all threads together.
    pub ops_per_sec: f64,
    /// `ops_per_sec` over the same path and backend's 1-thread figure.
    pub scaling: f64,
    /// Operations completed in the window, all threads together.
    pub ops: u64,
    /// The window each thread ran for, in seconds.
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoBenchError {
    #[error("cannot generate the RSA-{bits} benchmark key: {source}")]
    KeyGeneration { bits: usize, source: CryptoError },
    #[error("{path} on {backend}: {source}")]
    Crypto {
        path: &'static str,
        backend: &'static str,
        source: CryptoError,
    },
    #[error("{path} on {backend}: the decrypted challenge differs from the one encrypted")]
    SelfCheck {
        path: &'static str,
        backend: &'static str,
    },
    #[error("cannot start {threads} threads: {reason}")]
    ThreadPool { threads: usize, reason: String },
}

/// What to measure, resolved from the arguments in one step.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub paths: Vec<BenchPath>,
    pub backends: Vec<RsaBackend>,
    pub max_threads: usize,
    pub window: Duration,
}

impl BenchPlan {
    /// Every (path, backend) pair measured, in order.
    pub fn targets(&self) -> Vec<(BenchPath, Option<RsaBackend>)> {
        let mut targets = Vec::new();
        for &path in &self.paths {
            if path.rsa_bits().is_some() {
                targets.extend(self.backends.iter().map(|&backend| (path, Some(backend))));
            } else {
                targets.push((path, None));
            }
        }
        targets
    }
}

/// Measures every target of `plan` on 1..=max threads, reporting to `progress`.
pub fn measure(
    plan: &BenchPlan,
    progress: &ProgressBar,
) -> Result<Vec<Measurement>, CryptoBenchError> {
    let pools = (1..=plan.max_threads)
        .map(|threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("crypto-bench-{i}"))
                .build()
                .map_err(|err| CryptoBenchError::ThreadPool {
                    threads,
                    reason: err.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let challenge = challenge();
    // One key pair per size, shared by the backends, so they are measured on the same key.
    let mut pairs: BTreeMap<usize, GeneratedKeyPair> = BTreeMap::new();
    let mut results = Vec::new();
    for (path, backend) in plan.targets() {
        let workload = match (path.rsa_bits(), backend) {
            (Some(bits), Some(backend)) => {
                let pair =
                    match pairs.entry(bits) {
                        Entry::Occupied(entry) => entry.into_mut(),
                        Entry::Vacant(entry) => {
                            progress.set_message(format!("generating an RSA-{bits} key"));
                            entry.insert(generate_key_pair(bits).map_err(|source| {
                                CryptoBenchError::KeyGeneration { bits, source }
                            })?)
                        }
                    };
                rsa_workload(path, backend, pair, &challenge)?
            }
            _ => Workload::Hmac {
                key: ResponseKey::new(b"kc_crypto_bench_secret"),
                challenge,
            },
        };
        let backend_name = backend.map_or(HMAC_BACKEND, RsaBackend::name);
        let mut single = None;
        for (index, pool) in pools.iter().enumerate() {
            let threads = index + 1;
            progress.set_message(format!(
                "{} ({backend_name}), {threads} threads",
                path.name()
            ));
            let tally = run_window(pool, &workload, plan.window).map_err(|source| {
                CryptoBenchError::Crypto {
                    path: path.name(),
                    backend: backend_name,
                    source,
                }
            })?;
            let one = *single.get_or_insert(tally.ops_per_sec);
            results.push(Measurement {
                path: path.name(),
                backend: backend_name,
                threads,
                ops_per_sec: tally.ops_per_sec,
                scaling: if one > 0.0 {
                    tally.ops_per_sec / one
                } else {
                    0.0
                },
                ops: tally.ops,
                seconds: plan.window.as_secs_f64(),
            });
            progress.inc(1);
        }
    }
    Ok(results)
}

/// A fresh KeyClaim-shaped challenge: 64 lowercase hex characters.
fn challenge() -> [u8; RESPONSE_HEX_LEN] {
    let mut out = [0u8; RESPONSE_HEX_LEN];
    let random: [u8; 32] = rand::random();
    // 32 bytes always fit 64 hex characters.
    if const_hex::encode_to_slice(random, &mut out).is_err() {
        out.fill(b'0');
    }
    out
}

/// One operation to repeat, with everything it needs prepared outside the timed loop.
enum Workload {
    Hmac {
        key: ResponseKey,
        challenge: [u8; RESPONSE_HEX_LEN],
    },
    Decrypt {
        key: RsaPrivateKey,
        ciphertext: Vec<u8>,
    },
    Encrypt {
        key: RsaPublicKey,
        plaintext: [u8; RESPONSE_HEX_LEN],
    },
}

fn rsa_workload(
    path: BenchPath,
    backend: RsaBackend,
    pair: &GeneratedKeyPair,
    challenge: &[u8; RESPONSE_HEX_LEN],
) -> Result<Workload, CryptoBenchError> {
    let crypto = |source| CryptoBenchError::Crypto {
        path: path.name(),
        backend: backend.name(),
        source,
    };
    let public = RsaPublicKey::from_pem_with(&pair.public_spki_pem, backend).map_err(crypto)?;
    let private = RsaPrivateKey::from_pem_with(&pair.private_pkcs8_pem, backend).map_err(crypto)?;
    // Check the round trip once, so a broken backend fails loudly instead of timing errors.
    let ciphertext = public.encrypt_oaep_sha256(challenge).map_err(crypto)?;
    if **private.decrypt_oaep_sha256(&ciphertext).map_err(crypto)? != challenge[..] {
        return Err(CryptoBenchError::SelfCheck {
            path: path.name(),
            backend: backend.name(),
        });
    }
    Ok(if path.decrypts() {
        Workload::Decrypt {
            key: private,
            ciphertext,
        }
    } else {
        Workload::Encrypt {
            key: public,
            plaintext: *challenge,
        }
    })
}

impl Workload {
    /// Operations between two looks at the clock: enough that reading the clock costs
    /// nothing next to the work, few enough that the window is not overrun.
    fn batch(&self) -> u64 {
        match self {
            Workload::Hmac { .. } => 256,
            Workload::Decrypt { .. } | Workload::Encrypt { .. } => 1,
        }
    }

    #[inline]
    fn once(&self, hex: &mut [u8; RESPONSE_HEX_LEN]) -> Result<(), CryptoError> {
        match self {
            Workload::Hmac { key, challenge } => {
                black_box(key.response_hex_into(black_box(challenge), hex));
            }
            Workload::Decrypt { key, ciphertext } => {
                black_box(key.decrypt_oaep_sha256(black_box(ciphertext))?);
            }
            Workload::Encrypt { key, plaintext } => {
                black_box(key.encrypt_oaep_sha256(black_box(plaintext))?);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    ops: u64,
    ops_per_sec: f64,
}

/// Runs `workload` on every thread of `pool` for `window`, each thread in its own loop,
/// and adds up the threads' own rates.
fn run_window(
    pool: &rayon::ThreadPool,
    workload: &Workload,
    window: Duration,
) -> Result<Tally, CryptoError> {
    let per_thread = pool.broadcast(|_| -> Result<(u64, f64), CryptoError> {
        let batch = workload.batch();
        let mut hex = [0u8; RESPONSE_HEX_LEN];
        // One untimed batch first: page in the key and warm the caches and branch
        // predictors, so the first thread count is not penalised.
        for _ in 0..batch {
            workload.once(&mut hex)?;
        }
        let start = Instant::now();
        let deadline = start + window;
        let mut ops = 0u64;
        loop {
            for _ in 0..batch {
                workload.once(&mut hex)?;
            }
            ops += batch;
            let now = Instant::now();
            if now >= deadline {
                return Ok((ops, ops as f64 / (now - start).as_secs_f64()));
            }
        }
    });
    let mut tally = Tally {
        ops: 0,
        ops_per_sec: 0.0,
    };
    for thread in per_thread {
        let (ops, rate) = thread?;
        tally.ops += ops;
        tally.ops_per_sec += rate;
    }
    Ok(tally)
}

/// The human table: ops/s per path, backend and thread count, and the scaling factor.
pub fn render_text(plan: &BenchPlan, measurements: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "crypto-bench: {:.2} s per measurement, 1..{} threads\n",
        plan.window.as_secs_f64(),
        plan.max_threads
    );
    let _ = writeln!(
        out,
        "{:<22} {:<11} {:>7} {:>14} {:>8}",
        "path", "backend", "threads", "ops/s", "scaling"
    );
    for m in measurements {
        let _ = writeln!(
            out,
            "{:<22} {:<11} {:>7} {:>14} {:>7.2}x",
            m.path,
            m.backend,
            m.threads,
            group_thousands(m.ops_per_sec),
            m.scaling
        );
    }
    out
}

/// The JSON array for scripts, one object per (path, backend, thread count).
pub fn render_json(measurements: &[Measurement]) -> String {
    // Serialising plain structs of numbers and static strings cannot fail.
    let mut json = serde_json::to_string_pretty(measurements).unwrap_or_else(|_| "[]".into());
    json.push('\n');
    json
}

fn group_thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_measurement_is_time_bounded_and_counts_every_thread() {
        let plan = BenchPlan {
            paths: vec![BenchPath::HmacSha256],
            backends: vec![RsaBackend::default()],
            max_threads: 2,
            window: Duration::from_millis(50),
        };
        let started = Instant::now();
        let results = measure(&plan, &ProgressBar::hidden()).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(results.len(), 2);
        assert_eq!(
            (results[0].path, results[0].backend, results[0].threads),
            ("hmac-sha256", "rustcrypto", 1)
        );
        assert_eq!(results[1].threads, 2);
        assert!(results.iter().all(|m| m.ops > 0 && m.ops_per_sec > 0.0));
        assert!((results[0].scaling - 1.0).abs() < 1e-9);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let measurement = Measurement {
            path: "rsa2048-oaep-decrypt",
            backend: "aws-lc",
            threads: 2,
            ops_per_sec: 8000.5,
            scaling: 1.95,
            ops: 8000,
            seconds: 1.0,
        };
        let value: serde_json::Value = serde_json::from_str(&render_json(&[measurement])).unwrap();
        let object = &value.as_array().unwrap()[0];
        assert_eq!(object["path"], "rsa2048-oaep-decrypt");
        assert_eq!(object["backend"], "aws-lc");
        assert_eq!(object["threads"], 2);
        assert_eq!(object["ops_per_sec"], 8000.5);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0.4), "0");
        assert_eq!(group_thousands(999.0), "999");
        assert_eq!(group_thousands(1000.0), "1,000");
        assert_eq!(group_thousands(4_123_456.7), "4,123,457");
    }
}
