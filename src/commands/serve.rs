//! `serve`: the reference KeyClaim server on a port, with the keys, limits and faults
//! the arguments give, until Ctrl-C or SIGTERM.

use crate::commands::args;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::process::{ShutdownSignals, runtime};
use crate::crypto::RsaBackend;
use crate::exit::ExitCode;
use crate::server::faults::{Fault, FaultSet};
use crate::server::keys::{KeyRegistry, KeySpec, Tier, generate_key_id, load_keys_file};
use crate::server::style::{Style, StyleSet};
use crate::server::{
    DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_MEMORY, DEFAULT_RETAIN_EXPIRED, DEFAULT_SEND_TIMEOUT,
    MIN_MAX_MEMORY, PauseSchedule, SERVE_RATE_BURST, SERVE_RATE_LIMIT, ServerConfig,
};

#[derive(Debug, Args)]
#[command(after_help = super::help::after_help(
    &[
        ("a local server for a client under development", "keyclaim-harness serve --listen 127.0.0.1:8080 --api-key kc_local_dev_key"),
        ("a broken one: replays validate (the suite must catch it)", "keyclaim-harness serve --api-key kc_local_dev_key --fault accept-replay"),
        ("the faults and styles it can take", "keyclaim-harness serve --list-faults"),
    ],
    &[ExitCode::Ok, ExitCode::Failed, ExitCode::Usage]
))]
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
    /// TOML keys file: `[[key]]` tables with id, secret, public_key, tier, rate_limit, quota.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// Plan tier for keys that name none (paid tiers get verdict signatures).
    #[arg(long, value_enum, default_value = "business")]
    pub tier: Tier,
    /// Requests per second per key; 0 turns rate limiting off.
    #[arg(long, default_value_t = SERVE_RATE_LIMIT, value_name = "N")]
    pub rate_limit: u32,
    /// Requests a key may send at once before --rate-limit counts (at least the rate).
    #[arg(long, default_value_t = SERVE_RATE_BURST, value_name = "N")]
    pub rate_burst: u32,
    /// Break one documented guarantee on purpose (repeatable; see --list-faults).
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<Fault>,
    /// Print every fault, one per line, and exit.
    #[arg(long)]
    pub list_faults: bool,
    /// Make one choice the KeyClaim docs leave open differently from the reference
    /// (repeatable; see --list-styles). Still a correct server.
    #[arg(long = "style", value_name = "NAME")]
    pub styles: Vec<Style>,
    /// Print every style, one per line, and exit.
    #[arg(long)]
    pub list_styles: bool,
    /// Stall all answers every DUR (with --pause-for), e.g. 5s.
    #[arg(long, value_name = "DUR", value_parser = args::positive_duration, allow_hyphen_values = true, requires = "pause_for")]
    pub pause_every: Option<Duration>,
    /// How long each stall lasts, e.g. 500ms.
    #[arg(long, value_name = "DUR", value_parser = args::duration, allow_hyphen_values = true, requires = "pause_every")]
    pub pause_for: Option<Duration>,
    /// Outstanding challenges one key may hold before its creates answer rate_limited
    /// (default: no per-key cap; --max-memory bounds the store).
    #[arg(long, value_name = "N")]
    pub max_outstanding: Option<u64>,
    /// What the challenge store may hold, across all keys and states, e.g. 64MiB or
    /// 1GiB. When full, the oldest used and expired challenges are forgotten first; when
    /// only outstanding ones are left, creates answer rate_limited.
    #[arg(long, default_value_t = bytesize::ByteSize::b(DEFAULT_MAX_MEMORY as u64), value_name = "SIZE")]
    pub max_memory: bytesize::ByteSize,
    /// How long used and expired challenges are remembered after expiry, so late
    /// validations answer replayed_challenge / expired_challenge.
    #[arg(long, default_value_t = DEFAULT_RETAIN_EXPIRED.into(), value_name = "DUR")]
    pub retain_expired: humantime::Duration,
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
    #[arg(long, default_value_t = DEFAULT_HEADER_TIMEOUT.into(), value_name = "DUR")]
    pub header_timeout: humantime::Duration,
    /// A request body must arrive within this long of its head (else 408 and close).
    #[arg(long, default_value_t = DEFAULT_BODY_TIMEOUT.into(), value_name = "DUR")]
    pub body_timeout: humantime::Duration,
    /// A client that reads none of an answer for this long is disconnected.
    #[arg(long, default_value_t = DEFAULT_SEND_TIMEOUT.into(), value_name = "DUR")]
    pub send_timeout: humantime::Duration,
    /// Worker threads (default: one per available core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// RSA implementation for encrypting challenges (rustcrypto carries
    /// RUSTSEC-2023-0071, a timing side channel on private-key operations).
    #[arg(long, value_enum, default_value_t = RsaBackend::default())]
    pub rsa_backend: RsaBackend,
    /// Also serve this server's figures for Prometheus (OpenMetrics text) at
    /// http://ADDR/metrics, on a listener of its own: creates, validations by verdict,
    /// rate-limited answers, the store's size and memory.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
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
        KeyRegistry::new(
            &keys,
            self.rate_limit,
            Some(self.rate_burst),
            self.rsa_backend,
        )?;
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
            self.max_outstanding != Some(0),
            "--max-outstanding must be at least 1 (leave it out for no per-key cap)"
        );
        let max_memory = usize::try_from(self.max_memory.as_u64()).unwrap_or(usize::MAX);
        anyhow::ensure!(
            max_memory >= MIN_MAX_MEMORY,
            "--max-memory must be at least {} (got {})",
            bytesize::ByteSize::b(MIN_MAX_MEMORY as u64).display().iec(),
            self.max_memory.display().iec()
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
            ("--header-timeout", *self.header_timeout),
            ("--body-timeout", *self.body_timeout),
            ("--send-timeout", *self.send_timeout),
        ] {
            anyhow::ensure!(!value.is_zero(), "{flag} must be above zero");
        }
        Ok(ResolvedServe {
            config: ServerConfig {
                keys,
                rate_limit: self.rate_limit,
                rate_burst: Some(self.rate_burst),
                faults: FaultSet::new(self.faults.iter().copied()),
                styles: StyleSet::new(self.styles.iter().copied()),
                pause,
                max_outstanding: self.max_outstanding,
                max_memory,
                retain_expired: self.retain_expired.into(),
                body_limit: self.body_limit,
                rsa_backend: self.rsa_backend,
                max_connections: self.max_connections,
                max_header_bytes: self.max_header_bytes,
                header_timeout: self.header_timeout.into(),
                body_timeout: self.body_timeout.into(),
                send_timeout: self.send_timeout.into(),
            },
            generated_key,
        })
    }
}

pub fn execute(args: ServeArgs) -> ExitCode {
    if args.list_faults {
        print!("{}", crate::server::faults::list_faults());
        return ExitCode::Ok;
    }
    if args.list_styles {
        print!("{}", crate::server::style::list_styles());
        return ExitCode::Ok;
    }
    let resolved = match args.resolve() {
        Ok(resolved) => resolved,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::Usage;
        }
    };
    if let Some(key) = &resolved.generated_key {
        eprintln!("no keys given; generated API key: {key}");
    }
    for fault in resolved.config.faults.iter() {
        tracing::warn!("fault {fault} is on: {}", fault.breaks());
    }
    let runtime = match runtime(args.threads) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::Failed;
        }
    };
    let signals = {
        let _context = runtime.enter();
        ShutdownSignals::new()
    };
    let mut signals = match signals {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("error: cannot listen for signals: {err}");
            return ExitCode::Failed;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", args.listen))?;
        let metrics = match &args.metrics_listen {
            Some(addr) => Some(
                crate::live::Bound::bind(addr)
                    .await
                    .map_err(|err| anyhow::anyhow!("--metrics-listen {addr}: {err}"))?,
            ),
            None => None,
        };
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        let server = crate::server::Server::new(&resolved.config)?;
        let endpoint = match metrics {
            Some(bound) => {
                println!(
                    "metrics on http://{}{}",
                    bound.local_addr()?,
                    crate::live::PATH
                );
                Some(bound.serve(server.metrics()))
            }
            None => None,
        };
        std::io::stdout().flush().ok();
        crate::server::serve_built(listener, server, async move { signals.recv().await }).await?;
        if let Some(endpoint) = endpoint {
            endpoint.stop().await;
        }
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::Ok,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::Failed
        }
    }
}
