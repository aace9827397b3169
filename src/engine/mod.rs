//! Runs scenarios against a target: non-exclusive scenarios concurrently (bounded),
//! then exclusive ones alone, each under its own deadline, and gathers their reports.
//! A conformance scenario runs its steps (`conformance`); a load scenario repeats them
//! as a flow (`load`).

mod conformance;
mod credentials;
mod load;
mod settings;
mod target;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use conformance::not_run;
pub use credentials::Credentials;
pub use settings::{LoadProgress, RetryPolicy, RunSettings, ScenarioDone};
pub use target::{EmbeddedTarget, start_embedded, target_label, unreachable_report};

use crate::plan::model::Scenario;
use crate::results::{CheckResult, Outcome, RunReport, ScenarioReport};
use crate::scale_out::WorkerSlice;

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
        return conformance::not_run(
            scenario,
            CheckResult {
                name: "worker".into(),
                outcome: Outcome::Skipped,
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
        _ => conformance::run(scenario, settings, cancel).await,
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
                    let report = conformance::crashed(&scenario, &err.to_string());
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
            Err(err) => conformance::crashed(&shown, &err.to_string()),
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
