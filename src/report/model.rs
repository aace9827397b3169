//! What a run produced, in the shape every report format writes. The engine fills it;
//! `report::{json, junit, html, console}` only read it.

use serde::{Deserialize, Serialize};

/// One check's verdict, as conformance suites report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Allowed, but not the recommended behaviour (a failure under `--strict`).
    NonStrict,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::NonStrict => "non-strict",
            Outcome::Skipped => "skipped",
        }
    }
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
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
    /// No check failed (non-strict counts as failed under `--strict`).
    pub passed: bool,
    /// Every check was skipped.
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
}

impl RunReport {
    /// Counts of check outcomes: (pass, fail, non-strict, skipped).
    pub fn outcome_counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for check in self.scenarios.iter().flat_map(|s| &s.checks) {
            match check.outcome {
                Outcome::Pass => counts.0 += 1,
                Outcome::Fail => counts.1 += 1,
                Outcome::NonStrict => counts.2 += 1,
                Outcome::Skipped => counts.3 += 1,
            }
        }
        counts
    }
}
