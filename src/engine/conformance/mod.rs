//! A conformance scenario: its steps in order (`steps`), each turned into requests and
//! its expectations into checks with evidence (`verdict`, `evidence`). The first failed
//! step ends the scenario (later steps depend on it); a target that misbehaves is a
//! failed check, never an error. Requests ride out rate limits (`retry`); a burst step
//! looks for one (`burst`).

mod burst;
mod evidence;
mod retry;
mod steps;
mod verdict;

use std::time::Instant;

use tokio_util::sync::CancellationToken;

pub use verdict::{crashed, not_run};

use super::credentials::missing;
use super::settings::RunSettings;
use crate::plan::model::Scenario;
use crate::results::{CheckResult, Outcome, ScenarioReport};
use steps::Run;
use verdict::{StepVerdict, step_name};

pub async fn run(
    scenario: &Scenario,
    settings: &RunSettings,
    cancel: &CancellationToken,
) -> ScenarioReport {
    let started = Instant::now();
    let mut run = Run::new(scenario, settings);
    let lacking: Vec<&str> = scenario
        .needs
        .iter()
        .filter(|need| !settings.credentials.has(**need))
        .map(|need| missing(*need))
        .collect();
    if !lacking.is_empty() {
        run.checks.push(CheckResult {
            name: "needs".into(),
            outcome: Outcome::Skipped,
            message: format!(
                "{}: skipped: needs {}",
                run.judge.prefix(),
                lacking.join(" and ")
            ),
            evidence: None,
        });
        return run.finish(started.elapsed());
    }
    // `sleep` saturates a timeout too large for an `Instant` (`now + timeout` panics).
    let deadline = tokio::time::sleep(scenario.timeout);
    tokio::pin!(deadline);
    for (index, step) in scenario.steps.iter().enumerate() {
        let number = index + 1;
        let verdict = tokio::select! {
            verdict = run.step(number, step) => verdict,
            () = &mut deadline => StepVerdict {
                checks: vec![CheckResult {
                    name: step_name(number, step),
                    outcome: Outcome::Fail,
                    message: format!(
                        "{}: timed out after {} at step {number} (line {})",
                        run.judge.prefix(),
                        humantime::format_duration(scenario.timeout),
                        step.line
                    ),
                    evidence: None,
                }],
                stop: true,
            },
            () = cancel.cancelled() => StepVerdict {
                checks: vec![CheckResult {
                    name: step_name(number, step),
                    outcome: Outcome::Skipped,
                    message: format!("{}: interrupted at step {number}", run.judge.prefix()),
                    evidence: None,
                }],
                stop: true,
            },
        };
        run.checks.extend(verdict.checks);
        if verdict.stop {
            break;
        }
    }
    run.finish(started.elapsed())
}
