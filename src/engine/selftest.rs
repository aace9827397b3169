//! The suite proves its power: it runs against the embedded server with each fault
//! (every one must be caught) and in each style (every one must pass), and against the
//! plain reference server under `--strict` with the reference's signature scheme (it
//! must pass that too). What catches each fault is recorded, so a change that weakens
//! a check shows as a fault no longer caught, or caught elsewhere.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::settings::{RetryPolicy, RunSettings, SignatureScheme};
use super::target::{Embedded, start_embedded};
use crate::client::Client;
use crate::crypto::{GeneratedKeyPair, RsaBackend, generate_key_pair};
use crate::plan::model::Scenario;
use crate::redact::Redactor;
use crate::results::{Outcome, RunReport, Status};
use crate::server::faults::{Fault, FaultSet};
use crate::server::style::{Style, StyleSet};

/// Per-request timeout of the self-test's runs: the embedded server answers at once.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Scenarios a style run (and the reference run) keeps in flight, as `run` does.
const STYLE_CONCURRENCY: usize = 4;

/// One run of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Case {
    /// The reference server under `--strict`: every SHOULD is its choice.
    Reference,
    Fault(Fault),
    Style(Style),
    /// Every style at once.
    AllStyles,
}

impl Case {
    /// What the case is, as the matrix prints it: `fault accept-replay`.
    pub fn label(&self) -> String {
        match self {
            Case::Reference => "reference --strict".to_owned(),
            Case::Fault(fault) => format!("fault {fault}"),
            Case::Style(style) => format!("style {style}"),
            Case::AllStyles => "style (all at once)".to_owned(),
        }
    }
}

/// What one case found.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: Case,
    /// The suite ran against the server; if not, nothing was shown either way.
    pub ran: bool,
    /// The suite's verdict on the server: passed or not.
    pub suite_passed: bool,
    /// The checks that failed: `KC-4.2 replay step 3`, in plan order.
    pub failed_checks: Vec<String>,
    /// Non-strict outcomes (allowed) in a passing run.
    pub non_strict: usize,
    /// What each failed check said, as `KC-4.2 replay step 3: <message>`, in the same
    /// order: why a style failed, or how a fault showed.
    pub failures: Vec<String>,
}

impl CaseResult {
    /// A case whose run could not happen, and why.
    fn not_run(case: Case, why: String) -> Self {
        Self {
            case,
            ran: false,
            suite_passed: false,
            failed_checks: Vec::new(),
            non_strict: 0,
            failures: vec![why],
        }
    }

    /// Whether the case came out as it must: a fault caught, a style (and the
    /// reference) passed. A case that did not run proves nothing, so it is not.
    pub fn as_expected(&self) -> bool {
        self.ran
            && match self.case {
                Case::Fault(_) => !self.suite_passed,
                Case::Reference | Case::Style(_) | Case::AllStyles => self.suite_passed,
            }
    }
}

/// The whole matrix for `cases`, at most `jobs` runs at once.
pub async fn run(
    scenarios: Vec<Scenario>,
    cases: Vec<Case>,
    jobs: usize,
    backend: RsaBackend,
) -> Result<Vec<CaseResult>, crate::crypto::CryptoError> {
    // One RSA key for every server: generating one per run costs more than the runs.
    let pair = Arc::new(
        tokio::task::spawn_blocking(|| generate_key_pair(2048))
            .await
            .expect("key generation does not panic")?,
    );
    let limit = Arc::new(Semaphore::new(jobs.max(1)));
    let scenarios = Arc::new(scenarios);
    let runs = cases.into_iter().map(|case| {
        let (limit, scenarios, pair) = (
            Arc::clone(&limit),
            Arc::clone(&scenarios),
            Arc::clone(&pair),
        );
        async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            run_case(case, &scenarios, pair, backend).await
        }
    });
    Ok(futures::future::join_all(runs).await)
}

/// Every case: the reference, each fault, each style, and all styles at once.
pub fn every_case() -> Vec<Case> {
    std::iter::once(Case::Reference)
        .chain(Fault::ALL.into_iter().map(Case::Fault))
        .chain(Style::ALL.into_iter().map(Case::Style))
        .chain(std::iter::once(Case::AllStyles))
        .collect()
}

async fn run_case(
    case: Case,
    scenarios: &[Scenario],
    pair: Arc<GeneratedKeyPair>,
    backend: RsaBackend,
) -> CaseResult {
    let (faults, styles) = match &case {
        Case::Reference => (FaultSet::default(), StyleSet::default()),
        Case::Fault(fault) => (FaultSet::new([*fault]), StyleSet::default()),
        Case::Style(style) => (FaultSet::default(), StyleSet::new([*style])),
        Case::AllStyles => (FaultSet::default(), StyleSet::new(Style::ALL)),
    };
    let strict = case == Case::Reference;
    let probes_limits = scenarios.iter().any(|scenario| {
        scenario
            .steps
            .iter()
            .any(|step| matches!(step.action, crate::plan::model::Action::Burst(_)))
    });
    let target = match start_embedded(Embedded {
        faults,
        styles,
        rate_limited: probes_limits,
        backend,
        key_pair: Some(pair),
    })
    .await
    {
        Ok(target) => target,
        Err(err) => {
            return CaseResult::not_run(case, format!("the embedded server did not start: {err}"));
        }
    };
    let url = target.server.url();
    let client = match Client::new(&url, REQUEST_TIMEOUT, crate::tls::Tls::system()) {
        Ok(client) => client,
        Err(err) => {
            return CaseResult::not_run(case, format!("no HTTP client: {err}"));
        }
    };
    let settings = Arc::new(RunSettings {
        client,
        redactor: Arc::new(Redactor::new(target.credentials.secrets())),
        credentials: target.credentials,
        strict,
        // A fault run takes its scenarios one at a time, so what a fault breaks shows in
        // the scenario that exists to catch it and not, by accident of timing, in
        // another running beside it.
        concurrency: if matches!(case, Case::Fault(_)) {
            1
        } else {
            STYLE_CONCURRENCY
        },
        burst: None,
        retry: RetryPolicy::default(),
        target_label: format!("embedded reference server ({url})"),
        plan_names: Vec::new(),
        request_timeout: REQUEST_TIMEOUT,
        load_progress: Arc::new(|_, _| {}),
        worker: None,
        plan_digest: String::new(),
        // The reference is held to its own scheme exactly; styles may sign nothing.
        signature_scheme: strict.then_some(SignatureScheme::KeyclaimV1),
        live_metrics: None,
    });
    let report = super::run(
        scenarios.to_vec(),
        settings,
        CancellationToken::new(),
        Arc::new(|_| {}),
    )
    .await;
    target.server.shutdown().await.ok();
    summarize(case, &report)
}

fn summarize(case: Case, report: &RunReport) -> CaseResult {
    let mut failed_checks = Vec::new();
    let mut failures = Vec::new();
    let mut non_strict = 0;
    for scenario in &report.scenarios {
        for check in &scenario.checks {
            if check.outcome.counts_as_failure(report.strict) {
                let label = check_label(scenario.id.as_deref(), &scenario.name, &check.name);
                failures.push(format!("{label}: {}", check.message));
                failed_checks.push(label);
            } else if check.outcome == Outcome::NonStrict {
                non_strict += 1;
            }
        }
    }
    CaseResult {
        case,
        ran: true,
        suite_passed: report.passed
            && report
                .scenarios
                .iter()
                .all(|s| s.status() != Status::Failed),
        failed_checks,
        non_strict,
        failures,
    }
}

/// `KC-4.2 replay step 3`: the clause, the scenario and the step, without the line
/// number (which moves whenever the plan is edited).
fn check_label(id: Option<&str>, scenario: &str, check: &str) -> String {
    let step = check
        .split(" (line")
        .next()
        .unwrap_or(check)
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    match id {
        Some(id) => format!("{id} {scenario} {step}"),
        None => format!("{scenario} {step}"),
    }
}

/// The matrix as people read it, one line per case, and the verdict last.
pub fn render(results: &[CaseResult]) -> String {
    use std::fmt::Write as _;
    let width = results
        .iter()
        .map(|r| r.case.label().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for result in results {
        let mark = if result.as_expected() { "ok  " } else { "FAIL" };
        let what = match result.case {
            _ if !result.ran => format!("NOT RUN: {}", result.failures.join("; ")),
            Case::Fault(_) if result.suite_passed => {
                "NOT CAUGHT: the suite passed this broken server".to_owned()
            }
            Case::Fault(_) => format!("caught by {}", result.failed_checks.join(", ")),
            _ if result.suite_passed => match result.non_strict {
                0 => "passed".to_owned(),
                n => format!("passed ({n} non-strict)"),
            },
            _ => format!("FAILED: {}", result.failed_checks.join(", ")),
        };
        let _ = writeln!(out, "{mark} {:width$}  {what}", result.case.label());
        // A correct server that failed: say why, so the matrix alone explains it.
        if result.ran && !matches!(result.case, Case::Fault(_)) && !result.as_expected() {
            for failure in &result.failures {
                let _ = writeln!(out, "       {failure}");
            }
        }
    }
    let faults = results.iter().filter(|r| matches!(r.case, Case::Fault(_)));
    let caught = faults.clone().filter(|r| r.as_expected()).count();
    let others = results.iter().filter(|r| !matches!(r.case, Case::Fault(_)));
    let passed = others.clone().filter(|r| r.as_expected()).count();
    let _ = writeln!(
        out,
        "\n{caught} of {} faults caught; {passed} of {} correct servers (the reference under --strict, and each style) passed",
        faults.count(),
        others.count()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_drop_the_line_number() {
        assert_eq!(
            check_label(Some("KC-4.2"), "replay", "step 3 validate (line 120)"),
            "KC-4.2 replay step 3"
        );
        assert_eq!(
            check_label(None, "x", "step 1 create (line 4): recommended"),
            "x step 1"
        );
    }
}
