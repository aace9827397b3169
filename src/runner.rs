//! `run`: resolves the target and keys, selects scenarios, runs them, writes the
//! reports, and says which exit code the run earned.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::crypto::RsaPrivateKey;
use crate::engine::{self, Credentials, RetryPolicy, RunSettings};
use crate::plan::model::Scenario;
use crate::plan::{PlanError, load_all};
use crate::redact::Redactor;
use crate::report::model::RunReport;
use crate::scale_out::{WorkerSlice, plan_digest};
use crate::server::faults::FaultSet;
use crate::server::keys::generate_key_id;

/// Exit codes of `run` (also in `--help` and the README).
pub const EXIT_PASSED: i32 = 0;
pub const EXIT_CHECK_FAILED: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;
/// Stopped by Ctrl-C or SIGTERM; the reports hold what ran (128 + SIGINT, as shells do).
pub const EXIT_INTERRUPTED: i32 = 130;

/// `run`'s settings, resolved from the command line and environment.
pub struct RunOptions {
    pub plans: Vec<PathBuf>,
    pub target: Option<String>,
    pub faults: FaultSet,
    pub api_key: Option<String>,
    pub second_api_key: Option<String>,
    pub rsa_api_key: Option<String>,
    /// PEM text (never a path: the caller reads the file).
    pub private_key_pem: Option<zeroize::Zeroizing<String>>,
    pub hmac_secret: Option<String>,
    pub strict: bool,
    pub scenario_names: Vec<String>,
    pub tags: Vec<String>,
    pub report_dir: Option<PathBuf>,
    pub request_timeout: Duration,
    pub scenario_timeout: Option<Duration>,
    pub concurrency: usize,
    pub burst: Option<u32>,
    /// `--rate`: run the selected scenarios in the open model at this many arrivals/s.
    pub rate: Option<f64>,
    /// `--users`: run them in the closed model with this many users.
    pub users: Option<u32>,
    /// `--duration`: bound them.
    pub duration: Option<Duration>,
    pub rsa_backend: crate::crypto::RsaBackend,
    /// `--worker-index/--workers`: drive only this share of the load.
    pub worker: Option<WorkerSlice>,
    /// `--start-at`: begin the scenarios at this instant (workers share it).
    pub start_at: Option<SystemTime>,
}

/// What the caller wants to hear while a run goes on (progress displays).
pub struct Observers {
    pub on_start: Box<dyn FnOnce(usize) + Send>,
    pub on_done: engine::ScenarioDone,
    pub on_load_tick: engine::LoadProgress,
}

/// Open-model arrivals in flight at most when `--rate` makes a scenario a load one.
const OVERRIDE_MAX_IN_FLIGHT: u32 = 10_000;
/// How long `--rate`/`--users` run a scenario that has no duration of its own.
const OVERRIDE_DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Applies `--rate`, `--users` and `--duration` to the selected scenarios: each becomes
/// (or stays) a load scenario with that executor and bound.
pub fn apply_load_overrides(
    scenarios: &mut [Scenario],
    rate: Option<f64>,
    users: Option<u32>,
    duration: Option<Duration>,
) -> Result<(), RunError> {
    use crate::plan::model::{Action, Executor, LoadSpec, RateSchedule};
    let executor = match (rate, users) {
        (Some(_), Some(_)) => {
            return Err(RunError::Usage(
                "--rate and --users exclude each other".into(),
            ));
        }
        (Some(rate), None) if !(rate > 0.0 && rate.is_finite()) => {
            return Err(RunError::Usage(format!(
                "--rate {rate}: must be above zero"
            )));
        }
        (Some(rate), None) => Some(Executor::Open {
            rate: RateSchedule::Constant(rate),
            max_in_flight: OVERRIDE_MAX_IN_FLIGHT,
        }),
        (None, Some(0)) => return Err(RunError::Usage("--users must be at least 1".into())),
        (None, Some(users)) => Some(Executor::Closed { users }),
        (None, None) => None,
    };
    if executor.is_none() && duration.is_none() {
        return Ok(());
    }
    for scenario in scenarios.iter_mut() {
        if scenario.load.is_none() && executor.is_none() {
            continue; // --duration alone only bounds load scenarios.
        }
        if let Some(step) = scenario
            .steps
            .iter()
            .find(|s| matches!(s.action, Action::Concurrent(_) | Action::Burst(_)))
        {
            return Err(RunError::Usage(format!(
                "scenario {} (line {}) has a concurrent or burst step (line {}), which a load run cannot repeat; select other scenarios with --scenario",
                scenario.name, scenario.line, step.line
            )));
        }
        let spec = scenario.load.get_or_insert_with(|| LoadSpec {
            executor: Executor::Closed { users: 1 },
            duration: Some(OVERRIDE_DEFAULT_DURATION),
            iterations: None,
            think_time: Duration::ZERO,
            thresholds: Vec::new(),
        });
        if let Some(executor) = &executor {
            if matches!(executor, Executor::Open { .. }) {
                spec.think_time = Duration::ZERO;
            }
            spec.executor = executor.clone();
        }
        if let Some(duration) = duration {
            spec.duration = Some(duration);
        }
        if spec.duration.is_none() && spec.iterations.is_none() {
            spec.duration = Some(OVERRIDE_DEFAULT_DURATION);
        }
        scenario.exclusive = true;
    }
    Ok(())
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
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Plan(_) | RunError::Usage(_) => EXIT_INVALID,
            RunError::Unreachable { .. } => EXIT_UNREACHABLE,
            RunError::Failed(_) => EXIT_CHECK_FAILED,
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
    pub fn exit_code(&self) -> i32 {
        if self.report.interrupted {
            EXIT_INTERRUPTED
        } else if self.report.passed {
            EXIT_PASSED
        } else {
            EXIT_CHECK_FAILED
        }
    }
}

/// Picks the scenarios `--scenario` and `--tags` select, in plan order.
pub fn select(
    plans: Vec<crate::plan::model::Plan>,
    names: &[String],
    tags: &[String],
) -> Result<Vec<Scenario>, RunError> {
    let all: Vec<Scenario> = plans.into_iter().flat_map(|plan| plan.scenarios).collect();
    for name in names {
        if !all.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            return Err(RunError::Usage(format!(
                "--scenario {name}: no such scenario (the plans have: {})",
                known.join(", ")
            )));
        }
    }
    let selected: Vec<Scenario> = all
        .into_iter()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .filter(|s| tags.is_empty() || s.tags.iter().any(|t| tags.contains(t)))
        .collect();
    if selected.is_empty() {
        return Err(RunError::Usage(format!(
            "no scenario has any of the tags {}",
            tags.join(", ")
        )));
    }
    Ok(selected)
}

/// The target as shown in reports: no userinfo, no query.
pub fn target_label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_username("").ok();
            parsed.set_password(None).ok();
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// Waits for `--start-at` (or an interrupt). A start already past is not an error — a
/// worker scheduled late still contributes — but `merge` will see its offset.
async fn wait_until(start_at: SystemTime, cancel: &CancellationToken) {
    match start_at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {}
            }
        }
        Err(late) if late.duration() > Duration::from_secs(1) => tracing::warn!(
            "--start-at was {} ago; starting now, out of step with the other workers",
            humantime::format_duration(Duration::from_millis(late.duration().as_millis() as u64))
        ),
        Err(_) => {}
    }
}

/// What a run that could not reach its target leaves behind: every selected scenario
/// failed with the reason, so a CI dashboard reading junit.xml shows the outage rather
/// than a missing file.
fn unreachable_report(
    scenarios: &[Scenario],
    target_label: &str,
    why: &str,
    plans: Vec<String>,
    plan_digest: String,
    options: &RunOptions,
) -> RunReport {
    let scenarios: Vec<_> = scenarios
        .iter()
        .map(|scenario| {
            engine::not_run(
                scenario,
                crate::report::model::CheckResult {
                    name: "target reachable".into(),
                    outcome: crate::report::model::Outcome::Fail,
                    message: format!(
                        "{}: not run: cannot reach the target {target_label}: {why}",
                        scenario.name
                    ),
                    evidence: None,
                },
            )
        })
        .collect();
    RunReport {
        passed: false,
        interrupted: false,
        strict: options.strict,
        plans,
        target: target_label.to_owned(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        elapsed_s: 0.0,
        scenarios,
        plan_digest,
        worker: options.worker.map(WorkerSlice::tag),
        merged: None,
    }
}

/// Runs the plans. `on_done` sees each scenario's report as it finishes.
pub async fn execute(
    options: RunOptions,
    cancel: CancellationToken,
    observers: Observers,
) -> Result<RunOutcome, RunError> {
    let plans = load_all(&options.plans)?;
    let plan_names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let report_dir = options.report_dir.clone().unwrap_or_else(|| {
        let stem = options.plans[0]
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        match options.worker {
            Some(worker) => {
                PathBuf::from("reports").join(format!("{stem}-worker-{}", worker.index()))
            }
            None => PathBuf::from("reports").join(stem),
        }
    });
    let mut scenarios = select(plans, &options.scenario_names, &options.tags)?;
    apply_load_overrides(
        &mut scenarios,
        options.rate,
        options.users,
        options.duration,
    )?;
    if let Some(timeout) = options.scenario_timeout {
        for scenario in &mut scenarios {
            scenario.timeout = timeout;
        }
    }
    let plan_digest = plan_digest(&scenarios);
    let private_key = match &options.private_key_pem {
        Some(pem) => Some(Arc::new(
            RsaPrivateKey::from_pem_with(pem, options.rsa_backend)
                .map_err(|err| RunError::Usage(format!("--private-key: {err}")))?,
        )),
        None => None,
    };

    let mut secrets: Vec<String> = Vec::new();
    let mut private_pems: Vec<zeroize::Zeroizing<String>> =
        options.private_key_pem.iter().cloned().collect();
    let (embedded, target_url, target_label, credentials) = match &options.target {
        Some(url) => {
            if !options.faults.is_empty() {
                return Err(RunError::Usage(
                    "--fault starts the embedded server with faults; it cannot be combined with --target".into(),
                ));
            }
            let primary = options.api_key.clone().ok_or_else(|| {
                RunError::Usage("--target needs --api-key (or KEYCLAIM_API_KEY)".into())
            })?;
            if options.rsa_api_key.is_some() != private_key.is_some() {
                return Err(RunError::Usage(
                    "--rsa-api-key and --private-key go together (the RSA scenarios need both)"
                        .into(),
                ));
            }
            let credentials = Credentials {
                primary,
                hmac_secret: options.hmac_secret.clone(),
                secondary: options.second_api_key.clone(),
                rsa: options.rsa_api_key.clone(),
                private_key,
                unknown: generate_key_id(),
            };
            (None, url.clone(), target_label(url), credentials)
        }
        None => {
            let probes_limits = scenarios.iter().any(|scenario| {
                scenario
                    .steps
                    .iter()
                    .any(|step| matches!(step.action, crate::plan::model::Action::Burst(_)))
            });
            let target =
                engine::start_embedded(options.faults.clone(), probes_limits, options.rsa_backend)
                    .await
                    .map_err(|err| RunError::Failed(err.to_string()))?;
            let url = target.server.url();
            private_pems.push(target.private_key_pem.clone());
            let label = format!("embedded reference server ({url})");
            (Some(target.server), url, label, target.credentials)
        }
    };
    secrets.extend(
        [
            Some(&credentials.primary),
            credentials.hmac_secret.as_ref(),
            credentials.secondary.as_ref(),
            credentials.rsa.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned(),
    );
    let mut redactor = Redactor::new(&secrets);
    for pem in &private_pems {
        redactor.add_private_key_pem(pem);
    }
    let redactor = Arc::new(redactor);
    crate::redact::redact_panics(Arc::clone(&redactor));

    let client = Client::new(&target_url, options.request_timeout)
        .map_err(|err| RunError::Usage(format!("--target {target_label}: {err}")))?;
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
                &target_label,
                &why,
                plan_names,
                plan_digest,
                &options,
            );
            // Best effort: the exit code already says what happened.
            if let Err(err) = crate::report::write_all(&report, &report_dir, &redactor) {
                tracing::warn!("cannot write the reports: {err}");
            }
            if let Some(server) = embedded {
                server.shutdown().await.ok();
            }
            return Err(RunError::Unreachable {
                target: target_label,
                why,
            });
        }
        Some(Ok(crate::client::Reach::NoAnswer(why))) => eprintln!(
            "warning: {target_label} accepted a connection but gave no HTTP answer to GET / ({}); running the scenarios anyway",
            redactor.redact(&why.to_string())
        ),
        Some(Ok(crate::client::Reach::Answered)) | None => {}
    }
    let settings = Arc::new(RunSettings {
        client,
        credentials,
        strict: options.strict,
        concurrency: options.concurrency,
        burst: options.burst,
        retry: RetryPolicy::default(),
        redactor: Arc::clone(&redactor),
        target_label,
        plan_names,
        request_timeout: options.request_timeout,
        load_progress: observers.on_load_tick,
        worker: options.worker,
        plan_digest,
    });
    if let Some(start_at) = options.start_at {
        wait_until(start_at, &cancel).await;
    }
    (observers.on_start)(scenarios.len());
    let report = engine::run(scenarios, settings, cancel, observers.on_done).await;
    if let Some(server) = embedded {
        server.shutdown().await.ok();
    }
    crate::report::write_all(&report, &report_dir, &redactor)
        .map_err(|err| RunError::Failed(format!("cannot write the reports: {err}")))?;
    Ok(RunOutcome {
        report,
        report_dir,
        redactor,
    })
}
