//! One scenario: its steps in order, each turned into requests and its expectations
//! into checks with evidence. The first failed step ends the scenario (later steps
//! depend on it); a target that misbehaves is a failed check, never an error.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::RunSettings;
use crate::checks::unmet;
use crate::client::{Answer, Exchange};
use crate::crypto::hmac_response;
use crate::metrics::Latency;
use crate::plan::model::{
    Action, AuthForm, BurstStep, ChallengeRef, ConcurrentStep, CreateStep, DecryptedField,
    Endpoint, Expect, KeyChoice, Need, RawStep, ResponseForm, Scenario, Step, ValidateStep,
    WaitStep,
};
use crate::protocol::{CREATE_PATH, VALIDATE_PATH};
use crate::report::model::{CheckResult, Evidence, Outcome, ScenarioReport};

/// Evidence bodies are cut here in reports; a failure needs the start, not 256 KiB.
const EVIDENCE_CHARS: usize = 4_000;

/// A challenge a create step saved.
struct Saved {
    /// As issued (the base64 ciphertext for RSA).
    challenge: String,
    expires_in: Option<u64>,
    requested_ttl: Option<u64>,
    created_at: Instant,
    /// The RSA plaintext, when the challenge was encrypted and opened.
    decrypted: Option<String>,
}

/// What one step found: the checks it produced, and whether the scenario may go on.
struct StepVerdict {
    checks: Vec<CheckResult>,
    stop: bool,
}

/// Request counters and latency of a scenario, or of one burst worker.
#[derive(Default)]
struct Counters {
    requests: u64,
    /// Requests that got no HTTP answer.
    errors: u64,
    /// Answers to requests that carried a configured key, and how many of those were
    /// `invalid_key` or 5xx: all of them means a pass proves nothing.
    keyed_answers: u64,
    suspicious: u64,
    latency: Latency,
}

impl Counters {
    /// `keyed`: the request carried one of the run's configured keys.
    fn record(&mut self, exchange: &Exchange, keyed: bool) {
        self.requests += 1;
        self.latency.record(exchange.latency);
        match &exchange.result {
            Ok(answer) if keyed => {
                self.keyed_answers += 1;
                if answer.status >= 500 || answer.error_code() == Some("invalid_key") {
                    self.suspicious += 1;
                }
            }
            Ok(_) => {}
            Err(_) => self.errors += 1,
        }
    }

    fn merge(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.keyed_answers += other.keyed_answers;
        self.suspicious += other.suspicious;
        self.latency.merge(&other.latency);
    }
}

struct Run<'a> {
    scenario: &'a Scenario,
    settings: &'a RunSettings,
    saved: HashMap<String, Saved>,
    counters: Counters,
    /// Requests retried after `rate_limited` answers.
    retries: u64,
    checks: Vec<CheckResult>,
}

pub async fn run(
    scenario: &Scenario,
    settings: &RunSettings,
    cancel: &CancellationToken,
) -> ScenarioReport {
    let started = Instant::now();
    let mut run = Run {
        scenario,
        settings,
        saved: HashMap::new(),
        counters: Counters::default(),
        retries: 0,
        checks: Vec::new(),
    };
    let missing: Vec<&str> = scenario
        .needs
        .iter()
        .filter(|need| !settings.credentials.has(**need))
        .map(|need| match need {
            Need::Rsa => "an RSA key (--rsa-api-key and --private-key)",
            Need::SecondKey => "a second API key (--second-api-key)",
        })
        .collect();
    if !missing.is_empty() {
        run.checks.push(CheckResult {
            name: "needs".into(),
            outcome: Outcome::Skipped,
            message: format!("{}: skipped: needs {}", run.prefix(), missing.join(" and ")),
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
                        run.prefix(),
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
                    message: format!("{}: interrupted at step {number}", run.prefix()),
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

fn step_name(number: usize, step: &Step) -> String {
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

fn random_hex64() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Run<'_> {
    /// "KC-4.2 replay", or just the name.
    fn prefix(&self) -> String {
        match &self.scenario.id {
            Some(id) => format!("{id} {}", self.scenario.name),
            None => self.scenario.name.clone(),
        }
    }

    fn finish(self, elapsed: Duration) -> ScenarioReport {
        let strict = self.settings.strict;
        let all_skipped =
            !self.checks.is_empty() && self.checks.iter().all(|c| c.outcome == Outcome::Skipped);
        let failed = self.checks.iter().any(|check| match check.outcome {
            Outcome::Fail => true,
            Outcome::NonStrict | Outcome::Skipped => strict,
            Outcome::Pass => false,
        });
        let counters = &self.counters;
        let mut warnings = Vec::new();
        let keyed = counters.keyed_answers;
        if !failed && keyed > 0 && counters.suspicious == keyed {
            warnings.push(format!(
                "vacuous pass: every answer to a request with a configured key ({keyed}) was invalid_key or 5xx; check the API key and the target"
            ));
        }
        if self.retries > 0 {
            warnings.push(format!(
                "{} request(s) were retried after rate_limited answers",
                self.retries
            ));
        }
        let secs = elapsed.as_secs_f64();
        ScenarioReport {
            name: self.scenario.name.clone(),
            id: self.scenario.id.clone(),
            tags: self.scenario.tags.clone(),
            description: self.scenario.description.clone(),
            passed: !failed,
            skipped: all_skipped,
            requests: counters.requests,
            errors: counters.errors,
            rate_limit_retries: self.retries,
            rps: if secs > 0.0 {
                counters.requests as f64 / secs
            } else {
                0.0
            },
            elapsed_s: secs,
            latency_us: counters.latency.summary(),
            warnings,
            load: None,
            checks: self.checks,
        }
    }

    fn key(&self, choice: &KeyChoice) -> Option<&str> {
        self.settings.credentials.key(choice)
    }

    fn secret(&self, choice: &KeyChoice) -> String {
        self.settings.credentials.secret(choice).to_owned()
    }

    /// Puts the key where `auth` says; returns the Bearer token to send, if any.
    fn place_key<'k>(
        &self,
        body: &mut Value,
        key: Option<&'k str>,
        auth: AuthForm,
    ) -> Option<&'k str> {
        let key = key?;
        if matches!(auth, AuthForm::Body | AuthForm::Both) {
            body["key"] = Value::String(key.to_owned());
        }
        matches!(auth, AuthForm::Bearer | AuthForm::Both).then_some(key)
    }

    /// Sends, and rides out `rate_limited` answers (see [`send_with_retry`]).
    async fn send(
        &mut self,
        request: (&str, &str, String),
        content_type: Option<&str>,
        bearer: Option<&str>,
        keyed: bool,
    ) -> Exchange {
        let (method, path, body) = request;
        let sent = send_with_retry(
            self.settings,
            (method, path, body),
            content_type,
            bearer,
            keyed,
        )
        .await;
        self.absorb(&sent);
        sent.exchange
    }

    fn absorb(&mut self, sent: &Sent) {
        self.counters.merge(&sent.counters);
        self.retries += sent.retries;
    }

    fn evidence(&self, exchange: &Exchange) -> Evidence {
        let redactor = &self.settings.redactor;
        let request = &exchange.request;
        let auth = if request.bearer.is_some() {
            " Authorization: Bearer [REDACTED]"
        } else {
            ""
        };
        let request_text = format!(
            "{} {}{auth} {}",
            request.method,
            request.path,
            clip(&request.body)
        );
        let response_text = match &exchange.result {
            Ok(answer) => {
                let retry = answer
                    .retry_after
                    .as_deref()
                    .map(|r| format!(" Retry-After: {r}"))
                    .unwrap_or_default();
                let cut = if answer.truncated {
                    " [body truncated]"
                } else {
                    ""
                };
                format!("{}{retry} {}{cut}", answer.status, clip(&answer.text))
            }
            Err(err) => err.to_string(),
        };
        Evidence {
            request: redactor.redact(&request_text).into_owned(),
            response: redactor.redact(&response_text).into_owned(),
        }
    }

    /// Checks from one step's expectations: the MUSTs, then the SHOULDs (`recommended`).
    /// `problems` are step-level unmet MUSTs found by the caller.
    fn judge(
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
        let evidence = shown.map(|exchange| self.evidence(exchange));
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
            let outcome = match (met, self.settings.strict) {
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
                        if self.settings.strict {
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

    fn answer_unmet(
        &self,
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

    async fn step(&mut self, number: usize, step: &Step) -> StepVerdict {
        match &step.action {
            Action::Create(create) => self.create(number, step, create).await,
            Action::Validate(validate) => match self.validate_request(validate) {
                Ok((body, bearer)) => {
                    let exchange = self
                        .send(
                            ("POST", VALIDATE_PATH, body.to_string()),
                            None,
                            bearer.as_deref(),
                            validate.key.is_configured(),
                        )
                        .await;
                    let (must, should) = self.answer_unmet(&step.expect, &exchange, None);
                    self.judge(number, step, Some(&exchange), must, should)
                }
                Err(problem) => self.judge(number, step, None, vec![problem], Vec::new()),
            },
            Action::Wait(wait) => {
                let duration = match wait {
                    WaitStep::For(duration) => *duration,
                    WaitStep::Expiry { saved, margin } => match self.saved.get(saved) {
                        Some(saved) => {
                            let ttl = saved
                                .expires_in
                                .or(saved.requested_ttl)
                                .unwrap_or(crate::protocol::DEFAULT_TTL_S);
                            (saved.created_at + Duration::from_secs(ttl) + *margin)
                                .saturating_duration_since(Instant::now())
                        }
                        None => Duration::ZERO,
                    },
                };
                tokio::time::sleep(duration).await;
                StepVerdict {
                    checks: Vec::new(),
                    stop: false,
                }
            }
            Action::Concurrent(concurrent) => self.concurrent(number, step, concurrent).await,
            Action::Burst(burst) => self.burst(number, step, burst).await,
            Action::Raw(raw) => self.raw(number, step, raw).await,
        }
    }

    async fn create(&mut self, number: usize, step: &Step, create: &CreateStep) -> StepVerdict {
        let mut body = json!({});
        if let Some(ttl) = create.ttl {
            body["ttl"] = json!(ttl);
        }
        if let Some(encrypted) = create.encrypted {
            body["encrypted"] = json!(encrypted);
        }
        let key = self.key(&create.key).map(str::to_owned);
        let bearer = self
            .place_key(&mut body, key.as_deref(), create.auth)
            .map(str::to_owned);
        let body = body.to_string();
        let mut seen = HashSet::new();
        let mut repeated = None;
        let mut last = None;
        for _ in 0..create.repeat.max(1) {
            let exchange = self
                .send(
                    ("POST", CREATE_PATH, body.clone()),
                    None,
                    bearer.as_deref(),
                    create.key.is_configured(),
                )
                .await;
            let (must, should) = self.answer_unmet(&step.expect, &exchange, create.ttl);
            if !must.is_empty() {
                return self.judge(number, step, Some(&exchange), must, should);
            }
            if let Some(challenge) = exchange
                .answer()
                .and_then(|a| a.field("challenge"))
                .and_then(Value::as_str)
                && !seen.insert(challenge.to_owned())
                && repeated.is_none()
            {
                repeated = Some(exchange.clone());
            }
            last = Some((exchange, should));
        }
        let (exchange, should) = last.expect("repeat is at least one");
        if step.expect.distinct
            && let Some(repeat) = repeated
        {
            let problem = format!("{} distinct challenges (one repeated)", create.repeat);
            return self.judge(number, step, Some(&repeat), vec![problem], Vec::new());
        }
        if let Some(name) = &create.save
            && let Err(problem) = self.save(name, &exchange, create).await
        {
            return self.judge(number, step, Some(&exchange), vec![problem], Vec::new());
        }
        self.judge(number, step, Some(&exchange), Vec::new(), should)
    }

    /// Keeps a created challenge; for the RSA key, opens it with the private key.
    async fn save(
        &mut self,
        name: &str,
        exchange: &Exchange,
        create: &CreateStep,
    ) -> Result<(), String> {
        let answer: &Answer = exchange
            .answer()
            .ok_or_else(|| format!("a challenge to save as `{name}` ({})", exchange.brief()))?;
        let challenge = answer
            .field("challenge")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("a `challenge` string to save as `{name}`"))?
            .to_owned();
        let mut decrypted = None;
        if create.key == KeyChoice::Rsa {
            let private = self.settings.credentials.private_key.clone();
            if let Some(private) = private {
                let ciphertext = challenge.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(ciphertext.trim())
                        .ok()?;
                    let plain = private.decrypt_oaep_sha256(&bytes).ok()?;
                    String::from_utf8(plain.to_vec()).ok()
                })
                .await
                .ok()
                .flatten();
                decrypted = Some(opened.ok_or_else(|| {
                    "a challenge that the private key opens (base64 of RSA-OAEP with SHA-256)"
                        .to_owned()
                })?);
            }
        }
        self.saved.insert(
            name.to_owned(),
            Saved {
                challenge,
                expires_in: answer.field("expires_in").and_then(Value::as_u64),
                requested_ttl: create.ttl,
                created_at: Instant::now() - exchange.latency,
                decrypted,
            },
        );
        Ok(())
    }

    fn saved(&self, name: &str) -> Result<&Saved, String> {
        self.saved.get(name).ok_or_else(|| {
            format!("the challenge `{name}` saved by an earlier step (it was not created)")
        })
    }

    fn decrypted_of(&self, reference: &ChallengeRef) -> Result<String, String> {
        let name = match reference {
            ChallengeRef::Saved(name) | ChallengeRef::SavedDecrypted(name) => name,
            _ => return Err("an RSA challenge to take the decryption of".into()),
        };
        self.saved(name)?.decrypted.clone().ok_or_else(|| {
            format!("`{name}` to be an RSA challenge (create it with key = \"rsa\")")
        })
    }

    /// The validate body and Bearer token for a step, or why it cannot be built.
    fn validate_request(&self, step: &ValidateStep) -> Result<(Value, Option<String>), String> {
        let challenge = match &step.challenge {
            ChallengeRef::Saved(name) => self.saved(name)?.challenge.clone(),
            ChallengeRef::SavedDecrypted(_) => self.decrypted_of(&step.challenge)?,
            ChallengeRef::Random => random_hex64(),
            ChallengeRef::Literal(text) => text.clone(),
        };
        let secret = self.secret(&step.key);
        let response = match &step.response {
            ResponseForm::Hmac => hmac_response(&secret, &challenge),
            ResponseForm::HmacOtherSecret => {
                hmac_response(&format!("kc_not_the_secret_{}", random_hex64()), &challenge)
            }
            ResponseForm::Tampered => {
                let mut mac = hmac_response(&secret, &challenge).into_bytes();
                mac[0] = if mac[0] == b'0' { b'1' } else { b'0' };
                String::from_utf8(mac).expect("hex is ASCII")
            }
            ResponseForm::Echo => challenge.clone(),
            ResponseForm::Hash => hex::encode(Sha256::digest(format!("{challenge}{secret}"))),
            ResponseForm::Decrypted => self.decrypted_of(&step.challenge)?,
            ResponseForm::HmacDecrypted => {
                hmac_response(&secret, &self.decrypted_of(&step.challenge)?)
            }
            ResponseForm::WrongDecryption => random_hex64(),
            ResponseForm::Literal(text) => text.clone(),
        };
        let mut body = json!({ "challenge": challenge, "response": response });
        match step.decrypted_challenge {
            DecryptedField::Absent => {}
            DecryptedField::Decrypted => {
                body["decryptedChallenge"] = json!(self.decrypted_of(&step.challenge)?)
            }
            DecryptedField::Wrong => body["decryptedChallenge"] = json!(random_hex64()),
        }
        let key = self.key(&step.key);
        let bearer = self.place_key(&mut body, key, step.auth).map(str::to_owned);
        Ok((body, bearer))
    }

    async fn concurrent(
        &mut self,
        number: usize,
        step: &Step,
        concurrent: &ConcurrentStep,
    ) -> StepVerdict {
        let (body, bearer) = match self.validate_request(&concurrent.validate) {
            Ok(request) => request,
            Err(problem) => return self.judge(number, step, None, vec![problem], Vec::new()),
        };
        let body = body.to_string();
        let settings = self.settings;
        let sends = (0..concurrent.count).map(|_| {
            send_with_retry(
                settings,
                ("POST", VALIDATE_PATH, body.clone()),
                None,
                bearer.as_deref(),
                concurrent.validate.key.is_configured(),
            )
        });
        let mut exchanges = Vec::with_capacity(concurrent.count as usize);
        for sent in futures::future::join_all(sends).await {
            self.absorb(&sent);
            exchanges.push(sent.exchange);
        }
        let valid: Vec<&Exchange> = exchanges
            .iter()
            .filter(|e| e.answer().and_then(Answer::valid) == Some(true))
            .collect();
        let mut must = Vec::new();
        let mut shown = valid.get(1).copied().or(exchanges.first());
        if let Some(expected) = step.expect.valid_count
            && valid.len() as u32 != expected
        {
            must.push(format!(
                "exactly {expected} valid=true of {} concurrent validations, got {}",
                concurrent.count,
                valid.len()
            ));
        }
        let mut should = Vec::new();
        if must.is_empty() {
            // The other expectations apply to every answer that was not valid=true.
            for exchange in exchanges
                .iter()
                .filter(|e| e.answer().and_then(Answer::valid) != Some(true))
            {
                let (m, s) = self.answer_unmet(&step.expect, exchange, None);
                if !m.is_empty() {
                    must = m;
                    shown = Some(exchange);
                    break;
                }
                if should.is_empty() && !s.is_empty() {
                    should = s;
                }
            }
        }
        self.judge(number, step, shown, must, should)
    }

    async fn burst(&mut self, number: usize, step: &Step, burst: &BurstStep) -> StepVerdict {
        let max = self.settings.burst.unwrap_or(burst.max_requests);
        let key = self.key(&burst.key).map(str::to_owned);
        let secret = self.secret(&burst.key);
        let client = &self.settings.client;
        let issued = AtomicU32::new(0);
        let stop = AtomicBool::new(false);
        // A target that stopped answering would cost every remaining request its
        // timeout: a round of unanswered requests in a row (as many as are in flight)
        // ends the burst.
        let give_up_after = burst.concurrency.max(1);
        let unanswered = AtomicU32::new(0);
        let gave_up = AtomicBool::new(false);
        let worker = || async {
            let mut tally = BurstTally::default();
            while !stop.load(Ordering::Relaxed) && issued.fetch_add(1, Ordering::Relaxed) < max {
                let (path, mut body) = match burst.endpoint {
                    Endpoint::Create => (CREATE_PATH, json!({ "ttl": 30 })),
                    Endpoint::Validate => {
                        let challenge = random_hex64();
                        let response = hmac_response(&secret, &challenge);
                        (
                            VALIDATE_PATH,
                            json!({ "challenge": challenge, "response": response }),
                        )
                    }
                };
                if let Some(key) = &key {
                    body["key"] = json!(key);
                }
                let exchange = client.post_json(path, &body, None).await;
                let limited = exchange.answer().is_some_and(Answer::is_rate_limited);
                if limited {
                    stop.store(true, Ordering::Relaxed);
                }
                if exchange.result.is_ok() {
                    unanswered.store(0, Ordering::Relaxed);
                } else if unanswered.fetch_add(1, Ordering::Relaxed) + 1 >= give_up_after {
                    gave_up.store(true, Ordering::Relaxed);
                    stop.store(true, Ordering::Relaxed);
                }
                tally.add(exchange, limited, burst.key.is_configured());
            }
            tally
        };
        let workers = (0..burst.concurrency.max(1)).map(|_| worker());
        let mut total = BurstTally::default();
        for tally in futures::future::join_all(workers).await {
            total.merge(tally);
        }
        self.counters.merge(&total.counters);
        let summary = total
            .statuses
            .iter()
            .map(|(status, n)| format!("{n}x {status}"))
            .collect::<Vec<_>>()
            .join(", ");
        match total.first_limited {
            Some(limited) => {
                let (must, should) = self.answer_unmet(&step.expect, &limited, None);
                self.judge(number, step, Some(&limited), must, should)
            }
            None if step.expect.rate_limited => {
                let stopped = if gave_up.load(Ordering::Relaxed) {
                    format!("; stopped after {give_up_after} in a row got no answer")
                } else {
                    String::new()
                };
                let problem = format!(
                    "a rate_limited answer within {} requests (got {summary}{stopped})",
                    total.counters.requests
                );
                self.judge(number, step, total.last.as_ref(), vec![problem], Vec::new())
            }
            None => self.judge(number, step, total.last.as_ref(), Vec::new(), Vec::new()),
        }
    }

    async fn raw(&mut self, number: usize, step: &Step, raw: &RawStep) -> StepVerdict {
        let bearer = raw
            .bearer
            .then(|| self.settings.credentials.primary.clone());
        let exchange = self
            .send(
                (&raw.method, &raw.path, raw.body.clone()),
                raw.content_type.as_deref(),
                bearer.as_deref(),
                raw.bearer,
            )
            .await;
        let (must, should) = self.answer_unmet(&step.expect, &exchange, None);
        self.judge(number, step, Some(&exchange), must, should)
    }
}

fn clip(text: &str) -> String {
    if text.chars().count() <= EVIDENCE_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(EVIDENCE_CHARS).collect();
    format!("{cut}… [{} more bytes]", text.len() - cut.len())
}

/// A request sent with retries: the last exchange, and what all attempts cost.
struct Sent {
    exchange: Exchange,
    counters: Counters,
    retries: u64,
}

/// Sends, and when the answer is `rate_limited`, waits as `Retry-After` says (else
/// backs off exponentially), bounded by the run's retry policy, and sends again: a
/// scenario that is not about rate limiting must not fail because of it.
async fn send_with_retry(
    settings: &RunSettings,
    (method, path, body): (&str, &str, String),
    content_type: Option<&str>,
    bearer: Option<&str>,
    keyed: bool,
) -> Sent {
    let policy = settings.retry;
    let mut counters = Counters::default();
    let mut retries = 0;
    loop {
        let exchange = settings
            .client
            .send(method, path, body.clone(), content_type, bearer)
            .await;
        counters.record(&exchange, keyed);
        let wait = exchange
            .answer()
            .filter(|answer| answer.is_rate_limited() && retries < u64::from(policy.max_retries))
            .map(|answer| {
                answer
                    .retry_after_seconds()
                    .map(Duration::from_secs)
                    .unwrap_or(policy.backoff * 2u32.pow(retries as u32))
                    .min(policy.max_wait)
            });
        match wait {
            Some(wait) => {
                retries += 1;
                tokio::time::sleep(wait).await;
            }
            None => {
                return Sent {
                    exchange,
                    counters,
                    retries,
                };
            }
        }
    }
}

/// What a burst saw, kept as counts so a long burst holds no list of answers.
#[derive(Default)]
struct BurstTally {
    counters: Counters,
    /// "200" -> count, "no answer" -> count.
    statuses: std::collections::BTreeMap<String, u64>,
    first_limited: Option<Exchange>,
    last: Option<Exchange>,
}

impl BurstTally {
    fn add(&mut self, exchange: Exchange, limited: bool, keyed: bool) {
        self.counters.record(&exchange, keyed);
        let label = match &exchange.result {
            Ok(answer) => answer.status.to_string(),
            Err(_) => "no answer".to_owned(),
        };
        *self.statuses.entry(label).or_default() += 1;
        if limited && self.first_limited.is_none() {
            self.first_limited = Some(exchange);
        } else {
            self.last = Some(exchange);
        }
    }

    fn merge(&mut self, other: BurstTally) {
        self.counters.merge(&other.counters);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        if self.first_limited.is_none() {
            self.first_limited = other.first_limited;
        }
        if other.last.is_some() {
            self.last = other.last;
        }
    }
}
