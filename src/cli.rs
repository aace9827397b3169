//! The command line: clap derive turns arguments into typed settings, and each
//! subcommand's arguments resolve into the library's config in one step.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::crypto::RsaBackend;
use crate::scale_out::WorkerSlice;

use crate::server::faults::{Fault, FaultSet};
use crate::server::keys::{KeyRegistry, KeySpec, Tier, generate_key_id, load_keys_file};
use crate::server::{
    DEFAULT_BODY_LIMIT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_OUTSTANDING,
    PauseSchedule, ServerConfig,
};

/// Exit codes, documented in --help and the README.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "keyclaim-harness",
    version,
    about = "Load-testing and conformance harness for KeyClaim-compatible challenge-response APIs",
    after_help = "Exit codes: 0 success; 1 failure (a failed check, or a server that could not run); \
2 invalid arguments, plan or key files; 3 the target could not be reached at all; \
130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run test plans (conformance or load) against a target, or the embedded server.
    Run(RunArgs),
    /// Run the reference KeyClaim server.
    Serve(ServeArgs),
    /// Generate an RSA key pair for the RSA flow (PKCS#8 private, SPKI public).
    Keygen(KeygenArgs),
    /// Measure HMAC and RSA-OAEP throughput (ops/s) on 1..N threads, per RSA backend.
    CryptoBench(crate::crypto_bench::CryptoBenchArgs),
    /// Merge the reports of a scaled-out run's workers into one exact report.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one. The first stdout line is
    /// `listening on http://IP:PORT`.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,
    /// An API key to accept (repeatable). Keys start with kc_.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    /// An API key whose challenges are RSA-encrypted with --public-key.
    #[arg(long, value_name = "KEY", requires = "public_key")]
    pub rsa_api_key: Option<String>,
    /// PEM public key (SPKI or PKCS#1) for --rsa-api-key.
    #[arg(long, value_name = "PEM", requires = "rsa_api_key")]
    pub public_key: Option<PathBuf>,
    /// TOML keys file: [[key]] id, secret, public_key, tier, rate_limit, quota.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// Plan tier for keys that name none (paid tiers get verdict signatures).
    #[arg(long, value_enum, default_value = "business")]
    pub tier: Tier,
    /// Requests per second per key; 0 turns rate limiting off.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub rate_limit: u32,
    /// Break one documented guarantee on purpose (repeatable; see --list-faults).
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<Fault>,
    /// Print every fault, one per line, and exit.
    #[arg(long)]
    pub list_faults: bool,
    /// Stall all answers every DUR (with --pause-for), e.g. 5s.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, requires = "pause_for")]
    pub pause_every: Option<Duration>,
    /// How long each stall lasts, e.g. 500ms.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, requires = "pause_every")]
    pub pause_for: Option<Duration>,
    /// Outstanding challenges per key before create answers rate_limited.
    #[arg(long, default_value_t = DEFAULT_MAX_OUTSTANDING, value_name = "N")]
    pub max_outstanding: u64,
    /// How long used and expired challenges are remembered after expiry, so late
    /// validations answer replayed_challenge / expired_challenge.
    #[arg(long, default_value = "60s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub retain_expired: Duration,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_BODY_LIMIT, value_name = "BYTES")]
    pub body_limit: usize,
    /// Connections served at once; more wait in the accept backlog until one closes.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; larger gets 431.
    #[arg(long, default_value_t = DEFAULT_MAX_HEADER_BYTES, value_name = "BYTES")]
    pub max_header_bytes: usize,
    /// A connection that starts no request for this long (a slow or missing head, or
    /// an idle keep-alive) is closed, within one to two periods.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// A request body must arrive within this long of its head (else 408 and close).
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// A client that reads none of an answer for this long is disconnected.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub send_timeout: Duration,
    /// Worker threads (default: one per available core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// RSA implementation for encrypting challenges (rustcrypto carries
    /// RUSTSEC-2023-0071, a timing side channel on private-key operations).
    #[arg(long, value_enum, default_value_t = RsaBackend::default())]
    pub rsa_backend: RsaBackend,
}

/// The settings `serve` runs with, and a key it generated if none were given.
pub struct ResolvedServe {
    pub config: ServerConfig,
    pub generated_key: Option<String>,
}

impl ServeArgs {
    pub fn resolve(&self) -> anyhow::Result<ResolvedServe> {
        let mut keys: Vec<KeySpec> = self
            .api_keys
            .iter()
            .map(|id| KeySpec::new(id.clone(), self.tier))
            .collect();
        if let (Some(id), Some(path)) = (&self.rsa_api_key, &self.public_key) {
            let pem = std::fs::read_to_string(path).map_err(|err| {
                anyhow::anyhow!("{}: cannot read the public key: {err}", path.display())
            })?;
            crate::crypto::RsaPublicKey::from_pem(&pem)
                .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
            let mut spec = KeySpec::new(id.clone(), self.tier);
            spec.public_key_pem = Some(pem);
            keys.push(spec);
        }
        if let Some(path) = &self.keys {
            keys.extend(load_keys_file(path, self.tier)?);
        }
        let generated_key = keys.is_empty().then(generate_key_id);
        if let Some(id) = &generated_key {
            keys.push(KeySpec::new(id.clone(), self.tier));
        }
        // Refuse bad prefixes and duplicates here, as argument errors.
        KeyRegistry::new(&keys, self.rate_limit, self.rsa_backend)?;
        let pause = match (self.pause_every, self.pause_for) {
            (Some(every), Some(pause_for)) => {
                anyhow::ensure!(
                    !every.is_zero() && pause_for < every,
                    "--pause-for must be shorter than --pause-every, and --pause-every above zero"
                );
                Some(PauseSchedule { every, pause_for })
            }
            _ => None,
        };
        anyhow::ensure!(
            self.max_outstanding > 0,
            "--max-outstanding must be at least 1"
        );
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be at least 1"
        );
        anyhow::ensure!(
            self.max_header_bytes >= 64,
            "--max-header-bytes must be at least 64 (a request line alone needs about that)"
        );
        for (flag, value) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--send-timeout", self.send_timeout),
        ] {
            anyhow::ensure!(!value.is_zero(), "{flag} must be above zero");
        }
        Ok(ResolvedServe {
            config: ServerConfig {
                keys,
                rate_limit: self.rate_limit,
                faults: FaultSet::new(self.faults.iter().copied()),
                pause,
                max_outstanding: self.max_outstanding,
                retain_expired: self.retain_expired,
                body_limit: self.body_limit,
                rsa_backend: self.rsa_backend,
                max_connections: self.max_connections,
                max_header_bytes: self.max_header_bytes,
                header_timeout: self.header_timeout,
                body_timeout: self.body_timeout,
                send_timeout: self.send_timeout,
            },
            generated_key,
        })
    }
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Folder for private.pem (PKCS#8, mode 0600) and public.pem (SPKI).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// RSA modulus size.
    #[arg(long, default_value_t = 2048, value_parser = parse_rsa_bits)]
    pub bits: usize,
    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

fn parse_rsa_bits(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(bits @ (2048 | 3072 | 4096 | 8192)) => Ok(bits),
        _ => Err(format!(
            "{value} is not a supported size; use 2048, 3072, 4096 or 8192"
        )),
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 every check passed (non-strict and skipped allowed unless --strict); \
1 a check failed; 2 the plan or arguments are invalid; 3 the target could not be reached at all; \
130 interrupted by Ctrl-C or SIGTERM (the reports hold what ran)."
)]
pub struct RunArgs {
    /// Plan files (TOML; see scenarios/README.md).
    #[arg(required = true, value_name = "PLAN")]
    pub plans: Vec<PathBuf>,
    /// Base URL of the KeyClaim API; none starts the embedded reference server.
    #[arg(long, env = "KEYCLAIM_TARGET", value_name = "URL")]
    pub target: Option<String>,
    /// Start the embedded server with this fault (repeatable; see `serve --list-faults`).
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<Fault>,
    /// The API key to test with (needed with --target).
    #[arg(
        long,
        env = "KEYCLAIM_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// A second valid key, for the key-isolation scenario (skipped without it).
    #[arg(
        long,
        env = "KEYCLAIM_SECOND_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub second_api_key: Option<String>,
    /// A key with an RSA public key assigned (with --private-key; RSA scenarios are
    /// skipped without both).
    #[arg(
        long,
        env = "KEYCLAIM_RSA_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub rsa_api_key: Option<String>,
    /// The RSA private key: a PEM file path, or the PEM text itself.
    #[arg(
        long,
        env = "KEYCLAIM_PRIVATE_KEY",
        hide_env_values = true,
        value_name = "PEM"
    )]
    pub private_key: Option<String>,
    /// HMAC secret of --api-key when it is not the key itself (default: the key).
    #[arg(
        long,
        env = "KEYCLAIM_HMAC_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub hmac_secret: Option<String>,
    /// Pin every open point: non-strict and skipped outcomes fail the run.
    #[arg(long)]
    pub strict: bool,
    /// Run only this scenario (repeatable).
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Run only scenarios with any of these tags (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Where report.json, junit.xml and report.html go (default: reports/<plan name>).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Print only the final summary line.
    #[arg(long)]
    pub quiet: bool,
    /// Per-request timeout, from send to the last body byte.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Per-scenario timeout, overriding the plans'.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub scenario_timeout: Option<Duration>,
    /// Scenarios run at once (exclusive ones always run alone, last).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Requests in each rate-limit burst, overriding the plans' max_requests.
    #[arg(long, value_name = "N")]
    pub burst: Option<u32>,
    /// Run the selected scenarios in the open model at R arrivals per second.
    #[arg(long, value_name = "R", conflicts_with = "users")]
    pub rate: Option<f64>,
    /// Run the selected scenarios in the closed model with N users.
    #[arg(long, value_name = "N")]
    pub users: Option<u32>,
    /// RSA implementation for decrypting challenges (and the embedded server's
    /// encryption); rustcrypto carries RUSTSEC-2023-0071.
    #[arg(long, value_enum, default_value_t = RsaBackend::default())]
    pub rsa_backend: RsaBackend,
    /// Bound the selected load scenarios to this long, e.g. 30s.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Split every load scenario over this many worker processes (rates, users and
    /// iterations divided evenly); this process drives share --worker-index. Merge the
    /// workers' reports with `keyclaim-harness merge`.
    #[arg(long, env = "KEYCLAIM_WORKERS", value_name = "N")]
    pub workers: Option<u32>,
    /// This worker's index, 0 to N-1 (on Kubernetes: $(JOB_COMPLETION_INDEX)). Worker 0
    /// also runs the conformance scenarios.
    #[arg(
        long,
        env = "KEYCLAIM_WORKER_INDEX",
        value_name = "I",
        requires = "workers"
    )]
    pub worker_index: Option<u32>,
    /// Start the scenarios at this instant, so workers' timelines line up: RFC 3339
    /// (2026-11-23T15:00:00Z) or seconds since the epoch.
    #[arg(long, env = "KEYCLAIM_START_AT", value_name = "TIME", value_parser = crate::scale_out::parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,
}

impl RunArgs {
    pub fn resolve(&self) -> anyhow::Result<crate::runner::RunOptions> {
        let private_key_pem = match &self.private_key {
            None => None,
            Some(value) if value.trim_start().starts_with("-----BEGIN") => {
                Some(zeroize::Zeroizing::new(value.clone()))
            }
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .map_err(|err| anyhow::anyhow!("--private-key {path}: cannot read: {err}"))?;
                warn_if_readable_by_others(std::path::Path::new(path));
                Some(zeroize::Zeroizing::new(pem))
            }
        };
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        anyhow::ensure!(!self.timeout.is_zero(), "--timeout must be above zero");
        Ok(crate::runner::RunOptions {
            plans: self.plans.clone(),
            target: self.target.clone(),
            faults: FaultSet::new(self.faults.iter().copied()),
            api_key: self.api_key.clone(),
            second_api_key: self.second_api_key.clone(),
            rsa_api_key: self.rsa_api_key.clone(),
            private_key_pem,
            hmac_secret: self.hmac_secret.clone(),
            strict: self.strict,
            scenario_names: self.scenarios.clone(),
            tags: self.tags.clone(),
            report_dir: self.report_dir.clone(),
            request_timeout: self.timeout,
            scenario_timeout: self.scenario_timeout,
            concurrency: self.concurrency,
            burst: self.burst,
            rate: self.rate,
            users: self.users,
            rsa_backend: self.rsa_backend,
            duration: self.duration,
            worker: self
                .workers
                .map(|workers| WorkerSlice::new(self.worker_index.unwrap_or(0), workers))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            start_at: self.start_at,
        })
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 the merged report passed; 1 a check or threshold failed on the merged figures; \
2 the inputs cannot be merged (unreadable, from different runs, overlapping or missing workers)."
)]
pub struct MergeArgs {
    /// Report directories of the workers (each holding report.json).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the merged report.json, junit.xml, report.html, .hgrm and .hlog go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Merge even when some workers' reports are absent (the report lists them).
    #[arg(long)]
    pub allow_missing: bool,
    /// Print only the final summary line.
    #[arg(long)]
    pub quiet: bool,
}

/// A private key that others can read is a leak waiting to happen: say so.
fn warn_if_readable_by_others(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: {} is readable by group or others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
}
