//! Runs scenarios against a target: non-exclusive scenarios concurrently (bounded),
//! then exclusive ones alone, each under its own deadline, and gathers their reports.

mod embedded;
pub mod load;
mod scenario;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use embedded::{EmbeddedTarget, start_embedded};
pub use scenario::not_run;

use crate::client::Client;
use crate::crypto::RsaPrivateKey;
use crate::plan::model::{KeyChoice, Need, Scenario};
use crate::redact::Redactor;
use crate::report::model::{RunReport, ScenarioReport};
use crate::scale_out::WorkerSlice;

/// The keys a run uses. Never printed: `Debug` is not derived.
pub struct Credentials {
    pub primary: String,
    /// HMAC secret of the primary key, when it is not the key itself.
    pub hmac_secret: Option<String>,
    pub secondary: Option<String>,
    pub rsa: Option<String>,
    pub private_key: Option<Arc<RsaPrivateKey>>,
    /// A well-formed key no server issued, fresh per run.
    pub unknown: String,
}

impl Credentials {
    /// The key a request names, `None` for `KeyChoice::Absent` or a key the run lacks.
    pub fn key(&self, choice: &KeyChoice) -> Option<&str> {
        match choice {
            KeyChoice::Primary => Some(&self.primary),
            KeyChoice::Secondary => self.secondary.as_deref(),
            KeyChoice::Rsa => self.rsa.as_deref(),
            KeyChoice::Unknown => Some(&self.unknown),
            KeyChoice::Absent => None,
        }
    }

    /// The HMAC secret the client holds for `choice` (a keyless request answers as the
    /// primary key would).
    pub fn secret(&self, choice: &KeyChoice) -> &str {
        match choice {
            KeyChoice::Primary | KeyChoice::Absent => {
                self.hmac_secret.as_deref().unwrap_or(&self.primary)
            }
            other => self.key(other).unwrap_or_default(),
        }
    }

    pub fn has(&self, need: Need) -> bool {
        match need {
            Need::Rsa => self.rsa.is_some() && self.private_key.is_some(),
            Need::SecondKey => self.secondary.is_some(),
        }
    }
}

/// Hears a load scenario's live figures (its name, the tick).
pub type LoadProgress = Arc<dyn Fn(&str, &load::LoadTick) + Send + Sync>;
/// Hears each scenario's report as it finishes.
pub type ScenarioDone = Arc<dyn Fn(&ScenarioReport) + Send + Sync>;

/// How a scenario that is not about rate limiting rides out `rate_limited` answers.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// Longest single wait, whatever `Retry-After` says.
    pub max_wait: Duration,
    /// First backoff when `Retry-After` is absent; doubles per retry.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 6,
            max_wait: Duration::from_secs(10),
            backoff: Duration::from_millis(250),
        }
    }
}

/// Everything a run needs besides the scenarios.
pub struct RunSettings {
    pub client: Client,
    pub credentials: Credentials,
    pub strict: bool,
    /// Scenarios in flight at once.
    pub concurrency: usize,
    /// Overrides every burst step's `max_requests`.
    pub burst: Option<u32>,
    pub retry: RetryPolicy,
    pub redactor: Arc<Redactor>,
    /// For the report: the target as shown to people.
    pub target_label: String,
    pub plan_names: Vec<String>,
    /// Per-request timeout (also bounds the wait for in-flight load at the end).
    pub request_timeout: Duration,
    /// Called about once a second during a load scenario, with its name.
    pub load_progress: LoadProgress,
    /// This process's share of a scaled-out run, if it is one worker of several.
    pub worker: Option<WorkerSlice>,
    /// See [`RunReport::plan_digest`].
    pub plan_digest: String,
}

/// Runs one scenario: a load flow, or conformance steps (which also reports a
/// scenario skipped for want of keys).
async fn run_one(
    scenario: &Scenario,
    settings: &RunSettings,
    cancel: &CancellationToken,
) -> ScenarioReport {
    if let Some(worker) = settings.worker.filter(|w| w.index() != 0)
        && scenario.load.is_none()
    {
        // N workers proving the same guarantees would only disturb each other (and the
        // rate limits); worker 0 runs them and `merge` takes its verdicts.
        return scenario::not_run(
            scenario,
            crate::report::model::CheckResult {
                name: "worker".into(),
                outcome: crate::report::model::Outcome::Skipped,
                message: format!(
                    "{}: conformance scenarios run on worker 0 only (this is worker {} of {})",
                    scenario.name,
                    worker.index(),
                    worker.workers()
                ),
                evidence: None,
            },
        );
    }
    match &scenario.load {
        Some(spec)
            if scenario
                .needs
                .iter()
                .all(|need| settings.credentials.has(*need)) =>
        {
            load::run(scenario, spec, settings, cancel).await
        }
        _ => scenario::run(scenario, settings, cancel).await,
    }
}

/// Runs `scenarios`, calling `on_done` as each finishes (for progress). Stops early,
/// keeping what it measured, when `cancel` fires.
pub async fn run(
    scenarios: Vec<Scenario>,
    settings: Arc<RunSettings>,
    cancel: CancellationToken,
    on_done: ScenarioDone,
) -> RunReport {
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let (exclusive, shared): (Vec<_>, Vec<_>) = scenarios
        .into_iter()
        .enumerate()
        .partition(|(_, scenario)| scenario.exclusive);

    let mut results: Vec<(usize, ScenarioReport)> = Vec::new();
    let limit = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    // Each scenario runs in its own task, so a panic in one (a harness bug) costs that
    // scenario, reported as failed, and not the run or its reports.
    let mut by_task = std::collections::HashMap::new();
    for (index, scenario) in shared {
        let (settings, cancel, limit, on_done) = (
            Arc::clone(&settings),
            cancel.clone(),
            Arc::clone(&limit),
            Arc::clone(&on_done),
        );
        let shown = scenario.clone();
        let task = tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            let report = run_one(&scenario, &settings, &cancel).await;
            on_done(&report);
            (index, report)
        });
        by_task.insert(task.id(), (index, shown));
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(err) => {
                if let Some((index, scenario)) = by_task.remove(&err.id()) {
                    let report = scenario::crashed(&scenario, &err.to_string());
                    on_done(&report);
                    results.push((index, report));
                }
            }
        }
    }
    // Exclusive scenarios (rate limiting) would disturb others: one at a time, last.
    for (index, scenario) in exclusive {
        let (task_settings, task_cancel) = (Arc::clone(&settings), cancel.clone());
        let shown = scenario.clone();
        let task =
            tokio::spawn(async move { run_one(&scenario, &task_settings, &task_cancel).await });
        let report = match task.await {
            Ok(report) => report,
            Err(err) => scenario::crashed(&shown, &err.to_string()),
        };
        on_done(&report);
        results.push((index, report));
    }
    results.sort_by_key(|(index, _)| *index);
    let scenarios: Vec<ScenarioReport> = results.into_iter().map(|(_, report)| report).collect();
    RunReport {
        passed: scenarios.iter().all(|s| s.passed),
        interrupted: cancel.is_cancelled(),
        strict: settings.strict,
        plans: settings.plan_names.clone(),
        target: settings.target_label.clone(),
        started_at,
        elapsed_s: started.elapsed().as_secs_f64(),
        scenarios,
        plan_digest: settings.plan_digest.clone(),
        worker: settings.worker.map(WorkerSlice::tag),
        merged: None,
    }
}
