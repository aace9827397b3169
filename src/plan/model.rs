//! The validated plan: what the engine runs. Built only by the loader (`plan::load`),
//! so every value here is already checked; the engine never parses strings.

use std::path::PathBuf;
use std::time::Duration;

/// One plan file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub path: PathBuf,
    /// `[plan] name`, or the file stem.
    pub name: String,
    pub scenarios: Vec<Scenario>,
    /// `[plan] cacert`, resolved against the plan file's directory; `--cacert` wins.
    pub cacert: Option<PathBuf>,
    /// `[plan] http2 = true`: speak HTTP/2 (as `--http2`).
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Unique within the run (across all plan files given).
    pub name: String,
    /// Conformance case ID tied to a SPEC.md section, e.g. "KC-4.2".
    pub id: Option<String>,
    /// The requirement quoted in failure messages, e.g. "a used challenge MUST answer
    /// replayed_challenge".
    pub requirement: Option<String>,
    /// What SPEC.md recommends beyond the requirement (its SHOULD), quoted in
    /// `recommended` checks' messages.
    pub recommendation: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// Runs alone, after every non-exclusive scenario (rate limiting disturbs others).
    pub exclusive: bool,
    /// What the target must offer for the scenario to run; otherwise it is skipped.
    pub needs: Vec<Need>,
    /// Whole-scenario deadline.
    pub timeout: Duration,
    pub steps: Vec<Step>,
    /// Present for a load scenario: the steps are one iteration of a flow that the
    /// executor repeats. Load scenarios run one at a time, after the others.
    pub load: Option<LoadSpec>,
    /// 1-based line of the `[[scenario]]` header, for messages.
    pub line: usize,
}

/// `[scenario.load]`: how to drive a flow, and the thresholds that judge the run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    pub executor: Executor,
    /// Stop starting iterations after this long. At least one of `duration` and
    /// `iterations` is set (the loader ensures it; `run --duration` may add one).
    pub duration: Option<Duration>,
    /// Stop after this many iterations in all.
    pub iterations: Option<u64>,
    /// Pause between a closed-model user's iterations.
    pub think_time: Duration,
    pub thresholds: Vec<Threshold>,
    /// How much worse than a baseline run `compare` allows each figure to get.
    pub regression: Vec<Tolerance>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Executor {
    /// `users` loop the flow back to back (k6's constant-vus, wrk's connections).
    Closed { users: u32 },
    /// Iterations start on a schedule whatever the target does (wrk2, k6's
    /// arrival-rate executors); latency counts from each intended start time.
    Open {
        rate: RateSchedule,
        /// Iterations in flight at most; an arrival beyond it is dropped and counted.
        max_in_flight: u32,
        /// Connections opened and warmed before the schedule's clock starts (k6's
        /// `preAllocatedVUs`); `None`: the engine sizes it from the peak rate.
        pre_allocated: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum RateSchedule {
    /// Arrivals per second.
    Constant(f64),
    /// From `start` arrivals/s, ramp linearly to each stage's `target` over its
    /// `duration`; the load's duration is the stages' sum unless set.
    Ramping { start: f64, stages: Vec<Stage> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// A k6-style pass/fail criterion, e.g. `p99 < 50ms`, `error_rate < 0.1%`, `rps > 1000`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub op: Comparison,
    /// In the metric's unit: microseconds for latencies, a fraction (0.001 for 0.1%)
    /// for rates, per second for `rps`, a count for counts.
    pub value: f64,
    /// As written in the plan, for messages.
    pub source: String,
}

/// How much worse a figure may get against a baseline before `compare` calls it a
/// regression, e.g. `p99 +10%`, `error_rate +0.1pp`, `rps -5%`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerance {
    pub metric: Metric,
    pub allowed: Allowance,
    /// As written (in the plan or on the command line), for messages.
    pub source: String,
}

/// The room a tolerance leaves, always as a positive amount in the worse direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Allowance {
    /// A fraction of the baseline's figure (0.1 for `+10%`).
    Relative(f64),
    /// In the metric's unit: microseconds for latencies, a fraction for rates
    /// (`+0.1pp` is 0.001), per second for `rps`.
    Absolute(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Iteration-step request latency at a percentile (50, 90, 95, 99, 99.9 ...), over
    /// every request of the scenario.
    Percentile(f64),
    Mean,
    Max,
    /// Failed requests / all requests (transport errors, 5xx, 4xx, unmet expectations).
    ErrorRate,
    /// Completed requests per second over the load's duration.
    Rps,
    /// Requests completed.
    Requests,
    /// Open model: arrivals dropped (at `max_in_flight`) / arrivals scheduled.
    DroppedRate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Lt,
    Le,
    Gt,
    Ge,
}

/// Something a scenario needs from the run's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// An RSA key and its private key (`--rsa-api-key`, `--private-key`).
    Rsa,
    /// A second valid key (`--second-api-key`; the embedded server always has one).
    SecondKey,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// 1-based line of the step's `[[scenario.step]]` header.
    pub line: usize,
    pub action: Action,
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create(CreateStep),
    Validate(ValidateStep),
    Wait(WaitStep),
    /// `count` copies of one validation sent at once.
    Concurrent(ConcurrentStep),
    /// Up to `max_requests` requests, stopping at the first `rate_limited`.
    Burst(BurstStep),
    /// A hand-written request, for malformed input.
    Raw(RawStep),
}

/// Which API key a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChoice {
    /// `--api-key`.
    Primary,
    /// `--second-api-key` (needs `second-key`).
    Secondary,
    /// `--rsa-api-key` (needs `rsa`).
    Rsa,
    /// A well-formed `kc_` key that no server issued (random per run).
    Unknown,
    /// The primary key without its last character: unknown, but a prefix of a known
    /// key (a server that compares with `startsWith` takes it).
    PrimaryTruncated,
    /// The primary key with one more character: unknown, but it starts with a known key.
    PrimaryExtended,
    /// No key at all.
    Absent,
}

impl KeyChoice {
    /// One of the run's own valid keys (not unknown, not absent).
    pub fn is_configured(&self) -> bool {
        matches!(
            self,
            KeyChoice::Primary | KeyChoice::Secondary | KeyChoice::Rsa
        )
    }
}

/// How the key travels (SPEC.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthForm {
    Body,
    Bearer,
    Both,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateStep {
    pub key: KeyChoice,
    pub auth: AuthForm,
    /// `None` sends no `ttl` field.
    pub ttl: Option<u64>,
    /// `None` sends no `encrypted` field.
    pub encrypted: Option<bool>,
    /// Name under which the challenge (and, for RSA, its decryption) is kept.
    pub save: Option<String>,
    /// How many creates to send (one after another); `save` keeps the last.
    pub repeat: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidateStep {
    pub key: KeyChoice,
    pub auth: AuthForm,
    pub challenge: ChallengeRef,
    pub response: ResponseForm,
    pub decrypted_challenge: DecryptedField,
    /// Whose secret computes the response; `None` for the request's own key. Another
    /// key's makes a request that holds a correct response but the wrong key.
    pub hmac_key: Option<KeyChoice>,
}

/// Which challenge a validation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeRef {
    /// A saved challenge, as the server issued it (the ciphertext for RSA).
    Saved(String),
    /// A saved RSA challenge, by its decrypted plaintext (the API page's reading).
    SavedDecrypted(String),
    /// A saved challenge in uppercase: the same challenge to a server that reads hex
    /// either way, an unknown one to a strict one; never a fresh one. Responses are
    /// computed from the challenge as issued.
    SavedUppercase(String),
    /// 64 random hex characters no server issued.
    Random,
    Literal(String),
}

/// What the `response` field holds (SPEC.md §4, §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseForm {
    /// HMAC-SHA256 of the challenge as named, under the key's HMAC secret.
    Hmac,
    /// HMAC under a secret that is not the key's.
    HmacOtherSecret,
    /// The correct HMAC with its first hex digit changed.
    Tampered,
    /// The correct HMAC with the digit in its middle changed.
    TamperedMiddle,
    /// The correct HMAC with its last hex digit changed.
    TamperedLast,
    /// The correct HMAC without its last character.
    Truncated,
    /// The correct HMAC with one more hex digit.
    Extended,
    /// An empty string.
    Empty,
    /// The correct HMAC in uppercase hex.
    Uppercase,
    /// The challenge itself (the SDKs' "echo").
    Echo,
    /// hex(SHA-256(challenge + secret)) (the SDKs' "hash").
    Hash,
    /// hex(SHA-256(challenge + ":" + secret)) (the SDKs' "custom", with the secret as its
    /// data).
    Custom,
    /// The decrypted RSA challenge (the Python guide's reading).
    Decrypted,
    /// HMAC of the decrypted RSA challenge.
    HmacDecrypted,
    /// 64 hex characters that are not the decryption.
    WrongDecryption,
    Literal(String),
}

/// The optional `decryptedChallenge` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptedField {
    Absent,
    Decrypted,
    Wrong,
    /// The same text as the `response` field (what the Python guide sends for RSA).
    SameAsResponse,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitStep {
    For(Duration),
    /// Until the saved challenge's `expires_in` has passed, plus `margin`. A wait
    /// longer than `at_most` is not made: the rest of the scenario is skipped.
    Expiry {
        saved: String,
        margin: Duration,
        at_most: Option<Duration>,
    },
    /// Until `before` ahead of the saved challenge's advertised expiry: a validation
    /// then must still succeed.
    BeforeExpiry {
        saved: String,
        before: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConcurrentStep {
    pub count: u32,
    pub validate: ValidateStep,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BurstStep {
    pub endpoint: Endpoint,
    pub key: KeyChoice,
    /// Requests at most; the run's `--burst` overrides it.
    pub max_requests: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Fresh challenges (created before the burst) to validate while the limit holds:
    /// each attempt refused as rate-limited must leave its challenge valid once the
    /// limit lifts. 0 for none.
    pub probe_validations: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Create,
    Validate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawStep {
    pub method: String,
    /// Path below the target URL, e.g. "/api/challenge/create".
    pub path: String,
    pub body: String,
    /// `None` sends `application/json`.
    pub content_type: Option<String>,
    /// Sends `Authorization: Bearer <primary key>` so only the body is at fault.
    pub bearer: bool,
}

/// What a step's answer must show. Every field is optional; an empty `Expect` checks
/// nothing. `recommended` holds what SPEC.md calls SHOULD: unmet, it is `non-strict`
/// by default and a failure under `--strict`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    pub status: Option<StatusExpect>,
    /// The body's `error` code.
    pub error: Option<ErrorExpect>,
    pub valid: Option<ValidExpect>,
    /// Shapes of answer fields.
    pub fields: Vec<FieldExpect>,
    /// A `Retry-After` header with whole seconds.
    pub retry_after: bool,
    /// The answer body is a JSON object.
    pub json_body: bool,
    /// Concurrent steps: how many answers are `valid: true`.
    pub valid_count: Option<u32>,
    /// Burst steps: a `rate_limited` answer must appear within the burst.
    pub rate_limited: bool,
    /// Create steps with `repeat`: no challenge repeats.
    pub distinct: bool,
    /// Create steps with `repeat`: the challenges vary in at least 128 bits' worth of
    /// characters (a counter or a timestamp does not).
    pub random: bool,
    pub recommended: Option<Box<Expect>>,
}

impl Expect {
    /// A MUST beyond the status (`recommended` aside).
    fn requires_more_than_status(&self) -> bool {
        let Expect {
            status: _,
            error,
            valid,
            fields,
            retry_after,
            json_body,
            valid_count,
            rate_limited,
            distinct,
            random,
            recommended: _,
        } = self;
        error.is_some()
            || valid.is_some()
            || !fields.is_empty()
            || *retry_after
            || *json_body
            || valid_count.is_some()
            || *rate_limited
            || *distinct
            || *random
    }

    /// Nothing but (at most) the status: the answer's body need not be read.
    pub fn checks_only_status(&self) -> bool {
        !self.requires_more_than_status() && self.recommended.is_none()
    }

    /// No MUST at all (there may be SHOULDs in `recommended`).
    pub fn requires_nothing(&self) -> bool {
        self.status.is_none() && !self.requires_more_than_status()
    }
}

/// Status expectation: exact codes, or classes like 4xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusExpect {
    Codes(Vec<u16>),
    /// 2 for 2xx, 4 for 4xx ...
    Class(u8),
    /// Any of several codes and classes.
    AnyOf(Vec<StatusExpect>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorExpect {
    /// One of these codes.
    OneOf(Vec<String>),
    /// Any of the five documented codes.
    Documented,
    /// Absent (no `error` field).
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidExpect {
    True,
    False,
    /// Absent or false: a refusal that may not be a verdict.
    NotTrue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldExpect {
    /// Top-level field name, e.g. "challenge".
    pub field: String,
    pub shape: Shape,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Hex (either case) of at least this many characters.
    HexAtLeast(usize),
    /// Exactly this many lowercase hex characters.
    LowerHex(usize),
    /// Standard base64 (the RSA ciphertext).
    Base64,
    /// An integer from 1 to the TTL the create step asked for.
    AtMostTtl,
    /// Exactly the TTL the create step asked for.
    EqualsTtl,
    Bool(bool),
    /// Present, any value.
    Present,
    /// Absent.
    Absent,
    /// A `quota` object: {used, remaining, quota: number | "unlimited"}.
    Quota,
    /// The inner shape when the field is present; absent is fine (`"hex?"`).
    Optional(Box<Shape>),
}
