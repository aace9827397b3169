//! `run`: loads and selects the plans' scenarios, points them at the target (or starts
//! the embedded reference server), runs them, writes the reports, and says which exit
//! code the run earned.

use crate::commands::args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Args;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::process::{Console, ShutdownSignals, runtime};
use crate::client::{Client, Reach};
use crate::crypto::{RsaBackend, RsaPrivateKey};
use crate::engine::{
    self, Credentials, Embedded, EmbeddedTarget, LoadProgress, RetryPolicy, RunSettings,
    ScenarioDone, SignatureScheme, start_embedded, target_label, unreachable_report,
};
use crate::exit::ExitCode;
use crate::live::load::LoadMetrics;
use crate::plan::model::{Action, Scenario};
use crate::plan::{PlanError, apply_load_overrides, load_all, select};
use crate::redact::Redactor;
use crate::report::console;
use crate::report::progress::ScenarioProgress;
use crate::results::RunReport;
use crate::scale_out::rendezvous::{Hello, JoinError, Rendezvous};
use crate::scale_out::{WorkerSlice, parse_start_at, plan_digest, synchronise};
use crate::server::faults::{Fault, FaultSet};
use crate::server::style::{Style, StyleSet};
use crate::tls::{Tls, TlsOptions};

#[derive(Debug, Args)]
#[command(after_help = super::help::after_help(
    &[
        ("the conformance suite against the embedded reference server", "keyclaim-harness run scenarios/conformance.toml"),
        ("against a deployment, the key from the environment", "KEYCLAIM_API_KEY=... keyclaim-harness run scenarios/conformance.toml --target https://api.example.com"),
        ("only the TTL scenarios, non-strict outcomes failing the run", "keyclaim-harness run scenarios/conformance.toml --tags ttl --strict"),
        ("500 arrivals per second for 30 s (open model)", "keyclaim-harness run scenarios/load.toml --scenario create-validate --rate 500 --duration 30s"),
        ("50 users back to back (closed model)", "keyclaim-harness run scenarios/load.toml --scenario create --users 50 --duration 30s"),
    ],
    &ExitCode::ALL
))]
pub struct RunArgs {
    /// Plan files (TOML; see scenarios/README.md).
    #[arg(required = true, value_name = "PLAN")]
    pub plans: Vec<PathBuf>,
    /// Base URL of the KeyClaim API; none starts the embedded reference server.
    #[arg(long, env = "KEYCLAIM_TARGET", hide_env_values = true, value_name = "URL", value_parser = args::target_url)]
    pub target: Option<String>,
    /// Start the embedded server with this fault (repeatable; see `serve --list-faults`).
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<Fault>,
    /// Start the embedded server in this style (repeatable; see `serve --list-styles`).
    #[arg(long = "style", value_name = "NAME")]
    pub styles: Vec<Style>,
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
    /// Trust the CA certificates in this PEM file besides the system's (a private CA or
    /// a self-signed target).
    #[arg(long, env = "KEYCLAIM_CACERT", value_name = "PEM")]
    pub cacert: Option<PathBuf>,
    /// Skip TLS certificate verification (a quick test only: anyone in the path can
    /// read the keys); the console warns and report.json says "insecure": true.
    #[arg(long, env = "KEYCLAIM_INSECURE", conflicts_with = "cacert")]
    pub insecure: bool,
    /// Client certificate (PEM, leaf first) for targets that require one (mTLS).
    #[arg(
        long = "cert",
        env = "KEYCLAIM_CLIENT_CERT",
        value_name = "PEM",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); its content is never printed.
    #[arg(
        long = "key",
        env = "KEYCLAIM_CLIENT_KEY",
        value_name = "PEM",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Speak HTTP/2: ALPN h2 on https://, prior knowledge on http://. Each user (or
    /// open-model connection) is one HTTP/2 connection carrying one request at a time.
    #[arg(long, env = "KEYCLAIM_HTTP2")]
    pub http2: bool,
    /// Pin every open point: non-strict and skipped outcomes fail the run.
    #[arg(long)]
    pub strict: bool,
    /// The verdict-signature scheme the target uses, to check every signature exactly
    /// (keyclaim-v1 is the reference server's, SPEC.md §6); without it a signature is
    /// only checked to be hex, distinct per verdict, and not the client's response.
    #[arg(
        long,
        env = "KEYCLAIM_SIGNATURE_SCHEME",
        hide_env_values = true,
        value_enum,
        value_name = "SCHEME"
    )]
    pub signature_scheme: Option<SignatureScheme>,
    /// Run only this scenario (repeatable).
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Run only scenarios with any of these tags (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Where report.json, junit.xml and report.html go (default: `reports/<plan name>`).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Print only the final summary line.
    #[arg(long)]
    pub quiet: bool,
    /// Serve live figures for Prometheus (OpenMetrics text) at http://ADDR/metrics while
    /// the run lasts: requests by scenario, step, status and error code, latency
    /// histograms, target and achieved rate, in flight, dropped, late.
    #[arg(
        long,
        env = "KEYCLAIM_METRICS_LISTEN",
        hide_env_values = true,
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<String>,
    /// With --metrics-listen: keep serving the final figures this long after the reports
    /// are written, so a scraper sees the end (Ctrl-C ends the wait).
    #[arg(
        long,
        default_value = "0s",
        value_name = "DUR",
        value_parser = args::duration, allow_hyphen_values = true,
        requires = "metrics_listen"
    )]
    pub metrics_linger: Duration,
    /// Per-request timeout, from send to the last body byte.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = args::positive_duration, allow_hyphen_values = true)]
    pub timeout: Duration,
    /// Per-scenario timeout, overriding the plans'.
    #[arg(long, value_name = "DUR", value_parser = args::positive_duration, allow_hyphen_values = true)]
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
    #[arg(long, value_name = "DUR", value_parser = args::positive_duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// Split every load scenario over this many worker processes (rates, users and
    /// iterations divided evenly); this process drives share --worker-index. Merge the
    /// workers' reports with `keyclaim-harness merge`.
    #[arg(
        long,
        env = "KEYCLAIM_WORKERS",
        hide_env_values = true,
        value_name = "N"
    )]
    pub workers: Option<u32>,
    /// This worker's index, 0 to N-1 (on Kubernetes: $(JOB_COMPLETION_INDEX)). Worker 0
    /// also runs the conformance scenarios.
    #[arg(
        long,
        env = "KEYCLAIM_WORKER_INDEX",
        hide_env_values = true,
        value_name = "I",
        requires = "workers"
    )]
    pub worker_index: Option<u32>,
    /// Start the scenarios at this instant, so workers' timelines line up: RFC 3339
    /// (2026-11-23T15:00:00Z) or seconds since the epoch.
    #[arg(long, env = "KEYCLAIM_START_AT", hide_env_values = true, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,
    /// Join the scaled-out run the coordinator at this URL gathers (`keyclaim-harness
    /// coordinate`): start when it says every worker is in, and hand it the report.
    #[arg(
        long,
        env = "KEYCLAIM_RENDEZVOUS",
        hide_env_values = true,
        value_name = "URL",
        requires = "workers",
        conflicts_with = "start_at"
    )]
    pub rendezvous: Option<String>,
    /// With --rendezvous: how long to wait for the coordinator and the start, and to
    /// hand the report in, at most.
    #[arg(
        long,
        env = "KEYCLAIM_RENDEZVOUS_TIMEOUT",
        hide_env_values = true,
        default_value = "15m",
        value_name = "DUR",
        value_parser = args::duration, allow_hyphen_values = true
    )]
    pub rendezvous_timeout: Duration,
}

impl RunArgs {
    /// The worker slice `--workers`/`--worker-index` give.
    pub fn worker(&self) -> Result<Option<WorkerSlice>, RunError> {
        self.workers
            .map(|workers| WorkerSlice::new(self.worker_index.unwrap_or(0), workers))
            .transpose()
            .map_err(RunError::Usage)
    }

    /// The private key's PEM text: `--private-key` is the PEM itself or a file holding it.
    fn private_key_pem(&self) -> Result<Option<Zeroizing<String>>, RunError> {
        match &self.private_key {
            None => Ok(None),
            Some(value) if value.trim_start().starts_with("-----BEGIN") => {
                Ok(Some(Zeroizing::new(value.clone())))
            }
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|err| {
                    RunError::Usage(format!("--private-key {path}: cannot read: {err}"))
                })?;
                warn_if_readable_by_others(std::path::Path::new(path));
                Ok(Some(Zeroizing::new(pem)))
            }
        }
    }

    /// The run's TLS settings: the flags, over the plans' `[plan]` `cacert` and `http2`
    /// (files read and checked here: exit 2).
    fn tls(&self, plan: &PlanTls) -> Result<Tls, RunError> {
        // --insecure verifies nothing, so a plan's CA is moot (and the flags conflict).
        let cacert = match (&self.cacert, self.insecure) {
            (Some(path), _) => Some(path.clone()),
            (None, false) => plan.cacert.clone(),
            (None, true) => None,
        };
        Tls::new(&TlsOptions {
            cacert,
            insecure: self.insecure,
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            http2: self.http2 || plan.http2,
        })
        .map_err(|err| RunError::Usage(err.to_string()))
    }

    /// The checks that need no plan, so a bad flag is reported before anything runs.
    fn check(&self) -> Result<(), RunError> {
        if self.concurrency == 0 {
            return Err(RunError::Usage("--concurrency must be at least 1".into()));
        }
        if self.timeout.is_zero() {
            return Err(RunError::Usage("--timeout must be above zero".into()));
        }
        self.worker().map(drop)
    }
}

/// A private key that others can read is a leak waiting to happen: say so.
fn warn_if_readable_by_others(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "{} is readable by group or others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the target {target}: {why}")]
    Unreachable { target: String, why: String },
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Rendezvous(#[from] JoinError),
}

impl RunError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Plan(_) | RunError::Usage(_) => ExitCode::Usage,
            RunError::Unreachable { .. } => ExitCode::Unreachable,
            RunError::Failed(_) => ExitCode::Failed,
            RunError::Rendezvous(JoinError::Interrupted) => ExitCode::Interrupted,
            RunError::Rendezvous(JoinError::BadUrl { .. } | JoinError::Mismatch(_)) => {
                ExitCode::Usage
            }
            RunError::Rendezvous(JoinError::Excluded(_) | JoinError::Unreachable { .. }) => {
                ExitCode::Excluded
            }
        }
    }
}

/// What a finished run produced.
pub struct RunOutcome {
    pub report: RunReport,
    pub report_dir: PathBuf,
    pub redactor: Arc<Redactor>,
}

impl RunOutcome {
    pub fn exit_code(&self) -> ExitCode {
        if self.report.interrupted {
            ExitCode::Interrupted
        } else if self.report.passed {
            ExitCode::Ok
        } else {
            ExitCode::Failed
        }
    }
}

/// What the caller wants to hear while a run goes on (progress displays).
pub struct Observers {
    pub on_start: Box<dyn FnOnce(usize) + Send>,
    pub on_done: ScenarioDone,
    pub on_load_tick: LoadProgress,
}

pub fn execute(args: RunArgs, console: &Console) -> ExitCode {
    let private_key_pem = match args.check().and_then(|()| args.private_key_pem()) {
        Ok(pem) => pem,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::Usage;
        }
    };
    // On one core (e.g. pinned with taskset) a current-thread runtime saves the
    // work-stealing scheduler's cross-thread wake-ups on every request.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = match runtime(one_core.then_some(1)) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::Failed;
        }
    };
    if let Some(start_at) = args.start_at
        && let Ok(wait) = start_at.duration_since(SystemTime::now())
    {
        eprintln!(
            "starting at {} (in {})",
            humantime::format_rfc3339_seconds(start_at),
            humantime::format_duration(Duration::from_secs(wait.as_secs()))
        );
    }
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
    let progress = Arc::new(ScenarioProgress::new(console.live && !args.quiet));
    let cancel = CancellationToken::new();
    let outcome = runtime.block_on(async {
        let on_interrupt = cancel.clone();
        tokio::spawn(async move {
            signals.recv().await;
            eprintln!("interrupted: stopping, writing reports (again to quit at once)");
            on_interrupt.cancel();
            signals.recv().await;
            std::process::exit(i32::from(ExitCode::Interrupted.code()));
        });
        let (on_start, on_done, on_tick) = (
            Arc::clone(&progress),
            Arc::clone(&progress),
            Arc::clone(&progress),
        );
        let observers = Observers {
            on_start: Box::new(move |count| on_start.start(count)),
            on_done: Arc::new(move |report| on_done.scenario_done(report)),
            on_load_tick: Arc::new(move |name, tick| on_tick.load_tick(name, tick)),
        };
        run(&args, private_key_pem, cancel.clone(), observers, console).await
    });
    progress.finish();
    match outcome {
        Ok(outcome) => {
            console::print(
                &outcome.report,
                &outcome.redactor,
                &outcome.report_dir,
                args.quiet,
                console.color,
            );
            outcome.exit_code()
        }
        Err(err) => {
            match &err {
                // A plan error renders its own `error:` header, compiler-style.
                RunError::Plan(plan) => eprintln!("{plan}"),
                other => eprintln!("error: {other}"),
            }
            err.exit_code()
        }
    }
}

/// What the plans' `[plan]` tables say about TLS (the first plan that says it).
#[derive(Default)]
struct PlanTls {
    cacert: Option<PathBuf>,
    http2: bool,
}

/// The scenarios a run drives, and what ties its reports together.
struct Prepared {
    tls: PlanTls,
    scenarios: Vec<Scenario>,
    plan_names: Vec<String>,
    plan_digest: String,
    report_dir: PathBuf,
}

/// Loads the plans, selects the scenarios and applies the overrides.
fn prepare(args: &RunArgs) -> Result<Prepared, RunError> {
    let plans = load_all(&args.plans)?;
    let plan_names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let tls = PlanTls {
        cacert: plans.iter().find_map(|p| p.cacert.clone()),
        http2: plans.iter().any(|p| p.http2),
    };
    let report_dir = args.report_dir.clone().unwrap_or_else(|| {
        let stem = args.plans[0]
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        match args.worker().ok().flatten() {
            Some(worker) => {
                PathBuf::from("reports").join(format!("{stem}-worker-{}", worker.index()))
            }
            None => PathBuf::from("reports").join(stem),
        }
    });
    let mut scenarios = select(plans, &args.scenarios, &args.tags).map_err(RunError::Usage)?;
    apply_load_overrides(&mut scenarios, args.rate, args.users, args.duration)
        .map_err(RunError::Usage)?;
    if let Some(timeout) = args.scenario_timeout {
        for scenario in &mut scenarios {
            scenario.timeout = timeout;
        }
    }
    let plan_digest = plan_digest(&scenarios);
    Ok(Prepared {
        tls,
        scenarios,
        plan_names,
        plan_digest,
        report_dir,
    })
}

/// Where the run goes and with which keys: the user's target, or the embedded server.
struct Connected {
    embedded: Option<crate::server::RunningServer>,
    url: String,
    label: String,
    credentials: Credentials,
    /// Private keys' PEM text, to redact wherever it appears.
    private_pems: Vec<Zeroizing<String>>,
}

async fn connect(
    args: &RunArgs,
    scenarios: &[Scenario],
    private_key_pem: Option<Zeroizing<String>>,
    http2: bool,
) -> Result<Connected, RunError> {
    let private_key = match &private_key_pem {
        Some(pem) => Some(Arc::new(
            RsaPrivateKey::from_pem_with(pem, args.rsa_backend)
                .map_err(|err| RunError::Usage(format!("--private-key: {err}")))?,
        )),
        None => None,
    };
    let mut private_pems: Vec<Zeroizing<String>> = private_key_pem.into_iter().collect();
    let faults = FaultSet::new(args.faults.iter().copied());
    match &args.target {
        Some(url) => {
            if !faults.is_empty() || !args.styles.is_empty() {
                return Err(RunError::Usage(
                    "--fault and --style start the embedded server so; they cannot be combined with --target".into(),
                ));
            }
            if args.insecure {
                // Loud on purpose: the keys go to whoever answers.
                eprintln!(
                    "WARNING: --insecure: TLS certificates are not verified; the API keys go to whoever answers at {}",
                    target_label(url)
                );
            }
            let primary = args.api_key.clone().ok_or_else(|| {
                RunError::Usage("--target needs --api-key (or KEYCLAIM_API_KEY)".into())
            })?;
            let rsa = match (args.rsa_api_key.clone(), private_key) {
                (Some(key), Some(private)) => Some((key, private)),
                (None, None) => None,
                _ => {
                    return Err(RunError::Usage(
                        "--rsa-api-key and --private-key go together (the RSA scenarios need both)"
                            .into(),
                    ));
                }
            };
            Ok(Connected {
                embedded: None,
                url: url.clone(),
                label: target_label(url),
                credentials: Credentials::new(
                    primary,
                    args.hmac_secret.clone(),
                    args.second_api_key.clone(),
                    rsa,
                ),
                private_pems,
            })
        }
        None if http2 => Err(RunError::Usage(
            "--http2 needs --target: the embedded reference server speaks HTTP/1.1 only".into(),
        )),
        None => {
            let probes_limits = scenarios.iter().any(|scenario| {
                scenario
                    .steps
                    .iter()
                    .any(|step| matches!(step.action, Action::Burst(_)))
            });
            let EmbeddedTarget {
                server,
                credentials,
                private_key_pem,
            } = start_embedded(Embedded {
                faults,
                styles: StyleSet::new(args.styles.iter().copied()),
                rate_limited: probes_limits,
                backend: args.rsa_backend,
                key_pair: None,
            })
            .await
            .map_err(|err| RunError::Failed(err.to_string()))?;
            let url = server.url();
            private_pems.push(private_key_pem);
            Ok(Connected {
                label: format!("embedded reference server ({url})"),
                url,
                embedded: Some(server),
                credentials,
                private_pems,
            })
        }
    }
}

/// A redactor for every key and private key the run holds.
fn redactor(connected: &Connected) -> Arc<Redactor> {
    let mut redactor = Redactor::new(connected.credentials.secrets());
    for pem in &connected.private_pems {
        redactor.add_private_key_pem(pem);
    }
    Arc::new(redactor)
}

/// Runs the plans. `observers` hear the run's progress.
pub async fn run(
    args: &RunArgs,
    private_key_pem: Option<Zeroizing<String>>,
    cancel: CancellationToken,
    observers: Observers,
    console: &Console,
) -> Result<RunOutcome, RunError> {
    let Prepared {
        tls,
        scenarios,
        plan_names,
        plan_digest,
        report_dir,
    } = prepare(args)?;
    let worker = args.worker()?;
    crate::report::check_writable(&report_dir).map_err(|err| {
        RunError::Usage(format!(
            "--report-dir {}: {err:#}; nothing was run",
            report_dir.display()
        ))
    })?;
    let metrics_listener = match &args.metrics_listen {
        Some(addr) => {
            let bound = crate::live::Bound::bind(addr)
                .await
                .map_err(|err| RunError::Failed(format!("--metrics-listen {addr}: {err}")))?;
            if let Ok(local) = bound.local_addr() {
                eprintln!("metrics: serving http://{local}{}", crate::live::PATH);
            }
            Some(bound)
        }
        None => None,
    };
    let tls = args.tls(&tls)?;
    let connected = connect(args, &scenarios, private_key_pem, tls.http2()).await?;
    let redactor = redactor(&connected);
    let live_metrics = metrics_listener.map(|bound| {
        let metrics = Arc::new(LoadMetrics::new(Arc::clone(&redactor)));
        let endpoint = bound.serve(metrics.registry());
        // Ctrl-C after the run ends the linger.
        (metrics, endpoint, cancel.clone())
    });
    console.panic_redactor.set(Arc::clone(&redactor)).ok();
    let Connected {
        embedded,
        url,
        label,
        credentials,
        ..
    } = connected;

    let client = Client::new(&url, args.timeout, tls)
        .map_err(|err| RunError::Usage(format!("--target {label}: {err}")))?;
    // Exit 3 is for a target that cannot be connected to at all; one that connects
    // and then misbehaves is tested, and its scenarios fail with the evidence. An
    // interrupt during the probe skips it: the scenarios then stop at once.
    let reach = tokio::select! {
        reach = client.reachable() => Some(reach),
        () = cancel.cancelled() => None,
    };
    match reach {
        Some(Err(err)) => {
            let why = redactor.redact(&err.to_string()).into_owned();
            let report = unreachable_report(
                &scenarios,
                &label,
                &why,
                plan_names,
                plan_digest,
                args.strict,
                worker,
            );
            // Best effort: the exit code already says what happened.
            if let Err(err) = crate::report::write_all(&report, &report_dir, &redactor) {
                tracing::warn!("cannot write the reports: {err}");
            }
            if let Some(server) = embedded {
                server.shutdown().await.ok();
            }
            return Err(RunError::Unreachable { target: label, why });
        }
        Some(Ok(Reach::NoAnswer(why))) => tracing::warn!(
            "{label} accepted a connection but gave no HTTP answer to GET / ({}); running the scenarios anyway",
            redactor.redact(&why.to_string())
        ),
        Some(Ok(Reach::Answered)) | None => {}
    }
    let settings = Arc::new(RunSettings {
        client,
        credentials,
        strict: args.strict,
        concurrency: args.concurrency,
        burst: args.burst,
        retry: RetryPolicy::default(),
        redactor: Arc::clone(&redactor),
        target_label: label,
        plan_names,
        request_timeout: args.timeout,
        load_progress: observers.on_load_tick,
        worker,
        plan_digest,
        signature_scheme: args.signature_scheme,
        live_metrics: live_metrics
            .as_ref()
            .map(|(metrics, _, _)| Arc::clone(metrics)),
    });
    let rendezvous = match (&args.rendezvous, worker) {
        (Some(url), Some(worker)) => Some(Rendezvous::new(
            url,
            Hello {
                index: worker.index(),
                workers: worker.workers(),
                plan_digest: settings.plan_digest.clone(),
                session: Rendezvous::session(),
            },
        )?),
        _ => None,
    };
    let started = synchronise(
        rendezvous,
        args.start_at,
        worker,
        args.rendezvous_timeout,
        &cancel,
        |registered, workers| {
            eprintln!("waiting for the other workers ({registered} of {workers} registered)")
        },
    )
    .await?;
    // What each worker was given of the plan, judged after the run on its figures.
    let planned = worker.map(|worker| (worker, scenarios.clone()));
    (observers.on_start)(scenarios.len());
    let mut report = engine::run(scenarios, settings, cancel, observers.on_done).await;
    started.ran();
    if let Some(server) = embedded {
        server.shutdown().await.ok();
    }
    report.start = started.times.clone();
    if let Some((worker, scenarios)) = planned {
        worker.record_shares(&mut report, &scenarios);
    }
    crate::report::write_all(&report, &report_dir, &redactor)
        .map_err(|err| RunError::Failed(format!("cannot write the reports: {err}")))?;
    if started.has_coordinator() {
        // The very text of report.json, so the coordinator merges what was written here.
        let text = crate::report::json::render(&report, &redactor)
            .map_err(|err| RunError::Failed(format!("cannot render the report: {err}")))?;
        started
            .finish(text, args.rendezvous_timeout)
            .await
            .map_err(|err| match err {
                JoinError::Unreachable { .. } => RunError::Failed(format!(
                    "cannot hand the report to the coordinator: {err}; it is in {}",
                    report_dir.display()
                )),
                other => RunError::Rendezvous(other),
            })?;
    }
    if let Some((metrics, endpoint, interrupted)) = live_metrics {
        metrics.finish();
        tokio::select! {
            () = tokio::time::sleep(args.metrics_linger) => {}
            () = interrupted.cancelled() => {}
        }
        endpoint.stop().await;
    }
    Ok(RunOutcome {
        report,
        report_dir,
        redactor,
    })
}
