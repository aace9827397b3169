//! From what a step saw to checks, and from checks to a scenario's report: the MUSTs of
//! a step's expectations, then its SHOULDs (`recommended`, non-strict unless
//! `--strict`), each with the evidence that shows it.

use std::time::Duration;

use super::evidence::evidence;
use super::retry::Counters;
use crate::checks::unmet;
use crate::client::Exchange;
use crate::plan::model::{Action, Expect, Scenario, Step};
use crate::redact::Redactor;
use crate::results::{CheckResult, Outcome, ScenarioReport};

/// What one step found: the checks it produced, and whether the scenario may go on.
pub struct StepVerdict {
    pub checks: Vec<CheckResult>,
    pub stop: bool,
}

/// Judges one scenario's steps under the run's profile.
pub struct Judge<'a> {
    pub scenario: &'a Scenario,
    pub strict: bool,
    pub redactor: &'a Redactor,
}

/// "step 2 validate (line 14)".
pub fn step_name(number: usize, step: &Step) -> String {
    let action = match &step.action {
        Action::Create(_) => "create",
        Action::Validate(_) => "validate",
        Action::Wait(_) => "wait",
        Action::Concurrent(_) => "concurrent",
        Action::Burst(_) => "burst",
        Action::Raw(_) => "raw",
    };
    format!("step {number} {action} (line {})", step.line)
}

/// The expectations of `expect` (MUST) and of its `recommended` (SHOULD) that `exchange`
/// leaves unmet. `ttl` is what a create step asked for.
pub fn answer_unmet(
    expect: &Expect,
    exchange: &Exchange,
    ttl: Option<u64>,
) -> (Vec<String>, Vec<String>) {
    match &exchange.result {
        Ok(answer) => (
            unmet(expect, answer, ttl),
            expect
                .recommended
                .as_deref()
                .map(|should| unmet(should, answer, ttl))
                .unwrap_or_default(),
        ),
        // `got ...` in the message already says what came instead.
        Err(_) => (vec!["an HTTP answer".to_owned()], Vec::new()),
    }
}

impl Judge<'_> {
    /// "KC-4.2 replay", or just the name.
    pub fn prefix(&self) -> String {
        match &self.scenario.id {
            Some(id) => format!("{id} {}", self.scenario.name),
            None => self.scenario.name.clone(),
        }
    }

    /// Checks from one step's expectations: the MUSTs, then the SHOULDs
    /// (`recommended`). `must_unmet` and `should_unmet` say what `shown` left unmet.
    pub fn step(
        &self,
        number: usize,
        step: &Step,
        shown: Option<&Exchange>,
        must_unmet: Vec<String>,
        should_unmet: Vec<String>,
    ) -> StepVerdict {
        let name = step_name(number, step);
        let prefix = self.prefix();
        let requirement = self
            .scenario
            .requirement
            .as_deref()
            .unwrap_or("as the plan expects");
        let got = shown
            .map(Exchange::brief)
            .unwrap_or_else(|| "no answer".into());
        let evidence = shown.map(|exchange| evidence(exchange, self.redactor));
        let mut checks = Vec::new();
        let failed = !must_unmet.is_empty();
        let has_must = !step.expect.requires_nothing() || failed;
        if has_must {
            checks.push(CheckResult {
                name: name.clone(),
                outcome: if failed { Outcome::Fail } else { Outcome::Pass },
                message: if failed {
                    format!(
                        "{prefix}: {requirement}; got {got} (expected {}) at step {number}, line {}",
                        must_unmet.join(", "),
                        step.line
                    )
                } else {
                    format!("{prefix}: {requirement}")
                },
                evidence: if failed { evidence.clone() } else { None },
            });
        }
        if step.expect.recommended.is_some() && !failed {
            let met = should_unmet.is_empty();
            let outcome = match (met, self.strict) {
                (true, _) => Outcome::Pass,
                (false, false) => Outcome::NonStrict,
                (false, true) => Outcome::Fail,
            };
            checks.push(CheckResult {
                name: format!("{name}: recommended"),
                outcome,
                message: if met {
                    format!("{prefix}: recommended behaviour")
                } else {
                    format!(
                        "{prefix}: SHOULD answer {}; got {got}{}",
                        should_unmet.join(", "),
                        if self.strict {
                            " (required under --strict)"
                        } else {
                            ""
                        }
                    )
                },
                evidence: if met { None } else { evidence },
            });
        }
        StepVerdict {
            checks,
            stop: failed,
        }
    }

    /// The scenario's report from its checks and what its requests cost.
    pub fn finish(
        &self,
        checks: Vec<CheckResult>,
        counters: &Counters,
        retries: u64,
        elapsed: Duration,
    ) -> ScenarioReport {
        let strict = self.strict;
        let all_skipped =
            !checks.is_empty() && checks.iter().all(|c| c.outcome == Outcome::Skipped);
        let failed = checks.iter().any(|check| match check.outcome {
            Outcome::Fail => true,
            Outcome::NonStrict | Outcome::Skipped => strict,
            Outcome::Pass => false,
        });
        let mut warnings = Vec::new();
        let keyed = counters.keyed_answers;
        if !failed && keyed > 0 && counters.suspicious == keyed {
            warnings.push(format!(
                "vacuous pass: every answer to a request with a configured key ({keyed}) was invalid_key or 5xx; check the API key and the target"
            ));
        }
        if retries > 0 {
            warnings.push(format!(
                "{retries} request(s) were retried after rate_limited answers"
            ));
        }
        let secs = elapsed.as_secs_f64();
        let scenario = self.scenario;
        ScenarioReport {
            name: scenario.name.clone(),
            id: scenario.id.clone(),
            tags: scenario.tags.clone(),
            description: scenario.description.clone(),
            passed: !failed,
            skipped: all_skipped,
            requests: counters.requests,
            errors: counters.errors,
            rate_limit_retries: retries,
            rps: if secs > 0.0 {
                counters.requests as f64 / secs
            } else {
                0.0
            },
            elapsed_s: secs,
            latency_us: counters.latency.summary(),
            warnings,
            load: None,
            checks,
        }
    }
}

/// The report of a scenario that ran none of its steps, with the one check that says
/// why: left to another worker (skipped, and not a failure even under `--strict`,
/// since the run's verdict on it is that worker's), a harness crash, an unreachable
/// target.
pub fn not_run(scenario: &Scenario, check: CheckResult) -> ScenarioReport {
    ScenarioReport {
        name: scenario.name.clone(),
        id: scenario.id.clone(),
        tags: scenario.tags.clone(),
        description: scenario.description.clone(),
        passed: check.outcome != Outcome::Fail,
        skipped: check.outcome == Outcome::Skipped,
        checks: vec![check],
        requests: 0,
        errors: 0,
        rate_limit_retries: 0,
        rps: 0.0,
        elapsed_s: 0.0,
        latency_us: Default::default(),
        warnings: Vec::new(),
        load: None,
    }
}

/// A scenario whose task panicked: failed, with what is known.
pub fn crashed(scenario: &Scenario, why: &str) -> ScenarioReport {
    not_run(
        scenario,
        CheckResult {
            name: "harness".into(),
            outcome: Outcome::Fail,
            message: format!(
                "{}: the harness failed while running this scenario ({why}); this is a bug in keyclaim-harness",
                scenario.name
            ),
            evidence: None,
        },
    )
}
