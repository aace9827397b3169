//! `junit.xml`: the run as JUnit XML, so CI systems show each scenario as a test.
//!
//! One `<testsuite>` for the whole run, named after the plans: scenarios do not record
//! which plan they came from, and CI UIs group by suite, so one suite per run reads best.
//! One `<testcase>` per scenario (classname = scenario id, or "keyclaim"); a failed
//! scenario gets a `<failure>` whose message is its first failing check's message and
//! whose text lists every failing check with its evidence.

use std::fmt::Write as _;
use std::time::Duration;

use quick_junit::{
    NonSuccessKind, Property, Report, SerializeError, TestCase, TestCaseStatus, TestSuite,
};

use super::xml_chars::replace_forbidden;
use crate::redact::Redactor;
use crate::results::{CheckResult, Outcome, RunReport, ScenarioReport, Status};

/// Classname for scenarios without an id.
const DEFAULT_CLASSNAME: &str = "keyclaim";

/// The JUnit XML text for `report`, redacted.
pub fn render(report: &RunReport, redactor: &Redactor) -> Result<String, SerializeError> {
    let report = report.redacted(redactor);
    let suite_name = if report.plans.is_empty() {
        DEFAULT_CLASSNAME.to_owned()
    } else {
        report.plans.join(", ")
    };
    let mut suite = TestSuite::new(suite_name);
    suite.set_time(seconds(report.elapsed_s));
    suite.add_properties([
        Property::new("target", &report.target),
        Property::new("started_at", &report.started_at),
        Property::new("strict", report.strict.to_string()),
        Property::new("interrupted", report.interrupted.to_string()),
    ]);
    if let Some(scope) = report.scope() {
        suite.add_property(Property::new("workers", scope));
    }
    if report.interrupted {
        suite.set_system_err("run interrupted: results are partial");
    }
    suite.add_test_cases(
        report
            .scenarios
            .iter()
            .map(|scenario| test_case(scenario, report.strict)),
    );

    let mut junit = Report::new("keyclaim");
    junit.set_time(seconds(report.elapsed_s));
    junit.add_test_suite(suite);
    let xml = junit.to_string()?;
    // The writer escapes markup but passes forbidden characters through raw.
    Ok(replace_forbidden(&redactor.redact(&xml)).into_owned())
}

fn test_case(scenario: &ScenarioReport, strict: bool) -> TestCase {
    let failing: Vec<&CheckResult> = scenario
        .checks
        .iter()
        .filter(|c| c.outcome.counts_as_failure(strict))
        .collect();
    let status = match scenario.status() {
        Status::Skipped => {
            let mut status = TestCaseStatus::skipped();
            let reason = scenario
                .checks
                .iter()
                .map(|c| c.message.as_str())
                .find(|m| !m.is_empty())
                .unwrap_or("every check was skipped");
            status.set_message(reason);
            status
        }
        Status::Failed => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            match failing.first() {
                Some(first) => {
                    // Attribute values lose their newlines in every XML parser; say so explicitly.
                    status.set_message(first.message.replace('\n', " "));
                    status.set_type(first.outcome.as_str());
                    status.set_description(failure_text(&failing));
                }
                // The engine may fail a scenario with no failing check (e.g. every request
                // errored); say so rather than emit an empty failure.
                None => {
                    status.set_message(format!(
                        "scenario failed: {} of {} requests errored",
                        scenario.errors, scenario.requests
                    ));
                }
            }
            status
        }
        Status::Passed => TestCaseStatus::success(),
    };

    let mut case = TestCase::new(&scenario.name, status);
    case.set_classname(scenario.id.as_deref().unwrap_or(DEFAULT_CLASSNAME));
    case.set_time(seconds(scenario.elapsed_s));
    case.set_assertions(scenario.checks.len());
    case.set_system_out(system_out(scenario));
    case
}

/// Every failing check: outcome, name, message, then its evidence indented.
fn failure_text(failing: &[&CheckResult]) -> String {
    let mut text = String::new();
    for check in failing {
        let _ = writeln!(
            text,
            "[{}] {}: {}",
            check.outcome.as_str(),
            check.name,
            check.message
        );
        if let Some(evidence) = &check.evidence {
            let _ = writeln!(
                text,
                "  request:  {}",
                indent_continuation(&evidence.request)
            );
            let _ = writeln!(
                text,
                "  response: {}",
                indent_continuation(&evidence.response)
            );
        }
        text.push('\n');
    }
    text
}

/// All checks and warnings, one line each, so a passing test's details are in CI too
/// (non-strict checks do not fail a scenario unless `--strict`).
fn system_out(scenario: &ScenarioReport) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "requests={} errors={} rate_limit_retries={} rps={:.1} p50={}us p99={}us max={}us",
        scenario.requests,
        scenario.errors,
        scenario.rate_limit_retries,
        scenario.rps,
        scenario.latency_us.p50,
        scenario.latency_us.p99,
        scenario.latency_us.max
    );
    for check in &scenario.checks {
        let _ = writeln!(
            text,
            "[{}] {}: {}",
            check.outcome.as_str(),
            check.name,
            check.message
        );
        if check.outcome == Outcome::NonStrict
            && let Some(evidence) = &check.evidence
        {
            let _ = writeln!(
                text,
                "  response: {}",
                indent_continuation(&evidence.response)
            );
        }
    }
    for warning in &scenario.warnings {
        let _ = writeln!(text, "warning: {warning}");
    }
    text
}

fn indent_continuation(text: &str) -> String {
    text.replace('\n', "\n            ")
}

/// `elapsed_s` as a Duration; a NaN or negative time (a clock oddity) becomes zero
/// rather than a panic.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Evidence, LatencySummary};

    fn scenario(
        name: &str,
        checks: Vec<CheckResult>,
        passed: bool,
        skipped: bool,
    ) -> ScenarioReport {
        ScenarioReport {
            name: name.into(),
            id: Some(format!("KC-{name}")),
            tags: vec![],
            description: None,
            passed,
            skipped,
            checks,
            requests: 3,
            errors: 0,
            rate_limit_retries: 0,
            rps: 1.5,
            elapsed_s: 2.0,
            latency_us: LatencySummary::default(),
            warnings: vec![],
            load: None,
        }
    }

    fn check(name: &str, outcome: Outcome) -> CheckResult {
        CheckResult {
            name: name.into(),
            outcome,
            message: format!("{name} said <{}>", outcome.as_str()),
            evidence: Some(Evidence {
                request: "POST /x".into(),
                response: "200 {\"a\":1}".into(),
            }),
        }
    }

    #[test]
    fn failure_carries_first_message_and_all_failing_checks() {
        let report = RunReport {
            passed: false,
            interrupted: false,
            strict: true,
            plans: vec!["conformance".into()],
            target: "http://127.0.0.1:1".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            elapsed_s: 4.0,
            plan_digest: String::new(),
            worker: None,
            merged: None,
            start: None,
            plan_share: Default::default(),
            insecure: false,
            scenarios: vec![
                scenario(
                    "a",
                    vec![
                        check("ok", Outcome::Pass),
                        check("ns", Outcome::NonStrict),
                        check("bad", Outcome::Fail),
                    ],
                    false,
                    false,
                ),
                scenario("b", vec![check("skip", Outcome::Skipped)], true, true),
            ],
        };
        let xml = render(&report, &Redactor::default()).unwrap();
        assert!(xml.contains(r#"<testsuite name="conformance""#), "{xml}");
        assert!(xml.contains(r#"classname="KC-a""#), "{xml}");
        assert!(
            xml.contains(r#"<failure message="ns said &lt;non-strict&gt;" type="non-strict">"#),
            "{xml}"
        );
        assert!(xml.contains("[fail] bad: bad said &lt;fail&gt;"), "{xml}");
        assert!(xml.contains("<skipped"), "{xml}");
        assert!(
            xml.contains(r#"time="2.000""#) || xml.contains(r#"time="2""#),
            "{xml}"
        );
    }
}
