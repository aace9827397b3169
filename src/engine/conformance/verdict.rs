//! From what a step saw to checks, and from checks to a scenario's report: the MUSTs of
//! a step's expectations, then its SHOULDs (`recommended`, non-strict unless
//! `--strict`), each with the evidence that shows it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::evidence::evidence;
use super::retry::Counters;
use crate::checks::{malformed, unmet};
use crate::client::{Answer, Exchange};
use crate::engine::settings::RunSettings;
use crate::plan::model::{Action, Expect, Scenario, Step};
use crate::results::{CheckResult, Outcome, ScenarioReport, verdict};

/// What one step found: the checks it produced, and whether the scenario may go on.
pub struct StepVerdict {
    pub checks: Vec<CheckResult>,
    pub stop: bool,
}

/// A SHA-256 digest: what is kept of a target's string that only needs comparing.
type Digest32 = [u8; 32];

/// Judges one scenario's steps under the run's profile.
pub struct Judge<'a> {
    pub scenario: &'a Scenario,
    pub settings: &'a RunSettings,
    /// Signatures seen so far (lowercase), with the challenge and verdict each came
    /// with: one signature on two different verdicts proves nothing about either.
    /// Kept as SHA-256 digests, 65 bytes an entry however long the target's strings.
    signatures: Mutex<HashMap<Digest32, (Digest32, bool)>>,
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

impl<'a> Judge<'a> {
    pub fn new(scenario: &'a Scenario, settings: &'a RunSettings) -> Self {
        Self {
            scenario,
            settings,
            signatures: Mutex::default(),
        }
    }

    /// The expectations of `expect` (MUST) and of its `recommended` (SHOULD) that
    /// `exchange` leaves unmet, with the rules every answer keeps (`checks::malformed`)
    /// and every verdict signature keeps. `ttl` is what a create step asked for.
    pub fn answer_unmet(
        &self,
        expect: &Expect,
        exchange: &Exchange,
        ttl: Option<u64>,
    ) -> (Vec<String>, Vec<String>) {
        match &exchange.result {
            Ok(answer) => {
                let mut must = unmet(expect, answer, ttl);
                must.extend(malformed(answer));
                must.extend(self.signature_problems(exchange, answer));
                let should = expect
                    .recommended
                    .as_deref()
                    .map(|should| unmet(should, answer, ttl))
                    .unwrap_or_default();
                (must, should)
            }
            // `got ...` in the message already says what came instead.
            Err(_) => (vec!["an HTTP answer".to_owned()], Vec::new()),
        }
    }

    /// A signature proves a verdict came from a holder of the key only if a client
    /// could not have made it: not the response it sent (the HMAC of the challenge is
    /// exactly what a naive `sign(challenge)` gives), and not one value for different
    /// verdicts. With `--signature-scheme`, it must be that scheme's, exactly.
    fn signature_problems(&self, exchange: &Exchange, answer: &Answer) -> Vec<String> {
        let mut problems = Vec::new();
        let Ok(sent) = serde_json::from_str::<Value>(&exchange.request.body) else {
            return problems;
        };
        let text = |field: &str| sent.get(field).and_then(Value::as_str);
        let signature = answer.field("signature").and_then(Value::as_str);
        if let (Some(signature), Some(response)) = (signature, text("response"))
            && !signature.is_empty()
            && signature.eq_ignore_ascii_case(response)
        {
            problems.push("a `signature` other than the response the client sent".to_owned());
        }
        let challenge = text("challenge").unwrap_or_default();
        let valid = answer.valid() == Some(true);
        if let Some(signature) = signature.filter(|s| !s.is_empty()) {
            let digest = |text: &str| -> Digest32 { Sha256::digest(text.as_bytes()).into() };
            let signed = digest(&signature.to_ascii_lowercase());
            let on = digest(challenge);
            let mut seen = self.signatures.lock().expect("not poisoned");
            match seen.get(&signed) {
                Some((earlier, _)) if *earlier != on => problems.push(
                    "a `signature` that differs between verdicts on different challenges (this one was also given for another)".to_owned(),
                ),
                Some((_, earlier_valid)) if *earlier_valid != valid => problems.push(
                    "a `signature` that tells a valid verdict from a refusal (the same one came with the other verdict on this challenge)".to_owned(),
                ),
                Some(_) => {}
                None => {
                    seen.insert(signed, (on, valid));
                }
            }
        }
        if !valid {
            return problems;
        }
        if let Some(scheme) = self.settings.signature_scheme {
            let key = exchange.request.bearer.as_deref().or_else(|| text("key"));
            if let Some(secret) = key.and_then(|key| self.settings.credentials.secret_of(key)) {
                let expected = scheme.sign(secret, challenge);
                if !signature.is_some_and(|s| s.eq_ignore_ascii_case(&expected)) {
                    problems.push(format!(
                        "the `signature` of --signature-scheme {} on a valid verdict",
                        scheme.name()
                    ));
                }
            }
        }
        problems
    }

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
        let evidence = shown.map(|exchange| evidence(exchange, &self.settings.redactor));
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
            let strict = self.settings.strict;
            let outcome = match (met, strict) {
                (true, _) => Outcome::Pass,
                (false, false) => Outcome::NonStrict,
                (false, true) => Outcome::Fail,
            };
            checks.push(CheckResult {
                name: format!("{name}: recommended"),
                outcome,
                message: match (met, &self.scenario.recommendation) {
                    (true, _) => format!("{prefix}: recommended behaviour"),
                    (false, recommendation) => format!(
                        "{prefix}: {}; got {got} (expected {}){}",
                        recommendation
                            .as_deref()
                            .unwrap_or("SHOULD answer as SPEC.md recommends"),
                        should_unmet.join(", "),
                        if strict {
                            " (required under --strict)"
                        } else {
                            ""
                        }
                    ),
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
        let (passed, skipped) = verdict(&checks, self.settings.strict);
        let mut warnings = Vec::new();
        let keyed = counters.keyed_answers;
        if passed && keyed > 0 && counters.suspicious == keyed {
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
            passed,
            skipped,
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
/// why: left to another worker (delegated), a harness crash or an unreachable target
/// (failed).
pub fn not_run(scenario: &Scenario, check: CheckResult, strict: bool) -> ScenarioReport {
    let checks = vec![check];
    let (passed, skipped) = verdict(&checks, strict);
    ScenarioReport {
        name: scenario.name.clone(),
        id: scenario.id.clone(),
        tags: scenario.tags.clone(),
        description: scenario.description.clone(),
        passed,
        skipped,
        checks,
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
    // A failed check fails under every profile.
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
        false,
    )
}
