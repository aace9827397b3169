//! What a run produced, in the shape every report format writes. The engine fills it;
//! `report::{json, junit, html, console, hdr}` and `scale_out::merge` only read it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::redact::Redactor;

/// One check's verdict, as conformance suites report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Allowed, but not the recommended behaviour (a failure under `--strict`).
    NonStrict,
    /// Could not run here (no RSA key given, interrupted); a failure under `--strict`.
    Skipped,
    /// Judged elsewhere: by worker 0 (conformance scenarios of a scaled-out run) or on
    /// the merged report (a worker's thresholds). Never a failure of this report.
    Delegated,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::NonStrict => "non-strict",
            Outcome::Skipped => "skipped",
            Outcome::Delegated => "delegated",
        }
    }

    /// Whether this outcome makes its scenario fail: the one rule every report, the
    /// engine and `merge` use. A failure always; non-strict and skipped under `--strict`
    /// (which pins every open point and allows no gaps); delegated never.
    pub fn counts_as_failure(self, strict: bool) -> bool {
        match self {
            Outcome::Fail => true,
            Outcome::NonStrict | Outcome::Skipped => strict,
            Outcome::Pass | Outcome::Delegated => false,
        }
    }

    /// Skipped or delegated: the check did not judge the target here.
    pub fn is_skip(self) -> bool {
        matches!(self, Outcome::Skipped | Outcome::Delegated)
    }
}

/// A scenario's verdict as every report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
    /// Every check was skipped or delegated, and that is not a failure here.
    Skipped,
}

/// The scenario verdict from its checks under a profile: `(passed, skipped)` as
/// [`ScenarioReport`] records them. Passed when no check counts as a failure; skipped
/// when there are checks and none of them judged the target.
pub fn verdict(checks: &[CheckResult], strict: bool) -> (bool, bool) {
    let passed = !checks.iter().any(|c| c.outcome.counts_as_failure(strict));
    let skipped = !checks.is_empty() && checks.iter().all(|c| c.outcome.is_skip());
    (passed, skipped)
}

/// The request and answer that show a check's outcome; secrets already redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// e.g. "POST /api/challenge/validate {\"key\":\"kc_…\",...}"
    pub request: String,
    /// e.g. "200 {\"valid\":true}", or "connection error: ..."; truncated if long.
    pub response: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub outcome: Outcome,
    /// Reads on its own: "KC-4.2 replay: a used challenge MUST answer
    /// replayed_challenge; got 200 valid=true".
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// The name of the skipped check a load scenario carries when Ctrl-C or SIGTERM stopped
/// it before its end.
pub const INTERRUPTED_CHECK: &str = "interrupted";

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    /// Absent from reports written before it was added.
    #[serde(default)]
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// No check counts as a failure ([`Outcome::counts_as_failure`]).
    pub passed: bool,
    /// Every check was skipped or delegated (see [`verdict`]).
    pub skipped: bool,
    pub checks: Vec<CheckResult>,
    /// HTTP requests sent.
    pub requests: u64,
    /// Requests that got no HTTP answer (connect errors, resets, timeouts, garbage).
    pub errors: u64,
    /// Requests retried after a `rate_limited` answer (the scenario was not about it).
    pub rate_limit_retries: u64,
    pub rps: f64,
    pub elapsed_s: f64,
    /// Microseconds, from HdrHistogram.
    pub latency_us: LatencySummary,
    /// E.g. a vacuous pass: every answer was `invalid_key` or 5xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The load figures of a load scenario; its `checks` are its thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadFigures>,
}

/// What a load scenario measured. Histograms travel losslessly as base64 of the
/// HdrHistogram V2 (deflate) encoding, so `.hgrm`/`.hlog` files, charts and merges of
/// several workers' reports are all derived from report.json alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadFigures {
    /// "open" or "closed".
    pub model: String,
    /// E.g. "open 1000/s for 20s" or "closed 50 users for 10s".
    pub executor: String,
    /// Open model: the scheduled arrivals per second (mean over the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Iterations started per second over the load's duration.
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub iterations: u64,
    /// Open model: arrivals never started because `max_in_flight` were in flight.
    pub dropped: u64,
    /// Open model: iterations started more than 10 ms after their intended time.
    pub late: u64,
    /// Requests still unanswered when the run ended (abandoned).
    pub in_flight_at_end: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
    /// Answers by HTTP status ("200" -> n).
    pub status_counts: std::collections::BTreeMap<String, u64>,
    /// Answers by body `error` code. Bounded: at most 32 codes (1 to 64 of
    /// `a-z0-9_.-`), the rest counted under `other`.
    pub error_codes: std::collections::BTreeMap<String, u64>,
    /// One of the `error` values counted under `other`, cut at 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code_example: Option<String>,
    /// Requests that failed: no answer, 4xx/5xx, or an unmet expectation.
    pub failed_requests: u64,
    pub steps: Vec<StepFigures>,
    /// Whole-run request latency, microseconds, HdrHistogram V2 deflate, base64.
    pub histogram: String,
    /// One entry per second of the run.
    pub intervals: Vec<IntervalFigures>,
    /// When the load started, in milliseconds since the Unix epoch: the `.hlog`'s
    /// start time, and what `merge` lines workers' intervals up by.
    #[serde(default)]
    pub start_unix_ms: u64,
    /// The plan's thresholds as written, so `merge` can judge the merged figures.
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// The plan's regression tolerances as written (`p99 +10%`), for `compare`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regression: Vec<String>,
    /// Open model: how the load generator itself kept up, so that its own delays are
    /// never read as the target's latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorFigures>,
    /// The HTTP protocol the load spoke: "http/1.1" or "h2" (absent in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// One transport failure's words (certificate, TLS, connect), cut like an error
    /// code example, so a run whose requests all failed says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_error_example: Option<String>,
}

/// The open model's generator: its connections, how late it began iterations, and
/// whether it (not the target) was the bottleneck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorFigures {
    /// Connections opened and warmed (one request each, not recorded) before the
    /// schedule's clock started.
    pub pre_allocated: u64,
    /// Requests sent before the clock started, not recorded: one per connection opened
    /// then, and the latency probe's when the default pool was sized by it.
    /// Reports written before this field read as 0.
    #[serde(default)]
    pub warm_up_requests: u64,
    /// Connections opened in the background during the run (connected, not warmed),
    /// when every connection was busy with the target as an arrival fell due.
    pub grown: u64,
    /// Times every connection was busy but the pool did not grow, because the
    /// generator's threads were busy (another connection would only add work).
    pub growth_deferred: u64,
    /// Connects an iteration waited on: reconnects after the target closed or broke a
    /// connection (HTTPS targets connect inside their client and are not counted).
    pub connects_on_arrival_path: u64,
    /// From each iteration's intended start to when the generator began it.
    pub start_lag_us: LatencySummary,
    /// Late iterations (see `late`) begun by a connection that had been waiting idle:
    /// the generator, not a busy target, held them up.
    pub late_with_idle_connection: u64,
    /// The clock thread's worst lateness waking from a sleep.
    pub clock_lag_max_us: u64,
    /// The clock's coarsest tick: while the generator was busy, due arrivals waited
    /// up to this long for a connection to be woken (0: it woke for each arrival).
    #[serde(default)]
    pub clock_tick_max_us: u64,
    /// CPU the whole process used while the load ran, in cores (1.0 is one core
    /// busy throughout); absent where the OS does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// Cores the process may run on.
    pub cores: u32,
    /// The share of the run (0 to 1) the generator's runtime threads were busy, not
    /// parked waiting for the network: near 1, it had no capacity to spare.
    pub runtime_busy: f64,
    /// The generator was the bottleneck: the scenario's warnings say why, and its
    /// latency figures include the generator's own delay.
    pub saturated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFigures {
    /// "1 create", "2 validate" ...
    pub name: String,
    pub requests: u64,
    pub failed: u64,
    pub latency_us: LatencySummary,
    /// This step's latency histogram (V2 deflate, base64).
    pub histogram: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalFigures {
    /// Seconds from the load's start to this interval's start.
    pub start_s: f64,
    pub duration_s: f64,
    pub requests: u64,
    pub failed: u64,
    pub latency_us: LatencySummary,
    /// This interval's latency histogram (V2 deflate, base64), for `.hlog`.
    pub histogram: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Every scenario passed.
    pub passed: bool,
    /// Stopped early (Ctrl-C); what was measured is still here.
    pub interrupted: bool,
    pub strict: bool,
    /// Plan names.
    pub plans: Vec<String>,
    /// The target URL (userinfo and query removed), or "embedded".
    pub target: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub elapsed_s: f64,
    pub scenarios: Vec<ScenarioReport>,
    /// SHA-256 of the selected scenarios as run (plan, selection and overrides), so
    /// `merge` can refuse reports of different runs.
    #[serde(default)]
    pub plan_digest: String,
    /// Set when this process drove one worker's share (`--worker-index/--workers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerTag>,
    /// Set on a report `merge` made: which workers it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<MergedFrom>,
    /// Set when the start was synchronised (`--start-at`, a rendezvous) and on every
    /// worker's report: when the scenarios were asked to start and when they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartTimes>,
    /// A scaled-out run, by load scenario name: how much of the plan's load this report
    /// was given and how much of it ran, so `merge` can say what a gap cost.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plan_share: BTreeMap<String, PlanShare>,
    /// TLS certificates were not verified (`--insecure`): the figures and verdicts came
    /// from whoever answered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// When a run was asked to start and when it did, in milliseconds since the Unix epoch
/// on the machine that ran it. `merge` judges a worker's lateness by these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartTimes {
    /// "start-at" (a clock instant given to every worker), "rendezvous" (announced by
    /// the coordinator once the workers were in) or "immediate" (no synchronisation).
    pub via: String,
    /// The instant asked for; absent for "immediate".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_unix_ms: Option<u64>,
    /// When the scenarios began.
    pub actual_unix_ms: u64,
}

impl StartTimes {
    /// How long after the requested instant the run began (zero when on time or early;
    /// `None` with nothing requested).
    pub fn late_by(&self) -> Option<Duration> {
        self.requested_unix_ms
            .map(|requested| Duration::from_millis(self.actual_unix_ms.saturating_sub(requested)))
    }
}

/// Fractions of one load scenario's whole load (the plan's, before the split).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlanShare {
    /// The part given to the workers this report holds: 1/N of a rate, a worker's
    /// share of users or iterations; on a merged report, the sum over its workers.
    pub assigned: f64,
    /// The part that ran: `assigned`, less what an interruption or a crash cut short.
    pub ran: f64,
}

/// Worker indexes as people read them: "0, 1, 2".
pub fn worker_list(indexes: &[u32]) -> String {
    indexes
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which share of a scaled-out run a report holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerTag {
    /// 0-based.
    pub index: u32,
    pub workers: u32,
}

/// The workers a merged report was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedFrom {
    pub workers: u32,
    /// Worker indexes merged, ascending.
    pub indexes: Vec<u32>,
    /// Worker indexes with no report (merged with `--allow-missing`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u32>,
    /// Why each missing worker is missing, where a rendezvous collector knew ("lost:
    /// no heartbeat for 30s", "registered 12.0s after the start").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub missing_why: BTreeMap<u32, String>,
}

impl ScenarioReport {
    /// What reports show: a failure wins over a skip (a skip is a failure under
    /// `--strict`), so the console, JUnit, HTML and the exit code always agree.
    pub fn status(&self) -> Status {
        if !self.passed {
            Status::Failed
        } else if self.skipped {
            Status::Skipped
        } else {
            Status::Passed
        }
    }
}

impl RunReport {
    /// Which part of a scaled-out run this report covers, for people: "worker 1 of 3",
    /// "merged from workers 0, 1, 2 of 3"; `None` for a run in one process.
    pub fn scope(&self) -> Option<String> {
        if let Some(worker) = self.worker {
            return Some(format!("worker {} of {}", worker.index, worker.workers));
        }
        let merged = self.merged.as_ref()?;
        let missing = if merged.missing.is_empty() {
            String::new()
        } else {
            format!("; missing {}", worker_list(&merged.missing))
        };
        Some(format!(
            "merged from workers {} of {}{missing}",
            worker_list(&merged.indexes),
            merged.workers
        ))
    }

    /// Counts of check outcomes: (pass, fail, non-strict, skipped or delegated).
    pub fn outcome_counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for check in self.scenarios.iter().flat_map(|s| &s.checks) {
            match check.outcome {
                Outcome::Pass => counts.0 += 1,
                Outcome::Fail => counts.1 += 1,
                Outcome::NonStrict => counts.2 += 1,
                Outcome::Skipped | Outcome::Delegated => counts.3 += 1,
            }
        }
        counts
    }
}

/// A load scenario's live figures, about once a second, for progress displays.
#[derive(Debug, Clone, Default)]
pub struct LoadTick {
    pub elapsed: Duration,
    /// How long the load is meant to run, when a duration bounds it.
    pub planned: Option<Duration>,
    pub requests: u64,
    pub failed: u64,
    /// Requests per second over the last interval.
    pub rate: f64,
    pub p99_us: u64,
}

impl RunReport {
    /// A copy with every string field passed through `redactor`.
    pub fn redacted(&self, redactor: &Redactor) -> RunReport {
        let mut report = self.clone();
        if redactor.is_empty() {
            return report;
        }
        let fix = |s: &mut String| {
            if let std::borrow::Cow::Owned(clean) = redactor.redact(s) {
                *s = clean;
            }
        };
        report.plans.iter_mut().for_each(&fix);
        fix(&mut report.target);
        fix(&mut report.started_at);
        for scenario in &mut report.scenarios {
            fix(&mut scenario.name);
            scenario.id.iter_mut().for_each(&fix);
            scenario.tags.iter_mut().for_each(&fix);
            scenario.description.iter_mut().for_each(&fix);
            scenario.warnings.iter_mut().for_each(&fix);
            for check in &mut scenario.checks {
                fix(&mut check.name);
                fix(&mut check.message);
                if let Some(evidence) = &mut check.evidence {
                    fix(&mut evidence.request);
                    fix(&mut evidence.response);
                }
            }
            // Status and error codes are whatever the server sent. Histograms are left
            // alone: they are numbers, and rewriting an encoding could only corrupt it.
            if let Some(load) = &mut scenario.load {
                fix(&mut load.model);
                fix(&mut load.executor);
                let fix_keys = |counts: &mut std::collections::BTreeMap<String, u64>| {
                    *counts = std::mem::take(counts).into_iter().fold(
                        std::collections::BTreeMap::new(),
                        |mut clean, (key, n)| {
                            *clean.entry(redactor.redact(&key).into_owned()).or_insert(0) += n;
                            clean
                        },
                    );
                };
                fix_keys(&mut load.status_counts);
                fix_keys(&mut load.error_codes);
                load.error_code_example.iter_mut().for_each(&fix);
                load.transport_error_example.iter_mut().for_each(&fix);
                for step in &mut load.steps {
                    fix(&mut step.name);
                }
            }
        }
        report
    }
}
