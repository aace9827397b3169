//! One iteration of a load flow: the scenario's steps compiled once into ready request
//! bodies and pre-keyed HMAC states, then run by each user against its connection,
//! reporting every request to the aggregator.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method};
use serde_json::Value;
use tokio::sync::mpsc;

use super::aggregate::{Sample, SampleOutcome};
use super::transport::{Reply, UserConnection};
use crate::checks::{status_matches, unmet};
use crate::client::{Answer, TransportError, first_duplicate_key};
use crate::crypto::RsaPrivateKey;
use crate::engine::credentials::{Credentials, Secret, decrypt_challenge, missing, random_hex64};
use crate::metrics::error_codes;
use crate::plan::model::{
    Action, AuthForm, ChallengeRef, DecryptedField, Expect, KeyChoice, ResponseForm, Step, WaitStep,
};
use crate::protocol::{CREATE_PATH, DEFAULT_TTL_S, MAX_CHALLENGE_BYTES, VALIDATE_PATH};

/// A flow that cannot run as a load flow, or a key the run does not have.
#[derive(Debug, thiserror::Error)]
#[error("step {step}: {message}")]
pub struct FlowError {
    pub step: usize,
    pub message: String,
}

/// Who sends: the key's body fragment and Bearer header.
#[derive(Clone)]
struct Sender {
    /// `"key":"kc_…",` ready to splice into a body, or empty.
    body_key: String,
    bearer: Option<HeaderValue>,
}

enum Compiled {
    Create {
        body: Bytes,
        sender: Sender,
        save: Option<usize>,
        decrypt: bool,
        expect: Option<Expect>,
        ttl: Option<u64>,
    },
    Validate {
        sender: Sender,
        /// Computes the response (the sender's own secret unless `hmac_key` names another).
        secret: Secret,
        challenge: ChallengeSource,
        response: ResponseForm,
        decrypted: DecryptedField,
        expect: Option<Expect>,
    },
    Wait(WaitFor),
    Raw {
        method: Method,
        path: String,
        body: Bytes,
        bearer: Option<HeaderValue>,
        expect: Option<Expect>,
    },
}

enum ChallengeSource {
    Saved(usize),
    SavedDecrypted(usize),
    SavedUppercase(usize),
    Random,
    Literal(String),
}

enum WaitFor {
    Fixed(Duration),
    Expiry { slot: usize, margin: Duration },
    BeforeExpiry { slot: usize, before: Duration },
}

impl Saved {
    /// When the server said it expires (`expires_in`, counted from the create's send).
    fn expiry(&self) -> Option<Instant> {
        let ttl = self.expires_in.unwrap_or(DEFAULT_TTL_S);
        self.created_at.map(|at| at + Duration::from_secs(ttl))
    }
}

/// A challenge an earlier step of this iteration saved.
#[derive(Clone, Default)]
struct Saved {
    challenge: String,
    decrypted: Option<String>,
    expires_in: Option<u64>,
    created_at: Option<Instant>,
}

/// The compiled steps of one flow; shared by every user.
pub struct Flow {
    steps: Vec<Compiled>,
    slots: usize,
    private_key: Option<Arc<RsaPrivateKey>>,
}

/// Samples a user collects before one channel send: a send per request would cost
/// more than the rest of the bookkeeping together.
const SAMPLE_BATCH: usize = 64;

/// An open-model iteration's timing: when it was due, and when the generator began it
/// (the clock read that took it, so the iteration costs no second read).
#[derive(Debug, Clone, Copy)]
pub struct Scheduled {
    pub intended: Instant,
    pub began: Instant,
}

impl Scheduled {
    /// How late the generator began it.
    pub fn lag(self) -> Duration {
        self.began.saturating_duration_since(self.intended)
    }
}

/// Per-user scratch space: the saved challenges of the current iteration, and the
/// samples not yet handed to the aggregator.
pub struct IterationState {
    saved: Vec<Saved>,
    pending: Vec<Sample>,
}

impl Flow {
    pub fn compile(steps: &[Step], credentials: &Credentials) -> Result<Flow, FlowError> {
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut compiled = Vec::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            let number = index + 1;
            let fail = |message: String| FlowError {
                step: number,
                message,
            };
            let expect = (step.expect != Expect::default()).then(|| step.expect.clone());
            let slot_of = |name: &str, slots: &HashMap<String, usize>| {
                slots
                    .get(name)
                    .copied()
                    .ok_or_else(|| fail(format!("`{name}` is not saved by an earlier step")))
            };
            compiled.push(match &step.action {
                Action::Create(create) => {
                    let sender = sender(credentials, &create.key, create.auth).map_err(&fail)?;
                    let mut body = String::from("{");
                    body.push_str(&sender.body_key);
                    if let Some(ttl) = create.ttl {
                        body.push_str(&format!("\"ttl\":{ttl},"));
                    }
                    if let Some(encrypted) = create.encrypted {
                        body.push_str(&format!("\"encrypted\":{encrypted},"));
                    }
                    let body = format!("{}}}", body.trim_end_matches(','));
                    let save = create.save.as_ref().map(|name| {
                        let next = slots.len();
                        *slots.entry(name.clone()).or_insert(next)
                    });
                    Compiled::Create {
                        body: Bytes::from(body),
                        sender,
                        save,
                        decrypt: create.key == KeyChoice::Rsa && credentials.private_key.is_some(),
                        expect,
                        ttl: create.ttl,
                    }
                }
                Action::Validate(validate) => Compiled::Validate {
                    sender: sender(credentials, &validate.key, validate.auth).map_err(&fail)?,
                    secret: Secret::new(
                        credentials.secret(validate.hmac_key.as_ref().unwrap_or(&validate.key)),
                    ),
                    challenge: match &validate.challenge {
                        ChallengeRef::Saved(name) => ChallengeSource::Saved(slot_of(name, &slots)?),
                        ChallengeRef::SavedDecrypted(name) => {
                            ChallengeSource::SavedDecrypted(slot_of(name, &slots)?)
                        }
                        ChallengeRef::SavedUppercase(name) => {
                            ChallengeSource::SavedUppercase(slot_of(name, &slots)?)
                        }
                        ChallengeRef::Random => ChallengeSource::Random,
                        ChallengeRef::Literal(text) => ChallengeSource::Literal(text.clone()),
                    },
                    response: validate.response.clone(),
                    decrypted: validate.decrypted_challenge,
                    expect,
                },
                Action::Wait(WaitStep::For(duration)) => Compiled::Wait(WaitFor::Fixed(*duration)),
                // A load flow waits as long as it takes: `at_most` guards conformance runs.
                Action::Wait(WaitStep::Expiry { saved, margin, .. }) => {
                    Compiled::Wait(WaitFor::Expiry {
                        slot: slot_of(saved, &slots)?,
                        margin: *margin,
                    })
                }
                Action::Wait(WaitStep::BeforeExpiry { saved, before }) => {
                    Compiled::Wait(WaitFor::BeforeExpiry {
                        slot: slot_of(saved, &slots)?,
                        before: *before,
                    })
                }
                Action::Raw(raw) => Compiled::Raw {
                    method: Method::from_bytes(raw.method.as_bytes())
                        .map_err(|_| fail(format!("bad method {}", raw.method)))?,
                    path: raw.path.clone(),
                    body: Bytes::from(raw.body.clone()),
                    bearer: if raw.bearer {
                        bearer_value(&credentials.primary)
                    } else {
                        None
                    },
                    expect,
                },
                Action::Concurrent(_) | Action::Burst(_) => {
                    return Err(fail(
                        "concurrent and burst steps cannot run in a load flow".to_owned(),
                    ));
                }
            });
        }
        Ok(Flow {
            steps: compiled,
            slots: slots.len(),
            private_key: credentials.private_key.clone(),
        })
    }

    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    /// Names for the per-step figures: "1 create", "2 validate" ...
    pub fn step_names(&self) -> Vec<String> {
        self.steps
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let kind = match step {
                    Compiled::Create { .. } => "create",
                    Compiled::Validate { .. } => "validate",
                    Compiled::Wait(_) => "wait",
                    Compiled::Raw { .. } => "raw",
                };
                format!("{} {kind}", index + 1)
            })
            .collect()
    }

    pub fn new_state(&self) -> IterationState {
        IterationState {
            saved: vec![Saved::default(); self.slots],
            pending: Vec::with_capacity(SAMPLE_BATCH),
        }
    }

    /// Runs one iteration. The first request's latency counts from the open model's
    /// intended start, so a stalled target shows in the percentiles instead of
    /// silently delaying the schedule.
    pub async fn run(
        &self,
        connection: &mut UserConnection,
        state: &mut IterationState,
        samples: &mpsc::Sender<Vec<Sample>>,
        scheduled: Option<Scheduled>,
    ) {
        let mut clock_from = scheduled.map(|scheduled| scheduled.intended);
        // How late the generator began the iteration: the open model's own delay,
        // carried by the iteration's first sample.
        let mut start_lag = scheduled.map(Scheduled::lag);
        for (index, step) in self.steps.iter().enumerate() {
            let step_index = index as u16;
            if let Compiled::Wait(wait) = step {
                let pause = match wait {
                    WaitFor::Fixed(duration) => *duration,
                    WaitFor::Expiry { slot, margin } => state.saved[*slot]
                        .expiry()
                        .map_or(Duration::ZERO, |expiry| {
                            (expiry + *margin).saturating_duration_since(Instant::now())
                        }),
                    WaitFor::BeforeExpiry { slot, before } => state.saved[*slot]
                        .expiry()
                        .and_then(|expiry| expiry.checked_sub(*before))
                        .map_or(Duration::ZERO, |end| {
                            end.saturating_duration_since(Instant::now())
                        }),
                };
                tokio::time::sleep(pause).await;
                clock_from = None;
                continue;
            }
            let Some(Request {
                method,
                path,
                body,
                bearer,
                expect,
                ttl,
            }) = request(step, state)
            else {
                continue;
            };
            let sent = Instant::now();
            let result = connection.send(&method, path, body, bearer).await;
            let done = Instant::now();
            let latency = done - clock_from.take().unwrap_or(sent).min(sent);
            let (mut outcome, reply) = judge(result, expect, ttl);
            if let (
                Compiled::Create {
                    save: Some(slot),
                    decrypt,
                    ..
                },
                Some(reply),
            ) = (step, reply)
                && !self.save(state, *slot, &reply, *decrypt, sent).await
                && let SampleOutcome::Answered { failed, .. } = &mut outcome
            {
                *failed = true;
            }
            state.pending.push(Sample {
                step: step_index,
                latency,
                done,
                start_lag: start_lag.take(),
                outcome,
            });
            if state.pending.len() >= SAMPLE_BATCH {
                Self::flush(state, samples).await;
            }
        }
    }

    /// Sends the flow's first request once on `connection` and forgets the answer: the
    /// connection (and the target's path for it) is warm before the clock starts.
    /// Returns whether an answer came (of any status).
    pub async fn warm(&self, connection: &mut UserConnection, state: &IterationState) -> bool {
        match self.steps.iter().find_map(|step| request(step, state)) {
            Some(request) => connection
                .send(&request.method, request.path, request.body, request.bearer)
                .await
                .is_ok(),
            None => false,
        }
    }

    /// Hands this user's collected samples to the aggregator.
    pub async fn flush(state: &mut IterationState, samples: &mpsc::Sender<Vec<Sample>>) {
        if !state.pending.is_empty() {
            let batch = std::mem::replace(&mut state.pending, Vec::with_capacity(SAMPLE_BATCH));
            samples.send(batch).await.ok();
        }
    }

    /// Keeps a created challenge; `sent` is when its create went out, where the
    /// server's clock for it started at the earliest. Returns false, keeping nothing,
    /// when the answer cannot be carried: a challenge over [`MAX_CHALLENGE_BYTES`], or
    /// a body with a duplicated name (which value counts depends on the parser; the
    /// conformance suite fails such a body too). The create then counts as failed and
    /// the steps after it run with no saved challenge.
    async fn save(
        &self,
        state: &mut IterationState,
        slot: usize,
        reply: &Reply,
        decrypt: bool,
        sent: Instant,
    ) -> bool {
        let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
        let challenge = parsed
            .as_ref()
            .and_then(|v| v.get("challenge"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if challenge.len() > MAX_CHALLENGE_BYTES
            || (parsed.is_some() && first_duplicate_key(&reply.body).is_some())
        {
            state.saved[slot] = Saved::default();
            return false;
        }
        let challenge = challenge.to_owned();
        let expires_in = parsed
            .as_ref()
            .and_then(|v| v.get("expires_in"))
            .and_then(Value::as_u64);
        let decrypted = match (&self.private_key, decrypt) {
            (Some(key), true) => decrypt_challenge(Arc::clone(key), challenge.clone()).await,
            _ => None,
        };
        state.saved[slot] = Saved {
            challenge,
            decrypted,
            expires_in,
            created_at: Some(sent),
        };
        true
    }
}

/// What one step sends; `None` for a wait.
struct Request<'a> {
    method: Method,
    path: &'a str,
    body: Bytes,
    bearer: Option<&'a HeaderValue>,
    expect: Option<&'a Expect>,
    /// A create's `ttl`, which its expectations check `expires_in` against.
    ttl: Option<u64>,
}

fn request<'a>(step: &'a Compiled, state: &IterationState) -> Option<Request<'a>> {
    Some(match step {
        Compiled::Wait(_) => return None,
        Compiled::Create {
            body,
            sender,
            expect,
            ttl,
            ..
        } => Request {
            method: Method::POST,
            path: CREATE_PATH,
            body: body.clone(),
            bearer: sender.bearer.as_ref(),
            expect: expect.as_ref(),
            ttl: *ttl,
        },
        Compiled::Validate {
            sender,
            secret,
            challenge,
            response,
            decrypted,
            expect,
        } => Request {
            method: Method::POST,
            path: VALIDATE_PATH,
            body: validate_body(state, sender, secret, challenge, response, *decrypted),
            bearer: sender.bearer.as_ref(),
            expect: expect.as_ref(),
            ttl: None,
        },
        Compiled::Raw {
            method,
            path,
            body,
            bearer,
            expect,
        } => Request {
            method: method.clone(),
            path: path.as_str(),
            body: body.clone(),
            bearer: bearer.as_ref(),
            expect: expect.as_ref(),
            ttl: None,
        },
    })
}

/// Builds the validate body for this iteration's saved values.
fn validate_body(
    state: &IterationState,
    sender: &Sender,
    secret: &Secret,
    challenge: &ChallengeSource,
    response: &ResponseForm,
    decrypted_field: DecryptedField,
) -> Bytes {
    let saved_slot = match challenge {
        ChallengeSource::Saved(slot)
        | ChallengeSource::SavedDecrypted(slot)
        | ChallengeSource::SavedUppercase(slot) => Some(&state.saved[*slot]),
        _ => None,
    };
    let decrypted = saved_slot
        .and_then(|s| s.decrypted.clone())
        .unwrap_or_default();
    // As in the conformance steps: an uppercased challenge is answered as issued.
    let (named, basis) = match challenge {
        ChallengeSource::Saved(slot) => {
            let issued = &state.saved[*slot].challenge;
            (issued.clone(), issued.clone())
        }
        ChallengeSource::SavedUppercase(slot) => {
            let issued = &state.saved[*slot].challenge;
            (issued.to_ascii_uppercase(), issued.clone())
        }
        ChallengeSource::SavedDecrypted(_) => (decrypted.clone(), decrypted.clone()),
        ChallengeSource::Random => {
            let random = random_hex64();
            (random.clone(), random)
        }
        ChallengeSource::Literal(text) => (text.clone(), text.clone()),
    };
    let response_text = secret.response(response, &basis, &decrypted);
    let mut body = String::with_capacity(256);
    body.push('{');
    body.push_str(&sender.body_key);
    body.push_str("\"challenge\":");
    body.push_str(&json_string(&named));
    body.push_str(",\"response\":");
    body.push_str(&json_string(&response_text));
    match decrypted_field {
        DecryptedField::Absent => {}
        DecryptedField::Decrypted => {
            body.push_str(",\"decryptedChallenge\":");
            body.push_str(&json_string(&decrypted));
        }
        DecryptedField::Wrong => {
            body.push_str(",\"decryptedChallenge\":");
            body.push_str(&json_string(&random_hex64()));
        }
        DecryptedField::SameAsResponse => {
            body.push_str(",\"decryptedChallenge\":");
            body.push_str(&json_string(&response_text));
        }
    }
    body.push('}');
    Bytes::from(body)
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

fn bearer_value(key: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {key}"))
        .ok()
        .map(|mut value| {
            value.set_sensitive(true);
            value
        })
}

fn sender(credentials: &Credentials, choice: &KeyChoice, auth: AuthForm) -> Result<Sender, String> {
    let placement = credentials
        .placement(choice, auth)
        .map_err(|need| format!("needs {}", missing(need)))?;
    Ok(Sender {
        body_key: match placement.body {
            Some(key) => format!("\"key\":{},", json_string(key)),
            None => String::new(),
        },
        bearer: placement.bearer.and_then(bearer_value),
    })
}

/// Whether the request failed (no answer, 4xx/5xx, an unmet expectation), and the
/// reply when there is one. Bodies are parsed only when something needs them.
fn judge(
    result: Result<Reply, TransportError>,
    expect: Option<&Expect>,
    ttl: Option<u64>,
) -> (SampleOutcome, Option<Reply>) {
    let reply = match result {
        Ok(reply) => reply,
        Err(TransportError::Timeout) => return (SampleOutcome::Timeout, None),
        Err(TransportError::Connect(why)) => return (SampleOutcome::ConnectionError(why), None),
        Err(TransportError::Protocol(why)) => return (SampleOutcome::ProtocolError(why), None),
    };
    let status_only = expect.is_none_or(Expect::checks_only_status);
    let mut error_code = None;
    let failed = if status_only && reply.status < 400 {
        expect
            .and_then(|e| e.status.as_ref())
            .is_some_and(|status| !status_matches(status, reply.status))
    } else {
        let json: Option<Value> = serde_json::from_slice(&reply.body).ok();
        error_code = json
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map(error_codes::carried);
        let parsed = json.is_some();
        let answer = Answer {
            status: reply.status,
            retry_after: reply.retry_after.clone(),
            text: String::new(),
            truncated: false,
            json,
            // Looked for below, only where it can change the outcome.
            duplicate_key: None,
        };
        let unmet_any = expect.is_some_and(|e| !unmet(e, &answer, ttl).is_empty());
        // A 4xx/5xx fails unless the step expects that status.
        let status_expected = expect.is_some_and(|e| e.status.is_some());
        // Read as the conformance suite reads it: a duplicated name makes the answer
        // ambiguous (first-wins and last-wins parsers disagree), so it fails. An
        // answer that fails anyway is not walked again, so error answers cost no more.
        (reply.status >= 400 && !status_expected)
            || unmet_any
            || (parsed && first_duplicate_key(&reply.body).is_some())
    };
    (
        SampleOutcome::Answered {
            status: reply.status,
            failed,
            error_code,
        },
        Some(reply),
    )
}
