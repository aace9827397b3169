//! Runs scenarios against a target: non-exclusive scenarios concurrently (bounded),
//! then exclusive ones alone, each under its own deadline, and gathers their reports.
//! A conformance scenario runs its steps (`conformance`); a load scenario repeats them
//! as a flow (`load`).

mod conformance;
mod credentials;
mod load;
pub mod selftest;
mod settings;
mod target;

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use conformance::not_run;
pub use credentials::Credentials;
pub use settings::{LoadProgress, RetryPolicy, RunSettings, ScenarioDone, SignatureScheme};
pub use target::{Embedded, EmbeddedTarget, start_embedded, target_label, unreachable_report};

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
                outcome: Outcome::Delegated,
                message: format!(
                    "{}: conformance scenarios run on worker 0 only (this is worker {} of {})",
                    scenario.name,
                    worker.index(),
                    worker.workers()
                ),
                evidence: None,
            },
            settings.strict,
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
    run_each(
        scenarios,
        settings,
        cancel,
        on_done,
        |scenario, settings, cancel| async move { run_one(&scenario, &settings, &cancel).await },
    )
    .await
}

/// [`run`], with what runs one scenario as a parameter, so that a test can hand it one
/// that panics. `run_one` only builds a scenario's future; its work happens when that
/// is polled, inside the scenario's own task.
async fn run_each<R, F>(
    scenarios: Vec<Scenario>,
    settings: Arc<RunSettings>,
    cancel: CancellationToken,
    on_done: ScenarioDone,
    run_one: R,
) -> RunReport
where
    R: Fn(Scenario, Arc<RunSettings>, CancellationToken) -> F,
    F: Future<Output = ScenarioReport> + Send + 'static,
{
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
        let scenario = run_one(scenario, settings, cancel);
        let task = tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            let report = scenario.await;
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
        let shown = scenario.clone();
        let task = tokio::spawn(run_one(scenario, Arc::clone(&settings), cancel.clone()));
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
        start: None,
        plan_share: Default::default(),
        insecure: settings.client.tls().insecure(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::client::Client;
    use crate::redact::Redactor;

    fn settings() -> Arc<RunSettings> {
        Arc::new(RunSettings {
            // Never used: the runner below sends nothing.
            client: Client::new(
                "http://127.0.0.1:9",
                Duration::from_secs(1),
                crate::tls::Tls::system(),
            )
            .unwrap(),
            credentials: Credentials::new("kc_engine_test_key_0123".into(), None, None, None),
            strict: false,
            concurrency: 4,
            burst: None,
            retry: RetryPolicy::default(),
            redactor: Arc::new(Redactor::default()),
            target_label: "test".into(),
            plan_names: vec!["panics".into()],
            request_timeout: Duration::from_secs(1),
            load_progress: Arc::new(|_, _| {}),
            worker: None,
            plan_digest: String::new(),
            signature_scheme: None,
            live_metrics: None,
        })
    }

    /// Two scenarios whose task panics, one running beside others and one exclusive,
    /// between scenarios that do not.
    const PLAN: &str = r#"
[[scenario]]
name = "before"
[[scenario.step]]
create = {}

[[scenario]]
name = "boom"
[[scenario.step]]
create = {}

[[scenario]]
name = "after"
[[scenario.step]]
create = {}

[[scenario]]
name = "boom-alone"
exclusive = true
[[scenario.step]]
create = {}

[[scenario]]
name = "last"
exclusive = true
[[scenario.step]]
create = {}
"#;

    /// A panic in a scenario's task (a harness bug) costs that scenario only: it is
    /// reported in its place as a failed check named `harness` that quotes the panic,
    /// the other scenarios, exclusive ones included, still run and keep their
    /// reports, and every scenario is announced to `on_done` once.
    #[tokio::test]
    async fn a_scenario_whose_task_panics_is_a_failed_harness_check_and_the_run_goes_on() {
        let plan = crate::plan::load_str(Path::new("panics.toml"), PLAN).unwrap();
        let done = Arc::new(Mutex::new(Vec::new()));
        let on_done: ScenarioDone = {
            let done = Arc::clone(&done);
            Arc::new(move |report: &ScenarioReport| {
                done.lock().unwrap().push(report.name.clone());
            })
        };
        let report = run_each(
            plan.scenarios,
            settings(),
            CancellationToken::new(),
            on_done,
            |scenario, _, _| async move {
                assert!(
                    !scenario.name.starts_with("boom"),
                    "injected panic in {}",
                    scenario.name
                );
                not_run(
                    &scenario,
                    CheckResult {
                        name: "ran".into(),
                        outcome: Outcome::Pass,
                        message: format!("{} ran", scenario.name),
                        evidence: None,
                    },
                    false,
                )
            },
        )
        .await;

        let names: Vec<&str> = report.scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["before", "boom", "after", "boom-alone", "last"]);
        for scenario in &report.scenarios {
            if scenario.name.starts_with("boom") {
                assert!(!scenario.passed, "{scenario:?}");
                assert_eq!(scenario.checks.len(), 1, "{scenario:?}");
                let check = &scenario.checks[0];
                assert_eq!(
                    (check.name.as_str(), check.outcome),
                    ("harness", Outcome::Fail)
                );
                assert!(
                    check
                        .message
                        .contains("the harness failed while running this scenario")
                        && check
                            .message
                            .contains(&format!("injected panic in {}", scenario.name)),
                    "{}",
                    check.message
                );
            } else {
                assert!(scenario.passed, "{scenario:?}");
                assert_eq!(scenario.checks[0].name, "ran", "{scenario:?}");
            }
        }
        assert!(!report.passed);
        assert!(!report.interrupted);
        let mut announced = done.lock().unwrap().clone();
        announced.sort();
        assert_eq!(announced, ["after", "before", "boom", "boom-alone", "last"]);
    }
}
