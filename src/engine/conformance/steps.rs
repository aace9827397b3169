//! The steps of a conformance scenario: each builds its requests from the plan and the
//! challenges earlier steps saved, sends them, and hands what came back to the judge.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::burst;
use super::retry::{Counters, Request, Sent, send_with_retry};
use super::verdict::{Judge, StepVerdict, step_name};
use crate::checks::{MIN_RANDOM_BITS, random_bits};
use crate::client::{Answer, Exchange};
use crate::engine::credentials::{Secret, decrypt_challenge, random_hex64, uses_decryption};
use crate::engine::settings::RunSettings;
use crate::plan::model::{
    Action, AuthForm, BurstStep, ChallengeRef, ConcurrentStep, CreateStep, DecryptedField,
    KeyChoice, RawStep, ResponseForm, Scenario, Step, ValidateStep, WaitStep,
};
use crate::protocol::{CREATE_PATH, DEFAULT_TTL_S, MAX_CHALLENGE_BYTES, VALIDATE_PATH};
use crate::results::{CheckResult, Outcome, ScenarioReport};

/// A challenge a create step saved.
struct Saved {
    /// As issued (the base64 ciphertext for RSA).
    challenge: String,
    expires_in: Option<u64>,
    requested_ttl: Option<u64>,
    /// When the create that got it was sent, and when its answer came: the server made
    /// the challenge somewhere between the two.
    sent_at: Instant,
    answered_at: Instant,
    /// The RSA plaintext, when the challenge was encrypted and opened.
    decrypted: Option<String>,
}

/// Which end of the span in which the server can have started a challenge's clock.
#[derive(Clone, Copy)]
enum Bound {
    Earliest,
    Latest,
}

/// One scenario's run: what its steps saved and found so far.
pub struct Run<'a> {
    settings: &'a RunSettings,
    pub judge: Judge<'a>,
    saved: HashMap<String, Saved>,
    counters: Counters,
    /// Requests retried after `rate_limited` answers.
    retries: u64,
    /// The last wait to just before a saved challenge's expiry: its name, and the
    /// earliest moment the server's clock can have expired it.
    expiry_ahead: Option<(String, Instant)>,
    pub checks: Vec<CheckResult>,
}

impl<'a> Run<'a> {
    pub fn new(scenario: &'a Scenario, settings: &'a RunSettings) -> Self {
        Run {
            settings,
            judge: Judge::new(scenario, settings),
            saved: HashMap::new(),
            counters: Counters::default(),
            retries: 0,
            expiry_ahead: None,
            checks: Vec::new(),
        }
    }

    pub fn finish(self, elapsed: Duration) -> ScenarioReport {
        self.judge
            .finish(self.checks, &self.counters, self.retries, elapsed)
    }

    pub async fn step(&mut self, number: usize, step: &Step) -> StepVerdict {
        match &step.action {
            Action::Create(create) => self.create(number, step, create).await,
            Action::Validate(validate) => match self.validate_request(validate) {
                Ok((body, bearer)) => {
                    let exchange = self
                        .send(Request {
                            method: "POST",
                            path: VALIDATE_PATH,
                            body: body.to_string(),
                            content_type: None,
                            bearer: bearer.as_deref(),
                            keyed: validate.key.is_configured(),
                        })
                        .await;
                    let (must, should) = self.judge.answer_unmet(&step.expect, &exchange, None);
                    // An answer that refused; no answer at all is judged as it is.
                    let refused = exchange
                        .answer()
                        .is_some_and(|answer| answer.valid() != Some(true));
                    if !must.is_empty()
                        && refused
                        && let Some(late) = self.answered_past_expiry(&validate.challenge)
                    {
                        // A validation meant to land inside the challenge's lifetime
                        // whose answer came only after it could have ended (a slow
                        // network, an overloaded harness): a refusal then proves
                        // nothing about the server.
                        return self.skipped(
                            number,
                            step,
                            format!(
                                "the answer came {} after the challenge could have expired, so a refusal proves nothing; run from a machine nearer the target or less loaded",
                                humantime::format_duration(Duration::from_millis(
                                    late.as_millis() as u64
                                ))
                            ),
                            false,
                        );
                    }
                    self.judge.step(number, step, Some(&exchange), must, should)
                }
                Err(problem) => self
                    .judge
                    .step(number, step, None, vec![problem], Vec::new()),
            },
            Action::Wait(wait) => {
                let pause = self.wait_for(wait);
                if let WaitStep::Expiry {
                    at_most: Some(at_most),
                    ..
                } = wait
                    && pause > *at_most
                {
                    // The scenario ends here: its later steps need the wait.
                    return self.skipped(
                        number,
                        step,
                        format!(
                            "the challenge lives {} more, longer than this wait's at_most {}",
                            humantime::format_duration(Duration::from_secs(pause.as_secs())),
                            humantime::format_duration(*at_most)
                        ),
                        true,
                    );
                }
                self.expiry_ahead = match wait {
                    WaitStep::BeforeExpiry { saved, .. } => self
                        .expiry_of(saved, Bound::Earliest)
                        .map(|expiry| (saved.clone(), expiry)),
                    _ => None,
                };
                tokio::time::sleep(pause).await;
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

    /// How long after the earliest possible expiry of `challenge` its validation was
    /// answered, when a wait meant it to arrive before that expiry and it did not.
    fn answered_past_expiry(&self, challenge: &ChallengeRef) -> Option<Duration> {
        let (saved, expiry) = self.expiry_ahead.as_ref()?;
        let named = match challenge {
            ChallengeRef::Saved(name)
            | ChallengeRef::SavedDecrypted(name)
            | ChallengeRef::SavedUppercase(name) => name,
            ChallengeRef::Random | ChallengeRef::Literal(_) => return None,
        };
        (named == saved)
            .then(|| Instant::now().checked_duration_since(*expiry))
            .flatten()
    }

    /// The step as a skipped check saying `why`; `stop` ends the scenario there.
    fn skipped(&self, number: usize, step: &Step, why: String, stop: bool) -> StepVerdict {
        StepVerdict {
            checks: vec![CheckResult {
                name: step_name(number, step),
                outcome: Outcome::Skipped,
                message: format!("{}: skipped: {why}", self.judge.prefix()),
                evidence: None,
            }],
            stop,
        }
    }

    /// Sends with retries (see [`send_with_retry`]), counting what it cost.
    async fn send(&mut self, request: Request<'_>) -> Exchange {
        let sent = send_with_retry(&self.settings.client, self.settings.retry, request).await;
        self.absorb(&sent);
        sent.exchange
    }

    fn absorb(&mut self, sent: &Sent) {
        self.counters.merge(&sent.counters);
        self.retries += sent.retries;
    }

    fn secret(&self, choice: &KeyChoice) -> Secret {
        Secret::new(self.settings.credentials.secret(choice))
    }

    /// Puts the key where `auth` says; returns the Bearer token to send, if any.
    fn place_key(&self, body: &mut Value, choice: &KeyChoice, auth: AuthForm) -> Option<String> {
        // A scenario whose keys the run lacks is skipped before its steps (`needs`).
        let placement = self.settings.credentials.placement(choice, auth).ok()?;
        if let Some(key) = placement.body {
            body["key"] = Value::String(key.to_owned());
        }
        placement.bearer.map(str::to_owned)
    }

    fn wait_for(&self, wait: &WaitStep) -> Duration {
        match wait {
            WaitStep::For(duration) => *duration,
            WaitStep::Expiry { saved, margin, .. } => self
                .expiry_of(saved, Bound::Latest)
                .map_or(Duration::ZERO, |expiry| {
                    (expiry + *margin).saturating_duration_since(Instant::now())
                }),
            WaitStep::BeforeExpiry { saved, before } => self
                .expiry_of(saved, Bound::Earliest)
                .and_then(|expiry| expiry.checked_sub(*before))
                .map_or(Duration::ZERO, |end| {
                    end.saturating_duration_since(Instant::now())
                }),
        }
    }

    /// When a saved challenge expires as the server advertised it (`expires_in`, else
    /// the TTL asked for). The server started its clock between the create's sending and
    /// its answer, so a wait that must end inside the server's window counts from the
    /// sending ([`Bound::Earliest`]), and one that must end past it counts from the
    /// answer ([`Bound::Latest`]): a slow create then cannot make either check lie.
    fn expiry_of(&self, name: &str, bound: Bound) -> Option<Instant> {
        let saved = self.saved.get(name)?;
        let ttl = saved
            .expires_in
            .or(saved.requested_ttl)
            .unwrap_or(DEFAULT_TTL_S);
        let start = match bound {
            Bound::Earliest => saved.sent_at,
            Bound::Latest => saved.answered_at,
        };
        Some(start + Duration::from_secs(ttl))
    }

    async fn create(&mut self, number: usize, step: &Step, create: &CreateStep) -> StepVerdict {
        let mut body = json!({});
        if let Some(ttl) = create.ttl {
            body["ttl"] = json!(ttl);
        }
        if let Some(encrypted) = create.encrypted {
            body["encrypted"] = json!(encrypted);
        }
        let bearer = self.place_key(&mut body, &create.key, create.auth);
        let body = body.to_string();
        let mut seen = HashSet::new();
        // In the order issued, for the randomness estimate.
        let mut issued: Vec<String> = Vec::new();
        let mut repeated = None;
        let mut last = None;
        for _ in 0..create.repeat.max(1) {
            let exchange = self
                .send(Request {
                    method: "POST",
                    path: CREATE_PATH,
                    body: body.clone(),
                    content_type: None,
                    bearer: bearer.as_deref(),
                    keyed: create.key.is_configured(),
                })
                .await;
            // Taken before judging and decrypting, which are not the server's time.
            let answered_at = Instant::now();
            let (must, should) = self.judge.answer_unmet(&step.expect, &exchange, create.ttl);
            if !must.is_empty() {
                return self.judge.step(number, step, Some(&exchange), must, should);
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
            if let Some(challenge) = exchange
                .answer()
                .and_then(|a| a.field("challenge"))
                .and_then(Value::as_str)
            {
                issued.push(challenge.to_owned());
            }
            last = Some((exchange, should, answered_at));
        }
        let (exchange, should, answered_at) = last.expect("repeat is at least one");
        if step.expect.distinct
            && let Some(repeat) = repeated
        {
            let problem = format!("{} distinct challenges (one repeated)", create.repeat);
            return self
                .judge
                .step(number, step, Some(&repeat), vec![problem], Vec::new());
        }
        if (step.expect.distinct || step.expect.random)
            && create.key == KeyChoice::Rsa
            && let Some(private) = self.settings.credentials.private_key.clone()
        {
            // Ciphertexts always differ (OAEP is randomised): judge what they hide.
            let mut plaintexts = Vec::with_capacity(issued.len());
            for ciphertext in &issued {
                match decrypt_challenge(Arc::clone(&private), ciphertext.clone()).await {
                    Some(plaintext) => plaintexts.push(plaintext),
                    None => {
                        let problem = "challenges that the private key opens (base64 of RSA-OAEP with SHA-256)".to_owned();
                        return self.judge.step(
                            number,
                            step,
                            Some(&exchange),
                            vec![problem],
                            Vec::new(),
                        );
                    }
                }
            }
            let mut seen = HashSet::new();
            if step.expect.distinct && !plaintexts.iter().all(|p| seen.insert(p)) {
                let problem = format!(
                    "{} challenges that decrypt to distinct values (one repeated)",
                    create.repeat
                );
                return self
                    .judge
                    .step(number, step, Some(&exchange), vec![problem], Vec::new());
            }
            issued = plaintexts;
        }
        if step.expect.random {
            let samples: Vec<&str> = issued.iter().map(String::as_str).collect();
            let bits = random_bits(&samples);
            if bits < MIN_RANDOM_BITS {
                let problem = format!(
                    "challenges that differ in at least {MIN_RANDOM_BITS:.0} bits across {} creates (they differ in about {bits:.0}: a counter, a clock or too short)",
                    create.repeat
                );
                return self
                    .judge
                    .step(number, step, Some(&exchange), vec![problem], Vec::new());
            }
        }
        if let Some(name) = &create.save
            && let Err(problem) = self.save(name, &exchange, answered_at, create).await
        {
            return self
                .judge
                .step(number, step, Some(&exchange), vec![problem], Vec::new());
        }
        self.judge
            .step(number, step, Some(&exchange), Vec::new(), should)
    }

    /// Keeps a created challenge, answered at `answered_at`; for the RSA key, opens it
    /// with the private key.
    async fn save(
        &mut self,
        name: &str,
        exchange: &Exchange,
        answered_at: Instant,
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
        if create.key == KeyChoice::Rsa
            && let Some(private) = self.settings.credentials.private_key.clone()
        {
            let plaintext = decrypt_challenge(private, challenge.clone())
                .await
                .ok_or_else(|| {
                    "a challenge that the private key opens (base64 of RSA-OAEP with SHA-256)"
                        .to_owned()
                })?;
            // The plaintext anywhere in the answer answers the challenge for anyone.
            if answer.text.contains(&plaintext) {
                return Err("an answer that does not also carry the decrypted challenge".to_owned());
            }
            decrypted = Some(plaintext);
        }
        self.saved.insert(
            name.to_owned(),
            Saved {
                challenge,
                expires_in: answer.field("expires_in").and_then(Value::as_u64),
                requested_ttl: create.ttl,
                sent_at: answered_at - exchange.latency,
                answered_at,
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
            ChallengeRef::Saved(name)
            | ChallengeRef::SavedDecrypted(name)
            | ChallengeRef::SavedUppercase(name) => name,
            _ => return Err("an RSA challenge to take the decryption of".into()),
        };
        self.saved(name)?.decrypted.clone().ok_or_else(|| {
            format!("`{name}` to be an RSA challenge (create it with key = \"rsa\")")
        })
    }

    /// The validate body and Bearer token for a step, or why it cannot be built.
    fn validate_request(&self, step: &ValidateStep) -> Result<(Value, Option<String>), String> {
        // `basis` is what the response is computed from: the challenge as named, except
        // that an uppercased one is answered as issued.
        let (challenge, basis) = match &step.challenge {
            ChallengeRef::Saved(name) => {
                let issued = self.saved(name)?.challenge.clone();
                (issued.clone(), issued)
            }
            ChallengeRef::SavedUppercase(name) => {
                let issued = self.saved(name)?.challenge.clone();
                (issued.to_ascii_uppercase(), issued)
            }
            ChallengeRef::SavedDecrypted(_) => {
                let plaintext = self.decrypted_of(&step.challenge)?;
                (plaintext.clone(), plaintext)
            }
            ChallengeRef::Random => {
                let random = random_hex64();
                (random.clone(), random)
            }
            ChallengeRef::Literal(text) => (text.clone(), text.clone()),
        };
        let decrypted = if uses_decryption(&step.response) {
            self.decrypted_of(&step.challenge)?
        } else {
            String::new()
        };
        let response = self
            .secret(step.hmac_key.as_ref().unwrap_or(&step.key))
            .response(&step.response, &basis, &decrypted);
        let mut body = json!({ "challenge": challenge, "response": response });
        match step.decrypted_challenge {
            DecryptedField::Absent => {}
            DecryptedField::Decrypted => {
                body["decryptedChallenge"] = json!(self.decrypted_of(&step.challenge)?)
            }
            DecryptedField::Wrong => body["decryptedChallenge"] = json!(random_hex64()),
            DecryptedField::SameAsResponse => body["decryptedChallenge"] = json!(response),
        }
        let bearer = self.place_key(&mut body, &step.key, step.auth);
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
            Err(problem) => {
                return self
                    .judge
                    .step(number, step, None, vec![problem], Vec::new());
            }
        };
        let body = body.to_string();
        let settings = self.settings;
        // One connection per validation is opened first (a keyless `GET /`, whose answer
        // is not judged), so the validations leave together instead of each behind its
        // own connect: a check-then-use window of a few milliseconds is then hit even on
        // a loaded machine.
        let warm_ups = (0..concurrent.count)
            .map(|_| settings.client.send("GET", "/", String::new(), None, None));
        for exchange in futures::future::join_all(warm_ups).await {
            self.counters.record(&exchange, false);
        }
        let sends = (0..concurrent.count).map(|_| {
            send_with_retry(
                &settings.client,
                settings.retry,
                Request {
                    method: "POST",
                    path: VALIDATE_PATH,
                    body: body.clone(),
                    content_type: None,
                    bearer: bearer.as_deref(),
                    keyed: concurrent.validate.key.is_configured(),
                },
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
                let (m, s) = self.judge.answer_unmet(&step.expect, exchange, None);
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
        self.judge.step(number, step, shown, must, should)
    }

    async fn burst(&mut self, number: usize, step: &Step, burst: &BurstStep) -> StepVerdict {
        // A target that does not issue them gets no probe; the burst is judged alone.
        let probes = self
            .probe_bodies(burst, burst.probe_validations)
            .await
            .unwrap_or_default();
        let max = self.settings.burst.unwrap_or(burst.max_requests);
        let key = self.settings.credentials.key(&burst.key);
        let secret = self.secret(&burst.key);
        let (tally, give_up_after) = burst::send(self.settings, burst, key, &secret, max).await;
        self.counters.merge(&tally.counters);
        match &tally.first_limited {
            Some(limited) => {
                let (must, should) = self.judge.answer_unmet(&step.expect, limited, None);
                let mut verdict = self.judge.step(number, step, Some(limited), must, should);
                if !verdict.stop
                    && !probes.is_empty()
                    && let Err(failed) = self
                        .limited_attempts_had_no_effect(number, step, burst, &probes)
                        .await
                {
                    verdict.checks.extend(failed.checks);
                    verdict.stop = true;
                }
                verdict
            }
            None if step.expect.rate_limited => {
                let stopped = if tally.gave_up {
                    format!("; stopped after {give_up_after} in a row got no answer")
                } else {
                    String::new()
                };
                let problem = format!(
                    "a rate_limited answer within {} requests (got {}{stopped})",
                    tally.counters.requests,
                    tally.summary()
                );
                self.judge
                    .step(number, step, tally.last.as_ref(), vec![problem], Vec::new())
            }
            None => self
                .judge
                .step(number, step, tally.last.as_ref(), Vec::new(), Vec::new()),
        }
    }

    /// The bodies of `count` validations of fresh challenges, for the probe after a
    /// burst; `None` when a create does not give one.
    async fn probe_bodies(&mut self, burst: &BurstStep, count: u32) -> Option<Vec<Value>> {
        let key = self.settings.credentials.key(&burst.key).map(str::to_owned);
        let secret = self.secret(&burst.key);
        let mut create = json!({ "ttl": 60 });
        if let Some(key) = &key {
            create["key"] = json!(key);
        }
        let mut bodies = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let exchange = self
                .send(Request {
                    method: "POST",
                    path: CREATE_PATH,
                    body: create.to_string(),
                    content_type: None,
                    bearer: None,
                    keyed: burst.key.is_configured(),
                })
                .await;
            let challenge = exchange
                .answer()
                .and_then(|a| a.field("challenge"))
                .and_then(Value::as_str)
                .filter(|challenge| challenge.len() <= MAX_CHALLENGE_BYTES)?
                .to_owned();
            let response = secret.response(&ResponseForm::Hmac, &challenge, "");
            let mut body = json!({ "challenge": challenge, "response": response });
            if let Some(key) = &key {
                body["key"] = json!(key);
            }
            bodies.push(body);
        }
        Some(bodies)
    }

    /// Each probe validation refused as rate-limited, sent again once the limit lifts
    /// (waited out as `Retry-After` says): it must validate, since the refused attempt
    /// must have had no effect. `Err` is the failed check.
    async fn limited_attempts_had_no_effect(
        &mut self,
        number: usize,
        step: &Step,
        burst: &BurstStep,
        bodies: &[Value],
    ) -> Result<(), StepVerdict> {
        let key = self.settings.credentials.key(&burst.key).map(str::to_owned);
        let (probe, counters) = burst::probe(self.settings, burst, key.as_deref(), bodies).await;
        self.counters.merge(&counters);
        if let Some(odd) = &probe.odd {
            let problem =
                "a rate_limited answer or a verdict to a validation sent while the limit held"
                    .to_owned();
            return Err(self
                .judge
                .step(number, step, Some(odd), vec![problem], Vec::new()));
        }
        for body in &probe.limited {
            let exchange = self
                .send(Request {
                    method: "POST",
                    path: VALIDATE_PATH,
                    body: body.to_string(),
                    content_type: None,
                    bearer: None,
                    keyed: burst.key.is_configured(),
                })
                .await;
            if exchange.answer().and_then(Answer::valid) != Some(true) {
                let problem = "valid=true once the limit lifted, for a challenge whose validation was refused as rate_limited (the refused attempt must have had no effect)".to_owned();
                return Err(self.judge.step(
                    number,
                    step,
                    Some(&exchange),
                    vec![problem],
                    Vec::new(),
                ));
            }
        }
        Ok(())
    }

    async fn raw(&mut self, number: usize, step: &Step, raw: &RawStep) -> StepVerdict {
        let bearer = raw
            .bearer
            .then(|| self.settings.credentials.primary.clone());
        let exchange = self
            .send(Request {
                method: &raw.method,
                path: &raw.path,
                body: raw.body.clone(),
                content_type: raw.content_type.as_deref(),
                bearer: bearer.as_deref(),
                keyed: raw.bearer,
            })
            .await;
        let (must, should) = self.judge.answer_unmet(&step.expect, &exchange, None);
        self.judge.step(number, step, Some(&exchange), must, should)
    }
}
