//! What a run needs besides its scenarios: the resolved settings every executor reads,
//! and the callbacks that let a caller watch the run.

use std::sync::Arc;
use std::time::Duration;

use super::credentials::Credentials;
use crate::client::Client;
use crate::redact::Redactor;
use crate::results::{LoadTick, ScenarioReport};
use crate::scale_out::WorkerSlice;

/// Hears a load scenario's live figures (its name, the tick).
pub type LoadProgress = Arc<dyn Fn(&str, &LoadTick) + Send + Sync>;
/// Hears each scenario's report as it finishes.
pub type ScenarioDone = Arc<dyn Fn(&ScenarioReport) + Send + Sync>;

/// How a scenario that is not about rate limiting rides out `rate_limited` answers.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// Longest single wait, whatever `Retry-After` says.
    pub max_wait: Duration,
    /// First backoff when `Retry-After` is absent; doubles per retry.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 6,
            max_wait: Duration::from_secs(10),
            backoff: Duration::from_millis(250),
        }
    }
}

/// A verdict-signature scheme the user says the target uses, so the suite can check
/// every signature exactly (`--signature-scheme`). The vendor's is not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignatureScheme {
    /// The reference server's (SPEC.md §6): lowercase hex HMAC-SHA256 under the key's
    /// secret of `"keyclaim-verdict:v1:" + challenge + ":true"`.
    #[value(name = "keyclaim-v1")]
    KeyclaimV1,
}

impl SignatureScheme {
    pub fn name(self) -> &'static str {
        match self {
            SignatureScheme::KeyclaimV1 => "keyclaim-v1",
        }
    }

    /// The signature a valid verdict on `challenge` carries under `secret`.
    pub fn sign(self, secret: &str, challenge: &str) -> String {
        match self {
            SignatureScheme::KeyclaimV1 => crate::protocol::verdict_signature(
                &crate::crypto::ResponseKey::new(secret.as_bytes()),
                challenge,
                true,
            ),
        }
    }
}

/// Everything a run needs besides the scenarios.
pub struct RunSettings {
    pub client: Client,
    pub credentials: Credentials,
    pub strict: bool,
    /// Scenarios in flight at once.
    pub concurrency: usize,
    /// Overrides every burst step's `max_requests`.
    pub burst: Option<u32>,
    pub retry: RetryPolicy,
    pub redactor: Arc<Redactor>,
    /// For the report: the target as shown to people.
    pub target_label: String,
    pub plan_names: Vec<String>,
    /// Per-request timeout (also bounds the wait for in-flight load at the end).
    pub request_timeout: Duration,
    /// Called about once a second during a load scenario, with its name.
    pub load_progress: LoadProgress,
    /// This process's share of a scaled-out run, if it is one worker of several.
    pub worker: Option<WorkerSlice>,
    /// See [`RunReport::plan_digest`](crate::results::RunReport::plan_digest).
    pub plan_digest: String,
    /// Check every verdict signature exactly against this scheme.
    pub signature_scheme: Option<SignatureScheme>,
    /// Where load scenarios publish live figures (`run --metrics-listen`).
    pub live_metrics: Option<Arc<crate::live::load::LoadMetrics>>,
}
